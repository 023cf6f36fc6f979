//! Exporting a screenplay as Fountain, the plain-text format screenwriters use.
//!
//! Scenes become forced scene headings (`.LOCATION - TIME`), shots become
//! action paragraphs with their framing in a `[[note]]`, dialogue keeps its
//! text verbatim under the speaker's name, and scene transitions become
//! forced transitions (`> DISSOLVE TO:`).

use std::fmt::Write;

use crate::project::model::{Episode, Project};
use crate::project::vocab::Transition;

/// The Fountain text of `episode` (which must have a screenplay).
pub fn fountain(project: &Project, episode: &Episode) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Title: {}", one_line(&episode.title));
    let _ = writeln!(out, "Credit: Episode {} of", episode.number);
    let _ = writeln!(out, "Author: {}", one_line(&project.meta.name));
    if !episode.synopsis.is_empty() {
        let _ = writeln!(out, "Notes: {}", one_line(&episode.synopsis));
    }
    out.push('\n');
    let Some(sp) = &episode.screenplay else { return out };
    for (i, scene) in sp.scenes.iter().enumerate() {
        let place = if scene.location.is_empty() {
            &scene.title
        } else {
            &scene.location
        };
        let _ = writeln!(
            out,
            ".{} - {}\n",
            one_line(place).to_uppercase(),
            scene.time_of_day.as_str().to_uppercase()
        );
        let _ = writeln!(
            out,
            "[[{}: {} — mood: {}]]\n",
            scene.id,
            one_line(&scene.title),
            scene.mood.as_str()
        );
        if !scene.description.is_empty() {
            let _ = writeln!(out, "{}\n", action(&scene.description));
        }
        for shot in &scene.shots {
            let _ = writeln!(
                out,
                "[[{}: {} / {} / {:.1}s{}]]",
                shot.id,
                shot.shot_type.as_str(),
                shot.angle.as_str(),
                shot.duration,
                if shot.motion.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", one_line(&shot.motion))
                }
            );
            if !shot.action.is_empty() {
                let _ = writeln!(out, "{}", action(&shot.action));
            }
            out.push('\n');
            for line in &shot.dialogue {
                let _ = writeln!(
                    out,
                    "{}\n{}\n",
                    cue(&project.characters[line.speaker].name),
                    dialogue(&line.text)
                );
            }
        }
        if i + 1 < sp.scenes.len() {
            let word = match scene.transition.unwrap_or(Transition::Dissolve) {
                Transition::Dissolve => "DISSOLVE TO:",
                Transition::Fade => "FADE TO:",
                Transition::FadeBlack => "FADE TO BLACK:",
                Transition::WipeLeft => "WIPE TO:",
            };
            let _ = writeln!(out, "> {word}\n");
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An action paragraph; `!` forces action where Fountain would read a line
/// as a heading, a character cue or a transition.
fn action(s: &str) -> String {
    let s = one_line(s);
    let looks_special = s.starts_with(['.', '!', '@', '#', '~', '>', '=', '[', '('])
        || s.chars().any(char::is_alphabetic) && s.chars().filter(|c| c.is_alphabetic()).all(char::is_uppercase);
    if looks_special { format!("!{s}") } else { s }
}

/// A character cue: upper case; `@` forces it when the name has characters
/// without case (kanji, kana).
fn cue(name: &str) -> String {
    let upper = one_line(name).to_uppercase();
    let caseless = upper.chars().any(|c| c.is_alphabetic() && !c.is_uppercase());
    if caseless { format!("@{upper}") } else { upper }
}

/// Dialogue text, verbatim, one line (blank lines would end the block).
fn dialogue(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_and_actions_are_forced_where_needed() {
        assert_eq!(cue("Hana"), "HANA");
        assert_eq!(cue("Hana Tsukishiro (月城 花)"), "@HANA TSUKISHIRO (月城 花)");
        assert_eq!(action("EXT. ROOF"), "!EXT. ROOF");
        assert_eq!(action("The bus  pulls away."), "The bus pulls away.");
        assert_eq!(action(".hidden"), "!.hidden");
        assert_eq!(dialogue("He said: \"100% sure.\""), "He said: \"100% sure.\"");
    }
}
