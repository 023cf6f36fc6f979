//! The remote cache against real servers on loopback: nginx with WebDAV PUT
//! (Bazel's HTTP cache layout) and moto's S3 server.

mod common;

use std::fs;

use common::servers::{self, Server};
use common::{TestProject, set};

/// Every node of the tiny example.
fn all_nodes(b: &common::Build) -> std::collections::BTreeSet<String> {
    b.nodes.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

/// Machine A builds with the remote; machine B, with an empty local cache,
/// builds the same episode from the remote alone, byte for byte.
fn shares_builds(server: &Server) {
    let a = TestProject::example("tiny");
    let built = a.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(built.total("fetched"), 0);
    assert_eq!(built.built(), all_nodes(&built), "A builds everything");
    // (The review loop may say a pool waits for a person; the remote warns of nothing.)
    assert!(
        !built
            .run
            .stderr
            .lines()
            .any(|l| l.starts_with("warning") && !l.contains("studio review")),
        "{}",
        built.run.stderr
    );

    let b = TestProject::example("tiny");
    let fetched = b.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(fetched.total("built"), 0, "B runs no job:\n{}", fetched.run.stdout);
    assert_eq!(
        fetched.with("fetched"),
        all_nodes(&fetched),
        "every node is a remote hit"
    );
    assert_eq!(fetched.hashes(), built.hashes());
    assert_eq!(b.tree("out"), a.tree("out"), "B's outputs are byte-identical to A's");
    b.assert_cache_sound();

    // Now local: a second build on B is a no-op that asks the remote nothing.
    let again = b.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(again.total("cached"), all_nodes(&again).len() as u64);
}

#[test]
fn nginx_webdav_remote_shares_builds() {
    let server = servers::nginx();
    shares_builds(&server);
    let log = server.log();
    assert!(log.contains("\"PUT /studio-cache/cas/"), "objects uploaded under cas/");
    assert!(log.contains("\"PUT /studio-cache/ac/"), "entries uploaded under ac/");
    assert!(log.contains("\"GET /studio-cache/ac/"), "entries fetched from ac/");
}

#[test]
fn s3_remote_shares_builds() {
    let server = servers::moto();
    shares_builds(&server);
}

/// Flip one byte of the episode's object on the remote: B refuses it,
/// rebuilds the episode, and (read-write) uploads a good copy over it.
fn refuses_corrupt_objects(server: &Server, corrupt: impl Fn(&str)) {
    let a = TestProject::example("tiny");
    let built = a.build_env(&["--remote", &server.url], &server.env).ok();
    let episode = built.node("episode:ep01")["output"].as_str().unwrap().to_string();
    corrupt(&episode);

    let b = TestProject::example("tiny");
    let run = b.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(run.built(), set(&["episode:ep01"]), "only the corrupt node is rebuilt");
    assert!(
        run.run.stderr.contains(&format!("refused cas/{episode}")),
        "the refusal is reported:\n{}",
        run.run.stderr
    );
    assert_eq!(run.hashes(), built.hashes());
    assert_eq!(b.tree("out"), a.tree("out"));
    b.assert_cache_sound();

    // B uploaded a good copy over the bad one: C fetches everything.
    let c = TestProject::example("tiny");
    let run = c.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(run.total("built"), 0, "{}", run.run.stderr);
    assert!(!run.run.stderr.contains("refused"));
}

#[test]
fn nginx_corrupt_object_is_refused_and_rebuilt() {
    let server = servers::nginx();
    let data = server.data();
    refuses_corrupt_objects(&server, |hash| {
        let path = data.join("studio-cache/cas").join(hash);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 0x01;
        fs::write(&path, bytes).unwrap();
    });
}

#[test]
fn s3_corrupt_object_is_refused_and_rebuilt() {
    use object_store::ObjectStoreExt;
    let server = servers::moto();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("studio")
        .with_endpoint(format!("http://127.0.0.1:{}", server.port))
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    refuses_corrupt_objects(&server, |hash| {
        let path = object_store::path::Path::from(format!("team-cache/cas/{hash}"));
        runtime.block_on(async {
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            // Truncated, as by an interrupted upload.
            let half = bytes.slice(..bytes.len() / 2);
            store.put(&path, half.into()).await.unwrap();
        });
    });
}

#[test]
fn a_corrupt_entry_is_refused() {
    let server = servers::nginx();
    let a = TestProject::example("tiny");
    a.build_env(&["--remote", &server.url], &server.env).ok();
    // Swap two entries: each now holds another key's manifest.
    let ac = server.data().join("studio-cache/ac");
    let mut entries: Vec<_> = fs::read_dir(&ac).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let (x, y) = (fs::read(&entries[0]).unwrap(), fs::read(&entries[1]).unwrap());
    fs::write(&entries[0], y).unwrap();
    fs::write(&entries[1], x).unwrap();

    let b = TestProject::example("tiny");
    let run = b.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(run.total("built"), 2, "the two swapped entries are rebuilt");
    assert_eq!(
        run.run.stderr.matches("belong to another key").count(),
        2,
        "{}",
        run.run.stderr
    );
    assert_eq!(b.tree("out"), a.tree("out"));
}

#[test]
fn remote_down_mid_build_finishes_locally_and_warns_once() {
    let mut server = servers::nginx();
    // Slow enough (a few seconds) that the remote dies while jobs still run.
    let a = TestProject::example("tiny").time_scale(0.001);
    let child = a
        .command(&["build", "--json", "--profile", "sim", "--remote", &server.url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the remote has taken some uploads, then stop it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.log().contains("\"PUT ") {
        assert!(std::time::Instant::now() < deadline, "no upload reached the remote");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let run = common::Build::parse_run(common::Run::from_output(out)).ok();
    assert_eq!(run.built(), all_nodes(&run), "the build finishes locally");
    assert_eq!(
        run.run.stderr.matches("warning: remote cache").count(),
        1,
        "one warning:\n{}",
        run.run.stderr
    );
    assert!(run.run.stderr.contains("continuing with the local cache only"));
}

#[test]
fn read_only_never_uploads_and_off_never_asks() {
    let server = servers::nginx();
    let a = TestProject::example("tiny");
    a.build_env(&["--remote", &server.url, "--remote-mode", "read-only"], &server.env)
        .ok();
    assert!(!server.log().contains("\"PUT "), "read-only uploads nothing");
    assert!(server.log().contains("\"GET "), "read-only still looks");

    let before = server.log().lines().count();
    let b = TestProject::example("tiny");
    b.build_env(&["--remote", &server.url, "--remote-mode", "off"], &server.env)
        .ok();
    assert_eq!(server.log().lines().count(), before, "off sends nothing");
}

#[test]
fn remote_from_studio_yaml_and_push_pull_stats() {
    let server = servers::nginx();
    let config = format!("\ncache:\n  remote: {}\n  mode: read-only\n", server.url);
    // A builds with no remote, then pushes.
    let a = TestProject::example("tiny");
    let built = a.build(&[]).ok();
    a.run(&["cache", "push", "--profile", "sim", "--remote", &server.url])
        .success();
    let pushed = a.run(&["cache", "push", "--profile", "sim", "--remote", &server.url]);
    assert!(
        pushed.success().stderr.contains("pushed 0 entries"),
        "{}",
        pushed.stderr
    );

    // B reads the remote from studio.yaml (read-only), pulls, then builds from local.
    let b = TestProject::example("tiny");
    let yaml = b.read("studio.yaml") + &config;
    b.write("studio.yaml", &yaml);
    let pull = b.run(&["cache", "pull", "--profile", "sim"]);
    assert!(
        pull.success()
            .stderr
            .contains(&format!("pulled {} entries", built.nodes.len())),
        "{}",
        pull.stderr
    );
    let run = b.build(&[]).ok();
    assert_eq!(
        run.total("cached"),
        built.nodes.len() as u64,
        "pulled entries are local hits"
    );
    assert_eq!(b.tree("out"), a.tree("out"));

    let stats = b.run(&["cache", "stats", "--json"]).success().stdout.clone();
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["remote"]["mode"], "read-only");
    assert_eq!(v["remote"]["reachable"], true);
    assert_eq!(v["totals"]["hits"], built.nodes.len() as u64);
    assert!(v["local"]["objects"].as_u64().unwrap() > 0);
}

#[test]
fn a_bad_remote_in_studio_yaml_is_a_diagnostic() {
    let p = TestProject::example("tiny");
    let yaml = p.read("studio.yaml") + "\ncache:\n  remote: ftp://example/cache\n  mode: sometimes\n";
    p.write("studio.yaml", &yaml);
    let run = p.run(&["build", "--profile", "sim"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown remote cache mode `sometimes`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("studio.yaml"), "{}", run.stderr);
    let line = yaml.lines().position(|l| l.contains("sometimes")).unwrap() + 1;
    assert!(run.stderr.contains(&format!("studio.yaml:{line}:")), "{}", run.stderr);

    p.edit("studio.yaml", "mode: sometimes", "mode: read-only");
    let run = p.run(&["build", "--profile", "sim"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("is not a supported remote cache URL"),
        "{}",
        run.stderr
    );
    let line = yaml.lines().position(|l| l.contains("ftp://")).unwrap() + 1;
    assert!(run.stderr.contains(&format!("studio.yaml:{line}:")), "{}", run.stderr);
}

/// Node id → the metadata of its `--json` record.
fn metadata(b: &common::Build) -> std::collections::BTreeMap<String, serde_json::Value> {
    b.nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["metadata"].clone()))
        .collect()
}

/// A manifest's metadata is part of its entry: uploaded with it, fetched
/// with it, shown on the machine that fetched it.
#[test]
fn metadata_survives_a_remote_round_trip() {
    let server = servers::nginx();
    let a = TestProject::example("tiny");
    let built = a.build_env(&["--remote", &server.url], &server.env).ok();
    let made = metadata(&built);
    assert!(made.values().all(|m| m["engine"].is_string()), "{made:?}");

    // On the remote, each entry holds its node's metadata.
    let ac = server.data().join("studio-cache/ac");
    let mut entries = 0;
    for e in fs::read_dir(ac).unwrap() {
        let entry: serde_json::Value = serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).unwrap();
        let node = entry["node"].as_str().unwrap();
        assert_eq!(entry["metadata"], made[node], "{node}");
        entries += 1;
    }
    assert_eq!(entries, made.len());

    let b = TestProject::example("tiny");
    let fetched = b.build_env(&["--remote", &server.url], &server.env).ok();
    assert_eq!(fetched.with("fetched"), all_nodes(&fetched));
    assert_eq!(metadata(&fetched), made, "fetched records carry what A's jobs recorded");
    let seed = &made["raw_video:ep01/s01/sh02"]["seed"];
    assert!(seed.is_u64(), "{seed}");
    let why = b.run(&["why", "raw_video:ep01/s01/sh02", "--profile", "sim"]);
    why.success();
    assert!(
        why.stdout.contains(&format!("seed: {seed}")) && why.stdout.contains("executor: comfy-main"),
        "{}",
        why.stdout
    );
}
