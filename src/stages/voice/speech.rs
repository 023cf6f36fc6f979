//! OpenAI-compatible speech servers (`kind: openai_speech`): the `edge_tts`
//! engine asks `POST /v1/audio/speech` for a WAV, as openai-edge-tts
//! (travisvn/openai-edge-tts, app/server.py: JSON `input` required, `voice`,
//! `response_format`, `speed`, `model`; the file in the body; a missing
//! input is `400 {"error": …}`), Kokoro-FastAPI and openedai-speech serve
//! it. The answer must be a WAV of bounded size; it is resampled to 48 kHz
//! like every voice line. edge-tts itself needs the internet: a server that
//! cannot reach Microsoft answers 500, which is reported as it came.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{check_rate, max_line_seconds, neural, wav_samples};
use crate::exec::http::HttpError;
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::stages::{exec, ffmpeg, param, param_str, produced, scratch};
use crate::timing;

/// The largest WAV a server may answer: the longest line at 48 kHz stereo
/// float, with room for the header.
pub const MAX_WAV_BYTES: usize = (super::MAX_LINE_SECONDS as usize) * 48_000 * 2 * 4 + 4096;

/// The request body for `text` in `voice`.
pub(crate) fn request(model: Option<&str>, text: &str, voice: &str) -> Value {
    json!({
        "model": model.unwrap_or("tts-1"),
        "input": text,
        "voice": voice,
        "response_format": "wav",
        "speed": 1.0,
    })
}

/// Whether `body` is a RIFF WAVE file.
pub(crate) fn is_wav(body: &[u8]) -> bool {
    body.len() > 44 && &body[..4] == b"RIFF" && &body[8..12] == b"WAVE"
}

/// edge_tts: a line from the pool's OpenAI-compatible speech server, in the
/// character's `voice.edge`.
pub async fn openai_speech(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    check_rate(job)?;
    let service = job
        .service
        .as_ref()
        .ok_or_else(|| fail("no speech executor for this job".into()))?;
    let text = param_str(job, "text");
    if text.trim().is_empty() {
        return Err(fail("the line has no text to speak".into()));
    }
    let voice = param(job, "voice")
        .and_then(|v| v.get("edge"))
        .and_then(Value::as_str)
        .ok_or_else(|| fail("the speaker has no `voice.edge` (e.g. en-US-AriaNeural) in studio.yaml".into()))?;
    let url = service.url("/v1/audio/speech").map_err(|e| service.error(e))?;
    let body = serde_json::to_vec(&request(job.pool.model.as_deref(), text, voice)).expect("JSON");
    let mut req = service
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(var) = job.host.as_ref().and_then(|h| h.api_key_env.as_deref())
        && let Ok(key) = std::env::var(var)
    {
        req = req.bearer_auth(key);
    }
    let answer = tokio::select! {
        a = service.send(&url, req) => a.map_err(|e| service.error(e))?,
        () = cancel.cancelled() => return Err(ExecError::Cancelled),
    };
    service.check_status(&url, &answer).map_err(|e| service.error(e))?;
    let protocol = |reason: String| {
        ExecError::from(service.error(HttpError::Protocol {
            url: url.clone(),
            reason,
        }))
    };
    if answer.body.len() > MAX_WAV_BYTES {
        return Err(protocol(format!(
            "answered {} bytes, more than a {} s line",
            answer.body.len(),
            max_line_seconds()
        )));
    }
    if !is_wav(&answer.body) {
        return Err(protocol("answered with something that is not a WAV file".into()));
    }
    let raw = scratch(job, "voice_raw.wav");
    std::fs::write(&raw, &answer.body).map_err(|e| fail(format!("cannot write {raw}: {e}")))?;
    let wav = scratch(job, "voice.wav");
    let resample = ffmpeg(job)?
        .args(["-i", raw.as_str(), "-af", &neural::filter(48_000, 0.0), "-ac", "1"])
        .args(["-c:a", "pcm_s16le", "-fflags", "+bitexact", wav.as_str()]);
    exec(job, &resample, cancel).await?;
    produced(&wav, "ffmpeg")?;
    let samples = wav_samples(job, &wav)?;
    if samples == 0 {
        return Err(protocol("answered a WAV with no sound".into()));
    }
    if samples > max_line_seconds() * timing::RATE {
        return Err(fail(format!("the line is longer than {} s", max_line_seconds())));
    }
    Ok(Produced {
        files: vec![("wav".into(), wav)],
        duration: Some(samples as f64 / timing::RATE as f64),
        metadata: Metadata::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_openai_shape() {
        let r = request(None, "Hi.", "en-US-AriaNeural");
        assert_eq!(
            r,
            json!({"model": "tts-1", "input": "Hi.", "voice": "en-US-AriaNeural", "response_format": "wav", "speed": 1.0})
        );
        assert_eq!(request(Some("kokoro"), "a", "b")["model"], "kokoro");
    }

    #[test]
    fn only_wav_files_are_taken() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.resize(64, 0);
        assert!(is_wav(&wav));
        assert!(!is_wav(b"ID3\x04 an mp3"));
        assert!(!is_wav(b"{\"error\": \"Missing 'input' in request body\"}"));
        assert!(!is_wav(&wav[..20]));
    }
}
