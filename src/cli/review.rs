//! `studio review [CHARACTER]`: the candidates a person must decide (the
//! band between the thresholds), with their scores and files, and a contact
//! sheet of them per character (`out/review/<character>.png`);
//! `studio review approve|reject HASH… [--category C]` records decisions in
//! approvals.yaml, keeping the file's comments ([`approvals::record`]).
//! Nothing is written when any hash, category or the file itself is wrong.

use camino::{Utf8Path, Utf8PathBuf};

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_IO, EXIT_OK, out, report};
use crate::graph::review::LoopRules;
use crate::project::approvals::{self, Decision, Known};
use crate::project::diag::SourceFile;
use crate::project::{Diagnostics, ProjectError};
use crate::review::{Scores, Verdict};
use crate::stages::review::sheet::{self, Tile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this character's candidates (default: every character's).
    character: Option<String>,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Approve candidates: their hashes (at least 12 hex digits, as listed).
    Approve { hashes: Vec<String> },
    /// Reject candidates, for a reason from the rules' categories.
    Reject {
        hashes: Vec<String>,
        /// Why (one of rules/images.yaml `categories`); its negative terms
        /// go into the character's next round.
        #[arg(long)]
        category: String,
    },
}

/// One candidate as `studio review` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub character: String,
    pub round: u32,
    pub index: u32,
    /// The image's content hash.
    pub hash: String,
    /// The image file (in the cache).
    pub image: Utf8PathBuf,
    /// Where the build puts its copy, under `out/`.
    pub out: Utf8PathBuf,
    pub scores: Option<Scores>,
    /// Why no vision model scored it (its review is a person's stand-in).
    pub unscored: Option<String>,
    /// After people's decisions (`None`: not reviewed yet).
    pub verdict: Option<Verdict>,
}

impl Listed {
    /// Waiting for a person: reviewed, in the band, undecided.
    pub fn pending(&self) -> bool {
        self.verdict == Some(Verdict::Pending)
    }
}

/// The listing: per character, its counts, then one line per pending candidate.
pub fn table(cands: &[Listed], sheets: &[(String, Utf8PathBuf)]) -> String {
    let mut text = String::new();
    let mut characters: Vec<&str> = cands.iter().map(|c| c.character.as_str()).collect();
    characters.dedup();
    characters.sort_unstable();
    characters.dedup();
    for who in characters {
        let mine: Vec<&Listed> = cands.iter().filter(|c| c.character == who).collect();
        let count = |v: Verdict| mine.iter().filter(|c| c.verdict == Some(v)).count();
        let unreviewed = mine.iter().filter(|c| c.verdict.is_none()).count();
        text.push_str(&format!(
            "{who}: {} candidates · {} approved · {} rejected · {} pending{}",
            mine.len(),
            count(Verdict::Approved),
            count(Verdict::Rejected),
            count(Verdict::Pending),
            if unreviewed > 0 {
                format!(" · {unreviewed} not reviewed")
            } else {
                String::new()
            }
        ));
        if let Some((_, path)) = sheets.iter().find(|(c, _)| c == who) {
            text.push_str(&format!(" · contact sheet {path}"));
        }
        text.push('\n');
        let pending: Vec<&&Listed> = mine.iter().filter(|c| c.pending()).collect();
        if pending.is_empty() {
            continue;
        }
        let mut why: Vec<&str> = pending.iter().filter_map(|c| c.unscored.as_deref()).collect();
        why.sort_unstable();
        why.dedup();
        for w in why {
            let n = pending.iter().filter(|c| c.unscored.as_deref() == Some(w)).count();
            text.push_str(&format!(
                "  {n} with no score ({w}): decide them here, or start the vision service and build again\n"
            ));
        }
        text.push_str("  hash          round  match  clarity  value  overall  framing     file\n");
        for c in pending {
            let s = c.scores.as_ref();
            let f = |x: Option<f64>| x.map_or("   -".to_string(), |x| format!("{x:.2}"));
            text.push_str(&format!(
                "  {:<12}  r{}/{:<2}  {:>5}  {:>7}  {:>5}  {:>7}  {:<10}  {}\n",
                &c.hash[..c.hash.len().min(sheet::SHORT_HASH)],
                c.round,
                c.index,
                f(s.map(|s| s.character_match)),
                f(s.map(|s| s.clarity)),
                f(s.map(|s| s.training_value)),
                f(s.map(Scores::overall)),
                s.map_or("-", |s| s.framing.as_str()),
                if c.out.exists() { &c.out } else { &c.image },
            ));
        }
    }
    if text.is_empty() {
        text.push_str("no candidates yet: build with the full (or sim) profile first\n");
    }
    text
}

