//! A fake ComfyUI on loopback, written from ComfyUI v0.8.0's own source
//! (`pollockjj/ComfyUI` at 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce:
//! `server.py`, `execution.py`, `main.py`): the same endpoints, status
//! codes, message shapes and output layout. One prompt runs at a time, in
//! queue order; per-prompt messages go only to the socket of the prompt's
//! `client_id` (none without one); a prompt identical to one already run
//! is answered from its cache (`execution_cached` + one `executed`);
//! `/history/{id}` is `{}` until `task_done`, which comes a moment after
//! `execution_success`; `/upload/image` renames a file whose name is taken
//! by other bytes. Save nodes write real files with ffmpeg, made from the
//! prompt's seed, size and frame count: PNG for `SaveImage`, H.264 MP4 for
//! core `SaveVideo` (listed under `images` with `animated: [true]`) and
//! VideoHelperSuite's `VHS_VideoCombine` (under `gifs`).
//!
//! Injectable: a 400 with `node_errors` for a node input, a 200 that still
//! carries `node_errors`, an OOM `execution_error` at a node class, a
//! socket closed mid-run, slow steps, 5xx answers, and a host that refuses
//! connections ([`Fake::stop`]).
#![allow(dead_code, clippy::disallowed_methods)] // tests run ffmpeg to make media

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the fake does wrong, on purpose.
#[derive(Debug, Clone, Default)]
pub struct Inject {
    /// Answer `/prompt` with a 400 naming this (node, input).
    pub reject: Option<(String, String)>,
    /// Queue the prompt but answer 200 with `node_errors` for this node.
    pub partial: Option<String>,
    /// Raise `torch.OutOfMemoryError` when a node of this class runs.
    pub oom_class: Option<String>,
    /// Close the prompt's socket after its first progress tick.
    pub drop_socket: bool,
    /// Time per sampler step (default 2 ms).
    pub step: Option<Duration>,
    /// Answer this many `/prompt` requests with a 500 first.
    pub fail_5xx: u32,
    /// Make each shape of file (kind, size, rate, frames) with ffmpeg once
    /// and answer later saves of that shape with the same bytes: still
    /// valid media, at the cost of a copy (for benchmarks).
    pub reuse_media: bool,
}

/// Node classes the fake knows: (class, is an output node).
const CLASSES: &[(&str, bool)] = &[
    ("CheckpointLoaderSimple", false),
    ("CLIPTextEncode", false),
    ("EmptyLatentImage", false),
    ("KSampler", false),
    ("KSamplerAdvanced", false),
    ("VAEDecode", false),
    ("VAEEncode", false),
    ("VAELoader", false),
    ("CLIPLoader", false),
    ("UNETLoader", false),
    ("LoraLoader", false),
    ("LoraLoaderModelOnly", false),
    ("LoadImage", false),
    ("ImageScale", false),
    ("ImageScaleBy", false),
    ("EmptyHunyuanLatentVideo", false),
    ("WanImageToVideo", false),
    ("ModelSamplingSD3", false),
    ("CLIPVisionLoader", false),
    ("CLIPVisionEncode", false),
    ("DualCLIPLoader", false),
    ("EmptyLTXVLatentVideo", false),
    ("LTXVConditioning", false),
    ("LTXVScheduler", false),
    ("KSamplerSelect", false),
    ("RandomNoise", false),
    ("CFGGuider", false),
    ("SamplerCustomAdvanced", false),
    ("LoadFramePackModel", false),
    ("FramePackSampler", false),
    ("FramePackFindNearestBucket", false),
    ("DownloadAndLoadFramePackModel", false),
    ("VHS_LoadVideo", false),
    ("RIFE VFI", false),
    ("UpscaleModelLoader", false),
    ("ImageUpscaleWithModel", false),
    ("CreateVideo", false),
    ("ConditioningZeroOut", false),
    ("VAEDecodeTiled", false),
    ("LoadVideo", false),
    ("GetVideoComponents", false),
    ("ImageFromBatch", false),
    ("EmptyImage", false),
    ("ImageBlur", false),
    ("SaveImage", true),
    ("PreviewImage", true),
    ("SaveVideo", true),
    ("VHS_VideoCombine", true),
];

