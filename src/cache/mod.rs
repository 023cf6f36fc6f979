//! The content-addressed store, the action cache, build state and the lock.
//!
//! ```text
//! cache/objects/ab/abcdef…   file contents, named by blake3
//! cache/ac/12/1234…json      key → manifest (output hashes, duration, material)
//! cache/state/               node id → last key and outputs, what out/ holds
//!                            (one shard per episode, one for the project)
//! cache/sources.json         source index: (size, mtime, inode) → hash
//! cache/durations.json       learned job durations per engine
//! cache/tmp/                 scratch space for running jobs
//! cache/lock                 held by the build that owns this cache
//! ```
//!
//! Invariant: an object exists only with its full content (written to
//! `tmp/`, fsynced, renamed), and an action-cache entry is written only after
//! all its objects exist. A `kill -9` can leave garbage in `tmp/`, never an
//! entry that lies.

pub mod atomic;
pub mod digest;
pub mod index;
pub mod learn;
pub mod lock;
pub mod remote;
pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::fs;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::graph::key::KeyMaterial;
use atomic::{sync_dir, write_atomic_via};
pub use digest::{Digest, Suffix};

/// One file a node produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The name's suffix under the node's `out_stem` (`png`, `srt`, `jpg`).
    pub suffix: Suffix,
    pub hash: Digest,
    pub size: u64,
}

/// What the action cache says about one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The node it was first built for (informational).
    pub node: String,
    pub outputs: Vec<OutputFile>,
    /// Media duration in seconds, for audio and video.
    pub duration: Option<f64>,
    /// The engine that made it: a fallback when the chosen engine failed.
    pub engine: String,
    /// Seconds the job took.
    pub seconds: f64,
    pub material: KeyMaterial,
    /// What the job learned besides its files (the engine used, the
    /// executor and host, a seed the engine reported, scores), bounded by
    /// [`check_metadata`]. Not part of the key. Entries written before it
    /// existed have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
    /// Made by a fallback engine because an engine before it was
    /// unreachable or failed in a way that may pass ("fell back to espeak
    /// after: edge_tts: …"). The entry stands in for the key's first
    /// engine only until a build reaches that engine again: it is never
    /// uploaded to the remote, and a build that finds the first engine's
    /// service reachable makes the node again (`build::drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional: Option<String>,
}

/// The longest `provisional` reason an entry keeps.
pub const MAX_PROVISIONAL_LEN: usize = 1024;

