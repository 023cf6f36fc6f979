//! `studio watch` driven like a writer would: saves to the screenplay while
//! the watcher runs, read back through its `--json` event stream.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::{TestProject, set};
use serde_json::Value;

/// A running `studio watch --json`, killed when dropped.
struct Watcher {
    child: Child,
    events: Receiver<Value>,
}

impl Watcher {
    fn start(p: &TestProject, extra: &[&str]) -> Watcher {
        let mut args = vec!["watch", "ep01", "--profile", "sim", "--json"];
        args.extend_from_slice(extra);
        let mut child = p.spawn(&args);
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad event {line:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Watcher { child, events }
    }

    /// The next event of `kind`, skipping others. A minute is only a guard
    /// against a hang, not a speed requirement.
    fn next(&self, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["type"] == kind => return v,
                Ok(_) => continue,
                Err(e) => panic!("no `{kind}` event: {e:?}"),
            }
        }
    }

    /// Every event that arrives within `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            match self.events.recv_timeout(quiet) {
                Ok(v) => got.push(v),
                Err(RecvTimeoutError::Timeout) => return got,
                Err(RecvTimeoutError::Disconnected) => return got,
            }
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(v: &Value, field: &str) -> BTreeSet<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Save like an editor: write a temp file beside it, then rename over it.
fn save(p: &TestProject, rel: &str, text: &str) {
    let path = p.path(rel);
    let tmp = path.with_extension("yaml.tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

fn replace(p: &TestProject, rel: &str, from: &str, to: &str) {
    let text = p.read(rel);
    assert_eq!(text.matches(from).count(), 1, "`{from}` once in {rel}");
    save(p, rel, &text.replacen(from, to, 1));
}

const LINE_NODES: [&str; 4] = [
    "voice_line:ep01/s02/sh01/1",
    "scene_mix:ep01/s02",
    "episode_audio:ep01",
    "episode:ep01",
];

#[test]
fn rebuilds_each_save_survives_a_broken_one_and_debounces_bursts() {
    let p = TestProject::example("tiny");
    let mut w = Watcher::start(&p, &["--serve", "0"]);
    let url = w.next("serving")["url"].as_str().unwrap().to_string();
    let port: u16 = url.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let first = w.next("build");
    assert_eq!(first["state"], "done", "{first}");
    assert!(ids(&first, "built").len() > 30, "the first build makes everything");
    let episode = p.path("out/ep01/ep01.mp4");
    let v1 = std::fs::read(&episode).unwrap();

    // One dialogue line: exactly its voice, the scene mix, the episode audio and the mux.
    replace(&p, "episodes/ep01.yaml", "Okay, you win.", "Okay, you won.");
    let change = w.next("change");
    assert_eq!(ids(&change, "paths"), set(&["episodes/ep01.yaml"]));
    let second = w.next("build");
    assert_eq!(second["state"], "done");
    assert_eq!(ids(&second, "built"), set(&LINE_NODES));
    let v2 = std::fs::read(&episode).unwrap();
    assert_ne!(v1, v2, "the new episode is in out/");

    // --serve: the status names the new episode, and serves its bytes.
    let (status, body) = common::servers::http(port, "GET", "/status.json", &[]);
    assert_eq!(status, 200);
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s["generation"], 2);
    assert_eq!(s["state"], "done");
    let ep_url = s["episodes"][0]["url"].as_str().unwrap().to_string();
    let (status, served) = common::servers::http(port, "GET", &ep_url, &[]);
    assert_eq!(status, 200);
    assert_eq!(served, v2, "{ep_url} serves the latest episode");
    assert_eq!(s["episodes"][0]["hash"], blake3::hash(&v2).to_hex().as_str());
    let (_, page) = common::servers::http(port, "GET", "/", &[]);
    assert!(String::from_utf8_lossy(&page).contains("<video"));

    // A broken save: the diagnostic, a live watcher, the last good episode kept.
    let good = p.read("episodes/ep01.yaml");
    save(
        &p,
        "episodes/ep01.yaml",
        &good.replacen("speaker: mio", "speaker: nobody", 1),
    );
    let invalid = w.next("invalid");
    let error = invalid["error"].as_str().unwrap();
    assert!(
        error.contains("episodes/ep01.yaml:"),
        "names the file and line: {error}"
    );
    assert!(error.contains("nobody"), "{error}");
    let (_, body) = common::servers::http(port, "GET", "/status.json", &[]);
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s["state"], "invalid");
    assert_eq!(
        s["episodes"][0]["hash"],
        blake3::hash(&v2).to_hex().as_str(),
        "the status keeps the last good episode"
    );
    assert!(w.alive(), "the watcher survives a broken save");
    assert_eq!(std::fs::read(&episode).unwrap(), v2, "out/ keeps the last good build");

    // Fixing it back to the last good text is no change at all.
    save(&p, "episodes/ep01.yaml", &good);
    let quiet = w.drain(Duration::from_secs(2));
    assert!(
        quiet.iter().all(|e| e["type"] != "started"),
        "restoring the last good text builds nothing: {quiet:?}"
    );

    // Two saves in quick succession: one rebuild, of the final text.
    replace(&p, "episodes/ep01.yaml", "Okay, you won.", "Okay, you won!");
    std::thread::sleep(Duration::from_millis(20));
    replace(&p, "episodes/ep01.yaml", "Okay, you won!", "Okay, you won?");
    let third = w.next("build");
    assert_eq!(ids(&third, "built"), set(&LINE_NODES));
    let after = w.drain(Duration::from_secs(2));
    assert!(
        after.iter().all(|e| e["type"] != "started"),
        "a burst of saves is one rebuild: {after:?}"
    );
    assert_eq!(third["generation"], 3);

    // The watcher's result is the one a clean build of the final text gives.
    drop(w);
    let clean = TestProject::example("tiny");
    clean.write("episodes/ep01.yaml", &p.read("episodes/ep01.yaml"));
    clean.build(&[]).ok();
    assert_eq!(
        std::fs::read(clean.path("out/ep01/ep01.mp4")).unwrap(),
        std::fs::read(&episode).unwrap()
    );
}

