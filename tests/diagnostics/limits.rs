//! Numbers out of range, texts over their limit, scenes too short for their
//! transitions and the YAML mistakes whose messages once leaked parser
//! internals: each a located diagnostic with the limit and the fix.

use super::*;

/// A number out of range, in every file that carries numbers.
#[test]
fn each_number_out_of_range_is_located() {
    run_table(&[
        Case {
            name: "shot duration 1e300",
            edits: &[(
                EP,
                "- id: mio\n        duration: 3",
                "- id: mio\n        duration: 1e300",
            )],
            at: (EP, "duration: 1e300"),
            message: &["`duration` must be a positive number of seconds up to 600, not 1e300"],
            help: &["write e.g. `duration: 4.5`"],
        },
        Case {
            name: "shot duration .nan",
            edits: &[(
                EP,
                "- id: mio\n        duration: 3",
                "- id: mio\n        duration: .nan",
            )],
            at: (EP, "duration: .nan"),
            message: &["`duration` must be a positive number of seconds up to 600, not NaN"],
            help: &["write e.g. `duration: 4.5`"],
        },
        Case {
            name: "shot duration -0",
            edits: &[(
                EP,
                "- id: mio\n        duration: 3",
                "- id: mio\n        duration: -0.0",
            )],
            at: (EP, "duration: -0.0"),
            message: &["`duration` must be a positive number of seconds up to 600"],
            help: &["write e.g. `duration: 4.5`"],
        },
        Case {
            name: "scene target_duration of a day",
            edits: &[(
                EP,
                "mood: calm\n    target_duration: 5",
                "mood: calm\n    target_duration: 86400",
            )],
            at: (EP, "target_duration: 86400"),
            message: &["`target_duration` must be a positive number of seconds up to 10800, not 86400"],
            help: &["write e.g. `target_duration: 60`"],
        },
        Case {
            name: "energy above 1",
            edits: &[(EP, "energy: 0.5", "energy: 2")],
            at: (EP, "energy: 2"),
            message: &["`energy` must be between 0 and 1, not 2"],
            help: &["write e.g. `energy: 0.8`"],
        },
        Case {
            name: "take 0",
            edits: &[(
                EP,
                "- id: mio\n        duration: 3",
                "- id: mio\n        duration: 3\n        take: 0",
            )],
            at: (EP, "take: 0"),
            message: &["`take` must be a whole number from 1 to 9999, not 0"],
            help: &["write e.g. `take: 2`"],
        },
        Case {
            name: "sim time_scale 1e30",
            edits: &[("studio.yaml", "time_scale: 0\n", "time_scale: 1e30\n")],
            at: ("studio.yaml", "time_scale: 1e30"),
            message: &["`time_scale` must be between 0 and 1000, not 1e30"],
            help: &["write e.g. `time_scale: 0.001`"],
        },
        Case {
            name: "sim time_scale -1",
            edits: &[("studio.yaml", "time_scale: 0\n", "time_scale: -1\n")],
            at: ("studio.yaml", "time_scale: -1"),
            message: &["`time_scale` must be between 0 and 1000, not -1"],
            help: &["time_scale"],
        },
        Case {
            name: "executor timeout 1e300",
            edits: &[("studio.yaml", "    slots: 2\n", "    slots: 2\n    timeout: 1e300\n")],
            at: ("studio.yaml", "timeout: 1e300"),
            message: &["`timeout` must be a positive number of seconds up to 86400, not 1e300"],
            help: &["write e.g. `timeout: 120`"],
        },
        Case {
            name: "executor connect_timeout .inf",
            edits: &[(
                "studio.yaml",
                "    slots: 2\n",
                "    slots: 2\n    connect_timeout: .inf\n",
            )],
            at: ("studio.yaml", "connect_timeout: .inf"),
            message: &["`connect_timeout` must be a positive number of seconds up to 86400, not infinity"],
            help: &["connect_timeout"],
        },
        Case {
            name: "executor slots 0",
            edits: &[("studio.yaml", "    slots: 2\n", "    slots: 0\n")],
            at: ("studio.yaml", "slots: 0"),
            message: &["`slots` must be a whole number from 1 to 256, not 0"],
            help: &["write e.g. `slots: 2`"],
        },
        Case {
            name: "executor slots 100000",
            edits: &[("studio.yaml", "    slots: 2\n", "    slots: 100000\n")],
            at: ("studio.yaml", "slots: 100000"),
            message: &["`slots` must be a whole number from 1 to 256, not 100000"],
            help: &["write e.g. `slots: 2`"],
        },
        Case {
            name: "style cfg 1e9",
            edits: &[("studio.yaml", "  width: 512\n", "  width: 512\n  cfg: 1e9\n")],
            at: ("studio.yaml", "cfg: 1e9"),
            message: &["`cfg` must be a positive number up to 30, not 1e9"],
            help: &["write e.g. `cfg: 7`"],
        },
        Case {
            name: "style steps 0",
            edits: &[("studio.yaml", "  width: 512\n", "  width: 512\n  steps: 0\n")],
            at: ("studio.yaml", "steps: 0"),
            message: &["`steps` must be a whole number from 1 to 500, not 0"],
            help: &["write e.g. `steps: 28`"],
        },
        Case {
            name: "style width 100000",
            edits: &[("studio.yaml", "  width: 512\n", "  width: 100000\n")],
            at: ("studio.yaml", "width: 100000"),
            message: &["`width` must be a whole number from 64 to 8192 pixels, not 100000"],
            help: &["write e.g. `width: 832`"],
        },
        Case {
            name: "voice pitch 200",
            edits: &[("studio.yaml", "pitch: 35", "pitch: 200")],
            at: ("studio.yaml", "pitch: 200"),
            message: &["`pitch` must be a whole number from 0 to 99, not 200"],
            help: &["write e.g. `pitch: 50`"],
        },
        Case {
            name: "voice rate 5",
            edits: &[("studio.yaml", "rate: 170", "rate: 5")],
            at: ("studio.yaml", "rate: 5"),
            message: &["`rate` must be a whole number from 80 to 500 words per minute, not 5"],
            help: &["write e.g. `rate: 175`"],
        },
        Case {
            name: "writing num_ctx 10",
            edits: &[(
                "studio.yaml",
                "\nprofiles:\n",
                "\nwriting:\n  num_ctx: 10\n\nprofiles:\n",
            )],
            at: ("studio.yaml", "num_ctx: 10"),
            message: &["`num_ctx` must be a whole number from 256 to 1048576 tokens, not 10"],
            help: &["write e.g. `num_ctx: 8192`"],
        },
        Case {
            name: "rule retries 1000",
            edits: &[(
                "rules/audio.yaml",
                "fallbacks: [procedural]",
                "fallbacks: [procedural]\n      retries: 1000",
            )],
            at: ("rules/audio.yaml", "retries: 1000"),
            message: &["`retries` must be a whole number from 0 to 10, not 1000"],
            help: &["write e.g. `retries: 2`"],
        },
        Case {
            name: "param duck_ratio 100",
            edits: &[("rules/audio.yaml", "duck_ratio: 6", "duck_ratio: 100")],
            at: ("rules/audio.yaml", "duck_ratio: 100"),
            message: &["`duck_ratio` of `scene_mix` must be between 1 and 20, not 100"],
            help: &["write e.g. `duck_ratio: 6`"],
        },
        Case {
            name: "param sample_rate 1e12",
            edits: &[(
                "rules/audio.yaml",
                "sample_rate: 48000\n    # Scene music",
                "sample_rate: 1e12\n    # Scene music",
            )],
            at: ("rules/audio.yaml", "sample_rate: 1e12"),
            message: &["`sample_rate` of `scene_mix` must be a whole number from 8000 to 192000 Hz"],
            help: &["write e.g. `sample_rate: 48000`"],
        },
        Case {
            name: "param transition_seconds 0",
            edits: &[("rules/episode.yaml", "transition_seconds: 0.4", "transition_seconds: 0")],
            at: ("rules/episode.yaml", "transition_seconds: 0"),
            message: &["`transition_seconds` of `episode_video` must be between 0.05 and 10 seconds, not 0"],
            help: &["write e.g. `transition_seconds: 0.4`"],
        },
        Case {
            name: "param default_transition unknown",
            edits: &[(
                "rules/episode.yaml",
                "default_transition: dissolve",
                "default_transition: zoom",
            )],
            at: ("rules/episode.yaml", "default_transition: zoom"),
            message: &["`default_transition` of `episode_video` must be one of dissolve, fade"],
            help: &["`default_transition` is one of: dissolve, fade, fadeblack, wipeleft"],
        },
        Case {
            name: "param subtitles not a flag",
            edits: &[("rules/episode.yaml", "subtitles: true", "subtitles: sometimes")],
            at: ("rules/episode.yaml", "subtitles: sometimes"),
            message: &["`subtitles` of `episode` must be true or false"],
            help: &["write `subtitles: true` or `subtitles: false`"],
        },
        Case {
            name: "param width in a profile's params",
            edits: &[(
                "rules/images.yaml",
                "continuity: scene",
                "continuity: scene\n        width: 1e9",
            )],
            at: ("rules/images.yaml", "width: 1e9"),
            message: &["`width` of `shot_image` must be a whole number from 64 to 8192 pixels, not 1e9"],
            help: &["write e.g. `width: 832`"],
        },
        Case {
            name: "param .inf",
            edits: &[("rules/audio.yaml", "duck_ratio: 6", "duck_ratio: .inf")],
            at: ("rules/audio.yaml", "duck_ratio: .inf"),
            message: &["rules/audio.yaml: `.inf` is not a finite number"],
            help: &["write an ordinary number", "Limits"],
        },
    ]);
}

