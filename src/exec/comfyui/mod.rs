//! The ComfyUI client (protocol `comfyui`): queue an API-format workflow,
//! follow it over the websocket, read its outputs from the history, upload
//! inputs, cancel; on top of [`Service`] (timeouts, host rule, no proxy, no
//! redirects, errors classified transient or permanent).
//!
//! The protocol is ComfyUI v0.8.0's, read from `pollockjj/ComfyUI` at
//! commit 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce (`server.py`,
//! `execution.py`, `main.py`; the message shapes are in [`wire`]). What
//! the real server does that a client must expect:
//! - per-prompt messages go only to the socket of the prompt's `client_id`,
//!   so the socket is opened, with a fresh id, before the prompt is sent;
//!   a reconnect with the same id would take the old socket's messages, so
//!   a dropped socket is never reopened: the client polls
//!   `GET /history/{prompt_id}` instead, and a finished result is read
//!   from there either way;
//! - `/history/{id}` is `{}` until the prompt is done, even right after
//!   `execution_success` (`task_done` runs after it): the client waits for
//!   the entry;
//! - a prompt identical to one already run is answered from ComfyUI's
//!   cache: `execution_cached` lists the nodes and one `executed` replays
//!   the old files, which the history lists as usual;
//! - a 200 from `/prompt` may still carry `node_errors` (outputs it will
//!   not run): studio needs every output, so it removes the prompt and
//!   fails like a 400;
//! - `/upload/image` may rename the file: the returned name is used;
//! - `/interrupt` stops the prompt at its next node or progress tick; a
//!   prompt still waiting is deleted from the queue instead.

pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::http::{HttpError, Service, seconds};
use super::{ExecError, JobProgress};
use wire::{Event, Failure, NodeError, OutputRef, Place};

/// How often the history is polled when no socket tells us.
const POLL: Duration = Duration::from_millis(200);
/// How often the history is checked while the socket is quiet.
const QUIET: Duration = Duration::from_secs(5);
/// Largest websocket message read (previews are binary frames).
const MAX_FRAME: usize = 16 << 20;
/// How long a cancel may spend telling the server.
const CANCEL_WITHIN: Duration = Duration::from_secs(5);

/// Why a prompt gave no usable result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ComfyError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// `/prompt` refused the workflow (validation): the node, its class and
    /// the input at fault.
    #[error("ComfyUI refused workflow {workflow}: {reason}{}", list(.errors))]
    Rejected {
        workflow: String,
        reason: String,
        errors: Vec<NodeError>,
    },
    /// A node raised (`execution_error`).
    #[error("workflow {workflow}: node {} ({}) failed with {}: {}{}", .failure.node, .failure.class_type, .failure.exception_type, .failure.message,
        if .failure.out_of_memory() { " (out of memory: the rule's fallback engine runs)" } else { "" })]
    Failed { workflow: String, failure: Failure },
    /// Someone else interrupted the prompt (the server's UI, another client).
    #[error("the prompt was interrupted on the server (at node {node})")]
    Interrupted { node: String },
    /// The server no longer knows the prompt (it restarted).
    #[error("the server lost prompt {prompt_id} (neither queued nor in its history)")]
    Lost { prompt_id: String },
    /// The answer is not what the protocol says.
    #[error("{0}")]
    Output(String),
    #[error("cancelled")]
    Cancelled,
}

fn list(errors: &[NodeError]) -> String {
    errors.iter().map(|e| format!("; {e}")).collect()
}

impl ComfyError {
    /// Worth another try, here later or on another host.
    pub fn transient(&self) -> bool {
        match self {
            ComfyError::Http(e) => e.transient(),
            ComfyError::Interrupted { .. } | ComfyError::Lost { .. } => true,
            ComfyError::Rejected { .. } | ComfyError::Failed { .. } | ComfyError::Output(_) | ComfyError::Cancelled => {
                false
            }
        }
    }

    /// This executor's error as a job's, named with its studio.yaml line.
    pub fn into_exec(self, service: &Service) -> ExecError {
        match self {
            ComfyError::Cancelled => ExecError::Cancelled,
            ComfyError::Http(e) => service.error(e).into(),
            e => {
                let msg = format!("executor `{}` (studio.yaml:{}): {e}", service.executor, service.line);
                if e.transient() {
                    ExecError::Transient(msg)
                } else {
                    ExecError::Permanent(msg)
                }
            }
        }
    }
}

/// A finished prompt.
#[derive(Debug, Clone)]
pub struct Done {
    pub prompt_id: String,
    pub outputs: Vec<OutputRef>,
    /// ComfyUI answered nodes from its own cache.
    pub cached: bool,
}

/// What to queue: an API-format prompt and the workflow file it came from
/// (for messages).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub prompt: &'a Value,
    pub workflow: &'a str,
    /// Mixed into the fresh client and prompt ids (the node's key).
    pub seed: &'a str,
}

