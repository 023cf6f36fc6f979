//! Files a project names — workflows, LoRAs, reference clips, voice models,
//! soundfonts — resolved at load to their content hash, so they enter keys
//! by content and an edit in place rebuilds the nodes that read them.
//!
//! A file is named by a `{file: PATH}` value: anywhere in a rule's params
//! (`workflow: {file: rules/workflows/txt2img.json}`), and in the
//! studio.yaml fields that may name one (a character's `lora:`, its voice's
//! `reference_audio:` and `model:`, where a plain string stays a name the
//! service knows). PATH is relative to the project folder and stays inside
//! it: no absolute path, no `..`, nothing under studio's `cache/` or `out/`.
//! The loader checks the file exists and replaces the value with
//! `{file: PATH, hash: BLAKE3}`, hashed through the [`SourceIndex`] (a file
//! whose size, mtime and inode are unchanged is not read again). The file
//! joins the project's sources, so `studio watch` rebuilds when it changes
//! and `studio why` names it.

use std::collections::BTreeMap;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use miette::SourceSpan;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use super::diag::{Collector, ProjectError, SourceFile};
use super::model::Character;
use super::rules::Rules;
use crate::cache::index::SourceIndex;
use crate::kind::NodeKind;

/// A studio.yaml value that is a name (`hana_v2`, known to the service) or
/// a project file (`{file: voices/hana.wav}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum NameOrFile {
    Name(String),
    File(FileRef),
}

/// `{file: PATH}`; after loading, `hash` holds the file's blake3.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub file: String,
    #[serde(default, skip_deserializing, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// The text of a name or file, where it is, for the loader's length limits.
pub fn text_of(v: &Spanned<NameOrFile>) -> Spanned<String> {
    let text = match &v.value {
        NameOrFile::Name(name) => name.clone(),
        NameOrFile::File(f) => f.file.clone(),
    };
    Spanned::new(text, v.referenced, v.defined)
}

/// The project file a resolved param value names: `(path, hash)` of a
/// `{file, hash}` object, `None` for any other value.
pub fn file_of(value: &Value) -> Option<(&str, &str)> {
    let map = value.as_object()?;
    if map.len() != 2 {
        return None;
    }
    Some((map.get("file")?.as_str()?, map.get("hash")?.as_str()?))
}

/// Why a `file:` path is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    TooLong,
    Absolute,
    LeavesProject,
    StudioOutput(&'static str),
}

impl std::fmt::Display for PathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathProblem::Empty => f.write_str("is empty"),
            PathProblem::TooLong => write!(f, "is longer than {} bytes", super::bounds::text::PATH),
            PathProblem::Absolute => f.write_str("is an absolute path"),
            PathProblem::LeavesProject => f.write_str("leaves the project folder (`..`)"),
            PathProblem::StudioOutput(dir) => write!(f, "is under studio's own `{dir}/`"),
        }
    }
}

/// `raw` as a normalized path inside the project (`./a//b` → `a/b`).
pub fn project_path(raw: &str) -> Result<Utf8PathBuf, PathProblem> {
    if raw.len() > super::bounds::text::PATH {
        return Err(PathProblem::TooLong);
    }
    let mut out = Utf8PathBuf::new();
    for c in Utf8Path::new(raw).components() {
        match c {
            Utf8Component::Normal(part) => out.push(part),
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => return Err(PathProblem::LeavesProject),
            Utf8Component::RootDir | Utf8Component::Prefix(_) => return Err(PathProblem::Absolute),
        }
    }
    match out.components().next().map(|c| c.as_str()) {
        None => Err(PathProblem::Empty),
        Some("cache") => Err(PathProblem::StudioOutput("cache")),
        Some("out") => Err(PathProblem::StudioOutput("out")),
        Some(_) => Ok(out),
    }
}

/// Resolves `{file: PATH}` values while a project loads.
pub struct Resolver<'a> {
    root: &'a Utf8Path,
    index: &'a mut SourceIndex,
    sources: &'a mut Vec<(Utf8PathBuf, String)>,
    errors: &'a mut Collector,
}

/// Where a value sits, for its diagnostic.
struct Place<'f> {
    file: &'f SourceFile,
    /// The value's span, when the parser kept it.
    span: Option<SourceSpan>,
    /// Else: search for the path from here on (the rule's section).
    from: usize,
    /// `workflow`, `hana's voice.model`: what the message calls the value.
    what: String,
}

