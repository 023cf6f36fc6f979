//! No-op builds at scale: a generated sim project of about 100,000 nodes
//! (344 episodes of the season bench's shape), built once, then
//!
//! - `studio build` (everything) with nothing to do: the first such build
//!   (no no-op stamp yet: the full path, which loads and checks the whole
//!   project and writes the stamp), then the median and peak memory of the
//!   builds answered from that stamp, and Ninja's no-op on a graph of the
//!   same shape (one `touch` edge per node) with the ratios;
//! - `studio build ep01` with nothing to do inside that project, against the
//!   same no-op in a project of that one episode, on both paths: the ratio
//!   says whether an episode's build costs what the episode holds or what
//!   the project holds.
//!
//! Measured, not asserted. Run: `cargo bench --bench noop`. Knobs:
//! - `NOOP_NODES=N`: about N nodes instead of 100,000;
//! - `NOOP_QUICK=1`: a smoke run (two episodes, three runs each);
//! - `NOOP_DIR=path`: generate the projects there and keep them (a later
//!   run with the same `NOOP_DIR` reuses a built project instead of
//!   building it again; for profiling). Default: a temporary folder under
//!   /dev/shm when there is one, so the cold build that sets the bench up
//!   is not bound by a disk's fsyncs (a no-op reads what the page cache
//!   holds either way);
//! - `STUDIO_BIN=path`: time another `studio` binary.
#![allow(clippy::disallowed_methods)] // the benchmark starts the binaries it measures

mod common;

use std::time::Instant;

use camino::Utf8PathBuf;
use common::median;

/// Nodes an episode of the season shape has (132,843 for 344 episodes).
const NODES_PER_EPISODE: f64 = 386.2;

fn main() {
    let quick = std::env::var_os("NOOP_QUICK").is_some_and(|v| v != "0");
    let wanted: f64 = std::env::var("NOOP_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000.0);
    let episodes = if quick {
        2
    } else {
        (wanted / NODES_PER_EPISODE).ceil().max(1.0) as usize
    };
    let runs = if quick { 3 } else { 8 };
    let temp = match std::env::var("NOOP_DIR") {
        Ok(_) => None,
        Err(_) if std::path::Path::new("/dev/shm").is_dir() => Some(tempfile::tempdir_in("/dev/shm").unwrap()),
        Err(_) => Some(tempfile::tempdir().unwrap()),
    };
    let base = match &temp {
        Some(t) => Utf8PathBuf::from_path_buf(t.path().to_path_buf()).unwrap(),
        None => Utf8PathBuf::from(std::env::var("NOOP_DIR").unwrap()),
    };
    let path = |name: &str| base.join(name);
    let bin = common::studio_bin();

    // The big project, built once in this process (or kept from a run
    // with the same NOOP_DIR).
    let big = path("big");
    let (session, nodes) = if big.join("cache/state").is_dir() {
        let session = studio::session::Session::open(&big, None, 2).expect("the kept project loads");
        let nodes = session.select(&["all".to_string()]).unwrap();
        println!("project: {} nodes, kept in {big}", nodes.len());
        (session, nodes)
    } else {
        common::write_season(&big, episodes, 0.0);
        let t = Instant::now();
        let (session, nodes, _) = common::build_in_process(&big, &["all"]);
        println!(
            "project: {episodes} episodes, {} nodes; cold sim build (time scale 0) {:.1} s",
            nodes.len(),
            t.elapsed().as_secs_f64()
        );
        (session, nodes)
    };
    let ninja = common::ninja_file(&session, &nodes);
    drop(session);

    let mib = |rss: &[u64]| rss.iter().max().map_or("?".to_string(), |k| (k >> 10).to_string());
    let (full_ms, full_rss) = common::time_full_noop(&bin, &big, &[]);
    let (mut all, rss) = common::time_noop(&bin, &big, &[], runs);
    let all_ms = median(&mut all);
    println!(
        "no-op build, all {} nodes: full path (no stamp) {full_ms:.0} ms, peak RSS {} MiB; \
         answered from the stamp: median {all_ms:.0} ms, peak RSS {} MiB",
        nodes.len(),
        mib(&Vec::from_iter(full_rss)),
        mib(&rss)
    );
    if let Some(mut n) = common::time_ninja(&path("ninja"), &ninja, runs) {
        let ninja_ms = median(&mut n);
        println!(
            "ninja no-op on the same graph: median {ninja_ms:.0} ms; studio / ninja = {:.2} (full path {:.2})",
            all_ms / ninja_ms,
            full_ms / ninja_ms
        );
    }

    // One episode: inside the big project, and on its own.
    let (one_full, _) = common::time_full_noop(&bin, &big, &["ep01"]);
    let (mut one, one_rss) = common::time_noop(&bin, &big, &["ep01"], runs);
    let one_ms = median(&mut one);
    let small = path("small");
    if !small.join("cache/state").is_dir() {
        common::write_season(&small, 1, 0.0);
        common::build_in_process(&small, &["all"]);
    }
    let (alone_full, _) = common::time_full_noop(&bin, &small, &["ep01"]);
    let (mut alone, alone_rss) = common::time_noop(&bin, &small, &["ep01"], runs);
    let alone_ms = median(&mut alone);
    println!(
        "no-op build of ep01, full path (no stamp): inside the big project {one_full:.1} ms; \
         in a 1-episode project {alone_full:.1} ms; ratio {:.2}",
        one_full / alone_full
    );
    println!(
        "no-op build of ep01, answered from the stamp: inside the big project median {one_ms:.1} ms \
         (peak RSS {} MiB); in a 1-episode project {alone_ms:.1} ms (peak RSS {} MiB); ratio {:.2}",
        mib(&one_rss),
        mib(&alone_rss),
        one_ms / alone_ms
    );
}
