//! What the benchmarks share: the generated season project, timing the
//! `studio` binary, and the same-shaped Ninja graph to compare no-ops with.
#![allow(dead_code)] // each bench uses a part

#[path = "../../tests/common/review_loop.rs"]
mod review_loop;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use studio::session::Session;

pub const SCENES: usize = 8;
pub const SHOTS: usize = 6;

/// Copy a folder and everything below it (`rules/` has `prompts/`).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dest) = (e.path(), to.join(e.file_name()));
        if std::fs::metadata(&src).unwrap().is_dir() {
            copy_tree(&src, &dest);
        } else {
            std::fs::copy(&src, &dest).unwrap();
        }
    }
}

/// A season of `episodes` episodes × [`SCENES`] scenes × [`SHOTS`] shots
/// (about 386 nodes an episode) for the sim profile at `time_scale`, its
/// files dated a minute back, as a writer's are between builds (a source
/// changed within the last two seconds is too recent for a no-op build to
/// stamp: `studio::build::noop`).
pub fn write_season(root: &Utf8Path, episodes: usize, time_scale: f64) {
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    copy_tree(repo.join("rules").as_std_path(), root.join("rules").as_std_path());
    let mut studio = String::from("project: {name: Season Bench}\ncharacters:\n");
    for (i, name) in ["aoi", "ren", "sayo"].iter().enumerate() {
        let _ = writeln!(
            studio,
            "  - {{id: {name}, name: {name}, design_prompt: \"{name} design\", color: \"#{:02x}6090\"}}",
            60 * i + 30
        );
    }
    studio.push_str("episodes:\n");
    for e in 1..=episodes {
        let _ = writeln!(studio, "  - {{id: ep{e:02}, title: Episode {e}}}");
    }
    studio.push_str("executors:\n  - {id: comfy, kind: comfyui, url: \"http://127.0.0.1:8188\", slots: 1}\n  - {id: tts, kind: openai_speech, url: \"http://127.0.0.1:5002\", slots: 2}\n  - {id: xtts, kind: xtts, url: \"http://127.0.0.1:8020\"}\n  - {id: rvc, kind: rvc, url: \"http://127.0.0.1:5050\"}\n  - {id: ace, kind: ace_step, url: \"http://127.0.0.1:8440\"}\n  - {id: vision, kind: ollama, url: \"http://127.0.0.1:11434\", model: vision, slots: 2}\n");
    let _ = writeln!(
        studio,
        "profiles:\n  default: sim\n  full: {{}}\n  animatic: {{}}\n  sim: {{rules_from: full, simulate: {{time_scale: {time_scale}}}}}"
    );
    std::fs::write(root.join("studio.yaml"), studio).unwrap();
    std::fs::create_dir_all(root.join("episodes")).unwrap();
    let names = ["aoi", "ren", "sayo"];
    for e in 1..=episodes {
        let mut ep = format!("episode: ep{e:02}\nscenes:\n");
        for s in 1..=SCENES {
            let _ = writeln!(
                ep,
                "  - id: s{s:02}\n    title: Scene {s}\n    mood: {}\n    transition: dissolve\n    shots:",
                ["calm", "tense", "joyful", "eerie"][s % 4]
            );
            for h in 1..=SHOTS {
                let a = names[(e + s + h) % 3];
                let b = names[(e + s + h + 1) % 3];
                let chars = if h % 3 == 0 {
                    format!("[{{id: {a}}}, {{id: {b}, position: right}}]")
                } else {
                    format!("[{{id: {a}}}]")
                };
                let _ = writeln!(
                    ep,
                    "      - id: sh{h:02}\n        duration: {}\n        motion: slow pan\n        characters: {chars}",
                    3 + (h % 3)
                );
                if h % 2 == 1 {
                    let _ = writeln!(
                        ep,
                        "        dialogue:\n          - {{speaker: {a}, text: \"Line {e}-{s}-{h}, where does the road go?\"}}"
                    );
                }
            }
        }
        std::fs::write(root.join(format!("episodes/ep{e:02}.yaml")), ep).unwrap();
    }
    backdate(
        root.as_std_path(),
        std::time::SystemTime::now() - std::time::Duration::from_secs(60),
    );
}

/// Set the modification time of every file under `dir` to `when`.
fn backdate(dir: &Path, when: std::time::SystemTime) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            backdate(&path, when);
        } else {
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(when).unwrap();
        }
    }
}

