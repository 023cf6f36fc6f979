//! Limits on every number and text the project files carry.
//!
//! The ranges are far beyond anything a real project writes, but they keep
//! every later computation finite and in range: a duration becomes frames,
//! samples and `Duration`s, a timeout a `Duration`, a size a frame buffer, a
//! line of text a voice job. A value outside its range is a located mistake
//! that states the range, like any other (README.md, "Limits").

use miette::SourceSpan;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::diag::{Collector, ProjectError, SourceFile};
use super::vocab::{ContinuityScope, Transition};

/// The allowed range of a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
    /// `min` itself is refused (a duration must be more than 0).
    pub above: bool,
    /// Only whole numbers.
    pub integer: bool,
    /// `seconds`, `pixels`, … or empty.
    pub unit: &'static str,
    /// A usual value, for the help text.
    pub example: &'static str,
}

const fn range(min: f64, max: f64, unit: &'static str, example: &'static str) -> Range {
    Range {
        min,
        max,
        above: false,
        integer: false,
        unit,
        example,
    }
}

const fn positive(max: f64, unit: &'static str, example: &'static str) -> Range {
    Range {
        above: true,
        ..range(0.0, max, unit, example)
    }
}

const fn whole(min: f64, max: f64, unit: &'static str, example: &'static str) -> Range {
    Range {
        integer: true,
        ..range(min, max, unit, example)
    }
}

/// A shot: up to ten minutes (a shot is seconds long; frames stay small).
pub const SHOT_SECONDS: Range = positive(600.0, "seconds", "4.5");
/// A scene's target length: up to three hours.
pub const SCENE_TARGET_SECONDS: Range = positive(10_800.0, "seconds", "60");
/// Simulated seconds per expected second of work (0: no sleeping at all).
pub const TIME_SCALE: Range = range(0.0, 1000.0, "", "0.001");
/// An executor's request or connect timeout: up to a day.
pub const TIMEOUT_SECONDS: Range = positive(86_400.0, "seconds", "120");
/// Jobs an executor runs at once.
pub const SLOTS: Range = whole(1.0, 256.0, "", "2");
/// Classifier-free guidance scale.
pub const CFG: Range = positive(30.0, "", "7");
/// Sampler steps.
pub const STEPS: Range = whole(1.0, 500.0, "", "28");
/// An image or video side (the image stages clamp to the same range).
pub const SIDE_PIXELS: Range = whole(64.0, 8192.0, "pixels", "832");
/// A character's energy in a scene.
pub const ENERGY: Range = range(0.0, 1.0, "", "0.8");
/// espeak-ng's pitch and speed (the voice stage takes the same).
pub const PITCH: Range = whole(0.0, 99.0, "", "50");
pub const RATE: Range = whole(80.0, 500.0, "words per minute", "175");
/// Piper's phoneme length (the voice stage takes the same).
pub const LENGTH_SCALE: Range = range(0.5, 2.0, "", "1.1");
/// Piper's generator and phoneme-width noise.
pub const NOISE: Range = range(0.0, 1.5, "", "0.667");
/// A neural voice's pitch shift.
pub const SEMITONES: Range = range(-12.0, 12.0, "semitones", "2");
/// Kokoro's speed.
pub const SPEED: Range = range(0.5, 2.0, "", "1.0");
/// RVC's pitch shift (`f0up_key`), whole semitones.
pub const RVC_PITCH: Range = whole(-24.0, 24.0, "semitones", "-3");
/// A shot's take: raising it re-rolls the shot.
pub const TAKE: Range = whole(1.0, 9999.0, "", "2");
/// An LLM's context window.
pub const NUM_CTX: Range = whole(256.0, 1_048_576.0, "tokens", "8192");
/// Retries after a transient failure or an invalid reply.
pub const RETRIES: Range = whole(0.0, 10.0, "", "2");
/// The length of every scene transition.
pub const TRANSITION_SECONDS: Range = range(0.05, 10.0, "seconds", "0.4");

/// The longest text, in characters, of each kind of field.
pub mod text {
    /// Names and titles: a show, an episode, a scene, a character.
    pub const NAME: usize = 200;
    /// Short words: genre, tone, theme, palette color, sampler, engine names.
    pub const WORD: usize = 200;
    /// Prompts and descriptions of a look: design prompts, art style, clothing.
    pub const PROMPT: usize = 2_000;
    /// Prose: premise, summaries, synopses, scene descriptions.
    pub const PROSE: usize = 5_000;
    /// One spoken line: about a minute of speech.
    pub const LINE: usize = 1_000;
    /// A shot's motion prompt.
    pub const MOTION: usize = 1_000;
    /// A shot's action line.
    pub const ACTION: usize = 2_000;
    /// A file name or path (LoRA, reference clip, voice model).
    pub const PATH: usize = 1_000;
    /// A string param in rules/*.yaml.
    pub const PARAM: usize = 2_000;
}

