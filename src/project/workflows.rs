//! ComfyUI workflows in the rules: API-format JSON files the user owns,
//! named per engine in a profile's `workflows:`, with the binding map that
//! says which node input receives each parameter.
//!
//! ```yaml
//! raw_video:
//!   profiles:
//!     full:
//!       workflows:
//!         wan_t2v:
//!           file: rules/workflows/wan_t2v.json
//!           bind: {prompt: 6.text, negative: 7.text, seed: 3.seed, frames: 40.length}
//! ```
//!
//! [`resolve`] turns each entry into the rule param
//! `workflows.<engine> = {workflow: {file: PATH}, bind: {PARAM: "NODE.input"}}`,
//! so the assets resolver hashes the file (it joins the sources and its
//! content enters the key of every node whose engine chain holds the
//! engine); [`check`] then reads each file and reports every bound node or
//! input it lacks, at the rules line, naming the workflow file.

use std::collections::BTreeMap;

use camino::Utf8Path;
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use super::diag::{Collector, ProjectError, SourceFile};
use super::rules::Rules;
use crate::engines::{Catalog, Placement, ServiceKind};
use crate::kind::NodeKind;

/// The parameters a workflow input may be bound to.
pub const PARAMS: &[&str] = &[
    "prompt",
    "negative",
    "seed",
    "width",
    "height",
    "frames",
    "seconds",
    "fps",
    "steps",
    "cfg",
    "sampler",
    "checkpoint",
    "lora",
    "lora_strength",
    "denoise",
    "source_image",
    "source_video",
    "batch",
    "prefix",
];

/// Largest workflow file read.
const MAX_WORKFLOW_BYTES: u64 = 4 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub file: Spanned<String>,
    #[serde(default)]
    pub bind: BTreeMap<String, Spanned<String>>,
}

/// One binding, where it is written.
#[derive(Debug, Clone)]
pub struct Bind {
    pub engine: String,
    pub param: String,
    /// `NODE.input`.
    pub target: Spanned<String>,
}

/// `NODE.input` split at the first dot.
pub fn split_target(t: &str) -> Option<(&str, &str)> {
    t.split_once('.').filter(|(n, i)| !n.is_empty() && !i.is_empty())
}

/// Check the entries' engines and parameter names and add them to `params`
/// as `workflows`; the bindings, for [`check`].
pub fn resolve(
    file: &SourceFile,
    kind: NodeKind,
    raw: &BTreeMap<String, RawWorkflow>,
    catalog: &Catalog,
    params: &mut BTreeMap<String, Value>,
    errors: &mut Collector,
) -> Vec<Bind> {
    let mut binds = Vec::new();
    let mut out = serde_json::Map::new();
    for (engine, w) in raw {
        let ok = catalog
            .find(engine)
            .is_some_and(|e| e.kinds.contains(&kind) && e.placement == Placement::Service(ServiceKind::Comfyui));
        if !ok {
            errors.push(
                ProjectError::at(
                    file,
                    "rules::workflow_engine",
                    format!("`workflows:` names `{engine}`, which is not a ComfyUI engine for `{kind}`"),
                )
                .label_loc(file, &w.file.referenced, "this workflow")
                .help("key each workflow by a ComfyUI engine of this rule (`studio engines` lists them)"),
            );
            continue;
        }
        let mut bind = serde_json::Map::new();
        for (param, target) in &w.bind {
            if !PARAMS.contains(&param.as_str()) {
                errors.push(
                    ProjectError::at(
                        file,
                        "rules::workflow_param",
                        format!("`{param}` is not a parameter studio binds"),
                    )
                    .label_loc(file, &target.referenced, "bound here")
                    .help(format!("parameters: {}", PARAMS.join(", "))),
                );
                continue;
            }
            if split_target(&target.value).is_none() {
                errors.push(
                    ProjectError::at(
                        file,
                        "rules::workflow_target",
                        format!("`{param}: {}` does not name a node input", target.value),
                    )
                    .label_loc(file, &target.referenced, "not NODE.input")
                    .help("write the node's id and the input's name, as in the API-format JSON: `6.text`"),
                );
                continue;
            }
            bind.insert(param.clone(), json!(target.value));
            binds.push(Bind {
                engine: engine.clone(),
                param: param.clone(),
                target: target.clone(),
            });
        }
        out.insert(
            engine.clone(),
            json!({"workflow": {"file": w.file.value}, "bind": Value::Object(bind)}),
        );
    }
    if !out.is_empty() {
        params.insert("workflows".into(), Value::Object(out));
    }
    binds
}

