//! Persistent workers: long-lived processes that load a model once and then
//! answer one request at a time, like Bazel's persistent workers. They speak
//! JSON lines over stdin/stdout: the worker first writes `{"ready": true}`
//! (or `{"ready": false, "error": …}` and exits), then answers each request
//! line `{"id": N, …}` with one line `{"id": N, "ok": true, …}` or
//! `{"id": N, "ok": false, "error": …}`.
//!
//! A [`Workers`] handle lives as long as a build's toolchain: each kind of
//! worker gets a [`WorkerPool`] started on demand, at most as many processes
//! as its pool's slots, shared by every job. Dropping the handle kills them;
//! the worker also exits when its stdin closes (studio gone, however it
//! went). A worker that dies mid-request is restarted once per build, and
//! the request sent again; after that the pool is broken and every request
//! fails at once: transient (a crash may pass), so the engine chain falls
//! through and what the fallback makes is provisional, replaced by the next
//! build. A worker that says it cannot start (a missing package) breaks the
//! pool with a permanent error: no later build fixes that by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camino::Utf8PathBuf;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ExecError;
use super::runner::{Cmd, spawn_worker};

/// The longest reply line a worker may write: replies are a few numbers and
/// at most an error message.
pub const MAX_REPLY_BYTES: u64 = 64 << 10;
/// How long a worker may take to load its model and say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one request may take (a long line on a busy 2-core machine).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest error text kept from a worker's reply.
const MAX_ERROR_CHARS: usize = 400;

/// How to start one kind of worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The pool's name (the engine's), in messages.
    pub name: String,
    pub cmd: Cmd,
    /// The worker's working directory.
    pub dir: Utf8PathBuf,
    /// Where its stderr goes (appended), named in errors.
    pub log: Utf8PathBuf,
}

/// Every worker pool of one build; dropping it stops every worker.
#[derive(Debug, Default)]
pub struct Workers {
    pools: Mutex<HashMap<String, Arc<WorkerPool>>>,
}

impl Workers {
    /// The pool for `spec.name`, made on first use with `slots` processes at most.
    pub fn pool(&self, spec: WorkerSpec, slots: usize) -> Arc<WorkerPool> {
        let mut pools = self.pools.lock().expect("worker pools");
        pools
            .entry(spec.name.clone())
            .or_insert_with(|| Arc::new(WorkerPool::new(spec, slots)))
            .clone()
    }

