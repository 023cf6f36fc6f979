//! `studio gc`, `studio clean`, `studio engines`.

use std::collections::HashSet;
use std::fs;

use camino::Utf8Path;

use super::{EXIT_IO, EXIT_OK, out};
use crate::cache::Cache;
use crate::cache::lock::BuildLock;
use crate::cache::state::State;

#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Also delete the cache (everything will be rebuilt).
    #[arg(long)]
    all: bool,
}

pub(super) fn lock(root: &Utf8Path) -> Result<BuildLock, u8> {
    BuildLock::acquire(&root.join("cache"), || {
        eprintln!("waiting for the running build to finish …")
    })
    .map_err(|e| {
        eprintln!("error: cannot lock {root}/cache/lock: {e}");
        EXIT_IO
    })
}

/// Keep the entries the last build used, and the objects they name.
pub fn gc(root: &Utf8Path) -> u8 {
    let Ok(_lock) = lock(root) else { return EXIT_IO };
    let cache = match Cache::open(&root.join("cache")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot open {root}/cache: {e}");
            return EXIT_IO;
        }
    };
    let state = State::load_all(&root.join("cache"));
    let live: HashSet<&str> = state.nodes().map(|(_, n)| n.key.as_str()).collect();
    let mut keep = HashSet::new();
    let (mut entries, mut objects, mut bytes) = (0usize, 0usize, 0u64);
    for key in cache.keys() {
        if live.contains(key.as_str()) {
            if let Some(m) = cache.entry(&key) {
                keep.extend(m.outputs.into_iter().map(|o| String::from(o.hash)));
            }
        } else if cache.remove_entry(&key).is_ok() {
            entries += 1;
        }
    }
    for path in cache.objects() {
        let name = path.file_name().unwrap_or_default();
        if !keep.contains(name) {
            bytes += fs::metadata(&path).map_or(0, |m| m.len());
            if fs::remove_file(&path).is_ok() {
                objects += 1;
            }
        }
    }
    // Scratch left by killed builds.
    let _ = fs::remove_dir_all(cache.dir().join("tmp"));
    let _ = fs::create_dir_all(cache.dir().join("tmp"));
    out(&format!(
        "removed {entries} cache entries and {objects} objects ({}); kept {} entries\n",
        human_bytes(bytes),
        live.len()
    ));
    EXIT_OK
}

pub fn clean(root: &Utf8Path, args: CleanArgs) -> u8 {
    let Ok(lock) = lock(root) else { return EXIT_IO };
    let mut targets = vec![root.join("out")];
    if args.all {
        targets.push(root.join("cache"));
    } else {
        // `out/` is gone, so what the state says about it is too.
        let mut state = State::load_all(&root.join("cache"));
        state.clear_copies();
        if state.save().is_err() {
            eprintln!("warning: could not update {root}/cache/state");
        }
    }
    drop(lock);
    for t in targets {
        if let Err(e) = fs::remove_dir_all(&t)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("error: removing {t}: {e}");
            return EXIT_IO;
        }
        eprintln!("removed {t}");
    }
    EXIT_OK
}

pub fn engines() -> u8 {
    let mut text = String::new();
    for e in crate::stages::registry::catalog().iter() {
        let runs = e.placement.as_str();
        let kinds: Vec<&str> = e.kinds.iter().map(|k| k.as_str()).collect();
        text.push_str(&format!(
            "{:<16} {:<9} {:<40} {}\n",
            e.name,
            runs,
            kinds.join(","),
            e.about
        ));
    }
    out(&text);
    EXIT_OK
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}
