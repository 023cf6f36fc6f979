//! The `library` engine: how an episode is laid out in a Jellyfin library.
//!
//! The node itself is pure: it writes the `.nfo` files and a layout manifest
//! (which file goes where). `studio publish --to DIR` copies the files there
//! and asks the server to rescan; see `cli/publish.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::escape::file_name;
use super::{input, param, param_str, write};
use crate::exec::{ExecError, Job, Produced};

/// Where each file of an episode goes, relative to the library root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// `Show/`
    pub show_dir: String,
    /// `Show/Season 01/`
    pub season_dir: String,
    /// `Show S01E01 - Title`: the episode's files share this stem.
    pub stem: String,
}

impl Layout {
    pub fn new(show: &str, season: u64, number: u64, title: &str) -> Layout {
        let show = file_name(show);
        let season_dir = format!("{show}/Season {season:02}");
        let stem = file_name(&format!("{show} S{season:02}E{number:02} - {title}"));
        Layout {
            show_dir: show,
            season_dir,
            stem,
        }
    }

    /// Library path of an episode file with this suffix (`.mp4`, `-thumb.jpg`).
    pub fn episode_file(&self, suffix: &str) -> String {
        format!("{}/{}{suffix}", self.season_dir, self.stem)
    }
}

/// Text for XML element content and attribute values.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn tvshow_nfo(show: &str, premise: &str, genre: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<tvshow>\n  <title>{}</title>\n  <plot>{}</plot>\n  <genre>{}</genre>\n</tvshow>\n",
        xml(show),
        xml(premise),
        xml(genre)
    )
}

fn episode_nfo(show: &str, season: u64, number: u64, title: &str, synopsis: &str, minutes: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<episodedetails>\n  <title>{}</title>\n  <showtitle>{}</showtitle>\n  <season>{season}</season>\n  <episode>{number}</episode>\n  <plot>{}</plot>\n  <runtime>{minutes}</runtime>\n</episodedetails>\n",
        xml(title),
        xml(show),
        xml(synopsis)
    )
}

pub async fn library(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let episode = input(job, "episode")?;
    let show = param_str(job, "show");
    let season = param(job, "season").and_then(Value::as_u64).unwrap_or(1);
    let number = param(job, "number").and_then(Value::as_u64).unwrap_or(1);
    let title = param_str(job, "title");
    let layout = Layout::new(show, season, number, title);
    let minutes = episode.duration.map_or(0, |d| (d / 60.0).ceil() as u64);
    let manifest = write(
        job,
        "layout.json",
        &serde_json::to_string_pretty(&layout).expect("layout serializes"),
    )?;
    let tvshow = write(
        job,
        "tvshow.nfo",
        &tvshow_nfo(show, param_str(job, "premise"), param_str(job, "genre")),
    )?;
    let nfo = write(
        job,
        "episode.nfo",
        &episode_nfo(show, season, number, title, param_str(job, "synopsis"), minutes),
    )?;
    Ok(Produced {
        files: vec![
            ("json".into(), manifest),
            ("tvshow.nfo".into(), tvshow),
            ("nfo".into(), nfo),
        ],
        duration: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_jellyfin_naming() {
        let l = Layout::new("Lantern Post", 1, 1, "The Letter: With No Stamp");
        assert_eq!(l.show_dir, "Lantern Post");
        assert_eq!(
            l.episode_file(".mp4"),
            "Lantern Post/Season 01/Lantern Post S01E01 - The Letter_ With No Stamp.mp4"
        );
        assert_eq!(
            l.episode_file("-thumb.jpg"),
            "Lantern Post/Season 01/Lantern Post S01E01 - The Letter_ With No Stamp-thumb.jpg"
        );
    }

    #[test]
    fn nfo_text_is_escaped() {
        let nfo = episode_nfo("A & B", 1, 2, "<Night>", "\"quoted\"", 2);
        assert!(nfo.contains("<title>&lt;Night&gt;</title>") && nfo.contains("<showtitle>A &amp; B</showtitle>"));
        assert!(nfo.contains("<episode>2</episode>") && nfo.contains("&quot;quoted&quot;"));
    }
}