/// Names uploaded to each server in this process: (server, content hash) → the name it returned.
static UPLOADED: LazyLock<Mutex<HashMap<(String, String), String>>> = LazyLock::new(Mutex::default);

/// A ComfyUI server.
#[derive(Debug, Clone)]
pub struct Client {
    service: Arc<Service>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Client {
    pub fn new(service: Arc<Service>) -> Client {
        Client { service }
    }

    pub fn service(&self) -> &Service {
        &self.service
    }

    async fn get_json(&self, path: &str) -> Result<bytes::Bytes, HttpError> {
        let url = self.service.url(path)?;
        let answer = self.service.send(&url, self.service.get(&url)).await?;
        self.service.check_status(&url, &answer)?;
        Ok(answer.body)
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<super::http::Answer, HttpError> {
        let url = self.service.url(path)?;
        let request = self
            .service
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.service.send(&url, request).await
    }

    /// `GET /system_stats`: the health check; free and total VRAM of the
    /// first device when the server reports them.
    pub async fn system_stats(&self) -> Result<Option<(u64, u64)>, HttpError> {
        let body = self.get_json("/system_stats").await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| HttpError::Protocol {
            url: format!("{}/system_stats", self.service.base),
            reason: format!("not JSON ({e})"),
        })?;
        if !v["system"].is_object() {
            return Err(HttpError::Protocol {
                url: format!("{}/system_stats", self.service.base),
                reason: "not ComfyUI's system stats (no `system`)".into(),
            });
        }
        Ok(wire::vram(&body))
    }

    /// Upload `bytes` (an image) as `studio-<hash>.<ext>` with `POST
    /// /upload/image`, once per server and content; the name to give a
    /// `LoadImage` node (the server may have renamed it).
    pub async fn upload(&self, bytes: Vec<u8>, ext: &str) -> Result<String, ComfyError> {
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let memo = (self.service.base.clone(), hash.clone());
        if let Some(name) = UPLOADED.lock().expect("upload memo").get(&memo) {
            return Ok(name.clone());
        }
        let url = self.service.url("/upload/image")?;
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(format!("studio-{}.{ext}", &hash[..32]))
            .mime_str(if ext == "png" {
                "image/png"
            } else {
                "application/octet-stream"
            })
            .map_err(|e| ComfyError::Output(format!("upload: {e}")))?;
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("type", "input");
        let answer = self.service.send(&url, self.service.post(&url).multipart(form)).await?;
        self.service.check_status(&url, &answer)?;
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| ComfyError::Output(format!("{url} answered something that is not JSON ({e})")))?;
        let name = v["name"].as_str().unwrap_or("");
        let subfolder = v["subfolder"].as_str().unwrap_or("");
        let check = format!(
            r#"{{"x": {{"outputs": {{"u": {{"images": [{{"filename": {}, "subfolder": {}, "type": "input"}}]}}}}}}}}"#,
            Value::from(name),
            Value::from(subfolder)
        );
        wire::history(check.as_bytes(), "x").map_err(|e| ComfyError::Output(format!("{url}: {e}")))?;
        let name = if subfolder.is_empty() {
            name.to_string()
        } else {
            format!("{subfolder}/{name}")
        };
        UPLOADED.lock().expect("upload memo").insert(memo, name.clone());
        Ok(name)
    }

    /// Open `GET /ws?clientId=…`; `None` when the server does not take a
    /// socket (the client polls instead).
    async fn socket(&self, client_id: &str) -> Option<Socket> {
        let url = self.service.url(&format!("/ws?clientId={client_id}")).ok()?;
        let url = url.strip_prefix("http://").map(|rest| format!("ws://{rest}"))?;
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
        match tokio::time::timeout(seconds(self.service.connect_timeout()), connect).await {
            Ok(Ok((socket, _))) => Some(socket),
            _ => None,
        }
    }

    /// Queue `req`, follow it to the end and return its output files. On
    /// cancel, the prompt is interrupted (running) or deleted (queued).
    pub async fn run(
        &self,
        req: Request<'_>,
        progress: &JobProgress,
        cancel: &CancellationToken,
    ) -> Result<Done, ComfyError> {
        let client_id = fresh_id(req.seed, "client");
        let prompt_id = fresh_id(req.seed, "prompt");
        let socket = self.socket(&client_id).await;
        let body = json!({"prompt": req.prompt, "client_id": client_id, "prompt_id": prompt_id});
        let answer = tokio::select! {
            a = self.post_json("/prompt", &body) => a?,
            () = cancel.cancelled() => return Err(ComfyError::Cancelled),
        };
        let url = format!("{}/prompt", self.service.base);
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if answer.status == 400 {
            return Err(ComfyError::Rejected {
                workflow: req.workflow.to_string(),
                reason: wire::prompt_error(&v),
                errors: wire::node_errors(&v),
            });
        }
        self.service.check_status(&url, &answer)?;
        let errors = wire::node_errors(&v);
        if !errors.is_empty() {
            // Queued, but some outputs will not run: take it back.
            self.stop(&prompt_id).await;
            return Err(ComfyError::Rejected {
                workflow: req.workflow.to_string(),
                reason: "some outputs would not run".into(),
                errors,
            });
        }
        let follow = self.follow(req, &prompt_id, socket, progress);
        tokio::select! {
            done = follow => done,
            () = cancel.cancelled() => {
                self.stop(&prompt_id).await;
                Err(ComfyError::Cancelled)
            }
        }
    }