/// Draw one contact sheet per character with pending candidates, under
/// `dir` (`out/review`); returns (character, sheet path) for each.
pub async fn sheets(
    ffmpeg: &Utf8Path,
    font: &Utf8Path,
    cands: &[Listed],
    dir: &Utf8Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<(String, Utf8PathBuf)>, String> {
    let mut by: std::collections::BTreeMap<&str, Vec<Tile>> = std::collections::BTreeMap::new();
    for c in cands.iter().filter(|c| c.pending()) {
        by.entry(&c.character).or_default().push(Tile {
            image: c.image.clone(),
            hash: c.hash.clone(),
            scores: c.scores.clone(),
            verdict: Verdict::Pending,
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
    let mut out = Vec::new();
    for (who, tiles) in by {
        // Character ids are checked by the loader (letters, digits, - and _).
        let path = dir.join(format!("{who}.png"));
        sheet::draw(ffmpeg, font, &tiles, &path, cancel)
            .await
            .map_err(|e| format!("drawing {path}: {e}"))?;
        if tiles.len() > sheet::MAX_TILES {
            eprintln!(
                "warning: {who} has {} pending candidates; the sheet shows the first {}",
                tiles.len(),
                sheet::MAX_TILES
            );
        }
        out.push((who.to_string(), path));
    }
    Ok(out)
}

/// The one candidate `hash` (a full hash or a prefix of at least
/// [`approvals::MIN_PREFIX`] hex digits) names.
pub fn resolve<'a>(cands: &'a [Listed], hash: &str) -> Result<&'a Listed, String> {
    let h = hash.trim().to_ascii_lowercase();
    if h.len() < approvals::MIN_PREFIX || h.len() > approvals::HASH_LEN || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`{hash}` is not a candidate's hash: write at least {} hex digits, as `studio review` lists them",
            approvals::MIN_PREFIX
        ));
    }
    let found: Vec<&Listed> = cands.iter().filter(|c| c.hash.starts_with(&h)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no candidate's image hash starts with {h}; `studio review` lists them"
        )),
        many => Err(format!(
            "{h} starts {} candidates' hashes; write more digits",
            many.len()
        )),
    }
}

/// approvals.yaml's text with `decision` on every hash recorded, checked
/// against `known`. The file's current text must itself be valid.
pub fn decide(
    text: &str,
    cands: &[Listed],
    known: &Known,
    hashes: &[String],
    decision: &Decision,
) -> Result<String, Diagnostics> {
    let name = Utf8Path::new(approvals::FILE);
    approvals::check(&SourceFile::new(name, text.to_string()), known)?;
    if let Decision::Reject { category } = decision
        && !known.categories.contains(category)
    {
        return Err(
            ProjectError::plain("review::category", format!("`{category}` is not a rejection category"))
                .help(format!(
                    "the categories (rules/images.yaml `categories:`) are {}",
                    known.categories.join(", ")
                ))
                .into(),
        );
    }
    if hashes.is_empty() {
        return Err(ProjectError::plain("review::hash", "name the candidates by hash").into());
    }
    let mut errors = Vec::new();
    let mut text = text.to_string();
    for h in hashes {
        match resolve(cands, h) {
            Ok(c) => match approvals::record(&text, &c.character, &c.hash, decision) {
                Ok(t) => text = t,
                Err(e) => errors.push(ProjectError::plain("review::record", e)),
            },
            Err(e) => errors.push(ProjectError::plain("review::hash", e)),
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics { errors });
    }
    approvals::check(&SourceFile::new(name, text.clone()), known)?;
    Ok(text)
}

