//! The Publish tab's button: `POST /api/publish/EP` lays the built episode
//! out in the `--publish-to` library and asks Jellyfin to rescan, with the
//! same code as `studio publish` (the watcher keeps the `publish` node built).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::super::publish::{place, rescan};
use super::super::serve::Served;
use crate::graph::explain::Reason;

pub async fn publish(State(served): State<Served>, Path(ep): Path<String>) -> Response {
    let Some(to) = served.publish_to.clone() else {
        let e = "this studio publishes nowhere: start it with `studio serve --publish-to DIR`";
        return (StatusCode::CONFLICT, Json(json!({ "error": e }))).into_response();
    };
    let session = match super::open(&served).await {
        Ok(s) => s,
        Err(text) => return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": text }))).into_response(),
    };
    // The node ids come from the graph, not from the request.
    let Some(episode) = session.project.episode(&ep) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no episode `{ep}`") })),
        )
            .into_response();
    };
    let (pub_id, ep_id) = (format!("publish:{}", episode.id), format!("episode:{}", episode.id));
    let done = tokio::task::spawn_blocking(move || {
        let fresh = |id: &str| {
            let Some(n) = session.graph.nodes.iter().position(|n| n.id == id) else {
                return false;
            };
            let plan: HashMap<usize, Reason> = session.plan(&session.graph.closure(&[n])).into_iter().collect();
            plan.get(&n) == Some(&Reason::Fresh)
        };
        let (Some(p), Some(e)) = (session.state.node(&pub_id), session.state.node(&ep_id)) else {
            return Err((StatusCode::CONFLICT, format!("{pub_id} is not built yet")));
        };
        if !fresh(&pub_id) {
            return Err((StatusCode::CONFLICT, format!("{pub_id} is stale: wait for the build")));
        }
        let placed = place(&session, &p.outputs, &e.outputs, &to)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("publishing to {to}: {e}")))?;
        let rescan = match rescan(&session) {
            Ok(Some(url)) => format!("asked Jellyfin at {url} to rescan its libraries"),
            Ok(None) => "no Jellyfin to ask for a rescan (none configured, or no token)".to_string(),
            Err(e) => format!("the files are in place, but the Jellyfin rescan failed: {e}"),
        };
        Ok(json!({ "published": ep_id, "to": to, "placed": placed, "rescan": rescan }))
    })
    .await;
    match done {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err((status, e))) => (status, Json(json!({ "error": e }))).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("internal error: {e}") })),
        )
            .into_response(),
    }
}
