//! `studio write`: the real client code against a fake server that speaks
//! each protocol exactly (tests/llm). No request leaves 127.0.0.1.

mod common;
mod llm;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use llm::{Answer, Api, Expect, Fake, Request, good};

const MODEL: &str = "test-model:7b";
const SEED: u64 = 42;
const KEY: &str = "sk-test-123";

/// examples/tiny with an `ep02` (no screenplay) and an `ep03`, its LLM
/// executor at `url` speaking `api`.
fn project(api: Api, url: &str) -> TestProject {
    project_with(api, url, MODEL, 1)
}

fn project_with(api: Api, url: &str, model: &str, timeout: u32) -> TestProject {
    let p = TestProject::example("tiny");
    let kind = match api {
        Api::Ollama => "ollama",
        Api::Openai => "openai_chat",
    };
    p.edit(
        "studio.yaml",
        "  - id: ollama-local\n    kind: ollama\n    url: http://127.0.0.1:11434\n    model: gemma3:12b\n",
        &format!(
            "  - id: writer-llm\n    kind: {kind}\n    url: {url}\n    model: {model}\n    slots: 2\n    timeout: {timeout}\n    connect_timeout: 1\n    api_key_env: STUDIO_TEST_KEY\n{}",
            // The review loop's vision model speaks Ollama's protocol.
            match api {
                Api::Ollama => "",
                Api::Openai => "  - id: vision\n    kind: ollama\n    url: http://127.0.0.1:11434\n    model: gemma3:12b\n",
            }
        ),
    );
    p.edit(
        "studio.yaml",
        "    synopsis: Kai and Mio argue about whether the bus will come.\n",
        "    synopsis: Kai and Mio argue about whether the bus will come.\n  - id: ep02\n    title: Late Bus\n    synopsis: The bus is late again, and Mio has a plan.\n  - id: ep03\n    title: Last Bus\n    synopsis: The last bus of the year.\n",
    );
    p.edit(
        "studio.yaml",
        "profiles:\n",
        &format!("writing:\n  executor: writer-llm\n  seed: {SEED}\n  temperature: 0.5\n  retries: 2\n\nprofiles:\n"),
    );
    p
}

fn expect() -> Expect {
    Expect {
        model: MODEL.into(),
        seeds: vec![SEED],
        key: Some(KEY.into()),
        max_tokens: None,
        llama_cpp_python: false,
    }
}

fn good_fake(api: Api) -> Fake {
    Fake::start(api, expect(), move |r, _| good::answer(r, api))
}

/// The API key the fake server expects, as studio reads it.
fn key_env() -> [(String, String); 1] {
    [("STUDIO_TEST_KEY".to_string(), KEY.to_string())]
}

/// `studio build --json --profile sim ARGS`, with the API key set.
fn build(p: &TestProject, args: &[&str]) -> Build {
    p.build_env(args, &key_env())
}

fn studio(p: &TestProject, args: &[&str]) -> Run {
    p.run_env(args, &key_env())
}

fn kinds(fake: &Fake) -> Vec<&'static str> {
    let mut k: Vec<_> = fake.requests().iter().map(|r| r.kind(fake.api)).collect();
    k.sort();
    k
}