/// INT inputs with their range (`validate_inputs` checks `min` and `max`),
/// as ComfyUI 0.8.0's nodes declare them.
const RANGES: &[(&str, &str, i64, i64)] = &[
    ("EmptyImage", "width", 1, 16384),
    ("EmptyImage", "height", 1, 16384),
    ("EmptyImage", "batch_size", 1, 4096),
    ("EmptyLatentImage", "width", 16, 16384),
    ("EmptyLatentImage", "height", 16, 16384),
    ("ImageBlur", "blur_radius", 1, 31),
];

fn class(name: &str) -> Option<bool> {
    CLASSES.iter().find(|(c, _)| *c == name).map(|(_, o)| *o)
}

struct Item {
    number: u64,
    id: String,
    prompt: Value,
    client: Option<String>,
    /// `extra_data`: `client_id` (when given) and `create_time`.
    extra: Value,
    /// The output nodes it will run (`outputs_to_execute`).
    targets: Vec<String>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Item>,
    /// The running prompt's id and its queue item.
    running: Option<(String, Value)>,
    history: serde_json::Map<String, Value>,
    sockets: HashMap<String, mpsc::UnboundedSender<Option<Value>>>,
    /// Prompt text → its outputs (ComfyUI's own cache).
    cache: HashMap<String, Value>,
    /// (type, subfolder, name) → bytes.
    files: HashMap<(String, String, String), Vec<u8>>,
    interrupt: bool,
    number: u64,
    counter: u64,
    /// Shape → bytes, with [`Inject::reuse_media`].
    made: HashMap<String, Vec<u8>>,
    log: Vec<String>,
    prompts: Vec<Value>,
    inject: Inject,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    dir: tempfile::TempDir,
    vram_free: u64,
}

type St = Arc<Shared>;

/// A running fake ComfyUI.
pub struct Fake {
    pub url: String,
    pub port: u16,
    shared: St,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Fake {
    /// Start one on a free loopback port, on its own runtime.
    pub fn start() -> Fake {
        Self::start_with(Inject::default())
    }

    pub fn start_with(inject: Inject) -> Fake {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                inject,
                ..Inner::default()
            }),
            wake: tokio::sync::Notify::new(),
            dir: tempfile::tempdir().unwrap(),
            vram_free: 20 << 30,
        });
        let s = shared.clone();
        // Its own runtime, built off any test's runtime (and shut down
        // without blocking), so sync and async tests can both hold one.
        let (runtime, port) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let port = listener.local_addr().unwrap().port();
            let app = Router::new()
                .route("/ws", get(ws))
                .route("/prompt", post(post_prompt))
                .route("/queue", get(get_queue).post(post_queue))
                .route("/interrupt", post(post_interrupt))
                .route("/history/{id}", get(get_history))
                .route("/view", get(view))
                .route("/upload/image", post(upload))
                .route("/system_stats", get(system_stats))
                .with_state(s.clone());
            runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
            runtime.spawn(worker(s));
            (runtime, port)
        })
        .join()
        .unwrap();
        Fake {
            url: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Change what goes wrong from now on.
    pub fn inject(&self, f: impl FnOnce(&mut Inject)) {
        f(&mut self.shared.inner.lock().unwrap().inject);
    }

    /// Requests seen, as `METHOD /path` lines.
    pub fn log(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().log.clone()
    }

    /// Prompts accepted, in order.
    pub fn prompts(&self) -> Vec<Value> {
        self.shared.inner.lock().unwrap().prompts.clone()
    }

    /// Put a file in the input folder (as if someone uploaded it).
    pub fn put_input(&self, name: &str, bytes: &[u8]) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .files
            .insert(("input".into(), String::new(), name.into()), bytes.to_vec());
    }

    /// An input file's bytes.
    pub fn input(&self, name: &str) -> Option<Vec<u8>> {
        let (sub, name) = name.rsplit_once('/').unwrap_or(("", name));
        self.shared
            .inner
            .lock()
            .unwrap()
            .files
            .get(&("input".into(), sub.into(), name.into()))
            .cloned()
    }

    /// Stop listening and drop every connection: the host is down.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Milliseconds since the epoch, as `add_message` stamps every status message.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// `PromptExecutor.add_message`: stamp `data`, keep it for the history's
