//! The build driver: keys, cache lookups, jobs, results, events.
//!
//! ## Overview
//!
//! [`build`] builds a closure of nodes (inputs first) and returns a
//! [`Report`]. It creates a [`DrainState`](drain::DrainState), the running
//! state of one build, and drains it. Each turn of the drain loop does
//! four things, each one method:
//!
//! 1. **Classify ready nodes** (`classify_ready`). The scheduler hands out
//!    nodes whose inputs are done. A node's key is computed then, from its
//!    inputs' output hashes, so a rebuild that yields the same bytes stops the
//!    wave (early cutoff). A hit is done at once (`cached`, or `cutoff` when an
//!    input was rebuilt to the same bytes); a miss is first looked up off the
//!    loop (a job of an earlier build still in flight in this process, in
//!    watch mode, or the remote cache) and otherwise queued.
//! 2. **Start jobs** (`start_jobs`): as many queued nodes as the hosts of
//!    their pools have free slots, longest remaining path first; the
//!    scheduler picks the host. Each job is one try of the node's current
//!    engine on that host, a task in one [`JoinSet`](tokio::task::JoinSet)
//!    ([`run`]: running it; once its process or request ends, its slot is
//!    freed and [`store`] stores the outputs, a batch at a time, off the
//!    slot) that ends in a message.
//! 3. **Wait for one thing and handle it** (`next_step`, `handle`): Ctrl-C
//!    (stop starting work; running jobs are cancelled), a newer build
//!    ([`Supersede`]: cancel the jobs it does not want and return at once), or
//!    a task's message (a try finished or failed, a host's cool-down or a
//!    retry's backoff ended, a lookup resolved, a task panicked). A failed
//!    try is tried again ([`retry`]): a transient failure sets its host
//!    aside for a cool-down and queues the job for another host; a local
//!    one is queued again after a backoff; a permanent one, or spent
//!    retries, queues the next engine of the chain in its own pool.
//! 4. **Finish** (`finish`): wait for the uploads, give every node its
//!    record, count the totals.
//!
//! ## Events
//!
//! Every state change is a typed [`BuildEvent`] handed to the subscribers in
//! [`Options::events`]: the progress bars, `--json`, watch's `/events`. The
//! driver never draws or prints. A running job reports progress through its
//! [`JobProgress`](crate::exec::JobProgress) handle, which becomes a
//! `node_progress` event.
//!
//! ## What stops a build
//!
//! A failed node skips its dependents, and without `--keep-going` everything
//! not yet started. A panic in any task is caught ([`tasks`]) and stops the
//! build with an internal error; the loop waits only on tasks it holds, so it
//! cannot wait for one that died. A failure to write `out/` or the cache
//! stops it too ([`Stop::Io`]). Both exit 3.
//!
//! ## Files
//!
//! - `drain.rs`: [`DrainState`](drain::DrainState) and its loop.
//! - `state.rs`: what it holds (plan, books, running jobs, messages).
//! - `retry.rs`: what becomes of a failed try; host cool-downs.
//! - `run.rs`: one try of one node: its engine on its host, metadata.
//! - `store.rs`: storing what tries made, off their slots, in batches.
//! - `materialize.rs`: copying outputs under `out/`.
//! - `events.rs`: [`BuildEvent`] and the fan-out to subscribers.
//! - `tasks.rs`: panics caught, blocking tasks joined, the panic test seam.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::cache::Metadata;
use crate::cache::remote::Remote;
use crate::kind::NodeKind;
use crate::session::Session;

mod drain;
mod events;
mod health;
mod materialize;
pub mod noop;
mod retry;
mod rounds;
mod run;
mod state;
mod store;
mod tasks;

pub use events::{BuildEvent, Events, PlannedNode, PlannedPool, Subscriber};
pub use tasks::panic_text;

/// How to build.
#[derive(Clone, Default)]
pub struct Options {
    pub keep_going: bool,
    /// The shared cache behind the local one.
    pub remote: Option<Arc<Remote>>,
    /// Jobs running in this process, shared by successive builds (watch mode).
    pub inflight: Arc<InFlight>,
    /// Lets a newer build (watch mode) stop this one.
    pub supersede: Option<Arc<Supersede>>,
    /// Who hears about each state change: progress bars, `--json`, watch.
    pub events: Events,
    /// When the build began, for a build of several passes (the review
    /// loop's): its totals' seconds and job spans count from here, not
    /// from the last pass's start. `None`: the pass's own start.
    pub began: Option<std::time::Instant>,
}

/// What happened to a node in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran its engine.
    Built,
    /// Its key was found in the cache.
    Cached,
    /// Its key was found in the remote cache and fetched.
    Fetched,
    /// An input was rebuilt this run, but to the same bytes, so its key did
    /// not change: the wave stopped here.
    Cutoff,
    Failed,
    /// Not built because an input failed, or the build stopped.
    Skipped,
}

