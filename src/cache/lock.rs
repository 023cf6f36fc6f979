//! One build per project at a time: an exclusive lock on `cache/lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;

use camino::Utf8Path;

/// Held for the life of a build; released on drop (and by the OS on a crash).
#[derive(Debug)]
pub struct BuildLock {
    _file: File,
}

impl BuildLock {
    /// Take the lock, waiting (and saying so through `waiting`) if another
    /// studio process holds it.
    pub fn acquire(dir: &Utf8Path, waiting: impl FnOnce()) -> io::Result<BuildLock> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock()?;
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        Ok(BuildLock { _file: file })
    }
}
