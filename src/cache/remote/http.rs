//! Bazel's HTTP cache protocol: `GET`/`HEAD`/`PUT` on `<base>/ac/<key>` and
//! `<base>/cas/<hash>`, 404 for a miss (nginx with WebDAV PUT, bazel-remote).

use std::time::Duration;

use bytes::Bytes;
use camino::Utf8Path;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;

use super::{ByteStream, RemoteError};

pub struct HttpRemote {
    client: reqwest::Client,
    base: String,
    /// Credentials for every request: the URL's user info (Basic auth) or
    /// `STUDIO_REMOTE_TOKEN` (Bearer).
    auth: Auth,
}

enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl HttpRemote {
    pub fn new(url: &url::Url) -> Result<HttpRemote, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Between two reads; a large object may take longer in all.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
        let auth = if !url.username().is_empty() {
            Auth::Basic(url.username().to_string(), url.password().unwrap_or("").to_string())
        } else {
            std::env::var("STUDIO_REMOTE_TOKEN").map_or(Auth::None, Auth::Bearer)
        };
        let mut base = url.clone();
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Ok(HttpRemote {
            client,
            base: base.as_str().trim_end_matches('/').to_string(),
            auth,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}/{path}", self.base));
        match &self.auth {
            Auth::None => r,
            Auth::Basic(user, pass) => r.basic_auth(user, Some(pass)),
            Auth::Bearer(token) => r.bearer_auth(token),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Option<ByteStream>, RemoteError> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(resp.bytes_stream().map_err(|e| transport(&e)).boxed())),
            s => Err(RemoteError(format!("GET {path}: HTTP {s}"))),
        }
    }

    pub async fn head(&self, path: &str) -> Result<bool, RemoteError> {
        let resp = self
            .request(reqwest::Method::HEAD, path)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            s => Err(RemoteError(format!("HEAD {path}: HTTP {s}"))),
        }
    }

    pub async fn put_bytes(&self, path: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let resp = self
            .request(reqwest::Method::PUT, path)
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        check_put(path, resp.status())
    }

    /// Stream a file up, never holding it in memory.
    pub async fn put_file(&self, path: &str, file: &Utf8Path, size: u64) -> Result<(), RemoteError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| RemoteError(format!("reading {file}: {e}")))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 << 10));
        let resp = self
            .request(reqwest::Method::PUT, path)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        check_put(path, resp.status())
    }
}

fn check_put(path: &str, status: StatusCode) -> Result<(), RemoteError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(RemoteError(format!("PUT {path}: HTTP {status}")))
    }
}

/// A transport error with its cause chain (reqwest's own message is terse).
fn transport(e: &reqwest::Error) -> RemoteError {
    super::chain(e)
}
