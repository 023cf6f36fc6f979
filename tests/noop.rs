//! The no-op stamp (`cache/noop/`): a build that found nothing to do,
//! asked again, is answered from its stamp with the same report, and
//! anything that build depended on changing sends the next build down the
//! full path.
//!
//! Which path answered is seen on disk, not timed: the full path rewrites
//! the stamp (a new file: a new inode) or removes it, and the answer from
//! a stamp leaves it as it was.

#![allow(clippy::disallowed_methods)] // a copy of the binary under test is started

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Build, TestProject};
use serde_json::Value;

/// Every stamp: its file name → inode.
fn stamps(p: &TestProject) -> BTreeMap<String, u64> {
    let Ok(dir) = fs::read_dir(p.path("cache/noop")) else {
        return BTreeMap::new();
    };
    dir.map(|e| {
        let e = e.unwrap();
        (e.file_name().into_string().unwrap(), e.metadata().unwrap().ino())
    })
    .collect()
}

/// Set every project file's modification time a minute back, as a writer's
/// files are between builds (a file changed within the last two seconds is
/// too recent for its stat to stand for its content, and writes no stamp).
fn age(p: &TestProject) {
    fn walk(dir: &Path, when: SystemTime) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            if name == "cache" || name == "out" {
                continue;
            }
            if path.is_dir() {
                walk(&path, when);
            } else {
                fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(when)
                    .unwrap();
            }
        }
    }
    walk(&p.root, SystemTime::now() - Duration::from_secs(60));
}

/// The tiny example built, then built again with nothing to do, which
/// wrote the stamp of `studio build --profile sim`: the project, that
/// no-op's report and the stamps.
fn stamped() -> (TestProject, Build, BTreeMap<String, u64>) {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    assert!(stamps(&p).is_empty(), "a build that built something leaves no stamp");
    age(&p);
    let noop = p.build(&[]).ok();
    assert_eq!(noop.total("built"), 0);
    let s = stamps(&p);
    assert_eq!(s.len(), 1, "the no-op wrote its stamp");
    (p, noop, s)
}

/// A report's node lines, by id, and its totals without the time taken.
fn report(b: &Build) -> (BTreeMap<String, Value>, Value) {
    let nodes = (b.nodes.iter())
        .map(|n| (n["id"].as_str().unwrap().to_string(), n.clone()))
        .collect();
    let mut totals = b.totals.clone();
    totals.as_object_mut().unwrap().remove("seconds");
    (nodes, totals)
}

#[test]
fn a_repeated_noop_is_answered_from_its_stamp_with_the_same_report() {
    let (p, full, before) = stamped();
    let answered = p.build(&[]).ok();
    assert_eq!(stamps(&p), before, "answered from the stamp, which stays as it was");
    assert_eq!(
        report(&answered),
        report(&full),
        "the same lines and totals as the full path"
    );
    assert_eq!(answered.nodes.len(), full.nodes.len());
    assert_eq!(answered.run.stdout.lines().count(), full.run.stdout.lines().count());
    assert!(answered.run.stdout.ends_with("}\n"), "every line ends in a newline");

    // Without --json: the same summary line as the full path gives.
    let human = p.run(&["build", "--profile", "sim"]);
    human.success();
    assert_eq!(stamps(&p), before);
    let summary = human.stderr.lines().last().unwrap();
    let expected = format!(
        "done: 0 built, {} cached, 0 cut off, 0 failed, 0 skipped in ",
        full.total("cached")
    );
    assert!(summary.starts_with(&expected), "{summary:?} vs {expected:?}");
}

#[test]
fn an_edited_source_is_built_and_the_next_noop_stamps_again() {
    let (p, _, before) = stamped();
    p.edit("episodes/ep01.yaml", "Okay, you win.", "Fine, you win.");
    let b = p.build(&[]).ok();
    assert!(b.built().contains("voice_line:ep01/s02/sh01/1"), "{:?}", b.built());
    assert!(stamps(&p).is_empty(), "a build that built something removes the stamp");
    age(&p);
    let again = p.build(&[]).ok();
    assert_eq!(again.total("built"), 0);
    let after = stamps(&p);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new stamp");
}

