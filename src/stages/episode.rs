//! (being written)

use tokio_util::sync::CancellationToken;

use crate::exec::{ExecError, Job, Produced};

pub async fn episode_video(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}

pub async fn episode_audio(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}

pub async fn assemble(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}
