//! GPT-SoVITS (`kind: gpt_sovits`): a line from the server's `api_v2.py`,
//! cloned from the character's reference clip.
//!
//! Written from RVC-Boss/GPT-SoVITS `api_v2.py` at commit
//! 0235857b895183cae7d296389db16f3c783f189a: `POST /tts` takes JSON
//! (`TTS_Request`: `text`, `text_lang`, `ref_audio_path`, `prompt_text`,
//! `prompt_lang`, `text_split_method`, `batch_size`, `speed_factor`,
//! `seed`, `media_type`, `streaming_mode`, …); `check_params` answers
//! `400 {"message": "ref_audio_path is required"}` (and the like for
//! `text`, `text_lang`, `prompt_lang`, `media_type`, `text_split_method`);
//! success is the whole WAV in the body (`media_type=wav`, not streamed);
//! an exception in synthesis is `400 {"message": "tts failed",
//! "Exception": …}`. The server reads `ref_audio_path` from its own disk:
//! studio sends the absolute path of the project's clip, so the server
//! must see this machine's files (a loopback server, or the same path on a
//! shared disk). The clip enters the key by content (`voice.reference_audio:
//! {file: …}`); the GPT and SoVITS weights are the server's, named by the
//! executor's `model:` (which is in the key).

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::server::{self, language};
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::stages::{asset_in, param, param_str};

/// The longest transcript of the reference clip studio sends.
pub const MAX_PROMPT_TEXT: usize = 1000;
/// `speed_factor`'s range.
pub const SPEED: (f64, f64) = (0.5, 2.0);

/// `voice.gpt_sovits`: the languages and the clip's transcript.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub text_lang: String,
    pub prompt_lang: String,
    pub prompt_text: String,
    pub speed: f64,
}

/// Read `voice.gpt_sovits: {text_lang, prompt_lang, prompt_text, speed}`.
pub(crate) fn settings(voice: Option<&Value>) -> Result<Settings, String> {
    let s = voice.and_then(|v| v.get("gpt_sovits"));
    let field = |k: &str| s.and_then(|s| s.get(k));
    let text_lang = language(field("text_lang"), "voice.gpt_sovits.text_lang", "en")?;
    let prompt_lang = language(field("prompt_lang"), "voice.gpt_sovits.prompt_lang", &text_lang)?;
    let prompt_text = match field("prompt_text").filter(|v| !v.is_null()) {
        None => String::new(),
        Some(v) => {
            let t = v.as_str().ok_or("voice.gpt_sovits.prompt_text is not a text")?;
            if t.chars().count() > MAX_PROMPT_TEXT || t.chars().any(char::is_control) {
                return Err(format!(
                    "voice.gpt_sovits.prompt_text is not one line of at most {MAX_PROMPT_TEXT} characters"
                ));
            }
            t.to_string()
        }
    };
    let speed = match field("speed").filter(|v| !v.is_null()) {
        None => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|x| (SPEED.0..=SPEED.1).contains(x))
            .ok_or_else(|| format!("voice.gpt_sovits.speed is {v}; it takes {}–{}", SPEED.0, SPEED.1))?,
    };
    Ok(Settings {
        text_lang,
        prompt_lang,
        prompt_text,
        speed,
    })
}

/// The `POST /tts` body: one whole WAV, the node's seed (api_v2 takes a
/// 32-bit seed; −1 would draw one).
pub(crate) fn request(text: &str, reference: &str, s: &Settings, seed: u64) -> Value {
    json!({
        "text": text,
        "text_lang": s.text_lang,
        "ref_audio_path": reference,
        "prompt_text": s.prompt_text,
        "prompt_lang": s.prompt_lang,
        "text_split_method": "cut5",
        "batch_size": 1,
        "speed_factor": s.speed,
        "seed": seed % (1 << 31),
        "media_type": "wav",
        "streaming_mode": false,
    })
}

/// gpt_sovits: the line in the character's cloned voice.
pub async fn gpt_sovits(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    super::check_rate(job)?;
    let service = server::service(job)?;
    let text = param_str(job, "text");
    if text.trim().is_empty() {
        return Err(fail("the line has no text to speak".into()));
    }
    let voice = param(job, "voice");
    let s = settings(voice).map_err(fail)?;
    let reference = asset_in(
        job,
        voice.and_then(|v| v.get("reference_audio")),
        "voice.reference_audio",
    )?
    .ok_or_else(|| fail("GPT-SoVITS needs the speaker's `voice.reference_audio: {file: …}` in studio.yaml".into()))?;
    let seed = job.material.seed.unwrap_or(0) % (1 << 31);
    let body = request(text, reference.as_str(), &s, seed);
    let wav = server::post_json(service, "/tts", &body, server::max_wav_bytes(), cancel).await?;
    let mut metadata = Metadata::new();
    metadata.insert("seed".into(), seed.into());
    server::into_line(job, service, "/tts", &wav, metadata, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_english_and_check_their_ranges() {
        let d = settings(None).unwrap();
        assert_eq!(
            (d.text_lang.as_str(), d.prompt_lang.as_str(), d.speed),
            ("en", "en", 1.0)
        );
        let s = settings(Some(
            &json!({"gpt_sovits": {"text_lang": "ja", "prompt_text": "こんにちは"}}),
        ))
        .unwrap();
        assert_eq!(
            (s.text_lang.as_str(), s.prompt_lang.as_str()),
            ("ja", "ja"),
            "the prompt's follows"
        );
        assert!(settings(Some(&json!({"gpt_sovits": {"speed": 3}}))).is_err());
        assert!(settings(Some(&json!({"gpt_sovits": {"prompt_text": "a\nb"}}))).is_err());
        assert!(settings(Some(&json!({"gpt_sovits": {"text_lang": "EN US"}}))).is_err());
    }

    #[test]
    fn the_request_is_api_v2s_tts_request() {
        let s = settings(Some(&json!({"gpt_sovits": {"prompt_text": "Hello there."}}))).unwrap();
        let r = request("Hi.", "/p/refs/kai.wav", &s, 7);
        assert_eq!(r["ref_audio_path"], "/p/refs/kai.wav");
        assert_eq!(r["media_type"], "wav");
        assert_eq!(r["streaming_mode"], false);
        assert_eq!(r["seed"], 7);
        assert_eq!(r["prompt_text"], "Hello there.");
        assert_eq!(request("a", "b", &s, u64::MAX)["seed"], (u64::MAX % (1 << 31)));
    }
}
