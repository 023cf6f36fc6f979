//! The episode's spoken tracks: the default language's audio and subtitles,
//! then one audio and one subtitle track per dub language (`dubs` param,
//! `<lang>:audio` and `<lang>:voice:` inputs), tagged with their ISO 639-2
//! codes in the MP4, the default language first and the default audio.
//!
//! A project that declares no `languages:` has one untagged track, muxed
//! exactly as before dubs existed.

use super::*;

/// A track's language as the graph wrote it (`language`, `dubs[]`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Lang {
    /// ISO 639-1 (`ja`): the dub's input roles and its subtitle file's suffix.
    pub(super) code: String,
    /// ISO 639-2/T (`jpn`): the MP4 tag.
    pub(super) tag: String,
    /// `Japanese`: the track's name.
    pub(super) name: String,
}

/// One spoken track, ready to mux.
#[derive(Debug)]
pub(super) struct Track {
    pub(super) lang: Option<Lang>,
    pub(super) audio: Utf8PathBuf,
    /// Its subtitles, when it has any visible cue.
    pub(super) srt: Option<Utf8PathBuf>,
}

/// Read a `{code, tag, name}` object, checked: a lower-case two-letter code,
/// a three-letter tag, a short one-line name (they reach ffmpeg's argv and
/// an output suffix).
pub(super) fn lang_of(v: &Value) -> Result<Lang, ExecError> {
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let lower = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase());
    let (code, tag, name) = (field("code"), field("tag"), field("name"));
    if !lower(code, 2) || !lower(tag, 3) || name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(permanent(format!(
            "the episode's language `{v}` is not {{code: 2 letters, tag: 3 letters, name}}"
        )));
    }
    Ok(Lang {
        code: code.into(),
        tag: tag.into(),
        name: name.into(),
    })
}

/// The default language (`language` param), if the project declares one.
pub(super) fn default_lang(job: &Job) -> Result<Option<Lang>, ExecError> {
    param(job, "language").map(lang_of).transpose()
}

/// The dubs (`dubs` param): each language and its cues.
pub(super) fn dubs(job: &Job) -> Result<Vec<(Lang, Vec<CueSpec>)>, ExecError> {
    let Some(list) = param(job, "dubs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|d| Ok((lang_of(d)?, cue_list(d.get("cues"))?)))
        .collect()
}

/// A dub's voice timings: the default's, each line written in the dub
/// replaced by its own `<lang>:voice:` input.
pub(super) fn dub_voices(job: &Job, code: &str, default: &[VoiceTiming]) -> Result<Vec<VoiceTiming>, ExecError> {
    let prefix = format!("{code}:voice:");
    let mut voices = default.to_vec();
    for input in inputs_with(job, &prefix) {
        let path = &input.role[prefix.len()..];
        let (scene, shot, n) = line_ref(path).ok_or_else(|| {
            permanent(format!(
                "voice input `{}` is not <lang>:voice:<scene>/<shot>/<n>",
                input.role
            ))
        })?;
        let seconds = input
            .duration
            .ok_or_else(|| permanent(format!("voice line {path} ({code}) has no recorded length")))?;
        match voices
            .iter_mut()
            .find(|v| v.scene == scene && v.shot == shot && v.n == n)
        {
            Some(v) => v.seconds = seconds,
            None => {
                return Err(permanent(format!(
                    "the `{code}` line {path} has no line in the default language"
                )));
            }
        }
    }
    Ok(voices)
}

/// The mux arguments after the inputs: every track mapped (video, then each
/// audio, then each subtitle), tagged with its language and name, the first
/// audio the default. `first` is the input index of the first audio.
pub(super) fn track_args(tracks: &[Track], first: usize) -> Vec<String> {
    let mut args = vec!["-map".to_string(), "0:v:0".to_string()];
    for i in 0..tracks.len() {
        args.extend(["-map".into(), format!("{}:a:0", first + i)]);
    }
    let subtitled: Vec<&Track> = tracks.iter().filter(|t| t.srt.is_some()).collect();
    for j in 0..subtitled.len() {
        args.extend(["-map".into(), format!("{}:s:0", first + tracks.len() + j)]);
    }
    let mut tag = |kind: &str, i: usize, lang: &Lang| {
        args.extend([format!("-metadata:s:{kind}:{i}"), format!("language={}", lang.tag)]);
        args.extend([format!("-metadata:s:{kind}:{i}"), format!("handler_name={}", lang.name)]);
    };
    for (i, t) in tracks.iter().enumerate() {
        if let Some(lang) = &t.lang {
            tag("a", i, lang);
        }
    }
    for (j, t) in subtitled.iter().enumerate() {
        if let Some(lang) = &t.lang {
            tag("s", j, lang);
        }
    }
    if tracks.len() > 1 {
        for i in 0..tracks.len() {
            let d = if i == 0 { "default" } else { "0" };
            args.extend([format!("-disposition:a:{i}"), d.to_string()]);
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn track(lang: Option<(&str, &str, &str)>, srt: bool) -> Track {
        Track {
            lang: lang.map(|(c, t, n)| Lang {
                code: c.into(),
                tag: t.into(),
                name: n.into(),
            }),
            audio: "a.m4a".into(),
            srt: srt.then(|| "s.srt".into()),
        }
    }

    #[test]
    fn one_untagged_track_maps_as_before() {
        assert_eq!(
            track_args(&[track(None, true)], 1),
            ["-map", "0:v:0", "-map", "1:a:0", "-map", "2:s:0"]
        );
        assert_eq!(track_args(&[track(None, false)], 1), ["-map", "0:v:0", "-map", "1:a:0"]);
    }

    #[test]
    fn dub_tracks_are_tagged_and_the_default_comes_first() {
        let tracks = [
            track(Some(("en", "eng", "English")), true),
            track(Some(("ja", "jpn", "Japanese")), true),
        ];
        let args = track_args(&tracks, 1).join(" ");
        assert!(
            args.starts_with("-map 0:v:0 -map 1:a:0 -map 2:a:0 -map 3:s:0 -map 4:s:0"),
            "{args}"
        );
        for want in [
            "-metadata:s:a:0 language=eng",
            "-metadata:s:a:1 language=jpn",
            "-metadata:s:s:0 language=eng",
            "-metadata:s:s:1 language=jpn",
            "-metadata:s:a:1 handler_name=Japanese",
            "-disposition:a:0 default",
            "-disposition:a:1 0",
        ] {
            assert!(args.contains(want), "{want} in {args}");
        }
        // A dub with no visible cue has no subtitle stream: the next one moves up.
        let tracks = [
            track(Some(("en", "eng", "English")), false),
            track(Some(("ja", "jpn", "Japanese")), true),
        ];
        let args = track_args(&tracks, 1).join(" ");
        assert!(
            args.contains("-map 3:s:0 -metadata:s:a:0") && args.contains("-metadata:s:s:0 language=jpn"),
            "{args}"
        );
    }

    #[test]
    fn languages_from_params_are_checked() {
        let ja = lang_of(&json!({"code": "ja", "tag": "jpn", "name": "Japanese"})).unwrap();
        assert_eq!(ja.tag, "jpn");
        for bad in [
            json!({"code": "ja", "tag": "jp", "name": "Japanese"}),
            json!({"code": "../x", "tag": "jpn", "name": "Japanese"}),
            json!({"code": "ja", "tag": "jpn", "name": "a\nb"}),
            json!({"code": "ja", "tag": "jpn"}),
        ] {
            assert!(lang_of(&bad).is_err(), "{bad}");
        }
    }
}
