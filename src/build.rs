//! The build loop: keys, cache lookups, job dispatch, results.
//!
//! The loop owns all state; jobs run as tokio tasks in one [`JoinSet`],
//! each ending in a [`Message`]. A node's key is computed when its inputs
//! are done, from their output hashes, so a rebuild that yields the same
//! bytes stops the wave (early cutoff).
//!
//! A panic in a task is caught and stops the build with an internal error;
//! the loop waits only on tasks it holds, so it cannot wait for one that died.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use futures_util::FutureExt;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod retry;
use retry::Retry;

use crate::cache::remote::Remote;
use crate::cache::state::{Materialized, NodeState, mtime_ns};
use crate::cache::{Cache, Manifest, OutputFile, Suffix};
use crate::engines::{EngineSpec, Runs};
use crate::exec::{self, Job, JobInput};
use crate::graph::key::{InputFact, KeyMaterial};
use crate::graph::{Node, NodeKind, Pool};
use crate::progress::Progress;
use crate::sched::{Dispatch, Scheduler};
use crate::session::{Hit, Session};

mod tasks;
pub use tasks::panic_text;
use tasks::{JobError, caught, halt, joined, skip_rest, test_panic};

/// How to build.
#[derive(Clone, Default)]
pub struct Options {
    pub keep_going: bool,
    /// Draw progress bars and print per-node lines on stderr.
    pub verbose: bool,
    /// The shared cache behind the local one.
    pub remote: Option<Arc<Remote>>,
    /// Jobs running in this process, shared by successive builds (watch mode).
    pub inflight: Arc<InFlight>,
    /// Lets a newer build (watch mode) stop this one.
    pub supersede: Option<Arc<Supersede>>,
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

#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub id: String,
    pub kind: NodeKind,
    pub status: Status,
    /// Seconds the job ran (0 when not run).
    pub seconds: f64,
    /// The engine that made it (or would have).
    pub engine: String,
    /// The executor (host) it ran on, for service engines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When its job started and ended, seconds since the build began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<f64>,
    /// The output hash, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
}