/// `status.messages`, send it to the prompt's client (or to every socket
/// when the prompt has none and `broadcast`: execution.py sends to
/// `server.client_id`, which is the prompt's when it has one, so even a
/// "broadcast" `execution_interrupted` reaches only that client).
fn message(s: &St, client: &Option<String>, messages: &mut Vec<Value>, event: &str, mut data: Value, broadcast: bool) {
    data["timestamp"] = json!(now_ms());
    messages.push(json!([event, data.clone()]));
    if client.is_some() {
        send(s, client, event, data);
    } else if broadcast {
        self::broadcast(s, event, data);
    }
}

fn note(s: &St, line: String) {
    s.inner.lock().unwrap().log.push(line);
}

/// `send_sync(event, data, sid)`: to the prompt's client only.
fn send(s: &St, client: &Option<String>, event: &str, data: Value) {
    let inner = s.inner.lock().unwrap();
    if let Some(sid) = client
        && let Some(tx) = inner.sockets.get(sid)
    {
        let _ = tx.send(Some(json!({"type": event, "data": data})));
    }
}

/// To every socket (`status`; a client-less prompt's `execution_interrupted`).
fn broadcast(s: &St, event: &str, data: Value) {
    let inner = s.inner.lock().unwrap();
    for tx in inner.sockets.values() {
        let _ = tx.send(Some(json!({"type": event, "data": data})));
    }
}

async fn ws(State(s): State<St>, Query(q): Query<HashMap<String, String>>, up: WebSocketUpgrade) -> Response {
    let sid = q.get("clientId").cloned().unwrap_or_else(|| {
        let mut i = s.inner.lock().unwrap();
        i.counter += 1;
        format!("{:032x}", i.counter)
    });
    note(&s, format!("GET /ws {sid}"));
    up.on_upgrade(move |socket| socket_loop(s, sid, socket))
}

