//! Bad input gives a clear diagnostic: the file and the right line, a message
//! that names the mistake, a `help:`, and exit code 2. Nothing already built
//! is lost to a bad edit.

#[path = "../common/mod.rs"]
mod common;
mod limits;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::*;

/// Exit code for bad input (see `cli`).
const INVALID: i32 = 2;

const SIM: &[&str] = &["build", "--profile", "sim"];
const EP: &str = "episodes/ep01.yaml";

/// One bad input and what its diagnostic must say.
struct Case {
    name: &'static str,
    /// `(file, from, to)`: each `from` occurs once in `file`.
    edits: &'static [(&'static str, &'static str, &'static str)],
    /// The file the diagnostic must name, and text that occurs once in it
    /// after the edits: the diagnostic must point at the line it starts on.
    at: (&'static str, &'static str),
    /// Fragments of the message (whitespace-insensitive: miette wraps lines).
    message: &'static [&'static str],
    /// Fragments of the `help:` text.
    help: &'static [&'static str],
}

/// 1-based line where `marker` starts in `rel`; `marker` must occur once.
fn line_of(p: &TestProject, rel: &str, marker: &str) -> usize {
    let text = p.read(rel);
    assert_eq!(text.matches(marker).count(), 1, "`{marker}` must occur once in {rel}");
    text[..text.find(marker).unwrap()].matches('\n').count() + 1
}

/// `text` without whitespace or miette's `│` gutter, so fragments match across
/// wrapped lines.
fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

/// The problems with `run` as the diagnostic for a mistake at `file:line`.
fn check(run: &Run, at: Option<(&str, usize)>, message: &[&str], help: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    if run.code != INVALID {
        bad.push(format!("exit code {} (want {INVALID})", run.code));
    }
    if let Some((file, line)) = at {
        let loc = format!("[{file}:{line}:");
        if !run.stderr.contains(&loc) {
            bad.push(format!("no location `{loc}…]`"));
        }
    }
    let all = squash(&run.stderr);
    for m in message {
        if !all.contains(&squash(m)) {
            bad.push(format!("message lacks `{m}`"));
        }
    }
    match run.stderr.find("help:") {
        None => bad.push("no `help:`".into()),
        Some(i) => {
            let helps = squash(&run.stderr[i..]);
            for h in help {
                if !helps.contains(&squash(h)) {
                    bad.push(format!("help lacks `{h}`"));
                }
            }
        }
    }
    bad
}

