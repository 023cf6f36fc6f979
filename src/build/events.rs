//! Build events: every state change of a build, typed, and the fan-out
//! that hands each one to every subscriber.
//!
//! A build emits `build_started` (the plan), then per node `node_queued`,
//! `node_started`, `node_progress`… (a failed try that is tried again:
//! `node_retrying`, then `node_started` again on the next host or with the
//! next engine) and exactly one of `node_finished` (built or failed), `node_cached` (cached or cut off), `node_fetched` or
//! `node_skipped`, and last `build_finished` with the totals. A host that
//! fails transiently is `host_down` for a cool-down, then `host_up`. Serialized,
//! each is a JSON object whose `type` names it.
//!
//! Subscribers are called in order, on the thread that emits: the driver's,
//! or a job's for `node_progress`. They must be quick (draw a bar, append a
//! line, hand the event to a channel).

use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::{NodeRecord, Totals};
use crate::exec::JobProgress;
use crate::kind::NodeKind;

/// One state change of a build. `node` is the node's index in the plan
/// (`build_started`'s `nodes`), `pool` its pool's index in `pools`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildEvent {
    /// The plan: every node this build settles, and the pools jobs run in.
    BuildStarted {
        nodes: Vec<PlannedNode>,
        pools: Vec<PlannedPool>,
    },
    /// Not in any cache: waits for a slot of its pool.
    NodeQueued {
        node: usize,
        id: String,
        pool: usize,
        /// What the job is expected to take, from earlier builds.
        expected_seconds: f64,
    },
    /// A try started: `engine` (the chosen one, or a fallback) on `host`
    /// of pool `pool` (no host: work done here); `attempt` 0 is its first
    /// try with that engine.
    NodeStarted {
        node: usize,
        id: String,
        pool: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        engine: String,
        attempt: u32,
    },
    /// A try failed and the node is tried again: `engine` next, queued in
    /// pool `pool` (another host, or a fallback engine's pool) after
    /// `after_seconds` (a local retry's backoff; 0: at once).
    NodeRetrying {
        node: usize,
        id: String,
        pool: usize,
        engine: String,
        after_seconds: f64,
        /// Why the try failed.
        error: String,
    },
    /// A host failed transiently and takes no job for `seconds`.
    HostDown {
        pool: usize,
        host: String,
        seconds: f64,
        error: String,
    },
    /// A host's cool-down is over: it takes jobs again.
    HostUp { pool: usize, host: String },
    /// What a running job reported.
    NodeProgress {
        node: usize,
        id: String,
        pool: usize,
        /// 0 to 1, when the job knows.
        fraction: Option<f64>,
        status: String,
    },
    /// Its job ended: built, or failed.
    NodeFinished {
        node: usize,
        pool: usize,
        #[serde(flatten)]
        record: NodeRecord,
    },
    /// Found in the local cache (status `cached` or `cutoff`).
    NodeCached {
        node: usize,
        #[serde(flatten)]
        record: NodeRecord,
    },
    /// Fetched from the remote cache.
    NodeFetched {
        node: usize,
        #[serde(flatten)]
        record: NodeRecord,
    },
    /// Not built: an input failed, the build stopped, or its job was
    /// cancelled (Ctrl-C, a newer build).
    NodeSkipped {
        node: usize,
        #[serde(flatten)]
        record: NodeRecord,
    },
    BuildFinished {
        #[serde(flatten)]
        totals: Totals,
        interrupted: bool,
        superseded: bool,
        /// Why it stopped on its own (exit 3), naming the path or the bug.
        #[serde(skip_serializing_if = "Option::is_none")]
        stopped: Option<String>,
    },
}

