//! `studio build`: plan, or build, the targets.
//!
//! Progress bars and `--json` lines are subscribers of the build's events:
//! with `--json`, each node's record is a line on stdout as soon as the node
//! is settled, and the totals are the last line.

use std::sync::{Arc, Mutex};

use camino::Utf8Path;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_IO, EXIT_OK, RemoteArgs, out, report};
use crate::build::{self, BuildEvent, Events, Options, Status, Stop, Subscriber, noop};
use crate::cache::lock::BuildLock;
use crate::graph::explain::Reason;
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to build (default: every episode with a screenplay).
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// CPU jobs at once (default: the number of cores).
    #[arg(short, long)]
    jobs: Option<usize>,
    /// Keep building what does not depend on a failure.
    #[arg(short, long)]
    keep_going: bool,
    /// Print the plan: each stale node and why (and the prompt a ComfyUI
    /// node will send), without building.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print a JSON report on stdout: one record per node, then totals.
    #[arg(long)]
    json: bool,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, remote: &RemoteArgs, args: Args) -> u8 {
    let targets = if args.targets.is_empty() {
        vec!["all".to_string()]
    } else {
        args.targets.clone()
    };
    if args.dry_run {
        let session = match super::open(root, profile, args.jobs) {
            Ok(s) => s,
            Err(code) => return code,
        };
        return match session.select(&targets) {
            Ok(nodes) => dry_run(&session, &nodes, args.json),
            Err(d) => {
                report(d);
                EXIT_INVALID
            }
        };
    }
    let request = Request {
        targets,
        jobs: args.jobs,
        keep_going: args.keep_going,
        json: args.json,
        remote: remote.clone(),
    };
    if let Some(code) = answer_noop(root, profile, &request) {
        return code;
    }
    match build_targets(root, profile, &request) {
        Ok(built) => {
            // The process ends now: the session (model, graph, state) is
            // not freed piece by piece (a no-op of a big project spent a
            // tenth of its time there).
            let code = built.code;
            std::mem::forget(built);
            code
        }
        Err(code) => code,
    }
}

/// Whether a target names an episode whose screenplay file does not exist
/// (the shapes `write_missing` reads: `ep02`, `ep02/s01`, `publish:ep02`).
fn screenplay_missing(root: &Utf8Path, targets: &[String]) -> bool {
    targets
        .iter()
        .filter_map(|t| t.rsplit(':').next().and_then(|t| t.split('/').next()))
        .filter(|ep| *ep != "all" && crate::project::load::valid_id(ep))
        .any(|ep| !root.join(format!("episodes/{ep}.yaml")).is_file())
}

/// The same no-op build asked again: if the stamp a no-op build of this
/// request wrote still holds ([`noop`]), say what that build said without
/// loading the project. `None`: build (there is no stamp, or something it
/// depended on changed).
fn answer_noop(root: &Utf8Path, profile: Option<&str>, req: &Request) -> Option<u8> {
    let began = std::time::Instant::now();
    let layout = crate::session::Layout::new(root);
    let path = noop::path(&layout, &req.stamp_name(profile));
    if !path.is_file() || screenplay_missing(root, &req.targets) {
        return None;
    }
    let lock = BuildLock::acquire(&layout.cache, || {
        eprintln!("waiting: another studio build of this project holds {root}/cache/lock …");
    })
    .ok()?;
    let bytes = std::fs::read(&path).ok()?;
    let answer = noop::Stamp::parse(&bytes)?.holds(&layout)?;
    drop(lock);
    for warning in &answer.warnings {
        eprintln!("warning: {warning}");
    }
    let totals = build::Totals {
        cached: answer.nodes,
        seconds: began.elapsed().as_secs_f64(),
        ..build::Totals::default()
    };
    if req.json {
        out(&answer.lines);
        out(&(totals_line(&totals, false, None) + "\n"));
    } else {
        eprintln!("{}", summary("done", &totals));
    }
    Some(EXIT_OK)
}