/// A good write with either protocol: a screenplay that loads and builds,
/// a timeline, progress with tokens per second.
fn writes_an_episode(api: Api) {
    let fake = good_fake(api);
    let p = project(api, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    run.success();
    fake.assert_shapes();
    assert_eq!(kinds(&fake), ["scenes", "shots", "shots", "shots", "timeline"]);
    for want in ["scenes: 3 planned", "scenes 3/3", "tok/s", "wrote episodes/ep02.yaml"] {
        assert!(run.stderr.contains(want), "stderr lacks `{want}`:\n{}", run.stderr);
    }
    let sp = p.read("episodes/ep02.yaml");
    assert!(sp.starts_with("# Screenplay for ep02"), "{sp}");
    assert!(sp.contains("Is it coming? (s03)"), "{sp}");
    assert!(sp.contains("injuries: a scraped knee"), "scene state kept: {sp}");
    let tl = p.read("episodes/ep02.timeline.yaml");
    assert!(tl.contains("skills_learned:\n      - patience"), "{tl}");
    build(&p, &["ep02"]).ok();
    studio(&p, &["status", "ep02"]).success();
}

#[test]
fn ollama_writes_an_episode() {
    writes_an_episode(Api::Ollama);
}

#[test]
fn openai_writes_an_episode() {
    writes_an_episode(Api::Openai);
}

#[test]
fn a_cached_rewrite_makes_no_request_and_survives_gc() {
    let fake = Fake::start(
        Api::Ollama,
        Expect {
            seeds: vec![SEED, 7],
            ..expect()
        },
        |r, _| good::answer(r, Api::Ollama),
    );
    let p = project(Api::Ollama, &fake.url);
    studio(&p, &["write", "ep02"]).success();
    let first = fake.count();
    let text = p.read("episodes/ep02.yaml");
    std::fs::remove_file(p.path("episodes/ep02.yaml")).unwrap();
    std::fs::remove_file(p.path("episodes/ep02.timeline.yaml")).unwrap();
    studio(&p, &["gc"]).success();
    let run = studio(&p, &["write", "ep02"]);
    run.success();
    assert_eq!(fake.count(), first, "no request: {}", run.stderr);
    assert!(run.stderr.contains("0 requests, 5 cached"), "{}", run.stderr);
    assert_eq!(p.read("episodes/ep02.yaml"), text);
    // Another seed is another take: every call is made again.
    studio(&p, &["write", "ep02", "--seed", "7"]).success();
    assert_eq!(fake.count(), 2 * first);
    assert!(fake.requests()[first..].iter().all(|r| r.body["options"]["seed"] == 7));
}

/// The first answer of `kind` is `bad`; every other answer is good.
fn bad_first(api: Api, kind: &'static str, bad: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Fake {
    let seen = AtomicUsize::new(0);
    Fake::start(api, expect(), move |r, _| {
        if r.kind(api) == kind && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            bad(r)
        } else {
            good::answer(r, api)
        }
    })
}

/// The repair turn that followed the bad reply.
fn repair(fake: &Fake) -> Request {
    fake.requests()
        .into_iter()
        .find(Request::is_repair)
        .expect("a repair request")
}

#[test]
fn invalid_json_is_sent_back_and_repaired() {
    let fake = bad_first(Api::Ollama, "scenes", |_| Answer::Content("{\"scenes\": [".into()));
    let p = project(Api::Ollama, &fake.url);
    studio(&p, &["write", "ep02"]).success();
    fake.assert_shapes();
    let r = repair(&fake);
    let msgs = r.messages();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(msgs[2]["content"], "{\"scenes\": [");
    assert!(r.last().contains("not valid JSON"), "{}", r.last());
    assert_eq!(fake.count(), 6);
}

#[test]
fn a_reply_that_breaks_the_schema_is_repaired() {
    let fake = bad_first(Api::Openai, "scenes", |_| {
        Answer::Content("{\"scenes\": \"three\"}".into())
    });
    let p = project(Api::Openai, &fake.url);
    studio(&p, &["write", "ep02"]).success();
    fake.assert_shapes();
    assert!(repair(&fake).last().contains("does not match the schema"));
}

#[test]
fn an_unknown_character_is_fed_back_then_fixed() {
    let fake = bad_first(Api::Ollama, "shots", |r| {
        Answer::Content(good::shots(&good::scene_of(r), "zed"))
    });
    let p = project(Api::Ollama, &fake.url);
    studio(&p, &["write", "ep02"]).success();
    let last = repair(&fake).last().to_string();
    assert!(
        last.contains("unknown character `zed`") && last.contains("kai, mio"),
        "{last}"
    );
    assert!(!p.read("episodes/ep02.yaml").contains("zed"));
}

