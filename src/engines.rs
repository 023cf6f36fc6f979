//! The table of engines studio knows: what each makes, where it runs, what it costs.
//!
//! Rules name engines; this table is how a name is checked and how the
//! scheduler learns which pool a job needs before any build has taught it
//! real durations.

use crate::kind::NodeKind;
use NodeKind::*;

/// Where an engine's jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// A local process in the `cpu` pool.
    Cpu,
    /// No work at all: the output is the input (refinement switched off).
    Inline,
    /// A service; the job takes a slot of a host (executor) of a group that
    /// speaks this protocol.
    Service(ServiceKind),
}

/// The wire protocols service executors speak (an executor's `kind:` in
/// `studio.yaml`). Executors of one protocol form host pools (`group:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// ComfyUI's `/prompt` API (images, video, upscaling).
    Comfyui,
    /// Ollama's `/api/chat`.
    Ollama,
    /// OpenAI-compatible `/v1/chat/completions` (llama.cpp, vLLM, LM Studio).
    OpenaiChat,
    /// OpenAI-compatible `/v1/audio/speech` (Kokoro-FastAPI, openedai-speech,
    /// edge-tts servers).
    OpenaiSpeech,
    /// GPT-SoVITS's API server.
    GptSovits,
    /// An XTTS v2 API server.
    Xtts,
    /// An RVC v2 voice-conversion API server.
    Rvc,
    /// ACE-Step's API server.
    AceStep,
    /// Jellyfin (library rescans).
    Jellyfin,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 9] = [
        ServiceKind::Comfyui,
        ServiceKind::Ollama,
        ServiceKind::OpenaiChat,
        ServiceKind::OpenaiSpeech,
        ServiceKind::GptSovits,
        ServiceKind::Xtts,
        ServiceKind::Rvc,
        ServiceKind::AceStep,
        ServiceKind::Jellyfin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Comfyui => "comfyui",
            ServiceKind::Ollama => "ollama",
            ServiceKind::OpenaiChat => "openai_chat",
            ServiceKind::OpenaiSpeech => "openai_speech",
            ServiceKind::GptSovits => "gpt_sovits",
            ServiceKind::Xtts => "xtts",
            ServiceKind::Rvc => "rvc",
            ServiceKind::AceStep => "ace_step",
            ServiceKind::Jellyfin => "jellyfin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the protocol is an LLM chat (screenplay writers).
    pub fn is_llm(self) -> bool {
        matches!(self, ServiceKind::Ollama | ServiceKind::OpenaiChat)
    }
}

/// A local tool or system asset a CPU engine reads. Its identity (a version
/// line, or a content hash for fonts and soundfonts) enters the keys of the
/// nodes whose engines declare it, and no others: a new espeak-ng re-voices
/// the lines and redraws no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tool {
    Ffmpeg,
    Ffprobe,
    EspeakNg,
    Fluidsynth,
    /// Noto Sans CJK, the font text is set in.
    Font,
    /// The fallback fonts for what Noto Sans CJK lacks, as one set.
    FallbackFonts,
    /// The system's General MIDI soundfont.
    Soundfont,
}

impl Tool {
    pub const ALL: [Tool; 7] = [
        Tool::Ffmpeg,
        Tool::Ffprobe,
        Tool::EspeakNg,
        Tool::Fluidsynth,
        Tool::Font,
        Tool::FallbackFonts,
        Tool::Soundfont,
    ];

    /// The tool's name in keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Ffmpeg => "ffmpeg",
            Tool::Ffprobe => "ffprobe",
            Tool::EspeakNg => "espeak-ng",
            Tool::Fluidsynth => "fluidsynth",
            Tool::Font => "font",
            Tool::FallbackFonts => "fallback-fonts",
            Tool::Soundfont => "soundfont",
        }
    }

    /// The rule param that, when a node has it, replaces this tool with a
    /// project file (`soundfont: {file: sounds/my.sf2}`): the node then
    /// reads that file, whose hash is in its params, and not the tool.
    pub fn replaced_by_param(self) -> Option<&'static str> {
        match self {
            Tool::Soundfont => Some("soundfont"),
            _ => None,
        }
    }
}

/// How long a job is expected to take before any build has measured it.
#[derive(Debug, Clone, Copy)]
pub enum Cost {
    /// Seconds per job.
    Fixed(f64),
    /// Seconds per second of media the job produces.
    PerMediaSecond(f64),
}

#[derive(Debug)]
pub struct EngineSpec {
    pub name: &'static str,
    /// Bumped when the engine's output for the same inputs changes (new
    /// filters, a fixed bug): it is part of every key the engine makes, so
    /// only that engine's nodes rebuild.
    pub version: u32,
    pub kinds: &'static [NodeKind],
    pub runs: Runs,
    /// Whether the output depends on a seed (a `take` re-rolls it).
    pub stochastic: bool,
    pub cost: Cost,
    pub about: &'static str,
    /// The local tools and system assets the engine runs or reads (CPU
    /// engines); only their identities enter its nodes' keys.
    pub tools: &'static [Tool],
}

const fn engine(
    name: &'static str,
    version: u32,
    kinds: &'static [NodeKind],
    runs: Runs,
    stochastic: bool,
    cost: Cost,
    about: &'static str,
) -> EngineSpec {
    EngineSpec {
        name,
        version,
        kinds,
        runs,
        stochastic,
        cost,
        about,
        tools: &[],
    }
}

impl EngineSpec {
    /// The same engine, declaring the tools it uses.
    const fn uses(self, tools: &'static [Tool]) -> EngineSpec {
        EngineSpec { tools, ..self }
    }
}

