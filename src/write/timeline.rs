//! Timelines: `episodes/<id>.timeline.yaml`, each character's state at the
//! end of an episode, written after the episode and read by the prompts of
//! the episodes after it.

use camino::Utf8Path;
use serde::Deserialize;

use super::prompts::Previous;
use super::validate::CharacterArc;
use crate::project::diag::{SourceFile, yaml_error};
use crate::project::model::Project;
use crate::project::{Diagnostics, ProjectError};

/// The timeline file of `episode`, relative to the root.
pub fn path(episode: &str) -> String {
    format!("episodes/{episode}.timeline.yaml")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineFile {
    #[allow(dead_code)]
    episode: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    characters: Vec<CharacterArc>,
}

fn read(root: &Utf8Path, episode: &str) -> Result<Option<TimelineFile>, Box<ProjectError>> {
    let rel = path(episode);
    let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
        return Ok(None);
    };
    let file = SourceFile::new(Utf8Path::new(&rel), text);
    serde_saphyr::from_str(&file.text)
        .map(Some)
        .map_err(|e| Box::new(yaml_error(&file, &e)))
}

/// What the episodes before `episode` hand to its prompts: each one's
/// summary (its timeline's, else its synopsis) and the latest timeline's
/// character states.
pub fn history(project: &Project, episode: &str) -> Result<(Vec<Previous>, Vec<CharacterArc>), Diagnostics> {
    let mut previous = Vec::new();
    let mut latest = Vec::new();
    for ep in project.episodes.iter().take_while(|e| e.id != episode) {
        let summary = match read(&project.root, &ep.id).map_err(|e| Diagnostics::from(*e))? {
            Some(t) => {
                if !t.characters.is_empty() {
                    latest = t.characters;
                }
                t.summary
            }
            None => ep.synopsis.clone(),
        };
        previous.push(Previous {
            id: ep.id.clone(),
            title: ep.title.clone(),
            summary,
        });
    }
    Ok((previous, latest))
}
