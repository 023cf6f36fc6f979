//! An opened project: the model, its graph, the cache and the last build's state.

use std::io::IsTerminal;
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};

use crate::cache::index::SourceIndex;
use crate::cache::learn::Durations;
use crate::cache::state::State;
use crate::cache::{Cache, Manifest, content_hash};
use crate::exec::tools::Toolchain;
use crate::graph::explain::{Reason, diff};
use crate::graph::key::{InputFact, KeyMaterial};
use crate::graph::{self, Graph};
use crate::project::{self, Diagnostics, Project, Spans};

mod rounds;
#[cfg(test)]
mod tests;
pub use rounds::{Candidate, CharacterRounds};

/// Where a project keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: Utf8PathBuf,
    pub cache: Utf8PathBuf,
    pub out: Utf8PathBuf,
}

impl Layout {
    /// The layout of the project at `root`, made absolute: jobs run in their
    /// scratch directory, so every path they get must be.
    pub fn new(root: &Utf8Path) -> Layout {
        let root = std::path::absolute(root)
            .ok()
            .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
            .unwrap_or_else(|| root.to_owned());
        Layout {
            cache: root.join("cache"),
            out: root.join("out"),
            root,
        }
    }
}

/// A loaded project, ready to plan or build.
pub struct Session {
    pub layout: Layout,
    pub project: Project,
    pub spans: Spans,
    pub graph: Graph,
    pub cache: Cache,
    pub state: State,
    pub durations: Durations,
    pub index: SourceIndex,
    pub tools: Arc<Toolchain>,
    /// Only some episodes' screenplays were read ([`Session::open_for`]):
    /// `project.sources` holds the files read, not all of them.
    pub partial: bool,
    /// The people's decisions about candidate images (approvals.yaml).
    pub approvals: crate::project::approvals::Approvals,
    /// Where each character's review loop stood when last derived.
    pub rounds: Vec<CharacterRounds>,
    /// What [`Session::intact_all`] found on disk, by node id, with the
    /// state entry it checked: asked again while that entry is the same
    /// (the review loop's walk, then the build's plan), a node is not
    /// stat'ed twice.
    checked: std::sync::Mutex<std::collections::HashMap<String, (crate::cache::state::NodeState, bool)>>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OpenError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Project(#[from] Diagnostics),
    #[error("cannot use the cache at {path}: {source}")]
    #[diagnostic(code(studio::cache), help("check that the project folder is writable"))]
    Cache { path: Utf8PathBuf, source: std::io::Error },
}

impl Session {
    /// Load the project at `root` for `profile` and build its graph.
    pub fn open(root: &Utf8Path, profile: Option<&str>, cpu_slots: usize) -> Result<Session, OpenError> {
        Session::open_episodes(root, profile, cpu_slots, None, true)
    }

    /// [`Session::open`] for building `targets`: only the screenplays of the
    /// episodes they name are read, checked and graphed (all of them for
    /// `all`), so an episode's build costs what the episode holds.
    ///
    /// The review rounds and re-rolled takes are not derived here: the
    /// build derives them itself (`build::rounds`) before its final pass,
    /// for the targets' closure only, so a no-op build walks the graph's
    /// keys once for them instead of twice. Until then `rounds` is empty
    /// and the graph holds each character's first round and each shot's
    /// first take.
    pub fn open_for(
        root: &Utf8Path,
        profile: Option<&str>,
        cpu_slots: usize,
        targets: &[String],
    ) -> Result<Session, OpenError> {
        let episodes = graph::target::episodes_of(targets);
        Session::open_episodes(root, profile, cpu_slots, episodes.as_ref(), false)
    }

