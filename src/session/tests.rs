//! What a session remembers of the disk between the review loop's walk and
//! the build's plan.

use camino::Utf8PathBuf;

use super::Session;

/// A copy of `examples/tiny` (following the `rules` link), built with the
/// sim profile: its state saved as the CLI saves it.
fn built_tiny() -> (tempfile::TempDir, Utf8PathBuf) {
    let (dir, root) = crate::test_support::tiny();
    let mut session = Session::open(&root, Some("sim"), 2).unwrap();
    let nodes = session.select(&["ep01".to_string()]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = crate::build::Options::default();
    let report = runtime.block_on(crate::build::build(&mut session, &nodes, &opts, Default::default()));
    assert!(report.ok(), "{:?}", report.totals);
    session.state.save().unwrap();
    (dir, root)
}

/// The episode's node, and the file under `out/` it left.
fn episode(session: &Session) -> (usize, Utf8PathBuf) {
    let g = session.graph.get("episode:ep01").expect("the episode node");
    let node = &session.graph.nodes[g];
    let state = session.state.node(&node.id).unwrap();
    let out = session
        .layout
        .out
        .join(format!("{}.{}", node.out_stem, state.outputs[0].suffix));
    assert!(out.is_file(), "{out}");
    (g, out)
}

#[test]
fn an_answer_is_remembered_until_the_plan_asks_and_forgets() {
    let (_dir, root) = built_tiny();
    let session = Session::open(&root, Some("sim"), 2).unwrap();
    // Opening walks the takes, but keeps nothing it found for later.
    assert!(session.checked.lock().unwrap().is_empty());
    let (g, out) = episode(&session);
    assert_eq!(session.intact_all(&[g], false), vec![true]);
    std::fs::remove_file(&out).unwrap();
    // Asked again before the plan: the walk's answer.
    assert_eq!(session.intact_all(&[g], false), vec![true]);
    // The plan gets it too, and forgets it: the next build looks again.
    assert_eq!(session.intact_all(&[g], true), vec![true]);
    assert!(session.checked.lock().unwrap().is_empty());
    assert_eq!(session.intact_all(&[g], false), vec![false]);
    assert!(!session.intact(g));
}

#[test]
fn a_changed_state_entry_is_looked_at_again() {
    let (_dir, root) = built_tiny();
    let mut session = Session::open(&root, Some("sim"), 2).unwrap();
    let (g, out) = episode(&session);
    assert_eq!(session.intact_all(&[g], false), vec![true]);
    std::fs::remove_file(&out).unwrap();
    // A pass of the build rebuilt the node: its entry is not the one the
    // answer was for.
    let id = session.graph.nodes[g].id.clone();
    let mut s = session.state.node(&id).unwrap().clone();
    s.duration = Some(1234.5);
    session.state.insert_node(id, s);
    assert_eq!(session.intact_all(&[g], false), vec![false]);
}

#[test]
fn open_for_leaves_the_rounds_to_the_build() {
    let (_dir, root) = built_tiny();
    // `open` derives each character's loop; a build's session does not
    // (the build derives it itself, once).
    assert!(!Session::open(&root, Some("sim"), 2).unwrap().rounds.is_empty());
    let session = Session::open_for(&root, Some("sim"), 2, &["ep01".to_string()]).unwrap();
    assert!(session.rounds.is_empty());
    assert!(session.checked.lock().unwrap().is_empty());
}
