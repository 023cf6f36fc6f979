//! The review loop in a build: rounds first, then the user's targets.
//!
//! The graph grows at the session level, between passes of the (unchanged,
//! pure) drain loop: [`Session::expand_rounds`] derives every round the
//! cache knows and adds the next one a pool needs; a silent pass builds the
//! reviews still unknown (with their candidates); this repeats until every
//! pool the targets need is decided. Only then is the whole closure
//! drained, so no target is built against a half-filled pool. A pass tells
//! the subscribers its nodes' events but not its start or end; the nodes it
//! made settle quietly in the final pass with their `built` record (one
//! record per node, totals counted once).
//!
//! The vision service is probed once up front: while its group is out of
//! reach, the reviews' `person` (and the gate's `structural`) fallbacks
//! stand in, their provisional results count as known, and a round no
//! vision model scored ends the loop; once it answers, those results are
//! unknown again and the passes redo them.
//!
//! A gate pass also builds what no gate decides (voices, music, mixes,
//! the episode's audio), so that CPU work overlaps the shots' filming
//! instead of waiting for the final pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{BuildEvent, Events, NodeRecord, Options, Report, Status, Subscriber, drain_pass};
use crate::graph::review::Next;
use crate::kind::NodeKind;
use crate::session::Session;

pub(super) async fn build(session: &mut Session, nodes: &[usize], opts: &Options, cancel: CancellationToken) -> Report {
    // Every pass counts its seconds and spans from the build's start.
    let opts = &Options {
        began: Some(opts.began.unwrap_or_else(std::time::Instant::now)),
        ..opts.clone()
    };
    let pools: HashSet<String> = (nodes.iter().map(|&n| &session.graph.nodes[n]))
        .filter(|n| n.kind == NodeKind::CharacterRefs && n.params.contains_key("pool_target"))
        .map(|n| n.path.clone())
        .collect();
    let mut prior: HashMap<String, NodeRecord> = HashMap::new();
    // A pass tells its nodes' events (queued, started, progress, finished)
    // but not its start and end: the build starts and finishes once.
    let quiet = Options {
        events: Events::default().with(Arc::new(Pass(opts.events.clone()))),
        ..opts.clone()
    };
    let mut last_unknown: Vec<usize> = Vec::new();
    let mut announced = false;
    // Each unreachable group is warned about once, whatever the passes.
    let mut warned: HashSet<usize> = HashSet::new();
    let reviews: Vec<usize> = (session.graph.closure(nodes).into_iter())
        .filter(|&n| matches!(session.graph.nodes[n].kind, NodeKind::Review | NodeKind::ShotReview))
        .collect();
    let down: HashSet<usize> = super::health::unreachable_pools(session, &reviews, &mut warned)
        .await
        .into_keys()
        .collect();
    while !pools.is_empty() {
        let rounds = match session.expand_rounds_with(Some(&down)) {
            Ok(r) => r,
            // The loader checked the rules the rounds read: the final pass
            // builds what the graph holds.
            Err(_) => break,
        };
        let unknown: Vec<usize> = (rounds.iter())
            .filter(|r| pools.contains(&r.character))
            .flat_map(|r| r.unknown.iter().copied())
            .collect();
        session.rounds = rounds;
        if unknown.is_empty() || unknown == last_unknown || cancel.is_cancelled() {
            break;
        }
        last_unknown.clone_from(&unknown);
        announce(session, nodes, opts, &mut announced);
        let report = pass(session, &unknown, &quiet, &cancel, &mut prior, &mut warned).await;
        if report.interrupted || report.superseded || report.stopped.is_some() {
            return ended_early(report, opts);
        }
        if !report.ok() {
            // The final pass tries the failed reviews again and reports them.
            break;
        }
    }
    // The quality gate: shots below it take their next take, until they
    // pass or reach their last (judged by the final pass).
    let mut last: Vec<usize> = Vec::new();
    while !cancel.is_cancelled() {
        let closure = session.graph.closure(nodes);
        let unknown = session.expand_takes_with(&closure, Some(&down));
        // A pass that made them and left them unknown (a review the cache
        // cannot read back) would repeat forever: the final pass decides.
        if unknown.is_empty() || unknown == last {
            break;
        }
        last.clone_from(&unknown);
        announce(session, nodes, opts, &mut announced);
        // What no gate decides (the audio: voices, music, mixes, the
        // episode's audio) is built alongside the shots the gate waits
        // for, rather than after them in the final pass.
        let mut with = unknown.clone();
        with.extend(ungated(&session.graph, &closure));
        let report = pass(session, &with, &quiet, &cancel, &mut prior, &mut warned).await;
        if report.interrupted || report.superseded || report.stopped.is_some() {
            return ended_early(report, opts);
        }
        if !report.ok() {
            break;
        }
    }
    for r in session.rounds.iter().filter(|r| pools.contains(&r.character)) {
        if let Some(Next::Short { approved, pending }) = r.next {
            let unscored = r.reviewed.iter().filter(|x| x.scores.is_none()).count();
            let why = if unscored > 0 {
                format!(" ({unscored} unscored: no vision service answered)")
            } else {
                String::new()
            };
            eprintln!(
                "warning: the pool of `{}` has {approved} approved image(s) after {} round(s), below pool_target; it goes on with them, and {pending} candidate(s) wait for a person{why}: `studio review {}`",
                r.character, r.rounds, r.character
            );
        }
    }
    let all = session.graph.closure(nodes);
    drain_pass(session, &all, opts, cancel, prior, &mut warned).await
}

