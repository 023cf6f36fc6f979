//! Dubs: a second spoken language (`languages:`, `ja:` on a line) adds its
//! own voice lines, mixes and episode audio, keeps every default-language
//! key, and an edit to its text rebuilds only its own track.

mod common;
#[path = "dashboard_support/mod.rs"]
mod support;

use common::media;
use common::{TestProject, set};

const LINE: &str = "            text: \"Will it come?\"\n";

fn with_ja(text: &str) -> String {
    format!("{LINE}            ja: \"{text}\"\n")
}

#[test]
fn a_dub_adds_its_track_and_keeps_every_default_key() {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    p.declare_ja();
    // Five characters: shorter than the English line, so no shot is retimed.
    p.edit("episodes/ep01.yaml", LINE, &with_ja("来るかな？"));
    let b = p.build(&[]).ok();
    // Every default-language node is a cache hit; scene s02 has no Japanese
    // line, so its Japanese mix is the English one (same key, a hit too).
    assert_eq!(
        b.built(),
        set(&[
            "voice_line:ep01/s01/sh01/1.ja",
            "scene_mix:ep01/s01.ja",
            "episode_audio:ep01.ja",
            "episode:ep01",
        ])
    );
    assert_eq!(b.node("scene_mix:ep01/s02.ja")["status"], "cached");
    assert_eq!(b.node("voice_line:ep01/s01/sh01/1.ja")["engine"], "kokoro_ja");
    // The lines left in English are named once for the episode.
    let warning = "ep01: 2 of 3 dialogue lines have no `ja:` text (first: s01/sh02/1)";
    assert_eq!(b.run.stderr.matches(warning).count(), 1, "{}", b.run.stderr);
    assert!(
        p.path("out/ep01/audio.ja.m4a").is_file(),
        "the Japanese episode audio is materialized"
    );

    // An edit to the Japanese text rebuilds only the Japanese track.
    p.edit("episodes/ep01.yaml", "来るかな？", "来るのかな");
    let b = p.build(&[]).ok();
    assert_eq!(
        b.built(),
        set(&[
            "voice_line:ep01/s01/sh01/1.ja",
            "scene_mix:ep01/s01.ja",
            "episode_audio:ep01.ja",
            "episode:ep01",
        ])
    );
}

#[test]
fn the_longer_language_sets_the_shot_length() {
    let p = TestProject::example("tiny");
    p.build(&[]).ok();
    p.declare_ja();
    // Far longer than the English line: the 2 s shot stretches to fit it,
    // so both tracks fit the one picture; the English voice stays as it was.
    let long =
        "バスは来るのかな、それとも来ないのかな、もう三十分も待っているのに、雨はやまないし、傘もないし、どうしよう";
    p.edit("episodes/ep01.yaml", LINE, &with_ja(long));
    let b = p.build(&[]).ok();
    let built = b.built();
    for id in [
        "voice_line:ep01/s01/sh01/1.ja",
        "shot_video:ep01/s01/sh01",
        "scene_mix:ep01/s01",
        "scene_mix:ep01/s01.ja",
        "episode_audio:ep01",
        "episode_audio:ep01.ja",
    ] {
        assert!(built.contains(id), "{id} not rebuilt: {built:?}");
    }
    assert_eq!(
        b.node("voice_line:ep01/s01/sh01/1")["status"],
        "cached",
        "the English voice is kept"
    );
    // The sim executor writes the length it models into its output.
    let seconds = |prefix: &str| -> f64 {
        let dir = p.path("out/ep01/s01/sh01");
        let file = std::fs::read_dir(&dir)
            .expect("shot folder")
            .map(|e| e.expect("entry").path())
            .find(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()));
        let text = String::from_utf8_lossy(&std::fs::read(&file).expect("output")).into_owned();
        let d = text.split("duration=").nth(1).expect("a sim output names its duration");
        d.split_whitespace().next().expect("seconds").parse().expect("seconds")
    };
    let (shot, ja) = (seconds("shot."), seconds("voice-1.ja."));
    assert!(
        shot >= ja + 1.0,
        "the shot ({shot} s) holds the Japanese line ({ja} s) with its lead-in and tail"
    );
}

