//! The no-op stamp: a build of some targets that found nothing to do,
//! written down with everything its outcome depended on, so that the same
//! build asked again can check those things on disk and answer without
//! loading the project, graphing it or computing a key.
//!
//! A build's outcome is a function of what the loader read (the project's
//! source files, and the listings of `rules/` and `episodes/`), the files
//! the loader looked for and did not find (`approvals.yaml`), the last
//! build's state (the shards of `cache/state/` it read), the store's objects and what `out/`
//! holds, the local tools (real profiles), the remote cache (none: a build
//! with a remote writes no stamp) and the studio binary itself. A stamp
//! records each of these as a stat identity, or as names for a listing;
//! [`Stamp::holds`] checks them all. Only a build whose every node was
//! cached writes one: its state and `out/` are exactly what the next build
//! would read, so the next build, given the same inputs, is the same no-op.
//! Sources are recorded through the source index, as the stat their hash
//! was taken from, never one taken later; one changed within the last two
//! seconds (the index's racy window) writes no stamp.
//!
//! The stamp keeps the `--json` node lines that build printed and the
//! warnings it gave, and the answer repeats them: the same output as the
//! full path, with the lines in the closure's order (inputs first).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::cache::index::stat_triple;
use crate::session::{Layout, Session};

/// Bumped when the stamp's layout or meaning changes: an older stamp is
/// not read.
const FORMAT: u32 = 3;

/// A file's stat identity: size, modification time in ns, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    size: u64,
    mtime_ns: i128,
    inode: u64,
}

impl FileId {
    fn of(path: &Utf8Path) -> Option<FileId> {
        let (size, mtime_ns, inode) = stat_triple(&fs::metadata(path).ok()?);
        Some(FileId { size, mtime_ns, inode })
    }
}

/// Files of one folder, checked by stat relative to the folder (one path
/// walk per folder, not per file): objects in a fan-out folder of the
/// store, or copies in a folder under `out/`.
#[derive(Debug, Serialize, Deserialize)]
struct Folder<'a> {
    /// Relative to the store's `objects/` or to `out/`.
    #[serde(borrow)]
    dir: Cow<'a, str>,
    #[serde(borrow)]
    files: Vec<Entry<'a>>,
}

/// A file as the build left it: its size and, for a copy under `out/`,
/// its modification time (a store object is named by its content).
#[derive(Debug, Serialize, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    size: u64,
    mtime_ns: Option<i128>,
}

/// What a no-op build of some targets depended on, and what it printed.
/// Its strings borrow from the file's bytes when it is read.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stamp<'a> {
    format: u32,
    binary: FileId,
    /// The state's shards the build read (relative to `cache/`), and
    /// whether each was there.
    #[serde(borrow)]
    state: Vec<(Cow<'a, str>, Option<FileId>)>,
    /// Every file the loader read, relative to the project.
    #[serde(borrow)]
    sources: Vec<(Cow<'a, str>, FileId)>,
    /// The YAML files in each folder the loader lists.
    #[serde(borrow)]
    listings: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>,
    /// Files the loader looked for and did not find.
    #[serde(borrow)]
    absent: Vec<Cow<'a, str>>,
    /// The local tools' identities (real profiles only).
    #[serde(borrow)]
    tools: Option<Cow<'a, str>>,
    #[serde(borrow)]
    warnings: Vec<Cow<'a, str>>,
    /// The `--json` node lines, each ending in a newline.
    #[serde(borrow)]
    lines: Cow<'a, str>,
    nodes: usize,
    /// The outputs' objects in the store, by fan-out folder.
    #[serde(borrow)]
    objects: Vec<Folder<'a>>,
    /// The outputs' copies under `out/`, by folder.
    #[serde(borrow)]
    copies: Vec<Folder<'a>>,
}

/// What a stamp answers with.
pub struct Answer<'a> {
    pub warnings: Vec<Cow<'a, str>>,
    pub lines: Cow<'a, str>,
    pub nodes: usize,
}

/// Where the stamp of a build of `request` lives: one file per request
/// (targets, profile, the remote options given), named by its hash.
pub fn path(layout: &Layout, request: &str) -> Utf8PathBuf {
    let name = blake3::hash(request.as_bytes()).to_hex();
    layout.cache.join("noop").join(&name[..32])
}