/// One node's outcome: a `node` line of `--json`, and the body of every
/// event that settles a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub id: String,
    pub kind: NodeKind,
    pub status: Status,
    /// Seconds the job ran (0 when not run).
    pub seconds: f64,
    /// The engine that made it (or would have).
    pub engine: String,
    /// The executor (host) its last try ran on, for service engines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When its last try started and ended, seconds since the build began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<f64>,
    /// The output hash, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Made by a fallback engine standing in for the first one, which was
    /// unreachable or failed in a way that may pass (`error` says how): not
    /// uploaded, and made again by a build that reaches the first engine.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// The manifest's metadata, for the nodes whose manifest this build
    /// made or read (built, fetched, or resolved from a job in flight);
    /// `studio why` shows it for any node.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Totals {
    pub built: usize,
    pub cached: usize,
    pub fetched: usize,
    pub cutoff: usize,
    pub failed: usize,
    pub skipped: usize,
    pub seconds: f64,
}

impl Totals {
    /// Count `records`; `seconds` is the build's wall time.
    fn count<'a>(records: impl IntoIterator<Item = &'a NodeRecord>, seconds: f64) -> Totals {
        let mut t = Totals {
            seconds,
            ..Totals::default()
        };
        for r in records {
            match r.status {
                Status::Built => t.built += 1,
                Status::Cached => t.cached += 1,
                Status::Fetched => t.fetched += 1,
                Status::Cutoff => t.cutoff += 1,
                Status::Failed => t.failed += 1,
                Status::Skipped => t.skipped += 1,
            }
        }
        t
    }
}

#[derive(Debug)]
pub struct Report {
    pub records: Vec<NodeRecord>,
    pub totals: Totals,
    pub interrupted: bool,
    /// A newer build took over (watch mode): this one stopped early.
    pub superseded: bool,
    /// When superseded: the running jobs cancelled because their key
    /// changed, and those left running for the newer build.
    pub cancelled: Vec<String>,
    pub kept: Vec<String>,
    /// Start and end of each job, seconds since the build began (for benchmarks).
    pub spans: Vec<(usize, f64, f64)>,
    /// Why the build stopped early on its own, if it did.
    pub stopped: Option<Stop>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.totals.failed == 0
            && !self.interrupted
            && !self.superseded
            && self.totals.skipped == 0
            && self.stopped.is_none()
    }
}

/// What stopped a build that no node's failure explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// studio could not write its own files (`out/`, the cache): the message
    /// names the path.
    Io(String),
    /// A bug: a task panicked.
    Internal(String),
}

impl Stop {
    /// The message, without saying which kind of stop it is.
    pub fn text(&self) -> &str {
        match self {
            Stop::Io(e) | Stop::Internal(e) => e,
        }
    }
}

/// Jobs running in this process, by key. A later build (watch mode) that
/// needs a key still in flight waits for that job instead of running it
/// again, so a save does not restart work it did not change.
#[derive(Default)]
pub struct InFlight(Mutex<HashMap<String, watch::Receiver<bool>>>);

impl InFlight {
    /// Register `key`; it stays in flight until the guard drops.
    fn start(self: &Arc<Self>, key: &str) -> InFlightGuard {
        let (tx, rx) = watch::channel(false);
        self.0.lock().expect("in-flight map").insert(key.to_string(), rx);
        InFlightGuard {
            map: self.clone(),
            key: key.to_string(),
            tx,
        }
    }

    fn waiter(&self, key: &str) -> Option<watch::Receiver<bool>> {
        self.0.lock().expect("in-flight map").get(key).cloned()
    }

    /// How many jobs are running.
    pub fn len(&self) -> usize {
        self.0.lock().expect("in-flight map").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct InFlightGuard {
    map: Arc<InFlight>,
    key: String,
    tx: watch::Sender<bool>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().expect("in-flight map");
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
        drop(map);
        let _ = self.tx.send(true);
    }
}

/// A newer build's wanted keys: jobs whose key is not among them are
/// cancelled, the rest keep running, and this build returns at once.
#[derive(Default)]
pub struct Supersede {
    wanted: Mutex<Option<HashSet<String>>>,
    notify: Notify,
}

impl Supersede {
    pub fn trigger(&self, wanted: HashSet<String>) {
        *self.wanted.lock().expect("supersede") = Some(wanted);
        self.notify.notify_one();
    }

    fn take(&self) -> HashSet<String> {
        self.wanted.lock().expect("supersede").take().unwrap_or_default()
    }
}

/// Build `nodes` (a closure, inputs first): first the review rounds their
/// pools need ([`rounds`]), then everything.
pub async fn build(session: &mut Session, nodes: &[usize], opts: &Options, cancel: CancellationToken) -> Report {
    rounds::build(session, nodes, opts, cancel).await
}

/// One pass of the drain loop over `nodes`.
async fn drain_pass(
    session: &mut Session,
    nodes: &[usize],
    opts: &Options,
    cancel: CancellationToken,
    prior: HashMap<String, NodeRecord>,
    warned: &mut HashSet<usize>,
) -> Report {
    let unreachable = health::unreachable_pools(session, nodes, warned).await;
    drain::DrainState::new(session, nodes, opts, cancel, &unreachable, prior)
        .drain()
        .await
}

/// Expected seconds of a node if it runs: the engine's estimate times what
/// earlier builds taught.
pub fn expected_seconds(session: &Session, g: usize, sim_scale: Option<f64>) -> f64 {
    let node = &session.graph.nodes[g];
    let engine = node.engine();
    let estimate = engine.expected_seconds(node.media_seconds);
    match sim_scale {
        Some(scale) => estimate * session.durations.ratio(&format!("sim:{}", engine.name), scale),
        None => estimate * session.durations.ratio(engine.name, 1.0),
    }
}

#[cfg(test)]
mod tests;
