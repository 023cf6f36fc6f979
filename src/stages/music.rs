//! (being written)

use tokio_util::sync::CancellationToken;

use crate::exec::{ExecError, Job, Produced};

pub async fn procedural(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    Err(ExecError::Permanent(format!("{}: not written yet", job.engine.name)))
}