    fn open_episodes(
        root: &Utf8Path,
        profile: Option<&str>,
        cpu_slots: usize,
        episodes: Option<&std::collections::HashSet<String>>,
        expand: bool,
    ) -> Result<Session, OpenError> {
        let layout = Layout::new(root);
        let cache = Cache::open(&layout.cache).map_err(|source| OpenError::Cache {
            path: layout.cache.clone(),
            source,
        })?;
        let mut index = SourceIndex::load(&layout.cache.join("sources.json"));
        let catalog = crate::stages::registry::catalog();
        let (project, spans) = project::load::load_episodes(&layout.root, profile, &catalog, &mut index, episodes)?;
        let mut graph = graph::build::build(&project, &spans, cpu_slots)?;
        // Real CPU jobs key on the tools their engines declare; the sim
        // profile runs none.
        let tools = if project.profile.simulate.is_some() {
            Toolchain::default()
        } else {
            let tools = Toolchain::discover(&layout.cache, &mut index);
            graph.tools = tools.identities.clone();
            tools
        };
        let state = State::load(&layout.cache, episodes);
        let durations = Durations::load(&layout.cache.join("durations.json"));
        let approvals = rounds::load_approvals(&layout.root, &project)?;
        let mut session = Session {
            layout,
            project,
            spans,
            graph,
            cache,
            state,
            durations,
            index,
            tools: Arc::new(tools),
            partial: episodes.is_some(),
            approvals,
            rounds: Vec::new(),
            checked: Default::default(),
        };
        if !expand {
            return Ok(session);
        }
        // The review rounds the cache already knows, so planning, `why`
        // and `status` see the graph the last build had.
        session.rounds = session.expand_rounds()?;
        let all: Vec<usize> = (0..session.graph.nodes.len()).collect();
        session.expand_takes(&all);
        // What that walk found on disk is not kept for a build that may
        // come much later (watch opens its next session ahead).
        session.checked.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(session)
    }

    pub fn simulated(&self) -> bool {
        self.project.profile.simulate.is_some()
    }

    /// The nodes targets name, with everything they need, inputs first.
    pub fn select(&self, targets: &[String]) -> Result<Vec<usize>, Diagnostics> {
        let mut roots = Vec::new();
        for t in targets {
            roots.extend(graph::target::resolve(&self.project, &self.spans, &self.graph, t)?);
        }
        Ok(self.graph.closure(&roots))
    }

    /// A cached result for `node` under `key`: from the last build's state
    /// when it matches, else from the action cache.
    /// `intact`: the last build's objects of `node` are known to be in the
    /// store ([`Session::intact`] said so, or a walk that stat'ed them just
    /// now), so they need no second look.
    pub fn lookup(&self, node: usize, key: &str, intact: bool) -> Option<Hit> {
        let id = &self.graph.nodes[node].id;
        if let Some(s) = self.state.node(id)
            && s.key == key
            && (intact || self.cache.has_outputs(&s.outputs))
        {
            return Some(Hit {
                fact: InputFact::new(
                    s.content.clone(),
                    s.duration,
                    s.outputs.iter().map(|o| (o.suffix.as_str(), o.hash.as_str())),
                ),
                outputs: s.outputs.clone(),
                same_as_last: true,
                provisional: s.provisional.clone(),
            });
        }
        self.cache.lookup(key).map(|m| Hit::from_manifest(m, false))
    }

    /// Whether everything the last build left for `node` is still in place:
    /// its objects in the cache and its copies under `out/`, unchanged.
    pub fn intact(&self, node: usize) -> bool {
        let n = &self.graph.nodes[node];
        let Some(s) = self.state.node(&n.id) else {
            return false;
        };
        self.cache.has_outputs(&s.outputs)
            && s.outputs.iter().all(|o| {
                let rel = format!("{}.{}", n.out_stem, o.suffix);
                (self.state.copy(&rel)).is_some_and(|m| m.hash == o.hash && m.holds(&self.layout.out.join(&rel)))
            })
    }

    /// [`Session::intact`] of each of `nodes`, asked on disk in parallel.
    /// A node asked since the last `forget` whose state entry has not
    /// changed gets the earlier answer: the review loop's walk asks just
    /// before the build's plan, which asks with `forget`, so one build
    /// looks once and an answer never outlives the build that asked.
    /// (What changes the answer in between is a pass of that build, which
    /// changes the entry, or someone deleting files under `out/` or the
    /// cache within those milliseconds: the race any look has.)
    pub fn intact_all(&self, nodes: &[usize], forget: bool) -> Vec<bool> {
        use rayon::prelude::*;
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        let seen = &*checked;
        let found: Vec<(bool, bool)> = (nodes.par_iter())
            .map(|&g| {
                let id = &self.graph.nodes[g].id;
                match (seen.get(id), self.state.node(id)) {
                    (Some((was, ok)), Some(now)) if was == now => (*ok, false),
                    _ => (self.intact(g), true),
                }
            })
            .collect();
        if forget {
            checked.clear();
        } else {
            for (&g, &(ok, fresh)) in nodes.iter().zip(&found) {
                let id = &self.graph.nodes[g].id;
                if fresh && let Some(s) = self.state.node(id) {
                    checked.insert(id.clone(), (s.clone(), ok));
                }
            }
        }
        found.into_iter().map(|(ok, _)| ok).collect()
    }

