//! Executor protocols and host pools: several executors of one protocol
//! share the work, a host that refuses is set aside and its jobs go to
//! another, each rule entry goes to its own group; the old kind names and
//! wrong groups are located mistakes.
//!
//! The sim profile runs service engines without services; with
//! `check_hosts: true` it checks that the hosts answer: every job on a
//! service host first opens a TCP connection to the host's loopback URL,
//! here a listener the test runs, or a closed port.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Build, TestProject};
use serde_json::Value;

const VOICES: [&str; 3] = [
    "voice_line:ep01/s01/sh01/1",
    "voice_line:ep01/s01/sh02/1",
    "voice_line:ep01/s02/sh01/1",
];

/// A loopback port that accepts connections (and counts them).
struct Up {
    url: String,
    accepted: Arc<AtomicUsize>,
}

fn up() -> Up {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Up { url, accepted }
}

/// A loopback URL nothing listens on: connections are refused.
fn down() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// examples/tiny in the sim profile with `check_hosts: true`, its
/// executors replaced by `executors` (YAML list items).
fn project(scale: f64, executors: &str) -> TestProject {
    let p = TestProject::example("tiny").time_scale(scale);
    let text = p.read("studio.yaml");
    let start = text.find("executors:\n").unwrap();
    let end = text.find("\nprofiles:").unwrap();
    p.write(
        "studio.yaml",
        &format!("{}executors:\n{executors}{}", &text[..start], &text[end..]),
    );
    p.edit(
        "studio.yaml",
        "    simulate:\n",
        "    simulate:\n      check_hosts: true\n",
    );
    p
}

/// Every executor the tiny rules need, at `url`, and `speech` as the
/// `openai_speech` hosts (`(id, url)`, one slot each).
fn executors(url: &str, speech: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (id, kind) in [
        ("comfy-main", "comfyui"),
        ("xtts-local", "xtts"),
        ("rvc-local", "rvc"),
        ("ace-step", "ace_step"),
    ] {
        s.push_str(&format!("  - {{id: {id}, kind: {kind}, url: \"{url}\"}}\n"));
    }
    // The vision model of the review loop.
    s.push_str(&format!(
        "  - {{id: ollama-local, kind: ollama, url: \"{url}\", model: vision}}\n"
    ));
    for (id, url) in speech {
        s.push_str(&format!(
            "  - {{id: {id}, kind: openai_speech, url: \"{url}\", slots: 1}}\n"
        ));
    }
    s
}

/// `(host, started, ended)` of each node built.
fn spans(b: &Build) -> BTreeMap<String, (String, f64, f64)> {
    b.nodes
        .iter()
        .filter(|n| n["status"] == "built")
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                (
                    n["host"].as_str().unwrap_or("").to_string(),
                    n["started"].as_f64().unwrap(),
                    n["ended"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

fn warnings_about(stderr: &str, host: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains(&format!("`{host}`")))
        .count()
}

#[test]
fn two_hosts_of_one_protocol_run_two_jobs_at_once() {
    let server = up();
    let p = project(
        0.05,
        &executors(&server.url, &[("speech-a", &server.url), ("speech-b", &server.url)]),
    );
    let b = p.build(&VOICES).ok();
    let spans = spans(&b);
    assert_eq!(spans.len(), 3, "{:?}", b.nodes);
    for id in VOICES {
        assert_eq!(b.node(id)["engine"], "edge_tts", "{id}");
    }
    let hosts: std::collections::BTreeSet<&str> = spans.values().map(|(h, _, _)| h.as_str()).collect();
    assert_eq!(hosts, ["speech-a", "speech-b"].into(), "both hosts worked: {spans:?}");
    let all: Vec<&(String, f64, f64)> = spans.values().collect();
    let overlap = |a: &(String, f64, f64), b: &(String, f64, f64)| a.1 < b.2 && b.1 < a.2;
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.0 == b.0 {
                assert!(!overlap(a, b), "one slot per host: {a:?} and {b:?} overlap");
            }
        }
    }
    assert!(
        all.iter()
            .enumerate()
            .any(|(i, a)| all[i + 1..].iter().any(|b| a.0 != b.0 && overlap(a, b))),
        "two jobs ran at once, one on each host: {spans:?}"
    );
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        3,
        "each job checked its host once"
    );
    assert_eq!(
        warnings_about(&b.run.stderr, "speech-a") + warnings_about(&b.run.stderr, "speech-b"),
        0
    );
}