    /// Follow a queued prompt: the socket while it lasts, then the history.
    async fn follow(
        &self,
        req: Request<'_>,
        prompt_id: &str,
        mut socket: Option<Socket>,
        progress: &JobProgress,
    ) -> Result<Done, ComfyError> {
        let nodes = req.prompt.as_object().map_or(1, |m| m.len().max(1));
        let class_of = |id: &str| req.prompt[id]["class_type"].as_str().unwrap_or("?").to_string();
        let mut started = 0usize;
        let mut cached = false;
        let mut current = String::new();
        let mut last_check = Instant::now();
        progress.report(Some(0.0), "queued on ComfyUI");
        loop {
            let wait = if socket.is_some() { QUIET } else { POLL };
            let next = async {
                match socket.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // What the socket already said comes before a poll of the
                // history whose timer is due.
                biased;
                msg = next => match msg {
                    Some(Ok(Message::Text(text))) => match wire::event(text.as_str(), prompt_id) {
                        Some(Event::Executing(None) | Event::Success) => break,
                        Some(Event::Executing(Some(node))) => {
                            started += 1;
                            current = format!("node {node} {}", class_of(&node));
                            progress.report(Some((started - 1) as f64 / nodes as f64), &current);
                        }
                        Some(Event::Progress { value, max, .. }) if max > 0.0 => {
                            let within = (value / max).clamp(0.0, 1.0);
                            let fraction = (started.saturating_sub(1) as f64 + within) / nodes as f64;
                            progress.report(Some(fraction), &format!("{current} {value}/{max}"));
                        }
                        Some(Event::Cached(list)) => {
                            cached |= !list.is_empty();
                            started += list.len();
                        }
                        Some(Event::Error(failure)) => {
                            return Err(ComfyError::Failed { workflow: req.workflow.to_string(), failure });
                        }
                        Some(Event::Interrupted { node }) => return Err(ComfyError::Interrupted { node }),
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => socket = None,
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep(wait.saturating_sub(last_check.elapsed())) => {
                    last_check = Instant::now();
                    if let Some(done) = self.check(req, prompt_id, socket.is_none()).await? {
                        return Ok(Done { cached: cached || done.cached, ..done });
                    }
                }
            }
        }
        // Finished: the entry appears once `task_done` ran.
        let deadline = Instant::now() + seconds(self.service.timeout());
        loop {
            if let Some(entry) = self.history(prompt_id).await? {
                let done = finish(req, prompt_id, entry)?;
                return Ok(Done {
                    cached: cached || done.cached,
                    ..done
                });
            }
            if Instant::now() > deadline {
                return Err(ComfyError::Lost {
                    prompt_id: prompt_id.to_string(),
                });
            }
            tokio::time::sleep(POLL / 2).await;
        }
    }

    /// Look for the prompt's history entry; when there is none and
    /// `lost_check`, ask the queue whether the server still has it.
    async fn check(&self, req: Request<'_>, prompt_id: &str, lost_check: bool) -> Result<Option<Done>, ComfyError> {
        if let Some(entry) = self.history(prompt_id).await? {
            return finish(req, prompt_id, entry).map(Some);
        }
        if lost_check && self.place(prompt_id).await? == Place::Absent {
            // It may have finished between the two questions.
            return match self.history(prompt_id).await? {
                Some(entry) => finish(req, prompt_id, entry).map(Some),
                None => Err(ComfyError::Lost {
                    prompt_id: prompt_id.to_string(),
                }),
            };
        }
        Ok(None)
    }

    async fn history(&self, prompt_id: &str) -> Result<Option<wire::Entry>, ComfyError> {
        let path = format!("/history/{prompt_id}");
        let body = self.get_json(&path).await?;
        wire::history(&body, prompt_id).map_err(|e| ComfyError::Output(format!("{}{path}: {e}", self.service.base)))
    }

    async fn place(&self, prompt_id: &str) -> Result<Place, ComfyError> {
        let body = self.get_json("/queue").await?;
        wire::place(&body, prompt_id).map_err(|e| ComfyError::Output(format!("{}/queue: {e}", self.service.base)))
    }

    /// Stop our prompt: `POST /interrupt` with its id when it is running,
    /// `POST /queue {delete}` when it waits. Best effort, bounded in time:
    /// the build is stopping or the prompt is of no use.
    pub async fn stop(&self, prompt_id: &str) {
        let stop = async {
            match self.place(prompt_id).await {
                Ok(Place::Running) => {
                    let _ = self.post_json("/interrupt", &json!({"prompt_id": prompt_id})).await;
                }
                Ok(Place::Pending) => {
                    let _ = self.post_json("/queue", &json!({"delete": [prompt_id]})).await;
                }
                Ok(Place::Absent) | Err(_) => {}
            }
        };
        let _ = tokio::time::timeout(CANCEL_WITHIN, stop).await;
    }

    /// Fetch one output with `GET /view` into `to` (at most `max` bytes);
    /// its size. An empty file is an error.
    pub async fn download(&self, out: &OutputRef, to: &Utf8Path, max: u64) -> Result<u64, ComfyError> {
        let mut parsed = url::Url::parse(&self.service.url("/view")?).map_err(|e| HttpError::Config(e.to_string()))?;
        parsed
            .query_pairs_mut()
            .append_pair("filename", &out.filename)
            .append_pair("subfolder", &out.subfolder)
            .append_pair("type", &out.kind);
        let url = parsed.to_string();
        let request = self.service.get(&url);
        let mut response = request.send().await.map_err(|e| self.service.transport(&url, e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                url: format!("{url}?filename={}", out.filename),
                status,
                body: String::new(),
            }
            .into());
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|e| ComfyError::Output(format!("cannot write {to}: {e}")))?;
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.service.transport(&url, e))? {
            size += chunk.len() as u64;
            if size > max {
                return Err(ComfyError::Output(format!(
                    "output {} is larger than {max} bytes",
                    out.filename
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ComfyError::Output(format!("cannot write {to}: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| ComfyError::Output(format!("cannot write {to}: {e}")))?;
        if size == 0 {
            return Err(ComfyError::Output(format!("output {} is empty", out.filename)));
        }
        Ok(size)
    }
}

/// A finished entry as a result or the failure it records.
fn finish(req: Request<'_>, prompt_id: &str, entry: wire::Entry) -> Result<Done, ComfyError> {
    if let Some(failure) = entry.failure {
        return Err(ComfyError::Failed {
            workflow: req.workflow.to_string(),
            failure,
        });
    }
    if let Some(node) = entry.interrupted {
        return Err(ComfyError::Interrupted { node });
    }
    if !entry.success {
        return Err(ComfyError::Output(format!(
            "workflow {}: the prompt ended without success and without an error message",
            req.workflow
        )));
    }
    if entry.outputs.is_empty() {
        return Err(ComfyError::Output(format!(
            "workflow {}: the prompt wrote no output file (does it end in a save node?)",
            req.workflow
        )));
    }
    Ok(Done {
        prompt_id: prompt_id.to_string(),
        outputs: entry.outputs,
        cached: entry.cached,
    })
}

/// A fresh id (32 hex digits): unique per call, so no two prompts or
/// sockets ever share one.
fn fresh_id(seed: &str, what: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = blake3::Hasher::new();
    h.update(seed.as_bytes());
    h.update(what.as_bytes());
    h.update(&n.to_le_bytes());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.finalize().to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh() {
        let a = fresh_id("k", "prompt");
        assert_eq!(a.len(), 32);
        assert_ne!(a, fresh_id("k", "prompt"));
    }

    #[test]
    fn errors_keep_their_class() {
        let oom = ComfyError::Failed {
            workflow: "rules/workflows/v2v.json".into(),
            failure: Failure {
                node: "3".into(),
                class_type: "KSampler".into(),
                exception_type: "torch.OutOfMemoryError".into(),
                message: "CUDA out of memory".into(),
            },
        };
        assert!(!oom.transient());
        assert!(oom.to_string().contains("fallback"), "{oom}");
        assert!(ComfyError::Lost { prompt_id: "p".into() }.transient());
        let rejected = ComfyError::Rejected {
            workflow: "rules/workflows/txt2img.json".into(),
            reason: "Prompt outputs failed validation".into(),
            errors: vec![NodeError {
                node: "4".into(),
                class_type: "CheckpointLoaderSimple".into(),
                input: Some("ckpt_name".into()),
                message: "Value not in list".into(),
            }],
        };
        assert!(!rejected.transient());
        assert_eq!(
            rejected.to_string(),
            "ComfyUI refused workflow rules/workflows/txt2img.json: Prompt outputs failed validation; node 4 (CheckpointLoaderSimple) input `ckpt_name`: Value not in list"
        );
    }
}
