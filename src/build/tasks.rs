//! What keeps the build loop honest about its tasks: panics caught and
//! turned into messages, blocking tasks' panics passed on, and the
//! debug-only seam that makes a task panic in tests.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::state::Message;

/// How a job failed.
#[derive(Debug)]
pub(super) enum JobError {
    /// The try failed: another engine of the chain may work.
    Failed(String),
    /// The try failed, and another try may work: the host refused, timed
    /// out, answered 5xx.
    Transient(String),
    /// It was stopped (Ctrl-C, or a newer build).
    Cancelled,
    /// studio could not write the cache: the build stops.
    Io(String),
}

/// Run `fut` (a task of node `node`), turning a panic into [`Message::Panicked`].
pub(super) async fn caught(node: usize, fut: impl Future<Output = Message>) -> Message {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(msg) => msg,
        Err(payload) => Message::Panicked {
            node,
            what: panic_text(payload.as_ref()),
        },
    }
}

/// A panic's message.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Test seam, debug builds only: `STUDIO_TEST_PANIC=<site>:<node id>`
/// panics in that node's `job` or `resolve` task.
pub(super) fn test_panic(site: &str, id: &str) {
    #[cfg(debug_assertions)]
    if let Ok(v) = std::env::var("STUDIO_TEST_PANIC")
        && v.strip_prefix(site).and_then(|r| r.strip_prefix(':')) == Some(id)
    {
        panic!("STUDIO_TEST_PANIC in the {site} task of {id}");
    }
    #[cfg(not(debug_assertions))]
    let _ = (site, id);
}
