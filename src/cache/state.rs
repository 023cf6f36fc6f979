//! The last build's state: node id → key and outputs, and what `out/` holds.
//!
//! This is a cache of the action cache, read in one go so a no-op build
//! never opens per-node files. Losing it (a `kill -9`) costs only lookups.
//!
//! It is kept in shards, one file each, so that a build reads and writes
//! what its targets hold and not the whole project's:
//!
//! ```text
//! cache/state/project.json         the characters' nodes and copies, the sources
//! cache/state/episodes/<id>.json   one episode's nodes and copies
//! ```
//!
//! An entry's shard follows from its name alone ([`Shard::of_node`],
//! [`Shard::of_copy`]), and a shard is read before it is first written, so
//! a build that touches a shard it did not load loses none of its entries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;

use camino::{Utf8Path, Utf8PathBuf};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::OutputFile;
use super::atomic::{self, load_json};
use crate::kind::NodeKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub key: String,
    pub content: String,
    pub duration: Option<f64>,
    pub outputs: Vec<OutputFile>,
    /// Made by a fallback standing in for the key's first engine (the
    /// manifest's `provisional`): why. `studio status` lists these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional: Option<String>,
}

/// A file under `out/`: the object it was copied from and its stat then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Materialized {
    pub hash: super::Digest,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Materialized {
    /// Whether the file at `path` (under `out/`) is still this copy: its
    /// size and modification time are those recorded when it was written.
    pub fn holds(&self, path: &Utf8Path) -> bool {
        std::fs::metadata(path).is_ok_and(|meta| meta.len() == self.size && mtime_ns(&meta) == self.mtime_ns)
    }
}

/// A file's modification time in nanoseconds, as [`Materialized`] records it.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    super::index::ns(meta.mtime(), meta.mtime_nsec())
}

/// Which file of the state an entry lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shard {
    /// Everything not of one episode: the characters' nodes, the cast's
    /// voice samples, the sources.
    Project,
    Episode(String),
}

impl Shard {
    /// The shard of node `id` (`kind:path`): the episode its path starts
    /// with (`shot_video:ep01/s01/sh01`, `episode_audio:ep01.ja`), else the
    /// project's (a character's nodes, `voice_line:cast/aoi`).
    pub fn of_node(id: &str) -> Shard {
        let (kind, path) = id.split_once(':').unwrap_or(("", id));
        let per_character = [NodeKind::CharacterRefs, NodeKind::Candidate, NodeKind::Review];
        if per_character.iter().any(|k| k.as_str() == kind) {
            return Shard::Project;
        }
        Shard::of_copy(path)
    }

    /// The shard of the copy at `rel` under `out/` (an episode's files are
    /// under its id; `characters/` and `cast/` are the project's).
    pub fn of_copy(rel: &str) -> Shard {
        match rel.split(['/', '.']).next().unwrap_or_default() {
            "characters" | "cast" => Shard::Project,
            first if crate::project::load::valid_id(first) => Shard::Episode(first.to_string()),
            _ => Shard::Project,
        }
    }

    /// Its file under the state's folder (an episode's id is a valid id,
    /// so a file name of its own).
    fn file(&self, dir: &Utf8Path) -> Utf8PathBuf {
        match self {
            Shard::Project => dir.join("project.json"),
            Shard::Episode(id) => dir.join("episodes").join(format!("{id}.json")),
        }
    }
}

/// One shard's entries, as its file holds them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Part {
    nodes: HashMap<String, NodeState>,
    /// Path relative to `out/` → what it holds.
    out: HashMap<String, Materialized>,
    /// Source file → hash at the last build, for `studio why` (the
    /// project's shard only).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    sources: HashMap<String, String>,
}

#[derive(Debug)]
pub struct State {
    /// `cache/state`.
    dir: Utf8PathBuf,
    /// The shards read from disk (or found absent there): only these are
    /// written back.
    parts: HashMap<Shard, Part>,
    /// Shards changed since they were read.
    dirty: BTreeSet<Shard>,
    /// The single file of an earlier version, read in place of the shards:
    /// removed once they are written.
    legacy: Option<Utf8PathBuf>,
}

