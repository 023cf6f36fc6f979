//! The source index: (size, mtime, inode) → blake3, as git's index does.
//!
//! A file whose stat triple is unchanged since it was last hashed is not read
//! again, so a no-op build does not re-read large assets (LoRAs, workflows,
//! soundfonts, reference clips).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::atomic::{load_json, save_json};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    hash: String,
}

/// Remembered hashes of source files, keyed by path relative to the project.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SourceIndex {
    entries: BTreeMap<Utf8PathBuf, Stamp>,
    #[serde(skip)]
    dirty: bool,
    /// How many files were actually read and hashed this run.
    #[serde(skip)]
    pub hashed: usize,
}

impl SourceIndex {
    pub fn load(path: &Utf8Path) -> SourceIndex {
        load_json(path)
    }

    pub fn save(&mut self, path: &Utf8Path) -> io::Result<()> {
        if self.dirty {
            save_json(path, self)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// The blake3 of `root/rel`, read only when its stat changed.
    pub fn hash(&mut self, root: &Utf8Path, rel: &Utf8Path) -> io::Result<String> {
        let meta = fs::metadata(root.join(rel))?;
        let (size, mtime_ns, inode) = stat_triple(&meta);
        if let Some(s) = self.entries.get(rel)
            && s.size == size
            && s.mtime_ns == mtime_ns
            && s.inode == inode
            && !racy(mtime_ns)
        {
            return Ok(s.hash.clone());
        }
        let hash = hash_file(&root.join(rel))?;
        self.hashed += 1;
        self.entries.insert(
            rel.to_owned(),
            Stamp {
                size,
                mtime_ns,
                inode,
                hash: hash.clone(),
            },
        );
        self.dirty = true;
        Ok(hash)
    }

    /// Hash bytes already in memory, remembering them under `rel`.
    pub fn hash_bytes(&mut self, root: &Utf8Path, rel: &Utf8Path, bytes: &[u8]) -> String {
        let hash = blake3::hash(bytes).to_hex().to_string();
        if let Ok(meta) = fs::metadata(root.join(rel)) {
            let (size, mtime_ns, inode) = stat_triple(&meta);
            let stamp = Stamp {
                size,
                mtime_ns,
                inode,
                hash: hash.clone(),
            };
            if self.entries.get(rel) != Some(&stamp) {
                self.entries.insert(rel.to_owned(), stamp);
                self.dirty = true;
            }
        }
        hash
    }

    /// The (size, mtime in ns, inode) `rel` had when it was last hashed to
    /// `hash`, unless its mtime is too recent for that stat to stand for its
    /// content (a write in the same tick would not change it).
    pub fn identity(&self, rel: &Utf8Path, hash: &str) -> Option<(u64, i128, u64)> {
        let s = self.entries.get(rel)?;
        (s.hash == hash && !racy(s.mtime_ns)).then_some((s.size, s.mtime_ns, s.inode))
    }
}

pub fn stat_triple(meta: &fs::Metadata) -> (u64, i128, u64) {
    (meta.size(), ns(meta.mtime(), meta.mtime_nsec()), meta.ino())
}

/// Seconds and nanoseconds since the epoch, as one count of nanoseconds.
pub fn ns(secs: i64, nsec: impl Into<i128>) -> i128 {
    i128::from(secs) * 1_000_000_000 + nsec.into()
}

/// A file modified within the last two seconds may be modified again within
/// the same mtime tick; like git, do not trust its stamp.
fn racy(mtime_ns: i128) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    now - mtime_ns < 2_000_000_000
}

/// Stream a file through blake3.
pub fn hash_file(path: &Utf8Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}
