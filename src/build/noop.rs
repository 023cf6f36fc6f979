//! The no-op stamp: a build of some targets that found nothing to do,
//! written down with everything its outcome depended on, so that the same
//! build asked again can check those things on disk and answer without
//! loading the project, graphing it or computing a key.
//!
//! A build's outcome is a function of what the loader read (the project's
//! source files, and the listings of `rules/` and `episodes/`), the files
//! the loader looked for and did not find (`approvals.yaml`), the last
//! build's state (`cache/state.json`), the store's objects and what `out/`
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
const FORMAT: u32 = 2;

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
    state: FileId,
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

/// Folders from (folder, entry) pairs.
fn folders(files: BTreeMap<String, BTreeMap<String, (u64, Option<i128>)>>) -> Vec<Folder<'static>> {
    (files.into_iter())
        .map(|(dir, files)| Folder {
            dir: dir.into(),
            files: (files.into_iter())
                .map(|(name, (size, mtime_ns))| Entry {
                    name: name.into(),
                    size,
                    mtime_ns,
                })
                .collect(),
        })
        .collect()
}

impl Stamp<'static> {
    /// The stamp of a finished build, if it was a no-op that may have one:
    /// every node cached, none standing in for an engine out of reach, no
    /// remote cache, and every source's stat older than the racy window.
    /// `lines` are the node lines it printed (or would have, with `--json`).
    pub fn of(session: &Session, report: &super::Report, lines: String, warnings: Vec<String>) -> Option<Self> {
        let records = &report.records;
        if !report.ok() || report.totals.cached != records.len() || records.iter().any(|r| r.provisional) {
            return None;
        }
        let layout = &session.layout;
        let sources = (session.project.sources.iter())
            .map(|(rel, hash)| {
                let (size, mtime_ns, inode) = session.index.identity(rel, hash)?;
                Some((Cow::Owned(rel.to_string()), FileId { size, mtime_ns, inode }))
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
        let mut objects: BTreeMap<String, BTreeMap<String, _>> = BTreeMap::new();
        let mut copies: BTreeMap<String, BTreeMap<String, _>> = BTreeMap::new();
        for r in records {
            let node = &session.graph.nodes[session.graph.get(&r.id)?];
            let state = session.state.nodes.get(&r.id)?;
            for o in &state.outputs {
                let out = Utf8PathBuf::from(format!("{}.{}", node.out_stem, o.suffix));
                let m = session.state.out.get(out.as_str()).filter(|m| m.hash == o.hash)?;
                (objects.entry(o.hash.fanout().to_string()).or_default())
                    .insert(o.hash.as_str().to_string(), (o.size, None));
                let dir = out.parent().map(|d| d.to_string()).unwrap_or_default();
                (copies.entry(dir).or_default()).insert(out.file_name()?.to_string(), (m.size, Some(m.mtime_ns)));
            }
        }
        Some(Stamp {
            format: FORMAT,
            binary: binary()?,
            state: FileId::of(&layout.state_file())?,
            sources,
            listings,
            absent,
            tools: (!session.simulated()).then(|| tools_text(&session.tools.identities).into()),
            warnings: warnings.into_iter().map(Cow::Owned).collect(),
            lines: lines.into(),
            nodes: records.len(),
            objects: folders(objects),
            copies: folders(copies),
        })
    }
}

impl<'a> Stamp<'a> {
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
            && FileId::of(&layout.state_file()) == Some(self.state)
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
        let intact = (self.objects.par_iter()).all(|folder| folder.listed(&objects))
            && (self.copies.par_iter()).all(|folder| folder.holds(&layout.out));
        intact.then_some(Answer {
            warnings: self.warnings,
            lines: self.lines,
            nodes: self.nodes,
        })
    }
}

impl Folder<'_> {
    /// Whether every file is in the folder's listing: for the store's
    /// objects, which are named by their content and only ever renamed
    /// into place whole, so that a name present is the object (one listing
    /// per fan-out folder instead of a stat per object).
    fn listed(&self, base: &Utf8Path) -> bool {
        if !relative(&self.dir) {
            return false;
        }
        let Ok(listing) = base.join(self.dir.as_ref()).read_dir_utf8() else {
            return false;
        };
        let present: std::collections::HashSet<String> =
            (listing.flatten()).map(|e| e.file_name().to_string()).collect();
        self.files.iter().all(|e| present.contains(e.name.as_ref()))
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
                    let mtime_ns = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
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
