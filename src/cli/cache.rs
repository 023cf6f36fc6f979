//! `studio cache stats|push|pull`: the local cache and the remote behind it.

use std::collections::HashMap;
use std::sync::Arc;

use camino::Utf8Path;
use futures_util::StreamExt;
use serde_json::json;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_IO, EXIT_OK, RemoteArgs, out, report};
use crate::cache::remote::{self, Remote};
use crate::graph::key::{InputFact, KeyMaterial};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// What the local cache holds, and what the remote did for past builds.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Upload what the last builds of TARGETS made that the remote lacks.
    Push {
        /// Default: everything built.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Fetch from the remote what TARGETS need and the local cache lacks,
    /// without building anything.
    Pull {
        /// Default: every episode.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
}

/// Transfers at once for push and pull.
const PARALLEL: usize = 8;

pub fn run(root: &Utf8Path, profile: Option<&str>, remote_args: &RemoteArgs, command: Command) -> u8 {
    let Ok(_lock) = super::housekeeping::lock(root) else {
        return EXIT_IO;
    };
    let mut session = match super::open(root, profile, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let remote = match remote_args.open(session.project.remote.as_ref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match command {
        Command::Stats { json } => runtime.block_on(stats(&session, remote.as_deref(), remote_args, json)),
        Command::Push { targets } | Command::Pull { targets } if remote.is_none() => {
            let _ = targets;
            eprintln!(
                "error: no remote cache: set `cache: {{remote: URL}}` in studio.yaml or pass --remote URL (and not --remote-mode off)"
            );
            EXIT_INVALID
        }
        Command::Push { targets } => {
            runtime.block_on(push(&session, remote.clone().expect("checked"), &default_all(targets)))
        }
        Command::Pull { targets } => runtime.block_on(pull(
            &mut session,
            remote.clone().expect("checked"),
            &default_all(targets),
        )),
    };
    super::save_remote_stats(&session.cache, remote.as_deref());
    code
}

fn default_all(targets: Vec<String>) -> Vec<String> {
    if targets.is_empty() {
        vec!["all".into()]
    } else {
        targets
    }
}

async fn stats(session: &Session, remote: Option<&Remote>, args: &RemoteArgs, as_json: bool) -> u8 {
    let cache = &session.cache;
    let entries = cache.keys().len();
    let (mut objects, mut bytes) = (0usize, 0u64);
    for p in cache.objects() {
        objects += 1;
        bytes += std::fs::metadata(&p).map_or(0, |m| m.len());
    }
    let totals = remote::load_stats(cache);
    let config = args.config(session.project.remote.as_ref());
    let reachable = match remote {
        Some(r) => Some(r.probe().await.map_err(|e| e.to_string())),
        None => None,
    };
    let throughput = (totals.seconds_down > 0.0).then(|| totals.bytes_down as f64 / totals.seconds_down);
    if as_json {
        let v = json!({
            "local": {"dir": cache.dir(), "entries": entries, "objects": objects, "bytes": bytes},
            "remote": config.as_ref().map(|c| json!({
                "url": remote.map_or(c.url.clone(), |r| r.url().to_string()),
                "mode": c.mode.to_string(),
                "reachable": reachable.as_ref().map(Result::is_ok),
                "error": reachable.as_ref().and_then(|r| r.as_ref().err()),
            })),
            "totals": totals,
            "download_bytes_per_second": throughput,
        });
        out(&format!("{v}\n"));
        return EXIT_OK;
    }
    let mut text = format!(
        "local cache  {}\n  {entries} entries, {objects} objects, {}\n",
        cache.dir(),
        human_bytes(bytes)
    );
    match (&config, &reachable) {
        (None, _) => text.push_str("remote cache  none (set `cache: {remote: URL}` in studio.yaml or pass --remote)\n"),
        (Some(c), r) => {
            let state = match r {
                None => "off".to_string(),
                Some(Ok(())) => "reachable".to_string(),
                Some(Err(e)) => format!("unreachable: {e}"),
            };
            text.push_str(&format!(
                "remote cache  {} ({}, {state})\n",
                remote.map_or(c.url.as_str(), Remote::url),
                c.mode
            ));
        }
    }
    text.push_str(&format!(
        "  over past builds: {} hits, {} misses, {} corrupt refused, {} errors\n  downloaded {} objects, {}{}\n  uploaded {} entries, {} objects, {}\n",
        totals.hits,
        totals.misses,
        totals.corrupt,
        totals.errors,
        totals.objects_down,
        human_bytes(totals.bytes_down),
        throughput.map_or(String::new(), |t| format!(" at {}/s", human_bytes(t as u64))),
        totals.entries_up,
        totals.objects_up,
        human_bytes(totals.bytes_up),
    ));
    out(&text);
    EXIT_OK
}

/// Upload the entries the last builds recorded for the targets' nodes.
async fn push(session: &Session, remote: Arc<Remote>, targets: &[String]) -> u8 {
    let nodes = match session.select(targets) {
        Ok(n) => n,
        Err(d) => {
            report(d);
            return EXIT_INVALID;
        }
    };
    let states: Vec<_> = (nodes.iter())
        .filter_map(|&n| session.state.node(&session.graph.nodes[n].id))
        .collect();
    // A fallback's stand-in stays here (the remote holds first engines' results).
    let provisional = states.iter().filter(|s| s.provisional.is_some()).count();
    let keys: Vec<String> = (states.iter())
        .filter(|s| s.provisional.is_none())
        .map(|s| s.key.clone())
        .collect();
    let results: Vec<Option<bool>> = futures_util::stream::iter(keys)
        .map(|key| {
            let remote = remote.clone();
            let cache = session.cache.clone();
            async move {
                let manifest = cache.lookup(&key)?;
                match remote.has_entry(&key).await {
                    Ok(true) => Some(false),
                    // Not uploaded (a failure, or a local object that no
                    // longer matches its name) counts as not in the cache.
                    Ok(false) => matches!(remote.upload(&cache, &key, &manifest).await, Ok(true)).then_some(true),
                    Err(_) => None,
                }
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let pushed = results.iter().filter(|r| **r == Some(true)).count();
    let present = results.iter().filter(|r| **r == Some(false)).count();
    let c = &remote.counters;
    let bytes = c.bytes_up.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "pushed {pushed} entries ({}) to {}; {present} were there already; {} not in the local cache",
        human_bytes(bytes),
        remote.url(),
        results.iter().filter(|r| r.is_none()).count()
    );
    if provisional > 0 {
        eprintln!("{provisional} provisional entries (made by a fallback engine) were not pushed");
    }
    if remote.failed() { EXIT_FAILED } else { EXIT_OK }
}

/// Walk the targets' nodes inputs first: a node's key is known once its
/// inputs' outputs are, so fetch in waves. The review loop's later rounds
/// (and a shot's re-rolls) follow from reviews in the cache, so after each
/// pass the session derives them again, and a graph that grew is walked
/// again until nothing new appears.
async fn pull(session: &mut Session, remote: Arc<Remote>, targets: &[String]) -> u8 {
    let mut fetched_before = 0usize;
    loop {
        let nodes = match session.select(targets) {
            Ok(n) => n,
            Err(d) => {
                report(d);
                return EXIT_INVALID;
            }
        };
        let (local, fetched) = pull_pass(session, &remote, &nodes).await;
        let size = session.graph.nodes.len();
        if fetched > 0 {
            match session.expand_rounds() {
                Ok(r) => session.rounds = r,
                Err(d) => {
                    report(d);
                    return EXIT_INVALID;
                }
            }
            let all: Vec<usize> = (0..session.graph.nodes.len()).collect();
            session.expand_takes(&all);
        }
        if fetched == 0 || session.graph.nodes.len() == size {
            // Entries fetched by an earlier pass count as pulled, not local.
            let missing = nodes.len() - local - fetched;
            let c = &remote.counters;
            eprintln!(
                "pulled {} entries ({}) from {}; {} were local; {missing} not on the remote (build them)",
                fetched + fetched_before,
                human_bytes(c.bytes_down.load(std::sync::atomic::Ordering::Relaxed)),
                remote.url(),
                local.saturating_sub(fetched_before),
            );
            return if remote.failed() { EXIT_FAILED } else { EXIT_OK };
        }
        fetched_before += fetched;
    }
}

/// One walk over `nodes`: how many were local, and how many were fetched.
async fn pull_pass(session: &Session, remote: &Arc<Remote>, nodes: &[usize]) -> (usize, usize) {
    let simulated = session.simulated();
    let mut facts: HashMap<usize, InputFact> = HashMap::new();
    let (mut local, mut fetched) = (0usize, 0usize);
    let mut remaining: Vec<usize> = nodes.to_vec();
    loop {
        // Every node whose key is computable now and not yet known.
        let mut wave = Vec::new();
        let mut rest = Vec::new();
        for &n in &remaining {
            match KeyMaterial::key_of(&session.graph, n, simulated, |i| facts.get(&i)) {
                Some(key) => wave.push((n, key)),
                None => rest.push(n),
            }
        }
        if wave.is_empty() {
            break;
        }
        let mut to_fetch = Vec::new();
        for (n, key) in wave {
            match session.lookup(n, &key, false) {
                Some(hit) => {
                    facts.insert(n, hit.fact);
                    local += 1;
                }
                None => to_fetch.push((n, key)),
            }
        }
        let got: Vec<(usize, Option<crate::cache::Manifest>)> = futures_util::stream::iter(to_fetch)
            .map(|(n, key)| {
                let (remote, cache) = (remote.clone(), session.cache.clone());
                async move { (n, remote.fetch(&cache, &key).await) }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (n, m) in got {
            if let Some(m) = m {
                facts.insert(
                    n,
                    InputFact::new(
                        m.content_hash(),
                        m.duration,
                        m.outputs.iter().map(|o| (o.suffix.as_str(), o.hash.as_str())),
                    ),
                );
                fetched += 1;
            }
        }
        // Nodes whose key was computable but were found nowhere stay
        // unknown, and so do their dependents.
        remaining = rest;
    }
    (local, fetched)
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