async fn socket_loop(s: St, sid: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Reusing a clientId replaces the old socket (server.py `sockets.pop`).
    s.inner.lock().unwrap().sockets.insert(sid.clone(), tx);
    let status = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}});
    let _ = socket.send(Message::Text(status.to_string().into())).await;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Some(v)) => {
                    if socket.send(Message::Text(v.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(None) | None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    let mut inner = s.inner.lock().unwrap();
    if inner.sockets.get(&sid).is_some_and(|t| t.is_closed()) {
        inner.sockets.remove(&sid);
    }
}

fn node_error(node: &str, class: &str, input: &str, kind: &str, message: &str, details: String) -> Value {
    json!({node: {"errors": [{"type": kind, "message": message, "details": details,
        "extra_info": {"input_name": input}}], "dependent_outputs": [], "class_type": class}})
}

/// `execution.validate_prompt`, for what the fake knows.
fn validate(inner: &Inner, prompt: &Value) -> Result<Value, (Value, Value)> {
    let Some(nodes) = prompt.as_object() else {
        return Err((
            json!({"type": "invalid_prompt", "message": "prompt is not an object", "details": "", "extra_info": {}}),
            json!({}),
        ));
    };
    let mut outputs = 0;
    for (id, node) in nodes {
        let Some(ct) = node["class_type"].as_str() else {
            return Err((
                json!({"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.", "details": format!("Node ID '#{id}'"), "extra_info": {}}),
                json!({}),
            ));
        };
        match class(ct) {
            None => {
                return Err((
                    json!({"type": "invalid_prompt", "message": format!("Cannot execute because node {ct} does not exist."), "details": format!("Node ID '#{id}'"), "extra_info": {}}),
                    json!({}),
                ));
            }
            Some(true) => outputs += 1,
            Some(false) => {}
        }
    }
    if outputs == 0 {
        return Err((
            json!({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}),
            json!({}),
        ));
    }
    let mut errors = serde_json::Map::new();
    for (id, node) in nodes {
        let ct = node["class_type"].as_str().unwrap();
        for &(_, input, min, max) in RANGES.iter().filter(|r| r.0 == ct) {
            let Some(v) = node["inputs"][input].as_i64() else {
                continue;
            };
            let (kind, message) = if v < min {
                ("value_smaller_than_min", format!("Value {v} smaller than min of {min}"))
            } else if v > max {
                ("value_bigger_than_max", format!("Value {v} bigger than max of {max}"))
            } else {
                continue;
            };
            let error = json!({"type": kind, "message": message, "details": input,
                "extra_info": {"input_name": input, "input_config": ["INT", {"min": min, "max": max}], "received_value": v}});
            let entry = errors
                .entry(id.clone())
                .or_insert_with(|| json!({"errors": [], "dependent_outputs": [], "class_type": ct}));
            entry["errors"].as_array_mut().unwrap().push(error);
        }
        for (input, v) in node["inputs"].as_object().into_iter().flatten() {
            if let Some(link) = v.as_array()
                && link.len() == 2
                && let Some(from) = link[0].as_str()
                && !nodes.contains_key(from)
            {
                errors.extend(
                    node_error(
                        id,
                        ct,
                        input,
                        "exception_during_inner_validation",
                        "Required input is missing",
                        format!("{input}: node {from} does not exist"),
                    )
                    .as_object()
                    .unwrap()
                    .clone(),
                );
            }
        }
        if matches!(ct, "LoadImage" | "VHS_LoadVideo" | "LoadVideo") {
            let input = match ct {
                "LoadImage" => "image",
                "LoadVideo" => "file",
                _ => "video",
            };
            let name = node["inputs"][input].as_str().unwrap_or("");
            let (sub, file) = name.rsplit_once('/').unwrap_or(("", name));
            if !inner.files.contains_key(&("input".into(), sub.into(), file.into())) {
                errors.extend(
                    node_error(
                        id,
                        ct,
                        input,
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        format!("{input} - Invalid image file: {name}"),
                    )
                    .as_object()
                    .unwrap()
                    .clone(),
                );
            }
        }
    }
    if let Some((node, input)) = &inner.inject.reject
        && let Some(n) = nodes.get(node)
        && n["inputs"].get(input).is_some()
    {
        let ct = n["class_type"].as_str().unwrap_or("");
        let val = n["inputs"][input].to_string();
        errors.extend(
            node_error(
                node,
                ct,
                input,
                "value_not_in_list",
                "Value not in list",
                format!("{input}: {val} not in ['model-a.safetensors']"),
            )
            .as_object()
            .unwrap()
            .clone(),
        );
    }
    if !errors.is_empty() {
        // Every output depends on the failing node here (one chain per
        // workflow); ComfyUI lists the outputs that do.
        let outputs: Vec<&String> = nodes
            .iter()
            .filter(|(_, n)| n["class_type"].as_str().and_then(class) == Some(true))
            .map(|(id, _)| id)
            .collect();
        for e in errors.values_mut() {
            e["dependent_outputs"] = json!(outputs);
        }
        let error = json!({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}});
        return Err((error, Value::Object(errors)));
    }
    Ok(json!({}))
}

async fn post_prompt(State(s): State<St>, body: String) -> Response {
    note(&s, "POST /prompt".into());
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid json").into_response();
    };
    let mut inner = s.inner.lock().unwrap();
    if inner.inject.fail_5xx > 0 {
        inner.inject.fail_5xx -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error").into_response();
    }
    let Some(prompt) = v.get("prompt").cloned() else {
        let error = json!({"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}});
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error, "node_errors": {}})),
        )
            .into_response();
    };
    let id = v["prompt_id"].as_str().map(str::to_string).unwrap_or_else(|| {
        inner.counter += 1;
        format!("{:032x}", inner.counter)
    });
    let node_errors = match validate(&inner, &prompt) {
        Ok(e) => e,
        Err((error, node_errors)) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": error, "node_errors": node_errors})),
            )
                .into_response();
        }
    };
    let mut node_errors = node_errors;
    if let Some(node) = inner.inject.partial.clone() {
        let ct = prompt[&node]["class_type"].as_str().unwrap_or("").to_string();
        node_errors = node_error(
            &node,
            &ct,
            "images",
            "required_input_missing",
            "Required input is missing",
            "images".into(),
        );
    }
    let number = inner.number;
    inner.number += 1;
    inner.prompts.push(prompt.clone());
    let client = v["client_id"].as_str().map(str::to_string);
    let mut extra = json!({"create_time": now_ms()});
    if let Some(c) = &client {
        extra["client_id"] = json!(c);
    }
    let targets = prompt
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n["class_type"].as_str().and_then(class) == Some(true))
        .map(|(id, _)| id.clone())
        .collect();
    inner.queue.push_back(Item {
        number,
        id: id.clone(),
        prompt,
        client,
        extra,
        targets,
    });
    drop(inner);
    s.wake.notify_one();
    axum::Json(json!({"prompt_id": id, "number": number, "node_errors": node_errors})).into_response()
}

