//! A fake ACE-Step 1.5 API server on loopback, written from the real one
//! (`ace-step/ACE-Step-1.5` at f30aee4c186c33b7b8a6ea59a4b7fc36f795b49f,
//! `acestep/api_server.py`):
//! - `POST /release_task` takes a JSON object (else 400 `{"detail": "JSON
//!   payload must be an object"}`, or 415 for another content type) and
//!   answers `_wrap_response({"task_id": <uuid>, "status": "queued",
//!   "queue_position": n})`; a full queue is 429 `{"detail": "Server busy:
//!   queue is full"}`.
//! - `POST /query_result` takes `{"task_id_list": [...]}` (a list or its
//!   JSON text) and answers `data`: per id `{"task_id", "result": <JSON
//!   text of a list>, "status": 0|1|2, "progress_text"}`; an unknown id is
//!   `{"task_id", "result": "[]", "status": 0}`, as the real server answers.
//!   A finished item's `file` is `/v1/audio?path=<quote(path, safe="")>`.
//! - `GET /v1/audio?path=` serves a file inside its output folder (403
//!   outside it, 404 when missing).
//!
//! The fake checks more than the real server, which ignores what it does
//! not know: every field must be one `_build_request` reads, with its type
//! and range (`audio_duration` 10–600, `batch_size` 1–8, `bpm` 30–300, an
//! `audio_format` of mp3, wav or flac); anything else is a 400 naming it.
//! The music is a real FLAC (48 kHz stereo, made by ffmpeg), a chord whose
//! pitch comes from the seed, of the asked length. Injectable: 500s,
//! a full queue, tasks that fail with a traceback, tasks that never finish,
//! slow tasks, a result that is not audio, one larger than asked, and an
//! `--api-key` (`verify_token_from_request`: the body's `ai_token` or the
//! `Authorization` header, else 401 `{"detail": …}`).
#![allow(dead_code, clippy::disallowed_methods)] // ffmpeg makes the fake's audio

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the fake does wrong, on purpose.
#[derive(Debug, Clone, Default)]
pub struct Inject {
    /// Answer this many requests (of any endpoint) with a 500 first.
    pub fail_5xx: usize,
    /// `/release_task` answers 429 (queue full).
    pub queue_full: bool,
    /// Tasks fail with this traceback.
    pub fail_task: Option<String>,
    /// Tasks never finish.
    pub never: bool,
    /// How long a task runs.
    pub run: Duration,
    /// The result file holds text, not audio.
    pub not_audio: bool,
    /// The result file is this many bytes of padding after the audio.
    pub oversize: Option<usize>,
    /// Tasks (by the order they came) that finish at once with a file that
    /// is not audio, whatever else is injected.
    pub not_audio_tasks: Vec<usize>,
    /// The server's `--api-key`: every endpoint then wants it.
    pub api_key: Option<String>,
}

struct Task {
    started: Instant,
    body: Value,
    /// The file, once made.
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Task>,
    order: Vec<String>,
    requests: Vec<(String, Value)>,
    inject: Inject,
    served: Vec<String>,
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    dir: Arc<tempfile::TempDir>,
}

/// The fields `_build_request` reads, and the type each must have.
const FIELDS: &[(&str, &str)] = &[
    ("prompt", "str"),
    ("caption", "str"),
    ("lyrics", "str"),
    ("thinking", "bool"),
    ("analysis_only", "bool"),
    ("full_analysis_only", "bool"),
    ("sample_mode", "bool"),
    ("sample_query", "str"),
    ("use_format", "bool"),
    ("model", "str"),
    ("bpm", "int"),
    ("key_scale", "str"),
    ("time_signature", "str"),
    ("audio_duration", "float"),
    ("vocal_language", "str"),
    ("inference_steps", "int"),
    ("guidance_scale", "float"),
    ("use_random_seed", "bool"),
    ("seed", "int"),
    ("batch_size", "int"),
    ("instruction", "str"),
    ("task_type", "str"),
    ("infer_method", "str"),
    ("shift", "float"),
    ("audio_format", "str"),
    ("use_cot_caption", "bool"),
    ("use_cot_language", "bool"),
    ("constrained_decoding", "bool"),
    ("allow_lm_batch", "bool"),
    ("ai_token", "str"),
];

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"detail": text}))).into_response()
}

/// `verify_token_from_request` (with a body) and `verify_api_key`
/// (without): the 401 to answer, if any.
fn verify(fake: &Fake, body: Option<&Value>, headers: &HeaderMap) -> Option<Response> {
    let key = fake.inner.lock().unwrap().inject.api_key.clone()?;
    let unauthorized = |text: &str| Some(detail(StatusCode::UNAUTHORIZED, text));
    if let Some(token) = body.and_then(|b| b.get("ai_token")).and_then(Value::as_str) {
        return if token == key {
            None
        } else {
            unauthorized("Invalid ai_token")
        };
    }
    match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(auth) => {
            let token = auth.strip_prefix("Bearer ").unwrap_or(auth);
            if token == key {
                None
            } else {
                unauthorized("Invalid API key")
            }
        }
        None if body.is_some() => unauthorized("Missing ai_token or Authorization header"),
        None => unauthorized("Missing Authorization header"),
    }
}

