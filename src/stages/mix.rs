//! (being written)

use tokio_util::sync::CancellationToken;

use crate::exec::{ExecError, Job, Produced};

pub async fn scene_video(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}

pub async fn scene_mix(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}
