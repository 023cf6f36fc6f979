//! Why a node is stale: the difference between two key materials.

use std::fmt;

use serde_json::Value;

use super::key::{Backend, KeyInput, KeyMaterial};
use crate::project::assets::file_of;

/// One difference between the last build's key material and today's.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Schema {
        from: u32,
        to: u32,
    },
    Engine {
        from: String,
        to: String,
    },
    Backend {
        from: String,
        to: String,
    },
    /// A local tool the node's engines use has another identity (a new
    /// version, other font bytes), or was added or removed.
    Tool {
        tool: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// A project file a param names has new bytes at the same path.
    Asset {
        name: String,
        file: String,
    },
    Param {
        name: String,
        from: Option<Value>,
        to: Option<Value>,
    },
    Input {
        role: String,
        from: String,
        to: String,
    },
    InputAdded {
        role: String,
    },
    InputRemoved {
        role: String,
    },
    Seed {
        from: Option<u64>,
        to: Option<u64>,
    },
}

/// Why a node will be (or was) built.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Nothing to do: the key matches the cache.
    Fresh,
    /// No build of this node is on record.
    NeverBuilt,
    /// The key changed; the changes say how.
    Changed(Vec<Change>),
    /// The key is known but its cache entry or objects are gone.
    NotInCache,
    /// Its key depends on inputs that will be rebuilt first; its own
    /// parameters may have changed too.
    InputsStale { inputs: Vec<String>, own: Vec<Change> },
}

pub fn diff(old: &KeyMaterial, new: &KeyMaterial) -> Vec<Change> {
    let mut out = Vec::new();
    if old.schema != new.schema {
        out.push(Change::Schema {
            from: old.schema,
            to: new.schema,
        });
    }
    if old.engine != new.engine {
        out.push(Change::Engine {
            from: old.engine.clone(),
            to: new.engine.clone(),
        });
    }
    let bare = |b: &Backend| Backend {
        tools: Default::default(),
        ..b.clone()
    };
    if bare(&old.backend) != bare(&new.backend) {
        out.push(Change::Backend {
            from: format!("{:?}", bare(&old.backend)),
            to: format!("{:?}", bare(&new.backend)),
        });
    }
    let (a, b) = (&old.backend.tools, &new.backend.tools);
    for tool in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        if a.get(tool) != b.get(tool) {
            out.push(Change::Tool {
                tool: tool.clone(),
                from: a.get(tool).cloned(),
                to: b.get(tool).cloned(),
            });
        }
    }
    let names = old
        .params
        .keys()
        .chain(new.params.keys())
        .collect::<std::collections::BTreeSet<_>>();
    for name in names {
        let (a, b) = (old.params.get(name), new.params.get(name));
        if a != b {
            out.extend(param_changes(name, a, b));
        }
    }
    for input in &new.inputs {
        match old.inputs.iter().find(|i| i.role == input.role) {
            None => out.push(Change::InputAdded {
                role: input.role.clone(),
            }),
            Some(o) if o != input => out.push(Change::Input {
                role: input.role.clone(),
                from: describe(o),
                to: describe(input),
            }),
            Some(_) => {}
        }
    }
    for input in &old.inputs {
        if !new.inputs.iter().any(|i| i.role == input.role) {
            out.push(Change::InputRemoved {
                role: input.role.clone(),
            });
        }
    }
    if old.seed != new.seed {
        out.push(Change::Seed {
            from: old.seed,
            to: new.seed,
        });
    }
    out
}

/// Descend into objects and arrays so a changed cue says which cue.
fn param_changes(name: &str, a: Option<&Value>, b: Option<&Value>) -> Vec<Change> {
    // A named file: which file, not a hash diff.
    match (a.and_then(file_of), b.and_then(file_of)) {
        (Some((f, _)), Some((g, _))) if f == g => {
            return vec![Change::Asset {
                name: name.to_string(),
                file: g.to_string(),
            }];
        }
        (None, None) => {}
        // Another file, or a file where there was none: their paths.
        (f, g) => {
            return vec![Change::Param {
                name: name.to_string(),
                from: f.map(|(f, _)| Value::from(f)).or_else(|| a.cloned()),
                to: g.map(|(g, _)| Value::from(g)).or_else(|| b.cloned()),
            }];
        }
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys = x.keys().chain(y.keys()).collect::<std::collections::BTreeSet<_>>();
            keys.into_iter()
                .filter(|k| x.get(*k) != y.get(*k))
                .flat_map(|k| param_changes(&format!("{name}.{k}"), x.get(k), y.get(k)))
                .collect()
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .filter(|(_, (p, q))| p != q)
            .flat_map(|(i, (p, q))| param_changes(&format!("{name}[{i}]"), Some(p), Some(q)))
            .collect(),
        _ => vec![Change::Param {
            name: name.to_string(),
            from: a.cloned(),
            to: b.cloned(),
        }],
    }
}

