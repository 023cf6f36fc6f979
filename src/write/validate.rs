//! Replies as typed drafts, and the checks against the project that a JSON
//! Schema cannot express (or that a server may not enforce): known
//! characters, positive durations, unique ids, counts, vocabulary words.
//!
//! Each check returns the list of problems in words the model can act on;
//! an empty list means the draft is usable.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::schema::{CUT, LINES, SCENES, SHOTS};
use crate::project::vocab::{Angle, Mood, Position, ShotType, TimeOfDay, Transition};

/// The model is not asked for ids: scenes and shots are numbered by
/// position as they are read (`s01`, `s02`, …), so ids are well-formed and
/// unique by construction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ScenesReply")]
pub struct ScenesDraft {
    pub scenes: Vec<SceneDraft>,
}

#[derive(Deserialize)]
struct ScenesReply {
    scenes: Vec<SceneDraft>,
}

impl From<ScenesReply> for ScenesDraft {
    fn from(r: ScenesReply) -> Self {
        let mut scenes = r.scenes;
        for (i, s) in scenes.iter_mut().enumerate() {
            s.id = format!("s{:02}", i + 1);
        }
        ScenesDraft { scenes }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SceneDraft {
    #[serde(default)]
    pub id: String,
    pub title: String,
    pub description: String,
    pub location: String,
    pub time_of_day: String,
    pub mood: String,
    pub target_duration: f64,
    #[serde(default)]
    pub transition: Option<String>,
    pub state: Vec<StateDraft>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateDraft {
    pub character: String,
    pub clothing: String,
    pub injuries: String,
    pub emotional_state: String,
    pub energy: f64,
}

/// Shots are numbered by position too (`sh01`, `sh02`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ShotsReply")]
pub struct ShotsDraft {
    pub shots: Vec<ShotDraft>,
}

#[derive(Deserialize)]
struct ShotsReply {
    shots: Vec<ShotDraft>,
}

impl From<ShotsReply> for ShotsDraft {
    fn from(r: ShotsReply) -> Self {
        let mut shots = r.shots;
        for (i, s) in shots.iter_mut().enumerate() {
            s.id = format!("sh{:02}", i + 1);
        }
        ShotsDraft { shots }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShotDraft {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type")]
    pub shot_type: String,
    pub angle: String,
    pub motion: String,
    pub action: String,
    pub characters: Vec<PresenceDraft>,
    pub duration: f64,
    pub dialogue: Vec<LineDraft>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceDraft {
    pub id: String,
    pub position: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineDraft {
    pub speaker: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DialogueDraft {
    pub shots: Vec<ShotDialogue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShotDialogue {
    pub id: String,
    pub dialogue: Vec<LineDraft>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineDraft {
    pub summary: String,
    pub characters: Vec<CharacterArc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CharacterArc {
    pub character: String,
    #[serde(default)]
    pub personality_shifts: Vec<String>,
    #[serde(default)]
    pub trauma_events: Vec<String>,
    #[serde(default)]
    pub skills_learned: Vec<String>,
    #[serde(default)]
    pub emotional_state: String,
}

/// Parse a reply's JSON into a draft; the error is one problem in words.
pub fn parse<T: serde::de::DeserializeOwned>(content: &str) -> Result<T, String> {
    // Some servers wrap JSON in a Markdown fence despite the schema.
    let trimmed = content.trim();
    let inner = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|t| t.strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(inner).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("the reply is not valid JSON ({e})")
        } else {
            format!("the reply does not match the schema ({e})")
        }
    })
}

/// What the checks need to know about the project.
#[derive(Debug, Clone)]
pub struct Checker {
    pub characters: Vec<String>,
}

impl Checker {
    fn character(&self, what: &str, id: &str, problems: &mut Vec<String>) {
        if !self.characters.iter().any(|c| c == id) {
            problems.push(format!(
                "{what}: unknown character `{id}` (the characters are: {})",
                self.characters.join(", ")
            ));
        }
    }

    pub fn scenes(&self, d: &ScenesDraft) -> Vec<String> {
        let mut p = Vec::new();
        count(&mut p, "scenes", d.scenes.len(), SCENES);
        let mut ids = HashSet::new();
        for s in &d.scenes {
            let at = format!("scene `{}`", s.id);
            id(&mut p, &at, &s.id, "s", &mut ids);
            word(&mut p, &at, "time_of_day", &s.time_of_day, TimeOfDay::WORDS);
            word(&mut p, &at, "mood", &s.mood, Mood::WORDS);
            if let Some(t) = s.transition.as_deref().filter(|t| *t != CUT) {
                word(&mut p, &at, "transition", t, Transition::WORDS);
            }
            positive(&mut p, &at, "target_duration", s.target_duration);
            nonempty(&mut p, &at, "title", &s.title);
            nonempty(&mut p, &at, "description", &s.description);
            if s.state.is_empty() {
                p.push(format!("{at}: `state` must hold each character in the scene"));
            }
            let mut seen = HashSet::new();
            for st in &s.state {
                self.character(&format!("{at} state"), &st.character, &mut p);
                if !seen.insert(st.character.as_str()) {
                    p.push(format!("{at}: `{}` has two states", st.character));
                }
                if !(0.0..=1.0).contains(&st.energy) {
                    p.push(format!(
                        "{at}: energy {} of `{}` is not within 0–1",
                        st.energy, st.character
                    ));
                }
            }
        }
        p
    }

    pub fn shots(&self, d: &ShotsDraft) -> Vec<String> {
        let mut p = Vec::new();
        count(&mut p, "shots", d.shots.len(), SHOTS);
        let mut ids = HashSet::new();
        for sh in &d.shots {
            let at = format!("shot `{}`", sh.id);
            id(&mut p, &at, &sh.id, "sh", &mut ids);
            word(&mut p, &at, "type", &sh.shot_type, ShotType::WORDS);
            word(&mut p, &at, "angle", &sh.angle, Angle::WORDS);
            positive(&mut p, &at, "duration", sh.duration);
            nonempty(&mut p, &at, "motion", &sh.motion);
            nonempty(&mut p, &at, "action", &sh.action);
            let mut present = HashSet::new();
            for c in &sh.characters {
                self.character(&at, &c.id, &mut p);
                word(&mut p, &at, "position", &c.position, Position::WORDS);
                if !present.insert(c.id.as_str()) {
                    p.push(format!("{at}: `{}` is listed twice", c.id));
                }
            }
            self.lines(&mut p, &at, &sh.dialogue);
        }
        p
    }

    pub fn dialogue(&self, d: &DialogueDraft, wanted: &[String]) -> Vec<String> {
        let mut p = Vec::new();
        let got: Vec<&str> = d.shots.iter().map(|s| s.id.as_str()).collect();
        for w in wanted {
            match got.iter().filter(|g| *g == w).count() {
                1 => {}
                0 => p.push(format!("shot `{w}` is missing")),
                _ => p.push(format!("shot `{w}` appears more than once")),
            }
        }
        for g in &got {
            if !wanted.iter().any(|w| w == g) {
                p.push(format!("shot `{g}` was not asked for (only {})", wanted.join(", ")));
            }
        }
        for s in &d.shots {
            self.lines(&mut p, &format!("shot `{}`", s.id), &s.dialogue);
        }
        p
    }

    pub fn timeline(&self, d: &TimelineDraft) -> Vec<String> {
        let mut p = Vec::new();
        nonempty(&mut p, "the episode", "summary", &d.summary);
        let mut seen = HashSet::new();
        for c in &d.characters {
            self.character("timeline", &c.character, &mut p);
            if !seen.insert(c.character.as_str()) {
                p.push(format!("timeline: `{}` appears twice", c.character));
            }
        }
        p
    }

    fn lines(&self, p: &mut Vec<String>, at: &str, lines: &[LineDraft]) {
        if lines.len() > LINES {
            p.push(format!("{at}: {} dialogue lines; at most {LINES}", lines.len()));
        }
        for l in lines {
            self.character(&format!("{at} dialogue"), &l.speaker, p);
            if l.text.trim().is_empty() {
                p.push(format!("{at}: an empty dialogue line for `{}`", l.speaker));
            }
        }
    }
}

fn count(p: &mut Vec<String>, what: &str, n: usize, (min, max): (usize, usize)) {
    if !(min..=max).contains(&n) {
        p.push(format!("{n} {what}; write between {min} and {max}"));
    }
}

fn id(p: &mut Vec<String>, at: &str, id: &str, prefix: &str, seen: &mut HashSet<String>) {
    let digits = id.strip_prefix(prefix).unwrap_or("");
    if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        p.push(format!("{at}: the id must look like `{prefix}01`"));
    }
    if !seen.insert(id.to_string()) {
        p.push(format!("{at}: the id `{id}` is used twice; ids must be unique"));
    }
}

fn word(p: &mut Vec<String>, at: &str, field: &str, value: &str, words: &[&str]) {
    if !words.contains(&value) {
        p.push(format!("{at}: {field} `{value}` is not one of {}", words.join(", ")));
    }
}

fn positive(p: &mut Vec<String>, at: &str, field: &str, v: f64) {
    if !(v > 0.0 && v.is_finite()) {
        p.push(format!("{at}: {field} must be a positive number of seconds, not {v}"));
    }
}

fn nonempty(p: &mut Vec<String>, at: &str, field: &str, v: &str) {
    if v.trim().is_empty() {
        p.push(format!("{at}: `{field}` is empty"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker() -> Checker {
        Checker {
            characters: vec!["kai".into(), "mio".into()],
        }
    }

    fn shot(id: &str, speaker: &str, duration: f64) -> ShotDraft {
        ShotDraft {
            id: id.into(),
            shot_type: "medium".into(),
            angle: "eye_level".into(),
            motion: "static".into(),
            action: "Kai waits.".into(),
            characters: vec![PresenceDraft {
                id: "kai".into(),
                position: "left".into(),
            }],
            duration,
            dialogue: vec![LineDraft {
                speaker: speaker.into(),
                text: "Hi.".into(),
            }],
        }
    }

    #[test]
    fn shot_checks() {
        let c = checker();
        let good = ShotsDraft {
            shots: vec![shot("sh01", "kai", 4.0), shot("sh02", "mio", 3.0)],
        };
        assert_eq!(c.shots(&good), Vec::<String>::new());
        let cases: &[(ShotsDraft, &str)] = &[
            (
                ShotsDraft {
                    shots: vec![shot("sh01", "kai", 4.0)],
                },
                "1 shots; write between 2 and 5",
            ),
            (
                ShotsDraft {
                    shots: vec![shot("sh01", "zed", 4.0), shot("sh02", "kai", 1.0)],
                },
                "unknown character `zed`",
            ),
            (
                ShotsDraft {
                    shots: vec![shot("sh01", "kai", 0.0), shot("sh02", "kai", 1.0)],
                },
                "duration must be a positive",
            ),
            (
                ShotsDraft {
                    shots: vec![shot("sh01", "kai", 1.0), shot("sh01", "kai", 1.0)],
                },
                "used twice",
            ),
            (
                ShotsDraft {
                    shots: vec![shot("x1", "kai", 1.0), shot("sh02", "kai", 1.0)],
                },
                "must look like `sh01`",
            ),
        ];
        for (draft, want) in cases {
            let problems = c.shots(draft).join("\n");
            assert!(problems.contains(want), "want `{want}` in {problems}");
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let e = parse::<ShotsDraft>("{\"shots\": [").unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse::<ShotsDraft>("{\"shots\": 3}").unwrap_err();
        assert!(e.contains("does not match the schema"), "{e}");
        assert!(parse::<ShotsDraft>("```json\n{\"shots\": []}\n```").is_ok());
    }

    #[test]
    fn dialogue_covers_exactly_the_shots_asked_for() {
        let c = checker();
        let d = DialogueDraft {
            shots: vec![ShotDialogue {
                id: "sh09".into(),
                dialogue: vec![],
            }],
        };
        let p = c.dialogue(&d, &["sh01".into()]).join("\n");
        assert!(
            p.contains("shot `sh01` is missing") && p.contains("`sh09` was not asked for"),
            "{p}"
        );
    }
}
