//! Edit latencies on the sample project (animatic profile, real tools):
//! the cold build of ep01 against the x264 floor, then one edit at a time,
//! each followed by `studio build ep01`:
//!
//! - dialogue: one vowel of a line (`No stamp` → `No stump`);
//! - motion: one shot's camera move (s01/sh02 `static hold` → `slow push in`);
//! - caption: one shot's action caption (s01/sh01 `glows` → `shines`);
//! - mood: one scene's mood (s01 `mysterious` → `eerie`).
//!
//! Printed per step: wall time (and, for an edit, ÷ the floor), nodes
//! built, and the slowest node. The x264 floor is one plain `ffmpeg -c:v
//! libx264 -preset veryfast` encode of the episode's length (the built episode re-encoded, audio dropped): the least
//! a delivery encode of the episode costs on this machine.
//!
//! Measured, not asserted. Run: `cargo bench --bench edits` (needs the
//! animatic's tools: `bash scripts/deps.sh`; a few minutes on two cores).
//! `EDITS_QUICK=1` builds the tiny example instead and makes no edits (a
//! smoke run); `STUDIO_BIN=path` times another `studio` binary.
#![allow(clippy::disallowed_methods)] // the benchmark starts the binaries it measures

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};

/// One build of `target`: wall seconds, nodes built and the slowest one.
struct Step {
    seconds: f64,
    built: usize,
    slowest: Option<(String, f64)>,
}

fn build(bin: &str, root: &Utf8Path, target: &str) -> Step {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["-C", root.as_str(), "build", target, "--json"])
        .output()
        .unwrap();
    let seconds = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut built = 0;
    let mut slowest: Option<(String, f64)> = None;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "node" && v["status"] == "built" {
            built += 1;
            let s = v["seconds"].as_f64().unwrap_or(0.0);
            if slowest.as_ref().is_none_or(|(_, best)| s > *best) {
                slowest = Some((v["id"].as_str().unwrap_or_default().to_string(), s));
            }
        }
    }
    Step {
        seconds,
        built,
        slowest,
    }
}

fn edit(root: &Utf8Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} no longer holds `{from}`: update the bench");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// One line per step; with the floor, also the step's time ÷ the floor
/// (the machine is shared: a ratio from the same run is the number to compare).
fn report(what: &str, s: &Step, floor: Option<f64>) {
    let slowest = s
        .slowest
        .as_ref()
        .map_or(String::new(), |(id, t)| format!(", slowest {id} {t:.1} s"));
    let ratio = floor.map_or(String::new(), |f| format!(" ({:.2}× the floor)", s.seconds / f));
    println!("{what:<28} {:>7.1} s{ratio}, {} built{slowest}", s.seconds, s.built);
}

/// The media length of `file`, from ffprobe.
fn media_seconds(file: &Utf8Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            file.as_str(),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Seconds of one plain x264 veryfast encode of `episode`'s video.
fn x264_floor(episode: &Utf8Path, scratch: &Utf8Path) -> f64 {
    let t = Instant::now();
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-i",
            episode.as_str(),
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        .arg(scratch.join("floor.mp4").as_str())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::var_os("EDITS_QUICK").is_some_and(|v| v != "0");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().join("project")).unwrap();
    if quick {
        common::copy_tree(&repo.join("examples/tiny"), root.as_std_path());
    } else {
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(repo.join("studio.yaml"), root.join("studio.yaml")).unwrap();
        for sub in ["episodes", "rules"] {
            common::copy_tree(&repo.join(sub), root.join(sub).as_std_path());
        }
    }
    let bin = common::studio_bin();

    let cold = build(&bin, &root, "ep01");
    let episode = root.join("out/ep01/ep01.mp4");
    let length = media_seconds(&episode);
    let floor = x264_floor(&episode, &root);
    report("cold build (animatic)", &cold, None);
    println!(
        "episode {length:.1} s; cold build ÷ length = {:.2}; x264 veryfast floor {floor:.1} s, ÷ length = {:.2}; cold ÷ floor = {:.1}",
        cold.seconds / length,
        floor / length,
        cold.seconds / floor
    );
    if quick {
        return;
    }
    let edits = [
        ("dialogue (one vowel)", "No stamp, no sender", "No stump, no sender"),
        (
            "motion (s01/sh02)",
            "motion: static hold, Hana's hands",
            "motion: slow push in, Hana's hands",
        ),
        (
            "caption (s01/sh01)",
            "post office glows alone",
            "post office shines alone",
        ),
        ("mood (s01)", "mood: mysterious", "mood: eerie"),
    ];
    for (what, from, to) in edits {
        edit(&root, "episodes/ep01.yaml", from, to);
        report(what, &build(&bin, &root, "ep01"), Some(floor));
    }
}
