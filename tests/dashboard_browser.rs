//! The dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromedriver`, from `scripts/deps.sh --tests`), driven over WebDriver
//! on loopback: edit a line in Script and watch Produce and Publish follow,
//! an invalid edit, a cross-origin POST from another page, and cancelling a
//! running build from Produce. (The sim profile's episode is a stand-in
//! file, so the player is checked by the bytes it is served.) Saves a screenshot of each tab under
//! `target/dashboard-shots/`.

mod common;
#[path = "dashboard_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestProject, set};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::Server;

const CTRL: char = '\u{E009}';
const RELEASE: char = '\u{E000}';
const ENTER: char = '\u{E007}';
const BACKSPACE: char = '\u{E003}';

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::disallowed_methods)] // the test starts the browser's driver
fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("chromedriver: {e}; install it with `scripts/deps.sh --tests`"));
    let d = Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

/// A headless Chromium that resolves no name but loopback's and calls home for nothing.
async fn browser(d: &Driver) -> Client {
    let profile = d._profile.path().to_str().unwrap();
    let caps = json!({"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,1000", format!("--user-data-dir={profile}"),
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-default-apps", "--disable-domain-reliability", "--no-pings",
            "--disable-client-side-phishing-detection", "--disable-breakpad",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            "--autoplay-policy=no-user-gesture-required", "--mute-audio",
        ],
    }});
    let Value::Object(caps) = caps else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a Chromium session")
}

