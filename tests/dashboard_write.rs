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
