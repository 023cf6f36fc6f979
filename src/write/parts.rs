//! Regenerating part of a written screenplay: `--scene` (one scene's shots)
//! and `--dialogue` (the dialogue of a scene's shots, or of one shot),
//! spliced into the writer's file by byte range ([`super::splice`]).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::validate::{DialogueDraft, LineDraft, ShotDialogue, ShotsDraft};
use super::{Llm, WriteError, base_context, char_ids, checker, render, schema, splice};
use crate::project::model::WriteStage;
use crate::project::model::{Episode, Line, Project, Scene};
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

/// `--scene`: new shots for one scene, spliced into `text` (the file). Dub
/// texts as with [`dialogue`]: a new line that an old line of the scene
/// said word for word (same speaker) keeps its dubs, the others are asked
/// for.
pub async fn scene(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: &str,
    text: &str,
) -> Result<Rewritten, WriteError> {
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
    let old: Vec<(&str, &[Line])> = s
        .shots
        .iter()
        .map(|sh| (sh.id.as_str(), sh.dialogue.as_slice()))
        .collect();
    let mut used = BTreeSet::new();
    let mut changed = Vec::new();
    let mut dubs = Vec::new();
    for sh in &shots.shots {
        let kept = carried(project, &sh.dialogue, &sh.id, &old, &mut used);
        changed.extend(
            kept.iter()
                .enumerate()
                .filter(|(_, k)| k.is_none())
                .map(|(i, _)| (sh.id.clone(), i)),
        );
        dubs.push(kept.into_iter().map(Option::unwrap_or_default).collect::<Vec<_>>());
    }
    let new = splice::set_key(text, off, "shots", |col| render::shots_block(&shots.shots, &dubs, col))
        .map_err(|e| WriteError::Target(format!("cannot rewrite scene `{scene}`: {e}")))?;
    let (new, warnings) = fill_dubs(llm, project, episode, scene, &changed, new).await;
    recheck(project, episode, &new)?;
    Ok(Rewritten { text: new, warnings })
}

/// A dialogue rewrite: the new file, and what the writer should know
/// (dub texts that could not be written).
#[derive(Debug)]
pub struct Rewritten {
    pub text: String,
    pub warnings: Vec<String>,
}

/// A line's dub texts: `(code, text)`.
type Dubs = Vec<(String, String)>;

/// A line's dub texts, in `languages:` order.
pub fn line_dubs(project: &Project, line: &Line) -> Dubs {
    project
        .languages
        .iter()
        .filter_map(|l| Some((l.code.clone(), line.dubs.get(&l.code)?.clone())))
        .collect()
}

/// The dub texts of each new line of shot `shot`: those of an old line of
/// the shot (else of another rewritten shot of the scene, `old`: each
/// rewritten shot's id and old lines) with the same speaker and
/// default-language text, each old line used once (`used`: `(shot, index)`);
/// `None` for a changed line.
fn carried(
    project: &Project,
    new: &[LineDraft],
    shot: &str,
    old: &[(&str, &[Line])],
    used: &mut BTreeSet<(String, usize)>,
) -> Vec<Option<Dubs>> {
    let own = old.iter().filter(|(id, _)| *id == shot);
    let rest = old.iter().filter(|(id, _)| *id != shot);
    let candidates: Vec<(&str, usize, &Line)> = own
        .chain(rest)
        .flat_map(|(id, lines)| lines.iter().enumerate().map(move |(i, l)| (*id, i, l)))
        .collect();
    new.iter()
        .map(|n| {
            let (id, i, line) = candidates.iter().find(|(id, i, o)| {
                !used.contains(&(id.to_string(), *i))
                    && o.text == n.text
                    && project.characters[o.speaker].id == n.speaker
            })?;
            used.insert((id.to_string(), *i));
            Some(line_dubs(project, line))
        })
        .collect()
}

/// `--dialogue`: new dialogue for one scene's shots (or one shot), spliced
/// into `text`; shots, comments and every other edit stay. A new line whose
/// speaker and text an old line of the rewritten shots had keeps that
/// line's dub texts; for each dub language the episode carries, the other
/// new lines get theirs through the dub prompt (one call), and when that
/// fails they are left without (spoken in the default language) and a
/// warning says so.
pub async fn dialogue(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: &str,
    shot: Option<&str>,
    text: &str,
) -> Result<Rewritten, WriteError> {
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
    let old_of = |id: &str| -> &[Line] {
        s.shots
            .iter()
            .find(|sh| sh.id == id)
            .map_or(&[][..], |sh| sh.dialogue.as_slice())
    };
    let rewritten: Vec<(&str, &[Line])> = draft.shots.iter().map(|d| (d.id.as_str(), old_of(&d.id))).collect();
    // Each line's dub texts, decided in file order; then spliced from the
    // end of the file backwards so earlier offsets hold.
    let mut used = BTreeSet::new();
    let mut changed: Vec<(String, usize)> = Vec::new();
    let mut edits: Vec<(usize, &ShotDialogue, Vec<Dubs>)> = Vec::new();
    for d in &draft.shots {
        let Some((_, off)) = shot_offsets.iter().find(|(id, _)| *id == d.id) else {
            continue;
        };
        if d.dialogue.is_empty() && old_of(&d.id).is_empty() {
            continue;
        }
        let kept = carried(project, &d.dialogue, &d.id, &rewritten, &mut used);
        changed.extend(
            kept.iter()
                .enumerate()
                .filter(|(_, k)| k.is_none())
                .map(|(i, _)| (d.id.clone(), i)),
        );
        edits.push((*off, d, kept.into_iter().map(Option::unwrap_or_default).collect()));
    }
    edits.sort_by_key(|(off, ..)| std::cmp::Reverse(*off));
    let mut new = text.to_string();
    for (off, d, dubs) in edits {
        new = splice::set_key(&new, off, "dialogue", |col| {
            render::dialogue_block(&d.dialogue, &dubs, col)
        })
        .map_err(|e| WriteError::Target(format!("cannot rewrite the dialogue of {scene}: {e}")))?;
    }
    let (new, warnings) = fill_dubs(llm, project, episode, scene, &changed, new).await;
    recheck(project, episode, &new)?;
    Ok(Rewritten { text: new, warnings })
}

/// For each dub language the episode carries, the dub text of the new
/// lines `changed` (`(shot id, index)`) of `scene` in `new` (the file),
/// through the dub prompt; when a language's call fails, the file without
/// them and a warning.
async fn fill_dubs(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: &str,
    changed: &[(String, usize)],
    mut new: String,
) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    let carries = episode.screenplay.as_ref().map_or(&[][..], |sp| sp.dubs.as_slice());
    if changed.is_empty() {
        return (new, warnings);
    }
    let n = changed.len();
    for lang in carries {
        match super::dub::fill(llm, project, episode, scene, lang, changed, &new).await {
            Ok(filled) => new = filled,
            Err(e) => warnings.push(format!(
                "the `{lang}` text of {n} new line{} of {}/{scene} was not written ({}); {} spoken in the default \
                 language until `studio write {} --dub {lang}` writes {}",
                if n == 1 { "" } else { "s" },
                episode.id,
                super::describe(&e),
                if n == 1 { "it is" } else { "they are" },
                episode.id,
                if n == 1 { "it" } else { "them" },
            )),
        }
    }
    (new, warnings)
}

pub(super) fn recheck(project: &Project, episode: &Episode, text: &str) -> Result<(), WriteError> {
    let name = format!("episodes/{}.yaml", episode.id);
    crate::project::load::check_screenplay(project, name.as_ref(), text, &episode.id)?;
    Ok(())
}