/// Run every case on a fresh copy of examples/tiny; report all failures at once.
fn run_table(cases: &[Case]) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let p = TestProject::example("tiny");
                    for (file, from, to) in c.edits {
                        p.edit(file, from, to);
                    }
                    let line = line_of(&p, c.at.0, c.at.1);
                    let run = p.run(SIM);
                    let bad = check(&run, Some((c.at.0, line)), c.message, c.help);
                    (!bad.is_empty()).then(|| {
                        format!(
                            "case `{}` (want {}:{line}): {}\nstderr:\n{}",
                            c.name,
                            c.at.0,
                            bad.join("; "),
                            run.stderr
                        )
                    })
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn each_mistake_is_located() {
    run_table(&[
        Case {
            name: "unknown character in a shot",
            edits: &[(
                EP,
                "Mio smiles confidently.\n        characters:\n          - id: mio",
                "Mio smiles confidently.\n        characters:\n          - id: nobody",
            )],
            at: (EP, "- id: nobody"),
            message: &["unknown character `nobody`"],
            help: &["characters in studio.yaml: kai, mio"],
        },
        Case {
            name: "unknown character in a scene's state",
            edits: &[(
                EP,
                "emotional_state: doubtful",
                "emotional_state: doubtful\n      - character: ghost",
            )],
            at: (EP, "character: ghost"),
            message: &["unknown character `ghost`"],
            help: &["characters in studio.yaml: kai, mio"],
        },
        Case {
            name: "unknown speaker",
            edits: &[(EP, "speaker: mio", "speaker: nemo")],
            at: (EP, "speaker: nemo"),
            message: &["unknown character `nemo`"],
            help: &["characters in studio.yaml: kai, mio"],
        },
        Case {
            name: "duplicate shot id",
            edits: &[(
                EP,
                "- id: sh02\n        type: close_up",
                "- id: sh01\n        type: close_up",
            )],
            at: (EP, "- id: sh01\n        type: close_up"),
            message: &["duplicate shot id `sh01`"],
            help: &["give every shot its own id"],
        },
        Case {
            name: "duplicate scene id",
            edits: &[(EP, "- id: s02\n", "- id: s01\n")],
            at: (EP, "- id: s01\n    title: Headlights"),
            message: &["duplicate scene id `s01`"],
            help: &["give every scene its own id"],
        },
        Case {
            name: "duplicate character id",
            edits: &[(
                "studio.yaml",
                "\nepisodes:",
                "  - id: kai\n    name: Kai Again\n    design_prompt: 1boy\n    color: \"#101010\"\n\nepisodes:",
            )],
            at: ("studio.yaml", "- id: kai\n    name: Kai Again"),
            message: &["duplicate character id `kai`"],
            help: &["give every character its own id"],
        },
        Case {
            name: "bad character color",
            edits: &[("studio.yaml", "color: \"#3070d0\"", "color: \"blue\"")],
            at: ("studio.yaml", "color: \"blue\""),
            message: &["color `blue` is not `#rrggbb`"],
            help: &["six hex digits"],
        },
        Case {
            name: "unknown engine in rules (profile in use)",
            edits: &[("rules/audio.yaml", "engine: ace_step", "engine: bogus_engine")],
            at: ("rules/audio.yaml", "engine: bogus_engine"),
            message: &["engine `bogus_engine` is not a known engine for `scene_music`"],
            help: &["engines for `scene_music`:", "procedural", "ace_step"],
        },
        Case {
            name: "unknown fallback engine in rules",
            edits: &[("rules/video.yaml", "fallbacks: [ffmpeg]", "fallbacks: [ffmpge]")],
            at: ("rules/video.yaml", "fallbacks: [ffmpge]"),
            message: &["engine `ffmpge` is not a known engine for `shot_video`"],
            help: &["engines for `shot_video`:", "ffmpeg", "rife_esrgan"],
        },
        Case {
            name: "engine that cannot make the kind",
            edits: &[("rules/audio.yaml", "engine: edge_tts", "engine: ffmpeg")],
            at: ("rules/audio.yaml", "- engine: ffmpeg"),
            message: &["engine `ffmpeg` cannot make `voice_line`"],
            help: &["engines for `voice_line`:", "espeak", "edge_tts"],
        },
        Case {
            name: "unknown condition in rules",
            edits: &[("rules/audio.yaml", "when: [has_voice_model]", "when: [has_voice_modle]")],
            at: ("rules/audio.yaml", "when: [has_voice_modle]"),
            message: &["unknown condition `has_voice_modle`"],
            help: &["conditions:", "has_voice_model", "has_reference_audio"],
        },
        Case {
            name: "negative duration",
            edits: &[(EP, "- id: mio\n        duration: 3", "- id: mio\n        duration: -2")],
            at: (EP, "duration: -2"),
            message: &["`duration` must be a positive number of seconds up to 600, not -2"],
            help: &["write e.g. `duration: 4.5`"],
        },
        Case {
            name: "zero duration",
            edits: &[(EP, "- id: mio\n        duration: 3", "- id: mio\n        duration: 0")],
            at: (EP, "duration: 0"),
            message: &["`duration` must be a positive number of seconds up to 600, not 0"],
            help: &["write e.g. `duration: 4.5`"],
        },
        Case {
            name: "negative target_duration",
            edits: &[(
                EP,
                "mood: calm\n    target_duration: 5",
                "mood: calm\n    target_duration: -1",
            )],
            at: (EP, "target_duration: -1"),
            message: &["`target_duration` must be a positive number of seconds up to 10800, not -1"],
            help: &["write e.g. `target_duration: 60`"],
        },
        Case {
            name: "unknown mood",
            edits: &[(EP, "mood: joyful", "mood: happyy")],
            at: (EP, "mood: happyy"),
            message: &["unknown mood `happyy`"],
            help: &["mood is one of:", "calm", "joyful", "eerie"],
        },
        Case {
            name: "unknown shot type",
            edits: &[(EP, "type: close_up", "type: closeup")],
            at: (EP, "type: closeup"),
            message: &["unknown shot type `closeup`"],
            help: &["shot type is one of:", "close_up", "wide"],
        },
        Case {
            name: "unknown position",
            edits: &[(
                EP,
                "- id: kai\n            position: left\n          - id: mio\n            position: right\n        duration: 2",
                "- id: kai\n            position: leftt\n          - id: mio\n            position: right\n        duration: 2",
            )],
            at: (EP, "position: leftt"),
            message: &["unknown position `leftt`"],
            help: &["position is one of:", "left", "center", "right"],
        },
        Case {
            name: "continue_from names no shot",
            edits: &[(
                EP,
                "- id: mio\n        duration: 3",
                "- id: mio\n        duration: 3\n        continue_from: sh09",
            )],
            at: (EP, "continue_from: sh09"),
            message: &["`continue_from: sh09` names no other shot of ep01"],
            help: &["SCENE/SHOT"],
        },
        Case {
            name: "YAML syntax error",
            edits: &[(EP, "title: Headlights", "title: Headlights: yes: no")],
            at: (EP, "title: Headlights: yes: no"),
            message: &["episodes/ep01.yaml:", "mapping values are not allowed"],
            help: &["fix the YAML"],
        },
        Case {
            // A key one column short ends its mapping: the mistake is on
            // that line, not a "missing field" at the top of the mapping.
            name: "YAML misindented key",
            edits: &[(
                EP,
                "    title: Headlights\n",
                "    title: Headlights\n   location: oops\n",
            )],
            at: (EP, "   location: oops"),
            message: &["episodes/ep01.yaml:", "did not find expected '-' indicator"],
            help: &["fix the YAML"],
        },
        Case {
            name: "YAML syntax error in studio.yaml",
            edits: &[("studio.yaml", "  name: Tiny\n", "  name: Tiny\n   genre: x\n")],
            at: ("studio.yaml", "   genre: x"),
            message: &["studio.yaml:", "mapping values are not allowed"],
            help: &["fix the YAML"],
        },
        Case {
            name: "unknown field in a shot",
            edits: &[(EP, "- id: mio\n        duration: 3", "- id: mio\n        duraton: 3")],
            at: (EP, "duraton: 3"),
            message: &["unknown field `duraton`", "duration"],
            help: &["fix the YAML"],
        },
        Case {
            name: "unknown field in a rule",
            edits: &[("rules/audio.yaml", "fallbacks: [procedural]", "fallback: [procedural]")],
            at: ("rules/audio.yaml", "fallback: [procedural]"),
            message: &["unknown field `fallback`", "fallbacks"],
            help: &["fix the YAML"],
        },
        Case {
            name: "unknown field in studio.yaml",
            edits: &[("studio.yaml", "    synopsis: Kai and Mio", "    synopsys: Kai and Mio")],
            at: ("studio.yaml", "synopsys:"),
            message: &["unknown field `synopsys`", "synopsis"],
            help: &["fix the YAML"],
        },
        Case {
            // Reported at the shot's first line, not at its last key.
            name: "missing required field",
            edits: &[(EP, "- id: mio\n        duration: 3\n", "- id: mio\n")],
            at: (EP, "id: sh02\n        type: close_up"),
            message: &["missing field `duration`", "this mapping has no `duration:`"],
            help: &["fix the YAML"],
        },
        Case {
            name: "missing required field in studio.yaml",
            edits: &[("studio.yaml", "    name: Mio Aki\n", "")],
            at: ("studio.yaml", "- id: mio"),
            message: &["missing field `name`"],
            help: &["fix the YAML"],
        },
    ]);
}

