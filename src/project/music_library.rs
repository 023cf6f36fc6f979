//! `music_library:` in studio.yaml: the user's own tracks, tagged by mood,
//! for the `library_music` engine.
//!
//! ```yaml
//! music_library:
//!   dir: music/                      # inside the project
//!   tracks:
//!     - {file: rain-on-tin.ogg, moods: [calm, melancholy]}
//!     - {file: chase.flac, moods: [action, tense]}
//! ```
//!
//! Each track is a project file (`dir` + `file`), hashed by content like any
//! `{file:}` ([`super::assets`]), so replacing a track's bytes rebuilds the
//! scenes that play it and nothing else. A missing file or an unknown mood
//! is a located diagnostic. [`MusicLibrary::pick`] chooses a scene's track
//! when the graph is built, so a scene's key holds only its own track.

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::assets::{Resolver, project_path};
use super::diag::{ProjectError, SourceFile};
use super::vocab::Mood;

/// The most tracks a library may list.
pub const MAX_TRACKS: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMusicLibrary {
    /// The folder of the tracks, relative to the project (default: the project).
    #[serde(default)]
    pub dir: Option<Spanned<String>>,
    pub tracks: Vec<RawTrack>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrack {
    pub file: Spanned<String>,
    pub moods: Spanned<Vec<Spanned<String>>>,
}

/// The library, resolved: every track exists and is hashed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MusicLibrary {
    pub tracks: Vec<Track>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Track {
    /// Relative to the project root (`dir` joined with the track's `file`).
    pub file: Utf8PathBuf,
    /// The file's blake3.
    pub hash: String,
    pub moods: Vec<Mood>,
}

impl MusicLibrary {
    /// The track a scene at `scene` (its path, `ep01/s02`) of `mood` plays:
    /// among the tracks tagged with the mood, the most specific (fewest
    /// moods); ties go to the highest blake3 of the scene's path and the
    /// track's path (rendezvous hashing: scenes spread over equal tracks,
    /// adding a track moves only the scenes it wins, and a track edited in
    /// place keeps its scenes). `None` when no track has the mood.
    pub fn pick(&self, mood: Mood, scene: &str) -> Option<&Track> {
        let rank = |t: &Track| {
            let mut h = blake3::Hasher::new();
            h.update(scene.as_bytes());
            h.update(&[0]);
            h.update(t.file.as_str().as_bytes());
            (std::cmp::Reverse(t.moods.len()), *h.finalize().as_bytes())
        };
        self.tracks
            .iter()
            .filter(|t| t.moods.contains(&mood))
            .max_by_key(|t| rank(t))
    }
}

/// Check and hash the library's tracks; mistakes go to `assets`' collector.
pub fn resolve(studio: &SourceFile, raw: Option<&RawMusicLibrary>, assets: &mut Resolver) -> Option<MusicLibrary> {
    let raw = raw?;
    let dir = match &raw.dir {
        None => Utf8PathBuf::new(),
        Some(d) => match project_path(&d.value) {
            Ok(p) => p,
            Err(problem) => {
                assets.push(
                    ProjectError::at(
                        studio,
                        "music_library::dir",
                        format!("music_library.dir `{}` {problem}", d.value),
                    )
                    .label_loc(studio, &d.referenced, "not a folder inside the project")
                    .help("name the tracks' folder relative to the project folder, e.g. `dir: music/`"),
                );
                return None;
            }
        },
    };
    if raw.tracks.len() > MAX_TRACKS {
        assets.push(
            ProjectError::at(
                studio,
                "music_library::size",
                format!("music_library lists {} tracks; at most {MAX_TRACKS}", raw.tracks.len()),
            )
            .label(studio, studio.key_span("music_library"), "here")
            .help("keep the tracks the show uses"),
        );
        return None;
    }
    let mut tracks = Vec::new();
    let mut ok = true;
    for t in &raw.tracks {
        let mut moods = Vec::new();
        for m in &t.moods.value {
            match Mood::parse(&m.value) {
                Some(mood) if !moods.contains(&mood) => moods.push(mood),
                Some(_) => {}
                None => {
                    ok = false;
                    assets.push(
                        ProjectError::at(
                            studio,
                            "music_library::mood",
                            format!("track {} is tagged `{}`, which is not a mood", t.file.value, m.value),
                        )
                        .label_loc(studio, &m.referenced, "unknown mood")
                        .help(format!("a scene's mood is one of: {}", Mood::WORDS.join(", "))),
                    );
                }
            }
        }
        if t.moods.value.is_empty() {
            ok = false;
            assets.push(
                ProjectError::at(
                    studio,
                    "music_library::mood",
                    format!("track {} has no moods, so no scene would play it", t.file.value),
                )
                .label_loc(studio, &t.moods.referenced, "no moods")
                .help(format!(
                    "tag it with the moods it fits, e.g. `moods: [calm]` (one of: {})",
                    Mood::WORDS.join(", ")
                )),
            );
        }
        let joined = dir.join(&t.file.value);
        let what = format!("music_library track `{}`", t.file.value);
        match assets.file(studio, joined.as_str(), studio.span(&t.file.referenced), what) {
            Some((file, hash)) => {
                if tracks.iter().any(|x: &Track| x.file == file) {
                    ok = false;
                    assets.push(
                        ProjectError::at(
                            studio,
                            "music_library::duplicate",
                            format!("track {file} is listed twice"),
                        )
                        .label_loc(studio, &t.file.referenced, "listed again here")
                        .help("list each track once, with all its moods"),
                    );
                }
                tracks.push(Track { file, hash, moods });
            }
            None => ok = false,
        }
    }
    ok.then_some(MusicLibrary { tracks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(name: &str, moods: &[Mood]) -> Track {
        Track {
            file: name.into(),
            hash: blake3::hash(name.as_bytes()).to_hex().to_string(),
            moods: moods.to_vec(),
        }
    }

    #[test]
    fn the_pick_is_by_mood_most_specific_first_and_stable() {
        use Mood::*;
        let lib = MusicLibrary {
            tracks: vec![
                track("a.ogg", &[Calm, Tense, Joyful]),
                track("b.ogg", &[Tense]),
                track("c.ogg", &[Calm]),
                track("d.ogg", &[Calm]),
            ],
        };
        assert_eq!(
            lib.pick(Tense, "ep01/s01").unwrap().file,
            "b.ogg",
            "the tense-only track"
        );
        assert_eq!(lib.pick(Joyful, "ep01/s01").unwrap().file, "a.ogg");
        assert!(lib.pick(Eerie, "ep01/s01").is_none());
        // Calm: c and d tie; scenes spread over both, each scene always the same.
        let calm: Vec<_> = (1..=16)
            .map(|i| lib.pick(Calm, &format!("ep01/s{i:02}")).unwrap().file.clone())
            .collect();
        assert!(calm.iter().all(|f| f == "c.ogg" || f == "d.ogg"));
        assert!(
            calm.contains(&"c.ogg".into()) && calm.contains(&"d.ogg".into()),
            "{calm:?}"
        );
        for (i, f) in calm.iter().enumerate() {
            assert_eq!(&lib.pick(Calm, &format!("ep01/s{:02}", i + 1)).unwrap().file, f);
        }
        // The order of the list does not matter, and a track of another
        // mood changes no calm scene's pick.
        let mut other = lib.clone();
        other.tracks.reverse();
        other.tracks.push(track("e.ogg", &[Eerie]));
        for i in 1..=16 {
            let s = format!("ep01/s{i:02}");
            assert_eq!(lib.pick(Calm, &s), other.pick(Calm, &s));
        }
        // New bytes in a track keep its scenes.
        let mut edited = lib.clone();
        edited.tracks[2].hash = "0".repeat(64);
        for (i, f) in calm.iter().enumerate() {
            assert_eq!(&edited.pick(Calm, &format!("ep01/s{:02}", i + 1)).unwrap().file, f);
        }
        // A third calm track takes only scenes from the others, never moves
        // a scene between c and d.
        other.tracks.push(track("f.ogg", &[Calm]));
        for (i, f) in calm.iter().enumerate() {
            let now = &other.pick(Calm, &format!("ep01/s{:02}", i + 1)).unwrap().file;
            assert!(now == f || now == "f.ogg");
        }
    }
}
