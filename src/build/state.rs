//! What the drain state holds: the plan of a build, the books of what
//! happened to each node, the jobs running, how the build is ending, and
//! the messages its tasks send. [`super::drain`] moves them.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::run::Finished;
use super::tasks::JobError;
use super::{NodeRecord, Status, Stop, expected_seconds};
use crate::cache::{Manifest, Metadata};
use crate::graph::Node;
use crate::graph::key::InputFact;
use crate::sched::Dispatch;
use crate::session::Session;

/// What a task tells the loop; every task ends in exactly one.
pub(super) enum Message {
    /// A try ended, and what it made is stored.
    Finished {
        node: usize,
        /// Where it ran.
        at: Dispatch,
        result: Result<Finished, JobError>,
        started: f64,
        ended: f64,
    },
    /// A host's cool-down is over.
    HostBack { pool: usize, host: usize },
    /// A local retry's backoff is over: queue the node again.
    Retry { node: usize },
    /// The node's job or resolving task panicked.
    Panicked { node: usize, what: String },
    /// A local miss looked up elsewhere: a job in flight, or the remote.
    Resolved {
        node: usize,
        manifest: Option<Manifest>,
        remote: bool,
    },
}

/// The nodes of this build (indices `l` into `nodes`, which holds graph
/// indices `g`) and what is known of them before it starts.
pub(super) struct Plan<'n> {
    pub(super) nodes: &'n [usize],
    pub(super) local: HashMap<usize, usize>,
    pub(super) inputs: Vec<Vec<usize>>,
    /// Expected seconds of each node's job.
    pub(super) cost: Vec<f64>,
    /// What the last build left for the node is still in place.
    pub(super) intact: Vec<bool>,
    pub(super) simulated: bool,
}

impl<'n> Plan<'n> {
    pub(super) fn new(session: &Session, nodes: &'n [usize]) -> Plan<'n> {
        let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(l, &g)| (g, l)).collect();
        let inputs = nodes
            .iter()
            .map(|&g| session.graph.nodes[g].inputs.iter().map(|i| local[&i.node]).collect())
            .collect();
        let sim_scale = session.project.profile.simulate.as_ref().map(|s| s.time_scale);
        let cost = nodes.iter().map(|&g| expected_seconds(session, g, sim_scale)).collect();
        // Checked on disk once and in parallel (the no-op build's system
        // time is these stats), or found by the review loop's walk just
        // before.
        let intact = session.intact_all(nodes, true);
        Plan {
            nodes,
            local,
            inputs,
            cost,
            intact,
            simulated: session.simulated(),
        }
    }
}

/// Per-node results of one build, indexed like the plan.
pub(super) struct Books {
    pub(super) facts: Vec<Option<InputFact>>,
    pub(super) outputs: Vec<Vec<crate::cache::OutputFile>>,
    pub(super) status: Vec<Option<Status>>,
    pub(super) records: Vec<Option<NodeRecord>>,
}

/// A job this build started: its key and its own cancel token (cancelled on
/// Ctrl-C and by a newer build that does not want the key).
pub(super) struct Running {
    pub(super) key: String,
    pub(super) token: CancellationToken,
}

/// How the build is ending.
#[derive(Default)]
pub(super) struct Ending {
    pub(super) interrupted: bool,
    pub(super) superseded: bool,
    pub(super) stop: Option<Stop>,
    /// When superseded: jobs cancelled, and jobs kept for the newer build.
    pub(super) cancelled: Vec<String>,
    pub(super) kept: Vec<String>,
}

/// A node's record, before the driver fills in what it knows.
pub(super) fn record(node: &Node, status: Status, seconds: f64, engine: &str, error: Option<String>) -> NodeRecord {
    NodeRecord {
        id: node.id.clone(),
        kind: node.kind,
        status,
        seconds,
        engine: engine.to_string(),
        host: None,
        started: None,
        ended: None,
        output: None,
        error,
        provisional: false,
        metadata: Metadata::new(),
    }
}
