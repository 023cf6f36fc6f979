//! Files the page asks for: `GET /out/PATH` (built files, with range
//! requests for seeking) and `GET /object/HASH/SUFFIX` (a node's output in
//! the cache).
//!
//! A received path is never joined as it came: it is percent-decoded, each
//! segment checked (no empty, `.` or `..` segment, no `\` or NUL: 404), then
//! resolved through the file system and kept only if it is still inside
//! `out/` (a symlink out: 403). An object's name is a checked digest and
//! its path derived from it.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use camino::{Utf8Path, Utf8PathBuf};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::super::serve::Served;
use crate::cache::Digest;

/// Why a path is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A malformed path, or no such file: 404.
    NotFound,
    /// It leads outside the folder: 403.
    Outside,
}

/// `rel` (as received, percent-encoded) resolved inside `base`.
pub fn resolve(base: &Utf8Path, rel: &str) -> Result<Utf8PathBuf, Refused> {
    let decoded = percent_encoding::percent_decode_str(rel)
        .decode_utf8()
        .map_err(|_| Refused::NotFound)?;
    let ok = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']);
    if !decoded.split('/').all(ok) {
        return Err(Refused::NotFound);
    }
    let base = base.canonicalize_utf8().map_err(|_| Refused::NotFound)?;
    let path = base
        .join(decoded.as_ref())
        .canonicalize_utf8()
        .map_err(|_| Refused::NotFound)?;
    if !path.starts_with(&base) {
        return Err(Refused::Outside);
    }
    if !path.is_file() {
        return Err(Refused::NotFound);
    }
    Ok(path)
}

fn refused(r: Refused) -> Response {
    match r {
        Refused::NotFound => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Refused::Outside => (StatusCode::FORBIDDEN, "outside the project's out/\n").into_response(),
    }
}

/// Serve `path` (ranges included) as `mime`, when given.
async fn send(path: &Utf8Path, request: Request, mime: Option<&'static str>) -> Response {
    let mut response = match ServeFile::new(path.as_std_path()).oneshot(request).await {
        Ok(r) => r.map(Body::new),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    if let Some(m) = mime {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(m));
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /out/PATH`.
pub async fn out(State(served): State<Served>, request: Request) -> Response {
    let rel = request.uri().path().strip_prefix("/out/").unwrap_or("").to_string();
    match resolve(&served.root.join("out"), &rel) {
        Ok(path) => send(&path, request, None).await,
        Err(r) => refused(r),
    }
}

/// The content type of an output suffix.
pub fn mime(suffix: &str) -> &'static str {
    match suffix.rsplit('.').next().unwrap_or("") {
        "mp4" => "video/mp4",
        "mkv" => "video/x-matroska",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "json" => "application/json",
        "srt" | "txt" | "nfo" | "ass" => "text/plain; charset=utf-8",
        "vtt" => "text/vtt; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /object/HASH/SUFFIX`: a cache object, typed by the suffix.
pub async fn object(
    State(served): State<Served>,
    Path((hash, suffix)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Ok(digest) = Digest::parse(&hash) else {
        return refused(Refused::NotFound);
    };
    let cache = crate::session::Layout::new(&served.root).cache;
    let path = cache.join("objects").join(digest.fanout()).join(digest.as_str());
    if !path.is_file() {
        return refused(Refused::NotFound);
    }
    send(&path, request, Some(mime(&suffix))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_keeps_paths_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("out/ep01")).unwrap();
        std::fs::write(root.join("out/ep01/a.mp4"), "x").unwrap();
        std::fs::write(root.join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(root.join("secret.txt"), root.join("out/link")).unwrap();
        let out = root.join("out");
        assert!(resolve(&out, "ep01/a.mp4").is_ok());
        assert!(resolve(&out, "ep01%2Fa.mp4").is_ok());
        for bad in [
            "../secret.txt",
            "%2e%2e/secret.txt",
            "ep01/../../secret.txt",
            "/etc/passwd",
            "",
            "ep01//a.mp4",
            "ep01\\a.mp4",
            "a%00",
            "%ff",
        ] {
            assert_eq!(resolve(&out, bad), Err(Refused::NotFound), "{bad}");
        }
        assert_eq!(resolve(&out, "link"), Err(Refused::Outside));
        assert_eq!(resolve(&out, "ep01"), Err(Refused::NotFound), "folders are not files");
    }
}