async fn get_queue(State(s): State<St>) -> Response {
    note(&s, "GET /queue".into());
    let inner = s.inner.lock().unwrap();
    // Items as `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
    let running: Vec<Value> = inner.running.iter().map(|(_, item)| item.clone()).collect();
    let pending: Vec<Value> = inner
        .queue
        .iter()
        .map(|i| json!([i.number, i.id, i.prompt, i.extra, i.targets]))
        .collect();
    axum::Json(json!({"queue_running": running, "queue_pending": pending})).into_response()
}

async fn post_queue(State(s): State<St>, body: String) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    note(&s, format!("POST /queue {v}"));
    let mut inner = s.inner.lock().unwrap();
    if v["clear"].as_bool() == Some(true) {
        inner.queue.clear();
    }
    for id in v["delete"].as_array().into_iter().flatten() {
        inner.queue.retain(|i| Some(i.id.as_str()) != id.as_str());
    }
    StatusCode::OK.into_response()
}

async fn post_interrupt(State(s): State<St>, body: String) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    note(&s, format!("POST /interrupt {v}"));
    let mut inner = s.inner.lock().unwrap();
    match v["prompt_id"].as_str() {
        Some(id) => {
            if inner.running.as_ref().is_some_and(|(r, _)| r == id) {
                inner.interrupt = true;
            }
        }
        None => inner.interrupt = true,
    }
    StatusCode::OK.into_response()
}

async fn get_history(State(s): State<St>, Path(id): Path<String>) -> Response {
    note(&s, format!("GET /history/{id}"));
    let inner = s.inner.lock().unwrap();
    let mut out = serde_json::Map::new();
    if let Some(e) = inner.history.get(&id) {
        out.insert(id, e.clone());
    }
    axum::Json(Value::Object(out)).into_response()
}

async fn view(State(s): State<St>, Query(q): Query<HashMap<String, String>>) -> Response {
    let name = q.get("filename").cloned().unwrap_or_default();
    note(&s, format!("GET /view {name}"));
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let kind = q.get("type").cloned().unwrap_or_else(|| "output".into());
    let sub = q.get("subfolder").cloned().unwrap_or_default();
    if sub.contains("..") {
        return StatusCode::FORBIDDEN.into_response();
    }
    match s.inner.lock().unwrap().files.get(&(kind, sub, name)) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn upload(State(s): State<St>, mut form: Multipart) -> Response {
    let mut image = None;
    let mut subfolder = String::new();
    let mut kind = "input".to_string();
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("image") => {
                let name = field.file_name().unwrap_or("").to_string();
                image = Some((name, field.bytes().await.unwrap_or_default().to_vec()));
            }
            Some("subfolder") => subfolder = field.text().await.unwrap_or_default(),
            Some("type") => kind = field.text().await.unwrap_or_default(),
            _ => {}
        }
    }
    let Some((mut name, bytes)) = image.filter(|(n, _)| !n.is_empty()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if name.contains('/') || name.contains("..") || subfolder.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    note(&s, format!("POST /upload/image {name}"));
    let mut inner = s.inner.lock().unwrap();
    // image_upload: a taken name with other bytes becomes "name (1).ext".
    let (stem, ext) = name
        .rsplit_once('.')
        .map_or((name.clone(), String::new()), |(a, b)| (a.to_string(), format!(".{b}")));
    let mut i = 1;
    loop {
        match inner.files.get(&(kind.clone(), subfolder.clone(), name.clone())) {
            Some(old) if *old != bytes => {
                name = format!("{stem} ({i}){ext}");
                i += 1;
            }
            _ => break,
        }
    }
    inner
        .files
        .insert((kind.clone(), subfolder.clone(), name.clone()), bytes);
    axum::Json(json!({"name": name, "subfolder": subfolder, "type": kind})).into_response()
}

