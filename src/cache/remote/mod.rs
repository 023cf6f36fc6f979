//! The remote cache: a shared action cache and object store behind the local one.
//!
//! ```text
//! <base>/ac/<key>     the manifest JSON for an action key (as in cache/ac/)
//! <base>/cas/<hash>   an object's bytes, named by their blake3 hash
//! ```
//!
//! This is Bazel's HTTP cache layout, served by nginx with WebDAV PUT, or the
//! same paths in an object store (`s3://`, `gs://`, `az://`, `file://`).
//!
//! Invariants:
//! - Nothing fetched is trusted: a manifest must hash back to the key it was
//!   fetched under, and an object to its name and recorded size, before it
//!   enters the local cache. A corrupt entry is refused, reported, and the
//!   node is rebuilt (and, read-write, uploaded over the bad copy).
//! - Objects stream to and from disk; no object is held in memory whole.
//! - A remote failure never fails a build: the first error is reported once,
//!   and the remote is off for the rest of the run.

mod http;
mod store;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use camino::Utf8Path;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{Cache, Digest, Manifest, OutputFile};
use crate::project::model::{Mode, RemoteConfig};

/// A failure to talk to the remote (not a miss).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

type ByteStream = BoxStream<'static, Result<Bytes, RemoteError>>;

enum Backend {
    Http(http::HttpRemote),
    Store(store::StoreRemote),
}

impl Backend {
    async fn get(&self, path: &str) -> Result<Option<ByteStream>, RemoteError> {
        match self {
            Backend::Http(b) => b.get(path).await,
            Backend::Store(b) => b.get(path).await,
        }
    }

    async fn head(&self, path: &str) -> Result<bool, RemoteError> {
        match self {
            Backend::Http(b) => b.head(path).await,
            Backend::Store(b) => b.head(path).await,
        }
    }

    async fn put_bytes(&self, path: &str, bytes: Bytes) -> Result<(), RemoteError> {
        match self {
            Backend::Http(b) => b.put_bytes(path, bytes).await,
            Backend::Store(b) => b.put_bytes(path, bytes).await,
        }
    }

    async fn put_file(&self, path: &str, file: &Utf8Path, size: u64) -> Result<(), RemoteError> {
        match self {
            Backend::Http(b) => b.put_file(path, file, size).await,
            Backend::Store(b) => b.put_file(path, file).await,
        }
    }
}

/// Counters for one run; [`Stats::merge`] adds them to the saved totals.
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub objects_down: AtomicU64,
    pub bytes_down: AtomicU64,
    /// Microseconds spent receiving objects.
    pub micros_down: AtomicU64,
    pub objects_up: AtomicU64,
    pub bytes_up: AtomicU64,
    pub entries_up: AtomicU64,
    pub corrupt: AtomicU64,
    pub errors: AtomicU64,
}

/// Totals over all runs, saved in `cache/remote-stats.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub objects_down: u64,
    pub bytes_down: u64,
    pub seconds_down: f64,
    pub objects_up: u64,
    pub bytes_up: u64,
    pub entries_up: u64,
    pub corrupt: u64,
    pub errors: u64,
}

impl Stats {
    pub fn merge(&mut self, c: &Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.hits += get(&c.hits);
        self.misses += get(&c.misses);
        self.objects_down += get(&c.objects_down);
        self.bytes_down += get(&c.bytes_down);
        self.seconds_down += get(&c.micros_down) as f64 / 1e6;
        self.objects_up += get(&c.objects_up);
        self.bytes_up += get(&c.bytes_up);
        self.entries_up += get(&c.entries_up);
        self.corrupt += get(&c.corrupt);
        self.errors += get(&c.errors);
    }
}

/// Why an object could not be fetched.
enum FetchError {
    Missing,
    Corrupt(String),
    Transport(RemoteError),
    Local(std::io::Error),
}

/// An open remote cache.
pub struct Remote {
    backend: Backend,
    /// The URL without credentials, for messages.
    shown: String,
    mode: Mode,
    down: AtomicBool,
    warned: AtomicBool,
    /// Hashes and keys whose remote copy was refused: uploads overwrite them.
    refused: Mutex<HashSet<String>>,
    pub counters: Counters,
}