#[test]
fn an_unknown_character_fails_for_good_after_the_retries_and_writes_nothing() {
    let fake = Fake::start(Api::Ollama, expect(), |r, _| match r.kind(Api::Ollama) {
        "shots" if good::scene_of(r) == "s02" => Answer::Content(good::shots("s02", "zed")),
        _ => good::answer(r, Api::Ollama),
    });
    let p = project(Api::Ollama, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for want in [
        "the shots of ep02/s02: no usable reply in 3 tries",
        "unknown character `zed`",
        "nothing was written",
    ] {
        assert!(run.stderr.contains(want), "stderr lacks `{want}`:\n{}", run.stderr);
    }
    let s02 = fake
        .requests()
        .iter()
        .filter(|r| r.kind(Api::Ollama) == "shots" && good::scene_of(r) == "s02")
        .count();
    assert_eq!(s02, 3, "one try and two repairs");
    assert!(!p.path("episodes/ep02.yaml").exists());
    assert!(!p.path("episodes/ep02.timeline.yaml").exists());
}

#[test]
fn http_500_is_retried() {
    let fake = Fake::start(Api::Openai, expect(), |r, i| {
        if i == 0 {
            Answer::Status(500, "{\"error\": \"model is loading\"}".into())
        } else {
            good::answer(r, Api::Openai)
        }
    });
    let p = project(Api::Openai, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    run.success();
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    assert_eq!(fake.count(), 6);
    assert!(p.path("episodes/ep02.yaml").exists());
}

#[test]
fn a_timeout_is_retried_then_reported() {
    // The first request outlives the 1 s timeout; the retry gets an answer.
    let fake = Fake::start(Api::Ollama, expect(), |r, i| {
        if i == 0 {
            Answer::Hang(std::time::Duration::from_secs(3))
        } else {
            good::answer(r, Api::Ollama)
        }
    });
    let p = project(Api::Ollama, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    run.success();
    assert!(run.stderr.contains("did not answer within 1 s"), "{}", run.stderr);

    // A server that never answers in time: a clear error, nothing written.
    let fake = Fake::start(Api::Ollama, expect(), |_, _| {
        Answer::Hang(std::time::Duration::from_secs(3))
    });
    let p = project(Api::Ollama, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{}/api/chat did not answer within 1 s", fake.url)),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("timeout:"),
        "help names the setting: {}",
        run.stderr
    );
    assert_eq!(fake.count(), 3);
    assert!(!p.path("episodes/ep02.yaml").exists());
}

#[test]
fn a_server_that_is_down_is_named_with_its_config_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let p = project(Api::Ollama, &url);
    let run = studio(&p, &["write", "ep02"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let text = p.read("studio.yaml");
    let line = text[..text.find("- id: writer-llm").unwrap()].matches('\n').count() + 1;
    for want in [
        format!("cannot connect to {url}/api/chat"),
        format!("[studio.yaml:{line}:"),
        "ollama serve".to_string(),
        "nothing was written".to_string(),
    ] {
        assert!(run.stderr.contains(&want), "stderr lacks `{want}`:\n{}", run.stderr);
    }
    assert!(!p.path("episodes/ep02.yaml").exists());
}

#[test]
fn a_writers_screenplay_is_never_overwritten() {
    let fake = good_fake(Api::Ollama);
    let p = project(Api::Ollama, &fake.url);
    // ep01 was written by hand: studio has no record of writing it.
    let ep01 = p.read("episodes/ep01.yaml");
    let run = studio(&p, &["write", "ep01"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--scene") && run.stderr.contains("--dialogue") && run.stderr.contains("--force"));
    assert_eq!(p.read("episodes/ep01.yaml"), ep01);
    assert_eq!(fake.count(), 0);

    // ep02 written by studio, then edited: refused; unedited: rewritten.
    studio(&p, &["write", "ep02"]).success();
    studio(&p, &["write", "ep02"]).success();
    p.edit("episodes/ep02.yaml", "title: Scene 2", "title: My Scene Two");
    let edited = p.read("episodes/ep02.yaml");
    let run = studio(&p, &["write", "ep02"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(p.read("episodes/ep02.yaml"), edited);
    studio(&p, &["write", "ep02", "--force"]).success();
    assert!(!p.read("episodes/ep02.yaml").contains("My Scene Two"));
}

/// ep01 with comments everywhere, quoting styles and a key order of its own.
const COMMENTED: &str = "\
# Tiny test screenplay, hand-edited.
episode: ep01   # the pilot

scenes:
  - id: s01  # opening
    title: Rain
    location: a bus stop
    time_of_day: evening
    mood: calm
    target_duration: 5
    state:
      - character: kai
        clothing: yellow raincoat
        energy: 0.5
    shots:
      # the wide one
      - id: sh01
        type: wide
        motion: static hold, rain falling
        action: Kai and Mio wait at a rainy bus stop.
        characters:
          - {id: kai, position: left}
          - id: mio
            position: right
        duration: 2
        dialogue:   # first draft
          - speaker: kai
            # too flat?
            text: \"Will it come?\"
        # keep this note
      - type: close_up   # id comes second here
        id: sh02
        motion: slow push in
        action: Mio smiles confidently.
        characters:
          - id: mio
        duration: 3
        take: 2
  - id: s02
    title: Headlights
    mood: joyful
    shots:
      - id: sh01
        duration: 3
        dialogue:
          - speaker: kai
            text: 'Okay, you win.'   # keep
";

#[test]
fn dialogue_for_one_shot_changes_only_that_block() {
    let fake = good_fake(Api::Ollama);
    let p = project(Api::Ollama, &fake.url);
    p.write("episodes/ep01.yaml", COMMENTED);
    let run = studio(&p, &["write", "--dialogue", "ep01/s01/sh01"]);
    run.success();
    fake.assert_shapes();
    let want = COMMENTED.replace(
        "        dialogue:   # first draft\n          - speaker: kai\n            # too flat?\n            text: \"Will it come?\"\n",
        "        dialogue:\n          - speaker: mio\n            text: \"New line: sh01\"\n",
    );
    assert_eq!(p.read("episodes/ep01.yaml"), want);
    assert_eq!(kinds(&fake), ["dialogue"]);
    let req = &fake.requests()[0];
    assert!(
        req.prompt().contains("Write new dialogue for sh01 only"),
        "{}",
        req.prompt()
    );
}

#[test]
fn dialogue_for_a_scene_adds_lines_where_there_were_none() {
    let fake = good_fake(Api::Openai);
    let p = project(Api::Openai, &fake.url);
    p.write("episodes/ep01.yaml", COMMENTED);
    studio(&p, &["write", "ep01", "--dialogue", "ep01/s01"]).success();
    let want = COMMENTED
        .replace(
            "        dialogue:   # first draft\n          - speaker: kai\n            # too flat?\n            text: \"Will it come?\"\n",
            "        dialogue:\n          - speaker: mio\n            text: \"New line: sh01\"\n",
        )
        .replace(
            "        take: 2\n",
            "        take: 2\n        dialogue:\n          - speaker: mio\n            text: \"New line: sh02\"\n",
        );
    assert_eq!(p.read("episodes/ep01.yaml"), want);
    // The same request again is answered from the cache.
    p.write("episodes/ep01.yaml", COMMENTED);
    studio(&p, &["write", "--dialogue", "ep01/s01"]).success();
    assert_eq!(fake.count(), 1);
    assert_eq!(p.read("episodes/ep01.yaml"), want);
}

#[test]
fn a_scene_gets_new_shots_and_the_rest_stays() {
    let fake = good_fake(Api::Ollama);
    let p = project(Api::Ollama, &fake.url);
    p.write("episodes/ep01.yaml", COMMENTED);
    studio(&p, &["write", "ep01", "--scene", "s01"]).success();
    let text = p.read("episodes/ep01.yaml");
    let start = COMMENTED.find("    shots:\n      # the wide one").unwrap();
    let end = COMMENTED.find("  - id: s02").unwrap();
    assert_eq!(&text[..start], &COMMENTED[..start]);
    assert!(text.ends_with(&COMMENTED[end..]));
    assert!(text[start..].starts_with("    shots:\n      - id: sh01\n"), "{text}");
    assert!(text.contains("Is it coming? (s01)"), "{text}");
    let req = &fake.requests()[0];
    assert!(req.prompt().contains("break scene s01 \"Rain\""), "{}", req.prompt());
    build(&p, &["ep01"]).ok();
}

#[test]
fn build_writes_a_missing_screenplay_first() {
    let fake = good_fake(Api::Ollama);
    let p = project(Api::Ollama, &fake.url);
    p.edit(
        "studio.yaml",
        "    rules_from: full\n",
        "    rules_from: full\n    writer: writer-llm\n",
    );
    let b = build(&p, &["ep02"]).ok();
    assert!(p.path("episodes/ep02.yaml").exists());
    assert!(b.built().contains("episode:ep02"), "{:?}", b.built());
    assert_eq!(fake.count(), 5);
    // Built again: nothing is asked.
    build(&p, &["ep02"]).ok();
    assert_eq!(fake.count(), 5);
}

#[test]
fn the_next_episode_reads_the_timeline() {
    let fake = good_fake(Api::Ollama);
    let p = project(Api::Ollama, &fake.url);
    studio(&p, &["write", "ep02"]).success();
    studio(&p, &["write", "ep03"]).success();
    let scenes: Vec<Request> = fake
        .requests()
        .into_iter()
        .filter(|r| r.kind(Api::Ollama) == "scenes")
        .collect();
    let prompt = scenes[1].prompt();
    for want in [
        "ep01 \"Bus Stop\": Kai and Mio argue",
        "ep02 \"Late Bus\": The bus came late; Kai learned to trust Mio.",
        "kai: feeling relieved; changed: trusts Mio; has learned: patience",
    ] {
        assert!(prompt.contains(want), "prompt lacks `{want}`:\n{prompt}");
    }
}

/// Opt-in: a real model server. `STUDIO_LLM_URL` (e.g. http://127.0.0.1:11434),
/// `STUDIO_LLM_MODEL` (e.g. qwen2.5:7b) and `STUDIO_LLM_API` (`ollama`, the
/// default, or `openai`) turn it on; see README.md.
#[test]
fn a_real_model_writes_an_episode() {
    let (Ok(url), Ok(model)) = (std::env::var("STUDIO_LLM_URL"), std::env::var("STUDIO_LLM_MODEL")) else {
        eprintln!(
            "skipped: set STUDIO_LLM_URL and STUDIO_LLM_MODEL (and STUDIO_LLM_API=ollama|openai) to run against a real model server"
        );
        return;
    };
    let api = match std::env::var("STUDIO_LLM_API").as_deref() {
        Ok("openai") => Api::Openai,
        Ok("ollama") | Err(_) => Api::Ollama,
        Ok(other) => panic!("STUDIO_LLM_API is `ollama` or `openai`, not `{other}`"),
    };
    let p = project_with(api, &url, &model, 600);
    let run = studio(&p, &["write", "ep02"]);
    eprintln!("{}", run.stderr);
    run.success();
    assert!(run.stderr.contains("tok/s"), "the server reports its speed");
    // For a human to judge: the start of what the model wrote.
    let written = p.read("episodes/ep02.yaml");
    eprintln!("{}", written.lines().take(60).collect::<Vec<_>>().join("\n"));
    build(&p, &["ep02"]).ok();
    // Asked again: all from the cache.
    std::fs::remove_file(p.path("episodes/ep02.yaml")).unwrap();
    let run = studio(&p, &["write", "ep02"]);
    run.success();
    assert!(run.stderr.contains("done: 0 requests"), "{}", run.stderr);
    // One shot's dialogue: the rest of the file stays.
    let before = p.read("episodes/ep02.yaml");
    let run = studio(&p, &["write", "--dialogue", "ep02/s01/sh01"]);
    eprintln!("{}", run.stderr);
    run.success();
    let after = p.read("episodes/ep02.yaml");
    let start = before.find("    shots:").unwrap();
    assert_eq!(&after[..start], &before[..start], "scene s01's head is unchanged");
    build(&p, &["ep02"]).ok();
}

/// stderr with miette's line wrapping undone: one space between words.
fn flat(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1-based line where `marker` starts in `rel`.
fn line_of(p: &TestProject, rel: &str, marker: &str) -> usize {
    let text = p.read(rel);
    assert_eq!(text.matches(marker).count(), 1, "`{marker}` must occur once in {rel}");
    text[..text.find(marker).unwrap()].matches('\n').count() + 1
}

#[test]
fn bad_writing_config_is_located() {
    type Edit = (&'static str, &'static str, &'static str);
    let cases: &[(&[Edit], (&str, &str), &str)] = &[
        (
            &[("studio.yaml", "  executor: writer-llm\n", "  executor: nope\n")],
            ("studio.yaml", "executor: nope"),
            "no executor `nope` to write screenplays with",
        ),
        (
            &[("studio.yaml", "  executor: writer-llm\n", "  executor: tts-local\n")],
            ("studio.yaml", "executor: tts-local"),
            "the writer `tts-local` is a `openai_speech` executor, not an LLM",
        ),
        (
            &[("studio.yaml", "    timeout: 1\n", "    timeout: 0\n")],
            ("studio.yaml", "timeout: 0"),
            "`timeout` must be a positive number of seconds",
        ),
        (
            &[("studio.yaml", "  temperature: 0.5\n", "  temperature: 7\n")],
            ("studio.yaml", "temperature: 7"),
            "temperature 7 is outside 0–2",
        ),
        (
            &[("studio.yaml", "    model: test-model:7b\n", "")],
            ("studio.yaml", "- id: writer-llm"),
            "executor `writer-llm` names no `model:`",
        ),
        (
            &[("studio.yaml", "    timeout: 1\n", "    timeout: 1\n    max_tokens: 0\n")],
            ("studio.yaml", "max_tokens: 0"),
            "`max_tokens` 0 is outside 64–131072",
        ),
        (
            &[(
                "studio.yaml",
                "    timeout: 1\n",
                "    timeout: 1\n    max_tokens: 1000000\n",
            )],
            ("studio.yaml", "max_tokens: 1000000"),
            "`max_tokens` 1000000 is outside 64–131072",
        ),
        (
            &[(
                "studio.yaml",
                "    url: http://127.0.0.1:5002\n",
                "    url: http://127.0.0.1:5002\n    max_tokens: 500\n",
            )],
            ("studio.yaml", "max_tokens: 500"),
            "`max_tokens` bounds LLM replies, and executor `tts-local` is `openai_speech`",
        ),
        (
            &[(
                "studio.yaml",
                "    url: http://127.0.0.1:5002\n",
                "    url: ftp://127.0.0.1:5002\n",
            )],
            ("studio.yaml", "ftp://"),
            "executor `tts-local`: `ftp://127.0.0.1:5002` is not an http:// or https:// URL",
        ),
        (
            &[("rules/prompts/shots.j2", "Now break scene", "{% if %}Now break scene")],
            ("rules/prompts/shots.j2", "{% if %}"),
            "prompt template rules/prompts/shots.j2: syntax error",
        ),
    ];
    let fake = good_fake(Api::Ollama);
    for (edits, (file, marker), message) in cases {
        let p = project(Api::Ollama, &fake.url);
        for (f, from, to) in *edits {
            p.edit(f, from, to);
        }
        let line = line_of(&p, file, marker);
        let run = studio(&p, &["write", "ep02"]);
        assert_eq!(run.code, 2, "{message}: {}", run.stderr);
        let flat = flat(&run.stderr);
        assert!(flat.contains(message), "want `{message}`:\n{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("[{file}:{line}:")),
            "want {file}:{line}:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("help:"), "{}", run.stderr);
    }
    assert_eq!(fake.count(), 0);
}

// --- hosts -----------------------------------------------------------------

/// The tiny project with one more executor, `far`, of `kind` at `url`
/// (`extra`: more lines of its entry).
fn with_executor(kind: &str, url: &str, extra: &str) -> TestProject {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "\nprofiles:\n",
        &format!("  - id: far\n    kind: {kind}\n    url: {url}\n{extra}\nprofiles:\n"),
    );
    p
}

/// Every kind of executor on a host that is not loopback is refused when
/// the project loads, at its `url:` line, naming the host and the fix; with
/// `remote_host: true` it loads. `studio graph` contacts no executor, so
/// nothing is sent to 10.1.2.3 whatever the outcome.
#[test]
fn executors_on_other_hosts_need_remote_host() {
    for kind in [
        "comfyui",
        "ollama",
        "openai_chat",
        "openai_speech",
        "gpt_sovits",
        "xtts",
        "rvc",
        "ace_step",
        "jellyfin",
    ] {
        // An ollama host joins the vision model's group: the same model.
        let model = match kind {
            "ollama" => "    model: gemma3:12b\n",
            "openai_chat" => "    model: m\n",
            _ => "",
        };
        let p = with_executor(kind, "http://10.1.2.3:11434", model);
        let line = line_of(&p, "studio.yaml", "url: http://10.1.2.3:11434");
        let run = p.run(&["graph", "ep01", "--profile", "sim"]);
        assert_eq!(run.code, 2, "{kind}: {}", run.stderr);
        let flat = flat(&run.stderr);
        for want in [
            "executor `far` is on another host: 10.1.2.3 is not loopback",
            "add `remote_host: true` to executor `far`",
            "127.0.0.0/8, ::1, localhost",
        ] {
            assert!(flat.contains(want), "{kind}: want `{want}`:\n{}", run.stderr);
        }
        assert!(
            run.stderr.contains(&format!("[studio.yaml:{line}:")),
            "{kind}: want studio.yaml:{line}:\n{}",
            run.stderr
        );
        let p = with_executor(
            kind,
            "http://10.1.2.3:11434",
            &format!("{model}    remote_host: true\n"),
        );
        p.run(&["graph", "ep01", "--profile", "sim"]).success();
        p.run(&["build", "-n", "ep01"]).success();
    }
}

/// `studio write` to a host that is not loopback: refused before any client
/// exists, and allowed with `remote_host: true`. 0.0.0.0 stands for the other
/// host: it is not loopback by the rule, yet a connection to it stays on
/// this machine (Linux routes it to 127.0.0.1), so the fake can count.
#[test]
fn write_contacts_another_host_only_when_allowed() {
    let fake = good_fake(Api::Ollama);
    let port = fake.url.rsplit(':').next().unwrap();
    let p = project(Api::Ollama, &format!("http://0.0.0.0:{port}"));
    let line = line_of(&p, "studio.yaml", "url: http://0.0.0.0");
    let run = studio(&p, &["write", "ep02"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("executor `writer-llm` is on another host: 0.0.0.0 is not loopback"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&format!("[studio.yaml:{line}:")), "{}", run.stderr);
    assert_eq!(fake.count(), 0, "nothing was contacted");
    assert!(!p.path("episodes/ep02.yaml").exists());

    p.edit(
        "studio.yaml",
        "    api_key_env: STUDIO_TEST_KEY\n",
        "    api_key_env: STUDIO_TEST_KEY\n    remote_host: true\n",
    );
    studio(&p, &["write", "ep02"]).success();
    assert_eq!(fake.count(), 5);
    fake.assert_shapes();
}

/// `localhost` and all of 127.0.0.0/8 are loopback.
#[test]
fn localhost_and_127_0_0_2_are_loopback() {
    let fake = Fake::start_on("127.0.0.2", Api::Openai, expect(), |r, _| good::answer(r, Api::Openai));
    assert!(fake.url.starts_with("http://127.0.0.2:"), "{}", fake.url);
    let p = project(Api::Openai, &fake.url);
    studio(&p, &["write", "ep02"]).success();
    assert_eq!(fake.count(), 5);

    let fake = good_fake(Api::Ollama);
    let port = fake.url.rsplit(':').next().unwrap();
    let p = project(Api::Ollama, &format!("http://localhost:{port}"));
    studio(&p, &["write", "ep02"]).success();
    assert_eq!(fake.count(), 5);
    fake.assert_shapes();
}

/// A redirect, even to another loopback port, is not followed: the request
/// fails naming where it pointed, and the other port receives nothing.
#[test]
fn a_redirect_is_not_followed() {
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = format!("http://{}/api/chat", elsewhere.local_addr().unwrap());
    let fake = {
        let to = to.clone();
        Fake::start(Api::Ollama, expect(), move |_, _| Answer::Redirect(to.clone()))
    };
    let p = project(Api::Ollama, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let flat = flat(&run.stderr);
    for want in [
        format!("answered with a redirect to {to}"),
        "does not follow".to_string(),
        "not at an address that redirects".to_string(),
        "nothing was written".to_string(),
    ] {
        assert!(flat.contains(&want), "stderr lacks `{want}`:\n{}", run.stderr);
    }
    assert_eq!(fake.count(), 1, "a refused redirect is not retried");
    // A connection would wait in the listener's backlog: there is none.
    elsewhere.set_nonblocking(true).unwrap();
    match elsewhere.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the redirect target was contacted: {other:?}"),
    }
    assert!(!p.path("episodes/ep02.yaml").exists());
}

// --- reply bounds ------------------------------------------------------------

/// Every request carries the executor's `max_tokens` (checked by the fake);
/// the bound is not in the reply cache's key: a reply that finished under
/// one bound is the reply under another, so changing it asks nothing again.
#[test]
fn max_tokens_is_sent_and_does_not_void_the_cache() {
    for api in [Api::Ollama, Api::Openai] {
        let fake = Fake::start(
            api,
            Expect {
                max_tokens: Some(1000),
                ..expect()
            },
            move |r, _| good::answer(r, api),
        );
        let p = project(api, &fake.url);
        p.edit(
            "studio.yaml",
            "    timeout: 1\n",
            "    timeout: 1\n    max_tokens: 1000\n",
        );
        studio(&p, &["write", "ep02"]).success();
        fake.assert_shapes();
        assert_eq!(fake.count(), 5);
        p.edit("studio.yaml", "    max_tokens: 1000\n", "    max_tokens: 2000\n");
        let run = studio(&p, &["write", "ep02"]);
        run.success();
        assert!(run.stderr.contains("0 requests, 5 cached"), "{}", run.stderr);
        assert_eq!(fake.count(), 5);
    }
}

/// A reply cut off at the bound is reported as such, at the executor's line,
/// with the fix; it is neither repaired nor retried, and nothing is written.
/// Raised, the bound lets the call through, and the calls that had
/// finished come from the cache.
#[test]
fn a_cut_off_reply_is_reported_as_cut_off() {
    for api in [Api::Ollama, Api::Openai] {
        let fake = Fake::start(api, expect(), move |r, _| {
            if r.kind(api) == "shots" && good::scene_of(r) == "s02" {
                Answer::Truncated("{\"shots\": [{\"type\": \"wide\", \"action\": \"Rain and rain and rain".into())
            } else {
                good::answer(r, api)
            }
        });
        let p = project(api, &fake.url);
        let line = line_of(&p, "studio.yaml", "- id: writer-llm");
        let run = studio(&p, &["write", "ep02"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let flat = flat(&run.stderr);
        for want in [
            "writing the shots of ep02/s02",
            "cut the reply off at `max_tokens` (3072 tokens)",
            "raise this executor's `max_tokens:` above 3072",
            "nothing was written",
        ] {
            assert!(flat.contains(want), "{api:?}: stderr lacks `{want}`:\n{}", run.stderr);
        }
        assert!(run.stderr.contains(&format!("[studio.yaml:{line}:")), "{}", run.stderr);
        assert!(!run.stderr.contains("not valid JSON"), "{}", run.stderr);
        fake.assert_shapes();
        let s02: Vec<Request> = fake
            .requests()
            .into_iter()
            .filter(|r| r.kind(api) == "shots" && good::scene_of(r) == "s02")
            .collect();
        assert_eq!(s02.len(), 1, "{api:?}: neither repaired nor retried");
        assert!(!p.path("episodes/ep02.yaml").exists());

        let fake = Fake::start(
            api,
            Expect {
                max_tokens: Some(6000),
                ..expect()
            },
            move |r, _| good::answer(r, api),
        );
        p.edit(
            "studio.yaml",
            &format!("    url: {}\n", url_of(&p)),
            &format!("    url: {}\n", fake.url),
        );
        p.edit(
            "studio.yaml",
            "    timeout: 1\n",
            "    timeout: 1\n    max_tokens: 6000\n",
        );
        studio(&p, &["write", "ep02"]).success();
        fake.assert_shapes();
        assert!(!kinds(&fake).contains(&"scenes"), "the scenes came from the cache");
    }
}

/// The writer executor's `url:` in studio.yaml.
fn url_of(p: &TestProject) -> String {
    let text = p.read("studio.yaml");
    let at = text.find("- id: writer-llm").unwrap();
    let url = text[at..].lines().find_map(|l| l.trim().strip_prefix("url: ")).unwrap();
    url.to_string()
}

/// A server that refuses `response_format: json_schema` the way
/// llama-cpp-python's does (HTTP 500) is asked once, warned about once, and
/// sent llama-cpp-python's `json_object` form for the rest of the run.
#[test]
fn a_server_that_refuses_json_schema_gets_json_object() {
    let fake = Fake::start(
        Api::Openai,
        Expect {
            llama_cpp_python: true,
            ..expect()
        },
        |r, _| good::answer(r, Api::Openai),
    );
    let p = project(Api::Openai, &fake.url);
    let run = studio(&p, &["write", "ep02"]);
    run.success();
    fake.assert_shapes();
    assert_eq!(
        run.stderr
            .matches("refuses `response_format: json_schema` (HTTP 500)")
            .count(),
        1,
        "one warning:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("retrying"),
        "a refusal is not a transient failure: {}",
        run.stderr
    );
    let formats: Vec<String> = fake.requests().iter().map(|r| r.format_type().to_string()).collect();
    assert_eq!(formats[0], "json_schema");
    assert!(formats[1..].iter().all(|f| f == "json_object"), "{formats:?}");
    assert_eq!(
        kinds(&fake),
        ["scenes", "scenes", "shots", "shots", "shots", "timeline"]
    );
    assert!(p.read("episodes/ep02.yaml").contains("Is it coming? (s02)"));
}

/// The dub: `--dub`, and rewrites of a dubbed episode.
#[path = "write/dub.rs"]
mod dub;