/// `text` made `'static` for a [`Case`].
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// One edit, made `'static` for a [`Case`].
fn edit(file: &'static str, from: &'static str, to: String) -> &'static [(&'static str, &'static str, &'static str)] {
    Box::leak(vec![(file, from, leak(to))].into_boxed_slice())
}

/// A text one character over its limit, in each kind of text field.
#[test]
fn each_text_over_its_limit_is_located() {
    let x = |n: usize| "x".repeat(n);
    // `(what, file, from, to-prefix, limit)`: the edit writes `to-prefix`
    // followed by `limit + 1` characters where `from` was.
    let fields: [(&str, &str, &str, &str, usize); 12] = [
        ("dialogue line", EP, "text: \"Will it come?\"", "text: ", 1000),
        ("action line", EP, "action: Mio smiles confidently.", "action: ", 2000),
        ("motion prompt", EP, "motion: slow push in", "motion: ", 1000),
        ("scene title", EP, "title: Headlights", "title: ", 200),
        (
            "emotional_state",
            EP,
            "emotional_state: doubtful",
            "emotional_state: ",
            2000,
        ),
        ("episode title", "studio.yaml", "title: Bus Stop", "title: ", 200),
        ("character name", "studio.yaml", "name: Mio Aki", "name: ", 200),
        (
            "design_prompt",
            "studio.yaml",
            "design_prompt: 1girl, long brown hair, blue umbrella, anime style",
            "design_prompt: ",
            2000,
        ),
        (
            "premise",
            "studio.yaml",
            "premise: Two friends wait for a bus in the rain.",
            "premise: ",
            5000,
        ),
        ("genre", "studio.yaml", "genre: slice of life", "genre: ", 200),
        (
            "the executor's `model`",
            "studio.yaml",
            "model: gemma3:12b",
            "model: ",
            200,
        ),
        (
            "the executor's `url`",
            "studio.yaml",
            "url: http://127.0.0.1:8188",
            "url: ",
            1000,
        ),
    ];
    let cases: Vec<Case> = fields
        .into_iter()
        .map(|(what, file, from, prefix, limit)| {
            let marker = leak(format!("{prefix}{}", x(40)));
            Case {
                name: what,
                edits: edit(file, from, format!("{prefix}{}", x(limit + 1))),
                at: (file, marker),
                message: Box::leak(Box::new([leak(format!(
                    "{what} is {} characters long; the limit is {limit}",
                    limit + 1
                ))])),
                help: Box::leak(Box::new([leak(format!("shorten it to at most {limit} characters"))])),
            }
        })
        .collect();
    run_table(&cases);
}

