//! XTTS v2 (`kind: xtts`): a line cloned from the character's reference
//! clip by daswer123/xtts-api-server, the XTTS API server most set-ups use
//! (SillyTavern's XTTS backend, `pip install xtts-api-server`).
//!
//! Written from daswer123/xtts-api-server `xtts_api_server/server.py` at
//! commit 02c7c9f6478d8509fad942fec57f59dcfaec456f: `POST /tts_to_audio/`
//! (with the slash: FastAPI redirects the bare path, and studio follows no
//! redirect) takes `SynthesisRequest` JSON, `{text, speaker_wav, language}`,
//! and answers the WAV (`FileResponse`, `audio/wav`, 24 kHz). A language it
//! does not know raises `HTTPException(400)` inside its own `try`, so it
//! reaches the client as `500 {"detail": "Error: 400: Language code sent is
//! either unsupported or misspelled."}` (permanent here, see
//! [`super::server::error_message`]); any other failure is `500 {"detail":
//! "Error: …"}`. `speaker_wav` ending in `.wav` and absolute is read as a
//! path on the server's disk (`tts_funcs.get_speaker_wav`): studio sends the
//! project clip's absolute path, so the server must see this machine's
//! files. The clip enters the key by content (`voice.reference_audio:
//! {file: …}`).
//!
//! **No seed.** `SynthesisRequest` has no seed field (pydantic would ignore
//! one), and `tts_funcs.local_generation` samples (`temperature=0.75`,
//! `top_k=50`, `top_p=0.85`) from torch's generator, which the server never
//! seeds; so studio sends none and records none (`metadata.seed` is absent,
//! unlike Piper's and GPT-SoVITS's). The line's key does not change for it:
//! the key still names the text, clip, language and server, a cached line
//! is reused as long as it is in a cache, and the remote cache keeps the
//! first upload. But the bytes are not a function of the key: whenever the
//! line is made again (a provisional fallback replaced once XTTS is back, a
//! line evicted by `studio gc`, another machine without the cache) the take
//! sounds different, and the scene mix after it is rebuilt rather than cut
//! off early. Keep the cache (or push it to the remote) to keep a take.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::server::{self, language};
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::stages::{asset_in, param, param_str};

/// The route, with FastAPI's trailing slash.
pub const PATH: &str = "/tts_to_audio/";

/// The `POST /tts_to_audio/` body.
pub(crate) fn request(text: &str, speaker_wav: &str, language: &str) -> Value {
    json!({"text": text, "speaker_wav": speaker_wav, "language": language})
}

/// xtts: the line in the voice of the character's reference clip, in
/// `voice.xtts.language` (default `en`).
pub async fn xtts(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    super::check_rate(job)?;
    let service = server::service(job)?;
    let text = param_str(job, "text");
    if text.trim().is_empty() {
        return Err(fail("the line has no text to speak".into()));
    }
    let voice = param(job, "voice");
    let lang = language(
        voice.and_then(|v| v.get("xtts")).and_then(|x| x.get("language")),
        "voice.xtts.language",
        "en",
    )
    .map_err(fail)?;
    let reference = asset_in(
        job,
        voice.and_then(|v| v.get("reference_audio")),
        "voice.reference_audio",
    )?
    .ok_or_else(|| fail("XTTS needs the speaker's `voice.reference_audio: {file: ….wav}` in studio.yaml".into()))?;
    if reference.extension() != Some("wav") {
        return Err(fail(format!(
            "XTTS reads a reference clip by path only when it ends in .wav; {reference} does not"
        )));
    }
    let body = request(text, reference.as_str(), &lang);
    let wav = server::post_json(service, PATH, &body, server::max_wav_bytes(), cancel).await?;
    server::into_line(job, service, PATH, &wav, Metadata::new(), cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_servers_synthesis_request() {
        assert_eq!(
            request("Hi.", "/p/refs/kai.wav", "en"),
            json!({"text": "Hi.", "speaker_wav": "/p/refs/kai.wav", "language": "en"})
        );
        assert!(PATH.ends_with('/'), "the bare path is a redirect");
    }
}
