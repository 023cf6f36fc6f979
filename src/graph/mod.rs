//! The artifact graph: one node per artifact, edges for data dependencies.
//!
//! [`build::build`] turns a resolved project into a [`Graph`]; [`key`] says
//! what a node's cache key is made of; [`explain`] compares keys to say why
//! a node is stale. Nothing here touches the disk.

pub mod build;
pub mod explain;
pub mod key;
pub mod prompt;
pub mod render;
pub mod review;
pub mod rounds;
pub mod target;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::engines::{EngineSpec, ServiceKind, Tool};
use crate::kind::NodeKind;

/// How a dependent uses an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uses {
    /// The input's bytes: its output hash enters the key.
    Content,
    /// Only its media duration (timing): the duration enters the key, so a
    /// new take of a shot with the same length does not rebuild the music.
    Duration,
    /// A dialogue line timing its shot: only the shot length the lines
    /// require enters the key (one `length` entry for all of them), so a
    /// reworded line that still fits does not rebuild the shot.
    Speech,
    /// One output file of a node that makes several, named by its suffix
    /// (`png`: the storyboard's plate, not its review panel): only that
    /// file's hash enters the key, and the job is handed only that file.
    File(&'static str),
}

impl Uses {
    /// Whether the input's bytes (all of them, or one file's) enter the key.
    pub fn reads_bytes(self) -> bool {
        matches!(self, Uses::Content | Uses::File(_))
    }

    /// Whether a dependent using the input this way reads its output file
    /// with `suffix` (an input read for its timing reads none).
    pub fn reads_file(self, suffix: &str) -> bool {
        match self {
            Uses::File(wanted) => wanted == suffix,
            Uses::Content | Uses::Duration | Uses::Speech => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Input {
    pub node: usize,
    /// What the input is to this node (`image`, `voice:sh02/1`, `shot:sh01`).
    pub role: String,
    pub uses: Uses,
}

/// One artifact to build.
#[derive(Debug, Clone)]
pub struct Node {
    /// `kind:path`, e.g. `voice_line:ep01/s01/sh02/1`.
    pub id: String,
    pub kind: NodeKind,
    /// Stable path of the thing it belongs to, e.g. `ep01/s01/sh02/1`.
    pub path: String,
    /// The engine chosen by the rules, then its fallbacks.
    pub engines: Vec<&'static EngineSpec>,
    /// Index into [`Graph::pools`]: where the chosen engine runs.
    pub pool: usize,
    /// The pool of each engine in `engines` (`pools[0] == pool`): a
    /// fallback may run in another group, or here.
    pub pools: Vec<usize>,
    /// The resolved rule params and the node's own recipe (text, prompts…).
    pub params: BTreeMap<String, Value>,
    pub inputs: Vec<Input>,
    /// Present only when the chosen engine is stochastic.
    pub seed: Option<u64>,
    /// Expected media length, for cost estimates.
    pub media_seconds: f64,
    pub retries: u32,
    /// Output location under `out/`, without extension.
    pub out_stem: String,
}

impl Node {
    pub fn engine(&self) -> &'static EngineSpec {
        self.engines[0]
    }
}

/// A pool of slots jobs run in: `cpu`, `inline`, and one per executor
/// group (its hosts). A node is pinned to a pool; the scheduler picks the
/// host when the job starts.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// All the pool's slots (its hosts' together).
    pub slots: usize,
    /// The protocol of the group's hosts.
    pub service: Option<ServiceKind>,
    /// The group's hosts (empty for `cpu` and `inline`, which are one host).
    pub hosts: Vec<Host>,
    /// The model the service runs, part of the backend identity.
    pub model: Option<String>,
}

/// One executor of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The executor's id.
    pub id: String,
    /// Index into [`crate::project::model::Project::executors`].
    pub executor: usize,
    pub slots: usize,
}

impl Pool {
    /// A pool of work done on this machine (`cpu`, `inline`): no hosts, no
    /// service, no model.
    pub fn local(name: &str, slots: usize) -> Pool {
        Pool {
            name: name.into(),
            slots,
            service: None,
            hosts: Vec::new(),
            model: None,
        }
    }

    /// The slots of each host; `cpu` and `inline` are one host.
    pub fn host_slots(&self) -> Vec<usize> {
        if self.hosts.is_empty() {
            vec![self.slots]
        } else {
            self.hosts.iter().map(|h| h.slots).collect()
        }
    }
}

#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub by_id: HashMap<String, usize>,
    pub pools: Vec<Pool>,
    /// Each local tool's identity (version line or content hash), found
    /// once per session by whoever runs real tools; empty for the sim
    /// profile. A node's key holds those of its engines' tools only.
    pub tools: BTreeMap<Tool, String>,
}

impl Graph {
    pub fn get(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Every node `roots` need, in a dependency order (inputs first).
    pub fn closure(&self, roots: &[usize]) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut order = Vec::new();
        // Iterative post-order DFS: inputs before dependents.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for &r in roots {
            if seen[r] {
                continue;
            }
            seen[r] = true;
            stack.push((r, 0));
            while let Some((n, i)) = stack.pop() {
                if let Some(input) = self.nodes[n].inputs.get(i) {
                    stack.push((n, i + 1));
                    let m = input.node;
                    if !seen[m] {
                        seen[m] = true;
                        stack.push((m, 0));
                    }
                } else {
                    order.push(n);
                }
            }
        }
        order
    }

    /// For each node, the nodes that use it.
    pub fn dependents(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for input in &n.inputs {
                out[input.node].push(i);
            }
        }
        out
    }
}
