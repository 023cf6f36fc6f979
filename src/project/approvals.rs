//! `approvals.yaml`: the decisions a person made on candidates in the band
//! between the thresholds (`studio review approve|reject`), by image
//! content hash, per character. The file is the user's: studio reads it
//! with spans (every mistake is a located diagnostic, and a file with one
//! changes nothing) and records new decisions by splicing lines into it
//! ([`record`]), so comments, blank lines and order stay as they were.
//!
//! ```yaml
//! # approvals.yaml
//! aiko:
//!   - {image: 3f2a9c81b0de, decision: approve}   # the full hash, or 12+ hex digits of it
//!   - image: 9b01c2d3e4f5a6b7
//!     decision: reject
//!     category: off_model                        # one of rules/images.yaml `categories`
//! ```

use std::collections::BTreeMap;

use camino::Utf8Path;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::diag::SourceFile;
use super::{Diagnostics, ProjectError};

/// The file, relative to the project root.
pub const FILE: &str = "approvals.yaml";
/// The fewest hex digits a hash may be shortened to.
pub const MIN_PREFIX: usize = 12;
/// A full image hash (blake3, hex).
pub const HASH_LEN: usize = 64;
/// The most decisions one file may hold (it is read on every build).
pub const MAX_ENTRIES: usize = 100_000;

/// A person's decision on one image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject { category: String },
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The image's full hash when the candidates were known at load, else
    /// what the file says (a full hash or a prefix of one).
    pub image: String,
    pub decision: Decision,
    /// Its line in approvals.yaml.
    pub line: usize,
}

/// Every decision, per character.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    pub by_character: BTreeMap<String, Vec<Entry>>,
}

impl Approvals {
    /// The decision on `hash` (a full hash) for `character`, if a person made one.
    pub fn decision(&self, character: &str, hash: &str) -> Option<&Decision> {
        self.by_character
            .get(character)?
            .iter()
            .find(|e| hash.starts_with(e.image.as_str()))
            .map(|e| &e.decision)
    }

