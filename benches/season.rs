//! Season-scale benchmark: 12 episodes × 8 scenes × 6 shots, sim profile.
//!
//! Prints
//! - the sim makespan divided by its lower bound: max(critical path,
//!   busiest pool's work / slots), both from the jobs' measured durations;
//! - the no-op build time of the real `studio` binary (median of 10 runs).
//!
//! Both figures are measured, not asserted: the machine decides them.
//!
//! Run: `cargo bench --bench season`. Knobs (environment):
//! - `SEASON_EPISODES=N`: N episodes instead of 12;
//! - `SEASON_QUICK=1`: a smoke run (one episode, three no-op builds), which
//!   CI runs in the test profile: `SEASON_QUICK=1 cargo test --bench season`;
//! - `SEASON_DIR=path`: keep the generated project there, for profiling;
//! - `STUDIO_BIN=path`: time the no-op build of another `studio` binary (to
//!   compare two builds of studio back to back on a noisy machine).
#![allow(clippy::disallowed_methods)] // the benchmark starts the binary it measures

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use camino::Utf8PathBuf;
use studio::build::{Options, build};
use studio::session::Session;

const SCENES: usize = 8;
const SHOTS: usize = 6;
const TIME_SCALE: f64 = 0.00001;

/// Copy a folder and everything below it (`rules/` has `prompts/`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dest) = (e.path(), to.join(e.file_name()));
        if std::fs::metadata(&src).unwrap().is_dir() {
            copy_tree(&src, &dest);
        } else {
            std::fs::copy(&src, &dest).unwrap();
        }
    }
}

fn write_season(root: &Utf8PathBuf, episodes: usize) {
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    copy_tree(repo.join("rules").as_std_path(), root.join("rules").as_std_path());
    let mut studio = String::from("project: {name: Season Bench}\ncharacters:\n");
    for (i, name) in ["aoi", "ren", "sayo"].iter().enumerate() {
        let _ = writeln!(
            studio,
            "  - {{id: {name}, name: {name}, design_prompt: \"{name} design\", color: \"#{:02x}6090\"}}",
            60 * i + 30
        );
    }
    studio.push_str("episodes:\n");
    for e in 1..=episodes {
        let _ = writeln!(studio, "  - {{id: ep{e:02}, title: Episode {e}}}");
    }
    studio.push_str("executors:\n  - {id: comfy, kind: comfyui, url: \"http://127.0.0.1:8188\", slots: 1}\n  - {id: tts, kind: openai_speech, url: \"http://127.0.0.1:5002\", slots: 2}\n  - {id: xtts, kind: xtts, url: \"http://127.0.0.1:8020\"}\n  - {id: rvc, kind: rvc, url: \"http://127.0.0.1:5050\"}\n  - {id: ace, kind: ace_step, url: \"http://127.0.0.1:8440\"}\n");
    let _ = writeln!(
        studio,
        "profiles:\n  default: sim\n  full: {{}}\n  animatic: {{}}\n  sim: {{rules_from: full, simulate: {{time_scale: {TIME_SCALE}}}}}"
    );
    std::fs::write(root.join("studio.yaml"), studio).unwrap();
    std::fs::create_dir_all(root.join("episodes")).unwrap();
    let names = ["aoi", "ren", "sayo"];
    for e in 1..=episodes {
        let mut ep = format!("episode: ep{e:02}\nscenes:\n");
        for s in 1..=SCENES {
            let _ = writeln!(
                ep,
                "  - id: s{s:02}\n    title: Scene {s}\n    mood: {}\n    transition: dissolve\n    shots:",
                ["calm", "tense", "joyful", "eerie"][s % 4]
            );
            for h in 1..=SHOTS {
                let a = names[(e + s + h) % 3];
                let b = names[(e + s + h + 1) % 3];
                let chars = if h % 3 == 0 {
                    format!("[{{id: {a}}}, {{id: {b}, position: right}}]")
                } else {
                    format!("[{{id: {a}}}]")
                };
                let _ = writeln!(
                    ep,
                    "      - id: sh{h:02}\n        duration: {}\n        motion: slow pan\n        characters: {chars}",
                    3 + (h % 3)
                );
                if h % 2 == 1 {
                    let _ = writeln!(
                        ep,
                        "        dialogue:\n          - {{speaker: {a}, text: \"Line {e}-{s}-{h}, where does the road go?\"}}"
                    );
                }
            }
        }
        std::fs::write(root.join(format!("episodes/ep{e:02}.yaml")), ep).unwrap();
    }
}

