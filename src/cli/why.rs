//! `studio why NODE`: why a node is stale, down to the change that caused it,
//! and what its last build recorded (the engine, the executor, a seed…).

use std::collections::HashMap;

use camino::Utf8Path;

use super::{EXIT_INVALID, EXIT_OK, out, report};
use crate::graph::explain::Reason;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A node id (`voice_line:ep01/s01/sh02/1`) or a target (`ep01/s01/sh02`).
    node: String,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let session = match super::open(root, profile, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let roots = match crate::graph::target::resolve(&session.project, &session.spans, &session.graph, &args.node) {
        Ok(r) => r,
        Err(d) => {
            report(d);
            return EXIT_INVALID;
        }
    };
    let nodes = session.graph.closure(&roots);
    let plan: HashMap<usize, Reason> = session.plan(&nodes).into_iter().collect();
    let mut text = String::new();
    let changed = session.changed_sources();
    if !changed.is_empty() {
        text.push_str(&format!("changed since the last build: {}\n", changed.join(", ")));
    }
    for &r in &roots {
        explain(&session, &plan, r, 0, &mut text, &mut Vec::new());
        recorded(&session, r, &mut text);
    }
    out(&text);
    EXIT_OK
}

/// Why `node` is stale (or that it is up to date) and what its last build
/// recorded, as `studio why` prints it for one node.
pub(super) fn explain_text(session: &crate::session::Session, plan: &HashMap<usize, Reason>, node: usize) -> String {
    let mut text = String::new();
    explain(session, plan, node, 0, &mut text, &mut Vec::new());
    recorded(session, node, &mut text);
    text
}

/// The metadata the node's last build recorded, as `key: value` lines
/// (values in JSON; metadata was checked to hold no control character).
fn recorded(session: &crate::session::Session, node: usize, text: &mut String) {
    let id = &session.graph.nodes[node].id;
    let Some(entry) = session.state.node(id).and_then(|s| session.cache.entry(&s.key)) else {
        return;
    };
    if entry.metadata.is_empty() {
        return;
    }
    text.push_str(&format!("  last built by {}:\n", entry.engine));
    for (key, value) in &entry.metadata {
        let shown = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("    {key}: {shown}\n"));
    }
}

/// Print the reason for `node`; for a node stale only through its inputs,
/// follow them to the changes that started it.
fn explain(
    session: &crate::session::Session,
    plan: &HashMap<usize, Reason>,
    node: usize,
    depth: usize,
    text: &mut String,
    seen: &mut Vec<usize>,
) {
    let n = &session.graph.nodes[node];
    let reason = &plan[&node];
    let pad = "  ".repeat(depth);
    if seen.contains(&node) {
        return;
    }
    seen.push(node);
    match reason {
        Reason::InputsStale { own, .. } => {
            if own.is_empty() {
                text.push_str(&format!("{pad}{} is stale because its inputs are:\n", n.id));
            } else {
                text.push_str(&format!("{pad}{} is stale:\n", n.id));
                for c in own {
                    text.push_str(&format!("{pad}  - {c}\n"));
                }
                text.push_str(&format!("{pad}  and its inputs are:\n"));
            }
            for input in &n.inputs {
                if plan.get(&input.node).is_some_and(|r| *r != Reason::Fresh) {
                    explain(session, plan, input.node, depth + 1, text, seen);
                }
            }
        }
        Reason::Changed(changes) => {
            text.push_str(&format!("{pad}{} is stale:\n", n.id));
            for c in changes {
                text.push_str(&format!("{pad}  - {c}\n"));
            }
        }
        other => text.push_str(&format!("{pad}{}: {other}\n", n.id)),
    }
}