    /// The decisions of `character`, as (image, decision), sorted: what a
    /// pool node keys on.
    pub fn of(&self, character: &str) -> Vec<(&str, &Decision)> {
        let mut v: Vec<_> = self
            .by_character
            .get(character)
            .map(|es| es.iter().map(|e| (e.image.as_str(), &e.decision)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// What approvals.yaml is checked against.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The project's character ids.
    pub characters: Vec<String>,
    /// The rules' closed list of rejection categories.
    pub categories: Vec<String>,
    /// Each character's candidates' full image hashes, when they are known
    /// (after the candidates were generated): then every hash must name
    /// one of them and prefixes are resolved to full hashes.
    pub candidates: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    image: Spanned<String>,
    decision: Spanned<String>,
    #[serde(default)]
    category: Option<Spanned<String>>,
}

type RawFile = BTreeMap<String, Option<Vec<RawEntry>>>;

/// Read `approvals.yaml` under `root` (none: no decisions) and check it.
pub fn load(root: &Utf8Path, known: &Known) -> Result<Approvals, Diagnostics> {
    match read(root)? {
        Some(file) => check(&file, known),
        None => Ok(Approvals::default()),
    }
}

/// Check the hashes of `approvals.yaml` under `root` against the
/// candidates known so far: `candidates` holds each character whose
/// candidates are all known (every expanded round's image is in the
/// cache), and each of those characters' hashes must name exactly one of
/// them. Other characters' hashes wait until their candidates are known.
/// The rest of the file was checked when it was loaded.
pub fn check_candidates(root: &Utf8Path, candidates: &BTreeMap<String, Vec<String>>) -> Result<(), Diagnostics> {
    let Some(file) = read(root)? else {
        return Ok(());
    };
    if !has_content(&file.text) {
        return Ok(());
    }
    let raw: RawFile = super::load::parse(&file)?;
    let errors: Vec<ProjectError> = (raw.iter())
        .filter_map(|(character, entries)| Some((character, entries.as_ref()?, candidates.get(character)?)))
        .flat_map(|(character, entries, list)| {
            let file = &file;
            entries.iter().filter_map(move |e| {
                let image = e.image.value.trim().to_ascii_lowercase();
                let hash = image.len() >= MIN_PREFIX && image.len() <= HASH_LEN && is_hex(&image);
                hash.then(|| resolve(file, character, list, e, &image).err())
                    .flatten()
                    .map(|e| *e)
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics { errors })
    }
}

/// `approvals.yaml` under `root`, `None` when there is none.
fn read(root: &Utf8Path) -> Result<Option<SourceFile>, Diagnostics> {
    let path = root.join(FILE);
    let mut bytes = Vec::new();
    let read = {
        use std::io::Read;
        std::fs::File::open(&path).and_then(|f| f.take(super::bounds::MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
    };
    let bytes = match read {
        Ok(_) if bytes.len() as u64 > super::bounds::MAX_FILE_BYTES => {
            return Err(ProjectError::plain(
                "limits::file_size",
                format!("{FILE} is larger than {} MiB", super::bounds::MAX_FILE_BYTES >> 20),
            )
            .help("remove the decisions of candidates that no longer exist")
            .into());
        }
        Ok(_) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ProjectError::plain("approvals::io", format!("cannot read {FILE}: {e}")).into()),
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let err = e.utf8_error();
            return Err(SourceFile::not_utf8(FILE.as_ref(), e.as_bytes(), &err).into());
        }
    };
    Ok(Some(SourceFile::new(FILE.as_ref(), text)))
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a file's text holds anything but comments and blank lines.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
    })
}

/// Check approvals.yaml's text: its YAML, its characters, hashes,
/// decisions and categories. Every mistake is reported, located.
pub fn check(file: &SourceFile, known: &Known) -> Result<Approvals, Diagnostics> {
    if !has_content(&file.text) {
        return Ok(Approvals::default());
    }
    let raw: RawFile = super::load::parse(file)?;
    let mut errors = Vec::new();
    let mut out = Approvals::default();
    let mut count = 0;
    for (character, entries) in &raw {
        if !known.characters.iter().any(|c| c == character) {
            errors.push(
                ProjectError::at(
                    file,
                    "approvals::character",
                    format!("{FILE} names `{character}`, which is no character"),
                )
                .label(file, file.key_span(character), "unknown character")
                .help(format!(
                    "the characters (studio.yaml `characters:`) are {}",
                    known.characters.join(", ")
                )),
            );
            continue;
        }
        let mut kept: Vec<Entry> = Vec::new();
        for e in entries.iter().flatten() {
            count += 1;
            if count > MAX_ENTRIES {
                errors.push(
                    ProjectError::at(
                        file,
                        "approvals::size",
                        format!("{FILE} holds more than {MAX_ENTRIES} decisions"),
                    )
                    .label_loc(file, &e.image.referenced, "the limit is passed here")
                    .help("remove the decisions of candidates that no longer exist"),
                );
                return Err(Diagnostics { errors });
            }
            match entry(file, known, character, e) {
                Ok(entry) => {
                    if let Some(first) = kept.iter().find(|k| k.image == entry.image) {
                        errors.push(
                            ProjectError::at(
                                file,
                                "approvals::duplicate",
                                format!("image {} is decided twice for `{character}`", short(&entry.image)),
                            )
                            .label_loc(file, &e.image.referenced, "decided again here")
                            .help(format!(
                                "keep one decision per image (the other is on line {})",
                                first.line
                            )),
                        );
                    } else {
                        kept.push(entry);
                    }
                }
                Err(e) => errors.push(*e),
            }
        }
        out.by_character.insert(character.clone(), kept);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics { errors })
    }
}

/// At most 40 characters of a value, for messages.
fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(MIN_PREFIX)]
}

/// The one hash of `list` (a character's candidates) that `image` (a
/// checked hex prefix, entry `e`) starts.
fn resolve(
    file: &SourceFile,
    character: &str,
    list: &[String],
    e: &RawEntry,
    image: &str,
) -> Result<String, Box<ProjectError>> {
    let err = |code: &str, msg: String, label: &str, help: String| {
        Box::new(
            ProjectError::at(file, code, msg)
                .label_loc(file, &e.image.referenced, label)
                .help(help),
        )
    };
    let matches: Vec<&String> = list.iter().filter(|h| h.starts_with(image)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(err(
            "approvals::unknown_hash",
            format!("no candidate of `{character}` has an image hash starting with {image}"),
            "unknown image",
            format!(
                "`studio review {character}` lists the candidates and their hashes; remove this decision if its image is gone"
            ),
        )),
        many => Err(err(
            "approvals::ambiguous_hash",
            format!("{image} is the start of {} candidates' hashes", many.len()),
            "ambiguous",
            "write more digits of the hash (or all 64)".into(),
        )),
    }
}

