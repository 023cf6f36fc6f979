//! Fake voice servers on loopback, each answering as the real one does
//! (written from the sources cited in `src/stages/voice/`):
//!
//! - GPT-SoVITS `api_v2.py`: `POST /tts`, JSON `TTS_Request`;
//!   `check_params`'s `400 {"message": …}` for a missing `ref_audio_path`,
//!   `text`, `text_lang`, `prompt_lang`, an unknown language, `media_type`
//!   or `text_split_method`; an unreadable reference clip is `400
//!   {"message": "tts failed", "Exception": …}`; success is a 32 kHz WAV.
//! - daswer123/xtts-api-server: `POST /tts_to_audio/` (the bare path is
//!   FastAPI's `307` to the slash), `{text, speaker_wav, language}`; an
//!   unknown language is `500 {"detail": "Error: 400: …"}`; a missing
//!   speaker file `500 {"detail": "Error: …"}`; success is a 24 kHz WAV.
//! - daswer123/rvc-python's API: `GET /models`, `POST /models/{name}`,
//!   `POST /params`, `POST /upload_model` (a zip of `name/….pth`), `POST
//!   /convert {"audio_data": base64 WAV}` → the WAV converted (here: the
//!   same samples at half the level, at 40 kHz like a v2 40k model).
//!
//! Each records its synthesis requests and can be told to answer the next
//! N of them `500 Internal Server Error` (`fail`), to wait before answering
//! (`delay_ms`), or to answer silence (`silence`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

/// What every fake shares: the requests it took and how it misbehaves.
#[derive(Clone, Default)]
pub struct Knobs {
    pub requests: Arc<Mutex<Vec<Value>>>,
    /// Answer the next this many synthesis requests with a 500.
    pub fail: Arc<AtomicUsize>,
    pub delay_ms: Arc<AtomicU64>,
    pub silence: Arc<AtomicBool>,
    /// Requests that arrived (before any delay), for tests that wait for one.
    pub arrived: Arc<AtomicUsize>,
    /// Answer this many seconds of audio whatever the text (0: 0.3 s a word).
    pub seconds: Arc<AtomicU64>,
}

impl Knobs {
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last(&self) -> Value {
        self.requests.lock().unwrap().last().cloned().unwrap_or(Value::Null)
    }

    /// Record, then wait and fail as told; `Some` is the answer to give.
    async fn take(&self, request: Value) -> Option<Response> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.requests.lock().unwrap().push(request);
        let failing = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        failing.then(|| (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response())
    }

    fn wav(&self, rate: u32, seconds: f64) -> Response {
        let forced = self.seconds.load(Ordering::SeqCst);
        let seconds = if forced > 0 { forced as f64 } else { seconds };
        let samples = (seconds * f64::from(rate)) as usize;
        let silent = self.silence.load(Ordering::SeqCst);
        let data: Vec<i16> = (0..samples)
            .map(|i| {
                if silent {
                    0
                } else {
                    let t = i as f64 / f64::from(rate);
                    (0.4 * (2.0 * std::f64::consts::PI * 180.0 * t).sin() * 32767.0) as i16
                }
            })
            .collect();
        wav_response(write_wav(rate, &data))
    }
}

pub fn write_wav(rate: u32, samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

fn wav_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response()
}

fn words(text: &str) -> f64 {
    text.split_whitespace().count().max(1) as f64
}

fn json_error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// FastAPI's answer to a body its model refuses.
fn unprocessable(what: &str) -> Response {
    json_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"detail": [{"type": "missing", "loc": ["body", what], "msg": "Field required"}]}),
    )
}

/// Whether `path` is a WAV file on this machine.
fn readable_wav(path: &str) -> bool {
    Path::new(path).is_absolute() && hound::WavReader::open(path).is_ok()
}

// ----- GPT-SoVITS api_v2.py -----

const GSV_LANGUAGES: &[&str] = &[
    "auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko",
];
const CUT_METHODS: &[&str] = &["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"];

