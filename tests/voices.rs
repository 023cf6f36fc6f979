//! The neural voices, for real: Piper and Kokoro workers in the voices venv
//! that `scripts/deps.sh` makes (these tests need it, as the others need
//! ffmpeg), speaking the tiny example's lines.
#![allow(clippy::disallowed_methods)] // ffmpeg and pgrep are test probes

mod common;

use std::path::Path;
use std::process::Command;

use common::{Build, TestProject};

const LINES: [(&str, &str); 3] = [
    ("voice_line:ep01/s01/sh01/1", "Will it come?"),
    ("voice_line:ep01/s01/sh02/1", "He said: \"100% sure.\""),
    ("voice_line:ep01/s02/sh01/1", "Okay, you win."),
];

/// The voices venv's python, as studio finds it; the tests need it installed.
fn require_venv() -> std::path::PathBuf {
    let venv = std::env::var("STUDIO_VOICES").unwrap_or_else(|_| {
        let data = std::env::var("XDG_DATA_HOME")
            .unwrap_or_else(|_| format!("{}/.local/share", std::env::var("HOME").unwrap()));
        format!("{data}/studio/voices")
    });
    let python = Path::new(&venv).join("bin/python");
    assert!(
        python.is_file(),
        "the voices venv {venv} is missing: run `bash scripts/deps.sh`"
    );
    python
}

fn build(p: &TestProject, targets: &[&str], env: &[(String, String)]) -> Build {
    let mut args = vec!["build", "--json"];
    args.extend_from_slice(targets);
    Build::parse_run(p.run_env(&args, env))
}

