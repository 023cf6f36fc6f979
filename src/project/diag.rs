//! Diagnostics for bad project input: every mistake points at its file and line.
//!
//! A [`ProjectError`] is one mistake with labelled spans in one source file;
//! [`Diagnostics`] carries all mistakes found in one load so a writer can fix
//! them in one pass.

use std::sync::{Arc, OnceLock};

use camino::{Utf8Path, Utf8PathBuf};
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use serde_saphyr::Location;

/// Lines longer than this many bytes are cut (with `…`) where a diagnostic
/// quotes them: a 10 MB line is noise, and miette pads up to a label's
/// column with a format width, which panics past 65,535.
const QUOTED_LINE_BYTES: usize = 1000;

/// One source file, kept in memory so diagnostics can quote it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the project root, as shown to people.
    pub name: Utf8PathBuf,
    pub text: Arc<String>,
    /// The text as quoted, when some line is too long to quote whole.
    quoted: Arc<OnceLock<Option<Quoted>>>,
}

/// A file's text with its long lines cut.
#[derive(Debug)]
struct Quoted {
    text: Arc<String>,
    /// Per line: (start in the file, start in `text`, bytes kept).
    lines: Vec<(usize, usize, usize)>,
}

impl Quoted {
    fn new(text: &str) -> Option<Quoted> {
        if !text.split('\n').any(|l| l.len() > QUOTED_LINE_BYTES) {
            return None;
        }
        let (mut out, mut lines, mut start) = (String::new(), Vec::new(), 0);
        for line in text.split_inclusive('\n') {
            let body = line.strip_suffix('\n').unwrap_or(line);
            let mut kept = body.len().min(QUOTED_LINE_BYTES);
            while !body.is_char_boundary(kept) {
                kept -= 1;
            }
            lines.push((start, out.len(), kept));
            out.push_str(&body[..kept]);
            if kept < body.len() {
                out.push('…');
            }
            out.push_str(&line[body.len()..]);
            start += line.len();
        }
        Some(Quoted {
            text: Arc::new(out),
            lines,
        })
    }

    /// Where file offset `at` is in the quoted text: past a cut, at the `…`
    /// (or after it, for the end of a span).
    fn map(&self, at: usize, end: bool) -> usize {
        let i = self.lines.partition_point(|l| l.0 <= at).saturating_sub(1);
        let Some(&(start, quoted, kept)) = self.lines.get(i) else {
            return at;
        };
        let column = at - start;
        match column <= kept {
            true => quoted + column,
            false if end => quoted + kept + '…'.len_utf8(),
            false => quoted + kept,
        }
    }
}

impl SourceFile {
    pub fn new(name: &Utf8Path, text: String) -> Self {
        SourceFile {
            name: name.to_owned(),
            text: Arc::new(text),
            quoted: Arc::new(OnceLock::new()),
        }
    }

    fn quoted(&self) -> Option<&Quoted> {
        self.quoted.get_or_init(|| Quoted::new(&self.text)).as_ref()
    }

    fn named(&self) -> NamedSource<Arc<String>> {
        let text = self.quoted().map_or_else(|| self.text.clone(), |q| q.text.clone());
        NamedSource::new(self.name.as_str(), text).with_language("yaml")
    }

    /// A span of the file as a span of what diagnostics quote.
    fn quote_span(&self, span: SourceSpan) -> SourceSpan {
        match self.quoted() {
            None => span,
            Some(q) => {
                let start = q.map(span.offset(), false);
                let end = q.map(span.offset() + span.len(), true);
                SourceSpan::new(start.into(), end.saturating_sub(start))
            }
        }
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
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        self.text[..end].matches('\n').count() + 1
    }

