//! `studio status [TARGET]`: per node kind, what is built, stale, missing;
//! then the provisional nodes (built by a fallback standing in for an
//! unreachable or failing first engine: the next build that reaches that
//! engine makes them again).

use std::collections::BTreeMap;

use camino::Utf8Path;

use super::{EXIT_INVALID, EXIT_OK, out, report};
use crate::graph::explain::Reason;
use crate::kind::NodeKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(default_value = "all")]
    target: String,
    /// List every stale and missing node.
    #[arg(short, long)]
    verbose: bool,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let session = match super::open(root, profile, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let nodes = match session.select(std::slice::from_ref(&args.target)) {
        Ok(n) => n,
        Err(d) => {
            report(d);
            return EXIT_INVALID;
        }
    };
    let plan = session.plan(&nodes);
    let mut counts: BTreeMap<NodeKind, [usize; 3]> = BTreeMap::new();
    let mut list = String::new();
    let mut provisional = String::new();
    for (n, reason) in &plan {
        let node = &session.graph.nodes[*n];
        if matches!(reason, Reason::Fresh)
            && let Some(why) = session.state.node(&node.id).and_then(|s| s.provisional.as_ref())
        {
            provisional.push_str(&format!("provisional {}  ({why})\n", node.id));
        }
        let slot = match reason {
            Reason::Fresh => 0,
            _ if session.state.node(&node.id).is_some() => 1,
            _ => 2,
        };
        counts.entry(node.kind).or_default()[slot] += 1;
        if args.verbose && slot > 0 {
            let word = if slot == 1 { "stale" } else { "missing" };
            list.push_str(&format!("{word:>8} {}  ({reason})\n", node.id));
        }
    }
    let mut text = format!(
        "profile {}\n{:<16} {:>7} {:>7} {:>8}\n",
        session.project.profile.name, "kind", "built", "stale", "missing"
    );
    let mut total = [0; 3];
    for (kind, c) in &counts {
        text.push_str(&format!("{:<16} {:>7} {:>7} {:>8}\n", kind.as_str(), c[0], c[1], c[2]));
        for i in 0..3 {
            total[i] += c[i];
        }
    }
    text.push_str(&format!(
        "{:<16} {:>7} {:>7} {:>8}\n",
        "total", total[0], total[1], total[2]
    ));
    text.push_str(&list);
    text.push_str(&provisional);
    out(&text);
    EXIT_OK
}
