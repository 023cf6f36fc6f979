//! The dashboard: one server-rendered page with six tabs (Story, Cast,
//! Script, Produce, Review, Publish) over the project's files and the build
//! graph, plus the small requests its script makes.
//!
//! The page is rendered from the project as it is on disk at each load
//! ([`render`]); the Produce tab then follows the watcher's typed build
//! events over `GET /events`. Changes are POSTs ([`guard`] checks them):
//! saving a line of the script ([`script`]), starting or cancelling the
//! watcher's build. Every asset is embedded in the binary (`assets/dashboard/`).

pub mod files;
pub mod guard;
mod publish;
mod render;
mod review;
mod script;
mod writer;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::serve::Served;
use crate::graph::explain::Reason;
use crate::session::{OpenError, Session};

const APP_JS: &str = include_str!("../../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../../assets/dashboard/app.css");

/// The dashboard's routes (the server adds `/events`, `/status.json`, `/graph.json`).
pub fn routes() -> Router<Served> {
    Router::new()
        .route("/", get(page))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/out/{*path}", get(files::out))
        .route("/object/{hash}/{suffix}", get(files::object))
        .route("/api/why", get(why))
        .route("/export/{episode}", get(fountain))
        .route("/subtitles/{episode}", get(subtitles))
        .route("/api/build", post(start_build))
        .route("/api/cancel", post(cancel_build))
        .route("/api/script/line", post(script::save_line))
        .route("/api/script/action", post(script::save_action))
        .route("/api/publish/{episode}", post(publish::publish))
        .route("/api/write/{episode}", post(writer::write))
        .route("/api/script/rewrite", post(writer::rewrite))
        .route("/api/review", post(review::decide_one))
}

fn asset(mime: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// Open the project as it is now, off the async threads; the diagnostic
/// text when it has mistakes.
async fn open(served: &Served) -> Result<Session, String> {
    let (root, profile) = (served.root.clone(), served.profile.clone());
    tokio::task::spawn_blocking(move || {
        Session::open(&root, profile.as_deref(), 1).map_err(|e| match e {
            OpenError::Project(d) => plain_all(d),
            e @ OpenError::Cache { .. } => format!("{e}"),
        })
    })
    .await
    .unwrap_or_else(|e| Err(format!("internal error: {e}")))
}

/// The project's mistakes as plain text: one alone, several with their summary.
pub(crate) fn plain_all(mut d: crate::project::Diagnostics) -> String {
    if d.errors.len() == 1 {
        plain(&d.errors.remove(0))
    } else {
        plain(&d)
    }
}

/// A diagnostic as plain text (no colours), for the page.
pub(crate) fn plain(d: &dyn miette::Diagnostic) -> String {
    let mut text = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    if handler.render_report(&mut text, d).is_err() {
        return d.to_string();
    }
    text
}

#[derive(Deserialize)]
struct PageQuery {
    /// The episode the Script and Publish tabs show.
    ep: Option<String>,
    /// Asked right after `build_finished`: wait until the watcher has
    /// saved that build's state (a few seconds at most).
    settled: Option<String>,
}

async fn page(State(served): State<Served>, Query(q): Query<PageQuery>) -> Response {
    if q.settled.is_some() {
        served.settled(std::time::Duration::from_secs(10)).await;
    }
    let html = match open(&served).await {
        // Rendering reads the episodes' chapters with ffprobe: off the async threads.
        Ok(session) => {
            let to = served.publish_to.clone();
            tokio::task::spawn_blocking(move || render::page(&session, q.ep.as_deref(), to.as_deref()))
                .await
                .unwrap_or_else(|e| render::broken(&format!("internal error: {e}")))
        }
        Err(text) => render::broken(&text),
    };
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

#[derive(Deserialize)]
struct WhyQuery {
    node: String,
}

/// `studio why NODE` as text, and the node's recorded outputs.
async fn why(State(served): State<Served>, Query(q): Query<WhyQuery>) -> Response {
    let session = match open(&served).await {
        Ok(s) => s,
        Err(text) => return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": text}))).into_response(),
    };
    let Some(n) = session.graph.nodes.iter().position(|n| n.id == q.node) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such node"}))).into_response();
    };
    let closure = session.graph.closure(&[n]);
    let plan: HashMap<usize, Reason> = session.plan(&closure).into_iter().collect();
    let text = super::why::explain_text(&session, &plan, n);
    let outputs: Vec<_> = session
        .state
        .node(&q.node)
        .map(|s| {
            s.outputs
                .iter()
                .map(|o| {
                    json!({
                        "suffix": o.suffix.to_string(),
                        "url": format!("/object/{}/{}", o.hash, o.suffix),
                        "mime": files::mime(&o.suffix.to_string()),
                        "size": o.size,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"node": q.node, "why": text, "outputs": outputs})),
    )
        .into_response()
}

/// `studio export EP` (Fountain), as a download.
async fn fountain(State(served): State<Served>, Path(file): Path<String>) -> Response {
    let Some(ep) = file.strip_suffix(".fountain") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let session = match open(&served).await {
        Ok(s) => s,
        Err(text) => return (StatusCode::UNPROCESSABLE_ENTITY, text).into_response(),
    };
    match session.project.episode(ep) {
        Some(e) if e.screenplay.is_some() => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.fountain\"", e.id),
                ),
            ],
            crate::export::fountain(&session.project, e),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The episode's subtitles as WebVTT (browsers' `<track>` reads no SRT).
async fn subtitles(State(served): State<Served>, Path(file): Path<String>) -> Response {
    // `ep01.vtt`, or a dub's `ep01.ja.vtt`.
    let Some(stem) = file.strip_suffix(".vtt") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (ep, suffix) = match stem.split_once('.') {
        Some((ep, code)) => (ep, format!("{code}.srt")),
        None => (stem, "srt".to_string()),
    };
    let session = match open(&served).await {
        Ok(s) => s,
        Err(text) => return (StatusCode::UNPROCESSABLE_ENTITY, text).into_response(),
    };
    let srt = session
        .state
        .node(&format!("episode:{ep}"))
        .and_then(|s| s.outputs.iter().find(|o| o.suffix.as_str() == suffix))
        .and_then(|o| std::fs::read_to_string(session.cache.object_path(&o.hash)).ok());
    match srt {
        Some(srt) => ([(header::CONTENT_TYPE, "text/vtt; charset=utf-8")], srt_to_vtt(&srt)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// SRT → WebVTT: a header, and `.` for `,` in the cue timings.
fn srt_to_vtt(srt: &str) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for line in srt.lines() {
        if line.contains(" --> ") {
            out.push_str(&line.replace(',', "."));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

async fn start_build(State(served): State<Served>) -> Response {
    let started = served.control.request_start();
    axum::Json(json!({"started": started})).into_response()
}

async fn cancel_build(State(served): State<Served>) -> Response {
    let cancelled = served.control.cancel();
    axum::Json(json!({"cancelled": cancelled})).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn vtt_from_srt() {
        let srt = "1\n00:00:01,000 --> 00:00:02,500\nHi, you\n";
        assert_eq!(
            super::srt_to_vtt(srt),
            "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.500\nHi, you\n"
        );
    }
}
