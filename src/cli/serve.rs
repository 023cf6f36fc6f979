//! `studio serve` and `studio watch --serve PORT`: the dashboard and the
//! latest build over HTTP.
//!
//! - `/`            the dashboard ([`super::dashboard`]): six tabs over the project
//! - `/status.json` the watcher's state: generation, what was rebuilt, episodes
//! - `/events`      server-sent events: every [`BuildEvent`] of the current
//!   build (those it already sent first, so a late page misses nothing but
//!   progress reports), then live ones; the SSE event name is the event's `type`
//! - `/graph.json`  the targets' graph (`studio graph --format json`)
//! - `/out/…`       files under `out/`, with range requests for seeking
//!
//! Every request passes [`super::dashboard::guard`] first: without a token
//! only requests addressed to the bound loopback address are answered (a
//! `Host` other than `127.0.0.1:PORT` or `localhost:PORT` gets 421, so a page
//! whose DNS name was rebound to 127.0.0.1 cannot read the project); with
//! one, every request must carry it; a POST must also come from the page
//! itself.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use camino::Utf8PathBuf;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::dashboard::{self, guard::Guard};
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
    /// Start and cancel builds from the page.
    pub control: Arc<Control>,
    /// The project folder and the profile the watcher builds with.
    pub root: Utf8PathBuf,
    pub profile: Option<String>,
    /// The library folder the Publish tab publishes to (`--publish-to`).
    pub publish_to: Option<Utf8PathBuf>,
    /// Counts the builds whose state the watcher saved: a page refreshed
    /// after `build_finished` waits for it ([`Served::settled`]).
    pub saved: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Served {
    pub fn new(status: Arc<Mutex<Value>>, root: Utf8PathBuf, profile: Option<String>) -> Served {
        Served {
            status,
            graph: Arc::new(Mutex::new("{\"nodes\": []}\n".to_string())),
            feed: Arc::new(Feed::new()),
            control: Arc::new(Control::default()),
            root,
            profile,
            publish_to: None,
            saved: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// The watcher saved a build's state.
    pub fn mark_saved(&self) {
        self.saved.send_modify(|n| *n += 1);
    }

    /// Wait (up to `limit`) until no build is between its end and the
    /// saving of its state, so what is read from disk is that build's.
    pub async fn settled(&self, limit: std::time::Duration) {
        let mut saved = self.saved.subscribe();
        let building = || self.status.lock().expect("status")["state"] == "building";
        if building() {
            let _ = tokio::time::timeout(limit, saved.changed()).await;
        }
    }

    pub fn set_graph(&self, json: String) {
        *self.graph.lock().expect("graph") = json;
    }
}

/// The page's hold on the watcher's builds: cancel the running one, or
/// start one when none runs.
#[derive(Default)]
pub struct Control {
    /// The running build's cancel token (a child of the watcher's own).
    running: Mutex<Option<CancellationToken>>,
    /// Set when the page asks for a build; the idle watcher waits on it.
    pub start: Notify,
}

impl Control {
    /// A build starts: its cancel token, a child of `parent`.
    pub fn begin(&self, parent: &CancellationToken) -> CancellationToken {
        let token = parent.child_token();
        *self.running.lock().expect("control") = Some(token.clone());
        token
    }

    /// The build ended.
    pub fn end(&self) {
        *self.running.lock().expect("control") = None;
    }

    /// Cancel the running build; false when none runs.
    pub fn cancel(&self) -> bool {
        match self.running.lock().expect("control").as_ref() {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// Ask for a build; false when one is running already.
    pub fn request_start(&self) -> bool {
        if self.running.lock().expect("control").is_some() {
            return false;
        }
        self.start.notify_one();
        true
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
    /// A build has started and not finished: a second `build_started` (a
    /// build that grew, the review loop's) announces more, not a new build.
    open: bool,
    live: broadcast::Sender<Arc<FeedItem>>,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            inner: Mutex::new(FeedInner {
                history: VecDeque::new(),
                open: false,
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
        let FeedInner { history, open, live } = &mut *inner;
        match event {
            BuildEvent::BuildStarted { .. } if !*open => {
                history.clear();
                *open = true;
            }
            BuildEvent::BuildFinished { .. } => *open = false,
            _ => {}
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

/// Where to listen, and the token requests must carry.
#[derive(Debug, Clone)]
pub struct Listen {
    pub bind: IpAddr,
    pub port: u16,
    pub token: Option<String>,
    /// `studio serve --publish-to DIR`.
    pub publish_to: Option<Utf8PathBuf>,
}

/// Bind and serve in the background; returns the address.
pub async fn start(listen: &Listen, served: Served) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((listen.bind, listen.port)).await?;
    let addr = listener.local_addr()?;
    let guard = Arc::new(Guard::new(addr, listen.token.clone()));
    let app = Router::new()
        .route("/status.json", get(status_json))
        .route("/events", get(events))
        .route("/graph.json", get(graph_json))
        .merge(dashboard::routes())
        .with_state(served)
        .layer(middleware::from_fn_with_state(guard, dashboard::guard::check));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("warning: the server stopped: {e}");
        }
    });
    Ok(addr)
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

/// `studio serve`: watch mode plus the dashboard.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to build (default: every episode with a screenplay).
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// The port (0: any free port).
    #[arg(long, default_value_t = 8470)]
    port: u16,
    /// The address to listen on; anything but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    bind: IpAddr,
    /// A token every request must carry (default: $STUDIO_TOKEN); open the
    /// page once as `http://HOST:PORT/?token=T`.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// The library folder (Jellyfin's TV library root) the Publish tab
    /// publishes to (default: `publish.library` in studio.yaml); the watcher
    /// then keeps each episode's `publish` node built.
    #[arg(long, value_name = "DIR")]
    publish_to: Option<Utf8PathBuf>,
    /// CPU jobs at once (default: the number of cores).
    #[arg(short, long)]
    jobs: Option<usize>,
    /// Print one JSON event per line on stdout instead of progress on stderr.
    #[arg(long)]
    json: bool,
}

/// The fewest characters a token may have.
const TOKEN_MIN: usize = 16;

pub fn run(root: &camino::Utf8Path, profile: Option<&str>, remote: &super::RemoteArgs, args: Args) -> u8 {
    let token = args
        .token
        .or_else(|| std::env::var("STUDIO_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if let Some(t) = &token
        && (t.len() < TOKEN_MIN || !t.chars().all(|c| c.is_ascii_graphic()))
    {
        eprintln!(
            "error: the token must be at least {TOKEN_MIN} printable ASCII characters without spaces\n  help: e.g. `--token $(openssl rand -hex 16)`"
        );
        return super::EXIT_INVALID;
    }
    if !args.bind.is_loopback() && token.is_none() {
        eprintln!(
            "error: --bind {} makes the studio reachable from other machines; it needs a token\n  help: add `--token T` (or set STUDIO_TOKEN), or leave --bind out to serve on 127.0.0.1",
            args.bind
        );
        return super::EXIT_INVALID;
    }
    let mut targets = args.targets;
    let mut index = crate::cache::index::SourceIndex::load(&root.join("cache/sources.json"));
    let project = match crate::project::load(root, profile, &crate::stages::registry::catalog(), &mut index) {
        Ok((project, _)) => project,
        Err(d) => {
            super::report(d);
            return super::EXIT_INVALID;
        }
    };
    // `--publish-to`, else studio.yaml's `publish.library`.
    let publish_to = args.publish_to.or_else(|| project.library.clone());
    if publish_to.is_some() {
        let more = publish_targets(&project, &targets);
        if targets.is_empty() {
            targets.push("all".to_string());
        }
        targets.extend(more);
    }
    // The Cast tab plays each character's voice sample.
    if !project.characters.is_empty() {
        if targets.is_empty() {
            targets.push("all".to_string());
        }
        targets.push("cast".to_string());
    }
    drop(project);
    let watch = super::watch::Args {
        targets,
        jobs: args.jobs,
        debounce: 200,
        serve: Some(args.port),
        json: args.json,
        listen: Some(Listen {
            bind: args.bind,
            port: args.port,
            token,
            publish_to,
        }),
    };
    super::watch::run(root, profile, remote, watch)
}

/// The `publish:EP` nodes of the targeted episodes (every episode with a
/// screenplay when no target is given), so the watcher keeps them built.
fn publish_targets(project: &crate::project::model::Project, targets: &[String]) -> Vec<String> {
    project
        .episodes
        .iter()
        .filter(|e| e.screenplay.is_some())
        .filter(|e| targets.is_empty() || targets.iter().any(|t| *t == e.id || t == "all"))
        .map(|e| format!("publish:{}", e.id))
        .collect()
}
