//! `studio write EP --dub LANG`: the dub text of every line of an episode
//! that has none in `LANG` yet, one call per scene (`rules/prompts/dub.j2`),
//! each text spliced in as the line's `LANG:` key; lines that have one, and
//! every other byte of the file, stay.

use serde::Deserialize;
use serde_json::{Value, json};

use super::parts::{find_scene, recheck, scene_json};
use super::{Llm, WriteError, base_context, splice};
use crate::project::bounds::text::LINE;
use crate::project::languages::Language;
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

/// A dialogue line as it is in the file: its speaker, texts and the byte
/// offset of its `speaker` value.
pub(super) struct FileLine {
    pub speaker: String,
    pub text: String,
    /// `(code, text)` of its dub keys, in file order.
    pub dubs: Vec<(String, String)>,
    pub off: usize,
}

/// Per scene (its id), per shot (its id), each line: in file order (the
/// order the loader reads them in).
type FileLines = Vec<(String, Vec<(String, Vec<FileLine>)>)>;

/// Every dialogue line of the file, with the offset of its `speaker`.
pub(super) fn file_lines(text: &str) -> Result<FileLines, WriteError> {
    let raw: RawScreenplay =
        serde_saphyr::from_str(text).map_err(|e| WriteError::Target(format!("cannot read the screenplay: {e}")))?;
    let at = |loc: &serde_saphyr::Location| loc.span().byte_offset().map(|o| o as usize);
    raw.scenes
        .into_iter()
        .map(|s| {
            let shots = s
                .shots
                .into_iter()
                .map(|sh| {
                    let lines = sh
                        .dialogue
                        .into_iter()
                        .map(|l| {
                            let off = at(&l.speaker.referenced).ok_or_else(|| {
                                WriteError::Target(format!("no position for a line of {}/{}", s.id.value, sh.id.value))
                            })?;
                            Ok(FileLine {
                                speaker: l.speaker.value,
                                text: l.text.value,
                                dubs: l.dubs.into_iter().map(|(k, t)| (k, t.value)).collect(),
                                off,
                            })
                        })
                        .collect::<Result<Vec<_>, WriteError>>()?;
                    Ok((sh.id.value, lines))
                })
                .collect::<Result<Vec<_>, WriteError>>()?;
            Ok((s.id.value, shots))
        })
        .collect()
}

/// One line of a scene as the dub prompt shows it; `ask`: its `lang` text
/// is asked for (and goes after the `speaker` at `off`).
struct Shown {
    id: String,
    speaker: String,
    text: String,
    dub: Option<String>,
    off: usize,
    ask: bool,
}

/// The dub language `lang` of the project, or why there is none.
fn dub_language<'a>(project: &'a Project, lang: &str) -> Result<&'a Language, WriteError> {
    let dubs: Vec<&str> = project.languages.iter().skip(1).map(|l| l.code.as_str()).collect();
    project.language(lang).filter(|_| dubs.contains(&lang)).ok_or_else(|| {
        WriteError::Target(format!(
            "`{lang}` is not a dub language of studio.yaml's `languages:` ({})",
            if dubs.is_empty() {
                "none declared".to_string()
            } else {
                dubs.join(", ")
            }
        ))
    })
}

/// One call (`rules/prompts/dub.j2`) for the asked lines of a scene
/// (`scene`: as the prompts see it); each answer with its line's offset.
async fn ask_scene(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: Value,
    language: &Language,
    lines: Vec<Shown>,
) -> Result<Vec<(usize, String)>, WriteError> {
    let targets: Vec<&Shown> = lines.iter().filter(|l| l.ask).collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let n = targets.len();
    let what = format!(
        "the {} dub of {}/{}",
        language.name,
        episode.id,
        scene["id"].as_str().unwrap_or("?")
    );
    let mut ctx = base_context(project, episode)?;
    ctx["scene"] = scene;
    ctx["language"] = json!(language);
    ctx["lines"] = json!(
        lines
            .iter()
            .map(|l| json!({"id": l.id, "speaker": l.speaker, "text": l.text, "dub": l.dub}))
            .collect::<Vec<_>>()
    );
    ctx["done"] = json!(n < lines.len());
    ctx["targets"] = json!(targets.iter().map(|l| &l.id).collect::<Vec<_>>());
    let draft: DubDraft = llm
        .ask(&what, WriteStage::Dub, &ctx, &schema(n), |d| check(d, n))
        .await?;
    Ok(targets.iter().map(|l| l.off).zip(draft.dub).collect())
}

