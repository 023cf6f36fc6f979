//! A fake vision model server on loopback, speaking both chat protocols as
//! the real servers take them:
//! - Ollama's `/api/chat` (docs/api.md, "Chat request (with images)"):
//!   a message's `images` is an array of bare base64 strings; `format` is
//!   the JSON schema; the reply is one object with `message.content`,
//!   `done: true`, `done_reason`; errors are `{"error": "…"}`.
//! - The OpenAI-compatible `/v1/chat/completions` (llama.cpp's server,
//!   vLLM): a user message's `content` is a string or an array of parts,
//!   `{"type": "text"}` and `{"type": "image_url", "image_url": {"url":
//!   "data:image/…;base64,…"}}`; `response_format` is `json_schema` (or
//!   `json_object` with `schema`); the reply is `choices[0].message`;
//!   errors are `{"error": {"code", "message", "type"}}`.
//!
//! Every image is decoded (base64, then PNG) and a request with one that
//! does not decode is answered 400, as the real servers do. Scores are
//! derived from the image's bytes ([`scores_for`]), so a test knows what
//! a given image gets; the categories come from the request's own schema.
//! It can be told to force a category or a score, to answer with invalid
//! JSON or out-of-range scores (the repair path), with a 500, or slowly.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

/// What the fake does, on purpose.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Every reply names this category (if the schema allows it).
    pub category: Option<String>,
    /// Name `category` even where the request's schema does not allow it
    /// (a server that does not enforce the schema).
    pub disobey: bool,
    /// Every score is this.
    pub score: Option<f64>,
    /// Answer this many requests with content that is not JSON.
    pub invalid: u32,
    /// Answer this many requests with `character_match` out of range.
    pub out_of_range: u32,
    /// Answer this many requests with HTTP 500.
    pub fail_500: u32,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Be llama-cpp-python's server: refuse `response_format.type:
    /// json_schema` as it does (HTTP 500, its pydantic literal error) and
    /// take `{type: json_object, schema}`.
    pub llama_cpp_python: bool,
    /// The next requests' scores (and category), one per request in
    /// arrival order, before `score`/`category` apply.
    pub plan: std::collections::VecDeque<(f64, Option<String>)>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    /// The decoded images' sizes (width, height), in message order.
    pub images: Vec<(u32, u32)>,
    /// The images' bytes, decoded from base64.
    pub image_bytes: Vec<Vec<u8>>,
    /// The text of each message, in order.
    pub texts: Vec<String>,
}

#[derive(Default)]
struct Inner {
    script: Script,
    seen: Vec<Seen>,
}

type St = Arc<(String, Mutex<Inner>)>;

pub struct Fake {
    pub url: String,
    state: St,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Fake {
    /// A server for `model` on a free loopback port, on its own runtime.
    pub fn start(model: &str) -> Fake {
        let state: St = Arc::new((model.to_string(), Mutex::new(Inner::default())));
        let s = state.clone();
        let (runtime, port) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let port = listener.local_addr().unwrap().port();
            let app = Router::new()
                .route("/api/chat", post(ollama))
                .route("/v1/chat/completions", post(openai))
                .with_state(s);
            runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
            (runtime, port)
        })
        .join()
        .unwrap();
        Fake {
            url: format!("http://127.0.0.1:{port}"),
            state,
            runtime: Some(runtime),
        }
    }

    /// Change the script from now on.
    pub fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.state.1.lock().unwrap().script);
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.1.lock().unwrap().seen.clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

/// The scores the fake gives an image: from the blake3 hash of its bytes,
/// each score one byte over 255, the framing another byte; a weak image
/// (weakest score under 0.5) gets the category picked by a fifth byte.
pub fn scores_for(png: &[u8], categories: &[String]) -> Value {
    let h = blake3::hash(png);
    let b = h.as_bytes();
    let score = |i: usize| f64::from(b[i]) / 255.0;
    let (m, c, t) = (score(0), score(1), score(2));
    let framing = ["full_body", "upper_body", "face"][usize::from(b[3]) % 3];
    let cats: Vec<&String> = if m.min(c).min(t) < 0.5 && !categories.is_empty() {
        vec![&categories[usize::from(b[4]) % categories.len()]]
    } else {
        vec![]
    };
    json!({"character_match": m, "clarity": c, "training_value": t, "framing": framing,
           "rejection_categories": cats, "notes": format!("fake review of {}", &h.to_hex()[..12])})
}

