//! `studio build`: plan, or build, the targets.

use camino::Utf8Path;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_IO, EXIT_OK, out, report};
use crate::build::{self, Options, Status};
use crate::cache::lock::BuildLock;
use crate::graph::explain::Reason;

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
    /// Print the plan: each stale node and why, without building.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Print a JSON report on stdout: one record per node, then totals.
    #[arg(long)]
    json: bool,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let lock = if args.dry_run {
        None
    } else {
        match BuildLock::acquire(&root.join("cache"), || {
            eprintln!(
                "waiting: another studio build of this project holds {}/cache/lock …",
                root
            );
        }) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("error: cannot lock {root}/cache/lock: {e}");
                return EXIT_IO;
            }
        }
    };
    let mut session = match super::open(root, profile, args.jobs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let targets = if args.targets.is_empty() {
        vec!["all".to_string()]
    } else {
        args.targets.clone()
    };
    let nodes = match session.select(&targets) {
        Ok(n) => n,
        Err(d) => {
            report(d);
            return EXIT_INVALID;
        }
    };
    if args.dry_run {
        return dry_run(&session, &nodes, args.json);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cancel = CancellationToken::new();
    let opts = Options {
        keep_going: args.keep_going,
        verbose: !args.json,
    };
    let report = runtime.block_on(async {
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping running jobs (Ctrl-C again to quit at once)");
                c.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(i32::from(EXIT_INTERRUPTED));
                }
            }
        });
        build::build(&mut session, &nodes, &opts, cancel).await
    });
    runtime.shutdown_background();

    let sources: std::collections::HashMap<String, String> = session
        .project
        .sources
        .iter()
        .map(|(p, h)| (p.to_string(), h.clone()))
        .collect();
    if sources != session.state.sources {
        session.state.sources = sources;
        session.state.dirty = true;
    }
    let saved = session
        .state
        .save(&session.layout.state_file())
        .and_then(|()| session.durations.save(&session.layout.cache.join("durations.json")))
        .and_then(|()| session.index.save(&session.layout.cache.join("sources.json")));
    drop(lock);

    let t = &report.totals;
    if args.json {
        let mut text = String::new();
        for r in &report.records {
            let mut v = serde_json::to_value(r).expect("record serializes");
            v["type"] = json!("node");
            text.push_str(&v.to_string());
            text.push('\n');
        }
        let mut v = serde_json::to_value(t).expect("totals serialize");
        v["type"] = json!("totals");
        v["interrupted"] = json!(report.interrupted);
        text.push_str(&v.to_string());
        text.push('\n');
        out(&text);
    } else {
        for r in report.records.iter().filter(|r| r.status == Status::Failed) {
            eprintln!(
                "error: {} failed:\n  {}",
                r.id,
                r.error.as_deref().unwrap_or("").replace('\n', "\n  ")
            );
        }
        eprintln!(
            "{}: {} built, {} cached, {} cut off, {} failed, {} skipped in {}",
            if report.interrupted {
                "interrupted"
            } else if report.ok() {
                "done"
            } else {
                "failed"
            },
            t.built,
            t.cached,
            t.cutoff,
            t.failed,
            t.skipped,
            crate::progress::human(t.seconds)
        );
    }
    if let Err(e) = saved {
        eprintln!("error: saving build state: {e}");
        return EXIT_IO;
    }
    if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.ok() {
        EXIT_OK
    } else {
        EXIT_FAILED
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
