//! Spoken languages: `languages:` in studio.yaml (ISO 639-1 codes, the
//! default first), each character's voice per dub language (`voices:`), and
//! the dub texts of dialogue lines (`ja: …` beside `text:`).
//!
//! An episode carries a dub track for every declared language that at least
//! one of its lines is written in; a line without that language is spoken
//! in the default one on the dub track (one warning per episode and
//! language, [`Fallback`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Spanned;

use super::bounds::{self, text};
use super::diag::{Collector, ProjectError, SourceFile};
use super::raw::{RawCharacter, RawLine, RawVoice};

/// A spoken language of the project.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Language {
    /// ISO 639-1, as written in studio.yaml and as a line's key (`ja`).
    pub code: String,
    /// ISO 639-2/T, the MP4 track's language tag (`jpn`).
    pub tag: String,
    /// The English name (`Japanese`), the track's title.
    pub name: String,
}

impl Language {
    /// The language of an ISO 639-1 code, `None` when there is none.
    pub fn of(code: &str) -> Option<Language> {
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        let l = isolang::Language::from_639_1(code)?;
        Some(Language {
            code: code.to_string(),
            // For every language with a 639-1 code, its 639-3 code is its
            // 639-2/T code (the terminology code MP4 uses).
            tag: l.to_639_3().to_string(),
            name: l.to_name().to_string(),
        })
    }
}

/// A dub language some lines of an episode leave out: those are spoken in
/// the default language on its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub language: String,
    /// How many lines have no text in it, of how many.
    pub missing: usize,
    pub lines: usize,
    /// The first such line, `<scene>/<shot>/<n>`.
    pub first: String,
}

impl Fallback {
    pub fn warning(&self, episode: &str, default: &str) -> String {
        format!(
            "{episode}: {} of {} dialogue lines have no `{}:` text (first: {}); its track speaks them in `{default}`",
            self.missing, self.lines, self.language, self.first
        )
    }
}

/// `languages:`: known ISO 639-1 codes, each once. Empty when absent (one
/// unnamed language: no tags, no dubs).
pub(super) fn languages(file: &SourceFile, raw: Option<&[Spanned<String>]>, errors: &mut Collector) -> Vec<Language> {
    let Some(raw) = raw else { return Vec::new() };
    if raw.is_empty() {
        errors.push(
            ProjectError::at(file, "languages::empty", "`languages:` lists no language")
                .label(file, file.key_span("languages"), "here")
                .help(
                    "list the project's spoken languages as ISO 639-1 codes, the default first: `languages: [en, ja]`",
                ),
        );
    }
    let mut out: Vec<Language> = Vec::new();
    for code in raw {
        let problem = match Language::of(&code.value) {
            None => format!("`{}` is not an ISO 639-1 language code", code.value),
            Some(_) if out.iter().any(|l| l.code == code.value) => {
                format!("`{}` is twice in `languages:`", code.value)
            }
            Some(l) => {
                out.push(l);
                continue;
            }
        };
        errors.push(
            ProjectError::at(file, "languages::code", problem)
                .label_loc(file, &code.referenced, "here")
                .help("write each language once, as its two-letter ISO 639-1 code in lower case (en, ja, fr, …), the default first"),
        );
    }
    out
}

