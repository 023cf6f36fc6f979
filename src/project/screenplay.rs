//! Checking a screenplay (`episodes/<id>.yaml`) into the model: ids,
//! vocabularies, characters, `continue_from`, limits on every number and
//! text, and whether each scene is long enough for its transitions.

use std::collections::{HashMap, HashSet};

use camino::Utf8Path;
use serde_saphyr::Spanned;

use super::bounds::{self, text};
use super::diag::{Collector, Diagnostics, ProjectError, SourceFile};
use super::languages::{Dubs, episode_dubs};
use super::load::{Spans, bad_id, duplicate, parse, valid_id};
use super::model::*;
use super::raw::*;
use super::rules::Rules;
use super::vocab::{Angle, Mood, Position, ShotType, TimeOfDay, Transition};
use crate::kind::NodeKind;
use crate::timing;

fn vocab<T>(
    file: &SourceFile,
    what: &str,
    value: &Spanned<String>,
    parse: fn(&str) -> Option<T>,
    words: &[&str],
    errors: &mut Collector,
) -> Option<T> {
    let found = parse(&value.value);
    if found.is_none() {
        errors.push(
            ProjectError::at(file, "screenplay::vocab", format!("unknown {what} `{}`", value.value))
                .label_loc(file, &value.referenced, "here")
                .help(format!("{what} is one of: {}", words.join(", "))),
        );
    }
    found
}

fn unknown_character(file: &SourceFile, id: &Spanned<String>, chars: &HashMap<&str, usize>) -> ProjectError {
    let mut known: Vec<&str> = chars.keys().copied().collect();
    known.sort();
    ProjectError::at(
        file,
        "screenplay::unknown_character",
        format!("unknown character `{}`", id.value),
    )
    .label_loc(file, &id.referenced, "not in studio.yaml")
    .help(format!(
        "characters in studio.yaml: {} (or add `{}` under `characters:`)",
        known.join(", "),
        id.value
    ))
}

/// Check a screenplay's text (`name` relative to the root) as the loader
/// would: used on generated and spliced screenplays before they are written.
pub fn check_screenplay(project: &Project, name: &Utf8Path, text: &str, episode: &str) -> Result<(), Diagnostics> {
    let file = SourceFile::new(name, text.to_string());
    let chars = project.character_index();
    let dubs = project.dub_context();
    let mut errors = Collector::default();
    let mut spans = Spans::default();
    let raw = parse::<RawScreenplay>(&file);
    let overlap = transition_overlap(&project.rules);
    let cast = Cast {
        chars: &chars,
        dubs: &dubs,
    };
    screenplay(&file, raw, episode, &cast, overlap, &mut spans, &mut errors);
    errors.finish(())
}

/// The frames every scene transition overlaps, as the episode stages will
/// read it (`transition_seconds` of `episode_video`, default 0.4 s); `None`
/// when the rules give no usable value (that mistake is reported itself).
pub(super) fn transition_overlap(rules: &Rules) -> Option<u64> {
    let seconds = match rules.get(NodeKind::EpisodeVideo)?.params.get("transition_seconds") {
        None => 0.4,
        Some(v) => v.as_f64().filter(|s| bounds::TRANSITION_SECONDS.contains(*s))?,
    };
    Some(timing::frames(seconds))
}

/// Who may speak, and in which languages: the character index and the dubs.
pub(super) struct Cast<'a> {
    pub chars: &'a HashMap<&'a str, usize>,
    pub dubs: &'a Dubs,
}

