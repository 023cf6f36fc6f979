//! Edits cost what they change, in a real animatic build of the tiny
//! example: a dialogue edit re-measures one scene's mix, not the episode,
//! and a caption edit redraws the storyboard and reruns nothing that reads
//! only its plate. The episode's loudness, put together from its scenes'
//! measurements, agrees with ffmpeg's meter on the joined audio, and the
//! delivered episode meets the loudness targets.

mod common;

use std::path::Path;
use std::process::Command;

use common::media;
use common::{TestProject, set};

fn animatic_build(p: &TestProject) -> common::Build {
    common::Build::parse_run(p.run(&["build", "ep01", "--json"])).ok()
}

/// ffmpeg's integrated loudness of the scene mixes joined as the episode
/// joins them (one 0.4-s triangular crossfade).
#[allow(clippy::disallowed_methods)] // the test measures with ffmpeg itself
fn ffmpeg_joined_lufs(p: &TestProject) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(p.path("out/ep01/s01/mix.wav"))
        .arg("-i")
        .arg(p.path("out/ep01/s02/mix.wav"))
        .args([
            "-filter_complex",
            "[0:a][1:a]acrossfade=ns=19200:c1=tri:c2=tri,ebur128",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = &err[err.rfind("Summary:").expect("an ebur128 summary")..];
    let at = summary.find("I:").unwrap() + 2;
    summary[at..].split_whitespace().next().unwrap().parse().unwrap()
}

/// The episode audio's record: its loudness from the scenes agrees with
/// ffmpeg's meter, only the blocks around the crossfade were measured by
/// the episode, and the delivered MP4 meets −16 ± 1 LUFS, ≤ −1 dBTP.
fn check_loudness(p: &TestProject, b: &common::Build) {
    let m = &b.node("episode_audio:ep01")["metadata"];
    let from_scenes = m["scenes_lufs"].as_f64().expect("scenes_lufs");
    let ffmpeg = ffmpeg_joined_lufs(p);
    assert!(
        (from_scenes - ffmpeg).abs() <= 0.3,
        "from the scenes {from_scenes} LUFS, ffmpeg's ebur128 {ffmpeg} LUFS"
    );
    let (blocks, here) = (
        m["blocks"].as_u64().unwrap(),
        m["blocks_measured_here"].as_u64().unwrap(),
    );
    assert!(
        here > 0 && here * 10 < blocks,
        "{here} of {blocks} blocks measured by the episode: {m}"
    );
    // One encode, limited or not: the gain and the limiter are applied and
    // metered in process, so the encode already meets the target (Piper's
    // lines peak near full scale: the tiny example needs some limiting).
    assert_eq!(m["encodes"], 1, "one encode: {m}");
    let rounds = m["shaping_rounds"].as_u64().unwrap();
    if m["limited"] == false {
        assert_eq!(rounds, 1, "the gain alone: one render, no meter: {m}");
        assert_eq!(m["limiter_reduction_db"], 0.0, "{m}");
    } else {
        assert!((1..=8).contains(&rounds), "{m}");
    }
    let (lufs, peak) = media::loudness(&p.path("out/ep01/ep01.mp4"));
    assert!((lufs + 16.0).abs() <= 1.0, "integrated loudness {lufs} LUFS");
    assert!(peak <= -1.0, "true peak {peak} dBTP");
    let recorded = m["lufs"].as_f64().unwrap();
    assert!(
        (recorded - lufs).abs() <= 0.3,
        "checked {recorded} LUFS, delivered {lufs}"
    );
    for scene in ["s01", "s02"] {
        let file = p.path(&format!("out/ep01/{scene}/mix.loudness.json"));
        assert!(Path::new(&file).is_file(), "{scene}'s mix comes with its measurement");
    }
}

#[test]
fn edits_rebuild_only_what_reads_what_changed() {
    let p = TestProject::example("tiny");
    let first = animatic_build(&p);
    assert_eq!(first.total("failed"), 0);
    check_loudness(&p, &first);

    // One vowel of one line: its voice, its scene's mix (measured again),
    // the episode audio (from the measurements) and the episode.
    p.edit("episodes/ep01.yaml", "Okay, you win.", "Okey, you win.");
    let dialogue = animatic_build(&p);
    assert_eq!(
        dialogue.built(),
        set(&[
            "voice_line:ep01/s02/sh01/1",
            "scene_mix:ep01/s02",
            "episode_audio:ep01",
            "episode:ep01"
        ])
    );
    assert_eq!(dialogue.node("scene_mix:ep01/s01")["status"], "cached");
    check_loudness(&p, &dialogue);

    // The action is the review panel's caption: the storyboard is redrawn,
    // its plate comes out the same, and the camera move that films the
    // plate stays as it was.
    let plate = std::fs::read(p.path("out/ep01/s01/sh02/image.png")).unwrap();
    let panel = std::fs::read(p.path("out/ep01/s01/sh02/image.panel.png")).unwrap();
    p.edit(
        "episodes/ep01.yaml",
        "action: Mio smiles confidently.",
        "action: Mio grins confidently.",
    );
    let caption = animatic_build(&p);
    assert_eq!(caption.built(), set(&["shot_image:ep01/s01/sh02"]));
    assert_ne!(caption.node("raw_video:ep01/s01/sh02")["status"], "built");
    assert_eq!(std::fs::read(p.path("out/ep01/s01/sh02/image.png")).unwrap(), plate);
    assert_ne!(
        std::fs::read(p.path("out/ep01/s01/sh02/image.panel.png")).unwrap(),
        panel
    );
    let why = p.run(&["why", "raw_video:ep01/s01/sh02"]);
    why.success();
    assert!(
        why.stdout.contains("raw_video:ep01/s01/sh02: up to date"),
        "{}",
        why.stdout
    );
}
