//! Storing what jobs made, a batch at a time: every file hashed, fsynced
//! and renamed to its hash, then every directory a rename went into
//! fsynced once for the whole batch; only then are the batch's action-cache
//! entries written.
//!
//! Why this order keeps the store's promise (an object exists only whole,
//! an entry only after its objects): a file is fsynced before it is renamed
//! to its name, so the name never stands for less than the whole content;
//! the renames are made durable (their directories fsynced) before any
//! entry naming them is written. An entry is written by temp file and
//! rename but not fsynced: it is checked when read (it must parse and its
//! material hash back to its key, [`super::Manifest::check`]), so an entry
//! a power cut tore or lost reads as a miss and costs a rebuild, never a
//! wrong result. `kill -9` loses nothing written (the kernel keeps it).
//!
//! A node so costs one fsync per output file, plus its share of one fsync
//! per directory per batch (at most 256 object directories), instead of
//! four fsyncs of its own.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};

use camino::{Utf8Path, Utf8PathBuf};
use rayon::prelude::*;

use super::atomic::sync_dir;
use super::{Cache, Digest, Manifest, OutputFile, Suffix, index};

/// The files one job made: each output's suffix and where it lies.
pub type Made = Vec<(String, Utf8PathBuf)>;

/// A file moved into the store, and the directory to fsync for it (none
/// when the object was already there).
type Moved = (OutputFile, Option<Utf8PathBuf>);

impl Cache {
    /// Move the files of every job of `jobs` into the store, durably (see
    /// the module doc). Returns each job's outputs, or the first error that
    /// touched one of its files.
    pub fn ingest_batch(&self, jobs: Vec<Made>) -> Vec<io::Result<Vec<OutputFile>>> {
        // Hash, fsync and rename, in parallel; remember the directories.
        let moved: Vec<io::Result<Vec<Moved>>> = jobs
            .into_par_iter()
            .map(|files| {
                files
                    .into_iter()
                    .map(|(suffix, path)| self.move_in(&suffix, &path))
                    .collect()
            })
            .collect();
        let dirs: BTreeSet<&Utf8PathBuf> = (moved.iter().flatten().flatten())
            .filter_map(|(_, dir)| dir.as_ref())
            .collect();
        let synced: Vec<(&Utf8PathBuf, Option<String>)> = dirs
            .into_par_iter()
            .map(|d| (d, sync_dir(d).err().map(|e| e.to_string())))
            .collect();
        let failed_dir = |dir: &Option<Utf8PathBuf>| {
            let dir = dir.as_ref()?;
            synced.iter().find(|(d, _)| *d == dir).and_then(|(_, e)| e.clone())
        };
        moved
            .iter()
            .map(|r| match r {
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                Ok(outputs) => match outputs.iter().find_map(|(_, dir)| failed_dir(dir)) {
                    Some(e) => Err(io::Error::other(e)),
                    None => Ok(outputs.iter().map(|(o, _)| o.clone()).collect()),
                },
            })
            .collect()
    }

    /// One finished file into the store: hashed, fsynced, renamed. Returns
    /// the directory it was renamed into (to fsync), or `None` when the
    /// object was already there and the file was dropped.
    fn move_in(&self, suffix: &str, file: &Utf8Path) -> io::Result<Moved> {
        let suffix = Suffix::parse(suffix).map_err(io::Error::other)?;
        let hash = Digest::parse(&index::hash_file(file)?).map_err(io::Error::other)?;
        let size = fs::metadata(file)?.len();
        let dest = self.object_path(&hash);
        let output = OutputFile { suffix, hash, size };
        if fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            fs::remove_file(file)?;
            return Ok((output, None));
        }
        fs::File::open(file)?.sync_all()?;
        let dir = dest.parent().expect("an object has a parent").to_owned();
        fs::create_dir_all(&dir)?;
        fs::rename(file, &dest)?;
        Ok((output, Some(dir)))
    }

    /// Record a manifest whose objects are already durable in the store,
    /// by temp file and rename, without fsync (see the module doc).
    pub fn record_unsynced(&self, key: &str, manifest: &Manifest) -> io::Result<()> {
        debug_assert!(self.has_outputs(&manifest.outputs));
        let key = Digest::parse(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let path = self.ac_path(&key);
        let dir = path.parent().expect("an entry has a parent");
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.join("tmp"))?;
        tmp.write_all(&serde_json::to_vec_pretty(manifest).expect("manifest serializes"))?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        let cache = Cache::open(&root.join("cache")).unwrap();
        (dir, cache)
    }

    fn file(cache: &Cache, name: &str, bytes: &[u8]) -> Utf8PathBuf {
        let path = cache.dir().join("tmp").join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_batch_moves_every_file_under_its_hash_and_dedups() {
        let (_d, cache) = cache();
        let jobs = vec![
            vec![
                ("png".to_string(), file(&cache, "a", b"one")),
                ("srt".to_string(), file(&cache, "b", b"two")),
            ],
            vec![("png".to_string(), file(&cache, "c", b"one"))],
        ];
        let out = cache.ingest_batch(jobs);
        let first = out[0].as_ref().unwrap();
        let second = out[1].as_ref().unwrap();
        assert_eq!(first[0].hash, second[0].hash, "same bytes, same object");
        for o in first.iter().chain(second) {
            let bytes = fs::read(cache.object_path(&o.hash)).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), o.hash.as_str());
            assert_eq!(bytes.len() as u64, o.size);
        }
        // The job files are gone: moved, or dropped as duplicates.
        for name in ["a", "b", "c"] {
            assert!(!cache.dir().join("tmp").join(name).exists());
        }
    }

    #[test]
    fn one_jobs_failure_is_its_own() {
        let (_d, cache) = cache();
        let jobs = vec![
            vec![("png".to_string(), file(&cache, "a", b"fine"))],
            vec![("png".to_string(), cache.dir().join("tmp/missing"))],
            vec![("../x".to_string(), file(&cache, "b", b"bad suffix"))],
        ];
        let out = cache.ingest_batch(jobs);
        assert!(out[0].is_ok());
        assert_eq!(out[1].as_ref().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(out[2].is_err());
    }

    #[test]
    fn an_unsynced_entry_reads_back_checked() {
        let (_d, cache) = cache();
        let outputs = cache.ingest_batch(vec![vec![("wav".to_string(), file(&cache, "a", b"x"))]]);
        let material = crate::cache::tests::voice_material();
        let key = material.key();
        let m = Manifest {
            node: "voice_line:ep01/s01/sh01/1".into(),
            outputs: outputs.into_iter().next().unwrap().unwrap(),
            duration: Some(1.0),
            engine: "espeak".into(),
            seconds: 0.1,
            material,
            metadata: Default::default(),
            provisional: None,
        };
        cache.record_unsynced(&key, &m).unwrap();
        assert_eq!(cache.lookup(&key).unwrap().outputs, m.outputs);
        // A torn entry (what a power cut may leave) is a miss, not an error.
        let path = cache.ac_path(&Digest::parse(&key).unwrap());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(cache.lookup(&key).is_none());
        fs::write(&path, b"").unwrap();
        assert!(cache.lookup(&key).is_none());
    }
}
