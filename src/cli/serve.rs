//! `studio watch --serve PORT`: the latest build on loopback.
//!
//! - `/`            a page that plays the episode and reloads it after each build
//! - `/status.json` the watcher's state: generation, what was rebuilt, episodes
//! - `/out/…`       files under `out/`, with range requests for seeking

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use camino::Utf8PathBuf;
use serde_json::Value;
use tower_http::services::ServeDir;

/// Bind 127.0.0.1:`port` and serve in the background; returns the address.
pub async fn start(port: u16, out: Utf8PathBuf, status: Arc<Mutex<Value>>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(page))
        .route("/status.json", get(status_json))
        .nest_service("/out", ServeDir::new(out.as_std_path()))
        .with_state(status);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("warning: --serve stopped: {e}");
        }
    });
    Ok(addr)
}

async fn status_json(State(status): State<Arc<Mutex<Value>>>) -> impl IntoResponse {
    let v = status.lock().expect("status").clone();
    ([(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(v))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Polls the status; when an episode's hash changes, reloads the player at
/// the same time position.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>studio watch</title>
<style>body{background:#111;color:#ddd;font:14px sans-serif;margin:2em}video{max-width:100%;max-height:80vh}</style>
</head><body>
<div id="state">connecting…</div>
<video id="player" controls></video>
<script>
let shown = null;
async function poll() {
  try {
    const s = await (await fetch('/status.json', {cache: 'no-store'})).json();
    document.getElementById('state').textContent =
      'build ' + s.generation + ': ' + s.state + (s.built ? ' (' + s.built.length + ' rebuilt)' : '') + (s.error ? '\n' + s.error : '');
    const ep = (s.episodes || [])[0];
    if (ep && ep.hash !== shown) {
      const v = document.getElementById('player');
      const t = v.currentTime || 0;
      v.src = ep.url + '?h=' + ep.hash;
      v.addEventListener('loadedmetadata', () => { v.currentTime = Math.min(t, v.duration || t); }, {once: true});
      shown = ep.hash;
    }
  } catch (e) {
    document.getElementById('state').textContent = 'watcher not reachable';
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"#;
