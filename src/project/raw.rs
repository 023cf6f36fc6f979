//! Raw serde structs that mirror the YAML files one to one.
//!
//! Nothing here is validated beyond what serde checks (types, unknown
//! fields). Values that a later check may reject carry a [`Spanned`] so the
//! diagnostic can point at the exact line. `resolve` turns these into the
//! validated model.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `studio.yaml`: the whole project except screenplays and rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    pub project: RawMeta,
    #[serde(default)]
    pub storyline: RawStoryline,
    #[serde(default)]
    pub world: RawWorld,
    #[serde(default)]
    pub style: RawStyle,
    pub characters: Vec<RawCharacter>,
    pub episodes: Vec<RawEpisodeEntry>,
    #[serde(default)]
    pub executors: Vec<RawExecutor>,
    #[serde(default)]
    pub profiles: RawProfiles,
    /// How `studio write` writes screenplays with an LLM.
    #[serde(default)]
    pub writing: Option<RawWriting>,
    #[serde(default)]
    pub cache: RawCacheConfig,
}

/// `cache:` — the shared remote cache behind the local one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheConfig {
    /// `http(s)://host/prefix` (Bazel HTTP cache layout) or an object store
    /// URL: `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`.
    #[serde(default)]
    pub remote: Option<Spanned<String>>,
    /// `read-write` (default), `read-only` or `off`.
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
}

/// `writing:` — which executor writes screenplays, and how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWriting {
    /// An executor of kind `ollama` or `openai` (default: the first one).
    #[serde(default)]
    pub executor: Option<Spanned<String>>,
    /// The generation seed: same inputs, model and seed → the cached reply.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_temperature")]
    pub temperature: Spanned<f64>,
    /// Context window (Ollama's `num_ctx`; OpenAI-compatible servers ignore it).
    #[serde(default = "default_num_ctx")]
    pub num_ctx: u32,
    /// How many times an invalid reply is sent back with its problems.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_seed() -> u64 {
    1
}

fn default_temperature() -> Spanned<f64> {
    unspanned(0.7)
}

fn default_num_ctx() -> u32 {
    8192
}

