//! Executors: what runs a job. The sim executor, or
//! (per pipeline stage, in `stages/`) the real engines; `http` is the HTTP
//! layer every service executor's client is built on.

pub mod http;
pub mod runner;
pub mod sim;

use camino::Utf8PathBuf;
use tokio_util::sync::CancellationToken;

use crate::engines::EngineSpec;
use crate::graph::{Node, Pool};
use crate::project::model::Simulate;

/// One input file set of a job, in the node's input order.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub role: String,
    /// `(suffix, path)` of each output of the input node, in the cache.
    pub files: Vec<(String, Utf8PathBuf)>,
    pub outputs: Vec<crate::cache::OutputFile>,
    pub duration: Option<f64>,
    pub hash: String,
}

impl JobInput {
    /// The main file (the first output).
    pub fn main(&self) -> &Utf8PathBuf {
        &self.files[0].1
    }
}

/// Everything an executor needs to make one node.
#[derive(Debug, Clone)]
pub struct Job {
    pub node: Node,
    pub engine: &'static EngineSpec,
    /// 0 for the first try of this engine.
    pub attempt: u32,
    pub inputs: Vec<JobInput>,
    /// Empty directory for outputs; removed after the job.
    pub scratch: Utf8PathBuf,
    /// The project root, for assets the rules name.
    pub root: Utf8PathBuf,
    pub pool: Pool,
    /// The executor (host) of the pool's group the scheduler picked; `None`
    /// for jobs that run here.
    pub host: Option<crate::project::model::Executor>,
    pub simulate: Option<Simulate>,
    /// The node's key material (what its output may depend on).
    pub material: crate::graph::key::KeyMaterial,
    /// Local tools (ffmpeg, espeak-ng, fonts) for real engines.
    pub tools: std::sync::Arc<crate::stages::tools::Toolchain>,
}

/// Files a job made, in its scratch directory.
#[derive(Debug)]
pub struct Produced {
    /// `(suffix, path)`; the first is the main output.
    pub files: Vec<(String, Utf8PathBuf)>,
    pub duration: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Worth retrying: HTTP 5xx, a timeout, a refused connection.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help; a fallback engine might.
    #[error("{0}")]
    Permanent(String),
    #[error("cancelled")]
    Cancelled,
}

/// Engines that only write text from their params, with no tool or service:
/// cheap and exact, so even the sim profile runs them for real.
const RUN_IN_SIM: &[&str] = &["library"];

/// Run `job` with its engine (or simulate it).
pub async fn run(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    match &job.simulate {
        Some(sim) if !RUN_IN_SIM.contains(&job.engine.name) => sim::run(job, sim, cancel).await,
        _ => crate::stages::run(job, cancel).await,
    }
}
