//! What each node does with real tools: one module per pipeline stage.
//!
//! Every stage is an async function from a [`Job`] (params, input files in
//! the cache, a scratch directory) to the files it made. Processes start
//! through [`crate::exec::runner`] only; user text reaches tools through
//! files or escaped filter values, never a shell.

pub mod comfy;
pub mod episode;
pub mod escape;
pub mod image;
pub mod meter;
pub mod mix;
pub mod music;
pub mod pool;
pub mod publish;
pub mod registry;
pub mod review;
pub mod video;
pub mod voice;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::engines::Tool;
use crate::exec::runner::{self, Cmd, Output};
use crate::exec::{ExecError, Job, JobInput};

/// The path of a tool the job's engine declared (see [`crate::exec::tools::Toolchain::path`]).
pub(crate) fn tool(job: &Job, tool: Tool) -> Result<&Utf8PathBuf, ExecError> {
    job.tools.path(job.engine, tool)
}

/// The project file a `{file: PATH}` param names (resolved by the loader to
/// `{file, hash}`), checked against the hash in the node's key: a file
/// edited since the project was loaded would make an output the key does
/// not describe.
pub(crate) fn asset(job: &Job, name: &str) -> Result<Option<Utf8PathBuf>, ExecError> {
    asset_in(job, param(job, name), name)
}

/// [`asset`] for a value inside a param (`voice.reference_audio`), named
/// `name` in errors.
pub(crate) fn asset_in(job: &Job, value: Option<&Value>, name: &str) -> Result<Option<Utf8PathBuf>, ExecError> {
    let Some((file, hash)) = value.and_then(crate::project::assets::file_of) else {
        return Ok(None);
    };
    let path = job.root.join(file);
    let now = crate::cache::index::hash_file(&path)
        .map_err(|e| ExecError::Permanent(format!("cannot read {file} (`{name}`): {e}")))?;
    if now != hash {
        return Err(ExecError::Permanent(format!(
            "{file} (`{name}`) changed since the project was loaded; build again"
        )));
    }
    Ok(Some(path))
}

/// `ffmpeg` with the flags every call shares.
pub(crate) fn ffmpeg(job: &Job) -> Result<Cmd, ExecError> {
    let path = tool(job, Tool::Ffmpeg)?;
    Ok(Cmd::new(path.as_str()).args([
        "-hide_banner",
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-filter_threads",
        "2",
        "-filter_complex_threads",
        "2",
    ]))
}

/// Run a command in the job's scratch directory.
pub(crate) async fn exec(job: &Job, cmd: &Cmd, cancel: &CancellationToken) -> Result<Output, ExecError> {
    runner::run(cmd, &job.scratch, cancel).await
}

/// The duration of a media file in seconds (ffprobe).
pub(crate) async fn probe_duration(job: &Job, path: &Utf8Path, cancel: &CancellationToken) -> Result<f64, ExecError> {
    let ffprobe = tool(job, Tool::Ffprobe)?;
    let cmd = Cmd::new(ffprobe.as_str())
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
        ])
        .arg(path.as_str());
    let out = exec(job, &cmd, cancel).await?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| ExecError::Permanent(format!("ffprobe could not read the duration of {path}")))
}

/// A path in the job's scratch directory.
pub(crate) fn scratch(job: &Job, name: &str) -> Utf8PathBuf {
    job.scratch.join(name)
}

/// Write a text file in the scratch directory (captions, lists, subtitles).
pub(crate) fn write(job: &Job, name: &str, text: &str) -> Result<Utf8PathBuf, ExecError> {
    let path = scratch(job, name);
    std::fs::write(&path, text).map_err(|e| ExecError::Permanent(format!("writing {path}: {e}")))?;
    Ok(path)
}

/// Check an output exists and is not empty (some tools fail silently).
pub(crate) fn produced(path: &Utf8Path, tool: &str) -> Result<(), ExecError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(ExecError::Permanent(format!(
            "{tool} exited without writing {}",
            path.file_name().unwrap_or("")
        ))),
    }
}

pub(crate) fn param<'a>(job: &'a Job, name: &str) -> Option<&'a Value> {
    job.node.params.get(name)
}

pub(crate) fn param_f64(job: &Job, name: &str, default: f64) -> f64 {
    param(job, name).and_then(Value::as_f64).unwrap_or(default)
}

pub(crate) fn param_str<'a>(job: &'a Job, name: &str) -> &'a str {
    param(job, name).and_then(Value::as_str).unwrap_or("")
}

/// The input with exactly this role.
pub(crate) fn input<'a>(job: &'a Job, role: &str) -> Result<&'a JobInput, ExecError> {
    job.inputs
        .iter()
        .find(|i| i.role == role)
        .ok_or_else(|| ExecError::Permanent(format!("{} has no `{role}` input", job.node.id)))
}

/// Inputs whose role starts with `prefix`, in graph order.
pub(crate) fn inputs_with<'a>(job: &'a Job, prefix: &'a str) -> impl Iterator<Item = &'a JobInput> + 'a {
    job.inputs.iter().filter(move |i| i.role.starts_with(prefix))
}
