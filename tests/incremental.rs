//! Minimal rebuilds: each edit rebuilds exactly what depends on it.

mod common;

use common::{TestProject, set};

/// The graph of one episode of the sample project builds, then is a no-op.
#[test]
fn sample_episode_builds_then_noop() {
    let p = TestProject::sample();
    let first = p.build(&["ep01"]).ok();
    assert_eq!(first.total("failed"), 0);
    assert_eq!(first.total("cached"), 0);
    let built = first.built();
    assert!(built.len() > 90, "every node of ep01 is built: {}", built.len());
    for kind in [
        "character_refs",
        "shot_image",
        "raw_video",
        "refined_video",
        "shot_video",
        "last_frame",
        "voice_line",
        "scene_music",
        "scene_mix",
        "shot_segment",
        "transition",
        "episode_video",
        "episode_audio",
        "episode",
    ] {
        assert!(
            built.iter().any(|id| id.starts_with(&format!("{kind}:"))),
            "no {kind} built"
        );
    }
    assert!(p.path("out/ep01/ep01.mp4").is_file(), "materialized under out/");

    let second = p.build(&["ep01"]).ok();
    assert_eq!(second.total("built"), 0, "a no-op: {:?}", second.built());
    assert_eq!(second.total("cached"), first.total("built"));
}

/// Rebuilt ids after an edit, relative to a fully built tiny project.
/// The nodes of one shot's picture (`shot` as `s01/sh02`) that a change to its
/// camera move or storyboard rebuilds: image, video chain, review and last
/// frame.
fn shot_chain(shot: &str) -> impl Iterator<Item = String> + '_ {
    [
        "shot_image",
        "raw_video",
        "refined_video",
        "shot_video",
        "shot_review",
        "last_frame",
    ]
    .into_iter()
    .map(move |kind| format!("{kind}:ep01/{shot}"))
}

fn rebuilt_after(edit: impl FnOnce(&TestProject)) -> (TestProject, common::Build) {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    edit(&p);
    let b = p.build(&[]).ok();
    (p, b)
}

#[test]
fn dialogue_edit_rebuilds_voice_mix_and_episode() {
    // Same word count: the line lasts as long, so no shot is retimed.
    let (_, b) = rebuilt_after(|p| p.edit("episodes/ep01.yaml", "Okay, you win.", "Fine, you win."));
    assert_eq!(
        b.built(),
        set(&[
            "voice_line:ep01/s02/sh01/1",
            "scene_mix:ep01/s02",
            "episode_audio:ep01",
            "episode:ep01"
        ])
    );
}

#[test]
fn longer_dialogue_retimes_its_shot() {
    // Eleven more words cannot be said in a 3 s shot: the shot stretches, so
    // its video, the scene's music and everything timed by it follow.
    let (_, b) = rebuilt_after(|p| {
        p.edit(
            "episodes/ep01.yaml",
            "Okay, you win.",
            "Okay, okay, you win, you always win, every single time, Mio, honestly.",
        )
    });
    let built = b.built();
    for id in [
        "voice_line:ep01/s02/sh01/1",
        "shot_video:ep01/s02/sh01",
        "scene_music:ep01/s02",
        "scene_mix:ep01/s02",
        "shot_segment:ep01/s02/sh01",
        "episode:ep01",
    ] {
        assert!(built.contains(id), "{id} rebuilt: {built:?}");
    }
    assert!(
        !built.contains("raw_video:ep01/s02/sh01"),
        "the generated video is not redone"
    );
    assert!(
        !built.iter().any(|id| id.contains("/s01")),
        "scene s01 untouched: {built:?}"
    );
}

#[test]
fn ducking_change_rebuilds_only_mixes_and_episode() {
    let (_, b) = rebuilt_after(|p| p.edit("rules/audio.yaml", "duck_ratio: 6", "duck_ratio: 8"));
    assert_eq!(
        b.built(),
        set(&[
            "scene_mix:ep01/s01",
            "scene_mix:ep01/s02",
            "episode_audio:ep01",
            "episode:ep01"
        ])
    );
}

