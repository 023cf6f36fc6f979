//! One try of one node: one engine of its chain, on the host the scheduler
//! picked, with its metadata (engine, executor, host) — up to the end of
//! its process or request, which frees its slot ([`run_node`]); then
//! [`store`] hands what it made to the build's storer ([`super::store`]),
//! which moves the outputs into the cache, records the manifest and copies
//! the outputs under `out/`, and uploads the result in the background.
//! Retries and fallbacks are [`super::retry`]'s.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use camino::Utf8PathBuf;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store::{Outputs, Ran, Storer};
use super::tasks::{JobError, panic_text};
use crate::cache::remote::Remote;
use crate::cache::state::Materialized;
use crate::cache::{Cache, Manifest, Metadata, check_metadata};
use crate::engines::{EngineSpec, Placement};
use crate::exec::{ExecError, Job, JobInput, JobProgress, Produced};
use crate::graph::key::KeyMaterial;
use crate::graph::{Node, Pool};
use crate::project::model::{Executor, Simulate};
use crate::sched::Dispatch;
use crate::stages::registry::{self, Run};

/// What every job task of a build shares.
pub(super) struct Shared {
    pub cache: Cache,
    pub root: Utf8PathBuf,
    pub out: Utf8PathBuf,
    pub simulate: Option<Simulate>,
    pub pools: Vec<Pool>,
    /// studio.yaml's executors (the hosts of the pools) and their clients,
    /// each built once for the build.
    pub services: crate::exec::services::Services,
    pub tools: Arc<crate::exec::tools::Toolchain>,
    pub began: Instant,
    pub remote: Option<Arc<Remote>>,
    /// Uploads to the remote, awaited before the build returns.
    pub uploads: TaskTracker,
    /// The first upload that panicked.
    pub upload_panic: Arc<Mutex<Option<String>>>,
}

impl Shared {
    /// The executor a try on `at` runs on; `None` for work done here.
    pub fn executor(&self, at: Dispatch) -> Option<&Executor> {
        let host = self.pools[at.pool].hosts.get(at.host)?;
        self.services.executor(host.executor)
    }

    /// The client of the host a try on `at` runs on; `Ok(None)` for work
    /// done here or a host without a URL.
    pub fn service(&self, at: Dispatch) -> Result<Option<Arc<crate::exec::http::Service>>, String> {
        let Some(host) = self.pools[at.pool].hosts.get(at.host) else {
            return Ok(None);
        };
        match self.services.get(host.executor) {
            None => Ok(None),
            Some(Ok(client)) => Ok(Some(client)),
            Some(Err(e)) => Err(e.to_string()),
        }
    }
}

/// One try of a node: what the driver hands a job task.
pub(super) struct NodeWork {
    pub node: Node,
    /// The engine of the chain this try runs, and its attempt (0 first).
    pub engine: &'static EngineSpec,
    pub attempt: u32,
    /// The pool and host the scheduler picked.
    pub at: Dispatch,
    pub inputs: Vec<JobInput>,
    pub material: KeyMaterial,
    pub progress: JobProgress,
    /// This try is a fallback's standing in for an engine that may come
    /// back: why, for the manifest ([`Manifest::provisional`]).
    pub provisional: Option<String>,
}

/// A node made and stored.
pub(super) struct Finished {
    pub manifest: Manifest,
    pub materialized: Vec<(String, Materialized)>,
    /// An output could not be copied under `out/`.
    pub unwritten: Option<String>,
}

/// Run one try of the node: its engine on the host the scheduler picked
/// ([`NodeWork::at`]), up to the end of its process or request. Whether a
/// failed try is tried again, on which host or with which engine, is the
/// drain state's ([`super::retry`]); storing what it made is [`store`]'s.
pub(super) async fn run_node(shared: &Shared, work: &NodeWork, cancel: &CancellationToken) -> Result<Ran, JobError> {
    let inline = registry::engine_of(work.engine).is_some_and(|e| matches!(e.run, Run::Inline));
    if inline {
        passthrough(shared, work)
    } else {
        run_engine(shared, work, cancel).await
    }
}

/// An inline engine does no work: the output is the input.
fn passthrough(shared: &Shared, work: &NodeWork) -> Result<Ran, JobError> {
    let input = work
        .inputs
        .first()
        .ok_or_else(|| JobError::Failed("passthrough needs an input".into()))?;
    Ok(Ran {
        manifest: Manifest {
            node: work.node.id.clone(),
            outputs: Vec::new(),
            duration: input.duration,
            engine: work.engine.name.into(),
            seconds: 0.0,
            material: work.material.clone(),
            metadata: driver_metadata(shared, work),
            provisional: work.provisional.clone(),
        },
        outputs: Outputs::Stored(input.outputs.clone()),
        scratch: None,
    })
}

