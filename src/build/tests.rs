//! The drain state, driven on the tiny example with the sim executor and
//! watched through its events.

use std::path::Path;
use std::sync::{Arc, Mutex};

use camino::Utf8PathBuf;

use super::*;

/// A copy of `examples/tiny` (following the `rules` link).
fn tiny() -> (tempfile::TempDir, Utf8PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let (src, dest) = (e.path(), to.join(e.file_name()));
            if std::fs::metadata(&src).unwrap().is_dir() {
                copy(&src, &dest);
            } else {
                std::fs::copy(&src, &dest).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().join("tiny")).unwrap();
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny"),
        root.as_std_path(),
    );
    (dir, root)
}

/// Build `ep01` with the sim profile, recording every event.
fn build_recorded(root: &Utf8PathBuf) -> (Report, Vec<BuildEvent>, Vec<usize>) {
    let mut session = Session::open(root, Some("sim"), 2).expect("the tiny example opens");
    let nodes = session.select(&["ep01".to_string()]).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let opts = Options {
        events: Events::default().with(Arc::new(move |e: &BuildEvent| s.lock().unwrap().push(e.clone()))),
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(build(&mut session, &nodes, &opts, CancellationToken::new()));
    session.state.save(&session.layout.state_file()).unwrap();
    let events = seen.lock().unwrap().clone();
    (report, events, nodes)
}

/// The position of the first event of `name` about node `l`.
fn position(events: &[BuildEvent], name: &str, l: usize) -> Option<usize> {
    events
        .iter()
        .position(|e| e.name() == name && serde_json::to_value(e).unwrap()["node"].as_u64() == Some(l as u64))
}

#[test]
fn every_node_settles_once_and_in_order() {
    let (_dir, root) = tiny();
    let (report, events, nodes) = build_recorded(&root);
    assert!(report.ok(), "{:?}", report.totals);

    let BuildEvent::BuildStarted { nodes: planned, pools } = &events[0] else {
        panic!("the first event is build_started: {:?}", events[0]);
    };
    assert_eq!(planned.len(), nodes.len());
    assert!(planned.iter().all(|p| p.pool < pools.len()));
    let Some(BuildEvent::BuildFinished { totals, .. }) = events.last() else {
        panic!("the last event is build_finished");
    };
    assert_eq!(totals.built, nodes.len(), "a first build makes everything");

    for (l, planned) in planned.iter().enumerate() {
        let settled: Vec<&NodeRecord> = events
            .iter()
            .filter(|e| serde_json::to_value(e).unwrap()["node"].as_u64() == Some(l as u64))
            .filter_map(BuildEvent::record)
            .collect();
        assert_eq!(settled.len(), 1, "node {l} settles once");
        assert_eq!(settled[0].id, planned.id);
        let queued = position(&events, "node_queued", l).expect("queued");
        let started = position(&events, "node_started", l).expect("started");
        let finished = position(&events, "node_finished", l).expect("finished");
        assert!(
            queued < started && started < finished,
            "node {l}: {queued} {started} {finished}"
        );
        let record = &report.records[l];
        assert_eq!(record.status, Status::Built);
        assert!(record.output.is_some());
        assert_eq!(record.metadata["engine"], record.engine.as_str());
        assert!(record.metadata.contains_key("executor"), "{record:?}");
        let stochastic = crate::engines::find(&record.engine).is_some_and(|e| e.stochastic);
        assert_eq!(record.metadata.contains_key("seed"), stochastic, "{record:?}");
        assert!(
            !record.metadata.contains_key("host"),
            "the sim calls no host: {record:?}"
        );
    }

    // Again: every node cached, no job started.
    let (again, events, _) = build_recorded(&root);
    assert_eq!(again.totals.cached, nodes.len());
    assert!(events.iter().all(|e| e.name() != "node_started"));
    let cached = events.iter().filter(|e| e.name() == "node_cached").count();
    assert_eq!(cached, nodes.len());
}

#[test]
fn without_subscribers_nothing_is_built_for_them() {
    let bus = events::Bus::new(&Events::default());
    bus.emit(|| panic!("an event built for no one"));
    let progress = bus.job_progress(0, "x", 0);
    progress.report(Some(0.5), "nobody listens");
}

#[test]
fn nothing_is_sent_after_the_last_event() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let events = Events::default().with(Arc::new(move |e: &BuildEvent| s.lock().unwrap().push(e.name())));
    let bus = events::Bus::new(&events);
    let progress = bus.job_progress(3, "voice_line:x", 1);
    progress.report(Some(0.5), "half");
    bus.close_with(|| BuildEvent::BuildFinished {
        totals: Totals::default(),
        interrupted: false,
        superseded: true,
        stopped: None,
    });
    std::thread::sleep(crate::exec::PROGRESS_INTERVAL);
    progress.report(Some(0.9), "a job the build left running");
    bus.close_with(|| panic!("closed once"));
    assert_eq!(*seen.lock().unwrap(), vec!["node_progress", "build_finished"]);
}
