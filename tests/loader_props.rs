//! Property: whatever the project files say, the loader does not panic, and
//! every mistake it reports has a place (a file, a labelled span inside it,
//! and a `[file:line:col]` when rendered). What it accepts is safe to build:
//! the graph builds or fails with located mistakes, and the timing
//! arithmetic and `Duration`s the stages derive from it stay in range.
//!
//! Cases start from the sample project and examples/tiny and mutate one to
//! three files: lines deleted, duplicated, re-indented; scalars replaced
//! with extreme numbers, wrong types, very long strings; unknown keys;
//! bytes that are not UTF-8.

use std::fs;
use std::path::Path;
use std::time::Duration;

use camino::Utf8Path;
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use proptest::prelude::*;
use studio::cache::index::SourceIndex;
use studio::project::{self, Diagnostics, Project};
use studio::timing;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A project's files: relative path → bytes.
type Files = Vec<(String, Vec<u8>)>;

fn read(rel: &str) -> Vec<u8> {
    fs::read(Path::new(REPO).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The two starting projects, sharing the rules.
fn bases() -> [Files; 2] {
    let mut rules: Files = ["audio", "episode", "images", "video"]
        .iter()
        .map(|k| (format!("rules/{k}.yaml"), read(&format!("rules/{k}.yaml"))))
        .collect();
    // The files the rules name: the vision review's prompt, the workflows.
    rules.push((
        "rules/prompts/vision_review.j2".to_string(),
        read("rules/prompts/vision_review.j2"),
    ));
    for f in fs::read_dir(Path::new(REPO).join("rules/workflows")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        let rel = format!("rules/workflows/{name}");
        rules.push((rel.clone(), read(&rel)));
    }
    let project = |dir: &str| -> Files {
        let mut files = vec![
            ("studio.yaml".to_string(), read(&format!("{dir}studio.yaml"))),
            (
                "episodes/ep01.yaml".to_string(),
                read(&format!("{dir}episodes/ep01.yaml")),
            ),
        ];
        files.extend(rules.iter().cloned());
        files
    };
    [project(""), project("examples/tiny/")]
}

/// Numbers that once reached a panic, a hang or a parser-internal message.
const NUMBERS: &[&str] = &[
    "1e300",
    "-1e300",
    "1e999",
    "-0",
    "-0.0",
    ".nan",
    ".inf",
    "-.inf",
    "0",
    "-1",
    "0.0000001",
    "18446744073709551616",
    "4294967296",
    "99999999999",
];

/// Any scalar, of any type.
const EXTREMES: &[&str] = &[
    "1e300",
    "1e999",
    "-0",
    ".NaN",
    ".inf",
    "-9223372036854775809",
    "0x7fffffff",
    "~",
    "[]",
    "{}",
    "\"\"",
    "true",
    "[1, 2]",
    "{a: 1}",
    "&a 1",
    "*nope",
    "!!binary aGk=",
    "\"\\u0000\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    /// `key: value` → `key: EXTREMES[i]`.
    Extreme(usize, usize),
    /// `key: NUMBER` → `key: NUMBERS[i]`.
    Number(usize, usize),
    /// `key: value` → `key: "yyyy…"` (or `"森森森…"`) of this many characters.
    LongValue(usize, usize, bool),
    /// A line `bogus_N: 1` at this line's indentation.
    UnknownKey(usize),
    /// One more (or one less) leading space.
    Indent(usize, bool),
    /// Bytes that are not UTF-8, at this byte offset.
    NotUtf8(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let line = any::<usize>();
    prop_oneof![
        1 => line.prop_map(Mutation::DeleteLine),
        1 => line.prop_map(Mutation::DuplicateLine),
        2 => (line, 0..EXTREMES.len()).prop_map(|(l, i)| Mutation::Extreme(l, i)),
        4 => (line, 0..NUMBERS.len()).prop_map(|(l, i)| Mutation::Number(l, i)),
        2 => (line, prop_oneof![Just(201usize), Just(1_001), Just(2_001), Just(5_001), Just(200_000)])
            .prop_flat_map(|(l, n)| any::<bool>().prop_map(move |cjk| Mutation::LongValue(l, n, cjk))),
        1 => line.prop_map(Mutation::UnknownKey),
        1 => (line, any::<bool>()).prop_map(|(l, more)| Mutation::Indent(l, more)),
        1 => any::<usize>().prop_map(Mutation::NotUtf8),
    ]
}

/// Apply `m` to `text`; indices are taken modulo what exists.
fn apply(text: &[u8], m: &Mutation) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let n = lines.len();
    let indent = |l: &[u8]| l.iter().take_while(|&&b| b == b' ').count();
    // Where the value of a `key: value` line starts.
    let value = |l: &[u8]| -> Option<usize> {
        let colon = l.windows(2).position(|w| w == b": ")?;
        Some(colon + 2)
    };
    let number = |l: &[u8]| {
        value(l).is_some_and(|at| {
            let v = String::from_utf8_lossy(&l[at..]);
            let v = v.split(" #").next().unwrap_or("").trim().to_string();
            v.parse::<f64>().is_ok()
        })
    };
    match *m {
        Mutation::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Mutation::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::Extreme(i, e) | Mutation::LongValue(i, e, _) | Mutation::Number(i, e) => {
            // The (i mod count)th line with a value (or a number).
            let numeric = matches!(m, Mutation::Number(..));
            let candidates: Vec<usize> = (0..n)
                .filter(|&k| {
                    if numeric {
                        number(&lines[k])
                    } else {
                        value(&lines[k]).is_some()
                    }
                })
                .collect();
            if candidates.is_empty() {
                return text.to_vec();
            }
            let at = candidates[i % candidates.len()];
            let start = value(&lines[at]).unwrap();
            let new = match m {
                Mutation::Extreme(..) => EXTREMES[e].as_bytes().to_vec(),
                Mutation::Number(..) => NUMBERS[e].as_bytes().to_vec(),
                Mutation::LongValue(_, _, true) => format!("\"{}\"", "森".repeat(e)).into_bytes(),
                _ => format!("\"{}\"", "y".repeat(e)).into_bytes(),
            };
            lines[at].truncate(start);
            lines[at].extend(new);
        }
        Mutation::UnknownKey(i) => {
            let l = &lines[i % n];
            let pad = indent(l) + if l[indent(l)..].starts_with(b"- ") { 2 } else { 0 };
            let line = format!("{}bogus_{}: 1", " ".repeat(pad), i % 7).into_bytes();
            lines.insert(i % n + 1, line);
        }
        Mutation::Indent(i, more) => {
            let l = &mut lines[i % n];
            if more {
                l.insert(0, b' ');
            } else if l.first() == Some(&b' ') {
                l.remove(0);
            }
        }
        Mutation::NotUtf8(at) => {
            let mut bytes = text.to_vec();
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, [0xc3, 0x28, 0xff]);
            return bytes;
        }
    }
    lines.join(&b'\n')
}

/// The problems with one reported mistake: it must have a file, a label
/// inside that file, and render with a `[file:line:col]`.
fn unlocated(e: &project::ProjectError) -> Option<String> {
    let labels: Vec<_> = e.labels().map(Iterator::collect).unwrap_or_default();
    let Some(source) = e.source_code() else {
        return Some(format!("no source file: {e}"));
    };
    if labels.is_empty() {
        return Some(format!("no label: {e}"));
    }
    for l in &labels {
        if source.read_span(l.inner(), 0, 0).is_err() {
            return Some(format!("label {l:?} outside its file: {e}"));
        }
    }
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, e)
        .expect("renders");
    let name = e
        .location()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    (!out.contains(&format!("[{name}:"))).then(|| format!("no [file:line:col] in:\n{out}"))
}