/// Project files larger than this are refused before parsing (a whole
/// season's screenplay is well under a megabyte).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A number as people write it: `1e300`, not three hundred digits.
pub fn show(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "infinity" } else { "-infinity" }.into()
    } else if v != 0.0 && (v.abs() >= 1e9 || v.abs() < 1e-4) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

impl Range {
    pub fn contains(&self, v: f64) -> bool {
        let low = if self.above { v > self.min } else { v >= self.min };
        low && v <= self.max && (!self.integer || v.fract() == 0.0)
    }

    /// `a positive number of seconds up to 600`, `a whole number from 1 to 256`.
    pub fn describe(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        let (min, max) = (show(self.min), show(self.max));
        match (self.integer, self.above) {
            (true, _) => format!("a whole number from {min} to {max}{unit}"),
            (false, true) if self.min == 0.0 && unit.is_empty() => format!("a positive number up to {max}"),
            (false, true) if self.min == 0.0 => format!("a positive number of{unit} up to {max}"),
            (false, true) => format!("more than {min} and at most {max}{unit}"),
            (false, false) => format!("between {min} and {max}{unit}"),
        }
    }

    /// ``write e.g. `duration: 4.5` (a positive number of seconds up to 600)``.
    pub fn help(&self, key: &str) -> String {
        format!("write e.g. `{key}: {}` ({})", self.example, self.describe())
    }
}

/// Check `key: v` against `range`; a mistake at `v`'s place when outside.
/// Returns the value with `-0` made `0`, or `fallback` when it is refused.
pub fn number<T: Copy + Into<f64>>(
    file: &SourceFile,
    key: &str,
    v: &Spanned<T>,
    range: Range,
    fallback: T,
    errors: &mut Collector,
) -> f64 {
    let x: f64 = v.value.into();
    if range.contains(x) {
        return x + 0.0;
    }
    errors.push(out_of_range(file, key, show(x), range, &v.referenced));
    fallback.into()
}

/// [`number`] for counts held as `usize`.
pub fn count(file: &SourceFile, key: &str, v: &Spanned<usize>, range: Range, errors: &mut Collector) -> usize {
    // Counts past 2^53 lose precision as f64, but they are far out of range anyway.
    let x = v.value as f64;
    if range.contains(x) {
        return v.value;
    }
    errors.push(out_of_range(file, key, v.value.to_string(), range, &v.referenced));
    range.min as usize
}

fn out_of_range(
    file: &SourceFile,
    key: &str,
    shown: String,
    range: Range,
    at: &serde_saphyr::Location,
) -> ProjectError {
    ProjectError::at(
        file,
        "limits::range",
        format!("`{key}` must be {}, not {shown}", range.describe()),
    )
    .label_loc(file, at, "out of range")
    .help(range.help(key))
}

/// Check that `v` has at most `max` characters; a mistake at its start when longer.
pub fn text(file: &SourceFile, what: &str, v: &Spanned<String>, max: usize, errors: &mut Collector) {
    if v.value.len() <= max || v.value.chars().nth(max).is_none() {
        return;
    }
    let chars = v.value.chars().count();
    // Label the start of the value: diagnostics quote long lines cut short.
    let span = file.span(&v.referenced).map(|s| {
        let mut end = (s.offset() + s.len().min(40)).min(file.text.len());
        while !file.text.is_char_boundary(end) {
            end += 1;
        }
        SourceSpan::new(s.offset().into(), end - s.offset())
    });
    let e = ProjectError::at(
        file,
        "limits::text",
        format!("{what} is {chars} characters long; the limit is {max}"),
    )
    .label(file, span, "this text");
    errors.push(e.help(format!(
        "shorten it to at most {max} characters{}",
        if what.contains("dialogue") {
            ", or split it into several lines"
        } else {
            ""
        }
    )));
}

/// What a known rule param may be.
#[derive(Debug, Clone, Copy)]
pub enum Param {
    Number(Range),
    Word(&'static [&'static str]),
    Flag,
    /// `{en: {WORD: SAYING}, ja: {WORD: READING}}`: the neural voices'
    /// pronunciation list.
    Pronunciations,
}

/// The most entries a pronunciation list may hold, per language.
pub const MAX_PRONUNCIATIONS: usize = 1_000;