/// `build` refuses `edits` with exit code 2 and a diagnostic at the line of
/// `at` (in `file`) saying `message` and `help`.
fn refused(edits: &[(&str, &str, &str)], at: (&str, &str), message: &str, help: &str) {
    let p = TestProject::example("tiny");
    for (file, from, to) in edits {
        p.edit(file, from, to);
    }
    let text = p.read(at.0);
    assert_eq!(text.matches(at.1).count(), 1, "`{}` once in {}", at.1, at.0);
    let line = text[..text.find(at.1).unwrap()].matches('\n').count() + 1;
    let run = p.run(&["build", "--profile", "sim"]);
    let squash = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '│')
            .collect::<String>()
    };
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("[{}:{line}:", at.0)),
        "not at {}:{line}:\n{}",
        at.0,
        run.stderr
    );
    let all = squash(&run.stderr);
    assert!(all.contains(&squash(message)), "no `{message}`:\n{}", run.stderr);
    let help_at = run.stderr.find("help:").expect("a help line");
    assert!(
        squash(&run.stderr[help_at..]).contains(&squash(help)),
        "no help `{help}`:\n{}",
        run.stderr
    );
}

#[test]
fn language_mistakes_are_located() {
    const EP: &str = "episodes/ep01.yaml";
    const DECLARE: (&str, &str, &str) = (
        "studio.yaml",
        "\ncharacters:\n",
        "\nlanguages: [en, ja]\n\ncharacters:\n",
    );
    let line = |key: &str, text: &str| (EP, LINE, format!("{LINE}            {key}: \"{text}\"\n"));
    let (f, a, b) = line("jx", "来るかな？");
    refused(
        &[DECLARE, (f, a, &b)],
        (EP, "jx:"),
        "unknown key `jx:` in a dialogue line",
        "declared: ja",
    );
    let (f, a, b) = line("fr", "Viendra-t-il ?");
    refused(
        &[DECLARE, (f, a, &b)],
        (EP, "fr:"),
        "`fr:` (French) is not a language of studio.yaml",
        "add `fr` to `languages:`",
    );
    let (f, a, b) = line("ja", "来るかな？");
    refused(
        &[DECLARE, (f, a, &b)],
        (EP, "ja:"),
        "`kai` has no `ja` voice for this line",
        "voices: {ja: {engines: [...], ...}}",
    );
    refused(
        &[(
            "studio.yaml",
            "\ncharacters:\n",
            "\nlanguages: [en, jp]\n\ncharacters:\n",
        )],
        ("studio.yaml", "languages:"),
        "`jp` is not an ISO 639-1 language code",
        "two-letter ISO 639-1 code",
    );
    refused(
        &[
            DECLARE,
            (
                "studio.yaml",
                "piper: {pitch: -1, length_scale: 1.0}",
                "piper: {pitch: -1, length_scale: 1.0}\n    voices:\n      fr: {engines: [espeak], espeak: fr}",
            ),
        ],
        ("studio.yaml", "fr: {engines"),
        "`voices.fr`: `fr` is not a dub language of `languages:`",
        "one voice per dub language (ja)",
    );
    refused(
        &[
            DECLARE,
            (
                "studio.yaml",
                "piper: {pitch: -1, length_scale: 1.0}",
                "piper: {pitch: -1, length_scale: 1.0}\n    voices:\n      ja: {kokoro: {voice: jm_kumo}}",
            ),
        ],
        ("studio.yaml", "ja: {kokoro"),
        "kai's `ja` voice names no `engines:`",
        "engines: [kokoro_ja, espeak]",
    );
}