impl<'a> Resolver<'a> {
    pub fn new(
        root: &'a Utf8Path,
        index: &'a mut SourceIndex,
        sources: &'a mut Vec<(Utf8PathBuf, String)>,
        errors: &'a mut Collector,
    ) -> Self {
        Resolver {
            root,
            index,
            sources,
            errors,
        }
    }

    /// A character's `lora:`, `voice.reference_audio:` and `voice.model:`.
    pub fn characters(&mut self, studio: &SourceFile, characters: &mut [Character]) {
        for c in characters {
            let id = c.id.clone();
            let fields = [
                ("lora", &mut c.lora),
                ("voice.reference_audio", &mut c.voice.reference_audio),
                ("voice.model", &mut c.voice.model),
            ];
            for (field, value) in fields {
                let Some(value) = value else { continue };
                let span = studio.span(&value.referenced);
                if let NameOrFile::File(f) = &mut value.value {
                    let place = Place {
                        file: studio,
                        span,
                        from: 0,
                        what: format!("{id}'s `{field}`"),
                    };
                    if let Some((path, hash)) = self.resolve(&f.file, &place) {
                        f.file = path.into_string();
                        f.hash = hash;
                    }
                }
            }
        }
    }

    /// One project file studio.yaml names at `span` (a music library's
    /// track): checked and hashed like any `{file:}`, or reported.
    pub fn file(
        &mut self,
        studio: &SourceFile,
        raw: &str,
        span: Option<SourceSpan>,
        what: String,
    ) -> Option<(Utf8PathBuf, String)> {
        let place = Place {
            file: studio,
            span,
            from: 0,
            what,
        };
        self.resolve(raw, &place)
    }

    /// Report a mistake found beside the files (a track's unknown mood).
    pub fn push(&mut self, e: ProjectError) {
        self.errors.push(e);
    }

    /// Every `{file: PATH}` in the rules' params, at any depth.
    pub fn rules(&mut self, files: &BTreeMap<NodeKind, SourceFile>, rules: &mut Rules) {
        for (kind, rule) in &mut rules.by_kind {
            let Some(file) = files.get(kind) else { continue };
            let from = file.key_span(kind.as_str()).map_or(0, |s| s.offset());
            for (name, value) in &mut rule.params {
                let place = Place {
                    file,
                    span: None,
                    from,
                    what: format!("`{name}`"),
                };
                self.walk(value, &place);
            }
        }
    }

    fn walk(&mut self, value: &mut Value, place: &Place) {
        match value {
            Value::Object(map) if map.contains_key("file") => {
                let path = match (map.len(), map.get("file")) {
                    (1, Some(Value::String(p))) => p.clone(),
                    _ => {
                        let mut shown = serde_json::to_string(&*map).unwrap_or_default();
                        if shown.chars().count() > 80 {
                            shown = shown.chars().take(79).chain(['…']).collect();
                        }
                        let needle = map.get("file").and_then(Value::as_str).unwrap_or("file:");
                        self.errors.push(
                            ProjectError::at(
                                place.file,
                                "asset::shape",
                                format!("{} is `{shown}`, not a file reference", place.what),
                            )
                            .label(place.file, locate(place.file, place.from, needle), "here")
                            .help("name a project file as `{file: PATH}`, with nothing else in the mapping"),
                        );
                        return;
                    }
                };
                if let Some((path, hash)) = self.resolve(&path, place) {
                    *value = serde_json::json!({"file": path.as_str(), "hash": hash});
                }
            }
            Value::Object(map) => map.values_mut().for_each(|v| self.walk(v, place)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, place)),
            _ => {}
        }
    }

    /// Check and hash one named file; `None` after reporting a mistake.
    fn resolve(&mut self, raw: &str, place: &Place) -> Option<(Utf8PathBuf, String)> {
        // Where the text cannot be found as written (quoted, escaped or
        // folded), the section that names it.
        let span = (place.span)
            .or_else(|| locate(place.file, place.from, raw))
            .or_else(|| (place.from < place.file.text.len()).then(|| SourceSpan::from((place.from, 1))));
        let path = match project_path(raw) {
            Ok(p) => p,
            Err(problem) => {
                self.errors.push(
                    ProjectError::at(
                        place.file,
                        "asset::path",
                        format!("{} names `{raw}`, which {problem}", place.what),
                    )
                    .label(place.file, span, "not a file inside the project")
                    .help(format!(
                        "name a file by its path relative to the project folder ({}), e.g. `{{file: rules/workflows/txt2img.json}}`",
                        self.root
                    )),
                );
                return None;
            }
        };
        let full = self.root.join(&path);
        let problem = match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => match self.index.hash(self.root, &path) {
                Ok(hash) => {
                    if !self.sources.iter().any(|(p, _)| *p == path) {
                        self.sources.push((path.clone(), hash.clone()));
                    }
                    return Some((path, hash));
                }
                Err(e) => format!("cannot be read: {e}"),
            },
            Ok(_) => "is not a file".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        self.errors.push(
            ProjectError::at(
                place.file,
                "asset::missing",
                format!("{} names {path}, which {problem}", place.what),
            )
            .label(place.file, span, "no such file in the project")
            .help(format!(
                "put the file at {path} in the project folder, or fix the path (relative to {})",
                self.root
            )),
        );
        None
    }
}