#[test]
fn missing_screenplay_points_at_its_entry_in_studio_yaml() {
    let p = TestProject::sample();
    assert!(
        !p.path("episodes/ep02.yaml").exists(),
        "the sample has no ep02 screenplay"
    );
    let line = line_of(&p, "studio.yaml", "- id: ep02");
    for args in [&["build", "ep02", "--profile", "sim"][..], &["build", "ep02"]] {
        let run = p.run(args);
        let bad = check(
            &run,
            Some(("studio.yaml", line)),
            &["episode `ep02` has no screenplay", "episodes/ep02.yaml does not exist"],
            &["write episodes/ep02.yaml"],
        );
        assert!(bad.is_empty(), "{args:?}: {}\nstderr:\n{}", bad.join("; "), run.stderr);
    }
}

#[test]
fn unknown_episode_is_named() {
    let p = TestProject::sample();
    let run = p.run(&["build", "ep09", "--profile", "sim"]);
    let bad = check(
        &run,
        None,
        &["unknown episode `ep09`"],
        &["episodes in studio.yaml: ep01, ep02"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);
    assert!(run.stdout.is_empty(), "nothing built: {}", run.stdout);
}

#[test]
fn dependency_cycle_shows_the_whole_loop() {
    let p = TestProject::example("tiny");
    p.edit(
        EP,
        "        duration: 2\n        dialogue:",
        "        duration: 2\n        continue_from: sh02\n        dialogue:",
    );
    p.edit(
        EP,
        "- id: mio\n        duration: 3",
        "- id: mio\n        duration: 3\n        continue_from: sh01",
    );
    let lines = [
        line_of(&p, EP, "continue_from: sh02"),
        line_of(&p, EP, "continue_from: sh01"),
    ];
    let run = p.run(SIM);
    let bad = check(&run, None, &["dependency cycle:"], &["remove one `continue_from`"]);
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);

    // The first label decides the location: one of the two `continue_from` lines.
    assert!(
        lines.iter().any(|l| run.stderr.contains(&format!("[{EP}:{l}:"))),
        "no location at a continue_from line {lines:?}:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("ep01/s01/sh01 continues from here"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("ep01/s01/sh02 continues from here"),
        "{}",
        run.stderr
    );

    // The message is the loop `a → b → … → a`, through both shots.
    let start = run.stderr.find("dependency cycle:").unwrap();
    let end = start + run.stderr[start..].find('╭').expect("a source snippet follows");
    let chain = squash(&run.stderr[start..end]);
    let nodes: Vec<&str> = chain.trim_start_matches("dependencycycle:").split('→').collect();
    assert!(nodes.len() >= 3, "a loop of at least two nodes: {nodes:?}");
    assert_eq!(nodes.first(), nodes.last(), "the chain ends where it starts: {nodes:?}");
    for shot in ["ep01/s01/sh01", "ep01/s01/sh02"] {
        assert!(
            nodes.iter().any(|n| n.ends_with(shot)),
            "{shot} is on the loop: {nodes:?}"
        );
    }
    let inner = &nodes[..nodes.len() - 1];
    let distinct: std::collections::BTreeSet<_> = inner.iter().collect();
    assert_eq!(
        distinct.len(),
        inner.len(),
        "each node once, then back to the start: {nodes:?}"
    );
}

