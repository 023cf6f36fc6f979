//! The Story tab's Write button: `studio write EP` from the dashboard,
//! against the fake LLM server of tests/llm (no request leaves 127.0.0.1).

mod common;
mod llm;
#[path = "dashboard_support/mod.rs"]
mod support;

use common::TestProject;
use llm::{Api, Expect, Fake, good};
use support::{Server, get, request};

const MODEL: &str = "test-model:7b";
const KEY: &str = "sk-test-123";

/// examples/tiny with an `ep02` without a screenplay and an LLM at `url`.
fn project(url: &str) -> TestProject {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "  - id: ollama-local\n    kind: ollama\n    url: http://127.0.0.1:11434\n    model: gemma3:12b\n",
        &format!(
            "  - id: writer-llm\n    kind: ollama\n    url: {url}\n    model: {MODEL}\n    slots: 2\n    timeout: 5\n    connect_timeout: 1\n    api_key_env: STUDIO_TEST_KEY\n"
        ),
    );
    p.edit(
        "studio.yaml",
        "    synopsis: Kai and Mio argue about whether the bus will come.\n",
        "    synopsis: Kai and Mio argue about whether the bus will come.\n  - id: ep02\n    title: Late Bus\n    synopsis: The bus is late again, and Mio has a plan.\n",
    );
    p.edit(
        "studio.yaml",
        "profiles:\n",
        "writing:\n  executor: writer-llm\n  seed: 42\n  temperature: 0.5\n  retries: 2\n\nprofiles:\n",
    );
    p
}

#[test]
fn the_write_button_writes_a_missing_screenplay() {
    let expect = Expect {
        model: MODEL.into(),
        seeds: vec![42],
        key: Some(KEY.into()),
        max_tokens: None,
        llama_cpp_python: false,
    };
    let fake = Fake::start(Api::Ollama, expect, move |r, _| good::answer(r, Api::Ollama));
    let p = project(&fake.url);
    let env = [("STUDIO_TEST_KEY".to_string(), KEY.to_string())];
    let mut s = Server::start_env(&p, &["--profile", "sim"], &env);
    assert_eq!(s.next("build")["state"], "done");
    let port = s.port;
    let page = get(port, "/").text();
    assert!(
        page.contains("<span class=\"state not-written\">not written</span>"),
        "ep02 is not written"
    );
    assert!(page.contains("data-post=\"/api/write/ep02\""));

    let post = |path: &str, headers: &[(&str, &str)]| request(port, "POST", path, headers, "{}");
    assert_eq!(
        post("/api/write/ep02", &[("Origin", "http://evil.example")]).status,
        403
    );
    assert_eq!(fake.count(), 0, "a refused request asks the LLM nothing");
    assert!(!p.path("episodes/ep02.yaml").exists());
    let same = [("Sec-Fetch-Site", "same-origin")];
    assert_eq!(post("/api/write/ep01", &same).status, 409, "ep01 has a screenplay");
    assert_eq!(post("/api/write/ep09", &same).status, 404);

    let a = post("/api/write/ep02", &same);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("episodes/ep02.yaml"), "{}", a.text());
    // The answer carries what the terminal would have shown.
    let log = a.json()["log"].as_str().unwrap_or_default().to_string();
    assert!(
        log.contains("wrote episodes/ep02.yaml") && log.contains("requests"),
        "{log}"
    );
    fake.assert_shapes();
    assert!(p.read("episodes/ep02.yaml").starts_with("# Screenplay for ep02"));
    // The watcher builds the new episode.
    let build = s.next("build");
    assert!(
        build["built"].as_array().unwrap().iter().any(|n| n == "episode:ep02"),
        "{build}"
    );
    assert!(get(port, "/?ep=ep02").text().contains("data-episode=\"ep02\""));
}

fn good_expect() -> Expect {
    Expect {
        model: MODEL.into(),
        seeds: vec![42],
        key: Some(KEY.into()),
        max_tokens: None,
        llama_cpp_python: false,
    }
}

/// A failed write says why on the page: the diagnostic and its fix, as the
/// terminal would, and nothing is written.
#[test]
fn a_failed_write_shows_the_writers_diagnostic() {
    // Nothing listens on this port: the LLM is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let p = project(&url);
    let env = [("STUDIO_TEST_KEY".to_string(), KEY.to_string())];
    let mut s = Server::start_env(&p, &["--profile", "sim"], &env);
    assert_eq!(s.next("build")["state"], "done");
    let same = [("Sec-Fetch-Site", "same-origin")];
    let a = request(s.port, "POST", "/api/write/ep02", &same, "{}");
    assert_eq!(a.status, 422, "{}", a.text());
    let body = a.json();
    assert!(
        body["error"].as_str().unwrap().contains("nothing was written"),
        "{body}"
    );
    let log = body["log"].as_str().unwrap();
    assert!(log.contains("writer-llm"), "names the executor: {log}");
    assert!(log.contains("ollama serve"), "says how to fix it: {log}");
    assert!(!p.path("episodes/ep02.yaml").exists());
}

/// The Script tab's Rewrite button: one shot's dialogue from the LLM, the
/// rest of the file byte for byte as it was; the watcher rebuilds.
#[test]
fn rewrite_changes_one_shots_dialogue_from_the_page() {
    let fake = Fake::start(Api::Ollama, good_expect(), move |r, _| good::answer(r, Api::Ollama));
    let p = project(&fake.url);
    let before = p.read("episodes/ep01.yaml");
    let env = [("STUDIO_TEST_KEY".to_string(), KEY.to_string())];
    let mut s = Server::start_env(&p, &["--profile", "sim"], &env);
    assert_eq!(s.next("build")["state"], "done");
    let port = s.port;
    let page = get(port, "/?ep=ep01").text();
    assert!(
        page.contains("<button class=\"rewrite\">Rewrite this dialogue</button>"),
        "a button per shot"
    );
    assert!(page.contains("Rewrite the scene&#39;s dialogue") || page.contains("Rewrite the scene's dialogue"));

    let post = |body: &str, headers: &[(&str, &str)]| request(port, "POST", "/api/script/rewrite", headers, body);
    let same = [("Sec-Fetch-Site", "same-origin"), ("Content-Type", "application/json")];
    let one = r#"{"episode":"ep01","scene":"s01","shot":"sh01"}"#;
    assert_eq!(
        post(
            one,
            &[("Origin", "http://evil.example"), ("Content-Type", "application/json")]
        )
        .status,
        403
    );
    assert_eq!(
        post(r#"{"episode":"ep01","scene":"s01","shot":"sh09"}"#, &same).status,
        404
    );
    assert_eq!(fake.count(), 0, "refused requests ask the LLM nothing");

    let a = post(one, &same);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["rewrote"], "ep01/s01/sh01");
    assert!(fake.requests().iter().all(|r| r.kind(Api::Ollama) == "dialogue"));
    fake.assert_shapes();
    let after = p.read("episodes/ep01.yaml");
    assert_eq!(
        after,
        before.replace(
            "          - speaker: kai\n            text: \"Will it come?\"\n",
            "          - speaker: mio\n            text: \"New line: sh01\"\n"
        ),
        "only sh01's dialogue changed"
    );
    // The watcher rebuilds what the new line changes.
    let build = s.next("build");
    let built = build["built"].as_array().unwrap();
    assert!(built.iter().any(|n| n == "episode:ep01"), "{build}");
    assert!(
        !built.iter().any(|n| n == "voice_line:ep01/s02/sh01/0"),
        "other lines stay: {build}"
    );
}
