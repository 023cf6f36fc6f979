//! The music library: the user's tracks by mood, looped with crossfades to
//! each scene's length (animatic builds of the tiny example), and the
//! loader's diagnostics for a library that names a missing file or mood.

use std::path::Path;
use std::process::Command;

use super::common::{Build, TestProject};
use super::samples;

/// A `seconds`-long sine of `hz` at 44.1 kHz stereo (resampled by studio),
/// ending mid-cycle so a loop without a crossfade clicks.
fn tone(p: &TestProject, rel: &str, hz: f64, seconds: f64) {
    let path = p.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("sine=f={hz}:r=44100:d={seconds}"))
        .args(["-ac", "2"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The tiny example whose scene music comes from `library` (a
/// `music_library:` block), procedural as the fallback.
fn with_library(library: &str) -> TestProject {
    let p = TestProject::example("tiny");
    p.edit(
        "rules/audio.yaml",
        "    animatic:\n      engine: procedural\n",
        "    animatic:\n      engine: library_music\n      fallbacks: [procedural]\n",
    );
    let text = p.read("studio.yaml");
    p.write("studio.yaml", &format!("{text}\n{library}"));
    p
}

fn build(p: &TestProject, targets: &[&str]) -> Build {
    let mut args = vec!["build", "--json"];
    args.extend_from_slice(targets);
    Build::parse_run(p.run(&args))
}

/// The first channel of an audio file as f32 samples at 48 kHz.
fn pcm(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-af", "pan=mono|c0=c0", "-ar", "48000", "-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The largest jump between two neighbouring samples in `x[from..to]`.
fn max_step(x: &[f32], from: usize, to: usize) -> f32 {
    x[from..to].windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
}

const LIBRARY: &str = "music_library:
  dir: music/
  tracks:
    - {file: rain.wav, moods: [calm]}
    - {file: bright.flac, moods: [joyful, comedic]}
";

#[test]
fn a_short_track_loops_with_crossfades_to_exactly_the_scenes_length_without_a_click() {
    let p = with_library(LIBRARY);
    // 2.33 s of 440 Hz ends 0.2 of a cycle in: a hard loop would jump.
    tone(&p, "music/rain.wav", 440.0, 2.33);
    tone(&p, "music/bright.flac", 660.0, 1.7);
    let b = build(
        &p,
        &[
            "scene_music:ep01/s01",
            "scene_music:ep01/s02",
            "scene_video:ep01/s01",
            "scene_video:ep01/s02",
        ],
    )
    .ok();
    for (scene, track) in [("s01", "music/rain.wav"), ("s02", "music/bright.flac")] {
        let n = b.node(&format!("scene_music:ep01/{scene}"));
        assert_eq!(n["engine"], "library_music", "{n}");
        assert_eq!(n["metadata"]["track"], track, "{n}");
        assert!(n["metadata"]["passes"].as_u64().unwrap() >= 3, "the track loops: {n}");
        let wav = p.path(&format!("out/ep01/{scene}/music.wav"));
        let frames = super::common::media::frame_count(&p.path(&format!("out/ep01/{scene}/video.mkv")));
        assert_eq!(samples(&wav), frames * 1600, "{scene}: exactly the scene's length");
        let (lufs, _) = super::common::media::loudness(&wav);
        assert!((lufs + 20.0).abs() < 1.0, "{scene}: normalized like the bed: {lufs}");
    }
    // No click: no jump between neighbouring samples bigger than the
    // sine's own steepest step (measured inside the first pass, after the
    // fade-in), but for the crossfade's equal-power bulge (at most √2).
    let x = pcm(&p.path("out/ep01/s01/music.wav"));
    let steady = max_step(&x, 30_000, 80_000);
    let whole = max_step(&x, 0, x.len());
    assert!(steady > 0.001, "the music sounds: {steady}");
    assert!(whole <= steady * 1.5, "a click: step {whole} vs the sine's {steady}");
    // The loop fills the scene: its last seconds are as loud as its first.
    let late = max_step(&x, x.len() - 120_000, x.len() - 80_000);
    assert!(late > steady * 0.5, "sound late in the scene: {late} vs {steady}");
    // The measure would catch a hard loop: the same track joined end to
    // start without a crossfade jumps many times the sine's step.
    let track = pcm(&p.path("music/rain.wav"));
    let hard: Vec<f32> = track.iter().chain(track.iter()).copied().collect();
    let join = max_step(&hard, track.len() - 100, track.len() + 100);
    assert!(join > steady_of(&track) * 5.0, "join {join}");
    eprintln!(
        "largest step: steady {steady:.5}, whole scene {whole:.5} ({:.2}x); hard loop {:.2}x",
        whole / steady,
        join / steady_of(&track)
    );
}

fn steady_of(x: &[f32]) -> f32 {
    max_step(x, 1000, x.len() - 1000)
}

#[test]
fn the_pick_is_by_mood_and_stays_when_the_library_grows() {
    let lib = "music_library:
  dir: music/
  tracks:
    - {file: a.wav, moods: [calm]}
    - {file: b.wav, moods: [calm]}
    - {file: c.wav, moods: [calm, joyful, tense]}
";
    let p = with_library(lib);
    for (name, hz) in [("a", 330.0), ("b", 392.0), ("c", 523.0)] {
        tone(&p, &format!("music/{name}.wav"), hz, 6.0);
    }
    let first = build(&p, &["scene_music:ep01/s01", "scene_music:ep01/s02"]).ok();
    let pick = |b: &Build, s: &str| {
        b.node(&format!("scene_music:ep01/{s}"))["metadata"]["track"]
            .as_str()
            .map(str::to_string)
    };
    let s01 = pick(&first, "s01").unwrap();
    assert!(
        s01 == "music/a.wav" || s01 == "music/b.wav",
        "calm-only tracks first: {s01}"
    );
    assert_eq!(
        pick(&first, "s02").as_deref(),
        Some("music/c.wav"),
        "the one joyful track"
    );
    // Another mood's track, and the list in another order: no scene moves,
    // nothing is rebuilt.
    p.write(
        "studio.yaml",
        &p.read("studio.yaml").replace(
            "    - {file: a.wav, moods: [calm]}\n    - {file: b.wav, moods: [calm]}\n",
            "    - {file: b.wav, moods: [calm]}\n    - {file: d.wav, moods: [eerie]}\n    - {file: a.wav, moods: [calm]}\n",
        ),
    );
    tone(&p, "music/d.wav", 200.0, 6.0);
    let again = build(&p, &["scene_music:ep01/s01", "scene_music:ep01/s02"]).ok();
    assert!(again.built().is_empty(), "rebuilt: {:?}", again.built());
    // The picked track's bytes are in the key: editing it rebuilds its scene only.
    tone(&p, &s01, 250.0, 6.0);
    let edited = build(&p, &["scene_music:ep01/s01", "scene_music:ep01/s02"]).ok();
    assert_eq!(
        edited.built(),
        ["scene_music:ep01/s01".to_string()].into(),
        "{:?}",
        edited.built()
    );
    assert_eq!(
        pick(&edited, "s01"),
        Some(s01),
        "{}",
        edited.node("scene_music:ep01/s01")
    );
}

#[test]
fn a_scene_whose_mood_has_no_track_falls_back_to_procedural() {
    let p = with_library("music_library:\n  tracks:\n    - {file: music/x.wav, moods: [eerie]}\n");
    tone(&p, "music/x.wav", 300.0, 3.0);
    let b = build(&p, &["scene_music:ep01/s01"]).ok();
    assert_eq!(b.node("scene_music:ep01/s01")["engine"], "procedural");
}

#[test]
fn a_missing_track_or_an_unknown_mood_is_a_located_error() {
    let p = with_library(
        "music_library:
  dir: music/
  tracks:
    - {file: here.wav, moods: [calm]}
    - {file: gone.wav, moods: [calm]}
    - {file: here.wav, moods: [spooky]}
",
    );
    tone(&p, "music/here.wav", 300.0, 3.0);
    let run = p.run(&["build", "ep01"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let text = p.read("studio.yaml");
    let line = |marker: &str| text[..text.find(marker).unwrap()].matches('\n').count() + 1;
    let err = &run.stderr;
    assert!(err.contains("music/gone.wav, which does not exist"), "{err}");
    assert!(err.contains(&format!("[studio.yaml:{}:", line("gone.wav"))), "{err}");
    assert!(err.contains("put the file at music/gone.wav"), "{err}");
    assert!(err.contains("tagged `spooky`, which is not a mood"), "{err}");
    assert!(err.contains(&format!("[studio.yaml:{}:", line("spooky"))), "{err}");
    assert!(err.contains("calm, tense, melancholy"), "the moods are listed: {err}");
    assert!(!p.path("out").exists(), "nothing built");
}