impl Remote {
    /// Open the remote `config` names; `Ok(None)` when its mode is off.
    pub fn open(config: &RemoteConfig) -> Result<Option<Remote>, String> {
        if config.mode == Mode::Off {
            return Ok(None);
        }
        let url = url::Url::parse(&config.url).map_err(|e| format!("`{}` is not a URL: {e}", config.url))?;
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        let backend = match url.scheme() {
            "http" | "https" => Backend::Http(http::HttpRemote::new(&url)?),
            _ => Backend::Store(store::StoreRemote::new(&url)?),
        };
        Ok(Some(Remote {
            backend,
            shown: shown.to_string(),
            mode: config.mode,
            down: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            refused: Mutex::new(HashSet::new()),
            counters: Counters::default(),
        }))
    }

    pub fn url(&self) -> &str {
        &self.shown
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether lookups go to the remote (it has not failed this run).
    pub fn readable(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    pub fn writable(&self) -> bool {
        self.mode == Mode::ReadWrite && self.readable()
    }

    /// Whether the remote failed during this run.
    pub fn failed(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// The remote failed: say so once, then stop using it.
    fn fail(&self, what: &str, e: &RemoteError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.down.store(true, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: remote cache {}: {what}: {e}\n  continuing with the local cache only for the rest of this run",
                self.shown
            );
        }
    }

    fn refuse(&self, name: &str, why: &str) {
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        self.refused.lock().expect("refused set").insert(name.to_string());
        eprintln!(
            "warning: remote cache {}: refused {why}; it will be rebuilt{}",
            self.shown,
            if self.mode == Mode::ReadWrite {
                " and uploaded again"
            } else {
                ""
            }
        );
    }

    /// Check the remote answers: a HEAD on an entry that need not exist.
    pub async fn probe(&self) -> Result<(), RemoteError> {
        self.backend.head("ac/probe").await.map(|_| ())
    }

    /// Fetch the entry for `key` and its objects into `cache`; `None` on a
    /// miss, a refused entry, or a failed remote.
    pub async fn fetch(&self, cache: &Cache, key: &str) -> Option<Manifest> {
        if !self.readable() {
            return None;
        }
        let Ok(key) = Digest::parse(key) else {
            return None;
        };
        let path = format!("ac/{key}");
        let bytes = match self.read_small(&path).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(e) => {
                self.fail(&format!("reading {path}"), &e);
                return None;
            }
        };
        // Every field is checked before any is used: digests and suffixes
        // by their types, numbers for range, the material against the key.
        let manifest = match Manifest::parse(&bytes, &key) {
            // studio never uploads one: another engine's stand-in, refused.
            Ok(m) if m.provisional.is_some() => {
                self.refuse(
                    &path,
                    &format!("{path}: a provisional entry (made by a fallback engine)"),
                );
                return None;
            }
            Ok(m) => m,
            Err(why) => {
                self.refuse(&path, &format!("{path}: {why}"));
                return None;
            }
        };
        for o in &manifest.outputs {
            if cache.has_outputs(std::slice::from_ref(o)) {
                continue;
            }
            match self.fetch_object(cache, o).await {
                Ok(()) => {}
                Err(FetchError::Missing) => {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Err(FetchError::Corrupt(why)) => {
                    self.refuse(&o.hash, &why);
                    return None;
                }
                Err(FetchError::Transport(e)) => {
                    self.fail(&format!("reading cas/{}", o.hash), &e);
                    return None;
                }
                Err(FetchError::Local(e)) => {
                    eprintln!("warning: storing a fetched object in {}: {e}", cache.dir());
                    return None;
                }
            }
        }
        let (c, k, m) = (cache.clone(), key.clone(), manifest.clone());
        match tokio::task::spawn_blocking(move || c.record(&k, &m)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("warning: recording a fetched entry in {}: {e}", cache.dir());
                return None;
            }
            Err(_) => return None,
        }
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(manifest)
    }

    /// A whole small file (an action-cache entry).
    async fn read_small(&self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let Some(mut stream) = self.backend.get(path).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
            if bytes.len() > MAX_ENTRY {
                return Err(RemoteError(format!("{path} is larger than {MAX_ENTRY} bytes")));
            }
        }
        Ok(Some(bytes))
    }

