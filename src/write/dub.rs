//! `studio write EP --dub LANG`: the dub text of every line of an episode
//! that has none in `LANG` yet, one call per scene (`rules/prompts/dub.j2`),
//! each text spliced in as the line's `LANG:` key; lines that have one, and
//! every other byte of the file, stay.

use serde::Deserialize;
use serde_json::{Value, json};

use super::parts::{find_scene, recheck, scene_json};
use super::{Llm, WriteError, base_context, splice};
use crate::project::bounds::text::LINE;
use crate::project::model::{Episode, Project, WriteStage};
use crate::project::raw::RawScreenplay;

/// The model's reply: one text per asked line, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DubDraft {
    pub dub: Vec<String>,
}

/// The reply's schema: exactly `n` non-empty lines.
fn schema(n: usize) -> Value {
    json!({
        "type": "object",
        "properties": {"dub": {
            "type": "array", "minItems": n, "maxItems": n,
            "items": {"type": "string", "minLength": 1, "maxLength": LINE},
        }},
        "required": ["dub"],
        "additionalProperties": false,
    })
}

/// What is wrong with a reply of `n` lines.
fn check(d: &DubDraft, n: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if d.dub.len() != n {
        problems.push(format!(
            "`dub` has {} lines; write exactly {n}, one per asked line, in order",
            d.dub.len()
        ));
    }
    for (i, t) in d.dub.iter().enumerate() {
        if t.trim().is_empty() {
            problems.push(format!("line {} of `dub` is empty", i + 1));
        } else if t.chars().count() > LINE {
            problems.push(format!("line {} of `dub` is longer than {LINE} characters", i + 1));
        } else if t.chars().any(|c| c.is_control()) {
            problems.push(format!("line {} of `dub` has a line break or control character", i + 1));
        }
    }
    problems
}

/// Per scene (its id), per shot, each line's `speaker` offset.
type LineOffsets = Vec<(String, Vec<Vec<usize>>)>;

/// The byte offset of every dialogue line's `speaker` value, by scene, in
/// file order (the order the loader reads them in).
fn speaker_offsets(text: &str) -> Result<LineOffsets, WriteError> {
    let raw: RawScreenplay =
        serde_saphyr::from_str(text).map_err(|e| WriteError::Target(format!("cannot read the screenplay: {e}")))?;
    let at = |loc: &serde_saphyr::Location| loc.span().byte_offset().map(|o| o as usize);
    raw.scenes
        .iter()
        .map(|s| {
            let shots = s
                .shots
                .iter()
                .map(|sh| {
                    sh.dialogue
                        .iter()
                        .map(|l| {
                            at(&l.speaker.referenced).ok_or_else(|| {
                                WriteError::Target(format!("no position for a line of {}/{}", s.id.value, sh.id.value))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((s.id.value.clone(), shots))
        })
        .collect()
}

/// Fill `lang` for the lines of `episode` that lack it, in `text` (the file).
pub async fn dub(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    lang: &str,
    text: &str,
) -> Result<String, WriteError> {
    let dubs: Vec<&str> = project.languages.iter().skip(1).map(|l| l.code.as_str()).collect();
    let language = project.language(lang).filter(|_| dubs.contains(&lang)).ok_or_else(|| {
        WriteError::Target(format!(
            "`{lang}` is not a dub language of studio.yaml's `languages:` ({})",
            if dubs.is_empty() {
                "none declared".to_string()
            } else {
                dubs.join(", ")
            }
        ))
    })?;
    let offsets = speaker_offsets(text)?;
    let sp = episode.screenplay.as_ref().ok_or_else(|| {
        WriteError::Target(format!(
            "{} has no screenplay yet; run `studio write {}`",
            episode.id, episode.id
        ))
    })?;
    // Every new text with the offset of its line's `speaker`.
    let mut edits: Vec<(usize, String)> = Vec::new();
    for scene in &sp.scenes {
        let s = find_scene(episode, &scene.id)?;
        let Some((_, at)) = offsets.iter().find(|(id, _)| *id == s.id) else {
            return Err(WriteError::Target(format!("scene `{}` is not in the file", s.id)));
        };
        let mut lines = Vec::new();
        let mut targets = Vec::new();
        for (sh, shot_at) in s.shots.iter().zip(at) {
            for (i, (l, &off)) in sh.dialogue.iter().zip(shot_at).enumerate() {
                let id = format!("{}/{}", sh.id, i + 1);
                let dub = l.dubs.get(lang);
                if dub.is_none() {
                    targets.push((id.clone(), off));
                }
                lines.push(json!({
                    "id": id, "speaker": project.characters[l.speaker].id, "text": l.text, "dub": dub,
                }));
            }
        }
        if targets.is_empty() {
            continue;
        }
        let mut ctx = base_context(project, episode)?;
        ctx["scene"] = scene_json(project, s);
        ctx["language"] = json!(language);
        ctx["lines"] = json!(lines);
        ctx["done"] = json!(targets.len() < lines.len());
        ctx["targets"] = json!(targets.iter().map(|(id, _)| id).collect::<Vec<_>>());
        let n = targets.len();
        let what = format!("the {} dub of {}/{}", language.name, episode.id, s.id);
        let draft: DubDraft = llm
            .ask(&what, WriteStage::Dub, &ctx, &schema(n), |d| check(d, n))
            .await?;
        edits.extend(targets.into_iter().map(|(_, off)| off).zip(draft.dub));
    }
    // Splice from the end backwards so earlier offsets hold.
    edits.sort_by_key(|(off, _)| std::cmp::Reverse(*off));
    let mut new = text.to_string();
    for (off, line) in edits {
        new = splice::set_key_by(&new, off, "speaker", lang, |_| {
            format!("{lang}: {}\n", super::render::scalar(&line))
        })
        .map_err(|e| WriteError::Target(format!("cannot add a `{lang}:` line: {e}")))?;
    }
    recheck(project, episode, &new)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked_line_by_line() {
        let d = |lines: &[&str]| DubDraft {
            dub: lines.iter().map(|s| s.to_string()).collect(),
        };
        assert!(check(&d(&["来る？", "うん。"]), 2).is_empty());
        assert_eq!(check(&d(&["来る？"]), 2).len(), 1);
        assert!(check(&d(&["来る？", " "]), 2)[0].contains("line 2"));
        assert!(check(&d(&["来る？\nうん"]), 1)[0].contains("line break"));
        assert_eq!(schema(3)["properties"]["dub"]["minItems"], 3);
    }
}
