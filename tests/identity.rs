//! Keys hold what a node reads: a tool's version enters only the keys of
//! the engines that use it, and a file a rule or studio.yaml names enters
//! keys by its content.
#![allow(clippy::disallowed_methods)] // the fake tool is a test fixture

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Build, TestProject, set};
use serde_json::Value;

/// `tool` on PATH, like studio finds it.
fn on_path(tool: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed: run `bash scripts/deps.sh`"))
}

/// A folder holding an `espeak-ng` that reports another version and speaks
/// with the real one, and the PATH that finds it first.
fn fake_espeak(dir: &Path, version: &str) -> Vec<(String, String)> {
    let real = on_path("espeak-ng");
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("espeak-ng");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'eSpeak NG text-to-speech: {version}  Data at: /nowhere'; exit 0; fi\nexec '{}' \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    vec![("PATH".into(), format!("{}:{path}", dir.display()))]
}

/// `studio build -n --json ARGS`: node id → plan status (stale, may_follow, fresh).
fn plan(p: &TestProject, args: &[&str], env: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = vec!["build", "-n", "--json"];
    all.extend_from_slice(args);
    let run = p.run_env(&all, env);
    run.success();
    run.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "plan")
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn with_status(plan: &[(String, String)], status: &str) -> BTreeSet<String> {
    plan.iter()
        .filter(|(_, s)| s == status)
        .map(|(id, _)| id.clone())
        .collect()
}

fn kind_of(id: &str) -> &str {
    id.split(':').next().unwrap()
}

/// The animatic with real tools: a new espeak-ng re-voices the lines and
/// nothing that does not hear them; the voices come out the same, so the
/// wave stops there.
#[test]
fn a_new_espeak_version_revoices_only_the_lines() {
    let p = TestProject::example("tiny");
    let first = Build::parse_run(p.run(&["build", "--json"])).ok();
    assert_eq!(first.total("failed"), 0);
    let voices: BTreeSet<String> = first
        .nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .filter(|id| kind_of(id) == "voice_line")
        .collect();
    assert_eq!(voices.len(), 3, "the tiny episode has three lines: {voices:?}");
    let episode = std::fs::read(p.path("out/ep01/ep01.mp4")).unwrap();

    let env = fake_espeak(&p.root.parent().unwrap().join("bin"), "9.99-fake");
    let planned = plan(&p, &[], &env);
    assert_eq!(
        with_status(&planned, "stale"),
        voices,
        "exactly the voice lines are stale"
    );
    let follow = with_status(&planned, "may_follow");
    for id in &follow {
        assert!(
            [
                "shot_video",
                "last_frame",
                "scene_music",
                "scene_mix",
                "shot_segment",
                "transition",
                "episode_video",
                "episode_audio",
                "episode"
            ]
            .contains(&kind_of(id)),
            "{id} does not depend on a voice line"
        );
    }
    for kind in ["character_refs", "shot_image", "raw_video", "refined_video"] {
        assert!(
            planned.iter().all(|(id, s)| kind_of(id) != kind || s == "fresh"),
            "no {kind} node is stale: {planned:?}"
        );
    }

    let why = p.run_env(&["why", "voice_line:ep01/s01/sh01/1"], &env);
    why.success();
    assert!(
        why.stdout
            .contains("espeak-ng changed from `eSpeak NG text-to-speech: ")
            && why.stdout.contains("to `eSpeak NG text-to-speech: 9.99-fake`"),
        "{}",
        why.stdout
    );
    assert!(
        !why.stdout.contains("Data at"),
        "versions name no install path: {}",
        why.stdout
    );

    let second = Build::parse_run(p.run_env(&["build", "--json"], &env)).ok();
    assert_eq!(second.built(), voices, "only the voices are made again");
    for id in [
        "shot_image:ep01/s01/sh01",
        "raw_video:ep01/s01/sh01",
        "scene_music:ep01/s01",
    ] {
        assert_eq!(second.node(id)["status"], "cached", "{id}");
    }
    // The same espeak-ng speaks: same bytes, so the mixes stop the wave.
    assert_eq!(second.node("scene_mix:ep01/s01")["status"], "cutoff");
    assert_eq!(std::fs::read(p.path("out/ep01/ep01.mp4")).unwrap(), episode);

    // Back to the real espeak-ng: its keys are the first build's, all cached.
    let back = Build::parse_run(p.run(&["build", "--json"])).ok();
    assert_eq!(back.total("built"), 0, "{:?}", back.built());
}

const WORKFLOW: &str = "rules/workflows/txt2img.json";

