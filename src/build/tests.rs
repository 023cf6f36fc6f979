//! The drain state, driven on the tiny example with the sim executor and
//! watched through its events.

use std::sync::{Arc, Mutex};

use camino::Utf8PathBuf;

use super::*;

use crate::test_support::tiny;

/// Build `ep01` with the sim profile, recording every event.
fn build_recorded(root: &Utf8PathBuf) -> (Report, Vec<BuildEvent>, Vec<usize>) {
    build_ids(root, &["ep01"])
}

#[test]
fn every_node_settles_once_and_in_order() {
    let (_dir, root) = tiny();
    let (report, events, nodes) = build_recorded(&root);
    assert!(report.ok(), "{:?}", report.totals);

    assert_eq!(events[0].name(), "build_started", "{:?}", events[0]);
    // The review rounds grow the plan: the last `build_started` has it all.
    let Some(BuildEvent::BuildStarted { nodes: planned, pools }) =
        events.iter().rev().find(|e| e.name() == "build_started")
    else {
        unreachable!()
    };
    assert_eq!(planned.len(), nodes.len());
    assert!(planned.iter().all(|p| p.pool < pools.len()));
    let Some(BuildEvent::BuildFinished { totals, .. }) = events.last() else {
        panic!("the last event is build_finished");
    };
    assert_eq!(totals.built, nodes.len(), "a first build makes everything");

    // By id: the review rounds' and the gate's passes ran before the final
    // pass (their events carry their own pass's node numbers).
    let of = |e: &BuildEvent| {
        let v = serde_json::to_value(e).unwrap();
        v["id"].as_str().or(v["record"]["id"].as_str()).map(str::to_string)
    };
    let at = |name: &str, id: &str| {
        events
            .iter()
            .position(|e| e.name() == name && of(e).as_deref() == Some(id))
    };
    for (l, planned) in planned.iter().enumerate() {
        let settled: Vec<&NodeRecord> = events
            .iter()
            .filter_map(BuildEvent::record)
            .filter(|r| r.id == planned.id)
            .collect();
        assert_eq!(settled.len(), 1, "{} settles once", planned.id);
        let queued = at("node_queued", &planned.id).expect("queued");
        let started = at("node_started", &planned.id).expect("started");
        let finished = at("node_finished", &planned.id).expect("finished");
        assert!(
            queued < started && started < finished,
            "{}: {queued} {started} {finished}",
            planned.id
        );
        let record = &report.records[l];
        assert_eq!(record.status, Status::Built);
        assert!(record.output.is_some());
        assert_eq!(record.metadata["engine"], record.engine.as_str());
        assert!(record.metadata.contains_key("executor"), "{record:?}");
        let stochastic = crate::stages::registry::find(&record.engine).is_some_and(|e| e.stochastic);
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

/// A loopback URL that accepts connections, and one that refuses them.
fn up_and_down() -> (String, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || for _ in listener.incoming() {});
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    (up, down)
}

/// Build `ids` with the sim profile, recording every event; the state is
/// saved, as the CLI does, and the built closure returned.
fn build_ids(root: &Utf8PathBuf, ids: &[&str]) -> (Report, Vec<BuildEvent>, Vec<usize>) {
    let mut session = Session::open(root, Some("sim"), 2).expect("the tiny example opens");
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let nodes = session.select(&ids).unwrap();
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
    session.state.save().unwrap();
    let events = seen.lock().unwrap().clone();
    // The review rounds the build added are part of what it built.
    let nodes = session.graph.closure(&nodes);
    (report, events, nodes)
}

/// A host that refuses is set aside (`host_down`), its job is tried again
/// (`node_retrying`) and started on the other host; the host a try ran on
/// is in `node_started`, the record and the metadata's `executor`.
#[test]
fn a_refused_try_is_an_event_and_the_host_is_in_the_record() {
    let (_dir, root) = tiny();
    let (up, down) = up_and_down();
    let path = root.join("studio.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (start, end) = (text.find("executors:\n").unwrap(), text.find("\nprofiles:").unwrap());
    let mut executors = String::from("executors:\n");
    for (id, kind) in [
        ("comfy-main", "comfyui"),
        ("xtts-local", "xtts"),
        ("rvc-local", "rvc"),
        ("ace-step", "ace_step"),
    ] {
        executors.push_str(&format!("  - {{id: {id}, kind: {kind}, url: \"{up}\"}}\n"));
    }
    // The review loop's vision model.
    executors.push_str(&format!(
        "  - {{id: ollama-local, kind: ollama, url: \"{up}\", model: vision}}\n"
    ));
    for (id, url) in [("speech-a", &down), ("speech-b", &up)] {
        executors.push_str(&format!(
            "  - {{id: {id}, kind: openai_speech, url: \"{url}\", slots: 1}}\n"
        ));
    }
    let text = format!("{}{executors}{}", &text[..start], &text[end..])
        .replace("time_scale: 0.0002", "time_scale: 0.01")
        .replace("    simulate:\n", "    simulate:\n      check_hosts: true\n");
    std::fs::write(&path, text).unwrap();

    let voices = ["voice_line:ep01/s01/sh01/1", "voice_line:ep01/s01/sh02/1"];
    let (report, events, _) = build_ids(&root, &voices);
    assert!(report.ok(), "{:?}", report.records);
    let json: Vec<serde_json::Value> = events.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
    let down_events: Vec<&serde_json::Value> = json.iter().filter(|e| e["type"] == "host_down").collect();
    assert_eq!(down_events.len(), 1, "set aside once: {down_events:?}");
    assert_eq!(down_events[0]["host"], "speech-a");
    let retried = json
        .iter()
        .position(|e| e["type"] == "node_retrying")
        .expect("a try was retried");
    assert_eq!(json[retried]["engine"], "edge_tts", "the same engine, on another host");
    assert!(
        json[retried]["error"].as_str().unwrap().contains("cannot connect"),
        "{}",
        json[retried]
    );
    let node = json[retried]["node"].clone();
    let started: Vec<&serde_json::Value> = (json.iter())
        .filter(|e| e["type"] == "node_started" && e["node"] == node)
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(
        (started[0]["host"].as_str(), started[1]["host"].as_str()),
        (Some("speech-a"), Some("speech-b"))
    );
    assert_eq!(started[1]["attempt"], 1);
    for r in report.records.iter().filter(|r| r.status == Status::Built) {
        let executor = r.metadata["executor"].as_str().unwrap();
        match &r.host {
            Some(host) => assert_eq!(executor, host, "{r:?}"),
            None => assert!(["cpu", "inline"].contains(&executor), "work done here: {r:?}"),
        }
        assert!(r.started.is_some_and(|s| r.ended.is_some_and(|e| s <= e)), "{r:?}");
    }
    for id in voices {
        let r = report.records.iter().find(|r| r.id == id).unwrap();
        assert_eq!(r.host.as_deref(), Some("speech-b"), "{r:?}");
    }
}

/// A group whose only host dies (here: refuses from the start, which the
/// sim's host check meets mid-build, as a real build meets a host that
/// died): each job tries it at most once, and the jobs waiting for it go
/// to their fallback engine (`espeak` for `edge_tts`) instead of waiting
/// out its cool-downs one after another.
#[test]
fn a_lone_host_going_down_sends_its_jobs_to_their_fallback_at_once() {
    let (_dir, root) = tiny();
    let (up, down) = up_and_down();
    let path = root.join("studio.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (start, end) = (text.find("executors:\n").unwrap(), text.find("\nprofiles:").unwrap());
    let mut executors = String::from("executors:\n");
    for (id, kind) in [
        ("comfy-main", "comfyui"),
        ("xtts-local", "xtts"),
        ("rvc-local", "rvc"),
        ("ace-step", "ace_step"),
    ] {
        executors.push_str(&format!("  - {{id: {id}, kind: {kind}, url: \"{up}\"}}\n"));
    }
    executors.push_str(&format!(
        "  - {{id: ollama-local, kind: ollama, url: \"{up}\", model: vision}}\n"
    ));
    executors.push_str(&format!(
        "  - {{id: speech-a, kind: openai_speech, url: \"{down}\", slots: 1}}\n"
    ));
    let text = format!("{}{executors}{}", &text[..start], &text[end..])
        .replace("time_scale: 0.0002", "time_scale: 0.01")
        .replace("    simulate:\n", "    simulate:\n      check_hosts: true\n");
    std::fs::write(&path, text).unwrap();

    let session = Session::open(&root, Some("sim"), 2).unwrap();
    let voices: Vec<String> = (session.graph.nodes.iter())
        .filter(|n| n.kind == crate::kind::NodeKind::VoiceLine)
        .map(|n| n.id.clone())
        .collect();
    drop(session);
    assert!(voices.len() >= 3, "several jobs for the one host: {voices:?}");
    let ids: Vec<&str> = voices.iter().map(String::as_str).collect();
    let (report, events, _) = build_ids(&root, &ids);
    assert!(report.ok(), "{:?}", report.records);
    let json: Vec<serde_json::Value> = events.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
    let mut tries_on_dead_host = std::collections::HashMap::new();
    for e in json
        .iter()
        .filter(|e| e["type"] == "node_started" && e["host"] == "speech-a")
    {
        *tries_on_dead_host.entry(e["node"].to_string()).or_insert(0) += 1;
    }
    assert!(!tries_on_dead_host.is_empty(), "the host was tried");
    assert!(
        tries_on_dead_host.values().all(|&n| n == 1),
        "no job waited for the dead host to try it again: {tries_on_dead_host:?}"
    );
    for id in &voices {
        let r = report.records.iter().find(|r| &r.id == id).unwrap();
        assert_eq!(r.engine, "espeak", "{r:?}");
        assert!(r.provisional, "a host that is down may come back: {r:?}");
    }
    // The jobs that never reached the host fell back with the group's error.
    let rerouted = (json.iter())
        .filter(|e| e["type"] == "node_retrying" && e["engine"] == "espeak")
        .count();
    assert_eq!(rerouted, voices.len(), "{json:#?}");
}
