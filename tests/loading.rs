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
    let state: serde_json::Value = serde_json::from_str(&p.read("cache/state.json")).unwrap();
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
