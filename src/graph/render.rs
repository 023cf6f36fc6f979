//! `studio graph`: the graph as Graphviz dot, Mermaid or JSON.

use std::fmt::Write;

use serde_json::json;

use super::{Graph, Uses};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
    Json,
}

/// Render `nodes` (a closed set: every input of a member is a member) and their edges.
pub fn render(graph: &Graph, nodes: &[usize], format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Dot => {
            out.push_str("digraph studio {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n");
            for &i in nodes {
                let n = &graph.nodes[i];
                let _ = writeln!(
                    out,
                    "  n{i} [label={}];",
                    dot_quote(&format!("{}\n{}\n[{}]", n.kind, n.path, n.engine().name))
                );
            }
            for &i in nodes {
                for input in &graph.nodes[i].inputs {
                    let style = if !input.uses.reads_bytes() {
                        " [style=dashed]"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "  n{} -> n{i}{style};", input.node);
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("graph LR\n");
            for &i in nodes {
                let n = &graph.nodes[i];
                let label = format!("{}<br/>{}", n.kind, n.path).replace('"', "#quot;");
                let _ = writeln!(out, "  n{i}[\"{label}\"]");
            }
            for &i in nodes {
                for input in &graph.nodes[i].inputs {
                    let arrow = if input.uses.reads_bytes() { "-->" } else { "-.->" };
                    let _ = writeln!(out, "  n{} {arrow} n{i}", input.node);
                }
            }
        }
        Format::Json => {
            let list: Vec<_> = nodes
                .iter()
                .map(|&i| {
                    let n = &graph.nodes[i];
                    json!({
                        "id": n.id,
                        "kind": n.kind,
                        "engine": n.engine().name,
                        "fallbacks": n.engines[1..].iter().map(|e| e.name).collect::<Vec<_>>(),
                        "pool": graph.pools[n.pool].name,
                        // What a ComfyUI node will send (graph::prompt).
                        "prompt": n.params.get("prompt"),
                        "negative_prompt": n.params.get("negative_prompt"),
                        "inputs": n.inputs.iter().map(|i| {
                            let mut input = json!({
                                "node": graph.nodes[i.node].id,
                                "role": i.role,
                                "uses": match i.uses {
                                    Uses::Content | Uses::File(_) => "content",
                                    Uses::Duration => "duration",
                                    Uses::Speech => "speech",
                                },
                            });
                            if let Uses::File(suffix) = i.uses {
                                input["file"] = json!(suffix);
                            }
                            input
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            out = serde_json::to_string_pretty(&json!({ "nodes": list })).expect("json");
            out.push('\n');
        }
    }
    out
}

fn dot_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