use Cost::{Fixed, PerMediaSecond};
use Runs::{Cpu, Inline, Service};
use ServiceKind::*;
use Tool::{EspeakNg, FallbackFonts, Ffmpeg, Ffprobe, Fluidsynth, Font, Soundfont};

/// Every engine, in the order `studio engines` lists them.
pub static ENGINES: &[EngineSpec] = &[
    engine(
        "character_card",
        1,
        &[CharacterRefs],
        Cpu,
        false,
        Fixed(0.5),
        "a character sheet drawn from the design (animatic)",
    )
    .uses(&[Ffmpeg, Font, FallbackFonts]),
    engine(
        "comfyui_txt2img",
        1,
        &[CharacterRefs],
        Service(Comfyui),
        true,
        Fixed(40.0),
        "ComfyUI checkpoint txt2img, vision review, approvals",
    ),
    engine(
        "storyboard",
        1,
        &[ShotImage],
        Cpu,
        false,
        Fixed(0.6),
        "a storyboard frame: figures, framing, caption",
    )
    .uses(&[Ffmpeg, Font, FallbackFonts]),
    engine(
        "pool_select",
        1,
        &[ShotImage],
        Cpu,
        false,
        Fixed(0.3),
        "continuity frame, else the best approved reference",
    ),
    engine(
        "camera_move",
        1,
        &[RawVideo],
        Cpu,
        false,
        PerMediaSecond(0.8),
        "pan, tilt or push-in over the frame",
    )
    .uses(&[Ffmpeg]),
    engine(
        "framepack_i2v",
        1,
        &[RawVideo],
        Service(Comfyui),
        true,
        PerMediaSecond(120.0),
        "FramePack image-to-video (solo shot with a source)",
    ),
    engine(
        "wan_t2v",
        1,
        &[RawVideo],
        Service(Comfyui),
        true,
        PerMediaSecond(55.0),
        "Wan text-to-video",
    ),
    engine(
        "ltx_video",
        1,
        &[RawVideo],
        Service(Comfyui),
        true,
        PerMediaSecond(60.0),
        "LTX-Video with character LoRA",
    ),
    engine(
        "framepack_v2v",
        1,
        &[RefinedVideo],
        Service(Comfyui),
        true,
        PerMediaSecond(150.0),
        "FramePack video-to-video refinement",
    ),
    engine(
        "passthrough",
        1,
        &[RefinedVideo],
        Inline,
        false,
        Fixed(0.0),
        "no refinement: the raw video as is",
    ),
    engine(
        "rife_esrgan",
        1,
        &[ShotVideo],
        Service(Comfyui),
        false,
        PerMediaSecond(25.0),
        "RIFE interpolation and RealESRGAN upscale, then grade",
    ),
    engine(
        "ffmpeg",
        1,
        &[
            ShotVideo,
            LastFrame,
            SceneVideo,
            SceneMix,
            EpisodeVideo,
            EpisodeAudio,
            Episode,
        ],
        Cpu,
        false,
        PerMediaSecond(0.4),
        "local ffmpeg processing",
    )
    .uses(&[Ffmpeg, Ffprobe]),
    engine(
        "espeak",
        1,
        &[VoiceLine],
        Cpu,
        false,
        Fixed(0.4),
        "espeak-ng offline speech",
    )
    .uses(&[EspeakNg, Ffmpeg, Ffprobe]),
    engine(
        "edge_tts",
        1,
        &[VoiceLine],
        Service(OpenaiSpeech),
        false,
        Fixed(2.0),
        "edge-tts voice pool",
    ),
    engine(
        "xtts",
        1,
        &[VoiceLine],
        Service(Xtts),
        true,
        Fixed(8.0),
        "XTTS v2 zero-shot cloning from a reference clip",
    ),
    engine(
        "gpt_sovits",
        1,
        &[VoiceLine],
        Service(GptSovits),
        true,
        Fixed(6.0),
        "GPT-SoVITS with a trained voice",
    ),
    engine(
        "rvc",
        1,
        &[VoiceLine],
        Service(Rvc),
        false,
        Fixed(6.0),
        "RVC v2 voice conversion with a trained model",
    ),
    engine(
        "procedural",
        1,
        &[SceneMusic],
        Cpu,
        false,
        PerMediaSecond(0.1),
        "procedural MIDI by mood, rendered with a GM soundfont",
    )
    .uses(&[Fluidsynth, Soundfont, Ffmpeg, Ffprobe]),
    engine(
        "ace_step",
        1,
        &[SceneMusic],
        Service(AceStep),
        true,
        PerMediaSecond(1.5),
        "ACE-Step text-to-music, instrumental",
    ),
    engine(
        "library",
        1,
        &[Publish],
        Cpu,
        false,
        Fixed(0.5),
        "Jellyfin library layout, .nfo files, rescan",
    ),
];

/// Look an engine up by name.
pub fn find(name: &str) -> Option<&'static EngineSpec> {
    ENGINES.iter().find(|e| e.name == name)
}

/// The engines that can make `kind`, for help texts.
pub fn names_for(kind: NodeKind) -> Vec<&'static str> {
    ENGINES
        .iter()
        .filter(|e| e.kinds.contains(&kind))
        .map(|e| e.name)
        .collect()
}

impl EngineSpec {
    /// Expected seconds for a job producing `media_seconds` of media.
    pub fn expected_seconds(&self, media_seconds: f64) -> f64 {
        match self.cost {
            Cost::Fixed(s) => s,
            Cost::PerMediaSecond(s) => s * media_seconds.max(0.5),
        }
    }
}