/// A superseded build's cancelled and kept jobs.
fn superseded(v: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    assert_eq!(v["state"], "superseded", "{v}");
    let (cancelled, kept) = (ids(v, "cancelled"), ids(v, "kept"));
    eprintln!(
        "build {} superseded: cancelled {cancelled:?}, kept {kept:?}",
        v["generation"]
    );
    (cancelled, kept)
}

#[test]
fn a_save_during_a_build_cancels_only_the_jobs_it_changed() {
    // Slow jobs, so each save lands while a build runs; the GPU pool is busy
    // all build long, so a job is always running on it.
    let p = TestProject::example("tiny").time_scale(0.003);
    let w = Watcher::start(&p, &[]);
    w.next("started");
    std::thread::sleep(Duration::from_millis(1500));
    // Ducking only changes the mixes: the video job running now keeps going.
    replace(&p, "rules/audio.yaml", "duck_ratio: 6", "duck_ratio: 8");
    let (cancelled, kept) = superseded(&w.next("build"));
    assert!(cancelled.is_empty(), "a mix edit cancels no video job");
    assert!(!kept.is_empty(), "the running video job is kept");
    w.next("started");
    std::thread::sleep(Duration::from_millis(1000));
    // kai's design changes every image and video of kai.
    replace(&p, "studio.yaml", "short black hair", "short black hair, red scarf");
    let second = w.next("build");
    // The kept job finished for the second build, which did not run it again.
    assert!(kept.is_disjoint(&ids(&second, "built")), "{second}");
    let (cancelled, kept) = superseded(&second);
    assert!(!cancelled.is_empty() || !kept.is_empty(), "{second}");
    let third = w.next("build");
    assert_eq!(third["state"], "done", "{third}");
    // A cancelled job's key changed: it runs again. A kept one's did not.
    let rebuilt = ids(&third, "built");
    assert!(
        cancelled.is_subset(&rebuilt),
        "cancelled {cancelled:?} ⊄ rebuilt {rebuilt:?}"
    );
    assert!(kept.is_disjoint(&rebuilt), "kept {kept:?} were run again: {rebuilt:?}");
    let scratch: Vec<_> = std::fs::read_dir(p.path("cache/tmp")).unwrap().collect();
    assert!(scratch.is_empty(), "cancelled jobs leave no scratch: {scratch:?}");
    drop(w);

    let clean = TestProject::example("tiny");
    clean.write("studio.yaml", &p.read("studio.yaml"));
    clean.write("rules/audio.yaml", &p.read("rules/audio.yaml"));
    let reference = clean.build(&[]).ok();
    let now = p.build(&[]).ok();
    assert_eq!(now.total("built"), 0, "the watcher left everything built");
    assert_eq!(now.hashes(), reference.hashes(), "and equal to a clean build");
}