impl State {
    /// Read the project's shard and those of `episodes` (every shard when
    /// `None`) from `cache/state/`.
    pub fn load(cache: &Utf8Path, episodes: Option<&HashSet<String>>) -> State {
        let dir = cache.join("state");
        let legacy = cache.join("state.json");
        if !dir.is_dir() && legacy.is_file() {
            return State::upgrade(dir, legacy);
        }
        let mut shards = vec![Shard::Project];
        match episodes {
            Some(ids) => shards.extend(ids.iter().filter(|id| valid(id)).map(|id| Shard::Episode(id.clone()))),
            None => shards.extend(
                (dir.join("episodes").read_dir_utf8().into_iter().flatten().flatten())
                    .filter_map(|e| e.file_name().strip_suffix(".json").map(str::to_string))
                    .filter(|id| valid(id))
                    .map(Shard::Episode),
            ),
        }
        let parts = (shards.into_par_iter())
            .map(|s| {
                let part = load_json::<Part>(&s.file(&dir));
                (s, part)
            })
            .collect();
        State {
            parts,
            ..State::empty(dir)
        }
    }

    fn empty(dir: Utf8PathBuf) -> State {
        State {
            dir,
            parts: [(Shard::Project, Part::default())].into(),
            dirty: BTreeSet::new(),
            legacy: None,
        }
    }

    /// Every shard.
    pub fn load_all(cache: &Utf8Path) -> State {
        State::load(cache, None)
    }

    /// The state of an earlier version, one file (a shard's layout, all
    /// of it in one), split into shards that the next save writes.
    fn upgrade(dir: Utf8PathBuf, legacy: Utf8PathBuf) -> State {
        let whole: Part = load_json(&legacy);
        let mut state = State {
            legacy: Some(legacy),
            ..State::empty(dir)
        };
        state.set_sources(whole.sources);
        for (id, s) in whole.nodes {
            state.insert_node(id, s);
        }
        for (rel, m) in whole.out {
            state.insert_copy(rel, m);
        }
        state
    }

    /// The shard files this state read, relative to the cache folder, for
    /// what depends on them (the no-op stamp).
    pub fn files(&self) -> Vec<String> {
        let mut shards: Vec<&Shard> = self.parts.keys().collect();
        shards.sort();
        shards
            .into_iter()
            .map(|s| s.file(Utf8Path::new("state")).into_string())
            .collect()
    }

    /// The shard `shard`, read from disk first if it was not.
    fn part(&mut self, shard: Shard) -> &mut Part {
        let dir = &self.dir;
        self.parts.entry(shard).or_insert_with_key(|s| load_json(&s.file(dir)))
    }

    /// What the last build left for node `id`.
    pub fn node(&self, id: &str) -> Option<&NodeState> {
        self.parts.get(&Shard::of_node(id))?.nodes.get(id)
    }

    /// Every node entry read.
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &NodeState)> {
        self.parts.values().flat_map(|p| &p.nodes)
    }

    /// What the copy at `rel` under `out/` was when written.
    pub fn copy(&self, rel: &str) -> Option<&Materialized> {
        self.parts.get(&Shard::of_copy(rel))?.out.get(rel)
    }

    pub fn insert_node(&mut self, id: String, s: NodeState) {
        let shard = Shard::of_node(&id);
        self.part(shard.clone()).nodes.insert(id, s);
        self.dirty.insert(shard);
    }

    pub fn insert_copy(&mut self, rel: String, m: Materialized) {
        let shard = Shard::of_copy(&rel);
        self.part(shard.clone()).out.insert(rel, m);
        self.dirty.insert(shard);
    }

    /// Forget every copy under `out/` the shards read name (`out/` was
    /// removed; [`State::load_all`] reads every shard).
    pub fn clear_copies(&mut self) {
        for (shard, part) in &mut self.parts {
            if !part.out.is_empty() {
                part.out.clear();
                self.dirty.insert(shard.clone());
            }
        }
    }

    /// The sources the last builds read, and their hashes.
    pub fn sources(&self) -> &HashMap<String, String> {
        &self.parts[&Shard::Project].sources
    }

    pub fn set_sources(&mut self, sources: HashMap<String, String>) {
        if *self.sources() != sources {
            self.part(Shard::Project).sources = sources;
            self.dirty.insert(Shard::Project);
        }
    }

    /// Write the shards that changed, each atomically (a reader sees a
    /// shard's old file or its new one; shards are independent caches of
    /// the action cache, so a crash between two costs only lookups).
    pub fn save(&mut self) -> io::Result<()> {
        let dirty: Vec<&Shard> = self.dirty.iter().collect();
        let dirs: BTreeSet<Utf8PathBuf> = (dirty.par_iter())
            .map(|s| {
                let file = s.file(&self.dir);
                let bytes = serde_json::to_vec(&self.parts[*s]).map_err(io::Error::other)?;
                let dir = file.parent().unwrap_or(&self.dir).to_owned();
                atomic::place(&dir, &file, &bytes)?;
                Ok(dir)
            })
            .collect::<io::Result<_>>()?;
        // One fsync of each folder for all the renames into it.
        dirs.iter().try_for_each(|d| atomic::sync_dir(d))?;
        self.dirty.clear();
        if let Some(legacy) = self.legacy.take() {
            std::fs::remove_file(&legacy).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })?;
        }
        Ok(())
    }
}

