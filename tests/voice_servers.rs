//! The voice servers a character's chain may name — GPT-SoVITS, XTTS, RVC
//! over espeak-ng — each against a loopback fake that speaks its real
//! protocol (`common/voice_servers.rs`); and the provisional results a
//! fallback makes when the first engine cannot be reached: never uploaded,
//! listed by `studio status`, made again once the server is back.
#![allow(clippy::disallowed_methods)] // the tests start studio and signal it

mod common;
#[path = "common/voice_servers.rs"]
mod voice_servers;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Build, TestProject, servers};
use serde_json::Value;
use voice_servers::{Knobs, Rvc};

const KAI_1: &str = "voice_line:ep01/s01/sh01/1";
const KAI_2: &str = "voice_line:ep01/s02/sh01/1";
const MIO: &str = "voice_line:ep01/s01/sh02/1";
const KAI_PIPER: &str = "piper: {pitch: -1, length_scale: 1.0}";
const MIO_PIPER: &str = "piper: {pitch: 4, length_scale: 0.95, noise_scale: 0.75}";

/// A 1 s reference clip at `hz`.
fn clip(hz: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..16_000)
        .map(|i| ((i as f64 / 16_000.0 * hz * std::f64::consts::TAU).sin() * 12_000.0) as i16)
        .collect();
    voice_servers::write_wav(16_000, &samples)
}

/// The tiny example with kai's voice extended by `voice` (YAML lines under
/// `voice:`), mio on espeak-ng alone, the executor `KIND-test` of `kind`
/// at `port` (in place of the example's own of that kind), and, when
/// given, `fallback` among the full profile's voice fallbacks (so a
/// character's chain may name it).
fn project(voice: &str, kind: &str, port: u16, fallback: Option<&str>) -> TestProject {
    let p = TestProject::example("tiny");
    std::fs::create_dir_all(p.path("refs")).unwrap();
    std::fs::write(p.path("refs/kai.wav"), clip(220.0)).unwrap();
    p.edit("studio.yaml", KAI_PIPER, &format!("{KAI_PIPER}\n{voice}"));
    p.edit(
        "studio.yaml",
        MIO_PIPER,
        &format!("{MIO_PIPER}\n      engines: [espeak]"),
    );
    for (id, old) in [("xtts-local", 8020), ("rvc-local", 5050)] {
        if id.starts_with(kind) {
            p.edit(
                "studio.yaml",
                &format!("  - id: {id}\n    kind: {kind}\n    url: http://127.0.0.1:{old}\n"),
                "",
            );
        }
    }
    p.edit(
        "studio.yaml",
        "  - id: ace-step\n",
        &format!("  - id: {kind}-test\n    kind: {kind}\n    url: http://127.0.0.1:{port}\n  - id: ace-step\n"),
    );
    if let Some(engine) = fallback {
        p.edit(
            "rules/audio.yaml",
            "fallbacks: [espeak]",
            &format!("fallbacks: [{engine}, espeak]"),
        );
    }
    p
}

fn build(p: &TestProject, ids: &[&str], extra: &[&str]) -> Build {
    let mut args = vec!["build", "--json", "--profile", "full"];
    args.extend_from_slice(extra);
    args.extend_from_slice(ids);
    Build::parse_run(p.run(&args))
}

fn seconds(p: &TestProject, id: &str) -> f64 {
    let rel = id.trim_start_matches("voice_line:");
    let (dir, n) = rel.rsplit_once('/').unwrap();
    common::media::stream_duration(&p.path(&format!("out/{dir}/voice-{n}.wav")), "audio")
}