/// What to build, and how to report it.
pub(super) struct Request {
    pub targets: Vec<String>,
    pub jobs: Option<usize>,
    pub keep_going: bool,
    /// JSON records on stdout instead of progress on stderr.
    pub json: bool,
    pub remote: RemoteArgs,
}

impl Request {
    /// What names this request's no-op stamp: everything on the command
    /// line that can change what a build does.
    fn stamp_name(&self, profile: Option<&str>) -> String {
        format!("{:?} {profile:?} {:?}", self.targets, self.remote)
    }
}

/// A finished build: the session after it and its exit code.
pub(super) struct Built {
    pub session: Session,
    pub code: u8,
}

/// Lock, open, build `targets`, save state, print the report. `Err` is an
/// exit code for a build that could not start.
pub(super) fn build_targets(root: &Utf8Path, profile: Option<&str>, req: &Request) -> Result<Built, u8> {
    // Writing a missing screenplay needs the project loaded once more:
    // only when a targeted episode has no screenplay file.
    if screenplay_missing(root, &req.targets) {
        super::write::write_missing(root, profile, &req.targets)?;
    }
    let lock = BuildLock::acquire(&root.join("cache"), || {
        eprintln!("waiting: another studio build of this project holds {root}/cache/lock …");
    })
    .map_err(|e| {
        eprintln!("error: cannot lock {root}/cache/lock: {e}");
        EXIT_IO
    })?;
    let mut session =
        Session::open_for(root, profile, super::cpu_slots(req.jobs), &req.targets).map_err(super::report_open_error)?;
    let nodes = session.select(&req.targets).map_err(|d| {
        report(d);
        EXIT_INVALID
    })?;
    // approvals.yaml's hashes against the candidates the cache knows.
    session.check_approvals().map_err(|d| {
        report(d);
        EXIT_INVALID
    })?;

    // Once per episode and dub language: lines spoken in the default
    // language; once per build: an engine whose worker is not installed
    // (the voices venv).
    let mut warnings = session.project.dub_warnings();
    let engines = nodes.iter().map(|n| session.graph.nodes[*n].engine());
    warnings.extend(
        (session.tools.missing_workers(engines).into_iter())
            .map(|missing| format!("{missing}; until then its nodes fall back to the next engine")),
    );
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cancel = CancellationToken::new();
    let remote = req.remote.open(session.project.remote.as_ref())?;
    let opts = Options {
        keep_going: req.keep_going,
        remote: remote.clone(),
        events: reporting(req.json, &session),
        ..Options::default()
    };
    let report = runtime.block_on(async {
        super::cancel_on_ctrl_c(&cancel);
        build::build(&mut session, &nodes, &opts, cancel).await
    });
    // No worker outlives the build (watch keeps its own until it ends).
    session.tools.workers.stop();
    runtime.shutdown_background();
    super::save_remote_stats(&session.cache, remote.as_deref());

    let saved = save_session(&mut session);
    // A no-op writes its stamp; any other build leaves none behind to be
    // read and refused by every later one.
    let stamp = noop::path(&session.layout, &req.stamp_name(profile));
    let kept = (saved.is_ok() && remote.is_none())
        .then(|| noop::Stamp::of(&session, &report, node_lines(&report.records), warnings))
        .flatten()
        .map(|s| s.save(&stamp));
    if !matches!(kept, Some(Ok(()))) {
        let _ = std::fs::remove_file(&stamp);
    }
    drop(lock);
    print_report(&report, req.json);
    let code = match saved {
        Err(e) => {
            eprintln!("error: saving build state: {e}");
            EXIT_IO
        }
        // studio could not use its files, or a bug: 3 even when interrupted too.
        Ok(()) if report.stopped.is_some() => EXIT_IO,
        Ok(()) if report.interrupted => EXIT_INTERRUPTED,
        Ok(()) if report.ok() => EXIT_OK,
        Ok(()) => EXIT_FAILED,
    };
    // The process ends soon: freeing every record one by one is wasted time.
    std::mem::forget(report);
    std::mem::forget(nodes);
    Ok(Built { session, code })
}