/// A 10 MB dialogue line is refused at load, quoted by its start only.
#[test]
fn a_ten_megabyte_line_is_refused_at_load() {
    let p = TestProject::example("tiny");
    let huge = "word ".repeat(2_000_000);
    p.edit(EP, "\"Will it come?\"", &format!("\"{huge}\""));
    let line = line_of(&p, EP, "text: \"word word");
    let run = p.run(SIM);
    let bad = check(
        &run,
        Some((EP, line)),
        &["dialogue line is 10000000 characters long; the limit is 1000"],
        &["or split it into several lines"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{:.3000}", bad.join("; "), run.stderr);
    assert!(
        run.stderr.len() < 10_000,
        "the diagnostic quotes the start of the line, not 10 MB: {} bytes",
        run.stderr.len()
    );
    assert!(run.stdout.is_empty(), "nothing built");
}

/// The case that once failed at `episode_video` after 20+ nodes were built:
/// a middle scene shorter than the transitions on both its sides.
#[test]
fn a_scene_shorter_than_its_transitions_is_refused_at_load() {
    const MIDDLE: &str =
        "  - id: s015\n    title: Blink\n    shots:\n      - id: sh01\n        duration: 0.5\n  - id: s02\n";
    run_table(&[
        Case {
            name: "middle scene 0.5 s, transitions 0.4 s on both sides",
            edits: &[(EP, "  - id: s02\n", MIDDLE)],
            at: (EP, "- id: s015"),
            message: &[
                "scene `s015` lasts 0.50 s as written, but the transitions on both its sides overlap 0.80 s of it",
            ],
            help: &["lengthen its shots to 0.80 s in all", "transition_seconds", "(0.40 s)"],
        },
        Case {
            name: "last scene shorter than a long transition",
            edits: &[("rules/episode.yaml", "transition_seconds: 0.4", "transition_seconds: 6")],
            at: (EP, "- id: s02"),
            message: &["scene `s02` lasts 5.00 s as written, but its transition overlaps 6.00 s of it"],
            help: &["lengthen its shots to 6.00 s in all"],
        },
    ]);

    // Dialogue cannot save a scene whose fixed parts already fit: a 0.5 s
    // shot with a line lasts at least its lead-in and tail (1.03 s).
    let p = TestProject::example("tiny");
    p.edit(
        EP,
        "  - id: s02\n",
        "  - id: s015\n    title: Blink\n    shots:\n      - id: sh01\n        duration: 0.5\n        dialogue:\n          - {speaker: kai, text: Hm.}\n  - id: s02\n",
    );
    let run = p.run(&["build", "--profile", "sim", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Mistakes whose messages named parser internals, or no place.
#[test]
fn yaml_mistakes_say_what_where_and_the_fix() {
    run_table(&[
        Case {
            name: "duplicate key",
            edits: &[(
                EP,
                "    title: Headlights\n",
                "    title: Headlights\n    title: Lights\n",
            )],
            at: (EP, "title: Lights"),
            message: &[
                "`title` is given twice in the same mapping",
                "first given here",
                "given again here",
            ],
            help: &["keep one `title:`"],
        },
        Case {
            name: "duplicate key in studio.yaml",
            edits: &[(
                "studio.yaml",
                "  genre: slice of life\n",
                "  genre: slice of life\n  genre: drama\n",
            )],
            at: ("studio.yaml", "genre: drama"),
            message: &["`genre` is given twice in the same mapping"],
            help: &["keep one `genre:`"],
        },
        Case {
            name: "non-finite in a typeless param",
            edits: &[("rules/video.yaml", "denoise: 0.4", "denoise: .nan")],
            at: ("rules/video.yaml", "denoise: .nan"),
            message: &["`.nan` is not a finite number"],
            help: &["write an ordinary number"],
        },
        Case {
            name: "rules_from unknown profile",
            edits: &[("studio.yaml", "rules_from: full", "rules_from: ful")],
            at: ("studio.yaml", "rules_from: ful"),
            message: &["profile `sim` takes rules from unknown profile `ful`"],
            help: &["profiles in studio.yaml: animatic, full, sim"],
        },
    ]);
    for text in [".inf", "1e999", "-.inf"] {
        assert!(
            !yaml_message(text).contains("reject_non_finite"),
            "no parser option names for {text}"
        );
    }
}

/// The message for `duck_ratio: <text>`.
fn yaml_message(text: &str) -> String {
    let p = TestProject::example("tiny");
    p.edit("rules/audio.yaml", "duck_ratio: 6", &format!("duck_ratio: {text}"));
    let run = p.run(SIM);
    assert_eq!(run.code, INVALID, "{}", run.stderr);
    assert!(run.stderr.contains("is not a finite number"), "{text}: {}", run.stderr);
    run.stderr
}

#[test]
fn a_file_that_is_not_utf8_is_located_by_line_and_column() {
    let p = TestProject::example("tiny");
    let mut bytes = p.read(EP).into_bytes();
    let at = p.read(EP).find("title: Headlights").unwrap() + "title: Head".len();
    bytes.splice(at..at, [0xff, 0xfe]);
    fs::write(p.path(EP), &bytes).unwrap();
    let line = line_of_bytes(&bytes, at);
    let run = p.run(SIM);
    let bad = check(
        &run,
        None,
        &[&format!(
            "{EP} is not UTF-8 text: line {line}, column 16 has the byte(s) 0xff"
        )],
        &["save episodes/ep01.yaml as UTF-8"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);
    assert!(run.stderr.contains(&format!("[{EP}:{line}:16]")), "{}", run.stderr);
    assert!(!run.stderr.contains("byte "), "no byte offset: {}", run.stderr);

    // studio.yaml too: the fix is its encoding, not the folder.
    let p = TestProject::example("tiny");
    let mut bytes = p.read("studio.yaml").into_bytes();
    bytes.splice(0..0, *b"# \xe9t\xe9\n");
    fs::write(p.path("studio.yaml"), &bytes).unwrap();
    let run = p.run(SIM);
    let bad = check(
        &run,
        Some(("studio.yaml", 1)),
        &["studio.yaml is not UTF-8 text: line 1, column 3 has the byte(s) 0xe9"],
        &["save studio.yaml as UTF-8"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);
    assert!(!run.stderr.contains("project folder"), "{}", run.stderr);
}

fn line_of_bytes(bytes: &[u8], at: usize) -> usize {
    bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

#[test]
fn profile_mistakes_are_located() {
    let p = TestProject::example("tiny");
    let studio = p.read("studio.yaml");
    let cut = studio.find("\nprofiles:").unwrap();
    p.write("studio.yaml", &studio[..cut + 1]);
    let last = studio[..cut].trim_end().lines().count();
    for args in [SIM, &["build"][..]] {
        let run = p.run(args);
        let bad = check(
            &run,
            Some(("studio.yaml", last)),
            &["studio.yaml has no `profiles:` section", "add it after this line"],
            &["profiles: {default: animatic"],
        );
        assert!(bad.is_empty(), "{args:?}: {}\nstderr:\n{}", bad.join("; "), run.stderr);
    }

    // An unknown `--profile` points at the profiles that exist.
    let p = TestProject::example("tiny");
    let line = line_of(&p, "studio.yaml", "\nprofiles:") + 1;
    let run = p.run(&["build", "--profile", "nope"]);
    let bad = check(
        &run,
        Some(("studio.yaml", line)),
        &["unknown profile `nope` (from --profile)"],
        &["profiles in studio.yaml: animatic, full, sim"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);

    // A default that names no profile points at itself.
    p.edit("studio.yaml", "default: animatic", "default: animatc");
    let line = line_of(&p, "studio.yaml", "default: animatc");
    let run = p.run(&["build"]);
    let bad = check(
        &run,
        Some(("studio.yaml", line)),
        &["the default profile `animatc` is not defined"],
        &["profiles in studio.yaml: animatic, full, sim"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{}", bad.join("; "), run.stderr);
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    let p = TestProject::example("tiny");
    let padding = "# padding\n".repeat(1_700_000);
    p.write(EP, &format!("{}{padding}", p.read(EP)));
    let text = p.read(EP);
    let line = text.as_bytes()[..16 * 1024 * 1024 - 1]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    let run = p.run(SIM);
    let bad = check(
        &run,
        Some((EP, line)),
        &["episodes/ep01.yaml is larger than 16 MiB"],
        &["split a huge screenplay"],
    );
    assert!(bad.is_empty(), "{}\nstderr:\n{:.3000}", bad.join("; "), run.stderr);
}
