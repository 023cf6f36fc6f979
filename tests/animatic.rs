//! The animatic profile end to end on the tiny example: a real, watchable
//! episode built with ffmpeg, espeak-ng and fluidsynth, measured.

mod common;

use std::path::Path;

use common::media::{self, ffprobe, streams};
use common::{TestProject, set};

/// Dialogue that exercises every escaping path: quotes, colon, commas,
/// apostrophe, backslashes, percent, brackets, braces, tags and Japanese.
const HOSTILE: &str = r#"It's "fine": a, b; [x] (y) 100% C:\New {\an8} <b>bold</b> 「ありがとう」"#;

fn animatic_build(p: &TestProject) -> common::Build {
    common::Build::parse_run(p.run(&["build", "ep01", "--json"]))
}

fn cue_texts(srt: &str) -> Vec<String> {
    media::srt_cues(srt).into_iter().map(|(_, t)| t).collect()
}

/// The tiny example with hostile dialogue and a hostile storyboard caption.
fn hostile_tiny() -> TestProject {
    let p = TestProject::example("tiny");
    p.edit(
        "episodes/ep01.yaml",
        "text: \"Will it come?\"",
        &format!("text: '{}'", HOSTILE.replace('\'', "''")),
    );
    p.edit(
        "episodes/ep01.yaml",
        "action: Mio smiles confidently.",
        "action: 'Mio smiles: \"%{pts}\" [x] \\ 100% 「笑」'",
    );
    p
}