/// A workflow edited in place (same path, new bytes) rebuilds what reads it,
/// and `why` names the file.
#[test]
fn an_edited_workflow_rebuilds_what_reads_it() {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();

    // New mtime, same bytes: nothing changed.
    let text = p.read(WORKFLOW);
    p.write(WORKFLOW, &text);
    assert_eq!(p.build(&[]).ok().total("built"), 0);

    p.edit(WORKFLOW, "\"steps\": 28", "\"steps\": 30");
    // The txt2img workflow makes the character art's candidates.
    let why = p.run(&["why", "candidate:kai/r1/1", "--profile", "sim"]);
    why.success();
    assert!(
        why.stdout
            .contains(&format!("changed since the last build: {WORKFLOW}")),
        "{}",
        why.stdout
    );
    assert!(
        why.stdout
            .contains(&format!("{WORKFLOW} changed (`workflows.comfyui_txt2img.workflow`)")),
        "{}",
        why.stdout
    );
    let planned = plan(&p, &["--profile", "sim"], &[]);
    let candidates: Vec<String> = ["kai", "mio"]
        .iter()
        .flat_map(|c| (1..=4).map(move |i| format!("candidate:{c}/r1/{i}")))
        .collect();
    let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
    assert_eq!(with_status(&planned, "stale"), set(&candidates));

    let b = p.build(&[]).ok();
    let built = b.built();
    assert!(
        built.contains("candidate:kai/r1/1") && built.contains("candidate:mio/r1/1"),
        "{built:?}"
    );
    for id in &built {
        assert!(
            !["voice_line", "scene_music", "scene_mix", "episode_audio"].contains(&kind_of(id)),
            "{id} does not read the references"
        );
    }
    assert_eq!(p.build(&[]).ok().total("built"), 0, "then a no-op");
}

/// A reference clip named in studio.yaml is keyed by content: editing it
/// re-voices that character's lines, and no one else's.
#[test]
fn an_edited_reference_clip_revoices_its_speaker() {
    let p = TestProject::example("tiny");
    p.write("voices/kai.wav", "RIFF kai, take 1");
    p.edit(
        "studio.yaml",
        "espeak: en-us+m3",
        "espeak: en-us+m3\n      reference_audio: {file: voices/kai.wav}",
    );
    let first = p.build(&[]).ok();
    let kai: BTreeSet<String> = first
        .nodes
        .iter()
        .filter(|n| n["engine"] == "xtts")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!kai.is_empty(), "kai's lines are cloned from the clip");

    p.write("voices/kai.wav", "RIFF kai, take 2");
    let planned = plan(&p, &["--profile", "sim"], &[]);
    assert_eq!(with_status(&planned, "stale"), kai, "exactly kai's lines");
    let why = p.run(&["why", kai.iter().next().unwrap(), "--profile", "sim"]);
    assert!(
        why.stdout.contains("voices/kai.wav changed (`voice.reference_audio`)"),
        "{}",
        why.stdout
    );
    let b = p.build(&[]).ok();
    assert!(kai.is_subset(&b.built()), "{:?}", b.built());
    assert!(
        b.built()
            .iter()
            .all(|id| kind_of(id) != "voice_line" || kai.contains(id)),
        "no other voice: {:?}",
        b.built()
    );
}

/// `soundfont: {file: PATH}` gives the procedural music a project's
/// soundfont in place of the system's, keyed by its content. Here it is the
/// system's own file, linked into the project: the music is made again, to
/// the same bytes.
#[test]
fn a_project_soundfont_replaces_the_systems() {
    let p = TestProject::example("tiny");
    let target = ["build", "ep01/s02", "--json"];
    let first = Build::parse_run(p.run(&target)).ok();
    let music = "scene_music:ep01/s02";
    assert_eq!(first.node(music)["status"], "built");

    let system = [
        "/usr/share/sounds/sf2/FluidR3_GM.sf2",
        "/usr/share/sounds/sf2/default-GM.sf2",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
    .expect("a GM soundfont: run `bash scripts/deps.sh`");
    std::fs::create_dir_all(p.path("sounds")).unwrap();
    std::os::unix::fs::symlink(system, p.path("sounds/gm.sf2")).unwrap();
    p.edit(
        "rules/audio.yaml",
        "      engine: procedural\n",
        "      engine: procedural\n      params:\n        soundfont: {file: sounds/gm.sf2}\n",
    );
    let planned = plan(&p, &["ep01/s02"], &[]);
    assert_eq!(with_status(&planned, "stale"), set(&[music]));
    let why = p.run(&["why", music]);
    assert!(
        why.stdout.contains("no longer uses soundfont")
            && why
                .stdout
                .contains(r#"`soundfont` changed from (unset) to "sounds/gm.sf2""#),
        "{}",
        why.stdout
    );

    let b = Build::parse_run(p.run(&target)).ok();
    assert_eq!(b.built(), set(&[music]));
    assert_eq!(
        b.node(music)["output"],
        first.node(music)["output"],
        "the same soundfont plays"
    );
    assert_eq!(b.node("scene_mix:ep01/s02")["status"], "cutoff");

    // The rule's file is what plays: one that is no soundfont fails the
    // music (fluidsynth alone would skip it and play its default).
    p.write("sounds/gm.sf2.txt", "not a soundfont");
    p.edit("rules/audio.yaml", "sounds/gm.sf2}", "sounds/gm.sf2.txt}");
    let bad = Build::parse_run(p.run(&target));
    assert_eq!(bad.run.code, 1, "{}", bad.run.stderr);
    assert_eq!(bad.node(music)["status"], "failed");
    let error = bad.node(music)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("sounds/gm.sf2.txt is not a SoundFont 2 file"), "{error}");
}