/// The nodes of `closure` (inputs first) that depend on no quality gate.
fn ungated(graph: &crate::graph::Graph, closure: &[usize]) -> Vec<usize> {
    let mut gated: HashSet<usize> = HashSet::new();
    for &n in closure {
        let node = &graph.nodes[n];
        if node.kind == NodeKind::ShotReview || node.inputs.iter().any(|i| gated.contains(&i.node)) {
            gated.insert(n);
        }
    }
    closure.iter().copied().filter(|n| !gated.contains(n)).collect()
}

/// One pass: drain `unknown` with everything it needs, and remember what
/// it settled, so the final pass gives those nodes the records they had.
async fn pass(
    session: &mut Session,
    unknown: &[usize],
    quiet: &Options,
    cancel: &CancellationToken,
    prior: &mut HashMap<String, NodeRecord>,
    warned: &mut HashSet<usize>,
) -> Report {
    let closure = session.graph.closure(unknown);
    let report = drain_pass(session, &closure, quiet, cancel.clone(), prior.clone(), warned).await;
    for r in &report.records {
        if matches!(
            r.status,
            Status::Built | Status::Fetched | Status::Cutoff | Status::Cached
        ) {
            prior.insert(r.id.clone(), r.clone());
        }
    }
    report
}

/// A pass that stopped the build (Ctrl-C, a newer build, a failure to
/// store): the subscribers hear the build end, as they would from the final
/// pass.
fn ended_early(report: Report, opts: &Options) -> Report {
    opts.events.deliver(&BuildEvent::BuildFinished {
        totals: report.totals.clone(),
        interrupted: report.interrupted,
        superseded: report.superseded,
        stopped: report.stopped.as_ref().map(|s| s.text().to_string()),
    });
    report
}

/// The build's subscribers, as a pass's: every event but the build's start
/// and end.
struct Pass(Events);

impl Subscriber for Pass {
    fn on_event(&self, event: &BuildEvent) {
        if !matches!(
            event,
            BuildEvent::BuildStarted { .. } | BuildEvent::BuildFinished { .. }
        ) {
            self.0.deliver(event);
        }
    }
}

/// Before the first pass: `build_started` with the plan as known so far
/// (the final pass announces the whole plan again, the rounds included).
fn announce(session: &Session, nodes: &[usize], opts: &Options, announced: &mut bool) {
    if !std::mem::replace(announced, true) {
        opts.events
            .deliver(&super::drain::started(&session.graph, &session.graph.closure(nodes)));
    }
}
