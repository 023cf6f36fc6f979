//! One node's job: its engine chain (the chosen engine, then its
//! fallbacks), each tried again on transient failures; the outputs moved
//! into the cache, the manifest (with its metadata) recorded, the outputs
//! copied under `out/`, and the result uploaded in the background.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::materialize::materialize;
use super::tasks::{JobError, joined, panic_text};
use crate::cache::remote::Remote;
use crate::cache::state::Materialized;
use crate::cache::{Cache, Manifest, Metadata, OutputFile, Suffix, check_metadata};
use crate::engines::{EngineSpec, Runs};
use crate::exec::{self, ExecError, Job, JobInput, JobProgress, Produced};
use crate::graph::key::KeyMaterial;
use crate::graph::{Node, Pool};
use crate::project::model::Simulate;

/// What every job task of a build shares.
pub(super) struct Shared {
    pub cache: Cache,
    pub root: Utf8PathBuf,
    pub out: Utf8PathBuf,
    pub simulate: Option<Simulate>,
    pub pools: Vec<Pool>,
    pub tools: Arc<crate::stages::tools::Toolchain>,
    pub began: Instant,
    pub remote: Option<Arc<Remote>>,
    /// Uploads to the remote, awaited before the build returns.
    pub uploads: TaskTracker,
    /// The first upload that panicked.
    pub upload_panic: Arc<Mutex<Option<String>>>,
}

/// One node to make: what the driver hands a job task.
pub(super) struct NodeWork {
    pub node: Node,
    pub inputs: Vec<JobInput>,
    pub key: String,
    pub material: KeyMaterial,
    pub progress: JobProgress,
}

/// A node made and stored.
pub(super) struct Finished {
    pub manifest: Manifest,
    pub materialized: Vec<(String, Materialized)>,
    /// An output could not be copied under `out/`.
    pub unwritten: Option<String>,
}

/// Run the node's engine chain; store the first result.
pub(super) async fn run_node(
    shared: &Shared,
    work: NodeWork,
    cancel: &CancellationToken,
) -> Result<Finished, JobError> {
    let mut errors = Vec::new();
    for &engine in &work.node.engines {
        let manifest = if engine.runs == Runs::Inline {
            passthrough(shared, &work, engine)?
        } else {
            match run_engine(shared, &work, engine, cancel).await? {
                Ok(manifest) => manifest,
                Err(e) => {
                    errors.push(format!("{}: {e}", engine.name));
                    continue;
                }
            }
        };
        return store(shared, &work.node, &work.key, manifest).await;
    }
    Err(JobError::Failed(errors.join("\n")))
}

/// An inline engine does no work: the output is the input.
fn passthrough(shared: &Shared, work: &NodeWork, engine: &'static EngineSpec) -> Result<Manifest, JobError> {
    let input = work
        .inputs
        .first()
        .ok_or_else(|| JobError::Failed("passthrough needs an input".into()))?;
    Ok(Manifest {
        node: work.node.id.clone(),
        outputs: input.outputs.clone(),
        duration: input.duration,
        engine: engine.name.into(),
        seconds: 0.0,
        material: work.material.clone(),
        metadata: driver_metadata(shared, &work.node, engine),
    })
}

/// Run one engine until it succeeds, fails for good, or runs out of
/// retries. `Ok(Err(why))`: the engine failed and the next one may run;
/// `Err`: the job stops (cancelled, or studio could not use its cache).
async fn run_engine(
    shared: &Shared,
    work: &NodeWork,
    engine: &'static EngineSpec,
    cancel: &CancellationToken,
) -> Result<Result<Manifest, String>, JobError> {
    let mut attempt = 0;
    loop {
        let tmp = shared.cache.dir().join("tmp");
        let scratch = shared
            .cache
            .scratch()
            .map_err(|e| JobError::Io(format!("could not create a scratch directory in {tmp}: {e}")))?;
        let scratch_path = Utf8PathBuf::from_path_buf(scratch.path().to_path_buf())
            .map_err(|p| JobError::Io(format!("{} is not a UTF-8 path", p.display())))?;
        let job = Job {
            node: work.node.clone(),
            engine,
            attempt,
            inputs: work.inputs.clone(),
            scratch: scratch_path,
            root: shared.root.clone(),
            pool: shared.pools[work.node.pool].clone(),
            simulate: shared.simulate.clone(),
            tools: shared.tools.clone(),
            material: work.material.clone(),
            progress: work.progress.clone(),
        };
        let started = Instant::now();
        let error = match exec::run(&job, cancel).await {
            Ok(produced) => {
                let seconds = started.elapsed().as_secs_f64();
                return manifest_of(shared, work, engine, produced, scratch, seconds).await;
            }
            Err(ExecError::Cancelled) => return Err(JobError::Cancelled),
            Err(e) => e,
        };
        match retry_delay(shared, &work.node, engine, attempt, &error)? {
            Some(delay) => tokio::select! {
                () = tokio::time::sleep(delay) => attempt += 1,
                () = cancel.cancelled() => return Err(JobError::Cancelled),
            },
            None => return Ok(Err(error.to_string())),
        }
    }
}

/// Whether a failed attempt of `engine` is tried again, and after how long:
/// a transient error is, up to the node's `retries`, after an exponential
/// backoff (scaled by the sim's time scale). The one place that decides it.
fn retry_delay(
    shared: &Shared,
    node: &Node,
    engine: &EngineSpec,
    attempt: u32,
    error: &ExecError,
) -> Result<Option<Duration>, JobError> {
    if !matches!(error, ExecError::Transient(_)) || attempt >= node.retries {
        return Ok(None);
    }
    let base = 0.5 * f64::from(1u32 << attempt.min(6));
    let scale = shared.simulate.as_ref().map_or(1.0, |s| s.time_scale);
    Duration::try_from_secs_f64(base * scale).map(Some).map_err(|_| {
        JobError::Failed(format!(
            "{}: a retry delay of {} s (time_scale {scale}) is not a length of time",
            engine.name,
            base * scale
        ))
    })
}

/// Move what a job made into the cache and describe it. Metadata the
/// engine reported that studio would not keep fails the engine.
async fn manifest_of(
    shared: &Shared,
    work: &NodeWork,
    engine: &'static EngineSpec,
    produced: Produced,
    scratch: tempfile::TempDir,
    seconds: f64,
) -> Result<Result<Manifest, String>, JobError> {
    let mut metadata = produced.metadata;
    metadata.extend(driver_metadata(shared, &work.node, engine));
    if let Err(e) = check_metadata(&metadata) {
        return Ok(Err(format!("studio keeps no such metadata: {e}")));
    }
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
    Ok(Ok(Manifest {
        node: work.node.id.clone(),
        outputs,
        duration: produced.duration,
        engine: engine.name.into(),
        seconds,
        material: work.material.clone(),
        metadata,
    }))
}

/// What the driver knows about a job: the engine that ran, the executor
/// (pool) it ran on, and the service's host when it really called one.
fn driver_metadata(shared: &Shared, node: &Node, engine: &EngineSpec) -> Metadata {
    let pool = &shared.pools[node.pool];
    let mut m = Metadata::new();
    m.insert("engine".into(), engine.name.into());
    m.insert("executor".into(), pool.name.as_str().into());
    let calls_service = matches!(engine.runs, Runs::Service(_)) && shared.simulate.is_none();
    if calls_service
        && let Ok(url) = url::Url::parse(&pool.url)
        && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
    {
        m.insert("host".into(), format!("{host}:{port}").into());
    }
    m
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