#[test]
fn several_mistakes_are_reported_in_one_run() {
    let p = TestProject::example("tiny");
    p.edit(
        EP,
        "Mio smiles confidently.\n        characters:\n          - id: mio",
        "Mio smiles confidently.\n        characters:\n          - id: nobody",
    );
    p.edit(EP, "mood: joyful", "mood: happyy");
    p.edit(
        EP,
        "into the rain.\n        duration: 2",
        "into the rain.\n        duration: -2",
    );
    p.edit("rules/audio.yaml", "engine: ace_step", "engine: bogus_engine");
    p.edit("studio.yaml", "color: \"#3070d0\"", "color: \"blue\"");
    let want = [
        (EP, line_of(&p, EP, "- id: nobody"), "unknown character `nobody`"),
        (EP, line_of(&p, EP, "mood: happyy"), "unknown mood `happyy`"),
        (
            EP,
            line_of(&p, EP, "duration: -2"),
            "`duration` must be a positive number of seconds up to 600, not -2",
        ),
        (
            "rules/audio.yaml",
            line_of(&p, "rules/audio.yaml", "engine: bogus_engine"),
            "engine `bogus_engine`",
        ),
        (
            "studio.yaml",
            line_of(&p, "studio.yaml", "color: \"blue\""),
            "color `blue` is not `#rrggbb`",
        ),
    ];
    let run = p.run(SIM);
    let mut bad = check(&run, None, &[&format!("the project has {} mistakes", want.len())], &[]);
    for (file, line, message) in want {
        bad.extend(
            check(&run, Some((file, line)), &[message], &[])
                .into_iter()
                .map(|b| format!("{message}: {b}")),
        );
    }
    let helps = run.stderr.matches("help:").count();
    if helps < want.len() {
        bad.push(format!("{helps} `help:` for {} mistakes", want.len()));
    }
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);
}

