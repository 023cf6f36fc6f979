//! The registry: every engine studio knows, its spec and how it runs, one
//! entry each.
//!
//! Adding an engine for an existing node kind is one new file (its run
//! function), its entry here and a rule naming it. The driver finds an
//! engine's run function from the spec a node carries ([`engine_of`]);
//! nothing else matches on engine names.

use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{comfy, episode, image, mix, music, pool, publish, review, video, voice};
use crate::engines::Cost::{Fixed, PerMediaSecond};
use crate::engines::Placement::{Cpu, Inline, Service};
use crate::engines::ServiceKind::*;
use crate::engines::Tool::{EspeakNg, FallbackFonts, Ffmpeg, Ffprobe, Fluidsynth, Font, Kokoro, Piper, Soundfont};
use crate::engines::{Catalog, EngineSpec};
use crate::exec::{ExecError, Job, Produced};
use crate::kind::NodeKind::{self, *};

/// A local engine's run function: the job in, the files it made out.
pub type LocalRun = for<'a> fn(&'a Job, &'a CancellationToken) -> BoxFuture<'a, Result<Produced, ExecError>>;

/// How an engine runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// Its run function, here (a local process, or text written from params).
    Local(LocalRun),
    /// No work: the output is the input (the driver copies the manifest).
    Inline,
    /// This build of studio has no executor for it yet (the service
    /// clients come with the service issues); the sim profile runs it.
    Missing,
}

/// An engine: its spec (data the core reads) and how it runs.
pub struct Engine {
    pub spec: EngineSpec,
    pub run: Run,
}

/// `Run::Local` for an `async fn(&Job, &CancellationToken)`.
macro_rules! local {
    ($f:path) => {
        Run::Local({
            fn run<'a>(job: &'a Job, cancel: &'a CancellationToken) -> BoxFuture<'a, Result<Produced, ExecError>> {
                Box::pin($f(job, cancel))
            }
            run
        })
    };
}

