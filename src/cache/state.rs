//! The last build's state: node id → key and outputs, and what `out/` holds.
//!
//! This is a cache of the action cache, read in one go so a no-op build
//! never opens per-node files. Losing it (a `kill -9`) costs only lookups.

use std::collections::HashMap;
use std::io;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use super::OutputFile;
use super::atomic::{load_json, save_json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub key: String,
    pub content: String,
    pub duration: Option<f64>,
    pub outputs: Vec<OutputFile>,
    /// Made by a fallback standing in for the key's first engine (the
    /// manifest's `provisional`): why. `studio status` lists these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional: Option<String>,
}

/// A file under `out/`: the object it was copied from and its stat then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Materialized {
    pub hash: super::Digest,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Materialized {
    /// Whether the file at `path` (under `out/`) is still this copy: its
    /// size and modification time are those recorded when it was written.
    pub fn holds(&self, path: &Utf8Path) -> bool {
        std::fs::metadata(path).is_ok_and(|meta| meta.len() == self.size && mtime_ns(&meta) == self.mtime_ns)
    }
}

/// A file's modification time in nanoseconds, as [`Materialized`] records it.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub nodes: HashMap<String, NodeState>,
    /// Path relative to `out/` → what it holds.
    pub out: HashMap<String, Materialized>,
    /// Source file → hash at the last build, for `studio why`.
    #[serde(default)]
    pub sources: HashMap<String, String>,
    /// Whether anything changed since it was loaded.
    #[serde(skip)]
    pub dirty: bool,
}

impl State {
    pub fn load(path: &Utf8Path) -> State {
        load_json(path)
    }

    /// Write the state if it changed.
    pub fn save(&mut self, path: &Utf8Path) -> io::Result<()> {
        if self.dirty {
            save_json(path, self)?;
            self.dirty = false;
        }
        Ok(())
    }
}