async fn gsv_tts(State(k): State<Knobs>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return unprocessable("text");
    };
    let s = |f: &str| req.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let bad = |m: String| json_error(StatusCode::BAD_REQUEST, json!({"message": m}));
    // check_params, in its order.
    if s("ref_audio_path").is_empty() {
        return bad("ref_audio_path is required".into());
    }
    if s("text").is_empty() {
        return bad("text is required".into());
    }
    let text_lang = s("text_lang");
    if text_lang.is_empty() {
        return bad("text_lang is required".into());
    } else if !GSV_LANGUAGES.contains(&text_lang.to_lowercase().as_str()) {
        return bad(format!("text_lang: {text_lang} is not supported in version v2"));
    }
    let prompt_lang = s("prompt_lang");
    if prompt_lang.is_empty() {
        return bad("prompt_lang is required".into());
    } else if !GSV_LANGUAGES.contains(&prompt_lang.to_lowercase().as_str()) {
        return bad(format!("prompt_lang: {prompt_lang} is not supported in version v2"));
    }
    let media = req.get("media_type").and_then(Value::as_str).unwrap_or("wav");
    if !["wav", "raw", "ogg", "aac"].contains(&media) {
        return bad(format!("media_type: {media} is not supported"));
    }
    let split = req.get("text_split_method").and_then(Value::as_str).unwrap_or("cut5");
    if !CUT_METHODS.contains(&split) {
        return bad(format!("text_split_method:{split} is not supported"));
    }
    if let Some(r) = k.take(req.clone()).await {
        return r;
    }
    if !readable_wav(&s("ref_audio_path")) {
        return json_error(
            StatusCode::BAD_REQUEST,
            json!({"message": "tts failed", "Exception": format!("No such file: '{}'", s("ref_audio_path"))}),
        );
    }
    k.wav(32_000, 0.3 * words(&s("text")))
}

/// Serve a fake GPT-SoVITS api_v2 on a free loopback port.
pub fn gpt_sovits(k: Knobs) -> u16 {
    gpt_sovits_on(k, 0)
}

/// [`gpt_sovits`] on `port` (0: a free one).
pub fn gpt_sovits_on(k: Knobs, port: u16) -> u16 {
    serve_on(Router::new().route("/tts", post(gsv_tts)).with_state(k), port)
}

// ----- xtts-api-server -----

const XTTS_LANGUAGES: &[&str] = &[
    "ar", "pt", "zh-cn", "cs", "nl", "en", "fr", "de", "it", "pl", "ru", "es", "tr", "ja", "ko", "hu", "hi",
];

async fn xtts_tts(State(k): State<Knobs>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return unprocessable("text");
    };
    for field in ["text", "language"] {
        if !req.get(field).is_some_and(Value::is_string) {
            return unprocessable(field);
        }
    }
    if let Some(r) = k.take(req.clone()).await {
        return r;
    }
    let error = |d: String| json_error(StatusCode::INTERNAL_SERVER_ERROR, json!({"detail": d}));
    let language = req["language"].as_str().unwrap().to_lowercase();
    if !XTTS_LANGUAGES.contains(&language.as_str()) {
        // The HTTPException(400) is raised inside the handler's own try.
        return error("Error: 400: Language code sent is either unsupported or misspelled.".into());
    }
    let speaker = req.get("speaker_wav").and_then(Value::as_str).unwrap_or("");
    if !(speaker.ends_with(".wav") && readable_wav(speaker)) {
        return error(format!("Error: Speaker {speaker} not found."));
    }
    k.wav(24_000, 0.3 * words(req["text"].as_str().unwrap()))
}

async fn redirect_slash() -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/tts_to_audio/")]).into_response()
}

/// Serve a fake xtts-api-server on a free loopback port.
pub fn xtts(k: Knobs) -> u16 {
    serve(
        Router::new()
            .route("/tts_to_audio/", post(xtts_tts))
            .route("/tts_to_audio", post(redirect_slash))
            .with_state(k),
    )
}

// ----- rvc-python api -----

/// The RVC fake's state: its models (name → uploaded bytes), the one loaded,
/// its params, and what each conversion was given.
#[derive(Clone, Default)]
pub struct Rvc {
    pub knobs: Knobs,
    pub models: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    pub loaded: Arc<Mutex<Option<String>>>,
    pub params: Arc<Mutex<BTreeMap<String, Value>>>,
    pub uploads: Arc<AtomicUsize>,
    /// Per conversion: (model, f0up_key, seconds of the audio it was given).
    pub conversions: Arc<Mutex<Vec<(String, Value, f64)>>>,
}

impl Rvc {
    /// A server that has the model `preset` already.
    pub fn with_preset() -> Rvc {
        let r = Rvc::default();
        r.models.lock().unwrap().insert("preset".into(), b"weights".to_vec());
        r
    }

    pub fn model_names(&self) -> BTreeSet<String> {
        self.models.lock().unwrap().keys().cloned().collect()
    }
}

fn detail(status: StatusCode, d: String) -> Response {
    json_error(status, json!({"detail": d}))
}

async fn rvc_models(State(r): State<Rvc>) -> Response {
    axum::Json(json!({"models": r.model_names()})).into_response()
}

async fn rvc_load(State(r): State<Rvc>, UrlPath(name): UrlPath<String>) -> Response {
    if !r.models.lock().unwrap().contains_key(&name) {
        return detail(StatusCode::BAD_REQUEST, format!("Model {name} not found."));
    }
    *r.loaded.lock().unwrap() = Some(name.clone());
    axum::Json(json!({"message": format!("Model {name} loaded successfully")})).into_response()
}

