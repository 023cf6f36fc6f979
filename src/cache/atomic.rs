//! Atomic file writes: temp file in the same directory, fsync, rename, fsync dir.

use std::fs;
use std::io::{self, Write};

use camino::Utf8Path;

/// Write `bytes` to `path` so that a reader sees the old file or the whole new one.
pub fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_via(path.parent().unwrap_or(Utf8Path::new(".")), path, bytes)
}

/// [`write_atomic`] with the temporary file in `tmp_dir` (same filesystem),
/// so a crash leaves nothing but complete files in `path`'s directory.
pub fn write_atomic_via(tmp_dir: &Utf8Path, path: &Utf8Path, bytes: &[u8]) -> io::Result<()> {
    place(tmp_dir, path, bytes)?;
    sync_dir(path.parent().unwrap_or(Utf8Path::new(".")))
}

/// [`write_atomic_via`] but for the fsync of `path`'s directory, which the
/// caller does once for a batch of files ([`sync_dir`]): until then the
/// rename may not survive a crash, though the file's bytes will.
pub fn place(tmp_dir: &Utf8Path, path: &Utf8Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::create_dir_all(tmp_dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// fsync a directory so a rename into it survives a crash.
pub fn sync_dir(dir: &Utf8Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Read a JSON file written by [`save_json`]; a missing or unreadable file
/// reads as the default (these files are caches of the cache).
pub fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Utf8Path) -> T {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Write `value` as JSON, atomically.
pub fn save_json<T: serde::Serialize>(path: &Utf8Path, value: &T) -> io::Result<()> {
    write_atomic(path, &serde_json::to_vec(value).map_err(io::Error::other)?)
}
