//! `studio watch --serve PORT`: the latest build on loopback.
//!
//! - `/`            a page that plays the episode and reloads it after each build
//! - `/status.json` the watcher's state: generation, what was rebuilt, episodes
//! - `/events`      server-sent events: every [`BuildEvent`] of the current
//!   build (those it already sent first, so a late page misses nothing but
//!   progress reports), then live ones; the SSE event name is the event's `type`
//! - `/graph.json`  the targets' graph (`studio graph --format json`)
//! - `/out/…`       files under `out/`, with range requests for seeking
//!
//! Only requests addressed to the bound loopback address are answered: a
//! `Host` other than `127.0.0.1:PORT` or `localhost:PORT` gets 421, so a
//! page whose DNS name was rebound to 127.0.0.1 cannot read the project.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use camino::Utf8PathBuf;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower_http::services::ServeDir;

use crate::build::{BuildEvent, Subscriber};

/// What the server answers from, shared with the watcher.
#[derive(Clone)]
pub struct Served {
    /// `/status.json`.
    pub status: Arc<Mutex<Value>>,
    /// `/graph.json`, rendered when a build starts.
    pub graph: Arc<Mutex<String>>,
    /// `/events`.
    pub feed: Arc<Feed>,
}

impl Served {
    pub fn new(status: Arc<Mutex<Value>>) -> Served {
        Served {
            status,
            graph: Arc::new(Mutex::new("{\"nodes\": []}\n".to_string())),
            feed: Arc::new(Feed::new()),
        }
    }

    pub fn set_graph(&self, json: String) {
        *self.graph.lock().expect("graph") = json;
    }
}

/// The most events of one build kept for pages that connect late; beyond
/// it the oldest are dropped (a season builds a few thousand nodes).
const HISTORY: usize = 100_000;
/// Live events a slow page may fall behind by before it misses some (it is
/// told how many, in a `lagged` event).
const LIVE: usize = 4096;

/// One event as the stream sends it.
#[derive(Debug)]
pub struct FeedItem {
    name: &'static str,
    data: String,
}

/// Build events for `/events`: a subscriber of every build the watcher runs.
pub struct Feed {
    /// Under one lock, so a page gets each event once, in order.
    inner: Mutex<FeedInner>,
}

struct FeedInner {
    /// The current build's events, without progress reports.
    history: VecDeque<Arc<FeedItem>>,
    live: broadcast::Sender<Arc<FeedItem>>,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            inner: Mutex::new(FeedInner {
                history: VecDeque::new(),
                live: broadcast::channel(LIVE).0,
            }),
        }
    }

    /// The current build's events so far, and the ones to come.
    fn subscribe(&self) -> (Vec<Arc<FeedItem>>, broadcast::Receiver<Arc<FeedItem>>) {
        let inner = self.inner.lock().expect("feed");
        (inner.history.iter().cloned().collect(), inner.live.subscribe())
    }
}

impl Subscriber for Feed {
    fn on_event(&self, event: &BuildEvent) {
        let item = Arc::new(FeedItem {
            name: event.name(),
            data: serde_json::to_string(event).expect("build events serialize"),
        });
        let mut inner = self.inner.lock().expect("feed");
        let FeedInner { history, live } = &mut *inner;
        if matches!(event, BuildEvent::BuildStarted { .. }) {
            history.clear();
        }
        if !matches!(event, BuildEvent::NodeProgress { .. }) {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(item.clone());
        }
        // No page listening is fine.
        let _ = live.send(item);
    }
}

/// Bind 127.0.0.1:`port` and serve in the background; returns the address.
pub async fn start(port: u16, out: Utf8PathBuf, served: Served) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(page))
        .route("/status.json", get(status_json))
        .route("/events", get(events))
        .route("/graph.json", get(graph_json))
        .nest_service("/out", ServeDir::new(out.as_std_path()))
        .with_state(served)
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

async fn status_json(State(served): State<Served>) -> impl IntoResponse {
    let v = served.status.lock().expect("status").clone();
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(v))
}

async fn graph_json(State(served): State<Served>) -> impl IntoResponse {
    let graph = served.graph.lock().expect("graph").clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        graph,
    )
}

/// The current build's events so far, then live ones, as server-sent events.
async fn events(State(served): State<Served>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (history, receiver) = served.feed.subscribe();
    let live = stream::unfold(receiver, |mut receiver| async move {
        let item = match receiver.recv().await {
            Ok(item) => item,
            Err(broadcast::error::RecvError::Lagged(missed)) => Arc::new(FeedItem {
                name: "lagged",
                data: json!({"type": "lagged", "missed": missed}).to_string(),
            }),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((item, receiver))
    });
    let items = stream::iter(history).chain(live);
    Sse::new(items.map(|item| Ok(Event::default().event(item.name).data(&item.data)))).keep_alive(KeepAlive::default())
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