fn main() {
    let quick = std::env::var_os("SEASON_QUICK").is_some_and(|v| v != "0");
    let episodes: usize = std::env::var("SEASON_EPISODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 12 });
    let noop_runs = if quick { 3 } else { 11 };
    let dir = tempfile::tempdir().unwrap();
    // SEASON_DIR keeps the generated project for profiling.
    let root = match std::env::var("SEASON_DIR") {
        Ok(d) => Utf8PathBuf::from(d),
        Err(_) => Utf8PathBuf::from_path_buf(dir.path().join("season")).unwrap(),
    };
    write_season(&root, episodes);

    // A full sim build, measured in-process.
    let mut session = Session::open(&root, None, 2).expect("season project loads");
    let nodes = session.select(&["all".to_string()]).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = Options {
        keep_going: false,
        ..Options::default()
    };
    let report = runtime.block_on(build(&mut session, &nodes, &opts, Default::default()));
    assert!(report.ok(), "season build failed: {:?}", report.totals);
    session.state.save(&session.layout.state_file()).unwrap();
    session.index.save(&session.layout.cache.join("sources.json")).unwrap();

    let mut dur = vec![0.0; nodes.len()];
    for &(l, start, end) in &report.spans {
        dur[l] = end - start;
    }
    // Critical path with measured durations.
    let local: std::collections::HashMap<usize, usize> = nodes.iter().enumerate().map(|(l, &g)| (g, l)).collect();
    let mut finish = vec![0.0f64; nodes.len()];
    for (l, &g) in nodes.iter().enumerate() {
        let ready = session.graph.nodes[g]
            .inputs
            .iter()
            .map(|i| finish[local[&i.node]])
            .fold(0.0, f64::max);
        finish[l] = ready + dur[l];
    }
    let critical = finish.iter().copied().fold(0.0, f64::max);
    let mut work = vec![0.0; session.graph.pools.len()];
    for (l, &g) in nodes.iter().enumerate() {
        work[session.graph.nodes[g].pool] += dur[l];
    }
    let (busiest, load) = work
        .iter()
        .enumerate()
        .map(|(p, w)| (p, w / session.graph.pools[p].slots as f64))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let bound = critical.max(load);
    let makespan = report.totals.seconds;
    println!(
        "season: {episodes} episodes × {SCENES} scenes × {SHOTS} shots = {} nodes",
        nodes.len()
    );
    println!(
        "sim makespan {makespan:.3}s, lower bound {bound:.3}s (critical path {critical:.3}s, busiest pool `{}` {load:.3}s)",
        session.graph.pools[busiest].name
    );
    println!("makespan / lower bound = {:.3}", makespan / bound);

    // No-op builds of the real binary.
    let bin = std::env::var("STUDIO_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_studio").to_string());
    let mut times = Vec::new();
    for _ in 0..noop_runs {
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(["-C", root.as_str(), "build", "--json"])
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        assert!(last.contains(r#""built":0"#), "not a no-op: {last}");
    }
    times.remove(0); // warm-up
    times.sort_by(f64::total_cmp);
    println!(
        "no-op build: median {:.1} ms, min {:.1} ms ({} nodes)",
        times[times.len() / 2],
        times[0],
        nodes.len()
    );
}