#[test]
fn design_prompt_change_rebuilds_that_character_and_their_shots() {
    let (_, b) = rebuilt_after(|p| {
        let text = p.read("studio.yaml");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("design_prompt:"))
            .unwrap()
            .to_string();
        p.edit("studio.yaml", &line, &format!("{line}, red scarf"));
    });
    let mut expected = set(&[
        "character_refs:kai",
        // The three changed shots' segments, and the transition between
        // s01/sh02 and s02/sh01. s02/sh02 keeps its segment.
        "shot_segment:ep01/s01/sh01",
        "shot_segment:ep01/s01/sh02",
        "shot_segment:ep01/s02/sh01",
        "transition:ep01/s02",
        "episode_video:ep01",
        "episode:ep01",
    ]);
    // Kai is in s01/sh01 and s02/sh01; s01/sh02 continues from s01/sh01's
    // last frame (Mio is in both), so it is redone too.
    for shot in ["s01/sh01", "s01/sh02", "s02/sh01"] {
        expected.extend(shot_chain(shot));
    }
    // The sim profile runs the review loop: Kai's candidates are drawn
    // again from the new design and reviewed, round after round; nobody
    // else's.
    let rounds: std::collections::BTreeSet<String> = (b.built().into_iter())
        .filter(|id| id.starts_with("candidate:") || id.starts_with("review:"))
        .collect();
    assert!(
        rounds.contains("candidate:kai/r1/1") && rounds.contains("review:kai/r1/1"),
        "{rounds:?}"
    );
    assert!(rounds.iter().all(|id| id.contains(":kai/")), "{rounds:?}");
    expected.extend(rounds);
    assert_eq!(b.built(), expected);
    // Timing did not change: music and mixes stop the wave.
    assert_eq!(b.node("scene_music:ep01/s01")["status"], "cutoff");
    assert_eq!(b.node("episode_audio:ep01")["status"], "cached");
}

/// A shot's camera move changed: that shot's chain, its segment, the
/// transition it lies under (s01/sh02 is its scene's last shot, under the
/// crossfade into s02), the episode video (a stream copy of the segments)
/// and the mux. No other shot's segment is encoded again.
#[test]
fn motion_edit_reencodes_one_shot_segment_and_its_transition() {
    let (_, b) = rebuilt_after(|p| p.edit("episodes/ep01.yaml", "motion: slow push in", "motion: slow pan right"));
    let mut expected = set(&[
        "shot_segment:ep01/s01/sh02",
        "transition:ep01/s02",
        "episode_video:ep01",
        "episode:ep01",
    ]);
    // The storyboard's caption names the move, so the shot's image is redrawn.
    expected.extend(shot_chain("s01/sh02"));
    assert_eq!(b.built(), expected);
    for other in ["s01/sh01", "s02/sh01", "s02/sh02"] {
        assert_eq!(b.node(&format!("shot_segment:ep01/{other}"))["status"], "cached");
    }
}

/// A camera move changed on a shot no transition reaches (s02/sh02, the
/// episode's last; no character, so no continuity): its chain, its segment,
/// the episode video and the mux. No transition is drawn again.
#[test]
fn motion_edit_off_the_transitions_reencodes_only_its_shot() {
    let (_, b) = rebuilt_after(|p| {
        p.edit(
            "episodes/ep01.yaml",
            "motion: static hold\n        action: The bus",
            "motion: slow pan right\n        action: The bus",
        )
    });
    let mut expected = set(&["shot_segment:ep01/s02/sh02", "episode_video:ep01", "episode:ep01"]);
    expected.extend(shot_chain("s02/sh02"));
    assert_eq!(b.built(), expected);
    assert_eq!(b.node("transition:ep01/s02")["status"], "cached");
}

