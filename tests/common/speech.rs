//! A fake OpenAI-compatible speech server on loopback, answering as
//! travisvn/openai-edge-tts's app/server.py does: `POST /v1/audio/speech`
//! with JSON; no `input` is `400 {"error": "Missing 'input' in request body"}`;
//! otherwise the file in the requested `response_format` (here always a real
//! 24 kHz mono WAV: a tone, 0.3 s per word). It records every request and
//! can be told to fail (`500`, as Flask answers an exception).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct Fake {
    pub requests: Arc<Mutex<Vec<Value>>>,
    pub failing: Arc<AtomicBool>,
}

/// A WAV of `seconds` of a 220 Hz tone at 24 kHz, s16 mono.
pub fn tone_wav(seconds: f64) -> Vec<u8> {
    let rate = 24_000u32;
    let n = (seconds * f64::from(rate)) as u32;
    let mut w = Vec::with_capacity(44 + 2 * n as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = (0.4 * (2.0 * std::f64::consts::PI * 220.0 * t).sin() * 32767.0) as i16;
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

async fn speech(State(fake): State<Fake>, body: Bytes) -> Response {
    let Ok(data) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    fake.requests.lock().unwrap().push(data.clone());
    let Some(text) = data.get("input").and_then(Value::as_str) else {
        let e = json!({"error": "Missing 'input' in request body"});
        return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response();
    };
    if fake.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "<h1>Internal Server Error</h1>").into_response();
    }
    let words = text.split_whitespace().count().max(1);
    let wav = tone_wav(0.3 * words as f64);
    ([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()
}

/// Serve the fake on a free loopback port; returns its port.
pub fn serve(fake: Fake) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route("/v1/audio/speech", post(speech))
                .route("/audio/speech", post(speech))
                .with_state(fake);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}
