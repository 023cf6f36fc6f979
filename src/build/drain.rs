//! The drain state: the running state of one build, and the loop that
//! drains it (classify ready nodes, start jobs, handle one message, and
//! finally finish). The module doc of [`super`] tells the whole story.
//!
//! Every node ends through [`DrainState::settle`], which gives it its record
//! and tells the subscribers; nodes the build never reached are settled as
//! skipped in [`DrainState::finish`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::events::{BuildEvent, Bus, PlannedNode, PlannedPool};
use super::materialize::materialize;
use super::retry::{Retry, Then};
use super::run::{Finished, NodeWork, Shared, run_node, store};
use super::state::{Books, Ending, Message, Plan, Running, record};
use super::store::Storer;
use super::tasks::{JobError, caught, test_panic};
use super::{NodeRecord, Options, Report, Status, Stop, Supersede, Totals};
use crate::cache::remote::Remote;
use crate::cache::state::NodeState;
use crate::cache::{Manifest, Metadata};
use crate::exec::JobInput;
use crate::graph::key::{InputFact, KeyMaterial};
use crate::graph::{Node, Pool, Uses};
use crate::sched::{Dispatch, Scheduler};
use crate::session::{Hit, Session};

/// What the loop woke up for.
enum Step {
    Message(Box<Message>),
    /// Node `l`'s job ended (its result is being stored): free its slot.
    Ran(usize),
    /// Ctrl-C.
    Interrupted,
    /// A newer build wants to take over.
    Superseded,
    /// Nodes are open but no task is left to finish them (a bug).
    Lost,
    /// A task ended without a message (a bug: panics are caught).
    Abnormal(String),
}

/// The error recorded for a job stopped by Ctrl-C or a newer build.
const CANCELLED: &str = "interrupted";

/// The running state of one build.
pub(super) struct DrainState<'a> {
    session: &'a mut Session,
    opts: &'a Options,
    plan: Plan<'a>,
    cancel: CancellationToken,
    supersede: Arc<Supersede>,
    bus: Arc<Bus>,
    shared: Arc<Shared>,
    sched: Scheduler,
    /// Each node's tries and each host's health.
    retry: Retry,
    /// Every task the loop waits on; each ends in a message, a panic included.
    tasks: JoinSet<Message>,
    books: Books,
    /// Nodes with a key, not done: queued, being resolved elsewhere, or
    /// running (a failed try is queued again).
    pending: HashMap<usize, (String, KeyMaterial)>,
    running: HashMap<usize, Running>,
    /// Nodes whose job ended (slot free), their results being stored.
    storing: HashSet<usize>,
    /// Stores what jobs made, in batches, off their slots.
    storer: Storer,
    /// Job tasks say here when their process or request ended, before
    /// they store what it made and end in [`Message::Finished`].
    ran_tx: tokio::sync::mpsc::UnboundedSender<usize>,
    ran_rx: tokio::sync::mpsc::UnboundedReceiver<usize>,
    /// Start and end of each job, for benchmarks.
    spans: Vec<(usize, f64, f64)>,
    ending: Ending,
    /// The service groups (pools) the health check found unreachable: a
    /// provisional result whose first engine runs on one of them is kept.
    down: HashSet<usize>,
    /// Records of nodes an earlier pass of this build made (the review
    /// rounds): found in the cache now, they keep the status they had.
    prior: HashMap<String, NodeRecord>,
}

