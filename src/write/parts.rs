//! Regenerating part of a written screenplay: `--scene` (one scene's shots)
//! and `--dialogue` (the dialogue of a scene's shots, or of one shot),
//! spliced into the writer's file by byte range ([`super::splice`]).

use serde_json::{Value, json};

use super::validate::{DialogueDraft, LineDraft, ShotsDraft};
use super::{Llm, WriteError, base_context, char_ids, checker, render, schema, splice};
use crate::project::model::WriteStage;
use crate::project::model::{Episode, Project, Scene};
use crate::project::raw::RawScreenplay;

/// A scene of the loaded screenplay as the prompts see it.
pub(super) fn scene_json(project: &Project, s: &Scene) -> Value {
    json!({
        "id": s.id, "title": s.title, "description": s.description, "location": s.location,
        "time_of_day": s.time_of_day.as_str(), "mood": s.mood.as_str(),
        "target_duration": s.target_duration.unwrap_or_else(|| s.shots.iter().map(|sh| sh.duration).sum()),
        "state": s.state,
        "shots": s.shots.iter().map(|sh| json!({
            "id": sh.id, "type": sh.shot_type.as_str(), "angle": sh.angle.as_str(), "motion": sh.motion,
            "action": sh.action, "duration": sh.duration,
            "characters": sh.characters.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            "dialogue": sh.dialogue.iter().map(|l| json!({"speaker": project.characters[l.speaker].id, "text": l.text})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Byte offsets of the `id` values in a screenplay's text:
/// `(scene id, offset, [(shot id, offset)])`.
pub type Offsets = Vec<(String, usize, Vec<(String, usize)>)>;

pub fn offsets(text: &str) -> Result<Offsets, WriteError> {
    let raw: RawScreenplay =
        serde_saphyr::from_str(text).map_err(|e| WriteError::Target(format!("cannot read the screenplay: {e}")))?;
    let at = |loc: &serde_saphyr::Location| loc.span().byte_offset().map(|o| o as usize);
    let mut out = Vec::new();
    for s in raw.scenes {
        let shots = s
            .shots
            .iter()
            .filter_map(|sh| Some((sh.id.value.clone(), at(&sh.id.referenced)?)))
            .collect();
        let off = at(&s.id.referenced)
            .ok_or_else(|| WriteError::Target(format!("no position for scene `{}`", s.id.value)))?;
        out.push((s.id.value, off, shots));
    }
    Ok(out)
}

pub(super) fn find_scene<'a>(episode: &'a Episode, scene: &str) -> Result<&'a Scene, WriteError> {
    let sp = episode.screenplay.as_ref().ok_or_else(|| {
        WriteError::Target(format!(
            "{} has no screenplay yet; run `studio write {}`",
            episode.id, episode.id
        ))
    })?;
    sp.scenes.iter().find(|s| s.id == scene).ok_or_else(|| {
        let ids: Vec<&str> = sp.scenes.iter().map(|s| s.id.as_str()).collect();
        WriteError::Target(format!(
            "{} has no scene `{scene}` (scenes: {})",
            episode.id,
            ids.join(", ")
        ))
    })
}

/// `--scene`: new shots for one scene, spliced into `text` (the file).
pub async fn scene(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: &str,
    text: &str,
) -> Result<String, WriteError> {
    let s = find_scene(episode, scene)?;
    let mut ctx = base_context(project, episode)?;
    ctx["scene"] = scene_json(project, s);
    let sp = episode.screenplay.as_ref().expect("find_scene checked");
    ctx["scenes"] = json!(
        sp.scenes
            .iter()
            .map(|s| json!({"id": s.id, "title": s.title, "description": s.description}))
            .collect::<Vec<_>>()
    );
    let check = checker(project);
    let what = format!("the shots of {}/{scene}", episode.id);
    let shots: ShotsDraft = llm
        .ask(
            &what,
            WriteStage::Shots,
            &ctx,
            &schema::shots(&char_ids(project)),
            |d| check.shots(d),
        )
        .await?;
    let (_, off, _) = offsets(text)?
        .into_iter()
        .find(|(id, ..)| id == scene)
        .ok_or_else(|| WriteError::Target(format!("scene `{scene}` is not in the file")))?;
    let new = splice::set_key(text, off, "shots", |col| render::shots_block(&shots.shots, col))
        .map_err(|e| WriteError::Target(format!("cannot rewrite scene `{scene}`: {e}")))?;
    recheck(project, episode, &new)?;
    Ok(new)
}

/// `--dialogue`: new dialogue for one scene's shots (or one shot), spliced
/// into `text`; shots, comments and every other edit stay.
pub async fn dialogue(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: &str,
    shot: Option<&str>,
    text: &str,
) -> Result<String, WriteError> {
    let s = find_scene(episode, scene)?;
    let targets: Vec<String> = match shot {
        Some(id) if s.shots.iter().any(|sh| sh.id == id) => vec![id.to_string()],
        Some(id) => {
            let ids: Vec<&str> = s.shots.iter().map(|sh| sh.id.as_str()).collect();
            return Err(WriteError::Target(format!(
                "scene `{scene}` has no shot `{id}` (shots: {})",
                ids.join(", ")
            )));
        }
        None => s.shots.iter().map(|sh| sh.id.clone()).collect(),
    };
    let mut ctx = base_context(project, episode)?;
    ctx["scene"] = scene_json(project, s);
    ctx["targets"] = json!(targets);
    let check = checker(project);
    let ids: Vec<&str> = targets.iter().map(String::as_str).collect();
    let what = format!("the dialogue of {}/{scene}", episode.id);
    let draft: DialogueDraft = llm
        .ask(
            &what,
            WriteStage::Dialogue,
            &ctx,
            &schema::dialogue(&char_ids(project), &ids),
            |d| check.dialogue(d, &targets),
        )
        .await?;
    let (_, _, shot_offsets) = offsets(text)?
        .into_iter()
        .find(|(id, ..)| id == scene)
        .ok_or_else(|| WriteError::Target(format!("scene `{scene}` is not in the file")))?;
    // Splice from the end of the file backwards so earlier offsets hold.
    let mut edits: Vec<(usize, &Vec<LineDraft>, bool)> = Vec::new();
    for d in &draft.shots {
        let had = s.shots.iter().any(|sh| sh.id == d.id && !sh.dialogue.is_empty());
        if let Some((_, off)) = shot_offsets.iter().find(|(id, _)| *id == d.id) {
            edits.push((*off, &d.dialogue, had));
        }
    }
    edits.sort_by_key(|(off, ..)| std::cmp::Reverse(*off));
    let mut new = text.to_string();
    for (off, lines, had) in edits {
        if lines.is_empty() && !had {
            continue;
        }
        new = splice::set_key(&new, off, "dialogue", |col| render::dialogue_block(lines, col))
            .map_err(|e| WriteError::Target(format!("cannot rewrite the dialogue of {scene}: {e}")))?;
    }
    recheck(project, episode, &new)?;
    Ok(new)
}

pub(super) fn recheck(project: &Project, episode: &Episode, text: &str) -> Result<(), WriteError> {
    let name = format!("episodes/{}.yaml", episode.id);
    crate::project::load::check_screenplay(project, name.as_ref(), text, &episode.id)?;
    Ok(())
}