fn decode_png(bytes: &[u8]) -> Result<(u32, u32), String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("image: unknown format ({e})"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("image too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("image: {e}"))?;
    Ok((info.width, info.height))
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("illegal base64 data: {e}"))
}

/// The categories a request's schema allows.
fn schema_categories(schema: &Value) -> Vec<String> {
    schema["properties"]["rejection_categories"]["items"]["enum"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// What the script says to reply for a request whose first image is `png`:
/// the content text, or an HTTP error.
fn reply(state: &St, png: Option<&[u8]>, categories: &[String]) -> Result<String, u16> {
    let mut inner = state.1.lock().unwrap();
    let s = &mut inner.script;
    if s.fail_500 > 0 {
        s.fail_500 -= 1;
        return Err(500);
    }
    if s.invalid > 0 {
        s.invalid -= 1;
        return Ok("{\"character_match\": 0.9, \"clarity\":".into());
    }
    let mut v = scores_for(png.unwrap_or(b""), categories);
    if let Some((x, c)) = s.plan.pop_front() {
        for k in ["character_match", "clarity", "training_value"] {
            v[k] = json!(x);
        }
        v["rejection_categories"] = json!(c.into_iter().filter(|c| categories.contains(c)).collect::<Vec<_>>());
        return Ok(v.to_string());
    }
    if let Some(x) = s.score {
        for k in ["character_match", "clarity", "training_value"] {
            v[k] = json!(x);
        }
    }
    if let Some(c) = &s.category
        && (s.disobey || categories.contains(c))
    {
        v["rejection_categories"] = json!([c]);
    }
    if s.out_of_range > 0 {
        s.out_of_range -= 1;
        v["character_match"] = json!(1.7);
    }
    Ok(v.to_string())
}

fn record(state: &St, path: &str, body: &Value, images: Vec<Vec<u8>>, texts: Vec<String>) -> Result<(), String> {
    let mut sizes = Vec::new();
    for i in &images {
        sizes.push(decode_png(i)?);
    }
    state.1.lock().unwrap().seen.push(Seen {
        path: path.into(),
        body: body.clone(),
        images: sizes,
        image_bytes: images,
        texts,
    });
    Ok(())
}

async fn wait(state: &St) {
    let delay = state.1.lock().unwrap().script.delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

fn check_common(state: &St, body: &Value) -> Result<(), String> {
    if body["model"] != state.0.as_str() {
        return Err(format!("model \"{}\" not found, try pulling it first", body["model"]));
    }
    if body["stream"] != false {
        return Err("the fake answers only `stream: false`".into());
    }
    if !body["messages"].is_array() {
        return Err("messages: not a list".into());
    }
    Ok(())
}

async fn ollama(State(state): State<St>, body: axum::body::Bytes) -> Response {
    let err = |status: StatusCode, msg: String| (status, axum::Json(json!({"error": msg}))).into_response();
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid character in JSON: {e}")),
    };
    if let Err(m) = check_common(&state, &body) {
        return err(StatusCode::BAD_REQUEST, m);
    }
    if !body["format"].is_object() {
        return err(
            StatusCode::BAD_REQUEST,
            "the fake expects `format` to be a JSON schema".into(),
        );
    }
    let (mut images, mut texts) = (Vec::new(), Vec::new());
    for m in body["messages"].as_array().unwrap() {
        let Some(content) = m["content"].as_str() else {
            return err(
                StatusCode::BAD_REQUEST,
                "json: cannot unmarshal array into Go struct field Message.messages.content of type string".into(),
            );
        };
        texts.push(content.to_string());
        for i in m["images"].as_array().into_iter().flatten() {
            match i.as_str().map(b64) {
                Some(Ok(b)) => images.push(b),
                Some(Err(e)) => return err(StatusCode::BAD_REQUEST, e),
                None => return err(StatusCode::BAD_REQUEST, "images: not a string".into()),
            }
        }
    }
    if let Err(e) = record(&state, "/api/chat", &body, images.clone(), texts) {
        return err(StatusCode::BAD_REQUEST, e);
    }
    wait(&state).await;
    match reply(
        &state,
        images.first().map(Vec::as_slice),
        &schema_categories(&body["format"]),
    ) {
        Ok(content) => axum::Json(json!({
            "model": state.0, "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content},
            "done": true, "done_reason": "stop", "eval_count": 40, "eval_duration": 400_000_000u64,
        }))
        .into_response(),
        Err(code) => err(
            StatusCode::from_u16(code).unwrap(),
            "llama runner process has terminated".into(),
        ),
    }
}

async fn openai(State(state): State<St>, body: axum::body::Bytes) -> Response {
    let err = |status: StatusCode, msg: String| {
        let t = if status.as_u16() >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        (
            status,
            axum::Json(json!({"error": {"code": status.as_u16(), "message": msg, "type": t}})),
        )
            .into_response()
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("JSON parse error: {e}")),
    };
    if let Err(m) = check_common(&state, &body) {
        return err(StatusCode::BAD_REQUEST, m);
    }
    let rf = &body["response_format"];
    if rf["type"] == "json_schema" && state.1.lock().unwrap().script.llama_cpp_python {
        let message = "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), \
                       'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}";
        let body = json!({"error": {"message": message, "type": "internal_server_error", "param": null, "code": null}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    let schema = match rf["type"].as_str() {
        Some("json_schema") => &rf["json_schema"]["schema"],
        Some("json_object") => &rf["schema"],
        _ => {
            return err(
                StatusCode::BAD_REQUEST,
                "the fake expects a response_format with a schema".into(),
            );
        }
    };
    let (mut images, mut texts) = (Vec::new(), Vec::new());
    for m in body["messages"].as_array().unwrap() {
        match &m["content"] {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(parts) => {
                let mut text = String::new();
                for p in parts {
                    match p["type"].as_str() {
                        Some("text") => text.push_str(p["text"].as_str().unwrap_or("")),
                        Some("image_url") => {
                            let url = p["image_url"]["url"].as_str().unwrap_or("");
                            let Some(data) = url.strip_prefix("data:image/").and_then(|r| r.split_once(";base64,"))
                            else {
                                return err(
                                    StatusCode::BAD_REQUEST,
                                    "Invalid image_url: the fake takes only data: URLs".into(),
                                );
                            };
                            match b64(data.1) {
                                Ok(b) => images.push(b),
                                Err(e) => return err(StatusCode::BAD_REQUEST, e),
                            }
                        }
                        _ => return err(StatusCode::BAD_REQUEST, "unsupported content part type".into()),
                    }
                }
                texts.push(text);
            }
            _ => return err(StatusCode::BAD_REQUEST, "'content' must be a string or an array".into()),
        }
    }
    if let Err(e) = record(&state, "/v1/chat/completions", &body, images.clone(), texts) {
        return err(StatusCode::BAD_REQUEST, format!("failed to load image: {e}"));
    }
    wait(&state).await;
    match reply(&state, images.first().map(Vec::as_slice), &schema_categories(schema)) {
        Ok(content) => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000, "model": state.0,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340},
        }))
        .into_response(),
        Err(code) => err(StatusCode::from_u16(code).unwrap(), "Internal Server Error".into()),
    }
}

/// A `w`×`h` RGB PNG whose pixels come from `seed` (different seeds,
/// different bytes, different scores).
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(png::ColorType::Rgb);
        e.set_depth(png::BitDepth::Eight);
        let mut wr = e.write_header().unwrap();
        let data: Vec<u8> = (0..w * h * 3)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        wr.write_image_data(&data).unwrap();
    }
    out
}