/// Every file under `dir`: relative path → content hash.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_symlink() {
                out.insert(rel, format!("-> {}", fs::read_link(&path).unwrap().display()));
            } else {
                out.insert(rel, blake3::hash(&fs::read(&path).unwrap()).to_hex().to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_bad_edit_loses_nothing_already_built() {
    let p = TestProject::example("tiny");
    let first = p.build(&[]).ok();
    assert!(first.total("built") > 0, "the first build builds");
    let out = snapshot(&p.path("out"));
    let cache = snapshot(&p.path("cache"));
    assert!(!out.is_empty() && !cache.is_empty(), "the build wrote out/ and cache/");

    let screenplay = p.read(EP);
    let breaks: [(&str, &[(&str, &str)]); 3] = [
        ("unknown mood", &[("mood: joyful", "mood: happyy")]),
        ("YAML syntax", &[("title: Headlights", "title: Headlights: yes: no")]),
        (
            "cycle",
            &[
                (
                    "        duration: 2\n        dialogue:",
                    "        duration: 2\n        continue_from: sh02\n        dialogue:",
                ),
                (
                    "- id: mio\n        duration: 3",
                    "- id: mio\n        duration: 3\n        continue_from: sh01",
                ),
            ],
        ),
    ];
    for (what, edits) in breaks {
        for (from, to) in edits {
            p.edit(EP, from, to);
        }
        for args in [SIM, &["build", "--json", "--profile", "sim"]] {
            let run = p.run(args);
            assert_eq!(
                run.code, INVALID,
                "{what}: a broken screenplay is bad input:\n{}",
                run.stderr
            );
            assert!(run.stderr.contains(EP), "{what}: names the screenplay:\n{}", run.stderr);
            assert_eq!(snapshot(&p.path("out")), out, "{what}: out/ is untouched");
            assert_eq!(snapshot(&p.path("cache")), cache, "{what}: cache/ is untouched");
        }
        p.write(EP, &screenplay);
    }

    let again = p.build(&[]).ok();
    assert_eq!(
        again.total("built"),
        0,
        "nothing to rebuild after the fix: {:?}",
        again.built()
    );
    assert_eq!(snapshot(&p.path("out")), out, "out/ is as the first build left it");
}

const IMAGES: &str = "rules/images.yaml";
const TXT2IMG: &str = "file: rules/workflows/txt2img.json";

/// Files rules and studio.yaml name must exist inside the project.
#[test]
fn named_files_are_checked() {
    run_table(&[
        Case {
            name: "missing workflow file",
            edits: &[(IMAGES, TXT2IMG, "file: rules/workflows/nope.json")],
            at: (IMAGES, "rules/workflows/nope.json"),
            message: &["`workflows` names rules/workflows/nope.json, which does not exist"],
            help: &["put the file at rules/workflows/nope.json"],
        },
        Case {
            name: "absolute workflow path",
            edits: &[(IMAGES, TXT2IMG, "file: /etc/hostname")],
            at: (IMAGES, "/etc/hostname"),
            message: &["`workflows` names `/etc/hostname`, which is an absolute path"],
            help: &["relative to the project folder"],
        },
        Case {
            name: "workflow path leaving the project",
            edits: &[(IMAGES, TXT2IMG, "file: rules/../../secret.json")],
            at: (IMAGES, "rules/../../secret.json"),
            message: &["which leaves the project folder"],
            help: &["relative to the project folder"],
        },
        Case {
            name: "workflow under out/",
            edits: &[(IMAGES, TXT2IMG, "file: out/ep01/ep01.jpg")],
            at: (IMAGES, "out/ep01/ep01.jpg"),
            message: &["which is under studio's own `out/`"],
            help: &["relative to the project folder"],
        },
        Case {
            name: "file reference with other keys",
            edits: &[(
                IMAGES,
                "approve_at: 0.92",
                "approve_at: 0.92\n    mask: {file: rules/workflows/txt2img.json, hash: abc}",
            )],
            at: (IMAGES, "file: rules/workflows/txt2img.json, hash"),
            message: &["`mask` is", "not a file reference"],
            help: &["{file: PATH}"],
        },
        Case {
            name: "missing reference clip in studio.yaml",
            edits: &[(
                "studio.yaml",
                "espeak: en-us+m3",
                "espeak: en-us+m3\n      reference_audio: {file: voices/kai.wav}",
            )],
            at: ("studio.yaml", "voices/kai.wav"),
            message: &["kai's `voice.reference_audio` names voices/kai.wav, which does not exist"],
            help: &["put the file at voices/kai.wav"],
        },
    ]);
}
