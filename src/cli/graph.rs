//! `studio graph TARGET --format dot|mermaid|json`.

use camino::Utf8Path;

use super::{EXIT_INVALID, EXIT_OK, out, report};
use crate::graph::render::{Format, render};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to show: `ep01`, `ep01/s02`, `all`, a node id.
    #[arg(default_value = "all")]
    target: String,
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let session = match super::open(root, profile, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match session.select(std::slice::from_ref(&args.target)) {
        Ok(nodes) => {
            out(&render(&session.graph, &nodes, args.format));
            EXIT_OK
        }
        Err(d) => {
            report(d);
            EXIT_INVALID
        }
    }
}
