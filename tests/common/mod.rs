//! Test harness: a project copied into a temp dir, driven through the real
//! `studio` binary.
#![allow(dead_code, clippy::disallowed_methods)] // tests start the binary under test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub mod media;
pub mod review_loop;
pub mod servers;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct TestProject {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// Copy a directory, following symlinks (the examples link to ../../rules).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "cache" || name == "out" || name == "target" {
            continue;
        }
        let src = entry.path();
        let dest = to.join(&name);
        if fs::metadata(&src).unwrap().is_dir() {
            copy_tree(&src, &dest);
        } else {
            fs::copy(&src, &dest).unwrap();
        }
    }
}

impl TestProject {
    /// `examples/<name>`, copied.
    pub fn example(name: &str) -> TestProject {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        copy_tree(&Path::new(REPO).join("examples").join(name), &root);
        TestProject { _dir: dir, root }.time_scale(0.0)
    }

    /// The sample project at the repository root, copied.
    pub fn sample() -> TestProject {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        fs::create_dir_all(&root).unwrap();
        fs::copy(Path::new(REPO).join("studio.yaml"), root.join("studio.yaml")).unwrap();
        for sub in ["episodes", "rules"] {
            copy_tree(&Path::new(REPO).join(sub), &root.join(sub));
        }
        TestProject { _dir: dir, root }.time_scale(0.0)
    }

    /// An empty project folder, for generated projects.
    pub fn empty() -> TestProject {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        fs::create_dir_all(&root).unwrap();
        copy_tree(&Path::new(REPO).join("rules"), &root.join("rules"));
        TestProject { _dir: dir, root }
    }

    /// Set the sim profile's time scale (0: no sleeping).
    pub fn time_scale(self, scale: f64) -> TestProject {
        let text = self.read("studio.yaml");
        let re: Vec<String> = text
            .lines()
            .map(|l| match l.find("time_scale:") {
                Some(i) => format!("{}time_scale: {scale}", &l[..i]),
                None => l.to_string(),
            })
            .collect();
        self.write("studio.yaml", &(re.join("\n") + "\n"));
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// Replace exactly one occurrence of `from` in `rel`.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(text.matches(from).count(), 1, "`{from}` must occur once in {rel}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_studio"));
        c.current_dir(&self.root)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE");
        c
    }

    /// Run `studio ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Run `studio ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(String, String)]) -> Run {
        let out = self
            .command(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from_output(out)
    }

    /// `studio build --json --profile sim ARGS` with extra environment, parsed.
    pub fn build_env(&self, args: &[&str], env: &[(String, String)]) -> Build {
        let mut all = vec!["build", "--json", "--profile", "sim"];
        all.extend_from_slice(args);
        Build::parse(self.run_env(&all, env))
    }

