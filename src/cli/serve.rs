//! `studio watch --serve PORT`: the latest build on loopback.
//!
//! - `/`            a page that plays the episode and reloads it after each build
//! - `/status.json` the watcher's state: generation, what was rebuilt, episodes
//! - `/out/…`       files under `out/`, with range requests for seeking
//!
//! Only requests addressed to the bound loopback address are answered: a
//! `Host` other than `127.0.0.1:PORT` or `localhost:PORT` gets 421, so a
//! page whose DNS name was rebound to 127.0.0.1 cannot read the project.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
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
        .with_state(status)
        .layer(middleware::from_fn_with_state(
            Arc::new(allowed_hosts(addr.port())),
            only_loopback_host,
        ));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("warning: --serve stopped: {e}");
        }
    });
    Ok(addr)
}

/// The `Host` values that name the bound address (compared ignoring case).
fn allowed_hosts(port: u16) -> Vec<String> {
    vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")]
}

/// Pass requests whose `Host` is one of `allowed`; answer others 421.
async fn only_loopback_host(State(allowed): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if host.is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h))) {
        return next.run(request).await;
    }
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!("studio watch answers only requests for http://{}/\n", allowed[0]),
    )
        .into_response()
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