    /// The key material this node was last built with, if known.
    pub fn last_material(&self, node: usize) -> Option<KeyMaterial> {
        let s = self.state.node(&self.graph.nodes[node].id)?;
        self.cache.entry(&s.key).map(|m| m.material)
    }

    /// Statically classify `nodes` (a closure, inputs first) without building:
    /// the reason each one is stale, or `Fresh`.
    pub fn plan(&self, nodes: &[usize]) -> Vec<(usize, Reason)> {
        let simulated = self.simulated();
        let mut facts: std::collections::HashMap<usize, InputFact> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for &n in nodes {
            let material = KeyMaterial::of(&self.graph, n, simulated, |i| facts.get(&i));
            let reason = match material {
                None => {
                    let inputs: Vec<String> = self.graph.nodes[n]
                        .inputs
                        .iter()
                        .filter(|i| !facts.contains_key(&i.node))
                        .map(|i| self.graph.nodes[i.node].id.clone())
                        .collect();
                    let own = match self.last_material(n) {
                        Some(mut old) => {
                            old.inputs.clear();
                            diff(&old, &KeyMaterial::own(&self.graph, n, simulated))
                        }
                        None => Vec::new(),
                    };
                    Reason::InputsStale { inputs, own }
                }
                Some(material) => {
                    let key = material.key();
                    if let Some(hit) = self.lookup(n, &key, false) {
                        facts.insert(n, hit.fact);
                        Reason::Fresh
                    } else {
                        match self.last_material(n) {
                            None if self.state.node(&self.graph.nodes[n].id).is_some() => Reason::NotInCache,
                            None => Reason::NeverBuilt,
                            Some(old) => {
                                let changes = diff(&old, &material);
                                if changes.is_empty() {
                                    Reason::NotInCache
                                } else {
                                    Reason::Changed(changes)
                                }
                            }
                        }
                    }
                }
            };
            out.push((n, reason));
        }
        out
    }

    /// The keys `nodes` (a closure, inputs first) would have if built now,
    /// as far as the cache can tell: a node whose inputs are not all cached
    /// has no known key yet. A newer build in watch mode keeps the running
    /// jobs whose keys are among these.
    pub fn wanted_keys(&self, nodes: &[usize]) -> std::collections::HashSet<String> {
        let simulated = self.simulated();
        let mut facts: std::collections::HashMap<usize, InputFact> = std::collections::HashMap::new();
        let mut wanted = std::collections::HashSet::new();
        for &n in nodes {
            let Some(key) = KeyMaterial::key_of(&self.graph, n, simulated, |i| facts.get(&i)) else {
                continue;
            };
            if let Some(hit) = self.lookup(n, &key, false) {
                facts.insert(n, hit.fact);
            }
            wanted.insert(key);
        }
        wanted
    }

    /// The source files that changed since the last build.
    pub fn changed_sources(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .project
            .sources
            .iter()
            .filter(|(p, h)| self.state.sources().get(p.as_str()).is_some_and(|old| old != h))
            .map(|(p, _)| p.to_string())
            .collect();
        out.sort();
        out
    }
}

/// A cache hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub fact: InputFact,
    pub outputs: Vec<crate::cache::OutputFile>,
    /// The key equals the one this node had after the last build.
    pub same_as_last: bool,
    /// Made by a fallback standing in for the key's first engine: why.
    pub provisional: Option<String>,
}

impl Hit {
    /// A hit on an action-cache entry.
    pub fn from_manifest(m: Manifest, same_as_last: bool) -> Hit {
        Hit {
            fact: InputFact::new(
                m.content_hash(),
                m.duration,
                m.outputs.iter().map(|o| (o.suffix.as_str(), o.hash.as_str())),
            ),
            outputs: m.outputs,
            same_as_last,
            provisional: m.provisional,
        }
    }
}

/// Whether to draw progress bars.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// The content hash of a list of outputs (re-exported for the driver).
pub fn outputs_hash(outputs: &[crate::cache::OutputFile]) -> String {
    content_hash(outputs)
}