/// `reason` as an entry keeps it: control characters (a server's
/// multi-line error) as spaces, at most [`MAX_PROVISIONAL_LEN`] bytes.
pub fn provisional_reason(reason: &str) -> String {
    let mut s: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.len() > MAX_PROVISIONAL_LEN {
        let mut end = MAX_PROVISIONAL_LEN - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// A manifest's metadata: short words → small JSON values.
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// The largest object studio accepts (a feature-length 4K master fits).
pub const MAX_OBJECT_SIZE: u64 = 256 << 30;
/// The most outputs one node has (an episode has three: mp4, srt, jpg).
pub const MAX_OUTPUTS: usize = 16;
/// The longest media a manifest may claim: a day.
pub const MAX_MEDIA_SECONDS: f64 = 86_400.0;
/// The longest a job may have taken: a week.
pub const MAX_JOB_SECONDS: f64 = 7.0 * 86_400.0;
/// The most metadata keys one entry carries.
pub const MAX_METADATA_KEYS: usize = 32;
/// The longest metadata key: a short word (`seed`, `review_score`).
pub const MAX_METADATA_KEY_LEN: usize = 32;
/// The most bytes an entry's metadata takes as JSON (a service's word
/// timings for a long line fit; a file does not belong there).
pub const MAX_METADATA_BYTES: usize = 16 << 10;
/// How deep metadata values nest (`{"timings": [{"word": …}]}` is 3).
pub const MAX_METADATA_DEPTH: usize = 4;

impl Manifest {
    /// Check every field a manifest read from disk or the remote carries
    /// beyond what its types already guarantee (digests and suffixes are
    /// checked when they deserialize): counts, sizes and times in range,
    /// names that are names. `key` is the key it was read under: its
    /// material must hash back to it.
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.outputs.is_empty() || self.outputs.len() > MAX_OUTPUTS {
            return Err(format!("{} outputs (1 to {MAX_OUTPUTS} allowed)", self.outputs.len()));
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if self.outputs[..i].iter().any(|p| p.suffix == o.suffix) {
                return Err(format!("two outputs with the suffix `{}`", o.suffix));
            }
            if o.size > MAX_OBJECT_SIZE {
                return Err(format!(
                    "output `{}` claims {} bytes (at most {MAX_OBJECT_SIZE})",
                    o.suffix, o.size
                ));
            }
        }
        if let Some(d) = self.duration
            && !(d.is_finite() && (0.0..=MAX_MEDIA_SECONDS).contains(&d))
        {
            return Err(format!("duration {d} s is out of range (0 to {MAX_MEDIA_SECONDS})"));
        }
        if !(self.seconds.is_finite() && (0.0..=MAX_JOB_SECONDS).contains(&self.seconds)) {
            return Err(format!(
                "job time {} s is out of range (0 to {MAX_JOB_SECONDS})",
                self.seconds
            ));
        }
        let engine_ok = !self.engine.is_empty()
            && self.engine.len() <= 64
            && self
                .engine
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        if !engine_ok {
            return Err(format!("`{}` is not an engine name", digest::shorten(&self.engine)));
        }
        if self.node.len() > 512 || self.node.chars().any(char::is_control) {
            return Err(format!("`{}` is not a node id", digest::shorten(&self.node)));
        }
        check_metadata(&self.metadata)?;
        if let Some(p) = &self.provisional
            && (p.len() > MAX_PROVISIONAL_LEN || p.chars().any(char::is_control))
        {
            return Err(format!(
                "its provisional reason is not a line of at most {MAX_PROVISIONAL_LEN} bytes"
            ));
        }
        if self.material.key() != key {
            return Err("its contents belong to another key".to_string());
        }
        Ok(())
    }

    /// Parse and [`check`](Manifest::check) an entry read under `key`.
    pub fn parse(bytes: &[u8], key: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest ({e})"))?;
        m.check(key)?;
        Ok(m)
    }

    /// The hash dependents key on: the single output's hash, or a hash over
    /// all outputs when there are several.
    pub fn content_hash(&self) -> String {
        content_hash(&self.outputs)
    }
}

/// Check metadata read from disk, the remote or a job: at most
/// [`MAX_METADATA_KEYS`] keys, each a short word (`a-z`, `0-9`, `_`,
/// starting with a letter), values nested at most [`MAX_METADATA_DEPTH`]
/// deep, no control characters in any text (`studio why` prints it on a
/// terminal), at most [`MAX_METADATA_BYTES`] as JSON.
pub fn check_metadata(metadata: &Metadata) -> Result<(), String> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(format!(
            "metadata has {} keys (at most {MAX_METADATA_KEYS})",
            metadata.len()
        ));
    }
    for (key, value) in metadata {
        let word = key.len() <= MAX_METADATA_KEY_LEN
            && key.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && key.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        if !word {
            return Err(format!(
                "metadata key `{}` is not a short word (a-z, 0-9, _; at most {MAX_METADATA_KEY_LEN} bytes)",
                digest::shorten(key)
            ));
        }
        check_value(key, value, 1)?;
    }
    let bytes = serde_json::to_vec(metadata).expect("metadata serializes").len();
    if bytes > MAX_METADATA_BYTES {
        return Err(format!(
            "metadata takes {bytes} bytes as JSON (at most {MAX_METADATA_BYTES})"
        ));
    }
    Ok(())
}

/// One metadata value at nesting `depth` (a top-level value is 1).
fn check_value(key: &str, value: &serde_json::Value, depth: usize) -> Result<(), String> {
    use serde_json::Value;
    if depth > MAX_METADATA_DEPTH {
        return Err(format!(
            "metadata `{key}` nests deeper than {MAX_METADATA_DEPTH} levels"
        ));
    }
    let text = |s: &str| {
        if s.chars().any(char::is_control) {
            Err(format!("metadata `{key}` holds a control character"))
        } else {
            Ok(())
        }
    };
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        Value::String(s) => text(s),
        Value::Array(items) => items.iter().try_for_each(|v| check_value(key, v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            text(k)?;
            check_value(key, v, depth + 1)
        }),
    }
}