/// `GET path` on 127.0.0.1:`port` with `Host: host`: the status and body.
fn get_with_host(port: u16, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

#[test]
fn serve_answers_only_its_own_loopback_host() {
    let p = TestProject::example("tiny");
    let w = Watcher::start(&p, &["--serve", "0"]);
    let url = w.next("serving")["url"].as_str().unwrap().to_string();
    let port: u16 = url.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
    ] {
        let (status, body) = get_with_host(port, "/status.json", &host);
        assert_eq!(status, 200, "Host: {host} is served: {body}");
        assert!(body.contains("generation"), "{body}");
    }
    // What a DNS-rebinding page would send: its own name, our port. Also
    // the right name on another port, and loopback names that are not ours.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost:{}", port.wrapping_add(1)),
        "127.0.0.1".to_string(),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
    ] {
        for path in ["/", "/status.json", "/out/ep01/ep01.mp4"] {
            let (status, body) = get_with_host(port, path, &host);
            assert_eq!(status, 421, "Host: {host} {path} is refused: {body}");
            assert!(
                body.contains(&format!("127.0.0.1:{port}")) && !body.contains("generation"),
                "{body}"
            );
        }
    }
}

/// `GET /events` read as a browser's `EventSource` reads it: the HTTP head,
/// then a chunked body of `event:`/`data:` blocks.
struct EventStream {
    reader: BufReader<std::net::TcpStream>,
    chunked: bool,
    text: String,
}

impl EventStream {
    fn open(port: u16) -> EventStream {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A guard against a hang, not a speed requirement.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the head ends: {head}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        EventStream {
            reader,
            chunked: head.contains("transfer-encoding: chunked"),
            text: String::new(),
        }
    }

    /// More of the body.
    fn read_more(&mut self) {
        use std::io::Read;
        let mut line = String::new();
        assert!(self.reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if !self.chunked {
            self.text.push_str(&line);
            return;
        }
        let size = usize::from_str_radix(line.trim(), 16).unwrap_or_else(|e| panic!("chunk size {line:?}: {e}"));
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).unwrap();
        self.text.push_str(std::str::from_utf8(&chunk[..size]).unwrap());
    }

    /// The next event: its name and its data, parsed.
    fn next(&mut self) -> (String, Value) {
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // A block without an event is a keep-alive comment.
                if let Some(name) = name {
                    let v = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{name}: {data:?}: {e}"));
                    return (name, v);
                }
            }
            self.read_more();
        }
    }

    /// Events up to and including the next `build_finished`.
    fn one_build(&mut self) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        loop {
            let e = self.next();
            let last = e.0 == "build_finished";
            events.push(e);
            if last {
                return events;
            }
        }
    }
}