fn entry(file: &SourceFile, known: &Known, character: &str, e: &RawEntry) -> Result<Entry, Box<ProjectError>> {
    let err = |code: &str, msg: String, at: &Spanned<String>, label: &str, help: String| {
        Box::new(
            ProjectError::at(file, code, msg)
                .label_loc(file, &at.referenced, label)
                .help(help),
        )
    };
    let image = e.image.value.trim().to_ascii_lowercase();
    if image.len() < MIN_PREFIX || image.len() > HASH_LEN || !is_hex(&image) {
        return Err(err(
            "approvals::hash",
            format!("`{}` is not an image hash", cut(&e.image.value)),
            &e.image,
            "not a hash",
            format!(
                "write the image's hash as `studio review {character}` prints it: at least {MIN_PREFIX} hex digits"
            ),
        ));
    }
    let image = match known.candidates.as_ref().map(|c| c.get(character)) {
        None => image,
        Some(list) => resolve(file, character, list.map_or(&[], Vec::as_slice), e, &image)?,
    };
    let categories = || known.categories.join(", ");
    let decision = match (e.decision.value.as_str(), &e.category) {
        ("approve", None) => Decision::Approve,
        ("approve", Some(c)) => {
            return Err(err(
                "approvals::category",
                "an approval has no rejection category".into(),
                c,
                "remove this",
                "only `decision: reject` takes a `category`".into(),
            ));
        }
        ("reject", Some(c)) if known.categories.contains(&c.value) => Decision::Reject {
            category: c.value.clone(),
        },
        ("reject", Some(c)) => {
            return Err(err(
                "approvals::category",
                format!("`{}` is not a rejection category", cut(&c.value)),
                c,
                "unknown category",
                format!("the categories (rules/images.yaml `categories:`) are {}", categories()),
            ));
        }
        ("reject", None) => {
            return Err(err(
                "approvals::category",
                "a rejection names its category".into(),
                &e.decision,
                "which category?",
                format!("add `category: C` with C one of {}", categories()),
            ));
        }
        _ => {
            return Err(err(
                "approvals::decision",
                format!("`{}` is not a decision", cut(&e.decision.value)),
                &e.decision,
                "unknown decision",
                "a decision is `approve` or `reject`".into(),
            ));
        }
    };
    let line = file.span(&e.image.referenced).map_or(0, |s| file.line_of(s.offset()));
    Ok(Entry { image, decision, line })
}

/// One YAML line of an entry, as [`record`] writes it.
pub fn entry_line(image: &str, decision: &Decision) -> String {
    match decision {
        Decision::Approve => format!("{{image: {image}, decision: approve}}"),
        Decision::Reject { category } => format!("{{image: {image}, decision: reject, category: {category}}}"),
    }
}

struct Line<'a> {
    start: usize,
    text: &'a str,
    indent: usize,
    content: bool,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let body = raw.trim_end_matches(['\n', '\r']);
        let rest = body.trim_start_matches(' ');
        out.push(Line {
            start,
            text: body,
            indent: body.len() - rest.len(),
            content: !rest.is_empty() && !rest.starts_with('#'),
        });
        start += raw.len();
    }
    out
}

/// The comment at the end of a content line (` # …`), if any. Values in
/// this file are hashes and words, so a `#` after a space starts a comment.
fn trailing_comment(line: &str) -> Option<&str> {
    let at = line.find(" #")?;
    Some(line[at..].trim_start())
}