/// The studio binary's identity: a new studio may key or build anything
/// differently.
fn binary() -> Option<FileId> {
    let exe = Utf8PathBuf::from_path_buf(std::env::current_exe().ok()?).ok()?;
    FileId::of(&exe)
}

/// The tools' identities as one string, for a real profile.
fn tools_text(tools: &BTreeMap<crate::engines::Tool, String>) -> String {
    tools
        .iter()
        .map(|(tool, id)| format!("{}\t{id}\n", tool.as_str()))
        .collect()
}

/// Folders from (folder, entry) pairs: sorted, without repeats, grouped.
fn folders<'a>(mut files: Vec<(&'a str, Cow<'a, str>, u64, Option<i128>)>) -> Vec<Folder<'a>> {
    files.par_sort_unstable_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
    files.dedup_by(|x, y| x.0 == y.0 && x.1 == y.1);
    let mut folders: Vec<Folder<'a>> = Vec::new();
    for (dir, name, size, mtime_ns) in files {
        let entry = Entry { name, size, mtime_ns };
        match folders.last_mut() {
            Some(f) if f.dir == dir => f.files.push(entry),
            _ => folders.push(Folder {
                dir: Cow::Borrowed(dir),
                files: vec![entry],
            }),
        }
    }
    folders
}

impl<'a> Stamp<'a> {
    /// The stamp of a finished build, if it was a no-op that may have one:
    /// every node cached, none standing in for an engine out of reach, no
    /// remote cache, and every source's stat older than the racy window.
    /// `lines` are the node lines it printed (or would have, with `--json`).
    pub fn of(session: &'a Session, report: &super::Report, lines: String, warnings: Vec<String>) -> Option<Self> {
        let records = &report.records;
        if !report.ok() || report.totals.cached != records.len() || records.iter().any(|r| r.provisional) {
            return None;
        }
        let layout = &session.layout;
        let sources = (session.project.sources.iter())
            .map(|(rel, hash)| {
                let (size, mtime_ns, inode) = session.index.identity(rel, hash)?;
                Some((Cow::Borrowed(rel.as_str()), FileId { size, mtime_ns, inode }))
            })
            .collect::<Option<Vec<_>>>()?;
        let listings = (crate::project::load::LISTED.iter())
            .map(|dir| {
                let names = crate::project::load::yaml_files(&layout.root, dir);
                (
                    Cow::Borrowed(*dir),
                    names.into_iter().map(|n| n.into_string().into()).collect(),
                )
            })
            .collect();
        let approvals = crate::project::approvals::FILE;
        let absent = (!sources.iter().any(|(p, _)| p == approvals))
            .then_some(Cow::Borrowed(approvals))
            .into_iter()
            .collect();
        // Each output's object and copy, found in parallel (the state and
        // graph lookups of a large project are memory-bound).
        let found = (records.par_iter())
            .map(|r| {
                let node = &session.graph.nodes[session.graph.get(&r.id)?];
                let state = session.state.node(&r.id)?;
                // `ep01/s01/sh01/voice-1` → the folder `ep01/s01/sh01`.
                let slash = node.out_stem.rfind('/');
                let dir = slash.map_or("", |i| &node.out_stem[..i]);
                (state.outputs.iter())
                    .map(|o| {
                        let mut name = format!("{}.{}", node.out_stem, o.suffix);
                        let m = session.state.copy(&name).filter(|m| m.hash == o.hash)?;
                        name.replace_range(..slash.map_or(0, |i| i + 1), "");
                        Some((
                            (o.hash.fanout(), Cow::Borrowed(o.hash.as_str()), o.size, None),
                            (dir, Cow::Owned(name), m.size, Some(m.mtime_ns)),
                        ))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .collect::<Option<Vec<_>>>()?;
        let (objects, copies) = found.into_iter().flatten().unzip();
        let (objects, copies) = rayon::join(|| folders(objects), || folders(copies));
        Some(Stamp {
            format: FORMAT,
            binary: binary()?,
            state: (session.state.files().into_iter())
                .map(|rel| {
                    let id = FileId::of(&layout.cache.join(&rel));
                    (Cow::Owned(rel), id)
                })
                .collect(),
            sources,
            listings,
            absent,
            tools: (!session.simulated()).then(|| tools_text(&session.tools.identities).into()),
            warnings: warnings.into_iter().map(Cow::Owned).collect(),
            lines: lines.into(),
            nodes: records.len(),
            objects,
            copies,
        })
    }

    /// Write the stamp (atomically: a reader sees the old one or this one).
    pub fn save(&self, path: &Utf8Path) -> std::io::Result<()> {
        let bytes = postcard::to_stdvec(self).map_err(std::io::Error::other)?;
        crate::cache::atomic::write_atomic(path, &bytes)
    }

    /// The stamp in `bytes` (a stamp file's), if this studio can read it.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        postcard::from_bytes::<Stamp>(bytes).ok().filter(|s| s.format == FORMAT)
    }

    /// The build's answer, if everything the stamp depended on is as it
    /// was: the studio binary, the state, every source (by stat), the
    /// listings, the absent files, the tools, and every output in the store
    /// and under `out/` (as [`Session::intact`] checks them).
    pub fn holds(self, layout: &Layout) -> Option<Answer<'a>> {
        let root = &layout.root;
        let same = binary() == Some(self.binary)
            && (self.state.iter())
                .all(|(rel, id)| relative(rel) && FileId::of(&layout.cache.join(rel.as_ref())) == *id)
            && (self.sources.iter())
                .all(|(rel, id)| relative(rel) && FileId::of(&root.join(rel.as_ref())) == Some(*id))
            && (self.listings.iter()).all(|(dir, names)| {
                relative(dir)
                    && crate::project::load::yaml_files(root, dir)
                        .iter()
                        .map(|n| n.as_str())
                        .eq(names.iter().map(|n| n.as_ref()))
            })
            && (self.absent.iter()).all(|rel| relative(rel) && fs::symlink_metadata(root.join(rel.as_ref())).is_err())
            && self.tools.as_ref().is_none_or(|ids| {
                let mut index = crate::cache::index::SourceIndex::load(&layout.cache.join("sources.json"));
                let tools = crate::exec::tools::Toolchain::discover(&layout.cache, &mut index);
                tools_text(&tools.identities) == *ids
            });
        if !same {
            return None;
        }
        let objects = layout.cache.join("objects");
        let intact = (self.objects.par_iter()).all(|folder| folder.in_store(&objects))
            && (self.copies.par_iter()).all(|folder| folder.holds(&layout.out));
        intact.then_some(Answer {
            warnings: self.warnings,
            lines: self.lines,
            nodes: self.nodes,
        })
    }
}

impl Folder<'_> {
    /// Whether every object is in the store: by one listing of the fan-out
    /// folder where the stamp names many of its objects (a stat of each
    /// would cost more), else by a stat of each. An object is named by its
    /// content and only ever renamed into place whole, so a name present
    /// is the object.
    fn in_store(&self, objects: &Utf8Path) -> bool {
        /// Objects of one fan-out folder from which a listing is cheaper.
        const LIST_FROM: usize = 32;
        if self.files.len() < LIST_FROM {
            return self.holds(objects);
        }
        if !relative(&self.dir) {
            return false;
        }
        let Ok(listing) = objects.join(self.dir.as_ref()).read_dir_utf8() else {
            return false;
        };
        let mut wanted: std::collections::HashSet<&str> = self.files.iter().map(|e| e.name.as_ref()).collect();
        for entry in listing.flatten() {
            wanted.remove(entry.file_name());
        }
        wanted.is_empty()
    }

    /// Whether every file is as the build left it, each stat taken relative
    /// to the folder opened once.
    fn holds(&self, base: &Utf8Path) -> bool {
        if !relative(&self.dir) {
            return false;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(dir) = rustix::fs::open(base.join(self.dir.as_ref()).as_std_path(), flags, Mode::empty()) else {
            return false;
        };
        self.files.iter().all(|e| {
            let one = Utf8Path::new(e.name.as_ref());
            one.components().count() == 1
                && relative(one.as_str())
                && rustix::fs::statat(&dir, one.as_std_path(), AtFlags::empty()).is_ok_and(|st| {
                    let mtime_ns = crate::cache::index::ns(st.st_mtime, st.st_mtime_nsec);
                    u64::try_from(st.st_size) == Ok(e.size) && e.mtime_ns.is_none_or(|m| m == mtime_ns)
                })
        })
    }
}

/// A path that stays inside the folder it is joined to.
fn relative(path: &str) -> bool {
    Utf8Path::new(path)
        .components()
        .all(|c| matches!(c, Utf8Component::Normal(_)))
}