impl<'a> DrainState<'a> {
    pub(super) fn new(
        session: &'a mut Session,
        nodes: &'a [usize],
        opts: &'a Options,
        cancel: CancellationToken,
        unreachable: &HashMap<usize, String>,
        prior: HashMap<String, NodeRecord>,
    ) -> DrainState<'a> {
        let began = opts.began.unwrap_or_else(Instant::now);
        let plan = Plan::new(session, nodes);
        let scale = session.project.profile.simulate.as_ref().map_or(1.0, |s| s.time_scale);
        let mut retry = Retry::new(&session.graph, &session.project.executors, nodes, scale);
        let pools: Vec<usize> = (nodes.iter().enumerate())
            .map(|(l, &g)| retry.skip_unreachable(l, &session.graph.nodes[g], unreachable))
            .collect();
        let hosts: Vec<Vec<usize>> = session.graph.pools.iter().map(Pool::host_slots).collect();
        let sched = Scheduler::new(&plan.inputs, pools, &hosts, &plan.cost);
        let shared = Arc::new(Shared {
            cache: session.cache.clone(),
            root: session.layout.root.clone(),
            out: session.layout.out.clone(),
            simulate: session.project.profile.simulate.clone(),
            pools: session.graph.pools.clone(),
            services: crate::exec::services::Services::new(&session.project.executors),
            tools: session.tools.clone(),
            began,
            remote: opts.remote.clone(),
            uploads: TaskTracker::new(),
            upload_panic: Arc::default(),
        });
        let n = nodes.len();
        let storer = Storer::start(session.cache.clone(), session.layout.out.clone());
        let (ran_tx, ran_rx) = tokio::sync::mpsc::unbounded_channel();
        DrainState {
            session,
            opts,
            plan,
            cancel,
            supersede: opts.supersede.clone().unwrap_or_default(),
            bus: Bus::new(&opts.events),
            shared,
            sched,
            retry,
            tasks: JoinSet::new(),
            books: Books {
                facts: vec![None; n],
                outputs: vec![Vec::new(); n],
                status: vec![None; n],
                records: vec![None; n],
            },
            pending: HashMap::new(),
            running: HashMap::new(),
            storing: HashSet::new(),
            storer,
            ran_tx,
            ran_rx,
            spans: Vec::new(),
            ending: Ending::default(),
            down: unreachable.keys().copied().collect(),
            prior,
        }
    }

    /// Build everything, then report.
    pub(super) async fn drain(mut self) -> Report {
        self.announce();
        loop {
            self.classify_ready();
            self.start_jobs();
            if self.sched.is_done() {
                break;
            }
            match self.next_step().await {
                Step::Message(msg) => self.handle(*msg),
                Step::Ran(l) => self.ran(l),
                Step::Interrupted => self.interrupt(),
                Step::Superseded => {
                    self.supersede();
                    break;
                }
                Step::Lost => {
                    // No reason to wait forever.
                    self.stop(Stop::Internal("the build lost track of its running jobs".into()));
                    self.skip_rest();
                    break;
                }
                Step::Abnormal(e) => {
                    self.stop(Stop::Internal(format!("a build task ended abnormally: {e}")));
                    self.halt();
                }
            }
        }
        self.finish().await
    }

    /// `build_started`, with the plan.
    fn announce(&self) {
        self.bus.emit(|| started(&self.session.graph, self.plan.nodes));
    }

    // ----- Classifying ready nodes -----

    /// Classify every node whose inputs are done, until none is left.
    fn classify_ready(&mut self) {
        loop {
            let ready = self.sched.take_ready();
            if ready.is_empty() {
                break;
            }
            for l in ready {
                self.classify(l);
            }
            // Stopping waits for the batch: its nodes were handed out already.
            if self.ending.stop.is_some() {
                self.skip_rest();
            }
        }
    }

    /// A ready node: done from the cache, looked up elsewhere, or queued.
    fn classify(&mut self, l: usize) {
        let g = self.plan.nodes[l];
        let facts = |i: usize| self.books.facts[self.plan.local[&i]].as_ref();
        let key = KeyMaterial::key_of(&self.session.graph, g, self.plan.simulated, facts)
            .expect("ready nodes have all inputs");
        let intact = self.plan.intact[l];
        // A fallback's stand-in is a hit only while the key's first engine
        // is still out of reach; otherwise that engine makes the node now.
        let primary_down = self.down.contains(&self.session.graph.nodes[g].pools[0]);
        let hit = (self.session.lookup(g, &key, intact)).filter(|h| h.provisional.is_none() || primary_down);
        if let Some(hit) = hit {
            let rebuilt_input = (self.plan.inputs[l].iter()).any(|&i| self.books.status[i] == Some(Status::Built));
            let status = if hit.same_as_last && rebuilt_input {
                Status::Cutoff
            } else {
                Status::Cached
            };
            if let Some(e) = self.take_hit(l, &key, hit, intact, status, Metadata::new()) {
                self.stop(Stop::Io(e));
            }
            self.sched.finish(l, true);
            return;
        }
        let facts = |i: usize| self.books.facts[self.plan.local[&i]].as_ref();
        let material =
            KeyMaterial::of(&self.session.graph, g, self.plan.simulated, facts).expect("ready nodes have all inputs");
        // Not here: maybe a job of an earlier build is making it, or the remote has it.
        let waiter = self.opts.inflight.waiter(&key);
        let remote = self.shared.remote.clone().filter(|r| r.readable());
        self.pending.insert(l, (key.clone(), material));
        if waiter.is_some() || remote.is_some() {
            self.resolve_elsewhere(l, key, waiter, remote);
        } else {
            self.queue(l);
        }
    }

    /// Look a local miss up off the loop: wait for a job in flight that
    /// makes the same key, then ask the remote. Ends in [`Message::Resolved`].
    fn resolve_elsewhere(
        &mut self,
        l: usize,
        key: String,
        waiter: Option<watch::Receiver<bool>>,
        remote: Option<Arc<Remote>>,
    ) {
        let cache = self.shared.cache.clone();
        let id = self.node(l).id.clone();
        self.tasks.spawn(caught(l, async move {
            test_panic("resolve", &id);
            if let Some(mut w) = waiter {
                let _ = w.wait_for(|done| *done).await;
                if let Some(m) = cache.lookup(&key) {
                    return Message::Resolved {
                        node: l,
                        manifest: Some(m),
                        remote: false,
                    };
                }
            }
            let manifest = match remote {
                Some(r) => r.fetch(&cache, &key).await,
                None => None,
            };
            Message::Resolved {
                node: l,
                manifest,
                remote: true,
            }
        }));
    }

    /// A node that has to run waits for a slot.
    fn queue(&mut self, l: usize) {
        let node = self.node(l);
        let (id, pool, expected_seconds) = (&node.id, node.pool, self.plan.cost[l]);
        self.bus.emit(|| BuildEvent::NodeQueued {
            node: l,
            id: id.clone(),
            pool,
            expected_seconds,
        });
        self.fall_back_if_group_down(l);
        self.sched.enqueue(l);
    }

    /// Ready `l` would queue in a pool every host of which is set aside:
    /// with a later engine, it goes to that engine's pool now.
    fn fall_back_if_group_down(&mut self, l: usize) {
        let pool = self.sched.pool_of(l);
        if !self.retry.group_down(pool) {
            return;
        }
        let graph = &self.session.graph;
        let error = format!("every host of group `{}` is set aside", graph.pools[pool].name);
        let node = &graph.nodes[self.plan.nodes[l]];
        if let Some(to) = self.retry.fall_back_from_down(l, node, &error) {
            self.sched.set_pool(l, to);
            self.rerouted(l, to, error);
        }
    }

    /// Every host of `pool` is set aside (the last one just failed with
    /// `error`): its queued jobs that have a later engine go to it now.
    fn reroute_from(&mut self, pool: usize, error: &str) {
        let graph = &self.session.graph;
        let error = format!("every host of group `{}` is set aside: {error}", graph.pools[pool].name);
        let (plan, retry) = (&self.plan, &mut self.retry);
        let moved = self.sched.reroute(pool, |l| {
            retry.fall_back_from_down(l, &graph.nodes[plan.nodes[l]], &error)
        });
        for (l, to) in moved {
            self.rerouted(l, to, error.clone());
        }
    }

    /// `node_retrying` for a job sent to its fallback engine's pool `to`
    /// before it ran.
    fn rerouted(&self, l: usize, to: usize, error: String) {
        let node = self.node(l);
        let engine = node.engines[self.retry.current(l).engine].name;
        self.bus.emit(|| BuildEvent::NodeRetrying {
            node: l,
            id: node.id.clone(),
            pool: to,
            engine: engine.to_string(),
            after_seconds: 0.0,
            error,
        });
    }

    /// Node `l` is done from a cache under `key`: materialize its outputs,
    /// update the state, settle it. Returns what could not be written
    /// under `out/`.
    fn take_hit(
        &mut self,
        l: usize,
        key: &str,
        hit: Hit,
        intact: bool,
        status: Status,
        metadata: Metadata,
    ) -> Option<String> {
        let node = &self.session.graph.nodes[self.plan.nodes[l]];
        let state = &mut self.session.state;
        let mut unwritten = None;
        if !(hit.same_as_last && intact) {
            let (materialized, error) = materialize(&self.shared.cache, &self.shared.out, node, &hit.outputs, |rel| {
                state.copy(rel)
            });
            unwritten = error;
            for (rel, m) in materialized {
                state.insert_copy(rel, m);
            }
        }
        if !hit.same_as_last {
            let s = NodeState {
                key: key.to_string(),
                content: hit.fact.hash.clone(),
                duration: hit.fact.duration,
                outputs: hit.outputs.clone(),
                provisional: hit.provisional.clone(),
            };
            state.insert_node(node.id.clone(), s);
        }
        let mut record = record(node, status, 0.0, node.engine().name, hit.provisional.clone());
        record.provisional = hit.provisional.is_some();
        record.metadata = metadata;
        // Made by an earlier pass of this build (the same output): its
        // record, already told to the subscribers by that pass.
        let earlier = (self.prior.remove(&node.id)).filter(|e| e.output.as_deref() == Some(hit.fact.hash.as_str()));
        self.books.facts[l] = Some(hit.fact);
        self.books.outputs[l] = hit.outputs;
        match earlier {
            Some(earlier) => {
                self.books.status[l] = Some(earlier.status);
                self.books.records[l] = Some(earlier);
            }
            None => self.settle(l, record),
        }
        unwritten
    }

    // ----- Starting jobs -----

    /// Start what the pools' hosts have room for.
    fn start_jobs(&mut self) {
        while let Some(at) = self.sched.next_job() {
            self.start_job(at);
        }
    }

    /// Start a try of node `at.node` on the host the scheduler picked: a
    /// task that runs its current engine and ends in [`Message::Finished`].
    fn start_job(&mut self, at: Dispatch) {
        let l = at.node;
        let node = self.node(l).clone();
        // Kept until the node is done: a failed try is queued again.
        let (key, material) = self.pending.get(&l).cloned().expect("queued nodes have a key");
        let inputs = self.job_inputs(&node);
        let now = self.retry.current(l);
        let engine = node.engines[now.engine];
        let provisional = (self.retry.fallback(l))
            .filter(|f| f.provisional)
            .map(|f| crate::cache::provisional_reason(&fell_back(engine.name, f.primary)));
        self.bus.emit(|| BuildEvent::NodeStarted {
            node: l,
            id: node.id.clone(),
            pool: at.pool,
            host: self.host_id(at),
            engine: engine.name.to_string(),
            attempt: now.attempt,
        });
        let token = self.cancel.child_token();
        let running = Running {
            key: key.clone(),
            token: token.clone(),
        };
        self.running.insert(l, running);
        let guard = self.opts.inflight.start(&key);
        let progress = self.bus.job_progress(l, &node.id, node.pool);
        let work = NodeWork {
            node,
            engine,
            attempt: now.attempt,
            at,
            inputs,
            material,
            progress,
            provisional,
        };
        let (shared, storer, ran) = (self.shared.clone(), self.storer.clone(), self.ran_tx.clone());
        self.tasks.spawn(caught(l, async move {
            let started = shared.began.elapsed().as_secs_f64();
            test_panic("job", &work.node.id);
            let result = run_node(&shared, &work, &token).await;
            let ended = shared.began.elapsed().as_secs_f64();
            // The process or request ended: the slot is free while what it
            // made is stored. The task stores it even when the build is
            // gone (a superseded build leaves it to finish for the next).
            let result = match result {
                Ok(made) => {
                    let _ = ran.send(l);
                    match store(&shared, &storer, work.node, &key, made).await {
                        Ok(result) => result,
                        Err(what) => return Message::Panicked { node: l, what },
                    }
                }
                Err(e) => Err(e),
            };
            // Stored (or failed): a later build waiting on the key looks again.
            drop(guard);
            Message::Finished {
                node: l,
                at,
                result,
                started,
                ended,
            }
        }));
    }

    /// The id of the executor a try on `at` runs on; `None` for work done here.
    fn host_id(&self, at: Dispatch) -> Option<String> {
        self.shared.executor(at).map(|e| e.id.clone())
    }

    /// A job's inputs: each input node's outputs in the cache (only the one
    /// file a node keyed on, for an input it reads one file of).
    fn job_inputs(&self, node: &Node) -> Vec<JobInput> {
        (node.inputs.iter())
            .map(|i| {
                let li = self.plan.local[&i.node];
                let fact = self.books.facts[li].as_ref().expect("inputs are done");
                let all = &self.books.outputs[li];
                // An input without the file is keyed on all it made (`InputFact::file`).
                let outputs: Vec<_> = if all.iter().any(|o| i.uses.reads_file(&o.suffix)) {
                    all.iter().filter(|o| i.uses.reads_file(&o.suffix)).cloned().collect()
                } else {
                    all.clone()
                };
                JobInput {
                    role: i.role.clone(),
                    files: (outputs.iter())
                        .map(|o| (o.suffix.to_string(), self.shared.cache.object_path(&o.hash)))
                        .collect(),
                    outputs,
                    duration: fact.duration,
                    hash: match i.uses {
                        Uses::File(suffix) => fact.file(suffix).clone(),
                        _ => fact.hash.clone(),
                    },
                }
            })
            .collect()
    }

    // ----- Waiting and handling messages -----

    /// Wait for the next thing to handle. Stopping comes first: a job's
    /// message that arrives together with Ctrl-C is read after the build
    /// knows it is interrupted.
    async fn next_step(&mut self) -> Step {
        let joined = tokio::select! {
            biased;
            () = self.cancel.cancelled(), if !self.ending.interrupted => return Step::Interrupted,
            () = self.supersede.notify.notified() => return Step::Superseded,
            Some(l) = self.ran_rx.recv() => return Step::Ran(l),
            joined = self.tasks.join_next() => joined,
        };
        match joined {
            None => Step::Lost,
            Some(Ok(msg)) => Step::Message(Box::new(msg)),
            // Unreachable (panics are caught in the task), but never a hang.
            Some(Err(e)) => Step::Abnormal(e.to_string()),
        }
    }

    fn handle(&mut self, msg: Message) {
        match msg {
            Message::Finished {
                node,
                at,
                result,
                started,
                ended,
            } => self.try_ended(node, at, result, (started, ended)),
            Message::HostBack { pool, host } => self.host_back(pool, host),
            Message::Retry { node } => {
                // Unless the build stopped meanwhile (`node_retrying` said
                // it would be queued again).
                if self.books.status[node].is_none() {
                    self.sched.enqueue(node);
                }
            }
            Message::Resolved { node, manifest, remote } => self.resolved(node, manifest, remote),
            Message::Panicked { node, what } => self.panicked(node, what),
        }
    }

    /// Node `l`'s job ended and what it made is being stored: its slot is
    /// free for the next job. (A stale word, from a task whose message was
    /// handled first, is ignored.)
    fn ran(&mut self, l: usize) {
        if self.running.contains_key(&l) && self.storing.insert(l) {
            self.sched.ran(l);
        }
    }

    /// A try of node `l` on `at` ended, between `span.0` and `span.1`, and
    /// what it made is stored: the node is built, tried again, or failed.
    fn try_ended(&mut self, l: usize, at: Dispatch, result: Result<Finished, JobError>, span: (f64, f64)) {
        let running = self.running.remove(&l);
        self.storing.remove(&l);
        let token = running.as_ref().map(|r| &r.token);
        // An error that arrives once the job was told to stop is a
        // cancellation, whichever of the two the job saw first.
        let told_to_stop = token.is_some_and(CancellationToken::is_cancelled);
        let result = match result {
            Err(e @ (JobError::Transient(_) | JobError::Failed(_))) if !self.sched.stopped() && !told_to_stop => {
                match self.try_again(at, e) {
                    None => return,
                    Some(errors) => Err(JobError::Failed(errors)),
                }
            }
            other => other,
        };
        self.pending.remove(&l);
        match result {
            Ok(done) => {
                self.retry.succeeded(&self.session.graph, at);
                // The key the job ran under: what its manifest hashes to.
                let key = running.map_or_else(|| done.manifest.material.key(), |r| r.key);
                self.built(l, at, key, done, span);
            }
            Err(error) => self.failed(l, at, error, told_to_stop, span),
        }
    }

    /// A failed try (not a cancellation) of `at.node`: a transient failure
    /// sets its host aside; the node goes back to the scheduler (now, for
    /// another host or a fallback engine; after a backoff, for a local
    /// retry) or, with no engine left, fails: then its errors are returned.
    fn try_again(&mut self, at: Dispatch, error: JobError) -> Option<String> {
        let (transient, error) = match error {
            JobError::Transient(e) => (true, e),
            JobError::Failed(e) => (false, e),
            JobError::Cancelled | JobError::Io(_) => unreachable!("only failures are tried again"),
        };
        if transient {
            self.set_aside(at, &error);
        }
        // No host of the group is left: its queued jobs fall back too.
        let reroute = (transient && self.retry.group_down(at.pool)).then(|| error.clone());
        let l = at.node;
        let node = &self.session.graph.nodes[self.plan.nodes[l]];
        let (pool, wait, engine) = match self.retry.next(&self.session.graph, at, node, transient, &error) {
            Then::Requeue { pool, engine } => {
                self.sched.requeue(l, pool);
                (pool, 0.0, engine)
            }
            Then::After { wait, engine } => {
                self.sched.release(l);
                self.tasks.spawn(async move {
                    tokio::time::sleep(wait).await;
                    Message::Retry { node: l }
                });
                (at.pool, wait.as_secs_f64(), engine)
            }
            Then::GiveUp(errors) => {
                if let Some(error) = reroute {
                    self.reroute_from(at.pool, &error);
                }
                return Some(errors);
            }
        };
        self.bus.emit(|| BuildEvent::NodeRetrying {
            node: l,
            id: node.id.clone(),
            pool,
            engine: engine.to_string(),
            after_seconds: wait,
            error,
        });
        if let Some(error) = reroute {
            self.reroute_from(at.pool, &error);
        }
        None
    }

    /// A try on `at` failed transiently: set its host aside (if it ran on
    /// one not set aside yet) until a timer brings it back.
    fn set_aside(&mut self, at: Dispatch, error: &str) {
        let Some(wait) = self.retry.set_aside(&self.session.graph, at, error) else {
            return;
        };
        self.sched.set_down(at.pool, at.host, true);
        let (pool, host) = (at.pool, at.host);
        self.bus.emit(|| BuildEvent::HostDown {
            pool,
            host: self.host_id(at).unwrap_or_default(),
            seconds: wait.as_secs_f64(),
            error: error.to_string(),
        });
        self.tasks.spawn(async move {
            tokio::time::sleep(wait).await;
            Message::HostBack { pool, host }
        });
    }

    /// A host's cool-down is over: it takes jobs again.
    fn host_back(&mut self, pool: usize, host: usize) {
        self.retry.host_back(pool, host);
        self.sched.set_down(pool, host, false);
        let at = Dispatch { node: 0, pool, host };
        self.bus.emit(|| BuildEvent::HostUp {
            pool,
            host: self.host_id(at).unwrap_or_default(),
        });
    }

    /// A job made its node: learn its duration, update the state, settle it.
    fn built(&mut self, l: usize, at: Dispatch, key: String, done: Finished, (started, ended): (f64, f64)) {
        let m = done.manifest;
        let seconds = ended - started;
        self.learn(l, &m, seconds);
        let state = &mut self.session.state;
        for (rel, m) in done.materialized {
            state.insert_copy(rel, m);
        }
        let fact = InputFact::new(
            m.content_hash(),
            m.duration,
            m.outputs.iter().map(|o| (o.suffix.as_str(), o.hash.as_str())),
        );
        let node = &self.session.graph.nodes[self.plan.nodes[l]];
        let s = NodeState {
            key,
            content: fact.hash.clone(),
            duration: m.duration,
            outputs: m.outputs.clone(),
            provisional: m.provisional.clone(),
        };
        state.insert_node(node.id.clone(), s);
        let fallback = match (&m.provisional, self.retry.fallback(l)) {
            (Some(why), _) => Some(why.clone()),
            (None, Some(f)) => Some(fell_back(&m.engine, f.primary)),
            (None, None) => None,
        };
        let mut record = record(node, Status::Built, seconds, &m.engine, fallback);
        record.provisional = m.provisional.is_some();
        record.metadata = m.metadata;
        record.host = self.host_id(at);
        (record.started, record.ended) = (Some(started), Some(ended));
        self.books.facts[l] = Some(fact);
        self.books.outputs[l] = m.outputs;
        self.settle(l, record);
        self.spans.push((l, started, ended));
        self.sched.finish(l, true);
        if let Some(e) = done.unwritten {
            self.stop(Stop::Io(e));
            self.skip_rest();
        }
    }

    /// Teach the duration model what the job took.
    fn learn(&mut self, l: usize, m: &Manifest, seconds: f64) {
        let media = m.duration.unwrap_or(self.node(l).media_seconds);
        let engine_key = if self.plan.simulated {
            format!("sim:{}", m.engine)
        } else {
            m.engine.clone()
        };
        if let Some(spec) = crate::stages::registry::find(&m.engine) {
            (self.session.durations).record(&engine_key, spec.expected_seconds(media), seconds);
        }
    }

    /// The node's last try failed, or was cancelled (`told_to_stop`: its
    /// job was cancelled, whatever error it ended with).
    fn failed(&mut self, l: usize, at: Dispatch, error: JobError, told_to_stop: bool, (started, ended): (f64, f64)) {
        let cancelled = matches!(error, JobError::Cancelled) || told_to_stop;
        let error = match error {
            _ if cancelled => CANCELLED.to_string(),
            JobError::Failed(e) | JobError::Transient(e) => e,
            JobError::Io(e) => {
                self.stop(Stop::Io(e.clone()));
                e
            }
            JobError::Cancelled => unreachable!("cancelled above"),
        };
        let status = if cancelled { Status::Skipped } else { Status::Failed };
        let node = self.node(l);
        let mut record = record(node, status, ended - started, node.engine().name, Some(error));
        record.host = self.host_id(at);
        (record.started, record.ended) = (Some(started), Some(ended));
        self.settle(l, record);
        self.skip_dependents(l);
        if (!self.opts.keep_going || self.ending.stop.is_some()) && !cancelled {
            self.skip_rest();
        }
    }

    /// A local miss was looked up elsewhere: done if found, else queued.
    fn resolved(&mut self, l: usize, manifest: Option<Manifest>, remote: bool) {
        if self.books.status[l].is_some() {
            return; // abandoned meanwhile
        }
        let Some(m) = manifest else {
            self.queue(l);
            return;
        };
        let (key, _) = self.pending.remove(&l).expect("resolving nodes have a key");
        let id = &self.node(l).id;
        // Not the last build's when that was a fallback's stand-in under the
        // same key: the state takes the new entry.
        let same_as_last = (self.session.state.node(id))
            .is_some_and(|s| s.key == key && s.provisional.is_none() && s.content == m.content_hash());
        let metadata = m.metadata.clone();
        let hit = Hit::from_manifest(m, same_as_last);
        let status = if remote { Status::Fetched } else { Status::Cached };
        let unwritten = self.take_hit(l, &key, hit, false, status, metadata);
        self.sched.finish(l, true);
        if let Some(e) = unwritten {
            self.stop(Stop::Io(e));
            self.skip_rest();
        }
    }

    /// A task panicked: a bug. The node fails and the build stops.
    fn panicked(&mut self, l: usize, what: String) {
        let node = self.node(l);
        let error = format!("internal error: {what} (please report)");
        let stop = Stop::Internal(format!("{}: {what}", node.id));
        let record = record(node, Status::Failed, 0.0, node.engine().name, Some(error));
        self.running.remove(&l);
        self.storing.remove(&l);
        // Still open unless the build stopped meanwhile.
        if self.books.status[l].is_none() {
            self.settle(l, record);
            self.skip_dependents(l);
        }
        self.stop(stop);
        self.halt();
    }

    // ----- Stopping -----

    /// Ctrl-C: start nothing more; running jobs stop through their tokens.
    fn interrupt(&mut self) {
        self.ending.interrupted = true;
        self.skip_rest();
    }

    /// A newer build takes over: cancel the running jobs whose keys it does
    /// not want, leave the others running for it.
    fn supersede(&mut self) {
        let wanted = self.supersede.take();
        for (&l, run) in &self.running {
            let id = self.session.graph.nodes[self.plan.nodes[l]].id.clone();
            // A result being stored is finished work: kept, whatever its key.
            if wanted.contains(&run.key) || self.storing.contains(&l) {
                self.ending.kept.push(id);
            } else {
                run.token.cancel();
                self.ending.cancelled.push(id);
            }
        }
        self.ending.superseded = true;
    }

    /// Keep the first reason the build stopped.
    fn stop(&mut self, stop: Stop) {
        self.ending.stop.get_or_insert(stop);
    }

    /// Start nothing more: every node not running yet is skipped.
    fn skip_rest(&mut self) {
        for s in self.sched.abandon() {
            self.books.status[s] = Some(Status::Skipped);
        }
    }

    /// Stop after an internal error: start nothing more and stop the
    /// running jobs (what finished is in the cache).
    fn halt(&mut self) {
        self.skip_rest();
        for run in self.running.values() {
            run.token.cancel();
        }
    }

    /// Node `l` failed: what depends on it is skipped.
    fn skip_dependents(&mut self, l: usize) {
        for s in self.sched.finish(l, false) {
            self.books.status[s] = Some(Status::Skipped);
        }
    }

    // ----- Settling and finishing -----

    /// Give node `l` its record and tell the subscribers: the one way a
    /// node's outcome is set.
    fn settle(&mut self, l: usize, mut record: NodeRecord) {
        record.output = self.books.facts[l].as_ref().map(|f| f.hash.clone());
        let status = record.status;
        self.books.status[l] = Some(status);
        let pool = self.node(l).pool;
        let event = match status {
            Status::Built | Status::Failed => BuildEvent::NodeFinished { node: l, pool, record },
            Status::Cached | Status::Cutoff => BuildEvent::NodeCached { node: l, record },
            Status::Fetched => BuildEvent::NodeFetched { node: l, record },
            Status::Skipped => BuildEvent::NodeSkipped { node: l, record },
        };
        // Lent to the subscribers, then kept: no copy per node.
        let record = self
            .bus
            .lend(event)
            .into_record()
            .expect("a settling event has a record");
        self.books.records[l] = Some(record);
    }

    /// Wait for the uploads, settle what was never reached, count, report.
    async fn finish(mut self) -> Report {
        // Uploads finish before the build returns (a superseded build
        // leaves them running; an interrupted one drops them).
        self.shared.uploads.close();
        if !self.ending.interrupted && !self.ending.superseded {
            self.shared.uploads.wait().await;
        }
        let upload_panic = self.shared.upload_panic.lock().expect("upload panic").take();
        if let Some(what) = upload_panic {
            self.stop(Stop::Internal(what));
        }
        if self.ending.superseded {
            // The jobs left running for the newer build go on without us.
            self.tasks.detach_all();
        }
        for l in 0..self.plan.nodes.len() {
            if self.books.records[l].is_none() {
                let node = self.node(l);
                let error = self
                    .ending
                    .superseded
                    .then(|| "superseded by a newer build".to_string());
                let status = self.books.status[l].unwrap_or(Status::Skipped);
                let record = record(node, status, 0.0, node.engine().name, error);
                self.settle(l, record);
            }
        }
        let records: Vec<NodeRecord> = (self.books.records.into_iter())
            .map(|r| r.expect("every node is settled"))
            .collect();
        let totals = Totals::count(&records, self.shared.began.elapsed().as_secs_f64());
        let Ending {
            interrupted,
            superseded,
            stop,
            cancelled,
            kept,
        } = self.ending;
        self.bus.close_with(|| BuildEvent::BuildFinished {
            totals: totals.clone(),
            interrupted,
            superseded,
            stopped: stop.as_ref().map(|s| s.text().to_string()),
        });
        Report {
            records,
            totals,
            interrupted,
            superseded,
            cancelled,
            kept,
            spans: self.spans,
            stopped: stop,
        }
    }

    fn node(&self, l: usize) -> &Node {
        &self.session.graph.nodes[self.plan.nodes[l]]
    }
}

/// What a fallback's record says: the engine that made the node and the
/// first engine's error (`primary`, which names that engine).
fn fell_back(engine: &str, primary: &str) -> String {
    format!("fell back to {engine} after: {primary}")
}

/// The `build_started` event of a build of `nodes`.
pub(super) fn started(graph: &crate::graph::Graph, nodes: &[usize]) -> BuildEvent {
    BuildEvent::BuildStarted {
        nodes: (nodes.iter())
            .map(|&g| {
                let n = &graph.nodes[g];
                PlannedNode {
                    id: n.id.clone(),
                    kind: n.kind,
                    engine: n.engine().name,
                    pool: n.pool,
                }
            })
            .collect(),
        pools: (graph.pools.iter())
            .map(|p| PlannedPool {
                name: p.name.clone(),
                slots: p.slots,
                hosts: p.hosts.iter().map(|h| h.id.clone()).collect(),
            })
            .collect(),
    }
}