/// Why `v` is not a pronunciation list, if it is not one.
fn pronunciation_problem(v: &Value) -> Option<String> {
    let Value::Object(langs) = v else {
        return Some(format!(
            "must map a language (en, ja) to words and their sayings, not {v}"
        ));
    };
    for (lang, words) in langs {
        if lang != "en" && lang != "ja" {
            return Some(format!(
                "has the language `{lang}`; the neural voices read `en` (Piper) and `ja` (Kokoro)"
            ));
        }
        let Value::Object(words) = words else {
            return Some(format!("`{lang}` must map words to their sayings, not {words}"));
        };
        if words.len() > MAX_PRONUNCIATIONS {
            return Some(format!(
                "`{lang}` has {} words; at most {MAX_PRONUNCIATIONS}",
                words.len()
            ));
        }
        for (word, saying) in words {
            let Value::String(saying) = saying else {
                return Some(format!("`{lang}.{word}` must be a text, not {saying}"));
            };
            if word.trim().is_empty() || word.chars().count() > text::WORD || saying.chars().count() > text::WORD {
                return Some(format!(
                    "`{lang}.{word}`: words and sayings are 1 to {} characters",
                    text::WORD
                ));
            }
            if lang == "ja"
                && let Some(p) = ja_reading_problem(word, saying)
            {
                return Some(format!("`ja.{word}`: {p}"));
            }
        }
    }
    None
}