/// Every character's `voices:`: a declared dub language each (not the
/// default), a voice with its own `engines:` chain. Returns the checked
/// voices by character, in the order of `raw`.
pub(super) fn character_voices(
    file: &SourceFile,
    raw: &[RawCharacter],
    languages: &[Language],
    errors: &mut Collector,
) -> Vec<BTreeMap<String, RawVoice>> {
    let declared = || {
        languages
            .iter()
            .skip(1)
            .map(|l| l.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    raw.iter()
        .map(|c| {
            let mut out = BTreeMap::new();
            for (code, v) in &c.voices {
                let problem = if languages.first().is_some_and(|l| &l.code == code) {
                    Some(format!(
                        "`voices.{code}`: `{code}` is the default language, which `voice:` speaks"
                    ))
                } else if !languages.iter().any(|l| &l.code == code) {
                    Some(format!(
                        "`voices.{code}`: `{code}` is not a dub language of `languages:`"
                    ))
                } else if v.value.engines.as_ref().is_none_or(Vec::is_empty) {
                    Some(format!(
                        "{}'s `{code}` voice names no `engines:` (the rule's chain speaks the default language)",
                        c.id.value
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    errors.push(
                        ProjectError::at(file, "character::voices", problem)
                            .label_loc(file, &v.referenced, "this voice")
                            .help(format!(
                                "`voices:` holds one voice per dub language ({}), each with its engines: \
                                 `ja: {{engines: [kokoro_ja, espeak], kokoro: {{voice: jf_alpha}}, espeak: ja}}`",
                                match declared() {
                                    d if d.is_empty() => "none declared: add them to `languages:`".to_string(),
                                    d => d,
                                }
                            )),
                    );
                    continue;
                }
                out.insert(code.clone(), v.value.clone());
            }
            out
        })
        .collect()
}

/// What a screenplay's check needs to know of languages: the declared ones
/// and the dub languages each character (by index) has a voice for.
#[derive(Debug, Default)]
pub struct Dubs {
    pub languages: Vec<Language>,
    pub voices: Vec<BTreeSet<String>>,
}

impl Dubs {
    pub fn of(languages: &[Language], voices: impl Iterator<Item = BTreeSet<String>>) -> Dubs {
        Dubs {
            languages: languages.to_vec(),
            voices: voices.collect(),
        }
    }

    /// A line's dub texts, checked: each key a dub language, each text
    /// within bounds and not empty, the speaker with a voice for it.
    pub(super) fn line(
        &self,
        file: &SourceFile,
        line: &RawLine,
        speaker: usize,
        errors: &mut Collector,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (code, t) in &line.dubs {
            let problem = if self.languages.first().is_some_and(|l| &l.code == code) {
                Some((
                    format!("`{code}:` is the default language"),
                    "the default language's text is `text:`; other keys are dub languages".to_string(),
                ))
            } else if !self.languages.iter().any(|l| &l.code == code) {
                let dubs: Vec<&str> = self.languages.iter().skip(1).map(|l| l.code.as_str()).collect();
                let declared = match dubs.as_slice() {
                    [] => "none is declared".to_string(),
                    d => format!("declared: {}", d.join(", ")),
                };
                Some(match Language::of(code) {
                    Some(l) => (
                        format!("`{code}:` ({}) is not a language of studio.yaml", l.name),
                        format!(
                            "add `{code}` to `languages:` in studio.yaml (the default first, e.g. `languages: [{}, {code}]`) ({declared})",
                            self.languages.first().map_or("en", |l| l.code.as_str())
                        ),
                    ),
                    None => (
                        format!("unknown key `{code}:` in a dialogue line"),
                        format!(
                            "a line has `speaker:`, `text:` and a text per dub language, keyed by its ISO 639-1 code in studio.yaml's `languages:` ({declared})"
                        ),
                    ),
                })
            } else if !self.voices.get(speaker).is_some_and(|v| v.contains(code)) {
                Some((
                    format!("`{}` has no `{code}` voice for this line", line.speaker.value),
                    format!(
                        "give {} a voice in studio.yaml: `voices: {{{code}: {{engines: [...], ...}}}}`",
                        line.speaker.value
                    ),
                ))
            } else {
                None
            };
            if let Some((message, help)) = problem {
                errors.push(
                    ProjectError::at(file, "screenplay::language", message)
                        .label_loc(file, &t.referenced, "here")
                        .help(help),
                );
                continue;
            }
            bounds::text(file, "dialogue line", t, text::LINE, errors);
            if t.value.trim().is_empty() {
                errors.push(
                    ProjectError::at(file, "screenplay::empty_line", format!("empty `{code}:` text"))
                        .label_loc(file, &t.referenced, "here")
                        .help("write the line, or remove the key (the line is then spoken in the default language)"),
                );
            }
            out.insert(code.clone(), t.value.clone());
        }
        out
    }
}

/// The dub languages an episode carries (in `languages:` order) and the
/// lines each leaves out; `lines` holds each line's ref and its dub texts.
pub(super) fn episode_dubs<'a>(
    languages: &[Language],
    lines: impl Iterator<Item = (String, &'a BTreeMap<String, String>)> + Clone,
) -> (Vec<String>, Vec<Fallback>) {
    let mut dubs = Vec::new();
    let mut fallbacks = Vec::new();
    for l in languages.iter().skip(1) {
        let total = lines.clone().count();
        let missing: Vec<String> = lines
            .clone()
            .filter(|(_, t)| !t.contains_key(&l.code))
            .map(|(r, _)| r)
            .collect();
        if missing.len() == total {
            continue;
        }
        dubs.push(l.code.clone());
        if let Some(first) = missing.first() {
            fallbacks.push(Fallback {
                language: l.code.clone(),
                missing: missing.len(),
                lines: total,
                first: first.clone(),
            });
        }
    }
    (dubs, fallbacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_mp4_tags() {
        let ja = Language::of("ja").unwrap();
        assert_eq!((ja.tag.as_str(), ja.name.as_str()), ("jpn", "Japanese"));
        assert_eq!(Language::of("en").unwrap().tag, "eng");
        assert_eq!(Language::of("zh").unwrap().tag, "zho", "639-2/T, not /B `chi`");
        assert_eq!(Language::of("de").unwrap().tag, "deu", "639-2/T, not /B `ger`");
        for bad in ["jp", "JA", "jpn", "", "e"] {
            assert!(Language::of(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_episode_carries_the_dubs_its_lines_use() {
        let langs: Vec<Language> = ["en", "ja", "fr"].iter().map(|c| Language::of(c).unwrap()).collect();
        let ja = BTreeMap::from([("ja".to_string(), "はい".to_string())]);
        let none = BTreeMap::new();
        let lines = [("s01/sh01/1".to_string(), &none), ("s01/sh02/1".to_string(), &ja)];
        let (dubs, fallbacks) = episode_dubs(&langs, lines.iter().cloned());
        assert_eq!(dubs, vec!["ja"], "no line is in French: no French track");
        assert_eq!(
            fallbacks,
            vec![Fallback {
                language: "ja".into(),
                missing: 1,
                lines: 2,
                first: "s01/sh01/1".into()
            }]
        );
        let (dubs, fallbacks) = episode_dubs(&langs[..1], lines.iter().cloned());
        assert!(dubs.is_empty() && fallbacks.is_empty());
    }
}
