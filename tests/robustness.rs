//! Crashes, interrupts, concurrent builds, failures, retries, fallbacks.

mod common;

use std::collections::BTreeSet;
use std::thread::sleep;
use std::time::Duration;

use common::{TestProject, set};

/// Add injected failures to the sim profile.
fn with_failures(p: &TestProject, failures: &str) {
    p.edit(
        "studio.yaml",
        "    simulate:\n",
        &format!("    simulate:\n      failures:\n{failures}"),
    );
}

#[test]
fn kill_9_mid_build_loses_nothing_finished_and_trusts_nothing_broken() {
    let p = TestProject::sample().time_scale(0.0003);
    let mut cached_after_kill = 0;
    for delay_ms in [400, 900, 1500] {
        let mut child = p.spawn(&["build", "ep01", "--profile", "sim", "--json"]);
        sleep(Duration::from_millis(delay_ms));
        common::signal(child.id(), "-9");
        let _ = child.wait();
        // Sound, though a kill on a loaded machine may come before the
        // first store (the reuse after the kills is asserted below).
        p.sound_objects();
        // Every action-cache entry is whole JSON naming objects that exist.
        for sub in std::fs::read_dir(p.path("cache/ac")).into_iter().flatten() {
            for entry in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                let m: serde_json::Value = serde_json::from_slice(&bytes).expect("no half-written entry");
                for o in m["outputs"].as_array().unwrap() {
                    let h = o["hash"].as_str().unwrap();
                    assert!(p.path(&format!("cache/objects/{}/{h}", &h[..2])).is_file());
                }
            }
        }
        let resumed = p.build(&["ep01"]);
        // Interrupted again by the next round's kill? No: this one runs to the end.
        let resumed = resumed.ok();
        cached_after_kill += resumed.total("cached");
        assert_eq!(resumed.total("failed"), 0);
        // Start the next round from a partly built state again.
        std::fs::remove_dir_all(p.path("out")).unwrap();
        std::fs::remove_dir_all(p.path("cache/state")).unwrap();
        for sub in std::fs::read_dir(p.path("cache/ac")).unwrap() {
            let sub = sub.unwrap().path();
            for (i, entry) in std::fs::read_dir(&sub).unwrap().enumerate() {
                if i % 2 == 0 {
                    std::fs::remove_file(entry.unwrap().path()).unwrap();
                }
            }
        }
    }
    assert!(cached_after_kill > 0, "builds after a kill reuse finished nodes");

    // The result equals a clean build's.
    let final_build = p.build(&["ep01"]).ok();
    let clean = TestProject::sample();
    let reference = clean.build(&["ep01"]).ok();
    assert_eq!(final_build.hashes(), reference.hashes());
    p.assert_cache_sound();
}