/// Why `word: reading` cannot be a row of Kokoro's OpenJTalk user
/// dictionary (a CSV line): the word holds a comma, quote, space or control
/// character, or the reading is not kana (hiragana, katakana, ー).
pub fn ja_reading_problem(word: &str, reading: &str) -> Option<String> {
    if word.is_empty()
        || word
            .chars()
            .any(|c| c == ',' || c == '"' || c.is_whitespace() || c.is_control())
    {
        return Some("a word has no commas, quotes or spaces".into());
    }
    let kana = |c: char| matches!(c, '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | 'ー');
    if reading.is_empty() || !reading.chars().all(kana) {
        return Some(format!(
            "the reading `{reading}` must be kana (hiragana or katakana) only"
        ));
    }
    None
}

/// The params the built-in stages read, by name (rules/*.yaml). The mix
/// levels repeat `stages::mix::Levels`' ranges, the frame sizes the image
/// stage's clamp, the loudness targets ffmpeg's loudnorm limits.
pub const PARAMS: &[(&str, Param)] = &[
    ("pronounce", Param::Pronunciations),
    ("sample_rate", Param::Number(whole(8000.0, 192_000.0, "Hz", "48000"))),
    ("width", Param::Number(SIDE_PIXELS)),
    ("height", Param::Number(SIDE_PIXELS)),
    ("fps", Param::Number(whole(1.0, 120.0, "frames per second", "30"))),
    ("contrast", Param::Number(range(0.0, 10.0, "", "1.15"))),
    ("saturation", Param::Number(range(0.0, 3.0, "", "1.15"))),
    ("denoise", Param::Number(range(0.0, 1.0, "", "0.4"))),
    ("steps", Param::Number(STEPS)),
    ("cfg", Param::Number(CFG)),
    ("candidates", Param::Number(whole(1.0, 64.0, "", "4"))),
    ("approve_at", Param::Number(range(0.0, 1.0, "", "0.92"))),
    ("reject_below", Param::Number(range(0.0, 1.0, "", "0.4"))),
    ("continuity", Param::Word(ContinuityScope::WORDS)),
    ("music_volume", Param::Number(range(0.0, 4.0, "", "0.5"))),
    ("duck_threshold", Param::Number(range(0.000_976_563, 1.0, "", "0.02"))),
    ("duck_ratio", Param::Number(range(1.0, 20.0, "", "6"))),
    ("duck_attack_ms", Param::Number(range(0.01, 2000.0, "ms", "200"))),
    ("duck_release_ms", Param::Number(range(0.01, 9000.0, "ms", "1000"))),
    ("transition_seconds", Param::Number(TRANSITION_SECONDS)),
    ("default_transition", Param::Word(Transition::WORDS)),
    ("loudness_lufs", Param::Number(range(-70.0, -5.0, "LUFS", "-16"))),
    ("true_peak_dbtp", Param::Number(range(-9.0, 0.0, "dBTP", "-1.5"))),
    ("max_true_peak_dbtp", Param::Number(range(-9.0, 0.0, "dBTP", "-1"))),
    ("subtitles", Param::Flag),
    ("chapters", Param::Flag),
    ("season", Param::Number(whole(0.0, 999.0, "", "1"))),
];

/// Check one rule param: known names against [`PARAMS`], any string
/// against [`text::PARAM`].
pub fn param(file: &SourceFile, kind: &str, name: &str, v: &Spanned<Value>, errors: &mut Collector) {
    let what = format!("`{name}` of `{kind}`");
    let known = PARAMS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
    let problem = match (known, &v.value) {
        (_, Value::String(s)) if s.len() > text::PARAM => {
            let t = Spanned::new(s.clone(), v.referenced, v.defined);
            return text(file, &what, &t, text::PARAM, errors);
        }
        (None, _) => return,
        (Some(Param::Number(r)), Value::Number(n)) => match n.as_f64() {
            Some(x) if r.contains(x) => return,
            x => format!("{what} must be {}, not {}", r.describe(), x.map_or(n.to_string(), show)),
        },
        (Some(Param::Number(r)), other) => format!("{what} must be a number {}, not {other}", r.describe()),
        (Some(Param::Word(words)), Value::String(s)) if words.contains(&s.as_str()) => return,
        (Some(Param::Word(words)), other) => format!("{what} must be one of {}, not {other}", words.join(", ")),
        (Some(Param::Flag), Value::Bool(_)) => return,
        (Some(Param::Flag), other) => format!("{what} must be true or false, not {other}"),
        (Some(Param::Pronunciations), v) => match pronunciation_problem(v) {
            None => return,
            Some(p) => format!("{what} {p}"),
        },
    };
    let help = match known {
        Some(Param::Number(r)) => r.help(name),
        Some(Param::Word(words)) => format!("`{name}` is one of: {}", words.join(", ")),
        Some(Param::Pronunciations) => {
            format!("write e.g. `{name}: {{en: {{Okabe: \"[[ oʊkˈɑːbeɪ ]]\"}}, ja: {{月城: つきしろ}}}}`")
        }
        _ => format!("write `{name}: true` or `{name}: false`"),
    };
    errors.push(
        ProjectError::at(file, "limits::param", problem)
            .label_loc(file, &v.referenced, "here")
            .help(help),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pronunciation_lists_are_checked() {
        let ok = serde_json::json!({"en": {"Okabe": "[[ oʊkˈɑːbeɪ ]]"}, "ja": {"月城": "つきしろ"}});
        assert_eq!(pronunciation_problem(&ok), None);
        for (bad, says) in [
            (serde_json::json!(["Okabe"]), "must map a language"),
            (serde_json::json!({"fr": {}}), "the language `fr`"),
            (serde_json::json!({"en": {"Okabe": 3}}), "must be a text"),
            (serde_json::json!({"en": {"": "x"}}), "1 to 200"),
            (serde_json::json!({"en": {"Okabe": "o".repeat(201)}}), "1 to 200"),
            (serde_json::json!({"ja": {"月城": "tsukishiro"}}), "must be kana"),
            (serde_json::json!({"ja": {"月,城": "つきしろ"}}), "no commas"),
            (serde_json::json!({"ja": {"月城 ": "つきしろ"}}), "no commas"),
        ] {
            let p = pronunciation_problem(&bad).unwrap();
            assert!(p.contains(says), "{bad}: {p}");
        }
    }

    #[test]
    fn ranges_refuse_what_would_overflow_later() {
        for bad in [
            0.0,
            -0.0,
            -1.0,
            600.5,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert!(!SHOT_SECONDS.contains(bad), "{bad}");
        }
        assert!(SHOT_SECONDS.contains(600.0) && SHOT_SECONDS.contains(0.001));
        assert!(TIME_SCALE.contains(0.0) && !TIME_SCALE.contains(1e30));
        assert!(SLOTS.contains(256.0) && !SLOTS.contains(0.0) && !SLOTS.contains(1.5));
        // The worst case stays far inside what `Duration::from_secs_f64` and
        // u64 frame and sample counts take.
        let worst = SHOT_SECONDS.max * 150.0 * TIME_SCALE.max;
        assert!(std::time::Duration::try_from_secs_f64(worst).is_ok());
        assert!(std::time::Duration::try_from_secs_f64(TIMEOUT_SECONDS.max).is_ok());
    }

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(show(1e300), "1e300");
        assert_eq!(show(-2.0), "-2");
        assert_eq!(show(0.4), "0.4");
        assert_eq!(show(f64::INFINITY), "infinity");
        assert_eq!(SHOT_SECONDS.describe(), "a positive number of seconds up to 600");
        assert_eq!(CFG.describe(), "a positive number up to 30");
        assert_eq!(TRANSITION_SECONDS.describe(), "between 0.05 and 10 seconds");
        assert_eq!(SLOTS.describe(), "a whole number from 1 to 256");
        assert_eq!(ENERGY.describe(), "between 0 and 1");
    }
}
