//! `studio write` and dubs: `--dub LANG` fills the lines without one;
//! `--dialogue` and `--scene` rewrites keep the dub texts of unchanged
//! lines and fill the new ones'.

use super::*;

/// `write EP --dub ja`: one call per scene with lines left without Japanese;
/// each new text is spliced in after its line, the rest of the file stays.
#[test]
fn a_dub_fills_only_the_lines_without_one() {
    let fake = good_fake(Api::Ollama);
    let p = project(Api::Ollama, &fake.url);
    p.declare_ja();
    let mine = "            text: \"Will it come?\"\n            ja: \"来るかな？\"   # mine\n";
    p.edit("episodes/ep01.yaml", "            text: \"Will it come?\"\n", mine);
    let before = p.read("episodes/ep01.yaml");
    let run = studio(&p, &["write", "ep01", "--dub", "ja"]);
    run.success();
    fake.assert_shapes();
    assert_eq!(
        kinds(&fake),
        ["dub", "dub"],
        "s01 and s02 each have a line without Japanese"
    );
    let want = before
        .replace(
            "            text: 'He said: \"100% sure.\"'\n",
            "            text: 'He said: \"100% sure.\"'\n            ja: \"1番目の台詞だよ。\"\n",
        )
        .replace(
            "            text: \"Okay, you win.\"\n",
            "            text: \"Okay, you win.\"\n            ja: \"1番目の台詞だよ。\"\n",
        );
    assert_eq!(p.read("episodes/ep01.yaml"), want);
    let first = fake
        .requests()
        .into_iter()
        .find(|r| r.prompt().contains("Scene s01"))
        .expect("a request for s01");
    for part in [
        "Write the Japanese dub of sh02/1:",
        "sh01/1 kai: \"Will it come?\" → \"来るかな？\"",
    ] {
        assert!(first.prompt().contains(part), "{part} in:\n{}", first.prompt());
    }
    // Every line has its dub now: no call, no change.
    studio(&p, &["write", "ep01", "--dub", "ja"]).success();
    assert_eq!(fake.count(), 2);
    assert_eq!(p.read("episodes/ep01.yaml"), want);
    let b = build(&p, &["ep01"]).ok();
    assert!(b.built().contains("voice_line:ep01/s02/sh01/1.ja"), "{:?}", b.built());
    // A language the project does not dub is refused before any call.
    let run = studio(&p, &["write", "ep01", "--dub", "fr"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("`fr` is not a dub language"), "{}", run.stderr);
}

/// examples/tiny dubbed: every line of ep01 has its `ja:`.
fn dubbed(url: &str) -> TestProject {
    let p = project(Api::Ollama, url);
    p.declare_ja();
    for (en, ja) in [
        ("\"Will it come?\"", "来るかな？"),
        ("'He said: \"100% sure.\"'", "「絶対」だって。"),
        ("\"Okay, you win.\"", "はいはい、私の負け。"),
    ] {
        let line = format!("            text: {en}\n");
        p.edit(
            "episodes/ep01.yaml",
            &line,
            &format!("{line}            ja: \"{ja}\"\n"),
        );
    }
    p
}

/// New dialogue for s01: sh01 keeps kai's line word for word and adds one
/// of mio's; sh02's line is new.
fn rewrite_s01() -> String {
    serde_json::json!({"shots": [
        {"id": "sh01", "dialogue": [
            {"speaker": "kai", "text": "Will it come?"},
            {"speaker": "mio", "text": "It always does."},
        ]},
        {"id": "sh02", "dialogue": [{"speaker": "mio", "text": "Trust me."}]},
    ]})
    .to_string()
}

/// `--dialogue` on a dubbed episode: a line whose text is unchanged keeps
/// its `ja:`; the new lines get theirs from the dub prompt, in one call
/// that shows the scene as rewritten; the other scene's dub stays.
#[test]
fn a_dialogue_rewrite_keeps_and_fills_the_dub() {
    let fake = Fake::start(Api::Ollama, expect(), |r, _| match r.kind(Api::Ollama) {
        "dialogue" => Answer::Content(rewrite_s01()),
        _ => good::answer(r, Api::Ollama),
    });
    let p = dubbed(&fake.url);
    let before = p.read("episodes/ep01.yaml");
    let run = studio(&p, &["write", "--dialogue", "ep01/s01"]);
    run.success();
    fake.assert_shapes();
    assert_eq!(kinds(&fake), ["dialogue", "dub"]);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let text = p.read("episodes/ep01.yaml");
    let s01 = "          - speaker: kai\n            text: Will it come?\n            ja: \"来るかな？\"\n          \
               - speaker: mio\n            text: It always does.\n            ja: \"1番目の台詞だよ。\"\n";
    assert!(text.contains(s01), "{text}");
    assert!(
        text.contains("          - speaker: mio\n            text: Trust me.\n            ja: \"2番目の台詞だよ。\"\n"),
        "{text}"
    );
    assert!(!text.contains("絶対"), "sh02's old line is gone with its dub: {text}");
    let s02 = before.find("  - id: s02").unwrap();
    assert!(text.ends_with(&before[s02..]), "s02 and its dub stay: {text}");
    let dub = fake
        .requests()
        .into_iter()
        .find(|r| r.kind(Api::Ollama) == "dub")
        .unwrap();
    for part in [
        "Write the Japanese dub of sh01/2, sh02/1:",
        "sh01/1 kai: \"Will it come?\" → \"来るかな？\"",
        "sh02/1 mio: \"Trust me.\"",
    ] {
        assert!(dub.prompt().contains(part), "{part} in:\n{}", dub.prompt());
    }
    // Every line of the episode has its Japanese: no fallback warning.
    let b = build(&p, &["ep01"]).ok();
    assert!(!b.run.stderr.contains("no `ja:` text"), "{}", b.run.stderr);
    assert!(b.built().contains("voice_line:ep01/s01/sh01/2.ja"), "{:?}", b.built());
}

/// When the dub prompt fails, the rewrite is still written: the new lines
/// have no `ja:` (they fall back to English, with the build's warning) and
/// the writer is told; the unchanged line keeps its `ja:`.
#[test]
fn a_dialogue_rewrite_whose_dub_fails_says_so() {
    let fake = Fake::start(Api::Ollama, expect(), |r, _| match r.kind(Api::Ollama) {
        "dialogue" => Answer::Content(rewrite_s01()),
        // Always the wrong number of lines: the repairs fail too.
        _ => Answer::Content(serde_json::json!({"dub": ["一つだけ。"]}).to_string()),
    });
    let p = dubbed(&fake.url);
    let run = studio(&p, &["write", "--dialogue", "ep01/s01"]);
    run.success();
    assert_eq!(
        kinds(&fake),
        ["dialogue", "dub", "dub", "dub"],
        "two repairs, then given up"
    );
    let warning = "warning: the `ja` text of 2 new lines of ep01/s01 was not written (no usable reply in 3 tries: \
                   `dub` has 1 lines; write exactly 2";
    assert!(run.stderr.contains(warning), "{}", run.stderr);
    assert!(run.stderr.contains("`studio write ep01 --dub ja`"), "{}", run.stderr);
    assert!(run.stderr.contains("wrote episodes/ep01.yaml"), "{}", run.stderr);
    let text = p.read("episodes/ep01.yaml");
    assert!(
        text.contains("text: Will it come?\n            ja: \"来るかな？\"\n"),
        "{text}"
    );
    assert!(text.contains("text: It always does.\n      - id: sh02"), "{text}");
    assert!(!text.contains("一つだけ"), "{text}");
    let b = build(&p, &["ep01"]).ok();
    let fallback = "ep01: 2 of 4 dialogue lines have no `ja:` text (first: s01/sh01/2)";
    assert!(b.run.stderr.contains(fallback), "{}", b.run.stderr);
}

/// `--scene` on a dubbed episode: the new shots' lines that an old line of
/// the scene said word for word keep its `ja:`, the others get theirs
/// from the dub prompt.
#[test]
fn a_scene_rewrite_keeps_and_fills_the_dub() {
    let shots = serde_json::json!({"shots": [
        {"id": "sh01", "type": "wide", "angle": "eye_level", "motion": "static hold",
         "action": "Rain at the stop.", "characters": [{"id": "kai", "position": "left"}, {"id": "mio", "position": "right"}],
         "duration": 3, "dialogue": [{"speaker": "mio", "text": "Look, headlights."}]},
        {"id": "sh02", "type": "close_up", "angle": "low", "motion": "slow push in",
         "action": "Kai squints.", "characters": [{"id": "kai", "position": "center"}],
         "duration": 2.5, "dialogue": [{"speaker": "kai", "text": "Will it come?"}]},
    ]})
    .to_string();
    let fake = Fake::start(Api::Ollama, expect(), move |r, _| match r.kind(Api::Ollama) {
        "shots" => Answer::Content(shots.clone()),
        _ => good::answer(r, Api::Ollama),
    });
    let p = dubbed(&fake.url);
    let run = studio(&p, &["write", "ep01", "--scene", "s01"]);
    run.success();
    fake.assert_shapes();
    assert_eq!(kinds(&fake), ["dub", "shots"]);
    let text = p.read("episodes/ep01.yaml");
    for want in [
        "          - speaker: mio\n            text: Look, headlights.\n            ja: \"1番目の台詞だよ。\"\n",
        "          - speaker: kai\n            text: Will it come?\n            ja: \"来るかな？\"\n",
        "            text: \"Okay, you win.\"\n            ja: \"はいはい、私の負け。\"\n",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    assert!(!text.contains("絶対"), "the old sh02 line is gone: {text}");
    let dub = fake
        .requests()
        .into_iter()
        .find(|r| r.kind(Api::Ollama) == "dub")
        .unwrap();
    assert!(
        dub.prompt().contains("Write the Japanese dub of sh01/1:"),
        "{}",
        dub.prompt()
    );
    build(&p, &["ep01"]).ok();
}
