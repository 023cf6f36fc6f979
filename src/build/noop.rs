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

use std::fs;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache::index::stat_triple;
use crate::cache::state::Materialized;
use crate::cache::{Cache, OutputFile};
use crate::session::{Layout, Session};

/// Bumped when the stamp's layout or meaning changes: an older stamp is
/// not read.
const FORMAT: u32 = 1;

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

/// One output of one node: its object in the store and its copy in `out/`,
/// as [`Session::intact`] checks them.
#[derive(Debug, Serialize, Deserialize)]
struct Output {
    file: OutputFile,
    /// The path under `out/`, relative.
    out: Utf8PathBuf,
    copy: Materialized,
}

/// What a no-op build of some targets depended on, and what it printed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stamp {
    format: u32,
    binary: FileId,
    state: FileId,
    /// Every file the loader read, relative to the project.
    sources: Vec<(Utf8PathBuf, FileId)>,
    /// The YAML files in each folder the loader lists.
    listings: Vec<(String, Vec<Utf8PathBuf>)>,
    /// Files the loader looked for and did not find.
    absent: Vec<Utf8PathBuf>,
    /// The local tools' identities (real profiles only).
    tools: Option<String>,
    warnings: Vec<String>,
    /// The `--json` node lines, each ending in a newline.
    lines: String,
    nodes: usize,
    outputs: Vec<Output>,
}

/// What a stamp answers with.
pub struct Answer {
    pub warnings: Vec<String>,
    pub lines: String,
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
fn tools_text(tools: &std::collections::BTreeMap<crate::engines::Tool, String>) -> String {
    tools
        .iter()
        .map(|(tool, id)| format!("{}\t{id}\n", tool.as_str()))
        .collect()
}

impl Stamp {
    /// The stamp of a finished build, if it was a no-op that may have one:
    /// every node cached, none standing in for an engine out of reach, no
    /// remote cache, and every source's stat older than the racy window.
    /// `lines` are the node lines it printed (or would have, with `--json`).
    pub fn of(session: &Session, report: &super::Report, lines: String, warnings: Vec<String>) -> Option<Stamp> {
        let records = &report.records;
        if !report.ok() || report.totals.cached != records.len() || records.iter().any(|r| r.provisional) {
            return None;
        }
        let layout = &session.layout;
        let sources = (session.project.sources.iter())
            .map(|(rel, hash)| {
                let (size, mtime_ns, inode) = session.index.identity(rel, hash)?;
                Some((rel.clone(), FileId { size, mtime_ns, inode }))
            })
            .collect::<Option<Vec<_>>>()?;
        let listings = (crate::project::load::LISTED.iter())
            .map(|dir| (dir.to_string(), crate::project::load::yaml_files(&layout.root, dir)))
            .collect();
        let approvals = Utf8Path::new(crate::project::approvals::FILE);
        let absent = (!sources.iter().any(|(p, _)| p == approvals))
            .then(|| approvals.to_owned())
            .into_iter()
            .collect();
        let mut outputs = Vec::new();
        for r in records {
            let node = &session.graph.nodes[session.graph.get(&r.id)?];
            let state = session.state.nodes.get(&r.id)?;
            for o in &state.outputs {
                let out = Utf8PathBuf::from(format!("{}.{}", node.out_stem, o.suffix));
                let m = session.state.out.get(out.as_str()).filter(|m| m.hash == o.hash)?;
                outputs.push(Output {
                    file: o.clone(),
                    out,
                    copy: m.clone(),
                });
            }
        }
        Some(Stamp {
            format: FORMAT,
            binary: binary()?,
            state: FileId::of(&layout.state_file())?,
            sources,
            listings,
            absent,
            tools: (!session.simulated()).then(|| tools_text(&session.tools.identities)),
            warnings,
            lines,
            nodes: records.len(),
            outputs,
        })
    }

    /// Write the stamp (atomically: a reader sees the old one or this one).
    pub fn save(&self, path: &Utf8Path) -> std::io::Result<()> {
        let bytes = postcard::to_stdvec(self).map_err(std::io::Error::other)?;
        crate::cache::atomic::write_atomic(path, &bytes)
    }

    /// The stamp at `path`, if there is one this studio can read.
    pub fn load(path: &Utf8Path) -> Option<Stamp> {
        let bytes = fs::read(path).ok()?;
        postcard::from_bytes::<Stamp>(&bytes)
            .ok()
            .filter(|s| s.format == FORMAT)
    }

    /// The build's answer, if everything the stamp depended on is as it
    /// was: the studio binary, the state, every source (by stat), the
    /// listings, the absent files, the tools, and every output in the store
    /// and under `out/` (as [`Session::intact`] checks them).
    pub fn holds(self, layout: &Layout) -> Option<Answer> {
        let root = &layout.root;
        let same = binary() == Some(self.binary)
            && FileId::of(&layout.state_file()) == Some(self.state)
            && (self.sources.iter()).all(|(rel, id)| relative(rel) && FileId::of(&root.join(rel)) == Some(*id))
            && (self.listings.iter()).all(|(dir, names)| crate::project::load::yaml_files(root, dir) == *names)
            && (self.absent.iter()).all(|rel| relative(rel) && fs::symlink_metadata(root.join(rel)).is_err())
            && self.tools.as_ref().is_none_or(|ids| {
                let mut index = crate::cache::index::SourceIndex::load(&layout.cache.join("sources.json"));
                let tools = crate::exec::tools::Toolchain::discover(&layout.cache, &mut index);
                tools_text(&tools.identities) == *ids
            });
        if !same {
            return None;
        }
        let cache = Cache::open(&layout.cache).ok()?;
        let intact = (self.outputs.par_iter()).all(|o| {
            relative(&o.out)
                && cache.has_outputs(std::slice::from_ref(&o.file))
                && o.copy.holds(&layout.out.join(&o.out))
        });
        intact.then_some(Answer {
            warnings: self.warnings,
            lines: self.lines,
            nodes: self.nodes,
        })
    }
}

/// A path that stays inside the folder it is joined to.
fn relative(path: &Utf8Path) -> bool {
    path.components().all(|c| matches!(c, Utf8Component::Normal(_)))
}
