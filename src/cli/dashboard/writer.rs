//! The LLM writer from the page: the Story tab's Write button (`studio
//! write EP` for an episode without a screenplay) and the Script tab's
//! Rewrite buttons (`studio write --dialogue EP/SCENE[/SHOT]`).
//!
//! Both run the command's own code with its messages captured, and answer
//! with them, so the page shows what the terminal would: the progress, and
//! on failure the diagnostic with its fix. Ids come from the project, never
//! from the request; the watcher sees the file change and rebuilds.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::super::serve::Served;
use super::super::write::{rewrite_dialogue, write_episode};
use super::super::{EXIT_IO, EXIT_OK};

/// `POST /api/write/EP`.
pub async fn write(State(served): State<Served>, Path(ep): Path<String>) -> Response {
    let session = match super::open(&served).await {
        Ok(s) => s,
        Err(text) => return refused(StatusCode::UNPROCESSABLE_ENTITY, text, String::new()),
    };
    let episode = match session.project.episode(&ep) {
        None => return refused(StatusCode::NOT_FOUND, "no such episode".into(), String::new()),
        Some(e) if e.screenplay.is_some() => {
            let e = format!("{} has a screenplay; edit it in Script", e.id);
            return refused(StatusCode::CONFLICT, e, String::new());
        }
        Some(e) => e.id.clone(),
    };
    drop(session);
    let (root, profile) = (served.root.clone(), served.profile.clone());
    let id = episode.clone();
    let (code, log) = tokio::task::spawn_blocking(move || write_episode(&root, profile.as_deref(), &id))
        .await
        .unwrap_or_else(|e| (EXIT_IO, format!("internal error: {e}")));
    answer(
        code,
        log,
        json!({"wrote": format!("episodes/{episode}.yaml")}),
        &episode,
    )
}

#[derive(Debug, Deserialize)]
pub struct Rewrite {
    episode: String,
    scene: String,
    /// One shot's dialogue; without it, every shot of the scene.
    shot: Option<String>,
}

/// `POST /api/script/rewrite {episode, scene, shot?}`.
pub async fn rewrite(State(served): State<Served>, Json(r): Json<Rewrite>) -> Response {
    let session = match super::open(&served).await {
        Ok(s) => s,
        Err(text) => return refused(StatusCode::UNPROCESSABLE_ENTITY, text, String::new()),
    };
    // The ids the command gets are the project's own.
    let found = session.project.episode(&r.episode).and_then(|e| {
        let scene = e.screenplay.as_ref()?.scenes.iter().find(|s| s.id == r.scene)?;
        let shot = match &r.shot {
            None => None,
            Some(id) => Some(scene.shots.iter().find(|sh| &sh.id == id)?.id.clone()),
        };
        Some((e.id.clone(), scene.id.clone(), shot))
    });
    drop(session);
    let Some((ep, scene, shot)) = found else {
        return refused(
            StatusCode::NOT_FOUND,
            "no such episode, scene or shot".into(),
            String::new(),
        );
    };
    let what = match &shot {
        Some(sh) => format!("{ep}/{scene}/{sh}"),
        None => format!("{ep}/{scene}"),
    };
    let (root, profile) = (served.root.clone(), served.profile.clone());
    let (code, log) =
        tokio::task::spawn_blocking(move || rewrite_dialogue(&root, profile.as_deref(), &ep, &scene, shot.as_deref()))
            .await
            .unwrap_or_else(|e| (EXIT_IO, format!("internal error: {e}")));
    answer(code, log, json!({"rewrote": what}), &what)
}

fn answer(code: u8, log: String, mut ok: serde_json::Value, what: &str) -> Response {
    if code == EXIT_OK {
        ok["log"] = json!(log);
        return Json(ok).into_response();
    }
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("writing {what} failed (exit {code}); nothing was written"),
        log,
    )
}

fn refused(status: StatusCode, error: String, log: String) -> Response {
    (status, Json(json!({ "error": error, "log": log }))).into_response()
}