fn describe(i: &KeyInput) -> String {
    match (&i.hash, i.duration_ms) {
        (Some(h), _) => match &i.file {
            Some(file) => format!("its `{file}` {}", &h[..h.len().min(12)]),
            None => format!("output {}", &h[..h.len().min(12)]),
        },
        (None, Some(ms)) => format!("duration {:.3}s", ms as f64 / 1000.0),
        (None, None) => "nothing".into(),
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(unset)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 80 {
                format!("{}…", s.chars().take(79).collect::<String>())
            } else {
                s
            }
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Schema { from, to } => write!(f, "studio's key schema changed ({from} → {to})"),
            Change::Engine { from, to } => write!(f, "engine changed from {from} to {to}"),
            Change::Backend { from, to } => write!(f, "backend changed from {from} to {to}"),
            Change::Tool { tool, from, to } => match (from, to) {
                (Some(a), Some(b)) => write!(f, "{tool} changed from `{a}` to `{b}`"),
                (None, Some(b)) => write!(f, "now uses {tool} (`{b}`)"),
                (Some(a), None) => write!(f, "no longer uses {tool} (was `{a}`)"),
                (None, None) => write!(f, "{tool} changed"),
            },
            Change::Asset { name, file } => write!(f, "{file} changed (`{name}`)"),
            Change::Param { name, from, to } => write!(f, "`{name}` changed from {} to {}", show(from), show(to)),
            Change::Input { role, from, to } => write!(f, "input `{role}` changed: {from} → {to}"),
            Change::InputAdded { role } => write!(f, "new input `{role}`"),
            Change::InputRemoved { role } => write!(f, "input `{role}` removed"),
            Change::Seed { from, to } => write!(f, "seed changed from {from:?} to {to:?} (a new take)"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Fresh => f.write_str("up to date"),
            Reason::NeverBuilt => f.write_str("never built"),
            Reason::NotInCache => f.write_str("its cache entry is missing"),
            Reason::Changed(changes) => {
                let parts: Vec<String> = changes.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join("; "))
            }
            Reason::InputsStale { inputs: ids, own } => {
                for c in own {
                    write!(f, "{c}; ")?;
                }
                let shown: Vec<&str> = ids.iter().take(3).map(String::as_str).collect();
                let more = ids.len().saturating_sub(3);
                write!(f, "waits on {}", shown.join(", "))?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                if own.is_empty() {
                    f.write_str("; rebuilt only if they change")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::kind::NodeKind;

    fn material(params: serde_json::Value, tools: &[(&str, &str)]) -> KeyMaterial {
        KeyMaterial {
            schema: 2,
            kind: NodeKind::CharacterRefs,
            engine: "comfyui_txt2img".into(),
            engine_version: 1,
            backend: Backend {
                simulated: false,
                service: None,
                model: None,
                tools: tools.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
            params: serde_json::from_value::<BTreeMap<String, Value>>(params).unwrap(),
            inputs: vec![],
            seed: None,
        }
    }

    #[test]
    fn an_edited_file_is_named() {
        let old = material(
            json!({"workflow": {"file": "rules/workflows/a.json", "hash": "1"}}),
            &[],
        );
        let new = material(
            json!({"workflow": {"file": "rules/workflows/a.json", "hash": "2"}}),
            &[],
        );
        let changes = diff(&old, &new);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to_string(), "rules/workflows/a.json changed (`workflow`)");
        let other = material(
            json!({"workflow": {"file": "rules/workflows/b.json", "hash": "1"}}),
            &[],
        );
        assert_eq!(
            diff(&old, &other)[0].to_string(),
            r#"`workflow` changed from "rules/workflows/a.json" to "rules/workflows/b.json""#
        );
        let none = material(json!({}), &[]);
        assert_eq!(
            diff(&none, &old)[0].to_string(),
            r#"`workflow` changed from (unset) to "rules/workflows/a.json""#
        );
    }

    #[test]
    fn an_input_read_for_one_file_names_it() {
        let with = |file: Option<&str>, hash: &str| {
            let mut m = material(json!({}), &[]);
            m.inputs.push(KeyInput {
                role: "image".into(),
                hash: Some(hash.into()),
                file: file.map(Into::into),
                duration_ms: None,
            });
            m
        };
        let changes: Vec<String> = diff(
            &with(Some("png"), "0123456789abcdef"),
            &with(Some("png"), "fedcba9876543210"),
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            changes,
            ["input `image` changed: its `png` 0123456789ab → its `png` fedcba987654"]
        );
        let changes: Vec<String> = diff(&with(None, "0123456789abcdef"), &with(Some("png"), "0123456789abcdef"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            ["input `image` changed: output 0123456789ab → its `png` 0123456789ab"]
        );
    }

    #[test]
    fn a_tool_change_names_the_tool() {
        let old = material(json!({}), &[("espeak-ng", "eSpeak NG 1.51"), ("ffmpeg", "5.1")]);
        let new = material(json!({}), &[("espeak-ng", "eSpeak NG 1.52"), ("ffmpeg", "5.1")]);
        let changes: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(changes, ["espeak-ng changed from `eSpeak NG 1.51` to `eSpeak NG 1.52`"]);
    }
}