/// `text` with each `(offset of a line's speaker, dub text)` added as that
/// line's `lang:` key.
fn splice_dubs(text: &str, lang: &str, mut edits: Vec<(usize, String)>) -> Result<String, WriteError> {
    // Splice from the end backwards so earlier offsets hold.
    edits.sort_by_key(|(off, _)| std::cmp::Reverse(*off));
    let mut new = text.to_string();
    for (off, line) in edits {
        new = splice::set_key_by(&new, off, "speaker", lang, |_| {
            format!("{lang}: {}\n", super::render::scalar(&line))
        })
        .map_err(|e| WriteError::Target(format!("cannot add a `{lang}:` line: {e}")))?;
    }
    Ok(new)
}

/// Fill `lang` for the lines of `episode` that lack it, in `text` (the file).
pub async fn dub(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    lang: &str,
    text: &str,
) -> Result<String, WriteError> {
    let language = dub_language(project, lang)?;
    let offsets = file_lines(text)?;
    let sp = episode.screenplay.as_ref().ok_or_else(|| {
        WriteError::Target(format!(
            "{} has no screenplay yet; run `studio write {}`",
            episode.id, episode.id
        ))
    })?;
    let mut edits: Vec<(usize, String)> = Vec::new();
    for scene in &sp.scenes {
        let s = find_scene(episode, &scene.id)?;
        let Some((_, at)) = offsets.iter().find(|(id, _)| *id == s.id) else {
            return Err(WriteError::Target(format!("scene `{}` is not in the file", s.id)));
        };
        let mut lines = Vec::new();
        for (sh, (_, shot_at)) in s.shots.iter().zip(at) {
            for (i, (l, fl)) in sh.dialogue.iter().zip(shot_at).enumerate() {
                let dub = l.dubs.get(lang).cloned();
                lines.push(Shown {
                    id: format!("{}/{}", sh.id, i + 1),
                    speaker: project.characters[l.speaker].id.clone(),
                    text: l.text.clone(),
                    ask: dub.is_none(),
                    dub,
                    off: fl.off,
                });
            }
        }
        edits.extend(ask_scene(llm, project, episode, scene_json(project, s), language, lines).await?);
    }
    let new = splice_dubs(text, lang, edits)?;
    recheck(project, episode, &new)?;
    Ok(new)
}

/// After a rewrite of scene `scene`'s dialogue (`text`: the file with the
/// new lines): add the `lang` text of the lines `asked` (`(shot id, line
/// index)`), in one call with the scene's lines as they are now.
pub(super) async fn fill(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    scene: &str,
    lang: &str,
    asked: &[(String, usize)],
    text: &str,
) -> Result<String, WriteError> {
    let language = dub_language(project, lang)?;
    let s = find_scene(episode, scene)?;
    let file = file_lines(text)?;
    let Some((_, shots)) = file.into_iter().find(|(id, _)| id == scene) else {
        return Err(WriteError::Target(format!("scene `{scene}` is not in the file")));
    };
    // The scene as the prompts see it, its shots as they are in the file now
    // (a rewritten scene's new shots carry only their id and dialogue).
    let mut ctx_scene = scene_json(project, s);
    let mut before: Vec<Value> = ctx_scene["shots"].as_array().cloned().unwrap_or_default();
    let mut now = Vec::new();
    let mut lines = Vec::new();
    for (shot, file_lines) in &shots {
        let mut js = match before.iter().position(|j| j["id"] == json!(shot)) {
            Some(i) => before.swap_remove(i),
            None => json!({"id": shot}),
        };
        js["dialogue"] = json!(
            file_lines
                .iter()
                .map(|l| json!({"speaker": l.speaker, "text": l.text}))
                .collect::<Vec<_>>()
        );
        now.push(js);
        for (i, l) in file_lines.iter().enumerate() {
            let dub = l.dubs.iter().find(|(k, _)| k == lang).map(|(_, t)| t.clone());
            lines.push(Shown {
                id: format!("{shot}/{}", i + 1),
                speaker: l.speaker.clone(),
                text: l.text.clone(),
                ask: dub.is_none() && asked.iter().any(|(sh, n)| sh == shot && *n == i),
                dub,
                off: l.off,
            });
        }
    }
    ctx_scene["shots"] = json!(now);
    let edits = ask_scene(llm, project, episode, ctx_scene, language, lines).await?;
    splice_dubs(text, lang, edits)
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
