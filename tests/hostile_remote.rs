//! A hostile remote cache: nginx on loopback serving `ac/` entries crafted to
//! escape the project (traversal suffixes, absolute and relative paths where
//! digests belong, short and uppercase digests, sizes, durations and job
//! times out of range, terminal escapes in names). Each entry's material is
//! left intact, so it "belongs" to its key; every other field is a lie.
//! Each must be refused with a warning, its node rebuilt and uploaded again,
//! and nothing read or written outside the project.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::TestProject;
use common::servers::{self, Server};
use serde_json::{Value, json};

/// What the attacker wants to read: a file outside every project.
const SECRET: &str = "SECRET-DATA-0f2c: a file outside the project\n";

/// The remote's entries: key → manifest.
fn entries(server: &Server) -> BTreeMap<String, Value> {
    let ac = server.data().join("studio-cache/ac");
    fs::read_dir(ac)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let key = p.file_name().unwrap().to_str().unwrap().to_string();
            (key, serde_json::from_slice(&fs::read(&p).unwrap()).unwrap())
        })
        .collect()
}

fn write_entry(server: &Server, key: &str, manifest: &Value) {
    let path = server.data().join("studio-cache/ac").join(key);
    fs::write(path, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether any file under `dir` holds the secret.
fn holds_secret(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| fs::read(p).is_ok_and(|b| b.windows(SECRET.len()).any(|w| w == SECRET.as_bytes())))
        .collect()
}

/// The lies, one per entry: a name and how it rewrites the manifest.
/// `outside` is a folder outside the project; `secret` a file in it.
type Lie = (&'static str, Box<dyn Fn(&mut Value)>);

fn lies(outside: &Path, secret: &Path) -> Vec<Lie> {
    let up = "../".repeat(24);
    let escape = format!(
        "x/{up}{}/written",
        outside.display().to_string().trim_start_matches('/')
    );
    let secret_abs = secret.display().to_string();
    let secret_rel = format!("../../../{up}{}", secret_abs.trim_start_matches('/'));
    let size = SECRET.len() as u64;
    vec![
        (
            "traversal suffix",
            Box::new(move |m: &mut Value| m["outputs"][0]["suffix"] = json!(escape)),
        ),
        (
            "absolute path as digest",
            Box::new(move |m: &mut Value| {
                m["outputs"][0]["hash"] = json!(secret_abs);
                m["outputs"][0]["size"] = json!(size);
            }),
        ),
        (
            "relative path as digest",
            Box::new(move |m: &mut Value| {
                m["outputs"][0]["hash"] = json!(secret_rel);
                m["outputs"][0]["size"] = json!(size);
            }),
        ),
        (
            "short digest",
            Box::new(|m: &mut Value| m["outputs"][0]["hash"] = json!("ab")),
        ),
        (
            "uppercase digest",
            Box::new(|m: &mut Value| {
                let upper = m["outputs"][0]["hash"].as_str().unwrap().to_uppercase();
                m["outputs"][0]["hash"] = json!(upper);
            }),
        ),
        (
            "size out of range",
            Box::new(|m: &mut Value| m["outputs"][0]["size"] = json!(u64::MAX)),
        ),
        (
            "negative size",
            Box::new(|m: &mut Value| m["outputs"][0]["size"] = json!(-1)),
        ),
        (
            "duration out of range",
            Box::new(|m: &mut Value| m["duration"] = json!(1e300)),
        ),
        (
            "negative duration",
            Box::new(|m: &mut Value| m["duration"] = json!(-5.0)),
        ),
        (
            "job time out of range",
            Box::new(|m: &mut Value| m["seconds"] = json!(1e300)),
        ),
        (
            "terminal escape in the engine",
            Box::new(|m: &mut Value| m["engine"] = json!("sim\u{1b}[2J")),
        ),
        ("no outputs", Box::new(|m: &mut Value| m["outputs"] = json!([]))),
        (
            "terminal escape in the metadata",
            Box::new(|m: &mut Value| m["metadata"]["engine"] = json!("sim\u{1b}[2J")),
        ),
        (
            "metadata key that is not a word",
            Box::new(|m: &mut Value| m["metadata"]["../seed"] = json!(1)),
        ),
        (
            "metadata nested too deep",
            Box::new(|m: &mut Value| m["metadata"]["scores"] = json!([[[[[1]]]]])),
        ),
        (
            "too much metadata",
            Box::new(|m: &mut Value| m["metadata"]["notes"] = json!("x".repeat(20_000))),
        ),
        (
            "duplicate outputs",
            Box::new(|m: &mut Value| {
                let first = m["outputs"][0].clone();
                m["outputs"].as_array_mut().unwrap().push(first);
            }),
        ),
    ]
}

#[test]
fn crafted_remote_entries_are_refused_rebuilt_and_replaced() {
    let server = servers::nginx();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, SECRET).unwrap();

    let a = TestProject::example("tiny");
    let built = a.build_env(&["--remote", &server.url], &server.env).ok();

    // Lie in one entry per case, each in a different node's entry.
    let lies = lies(outside.path(), &secret);
    let mut by_node: Vec<(String, Value)> = entries(&server).into_iter().collect();
    by_node.sort_by_key(|(_, m)| m["node"].as_str().unwrap().to_string());
    assert!(by_node.len() >= lies.len(), "the tiny example has enough nodes");
    let mut lied = BTreeMap::new();
    for ((key, manifest), (what, lie)) in by_node.iter().zip(&lies) {
        let mut m = manifest.clone();
        lie(&mut m);
        assert_ne!(&m, manifest, "{what} changes the entry");
        write_entry(&server, key, &m);
        lied.insert(key.clone(), (m["node"].as_str().unwrap().to_string(), *what));
    }

    let b = TestProject::example("tiny");
    let run = b.build_env(&["--remote", &server.url], &server.env).ok();
    let stderr = &run.run.stderr;
    for (key, (node, what)) in &lied {
        assert!(
            stderr.contains(&format!("refused ac/{key}")),
            "{what} ({node}) is refused with a warning:\n{stderr}"
        );
    }
    assert!(!stderr.contains('\u{1b}'), "no terminal escape reaches the terminal");
    let nodes: BTreeSet<String> = lied.values().map(|(n, _)| n.clone()).collect();
    assert_eq!(run.built(), nodes, "exactly the lying entries' nodes are rebuilt");
    assert_eq!(run.hashes(), built.hashes(), "and they come out as A made them");
    assert_eq!(b.tree("out"), a.tree("out"));
    b.assert_cache_sound();

    // Nothing was written outside the project, nothing outside was read in.
    let outside_files: Vec<PathBuf> = files(outside.path());
    assert_eq!(
        outside_files,
        vec![secret.clone()],
        "nothing written outside the project"
    );
    assert!(holds_secret(&b.path("")).is_empty(), "the secret was not copied in");
    assert!(holds_secret(&server.data()).is_empty(), "nor uploaded");

    // B uploaded good entries over the lies: C takes everything from the remote.
    for (key, manifest) in entries(&server) {
        if lied.contains_key(&key) {
            let node = manifest["node"].as_str().unwrap();
            assert_eq!(
                manifest["outputs"][0]["hash"],
                built.node(node)["output"],
                "{node} replaced"
            );
        }
    }
    let c = TestProject::example("tiny");
    let run = c.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(run.total("built"), 0, "{}", run.run.stderr);
    assert!(!run.run.stderr.contains("refused"), "{}", run.run.stderr);
}

/// Local entries are read with the same checks, and `cache push` uploads
/// only objects that still hash to their names.
#[test]
fn crafted_local_entries_are_misses_and_push_uploads_only_true_digests() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    fs::write(&secret, SECRET).unwrap();
    let p = TestProject::example("tiny");
    let built = p.build(&[]).ok();

    // Lie in the local action cache, as a hostile remote would have.
    let ac = files(&p.path("cache/ac"));
    let lies = lies(outside.path(), &secret);
    let mut sorted = ac.clone();
    sorted.sort();
    for (path, (_, lie)) in sorted.iter().zip(&lies) {
        let mut m: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        lie(&mut m);
        fs::write(path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    // And replace the bytes of one honest entry's object with the secret's
    // (same name, other bytes): an entry of the episode's build, which the
    // push takes (the review candidates are no target of it), whichever
    // the entries' names put first.
    let honest: Value = (sorted[lies.len()..].iter())
        .map(|path| serde_json::from_slice::<Value>(&fs::read(path).unwrap()).unwrap())
        .find(|m| !m["node"].as_str().unwrap().starts_with("review:"))
        .unwrap();
    let victim_node = honest["node"].as_str().unwrap().to_string();
    let victim = honest["outputs"][0]["hash"].as_str().unwrap().to_string();
    let object = p.path(&format!("cache/objects/{}/{victim}", &victim[..2]));
    let size = fs::metadata(&object).unwrap().len() as usize;
    let forged: Vec<u8> = SECRET.bytes().cycle().take(size).collect();
    fs::write(&object, &forged).unwrap();

    // Push: no lying entry and no mislabelled object leaves the machine.
    let server = servers::nginx();
    let push = p.run(&["cache", "push", "--profile", "sim", "--remote", &server.url]);
    push.success();
    assert!(push.stderr.contains("does not hash to its name"), "{}", push.stderr);
    assert!(holds_secret(&server.data()).is_empty(), "the secret was not uploaded");
    for f in files(&server.data().join("studio-cache/cas")) {
        let name = f.file_name().unwrap().to_str().unwrap();
        let bytes = fs::read(&f).unwrap();
        assert_ne!(bytes, forged, "the forged object was not uploaded");
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), name);
    }
    let pushed = entries(&server);
    assert!(!pushed.is_empty(), "the honest entries are pushed");
    for m in pushed.values() {
        assert!(
            m["node"] != victim_node.as_str(),
            "an entry whose object lies is not pushed"
        );
    }

    // A build without the last build's state reads the lying entries:
    // each is a miss and its node is rebuilt; nothing escapes.
    fs::remove_dir_all(p.path("cache/state")).unwrap();
    fs::remove_file(&object).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    let run = p.build(&[]).ok();
    assert!(run.total("built") >= lies.len() as u64, "{}", run.run.stdout);
    assert_eq!(run.hashes(), built.hashes());
    assert_eq!(files(outside.path()), vec![secret.clone()]);
    assert!(holds_secret(&p.path("")).is_empty());
    p.assert_cache_sound();
}