impl BuildEvent {
    /// The event's `type`, as serialized.
    pub fn name(&self) -> &'static str {
        match self {
            BuildEvent::BuildStarted { .. } => "build_started",
            BuildEvent::NodeQueued { .. } => "node_queued",
            BuildEvent::NodeStarted { .. } => "node_started",
            BuildEvent::NodeProgress { .. } => "node_progress",
            BuildEvent::NodeRetrying { .. } => "node_retrying",
            BuildEvent::HostDown { .. } => "host_down",
            BuildEvent::HostUp { .. } => "host_up",
            BuildEvent::NodeFinished { .. } => "node_finished",
            BuildEvent::NodeCached { .. } => "node_cached",
            BuildEvent::NodeFetched { .. } => "node_fetched",
            BuildEvent::NodeSkipped { .. } => "node_skipped",
            BuildEvent::BuildFinished { .. } => "build_finished",
        }
    }

    /// The record of an event that settles a node.
    pub fn record(&self) -> Option<&NodeRecord> {
        match self {
            BuildEvent::NodeFinished { record, .. }
            | BuildEvent::NodeCached { record, .. }
            | BuildEvent::NodeFetched { record, .. }
            | BuildEvent::NodeSkipped { record, .. } => Some(record),
            _ => None,
        }
    }

    pub(super) fn into_record(self) -> Option<NodeRecord> {
        match self {
            BuildEvent::NodeFinished { record, .. }
            | BuildEvent::NodeCached { record, .. }
            | BuildEvent::NodeFetched { record, .. }
            | BuildEvent::NodeSkipped { record, .. } => Some(record),
            _ => None,
        }
    }
}

/// A node of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedNode {
    pub id: String,
    pub kind: NodeKind,
    /// The engine the rules chose.
    pub engine: &'static str,
    pub pool: usize,
}

/// A pool of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPool {
    pub name: String,
    /// All its hosts' slots together.
    pub slots: usize,
    /// The executors of its group (none for `cpu` and `inline`).
    pub hosts: Vec<String>,
}

/// Someone who hears every event of a build.
pub trait Subscriber: Send + Sync {
    fn on_event(&self, event: &BuildEvent);
}

impl<F: Fn(&BuildEvent) + Send + Sync> Subscriber for F {
    fn on_event(&self, event: &BuildEvent) {
        self(event);
    }
}

/// The subscribers of a build.
#[derive(Clone, Default)]
pub struct Events {
    subscribers: Vec<Arc<dyn Subscriber>>,
}

impl Events {
    /// These events, and `subscriber` too.
    pub fn with(mut self, subscriber: Arc<dyn Subscriber>) -> Events {
        self.subscribers.push(subscriber);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Hand `event` to every subscriber (a review round's pass forwards
    /// its node events to the build's subscribers).
    pub(super) fn deliver(&self, event: &BuildEvent) {
        for s in &self.subscribers {
            s.on_event(event);
        }
    }
}

/// One build's side of [`Events`]: emits while the build runs and goes quiet
/// after its last event, so a job that a superseded build left running
/// reports to no one.
pub(super) struct Bus {
    events: Events,
    /// Whether the build still emits. Emitting holds it for reading, so
    /// nothing is sent after the last event.
    open: RwLock<bool>,
}

impl Bus {
    pub(super) fn new(events: &Events) -> Arc<Bus> {
        Arc::new(Bus {
            events: events.clone(),
            open: RwLock::new(true),
        })
    }

    /// Hand the event `make` builds to every subscriber (it is built only
    /// when someone listens).
    pub(super) fn emit(&self, make: impl FnOnce() -> BuildEvent) {
        if self.events.is_empty() {
            return;
        }
        let open = self.open.read().unwrap_or_else(|e| e.into_inner());
        if *open {
            self.send(&make());
        }
    }

    /// Hand `event` to every subscriber and give it back (a node's record
    /// is kept after its event, without a copy).
    pub(super) fn lend(&self, event: BuildEvent) -> BuildEvent {
        if !self.events.is_empty() {
            let open = self.open.read().unwrap_or_else(|e| e.into_inner());
            if *open {
                self.send(&event);
            }
        }
        event
    }

    fn send(&self, event: &BuildEvent) {
        for s in &self.events.subscribers {
            s.on_event(event);
        }
    }

    /// Send the last event, then go quiet.
    pub(super) fn close_with(&self, last: impl FnOnce() -> BuildEvent) {
        let mut open = self.open.write().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut *open, false) && !self.events.is_empty() {
            self.send(&last());
        }
    }

    /// The progress handle of node `node`'s job.
    pub(super) fn job_progress(self: &Arc<Bus>, node: usize, id: &str, pool: usize) -> JobProgress {
        if self.events.is_empty() {
            return JobProgress::none();
        }
        let (bus, id) = (self.clone(), id.to_string());
        JobProgress::new(move |fraction, status| {
            bus.emit(|| BuildEvent::NodeProgress {
                node,
                id: id.clone(),
                pool,
                fraction,
                status: status.to_string(),
            });
        })
    }
}
