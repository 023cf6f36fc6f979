//! The validated, resolved project: what the graph is built from.
//!
//! Everything here has been cross-checked: every character a shot names
//! exists, ids are unique, durations are positive, engines are known. The
//! graph builder can index without checking.

use std::collections::{BTreeMap, HashMap};

use camino::Utf8PathBuf;
use serde::Serialize;

use super::raw::RawVoice;
use super::rules::Rules;
use super::vocab::{Angle, Mood, Position, ShotType, TimeOfDay, Transition};
use crate::engines::ServiceKind;

#[derive(Debug)]
pub struct Project {
    pub root: Utf8PathBuf,
    pub meta: Meta,
    pub storyline: Storyline,
    pub world: World,
    pub style: Style,
    pub characters: Vec<Character>,
    pub episodes: Vec<Episode>,
    pub executors: Vec<Executor>,
    /// `cache.remote` and `cache.mode` in studio.yaml (`--remote` overrides).
    pub remote: Option<RemoteConfig>,
    pub profile: Profile,
    pub writing: Writing,
    /// `publish.library`: the media library folder, resolved against the root.
    pub library: Option<Utf8PathBuf>,
    pub rules: Rules,
    /// The engines rules may name (the caller's: the registry's, or a test's).
    pub catalog: crate::engines::Catalog,
    /// The spoken languages (`languages:`), the default first; empty when
    /// studio.yaml declares none (one untagged language, no dubs).
    pub languages: Vec<super::languages::Language>,
    /// Source files read, relative to the root, with their hashes.
    pub sources: Vec<(Utf8PathBuf, String)>,
    /// `music_library:` (the `library_music` engine's tracks).
    pub music_library: Option<super::music_library::MusicLibrary>,
}

/// How a build uses the remote cache (`cache.mode`, `--remote-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Fetch on a local miss and upload what was built.
    ReadWrite,
    /// Fetch, never upload (laptops, untrusted machines).
    ReadOnly,
    /// Do not use the remote.
    Off,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::ReadWrite => "read-write",
            Mode::ReadOnly => "read-only",
            Mode::Off => "off",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "read-write" => Ok(Mode::ReadWrite),
            "read-only" => Ok(Mode::ReadOnly),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "unknown remote cache mode `{other}`: use read-write, read-only or off"
            )),
        }
    }
}

/// Where the remote cache is and how to use it (`cache.remote` in studio.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub url: String,
    pub mode: Mode,
}

/// One kind of LLM call: its prompt template and its reply bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStage {
    Scenes,
    Shots,
    Dialogue,
    Timeline,
    /// A scene's lines in a dub language (`studio write EP --dub LANG`).
    Dub,
}

impl WriteStage {
    pub const ALL: [WriteStage; 5] = [
        WriteStage::Scenes,
        WriteStage::Shots,
        WriteStage::Dialogue,
        WriteStage::Timeline,
        WriteStage::Dub,
    ];