async fn system_stats(State(s): State<St>) -> Response {
    note(&s, "GET /system_stats".into());
    axum::Json(json!({
        "system": {"os": "linux", "ram_total": 64u64 << 30, "ram_free": 32u64 << 30, "comfyui_version": "0.8.0",
            "python_version": "3.12", "pytorch_version": "2.9", "embedded_python": false, "argv": ["main.py"]},
        "devices": [{"name": "cuda:0 fake", "type": "cuda", "index": 0, "vram_total": 24u64 << 30,
            "vram_free": s.vram_free, "torch_vram_total": 0, "torch_vram_free": 0}]
    }))
    .into_response()
}

/// Run queued prompts one at a time, as `main.prompt_worker` does.
async fn worker(s: St) {
    loop {
        let item = {
            let mut inner = s.inner.lock().unwrap();
            let item = inner.queue.pop_front();
            if let Some(i) = &item {
                let listed = json!([i.number, i.id, i.prompt, i.extra, i.targets]);
                inner.running = Some((i.id.clone(), listed));
                inner.interrupt = false;
            }
            item
        };
        let Some(item) = item else {
            s.wake.notified().await;
            continue;
        };
        let (status, outputs, messages) = execute(&s, &item).await;
        // execution_success went out; task_done comes a moment later.
        tokio::time::sleep(Duration::from_millis(30)).await;
        {
            let mut inner = s.inner.lock().unwrap();
            inner.running = None;
            // `meta`: one entry per node that wrote output.
            let meta: serde_json::Map<String, Value> = outputs
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, _)| {
                    (
                        n.clone(),
                        json!({"node_id": n, "display_node": n, "parent_node": null, "real_node_id": n}),
                    )
                })
                .collect();
            let entry = json!({"prompt": [item.number, item.id, item.prompt, item.extra, item.targets],
                "outputs": outputs, "status": {"status_str": status, "completed": status == "success", "messages": messages}, "meta": meta});
            inner.history.insert(item.id.clone(), entry);
        }
        send(
            &s,
            &item.client,
            "executing",
            json!({"node": null, "prompt_id": item.id}),
        );
    }
}

/// Nodes in an order where links come first.
fn order(prompt: &Value) -> Vec<String> {
    let nodes = prompt.as_object().unwrap();
    let mut done: Vec<String> = Vec::new();
    while done.len() < nodes.len() {
        let before = done.len();
        for (id, n) in nodes {
            if done.contains(id) {
                continue;
            }
            let ready = n["inputs"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(_, v)| match v.as_array() {
                    Some(l) if l.len() == 2 && l[0].is_string() => {
                        done.iter().any(|d| Some(d.as_str()) == l[0].as_str())
                    }
                    _ => true,
                });
            if ready {
                done.push(id.clone());
            }
        }
        if done.len() == before {
            break;
        }
    }
    done
}

/// The first input of any node named one of `names`.
fn find_input(prompt: &Value, names: &[&str]) -> Option<Value> {
    for n in prompt.as_object()?.values() {
        for name in names {
            if let Some(v) = n["inputs"].get(*name)
                && !v.is_array()
            {
                return Some(v.clone());
            }
        }
    }
    None
}