/// Check one screenplay; `overlap` is [`transition_overlap`].
pub(super) fn screenplay(
    file: &SourceFile,
    raw: Result<RawScreenplay, Diagnostics>,
    episode: &str,
    cast: &Cast<'_>,
    overlap: Option<u64>,
    spans: &mut Spans,
    errors: &mut Collector,
) -> Option<Screenplay> {
    let raw: RawScreenplay = match raw {
        Ok(r) => r,
        Err(d) => {
            errors.errors.extend(d.errors);
            return None;
        }
    };
    let chars = cast.chars;
    spans.files.insert(episode.to_string(), file.clone());
    if raw.episode.value != episode {
        errors.push(
            ProjectError::at(
                file,
                "screenplay::episode",
                format!("{} says `episode: {}`", file.name, raw.episode.value),
            )
            .label_loc(file, &raw.episode.referenced, "here")
            .help(format!("the file name says `{episode}`; make them agree")),
        );
    }
    let mut scene_ids = HashSet::new();
    let mut scenes = Vec::new();
    let mut scene_at = Vec::new();
    for s in &raw.scenes {
        if !scene_ids.insert(s.id.value.clone()) {
            errors.push(duplicate(file, "scene", &s.id));
            continue;
        }
        if !valid_id(&s.id.value) {
            errors.push(bad_id(file, "scene", &s.id));
        }
        let time_of_day = vocab(
            file,
            "time_of_day",
            &s.time_of_day,
            TimeOfDay::parse,
            TimeOfDay::WORDS,
            errors,
        );
        let mood = vocab(file, "mood", &s.mood, Mood::parse, Mood::WORDS, errors);
        let transition = s
            .transition
            .as_ref()
            .and_then(|t| vocab(file, "transition", t, Transition::parse, Transition::WORDS, errors));
        let target_duration = s
            .target_duration
            .as_ref()
            .map(|d| bounds::number(file, "target_duration", d, bounds::SCENE_TARGET_SECONDS, 60.0, errors));
        bounds::text(file, "scene title", &s.title, text::NAME, errors);
        bounds::text(file, "scene description", &s.description, text::PROSE, errors);
        bounds::text(file, "scene location", &s.location, text::PROMPT, errors);
        let mut state = Vec::new();
        for st in &s.state {
            if !chars.contains_key(st.character.value.as_str()) {
                errors.push(unknown_character(file, &st.character, chars));
            }
            bounds::text(file, "clothing", &st.clothing, text::PROMPT, errors);
            bounds::text(file, "injuries", &st.injuries, text::PROMPT, errors);
            bounds::text(file, "emotional_state", &st.emotional_state, text::PROMPT, errors);
            let energy = st
                .energy
                .as_ref()
                .map(|e| bounds::number(file, "energy", e, bounds::ENERGY, 0.5, errors));
            state.push(CharacterState {
                character: st.character.value.clone(),
                clothing: st.clothing.value.clone(),
                injuries: st.injuries.value.clone(),
                emotional_state: st.emotional_state.value.clone(),
                energy,
            });
        }
        let mut shot_ids = HashSet::new();
        let mut shots = Vec::new();
        for sh in &s.shots {
            if !shot_ids.insert(sh.id.value.clone()) {
                errors.push(duplicate(file, "shot", &sh.id));
                continue;
            }
            if !valid_id(&sh.id.value) {
                errors.push(bad_id(file, "shot", &sh.id));
            }
            let path = format!("{episode}/{}/{}", s.id.value, sh.id.value);
            spans.shots.insert(path.clone(), sh.id.referenced);
            if let Some(c) = &sh.continue_from {
                spans.continue_from.insert(path.clone(), c.referenced);
            }
            let shot_type = vocab(
                file,
                "shot type",
                &sh.shot_type,
                ShotType::parse,
                ShotType::WORDS,
                errors,
            );
            let angle = vocab(file, "camera angle", &sh.angle, Angle::parse, Angle::WORDS, errors);
            let duration = bounds::number(file, "duration", &sh.duration, bounds::SHOT_SECONDS, 1.0, errors);
            let take = bounds::number(file, "take", &sh.take, bounds::TAKE, 1, errors) as u32;
            bounds::text(file, "motion prompt", &sh.motion, text::MOTION, errors);
            bounds::text(file, "action line", &sh.action, text::ACTION, errors);
            let mut present = Vec::new();
            let mut present_ids = HashSet::new();
            for p in &sh.characters {
                let position = vocab(file, "position", &p.position, Position::parse, Position::WORDS, errors);
                match chars.get(p.id.value.as_str()) {
                    None => errors.push(unknown_character(file, &p.id, chars)),
                    Some(_) if !present_ids.insert(p.id.value.clone()) => {
                        errors.push(duplicate(file, "character in this shot", &p.id));
                    }
                    Some(&i) => present.push(Presence {
                        character: i,
                        id: p.id.value.clone(),
                        position: position.unwrap_or(Position::Center),
                    }),
                }
            }
            let mut dialogue = Vec::new();
            for l in &sh.dialogue {
                bounds::text(file, "dialogue line", &l.text, text::LINE, errors);
                match chars.get(l.speaker.value.as_str()) {
                    None => errors.push(unknown_character(file, &l.speaker, chars)),
                    Some(&i) => {
                        if l.text.value.trim().is_empty() {
                            errors.push(
                                ProjectError::at(file, "screenplay::empty_line", "empty dialogue line")
                                    .label_loc(file, &l.text.referenced, "here")
                                    .help("write the line, or remove the entry"),
                            );
                        }
                        dialogue.push(Line {
                            speaker: i,
                            text: l.text.value.clone(),
                            dubs: cast.dubs.line(file, l, i, errors),
                        });
                    }
                }
            }
            shots.push(Shot {
                id: sh.id.value.clone(),
                shot_type: shot_type.unwrap_or(ShotType::Medium),
                angle: angle.unwrap_or(Angle::EyeLevel),
                motion: sh.motion.value.clone(),
                action: sh.action.value.clone(),
                characters: present,
                duration,
                take,
                continue_from: sh.continue_from.as_ref().map(|c| c.value.clone()),
                dialogue,
            });
        }
        if shots.is_empty() && s.shots.is_empty() {
            errors.push(
                ProjectError::at(
                    file,
                    "screenplay::no_shots",
                    format!("scene `{}` has no shots", s.id.value),
                )
                .label_loc(file, &s.id.referenced, "this scene")
                .help("add at least one shot under `shots:`"),
            );
        }
        scene_at.push(&s.id);
        scenes.push(Scene {
            id: s.id.value.clone(),
            title: s.title.value.clone(),
            description: s.description.value.clone(),
            location: s.location.value.clone(),
            time_of_day: time_of_day.unwrap_or(TimeOfDay::Day),
            mood: mood.unwrap_or(Mood::Calm),
            target_duration,
            transition,
            state,
            shots,
        });
    }
    // `continue_from` must name another shot of this episode: `sh03` (same
    // scene) or `s02/sh03`.
    for scene in &mut scenes {
        for shot in &mut scene.shots {
            let Some(target) = shot.continue_from.take() else {
                continue;
            };
            let full = if target.contains('/') {
                target.clone()
            } else {
                format!("{}/{}", scene.id, target)
            };
            let own = format!("{}/{}", scene.id, shot.id);
            if spans.shots.contains_key(&format!("{episode}/{full}")) && full != own {
                shot.continue_from = Some(full);
            } else {
                let loc = spans.continue_from[&format!("{episode}/{own}")];
                errors.push(
                    ProjectError::at(
                        file,
                        "screenplay::continue_from",
                        format!("`continue_from: {target}` names no other shot of {episode}"),
                    )
                    .label_loc(file, &loc, "here")
                    .help("name a shot id of this scene (`sh03`) or `SCENE/SHOT` for another scene"),
                );
            }
        }
    }
    if let Some(overlap) = overlap {
        check_transitions(file, &scenes, &scene_at, overlap, errors);
    }
    if scenes.is_empty() && raw.scenes.is_empty() {
        errors.push(
            ProjectError::at(file, "screenplay::no_scenes", format!("{} has no scenes", file.name))
                .label_loc(file, &raw.episode.referenced, "this episode")
                .help("add scenes under `scenes:`"),
        );
    }
    let lines = scenes.iter().flat_map(|s| {
        s.shots.iter().flat_map(move |sh| {
            sh.dialogue
                .iter()
                .enumerate()
                .map(move |(i, l)| (format!("{}/{}/{}", s.id, sh.id, i + 1), &l.dubs))
        })
    });
    let (dubs, fallbacks) = episode_dubs(&cast.dubs.languages, lines);
    Some(Screenplay {
        file: file.name.clone(),
        scenes,
        dubs,
        fallbacks,
    })
}