fn warnings(b: &Build) -> Vec<String> {
    (b.run.stderr.lines())
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn gpt_sovits_clones_kai_from_his_reference_clip() {
    let knobs = Knobs::default();
    let port = voice_servers::gpt_sovits(knobs.clone());
    let p = project(
        "      reference_audio: {file: refs/kai.wav}\n      gpt_sovits: {prompt_text: \"Hello there.\", speed: 1.0}\n      engines: [gpt_sovits, espeak]",
        "gpt_sovits",
        port,
        Some("gpt_sovits"),
    );
    let b = build(&p, &[KAI_1, MIO], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "gpt_sovits", "{n}");
    assert!(n.get("error").is_none() && n.get("provisional").is_none(), "{n}");
    assert_eq!(
        b.node(MIO)["engine"],
        "espeak",
        "mio has her own chain: {}",
        b.node(MIO)
    );
    let req = knobs.last();
    let clip_path = std::fs::canonicalize(p.path("refs/kai.wav")).unwrap();
    assert_eq!(
        std::fs::canonicalize(req["ref_audio_path"].as_str().unwrap()).unwrap(),
        clip_path
    );
    assert_eq!(req["text"], "Will it come?");
    assert_eq!(
        (req["text_lang"].as_str(), req["prompt_lang"].as_str()),
        (Some("en"), Some("en"))
    );
    assert_eq!(req["prompt_text"], "Hello there.");
    assert_eq!(req["media_type"], "wav");
    assert_eq!(req["streaming_mode"], false);
    assert!(req["seed"].as_u64().is_some_and(|s| s < 1 << 31), "{req}");
    assert_eq!(n["metadata"]["seed"], req["seed"]);
    let s = seconds(&p, KAI_1);
    assert!((s - 0.9).abs() < 0.02, "3 words of the fake's 0.3 s, at 48 kHz: {s}");

    // The clip is in the key by content: a new take of it re-voices kai only.
    std::fs::write(p.path("refs/kai.wav"), clip(330.0)).unwrap();
    let again = build(&p, &[KAI_1, MIO], &[]).ok();
    assert_eq!(again.built(), common::set(&[KAI_1]));

    // A 500 from the group's only host sets it aside: the line falls back
    // at once (no wait for the host's cool-down), provisionally; the next
    // build asks the server again and gets the answer.
    knobs.fail.store(1, Ordering::SeqCst);
    std::fs::write(p.path("refs/kai.wav"), clip(440.0)).unwrap();
    let before = knobs.count();
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "espeak", "{n}");
    assert_eq!(n["provisional"], true, "{n}");
    assert!(n["error"].as_str().unwrap().contains("HTTP 500"), "{n}");
    assert_eq!(knobs.count(), before + 1, "asked once");
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "gpt_sovits", "{n}");
    assert!(n.get("provisional").is_none(), "{n}");
    assert_eq!(knobs.count(), before + 2, "asked again by the next build");

    // An answer longer than the longest line is cut off at its bound
    // (here 2 s of 48 kHz stereo float: 772 kB; the fake sends 16 s, 1 MB).
    knobs.seconds.store(16, Ordering::SeqCst);
    std::fs::write(p.path("refs/kai.wav"), clip(500.0)).unwrap();
    let env = [("STUDIO_TEST_MAX_LINE_SECONDS".to_string(), "2".to_string())];
    let args = ["build", "--json", "--profile", "full", KAI_1];
    let b = Build::parse_run(p.run_env(&args, &env)).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "espeak", "{n}");
    assert!(
        n["error"].as_str().unwrap().contains("answered more than 772096 bytes"),
        "{n}"
    );
    knobs.seconds.store(0, Ordering::SeqCst);

    // Silence is refused: a permanent fault of the server's answer, so the
    // fallback's line stands (not provisional).
    knobs.silence.store(true, Ordering::SeqCst);
    std::fs::write(p.path("refs/kai.wav"), clip(550.0)).unwrap();
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "espeak", "{n}");
    let error = n["error"].as_str().unwrap();
    assert!(
        error.starts_with("fell back to espeak after: gpt_sovits:") && error.contains("silence"),
        "{error}"
    );
    assert!(n.get("provisional").is_none(), "{n}");
}