fn valid(id: &str) -> bool {
    crate::project::load::valid_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> NodeState {
        NodeState {
            key: key.into(),
            content: "c".into(),
            duration: None,
            outputs: Vec::new(),
            provisional: None,
        }
    }

    #[test]
    fn entries_go_to_the_shard_of_their_episode_or_the_project() {
        let ep = |id: &str| Shard::Episode(id.into());
        assert_eq!(Shard::of_node("shot_video:ep01/s01/sh01"), ep("ep01"));
        assert_eq!(Shard::of_node("episode_audio:ep01.ja"), ep("ep01"));
        assert_eq!(Shard::of_node("episode:ep02"), ep("ep02"));
        assert_eq!(Shard::of_node("voice_line:cast/aoi"), Shard::Project);
        assert_eq!(Shard::of_node("character_refs:ep01"), Shard::Project);
        assert_eq!(Shard::of_node("candidate:aoi/r2/4"), Shard::Project);
        assert_eq!(Shard::of_node("review:aoi/r2/4"), Shard::Project);
        assert_eq!(Shard::of_copy("ep01/s01/sh01/shot.mkv"), ep("ep01"));
        assert_eq!(Shard::of_copy("ep01/ep01.ja.m4a"), ep("ep01"));
        assert_eq!(Shard::of_copy("characters/aoi/pool.json"), Shard::Project);
        assert_eq!(Shard::of_copy("cast/aoi/voice-sample.wav"), Shard::Project);
        assert_eq!(Shard::of_copy("../x"), Shard::Project);
    }

    #[test]
    fn a_partial_state_writes_its_shards_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Utf8Path::from_path(dir.path()).unwrap();
        let mut all = State::load_all(cache);
        all.insert_node("episode:ep01".into(), entry("a1"));
        all.insert_node("episode:ep02".into(), entry("b1"));
        all.insert_node("character_refs:aoi".into(), entry("c1"));
        all.save().unwrap();

        let only: HashSet<String> = ["ep01".to_string()].into();
        let mut part = State::load(cache, Some(&only));
        assert_eq!(part.node("episode:ep01").unwrap().key, "a1");
        assert_eq!(part.node("character_refs:aoi").unwrap().key, "c1");
        assert!(part.node("episode:ep02").is_none(), "ep02's shard is not read");
        part.insert_node("episode:ep01".into(), entry("a2"));
        // A shard it did not read is read before it is written.
        part.insert_node("shot_image:ep02/s01/sh01".into(), entry("b2"));
        part.save().unwrap();

        let again = State::load_all(cache);
        let keys: BTreeSet<(&str, &str)> = again.nodes().map(|(id, s)| (id.as_str(), s.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("character_refs:aoi", "c1"),
                ("episode:ep01", "a2"),
                ("episode:ep02", "b1"),
                ("shot_image:ep02/s01/sh01", "b2"),
            ]
            .into()
        );
    }

    #[test]
    fn the_single_file_of_an_earlier_version_is_split_on_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Utf8Path::from_path(dir.path()).unwrap();
        let whole = serde_json::json!({
            "nodes": {"episode:ep01": entry("a"), "character_refs:aoi": entry("c")},
            "out": {},
            "sources": {"studio.yaml": "h"},
        });
        std::fs::write(cache.join("state.json"), whole.to_string()).unwrap();
        let only: HashSet<String> = ["ep02".to_string()].into();
        let mut state = State::load(cache, Some(&only));
        assert_eq!(state.node("episode:ep01").unwrap().key, "a");
        state.save().unwrap();
        assert!(!cache.join("state.json").exists());
        let again = State::load_all(cache);
        assert_eq!(again.node("episode:ep01").unwrap().key, "a");
        assert_eq!(again.node("character_refs:aoi").unwrap().key, "c");
        assert_eq!(again.sources()["studio.yaml"], "h");
    }
}
