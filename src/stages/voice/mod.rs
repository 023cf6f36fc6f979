//! Voice lines with espeak-ng: the line's text from a UTF-8 file, resampled
//! to 48 kHz mono (the neural voices are in [`neural`]; the voice servers
//! in [`speech`], [`gpt_sovits`], [`xtts`] and [`rvc`], over [`server`]).
//!
//! The text never becomes an argument (espeak-ng reads `-Don't` as an option,
//! exits 0 and writes nothing), so it goes through `-f line.txt`. The length is
//! the exact sample count, so shots, subtitles and the mix agree on it.

pub mod gpt_sovits;
pub mod neural;
pub mod rvc;
pub mod server;
pub mod speech;
pub mod xtts;

pub use gpt_sovits::gpt_sovits;
pub use neural::{kokoro_ja, piper};
pub use rvc::rvc;
pub use speech::openai_speech;
pub use xtts::xtts;

use camino::Utf8Path;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{exec, ffmpeg, param, param_f64, param_str, produced, scratch, tool, write};
use crate::engines::Tool;
use crate::exec::runner::Cmd;
use crate::exec::{ExecError, Job, Produced};
use crate::timing;

/// espeak-ng's amplitude (0–200); 120 puts a line near −18 LUFS.
const AMPLITUDE: &str = "120";
/// espeak-ng's 22.05 kHz → 48 kHz. soxr dithers its own integer output with a
/// random seed, so it outputs float and the plain conversion makes the s16:
/// a line's bytes are then the same on every build.
const RESAMPLE: &str = "aresample=48000:resampler=soxr:osf=flt";
const DEFAULT_VOICE: &str = "en-us";
const DEFAULT_PITCH: u64 = 50;
const DEFAULT_RATE: u64 = 175;

/// The longest voice line, in seconds of audio. The loader's longest line
/// (1,000 characters) at espeak-ng's slowest rate (80 words per minute) is
/// about two and a half minutes; only a pathological line (a thousand `%`
/// read as "percent") gets here.
pub const MAX_LINE_SECONDS: u64 = 300;
/// espeak-ng's own output: 22,050 Hz mono s16.
const ESPEAK_BYTES_PER_SECOND: u64 = 22_050 * 2;

/// How one character sounds to espeak-ng.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Speech {
    pub voice: String,
    pub pitch: u64,
    pub rate: u64,
}

/// Read `voice: {espeak, pitch, rate}`, filling in espeak-ng's defaults.
pub(crate) fn speech(voice: Option<&Value>) -> Result<Speech, String> {
    let field = |name: &str| voice.and_then(|v| v.get(name)).filter(|v| !v.is_null());
    let name = match field("espeak") {
        None => DEFAULT_VOICE.to_string(),
        Some(v) => v.as_str().ok_or("voice.espeak is not a string")?.to_string(),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '_' | '/');
    if name.is_empty() || name.starts_with('-') || !name.chars().all(valid) {
        return Err(format!(
            "voice.espeak `{name}` is not an espeak-ng voice name (e.g. en-us+f3)"
        ));
    }
    let number = |what: &str, default: u64, range: std::ops::RangeInclusive<u64>| match field(what) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| range.contains(n))
            .ok_or_else(|| format!("voice.{what} is {v}; espeak-ng takes {}–{}", range.start(), range.end())),
    };
    Ok(Speech {
        voice: name,
        pitch: number("pitch", DEFAULT_PITCH, 0..=99)?,
        rate: number("rate", DEFAULT_RATE, 80..=500)?,
    })
}

/// The espeak-ng argv: voice, pitch, rate, amplitude, text from `text_file`.
pub(crate) fn espeak_cmd(program: &str, s: &Speech, wav: &Utf8Path, text_file: &Utf8Path) -> Cmd {
    Cmd::new(program)
        .args(["-v", &s.voice, "-p", &s.pitch.to_string(), "-s", &s.rate.to_string()])
        .args(["-a", AMPLITUDE, "-w", wav.as_str(), "-f", text_file.as_str()])
}