fn wrap(data: Value) -> Response {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    axum::Json(json!({"data": data, "code": 200, "error": null, "timestamp": ms, "extra": null})).into_response()
}

/// What is wrong with a `/release_task` body, as the fake checks it.
fn check(body: &Value) -> Result<(), String> {
    let map = body.as_object().ok_or("JSON payload must be an object")?;
    for (k, v) in map {
        let Some((_, ty)) = FIELDS.iter().find(|(name, _)| name == k) else {
            return Err(format!("unknown field `{k}` (api_server.py reads no such parameter)"));
        };
        let ok = match *ty {
            "str" => v.is_string(),
            "bool" => v.is_boolean(),
            "int" => v.is_i64() || v.is_u64(),
            "float" => v.is_number(),
            _ => false,
        };
        if !ok {
            return Err(format!("`{k}` must be {ty}, not {v}"));
        }
    }
    let num = |k: &str| map.get(k).and_then(Value::as_f64);
    if let Some(d) = num("audio_duration")
        && !(10.0..=600.0).contains(&d)
    {
        return Err(format!("audio_duration {d} is outside 10–600"));
    }
    if let Some(b) = num("batch_size")
        && !(1.0..=8.0).contains(&b)
    {
        return Err(format!("batch_size {b} is outside 1–8"));
    }
    if let Some(b) = num("bpm")
        && !(30.0..=300.0).contains(&b)
    {
        return Err(format!("bpm {b} is outside 30–300"));
    }
    if let Some(seed) = map.get("seed").and_then(Value::as_i64)
        && !(-1..=u32::MAX as i64).contains(&seed)
    {
        return Err(format!("seed {seed} is outside -1..2^32"));
    }
    if let Some(f) = map.get("audio_format").and_then(Value::as_str)
        && !["mp3", "wav", "flac"].contains(&f)
    {
        return Err(format!("audio_format `{f}` is not mp3, wav or flac"));
    }
    Ok(())
}

impl Fake {
    pub fn start() -> Fake {
        Fake::start_with(Inject::default())
    }

    pub fn start_with(inject: Inject) -> Fake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Fake {
            url,
            inner: Arc::new(Mutex::new(Inner {
                inject,
                ..Inner::default()
            })),
            dir: Arc::new(tempfile::tempdir().unwrap()),
        };
        let state = fake.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/release_task", post(release))
                    .route("/query_result", post(query))
                    .route("/v1/audio", get(audio))
                    .route("/health", get(|| async { wrap(json!({"status": "ok"})) }))
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        fake
    }

    pub fn inject(&self, f: impl FnOnce(&mut Inject)) {
        f(&mut self.inner.lock().unwrap().inject);
    }

    /// Every request, `(endpoint, JSON body)`, in order.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The `/release_task` bodies.
    pub fn tasks(&self) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner.order.iter().map(|id| inner.tasks[id].body.clone()).collect()
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.requests().iter().filter(|(e, _)| e == endpoint).count()
    }

    /// The paths `/v1/audio` served.
    pub fn served(&self) -> Vec<String> {
        self.inner.lock().unwrap().served.clone()
    }

    fn fail_now(&self) -> bool {
        let mut inner = self.inner.lock().unwrap();
        if inner.inject.fail_5xx > 0 {
            inner.inject.fail_5xx -= 1;
            return true;
        }
        false
    }
}

async fn release(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Unsupported Content-Type: {content_type}"),
        );
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    fake.inner
        .lock()
        .unwrap()
        .requests
        .push(("release_task".into(), value.clone()));
    if fake.fail_now() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    if let Some(r) = verify(&fake, Some(&value), &headers) {
        return r;
    }
    if let Err(e) = check(&value) {
        return detail(StatusCode::BAD_REQUEST, &e);
    }
    let mut inner = fake.inner.lock().unwrap();
    if inner.inject.queue_full {
        return detail(StatusCode::TOO_MANY_REQUESTS, "Server busy: queue is full");
    }
    let id = uuid_like(inner.order.len());
    inner.tasks.insert(
        id.clone(),
        Task {
            started: Instant::now(),
            body: value,
            file: None,
        },
    );
    inner.order.push(id.clone());
    let position = inner.order.len();
    wrap(json!({"task_id": id, "status": "queued", "queue_position": position}))
}

