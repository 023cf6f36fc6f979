//! Season-scale benchmark: 12 episodes × 8 scenes × 6 shots, sim profile.
//!
//! Prints
//! - the sim makespan divided by two lower bounds, each max(critical path,
//!   busiest pool's work / slots): one from the jobs' measured durations,
//!   one from the modelled work (each engine's cost × the time scale, what
//!   the sim executor sleeps; inline engines cost nothing). The measured
//!   bound includes what a job's own overhead adds; the modelled one is
//!   what a perfect driver would reach;
//! - the no-op build time of the real `studio` binary: the first (no no-op
//!   stamp yet: the full path, which writes one) and the median of 10
//!   answered from the stamp; and of Ninja on a graph of the same shape
//!   (one `touch` edge per node, the same edges), with the ratios. Without
//!   `ninja` installed (`apt-get install ninja-build`) the comparison is
//!   skipped with a note.
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
#![allow(clippy::disallowed_methods)] // the benchmark starts the binaries it measures

mod common;

use camino::Utf8PathBuf;
use common::{SCENES, SHOTS, median};
use studio::session::Session;
use studio::stages::registry::{self, Run};

const TIME_SCALE: f64 = 0.00001;

/// max(critical path, busiest pool's work / slots) over `dur` (seconds per
/// node of `nodes`, a closure in dependency order): the bound and the
/// name and load of the busiest pool.
fn lower_bound(session: &Session, nodes: &[usize], dur: &[f64]) -> (f64, f64, String, f64) {
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
    (
        critical.max(load),
        critical,
        session.graph.pools[busiest].name.clone(),
        load,
    )
}

/// What the sim executor sleeps for node `g`: its engine's cost for the
/// media length it reported, times the time scale. Inline engines do no work.
fn modelled_seconds(session: &Session, g: usize) -> f64 {
    let node = &session.graph.nodes[g];
    let engine = node.engine();
    if registry::engine_of(engine).is_some_and(|e| matches!(e.run, Run::Inline)) {
        return 0.0;
    }
    let media = (session.state.node(&node.id))
        .and_then(|s| s.duration)
        .unwrap_or(node.media_seconds);
    engine.expected_seconds(media) * TIME_SCALE
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
    common::write_season(&root, episodes, TIME_SCALE);

    // A full sim build, measured in-process.
    let (session, nodes, report) = common::build_in_process(&root, &["all"]);
    let mut measured = vec![0.0; nodes.len()];
    for &(l, start, end) in &report.spans {
        measured[l] = end - start;
    }
    let modelled: Vec<f64> = nodes.iter().map(|&g| modelled_seconds(&session, g)).collect();
    let (bound, critical, busiest, load) = lower_bound(&session, &nodes, &measured);
    let (model_bound, model_critical, model_busiest, model_load) = lower_bound(&session, &nodes, &modelled);
    let makespan = report.totals.seconds;
    println!(
        "season: {episodes} episodes × {SCENES} scenes × {SHOTS} shots = {} nodes",
        nodes.len()
    );
    println!(
        "sim makespan {makespan:.3}s; measured lower bound {bound:.3}s (critical path {critical:.3}s, busiest pool `{busiest}` {load:.3}s); \
         modelled lower bound {model_bound:.3}s (critical path {model_critical:.3}s, busiest pool `{model_busiest}` {model_load:.3}s)"
    );
    println!(
        "makespan / measured lower bound = {:.3}; makespan / modelled lower bound = {:.3}",
        makespan / bound,
        makespan / model_bound
    );

    // No-op builds of the real binary, then of Ninja on the same shape.
    let bin = common::studio_bin();
    let (full_ms, _) = common::time_full_noop(&bin, &root, &[]);
    let (mut times, rss) = common::time_noop(&bin, &root, &[], noop_runs);
    let studio_ms = median(&mut times);
    let rss = rss
        .iter()
        .max()
        .map_or(String::new(), |k| format!(", peak RSS {} MiB", k >> 10));
    println!(
        "no-op build ({} nodes): full path (no stamp) {full_ms:.1} ms; answered from the stamp \
         median {studio_ms:.1} ms, min {:.1} ms{rss}",
        nodes.len(),
        times[0]
    );
    let ninja_dir = Utf8PathBuf::from_path_buf(dir.path().join("ninja")).unwrap();
    if let Some(mut ninja) = common::time_ninja(&ninja_dir, &common::ninja_file(&session, &nodes), noop_runs) {
        let ninja_ms = median(&mut ninja);
        println!(
            "ninja no-op on the same graph: median {ninja_ms:.1} ms; studio / ninja = {:.2} (full path {:.2})",
            studio_ms / ninja_ms,
            full_ms / ninja_ms
        );
    }
}