/// A shot shorter than the transition out of its scene (s01 gets a 0.2-s
/// sh03, 6 frames of the 12): the transition reads it and the shot before
/// it, the shot before is cut by sh03's length (read for its timing only),
/// and a motion edit on that shot draws the transition again but leaves
/// sh03's (empty) segment alone.
#[test]
fn a_transition_over_two_shots_reads_both() {
    let p = TestProject::example("tiny");
    p.edit(
        "episodes/ep01.yaml",
        "            text: 'He said: \"100% sure.\"'\n",
        "            text: 'He said: \"100% sure.\"'\n      - id: sh03\n        type: wide\n        \
         motion: static hold, rain\n        action: Rain on the empty stop.\n        duration: 0.2\n",
    );
    let json = p.run(&["graph", "ep01", "--format", "json", "--profile", "sim"]);
    let v: serde_json::Value = serde_json::from_str(&json.success().stdout).unwrap();
    let inputs = |id: &str| -> Vec<(String, String)> {
        let node = v["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap();
        (node["inputs"].as_array().unwrap().iter())
            .map(|i| {
                (
                    i["role"].as_str().unwrap().to_string(),
                    i["uses"].as_str().unwrap().to_string(),
                )
            })
            .filter(|(role, _)| !role.starts_with("gate"))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    assert_eq!(
        inputs("transition:ep01/s02"),
        pairs(&[
            ("from:sh02", "content"),
            ("from:sh03", "content"),
            ("to:sh01", "content")
        ])
    );
    assert_eq!(
        inputs("shot_segment:ep01/s01/sh02"),
        pairs(&[("shot", "content"), ("after:sh03", "duration")])
    );
    assert_eq!(inputs("shot_segment:ep01/s01/sh03"), pairs(&[("shot", "content")]));
    assert_eq!(inputs("shot_segment:ep01/s01/sh01"), pairs(&[("shot", "content")]));
    p.build(&[]).ok();

    p.edit("episodes/ep01.yaml", "motion: slow push in", "motion: slow pan right");
    let b = p.build(&[]).ok();
    for id in [
        "shot_segment:ep01/s01/sh02",
        "transition:ep01/s02",
        "episode_video:ep01",
    ] {
        assert_eq!(b.node(id)["status"], "built", "{id}");
    }
    for id in [
        "shot_segment:ep01/s01/sh01",
        "shot_segment:ep01/s01/sh03",
        "shot_segment:ep01/s02/sh01",
    ] {
        assert_eq!(b.node(id)["status"], "cached", "{id}");
    }
}

#[test]
fn respacing_a_line_stops_at_the_voice() {
    // Speech engines read words, not spaces: the voice is rebuilt to the same
    // bytes and nothing after it runs (early cutoff).
    let (_, b) = rebuilt_after(|p| p.edit("episodes/ep01.yaml", "Okay, you win.", "Okay,   you win. "));
    assert_eq!(b.built(), set(&["voice_line:ep01/s02/sh01/1"]));
    assert_eq!(b.node("scene_mix:ep01/s02")["status"], "cutoff");
    assert_eq!(
        b.node("episode:ep01")["status"],
        "cutoff",
        "it times subtitles by the voice"
    );
    assert_eq!(b.node("episode_audio:ep01")["status"], "cached");
}

#[test]
fn a_new_take_rerolls_only_that_shot() {
    let (_, b) = rebuilt_after(|p| {
        p.edit(
            "episodes/ep01.yaml",
            "action: Mio smiles confidently.",
            "action: Mio smiles confidently.\n        take: 2",
        )
    });
    let built = b.built();
    assert!(built.contains("raw_video:ep01/s01/sh02"), "{built:?}");
    assert!(
        !built
            .iter()
            .any(|id| id.contains("s01/sh01") || (id.contains("/s02") && !id.starts_with("transition:"))),
        "{built:?}"
    );
    // The shot's segment is encoded again, and the crossfade out of it
    // into s02 (`transition:ep01/s02`); no segment of s02 is.
    for id in [
        "shot_segment:ep01/s01/sh02",
        "transition:ep01/s02",
        "episode_video:ep01",
    ] {
        assert!(built.contains(id), "{id}: {built:?}");
    }
    assert!(
        !built.contains("voice_line:ep01/s01/sh02/1"),
        "the voice keeps its take"
    );
}

#[test]
fn dry_run_and_why_explain_the_change() {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    p.edit("episodes/ep01.yaml", "Okay, you win.", "Fine, you win.");
    let plan = p.run(&["build", "-n", "--profile", "sim"]);
    plan.success();
    assert!(plan.stdout.contains("voice_line:ep01/s02/sh01/1"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains(r#"`text` changed from "Okay, you win." to "Fine, you win.""#),
        "{}",
        plan.stdout
    );
    // Downstream of the line: its shot (video, review, last frame), the
    // scene's music and mix, the shot's segment, the transition into s02,
    // the episode's video and audio, and the episode.
    assert!(
        plan.stdout.contains("1 stale, 10 more rebuilt if their inputs change"),
        "{}",
        plan.stdout
    );

    let why = p.run(&["why", "episode:ep01", "--profile", "sim"]);
    why.success();
    assert!(
        why.stdout.contains("changed since the last build: episodes/ep01.yaml"),
        "{}",
        why.stdout
    );
    assert!(why.stdout.contains("cues[2].text"), "{}", why.stdout);
    assert!(
        why.stdout
            .contains(r#"`text` changed from "Okay, you win." to "Fine, you win.""#),
        "{}",
        why.stdout
    );

    // Nothing was built by either.
    assert_eq!(p.build(&[]).ok().built().len(), 4);
}

#[test]
fn targets_select_parts_of_an_episode() {
    let p = TestProject::example("tiny");
    let shot = p.build(&["ep01/s01/sh02"]).ok();
    let built = shot.built();
    assert!(built.contains("shot_video:ep01/s01/sh02") && built.contains("voice_line:ep01/s01/sh02/1"));
    assert!(
        !built.iter().any(|id| id.starts_with("scene_") || id.contains("/s02")),
        "{built:?}"
    );
    let scene = p.build(&["ep01/s01"]).ok();
    assert!(scene.built().contains("scene_mix:ep01/s01"));
    assert_eq!(scene.node("shot_video:ep01/s01/sh02")["status"], "cached");
    let bad = p.run(&["build", "ep01/s09", "--profile", "sim"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn out_files_deleted_or_edited_are_restored_without_rebuilding() {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    let episode = p.path("out/ep01/ep01.mp4");
    let voice = p.path("out/ep01/s01/sh01/voice-1.wav");
    let original = std::fs::read(&voice).unwrap();
    std::fs::remove_file(&episode).unwrap();
    std::fs::write(&voice, b"scribbled over").unwrap();
    let b = p.build(&[]).ok();
    assert_eq!(b.total("built"), 0);
    assert!(episode.is_file(), "the episode is copied out again");
    assert_eq!(std::fs::read(&voice).unwrap(), original, "the edited copy is restored");
}

/// What a job learned (the engine, its executor, the seed a stochastic
/// engine reports) is kept in the manifest, printed in `--json` and shown
/// by `studio why`, also once the node is up to date.
#[test]
fn manifests_keep_metadata_shown_by_json_and_why() {
    let p = TestProject::example("tiny");
    let built = p.build(&[]).ok();
    for n in &built.nodes {
        let m = &n["metadata"];
        assert_eq!(m["engine"], n["engine"], "{n}");
        assert!(m["executor"].is_string(), "{n}");
        assert!(m.get("host").is_none(), "the sim contacts no host: {n}");
    }
    let video = built.node("raw_video:ep01/s01/sh02");
    assert_eq!(video["metadata"]["executor"], "comfy-main");
    let seed = video["metadata"]["seed"]
        .as_u64()
        .expect("a stochastic engine reports its seed");
    let voice = built.node("voice_line:ep01/s01/sh01/1");
    assert_eq!(voice["metadata"]["executor"], "tts-local");
    assert!(voice["metadata"].get("seed").is_none(), "{voice}");

    let why = p.run(&["why", "raw_video:ep01/s01/sh02", "--profile", "sim"]);
    why.success();
    assert!(
        why.stdout.contains("raw_video:ep01/s01/sh02: up to date"),
        "{}",
        why.stdout
    );
    for line in [
        format!("last built by {}:", video["engine"].as_str().unwrap()),
        "executor: comfy-main".to_string(),
        format!("seed: {seed}"),
    ] {
        assert!(why.stdout.contains(&line), "`{line}` in:\n{}", why.stdout);
    }

    // A new take re-rolls: a new seed, recorded and shown.
    p.edit(
        "episodes/ep01.yaml",
        "action: Mio smiles confidently.",
        "action: Mio smiles confidently.\n        take: 2",
    );
    let again = p.build(&[]).ok();
    let new_seed = &again.node("raw_video:ep01/s01/sh02")["metadata"]["seed"];
    assert!(new_seed.as_u64().is_some_and(|s| s != seed), "{new_seed}");
    let why = p.run(&["why", "raw_video:ep01/s01/sh02", "--profile", "sim"]);
    assert!(why.stdout.contains(&format!("seed: {new_seed}")), "{}", why.stdout);
}

/// Each character's voice sample (`cast`) is a voice line like any other:
/// `build cast` makes one per character in their voice; a change to one
/// character's voice remakes that sample, and a dialogue edit none.
#[test]
fn voice_samples_follow_their_characters_voice() {
    let p = TestProject::example("tiny");
    let b = p.build(&["cast"]).ok();
    assert_eq!(b.built(), set(&["voice_line:cast/kai", "voice_line:cast/mio"]));
    assert!(
        p.path("out/cast/kai/voice-sample.wav").is_file(),
        "materialized for the page"
    );
    assert_eq!(p.build(&["cast"]).ok().total("built"), 0, "a no-op");

    p.edit("episodes/ep01.yaml", "Will it come?", "Will it ever come?");
    assert_eq!(
        p.build(&["cast"]).ok().total("built"),
        0,
        "dialogue is not the sample's"
    );

    p.edit("studio.yaml", "piper: {pitch: 4,", "piper: {pitch: 5,");
    let b = p.build(&["cast"]).ok();
    assert_eq!(b.built(), set(&["voice_line:cast/mio"]), "only the changed voice");
}