fn all_located(d: &Diagnostics) -> Result<(), String> {
    let bad: Vec<String> = d.errors.iter().filter_map(unlocated).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n---\n"))
    }
}

/// What the stages compute from an accepted project stays in range.
fn safe_downstream(p: &Project) {
    for e in &p.executors {
        let _ = Duration::from_secs_f64(e.timeout);
        let _ = Duration::from_secs_f64(e.connect_timeout);
    }
    let scale = p.profile.simulate.as_ref().map_or(1.0, |s| s.time_scale);
    for ep in &p.episodes {
        let Some(sp) = &ep.screenplay else { continue };
        let mut lengths = Vec::new();
        for scene in &sp.scenes {
            let mut frames = 0u64;
            for shot in &scene.shots {
                // The slowest engine costs 150 s per second of media.
                let _ = Duration::from_secs_f64(150.0 * shot.duration * scale);
                let f = timing::least_shot_frames(shot.duration, shot.dialogue.len());
                frames = frames.checked_add(f).expect("scene frames fit u64");
                f.checked_mul(timing::SAMPLES_PER_FRAME).expect("samples fit u64");
            }
            lengths.push(frames);
        }
        // The episode stages subtract every overlap: no scene is shorter
        // than the transitions on its sides, or this underflows.
        let overlap = timing::frames(0.4);
        let fits = lengths
            .iter()
            .enumerate()
            .all(|(i, &l)| l >= timing::scene_needs(i, lengths.len(), overlap));
        if fits {
            let _ = timing::episode_frames(&lengths, &vec![overlap; lengths.len().saturating_sub(1)]);
        }
    }
}

fn load(files: &Files, profile: Option<&str>) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    for (rel, bytes) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    let mut index = SourceIndex::default();
    match project::load(root, profile, &studio::stages::registry::catalog(), &mut index) {
        Err(d) => all_located(&d),
        Ok((p, spans)) => {
            safe_downstream(&p);
            match studio::graph::build::build(&p, &spans, 2) {
                Ok(_) => Ok(()),
                Err(d) => all_located(&d),
            }
        }
    }
}

/// Which file to mutate: studio.yaml and the screenplay more often than
/// each rules file.
fn file() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 3 => Just(1), 2 => 2..6usize]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn mutated_projects_load_or_fail_with_located_mistakes(
        base in 0..2usize,
        sim in any::<bool>(),
        edits in prop::collection::vec((file(), mutation()), 1..4),
    ) {
        let mut files = bases()[base].clone();
        for (file, m) in &edits {
            let (_, bytes) = &mut files[*file];
            *bytes = apply(bytes, m);
        }
        let profile = sim.then_some("sim");
        if let Err(e) = load(&files, profile) {
            prop_assert!(false, "{e}");
        }
    }
}

/// The starting projects load, so mutations are what the cases test.
#[test]
fn the_bases_load() {
    for files in bases() {
        for profile in [None, Some("sim")] {
            let dir = tempfile::tempdir().unwrap();
            let root = Utf8Path::from_path(dir.path()).unwrap();
            for (rel, bytes) in &files {
                fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
                fs::write(root.join(rel), bytes).unwrap();
            }
            let loaded = project::load(
                root,
                profile,
                &studio::stages::registry::catalog(),
                &mut SourceIndex::default(),
            );
            assert!(loaded.is_ok(), "{:?}", loaded.err());
        }
    }
}

/// The check itself: a mistake without a place is caught.
#[test]
fn an_unlocated_mistake_is_caught() {
    let plain = Diagnostics::from(project::ProjectError::plain("io", "somewhere"));
    assert!(all_located(&plain).is_err());
}