/// Record `decision` on `hashes` in `root`/approvals.yaml (written once,
/// atomically, when everything checked); the exit code.
pub fn record(root: &Utf8Path, cands: &[Listed], known: &Known, hashes: &[String], decision: &Decision) -> u8 {
    let path = root.join(approvals::FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return EXIT_IO;
        }
    };
    let new = match decide(&text, cands, known, hashes, decision) {
        Ok(t) => t,
        Err(d) => {
            report(d);
            return EXIT_INVALID;
        }
    };
    if let Err(e) = crate::cache::atomic::write_atomic(&path, new.as_bytes()) {
        eprintln!("error: writing {path}: {e}");
        return EXIT_IO;
    }
    let what = match decision {
        Decision::Approve => "approved".to_string(),
        Decision::Reject { category } => format!("rejected ({category})"),
    };
    let mut text = String::new();
    for h in hashes {
        if let Ok(c) = resolve(cands, h) {
            text.push_str(&format!("{} {}: {what}\n", c.character, &c.hash[..sheet::SHORT_HASH]));
        }
    }
    text.push_str(&format!("recorded in {}; the next build uses it\n", approvals::FILE));
    out(&text);
    EXIT_OK
}

impl From<crate::session::Candidate> for Listed {
    fn from(c: crate::session::Candidate) -> Listed {
        Listed {
            character: c.character,
            round: c.round,
            index: c.index,
            hash: c.image,
            image: c.path,
            out: c.out,
            unscored: c.review.as_ref().and_then(|r| r.unscored.clone()),
            scores: c.review.and_then(|r| r.scores),
            verdict: c.verdict,
        }
    }
}

/// Every candidate the cache knows, and what a decision is checked
/// against: the characters, the rules' categories and those candidates.
pub fn candidates_known(session: &crate::session::Session, rules: &LoopRules) -> (Vec<Listed>, Known) {
    let cands: Vec<Listed> = session.candidates(None).into_iter().map(Listed::from).collect();
    let mut by: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for c in &cands {
        by.entry(c.character.clone()).or_default().push(c.hash.clone());
    }
    let known = Known {
        characters: session.project.characters.iter().map(|c| c.id.clone()).collect(),
        categories: rules.categories.keys().cloned().collect(),
        candidates: Some(by),
    };
    (cands, known)
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let mut session = match super::open(root, profile, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rules = match LoopRules::of(&session.project) {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!(
                "error: profile `{}` has no review loop (no `candidate` and `review` rules); use `--profile full` or `--profile sim`",
                session.project.profile.name
            );
            return EXIT_INVALID;
        }
        Err(d) => {
            report(d);
            return EXIT_INVALID;
        }
    };
    let (cands, known) = candidates_known(&session, &rules);
    match args.action {
        Some(Action::Approve { hashes }) => return record(root, &cands, &known, &hashes, &Decision::Approve),
        Some(Action::Reject { hashes, category }) => {
            return record(root, &cands, &known, &hashes, &Decision::Reject { category });
        }
        None => {}
    }
    if let Some(c) = &args.character
        && !known.characters.contains(c)
    {
        eprintln!(
            "error: no character `{c}`; the characters are {}",
            known.characters.join(", ")
        );
        return EXIT_INVALID;
    }
    let cands: Vec<Listed> = cands
        .into_iter()
        .filter(|c| args.character.as_ref().is_none_or(|w| *w == c.character))
        .collect();
    if !cands.iter().any(Listed::pending) {
        return list(&cands, Ok(Vec::new()));
    }
    // The sim profile discovers no tools for its jobs; the sheet needs two.
    let tools = match (&session.tools.ffmpeg, &session.tools.font) {
        (Some(f), Some(t)) => Ok((f.clone(), t.clone())),
        _ => {
            let t = crate::exec::tools::Toolchain::discover(&session.layout.cache, &mut session.index);
            match (t.ffmpeg, t.font) {
                (Some(f), Some(t)) => Ok((f, t)),
                _ => Err("it needs ffmpeg and the Noto Sans CJK font: run `bash scripts/deps.sh`".to_string()),
            }
        }
    };
    let dir = session.layout.out.join("review");
    let sheets = match tools {
        Ok((ffmpeg, font)) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime: {e}"))
            .and_then(|rt| {
                let cancel = tokio_util::sync::CancellationToken::new();
                rt.block_on(sheets(&ffmpeg, &font, &cands, &dir, &cancel))
            }),
        Err(e) => Err(e),
    };
    list(&cands, sheets)
}