    /// The prompt template (rules/prompts/NAME.j2), also the call's name.
    pub fn template(self) -> &'static str {
        match self {
            WriteStage::Scenes => "scenes",
            WriteStage::Shots => "shots",
            WriteStage::Dialogue => "dialogue",
            WriteStage::Timeline => "timeline",
            WriteStage::Dub => "dub",
        }
    }

    /// `max_tokens` when the executor sets none: about three times the
    /// longest reply the schema allows with a mid-sized cast (up to 8
    /// scenes with every character's state ≈ 1,500 tokens; up to 5 shots
    /// with 4 lines each ≈ 1,000; a timeline entry per character ≈ 100
    /// each), and with a prompt still inside Ollama's default 8,192-token
    /// context.
    pub fn default_max_tokens(self) -> u32 {
        match self {
            WriteStage::Scenes => 4096,
            WriteStage::Shots | WriteStage::Timeline => 3072,
            WriteStage::Dialogue | WriteStage::Dub => 2048,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub name: String,
    pub premise: String,
    pub genre: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storyline {
    pub summary: String,
    pub themes: Vec<String>,
    pub tone: String,
    pub arcs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct World {
    pub art_style: String,
    pub location: String,
    pub color_palette: Vec<String>,
    pub cinematography: String,
    /// How the show's music sounds, for music generators (`world.music_style`).
    pub music_style: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Style {
    pub checkpoint: String,
    pub cfg: f64,
    pub steps: u32,
    pub sampler: String,
    pub width: u32,
    pub height: u32,
    pub negative_prompt: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Character {
    pub id: String,
    pub name: String,
    pub design_prompt: String,
    pub appearance: BTreeMap<String, String>,
    pub voice: RawVoice,
    /// `#rrggbb`.
    pub color: String,
    /// A name the image service knows, or `{file, hash}` of a project file.
    pub lora: Option<serde_saphyr::Spanned<super::assets::NameOrFile>>,
    /// The voice per dub language (`voices:`), each with its own engines.
    pub voices: BTreeMap<String, RawVoice>,
}

#[derive(Debug)]
pub struct Episode {
    pub id: String,
    pub number: usize,
    pub title: String,
    pub synopsis: String,
    pub arc: String,
    pub tone: String,
    /// `None` when `episodes/<id>.yaml` does not exist yet.
    pub screenplay: Option<Screenplay>,
}

#[derive(Debug)]
pub struct Screenplay {
    pub file: Utf8PathBuf,
    pub scenes: Vec<Scene>,
    /// The dub languages some line is written in, in `languages:` order:
    /// each is one more audio and subtitle track.
    pub dubs: Vec<String>,
    /// Dub languages some lines leave out (spoken in the default language).
    pub fallbacks: Vec<super::languages::Fallback>,
}

#[derive(Debug)]
pub struct Scene {
    pub id: String,
    pub title: String,
    pub description: String,
    pub location: String,
    pub time_of_day: TimeOfDay,
    pub mood: Mood,
    pub target_duration: Option<f64>,
    pub transition: Option<Transition>,
    pub state: Vec<CharacterState>,
    pub shots: Vec<Shot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CharacterState {
    pub character: String,
    pub clothing: String,
    pub injuries: String,
    pub emotional_state: String,
    pub energy: Option<f64>,
}

#[derive(Debug)]
pub struct Shot {
    pub id: String,
    pub shot_type: ShotType,
    pub angle: Angle,
    pub motion: String,
    pub action: String,
    pub characters: Vec<Presence>,
    pub duration: f64,
    pub take: u32,
    /// A shot of the same scene whose last frame is this shot's source.
    pub continue_from: Option<String>,
    pub dialogue: Vec<Line>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Presence {
    /// Index into [`Project::characters`].
    #[serde(skip)]
    pub character: usize,
    pub id: String,
    pub position: Position,
}

#[derive(Debug, Clone)]
pub struct Line {
    /// Index into [`Project::characters`].
    pub speaker: usize,
    pub text: String,
    /// The text per dub language (`ja: …`).
    pub dubs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Executor {
    pub id: String,
    /// The wire protocol it speaks.
    pub kind: ServiceKind,
    /// The host pool it belongs to: its `group:`, else the protocol's name.
    /// Rules send jobs to a group; the scheduler picks the host.
    pub group: String,
    /// Its line in studio.yaml (the `id:`), named in its errors.
    pub line: usize,
    pub url: String,
    /// `url:` may name a host that is not loopback (`remote_host: true`).
    pub remote_host: bool,
    /// LLM executors: the most tokens of one reply; `None`: each call's
    /// default ([`WriteStage::default_max_tokens`]).
    pub max_tokens: Option<u32>,
    pub slots: usize,
    pub model: Option<String>,
    pub token_env: Option<String>,
    pub api_key_env: Option<String>,
    /// Seconds a whole request may take.
    pub timeout: f64,
    /// Seconds to wait for a connection.
    pub connect_timeout: f64,
}

/// `writing:` resolved: the LLM executor that writes screenplays, and how.
#[derive(Debug, Clone)]
pub struct Writing {
    /// Id of an `ollama` or `openai_chat` executor; `None` when the project has none.
    pub executor: Option<String>,
    pub seed: u64,
    pub temperature: f64,
    pub num_ctx: u32,
    pub retries: u32,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// The profile whose rules apply (itself unless `rules_from`).
    pub rules_profile: String,
    pub simulate: Option<Simulate>,
    /// The LLM executor that writes missing screenplays during `studio build`.
    pub writer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Simulate {
    pub time_scale: f64,
    /// Sim checks that the hosts answer: a job on a service executor with a
    /// loopback `url:` first opens a TCP connection to it, so a host that
    /// refuses is a transient failure of that host (`check_hosts: true`).
    pub check_hosts: bool,
    pub failures: Vec<super::raw::RawSimFailure>,
    pub reviews: Vec<super::raw::RawSimReview>,
}

impl Project {
    pub fn character_index(&self) -> HashMap<&str, usize> {
        self.characters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect()
    }

    pub fn episode(&self, id: &str) -> Option<&Episode> {
        self.episodes.iter().find(|e| e.id == id)
    }

    /// A declared language by its code.
    pub fn language(&self, code: &str) -> Option<&super::languages::Language> {
        self.languages.iter().find(|l| l.code == code)
    }

    /// One warning per episode and dub language that some lines leave out.
    pub fn dub_warnings(&self) -> Vec<String> {
        let default = self.languages.first().map_or("", |l| l.code.as_str());
        self.episodes
            .iter()
            .filter_map(|e| Some((e, e.screenplay.as_ref()?)))
            .flat_map(|(e, sp)| sp.fallbacks.iter().map(|f| f.warning(&e.id, default)))
            .collect()
    }

    /// What a screenplay check needs of the languages and voices.
    pub fn dub_context(&self) -> super::languages::Dubs {
        super::languages::Dubs::of(
            &self.languages,
            self.characters.iter().map(|c| c.voices.keys().cloned().collect()),
        )
    }
}

impl Scene {
    /// The character state for `character` in this scene, if the writer gave one.
    pub fn state_of(&self, character: &str) -> Option<&CharacterState> {
        self.state.iter().find(|s| s.character == character)
    }
}