    /// A file that is not UTF-8: the mistake at its first bad byte, shown
    /// by line and column in the text decoded as far as it goes.
    pub fn not_utf8(name: &Utf8Path, bytes: &[u8], err: &std::str::Utf8Error) -> ProjectError {
        let at = err.valid_up_to();
        let file = SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned());
        let bad = bytes[at..]
            .iter()
            .take(err.error_len().unwrap_or(bytes.len() - at).max(1))
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let line = file.line_of(at);
        let column = file.text[..at].rsplit('\n').next().unwrap_or("").chars().count() + 1;
        ProjectError::at(
            &file,
            "io::utf8",
            format!("{name} is not UTF-8 text: line {line}, column {column} has the byte(s) {bad}"),
        )
        .label(
            &file,
            Some(SourceSpan::new(at.into(), '\u{fffd}'.len_utf8())),
            "not UTF-8",
        )
        .help(format!(
            "save {name} as UTF-8 (an editor's \"encoding\" setting, or `iconv -f LATIN1 -t UTF-8`)"
        ))
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
            let span = file.quote_span(span);
            let label = if self.labels.is_empty() {
                // miette's `[file:line:col]` follows the primary label.
                LabeledSpan::new_primary_with_span(Some(text.into()), span)
            } else {
                LabeledSpan::new_with_span(Some(text.into()), span)
            };
            self.labels.push(label);
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
        (serde_saphyr::Error::DuplicateMappingKey { key, .. }, Some(loc)) => {
            let span = file.span(&loc).or_else(|| line_span(file, loc.line() as usize));
            let key = key.clone().unwrap_or_else(|| "this key".into());
            let earlier = earlier_key(file, loc.line() as usize, loc.column() as usize, &key);
            let e = ProjectError::at(
                file,
                "yaml::duplicate_key",
                format!("{}: `{key}` is given twice in the same mapping", file.name),
            )
            .label(file, span, "given again here");
            return e.label(file, earlier, "first given here").help(format!(
                "keep one `{key}:` (YAML does not merge them; the second would silently win elsewhere)"
            ));
        }
        (serde_saphyr::Error::NonFiniteFloat { value, .. }, Some(loc)) => {
            let span = file.span(&loc).or_else(|| line_span(file, loc.line() as usize));
            return ProjectError::at(
                file,
                "yaml::not_finite",
                format!("{}: `{value}` is not a finite number", file.name),
            )
            .label(file, span, "here")
            .help("write an ordinary number: NaN, .inf and numbers too large for a float (1e999) mean nothing here; the allowed ranges are in README.md under \"Limits\"");
        }
        (_, Some(loc)) => {
            let span = file.span(&loc).or_else(|| line_span(file, loc.line() as usize));
            ProjectError::at(file, "yaml", format!("{}: {first}", file.name)).label(file, span, "here")
        }
        (_, None) => ProjectError::at(file, "yaml", format!("{}: {first}", file.name)),
    };
    e.help("fix the YAML at the marked place; see README.md for the file format")
}

/// The earlier `key:` of the same block mapping as the key at 1-based
/// `line`:`column`, if it is written in block style.
fn earlier_key(file: &SourceFile, line: usize, column: usize, key: &str) -> Option<SourceSpan> {
    let quoted = [key.to_string(), format!("\"{key}\""), format!("'{key}'")];
    sibling_keys(file, line, column)
        .into_iter()
        .filter(|&(n, _)| n != line)
        .find_map(|(_, at)| {
            let rest = &file.text[at..];
            quoted.iter().find_map(|k| {
                rest.strip_prefix(k.as_str())
                    .filter(|r| r.trim_start_matches(' ').starts_with(':'))
                    .map(|_| SourceSpan::new(at.into(), k.len()))
            })
        })
}

/// The first key of the block mapping that has a key at 1-based `line`:`column`.
fn mapping_start(file: &SourceFile, line: usize, column: usize) -> Option<SourceSpan> {
    let (_, at) = *sibling_keys(file, line, column).last()?;
    let len = file.text[at..].lines().next().unwrap_or("").trim_end().len();
    Some(SourceSpan::new(at.into(), len.max(1)))
}

/// The keys of the block mapping that has a key at 1-based `line`:`column`,
/// from that line up to the mapping's first key: (line, byte offset of the key).
fn sibling_keys(file: &SourceFile, line: usize, column: usize) -> Vec<(usize, usize)> {
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
    let Some(column) = column.checked_sub(1) else {
        return Vec::new();
    };
    let mut keys: Vec<(usize, usize)> = shape(line)
        .map(|(_, key, _)| (line, starts[line - 1] + key))
        .into_iter()
        .collect();
    for n in (1..line).rev() {
        let Some((indent, key, item)) = shape(n) else { continue };
        if indent > column || (item && indent == column) {
            continue; // a nested value, or a list at the keys' indentation
        }
        if key != column {
            break; // the parent
        }
        keys.push((n, starts[n - 1] + key));
        if item {
            break; // `- key:` opens the mapping
        }
    }
    keys
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