    /// Stream `cas/<hash>` into a temp file, hashing as it arrives; adopt it
    /// only if it is what its name says.
    async fn fetch_object(&self, cache: &Cache, o: &OutputFile) -> Result<(), FetchError> {
        let path = format!("cas/{}", o.hash);
        let began = std::time::Instant::now();
        let Some(mut stream) = self.backend.get(&path).await.map_err(FetchError::Transport)? else {
            return Err(FetchError::Missing);
        };
        let tmp = cache.temp_file("fetch-").map_err(FetchError::Local)?;
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(FetchError::Transport)?;
            size += chunk.len() as u64;
            if size > o.size {
                return Err(FetchError::Corrupt(format!("{path}: longer than its {} bytes", o.size)));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(FetchError::Local)?;
        }
        file.flush().await.map_err(FetchError::Local)?;
        file.sync_all().await.map_err(FetchError::Local)?;
        drop(file);
        let got = hasher.finalize().to_hex();
        if size != o.size || got.as_str() != o.hash.as_str() {
            return Err(FetchError::Corrupt(format!(
                "{path}: {size} bytes hashing to {}…, expected {} bytes",
                &got.as_str()[..12],
                o.size
            )));
        }
        let (c, hash) = (cache.clone(), o.hash.clone());
        tokio::task::spawn_blocking(move || c.adopt(tmp_path, &hash))
            .await
            .map_err(|e| FetchError::Local(std::io::Error::other(e)))?
            .map_err(FetchError::Local)?;
        self.counters.objects_down.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_down.fetch_add(size, Ordering::Relaxed);
        self.counters
            .micros_down
            .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Upload the objects of `manifest` the remote lacks, then its entry (so
    /// a reader never finds an entry whose objects are missing). `Ok(false)`:
    /// not uploaded (the remote is not writable, the entry is provisional,
    /// or a local object no longer matches its name, which is reported).
    pub async fn upload(&self, cache: &Cache, key: &str, manifest: &Manifest) -> Result<bool, RemoteError> {
        // A fallback's stand-in is not what the key's first engine makes.
        if !self.writable() || manifest.provisional.is_some() {
            return Ok(false);
        }
        let Ok(key) = Digest::parse(key) else {
            return Ok(false);
        };
        let result = self.upload_inner(cache, &key, manifest).await;
        if let Err(e) = &result {
            self.fail(&format!("uploading {key}"), e);
        }
        result
    }

    async fn upload_inner(&self, cache: &Cache, key: &Digest, manifest: &Manifest) -> Result<bool, RemoteError> {
        for o in &manifest.outputs {
            let path = format!("cas/{}", o.hash);
            let refused = self.refused.lock().expect("refused set").contains(o.hash.as_str());
            if !refused && self.backend.head(&path).await? {
                continue;
            }
            // Only what studio itself hashed leaves this machine: an object
            // whose bytes no longer match its name is not uploaded.
            let file = cache.object_path(&o.hash);
            let f = file.clone();
            let actual = tokio::task::spawn_blocking(move || super::index::hash_file(&f))
                .await
                .map_err(|e| RemoteError(e.to_string()))?
                .map_err(|e| RemoteError(format!("reading {file}: {e}")))?;
            if actual != o.hash.as_str() {
                eprintln!(
                    "warning: {file} does not hash to its name (it hashes to {actual}); \
                     entry {key} is not uploaded (delete the file: the next build remakes it)"
                );
                return Ok(false);
            }
            self.backend
                .put_file(&path, &cache.object_path(&o.hash), o.size)
                .await?;
            self.counters.objects_up.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes_up.fetch_add(o.size, Ordering::Relaxed);
        }
        let body = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
        self.backend.put_bytes(&format!("ac/{key}"), Bytes::from(body)).await?;
        self.counters.entries_up.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether the remote has the entry for `key` (for `cache push`).
    pub async fn has_entry(&self, key: &str) -> Result<bool, RemoteError> {
        self.backend.head(&format!("ac/{key}")).await
    }
}

/// An error with its cause chain (client errors put the cause, such as
/// "connection refused", in their sources).
fn chain(e: &dyn std::error::Error) -> RemoteError {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !msg.contains(&more) {
            msg.push_str(": ");
            msg.push_str(&more);
        }
        source = s.source();
    }
    RemoteError(msg)
}

/// Action-cache entries are small JSON; anything larger is not one.
const MAX_ENTRY: usize = 16 << 20;

/// The saved totals.
pub fn load_stats(cache: &Cache) -> Stats {
    super::atomic::load_json(&cache.dir().join("remote-stats.json"))
}

/// Add this run's counters to the saved totals.
pub fn save_stats(cache: &Cache, remote: &Remote) -> std::io::Result<()> {
    let mut stats = load_stats(cache);
    stats.merge(&remote.counters);
    super::atomic::save_json(&cache.dir().join("remote-stats.json"), &stats)
}