/// The span of `needle` outside comments, at or after byte `from`,
/// preferring a line that says `file`; else anywhere in the file.
fn locate(file: &SourceFile, from: usize, needle: &str) -> Option<SourceSpan> {
    if needle.is_empty() {
        return locate(file, from, "file:");
    }
    let text = file.text.as_str();
    let line_of = |at: usize| {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        &text[start..end]
    };
    // Not in a comment.
    let hits: Vec<usize> = text
        .match_indices(needle)
        .map(|(i, _)| i)
        .filter(|&i| !text[text[..i].rfind('\n').map_or(0, |n| n + 1)..i].contains('#'))
        .collect();
    let best = hits
        .iter()
        .find(|&&i| i >= from && line_of(i).contains("file"))
        .or_else(|| hits.iter().find(|&&i| i >= from))
        .or_else(|| hits.first())?;
    Some(SourceSpan::new((*best).into(), needle.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_project() {
        assert_eq!(project_path("rules/w.json").unwrap(), "rules/w.json");
        assert_eq!(project_path("./rules//w.json").unwrap(), "rules/w.json");
        assert_eq!(project_path("/etc/passwd"), Err(PathProblem::Absolute));
        assert_eq!(project_path("rules/../../x"), Err(PathProblem::LeavesProject));
        assert_eq!(project_path("../x"), Err(PathProblem::LeavesProject));
        assert_eq!(project_path(""), Err(PathProblem::Empty));
        assert_eq!(project_path("."), Err(PathProblem::Empty));
        assert_eq!(project_path("out/ep01/ep01.mp4"), Err(PathProblem::StudioOutput("out")));
        assert_eq!(project_path("./cache/x"), Err(PathProblem::StudioOutput("cache")));
        assert_eq!(project_path(&"a/".repeat(600)), Err(PathProblem::TooLong));
    }

    #[test]
    fn names_and_files_read_from_yaml() {
        // Inside `Spanned`, as studio.yaml reads them.
        let spanned: Spanned<NameOrFile> = serde_saphyr::from_str("\n  {file: voices/hana.wav}").unwrap();
        assert_eq!(spanned.referenced.line(), 2);
        assert_eq!(text_of(&spanned).value, "voices/hana.wav");
        let name: NameOrFile = serde_saphyr::from_str("hana_v2").unwrap();
        assert_eq!(name, NameOrFile::Name("hana_v2".into()));
        let file: NameOrFile = serde_saphyr::from_str("{file: voices/hana.wav}").unwrap();
        assert_eq!(
            file,
            NameOrFile::File(FileRef {
                file: "voices/hana.wav".into(),
                hash: String::new()
            })
        );
        // The hash is studio's to fill in.
        assert!(serde_saphyr::from_str::<NameOrFile>("{file: a.wav, hash: abc}").is_err());
        // A resolved file serializes as the object keys hold.
        let resolved = NameOrFile::File(FileRef {
            file: "a.wav".into(),
            hash: "h".into(),
        });
        let v = serde_json::to_value(&resolved).unwrap();
        assert_eq!(file_of(&v), Some(("a.wav", "h")));
        assert_eq!(serde_json::to_value(NameOrFile::Name("x".into())).unwrap(), "x");
    }

    #[test]
    fn locate_prefers_the_file_line_in_the_section() {
        let text = "# see rules/w.json\na:\n  x: rules/w.json\nb:\n  w: {file: rules/w.json}\n";
        let f = SourceFile::new(Utf8Path::new("r.yaml"), text.into());
        let from = f.key_span("b").unwrap().offset();
        let at = locate(&f, from, "rules/w.json").unwrap().offset();
        assert_eq!(f.line_of(at), 5);
        assert_eq!(f.line_of(locate(&f, 0, "rules/w.json").unwrap().offset()), 5);
        // No hit on a `file` line after `from`: the first hit after it.
        assert_eq!(f.line_of(locate(&f, 2, "x: rules").unwrap().offset()), 3);
    }
}