async fn execute(s: &St, item: &Item) -> (String, Value, Value) {
    let c = &item.client;
    let pid = &item.id;
    let mut messages = Vec::new();
    message(s, c, &mut messages, "execution_start", json!({"prompt_id": pid}), false);
    let key = item.prompt.to_string();
    let cached = s.inner.lock().unwrap().cache.get(&key).cloned();
    if let Some(outputs) = cached {
        let nodes: Vec<String> = item.prompt.as_object().unwrap().keys().cloned().collect();
        message(
            s,
            c,
            &mut messages,
            "execution_cached",
            json!({"nodes": nodes, "prompt_id": pid}),
            false,
        );
        for (node, out) in outputs.as_object().unwrap() {
            send(
                s,
                c,
                "executed",
                json!({"node": node, "display_node": node, "output": out, "prompt_id": pid}),
            );
        }
        message(
            s,
            c,
            &mut messages,
            "execution_success",
            json!({"prompt_id": pid}),
            false,
        );
        return ("success".into(), outputs, Value::Array(messages));
    }
    message(
        s,
        c,
        &mut messages,
        "execution_cached",
        json!({"nodes": [], "prompt_id": pid}),
        false,
    );
    let (inject, step) = {
        let i = s.inner.lock().unwrap();
        (i.inject.clone(), i.inject.step.unwrap_or(Duration::from_millis(2)))
    };
    let mut outputs = serde_json::Map::new();
    let mut dropped = false;
    let mut executed: Vec<String> = Vec::new();
    // `InterruptProcessingException`: raised at the next node's start or
    // progress tick; the message names the node and what ran before it.
    let interrupted = |node: &str, ct: &str, executed: &[String], messages: &mut Vec<Value>| {
        let data = json!({"prompt_id": pid, "node_id": node, "node_type": ct, "executed": executed});
        message(s, c, messages, "execution_interrupted", data, true);
    };
    for node in order(&item.prompt) {
        let n = &item.prompt[&node];
        let ct = n["class_type"].as_str().unwrap_or("");
        if s.inner.lock().unwrap().interrupt {
            interrupted(&node, ct, &executed, &mut messages);
            return ("error".into(), json!({}), Value::Array(messages));
        }
        send(
            s,
            c,
            "executing",
            json!({"node": node, "display_node": node, "prompt_id": pid}),
        );
        if inject.oom_class.as_deref() == Some(ct) {
            let data = json!({"prompt_id": pid, "node_id": node, "node_type": ct, "executed": executed,
                "exception_message": "Allocation on device \nThis error means you ran out of memory on your GPU.",
                "exception_type": "torch.OutOfMemoryError", "traceback": [], "current_inputs": {}, "current_outputs": []});
            message(s, c, &mut messages, "execution_error", data, false);
            return ("error".into(), json!({}), Value::Array(messages));
        }
        if ct == "ImageBlur" {
            // A slow node without progress ticks (a big blur on a CPU).
            tokio::time::sleep(step).await;
        }
        let steps = n["inputs"]["steps"].as_u64().map_or(0, |v| v.min(50));
        for i in 1..=steps {
            tokio::time::sleep(step).await;
            if s.inner.lock().unwrap().interrupt {
                interrupted(&node, ct, &executed, &mut messages);
                return ("error".into(), json!({}), Value::Array(messages));
            }
            send(
                s,
                c,
                "progress",
                json!({"value": i, "max": steps, "prompt_id": pid, "node": node}),
            );
            if inject.drop_socket && !dropped {
                dropped = true;
                if let Some(sid) = c
                    && let Some(tx) = s.inner.lock().unwrap().sockets.get(sid)
                {
                    let _ = tx.send(None);
                }
            }
        }
        if class(ct) == Some(true) {
            let out = save(s, &item.prompt, &node, ct).await;
            send(
                s,
                c,
                "executed",
                json!({"node": node, "display_node": node, "output": out, "prompt_id": pid}),
            );
            outputs.insert(node.clone(), out);
        }
        executed.push(node);
    }
    message(
        s,
        c,
        &mut messages,
        "execution_success",
        json!({"prompt_id": pid}),
        false,
    );
    let outputs = Value::Object(outputs);
    s.inner.lock().unwrap().cache.insert(key, outputs.clone());
    ("success".into(), outputs, Value::Array(messages))
}