#[test]
fn animatic_episode_end_to_end() {
    let p = hostile_tiny();
    let first = animatic_build(&p).ok();
    assert_eq!(first.total("failed"), 0);
    let episode = p.path("out/ep01/ep01.mp4");

    // Delivery format.
    let probe = ffprobe(&episode);
    let v = streams(&probe, "video")[0];
    let a = streams(&probe, "audio")[0];
    assert_eq!(
        (v["codec_name"].as_str(), v["width"].as_u64(), v["height"].as_u64()),
        (Some("h264"), Some(960), Some(1440))
    );
    assert_eq!(v["avg_frame_rate"], "30/1");
    assert_eq!(
        (
            a["codec_name"].as_str(),
            a["sample_rate"].as_str(),
            a["channels"].as_u64()
        ),
        (Some("aac"), Some("48000"), Some(2))
    );
    assert_eq!(streams(&probe, "subtitle").len(), 1, "a soft subtitle track");
    assert_eq!(probe["chapters"].as_array().unwrap().len(), 2, "one chapter per scene");
    let drift = (media::stream_duration(&episode, "video") - media::stream_duration(&episode, "audio")).abs();
    assert!(drift < 0.040, "A/V drift {drift:.3}s");
    let (lufs, peak) = media::loudness(&episode);
    assert!((lufs + 16.0).abs() <= 1.0, "integrated loudness {lufs} LUFS");
    assert!(peak <= -1.0, "true peak {peak} dBTP");
    assert!(p.path("out/ep01/ep01.srt").is_file() && p.path("out/ep01/ep01.jpg").is_file());
    if let Some(report) = media_report(&episode) {
        assert_eq!(report["chapters"], 2);
        assert!(report["av_drift_ms"].as_f64().unwrap() < 40.0, "{report}");
    }

    // Duration: the shots minus the crossfade overlap, within one frame.
    let scenes: u64 = ["s01/sh01", "s01/sh02", "s02/sh01", "s02/sh02"]
        .iter()
        .map(|s| media::frame_count(&p.path(&format!("out/ep01/{s}/shot.mkv"))))
        .sum();
    let frames = media::frame_count(&episode);
    let expected = scenes - 12; // one 0.4 s transition at 30 fps
    assert!(frames.abs_diff(expected) <= 1, "{frames} frames, expected {expected}");

    // Subtitles: verbatim, in the soft track and the sidecar.
    let lines = [HOSTILE, "He said: \"100% sure.\"", "Okay, you win."];
    assert_eq!(cue_texts(&media::subtitle_track(&episode)), lines);
    let sidecar = std::fs::read_to_string(p.path("out/ep01/ep01.srt")).unwrap();
    assert_eq!(cue_texts(&sidecar), lines);
    let cues = media::srt_cues(&sidecar);

    // Ducking: the music under dialogue is at least 6 dB lower than without.
    let ducked = p.path("ducked-mix.wav");
    std::fs::copy(p.path("out/ep01/s01/mix.wav"), &ducked).unwrap();
    p.edit("rules/audio.yaml", "duck_ratio: 6", "duck_ratio: 1");
    let undocked = animatic_build(&p).ok();
    assert_eq!(
        undocked.built(),
        set(&[
            "scene_mix:ep01/s01",
            "scene_mix:ep01/s02",
            "episode_audio:ep01",
            "episode:ep01"
        ])
    );
    let volume = music_volume(&p);
    let music = p.path("out/ep01/s01/music.wav");
    let stem = p.path("music-stem.wav");
    // (ducked mix − plain mix) + music = the ducked music alone: the voices cancel.
    media::run_ffmpeg(&[
        "-i",
        ducked.to_str().unwrap(),
        "-i",
        p.path("out/ep01/s01/mix.wav").to_str().unwrap(),
        "-i",
        music.to_str().unwrap(),
        "-filter_complex",
        &format!("[0:a][1:a][2:a]amerge=inputs=3,pan=stereo|c0=c0-c2+{volume}*c4|c1=c1-c3+{volume}*c5"),
        "-c:a",
        "pcm_f32le",
        stem.to_str().unwrap(),
    ]);
    for (i, (start, _)) in cues.iter().take(2).enumerate() {
        let voice = media::stream_duration(&p.path(&format!("out/ep01/s01/sh0{}/voice-1.wav", i + 1)), "audio");
        let (from, to) = (start + 0.3, start + voice - 0.1);
        let plain = media::rms_db(
            &["-i", music.to_str().unwrap(), "-filter:a", &format!("volume={volume}")],
            from,
            to,
        );
        let under = media::rms_db(&["-i", stem.to_str().unwrap()], from, to);
        assert!(
            plain - under >= 6.0,
            "line {}: music {plain:.1} dB, under dialogue {under:.1} dB",
            i + 1
        );
    }
    p.edit("rules/audio.yaml", "duck_ratio: 1", "duck_ratio: 6");

    // Subtitle cues start within 100 ms of their voice: with the music off,
    // sound starts exactly where someone speaks.
    p.edit(
        "rules/audio.yaml",
        &format!("music_volume: {volume}"),
        "music_volume: 0",
    );
    animatic_build(&p).ok();
    let onsets = media::sound_onsets(&p.path("out/ep01/audio.m4a"));
    for (start, text) in &cues {
        let nearest = onsets.iter().map(|o| (o - start).abs()).fold(f64::INFINITY, f64::min);
        assert!(
            nearest <= 0.100,
            "cue {text:?} at {start:.3}s: nearest voice onset {nearest:.3}s away ({onsets:?})"
        );
    }
    p.edit(
        "rules/audio.yaml",
        "music_volume: 0",
        &format!("music_volume: {volume}"),
    );

    // A shot's last frame is its video's last frame, exactly (a push-in:
    // its first frame differs).
    let video = media::rgb24(&p.path("out/ep01/s01/sh02/shot.mkv"));
    let still = media::rgb24(&p.path("out/ep01/s01/sh02/last_frame.png"));
    assert!(!still.is_empty() && video.len() > still.len() && video.len().is_multiple_of(still.len()));
    assert!(video[..still.len()] != still[..], "the shot does not move");
    assert!(
        video[video.len() - still.len()..] == still[..],
        "last_frame.png is not the shot's last frame"
    );

    // Back to the first configuration: everything comes from the cache, and
    // then a build is a no-op.
    assert_eq!(animatic_build(&p).ok().total("built"), 0);
    assert_eq!(animatic_build(&p).ok().total("built"), 0);

    // One line edited: its voice, its scene's mix and the episode, nothing else.
    let before = p.path("before.mp4");
    std::fs::copy(&episode, &before).unwrap();
    p.edit("episodes/ep01.yaml", "Okay, you win.", "Fine, you win.");
    let edited = animatic_build(&p).ok();
    assert_eq!(
        edited.built(),
        set(&[
            "voice_line:ep01/s02/sh01/1",
            "scene_mix:ep01/s02",
            "episode_audio:ep01",
            "episode:ep01"
        ])
    );
    assert_eq!(
        media::stream_md5(&before, "v"),
        media::stream_md5(&episode, "v"),
        "no video re-encoded"
    );
    let old = cue_texts(&media::subtitle_track(&before));
    let new = cue_texts(&media::subtitle_track(&episode));
    assert_eq!(old[..2], new[..2]);
    assert_eq!(new[2], "Fine, you win.");
}

