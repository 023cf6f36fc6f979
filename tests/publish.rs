//! `studio publish` (Jellyfin layout and rescan) and `studio export`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use common::TestProject;

/// A fake Jellyfin on loopback: answers one request with `status`, and
/// reports the request line and its Authorization header.
fn fake_jellyfin(status: &str) -> (u16, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let status = status.to_string();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut auth = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line
                .strip_prefix("authorization: ")
                .or_else(|| line.strip_prefix("Authorization: "))
            {
                auth = v.trim().to_string();
            }
        }
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        tx.send((request_line.trim().to_string(), auth)).unwrap();
    });
    (port, rx)
}

/// The tiny example published to `<project>/library` with a fake Jellyfin
/// answering `status`: the library path, the run, and the request seen.
fn publish_with_jellyfin(
    status: &str,
) -> (
    TestProject,
    std::path::PathBuf,
    std::process::Output,
    mpsc::Receiver<(String, String)>,
) {
    let p = TestProject::example("tiny");
    let (port, requests) = fake_jellyfin(status);
    with_jellyfin(&p, port);
    let library = p.path("library");
    let out = p
        .command(&["publish", "ep01", "--to", library.to_str().unwrap(), "--profile", "sim"])
        .env("STUDIO_TEST_JELLYFIN", "s3cret")
        .output()
        .unwrap();
    (p, library, out, requests)
}

fn with_jellyfin(p: &TestProject, port: u16) {
    p.edit(
        "studio.yaml",
        "executors:\n",
        &format!("executors:\n  - {{id: jellyfin, kind: jellyfin, url: \"http://127.0.0.1:{port}\", token_env: STUDIO_TEST_JELLYFIN}}\n"),
    );
}

#[test]
fn publish_lays_out_the_library_and_asks_jellyfin_to_rescan() {
    let (_p, library, out, requests) = publish_with_jellyfin("204 No Content");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let season = library.join("Tiny/Season 01");
    for f in ["Tiny S01E01 - Bus Stop.mp4", "Tiny S01E01 - Bus Stop.nfo"] {
        assert!(season.join(f).is_file(), "{f} in {}", season.display());
    }
    let tvshow = std::fs::read_to_string(library.join("Tiny/tvshow.nfo")).unwrap();
    assert!(tvshow.contains("<title>Tiny</title>"), "{tvshow}");
    let nfo = std::fs::read_to_string(season.join("Tiny S01E01 - Bus Stop.nfo")).unwrap();
    assert!(
        nfo.contains("<title>Bus Stop</title>") && nfo.contains("<episode>1</episode>"),
        "{nfo}"
    );
    let (line, auth) = requests.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(line, "POST /Library/Refresh HTTP/1.1");
    assert_eq!(auth, r#"MediaBrowser Token="s3cret""#);
    assert!(stderr.contains("asked Jellyfin"), "{stderr}");
}

#[test]
fn a_failed_rescan_is_reported_after_the_files_are_placed() {
    let (_p, library, out, _requests) = publish_with_jellyfin("500 Internal Server Error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rescan failed") && stderr.contains("500"), "{stderr}");
    assert!(library.join("Tiny/Season 01/Tiny S01E01 - Bus Stop.mp4").is_file());
}

#[test]
fn export_writes_fountain() {
    let p = TestProject::example("tiny");
    let run = p.run(&["export", "ep01", "--format", "fountain"]);
    let text = &run.success().stdout;
    assert!(text.starts_with("Title: Bus Stop\n"), "{text}");
    assert!(text.contains("\n.A BUS STOP - EVENING\n"), "{text}");
    assert!(text.contains("\nMIO AKI\nHe said: \"100% sure.\"\n"), "{text}");
    assert!(text.contains("\n> FADE TO:\n"), "{text}");
    let file = p.path("ep01.fountain");
    p.run(&["export", "ep01", "-o", file.to_str().unwrap()]).success();
    assert_eq!(&std::fs::read_to_string(file).unwrap(), text);
}

/// Every component of every path under `dir`, relative to it.
fn components(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.file_name().unwrap().to_str().unwrap().to_string());
        if path.is_dir() {
            out.extend(components(&path));
        }
    }
    out
}

#[test]
fn long_cjk_and_emoji_titles_publish_with_names_that_fit_in_bytes() {
    // 120 characters of CJK are 360 bytes; the emoji title mixes 4-byte
    // emoji, a ZWJ family and CJK.
    let cjk = "雨の日のバス停で待つ二人".repeat(10);
    let emoji = "雨🚌☔👩‍👩‍👧 ".repeat(12);
    for (show, title) in [(&cjk, &cjk), (&emoji, &emoji)] {
        let p = TestProject::example("tiny");
        p.edit("studio.yaml", "name: Tiny", &format!("name: \"{show}\""));
        p.edit("studio.yaml", "title: Bus Stop", &format!("title: \"{title}\""));
        let library = p.path("library");
        let out = p
            .command(&["publish", "ep01", "--to", library.to_str().unwrap(), "--profile", "sim"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let names = components(&library);
        assert!(names.len() >= 5, "{names:?}");
        for name in &names {
            assert!(name.len() <= 255, "{} bytes: {name}", name.len());
        }
        let mp4 = names.iter().find(|n| n.ends_with(".mp4")).expect("the episode");
        assert!(mp4.contains(" S01E01 - 雨"), "the title starts after the number: {mp4}");
        let thumb = names.iter().find(|n| n.ends_with("-thumb.jpg"));
        if let Some(thumb) = thumb {
            assert_eq!(thumb.trim_end_matches("-thumb.jpg"), mp4.trim_end_matches(".mp4"));
        }
        let nfo = mp4.replace(".mp4", ".nfo");
        assert!(names.contains(&nfo), "{nfo} beside the episode: {names:?}");
    }
}

/// Without `--to`, the library is studio.yaml's `publish.library` (relative
/// to the project); with neither, publish says how to name one and builds
/// nothing.
#[test]
fn the_library_comes_from_studio_yaml() {
    let p = TestProject::example("tiny");
    let out = p.command(&["publish", "ep01", "--profile", "sim"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("publish: {library: DIR}") && stderr.contains("--to DIR"),
        "{stderr}"
    );
    assert!(!p.path("cache/state").exists(), "nothing was built: {stderr}");

    p.edit(
        "studio.yaml",
        "executors:\n",
        "publish:\n  library: media/anime\n\nexecutors:\n",
    );
    let out = p.command(&["publish", "ep01", "--profile", "sim"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let names = components(&p.path("media/anime"));
    assert!(names.iter().any(|n| n.ends_with(" S01E01 - Bus Stop.mp4")), "{names:?}");

    p.edit("studio.yaml", "  library: media/anime\n", "  library: \"\"\n");
    let out = p.command(&["publish", "ep01", "--profile", "sim"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("studio.yaml") && stderr.contains("publish.library"),
        "{stderr}"
    );
}
