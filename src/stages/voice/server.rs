//! What the voice-server clients share (GPT-SoVITS, XTTS, RVC): one JSON
//! request on the job's executor, its answer bounded and classified, and
//! the WAV it carries decoded and checked before it becomes a voice line.
//!
//! Nothing a server answers is trusted: the body is read up to
//! [`max_wav_bytes`]; a WAV must decode (`hound`), have a sane rate and
//! channel count, last between [`MIN_SECONDS`] and the longest line, and
//! not be silence. Errors follow `exec::http`: refused, timed out, 5xx and
//! 429 may pass (transient), the rest do not; the servers' JSON error
//! bodies (`{"message": …}` from GPT-SoVITS, FastAPI's `{"detail": …}`)
//! are quoted, cleaned of control characters and cut short. XTTS wraps its
//! own 400s in a 500 (`"Error: 400: …"`, see [`super::xtts`]): such an
//! answer is permanent.

use camino::Utf8PathBuf;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{max_line_seconds, neural, wav_samples};
use crate::exec::http::{HttpError, Service, excerpt};
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::stages::{exec, ffmpeg, produced, scratch};
use crate::timing;

/// The shortest line a server may answer, in seconds.
pub const MIN_SECONDS: f64 = 0.05;
/// The sample rates a server may answer at.
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// A line whose loudest sample is under this (−60 dBFS) is silence.
pub const SILENCE_PEAK: f64 = 0.001;

/// The most bytes a server's WAV may take: the longest line
/// ([`max_line_seconds`]) at 48 kHz stereo float, with room for the header
/// ([`super::speech::MAX_WAV_BYTES`] for the usual limit).
pub(crate) fn max_wav_bytes() -> usize {
    (max_line_seconds() as usize) * 48_000 * 2 * 4 + 4096
}

/// The job's service client, or a permanent error naming the node.
pub(crate) fn service(job: &Job) -> Result<&Service, ExecError> {
    job.service
        .as_deref()
        .ok_or_else(|| ExecError::Permanent(format!("{}: no executor for this job", job.node.id)))
}

/// POST `body` as JSON to `path` on the job's executor and return the
/// answer's body (at most `max` bytes) when it is 2xx; the answer's error,
/// classified, when not. Cancellation drops the request.
pub(crate) async fn post_json(
    service: &Service,
    path: &str,
    body: &Value,
    max: usize,
    cancel: &CancellationToken,
) -> Result<bytes::Bytes, ExecError> {
    let url = service.url(path).map_err(|e| service.error(e))?;
    let request = service
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).expect("JSON"));
    send(service, &url, request, max, cancel).await
}

/// Send `request` to `url`, bounded by `max` bytes; see [`post_json`].
pub(crate) async fn send(
    service: &Service,
    url: &str,
    request: reqwest::RequestBuilder,
    max: usize,
    cancel: &CancellationToken,
) -> Result<bytes::Bytes, ExecError> {
    let answer = tokio::select! {
        a = service.send_limited(url, request, max) => a.map_err(|e| service.error(e))?,
        () = cancel.cancelled() => return Err(ExecError::Cancelled),
    };
    if (200..300).contains(&answer.status) {
        return Ok(answer.body);
    }
    let (message, wrapped_400) = error_message(&answer.body);
    let error = service.error(HttpError::Status {
        url: url.to_string(),
        status: answer.status,
        body: message,
    });
    Err(if wrapped_400 {
        ExecError::Permanent(error.to_string())
    } else {
        error.into()
    })
}