    /// Kill every idle worker now (the end of a build).
    pub fn stop(&self) {
        for pool in self.pools.lock().expect("worker pools").values() {
            pool.idle.lock().expect("idle workers").clear();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The processes of one kind of worker.
#[derive(Debug)]
pub struct WorkerPool {
    spec: WorkerSpec,
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
    /// Set once a crashed worker has been restarted.
    restarted: AtomicBool,
    /// Why the pool gave up (after a second crash: transient), if it did.
    broken: Mutex<Option<(String, bool)>>,
    next_id: AtomicU64,
    started: AtomicU64,
}

#[derive(Debug)]
struct Worker {
    /// Killed when dropped (`kill_on_drop`).
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why a request did not get an answer.
enum Failed {
    /// The worker died, hung or broke the protocol: restart it.
    Crashed(String),
    /// The worker answered `ok: false`: this request's fault.
    Refused(String),
    Cancelled,
}

impl WorkerPool {
    fn new(spec: WorkerSpec, slots: usize) -> WorkerPool {
        WorkerPool {
            spec,
            slots: Semaphore::new(slots.max(1)),
            idle: Mutex::new(Vec::new()),
            restarted: AtomicBool::new(false),
            broken: Mutex::new(None),
            next_id: AtomicU64::new(1),
            started: AtomicU64::new(0),
        }
    }

    /// How many processes this pool has started (restarts included).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Send `request` (a JSON object; its `id` is set here) to a free
    /// worker, starting one if none is idle, and return its reply.
    pub async fn call(&self, mut request: Value, cancel: &CancellationToken) -> Result<Value, ExecError> {
        let _permit = tokio::select! {
            p = self.slots.acquire() => p.expect("the semaphore is never closed"),
            () = cancel.cancelled() => return Err(ExecError::Cancelled),
        };
        let mut tried_restart = false;
        loop {
            if let Some((why, transient)) = self.broken.lock().expect("broken").clone() {
                return Err(if transient {
                    ExecError::Transient(why)
                } else {
                    ExecError::Permanent(why)
                });
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            request["id"] = id.into();
            let idle = self.idle.lock().expect("idle workers").pop();
            let mut worker = match idle {
                Some(w) => w,
                None => match self.start(cancel).await {
                    Ok(w) => w,
                    Err(Failed::Cancelled) => return Err(ExecError::Cancelled),
                    Err(Failed::Refused(why)) => return Err(self.give_up(why, false)),
                    Err(Failed::Crashed(why)) => {
                        if !tried_restart && !self.restarted.swap(true, Ordering::SeqCst) {
                            tried_restart = true;
                            continue;
                        }
                        return Err(self.give_up(why, true));
                    }
                },
            };
            match ask(&mut worker, &request, id, REQUEST_TIMEOUT, cancel).await {
                Ok(reply) => {
                    self.idle.lock().expect("idle workers").push(worker);
                    return Ok(reply);
                }
                Err(Failed::Refused(why)) => {
                    self.idle.lock().expect("idle workers").push(worker);
                    return Err(ExecError::Permanent(format!("{}: {why}", self.spec.name)));
                }
                // The worker is dropped (killed) mid-line: its `.part` file
                // is in the job's scratch, which goes with the job.
                Err(Failed::Cancelled) => return Err(ExecError::Cancelled),
                Err(Failed::Crashed(why)) => {
                    drop(worker);
                    if !tried_restart && !self.restarted.swap(true, Ordering::SeqCst) {
                        tried_restart = true;
                        continue;
                    }
                    return Err(self.give_up(why, true));
                }
            }
        }
    }

    /// Mark the pool broken for the rest of the build.
    fn give_up(&self, why: String, transient: bool) -> ExecError {
        let why = format!(
            "the {} worker failed ({why}); its log is {}",
            self.spec.name, self.spec.log
        );
        *self.broken.lock().expect("broken") = Some((why.clone(), transient));
        if transient {
            ExecError::Transient(why)
        } else {
            ExecError::Permanent(why)
        }
    }

    async fn start(&self, cancel: &CancellationToken) -> Result<Worker, Failed> {
        self.started.fetch_add(1, Ordering::Relaxed);
        let mut child =
            spawn_worker(&self.spec.cmd, &self.spec.dir, &self.spec.log).map_err(|e| Failed::Refused(e.to_string()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut worker = Worker {
            _child: child,
            stdin,
            stdout,
        };
        let ready = tokio::select! {
            r = tokio::time::timeout(READY_TIMEOUT, read_reply(&mut worker.stdout)) => r,
            () = cancel.cancelled() => return Err(Failed::Cancelled),
        };
        let ready = match ready {
            Err(_) => {
                return Err(Failed::Crashed(format!(
                    "not ready after {} s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(why)) => return Err(Failed::Crashed(why)),
            Ok(Ok(v)) => v,
        };
        match ready.get("ready") {
            Some(Value::Bool(true)) => Ok(worker),
            // It said why it cannot work (a missing package): no restart helps.
            Some(Value::Bool(false)) => Err(Failed::Refused(error_of(&ready))),
            _ => Err(Failed::Crashed("its first line is not a ready line".into())),
        }
    }
}

/// One request and its reply.
async fn ask(
    worker: &mut Worker,
    request: &Value,
    id: u64,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Value, Failed> {
    let mut line = serde_json::to_vec(request).expect("a request serializes");
    line.push(b'\n');
    let exchange = async {
        worker
            .stdin
            .write_all(&line)
            .await
            .map_err(|e| format!("cannot write to it: {e}"))?;
        worker
            .stdin
            .flush()
            .await
            .map_err(|e| format!("cannot write to it: {e}"))?;
        read_reply(&mut worker.stdout).await
    };
    let reply = tokio::select! {
        r = tokio::time::timeout(timeout, exchange) => r,
        () = cancel.cancelled() => return Err(Failed::Cancelled),
    };
    let reply = match reply {
        Err(_) => return Err(Failed::Crashed(format!("no reply after {} s", timeout.as_secs()))),
        Ok(Err(why)) => return Err(Failed::Crashed(why)),
        Ok(Ok(v)) => v,
    };
    if reply.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(Failed::Crashed(format!("it answered request {id} with another id")));
    }
    match reply.get("ok") {
        Some(Value::Bool(true)) => Ok(reply),
        Some(Value::Bool(false)) => Err(Failed::Refused(error_of(&reply))),
        _ => Err(Failed::Crashed("its reply has no `ok`".into())),
    }
}

/// Read one JSON object line, at most [`MAX_REPLY_BYTES`].
async fn read_reply(stdout: &mut BufReader<ChildStdout>) -> Result<Value, String> {
    let mut buf = Vec::new();
    let n = (&mut *stdout)
        .take(MAX_REPLY_BYTES)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("cannot read from it: {e}"))?;
    if n == 0 {
        return Err("it exited".into());
    }
    if buf.last() != Some(&b'\n') {
        return Err(format!("a reply line longer than {MAX_REPLY_BYTES} bytes, or cut off"));
    }
    let v: Value = serde_json::from_slice(&buf).map_err(|e| format!("a reply that is not JSON ({e})"))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err("a reply that is not a JSON object".into())
    }
}

/// The `error` of a reply: its first line, printable, bounded.
fn error_of(v: &Value) -> String {
    let e = v.get("error").and_then(Value::as_str).unwrap_or("no reason given");
    e.lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_CHARS)
        .collect()
}

#[cfg(test)]
mod tests;
