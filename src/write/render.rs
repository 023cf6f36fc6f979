//! Drafts → YAML text in the screenplay format (`episodes/ep01.yaml`):
//! block style, two-space indents, plain scalars where they are safe and
//! JSON-style double quotes elsewhere (a JSON string is a YAML scalar).

use std::fmt::Write;

use super::schema::CUT;
use super::validate::{CharacterArc, LineDraft, SceneDraft, ShotDraft, TimelineDraft};

/// A YAML scalar for `s`: plain when nothing in it means anything to YAML.
pub fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s == s.trim()
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '`' | '\\'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

/// A number as the screenplay writes it: `5`, `4.5`, `0.6`.
fn num(v: f64) -> String {
    format!("{v}")
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

/// The `dialogue:` key and its lines, for a shot whose keys are at column
/// `col`; the first line has no indent (it continues the key's line), and the
/// text ends with a newline. `dubs[i]` are line `i`'s dub texts
/// (`(code, text)`, written after its `text:` in that order); lines past
/// its end have none.
pub fn dialogue_block(lines: &[LineDraft], dubs: &[Vec<(String, String)>], col: usize) -> String {
    if lines.is_empty() {
        return "dialogue: []\n".to_string();
    }
    let mut out = "dialogue:\n".to_string();
    for (i, l) in lines.iter().enumerate() {
        let _ = writeln!(out, "{}- speaker: {}", pad(col + 2), scalar(&l.speaker));
        let _ = writeln!(out, "{}text: {}", pad(col + 4), scalar(&l.text));
        for (code, text) in dubs.get(i).into_iter().flatten() {
            let _ = writeln!(out, "{}{code}: {}", pad(col + 4), scalar(text));
        }
    }
    out
}

/// The `shots:` key and its shots, for a scene whose keys are at column
/// `col`; `dubs[i]` are shot `i`'s lines' dub texts (see [`dialogue_block`]).
pub fn shots_block(shots: &[ShotDraft], dubs: &[Vec<Vec<(String, String)>>], col: usize) -> String {
    let mut out = "shots:\n".to_string();
    let (item, key) = (pad(col + 2), pad(col + 4));
    for (i, sh) in shots.iter().enumerate() {
        let _ = writeln!(out, "{item}- id: {}", scalar(&sh.id));
        let _ = writeln!(out, "{key}type: {}", sh.shot_type);
        let _ = writeln!(out, "{key}angle: {}", sh.angle);
        let _ = writeln!(out, "{key}motion: {}", scalar(&sh.motion));
        let _ = writeln!(out, "{key}action: {}", scalar(&sh.action));
        if !sh.characters.is_empty() {
            let _ = writeln!(out, "{key}characters:");
            for c in &sh.characters {
                let _ = writeln!(out, "{key}  - id: {}", scalar(&c.id));
                let _ = writeln!(out, "{key}    position: {}", c.position);
            }
        }
        let _ = writeln!(out, "{key}duration: {}", num(sh.duration));
        if !sh.dialogue.is_empty() {
            let _ = write!(
                out,
                "{key}{}",
                dialogue_block(&sh.dialogue, dubs.get(i).map_or(&[], Vec::as_slice), col + 4)
            );
        }
    }
    out
}

/// A whole screenplay.
pub fn screenplay(episode: &str, title: &str, scenes: &[(SceneDraft, Vec<ShotDraft>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Screenplay for {episode}, {}, written by `studio write {episode}`.",
        serde_json::to_string(title).expect("a string serializes")
    );
    out.push_str(
        "# It is yours now: edit anything; studio never overwrites an edited\n\
         # screenplay (`studio write --scene` and `--dialogue` rewrite only the\n\
         # part they name).\n",
    );
    let _ = writeln!(out, "episode: {episode}\n\nscenes:");
    for (n, (s, shots)) in scenes.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "  - id: {}", scalar(&s.id));
        let _ = writeln!(out, "    title: {}", scalar(&s.title));
        let _ = writeln!(out, "    description: {}", scalar(&s.description));
        let _ = writeln!(out, "    location: {}", scalar(&s.location));
        let _ = writeln!(out, "    time_of_day: {}", s.time_of_day);
        let _ = writeln!(out, "    mood: {}", s.mood);
        let _ = writeln!(out, "    target_duration: {}", num(s.target_duration));
        if let Some(t) = s.transition.as_deref().filter(|t| *t != CUT) {
            let _ = writeln!(out, "    transition: {t}");
        }
        out.push_str("    state:\n");
        for st in &s.state {
            let _ = writeln!(out, "      - character: {}", scalar(&st.character));
            let _ = writeln!(out, "        clothing: {}", scalar(&st.clothing));
            let _ = writeln!(out, "        injuries: {}", scalar(&st.injuries));
            let _ = writeln!(out, "        emotional_state: {}", scalar(&st.emotional_state));
            let _ = writeln!(out, "        energy: {}", num(st.energy));
        }
        let _ = write!(out, "    {}", shots_block(shots, &[], 4));
    }
    out
}

fn list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(out, "    {key}: []");
        return;
    }
    let _ = writeln!(out, "    {key}:");
    for i in items {
        let _ = writeln!(out, "      - {}", scalar(i));
    }
}

/// A timeline file (`episodes/<id>.timeline.yaml`).
pub fn timeline(episode: &str, d: &TimelineDraft) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# What happened in {episode} and where each character stands at its end,\n\
         # written by `studio write {episode}`. The next episodes' prompts read it;\n\
         # edit it freely (studio does not overwrite an edited timeline)."
    );
    let _ = writeln!(out, "episode: {episode}");
    let _ = writeln!(out, "summary: {}", scalar(&d.summary));
    out.push_str("characters:\n");
    for CharacterArc {
        character,
        personality_shifts,
        trauma_events,
        skills_learned,
        emotional_state,
    } in &d.characters
    {
        let _ = writeln!(out, "  - character: {}", scalar(character));
        list(&mut out, "personality_shifts", personality_shifts);
        list(&mut out, "trauma_events", trauma_events);
        list(&mut out, "skills_learned", skills_learned);
        let _ = writeln!(out, "    emotional_state: {}", scalar(emotional_state));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip() {
        for s in [
            "plain words, with commas",
            "It says: \"To the night clerk.\" That's me.",
            "# not a comment",
            "yes",
            "- dash",
            "ありがとう。",
            "trailing colon:",
            "tab\there",
            "a #hash",
            "100",
            "",
            " padded ",
        ] {
            let yaml = format!("v: {}\n", scalar(s));
            #[derive(serde::Deserialize)]
            struct V {
                v: String,
            }
            let back: V = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(back.v, s, "{yaml}");
        }
        assert_eq!(scalar("Kai waits for the bus"), "Kai waits for the bus");
    }
}