/// The subscribers that report a build: `--json` lines on stdout, or
/// progress on stderr.
pub(super) fn reporting(as_json: bool, session: &Session) -> Events {
    if as_json {
        Events::default().with(Arc::new(JsonLines::default()))
    } else {
        let progress = crate::progress::Progress::new(true, &session.graph.pools);
        Events::default().with(Arc::new(progress))
    }
}

/// `--json`: a `node` line per node as it settles, then a `totals` line.
/// Lines of cached nodes are gathered and written together (a no-op build
/// settles every node at once); anything else is written at once.
#[derive(Default)]
struct JsonLines {
    pending: Mutex<String>,
}

/// Gathered lines are written once they pass this many bytes.
const JSON_BUFFER: usize = 64 << 10;

/// A `node` line: a [`build::NodeRecord`] and its `type`, keys in order.
#[derive(Serialize)]
struct NodeLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<f64>,
    engine: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    id: &'a str,
    kind: crate::kind::NodeKind,
    #[serde(skip_serializing_if = "crate::cache::Metadata::is_empty")]
    metadata: &'a crate::cache::Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    provisional: bool,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<f64>,
    status: Status,
    #[serde(rename = "type")]
    line: &'static str,
}

impl<'a> NodeLine<'a> {
    fn of(r: &'a build::NodeRecord) -> NodeLine<'a> {
        NodeLine {
            ended: r.ended,
            engine: &r.engine,
            error: r.error.as_deref(),
            host: r.host.as_deref(),
            id: &r.id,
            kind: r.kind,
            metadata: &r.metadata,
            output: r.output.as_deref(),
            provisional: r.provisional,
            seconds: r.seconds,
            started: r.started,
            status: r.status,
            line: "node",
        }
    }
}

impl Subscriber for JsonLines {
    fn on_event(&self, event: &BuildEvent) {
        let (line, now) = match event {
            BuildEvent::BuildFinished {
                totals,
                interrupted,
                stopped,
                ..
            } => (totals_line(totals, *interrupted, stopped.as_deref()), true),
            e => match e.record() {
                Some(r) => (node_line(r), !matches!(e, BuildEvent::NodeCached { .. })),
                None => return,
            },
        };
        let mut pending = self.pending.lock().expect("json lines");
        pending.push_str(&line);
        pending.push('\n');
        if now || pending.len() > JSON_BUFFER {
            out(&std::mem::take(&mut *pending));
        }
    }
}

/// The `--json` totals line (without its newline).
fn totals_line(totals: &build::Totals, interrupted: bool, stopped: Option<&str>) -> String {
    let mut v = serde_json::to_value(totals).expect("totals serialize");
    v["type"] = json!("totals");
    v["interrupted"] = json!(interrupted);
    if let Some(e) = stopped {
        v["stopped"] = json!(e);
    }
    v.to_string()
}

/// The `--json` lines of `records`, each ending in a newline.
fn node_lines(records: &[build::NodeRecord]) -> String {
    use rayon::prelude::*;
    (records.par_iter()).map(|r| node_line(r) + "\n").collect()
}

/// The `--json` line of one record, without its newline.
fn node_line(r: &build::NodeRecord) -> String {
    serde_json::to_string(&NodeLine::of(r)).expect("records serialize")
}

/// Save what a build learned: the sources it saw, the state, the learned
/// durations and the source index.
pub(super) fn save_session(session: &mut Session) -> std::io::Result<()> {
    let sources: std::collections::HashMap<String, String> = session
        .project
        .sources
        .iter()
        .map(|(p, h)| (p.to_string(), h.clone()))
        .collect();
    let sources = if session.partial {
        // Only some screenplays were read: the others keep what they had.
        let mut all = session.state.sources().clone();
        all.extend(sources);
        all
    } else {
        sources
    };
    session.state.set_sources(sources);
    session
        .state
        .save()
        .and_then(|()| session.durations.save(&session.layout.cache.join("durations.json")))
        .and_then(|()| session.index.save(&session.layout.cache.join("sources.json")))
}

/// Tell how the build went on stderr (with `--json`, the lines on stdout
/// were written as it ran: only why it stopped, if it did).
pub(super) fn print_report(report: &build::Report, as_json: bool) {
    let t = &report.totals;
    if as_json {
        if let Some(stop) = &report.stopped {
            eprintln!("{}", stop_message(stop));
        }
        return;
    }
    // The node whose error stopped the build is told once, in the stop's own line.
    let told = |r: &&build::NodeRecord| match (&report.stopped, r.error.as_deref()) {
        (Some(Stop::Io(e)), Some(error)) => error == e,
        (Some(Stop::Internal(_)), Some(error)) => error.starts_with("internal error:"),
        _ => false,
    };
    for r in report
        .records
        .iter()
        .filter(|r| r.status == Status::Failed)
        .filter(|r| !told(r))
    {
        eprintln!(
            "error: {} failed:\n  {}",
            r.id,
            r.error.as_deref().unwrap_or("").replace('\n', "\n  ")
        );
    }
    if let Some(stop) = &report.stopped {
        eprintln!("{}", stop_message(stop));
    }
    let word = if report.stopped.is_some() {
        "stopped"
    } else if report.interrupted {
        "interrupted"
    } else if report.ok() {
        "done"
    } else {
        "failed"
    };
    eprintln!("{}", summary(word, t));
}

/// The last line of a build's report on stderr.
fn summary(word: &str, t: &build::Totals) -> String {
    format!(
        "{word}: {} built, {} cached, {}{} cut off, {} failed, {} skipped in {}",
        t.built,
        t.cached,
        if t.fetched > 0 {
            format!("{} fetched from the remote cache, ", t.fetched)
        } else {
            String::new()
        },
        t.cutoff,
        t.failed,
        t.skipped,
        crate::progress::human(t.seconds)
    )
}

/// The one line that says why a build stopped on its own (exit 3).
pub(super) fn stop_message(stop: &Stop) -> String {
    match stop {
        Stop::Io(e) => format!("error: {e}"),
        Stop::Internal(e) => {
            format!("internal error: {e} (please report); the build stopped, finished nodes are kept in the cache")
        }
    }
}

fn dry_run(session: &crate::session::Session, nodes: &[usize], as_json: bool) -> u8 {
    let plan = session.plan(nodes);
    let stale: Vec<_> = plan.iter().filter(|(_, r)| *r != Reason::Fresh).collect();
    let maybe = stale
        .iter()
        .filter(|(_, r)| matches!(r, Reason::InputsStale { .. }))
        .count();
    let mut text = String::new();
    if as_json {
        for (n, r) in &plan {
            let node = &session.graph.nodes[*n];
            let status = match r {
                Reason::Fresh => "fresh",
                Reason::InputsStale { .. } => "may_follow",
                _ => "stale",
            };
            text.push_str(
                &json!({"type": "plan", "id": node.id, "kind": node.kind, "status": status, "reason": r.to_string()})
                    .to_string(),
            );
            text.push('\n');
        }
        text.push_str(&json!({"type": "totals", "stale": stale.len() - maybe, "may_follow": maybe, "fresh": plan.len() - stale.len()}).to_string());
        text.push('\n');
    } else {
        for (n, r) in &stale {
            let node = &session.graph.nodes[*n];
            text.push_str(&format!("{:<44} {}\n", node.id, r));
            // What a ComfyUI node will send (its workflow's text prompts).
            for (key, label) in [("prompt", "prompt"), ("negative_prompt", "negative")] {
                if let Some(p) = node.params.get(key).and_then(|v| v.as_str()) {
                    text.push_str(&format!("    {label}: {p}\n"));
                }
            }
        }
        text.push_str(&format!(
            "{} stale, {maybe} more rebuilt if their inputs change, {} up to date\n",
            stale.len() - maybe,
            plan.len() - stale.len()
        ));
    }
    out(&text);
    EXIT_OK
}
