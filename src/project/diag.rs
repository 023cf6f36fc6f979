//! Diagnostics for bad project input: every mistake points at its file and line.
//!
//! A [`ProjectError`] is one mistake with labelled spans in one source file;
//! [`Diagnostics`] carries all mistakes found in one load so a writer can fix
//! them in one pass.

use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use serde_saphyr::Location;

/// One source file, kept in memory so diagnostics can quote it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the project root, as shown to people.
    pub name: Utf8PathBuf,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: &Utf8Path, text: String) -> Self {
        SourceFile {
            name: name.to_owned(),
            text: Arc::new(text),
        }
    }

    fn named(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(self.name.as_str(), self.text.clone()).with_language("yaml")
    }

    /// The span of a YAML value, or `None` when the location is unknown
    /// (a default value that the file does not spell out).
    pub fn span(&self, loc: &Location) -> Option<SourceSpan> {
        let span = loc.span();
        let offset = span.byte_offset()? as usize;
        let len = span.byte_len().unwrap_or(0) as usize;
        (offset <= self.text.len()).then(|| SourceSpan::new(offset.into(), len.max(1)))
    }

    /// The span of a top-level mapping key such as `voice_line:`, found by text.
    pub fn key_span(&self, key: &str) -> Option<SourceSpan> {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            if line.strip_prefix(key).is_some_and(|rest| rest.starts_with(':')) {
                return Some(SourceSpan::new(offset.into(), key.len()));
            }
            offset += line.len();
        }
        None
    }

    /// The span of a whole 1-based line.
    pub fn line_span(&self, line: usize) -> Option<SourceSpan> {
        line_span(self, line)
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
}

/// One mistake in one file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ProjectError {
    message: String,
    #[source_code]
    src: Option<NamedSource<Arc<String>>>,
    #[label(collection)]
    labels: Vec<LabeledSpan>,
    #[help]
    help: Option<String>,
    #[diagnostic(code)]
    code: String,
    /// `file:line` of the first label, kept for plain-text output and tests.
    pub(crate) at: Option<String>,
}

impl ProjectError {
    /// A mistake with no place in a file (a missing file, a bad target).
    pub fn plain(code: &str, message: impl Into<String>) -> Self {
        ProjectError {
            message: message.into(),
            src: None,
            labels: Vec::new(),
            help: None,
            code: format!("studio::{code}"),
            at: None,
        }
    }

    /// A mistake located in `file`.
    pub fn at(file: &SourceFile, code: &str, message: impl Into<String>) -> Self {
        ProjectError {
            src: Some(file.named()),
            ..ProjectError::plain(code, message)
        }
        .with_file(file)
    }

    fn with_file(mut self, file: &SourceFile) -> Self {
        self.at = Some(file.name.to_string());
        self
    }

    /// Label a span; the first label decides the reported line.
    pub fn label(mut self, file: &SourceFile, span: Option<SourceSpan>, text: impl Into<String>) -> Self {
        if let Some(span) = span {
            if self.labels.is_empty() {
                self.at = Some(format!("{}:{}", file.name, file.line_of(span.offset())));
            }
            self.labels.push(LabeledSpan::new_with_span(Some(text.into()), span));
        }
        self
    }

    /// Label the YAML value at `loc`.
    pub fn label_loc(self, file: &SourceFile, loc: &Location, text: impl Into<String>) -> Self {
        let span = file.span(loc);
        self.label(file, span, text)
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// `file:line` where the mistake is, when it has a place.
    pub fn location(&self) -> Option<&str> {
        self.at.as_deref()
    }

    /// The diagnostic code without the `studio::` prefix.
    pub fn code(&self) -> &str {
        self.code.trim_start_matches("studio::")
    }
}

/// Every mistake found while loading a project.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{}", summary(.errors))]
#[diagnostic(code(studio::invalid_project))]
pub struct Diagnostics {
    #[related]
    pub errors: Vec<ProjectError>,
}

fn summary(errors: &[ProjectError]) -> String {
    match errors {
        [one] => one.message.clone(),
        many => format!("the project has {} mistakes", many.len()),
    }
}

impl From<ProjectError> for Diagnostics {
    fn from(e: ProjectError) -> Self {
        Diagnostics { errors: vec![e] }
    }
}

/// Turn a serde-saphyr parse error into a located diagnostic.
pub fn yaml_error(file: &SourceFile, err: &serde_saphyr::Error) -> ProjectError {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").to_string();
    let e = match (err, err.location()) {
        // serde-saphyr places a missing field at the mapping's last key; the
        // mistake belongs to the whole mapping, so point at its first key.
        (serde_saphyr::Error::SerdeMissingField { field, .. }, Some(loc)) => {
            let span = mapping_start(file, loc.line() as usize, loc.column() as usize);
            ProjectError::at(file, "yaml", format!("{}: missing field `{field}`", file.name)).label(
                file,
                span,
                format!("this mapping has no `{field}:`"),
            )
        }
        (_, Some(loc)) => {
            let span = file.span(&loc).or_else(|| line_span(file, loc.line() as usize));
            ProjectError::at(file, "yaml", format!("{}: {first}", file.name)).label(file, span, "here")
        }
        (_, None) => ProjectError::at(file, "yaml", format!("{}: {first}", file.name)),
    };
    e.help("fix the YAML at the marked place; see README.md for the file format")
}

/// The first key of the block mapping that has a key at 1-based `line`:`column`.
fn mapping_start(file: &SourceFile, line: usize, column: usize) -> Option<SourceSpan> {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(file.text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // A line's indentation, the 0-based column of its first key (after any
    // `- `), and whether it is a list item; `None` for blank and comment lines.
    let shape = |n: usize| -> Option<(usize, usize, bool)> {
        let l = file.text[*starts.get(n.checked_sub(1)?)?..]
            .lines()
            .next()
            .unwrap_or("");
        let mut rest = l.trim_start();
        let indent = l.len() - rest.len();
        if rest.is_empty() || rest.starts_with('#') {
            return None;
        }
        let item = rest.starts_with("- ");
        while let Some(r) = rest.strip_prefix("- ") {
            rest = r.trim_start();
        }
        Some((indent, l.len() - rest.len(), item))
    };
    let column = column.checked_sub(1)?;
    let mut first = line;
    for n in (1..line).rev() {
        let Some((indent, key, item)) = shape(n) else { continue };
        if indent > column || (item && indent == column) {
            continue; // a nested value, or a list at the keys' indentation
        }
        if key != column {
            break; // the parent
        }
        first = n;
        if item {
            break; // `- key:` opens the mapping
        }
    }
    let (_, key, _) = shape(first)?;
    let at = starts[first - 1] + key;
    let len = file.text[at..].lines().next().unwrap_or("").trim_end().len();
    Some(SourceSpan::new(at.into(), len.max(1)))
}

/// The span of a whole 1-based line.
fn line_span(file: &SourceFile, line: usize) -> Option<SourceSpan> {
    let mut offset = 0;
    for (i, l) in file.text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return Some(SourceSpan::new(offset.into(), l.trim_end().len().max(1)));
        }
        offset += l.len();
    }
    None
}

/// A collector that keeps going after the first mistake.
#[derive(Debug, Default)]
pub struct Collector {
    pub errors: Vec<ProjectError>,
}

impl Collector {
    pub fn push(&mut self, e: ProjectError) {
        self.errors.push(e);
    }

    pub fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(Diagnostics { errors: self.errors })
        }
    }
}