/// Every node's bytes are a function of its key: a second clean build of the
/// same project on the same machine matches the first node for node. (Early
/// cutoff and shared caches depend on it.)
#[test]
fn animatic_outputs_are_reproducible() {
    let a = animatic_build(&hostile_tiny()).ok();
    let b = animatic_build(&hostile_tiny()).ok();
    assert_eq!(a.hashes().len(), 37);
    assert_eq!(a.hashes(), b.hashes());
}

#[test]
fn the_quality_gate_names_a_broken_shot() {
    let p = TestProject::example("tiny");
    let shots = common::Build::parse_run(p.run(&["build", "ep01/s01/sh01", "ep01/s01/sh02", "--json"])).ok();
    let hash = shots.node("shot_video:ep01/s01/sh02")["output"]
        .as_str()
        .unwrap()
        .to_string();
    // Same size, garbage content: the cache trusts its size, the gate does not.
    let object = p.path(&format!("cache/objects/{}/{hash}", &hash[..2]));
    let len = std::fs::metadata(&object).unwrap().len() as usize;
    std::fs::write(&object, vec![0u8; len]).unwrap();
    let b = common::Build::parse_run(p.run(&["build", "ep01", "--json"]));
    assert_eq!(b.run.code, 1, "{}", b.run.stderr);
    // The shot's segment reads it, and refuses it.
    let error = b.node("shot_segment:ep01/s01/sh02")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("sh02") && error.contains("is broken"),
        "the error names the shot: {error}"
    );
    assert_eq!(b.node("episode:ep01")["status"], "skipped");
}

fn music_volume(p: &TestProject) -> String {
    let rules = p.read("rules/audio.yaml");
    let line = rules
        .lines()
        .find(|l| l.trim_start().starts_with("music_volume:"))
        .unwrap();
    line.split(':')
        .nth(1)
        .unwrap()
        .split('#')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// `../shared/tools/media-report --json`, when the workspace has it.
fn media_report(file: &Path) -> Option<serde_json::Value> {
    let tool = Path::new(common::REPO).join("../shared/tools/media-report");
    tool.is_file().then(|| media::media_report(&tool, file))
}

/// Ctrl-C during real media work: ffmpeg children are killed with the
/// build, no scratch directory is left behind, and the next build resumes.
#[test]
fn ctrl_c_kills_running_tools_and_leaves_no_scratch() {
    let p = TestProject::example("tiny");
    let child = p.spawn(&["build", "ep01"]);
    let scratch = p.path("cache/tmp");
    // Wait until a tool is running in a job's scratch directory.
    let started = std::time::Instant::now();
    while !running_in(&scratch) {
        assert!(started.elapsed().as_secs() < 60, "no tool started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    common::signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!running_in(&scratch), "a tool outlived the build");
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    let resumed = animatic_build(&p).ok();
    assert!(resumed.total("built") > 0);
}

/// Whether any process has `dir` on its command line.
#[allow(clippy::disallowed_methods)]
fn running_in(dir: &Path) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", dir.to_str().unwrap()])
        .output()
        .is_ok_and(|o| o.status.success())
}
