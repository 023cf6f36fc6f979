//! Copying outputs from the cache to `out/`: by temp file and rename, and
//! only what is not already there.

use std::fs;

use camino::Utf8Path;

use crate::cache::state::{Materialized, mtime_ns};
use crate::cache::{Cache, OutputFile};
use crate::graph::Node;

/// Copy outputs to `out/<stem>.<suffix>` unless already there. Returns what
/// was written, and the first failure: it does not fail the node (the cache
/// holds the truth) but stops the build, which exits 3 naming the path.
pub(super) fn materialize<'a>(
    cache: &Cache,
    out: &Utf8Path,
    node: &Node,
    outputs: &[OutputFile],
    known: impl Fn(&str) -> Option<&'a Materialized>,
) -> (Vec<(String, Materialized)>, Option<String>) {
    let mut done = Vec::new();
    for o in outputs {
        let rel = format!("{}.{}", node.out_stem, o.suffix);
        let dest = out.join(&rel);
        if let (Some(k), Ok(meta)) = (known(&rel), fs::metadata(&dest))
            && k.hash == o.hash
            && k.size == meta.len()
            && k.mtime_ns == mtime_ns(&meta)
        {
            continue;
        }
        match copy_atomic(&cache.object_path(&o.hash), &dest) {
            Ok(meta) => done.push((
                rel,
                Materialized {
                    hash: o.hash.clone(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                },
            )),
            Err(e) => return (done, Some(format!("could not write {dest}: {e}"))),
        }
    }
    (done, None)
}

/// Copy via a temp file and rename, so `out/` never holds half a file.
fn copy_atomic(src: &Utf8Path, dest: &Utf8Path) -> std::io::Result<fs::Metadata> {
    let dir = dest.parent().expect("out path has a parent");
    fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".studio-").tempfile_in(dir)?;
    fs::copy(src, tmp.path())?;
    let path = tmp.into_temp_path();
    path.persist(dest).map_err(|e| e.error)?;
    fs::metadata(dest)
}
