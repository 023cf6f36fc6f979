//! Executors: what a job is and what runs it, below the engines. The sim
//! executor, the process runner, the local tools ([`tools`]) and the HTTP
//! layer every service executor's client is built on. The engines' run
//! functions are in `stages/` (above), paired with their specs in
//! `stages::registry`; nothing here names a stage or an engine.

pub mod comfyui;
pub mod http;
pub mod runner;
pub mod services;
pub mod sim;
pub mod tools;
pub mod voices;
pub mod worker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;

pub use crate::cache::Metadata;

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
    /// That host's client, from the build's [`services::Services`]; `None`
    /// for jobs that run here (CPU engines get only their declared tools).
    pub service: Option<std::sync::Arc<http::Service>>,
    pub simulate: Option<Simulate>,
    /// The node's key material (what its output may depend on).
    pub material: crate::graph::key::KeyMaterial,
    /// Local tools (ffmpeg, espeak-ng, fonts) for real engines.
    pub tools: std::sync::Arc<tools::Toolchain>,
    /// Where the job tells how far it got.
    pub progress: JobProgress,
    /// Why what this try makes stands in for the node's first engine (a
    /// fallback after a failure that may pass: the manifest's
    /// `provisional`); `None` on the first engine.
    pub provisional: Option<String>,
}

/// Files a job made, in its scratch directory.
#[derive(Debug)]
pub struct Produced {
    /// `(suffix, path)`; the first is the main output.
    pub files: Vec<(String, Utf8PathBuf)>,
    pub duration: Option<f64>,
    /// What the engine reported besides its files (a seed, a score), kept
    /// in the manifest; the driver adds the engine, the executor and the
    /// host. Checked by [`crate::cache::check_metadata`].
    pub metadata: Metadata,
}

/// Reports closer together than this are dropped (a tool may report far
/// more often than anyone can read).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);
/// The longest status line a report keeps.
pub const MAX_STATUS_CHARS: usize = 120;

type ProgressSink = dyn Fn(Option<f64>, &str) + Send + Sync;

/// A running job's way to say how far it got: a fraction (when it knows
/// one) and a short line of status. Cheap to clone; a job that never
/// reports costs nothing.
#[derive(Clone, Default)]
pub struct JobProgress {
    sink: Option<Arc<ProgressSink>>,
    last: Arc<Mutex<Option<Instant>>>,
}

impl JobProgress {
    /// Reports go to `sink`, at most one per [`PROGRESS_INTERVAL`].
    pub fn new(sink: impl Fn(Option<f64>, &str) + Send + Sync + 'static) -> JobProgress {
        JobProgress {
            sink: Some(Arc::new(sink)),
            last: Arc::default(),
        }
    }

    /// A handle whose reports go nowhere.
    pub fn none() -> JobProgress {
        JobProgress::default()
    }

    /// Report `fraction` (clamped to 0–1; `None` or not a number: unknown)
    /// and `status` (its first line, without control characters, at most
    /// [`MAX_STATUS_CHARS`]).
    pub fn report(&self, fraction: Option<f64>, status: &str) {
        let Some(sink) = &self.sink else { return };
        {
            let mut last = self.last.lock().expect("progress clock");
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        let fraction = fraction.filter(|f| !f.is_nan()).map(|f| f.clamp(0.0, 1.0));
        let status: String = status
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_STATUS_CHARS)
            .collect();
        sink(fraction, &status);
    }
}

impl std::fmt::Debug for JobProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.sink.is_some() {
            "JobProgress"
        } else {
            "JobProgress(none)"
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    type Reports = Arc<Mutex<Vec<(Option<f64>, String)>>>;

    fn collecting() -> (JobProgress, Reports) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let p = JobProgress::new(move |f, s| g.lock().unwrap().push((f, s.to_string())));
        (p, got)
    }

    #[test]
    fn reports_are_cleaned_and_throttled() {
        let (p, got) = collecting();
        p.report(Some(1.5), "encoding\u{1b}[2J frame 10\nsecond line");
        for i in 0..100 {
            p.report(Some(f64::from(i) / 100.0), "too soon");
        }
        assert_eq!(
            *got.lock().unwrap(),
            vec![(Some(1.0), "encoding[2J frame 10".to_string())]
        );
        std::thread::sleep(PROGRESS_INTERVAL);
        p.report(Some(f64::NAN), &"x".repeat(500));
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, None, "not a number is an unknown fraction");
        assert_eq!(got[1].1.len(), MAX_STATUS_CHARS);
    }

    #[test]
    fn a_handle_without_a_sink_takes_reports() {
        JobProgress::none().report(Some(0.5), "nobody listens");
        assert_eq!(format!("{:?}", JobProgress::none()), "JobProgress(none)");
    }
}