#[test]
fn xtts_speaks_with_the_clip_and_a_language_it_does_not_know_is_permanent() {
    let knobs = Knobs::default();
    let port = voice_servers::xtts(knobs.clone());
    // The rule's own choice: kai has a reference clip, so xtts speaks first.
    let p = project(
        "      reference_audio: {file: refs/kai.wav}\n      xtts: {language: en}",
        "xtts",
        port,
        None,
    );
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "xtts", "{n}");
    assert_eq!(n["metadata"]["executor"], "xtts-test");
    assert!(
        n["metadata"].get("seed").is_none(),
        "the XTTS API server takes no seed, so none is claimed: {n}"
    );
    let req = knobs.last();
    assert!(req.get("seed").is_none(), "no field the server ignores: {req}");
    assert_eq!(req["text"], "Will it come?");
    assert_eq!(req["language"], "en");
    let speaker = req["speaker_wav"].as_str().unwrap();
    assert!(
        speaker.starts_with('/') && speaker.ends_with("refs/kai.wav"),
        "{speaker}"
    );
    let s = seconds(&p, KAI_1);
    assert!((s - 0.9).abs() < 0.02, "{s}");

    p.edit("studio.yaml", "xtts: {language: en}", "xtts: {language: xx}");
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "espeak", "{n}");
    assert!(
        n["error"]
            .as_str()
            .unwrap()
            .contains("Language code sent is either unsupported"),
        "{n}"
    );
    assert!(
        n.get("provisional").is_none(),
        "a 400 wrapped in a 500 is permanent: {n}"
    );
    assert_eq!(knobs.count(), 2, "asked once, not retried");
}

#[test]
fn rvc_converts_the_line_espeak_spoke_into_kais_model() {
    let fake = Rvc::default();
    let port = voice_servers::rvc(fake.clone());
    let p = project(
        "      model: {file: voices/kai.pth}\n      rvc: {over: espeak, pitch: -3}",
        "rvc",
        port,
        None,
    );
    p.write("voices/kai.pth", "trained weights");
    let b = build(&p, &[KAI_1, KAI_2, MIO], &[]).ok();
    for id in [KAI_1, KAI_2] {
        let n = b.node(id);
        assert_eq!(n["engine"], "rvc", "{n}");
        assert_eq!(n["metadata"]["spoken_by"], "espeak", "{n}");
    }
    assert_eq!(fake.uploads.load(Ordering::SeqCst), 1, "the model is uploaded once");
    let models = fake.model_names();
    assert_eq!(models.len(), 1);
    let name = models.iter().next().unwrap();
    assert!(name.starts_with("studio_"), "{name}");
    assert_eq!(fake.models.lock().unwrap()[name], b"trained weights");
    let conversions = fake.conversions.lock().unwrap().clone();
    assert_eq!(conversions.len(), 2);
    for (model, pitch, _) in &conversions {
        assert_eq!((model, pitch), (name, &Value::from(-3)));
    }
    // The converted line is the spoken one's length: RVC took espeak's WAV.
    let spoken: Vec<f64> = conversions.iter().map(|c| c.2).collect();
    let mut made = [seconds(&p, KAI_1), seconds(&p, KAI_2)];
    made.sort_by(f64::total_cmp);
    let mut spoken = spoken;
    spoken.sort_by(f64::total_cmp);
    for (s, m) in spoken.iter().zip(made) {
        assert!(*s > 0.3 && (s - m).abs() < 0.1, "spoken {s} s, converted {m} s");
    }
    // A new model file is a new name and a new upload; only kai's lines change.
    p.write("voices/kai.pth", "retrained weights");
    let b = build(&p, &[KAI_1, KAI_2, MIO], &[]).ok();
    assert_eq!(b.built(), common::set(&[KAI_1, KAI_2]));
    assert_eq!(fake.uploads.load(Ordering::SeqCst), 2);
}