#[test]
fn ctrl_c_stops_cleanly_and_the_next_build_resumes() {
    let p = TestProject::sample().time_scale(0.0005);
    let child = p.spawn(&["build", "ep01", "--profile", "sim"]);
    sleep(Duration::from_millis(1200));
    common::signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // Nothing half-written under out/.
    for entry in walk(&p.path("out")) {
        assert!(!entry.contains(".studio-"), "temp file left: {entry}");
    }
    let p = p.time_scale(0.0);
    let next = p.build(&["ep01"]).ok();
    assert!(next.total("cached") > 0, "finished nodes were kept");
    assert!(next.total("built") > 0);
    p.assert_cache_sound();
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_second_build_waits_for_the_first() {
    let p = TestProject::example("tiny").time_scale(0.003);
    let first = p.spawn(&["build", "--profile", "sim"]);
    sleep(Duration::from_millis(300));
    let second = p.run(&["build", "--profile", "sim", "--json"]);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    second.success();
    assert!(
        second.stderr.contains("waiting"),
        "the second build says it waits: {}",
        second.stderr
    );
    assert!(
        second.stdout.contains(r#""built":0"#),
        "it found the first build's work: {}",
        second.stdout
    );
    p.assert_cache_sound();
}

#[test]
fn a_failing_engine_falls_back_along_its_chain() {
    let p = TestProject::example("tiny");
    // s01/sh02 is a solo shot with a source: FramePack I2V, falling back to Wan.
    with_failures(
        &p,
        "        - {node: \"raw_video:ep01/s01/sh02\", engine: framepack_i2v}\n",
    );
    let b = p.build(&[]).ok();
    let n = b.node("raw_video:ep01/s01/sh02");
    assert_eq!(n["status"], "built");
    assert_eq!(n["engine"], "wan_t2v");
    assert!(n["error"].as_str().unwrap().contains("fell back to wan_t2v"));
}

#[test]
fn transient_failures_are_retried() {
    // A local job is tried again after a backoff, on its own engine.
    let p = TestProject::example("tiny");
    with_failures(&p, "        - {node: \"scene_mix:ep01/s01\", transient: 2}\n");
    let b = p.build(&[]).ok();
    assert_eq!(b.node("scene_mix:ep01/s01")["status"], "built");
    assert_eq!(
        b.node("scene_mix:ep01/s01")["engine"],
        "ffmpeg",
        "retried, not fallen back"
    );

    // A job on a service whose only host fails is not left waiting for the
    // host's cool-down: it falls back at once, and what the fallback makes
    // is provisional (the next build asks the service again).
    let q = TestProject::example("tiny");
    with_failures(&q, "        - {node: \"voice_line:ep01/s01/sh01/1\", transient: 2}\n");
    let b = q.build(&[]).ok();
    let n = b.node("voice_line:ep01/s01/sh01/1");
    assert_eq!(n["status"], "built");
    assert_eq!(n["engine"], "espeak", "{n}");
    assert_eq!(n["provisional"], true, "{n}");
}

#[test]
fn keep_going_builds_everything_not_downstream_of_a_failure() {
    let failing = "        - {node: \"voice_line:ep01/s01/sh01/1\"}\n";
    let p = TestProject::example("tiny");
    with_failures(&p, failing);
    let stop = p.build(&[]);
    assert_eq!(stop.run.code, 1, "{}", stop.run.stderr);
    assert_eq!(stop.node("voice_line:ep01/s01/sh01/1")["status"], "failed");
    assert!(stop.total("skipped") > 0);

    let q = TestProject::example("tiny");
    with_failures(&q, failing);
    let kept = q.build(&["--keep-going"]);
    assert_eq!(kept.run.code, 1);
    let skipped = kept.with("skipped");
    // Downstream of the line: its shot (timing), scene audio, and the episode.
    for id in [
        "shot_video:ep01/s01/sh01",
        "scene_mix:ep01/s01",
        "episode_audio:ep01",
        "episode:ep01",
    ] {
        assert!(skipped.contains(id), "{id} skipped: {skipped:?}");
    }
    // s01/sh02 continues from s01/sh01's last frame: blocked as well.
    assert!(skipped.contains("shot_image:ep01/s01/sh02"));
    // Everything else was built, scene s02 included.
    let built = kept.built();
    for id in [
        "scene_mix:ep01/s02",
        "shot_segment:ep01/s02/sh02",
        "voice_line:ep01/s01/sh02/1",
        "raw_video:ep01/s01/sh01",
    ] {
        assert!(built.contains(id), "{id} built: {built:?}");
    }
    let error = kept.node("voice_line:ep01/s01/sh01/1")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("edge_tts: simulated failure") && error.contains("espeak: simulated failure"),
        "{error}"
    );

    // Fix it: only the failed node and what it blocked are built.
    q.edit("studio.yaml", &format!("      failures:\n{failing}"), "");
    let fixed = q.build(&[]).ok();
    let mut expected: BTreeSet<String> = skipped;
    expected.insert("voice_line:ep01/s01/sh01/1".into());
    assert_eq!(fixed.built(), expected);
}

#[test]
fn gc_removes_what_no_node_uses() {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    p.edit("episodes/ep01.yaml", "Okay, you win.", "Fine, you win.");
    p.build(&[]).ok();
    let gc = p.run(&["gc"]);
    gc.success();
    assert!(
        gc.stdout.starts_with("removed 4 cache entries and 4 objects"),
        "{}",
        gc.stdout
    );
    assert_eq!(p.build(&[]).ok().total("built"), 0, "still a no-op after gc");
    p.assert_cache_sound();
    // Going back to the old line rebuilds what gc dropped.
    p.edit("episodes/ep01.yaml", "Fine, you win.", "Okay, you win.");
    assert_eq!(
        p.build(&[]).ok().built(),
        set(&[
            "voice_line:ep01/s02/sh01/1",
            "scene_mix:ep01/s02",
            "episode_audio:ep01",
            "episode:ep01"
        ])
    );
}

#[test]
fn graph_renders_in_three_formats() {
    let p = TestProject::example("tiny");
    let dot = p.run(&["graph", "ep01", "--format", "dot", "--profile", "sim"]);
    assert!(dot.success().stdout.starts_with("digraph studio {"));
    assert!(dot.stdout.contains("[style=dashed]"), "duration-only edges are dashed");
    let mermaid = p.run(&["graph", "ep01/s01", "--format", "mermaid", "--profile", "sim"]);
    assert!(mermaid.success().stdout.starts_with("graph LR"));
    let json = p.run(&["graph", "ep01", "--format", "json", "--profile", "sim"]);
    let v: serde_json::Value = serde_json::from_str(&json.success().stdout).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(
        nodes.len(),
        57,
        "37, and the review loop: 8 candidates and their reviews, a shot review per shot"
    );
    let episode = nodes.iter().find(|n| n["id"] == "episode:ep01").unwrap();
    assert!(
        episode["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["uses"] == "duration")
    );
}

#[test]
fn status_counts_built_stale_and_missing() {
    let p = TestProject::example("tiny");
    let before = p.run(&["status", "--profile", "sim"]);
    assert!(
        before
            .success()
            .stdout
            .contains("total                  0       0       57"),
        "{}",
        before.stdout
    );
    p.build(&[]).ok();
    p.edit("episodes/ep01.yaml", "Okay, you win.", "Fine, you win.");
    let after = p.run(&["status", "--profile", "sim", "-v"]);
    assert!(
        after
            .success()
            .stdout
            .contains("voice_line             2       1        0"),
        "{}",
        after.stdout
    );
    assert!(
        after.stdout.contains("stale voice_line:ep01/s02/sh01/1"),
        "{}",
        after.stdout
    );
}

/// Long enough to tell a hang from slow work on a loaded machine; only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

/// A panic in a task (test seam, debug builds only) ends the build: exit 3,
/// one "internal error" line, and what finished stays in the cache.
fn panic_ends_the_build(seam: &str, node: &str, extra: &[&str]) {
    let p = TestProject::example("tiny");
    let mut args = vec!["build", "--json", "--profile", "sim"];
    args.extend_from_slice(extra);
    let seam = format!("{seam}:{node}");
    let run = p.run_within(&args, &[("STUDIO_TEST_PANIC", &seam), ("RUST_BACKTRACE", "0")], HANG);
    let b = common::Build::parse_run(run);
    assert_eq!(b.run.code, 3, "{}", b.run.stderr);
    assert!(
        b.run
            .stderr
            .lines()
            .any(|l| l.starts_with("internal error: ") && l.contains(node) && l.contains("(please report)")),
        "{}",
        b.run.stderr
    );
    assert_eq!(b.node(node)["status"], "failed");
    assert!(b.totals["stopped"].as_str().unwrap().contains("STUDIO_TEST_PANIC"));
    let finished = b.built().len() + b.with("cached").len();
    assert!(finished > 0, "other nodes finished before the panic");

    // Everything that finished is reused; the rest is built.
    let next = p.build(extra).ok();
    assert_eq!(next.total("cached") as usize, finished, "{:?}", next.totals);
    assert!(next.built().contains(node));
    p.assert_cache_sound();
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the panic seam exists in debug builds only")]
fn a_panic_in_a_job_ends_the_build_with_an_internal_error() {
    panic_ends_the_build("job", "shot_segment:ep01/s01/sh01", &[]);
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the panic seam exists in debug builds only")]
fn a_panic_while_resolving_a_node_ends_the_build_too() {
    // A remote makes every local miss a resolving task first.
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    panic_ends_the_build("resolve", "scene_mix:ep01/s02", &["--remote", &url]);
}

/// Ctrl-C as a terminal sends it (to studio and every tool it runs) while
/// the only job runs, an ffmpeg: 130 and `"interrupted": true`, every time.
#[test]
fn ctrl_c_during_the_only_job_exits_130_every_time() {
    let p = TestProject::example("tiny");
    for attempt in 0..20 {
        let child = p.spawn_group(&["build", "character_refs:kai", "--json"]);
        // The job has started once its scratch directory exists.
        let started = std::time::Instant::now();
        while !std::fs::read_dir(p.path("cache/tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("job-"))
        {
            assert!(started.elapsed() < HANG, "the job never started");
            sleep(Duration::from_millis(2));
        }
        // And its ffmpeg runs (the tool probes ran before the build began).
        while children(child.id()).is_empty() {
            assert!(started.elapsed() < HANG, "the job's ffmpeg never started");
            sleep(Duration::from_millis(2));
        }
        common::signal_group(child.id(), "-INT");
        let b = common::Build::parse_run(common::wait_within(child, HANG));
        assert_eq!(b.run.code, 130, "attempt {attempt}: {}\n{}", b.run.stdout, b.run.stderr);
        assert_eq!(b.totals["interrupted"], true, "attempt {attempt}");
        assert_eq!(b.node("character_refs:kai")["status"], "skipped", "attempt {attempt}");
    }
}

/// `out` is a regular file: nothing can be written under it, root or not.
#[test]
fn an_unwritable_out_folder_exits_3_naming_the_path_once() {
    let p = TestProject::example("tiny");
    p.write("out", "not a folder");
    let b = p.build(&[]);
    assert_eq!(b.run.code, 3, "{}", b.run.stderr);
    let lines: Vec<&str> = b.run.stderr.lines().filter(|l| l.contains("could not write")).collect();
    assert_eq!(lines.len(), 1, "one message, not one per file: {}", b.run.stderr);
    let out = p.path("out").display().to_string();
    assert!(
        lines[0].starts_with(&format!("error: could not write {out}/")),
        "{}",
        lines[0]
    );
    assert!(b.totals["stopped"].as_str().unwrap().contains(&out));
    let built = b.built();
    assert!(!built.is_empty(), "jobs that ran are kept");

    // Fixed: what was built comes from the cache.
    std::fs::remove_file(p.path("out")).unwrap();
    let next = p.build(&[]).ok();
    assert!(built.iter().all(|id| next.node(id)["status"] == "cached"));
    assert!(p.path("out/ep01/ep01.mp4").is_file());

    // Broken again with everything cached: still 3, not a silent no-op.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.write("out", "not a folder");
    let again = p.build(&[]);
    assert_eq!(again.run.code, 3, "{}", again.run.stderr);
    assert_eq!(again.total("built"), 0);
}

/// The object store cannot take new objects (each `objects/xx` folder is a
/// file, which stops root too): exit 3, naming the folder, once.
#[test]
fn a_cache_that_cannot_store_outputs_exits_3_naming_the_path() {
    let p = TestProject::example("tiny");
    let objects = p.path("cache/objects");
    std::fs::create_dir_all(&objects).unwrap();
    for i in 0..=255u8 {
        std::fs::write(objects.join(format!("{i:02x}")), "").unwrap();
    }
    let b = p.build(&[]);
    assert_eq!(b.run.code, 3, "{}", b.run.stderr);
    let errors: Vec<&str> = b.run.stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        [format!(
            "error: could not store outputs in {}: File exists (os error 17)",
            objects.display()
        )],
        "{}",
        b.run.stderr
    );
    assert_eq!(b.total("built"), 0);
}

/// The processes whose parent is `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so read after its `)`.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// A voice line longer than the limit (lowered through a debug-only seam)
/// fails naming the line; espeak-ng is stopped, nothing of it is kept.
#[test]
#[cfg_attr(not(debug_assertions), ignore = "the limit's seam exists in debug builds only")]
fn a_voice_line_past_the_length_limit_is_an_error_not_a_disk_filler() {
    let p = TestProject::example("tiny");
    p.edit(
        "episodes/ep01.yaml",
        "text: \"Will it come?\"",
        "text: \"Will it come? I have waited here for an hour, and the rain is not stopping at all tonight.\"",
    );
    let id = "voice_line:ep01/s01/sh01/1";
    let build = |limit: &str| {
        let run = p.run_within(
            &["build", id, "--json"],
            &[("STUDIO_TEST_MAX_LINE_SECONDS", limit)],
            HANG,
        );
        common::Build::parse_run(run)
    };
    let b = build("2");
    assert_eq!(b.run.code, 1, "{}", b.run.stderr);
    let error = b.node(id)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&format!("{id}: the line is longer than 2 s of speech")) && error.contains("stopped `"),
        "{error}"
    );
    assert!(!p.path("out/ep01/s01/sh01/voice-1.wav").exists());

    // The same line under a limit it fits: built, and longer than 2 s
    // (48 kHz mono s16: 96,000 bytes a second).
    build("60").ok();
    let wav = std::fs::metadata(p.path("out/ep01/s01/sh01/voice-1.wav"))
        .unwrap()
        .len();
    assert!(wav > 2 * 96_000, "{wav} bytes");
}