/// The error a server's body says, one short line: GPT-SoVITS's
/// `{"message", "Exception"}`, FastAPI's `{"detail": text or list}`, or
/// the start of the text. The flag: a 400 wrapped in a 500 (`"Error:
/// 400: …"`, XTTS API server), which no retry fixes.
pub(crate) fn error_message(body: &[u8]) -> (String, bool) {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let field = |k: &str| {
                v.get(k)
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            };
            match (field("message"), field("Exception"), field("detail"), field("error")) {
                (Some(m), Some(e), _, _) => format!("{m}: {e}"),
                (Some(m), None, _, _) | (None, _, Some(m), _) | (None, _, None, Some(m)) => m,
                _ => v.to_string(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = excerpt(clean.trim(), 300);
    let wrapped = clean.contains("Error: 400:") || clean.contains("Error: 404:");
    (clean, wrapped)
}

/// What a WAV holds, as checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WavFacts {
    pub rate: u32,
    pub channels: u16,
    pub seconds: f64,
    /// The loudest sample, 0–1.
    pub peak: f64,
}

/// Decode `body` as a WAV and check it is a voice line: a rate in
/// [`RATES`], one or two channels, [`MIN_SECONDS`] to `max_seconds` long,
/// not silence. The error says what is wrong, for a protocol error.
pub(crate) fn check_wav(body: &[u8], max_seconds: f64) -> Result<WavFacts, String> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(body)).map_err(|e| format!("not a WAV file ({e})"))?;
    let spec = reader.spec();
    if !RATES.contains(&spec.sample_rate) {
        return Err(format!("a WAV at {} Hz", spec.sample_rate));
    }
    if !(1..=2).contains(&spec.channels) {
        return Err(format!("a WAV with {} channels", spec.channels));
    }
    // Counted as read, not taken from the header: a header may lie.
    let mut peak = 0f64;
    let mut frames = 0u64;
    let limit = (max_seconds * f64::from(spec.sample_rate)) as u64 * u64::from(spec.channels);
    let mut count = |x: f64| -> Result<(), String> {
        frames += 1;
        if frames > limit {
            return Err(format!("more than {max_seconds} s of audio"));
        }
        peak = peak.max(x.abs());
        Ok(())
    };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                let x = f64::from(s.map_err(|e| format!("a WAV cut short ({e})"))?);
                if !x.is_finite() {
                    return Err("a WAV with a sample that is not a number".into());
                }
                count(x)?;
            }
        }
        hound::SampleFormat::Int => {
            let full = f64::from(1u32 << (spec.bits_per_sample.clamp(8, 32) - 1));
            for s in reader.samples::<i32>() {
                count(f64::from(s.map_err(|e| format!("a WAV cut short ({e})"))?) / full)?;
            }
        }
    }
    let seconds = frames as f64 / f64::from(spec.channels) / f64::from(spec.sample_rate);
    if seconds < MIN_SECONDS {
        return Err(format!("a WAV of {seconds:.3} s (at least {MIN_SECONDS} s)"));
    }
    if peak < SILENCE_PEAK {
        return Err("a WAV of silence".into());
    }
    Ok(WavFacts {
        rate: spec.sample_rate,
        channels: spec.channels,
        seconds,
        peak,
    })
}

/// A checked server WAV as the job's voice line: written to the scratch
/// directory, trimmed of leading silence and resampled to 48 kHz mono
/// s16 like every line (bit-exact). `engine` names the server in errors.
pub(crate) async fn into_line(
    job: &Job,
    service: &Service,
    path: &str,
    body: &[u8],
    metadata: Metadata,
    cancel: &CancellationToken,
) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    let max = max_line_seconds();
    let protocol = |reason: String| {
        ExecError::from(service.error(HttpError::Protocol {
            url: format!("{}{path}", service.base),
            reason: format!("answered {reason}"),
        }))
    };
    let facts = check_wav(body, max as f64).map_err(protocol)?;
    let raw = scratch(job, "voice_raw.wav");
    std::fs::write(&raw, body).map_err(|e| fail(format!("cannot write {raw}: {e}")))?;
    let wav = scratch(job, "voice.wav");
    resample(job, &raw, &wav, u64::from(facts.rate), cancel).await?;
    let samples = wav_samples(job, &wav)?;
    if samples == 0 {
        return Err(protocol("a WAV with no sound".into()));
    }
    if samples > max * timing::RATE {
        return Err(fail(format!("the line is longer than {max} s")));
    }
    Ok(Produced {
        files: vec![("wav".into(), wav)],
        duration: Some(samples as f64 / timing::RATE as f64),
        metadata,
    })
}