/// Wait for `f` to hold; a minute only guards against a hang.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Click what `css` finds. The page redraws a tab when a build ends, so
/// the element found may be replaced before the click reaches it: find it
/// again then (a minute only guards against a hang).
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clicked = match c.find(Locator::Css(css)).await {
            Ok(el) => el.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(_) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-shots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(c: &Client, tab: &str) {
    js(c, &format!("location.hash = '#{tab}'; window.scrollTo(0, 0);")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{tab}.png")), png).unwrap();
}

/// The node ids Produce shows in `state`.
async fn nodes_in(c: &Client, state: &str) -> BTreeSet<String> {
    let v = js(
        c,
        &format!(
            "return Array.from(document.querySelectorAll('.node[data-state=\"{state}\"]')).map(e => e.dataset.id)"
        ),
    )
    .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

async fn episode_hash(c: &Client) -> String {
    let v = js(c, "const v = document.querySelector('#publish details[data-episode=\"ep01\"] video'); return v ? v.dataset.hash : ''").await;
    v.as_str().unwrap().to_string()
}

/// Select the whole of an editable text, type `keys`, press Enter.
async fn retype(c: &Client, css: &str, keys: &str) {
    let el = c.find(Locator::Css(css)).await.unwrap();
    el.click().await.unwrap();
    el.send_keys(&format!("{CTRL}a{RELEASE}{keys}{ENTER}")).await.unwrap();
}

const LINE: &str = "#script .shot[data-scene=\"s02\"][data-shot=\"sh01\"] .text";

#[tokio::test(flavor = "multi_thread")]
async fn edit_in_script_rebuilds_in_produce_and_plays_in_publish() {
    let p = TestProject::example("tiny");
    let library = tempfile::tempdir().unwrap();
    let lib = library.path().to_str().unwrap();
    let mut s = Server::start(&p, &["ep01", "--profile", "sim", "--publish-to", lib]);
    assert_eq!(s.next("build")["state"], "done");
    let d = driver();
    let c = browser(&d).await;
    let base = format!("http://127.0.0.1:{}/", s.port);
    c.goto(&format!("{base}#story")).await.unwrap();
    until("Produce to show the first build", || async {
        nodes_in(&c, "built").await.len() > 30
    })
    .await;
    // Every node of the build settled, the review loop's passes included.
    until("no node left planned", || async {
        nodes_in(&c, "planned").await.is_empty()
    })
    .await;
    // Review is shot by the review test, on a project with the loop.
    for tab in ["story", "cast", "script", "produce", "publish"] {
        shoot(&c, tab).await;
    }
    let name = js(
        &c,
        "return document.querySelector('#cast .character[data-character=\"kai\"] .name').textContent",
    )
    .await;
    assert_eq!(name, "Kai Mori (森 海)");
    let old_hash = episode_hash(&c).await;
    assert!(!old_hash.is_empty(), "Publish has the episode");

    // Edit one line in Script: the file changes in that line only.
    let before = p.read("episodes/ep01.yaml");
    js(&c, "location.hash = '#script'").await;
    retype(&c, LINE, "Fine, you win.").await;
    until("the save", || async {
        js(
            &c,
            &format!(
                "return document.querySelector('{}').classList.contains('saved')",
                LINE.replace('\'', "\\'")
            ),
        )
        .await
            == true
    })
    .await;
    let after = p.read("episodes/ep01.yaml");
    assert_eq!(
        after,
        before.replace("text: \"Okay, you win.\"", "text: Fine, you win."),
        "only that line changed, comments kept"
    );
    assert!(after.starts_with("# Tiny test screenplay"));

    // Produce shows exactly what the line feeds rebuilding, then built.
    let build = s.next("build");
    assert_eq!(build["state"], "done", "{build}");
    // (and, since this studio publishes, the publish node that lays it out).
    let want = set(&[
        "voice_line:ep01/s02/sh01/1",
        "scene_mix:ep01/s02",
        "episode_audio:ep01",
        "episode:ep01",
        "publish:ep01",
    ]);
    until("Produce to show the rebuild", || async {
        nodes_in(&c, "built").await == want
    })
    .await;
    js(&c, "location.hash = '#produce'").await;
    assert_eq!(nodes_in(&c, "built").await, want);
    shoot(&c, "produce-rebuilt").await;
    // A node: `studio why` and its output, inline.
    click(&c, ".node[data-id=\"voice_line:ep01/s02/sh01/1\"]").await;
    until("the why panel", || async {
        js(&c, "const w = document.getElementById('why'); return !w.hidden && w.querySelector('pre').textContent.includes('up to date') && !!w.querySelector('audio')").await == true
    })
    .await;
    shoot(&c, "produce-why").await;

    // Publish plays the new episode.
    until("Publish to show the new episode", || async {
        episode_hash(&c).await != old_hash
    })
    .await;
    let src = js(
        &c,
        "return document.querySelector('#publish details[data-episode=\"ep01\"] video').getAttribute('src')",
    )
    .await;
    let served = support::get(s.port, src.as_str().unwrap());
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body,
        std::fs::read(p.path("out/ep01/ep01.mp4")).unwrap(),
        "the player gets the new build"
    );
    assert_ne!(src.as_str().unwrap(), format!("/object/{old_hash}/mp4"));
    // The Publish button runs the publish code and shows what it did.
    js(&c, "location.hash = '#publish'").await;
    click(&c, "#publish button.publish").await;
    until("the publish result", || async {
        js(&c, "return document.querySelector('#publish .result').textContent")
            .await
            .as_str()
            .unwrap_or("")
            .starts_with("published")
    })
    .await;
    shoot(&c, "publish-done").await;
    let shows: Vec<_> = std::fs::read_dir(library.path()).unwrap().collect();
    assert_eq!(shows.len(), 1, "one show folder in the library");
    until("Story to say published", || async {
        js(
            &c,
            "return document.querySelector('#story tr[data-episode=\"ep01\"] .state').textContent",
        )
        .await
            == "published"
    })
    .await;

    // An invalid edit: the diagnostic shows, the file stays.
    js(&c, "location.hash = '#script'").await;
    retype(&c, LINE, &format!("{BACKSPACE}")).await;
    until("the diagnostic", || async {
        js(&c, "const d = document.querySelector('#script pre.diag'); return !d.hidden && d.textContent.includes('empty dialogue line')").await == true
    })
    .await;
    shoot(&c, "script-invalid").await;
    assert_eq!(p.read("episodes/ep01.yaml"), after);

    // Another origin (localhost is not 127.0.0.1) cannot change the project.
    c.goto(&format!("http://localhost:{}/#story", s.port)).await.unwrap();
    let sent = js(
        &c,
        &format!(
            "return fetch('http://127.0.0.1:{}/api/script/line', {{method: 'POST', mode: 'no-cors', \
             headers: {{'Content-Type': 'text/plain'}}, body: JSON.stringify({{episode: 'ep01', scene: 's02', \
             shot: 'sh01', index: 0, text: 'pwned'}})}}).then(() => 'sent', e => String(e))",
            s.port
        ),
    )
    .await;
    assert_eq!(sent, "sent", "the browser sent it (no-cors)");
    assert_eq!(p.read("episodes/ep01.yaml"), after, "and the server refused it");
    c.close().await.unwrap();
}

/// Whether any process has `dir` on its command line.
#[allow(clippy::disallowed_methods)]
fn running_in(dir: &Path) -> bool {
    Command::new("pgrep")
        .args(["-f", dir.to_str().unwrap()])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_from_produce_stops_the_tools() {
    // The animatic: real tools (ffmpeg, espeak-ng) to stop.
    let p = TestProject::example("tiny");
    let mut s = Server::start(&p, &["ep01"]);
    let d = driver();
    let c = browser(&d).await;
    c.goto(&format!("http://127.0.0.1:{}/#produce", s.port)).await.unwrap();
    // Once something is built (so the cache has objects to check) and
    // something runs.
    until("a built node and a running one", || async {
        !nodes_in(&c, "built").await.is_empty() && !nodes_in(&c, "running").await.is_empty()
    })
    .await;
    // Pool bars only for the pools this build uses: the animatic's own,
    // not the idle services of studio.yaml (ComfyUI, the LLM, voices).
    let pools = js(
        &c,
        "return [...document.querySelectorAll('#pools .pool b')].map(b => b.textContent).join(',')",
    )
    .await;
    assert_eq!(pools, "cpu,inline", "the pools shown");
    click(&c, "#produce button.cancel").await;
    let build = s.next("build");
    assert_eq!(build["state"], "interrupted", "{build}");
    until("the page to say so", || async {
        js(&c, "return document.getElementById('build-state').textContent").await == "build cancelled"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scratch = p.path("cache/tmp");
    assert!(!running_in(&scratch), "a tool outlived the cancelled build");
    let left: Vec<_> = std::fs::read_dir(&scratch).map(|d| d.collect()).unwrap_or_default();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    p.assert_cache_sound();
    // The studio keeps serving, idle until asked.
    assert_eq!(support::get(s.port, "/status.json").status, 200);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_the_page_needs_it_once() {
    let p = TestProject::example("tiny");
    let token = "browser-test-token-0123";
    let mut s = Server::start(&p, &["ep01", "--profile", "sim", "--token", token]);
    assert_eq!(s.next("build")["state"], "done");
    let d = driver();
    let c = browser(&d).await;
    let base = format!("http://127.0.0.1:{}/", s.port);
    c.goto(&format!("{base}#produce")).await.unwrap();
    let body = js(&c, "return document.body.textContent").await;
    assert!(body.as_str().unwrap().contains("needs its token"), "{body}");
    assert!(
        c.find(Locator::Css("#produce")).await.is_err(),
        "no page without the token"
    );
    // The printed URL: the page, its events (over the cookie), its POSTs.
    c.goto(&format!("{base}?token={token}#produce")).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert!(!url.as_str().contains(token), "the token left the address: {url}");
    until("Produce over the cookie", || async {
        nodes_in(&c, "built").await.len() > 30
    })
    .await;
    // Mark the player and the episode table, to see what the refresh after
    // the build replaces.
    js(
        &c,
        "document.querySelector('#publish video').mark = 1; document.querySelector('#story table').mark = 1",
    )
    .await;
    click(&c, "#produce button.build").await;
    assert_eq!(s.next("build")["state"], "done", "the page started a build");
    until("the tabs to refresh", || async {
        js(&c, "return !document.querySelector('#story table').mark").await == true
    })
    .await;
    let kept = js(&c, "return document.querySelector('#publish video').mark === 1").await;
    assert_eq!(kept, true, "an unchanged episode keeps its player (and its position)");
    c.close().await.unwrap();
}

/// The sample in the sim profile runs the review loop: Review shows the
/// candidates in the band with their scores; Approve writes approvals.yaml
/// (as `studio review approve` does) and the watcher's next build remakes
/// that character's pool.
#[tokio::test(flavor = "multi_thread")]
async fn approve_in_review_records_it_and_rebuilds_the_pool() {
    let p = TestProject::sample();
    let mut s = Server::start(&p, &["ep01", "--profile", "sim"]);
    assert_eq!(s.next("build")["state"], "done");
    let d = driver();
    let c = browser(&d).await;
    c.goto(&format!("http://127.0.0.1:{}/#review", s.port)).await.unwrap();
    // Read by script: the tab is redrawn whenever a build finishes.
    let first = js(
        &c,
        "const k = document.querySelector('#review .candidate'); return k ? [k.dataset.hash, \
         k.closest('.review-character').dataset.character, k.querySelector('.scores').textContent] : null",
    )
    .await;
    let first = first.as_array().expect("a candidate waits for a person");
    let (hash, character, scores) = (
        first[0].as_str().unwrap().to_string(),
        first[1].as_str().unwrap().to_string(),
        first[2].as_str().unwrap().to_string(),
    );
    assert!(scores.starts_with("match 0."), "{scores}");
    shoot(&c, "review").await;

    let this = format!("#review .candidate[data-hash=\"{hash}\"]");
    click(&c, &format!("{this} button.review-approve")).await;
    // The file is the truth (the page redraws the tab when a build ends).
    until("approvals.yaml to record it", || async {
        std::fs::read_to_string(p.path("approvals.yaml")).is_ok_and(|t| t.contains(&hash))
    })
    .await;
    let approvals = p.read("approvals.yaml");
    assert!(approvals.contains(&hash), "{approvals}");
    assert!(approvals.contains("decision: approve"), "{approvals}");
    let build = s.next("build");
    assert_eq!(build["state"], "done", "{build}");
    let built = build["built"].as_array().unwrap();
    assert!(
        built.iter().any(|n| n == &json!(format!("character_refs:{character}"))),
        "the pool is made again: {build}"
    );
    assert!(
        !built
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with("review:"))),
        "no candidate is reviewed again: {build}"
    );
    c.close().await.unwrap();
}