/// What the loader depended on without reading it: the listings of
/// `rules/` and `episodes/`, and `approvals.yaml` not being there.
#[test]
fn a_new_file_where_the_loader_looks_is_seen() {
    let (p, _, before) = stamped();
    p.write("rules/zz-new.yaml", "kind: [unclosed\n");
    let broken = p.run(&["build", "--json", "--profile", "sim"]);
    assert_eq!(
        broken.code, 2,
        "the new rules file is read and refused: {}",
        broken.stderr
    );
    assert!(broken.stderr.contains("zz-new.yaml"), "{}", broken.stderr);
    fs::remove_file(p.path("rules/zz-new.yaml")).unwrap();
    p.build(&[]).ok();
    assert_eq!(stamps(&p), before, "with the file gone, the stamp holds again");

    p.write(
        "approvals.yaml",
        "aiko:\n  - {image: 000000000000, decision: nonsense}\n",
    );
    let approvals = p.run(&["build", "--json", "--profile", "sim"]);
    assert_ne!(approvals.code, 0, "approvals.yaml is read: {}", approvals.stderr);
    assert!(approvals.stderr.contains("approvals.yaml"), "{}", approvals.stderr);
}

/// What the build found in the store and in `out/`.
#[test]
fn outputs_gone_or_changed_are_restored_by_the_full_path() {
    let (p, _, before) = stamped();
    let episode = p.path("out/ep01/ep01.mp4");
    fs::remove_file(&episode).unwrap();
    let b = p.build(&[]).ok();
    assert_eq!(b.total("built"), 0);
    assert!(episode.is_file(), "copied out again");
    let restamped = stamps(&p);
    assert_ne!(restamped, before, "the full path ran and stamped again");

    let voice = p.path("out/ep01/s01/sh01/voice-1.wav");
    let original = fs::read(&voice).unwrap();
    fs::write(&voice, b"scribbled over").unwrap();
    p.build(&[]).ok();
    assert_eq!(fs::read(&voice).unwrap(), original, "the edited copy is restored");
    let restamped_again = stamps(&p);
    assert_ne!(restamped_again, restamped);

    // An object gone from the store: its node is built again.
    let hash = b.node("voice_line:ep01/s01/sh01/1")["output"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(p.path(&format!("cache/objects/{}/{hash}", &hash[..2]))).unwrap();
    let rebuilt = p.build(&[]).ok();
    assert!(
        rebuilt.built().contains("voice_line:ep01/s01/sh01/1"),
        "{:?}",
        rebuilt.built()
    );
    assert!(stamps(&p).is_empty());
}

/// What the build's outcome was keyed on besides the project: the last
/// build's state, the studio binary, the targets and the remote.
#[test]
fn another_state_binary_target_or_remote_is_not_answered_from_the_stamp() {
    let (p, _, before) = stamped();

    // A shard of the state rewritten (here with the same text: only its
    // identity changes), by the build of another episode, say.
    let shard = p.path("cache/state/episodes/ep01.json");
    let state = fs::read(&shard).unwrap();
    fs::remove_file(&shard).unwrap();
    fs::write(&shard, state).unwrap();
    p.build(&[]).ok();
    let after_state = stamps(&p);
    assert_ne!(after_state, before, "the full path ran");

    // Another studio binary (a copy: the same code, but nothing says so).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("studio");
    fs::copy(env!("CARGO_BIN_EXE_studio"), &copy).unwrap();
    let out = std::process::Command::new(&copy)
        .current_dir(&p.root)
        .args(["build", "--json", "--profile", "sim"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after_binary = stamps(&p);
    assert_ne!(after_binary, after_state, "the copy took the full path");

    // Other targets have a stamp of their own (the first build of the
    // scene builds its picture alone, which the episode does not need).
    p.build(&["ep01/s01"]).ok();
    assert_eq!(p.build(&["ep01/s01"]).ok().total("built"), 0);
    let with_scene = stamps(&p);
    assert_eq!(with_scene.len(), 2, "{with_scene:?}");
    assert!(after_binary.iter().all(|(k, v)| with_scene.get(k) == Some(v)));

    // A build with a remote cache writes none (the remote is not checked
    // by a stamp), and leaves the others be.
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    p.build(&["--remote", &url]).ok();
    assert_eq!(stamps(&p), with_scene, "no stamp for a build with a remote");
}