/// `raw` (at `rate`) → `wav`: leading silence trimmed, 48 kHz mono s16.
pub(crate) async fn resample(
    job: &Job,
    raw: &Utf8PathBuf,
    wav: &Utf8PathBuf,
    rate: u64,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let cmd = ffmpeg(job)?
        .args(["-i", raw.as_str(), "-af", &neural::filter(rate, 0.0), "-ac", "1"])
        .args(["-c:a", "pcm_s16le", "-fflags", "+bitexact", wav.as_str()]);
    exec(job, &cmd, cancel).await?;
    produced(wav, "ffmpeg")
}

/// A language code a server takes (`en`, `ja`, `zh-cn`, `all_ja`): a short
/// lowercase word; the server says whether it knows it.
pub(crate) fn language(value: Option<&Value>, what: &str, default: &str) -> Result<String, String> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(default.to_string());
    };
    let s = v.as_str().unwrap_or("");
    let ok = (1..=12).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'_' | b'-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{what} {v} is not a language code (en, ja, zh-cn, all_ja, ...)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit WAV of `samples` at `rate`.
    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn tone(n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16).collect()
    }

    #[test]
    fn a_voice_wav_is_checked_for_rate_length_and_sound() {
        let f = check_wav(&wav(24_000, 1, &tone(24_000)), 300.0).unwrap();
        assert_eq!((f.rate, f.channels), (24_000, 1));
        assert!((f.seconds - 1.0).abs() < 1e-9 && f.peak > 0.2);
        assert!(
            check_wav(&wav(24_000, 1, &vec![0; 24_000]), 300.0)
                .unwrap_err()
                .contains("silence")
        );
        assert!(
            check_wav(&wav(24_000, 1, &tone(100)), 300.0)
                .unwrap_err()
                .contains("0.004 s")
        );
        assert!(
            check_wav(&wav(4_000, 1, &tone(4_000)), 300.0)
                .unwrap_err()
                .contains("4000 Hz")
        );
        assert!(
            check_wav(&wav(24_000, 1, &tone(48_000)), 1.5)
                .unwrap_err()
                .contains("more than")
        );
        assert!(
            check_wav(b"{\"detail\": \"x\"}", 300.0)
                .unwrap_err()
                .contains("not a WAV")
        );
        let mut cut = wav(24_000, 1, &tone(24_000));
        cut.truncate(cut.len() / 2 + 1);
        assert!(check_wav(&cut, 300.0).is_err(), "a truncated WAV is refused");
    }

    #[test]
    fn server_errors_are_quoted_and_wrapped_400s_are_permanent() {
        let gsv = br#"{"message": "tts failed", "Exception": "CUDA out of memory"}"#;
        assert_eq!(error_message(gsv), ("tts failed: CUDA out of memory".into(), false));
        let xtts = br#"{"detail": "Error: 400: Language code sent is either unsupported or misspelled."}"#;
        let (m, wrapped) = error_message(xtts);
        assert!(wrapped && m.starts_with("Error: 400:"), "{m}");
        let fastapi = br#"{"detail": [{"loc": ["body", "text"], "msg": "field required"}]}"#;
        assert!(error_message(fastapi).0.contains("field required"));
        let (m, _) = error_message(b"<h1>Internal\nServer Error</h1>");
        assert_eq!(m, "<h1>Internal Server Error</h1>");
    }

    #[test]
    fn languages_are_short_words() {
        assert_eq!(language(None, "x", "en").unwrap(), "en");
        assert_eq!(language(Some(&Value::from("zh-cn")), "x", "en").unwrap(), "zh-cn");
        assert!(language(Some(&Value::from("../etc")), "x", "en").is_err());
        assert!(language(Some(&Value::from(3)), "x", "en").is_err());
    }
}