#[test]
fn a_host_that_refuses_is_set_aside_and_its_jobs_run_on_the_other() {
    let server = up();
    let refused = down();
    // speech-a is listed first, so it gets the first job.
    let p = project(
        0.01,
        &executors(&server.url, &[("speech-a", &refused), ("speech-b", &server.url)]),
    );
    let b = p.build(&VOICES).ok();
    for id in VOICES {
        let n = b.node(id);
        assert_eq!(n["status"], "built", "{id}");
        assert_eq!(
            n["engine"], "edge_tts",
            "{id}: retried on the other host, not fallen back"
        );
        assert_eq!(n["host"], "speech-b", "{id}");
    }
    assert_eq!(
        warnings_about(&b.run.stderr, "speech-a"),
        1,
        "one warning for the host, not one per job:\n{}",
        b.run.stderr
    );
    let warning = b.run.stderr.lines().find(|l| l.contains("`speech-a`")).unwrap();
    let line = line_of(&p, "studio.yaml", "{id: speech-a,");
    for want in [
        format!("studio.yaml:{line}"),
        "group `openai_speech`".to_string(),
        "set aside".to_string(),
        "other hosts".to_string(),
        format!("cannot connect to {refused}"),
    ] {
        assert!(warning.contains(&want), "warning lacks `{want}`: {warning}");
    }
    assert_eq!(warnings_about(&b.run.stderr, "speech-b"), 0, "{}", b.run.stderr);
}

#[test]
fn with_every_host_down_jobs_wait_within_their_retries_then_fall_back() {
    let server = up();
    let refused = down();
    let p = project(0.001, &executors(&server.url, &[("speech-a", &refused)]));
    let b = p.build(&VOICES).ok();
    for id in VOICES {
        let n = b.node(id);
        assert_eq!(n["status"], "built", "{id}");
        assert_eq!(n["engine"], "espeak", "{id}: retries spent, the fallback ran");
        assert!(n.get("host").is_none(), "espeak runs here: {n}");
        assert!(n["error"].as_str().unwrap().contains("fell back to espeak"), "{n}");
    }
    assert_eq!(
        warnings_about(&b.run.stderr, "speech-a"),
        1,
        "one warning however often it fails:\n{}",
        b.run.stderr
    );
    assert!(b.run.stderr.contains("its jobs wait for it"), "{}", b.run.stderr);
}

/// Each `choose:` entry, and a fallback, sends its engine to its own group.
#[test]
fn choose_entries_and_fallbacks_name_their_own_executor_group() {
    let server = up();
    let comfy = |id: &str, group: &str| {
        format!(
            "  - {{id: {id}, kind: comfyui, url: \"{}\", group: {group}}}\n",
            server.url
        )
    };
    let mut list = executors(&server.url, &[("tts-local", &server.url)]);
    list.push_str(&comfy("gpu-i2v", "i2v"));
    list.push_str(&comfy("gpu-t2v", "t2v"));
    list.push_str(&comfy("gpu-spare", "spare"));
    let setup = || {
        let p = project(0.0, &list);
        p.edit(
            "rules/video.yaml",
            "          engine: framepack_i2v\n        - engine: wan_t2v\n      fallbacks: [wan_t2v]\n",
            "          engine: framepack_i2v\n          executor: i2v\n        - engine: wan_t2v\n          executor: t2v\n      fallbacks: [{engine: wan_t2v, executor: spare}]\n",
        );
        p
    };
    let p = setup();
    let b = p.build(&["ep01"]).ok();
    let raw: Vec<&Value> = b.nodes.iter().filter(|n| n["kind"] == "raw_video").collect();
    let mut seen = std::collections::BTreeSet::new();
    for n in &raw {
        let want = match n["engine"].as_str().unwrap() {
            "framepack_i2v" => "gpu-i2v",
            "wan_t2v" => "gpu-t2v",
            other => panic!("unexpected engine {other}: {n}"),
        };
        assert_eq!(n["host"], want, "{n}");
        seen.insert(want);
    }
    assert_eq!(seen, ["gpu-i2v", "gpu-t2v"].into(), "{raw:?}");
    // Other ComfyUI engines go to the protocol's default group.
    for n in b
        .nodes
        .iter()
        .filter(|n| n["kind"] == "shot_video" || n["kind"] == "candidate")
    {
        assert_eq!(n["host"], "comfy-main", "{n}");
    }

    // The fallback runs on its own group.
    let p = setup();
    p.edit(
        "studio.yaml",
        "    simulate:\n",
        "    simulate:\n      failures:\n        - {node: \"raw_video:ep01/s01/sh02\", engine: framepack_i2v}\n",
    );
    let b = p.build(&["ep01/s01/sh02"]).ok();
    let n = b.node("raw_video:ep01/s01/sh02");
    assert_eq!(n["engine"], "wan_t2v", "{n}");
    assert_eq!(n["host"], "gpu-spare", "{n}");
}

/// 1-based line where `marker` starts in `rel`.
fn line_of(p: &TestProject, rel: &str, marker: &str) -> usize {
    let text = p.read(rel);
    assert_eq!(text.matches(marker).count(), 1, "`{marker}` must occur once in {rel}");
    text[..text.find(marker).unwrap()].matches('\n').count() + 1
}

