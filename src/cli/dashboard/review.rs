//! The Review tab's buttons: `POST /api/review {hash, decision, category?}`
//! records a person's decision about a candidate in approvals.yaml with the
//! same code as `studio review approve|reject` ([`decide`]: the file is
//! checked before and after, one line is spliced, comments stay). The
//! watcher sees the file change and rebuilds what the decision changes.

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::super::review::{candidates_known, decide, resolve};
use super::super::serve::Served;
use crate::cache::atomic::write_atomic;
use crate::project::approvals::{self, Decision};

/// One decision at a time: each reads, splices and writes the file.
static DECIDING: Mutex<()> = Mutex::new(());

#[derive(Debug, Deserialize)]
pub struct Decide {
    /// The candidate's image hash (or a prefix of at least 12 hex digits).
    hash: String,
    /// `approve` or `reject`.
    decision: String,
    /// A rejection's category (one of the rules' `categories`).
    category: Option<String>,
}

pub async fn decide_one(State(served): State<Served>, Json(d): Json<Decide>) -> Response {
    let decision = match (d.decision.as_str(), d.category) {
        ("approve", _) => Decision::Approve,
        ("reject", Some(category)) => Decision::Reject { category },
        ("reject", None) => return refused(StatusCode::UNPROCESSABLE_ENTITY, "a rejection needs a category"),
        _ => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the decision is `approve` or `reject`",
            );
        }
    };
    let session = match super::open(&served).await {
        Ok(s) => s,
        Err(text) => return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "diagnostic": text }))).into_response(),
    };
    let root = served.root.clone();
    let done = tokio::task::spawn_blocking(move || {
        let rules = match crate::graph::review::LoopRules::of(&session.project) {
            Ok(Some(r)) => r,
            Ok(None) => return Err((StatusCode::CONFLICT, "this profile has no review loop".to_string())),
            Err(d) => return Err((StatusCode::UNPROCESSABLE_ENTITY, super::plain_all(d))),
        };
        let (cands, known) = candidates_known(&session, &rules);
        let _one = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
        let path = root.join(approvals::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("reading {path}: {e}"))),
        };
        let hashes = [d.hash.clone()];
        let new = decide(&text, &cands, &known, &hashes, &decision)
            .map_err(|d| (StatusCode::UNPROCESSABLE_ENTITY, super::plain_all(d)))?;
        write_atomic(&path, new.as_bytes())
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("writing {path}: {e}")))?;
        let c = resolve(&cands, &d.hash).map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let what = match &decision {
            Decision::Approve => "approved".to_string(),
            Decision::Reject { category } => format!("rejected ({category})"),
        };
        Ok(json!({
            "recorded": format!("{} {}: {what}", c.character, &c.hash[..12.min(c.hash.len())]),
            "character": c.character,
            "hash": c.hash,
        }))
    })
    .await;
    match done {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err((status, text))) => (status, Json(json!({ "diagnostic": text }))).into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, &format!("internal error: {e}")),
    }
}

fn refused(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}