/// Speak the node's `text` with its `voice`; 48 kHz mono s16 WAV.
pub async fn espeak(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let program = tool(job, Tool::EspeakNg)?;
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    check_rate(job)?;
    let text = param_str(job, "text");
    if text.trim().is_empty() {
        return Err(fail("the line has no text to speak".into()));
    }
    let speech = speech(param(job, "voice")).map_err(fail)?;
    let text_file = write(job, "line.txt", text)?;
    let raw = scratch(job, "voice_raw.wav");
    let max_seconds = max_line_seconds();
    let too_long = format!(
        "{}: the line is longer than {max_seconds} s of speech, the longest a voice line may be; split it into shorter lines",
        job.node.id
    );
    // Plus room for the WAV header.
    let cap = max_seconds * ESPEAK_BYTES_PER_SECOND + 4096;
    let espeak = espeak_cmd(program.as_str(), &speech, &raw, &text_file).max_output(cap, too_long.clone());
    exec(job, &espeak, cancel).await?;
    produced(&raw, "espeak-ng")?;

    let wav = scratch(job, "voice.wav");
    let resample = ffmpeg(job)?
        .args(["-i", raw.as_str(), "-af", RESAMPLE, "-ac", "1"])
        .args(["-c:a", "pcm_s16le", "-fflags", "+bitexact", wav.as_str()]);
    exec(job, &resample, cancel).await?;
    produced(&wav, "ffmpeg")?;
    let samples = wav_samples(job, &wav)?;
    if samples == 0 {
        return Err(fail(format!("espeak-ng spoke no audio for {text:?}")));
    }
    // Exact, whatever rate espeak-ng wrote at.
    if samples > max_seconds * timing::RATE {
        return Err(ExecError::Permanent(too_long));
    }
    Ok(Produced {
        files: vec![("wav".into(), wav)],
        duration: Some(samples as f64 / timing::RATE as f64),
        metadata: crate::exec::Metadata::new(),
    })
}

/// [`MAX_LINE_SECONDS`]; debug builds take `STUDIO_TEST_MAX_LINE_SECONDS`
/// instead, so tests can reach the limit with a short line.
pub(crate) fn max_line_seconds() -> u64 {
    #[cfg(debug_assertions)]
    if let Some(s) = std::env::var("STUDIO_TEST_MAX_LINE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return s;
    }
    MAX_LINE_SECONDS
}

/// The animatic runs on one clock: a `sample_rate` other than 48 kHz is a rules mistake.
pub(crate) fn check_rate(job: &Job) -> Result<(), ExecError> {
    let rate = param_f64(job, "sample_rate", timing::RATE as f64);
    if rate != timing::RATE as f64 {
        return Err(ExecError::Permanent(format!(
            "{}: sample_rate {rate} is not supported; the animatic's audio is {} Hz (rules/audio.yaml)",
            job.node.id,
            timing::RATE
        )));
    }
    Ok(())
}

/// The exact length in samples of a 48 kHz WAV that studio's ffmpeg
/// wrote, from its header (read here: an ffprobe per line cost more than
/// a voice edit's resample).
pub(crate) fn wav_samples(job: &Job, wav: &Utf8Path) -> Result<u64, ExecError> {
    let fail = |e: String| ExecError::Permanent(format!("{}: {e} in {wav}", job.node.id));
    let reader = hound::WavReader::open(wav).map_err(|e| fail(format!("unreadable WAV ({e})")))?;
    samples_at_rate(reader.spec().sample_rate, reader.duration()).map_err(fail)
}

/// A WAV's length in samples, refused unless it is at 48 kHz.
fn samples_at_rate(rate: u32, samples: u32) -> Result<u64, String> {
    if u64::from(rate) != timing::RATE {
        return Err(format!("sample rate {rate} instead of {}", timing::RATE));
    }
    Ok(u64::from(samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn speech_defaults_and_checks() {
        let s = speech(Some(
            &json!({"espeak": "en-us+f3", "pitch": 70, "rate": 175, "edge": null}),
        ))
        .unwrap();
        assert_eq!(
            s,
            Speech {
                voice: "en-us+f3".into(),
                pitch: 70,
                rate: 175
            }
        );
        let d = speech(Some(&json!({"espeak": null, "pitch": null}))).unwrap();
        assert_eq!(
            d,
            Speech {
                voice: "en-us".into(),
                pitch: 50,
                rate: 175
            }
        );
        assert_eq!(speech(None).unwrap().voice, "en-us");
        assert!(speech(Some(&json!({"espeak": "-w"}))).is_err());
        assert!(speech(Some(&json!({"espeak": "en us"}))).is_err());
        assert!(speech(Some(&json!({"pitch": 120}))).unwrap_err().contains("0–99"));
        assert!(speech(Some(&json!({"rate": -3}))).is_err());
    }

    #[test]
    fn text_goes_through_a_file() {
        let s = speech(Some(&json!({"espeak": "ja", "pitch": 40, "rate": 150}))).unwrap();
        let cmd = espeak_cmd("espeak-ng", &s, Utf8Path::new("raw.wav"), Utf8Path::new("line.txt"));
        let args: Vec<_> = cmd.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-v", "ja", "-p", "40", "-s", "150", "-a", "120", "-w", "raw.wav", "-f", "line.txt"
            ]
        );
    }

    #[test]
    fn samples_are_counted_at_48k_only() {
        assert_eq!(samples_at_rate(48_000, 76_800), Ok(76_800));
        assert!(samples_at_rate(22_050, 100).unwrap_err().contains("22050"));
    }
}