fn ffmpeg_stderr(wav: &Path, filter: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(wav)
        .args(["-af", filter, "-f", "null", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `(mean volume dB, seconds before the first sound above −40 dB)`.
fn level_and_onset(wav: &Path) -> (f64, f64) {
    let err = ffmpeg_stderr(wav, "volumedetect");
    let mean: f64 = err
        .lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no mean volume in {err}"));
    let err = ffmpeg_stderr(wav, "silencedetect=noise=-40dB:d=0.01");
    // A file that starts silent reports `silence_start: 0` first.
    let mut onset = 0.0;
    let mut lines = err.lines().filter(|l| l.contains("silence_"));
    let start = |l: &str| -> Option<f64> { l.split("silence_start:").nth(1)?.trim().parse().ok() };
    if let Some(first) = lines.next()
        && start(first).is_some_and(|s| s < 0.001)
    {
        onset = lines
            .next()
            .and_then(|l| l.split("silence_end:").nth(1))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::INFINITY);
    }
    (mean, onset)
}

/// The worker processes started from this project's cache, still running.
fn workers_of(p: &TestProject) -> String {
    let pattern = p.path("cache/workers/voice_worker.py");
    let out = Command::new("pgrep")
        .args(["-af", pattern.to_str().unwrap()])
        .output()
        .expect("pgrep (procps) is installed by scripts/deps.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_speech(p: &TestProject, b: &Build, id: &str, text: &str, engine: &str) {
    let n = b.node(id);
    assert_eq!(n["status"], "built", "{n}");
    assert_eq!(n["engine"], engine, "{n}");
    let rel = id.trim_start_matches("voice_line:");
    let (dir, line) = rel.rsplit_once('/').unwrap();
    let wav = p.path(&format!("out/{dir}/voice-{line}.wav"));
    let seconds = common::media::stream_duration(&wav, "audio");
    let (mean, onset) = level_and_onset(&wav);
    let words = text.split_whitespace().count() as f64;
    assert!(mean > -35.0, "{id}: speech, not silence (mean {mean} dB)");
    assert!(
        seconds > 0.12 * words && seconds < 1.5 * words + 1.0,
        "{id}: {seconds} s for {words} words"
    );
    assert!(onset < 0.1, "{id}: the voice starts {onset} s after its cue");
}

#[test]
fn piper_speaks_the_lines_as_a_worker_that_ends_with_the_build() {
    require_venv();
    let p = TestProject::example("tiny");
    let ids: Vec<&str> = LINES.iter().map(|(id, _)| *id).collect();
    let b = build(&p, &ids, &[]).ok();
    for (id, text) in LINES {
        check_speech(&p, &b, id, text, "piper");
        assert!(
            b.node(id)["metadata"]["seed"].is_u64(),
            "a stochastic engine reports its seed"
        );
    }
    assert!(
        p.path("cache/workers/piper.log").is_file(),
        "the lines came from a worker"
    );
    assert_eq!(workers_of(&p), "", "no worker outlives `studio build`");

    // Same line, seed and settings: the same bytes from a new worker.
    let q = TestProject::example("tiny");
    let again = build(&q, &ids, &[]).ok();
    assert_eq!(b.hashes(), again.hashes());

    // A character's delivery is in its lines' keys, and only theirs.
    q.edit(
        "studio.yaml",
        "piper: {pitch: -1, length_scale: 1.0}",
        "piper: {pitch: -3, length_scale: 1.2}",
    );
    let edited = build(&q, &ids, &[]).ok();
    assert_eq!(
        edited.built(),
        common::set(&["voice_line:ep01/s01/sh01/1", "voice_line:ep01/s02/sh01/1"]),
        "kai's two lines, not mio's"
    );
    let seconds = |p: &TestProject| common::media::stream_duration(&p.path("out/ep01/s02/sh01/voice-1.wav"), "audio");
    assert!(seconds(&q) > seconds(&p), "a slower delivery is a longer line");
}

#[test]
fn without_the_venv_the_lines_fall_back_to_espeak_and_say_how_to_install() {
    let p = TestProject::example("tiny");
    let env = [("STUDIO_VOICES".to_string(), "/nonexistent/voices".to_string())];
    let b = build(&p, &[LINES[0].0, LINES[1].0], &env).ok();
    let n = b.node(LINES[0].0);
    assert_eq!(n["engine"], "espeak", "{n}");
    let error = n["error"].as_str().unwrap();
    assert!(error.starts_with("fell back to espeak after: piper:"), "{error}");
    assert!(
        error.contains("scripts/deps.sh"),
        "the primary's error is kept: {error}"
    );
    assert!(
        n.get("provisional").is_none(),
        "a missing venv is no passing fault: {n}"
    );
    let warnings: Vec<&str> = b.run.stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning per build: {}", b.run.stderr);
    assert!(warnings[0].contains("run `bash scripts/deps.sh`"), "{}", warnings[0]);
    assert!(warnings[0].contains("/nonexistent/voices"), "{}", warnings[0]);
    // Installing the voices changes the primary's identity: the line is
    // made again by Piper, not kept from the fallback.
    require_venv();
    let b = build(&p, &[LINES[0].0], &[]).ok();
    assert_eq!(b.node(LINES[0].0)["engine"], "piper");
}

#[test]
fn kokoro_reads_japanese_with_the_projects_readings() {
    require_venv();
    let p = TestProject::example("tiny");
    p.edit("rules/audio.yaml", "engine: piper\n", "engine: kokoro_ja\n");
    p.edit(
        "episodes/ep01.yaml",
        "Will it come?",
        "桐山のLantern、月城さん、来るかな。",
    );
    p.edit(
        "rules/audio.yaml",
        "        小夜: さよ\n",
        "        小夜: さよ\n        Lantern: らんたん\n",
    );
    p.edit(
        "studio.yaml",
        "piper: {pitch: -1, length_scale: 1.0}",
        "kokoro: {voice: jm_kumo, speed: 1.1}",
    );
    let b = build(&p, &[LINES[0].0], &[]).ok();
    check_speech(&p, &b, LINES[0].0, "桐山 の Lantern 月城 さん 来る かな", "kokoro_ja");
    assert_eq!(workers_of(&p), "");
    // The names went through the OpenJTalk user dictionary made from
    // `pronounce.ja`: each is one word with its reading. OpenJTalk alone
    // reads 月城 "tsuki-jō"; kana put in the text split きりやま in two;
    // a Latin word is looked up as OpenJTalk sees it (full width), not
    // spelled out letter by letter.
    let phonemes = b.node(LINES[0].0)["metadata"]["phonemes"].as_str().unwrap().to_string();
    let words: Vec<&str> = phonemes
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .collect();
    for name in ["kʲiɾʲijama", "ʦɨkʲiɕiɾo", "ɾantaɴ"] {
        assert!(words.contains(&name), "{name} in {phonemes}");
    }
    let dicts: Vec<String> = std::fs::read_dir(p.path("cache/workers/userdict"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        dicts.len() == 1 && dicts[0].ends_with(".dic"),
        "one compiled dictionary, nothing half-made: {dicts:?}"
    );
    p.edit("studio.yaml", "voice: jm_kumo", "voice: af_bella");
    let run = p.run(&["build", LINES[0].0]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`af_bella` is not a Kokoro voice"),
        "{}",
        run.stderr
    );
}

/// Ctrl-C while the worker speaks: the worker goes with the build, no
/// line is left half-written, and the next build makes the lines.
#[test]
fn ctrl_c_stops_the_worker_mid_line() {
    require_venv();
    let p = TestProject::example("tiny");
    let ids: Vec<&str> = LINES.iter().map(|(id, _)| *id).collect();
    let mut args = vec!["build"];
    args.extend_from_slice(&ids);
    let child = p.spawn(&args);
    let started = std::time::Instant::now();
    while workers_of(&p).is_empty() {
        assert!(started.elapsed().as_secs() < 120, "no worker started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let gone = std::time::Instant::now();
    while !workers_of(&p).is_empty() {
        assert!(
            gone.elapsed().as_secs() < 10,
            "the worker outlived Ctrl-C: {}",
            workers_of(&p)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let tmp: Vec<_> = std::fs::read_dir(p.path("cache/tmp"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "scratch left behind: {tmp:?}");
    let b = build(&p, &ids, &[]).ok();
    for (id, text) in LINES {
        if b.node(id)["status"] == "built" {
            check_speech(&p, &b, id, text, "piper");
        }
    }
}

/// A character's `voice.engines` is its own chain: kai speaks with Kokoro
/// then espeak, mio keeps the rule's chain; a bad entry is a located error.
#[test]
fn a_character_lists_its_own_voice_engines() {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "piper: {pitch: -1, length_scale: 1.0}",
        "piper: {pitch: -1, length_scale: 1.0}\n      engines: [kokoro_ja, rvc, espeak]",
    );
    // The sim profile runs `full`: rvc is named by its rule, kokoro_ja and
    // espeak run here.
    let sim = p.build(&[LINES[0].0, LINES[1].0]).ok();
    assert_eq!(sim.node(LINES[0].0)["engine"], "kokoro_ja", "kai's first choice");
    assert_eq!(sim.node(LINES[1].0)["engine"], "edge_tts", "mio keeps the rule's chain");
    // The animatic: mio on espeak alone, for real.
    p.edit(
        "studio.yaml",
        "piper: {pitch: 4, length_scale: 0.95, noise_scale: 0.75}",
        "piper: {pitch: 4, length_scale: 0.95, noise_scale: 0.75}\n      engines: [espeak]",
    );
    let real = build(&p, &[LINES[1].0], &[]).ok();
    assert_eq!(real.node(LINES[1].0)["engine"], "espeak");
    assert!(
        real.node(LINES[1].0).get("error").is_none(),
        "espeak is mio's primary, not a fallback"
    );

    p.edit(
        "studio.yaml",
        "engines: [espeak]",
        "engines: [espeak, storyboard, espeak]",
    );
    let run = p.run(&["build", LINES[1].0]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`storyboard` is not a voice engine"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("`espeak` is twice"), "{}", run.stderr);
    assert!(run.stderr.contains("studio.yaml"), "{}", run.stderr);
}

/// The running workers' process ids.
fn worker_pids(p: &TestProject) -> Vec<u32> {
    workers_of(p)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Build the lines with one job at a time (so one worker) and `kill -9`
/// the first `kills` workers that appear, then return the build.
fn build_killing_workers(p: &TestProject, kills: usize) -> Build {
    let mut args = vec!["build", "--json", "-j", "1"];
    args.extend(LINES.iter().map(|(id, _)| *id));
    let mut child = p.spawn(&args);
    let mut killed = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while killed.len() < kills {
        for pid in worker_pids(p) {
            if killed.len() < kills && killed.insert(pid) {
                Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before {kills} workers were killed ({killed:?})"
        );
        assert!(started.elapsed().as_secs() < 300, "no worker to kill");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let b = Build::parse_run(common::wait_within(child, std::time::Duration::from_secs(600)));
    assert_eq!(workers_of(p), "", "no worker outlives `studio build`");
    b
}

/// A worker killed mid-build is restarted once and the lines are Piper's.
#[test]
fn a_killed_worker_is_restarted_once() {
    require_venv();
    let p = TestProject::example("tiny");
    let b = build_killing_workers(&p, 1).ok();
    for (id, text) in LINES {
        check_speech(&p, &b, id, text, "piper");
        assert!(b.node(id).get("error").is_none(), "{}", b.node(id));
    }
}

/// Killed twice, the pool gives up: every line falls through to espeak with
/// the worker's failure in its record, provisionally, and the next build
/// (with a worker that lives) makes them with Piper.
#[test]
fn a_worker_killed_twice_falls_through_to_espeak_provisionally() {
    require_venv();
    let p = TestProject::example("tiny");
    let b = build_killing_workers(&p, 2).ok();
    for (id, _) in LINES {
        let n = b.node(id);
        assert_eq!(n["engine"], "espeak", "{n}");
        let error = n["error"].as_str().unwrap();
        assert!(
            error.starts_with("fell back to espeak after: piper: ")
                && error.contains("the piper worker failed (it exited)"),
            "{error}"
        );
        assert!(error.contains("piper.log"), "{error}");
        assert_eq!(n["provisional"], true, "a crash may pass: {n}");
    }
    let again = build(&p, &LINES.map(|(id, _)| id), &[]).ok();
    for (id, text) in LINES {
        check_speech(&p, &again, id, text, "piper");
    }
    assert_eq!(workers_of(&p), "");
}

/// `studio watch` keeps its workers while it runs and none outlives it.
#[test]
fn no_worker_outlives_studio_watch() {
    require_venv();
    let p = TestProject::example("tiny");
    let mut args = vec!["watch", "--json"];
    args.extend(LINES.iter().map(|(id, _)| *id));
    let child = p.spawn(&args);
    let last = p.path("out/ep01/s02/sh01/voice-1.wav");
    let started = std::time::Instant::now();
    let mut seen = false;
    while !last.is_file() {
        seen |= !workers_of(&p).is_empty();
        assert!(started.elapsed().as_secs() < 300, "watch made no voice lines");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen || p.path("cache/workers/piper.log").is_file(), "a worker spoke");
    common::signal(child.id(), "-INT");
    child.wait_with_output().unwrap();
    let gone = std::time::Instant::now();
    while !workers_of(&p).is_empty() {
        assert!(
            gone.elapsed().as_secs() < 10,
            "a worker outlived watch: {}",
            workers_of(&p)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[path = "common/speech.rs"]
mod speech;

/// The full profile's `edge_tts` through an OpenAI-compatible speech server
/// (a loopback fake of openai-edge-tts): the request has the server's
/// shape, the WAV is resampled to 48 kHz; when the server fails, the line
/// falls through to espeak.
#[test]
fn edge_tts_speaks_through_an_openai_speech_server() {
    let fake = speech::Fake::default();
    let port = speech::serve(fake.clone());
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "url: http://127.0.0.1:5002",
        &format!("url: http://127.0.0.1:{port}"),
    );
    // One try per engine: the fall-through, not the driver's backoff, is under test.
    p.edit(
        "rules/audio.yaml",
        "    full:\n      choose:",
        "    full:\n      retries: 0\n      choose:",
    );
    let b = Build::parse_run(p.run(&["build", "--json", "--profile", "full", LINES[0].0])).ok();
    let n = b.node(LINES[0].0);
    assert_eq!(n["engine"], "edge_tts", "{n}");
    assert_eq!(n["metadata"]["executor"], "tts-local", "{n}");
    {
        let got = fake.requests.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["input"], LINES[0].1);
        assert_eq!(got[0]["voice"], "en-US-GuyNeural", "kai's voice.edge");
        assert_eq!(got[0]["response_format"], "wav");
    }
    let wav = p.path("out/ep01/s01/sh01/voice-1.wav");
    let probe = common::media::ffprobe(&wav);
    assert_eq!(common::media::streams(&probe, "audio")[0]["sample_rate"], "48000");
    let seconds = common::media::stream_duration(&wav, "audio");
    assert!((seconds - 0.9).abs() < 0.02, "3 words of the fake's 0.3 s: {seconds}");

    fake.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let b = Build::parse_run(p.run(&["build", "--json", "--profile", "full", LINES[1].0])).ok();
    let n = b.node(LINES[1].0);
    assert_eq!(n["engine"], "espeak", "the 500s fell through: {n}");
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        2,
        "the server was asked before falling through"
    );
}

/// A worker computes with the threads studio gives it (a core per pool
/// slot), not with every core: Kokoro's package sizes its session to the
/// machine, so two lines at once ran four threads on two cores.
#[test]
fn each_worker_computes_with_the_threads_it_is_given() {
    use std::io::{BufRead, BufReader};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/workers/voice_worker.py");
    let scratch = tempfile::tempdir().unwrap();
    for backend in ["piper", "kokoro_ja"] {
        let mut child = Command::new(require_venv())
            .args(["-u", script.to_str().unwrap(), backend, "1"])
            .current_dir(scratch.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        drop(child.stdin.take()); // the worker exits when its stdin closes
        assert!(child.wait().unwrap().success(), "{backend}");
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{backend}: {e}: {line}"));
        assert_eq!(ready["ready"], true, "{backend}: {line}");
        assert_eq!(ready["threads"], 1, "{backend}: {line}");
    }
}