/// Write a save node's files (real media, from the prompt's seed) and return its UI output.
async fn save(s: &St, prompt: &Value, node: &str, ct: &str) -> Value {
    let seed = find_input(prompt, &["seed", "noise_seed"])
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let even = |v: Option<Value>, d: u64| (v.and_then(|v| v.as_u64()).unwrap_or(d).clamp(16, 2048) / 2) * 2;
    let width = even(find_input(prompt, &["width"]), 64);
    let height = even(find_input(prompt, &["height"]), 64);
    let prefix = prompt[node]["inputs"]["filename_prefix"]
        .as_str()
        .unwrap_or("ComfyUI")
        .to_string();
    let (sub, stem) = prefix
        .rsplit_once('/')
        .map_or((String::new(), prefix.clone()), |(a, b)| (a.to_string(), b.to_string()));
    let colour = |i: u64| {
        let h = blake3::hash(format!("{seed}/{i}").as_bytes());
        let b = h.as_bytes();
        format!("0x{:02x}{:02x}{:02x}", b[0], b[1], b[2])
    };
    let video = matches!(ct, "SaveVideo" | "VHS_VideoCombine");
    let count = if video {
        1
    } else {
        find_input(prompt, &["batch_size"])
            .and_then(|v| v.as_u64())
            .unwrap_or(1)
            .clamp(1, 16)
    };
    let mut files = Vec::new();
    for i in 0..count {
        let n = {
            let mut inner = s.inner.lock().unwrap();
            inner.counter += 1;
            inner.counter
        };
        let ext = if video { "mp4" } else { "png" };
        let name = format!("{stem}_{n:05}_.{ext}");
        let path: PathBuf = s.dir.path().join(&name);
        let fps = find_input(prompt, &["frame_rate", "fps"])
            .and_then(|v| v.as_f64())
            .unwrap_or(16.0)
            .clamp(1.0, 60.0);
        // A video's frames: a latent's length, else the image batch
        // (`EmptyImage` → `CreateVideo`).
        let frames = find_input(prompt, &["length", "frame_count", "num_frames", "frame_load_cap"])
            .or_else(|| find_input(prompt, &["batch_size"]))
            .and_then(|v| v.as_u64())
            .filter(|f| *f > 0)
            .unwrap_or(17)
            .min(400);
        let shape = format!("{video}/{width}x{height}/{fps}/{frames}");
        let reuse = {
            let inner = s.inner.lock().unwrap();
            inner
                .inject
                .reuse_media
                .then(|| inner.made.get(&shape).cloned())
                .flatten()
        };
        if let Some(bytes) = reuse {
            s.inner
                .lock()
                .unwrap()
                .files
                .insert(("output".into(), sub.clone(), name.clone()), bytes);
            files.push(json!({"filename": name, "subfolder": sub, "type": "output"}));
            if ct == "VHS_VideoCombine" {
                let last = files.last_mut().unwrap();
                last["format"] = json!("video/h264-mp4");
                last["frame_rate"] = json!(fps);
            }
            continue;
        }
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i"]);
        if video {
            cmd.arg(format!(
                "color=c={}:s={width}x{height}:r={fps},format=yuv420p",
                colour(i)
            ));
            cmd.args([
                "-frames:v",
                &frames.to_string(),
                "-c:v",
                "libx264",
                "-threads",
                "1",
                "-pix_fmt",
                "yuv420p",
            ]);
        } else {
            cmd.arg(format!("color=c={}:s={width}x{height}", colour(i)));
            cmd.args(["-frames:v", "1"]);
        }
        cmd.args(["-fflags", "+bitexact", "-flags", "+bitexact"]).arg(&path);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "fake ComfyUI: ffmpeg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        let mut inner = s.inner.lock().unwrap();
        if inner.inject.reuse_media {
            inner.made.insert(shape, bytes.clone());
        }
        inner.files.insert(("output".into(), sub.clone(), name.clone()), bytes);
        drop(inner);
        let mut entry = json!({"filename": name, "subfolder": sub, "type": "output"});
        if ct == "VHS_VideoCombine" {
            entry["format"] = json!("video/h264-mp4");
            entry["frame_rate"] = json!(fps);
        }
        files.push(entry);
    }
    match ct {
        "SaveVideo" => json!({"images": files, "animated": [true]}),
        "VHS_VideoCombine" => json!({"gifs": files}),
        _ => json!({"images": files}),
    }
}

/// `BTreeMap` of the log's lines starting with `prefix`, counted.
pub fn count(log: &[String], prefix: &str) -> usize {
    log.iter().filter(|l| l.starts_with(prefix)).count()
}

pub fn sorted(v: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in v {
        *m.entry(l.clone()).or_insert(0) += 1;
    }
    m
}
