//! Helpers for the crate's unit tests (compiled only for them).

use std::path::Path;

use camino::Utf8PathBuf;

/// A copy of `examples/tiny` (following the `rules` link) in a fresh
/// temporary directory, kept while the returned guard lives.
pub(crate) fn tiny() -> (tempfile::TempDir, Utf8PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let (src, dest) = (e.path(), to.join(e.file_name()));
            if std::fs::metadata(&src).unwrap().is_dir() {
                copy(&src, &dest);
            } else {
                std::fs::copy(&src, &dest).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().join("tiny")).unwrap();
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny"),
        root.as_std_path(),
    );
    (dir, root)
}