/// The exit code of a listing: 0, or 1 when a sheet could not be drawn.
fn list(cands: &[Listed], sheets: Result<Vec<(String, Utf8PathBuf)>, String>) -> u8 {
    match sheets {
        Ok(s) => {
            out(&table(cands, &s));
            EXIT_OK
        }
        Err(e) => {
            out(&table(cands, &[]));
            eprintln!("error: contact sheet: {e}");
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Framing;

    fn cand(who: &str, c: char, verdict: Option<Verdict>) -> Listed {
        Listed {
            character: who.into(),
            round: 1,
            index: 0,
            hash: std::iter::repeat_n(c, 64).collect(),
            image: format!("cache/{c}.png").into(),
            out: format!("out/{who}/{c}.png").into(),
            unscored: None,
            scores: verdict.map(|_| Scores {
                character_match: 0.8,
                clarity: 0.7,
                training_value: 0.9,
                framing: Framing::FullBody,
                rejection_categories: vec![],
                notes: String::new(),
            }),
            verdict,
        }
    }

    fn known() -> Known {
        Known {
            characters: vec!["aiko".into(), "ken".into()],
            categories: vec!["blurry".into(), "off_model".into()],
            candidates: Some(
                [
                    ("aiko".to_string(), vec!["a".repeat(64), "b".repeat(64)]),
                    ("ken".to_string(), vec!["c".repeat(64)]),
                ]
                .into(),
            ),
        }
    }

    fn cands() -> Vec<Listed> {
        vec![
            cand("aiko", 'a', Some(Verdict::Pending)),
            cand("aiko", 'b', Some(Verdict::Approved)),
            cand("ken", 'c', None),
        ]
    }

    #[test]
    fn the_table_lists_only_pending_candidates_with_their_scores() {
        let t = table(&cands(), &[("aiko".into(), "out/review/aiko.png".into())]);
        assert!(
            t.contains("aiko: 2 candidates · 1 approved · 0 rejected · 1 pending · contact sheet out/review/aiko.png"),
            "{t}"
        );
        assert!(
            t.contains("  aaaaaaaaaaaa  r1/0    0.80     0.70   0.90     0.70  full_body   cache/a.png"),
            "{t}"
        );
        assert!(!t.contains("bbbbbbbbbbbb"), "{t}");
        assert!(
            t.contains("ken: 1 candidates · 0 approved · 0 rejected · 0 pending · 1 not reviewed\n"),
            "{t}"
        );
    }

    #[test]
    fn decisions_are_checked_before_anything_is_written() {
        let text = "# mine\n";
        let t = decide(
            text,
            &cands(),
            &known(),
            &["aaaaaaaaaaaa".into(), "cccccccccccccc".into()],
            &Decision::Approve,
        )
        .unwrap();
        assert!(t.starts_with("# mine\naiko:\n  - {image: aaaa"), "{t}");
        assert!(t.contains("ken:\n  - {image: cccc"), "{t}");
        let reject = Decision::Reject {
            category: "ugly".into(),
        };
        let err = decide(text, &cands(), &known(), &["aaaaaaaaaaaa".into()], &reject).unwrap_err();
        assert!(err.errors[0].to_string().contains("`ugly`"));
        let err = decide(
            text,
            &cands(),
            &known(),
            &["dddddddddddd".into(), "aaaa".into()],
            &Decision::Approve,
        )
        .unwrap_err();
        assert_eq!(err.errors.len(), 2, "every bad hash is named");
        // A broken file is reported, not edited.
        let err = decide(
            "aiko: [\n",
            &cands(),
            &known(),
            &["aaaaaaaaaaaa".into()],
            &Decision::Approve,
        )
        .unwrap_err();
        assert!(!err.errors.is_empty());
    }
}
