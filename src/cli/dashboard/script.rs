//! Saving the Script tab's edits: one dialogue line, or a shot's action.
//!
//! An edit goes through the same splice as `studio write --dialogue`
//! ([`crate::write::splice`]: the shot's `dialogue:` or `action:` block is
//! replaced by byte range, every other byte of the file stays) and the same
//! check as any save of a screenplay; a new text that does not pass is
//! answered 422 with the diagnostic, and the file is left as it was.

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use camino::Utf8Path;
use serde::Deserialize;
use serde_json::json;

use super::super::serve::Served;
use crate::cache::atomic::write_atomic;
use crate::project::model::{Episode, Project, Shot};
use crate::write::store::{Owner, Written};
use crate::write::validate::LineDraft;
use crate::write::{WriteError, offsets, render, splice};

/// One save at a time: each reads the file, splices and writes it.
static SAVING: Mutex<()> = Mutex::new(());

#[derive(Debug, Deserialize)]
pub struct LineEdit {
    episode: String,
    scene: String,
    shot: String,
    /// The line's index in the shot's dialogue.
    index: usize,
    text: String,
}

#[derive(Debug, Deserialize)]
pub struct ActionEdit {
    episode: String,
    scene: String,
    shot: String,
    action: String,
}

/// Why an edit was not saved.
enum Refusal {
    /// No such episode, scene, shot or line: 404.
    Missing(String),
    /// The project or the new screenplay has mistakes: 422 with the diagnostic.
    Invalid(String),
    /// Reading or writing failed: 500.
    Io(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, field, text) = match self {
            Refusal::Missing(t) => (StatusCode::NOT_FOUND, "error", t),
            Refusal::Invalid(t) => (StatusCode::UNPROCESSABLE_ENTITY, "diagnostic", t),
            Refusal::Io(t) => (StatusCode::INTERNAL_SERVER_ERROR, "error", t),
        };
        (status, Json(json!({ field: text }))).into_response()
    }
}

pub async fn save_line(State(served): State<Served>, Json(edit): Json<LineEdit>) -> Response {
    let (scene, shot) = (edit.scene.clone(), edit.shot.clone());
    save(
        served,
        edit.episode.clone(),
        scene,
        shot,
        move |text, off, sh, project| {
            let mut lines: Vec<LineDraft> = sh
                .dialogue
                .iter()
                .map(|l| LineDraft {
                    speaker: project.characters[l.speaker].id.clone(),
                    text: l.text.clone(),
                })
                .collect();
            let line = lines
                .get_mut(edit.index)
                .ok_or_else(|| Refusal::Missing(format!("shot `{}` has no line {}", sh.id, edit.index + 1)))?;
            line.text = edit.text.clone();
            // Every line keeps its dub texts (the edit is of the default language's).
            let dubs: Vec<_> = sh
                .dialogue
                .iter()
                .map(|l| crate::write::line_dubs(project, l))
                .collect();
            splice::set_key(text, off, "dialogue", |col| render::dialogue_block(&lines, &dubs, col))
                .map_err(Refusal::Invalid)
        },
    )
    .await
}

pub async fn save_action(State(served): State<Served>, Json(edit): Json<ActionEdit>) -> Response {
    let (scene, shot) = (edit.scene.clone(), edit.shot.clone());
    save(served, edit.episode.clone(), scene, shot, move |text, off, _, _| {
        splice::set_key(text, off, "action", |_| {
            format!("action: {}\n", render::scalar(&edit.action))
        })
        .map_err(Refusal::Invalid)
    })
    .await
}

type Splice = dyn Fn(&str, usize, &Shot, &Project) -> Result<String, Refusal> + Send;

async fn save(
    served: Served,
    episode: String,
    scene: String,
    shot: String,
    splice: impl Fn(&str, usize, &Shot, &Project) -> Result<String, Refusal> + Send + 'static,
) -> Response {
    let root = served.root.clone();
    let profile = served.profile.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _one = SAVING.lock().unwrap_or_else(|p| p.into_inner());
        edit(&root, profile.as_deref(), &episode, &scene, &shot, &splice)
    })
    .await;
    match done {
        Ok(Ok(changed)) => Json(json!({ "changed": changed })).into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(e) => Refusal::Io(format!("internal error: {e}")).into_response(),
    }
}

/// Splice the edit into the screenplay, check it, write it; whether the
/// file changed.
fn edit(
    root: &Utf8Path,
    profile: Option<&str>,
    episode: &str,
    scene: &str,
    shot: &str,
    splice: &Splice,
) -> Result<bool, Refusal> {
    let mut index = crate::cache::index::SourceIndex::load(&root.join("cache/sources.json"));
    let (project, _) = crate::project::load(root, profile, &crate::stages::registry::catalog(), &mut index)
        .map_err(|d| Refusal::Invalid(super::plain_all(d)))?;
    let ep = project
        .episode(episode)
        .ok_or_else(|| Refusal::Missing(format!("no episode `{episode}`")))?;
    let sh = find_shot(ep, scene, shot)?;
    // The file name comes from the project's own id, not the request.
    let rel = format!("episodes/{}.yaml", ep.id);
    let path = root.join(&rel);
    let text = std::fs::read_to_string(&path).map_err(|e| Refusal::Io(format!("reading {rel}: {e}")))?;
    let (_, _, shots) = offsets(&text)
        .map_err(|e| Refusal::Invalid(write_error(e)))?
        .into_iter()
        .find(|(id, ..)| id == scene)
        .ok_or_else(|| Refusal::Missing(format!("scene `{scene}` is not in {rel}")))?;
    let (_, off) = shots
        .into_iter()
        .find(|(id, _)| id == shot)
        .ok_or_else(|| Refusal::Missing(format!("shot `{scene}/{shot}` is not in {rel}")))?;
    let new = splice(&text, off, sh, &project)?;
    crate::project::load::check_screenplay(&project, rel.as_ref(), &new, &ep.id)
        .map_err(|d| Refusal::Invalid(super::plain_all(d)))?;
    if new == text {
        return Ok(false);
    }
    let mut written = Written::load(&root.join("cache"));
    let owner = written.owner(root, &rel);
    write_atomic(&path, new.as_bytes()).map_err(|e| Refusal::Io(format!("writing {rel}: {e}")))?;
    if owner == Owner::Studio {
        written.record(&rel, new.as_bytes());
        written
            .save()
            .map_err(|e| Refusal::Io(format!("recording the save in cache/written.json: {e}")))?;
    }
    Ok(true)
}

fn find_shot<'a>(ep: &'a Episode, scene: &str, shot: &str) -> Result<&'a Shot, Refusal> {
    let sp = ep
        .screenplay
        .as_ref()
        .ok_or_else(|| Refusal::Missing(format!("{} has no screenplay yet", ep.id)))?;
    sp.scenes
        .iter()
        .find(|s| s.id == scene)
        .and_then(|s| s.shots.iter().find(|sh| sh.id == shot))
        .ok_or_else(|| Refusal::Missing(format!("{} has no shot `{scene}/{shot}`", ep.id)))
}

fn write_error(e: WriteError) -> String {
    match e {
        WriteError::Target(t) => t,
        WriteError::Project(d) => super::plain_all(d),
        other => format!("{other:?}"),
    }
}