enum Message {
    Finished {
        node: usize,
        /// Where the try ran.
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

struct Finished {
    manifest: Manifest,
    materialized: Vec<(String, Materialized)>,
    /// An output could not be copied under `out/`.
    unwritten: Option<String>,
}

/// What every job task shares.
struct Shared {
    cache: Cache,
    root: Utf8PathBuf,
    out: Utf8PathBuf,
    simulate: Option<crate::project::model::Simulate>,
    pools: Vec<Pool>,
    executors: Vec<crate::project::model::Executor>,
    tools: Arc<crate::stages::tools::Toolchain>,
    began: Instant,
    remote: Option<Arc<Remote>>,
    /// Uploads to the remote, awaited before the build returns.
    uploads: TaskTracker,
    /// The first upload that panicked.
    upload_panic: Arc<Mutex<Option<String>>>,
}

/// Per-node results of one build, indexed like `nodes`.
struct Books {
    facts: Vec<Option<InputFact>>,
    outputs: Vec<Vec<OutputFile>>,
    status: Vec<Option<Status>>,
    records: Vec<Option<NodeRecord>>,
}

impl Books {
    /// `l` (global node `g`) is done from a cache under `key`: record it,
    /// materialize its outputs and update the state. Returns what could not
    /// be written under `out/`.
    #[allow(clippy::too_many_arguments)]
    fn hit(
        &mut self,
        session: &mut Session,
        shared: &Shared,
        l: usize,
        g: usize,
        key: &str,
        hit: Hit,
        intact: bool,
        status: Status,
    ) -> Option<String> {
        let node = &session.graph.nodes[g];
        let mut unwritten = None;
        if !(hit.same_as_last && intact) {
            let (materialized, error) = materialize(&shared.cache, &shared.out, node, &hit.outputs, &session.state.out);
            unwritten = error;
            for (rel, m) in materialized {
                session.state.out.insert(rel, m);
                session.state.dirty = true;
            }
        }
        if !hit.same_as_last {
            session.state.nodes.insert(
                node.id.clone(),
                NodeState {
                    key: key.to_string(),
                    content: hit.fact.hash.clone(),
                    duration: hit.fact.duration,
                    outputs: hit.outputs.clone(),
                },
            );
            session.state.dirty = true;
        }
        self.facts[l] = Some(hit.fact);
        self.outputs[l] = hit.outputs;
        self.status[l] = Some(status);
        self.records[l] = Some(record(node, status, 0.0, node.engine().name, None));
        unwritten
    }
}

/// Build `nodes` (a closure, inputs first).
pub async fn build(session: &mut Session, nodes: &[usize], opts: &Options, cancel: CancellationToken) -> Report {
    let began = Instant::now();
    let simulated = session.simulated();
    let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(l, &g)| (g, l)).collect();
    let inputs: Vec<Vec<usize>> = nodes
        .iter()
        .map(|&g| session.graph.nodes[g].inputs.iter().map(|i| local[&i.node]).collect())
        .collect();
    let sim_scale = session.project.profile.simulate.as_ref().map(|s| s.time_scale);
    let cost: Vec<f64> = nodes.iter().map(|&g| expected_seconds(session, g, sim_scale)).collect();
    let pools: Vec<usize> = nodes.iter().map(|&g| session.graph.nodes[g].pool).collect();
    let hosts: Vec<Vec<usize>> = session.graph.pools.iter().map(Pool::host_slots).collect();
    let mut sched = Scheduler::new(&inputs, pools, &hosts, &cost);
    let mut retry = Retry::new(
        &session.graph,
        &session.project.executors,
        nodes,
        sim_scale.unwrap_or(1.0),
    );

    let shared = Arc::new(Shared {
        cache: session.cache.clone(),
        root: session.layout.root.clone(),
        out: session.layout.out.clone(),
        simulate: session.project.profile.simulate.clone(),
        pools: session.graph.pools.clone(),
        executors: session.project.executors.clone(),
        tools: session.tools.clone(),
        began,
        remote: opts.remote.clone(),
        uploads: TaskTracker::new(),
        upload_panic: Arc::default(),
    });
    let progress = Progress::new(opts.verbose, &session.graph.pools);
    // Every task the loop waits on; each ends in a message, a panic included.
    let mut tasks: JoinSet<Message> = JoinSet::new();

    // What the last build left, checked on disk once and in parallel (the
    // no-op build's system time is these stats).
    let intact: Vec<bool> = {
        use rayon::prelude::*;
        let s: &Session = session;
        nodes.par_iter().map(|&g| s.intact(g)).collect()
    };
    let mut books = Books {
        facts: vec![None; nodes.len()],
        outputs: vec![Vec::new(); nodes.len()],
        status: vec![None; nodes.len()],
        records: vec![None; nodes.len()],
    };
    let mut pending: HashMap<usize, (String, KeyMaterial)> = HashMap::new();
    // Jobs started by this build: their key and their own cancel token.
    let mut running: HashMap<usize, (String, CancellationToken)> = HashMap::new();
    let mut spans = Vec::new();
    let mut interrupted = false;
    let mut superseded = false;
    let mut stop: Option<Stop> = None;
    let (mut cancelled, mut kept) = (Vec::new(), Vec::new());
    let no_supersede = Arc::new(Supersede::default());
    let supersede = opts.supersede.clone().unwrap_or(no_supersede);

    loop {
        // Classify every node whose inputs are done.
        loop {
            let ready = sched.take_ready();
            if ready.is_empty() {
                break;
            }
            for l in ready {
                let g = nodes[l];
                let key = KeyMaterial::key_of(&session.graph, g, simulated, |i| books.facts[local[&i]].as_ref())
                    .expect("ready nodes have all inputs");
                if let Some(hit) = session.lookup(g, &key, intact[l]) {
                    let rebuilt_input = inputs[l].iter().any(|&i| books.status[i] == Some(Status::Built));
                    let st = if hit.same_as_last && rebuilt_input {
                        Status::Cutoff
                    } else {
                        Status::Cached
                    };
                    if let Some(e) = books.hit(session, &shared, l, g, &key, hit, intact[l], st) {
                        stop.get_or_insert(Stop::Io(e));
                    }
                    progress.cached(st == Status::Cutoff);
                    sched.finish(l, true);
                    continue;
                }
                let material = KeyMaterial::of(&session.graph, g, simulated, |i| books.facts[local[&i]].as_ref())
                    .expect("ready nodes have all inputs");
                // Not here: maybe a job of an earlier build is making it, or
                // the remote has it.
                let waiter = opts.inflight.waiter(&key);
                let remote = shared.remote.clone().filter(|r| r.readable());
                if waiter.is_some() || remote.is_some() {
                    let (cache, k) = (shared.cache.clone(), key.clone());
                    let id = session.graph.nodes[g].id.clone();
                    tasks.spawn(caught(l, async move {
                        test_panic("resolve", &id);
                        if let Some(mut w) = waiter {
                            let _ = w.wait_for(|done| *done).await;
                            if let Some(m) = cache.lookup(&k) {
                                return Message::Resolved {
                                    node: l,
                                    manifest: Some(m),
                                    remote: false,
                                };
                            }
                        }
                        let manifest = match remote {
                            Some(r) => r.fetch(&cache, &k).await,
                            None => None,
                        };
                        Message::Resolved {
                            node: l,
                            manifest,
                            remote: true,
                        }
                    }));
                    pending.insert(l, (key, material));
                    continue;
                }
                pending.insert(l, (key, material));
                progress.queued(session.graph.nodes[g].pool, &session.graph.nodes[g].id, cost[l]);
                sched.enqueue(l);
            }
            if stop.is_some() {
                skip_rest(&mut sched, &mut books);
            }
        }
        // Start what the pools' hosts have room for.
        while let Some(at) = sched.next_job() {
            let l = at.node;
            let g = nodes[l];
            let node = session.graph.nodes[g].clone();
            // Kept until the node is done: a failed try is queued again.
            let (key, material) = pending.get(&l).cloned().expect("queued nodes have a key");
            let now = retry.current(l);
            let job_inputs: Vec<JobInput> = node
                .inputs
                .iter()
                .map(|i| {
                    let li = local[&i.node];
                    let fact = books.facts[li].as_ref().expect("inputs are done");
                    JobInput {
                        role: i.role.clone(),
                        files: books.outputs[li]
                            .iter()
                            .map(|o| (o.suffix.to_string(), shared.cache.object_path(&o.hash)))
                            .collect(),
                        outputs: books.outputs[li].clone(),
                        duration: fact.duration,
                        hash: fact.hash.clone(),
                    }
                })
                .collect();
            progress.started(node.pool, &node.id);
            let shared = shared.clone();
            let token = cancel.child_token();
            running.insert(l, (key.clone(), token.clone()));
            let guard = opts.inflight.start(&key);
            tasks.spawn(caught(l, async move {
                let started = shared.began.elapsed().as_secs_f64();
                test_panic("job", &node.id);
                let engine = node.engines[now.engine];
                let result = run_node(
                    &shared,
                    node,
                    engine,
                    now.attempt,
                    at,
                    job_inputs,
                    key,
                    material,
                    &token,
                )
                .await;
                drop(guard);
                let ended = shared.began.elapsed().as_secs_f64();
                Message::Finished {
                    node: l,
                    at,
                    result,
                    started,
                    ended,
                }
            }));
        }
        if sched.is_done() {
            break;
        }
        // Stopping comes first: a job's message that arrives together with
        // Ctrl-C is read after the build knows it is interrupted.
        let joined = tokio::select! {
            biased;
            () = cancel.cancelled(), if !interrupted => {
                interrupted = true;
                for l in sched.abandon() {
                    books.status[l] = Some(Status::Skipped);
                }
                continue;
            }
            () = supersede.notify.notified() => {
                let wanted = supersede.wanted.lock().expect("supersede").take().unwrap_or_default();
                for (&l, (key, token)) in &running {
                    let id = session.graph.nodes[nodes[l]].id.clone();
                    if wanted.contains(key) {
                        kept.push(id);
                    } else {
                        token.cancel();
                        cancelled.push(id);
                    }
                }
                superseded = true;
                break;
            }
            joined = tasks.join_next() => joined,
        };
        let Some(joined) = joined else {
            // Nodes still open and no task left to finish them: a bug, and
            // no reason to wait forever.
            stop.get_or_insert(Stop::Internal("the build lost track of its running jobs".into()));
            skip_rest(&mut sched, &mut books);
            break;
        };
        let msg = match joined {
            Ok(msg) => msg,
            Err(e) => {
                // Unreachable (panics are caught in the task), but never a hang.
                stop.get_or_insert(Stop::Internal(format!("a build task ended abnormally: {e}")));
                halt(&mut sched, &mut books, &running);
                continue;
            }
        };
        let (l, at, result, started, ended) = match msg {
            Message::Finished {
                node,
                at,
                result,
                started,
                ended,
            } => (node, at, result, started, ended),
            Message::HostBack { pool, host } => {
                retry.host_back(&mut sched, pool, host);
                continue;
            }
            Message::Retry { node: l } => {
                if books.status[l].is_none() {
                    sched.enqueue(l);
                }
                continue;
            }
            Message::Resolved {
                node: l,
                manifest,
                remote,
            } => {
                if books.status[l].is_some() {
                    continue; // abandoned meanwhile
                }
                let g = nodes[l];
                match manifest {
                    Some(m) => {
                        let (key, _) = pending.remove(&l).expect("resolving nodes have a key");
                        let same_as_last = session
                            .state
                            .nodes
                            .get(&session.graph.nodes[g].id)
                            .is_some_and(|s| s.key == key);
                        let hit = Hit::from_manifest(m, same_as_last);
                        let st = if remote { Status::Fetched } else { Status::Cached };
                        let unwritten = books.hit(session, &shared, l, g, &key, hit, false, st);
                        progress.cached(false);
                        sched.finish(l, true);
                        if let Some(e) = unwritten {
                            stop.get_or_insert(Stop::Io(e));
                            skip_rest(&mut sched, &mut books);
                        }
                    }
                    None => {
                        let node = &session.graph.nodes[g];
                        progress.queued(node.pool, &node.id, cost[l]);
                        sched.enqueue(l);
                    }
                }
                continue;
            }
            Message::Panicked { node: l, what } => {
                let node = &session.graph.nodes[nodes[l]];
                let error = format!("internal error: {what} (please report)");
                stop.get_or_insert(Stop::Internal(format!("{}: {what}", node.id)));
                if running.remove(&l).is_some() {
                    progress.finished(node.pool, &node.id, 0.0, node.engine().name, Some(&error));
                }
                // Still open unless the build stopped meanwhile.
                if books.status[l].is_none() {
                    books.status[l] = Some(Status::Failed);
                    books.records[l] = Some(record(node, Status::Failed, 0.0, node.engine().name, Some(error)));
                    for s in sched.finish(l, false) {
                        books.status[s] = Some(Status::Skipped);
                    }
                }
                halt(&mut sched, &mut books, &running);
                continue;
            }
        };
        // The job's own token: cancelled on Ctrl-C and by a newer build.
        let token = running.remove(&l).map(|(_, token)| token);
        let g = nodes[l];
        let node = &session.graph.nodes[g];
        // A failed try goes back to the scheduler unless it was the last,
        // or the build is stopping.
        let told_to_stop = token.as_ref().is_some_and(CancellationToken::is_cancelled);
        let result = match result {
            Err(e @ (JobError::Transient(_) | JobError::Failed(_))) if !sched.stopped() && !told_to_stop => {
                match retry.failed(&mut sched, &session.graph, at, node, e, &mut tasks) {
                    None => continue,
                    Some(errors) => Err(JobError::Failed(errors)),
                }
            }
            Err(JobError::Transient(e)) => Err(JobError::Failed(e)),
            other => other,
        };
        pending.remove(&l);
        match result {
            Ok(done) => {
                retry.succeeded(&session.graph, at);
                let m = done.manifest;
                let seconds = ended - started;
                let engine_key = if simulated {
                    format!("sim:{}", m.engine)
                } else {
                    m.engine.clone()
                };
                if let Some(spec) = crate::engines::find(&m.engine) {
                    session.durations.record(
                        &engine_key,
                        spec.expected_seconds(m.duration.unwrap_or(node.media_seconds)),
                        seconds,
                    );
                }
                for (rel, mat) in done.materialized {
                    session.state.out.insert(rel, mat);
                }
                session.state.dirty = true;
                let fact = InputFact {
                    hash: m.content_hash(),
                    duration: m.duration,
                };
                session.state.nodes.insert(
                    node.id.clone(),
                    NodeState {
                        key: material_key(&m),
                        content: fact.hash.clone(),
                        duration: m.duration,
                        outputs: m.outputs.clone(),
                    },
                );
                books.facts[l] = Some(fact);
                books.outputs[l] = m.outputs.clone();
                books.status[l] = Some(Status::Built);
                let fallback = (m.engine != node.engine().name).then(|| format!("fell back to {}", m.engine));
                let mut r = record(node, Status::Built, seconds, &m.engine, fallback);
                r.host = session.graph.pools[at.pool].hosts.get(at.host).map(|h| h.id.clone());
                (r.started, r.ended) = (Some(started), Some(ended));
                books.records[l] = Some(r);
                progress.finished(node.pool, &node.id, seconds, &m.engine, None);
                spans.push((l, started, ended));
                sched.finish(l, true);
                if let Some(e) = done.unwritten {
                    stop.get_or_insert(Stop::Io(e));
                    skip_rest(&mut sched, &mut books);
                }
            }
            Err(error) => {
                // An error that arrives once the job was told to stop is a
                // cancellation, whichever of the two the job saw first.
                let cancelled =
                    matches!(error, JobError::Cancelled) || token.as_ref().is_some_and(CancellationToken::is_cancelled);
                let error = match error {
                    _ if cancelled => CANCELLED.to_string(),
                    JobError::Failed(e) | JobError::Transient(e) => e,
                    JobError::Io(e) => {
                        stop.get_or_insert(Stop::Io(e.clone()));
                        e
                    }
                    JobError::Cancelled => unreachable!("cancelled above"),
                };
                let st = if cancelled { Status::Skipped } else { Status::Failed };
                books.status[l] = Some(st);
                books.records[l] = Some(record(
                    node,
                    st,
                    ended - started,
                    node.engine().name,
                    Some(error.clone()),
                ));
                if !cancelled {
                    progress.finished(node.pool, &node.id, ended - started, node.engine().name, Some(&error));
                }
                for s in sched.finish(l, false) {
                    books.status[s] = Some(Status::Skipped);
                }
                if (!opts.keep_going || stop.is_some()) && !cancelled {
                    skip_rest(&mut sched, &mut books);
                }
            }
        }
    }
    progress.clear();
    // Uploads finish before the build returns (a superseded build leaves
    // them running; an interrupted one drops them).
    shared.uploads.close();
    if !interrupted && !superseded {
        shared.uploads.wait().await;
    }
    if let Some(what) = shared.upload_panic.lock().expect("upload panic").take() {
        stop.get_or_insert(Stop::Internal(what));
    }
    if superseded {
        // The jobs left running for the newer build go on without us.
        tasks.detach_all();
    }

    let mut totals = Totals {
        seconds: began.elapsed().as_secs_f64(),
        ..Totals::default()
    };
    let records: Vec<NodeRecord> = books
        .records
        .into_iter()
        .enumerate()
        .map(|(l, r)| {
            let mut r = r.unwrap_or_else(|| {
                let node = &session.graph.nodes[nodes[l]];
                let error = superseded.then(|| "superseded by a newer build".to_string());
                record(
                    node,
                    books.status[l].unwrap_or(Status::Skipped),
                    0.0,
                    node.engine().name,
                    error,
                )
            });
            r.output = books.facts[l].as_ref().map(|f| f.hash.clone());
            r
        })
        .collect();
    for r in &records {
        match r.status {
            Status::Built => totals.built += 1,
            Status::Cached => totals.cached += 1,
            Status::Fetched => totals.fetched += 1,
            Status::Cutoff => totals.cutoff += 1,
            Status::Failed => totals.failed += 1,
            Status::Skipped => totals.skipped += 1,
        }
    }
    Report {
        records,
        totals,
        interrupted,
        superseded,
        cancelled,
        kept,
        spans,
        stopped: stop,
    }
}

/// The error recorded for a job stopped by Ctrl-C or a newer build.
const CANCELLED: &str = "interrupted";

/// The key under which a manifest was recorded.
fn material_key(m: &Manifest) -> String {
    m.material.key()
}

fn record(node: &Node, status: Status, seconds: f64, engine: &str, error: Option<String>) -> NodeRecord {
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
    }
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

/// One try of a node: run `engine` on the host the scheduler picked (`at`)
/// and store the result in the cache. Retries and fallbacks are the build
/// loop's ([`retry`]).
#[allow(clippy::too_many_arguments)]
async fn run_node(
    shared: &Shared,
    node: Node,
    engine: &'static EngineSpec,
    attempt: u32,
    at: Dispatch,
    inputs: Vec<JobInput>,
    key: String,
    material: KeyMaterial,
    cancel: &CancellationToken,
) -> Result<Finished, JobError> {
    if engine.runs == Runs::Inline {
        // No work: the output is the input.
        let input = inputs
            .first()
            .ok_or_else(|| JobError::Failed("passthrough needs an input".into()))?;
        let manifest = Manifest {
            node: node.id.clone(),
            outputs: input.outputs.clone(),
            duration: input.duration,
            engine: engine.name.into(),
            seconds: 0.0,
            material: material.clone(),
        };
        return store(shared, &node, &key, manifest).await;
    }
    let tmp = shared.cache.dir().join("tmp");
    let scratch = shared
        .cache
        .scratch()
        .map_err(|e| JobError::Io(format!("could not create a scratch directory in {tmp}: {e}")))?;
    let scratch_path = Utf8PathBuf::from_path_buf(scratch.path().to_path_buf())
        .map_err(|p| JobError::Io(format!("{} is not a UTF-8 path", p.display())))?;
    let pool = shared.pools[at.pool].clone();
    let host = pool.hosts.get(at.host).map(|h| shared.executors[h.executor].clone());
    let job = Job {
        node: node.clone(),
        engine,
        attempt,
        inputs,
        scratch: scratch_path,
        root: shared.root.clone(),
        pool,
        host,
        simulate: shared.simulate.clone(),
        tools: shared.tools.clone(),
        material: material.clone(),
    };
    let started = Instant::now();
    let produced = exec::run(&job, cancel).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cache = shared.cache.clone();
    let files = produced.files;
    let outputs = joined(
        tokio::task::spawn_blocking(move || {
            let r = files
                .into_iter()
                .map(|(suffix, path)| {
                    let suffix = Suffix::parse(&suffix).map_err(std::io::Error::other)?;
                    cache
                        .ingest(&path)
                        .map(|(hash, size)| OutputFile { suffix, hash, size })
                })
                .collect::<std::io::Result<Vec<_>>>();
            drop(scratch);
            r
        })
        .await,
    )
    .map_err(|e| {
        let objects = shared.cache.dir().join("objects");
        JobError::Io(format!("could not store outputs in {objects}: {e}"))
    })?;
    let manifest = Manifest {
        node: node.id.clone(),
        outputs,
        duration: produced.duration,
        engine: engine.name.into(),
        seconds,
        material,
    };
    store(shared, &node, &key, manifest).await
}

/// Record the manifest and copy the outputs under `out/`.
/// Then, with a writable remote, upload the result in the background.
async fn store(shared: &Shared, node: &Node, key: &str, manifest: Manifest) -> Result<Finished, JobError> {
    let cache = shared.cache.clone();
    let out = shared.out.clone();
    let node = node.clone();
    let k = key.to_string();
    let finished = joined(
        tokio::task::spawn_blocking(move || {
            cache
                .record(&k, &manifest)
                .map_err(|e| JobError::Io(format!("could not record a result in {}: {e}", cache.dir().join("ac"))))?;
            let (materialized, unwritten) = materialize(&cache, &out, &node, &manifest.outputs, &HashMap::new());
            Ok::<_, JobError>(Finished {
                manifest,
                materialized,
                unwritten,
            })
        })
        .await,
    )?;
    if let Some(remote) = shared.remote.clone().filter(|r| r.writable()) {
        let (cache, key, manifest) = (shared.cache.clone(), key.to_string(), finished.manifest.clone());
        let panicked = shared.upload_panic.clone();
        shared.uploads.spawn(async move {
            // A failure is reported once by the remote and turns it off.
            let upload = remote.upload(&cache, &key, &manifest);
            if let Err(payload) = AssertUnwindSafe(upload).catch_unwind().await {
                let what = format!("uploading {key}: {}", panic_text(payload.as_ref()));
                panicked.lock().expect("upload panic").get_or_insert(what);
            }
        });
    }
    Ok(finished)
}

/// Copy outputs to `out/<stem>.<suffix>` unless already there. Returns what
/// was written, and the first failure: it does not fail the node (the cache
/// holds the truth) but stops the build, which exits 3 naming the path.
fn materialize(
    cache: &Cache,
    out: &Utf8Path,
    node: &Node,
    outputs: &[OutputFile],
    known: &HashMap<String, Materialized>,
) -> (Vec<(String, Materialized)>, Option<String>) {
    let mut done = Vec::new();
    for o in outputs {
        let rel = format!("{}.{}", node.out_stem, o.suffix);
        let dest = out.join(&rel);
        if let (Some(k), Ok(meta)) = (known.get(&rel), fs::metadata(&dest))
            && k.hash == o.hash
            && k.size == meta.len()
            && k.mtime_ns == mtime_ns(&meta)
        {
            continue;
        }
        match copy_atomic(&cache.object_path(&o.hash), &dest) {
            Ok(meta) => done.push((
                rel,
                Materialized {
                    hash: o.hash.clone(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                },
            )),
            Err(e) => return (done, Some(format!("could not write {dest}: {e}"))),
        }
    }
    (done, None)
}

/// Copy via a temp file and rename, so `out/` never holds half a file.
fn copy_atomic(src: &Utf8Path, dest: &Utf8Path) -> std::io::Result<fs::Metadata> {
    let dir = dest.parent().expect("out path has a parent");
    fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".studio-").tempfile_in(dir)?;
    fs::copy(src, tmp.path())?;
    let path = tmp.into_temp_path();
    path.persist(dest).map_err(|e| e.error)?;
    fs::metadata(dest)
}
