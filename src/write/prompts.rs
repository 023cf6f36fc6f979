//! Prompt templates (`rules/prompts/*.j2`, rendered with minijinja) and the
//! context they are fed: premise, storyline, world, characters, the episode,
//! the previous episodes' summaries and each character's timeline state.
//!
//! A project's own file wins; without one, studio uses the template it ships
//! (the same files as in its repository's `rules/prompts/`). A broken
//! template is a diagnostic naming its file and line.

use camino::Utf8Path;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Value, json};

use super::schema::{LINES, SCENES, SHOTS};
use super::validate::CharacterArc;
use crate::project::diag::SourceFile;
use crate::project::model::{Episode, Project};
use crate::project::vocab::{Angle, Mood, Position, ShotType, TimeOfDay, Transition};
use crate::project::{Diagnostics, ProjectError};

/// The templates studio renders, with the text it ships for each.
const BUILTIN: &[(&str, &str)] = &[
    ("system", include_str!("../../rules/prompts/system.j2")),
    ("scenes", include_str!("../../rules/prompts/scenes.j2")),
    ("shots", include_str!("../../rules/prompts/shots.j2")),
    ("dialogue", include_str!("../../rules/prompts/dialogue.j2")),
    ("timeline", include_str!("../../rules/prompts/timeline.j2")),
    ("dub", include_str!("../../rules/prompts/dub.j2")),
    ("repair", include_str!("../../rules/prompts/repair.j2")),
];

/// The loaded templates, each with the file it came from.
#[derive(Debug, Clone)]
pub struct Templates {
    files: Vec<(&'static str, SourceFile)>,
}

impl Templates {
    /// Read `rules/prompts/NAME.j2` where present and check that each compiles.
    pub fn load(root: &Utf8Path) -> Result<Templates, Diagnostics> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for (name, builtin) in BUILTIN {
            let rel = Utf8Path::new("rules/prompts").join(format!("{name}.j2"));
            let text = match std::fs::read_to_string(root.join(&rel)) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => builtin.to_string(),
                Err(e) => {
                    errors.push(ProjectError::plain("prompt::io", format!("cannot read {rel}: {e}")));
                    continue;
                }
            };
            let file = SourceFile::new(&rel, text);
            let env = environment();
            if let Err(e) = env.template_from_named_str(file.name.as_str(), &file.text) {
                errors.push(template_error(&file, &e));
            }
            files.push((*name, file));
        }
        if errors.is_empty() {
            Ok(Templates { files })
        } else {
            Err(Diagnostics { errors })
        }
    }

    /// Render template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, Box<ProjectError>> {
        let (_, file) = self.files.iter().find(|(n, _)| *n == name).expect("a known template");
        environment()
            .render_named_str(file.name.as_str(), &file.text, ctx)
            .map(|s| s.trim().to_string())
            .map_err(|e| Box::new(template_error(file, &e)))
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

fn template_error(file: &SourceFile, e: &minijinja::Error) -> ProjectError {
    let what = e
        .detail()
        .map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    let err = ProjectError::at(
        file,
        "prompt::template",
        format!("prompt template {}: {what}", file.name),
    );
    let err = match e.line() {
        Some(line) => err.label(file, file.line_span(line), "here"),
        None => err,
    };
    err.help("fix the template (minijinja syntax: https://docs.rs/minijinja); delete the file to use studio's own")
}

/// What a previous episode contributes to the next one's prompts.
#[derive(Debug, Clone)]
pub struct Previous {
    pub id: String,
    pub title: String,
    pub summary: String,
}

/// The context every template gets; callers add `scene`, `scenes`, `targets`.
pub fn context(project: &Project, episode: &Episode, previous: &[Previous], timeline: &[CharacterArc]) -> Value {
    let arc_description = project
        .storyline
        .arcs
        .iter()
        .find(|(name, _)| *name == episode.arc)
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    json!({
        "project": project.meta,
        "storyline": {
            "summary": project.storyline.summary,
            "themes": project.storyline.themes,
            "tone": project.storyline.tone,
            "arcs": project.storyline.arcs.iter().map(|(n, d)| json!({"name": n, "description": d})).collect::<Vec<_>>(),
        },
        "world": project.world,
        "characters": project.characters.iter().map(|c| json!({
            "id": c.id, "name": c.name, "design_prompt": c.design_prompt, "appearance": c.appearance,
        })).collect::<Vec<_>>(),
        "episode": {
            "id": episode.id, "number": episode.number, "title": episode.title, "synopsis": episode.synopsis,
            "arc": episode.arc, "arc_description": arc_description, "tone": episode.tone,
        },
        "previous": previous.iter().map(|p| json!({"id": p.id, "title": p.title, "summary": p.summary})).collect::<Vec<_>>(),
        "timeline": timeline,
        "vocab": {
            "time_of_day": TimeOfDay::WORDS, "mood": Mood::WORDS, "transition": Transition::WORDS,
            "shot_type": ShotType::WORDS, "angle": Angle::WORDS, "position": Position::WORDS,
        },
        "counts": {"scenes": [SCENES.0, SCENES.1], "shots": [SHOTS.0, SHOTS.1], "lines": LINES},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_template_names_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("rules/prompts")).unwrap();
        std::fs::write(root.join("rules/prompts/shots.j2"), "line one\nline two {% for %}\n").unwrap();
        let e = Templates::load(root).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].location(), Some("rules/prompts/shots.j2:2"));
    }

    #[test]
    fn an_unknown_variable_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("rules/prompts")).unwrap();
        std::fs::write(root.join("rules/prompts/repair.j2"), "a\n{{ nope.field }}\n").unwrap();
        let t = Templates::load(root).unwrap();
        let e = t.render("repair", &json!({"problems": []})).unwrap_err();
        assert_eq!(e.location(), Some("rules/prompts/repair.j2:2"));
        assert!(
            t.render("system", &json!({})).is_err(),
            "strict: missing context is an error"
        );
    }
}