    /// Every file under `rel` (relative path → blake3), to compare trees.
    pub fn tree(&self, rel: &str) -> BTreeMap<String, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, blake3::hash(&fs::read(&p).unwrap()).to_hex().to_string());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.path(rel), &self.path(rel), &mut out);
        out
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Run `studio ARGS` with `env`, killing it if it has not exited after
    /// `limit`: a hang detector (panics saying so), not a limit on the work.
    pub fn run_within(&self, args: &[&str], env: &[(&str, &str)], limit: std::time::Duration) -> Run {
        let child = self
            .command(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_within(child, limit)
    }

    /// `spawn`, in a process group of its own like a job a shell starts, so
    /// [`signal_group`] reaches it and every process it starts, as a
    /// terminal's Ctrl-C does.
    pub fn spawn_group(&self, args: &[&str]) -> Child {
        use std::os::unix::process::CommandExt;
        self.command(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `studio build ARGS --json --profile sim`, parsed.
    pub fn build(&self, args: &[&str]) -> Build {
        self.build_env(args, &[])
    }

    /// Every object in the cache hashes to its name, and there is one.
    pub fn assert_cache_sound(&self) {
        assert!(self.sound_objects() > 0, "the cache holds objects");
    }

    /// How many objects the cache holds, each checked to hash to its name
    /// (none when a build was stopped before it stored anything).
    pub fn sound_objects(&self) -> usize {
        let Ok(subs) = fs::read_dir(self.path("cache/objects")) else {
            return 0;
        };
        let mut n = 0;
        for sub in subs {
            for obj in fs::read_dir(sub.unwrap().path()).unwrap() {
                let p = obj.unwrap().path();
                let bytes = fs::read(&p).unwrap();
                assert_eq!(
                    blake3::hash(&bytes).to_hex().as_str(),
                    p.file_name().unwrap().to_str().unwrap(),
                    "corrupt object {}",
                    p.display()
                );
                n += 1;
            }
        }
        n
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished `studio` process printed, and its exit code.
    pub fn from_output(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "studio failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A parsed `--json` build report.
#[derive(Debug)]
pub struct Build {
    pub run: Run,
    pub nodes: Vec<Value>,
    pub totals: Value,
}

impl Build {
    /// Parse the output of a `build --json` run.
    pub fn parse_run(run: Run) -> Build {
        Build::parse(run)
    }

    fn parse(run: Run) -> Build {
        let mut nodes = Vec::new();
        let mut totals = Value::Null;
        for line in run.stdout.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}\nstderr: {}", run.stderr));
            match v["type"].as_str() {
                Some("node") => nodes.push(v),
                Some("totals") => totals = v,
                other => panic!("unexpected record type {other:?}"),
            }
        }
        Build { run, nodes, totals }
    }

    pub fn ok(self) -> Build {
        self.run.success();
        self
    }

    pub fn with(&self, status: &str) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| n["status"] == status)
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn built(&self) -> BTreeSet<String> {
        self.with("built")
    }

    pub fn total(&self, what: &str) -> u64 {
        self.totals[what].as_u64().unwrap()
    }

    pub fn node(&self, id: &str) -> &Value {
        self.nodes
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Node id → output hash.
    pub fn hashes(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .filter_map(|n| Some((n["id"].as_str()?.to_string(), n["output"].as_str()?.to_string())))
            .collect()
    }
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Send `sig` (`-9`, `-INT`) to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Send `sig` to the process group `pgid` (a child started by
/// [`TestProject::spawn_group`]: its id is its group's).
pub fn signal_group(pgid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, "--", &format!("-{pgid}")])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} -- -{pgid}");
}

/// Wait for `child` to exit and collect what it printed; kill it and panic
/// if it is still running after `limit` (it hangs).
pub fn wait_within(mut child: Child, limit: std::time::Duration) -> Run {
    use std::io::Read;
    // Read both pipes while waiting, so a full pipe cannot look like a hang.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).unwrap();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        stderr.read_to_end(&mut b).unwrap();
        b
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("studio still ran after {limit:?}: it hangs\nstderr:\n{stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run::from_output(std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

impl TestProject {
    /// Without the review loop's rules: character references made straight
    /// by ComfyUI (for full-profile tests with no vision server; the loop's
    /// own tests run with the fake vision server).
    pub fn without_review_loop(&self) {
        let text = review_loop::without_review_loop(&self.read("rules/images.yaml"));
        self.write("rules/images.yaml", &text);
    }

    /// Declare `[en, ja]` and give both characters of examples/tiny a Japanese voice.
    pub fn declare_ja(&self) {
        self.edit(
            "studio.yaml",
            "\ncharacters:\n",
            "\nlanguages: [en, ja]\n\ncharacters:\n",
        );
        for (piper, kokoro) in [
            ("piper: {pitch: -1, length_scale: 1.0}", "jm_kumo"),
            ("piper: {pitch: 4, length_scale: 0.95, noise_scale: 0.75}", "jf_alpha"),
        ] {
            self.edit(
                "studio.yaml",
                piper,
                &format!("{piper}\n    voices:\n      ja: {{engines: [kokoro_ja, espeak], kokoro: {{voice: {kokoro}}}, espeak: ja}}"),
            );
        }
    }
}
