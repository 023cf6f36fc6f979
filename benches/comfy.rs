//! ComfyUI scaling: the season project's full profile built against 1, 2
//! and 4 fake ComfyUI hosts (tests/comfy/fake.rs, the real protocol on
//! loopback). For each host count it prints the makespan divided by the
//! lower bound: the GPU work (the fake's sampling time: each prompt's
//! sampler steps × the step time) over the hosts; and, for comparison, over
//! the ComfyUI jobs' measured durations (which also hold the client's
//! uploads, downloads and checks, and the fake's ffmpeg). The other services are down, so their nodes take their
//! local fallbacks (espeak-ng, fluidsynth, ffmpeg), which the makespan also
//! holds: a ratio near 1 means the hosts were kept busy.
//!
//! The fake samples at 40 ms per step (`COMFY_STEP_MS`) (the time scale) and makes each
//! shape of image or video with ffmpeg once, then answers with the same
//! bytes (`Inject::reuse_media`).
//!
//! Measured, not asserted. Run: `cargo bench --bench comfy`. Knobs:
//! - `COMFY_QUICK=1`: a smoke run (two shots of one episode, 1 ms steps), which CI runs
//!   in the test profile: `COMFY_QUICK=1 cargo test --bench comfy`;
//! - `COMFY_EPISODES=N`: N episodes instead of 1.
#![allow(clippy::disallowed_methods)] // the fake ComfyUI runs ffmpeg

mod common;
#[path = "../tests/comfy/fake.rs"]
mod fake;

use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use fake::{Fake, Inject};
use studio::session::Session;

/// Milliseconds a fake sampler step takes (the time scale of the GPU
/// work): `COMFY_STEP_MS`, else 40, or 1 in a quick run.
fn step_ms() -> u64 {
    let default = if quick() { 1 } else { 40 };
    std::env::var("COMFY_STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds the fake sleeps for `prompt`: its sampler steps (at most 50 a
/// node, as the fake caps them) × the step time.
fn gpu_seconds(prompt: &serde_json::Value) -> f64 {
    let steps: u64 = (prompt.as_object().into_iter().flat_map(|o| o.values()))
        .filter_map(|n| n["inputs"]["steps"].as_u64())
        .map(|s| s.min(50))
        .sum();
    (steps * step_ms()) as f64 / 1000.0
}

fn quick() -> bool {
    std::env::var_os("COMFY_QUICK").is_some_and(|v| v != "0")
}

/// Build `targets` with the full profile against `hosts` fake ComfyUI
/// hosts: makespan, the ComfyUI jobs' measured seconds, their count, and
/// the fake's sampling time (the GPU work), in seconds.
fn run(root: &Utf8Path, targets: &[String], hosts: usize) -> (f64, f64, usize, f64) {
    let fakes: Vec<Fake> = (0..hosts)
        .map(|_| {
            Fake::start_with(Inject {
                step: Some(std::time::Duration::from_millis(step_ms())),
                reuse_media: true,
                ..Inject::default()
            })
        })
        .collect();
    let yaml = std::fs::read_to_string(root.join("studio.yaml")).unwrap();
    let line = yaml.lines().find(|l| l.contains("kind: comfyui")).unwrap();
    let comfy: Vec<String> = fakes
        .iter()
        .enumerate()
        .map(|(i, f)| format!("  - {{id: comfy-{i}, kind: comfyui, url: \"{}\", slots: 1}}", f.url))
        .collect();
    std::fs::write(root.join("studio.yaml"), yaml.replace(line, &comfy.join("\n"))).unwrap();
    let _ = std::fs::remove_dir_all(root.join("cache"));
    let _ = std::fs::remove_dir_all(root.join("build"));

    let mut session = Session::open(root, Some("full"), 2).expect("the project loads");
    let nodes = session.select(targets).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let report = runtime.block_on(studio::build::build(
        &mut session,
        &nodes,
        &studio::build::Options::default(),
        Default::default(),
    ));
    let makespan = t.elapsed().as_secs_f64();
    assert!(report.ok(), "build failed: {:?}", report.totals);
    std::fs::write(root.join("studio.yaml"), yaml).unwrap();
    let comfy: Vec<f64> = (report.records.iter())
        .filter(|r| r.host.as_deref().is_some_and(|h| h.starts_with("comfy-")))
        .map(|r| r.seconds)
        .collect();
    let (work, jobs) = (comfy.iter().sum(), comfy.len());
    let prompts: Vec<serde_json::Value> = fakes.iter().flat_map(|f| f.prompts()).collect();
    assert!(!prompts.is_empty() && jobs > 0, "no ComfyUI work");
    let gpu = prompts.iter().map(gpu_seconds).sum();
    (makespan, work, jobs, gpu)
}

fn main() {
    let quick = quick();
    let episodes: usize = std::env::var("COMFY_EPISODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().join("season")).unwrap();
    common::write_season(&root, episodes, 0.0);
    common::without_review_loop(&root);
    let targets = if quick {
        vec!["shot_video:ep01/s01/sh02".to_string()]
    } else {
        vec!["all".to_string()]
    };
    println!(
        "comfy: {episodes} episode(s) × {} scenes × {} shots, targets {targets:?}, {} ms a sampler step",
        common::SCENES,
        common::SHOTS,
        step_ms()
    );
    for hosts in [1, 2, 4] {
        let (makespan, work, jobs, gpu) = run(&root, &targets, hosts);
        let bound = gpu / hosts as f64;
        println!(
            "{hosts} host(s): makespan {makespan:.2}s; GPU work {gpu:.2}s, lower bound {bound:.2}s; \
             makespan / lower bound = {:.2} (the {jobs} ComfyUI jobs as measured: {work:.2}s, / hosts = {:.2})",
            makespan / bound,
            makespan / (work / hosts as f64)
        );
    }
}