/// Every scene must outlast the transitions that overlap it (the episode
/// stages refuse it otherwise, after the scenes are built). A scene's shots
/// as written, each at least as long as its dialogue's lead-in, gaps and
/// tail, are a lower bound of its length: voices can only make it longer.
fn check_transitions(
    file: &SourceFile,
    scenes: &[Scene],
    ids: &[&Spanned<String>],
    overlap: u64,
    errors: &mut Collector,
) {
    for (i, (scene, id)) in scenes.iter().zip(ids).enumerate() {
        let need = timing::scene_needs(i, scenes.len(), overlap);
        let least: u64 = scene
            .shots
            .iter()
            .map(|sh| timing::least_shot_frames(sh.duration, sh.dialogue.len()))
            .sum();
        if least >= need || scene.shots.is_empty() {
            continue;
        }
        let sides = if i > 0 && i + 1 < scenes.len() {
            "the transitions on both its sides overlap"
        } else {
            "its transition overlaps"
        };
        errors.push(
            ProjectError::at(
                file,
                "screenplay::too_short",
                format!(
                    "scene `{}` lasts {} s as written, but {sides} {} s of it",
                    scene.id,
                    secs(least),
                    secs(need),
                ),
            )
            .label_loc(file, &id.referenced, "this scene")
            .help(format!(
                "lengthen its shots to {} s in all, shorten `transition_seconds` ({} s) under `episode_video` in rules/, or merge the scene into a neighbour",
                secs(need),
                secs(overlap),
            )),
        );
    }
}

/// Frames as seconds with two decimals.
fn secs(frames: u64) -> String {
    format!("{:.2}", timing::seconds(frames))
}