/// `studio publish` puts a dub's subtitles beside the episode as
/// `… .ja.srt` (the name Jellyfin reads the language from).
#[test]
fn publish_puts_each_languages_subtitles_in_the_library() {
    let p = TestProject::example("tiny");
    p.declare_ja();
    p.edit("episodes/ep01.yaml", LINE, &with_ja("来るかな？"));
    let library = p.path("library");
    let out = p
        .command(&["publish", "ep01", "--to", library.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let season = library.join("Tiny/Season 01");
    let names: Vec<String> = std::fs::read_dir(&season)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let ja = names
        .iter()
        .find(|n| n.ends_with(".ja.srt"))
        .expect("the Japanese subtitles");
    let en = ja.replace(".ja.srt", ".srt");
    assert!(names.contains(&en), "{names:?}");
    let text = std::fs::read_to_string(season.join(ja)).unwrap();
    assert!(text.contains("来るかな？"), "{text}");
}

/// The animatic of a dubbed episode, for real (Piper and Kokoro, from the
/// voices venv `scripts/deps.sh` makes): every audio track is a
/// delivery of its own — tagged, at −16 LUFS, peaks under −1 dBTP, as long
/// as the picture, passing `../shared/tools/media-report` remuxed alone
/// with the picture — and each language has its subtitle track, the
/// Japanese cues at the Japanese voices. The same check refuses a silent
/// and a mis-levelled track.
#[test]
fn every_audio_track_of_a_dubbed_episode_is_a_delivery() {
    let p = TestProject::example("tiny");
    p.declare_ja();
    p.edit("episodes/ep01.yaml", LINE, &with_ja("来るかな？"));
    p.edit(
        "episodes/ep01.yaml",
        "            text: \"Okay, you win.\"\n",
        "            text: \"Okay, you win.\"\n            ja: \"はいはい、私の負け。\"\n",
    );
    let b = common::Build::parse_run(p.run(&["build", "ep01", "--json"])).ok();
    assert_eq!(b.total("failed"), 0);
    // The neural voices speak both tracks (CI installs them: scripts/test.sh).
    for (id, engine) in [
        ("voice_line:ep01/s01/sh01/1", "piper"),
        ("voice_line:ep01/s01/sh01/1.ja", "kokoro_ja"),
        ("voice_line:ep01/s02/sh01/1.ja", "kokoro_ja"),
    ] {
        let n = b.node(id);
        assert_eq!(
            n["engine"], engine,
            "run `bash scripts/deps.sh` for the voices venv: {n}"
        );
    }
    let episode = p.path("out/ep01/ep01.mp4");
    let problems = media::audio_track_problems(&episode, &["eng", "jpn"]);
    assert!(problems.is_empty(), "{problems:#?}");
    // The Japanese subtitles are the Japanese lines (and the English ones
    // where a line has none).
    let probe = media::ffprobe(&episode);
    assert_eq!(media::streams(&probe, "subtitle").len(), 2);
    let ja = media::subtitle_track_of(&episode, 1);
    assert!(ja.contains("来るかな？") && ja.contains("はいはい、私の負け。"), "{ja}");
    assert!(ja.contains("100% sure."), "{ja}");

    // A silent Japanese track, and one 10 dB too quiet, are refused by name.
    for (name, filter, want) in [
        ("silent", "volume=0", "audio track 1 (jpn): integrated loudness -70"),
        ("quiet", "volume=-10dB", "audio track 1 (jpn): integrated loudness -2"),
    ] {
        let bad = p.path(&format!("{name}.mp4"));
        media::run_ffmpeg(&[
            "-i",
            episode.to_str().unwrap(),
            "-filter_complex",
            &format!("[0:a:1]{filter}[ja]"),
            "-map",
            "0:v",
            "-map",
            "0:a:0",
            "-map",
            "[ja]",
            "-map",
            "0:s",
            "-c",
            "copy",
            "-c:a:1",
            "aac",
            "-metadata:s:a:1",
            "language=jpn",
            bad.to_str().unwrap(),
        ]);
        let problems = media::audio_track_problems(&bad, &["eng", "jpn"]);
        assert!(problems.iter().any(|p| p.starts_with(want)), "{name}: {problems:#?}");
        assert!(
            !problems.iter().any(|p| p.contains("track 0")),
            "{name}: the English track still passes: {problems:#?}"
        );
    }

    // Each Japanese cue starts within 100 ms of its voice: with the music
    // off, sound starts on the Japanese track exactly where someone speaks.
    p.edit("rules/audio.yaml", "music_volume: 0.5", "music_volume: 0");
    common::Build::parse_run(p.run(&["build", "ep01", "--json"])).ok();
    let onsets = media::sound_onsets(&p.path("out/ep01/audio.ja.m4a"));
    let cues = media::srt_cues(&std::fs::read_to_string(p.path("out/ep01/ep01.ja.srt")).unwrap());
    assert_eq!(cues.len(), 3, "{cues:?}");
    for (start, text) in &cues {
        let nearest = onsets.iter().map(|o| (o - start).abs()).fold(f64::INFINITY, f64::min);
        assert!(
            nearest <= 0.100,
            "cue {text:?} at {start:.3}s: nearest voice onset {nearest:.3}s away ({onsets:?})"
        );
    }
}

/// The Script tab's line edit rewrites the shot's `dialogue:` block: every
/// line of it keeps its `ja:` (the edit is of the English text).
#[test]
fn a_script_tab_edit_keeps_the_shots_dub_texts() {
    let p = TestProject::example("tiny");
    p.declare_ja();
    p.edit("episodes/ep01.yaml", LINE, &with_ja("来るかな？"));
    let mut s = support::Server::start(&p, &["ep01", "--profile", "sim"]);
    assert_eq!(s.next("build")["state"], "done");
    let edit = r#"{"episode":"ep01","scene":"s01","shot":"sh01","index":0,"text":"Will it ever come?"}"#;
    let origin = format!("http://{}", s.host());
    let a = support::request(
        s.port,
        "POST",
        "/api/script/line",
        &[("Content-Type", "application/json"), ("Origin", &origin)],
        edit,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let text = p.read("episodes/ep01.yaml");
    assert!(
        text.contains("            text: Will it ever come?\n            ja: \"来るかな？\"\n"),
        "{text}"
    );
}