#[test]
fn a_fallback_for_an_unreachable_server_is_provisional_until_the_server_is_back() {
    let remote = servers::nginx();
    let port = servers::free_port();
    let p = project(
        "      reference_audio: {file: refs/kai.wav}\n      engines: [gpt_sovits, espeak]",
        "gpt_sovits",
        port,
        Some("gpt_sovits"),
    );
    let ids = [KAI_1, KAI_2];
    let with_remote = ["--remote", remote.url.as_str()];
    let b = build(&p, &ids, &with_remote).ok();
    // A teammate's checkout, also built while the server was down.
    let r = copy_of(&p);
    let r_first = build(&r, &ids, &with_remote).ok();
    assert_eq!(r_first.node(KAI_1)["provisional"], true);
    for id in ids {
        let n = b.node(id);
        assert_eq!(n["engine"], "espeak", "{n}");
        assert_eq!(n["provisional"], true, "{n}");
        let error = n["error"].as_str().unwrap();
        assert!(error.starts_with("fell back to espeak after: gpt_sovits:"), "{error}");
    }
    let w = warnings(&b);
    assert_eq!(w.len(), 1, "one warning for the group: {}", b.run.stderr);
    assert!(
        w[0].contains("gpt_sovits-test") && w[0].contains("cannot be reached"),
        "{}",
        w[0]
    );
    let entries = |dir: &str| {
        let root = remote.data().join("studio-cache").join(dir);
        walk(&root)
    };
    assert_eq!(entries("ac"), 0, "a provisional line is never uploaded");
    let status = p.run(&["status", "--profile", "full"]);
    status.success();
    for id in ids {
        assert!(
            status
                .stdout
                .contains(&format!("provisional {id}  (fell back to espeak after: gpt_sovits:")),
            "{}",
            status.stdout
        );
    }

    // The server still down: the stand-ins are kept, not made again.
    let kept = build(&p, &ids, &with_remote).ok();
    assert_eq!(kept.with("cached"), common::set(&ids), "{}", kept.run.stdout);
    assert_eq!(kept.node(KAI_1)["provisional"], true);
    assert_eq!(entries("ac"), 0);

    // The server is back: both lines are made by it, and now shared.
    let knobs = Knobs::default();
    voice_servers::gpt_sovits_on(knobs.clone(), port);
    let back = build(&p, &ids, &with_remote).ok();
    for id in ids {
        let n = back.node(id);
        assert_eq!(
            (n["status"].as_str(), n["engine"].as_str()),
            (Some("built"), Some("gpt_sovits")),
            "{n}"
        );
        assert!(n.get("provisional").is_none(), "{n}");
    }
    assert!(warnings(&back).is_empty(), "{}", back.run.stderr);
    remote_settled(|| entries("ac") == 2);
    let status = p.run(&["status", "--profile", "full"]);
    assert!(!status.stdout.contains("provisional"), "{}", status.stdout);
    // The teammate's stand-ins are replaced by the server's lines from the
    // remote, in the cache, under out/ and in the state.
    let fetched = build(&r, &ids, &with_remote).ok();
    assert_eq!(fetched.with("fetched"), common::set(&ids), "{}", fetched.run.stdout);
    let wav = |p: &TestProject| std::fs::read(p.path("out/ep01/s01/sh01/voice-1.wav")).unwrap();
    assert_eq!(wav(&r), wav(&p));
    let status = r.run(&["status", "--profile", "full"]);
    assert!(!status.stdout.contains("provisional"), "{}", status.stdout);
    let again = build(&r, &ids, &with_remote).ok();
    assert_eq!(again.with("cached"), common::set(&ids), "{}", again.run.stdout);

    // An entry on the remote that claims to be provisional (studio never
    // uploads one) is refused: the node is made here instead.
    let ac = remote.data().join("studio-cache/ac");
    let entry = std::fs::read_dir(&ac).unwrap().next().unwrap().unwrap().path();
    let mut m: Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    let forged = m["node"].as_str().unwrap().to_string();
    m["provisional"] = "fell back to espeak after: gpt_sovits: refused".into();
    std::fs::write(&entry, serde_json::to_vec(&m).unwrap()).unwrap();
    let q = copy_of(&p);
    let b = build(&q, &ids, &with_remote).ok();
    assert_eq!(b.node(&forged)["status"], "built", "{}", b.run.stdout);
    assert_eq!(b.with("fetched").len(), 1, "the other entry is fetched");
}

/// A second checkout of `p`'s project (its config and reference clip).
fn copy_of(p: &TestProject) -> TestProject {
    let q = TestProject::example("tiny");
    for f in ["studio.yaml", "rules/audio.yaml"] {
        q.write(f, &p.read(f));
    }
    std::fs::create_dir_all(q.path("refs")).unwrap();
    std::fs::copy(p.path("refs/kai.wav"), q.path("refs/kai.wav")).unwrap();
    q
}

/// Uploads end before the build returns; the file system may lag a moment.
fn remote_settled(ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the remote never got the entries"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 })
        .sum()
}

