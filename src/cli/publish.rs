//! `studio publish EP --to DIR`: build the episode, lay it out as Jellyfin
//! expects, and ask the server to rescan when one is configured.

use std::fs;

use camino::{Utf8Path, Utf8PathBuf};

use super::build::{Request, build_targets};
use super::{EXIT_FAILED, EXIT_INVALID, EXIT_IO, EXIT_OK, RemoteArgs};
use crate::cache::OutputFile;
use crate::engines::ServiceKind;
use crate::session::Session;
use crate::stages::publish::Layout;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The episode, e.g. `ep01`.
    episode: String,
    /// The library folder (Jellyfin's TV library root); default:
    /// `publish.library` in studio.yaml.
    #[arg(long, value_name = "DIR")]
    to: Option<Utf8PathBuf>,
    #[arg(short, long)]
    jobs: Option<usize>,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, remote: &RemoteArgs, args: Args) -> u8 {
    if args.episode.contains('/') || args.episode.contains(':') {
        eprintln!(
            "error: publish takes an episode id such as ep01, not `{}`",
            args.episode
        );
        return EXIT_INVALID;
    }
    let to = match args.to.clone().map_or_else(|| library(root, profile), Ok) {
        Ok(to) => to,
        Err(code) => return code,
    };
    let request = Request {
        targets: vec![format!("publish:{}", args.episode)],
        jobs: args.jobs,
        keep_going: false,
        json: false,
        remote: remote.clone(),
    };
    let built = match build_targets(root, profile, &request) {
        Ok(b) if b.code == EXIT_OK => b,
        Ok(b) => return b.code,
        Err(code) => return code,
    };
    let session = &built.session;
    let (Some(publish), Some(episode)) = (
        session.state.node(&format!("publish:{}", args.episode)),
        session.state.node(&format!("episode:{}", args.episode)),
    ) else {
        eprintln!("error: {} was built but its outputs are not on record", args.episode);
        return EXIT_IO;
    };
    let placed = match place(session, &publish.outputs, &episode.outputs, &to) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: publishing to {to}: {e}");
            return EXIT_IO;
        }
    };
    for p in &placed {
        eprintln!("  {p}");
    }
    eprintln!("published {} to {to}", args.episode);
    match rescan(session) {
        Ok(Some(url)) => {
            eprintln!("asked Jellyfin at {url} to rescan its libraries");
            EXIT_OK
        }
        Ok(None) => EXIT_OK,
        Err(e) => {
            eprintln!("error: the files are in place, but the Jellyfin rescan failed: {e}");
            EXIT_FAILED
        }
    }
}

/// `publish.library` from studio.yaml, for a publish without `--to`.
pub(super) fn library(root: &Utf8Path, profile: Option<&str>) -> Result<Utf8PathBuf, u8> {
    let mut index = crate::cache::index::SourceIndex::load(&root.join("cache/sources.json"));
    let (project, _) =
        crate::project::load(root, profile, &crate::stages::registry::catalog(), &mut index).map_err(|d| {
            super::report(d);
            EXIT_INVALID
        })?;
    project.library.ok_or_else(|| {
        eprintln!(
            "error: publish to where? studio.yaml names no library\n  help: add `publish: {{library: DIR}}` to \
             studio.yaml (the folder of Jellyfin's TV library), or pass `--to DIR`"
        );
        EXIT_INVALID
    })
}

fn output<'a>(outputs: &'a [OutputFile], suffix: &str) -> Option<&'a OutputFile> {
    outputs.iter().find(|o| o.suffix == suffix)
}

/// Copy the episode's files into the library; returns the paths written.
pub(super) fn place(
    session: &Session,
    publish: &[OutputFile],
    episode: &[OutputFile],
    to: &Utf8Path,
) -> std::io::Result<Vec<String>> {
    let cache = &session.cache;
    let missing = || std::io::Error::other("an output of the publish node is missing");
    let layout: Layout = serde_json::from_slice(&fs::read(
        cache.object_path(&output(publish, "json").ok_or_else(missing)?.hash),
    )?)
    .map_err(std::io::Error::other)?;
    let mut files: Vec<(String, &OutputFile)> = vec![
        (
            format!("{}/tvshow.nfo", layout.show_dir),
            output(publish, "tvshow.nfo").ok_or_else(missing)?,
        ),
        (layout.episode_file(".nfo"), output(publish, "nfo").ok_or_else(missing)?),
    ];
    for (suffix, library_suffix) in [("mp4", ".mp4"), ("srt", ".srt"), ("jpg", "-thumb.jpg")] {
        if let Some(o) = output(episode, suffix) {
            files.push((layout.episode_file(library_suffix), o));
        }
    }
    // A dub's subtitles (`ja.srt`) beside the episode as `… .ja.srt`, the
    // name Jellyfin reads the language from. Suffixes are checked names.
    for o in episode.iter().filter(|o| o.suffix.ends_with(".srt")) {
        files.push((layout.episode_file(&format!(".{}", o.suffix)), o));
    }
    let mut placed = Vec::new();
    for (rel, o) in files {
        let dest = to.join(&rel);
        fs::create_dir_all(dest.parent().expect("library paths have a parent"))?;
        let tmp = tempfile::Builder::new()
            .prefix(".studio-")
            .tempfile_in(dest.parent().expect("parent"))?;
        fs::copy(cache.object_path(&o.hash), tmp.path())?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        placed.push(rel);
    }
    Ok(placed)
}

/// `POST /Library/Refresh` on the configured Jellyfin, if any. Returns its URL.
pub(super) fn rescan(session: &Session) -> Result<Option<String>, String> {
    let Some(jf) = session
        .project
        .executors
        .iter()
        .find(|e| e.kind == ServiceKind::Jellyfin)
    else {
        return Ok(None);
    };
    let var = jf.token_env.clone().unwrap_or_else(|| "JELLYFIN_TOKEN".into());
    let Ok(token) = std::env::var(&var) else {
        eprintln!(
            "note: executor `{}` is Jellyfin at {}, but ${var} is not set: no rescan",
            jf.id, jf.url
        );
        return Ok(None);
    };
    // The host rule is checked by the loader, and again by the client.
    let service = crate::exec::http::Service::with_timeout(jf, 15.0).map_err(|e| e.to_string())?;
    let url = service.url("/Library/Refresh").map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let request = service
            .post(&url)
            .header("Authorization", format!("MediaBrowser Token=\"{token}\""));
        let fail = |error| crate::exec::http::ServiceError::new(jf, error).to_string();
        let answer = service.send(&url, request).await.map_err(fail)?;
        service.check_status(&url, &answer).map_err(fail)?;
        Ok(Some(jf.url.clone()))
    })
}
