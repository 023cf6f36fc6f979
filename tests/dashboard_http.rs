//! `studio serve` over plain HTTP on loopback: what it serves, and what it
//! refuses (foreign hosts, missing tokens, cross-origin POSTs, paths out of
//! `out/`), with the project's files checked after each refusal.

mod common;
#[path = "dashboard_support/mod.rs"]
mod support;

use common::TestProject;
use support::{Server, get, request};

const LINE: &str = "            text: \"Okay, you win.\"\n";

fn json_post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> support::Answer {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    request(port, "POST", path, &h, body)
}

const EDIT: &str = r#"{"episode":"ep01","scene":"s02","shot":"sh01","index":0,"text":"Fine, you win."}"#;

#[test]
fn pages_files_and_same_origin_edits() {
    let p = TestProject::example("tiny");
    let mut s = Server::start(&p, &["ep01", "--profile", "sim"]);
    assert_eq!(s.next("build")["state"], "done");
    let port = s.port;

    let page = get(port, "/");
    assert_eq!(page.status, 200);
    let html = page.text();
    for tab in [
        "id=\"story\"",
        "id=\"cast\"",
        "id=\"script\"",
        "id=\"produce\"",
        "id=\"review\"",
        "id=\"publish\"",
    ] {
        assert!(html.contains(tab), "{tab} in the page");
    }
    assert!(
        html.contains("KAI MORI (森 海)") && html.contains("Kai Mori (森 海)"),
        "the Japanese name, as UTF-8"
    );
    assert!(html.contains("Two friends wait for a bus in the rain."));
    assert!(
        html.contains("<span class=\"state built\">built</span>"),
        "ep01 is built"
    );
    assert!(
        html.contains("He said: &quot;100% sure.&quot;"),
        "project text is escaped"
    );
    assert!(get(port, "/app.js").text().contains("EventSource"));
    // The watcher builds each character's voice sample; Cast plays it.
    for c in ["kai", "mio"] {
        let at = html
            .find(&format!("data-character=\"{c}\""))
            .expect("a card per character");
        let card = &html[at..at + html[at..].find("</article>").unwrap()];
        let src = card
            .split("<audio controls preload=\"none\" src=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("{c}'s voice sample plays: {card}"));
        let wav = get(port, src);
        assert_eq!(wav.status, 200, "{src}");
        assert!(card.contains("This is how I sound."), "{card}");
    }

    // The episode, with ranges for seeking; the Fountain export; subtitles.
    let mp4 = std::fs::read(p.path("out/ep01/ep01.mp4")).unwrap();
    let whole = get(port, "/out/ep01/ep01.mp4");
    assert_eq!((whole.status, whole.body.len()), (200, mp4.len()));
    let part = request(port, "GET", "/out/ep01/ep01.mp4", &[("Range", "bytes=0-9")], "");
    assert_eq!((part.status, &part.body[..]), (206, &mp4[..10]));
    let fountain = get(port, "/export/ep01.fountain");
    assert_eq!(fountain.status, 200);
    assert!(fountain.text().contains("Okay, you win."), "{}", fountain.text());

    // Cross-origin and origin-less POSTs change nothing.
    let before = p.read("episodes/ep01.yaml");
    let origin = format!("http://{}", s.host());
    for headers in [
        vec![],
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Sec-Fetch-Site", "cross-site"), ("Origin", origin.as_str())],
        vec![("Sec-Fetch-Site", "same-site")],
    ] {
        let a = json_post(port, "/api/script/line", &headers, EDIT);
        assert_eq!(a.status, 403, "{headers:?}: {}", a.text());
        let a = json_post(port, "/api/cancel", &headers, "{}");
        assert_eq!(a.status, 403, "{headers:?}");
    }
    assert_eq!(p.read("episodes/ep01.yaml"), before);
    // Changes are POSTs only.
    assert_eq!(get(port, "/api/build").status, 405);
    assert_eq!(request(port, "PUT", "/api/script/line", &[], EDIT).status, 405);

    // An invalid edit: the diagnostic, and the file as it was.
    let empty = EDIT.replace("Fine, you win.", "  ");
    let a = json_post(port, "/api/script/line", &[("Sec-Fetch-Site", "same-origin")], &empty);
    assert_eq!(a.status, 422, "{}", a.text());
    let diag: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let diag = diag["diagnostic"].as_str().unwrap();
    assert!(
        diag.contains("empty dialogue line") && diag.contains("episodes/ep01.yaml"),
        "{diag}"
    );
    assert_eq!(p.read("episodes/ep01.yaml"), before);
    // No such line.
    let a = json_post(
        port,
        "/api/script/line",
        &[("Origin", &origin)],
        &EDIT.replace("\"index\":0", "\"index\":3"),
    );
    assert_eq!(a.status, 404, "{}", a.text());

    // A same-origin edit changes that line and nothing else.
    let a = json_post(port, "/api/script/line", &[("Origin", &origin)], EDIT);
    assert_eq!(a.status, 200, "{}", a.text());
    let after = p.read("episodes/ep01.yaml");
    assert_eq!(after, before.replace(LINE, "            text: Fine, you win.\n"));
    assert_ne!(after, before);
    // The watcher rebuilds what the line feeds.
    let rebuilt = s.next("build");
    let built: Vec<&str> = rebuilt["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        built.contains(&"voice_line:ep01/s02/sh01/1") && built.contains(&"episode:ep01"),
        "{built:?}"
    );
    // An action edit keeps the comment above the screenplay.
    let a = json_post(
        port,
        "/api/script/action",
        &[("Sec-Fetch-Site", "same-origin")],
        r#"{"episode":"ep01","scene":"s01","shot":"sh02","action":"Mio grins: certain."}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        p.read("episodes/ep01.yaml"),
        after.replace("action: Mio smiles confidently.", "action: \"Mio grins: certain.\"")
    );
}

#[test]
fn paths_stay_inside_out() {
    let p = TestProject::example("tiny");
    let mut s = Server::start(&p, &["ep01", "--profile", "sim"]);
    assert_eq!(s.next("build")["state"], "done");
    let port = s.port;
    std::os::unix::fs::symlink(p.path("studio.yaml"), p.path("out/leak.yaml")).unwrap();
    std::os::unix::fs::symlink(p.path("episodes"), p.path("out/leakdir")).unwrap();
    let secret = "Two friends wait";
    for path in [
        "/out/../studio.yaml",
        "/out/%2e%2e/studio.yaml",
        "/out/%2E%2E%2Fstudio.yaml",
        "/out/ep01/..%2f..%2fstudio.yaml",
        "/out/ep01/%2e%2e/%2e%2e/studio.yaml",
        "/out//etc/passwd",
        "/out/%2fetc%2fpasswd",
        "/out/ep01%5c..%5c..%5cstudio.yaml",
        "/out/ep01/ep01.mp4%00.txt",
        "/object/..%2f..%2fstudio.yaml/mp4",
        "/object/0000/mp4",
        "/export/..%2fstudio.yaml.fountain",
        "/subtitles/..%2f..%2fstudio.yaml.vtt",
    ] {
        let a = get(port, path);
        assert_eq!(a.status, 404, "{path}: {}", a.text());
        assert!(!a.text().contains(secret), "{path}");
    }
    for path in ["/out/leak.yaml", "/out/leakdir/ep01.yaml"] {
        let a = get(port, path);
        assert_eq!(a.status, 403, "{path}: {}", a.text());
        assert!(!a.text().contains(secret) && !a.text().contains("scenes:"), "{path}");
    }
}

#[test]
fn a_token_is_needed_on_every_request() {
    let p = TestProject::example("tiny");
    let token = "0123456789abcdef-token";
    let mut s = Server::start(&p, &["ep01", "--profile", "sim", "--token", token]);
    assert_eq!(s.next("build")["state"], "done");
    let port = s.port;
    let bearer = format!("Bearer {token}");
    for path in [
        "/",
        "/events",
        "/status.json",
        "/graph.json",
        "/out/ep01/ep01.mp4",
        "/app.js",
    ] {
        assert_eq!(get(port, path).status, 401, "{path} without the token");
        let wrong = request(
            port,
            "GET",
            path,
            &[("Authorization", "Bearer 0123456789abcdef-tokeN")],
            "",
        );
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let cookie = request(port, "GET", path, &[("Cookie", "studio_token=nope")], "");
        assert_eq!(cookie.status, 401, "{path} with a wrong cookie");
    }
    assert_eq!(
        request(port, "GET", "/status.json", &[("Authorization", &bearer)], "").status,
        200
    );
    // Opening the printed URL sets the cookie the page then uses.
    let first = get(port, &format!("/?ep=ep01&token={token}"));
    assert_eq!(first.status, 303);
    assert_eq!(
        first.header("location"),
        Some("/?ep=ep01"),
        "the token leaves the address"
    );
    let set = first.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = format!("studio_token={token}");
    assert_eq!(
        request(port, "GET", "/out/ep01/ep01.mp4", &[("Cookie", &cookie)], "").status,
        200
    );
    // The cookie is no pass for a cross-origin POST; the token in
    // Authorization is (a script, not a page).
    let before = p.read("episodes/ep01.yaml");
    let a = json_post(
        port,
        "/api/script/line",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        EDIT,
    );
    assert_eq!(a.status, 403);
    assert_eq!(json_post(port, "/api/script/line", &[], EDIT).status, 401);
    assert_eq!(p.read("episodes/ep01.yaml"), before);
    let a = json_post(port, "/api/script/line", &[("Authorization", &bearer)], EDIT);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(p.read("episodes/ep01.yaml"), before);
}

#[test]
fn other_addresses_need_a_good_token() {
    let p = TestProject::example("tiny");
    let run = p.run(&["serve", "--bind", "0.0.0.0", "--port", "0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("needs a token"), "{}", run.stderr);
    let run = p.run(&["serve", "--token", "short", "--port", "0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("at least 16"), "{}", run.stderr);
}

#[test]
fn the_publish_button_lays_out_the_library() {
    let p = TestProject::example("tiny");
    let library = tempfile::tempdir().unwrap();
    let lib = library.path().to_str().unwrap();
    let mut s = Server::start(&p, &["ep01", "--profile", "sim", "--publish-to", lib]);
    let first = s.next("build");
    assert_eq!(first["state"], "done");
    assert!(
        first["built"].as_array().unwrap().iter().any(|n| n == "publish:ep01"),
        "the watcher keeps the publish node built: {first}"
    );
    let port = s.port;
    let page = get(port, "/").text();
    assert!(page.contains("data-post=\"/api/publish/ep01\""));
    assert!(
        page.contains("<span class=\"state built\">built</span>"),
        "built, not yet published"
    );
    // From elsewhere: refused, nothing placed.
    let a = json_post(port, "/api/publish/ep01", &[("Origin", "http://evil.example")], "{}");
    assert_eq!(a.status, 403);
    assert_eq!(std::fs::read_dir(library.path()).unwrap().count(), 0);
    let a = json_post(port, "/api/publish/ep99", &[("Sec-Fetch-Site", "same-origin")], "{}");
    assert_eq!(a.status, 404, "{}", a.text());

    let a = json_post(port, "/api/publish/ep01", &[("Sec-Fetch-Site", "same-origin")], "{}");
    assert_eq!(a.status, 200, "{}", a.text());
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let placed: Vec<&str> = v["placed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mp4 = placed
        .iter()
        .find(|p| p.ends_with(".mp4"))
        .expect("the episode is placed");
    assert_eq!(
        std::fs::read(library.path().join(mp4)).unwrap(),
        std::fs::read(p.path("out/ep01/ep01.mp4")).unwrap()
    );
    assert!(placed.iter().any(|p| p.ends_with("tvshow.nfo")), "{placed:?}");
    assert!(v["rescan"].as_str().unwrap().contains("no Jellyfin"), "{v}");
    assert!(
        get(port, "/")
            .text()
            .contains("<span class=\"state published\">published</span>")
    );
}

/// `POST /api/review`: a same-origin request records a decision in
/// approvals.yaml; a bad category, an unknown hash or another origin change
/// nothing.
#[test]
fn review_decisions_are_checked_and_recorded() {
    let p = TestProject::sample();
    let mut s = Server::start(&p, &["ep01", "--profile", "sim"]);
    assert_eq!(s.next("build")["state"], "done");
    let port = s.port;
    let html = get(port, "/").text();
    let hash = html
        .split("<article class=\"candidate\" data-hash=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a candidate waits for a person")
        .to_string();
    // Cast shows each character's approved pool.
    assert!(html.contains("The approved pool: "), "the pools in Cast");
    let before = std::fs::read_to_string(p.path("approvals.yaml")).unwrap_or_default();
    let same = [("Sec-Fetch-Site", "same-origin")];
    let body = |decision: &str, category: &str| {
        format!(r#"{{"hash":"{hash}","decision":"{decision}","category":"{category}"}}"#)
    };
    let cross = json_post(
        port,
        "/api/review",
        &[("Origin", "http://evil.example")],
        &body("approve", ""),
    );
    assert_eq!(cross.status, 403);
    let bad = json_post(port, "/api/review", &same, &body("reject", "too_shiny"));
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("too_shiny"), "{}", bad.text());
    let unknown = json_post(
        port,
        "/api/review",
        &same,
        r#"{"hash":"000000000000","decision":"approve"}"#,
    );
    assert_eq!(unknown.status, 422, "{}", unknown.text());
    assert_eq!(
        std::fs::read_to_string(p.path("approvals.yaml")).unwrap_or_default(),
        before,
        "refused decisions change nothing"
    );
    let ok = json_post(port, "/api/review", &same, &body("reject", "anatomy"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("rejected (anatomy)"), "{}", ok.text());
    let after = p.read("approvals.yaml");
    assert!(after.contains(&hash) && after.contains("category: anatomy"), "{after}");
    // The watcher sees the decision: a build follows.
    assert_eq!(s.next("build")["state"], "done");
}