/// Read every resolved workflow and check each binding names a node and
/// an input it has.
pub fn check(root: &Utf8Path, files: &BTreeMap<NodeKind, SourceFile>, rules: &Rules, errors: &mut Collector) {
    for (kind, rule) in &rules.by_kind {
        let Some(file) = files.get(kind) else { continue };
        let Some(Value::Object(flows)) = rule.params.get("workflows") else {
            continue;
        };
        for (engine, w) in flows {
            // Unresolved (a missing file): already reported by the assets resolver.
            let Some((path, _)) = super::assets::file_of(&w["workflow"]) else {
                continue;
            };
            let at = rule
                .binds
                .iter()
                .find(|b| b.engine == *engine)
                .map(|b| &b.target.referenced);
            let prompt = match read(&root.join(path)) {
                Ok(p) => p,
                Err(why) => {
                    let mut e = ProjectError::at(
                        file,
                        "rules::workflow_file",
                        format!("workflow {path} of `{engine}` {why}"),
                    )
                    .help("export the workflow from ComfyUI with \"Save (API)\" (API format: node id → {class_type, inputs})");
                    if let Some(at) = at {
                        e = e.label_loc(file, at, "bound to that file");
                    }
                    errors.push(e);
                    continue;
                }
            };
            for b in rule.binds.iter().filter(|b| b.engine == *engine) {
                let Some((node, input)) = split_target(&b.target.value) else {
                    continue;
                };
                let problem = match prompt.get(node) {
                    None => Some((
                        format!("node {node}"),
                        format!(
                            "its nodes: {}",
                            prompt
                                .iter()
                                .map(|(id, n)| format!("{id} ({})", n["class_type"].as_str().unwrap_or("?")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                    Some(n) if n["inputs"].get(input).is_none() => Some((
                        format!(
                            "input `{input}` on node {node} ({})",
                            n["class_type"].as_str().unwrap_or("?")
                        ),
                        format!(
                            "that node's inputs: {}",
                            n["inputs"]
                                .as_object()
                                .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
                                .unwrap_or_default()
                        ),
                    )),
                    Some(_) => None,
                };
                if let Some((what, help)) = problem {
                    errors.push(
                        ProjectError::at(
                            file,
                            "rules::workflow_binding",
                            format!(
                                "`{}` of `{engine}` is bound to {what}, which {path} does not have",
                                b.param
                            ),
                        )
                        .label_loc(file, &b.target.referenced, "bound here")
                        .help(help),
                    );
                }
            }
        }
    }
}

/// An API-format workflow: node id → `{class_type, inputs}`.
pub fn parse(text: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("is not JSON ({e})"))?;
    let Value::Object(map) = v else {
        return Err("is not a JSON object".into());
    };
    if map.contains_key("nodes") && map.contains_key("links") {
        return Err("is in ComfyUI's UI format, not the API format".into());
    }
    for (id, n) in &map {
        if !n["class_type"].is_string() || !n["inputs"].is_object() {
            return Err(format!("has node {id} without `class_type` and `inputs`"));
        }
    }
    if map.is_empty() {
        return Err("has no nodes".into());
    }
    Ok(map)
}

fn read(path: &Utf8Path) -> Result<serde_json::Map<String, Value>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot be read ({e})"))?
        .len();
    if size > MAX_WORKFLOW_BYTES {
        return Err(format!("is larger than {MAX_WORKFLOW_BYTES} bytes"));
    }
    let text = std::fs::read(path).map_err(|e| format!("cannot be read ({e})"))?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_format_only() {
        assert!(parse(br#"{"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}"#).is_ok());
        assert!(
            parse(br#"{"nodes": [], "links": []}"#)
                .unwrap_err()
                .contains("UI format")
        );
        assert!(parse(br#"{"3": {"inputs": {}}}"#).is_err());
        assert!(parse(b"[]").is_err());
        assert_eq!(split_target("6.text"), Some(("6", "text")));
        assert_eq!(split_target("6."), None);
        assert_eq!(split_target("text"), None);
    }
}
