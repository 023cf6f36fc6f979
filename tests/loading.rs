//! What a build reads: an episode's build reads, checks and graphs that
//! episode's screenplay only; `all` reads every one.

mod common;

use std::collections::BTreeSet;

use common::TestProject;

/// The sample with a screenplay for ep02 (studio.yaml lists it), a copy
/// of ep01's.
fn two_episodes() -> TestProject {
    let p = TestProject::sample();
    let ep01 = p.read("episodes/ep01.yaml");
    p.write(
        "episodes/ep02.yaml",
        &ep01.replacen("episode: ep01", "episode: ep02", 1),
    );
    p
}

fn ids(b: &common::Build) -> BTreeSet<String> {
    b.nodes.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_episodes_build_reads_only_its_own_screenplay() {
    let p = two_episodes();
    let all = p.build(&[]).ok();
    assert!(ids(&all).contains("episode:ep02"), "{:?}", ids(&all));
    // Both episodes by name: the same nodes as `all`.
    let both = p.build(&["ep01", "ep02"]).ok();
    assert_eq!(ids(&both), ids(&all));
    assert_eq!(both.total("built"), 0);

    // ep02's screenplay breaks: ep01's build does not read it.
    p.write("episodes/ep02.yaml", "episode: ep02\nscenes: [\n");
    let one = p.build(&["ep01"]).ok();
    assert_eq!(one.total("built"), 0);
    assert!(ids(&one).iter().all(|id| !id.contains("ep02")), "{:?}", ids(&one));
    assert!(!one.run.stderr.contains("ep02.yaml"), "{}", one.run.stderr);
    // The build of ep01 kept what the last full build knew of ep02's file.
    let state: serde_json::Value = serde_json::from_str(&p.read("cache/state/project.json")).unwrap();
    assert!(
        state["sources"]["episodes/ep02.yaml"].is_string(),
        "{}",
        state["sources"]
    );

    // Everything, or ep02 by name, reads it and says where it is broken.
    for args in [&[][..], &["ep02"][..], &["ep02/s01"][..]] {
        let b = p.run(&[&["build", "--profile", "sim"][..], args].concat());
        assert_eq!(b.code, 2, "{args:?}: {}", b.stderr);
        assert!(b.stderr.contains("episodes/ep02.yaml"), "{args:?}: {}", b.stderr);
    }
}

/// A stat of a file that tells a rewrite apart (an atomic write renames a
/// new inode into place).
fn identity(p: &TestProject, rel: &str) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(p.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (meta.ino(), meta.modified().unwrap())
}

/// The last build's state is kept per episode: a build of ep01 that
/// rebuilds part of it rewrites ep01's shard (and the project's, which
/// holds the sources) and leaves ep02's file as it was, and ep02 is still
/// up to date.
#[test]
fn an_episodes_build_writes_only_its_own_shard_of_the_state() {
    let p = two_episodes();
    p.build(&[]).ok();
    let ep01 = "cache/state/episodes/ep01.json";
    let ep02 = "cache/state/episodes/ep02.json";
    let (before01, before02) = (identity(&p, ep01), identity(&p, ep02));

    p.edit("episodes/ep01.yaml", "That''s me.", "That''s me, then.");
    let one = p.build(&["ep01"]).ok();
    assert!(one.total("built") > 0);
    assert_ne!(identity(&p, ep01), before01, "ep01's shard holds what was rebuilt");
    assert_eq!(
        identity(&p, ep02),
        before02,
        "ep02's shard was neither read for writing nor rewritten"
    );
    let two = p.build(&["ep02"]).ok();
    assert_eq!(two.total("built"), 0, "{}", two.run.stdout);
    assert_eq!(two.total("cached"), ids(&two).len() as u64);
}