pub fn content_hash(outputs: &[OutputFile]) -> String {
    match outputs {
        [one] => one.hash.to_string(),
        many => {
            let mut h = blake3::Hasher::new();
            for o in many {
                h.update(o.suffix.as_bytes());
                h.update(b"\0");
                h.update(o.hash.as_bytes());
                h.update(b"\n");
            }
            h.finalize().to_hex().to_string()
        }
    }
}

/// The local cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Utf8PathBuf,
}

impl Cache {
    pub fn open(dir: &Utf8Path) -> io::Result<Cache> {
        for sub in ["objects", "ac", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        Ok(Cache { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// Where the object named `hash` lives: derived from a checked digest,
    /// so it is always inside `objects/`.
    pub fn object_path(&self, hash: &Digest) -> Utf8PathBuf {
        self.dir.join("objects").join(hash.fanout()).join(hash.as_str())
    }

    fn ac_path(&self, key: &Digest) -> Utf8PathBuf {
        self.dir.join("ac").join(key.fanout()).join(format!("{key}.json"))
    }

    /// Whether every output is present with its recorded size.
    pub fn has_outputs(&self, outputs: &[OutputFile]) -> bool {
        outputs
            .iter()
            .all(|o| fs::metadata(self.object_path(&o.hash)).is_ok_and(|m| m.len() == o.size))
    }

    /// Move a finished file into the store under its hash.
    pub fn ingest(&self, file: &Utf8Path) -> io::Result<(Digest, u64)> {
        let hash = Digest::parse(&index::hash_file(file)?).map_err(io::Error::other)?;
        let size = fs::metadata(file)?.len();
        let dest = self.object_path(&hash);
        if fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            fs::remove_file(file)?;
            return Ok((hash, size));
        }
        fs::File::open(file)?.sync_all()?;
        let dir = dest.parent().expect("object has a parent");
        fs::create_dir_all(dir)?;
        fs::rename(file, &dest)?;
        sync_dir(dir)?;
        Ok((hash, size))
    }

    /// A temp file in `tmp/`, deleted unless adopted.
    pub fn temp_file(&self, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(self.dir.join("tmp"))
    }

    /// Move a complete, synced file whose hash the caller has checked into
    /// the store under `hash`.
    pub fn adopt(&self, file: tempfile::TempPath, hash: &Digest) -> io::Result<()> {
        let dest = self.object_path(hash);
        let dir = dest.parent().expect("object has a parent");
        fs::create_dir_all(dir)?;
        file.persist(&dest).map_err(|e| e.error)?;
        sync_dir(dir)
    }

    /// The manifest for `key`, if present, well-formed, [checked](Manifest::check)
    /// and all its objects exist. An entry that fails the checks is a miss.
    pub fn lookup(&self, key: &str) -> Option<Manifest> {
        let m = self.entry(key)?;
        self.has_outputs(&m.outputs).then_some(m)
    }

    /// The checked manifest for `key`, whether or not its objects exist.
    pub fn entry(&self, key: &str) -> Option<Manifest> {
        let path = self.ac_path(&Digest::parse(key).ok()?);
        Manifest::parse(&fs::read(path).ok()?, key).ok()
    }

    /// Record a manifest; its objects must already be in the store.
    pub fn record(&self, key: &str, manifest: &Manifest) -> io::Result<()> {
        debug_assert!(self.has_outputs(&manifest.outputs));
        let key = Digest::parse(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_atomic_via(
            &self.dir.join("tmp"),
            &self.ac_path(&key),
            &serde_json::to_vec_pretty(manifest).expect("manifest serializes"),
        )
    }

    /// A fresh scratch directory for one job, removed when dropped.
    pub fn scratch(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix("job-").tempdir_in(self.dir.join("tmp"))
    }

    /// Every action-cache key (files whose names are not keys are skipped).
    pub fn keys(&self) -> Vec<Digest> {
        walk(self.dir.join("ac"))
            .filter(|p| p.extension() == Some("json"))
            .filter_map(|p| p.file_stem().and_then(|s| Digest::parse(s).ok()))
            .collect()
    }

    /// Every object file, with its name (hash).
    pub fn objects(&self) -> impl Iterator<Item = Utf8PathBuf> {
        walk(self.dir.join("objects"))
    }

    pub fn remove_entry(&self, key: &Digest) -> io::Result<()> {
        fs::remove_file(self.ac_path(key))
    }
}

/// Files two levels down (`xx/name`).
fn walk(dir: Utf8PathBuf) -> impl Iterator<Item = Utf8PathBuf> {
    let subdirs = dir.read_dir_utf8().into_iter().flatten().filter_map(Result::ok);
    subdirs.flat_map(|d| {
        d.path()
            .read_dir_utf8()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().to_owned())
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(v: serde_json::Value) -> Metadata {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn metadata_within_bounds_passes() {
        assert_eq!(check_metadata(&Metadata::new()), Ok(()));
        let m = meta(json!({
            "engine": "comfyui", "executor": "comfy-main", "host": "127.0.0.1:8188",
            "seed": 12345678901234u64, "score": 0.82, "approved": true,
            "timings": [{"word": "bus", "at": [0.1, 0.4]}],
        }));
        assert_eq!(check_metadata(&m), Ok(()));
        let keys: Metadata = (0..MAX_METADATA_KEYS).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(check_metadata(&keys), Ok(()));
    }

    #[test]
    fn metadata_out_of_bounds_is_refused_saying_why() {
        let too_many: Metadata = (0..=MAX_METADATA_KEYS).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(check_metadata(&too_many).unwrap_err().contains("33 keys"));
        for key in [
            "",
            "Seed",
            "9lives",
            "a-b",
            "seed\u{1b}[2J",
            &"k".repeat(MAX_METADATA_KEY_LEN + 1),
        ] {
            let e = check_metadata(&meta(json!({ key: 1 }))).unwrap_err();
            assert!(e.contains("not a short word") && !e.contains('\u{1b}'), "{key:?}: {e}");
        }
        // Depth: a value in four containers is five deep.
        assert_eq!(check_metadata(&meta(json!({"a": [[[1]]]}))), Ok(()));
        let e = check_metadata(&meta(json!({"a": [[[[1]]]]}))).unwrap_err();
        assert!(e.contains("deeper than 4"), "{e}");
        let e = check_metadata(&meta(json!({"a": {"b\u{7}": 1}}))).unwrap_err();
        assert!(e.contains("control character"), "{e}");
        let e = check_metadata(&meta(json!({"a": "line\nbreak"}))).unwrap_err();
        assert!(e.contains("control character"), "{e}");
        let big = meta(json!({"a": "x".repeat(MAX_METADATA_BYTES)}));
        assert!(check_metadata(&big).unwrap_err().contains("bytes as JSON"));
    }

    /// The key material of a simulated espeak voice line, for entries made by hand.
    pub(crate) fn voice_material() -> KeyMaterial {
        KeyMaterial {
            schema: 0,
            kind: crate::kind::NodeKind::VoiceLine,
            engine: "espeak".into(),
            engine_version: 1,
            backend: crate::graph::key::Backend {
                simulated: true,
                service: None,
                model: None,
                tools: Default::default(),
            },
            params: Default::default(),
            inputs: Vec::new(),
            seed: None,
        }
    }

    #[test]
    fn entries_without_metadata_still_parse() {
        let material = voice_material();
        let key = material.key();
        let mut entry = json!({
            "node": "voice_line:ep01/s01/sh01/1",
            "outputs": [{"suffix": "wav", "hash": "ab".repeat(32), "size": 10}],
            "duration": 1.5, "engine": "espeak", "seconds": 0.2,
            "material": material,
        });
        let old = Manifest::parse(entry.to_string().as_bytes(), &key).unwrap();
        assert!(old.metadata.is_empty());
        assert!(!serde_json::to_string(&old).unwrap().contains("metadata"));
        entry["metadata"] = json!({"seed": 7});
        let new = Manifest::parse(entry.to_string().as_bytes(), &key).unwrap();
        assert_eq!(new.metadata["seed"], 7);
        entry["metadata"] = json!({"Seed": 7});
        let e = Manifest::parse(entry.to_string().as_bytes(), &key).unwrap_err();
        assert!(e.contains("not a short word"), "{e}");
    }
}