/// Every engine, in the order `studio engines` lists them.
pub static ENGINES: &[Engine] = &[
    Engine {
        spec: EngineSpec {
            name: "character_card",
            // 2: painted in process (stages/image/paint.rs), not by `geq`.
            version: 2,
            kinds: &[CharacterRefs],
            placement: Cpu,
            tools: &[Ffmpeg, Font, FallbackFonts],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(0.5),
            about: "a character sheet drawn from the design (animatic)",
        },
        run: local!(image::character_card),
    },
    Engine {
        spec: EngineSpec {
            name: "comfyui_txt2img",
            version: 1,
            kinds: &[CharacterRefs, Candidate],
            placement: Service(Comfyui),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: Fixed(40.0),
            about: "ComfyUI checkpoint txt2img, vision review, approvals",
        },
        run: local!(comfy::run),
    },
    Engine {
        spec: EngineSpec {
            name: "review_pool",
            version: 1,
            kinds: &[CharacterRefs],
            placement: Cpu,
            tools: &[Ffmpeg],
            stochastic: false,
            // The pool is arithmetic over the reviews: sim runs it for
            // real (brightness derived from the bytes instead of measured).
            real_in_sim: true,
            cost: Fixed(0.5),
            about: "a character's approved pool: reviews and approvals.yaml",
        },
        run: local!(pool::review_pool),
    },
    Engine {
        spec: EngineSpec {
            name: "vision_review",
            version: 1,
            kinds: &[Review, ShotReview],
            placement: Service(Ollama),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(8.0),
            about: "a vision model scores an image or a shot's key frames (Ollama /api/chat with images)",
        },
        run: local!(review::run),
    },
    Engine {
        spec: EngineSpec {
            name: "vision_review_openai",
            version: 1,
            kinds: &[Review, ShotReview],
            placement: Service(OpenaiChat),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(8.0),
            about: "the same review through /v1/chat/completions with image_url parts (llama.cpp, vLLM)",
        },
        run: local!(review::run),
    },
    Engine {
        spec: EngineSpec {
            name: "person",
            version: 1,
            kinds: &[Review],
            placement: Cpu,
            tools: &[],
            stochastic: false,
            // It writes what it knows (nothing scored): sim runs it too.
            real_in_sim: true,
            cost: Fixed(0.1),
            about: "no vision service: the candidate waits, unscored, for a person (`studio review`)",
        },
        run: local!(review::stand_in::person),
    },
    Engine {
        spec: EngineSpec {
            name: "structural",
            version: 1,
            kinds: &[ShotReview],
            placement: Cpu,
            tools: &[Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(0.3),
            about: "the gate without a vision service: the shot's video reads, with its frames",
        },
        run: local!(review::stand_in::structural),
    },
    Engine {
        spec: EngineSpec {
            name: "storyboard",
            // 2: painted in process (stages/image/paint.rs), not by `geq`.
            version: 2,
            kinds: &[ShotImage],
            placement: Cpu,
            tools: &[Ffmpeg, Font, FallbackFonts],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(0.6),
            about: "a storyboard frame: figures, framing, caption",
        },
        run: local!(image::storyboard),
    },
    Engine {
        spec: EngineSpec {
            name: "pool_select",
            // 2: the best approved image by score for the shot's framing.
            version: 2,
            kinds: &[ShotImage],
            placement: Cpu,
            tools: &[],
            stochastic: false,
            // It copies a file it chose: sim runs it for real, so a new
            // approval re-selects and stops where the choice is unchanged.
            real_in_sim: true,
            cost: Fixed(0.3),
            about: "continuity frame, else the best approved reference",
        },
        run: local!(comfy::pool_select),
    },
    Engine {
        spec: EngineSpec {
            name: "camera_move",
            // 2: filmed on the plate scaled to the frame size, into lossless
            // H.264 (was: the 1200x1800 plate through `perspective`, FFV1).
            // 3: frames drawn in process (crates/camera), not `perspective`.
            version: 3,
            kinds: &[RawVideo],
            placement: Cpu,
            tools: &[Ffmpeg],
            stochastic: false,
            real_in_sim: false,
            cost: PerMediaSecond(0.8),
            about: "pan, tilt or push-in over the frame",
        },
        run: local!(video::camera_move),
    },
    Engine {
        spec: EngineSpec {
            name: "framepack_i2v",
            version: 1,
            kinds: &[RawVideo],
            placement: Service(Comfyui),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: PerMediaSecond(120.0),
            about: "FramePack image-to-video (solo shot with a source)",
        },
        run: local!(comfy::run),
    },
    Engine {
        spec: EngineSpec {
            name: "wan_t2v",
            version: 1,
            kinds: &[RawVideo],
            placement: Service(Comfyui),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: PerMediaSecond(55.0),
            about: "Wan text-to-video",
        },
        run: local!(comfy::run),
    },
    Engine {
        spec: EngineSpec {
            name: "ltx_video",
            version: 1,
            kinds: &[RawVideo],
            placement: Service(Comfyui),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: PerMediaSecond(60.0),
            about: "LTX-Video with character LoRA",
        },
        run: local!(comfy::run),
    },
    Engine {
        spec: EngineSpec {
            name: "framepack_v2v",
            version: 1,
            kinds: &[RefinedVideo],
            placement: Service(Comfyui),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: PerMediaSecond(150.0),
            about: "FramePack video-to-video refinement",
        },
        run: local!(comfy::run),
    },
    Engine {
        spec: EngineSpec {
            name: "passthrough",
            version: 1,
            kinds: &[RefinedVideo],
            placement: Inline,
            tools: &[],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(0.0),
            about: "no refinement: the raw video as is",
        },
        run: Run::Inline,
    },
    Engine {
        spec: EngineSpec {
            name: "rife_esrgan",
            version: 1,
            kinds: &[ShotVideo],
            placement: Service(Comfyui),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: PerMediaSecond(25.0),
            about: "RIFE interpolation and RealESRGAN upscale, then grade",
        },
        run: local!(comfy::run),
    },
    Engine {
        spec: EngineSpec {
            name: "ffmpeg",
            // 2: scene mixes carry their loudness measurement; the episode's
            // audio is normalized from them in one pass. 3: the episode's
            // gain and limiter applied in process; segments on two sliced
            // x264 threads (other bytes: old segments must not mix in).
            version: 3,
            kinds: &[
                ShotVideo,
                LastFrame,
                SceneVideo,
                SceneMix,
                ShotSegment,
                Transition,
                EpisodeVideo,
                EpisodeAudio,
                Episode,
            ],
            placement: Cpu,
            tools: &[Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: PerMediaSecond(0.4),
            about: "local ffmpeg processing",
        },
        run: local!(ffmpeg),
    },
    Engine {
        spec: EngineSpec {
            name: "espeak",
            version: 1,
            kinds: &[VoiceLine],
            placement: Cpu,
            tools: &[EspeakNg, Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(0.4),
            about: "espeak-ng offline speech",
        },
        run: local!(voice::espeak),
    },
    Engine {
        spec: EngineSpec {
            name: "piper",
            version: 1,
            kinds: &[VoiceLine],
            placement: Cpu,
            tools: &[Piper, Ffmpeg, Ffprobe],
            // Piper's noise is drawn from the line's seed: same seed, same bytes.
            stochastic: true,
            real_in_sim: false,
            cost: Fixed(1.0),
            about: "Piper neural speech (English, joe voice), a persistent worker",
        },
        run: local!(voice::piper),
    },
    Engine {
        spec: EngineSpec {
            name: "kokoro_ja",
            version: 1,
            kinds: &[VoiceLine],
            placement: Cpu,
            tools: &[Kokoro, Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(4.0),
            about: "Kokoro-82M neural speech (Japanese), a persistent worker",
        },
        run: local!(voice::kokoro_ja),
    },
    Engine {
        spec: EngineSpec {
            name: "edge_tts",
            version: 1,
            kinds: &[VoiceLine],
            placement: Service(OpenaiSpeech),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(2.0),
            about: "edge-tts voices through an OpenAI-compatible /v1/audio/speech server",
        },
        run: local!(voice::openai_speech),
    },
    Engine {
        spec: EngineSpec {
            name: "xtts",
            version: 1,
            kinds: &[VoiceLine],
            placement: Service(Xtts),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: Fixed(8.0),
            about: "XTTS v2 zero-shot cloning from a reference clip",
        },
        run: local!(voice::xtts),
    },
    Engine {
        spec: EngineSpec {
            name: "gpt_sovits",
            version: 1,
            kinds: &[VoiceLine],
            placement: Service(GptSovits),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: Fixed(6.0),
            about: "GPT-SoVITS with a trained voice",
        },
        run: local!(voice::gpt_sovits),
    },
    Engine {
        spec: EngineSpec {
            name: "rvc",
            version: 1,
            kinds: &[VoiceLine],
            placement: Service(Rvc),
            tools: &[EspeakNg, Piper, Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: Fixed(6.0),
            about: "RVC v2 voice conversion (rvc-python API) of a line espeak-ng or Piper speaks first",
        },
        run: local!(voice::rvc),
    },
    Engine {
        spec: EngineSpec {
            name: "procedural",
            version: 1,
            kinds: &[SceneMusic],
            placement: Cpu,
            tools: &[Fluidsynth, Soundfont, Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: PerMediaSecond(0.1),
            about: "procedural MIDI by mood, rendered with a GM soundfont",
        },
        run: local!(music::procedural),
    },
    Engine {
        spec: EngineSpec {
            name: "ace_step",
            version: 1,
            kinds: &[SceneMusic],
            placement: Service(AceStep),
            tools: &[Ffmpeg, Ffprobe],
            stochastic: true,
            real_in_sim: false,
            cost: PerMediaSecond(1.5),
            about: "ACE-Step 1.5 text-to-music, instrumental, normalized like the bed",
        },
        run: local!(music::ace_step),
    },
    Engine {
        spec: EngineSpec {
            name: "library_music",
            version: 1,
            kinds: &[SceneMusic],
            placement: Cpu,
            tools: &[Ffmpeg, Ffprobe],
            stochastic: false,
            real_in_sim: false,
            cost: PerMediaSecond(0.05),
            about: "the project's own track for the mood, looped with crossfades",
        },
        run: local!(music::library_music),
    },
    Engine {
        spec: EngineSpec {
            name: "library",
            version: 1,
            kinds: &[Publish],
            placement: Cpu,
            tools: &[],
            stochastic: false,
            real_in_sim: true,
            cost: Fixed(0.5),
            about: "Jellyfin library layout, .nfo files, rescan",
        },
        run: local!(publish::library),
    },
];

/// The `ffmpeg` engine: one operation per node kind it makes.
async fn ffmpeg(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    match job.node.kind {
        ShotVideo => video::shot_video(job, cancel).await,
        LastFrame => video::last_frame(job, cancel).await,
        SceneVideo => mix::scene_video(job, cancel).await,
        SceneMix => mix::scene_mix(job, cancel).await,
        ShotSegment => episode::shot_segment(job, cancel).await,
        Transition => episode::transition(job, cancel).await,
        EpisodeVideo => episode::episode_video(job, cancel).await,
        EpisodeAudio => episode::episode_audio(job, cancel).await,
        Episode => episode::assemble(job, cancel).await,
        kind => Err(no_executor(job.engine, kind)),
    }
}

/// The error of a job whose engine this build cannot run for real.
pub fn no_executor(engine: &EngineSpec, kind: NodeKind) -> ExecError {
    ExecError::Permanent(format!(
        "engine `{}` ({}) has no executor for `{kind}` in this build of studio yet; build with `--profile sim` to run the graph without media tools",
        engine.name, engine.about
    ))
}

/// The catalog of every engine's spec, for the loader and the graph.
pub fn catalog() -> Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| Catalog::new(ENGINES.iter().map(|e| &e.spec)));
    CATALOG.clone()
}

/// The registry entry whose spec `spec` is (by identity: nodes carry
/// pointers into [`ENGINES`]).
pub fn engine_of(spec: &EngineSpec) -> Option<&'static Engine> {
    ENGINES.iter().find(|e| std::ptr::eq(&e.spec, spec))
}

/// Look an engine up by name (tests and tools that start from a name).
pub fn find(name: &str) -> Option<&'static EngineSpec> {
    ENGINES.iter().map(|e| &e.spec).find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_spec_is_found_by_identity() {
        let mut names: Vec<_> = ENGINES.iter().map(|e| e.spec.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENGINES.len(), "two engines share a name");
        for e in ENGINES {
            let found = engine_of(&e.spec).expect("registered");
            assert!(std::ptr::eq(found, e));
        }
        let copy = EngineSpec {
            ..*find("espeak").unwrap()
        };
        assert!(
            engine_of(&copy).is_none(),
            "a spec that is not the registry's has no run function"
        );
    }

    #[test]
    fn inline_engines_are_placed_inline_and_only_those() {
        for e in ENGINES {
            let inline = matches!(e.run, Run::Inline);
            assert_eq!(inline, e.spec.placement == Inline, "{}", e.spec.name);
        }
    }
}