/// One build's events, as `/events` sent them: started with the plan, each
/// planned node settled once, each built node queued, started and finished
/// in that order, finished with totals. Returns the built nodes.
fn check_build_events(events: &[(String, Value)]) -> BTreeSet<String> {
    for (name, data) in events {
        assert_eq!(data["type"], name.as_str(), "the event name is its type");
    }
    let (first, _) = &events[0];
    assert_eq!(first, "build_started");
    // A build that grows (the review loop's rounds) announces its plan
    // again: the last plan holds every earlier one.
    let plans: Vec<BTreeSet<&str>> = (events.iter())
        .filter(|(n, _)| n == "build_started")
        .map(|(_, plan)| {
            (plan["nodes"].as_array().unwrap().iter())
                .map(|n| n["id"].as_str().unwrap())
                .collect()
        })
        .collect();
    let planned = plans.last().unwrap().clone();
    assert!(plans.iter().all(|p| p.is_subset(&planned)), "{plans:?}");
    let settled: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| ["node_finished", "node_cached", "node_fetched", "node_skipped"].contains(&n.as_str()))
        .map(|(_, d)| d)
        .collect();
    let settled_ids: BTreeSet<&str> = settled.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(settled.len(), planned.len(), "each node settles once");
    assert_eq!(settled_ids, planned);
    let built: BTreeSet<String> = settled
        .iter()
        .filter(|d| d["status"] == "built")
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let at = |name: &str, id: &str| {
        events
            .iter()
            .position(|(n, d)| n == name && d["id"] == id)
            .unwrap_or_else(|| panic!("no {name} for {id}"))
    };
    for id in &built {
        assert!(at("node_queued", id) < at("node_started", id), "{id}");
        assert!(at("node_started", id) < at("node_finished", id), "{id}");
        let d = &events[at("node_finished", id)].1;
        assert_eq!(d["metadata"]["engine"], d["engine"], "{d}");
    }
    let (last, totals) = events.last().unwrap();
    assert_eq!(last, "build_finished");
    assert_eq!(totals["built"], built.len() as u64, "{totals}");
    let cached = events.iter().filter(|(n, _)| n == "node_cached").count() as u64;
    assert_eq!(
        totals["cached"].as_u64().unwrap() + totals["cutoff"].as_u64().unwrap(),
        cached
    );
    assert_eq!(totals["failed"], 0);
    assert_eq!(totals["interrupted"], false);
    built
}

#[test]
fn serve_streams_build_events_and_the_graph() {
    let p = TestProject::example("tiny");
    let w = Watcher::start(&p, &["--serve", "0"]);
    let url = w.next("serving")["url"].as_str().unwrap().to_string();
    let port: u16 = url.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    let first = w.next("build");
    assert_eq!(first["state"], "done", "{first}");

    // The targets' graph.
    let (status, body) = common::servers::http(port, "GET", "/graph.json", &[]);
    assert_eq!(status, 200);
    let graph: Value = serde_json::from_slice(&body).unwrap();
    let graph_ids: BTreeSet<String> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(graph_ids, ids(&first, "built"), "the first build made the whole graph");
    assert!(
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["inputs"].is_array())
    );

    // A page that connects after the build gets that build's events.
    let mut events = EventStream::open(port);
    assert_eq!(check_build_events(&events.one_build()), ids(&first, "built"));

    // A save: the next build's events arrive as it runs.
    replace(&p, "episodes/ep01.yaml", "Okay, you win.", "Okay, you won.");
    let second = w.next("build");
    let live = events.one_build();
    assert_eq!(check_build_events(&live), set(&LINE_NODES));
    assert_eq!(ids(&second, "built"), set(&LINE_NODES));

    // The Host check guards the new routes too.
    for path in ["/events", "/graph.json"] {
        let (status, body) = get_with_host(port, path, &format!("evil.example:{port}"));
        assert_eq!(status, 421, "{path}: {body}");
    }
}