/// Run the engine once, on its host; what it made stays in its scratch
/// directory for the storer.
async fn run_engine(shared: &Shared, work: &NodeWork, cancel: &CancellationToken) -> Result<Ran, JobError> {
    let tmp = shared.cache.dir().join("tmp");
    let scratch = shared
        .cache
        .scratch()
        .map_err(|e| JobError::Io(format!("could not create a scratch directory in {tmp}: {e}")))?;
    let scratch_path = Utf8PathBuf::from_path_buf(scratch.path().to_path_buf())
        .map_err(|p| JobError::Io(format!("{} is not a UTF-8 path", p.display())))?;
    let pool = shared.pools[work.at.pool].clone();
    let host = shared.executor(work.at).cloned();
    let service = shared.service(work.at).map_err(JobError::Failed)?;
    let job = Job {
        node: work.node.clone(),
        engine: work.engine,
        attempt: work.attempt,
        inputs: work.inputs.clone(),
        scratch: scratch_path,
        root: shared.root.clone(),
        pool,
        host,
        service,
        simulate: shared.simulate.clone(),
        tools: shared.tools.clone(),
        material: work.material.clone(),
        progress: work.progress.clone(),
        provisional: work.provisional.clone(),
    };
    let started = Instant::now();
    let produced = execute(&job, cancel).await?;
    let seconds = started.elapsed().as_secs_f64();
    ran(shared, work, produced, scratch, seconds)
}

/// Run `job` with its engine's run function from the registry, or with the
/// sim executor when the profile simulates and the engine is not run for
/// real there.
async fn execute(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let Some(engine) = registry::engine_of(job.engine) else {
        return Err(ExecError::Permanent(format!(
            "engine `{}` is not in this build's registry",
            job.engine.name
        )));
    };
    match (&job.simulate, engine.run) {
        (Some(sim), _) if !job.engine.real_in_sim => crate::exec::sim::run(job, sim, cancel).await,
        (_, Run::Local(run)) => run(job, cancel).await,
        (_, Run::Inline | Run::Missing) => Err(registry::no_executor(job.engine, job.node.kind)),
    }
}

/// Describe what a job made; its files stay where it left them until the
/// storer moves them. Metadata the engine reported that studio would not
/// keep fails the engine.
fn ran(
    shared: &Shared,
    work: &NodeWork,
    produced: Produced,
    scratch: tempfile::TempDir,
    seconds: f64,
) -> Result<Ran, JobError> {
    let mut metadata = produced.metadata;
    metadata.extend(driver_metadata(shared, work));
    // The engine's fault, not the host's: the next engine may run.
    check_metadata(&metadata).map_err(|e| JobError::Failed(format!("studio keeps no such metadata: {e}")))?;
    Ok(Ran {
        manifest: Manifest {
            node: work.node.id.clone(),
            outputs: Vec::new(),
            duration: produced.duration,
            engine: work.engine.name.into(),
            seconds,
            material: work.material.clone(),
            metadata,
            provisional: work.provisional.clone(),
        },
        outputs: Outputs::Files(produced.files),
        scratch: Some(scratch),
    })
}

/// What the driver knows about a try: the engine that ran, the executor
/// it ran on (the host of its group the scheduler picked; `cpu` or
/// `inline` for work done here), and the service's `host:port` when it
/// really called one.
fn driver_metadata(shared: &Shared, work: &NodeWork) -> Metadata {
    let engine = work.engine;
    let host = shared.executor(work.at);
    let mut m = Metadata::new();
    m.insert("engine".into(), engine.name.into());
    let executor = host.map_or(shared.pools[work.at.pool].name.as_str(), |h| h.id.as_str());
    m.insert("executor".into(), executor.into());
    let calls_service = matches!(engine.placement, Placement::Service(_)) && shared.simulate.is_none();
    if calls_service
        && let Some(h) = host
        && let Ok(url) = url::Url::parse(&h.url)
        && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
    {
        m.insert("host".into(), format!("{host}:{port}").into());
    }
    m
}

/// Store what a try of `node` under `key` made (the storer records the
/// manifest and copies the outputs under `out/`, in a batch); then, with a
/// writable remote, upload the result in the background — unless it is
/// provisional: the remote's entries are what the key's first engine made,
/// and a fallback standing in for it stays on this machine. `Err`: the
/// storer failed to answer (a bug).
pub(super) async fn store(
    shared: &Shared,
    storer: &Storer,
    node: Node,
    key: &str,
    ran: Ran,
) -> Result<Result<Finished, JobError>, String> {
    let finished = match storer.store(node, key.to_string(), ran).await? {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    let provisional = finished.manifest.provisional.is_some();
    if let Some(remote) = shared.remote.clone().filter(|r| r.writable() && !provisional) {
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
    Ok(Ok(finished))
}