/// Build `targets` of the project at `root` in this process, save what a
/// build saves, and return the session and the build's report.
pub fn build_in_process(root: &Utf8Path, targets: &[&str]) -> (Session, Vec<usize>, studio::build::Report) {
    let mut session = Session::open(root, None, 2).expect("the project loads");
    let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    let nodes = session.select(&targets).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = studio::build::Options::default();
    let report = runtime.block_on(studio::build::build(&mut session, &nodes, &opts, Default::default()));
    assert!(report.ok(), "build failed: {:?}", report.totals);
    // The review loop's rounds grow the graph while it builds.
    let nodes = session.select(&targets).unwrap();
    session.state.save().unwrap();
    session.index.save(&session.layout.cache.join("sources.json")).unwrap();
    (session, nodes, report)
}

/// The `studio` binary to time: `STUDIO_BIN`, or the one cargo built.
pub fn studio_bin() -> String {
    std::env::var("STUDIO_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_studio").to_string())
}

/// Milliseconds of each of `runs` runs of `args` (the first one is a warm-up
/// and left out), each checked to build nothing. With GNU time at
/// /usr/bin/time, also the peak resident memory of each run in KiB.
pub fn time_noop(bin: &str, root: &Utf8Path, targets: &[&str], runs: usize) -> (Vec<f64>, Vec<u64>) {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let (ms, kib) = run_noop(bin, root, targets);
        times.push(ms);
        rss.extend(kib);
    }
    times.remove(0);
    if !rss.is_empty() {
        rss.remove(0);
    }
    (times, rss)
}

/// One no-op build of `targets` without a no-op stamp to answer it (the
/// stamps are removed first): the full path, which loads the project,
/// checks every node and writes the stamp the runs after it answer from.
/// Milliseconds, and the peak RSS in KiB where GNU time tells it.
pub fn time_full_noop(bin: &str, root: &Utf8Path, targets: &[&str]) -> (f64, Option<u64>) {
    let _ = std::fs::remove_dir_all(root.join("cache/noop"));
    run_noop(bin, root, targets)
}

/// One `studio build --json TARGETS` of `root`, checked to build nothing:
/// milliseconds, and the peak RSS in KiB where GNU time tells it.
fn run_noop(bin: &str, root: &Utf8Path, targets: &[&str]) -> (f64, Option<u64>) {
    let mut argv: Vec<String> = vec![
        bin.to_string(),
        "-C".into(),
        root.to_string(),
        "build".into(),
        "--json".into(),
    ];
    argv.extend(targets.iter().map(|t| t.to_string()));
    let mut cmd = if Path::new("/usr/bin/time").exists() {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("peak-rss-kib %M").args(&argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains(r#""built":0"#), "not a no-op: {last}");
    let kib = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("peak-rss-kib "))
        .next_back()
        .and_then(|v| v.trim().parse().ok());
    (ms, kib)
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A `build.ninja` with one edge per node of `nodes` (a closure of
/// `session`'s graph): each edge `touch`es a file named after its node and
/// depends on its inputs' files, as studio's node depends on its inputs.
pub fn ninja_file(session: &Session, nodes: &[usize]) -> String {
    let name = |g: usize| {
        let id = &session.graph.nodes[g].id;
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("o/{safe}")
    };
    let mut s = String::from("rule touch\n  command = touch $out\n\n");
    for &g in nodes {
        let inputs: Vec<String> = session.graph.nodes[g].inputs.iter().map(|i| name(i.node)).collect();
        let _ = writeln!(s, "build {}: touch {}", name(g), inputs.join(" "));
    }
    s
}

/// Time no-op runs of Ninja on `ninja_file(session, nodes)` in `dir`
/// (milliseconds, warm-up left out), or `None` with a note when `ninja`
/// is not installed (`apt-get install ninja-build`).
pub fn time_ninja(dir: &Utf8Path, build_ninja: &str, runs: usize) -> Option<Vec<f64>> {
    let ninja = ["/usr/bin/ninja", "/usr/local/bin/ninja"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(ninja) = ninja else {
        println!("ninja: not installed, no comparison (apt-get install ninja-build)");
        return None;
    };
    std::fs::create_dir_all(dir.join("o")).unwrap();
    std::fs::write(dir.join("build.ninja"), build_ninja).unwrap();
    let run = || {
        let out = Command::new(ninja).args(["-C", dir.as_str()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(); // the cold build: every edge touches its file
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = run();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(out.contains("no work to do"), "not a no-op: {out}");
    }
    times.remove(0);
    Some(times)
}

/// Take the review loop's rules out of the project at `root` (a bench of
/// the GPU hosts has no vision server).
pub fn without_review_loop(root: &Utf8Path) {
    let path = root.join("rules/images.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, review_loop::without_review_loop(&text)).unwrap();
}