/// `text` with `decision` on `image` (a full hash) recorded for
/// `character`: an entry already there for that image is replaced in place
/// (its comments kept), else a line is added at the end of the character's
/// list (the character added at the end of the file when it has none).
/// Every other byte stays. The caller checks the result ([`check`]) before
/// writing it.
pub fn record(text: &str, character: &str, image: &str, decision: &Decision) -> Result<String, String> {
    let line = entry_line(image, decision);
    let file = SourceFile::new(FILE.as_ref(), text.to_string());
    let raw: RawFile = if has_content(text) {
        super::load::parse(&file)
            .map_err(|_| format!("{FILE} is not valid YAML; fix it first (`studio review` shows where)"))?
    } else {
        RawFile::new()
    };
    let ls = lines(text);
    // An entry for the same image: replace its lines.
    let existing = raw.get(character).into_iter().flatten().flatten().find(|e| {
        let v = e.image.value.trim().to_ascii_lowercase();
        v.len() >= MIN_PREFIX && image.starts_with(&v)
    });
    if let Some(e) = existing {
        let at = file
            .span(&e.image.referenced)
            .ok_or("the entry's place in the file is unknown")?
            .offset();
        let li = ls
            .iter()
            .rposition(|l| l.start <= at)
            .ok_or("the entry is outside the file")?;
        let col = at - ls[li].start;
        let first = (0..=li)
            .rev()
            .find(|&j| ls[j].content && ls[j].indent < col && ls[j].text.trim_start().starts_with("- "))
            .ok_or("cannot find the `- ` that opens the entry")?;
        let dash = ls[first].indent;
        let mut last = first;
        for (j, l) in ls.iter().enumerate().skip(first + 1) {
            if l.content && l.indent <= dash {
                break;
            }
            if l.content {
                last = j;
            }
        }
        // Comments inside the entry, trailing or on lines of their own, stay.
        let mut keep: Vec<String> = Vec::new();
        let mut head = format!("{}- {line}", " ".repeat(dash));
        if let Some(c) = trailing_comment(ls[first].text) {
            head.push_str("  ");
            head.push_str(c);
        }
        for l in &ls[first + 1..=last] {
            if l.content {
                if let Some(c) = trailing_comment(l.text) {
                    keep.push(format!("{}  {c}", " ".repeat(dash)));
                }
            } else if !l.text.trim().is_empty() {
                keep.push(l.text.to_string());
            }
        }
        let mut out = String::with_capacity(text.len() + 80);
        out.push_str(&text[..ls[first].start]);
        out.push_str(&head);
        out.push('\n');
        for k in keep {
            out.push_str(&k);
            out.push('\n');
        }
        let end = ls.get(last + 1).map_or(text.len(), |l| l.start);
        out.push_str(&text[end..]);
        return Ok(out);
    }
    // The character's key line.
    let key = ls.iter().position(|l| {
        l.indent == 0
            && l.text
                .strip_prefix(character)
                .is_some_and(|r| r.trim_start_matches(' ').starts_with(':'))
    });
    let mut out = String::with_capacity(text.len() + 80);
    match key {
        Some(k) => {
            let value = ls[k].text[character.len()..].trim_start_matches(' ')[1..].trim();
            let value = match value.starts_with('#') {
                true => "",
                false => trailing_comment(value).map_or(value, |c| value[..value.len() - c.len()].trim()),
            };
            if !value.is_empty() && value != "[]" {
                return Err(format!(
                    "`{character}:` in {FILE} is not a block list (`{character}:` then `  - …` lines); write it so to record decisions"
                ));
            }
            let mut last = k;
            let mut indent = None;
            for (j, l) in ls.iter().enumerate().skip(k + 1) {
                if l.content && l.indent == 0 {
                    break;
                }
                if l.content {
                    last = j;
                    if indent.is_none() && l.text.trim_start().starts_with("- ") {
                        indent = Some(l.indent);
                    }
                }
            }
            let end = ls[last].start + ls[last].text.len();
            if value == "[]" {
                // `aiko: []` becomes `aiko:` with the new entry under it.
                let v = ls[k].start + ls[k].text.find("[]").expect("seen");
                out.push_str(text[..v].trim_end_matches(' '));
                out.push_str(&text[v + 2..end]);
            } else {
                out.push_str(&text[..end]);
            }
            out.push('\n');
            out.push_str(&" ".repeat(indent.unwrap_or(2)));
            out.push_str("- ");
            out.push_str(&line);
            let rest = &text[end..];
            if rest.is_empty() {
                out.push('\n');
            } else {
                out.push_str(rest);
            }
        }
        None => {
            out.push_str(text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{character}:\n  - {line}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two full hashes: 12 a's (or b's) and 52 zeros.
    const A: &str = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
    const B: &str = "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";

    fn known() -> Known {
        Known {
            characters: vec!["aiko".into(), "ken".into()],
            categories: vec!["off_model".into(), "bad_hands".into()],
            candidates: Some(BTreeMap::from([("aiko".into(), vec![A.into(), B.into()])])),
        }
    }

    fn load_text(text: &str) -> Result<Approvals, Diagnostics> {
        check(&SourceFile::new(FILE.as_ref(), text.to_string()), &known())
    }

    #[test]
    fn prefixes_resolve_to_full_hashes() {
        let a = load_text("# mine\naiko:\n  - {image: aaaaaaaaaaaa, decision: approve}\n  - image: BBBBBBBBBBBB0\n    decision: reject\n    category: bad_hands\n").unwrap();
        assert_eq!(a.decision("aiko", A), Some(&Decision::Approve));
        assert_eq!(
            a.decision("aiko", B),
            Some(&Decision::Reject {
                category: "bad_hands".into()
            })
        );
        assert_eq!(a.by_character["aiko"][1].line, 4);
        assert!(load_text("").unwrap().by_character.is_empty());
        assert!(load_text("# only a comment\n").unwrap().by_character.is_empty());
    }

    fn first_error(text: &str) -> (String, String) {
        let d = load_text(text).unwrap_err();
        let e = &d.errors[0];
        (e.to_string(), e.at.clone().unwrap_or_default())
    }

    #[test]
    fn every_mistake_is_located() {
        let (msg, at) = first_error("aiko:\n  - {image: cccccccccccc, decision: approve}\n");
        assert!(msg.contains("no candidate of `aiko`"), "{msg}");
        assert_eq!(at, "approvals.yaml:2");
        let (msg, at) = first_error("aiko:\n  - {image: aaaaaaaaaaaa, decision: reject, category: ugly}\n");
        assert!(msg.contains("`ugly` is not a rejection category"), "{msg}");
        assert_eq!(at, "approvals.yaml:2");
        let (msg, at) = first_error("\nnobody:\n  - {image: aaaaaaaaaaaa, decision: approve}\n");
        assert!(msg.contains("`nobody`"), "{msg}");
        assert_eq!(at, "approvals.yaml:2");
        let (msg, _) = first_error("aiko:\n  - {image: aaaa, decision: approve}\n");
        assert!(msg.contains("not an image hash"), "{msg}");
        let (msg, _) = first_error("aiko:\n  - {image: aaaaaaaaaaaa, decision: reject}\n");
        assert!(msg.contains("names its category"), "{msg}");
        let (msg, _) = first_error("aiko:\n  - {image: aaaaaaaaaaaa, decision: maybe}\n");
        assert!(msg.contains("not a decision"), "{msg}");
        let (msg, at) = first_error(
            "aiko:\n  - {image: aaaaaaaaaaaa, decision: approve}\n  - {image: aaaaaaaaaaaa0, decision: approve}\n",
        );
        assert!(msg.contains("twice"), "{msg}");
        assert_eq!(at, "approvals.yaml:3");
        let (msg, at) = first_error("aiko:\n  - {image: aaaaaaaaaaaa, decision: approve\n");
        assert!(!msg.is_empty() && at.starts_with("approvals.yaml:"), "{msg} {at}");
    }

    #[test]
    fn recording_keeps_every_comment() {
        let text = "# decisions, mine\naiko:   # the lead\n  # first round\n  - {image: aaaaaaaaaaaa, decision: approve}  # good pose\n\n# ken next\nken: []\n";
        let t = record(
            text,
            "aiko",
            B,
            &Decision::Reject {
                category: "off_model".into(),
            },
        )
        .unwrap();
        assert_eq!(
            t,
            format!(
                "# decisions, mine\naiko:   # the lead\n  # first round\n  - {{image: aaaaaaaaaaaa, decision: approve}}  # good pose\n  - {{image: {B}, decision: reject, category: off_model}}\n\n# ken next\nken: []\n"
            )
        );
        load_text(&t).unwrap();
        // The same image again: replaced in place, comments kept.
        let t2 = record(
            &t,
            "aiko",
            A,
            &Decision::Reject {
                category: "bad_hands".into(),
            },
        )
        .unwrap();
        assert!(
            t2.contains(&format!(
                "  - {{image: {A}, decision: reject, category: bad_hands}}  # good pose\n"
            )),
            "{t2}"
        );
        assert!(
            t2.contains("# decisions, mine\naiko:   # the lead\n  # first round\n") && t2.contains("# ken next"),
            "{t2}"
        );
        assert_eq!(
            load_text(&t2).unwrap().decision("aiko", A),
            Some(&Decision::Reject {
                category: "bad_hands".into()
            })
        );
        // A block-style entry with comments inside.
        let block =
            "aiko:\n  - image: aaaaaaaaaaaa   # this one\n    # looked again\n    decision: approve # sure\n# end\n";
        let t3 = record(
            block,
            "aiko",
            A,
            &Decision::Reject {
                category: "off_model".into(),
            },
        )
        .unwrap();
        assert_eq!(
            t3,
            format!(
                "aiko:\n  - {{image: {A}, decision: reject, category: off_model}}  # this one\n    # looked again\n    # sure\n# end\n"
            )
        );
        // `ken: []` and a missing character.
        let t4 = record(text, "ken", A, &Decision::Approve).unwrap();
        assert!(
            t4.ends_with(&format!("# ken next\nken:\n  - {{image: {A}, decision: approve}}\n")),
            "{t4}"
        );
        let t5 = record("# nothing yet", "aiko", A, &Decision::Approve).unwrap();
        assert_eq!(
            t5,
            format!("# nothing yet\naiko:\n  - {{image: {A}, decision: approve}}\n")
        );
        assert!(record("aiko: [{image: a, decision: approve}]\n", "aiko", A, &Decision::Approve).is_err());
    }
}