/// `studio graph` with a project mistake: exit 2, the messages, the place.
fn refused(p: &TestProject, file: &str, marker: &str, wants: &[&str]) {
    let line = line_of(p, file, marker);
    let run = p.run(&["graph", "ep01", "--profile", "sim"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let flat = run
        .stderr
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    for want in wants {
        assert!(flat.contains(want), "stderr lacks `{want}`:\n{}", run.stderr);
    }
    assert!(
        run.stderr.contains(&format!("[{file}:{line}:")),
        "want {file}:{line}:\n{}",
        run.stderr
    );
}

#[test]
fn the_old_kind_names_get_the_protocol_to_write() {
    let p = TestProject::example("tiny");
    p.edit("studio.yaml", "    kind: openai_speech\n", "    kind: tts\n");
    refused(
        &p,
        "studio.yaml",
        "kind: tts",
        &[
            "executor kind `tts` was split by wire protocol",
            "`openai_speech`",
            "`gpt_sovits`",
            "`xtts`",
        ],
    );
    let p = TestProject::example("tiny");
    p.edit("studio.yaml", "    kind: ollama\n", "    kind: openai\n");
    refused(
        &p,
        "studio.yaml",
        "kind: openai\n",
        &[
            "executor kind `openai` is now `openai_chat`",
            "write `kind: openai_chat`",
        ],
    );
}

#[test]
fn wrong_groups_are_located() {
    // A rule entry naming a group that does not exist.
    let p = TestProject::example("tiny");
    p.edit(
        "rules/video.yaml",
        "        - engine: wan_t2v\n",
        "        - engine: wan_t2v\n          executor: gpu-farm\n",
    );
    refused(
        &p,
        "rules/video.yaml",
        "executor: gpu-farm",
        &[
            "no executor group `gpu-farm` for engine `wan_t2v`",
            "`comfyui` groups: `comfyui`",
        ],
    );

    // A group of another protocol.
    let p = TestProject::example("tiny");
    p.edit(
        "rules/video.yaml",
        "        - engine: wan_t2v\n",
        "        - engine: wan_t2v\n          executor: ace_step\n",
    );
    refused(
        &p,
        "rules/video.yaml",
        "executor: ace_step",
        &["engine `wan_t2v` speaks `comfyui`, but executor group `ace_step` is `ace_step`"],
    );

    // An executor id where a group belongs.
    let p = TestProject::example("tiny");
    p.edit(
        "rules/video.yaml",
        "        - engine: wan_t2v\n",
        "        - engine: wan_t2v\n          executor: comfy-main\n",
    );
    refused(
        &p,
        "rules/video.yaml",
        "executor: comfy-main",
        &["`comfy-main` is an executor of group `comfyui`, and rules name groups"],
    );

    // A fallback's group, and an executor on an engine that runs here.
    let p = TestProject::example("tiny");
    p.edit(
        "rules/audio.yaml",
        "      fallbacks: [espeak]\n",
        "      fallbacks: [{engine: espeak, executor: tts-local}]\n",
    );
    refused(
        &p,
        "rules/audio.yaml",
        "fallbacks: [{engine: espeak",
        &["engine `espeak` runs on this machine, not on an executor"],
    );

    // Two protocols in one group.
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "    kind: ace_step\n",
        "    kind: ace_step\n    group: comfyui\n",
    );
    refused(
        &p,
        "studio.yaml",
        "group: comfyui",
        &["executor `ace-step` speaks `ace_step`, but group `comfyui` is `comfyui` (executor `comfy-main`)"],
    );

    // Two models in a group engines use.
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "    kind: comfyui\n    url: http://127.0.0.1:8188\n",
        "    kind: comfyui\n    url: http://127.0.0.1:8188\n    model: sdxl\n  - id: comfy-2\n    kind: comfyui\n    url: http://127.0.0.1:8189\n    model: flux\n",
    );
    refused(
        &p,
        "studio.yaml",
        "- id: comfy-2",
        &["executor `comfy-2` serves `flux`, but `comfy-main` of the same group `comfyui` serves `sdxl`"],
    );

    // Two groups of a protocol and an entry that names neither.
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "    kind: comfyui\n    url: http://127.0.0.1:8188\n",
        "    kind: comfyui\n    group: big\n    url: http://127.0.0.1:8188\n  - id: comfy-2\n    kind: comfyui\n    group: small\n    url: http://127.0.0.1:8189\n",
    );
    refused(
        &p,
        "rules/video.yaml",
        "raw_video:",
        &["engine `framepack_i2v` could run on the `comfyui` groups `big`, `small`: which one?"],
    );
}

/// The hosts of a group need not be loopback-equal twins: one project may
/// list several, and a plan (`build -n`) contacts none of them.
#[test]
fn a_second_host_joins_the_default_group() {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "    kind: comfyui\n    url: http://127.0.0.1:8188\n",
        "    kind: comfyui\n    url: http://127.0.0.1:8188\n  - id: comfy-2\n    kind: comfyui\n    url: http://127.0.0.1:8189\n",
    );
    let run = p.run(&["graph", "ep01", "--format", "json", "--profile", "sim"]);
    let v: Value = serde_json::from_str(&run.success().stdout).unwrap();
    let raw = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "raw_video:ep01/s01/sh01")
        .unwrap();
    assert_eq!(raw["pool"], "comfyui", "nodes are pinned to the group, not a host");
}
