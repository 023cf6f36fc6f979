//! (being written)

use tokio_util::sync::CancellationToken;

use crate::exec::{ExecError, Job, Produced};

pub async fn camera_move(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}

pub async fn shot_video(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}

pub async fn last_frame(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}