/// Ctrl-C while the server takes its time: studio stops at once, leaves
/// no scratch and no half line, and the next build makes the line.
#[test]
fn ctrl_c_mid_request_leaves_nothing_half_written() {
    let knobs = Knobs::default();
    knobs.delay_ms.store(60_000, Ordering::SeqCst);
    let port = voice_servers::xtts(knobs.clone());
    let p = project("      reference_audio: {file: refs/kai.wav}", "xtts", port, None);
    let child = p.spawn(&["build", "--profile", "full", KAI_1]);
    let start = Instant::now();
    while knobs.arrived.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "the request never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    common::signal(child.id(), "-INT");
    let out = common::wait_within(child, Duration::from_secs(30));
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert!(!p.path("out/ep01/s01/sh01/voice-1.wav").exists(), "no line under out/");
    let tmp: Vec<_> = std::fs::read_dir(p.path("cache/tmp"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "scratch left behind: {tmp:?}");
    knobs.delay_ms.store(0, Ordering::SeqCst);
    let b = build(&p, &[KAI_1], &[]).ok();
    assert_eq!(b.node(KAI_1)["engine"], "xtts");
    assert!(seconds(&p, KAI_1) > 0.8);
}

/// RVC over Piper: the worker in the voices venv (`scripts/deps.sh`, as
/// `tests/voices.rs` needs it) speaks with kai's delivery, RVC converts.
#[test]
fn rvc_converts_the_line_piper_spoke() {
    let venv = std::env::var("STUDIO_VOICES").unwrap_or_else(|_| {
        let data = std::env::var("XDG_DATA_HOME")
            .unwrap_or_else(|_| format!("{}/.local/share", std::env::var("HOME").unwrap()));
        format!("{data}/studio/voices")
    });
    assert!(
        std::path::Path::new(&venv).join("bin/python").is_file(),
        "the voices venv {venv} is missing: run `bash scripts/deps.sh`"
    );
    let fake = Rvc::with_preset();
    let port = voice_servers::rvc(fake.clone());
    let p = project("      model: preset\n      rvc: {over: piper}", "rvc", port, None);
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "rvc", "{n}");
    assert_eq!(n["metadata"]["spoken_by"], "piper", "{n}");
    assert_eq!(fake.uploads.load(Ordering::SeqCst), 0, "a named model is the server's");
    let conversions = fake.conversions.lock().unwrap().clone();
    assert_eq!(conversions.len(), 1);
    assert_eq!(
        (conversions[0].0.as_str(), &conversions[0].1),
        ("preset", &Value::from(0))
    );
    let (spoken, made) = (conversions[0].2, seconds(&p, KAI_1));
    assert!(
        spoken > 0.4 && (spoken - made).abs() < 0.1,
        "spoken {spoken} s, converted {made} s"
    );
}

/// A server slower than its executor's `timeout`: a failure that may pass,
/// so the fallback's line is provisional.
#[test]
fn a_slow_server_times_out_into_a_provisional_fallback() {
    let knobs = Knobs::default();
    knobs.delay_ms.store(5_000, Ordering::SeqCst);
    let port = voice_servers::xtts(knobs.clone());
    let p = project("      reference_audio: {file: refs/kai.wav}", "xtts", port, None);
    p.edit(
        "studio.yaml",
        &format!("url: http://127.0.0.1:{port}\n"),
        &format!("url: http://127.0.0.1:{port}\n    timeout: 1\n"),
    );
    // One try: the time-out, not the driver's cool-downs, is under test.
    p.edit(
        "rules/audio.yaml",
        "    full:\n      choose:",
        "    full:\n      retries: 0\n      choose:",
    );
    let b = build(&p, &[KAI_1], &[]).ok();
    let n = b.node(KAI_1);
    assert_eq!(n["engine"], "espeak", "{n}");
    assert_eq!(n["provisional"], true, "{n}");
    assert!(
        n["error"].as_str().unwrap().contains("did not answer within 1 s"),
        "{n}"
    );
}

/// The voice servers' settings are checked when the project loads, each
/// mistake located in studio.yaml.
#[test]
fn bad_voice_server_settings_are_located() {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        KAI_PIPER,
        &format!(
            "{KAI_PIPER}\n      rvc: {{over: xtts, pitch: 30}}\n      xtts: {{language: \"EN US\"}}\n      gpt_sovits: {{speed: 4}}"
        ),
    );
    let run = p.run(&["build", KAI_1]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for want in [
        "`xtts` cannot speak a line for RVC",
        "`pitch` must be",
        "`EN US` is not a language code",
        "`speed` must be",
        "studio.yaml",
    ] {
        assert!(run.stderr.contains(want), "lacks {want:?}:\n{}", run.stderr);
    }
}
