//! The module order (ARCHITECTURE.md, "Module order"), checked: no module
//! names a module of a higher layer, and no two modules name each other
//! through any chain.
//!
//! The check reads `src/**/*.rs` for `crate::PATH` and attributes each to
//! the module of the file (its two-segment path when the table lists one,
//! else its top-level module). Comments, `#[cfg(test)]` blocks at the end
//! of a file and test-only files (`tests.rs`, `*_tests.rs`,
//! `test_support.rs`) are not read: a unit test may build what
//! it checks from a higher layer (the registry's catalog, for one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module's layer; a module may name its own layer and lower ones.
const LAYERS: &[(&str, u8)] = &[
    // Leaves: nothing of the crate.
    ("kind", 0),
    ("timing", 0),
    ("text", 0),
    ("review", 0),
    ("cache::atomic", 0),
    ("cache::index", 0),
    // The pure core: the model, engine data, the graph and keys, the scheduler.
    ("engines", 1),
    ("project", 1),
    ("graph", 1),
    ("sched", 1),
    // Storage.
    ("cache", 2),
    // What runs a job (runner, http, sim, tools, Job).
    ("exec", 3),
    // The engines' run functions and their registry; the screenplay writer.
    ("stages", 4),
    ("write", 4),
    ("export", 4),
    // The driver.
    ("build", 5),
    ("session", 5),
    ("progress", 5),
    // The command line.
    ("cli", 6),
];

/// The table's module a `::`-separated path falls in.
fn module_of(path: &[&str]) -> Option<&'static str> {
    let two = path.get(..2).map(|p| p.join("::"));
    LAYERS
        .iter()
        .find(|(m, _)| two.as_deref() == Some(*m))
        .or_else(|| LAYERS.iter().find(|(m, _)| path.first() == Some(m)))
        .map(|(m, _)| *m)
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .expect("listed")
}

/// The `crate::` paths of non-test code in `text`, as segments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            let path: Vec<String> = after[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            assert!(
                !after.starts_with('{'),
                "write `use crate::a; use crate::b;`, not `use crate::{{...}}`: {line}"
            );
            paths.push(path);
            rest = &after[end..];
        }
    }
    paths
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `from → {to: a file that shows it}` for every file of the library.
fn edges() -> BTreeMap<&'static str, BTreeMap<&'static str, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        let stem = rel.trim_end_matches(".rs").trim_end_matches("/mod");
        let name = stem.rsplit('/').next().unwrap_or("");
        if matches!(rel.as_str(), "lib.rs" | "main.rs" | "layers.rs" | "test_support.rs")
            || name == "tests"
            || name.ends_with("_tests")
        {
            continue;
        }
        let own: Vec<&str> = stem.split('/').collect();
        let from = module_of(&own).unwrap_or_else(|| panic!("{rel}: add its module to LAYERS"));
        let text = std::fs::read_to_string(&file).expect("readable");
        for path in crate_paths(&text) {
            let segs: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(to) = module_of(&segs) else {
                panic!("{rel}: `crate::{}` is in no module of LAYERS", path.join("::"));
            };
            if to != from {
                edges.entry(from).or_default().entry(to).or_insert_with(|| rel.clone());
            }
        }
    }
    edges
}

#[test]
fn no_module_names_a_higher_layer() {
    let mut wrong = Vec::new();
    for (from, tos) in edges() {
        for (to, file) in tos {
            if layer(to) > layer(from) {
                wrong.push(format!(
                    "{from} (layer {}) uses {to} (layer {}) in {file}",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "modules out of order:\n{}", wrong.join("\n"));
}

#[test]
fn modules_form_no_cycle() {
    let edges = edges();
    // Depth-first search; a module met again while on the stack closes a cycle.
    fn visit<'a>(
        m: &'a str,
        edges: &BTreeMap<&'a str, BTreeMap<&'a str, String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(m);
            return Some(cycle);
        }
        if !done.insert(m) {
            return None;
        }
        stack.push(m);
        for to in edges.get(m).into_iter().flat_map(|t| t.keys()) {
            if let Some(c) = visit(to, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for (m, _) in LAYERS {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_reader_finds_paths_and_skips_comments_and_tests() {
    let text = "use crate::graph::key::Key;\n// crate::cli::x\nlet a = crate::exec::run(crate::kind::NodeKind::Episode);\n#[cfg(test)]\nuse crate::cli::y;\n";
    let got: Vec<String> = crate_paths(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["graph::key::Key", "exec::run", "kind::NodeKind::Episode"]);
    assert_eq!(module_of(&["cache", "index", "SourceIndex"]), Some("cache::index"));
    assert_eq!(module_of(&["cache", "remote"]), Some("cache"));
}
