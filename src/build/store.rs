//! Storing finished tries, off their pool slots and in batches.
//!
//! A try's slot is released as soon as its process or request ends (its
//! task says so on the drain state's `ran` channel, and the scheduler
//! frees the slot: `Scheduler::ran`); the task then hands what it made to
//! the build's one [`Storer`], which takes every request waiting at that
//! moment as a batch: the files go into the object store ([`Cache::ingest_batch`]:
//! one fsync per file, one per directory per batch), then each node's
//! action-cache entry is written and its outputs copied under `out/`. A
//! node is done for its dependents only once its batch answered. While a
//! batch is stored the next jobs already run, and the requests that
//! arrive meanwhile form the next batch (group commit), so a one-slot
//! pool no longer waits on fsyncs one job at a time.

use std::collections::HashMap;

use camino::Utf8PathBuf;
use rayon::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::materialize::materialize;
use super::run::Finished;
use super::tasks::JobError;
use crate::cache::store::Made;
use crate::cache::{Cache, Manifest, OutputFile};
use crate::graph::Node;

/// The most requests one batch takes: a batch answers all its nodes at
/// once, so a bound keeps the first node of a long queue from waiting on
/// the last.
const MAX_BATCH: usize = 64;

/// What a finished try left to store.
pub(super) enum Outputs {
    /// Files a job made (suffix, path), in its scratch directory.
    Files(Made),
    /// Outputs already in the store (an inline engine's input).
    Stored(Vec<OutputFile>),
}

/// A try that ran: its manifest (outputs still empty for `Files`), what it
/// made, and its scratch directory, removed once stored.
pub(super) struct Ran {
    pub manifest: Manifest,
    pub outputs: Outputs,
    pub scratch: Option<tempfile::TempDir>,
}

struct Request {
    node: Node,
    key: String,
    ran: Ran,
    reply: oneshot::Sender<Result<Finished, JobError>>,
}

/// The build's storer: a task that stores what tries made, a batch at a
/// time. It ends when the build drops its handle and no request is left.
#[derive(Clone)]
pub(super) struct Storer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Storer {
    /// Start the storer for `cache`, copying outputs under `out`. Needs a
    /// tokio runtime.
    pub(super) fn start(cache: Cache, out: Utf8PathBuf) -> Storer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH
                    && let Ok(r) = rx.try_recv()
                {
                    batch.push(r);
                }
                let (cache, out) = (cache.clone(), out.clone());
                // A panic drops the batch's replies: each waiting task then
                // reports it (see `store`).
                let _ = tokio::task::spawn_blocking(move || store_batch(&cache, &out, batch)).await;
            }
        });
        Storer { tx }
    }

    /// Store what a try of `node` under `key` made; answers once its batch
    /// is stored. `Err`: the storer is gone or its batch panicked (a bug,
    /// which the caller reports as one).
    pub(super) async fn store(&self, node: Node, key: String, ran: Ran) -> Result<Result<Finished, JobError>, String> {
        let (reply, answer) = oneshot::channel();
        let request = Request { node, key, ran, reply };
        self.tx
            .send(request)
            .map_err(|_| "the build's storer is gone".to_string())?;
        answer
            .await
            .map_err(|_| "storing a batch of results panicked".to_string())
    }
}

/// Store one batch: the files, then each node's entry and `out/` copies.
fn store_batch(cache: &Cache, out: &Utf8PathBuf, batch: Vec<Request>) {
    let mut files = Vec::new();
    let mut slots = Vec::with_capacity(batch.len());
    for r in &batch {
        match &r.ran.outputs {
            Outputs::Files(made) => {
                slots.push(Some(files.len()));
                files.push(made.clone());
            }
            Outputs::Stored(_) => slots.push(None),
        }
    }
    let mut ingested: HashMap<usize, std::io::Result<Vec<OutputFile>>> =
        cache.ingest_batch(files).into_iter().enumerate().collect();
    let objects = cache.dir().join("objects");
    let entries = cache.dir().join("ac");
    let work: Vec<(Request, Result<Vec<OutputFile>, JobError>)> = batch
        .into_iter()
        .zip(slots)
        .map(|(mut r, slot)| {
            let outputs = match slot {
                Some(i) => ingested
                    .remove(&i)
                    .expect("one result per job")
                    .map_err(|e| JobError::Io(format!("could not store outputs in {objects}: {e}"))),
                None => match std::mem::replace(&mut r.ran.outputs, Outputs::Files(Vec::new())) {
                    Outputs::Stored(o) => Ok(o),
                    Outputs::Files(_) => unreachable!("jobs with files have a slot"),
                },
            };
            (r, outputs)
        })
        .collect();
    work.into_par_iter().for_each(|(r, outputs)| {
        let Request { node, key, ran, reply } = r;
        let result = outputs.and_then(|outputs| {
            let manifest = Manifest {
                outputs,
                ..ran.manifest
            };
            cache
                .record_unsynced(&key, &manifest)
                .map_err(|e| JobError::Io(format!("could not record a result in {entries}: {e}")))?;
            let (materialized, unwritten) = materialize(cache, out, &node, &manifest.outputs, |_| None);
            Ok(Finished {
                manifest,
                materialized,
                unwritten,
            })
        });
        drop(ran.scratch);
        // The waiting task may be gone (a superseded build): nothing to tell.
        let _ = reply.send(result);
    });
}
