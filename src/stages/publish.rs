//! The `library` engine: how an episode is laid out in a Jellyfin library.
//!
//! The node itself is pure: it writes the `.nfo` files and a layout manifest
//! (which file goes where). `studio publish --to DIR` copies the files there
//! and asks the server to rescan; see `cli/publish.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use unicode_segmentation::UnicodeSegmentation;

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

/// The longest file name component (`NAME_MAX` of Linux filesystems), in bytes.
pub const NAME_MAX: usize = 255;
/// Room left after the stem for the longest suffix an episode file gets
/// (`-thumb.jpg`), and a little more.
const SUFFIX_ROOM: usize = 15;
/// How much of the stem the show's name may take, so the `S01E01` that
/// Jellyfin reads and the title still fit.
const SHOW_IN_STEM: usize = 96;
/// [`file_name`] keeps at most this many characters.
const NAME_CHARS: usize = 120;

/// The longest prefix of `s` made of whole grapheme clusters (a letter
/// with its marks, an emoji sequence) with at most `bytes` UTF-8 bytes and
/// `chars` characters: [`file_name`] maps each character to one of no more
/// bytes, so its result fits too and is never cut inside a cluster.
fn fit(s: &str, bytes: usize, chars: usize) -> &str {
    let (mut end, mut count) = (0, 0);
    for g in s.graphemes(true) {
        let n = g.chars().count();
        if end + g.len() > bytes || count + n > chars {
            break;
        }
        end += g.len();
        count += n;
    }
    &s[..end]
}

impl Layout {
    /// Names are cut by bytes, on grapheme boundaries: the show folder to
    /// [`NAME_MAX`], the stem so that the stem and its longest suffix do.
    pub fn new(show: &str, season: u64, number: u64, title: &str) -> Layout {
        let show_dir = file_name(fit(show, NAME_MAX, NAME_CHARS));
        let season_dir = format!("{show_dir}/Season {season:02}");
        let head = format!(
            "{} S{season:02}E{number:02} - ",
            fit(show, SHOW_IN_STEM, NAME_CHARS / 2)
        );
        let title = fit(
            title,
            (NAME_MAX - SUFFIX_ROOM).saturating_sub(head.len()),
            NAME_CHARS.saturating_sub(head.chars().count()),
        );
        let stem = file_name(&format!("{head}{title}"));
        Layout {
            show_dir,
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
        metadata: crate::exec::Metadata::new(),
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
    fn names_fit_in_bytes_and_cut_between_graphemes() {
        let cjk = "長い題名".repeat(40);
        let emoji = "👩‍👩‍👧‍👦 family ".repeat(30);
        let devanagari = "नमस्ते दुनिया ".repeat(20);
        for (show, title) in [
            (&cjk, &cjk),
            (&emoji, &emoji),
            (&devanagari, &devanagari),
            (&cjk, &emoji),
        ] {
            let l = Layout::new(show, 1, 2, title);
            assert!(l.show_dir.len() <= NAME_MAX, "{}", l.show_dir);
            let longest = l.episode_file("-thumb.jpg");
            for part in longest.split('/') {
                assert!(part.len() <= NAME_MAX, "{} bytes: {part}", part.len());
            }
            assert!(l.stem.contains(" S01E02 - "), "{}", l.stem);
            // Emoji become `_`, so only names that keep their letters are long.
            if !title.contains('👩') {
                assert!(l.stem.len() > 200, "the budget is used: {} bytes", l.stem.len());
            }
            // file_name maps character to character, so the title's part of
            // the stem is as many characters as the title was cut to: that
            // cut falls between two grapheme clusters of the title.
            let kept = l.stem.split_once(" S01E02 - ").unwrap().1.chars().count();
            let cut = title.char_indices().nth(kept).map_or(title.len(), |(i, _)| i);
            assert!(
                title.grapheme_indices(true).any(|(i, _)| i == cut),
                "cut inside a cluster at {kept} characters: {}",
                l.stem
            );
        }
        // A short name is left alone.
        assert_eq!(Layout::new("短い", 1, 1, "題名").stem, "短い S01E01 - 題名");
    }

    #[test]
    fn fit_counts_bytes_and_whole_clusters() {
        assert_eq!(fit("日本語", 7, 120), "日本");
        assert_eq!(fit("日本語", 9, 2), "日本");
        assert_eq!(fit("e\u{301}x", 2, 120), "", "é is one cluster of 3 bytes");
        assert_eq!(fit("e\u{301}x", 3, 120), "e\u{301}");
        assert_eq!(fit("abc", 0, 120), "");
    }

    #[test]
    fn nfo_text_is_escaped() {
        let nfo = episode_nfo("A & B", 1, 2, "<Night>", "\"quoted\"", 2);
        assert!(nfo.contains("<title>&lt;Night&gt;</title>") && nfo.contains("<showtitle>A &amp; B</showtitle>"));
        assert!(nfo.contains("<episode>2</episode>") && nfo.contains("&quot;quoted&quot;"));
    }
}
