//! Two figures for issue 5, printed:
//! - watch mode: time from a save to the start of the rebuild (and to the
//!   new episode), over repeated one-line edits of the tiny example;
//! - remote cache: download throughput of a remote hit on loopback (nginx
//!   WebDAV and moto S3), with the process's peak memory growth, which must
//!   stay far below the object's size (objects stream).
//!
//! `cargo bench --bench watch_remote` (needs nginx and moto: scripts/deps.sh --tests).
#![allow(clippy::disallowed_methods)] // starts the binary and servers

#[path = "../tests/common/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use camino::Utf8PathBuf;
use studio::cache::remote::Remote;
use studio::cache::{Cache, Manifest, OutputFile, Suffix};
use studio::graph::key::{Backend, KEY_SCHEMA, KeyMaterial};
use studio::kind::NodeKind;
use studio::project::model::{Mode, RemoteConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The throughput half runs in a child process that gets the server's
    // environment (credentials, endpoint) at birth.
    if let Some(i) = args.iter().position(|a| a == "--remote-child") {
        let size: u64 = args[i + 3].parse().unwrap();
        remote_throughput(&args[i + 1], &args[i + 2], size);
        return;
    }
    watch_latency(200, 12);
    watch_latency(50, 12);
    let nginx = servers::nginx();
    child("nginx WebDAV", &nginx, 512 << 20);
    let moto = servers::moto();
    child("moto S3", &moto, 64 << 20);
}

fn child(name: &str, server: &servers::Server, size: u64) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--remote-child", name, &server.url, &size.to_string()])
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .status()
        .unwrap();
    assert!(status.success());
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dest) = (e.path(), to.join(e.file_name()));
        if fs::metadata(&src).unwrap().is_dir() {
            copy_tree(&src, &dest);
        } else {
            fs::copy(&src, &dest).unwrap();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn watch_latency(debounce_ms: u64, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tiny");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny"), &root);
    let yaml = fs::read_to_string(root.join("studio.yaml")).unwrap();
    let yaml: String = yaml
        .lines()
        .map(|l| match l.find("time_scale:") {
            Some(i) => format!("{}time_scale: 0\n", &l[..i]),
            None => format!("{l}\n"),
        })
        .collect();
    fs::write(root.join("studio.yaml"), yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_studio"))
        .current_dir(&root)
        .args(["watch", "ep01", "--profile", "sim", "--json", "--debounce"])
        .arg(debounce_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |kind: &str| loop {
        let line = lines.next().expect("watcher output").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["type"] == kind {
            return v;
        }
    };
    next("build");
    let screenplay = root.join("episodes/ep01.yaml");
    let original = fs::read_to_string(&screenplay).unwrap();
    let (mut to_start, mut to_done) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let text = original.replacen("Okay, you win.", &format!("Okay, you win {i}."), 1);
        let tmp = root.join("episodes/.ep01.yaml.swp");
        fs::File::create(&tmp).unwrap().write_all(text.as_bytes()).unwrap();
        fs::rename(&tmp, &screenplay).unwrap();
        let saved = Instant::now();
        next("started");
        to_start.push(saved.elapsed().as_secs_f64() * 1e3);
        next("build");
        to_done.push(saved.elapsed().as_secs_f64() * 1e3);
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "watch (debounce {debounce_ms} ms, {rounds} one-line saves): save → rebuild start median {:.0} ms (min {:.0}, max {:.0}); save → new episode median {:.0} ms",
        median(to_start.clone()),
        to_start.iter().copied().fold(f64::INFINITY, f64::min),
        to_start.iter().copied().fold(0.0, f64::max),
        median(to_done),
    );
}

/// Peak resident memory of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn remote_throughput(name: &str, url: &str, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let a = Cache::open(&Utf8PathBuf::from_path_buf(dir.path().join("a")).unwrap()).unwrap();
    // Write the object in pieces (never whole in memory), pseudo-random so
    // nothing compresses it.
    let file = dir.path().join("object");
    {
        let mut out = std::io::BufWriter::new(fs::File::create(&file).unwrap());
        let mut xof = blake3::Hasher::new().update(name.as_bytes()).finalize_xof();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            xof.fill(&mut buf[..n]);
            out.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    }
    let (hash, size) = a.ingest(&Utf8PathBuf::from_path_buf(file).unwrap()).unwrap();
    let material = KeyMaterial {
        schema: KEY_SCHEMA,
        kind: NodeKind::Episode,
        engine: "bench".into(),
        engine_version: 1,
        backend: Backend {
            simulated: true,
            service: None,
            model: None,
            tools: BTreeMap::new(),
        },
        params: BTreeMap::from([("object".to_string(), serde_json::json!(name))]),
        inputs: Vec::new(),
        seed: None,
    };
    let key = material.key();
    let manifest = Manifest {
        node: "bench".into(),
        outputs: vec![OutputFile {
            suffix: Suffix::parse("mp4").unwrap(),
            hash,
            size,
        }],
        duration: None,
        engine: "bench".into(),
        seconds: 0.0,
        material,
        metadata: Default::default(),
        provisional: None,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = RemoteConfig {
        url: url.to_string(),
        mode: Mode::ReadWrite,
    };
    let remote = Remote::open(&config).unwrap().unwrap();
    let up = Instant::now();
    runtime.block_on(remote.upload(&a, &key, &manifest)).unwrap();
    let up = up.elapsed().as_secs_f64();

    let mut rates = Vec::new();
    let mut growth = 0;
    for round in 0..3 {
        let b = Cache::open(&Utf8PathBuf::from_path_buf(dir.path().join(format!("b{round}"))).unwrap()).unwrap();
        let remote = Remote::open(&config).unwrap().unwrap();
        let before = peak_rss_kib();
        let t = Instant::now();
        let got = runtime.block_on(remote.fetch(&b, &key));
        let secs = t.elapsed().as_secs_f64();
        assert!(got.is_some(), "a remote hit");
        growth = growth.max(peak_rss_kib().saturating_sub(before));
        rates.push(size as f64 / secs / (1 << 20) as f64);
        fs::remove_dir_all(b.dir()).unwrap();
    }
    println!(
        "remote hit over {name} on loopback: {} MiB object, download median {:.0} MiB/s over 3 fetches (upload {:.0} MiB/s); peak memory grew {} MiB during fetches",
        size >> 20,
        median(rates),
        size as f64 / up / (1 << 20) as f64,
        growth >> 10
    );
}