async fn rvc_params(State(r): State<Rvc>, body: Bytes) -> Response {
    let Some(params) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("params").and_then(Value::as_object).cloned())
    else {
        return unprocessable("params");
    };
    let valid = [
        "index_rate",
        "filter_radius",
        "resample_sr",
        "rms_mix_rate",
        "protect",
        "f0up_key",
        "f0method",
    ];
    let mut p = r.params.lock().unwrap();
    for (k, v) in params {
        // infer.py ignores (and prints) an unknown parameter.
        if valid.contains(&k.as_str()) {
            p.insert(k, v);
        }
    }
    axum::Json(json!({"message": "Parameters updated successfully"})).into_response()
}

/// The first file of a stored zip: (name, data).
fn unzip_first(z: &[u8]) -> Option<(String, Vec<u8>)> {
    if z.get(..4)? != b"PK\x03\x04" || u16::from_le_bytes([z[8], z[9]]) != 0 {
        return None;
    }
    let size = u32::from_le_bytes(z.get(18..22)?.try_into().ok()?) as usize;
    let name_len = u16::from_le_bytes([z[26], z[27]]) as usize;
    let extra = u16::from_le_bytes([z[28], z[29]]) as usize;
    let name = String::from_utf8(z.get(30..30 + name_len)?.to_vec()).ok()?;
    let start = 30 + name_len + extra;
    Some((name, z.get(start..start + size)?.to_vec()))
}

async fn rvc_upload(State(r): State<Rvc>, mut form: Multipart) -> Response {
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() != Some("file") {
            continue;
        }
        let bytes = field.bytes().await.unwrap_or_default();
        let Some((name, data)) = unzip_first(&bytes) else {
            return detail(StatusCode::INTERNAL_SERVER_ERROR, "File is not a zip file".into());
        };
        // `_load_available_models`: a folder holding a .pth.
        let Some((dir, file)) = name.split_once('/') else {
            return axum::Json(json!({"message": "Models uploaded and extracted successfully"})).into_response();
        };
        if file.ends_with(".pth") && !dir.is_empty() {
            r.models.lock().unwrap().insert(dir.to_string(), data);
        }
        r.uploads.fetch_add(1, Ordering::SeqCst);
        return axum::Json(json!({"message": "Models uploaded and extracted successfully"})).into_response();
    }
    unprocessable("file")
}

async fn rvc_convert(State(r): State<Rvc>, body: Bytes) -> Response {
    let Some(b64) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("audio_data").and_then(Value::as_str).map(str::to_string))
    else {
        return unprocessable("audio_data");
    };
    if let Some(resp) = r.knobs.take(json!({"audio_data_len": b64.len()})).await {
        return resp;
    }
    let error = |m: &str| detail(StatusCode::INTERNAL_SERVER_ERROR, format!("An error occurred: {m}"));
    let Some(model) = r.loaded.lock().unwrap().clone() else {
        return error("Please load a model first.");
    };
    let Ok(audio) = base64::engine::general_purpose::STANDARD.decode(&b64) else {
        return error("Incorrect padding");
    };
    let Ok(mut reader) = hound::WavReader::new(std::io::Cursor::new(audio)) else {
        return error("Error opening audio file");
    };
    let rate = reader.spec().sample_rate;
    let input: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
    let seconds = input.len() as f64 / f64::from(rate);
    let pitch = r.params.lock().unwrap().get("f0up_key").cloned().unwrap_or(json!(0));
    r.conversions.lock().unwrap().push((model, pitch, seconds));
    // Resampled to the model's 40 kHz, at half the level (nearest sample).
    let n = (seconds * 40_000.0) as usize;
    let silent = r.knobs.silence.load(Ordering::SeqCst);
    let out: Vec<i16> = (0..n)
        .map(|i| {
            let j = ((i as f64 / 40_000.0) * f64::from(rate)) as usize;
            if silent {
                0
            } else {
                input.get(j).copied().unwrap_or(0) / 2
            }
        })
        .collect();
    wav_response(write_wav(40_000, &out))
}

/// Serve a fake rvc-python API on a free loopback port.
pub fn rvc(r: Rvc) -> u16 {
    serve(
        Router::new()
            .route("/models", get(rvc_models))
            .route("/models/{name}", post(rvc_load))
            .route("/params", post(rvc_params))
            .route("/upload_model", post(rvc_upload))
            .route("/convert", post(rvc_convert))
            .with_state(r),
    )
}

fn serve(app: Router) -> u16 {
    serve_on(app, 0)
}

fn serve_on(app: Router, port: u16) -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}