fn default_retries() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeta {
    pub name: String,
    #[serde(default)]
    pub premise: String,
    #[serde(default)]
    pub genre: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoryline {
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub themes: Vec<String>,
    #[serde(default)]
    pub tone: String,
    #[serde(default)]
    pub arcs: Vec<RawArc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArc {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorld {
    #[serde(default)]
    pub art_style: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub color_palette: Vec<String>,
    #[serde(default)]
    pub cinematography: String,
}

/// The image generation style (ComfyUI checkpoint and sampler settings).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStyle {
    pub checkpoint: String,
    pub cfg: f64,
    pub steps: u32,
    pub sampler: String,
    pub width: u32,
    pub height: u32,
    pub negative_prompt: String,
}

impl Default for RawStyle {
    fn default() -> Self {
        RawStyle {
            checkpoint: "animagine-xl-3.1.safetensors".into(),
            cfg: 7.0,
            steps: 28,
            sampler: "euler_ancestral".into(),
            width: 832,
            height: 1216,
            negative_prompt: "lowres, bad anatomy, watermark".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCharacter {
    pub id: Spanned<String>,
    pub name: String,
    pub design_prompt: String,
    #[serde(default)]
    pub appearance: BTreeMap<String, String>,
    #[serde(default)]
    pub voice: RawVoice,
    pub color: Spanned<String>,
    #[serde(default)]
    pub lora: Option<String>,
}

/// How a character sounds, for every TTS engine that may speak for them.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawVoice {
    /// espeak-ng voice, e.g. `en-us+f3`.
    #[serde(default)]
    pub espeak: Option<String>,
    /// espeak-ng pitch, 0–99.
    #[serde(default)]
    pub pitch: Option<u32>,
    /// Words per minute.
    #[serde(default)]
    pub rate: Option<u32>,
    /// edge-tts voice name, e.g. `ja-JP-NanamiNeural`.
    #[serde(default)]
    pub edge: Option<String>,
    /// Reference clip for zero-shot cloning engines (XTTS, GPT-SoVITS).
    #[serde(default)]
    pub reference_audio: Option<String>,
    /// A trained voice model (RVC, GPT-SoVITS).
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEpisodeEntry {
    pub id: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub synopsis: String,
    #[serde(default)]
    pub arc: String,
    #[serde(default)]
    pub tone: String,
}

/// A service endpoint (or the local CPU) that runs jobs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    pub id: Spanned<String>,
    /// `comfyui`, `ollama`, `openai`, `tts`, `ace_step`, `jellyfin`.
    pub kind: Spanned<String>,
    /// `http(s)://host:port`; a host that is not loopback needs `remote_host: true`.
    #[serde(default = "no_url")]
    pub url: Spanned<String>,
    /// The URL's host is another machine (a GPU box on the LAN) that studio
    /// may send prompts, premise and characters to.
    #[serde(default)]
    pub remote_host: bool,
    #[serde(default = "one")]
    pub slots: usize,
    #[serde(default)]
    pub model: Option<String>,
    /// The environment variable that holds the API key or token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// LLM executors: the variable whose value is sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds a whole request may take (default 300).
    #[serde(default)]
    pub timeout: Option<Spanned<f64>>,
    /// Seconds to wait for a connection (default 10).
    #[serde(default)]
    pub connect_timeout: Option<Spanned<f64>>,
    /// LLM executors: the most tokens one reply may have (default: per
    /// call, see `project::executor::MaxTokens`).
    #[serde(default)]
    pub max_tokens: Option<Spanned<i64>>,
}

fn one() -> usize {
    1
}

fn no_url() -> Spanned<String> {
    unspanned(String::new())
}

/// `profiles:` — `default: NAME` beside one entry per profile. (serde's
/// `flatten` buffers values, so spans and unknown-field checks stop here.)
#[derive(Debug, Deserialize)]
pub struct RawProfiles {
    /// The profile used when `--profile` is not given.
    pub default: String,
    #[serde(flatten)]
    pub profiles: BTreeMap<String, RawProfile>,
}

impl Default for RawProfiles {
    fn default() -> Self {
        RawProfiles {
            default: "animatic".into(),
            profiles: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Use the rules written for this other profile.
    #[serde(default)]
    pub rules_from: Option<String>,
    /// Run every job through the `sim` executor instead of its engine.
    #[serde(default)]
    pub simulate: Option<RawSimulate>,
    #[serde(default)]
    pub description: String,
    /// An LLM executor: `studio build` with this profile writes a targeted
    /// episode's missing screenplay with it first.
    #[serde(default)]
    pub writer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimulate {
    /// Seconds slept per expected second of real work.
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// Injected failures, for tests of retries, fallbacks and --keep-going.
    #[serde(default)]
    pub failures: Vec<RawSimFailure>,
}

fn default_time_scale() -> f64 {
    0.001
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimFailure {
    /// Node id prefix, e.g. `raw_video:ep01/s01`.
    pub node: String,
    /// Only when this engine runs; any engine when absent.
    #[serde(default)]
    pub engine: Option<String>,
    /// Fail this many times with a transient error, then succeed. Absent:
    /// fail permanently.
    #[serde(default)]
    pub transient: Option<u32>,
}

/// `episodes/<id>.yaml`: one episode's screenplay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScreenplay {
    pub episode: Spanned<String>,
    pub scenes: Vec<RawScene>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScene {
    pub id: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub location: String,
    #[serde(default = "default_time_of_day")]
    pub time_of_day: Spanned<String>,
    #[serde(default = "default_mood")]
    pub mood: Spanned<String>,
    #[serde(default)]
    pub target_duration: Option<Spanned<f64>>,
    /// Transition into the next scene (`dissolve`, `fade`, `fadeblack`, `wipeleft`).
    #[serde(default)]
    pub transition: Option<Spanned<String>>,
    /// Per-character state during this scene.
    #[serde(default)]
    pub state: Vec<RawCharacterState>,
    pub shots: Vec<RawShot>,
}

fn default_time_of_day() -> Spanned<String> {
    unspanned("day".into())
}

fn default_mood() -> Spanned<String> {
    unspanned("calm".into())
}

pub(crate) fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, serde_saphyr::Location::UNKNOWN, serde_saphyr::Location::UNKNOWN)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCharacterState {
    pub character: Spanned<String>,
    #[serde(default)]
    pub clothing: String,
    #[serde(default)]
    pub injuries: String,
    #[serde(default)]
    pub emotional_state: String,
    /// 0.0 (exhausted) to 1.0 (fresh).
    #[serde(default)]
    pub energy: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShot {
    pub id: Spanned<String>,
    #[serde(rename = "type", default = "default_shot_type")]
    pub shot_type: Spanned<String>,
    #[serde(default = "default_angle")]
    pub angle: Spanned<String>,
    /// The motion prompt: what moves, and how the camera moves.
    #[serde(default)]
    pub motion: String,
    /// The action line (what we see), used as the storyboard caption.
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub characters: Vec<RawPresence>,
    pub duration: Spanned<f64>,
    #[serde(default = "default_take")]
    pub take: u32,
    /// Take the source image from this shot's last frame instead of the
    /// previous shot of the same character.
    #[serde(default)]
    pub continue_from: Option<Spanned<String>>,
    #[serde(default)]
    pub dialogue: Vec<RawLine>,
}

fn default_shot_type() -> Spanned<String> {
    unspanned("medium".into())
}

fn default_angle() -> Spanned<String> {
    unspanned("eye_level".into())
}

fn default_take() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPresence {
    pub id: Spanned<String>,
    #[serde(default = "default_position")]
    pub position: Spanned<String>,
}

fn default_position() -> Spanned<String> {
    unspanned("center".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    pub speaker: Spanned<String>,
    pub text: Spanned<String>,
}