fn uuid_like(n: usize) -> String {
    let h = blake3::hash(format!("task {n} {:?}", Instant::now()).as_bytes()).to_hex();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

async fn query(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.inner
        .lock()
        .unwrap()
        .requests
        .push(("query_result".into(), value.clone()));
    if fake.fail_now() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    }
    if let Some(r) = verify(&fake, Some(&value), &headers) {
        return r;
    }
    let ids: Vec<String> = match value.get("task_id_list") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for id in ids {
        out.push(entry(&fake, &id));
    }
    wrap(Value::Array(out))
}

/// One `/query_result` entry, as `query_result()` builds it from the job store.
fn entry(fake: &Fake, id: &str) -> Value {
    let (inject, started, body, file) = {
        let inner = fake.inner.lock().unwrap();
        let Some(t) = inner.tasks.get(id) else {
            return json!({"task_id": id, "result": "[]", "status": 0});
        };
        (inner.inject.clone(), t.started, t.body.clone(), t.file.clone())
    };
    let elapsed = started.elapsed();
    let index = fake.inner.lock().unwrap().order.iter().position(|t| t == id);
    let inject = match index {
        Some(i) if inject.not_audio_tasks.contains(&i) => Inject {
            not_audio: true,
            ..Inject::default()
        },
        _ => inject,
    };
    let pending = |progress: f64| {
        let item = json!([{"file": "", "wave": "", "status": 0, "create_time": 0, "env": "development",
            "prompt": "", "lyrics": "", "metas": {}, "progress": progress, "stage": "running", "error": null}]);
        json!({"task_id": id, "result": item.to_string(), "status": 0, "progress_text": "diffusion"})
    };
    if inject.never {
        return pending(0.5);
    }
    if elapsed < inject.run {
        return pending(elapsed.as_secs_f64() / inject.run.as_secs_f64());
    }
    if let Some(trace) = inject.fail_task {
        let item = json!([{"file": "", "wave": "", "status": 2, "create_time": 0, "env": "development",
            "prompt": "", "lyrics": "", "metas": {}, "progress": 0.0, "stage": "failed", "error": trace}]);
        return json!({"task_id": id, "result": item.to_string(), "status": 2, "progress_text": ""});
    }
    let path = match file {
        Some(p) => p,
        None => {
            let p = make_audio(fake.dir.path(), id, &body, &inject);
            fake.inner.lock().unwrap().tasks.get_mut(id).unwrap().file = Some(p.clone());
            p
        }
    };
    let quoted: String = url::form_urlencoded::byte_serialize(path.to_str().unwrap().as_bytes()).collect();
    // `quote(path, safe="")` writes spaces as %20, not `+`.
    let link = format!("/v1/audio?path={}", quoted.replace('+', "%20"));
    let seconds = body["audio_duration"].as_f64().unwrap_or(30.0);
    let item = json!([{"file": link, "wave": "", "status": 1, "create_time": 0, "env": "development",
        "prompt": body["prompt"], "lyrics": body["lyrics"],
        "metas": {"bpm": body["bpm"], "duration": seconds, "genres": "", "keyscale": body["key_scale"], "timesignature": body["time_signature"]},
        "generation_info": "", "seed_value": body["seed"].to_string(), "lm_model": "acestep-5Hz-lm-0.6B", "dit_model": "acestep-v15-turbo"}]);
    json!({"task_id": id, "result": item.to_string(), "status": 1, "progress_text": "done"})
}

/// The task's music: a chord from the seed, the asked length, 48 kHz stereo FLAC.
fn make_audio(dir: &Path, id: &str, body: &Value, inject: &Inject) -> PathBuf {
    let path = dir.join(format!("{id} take.flac"));
    if inject.not_audio {
        std::fs::write(&path, "<html>not music</html>").unwrap();
        return path;
    }
    let seconds = body["audio_duration"].as_f64().unwrap_or(30.0);
    let seed = body["seed"].as_u64().unwrap_or(0);
    let root = 110.0 + (seed % 97) as f64;
    let source = format!(
        "aevalsrc=0.2*sin(2*PI*{root}*t)+0.15*sin(2*PI*{}*t)+0.1*sin(2*PI*{}*t):s=48000:d={seconds}",
        root * 1.25,
        root * 1.5
    );
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            &source,
        ])
        .args(["-ac", "2", "-c:a", "flac"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if let Some(extra) = inject.oversize {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, extra));
        std::fs::write(&path, bytes).unwrap();
    }
    path
}

async fn audio(State(fake): State<Fake>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = verify(&fake, None, &headers) {
        return r;
    }
    let Some(path) = q.get("path") else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: path");
    };
    fake.inner.lock().unwrap().served.push(path.clone());
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    let allowed = std::fs::canonicalize(fake.dir.path()).unwrap();
    if !resolved.starts_with(&allowed) {
        return detail(StatusCode::FORBIDDEN, "Access denied: path outside allowed directory");
    }
    match std::fs::read(&resolved) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "audio/flac")], bytes).into_response(),
        Err(_) => detail(StatusCode::NOT_FOUND, "Audio file not found"),
    }
}
