//! The one process runner. Every child process studio starts goes through
//! [`run`]: arguments as a vector (never a shell), in a process group of its
//! own (a terminal's Ctrl-C reaches studio, which stops its jobs, never a
//! tool mid-job behind its back), killed when cancelled or when it writes
//! more than its output cap, stderr kept for the error report.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use camino::Utf8Path;
use tokio_util::sync::CancellationToken;

use super::ExecError;

/// What one process may write into its working directory unless its [`Cmd`]
/// says less: a backstop against a runaway tool filling the disk, far above
/// any real stage (an hour of the animatic's lossless intermediate video is
/// a few GiB).
pub const DEFAULT_MAX_OUTPUT: u64 = 32 << 30;

/// How often a running process's output is measured against its cap.
const POLL: Duration = Duration::from_millis(100);

/// A command line: program and arguments, each a separate string.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<OsString>,
    /// The most bytes the process may add to its working directory, and why
    /// (the error names it): it is killed as soon as it passes the cap.
    pub max_output: Option<(u64, String)>,
}

impl Cmd {
    pub fn new(program: &str) -> Cmd {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            max_output: None,
        }
    }

    /// Cap what the process writes at `bytes`; `why` explains the cap in the
    /// error when it is passed.
    pub fn max_output(mut self, bytes: u64, why: impl Into<String>) -> Cmd {
        self.max_output = Some((bytes, why.into()));
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// The captured output of a finished command.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run `cmd` in `dir` to completion; on cancel, or when it writes more than
/// its cap into `dir`, kill it.
pub async fn run(cmd: &Cmd, dir: &Utf8Path, cancel: &CancellationToken) -> Result<Output, ExecError> {
    run_piped(cmd, dir, cancel, None, None).await
}

/// [`run`] with the chunks `feed` sends written to the process's stdin,
/// which is closed when `feed` ends (raw frames for an encoder). Dropping
/// the receiver tells the sender the process is gone. A process that fails
/// is reported by its stderr, not by the broken pipe its feeder met.
pub async fn run_fed(
    cmd: &Cmd,
    dir: &Utf8Path,
    cancel: &CancellationToken,
    feed: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<Output, ExecError> {
    run_piped(cmd, dir, cancel, Some(feed), None).await
}

/// Bytes read from a drained process's stdout at a time.
const DRAIN_CHUNK: usize = 1 << 16;

/// [`run`] with stdin fed from `feed` (as [`run_fed`]) and stdout, when
/// `drain` is given, sent there as it comes instead of kept (the
/// [`Output`]'s `stdout` is then empty): processes joined into a
/// pipeline, each end in studio. A receiver that goes away closes the
/// pipe, which stops the process.
#[allow(clippy::disallowed_methods)] // the one place that may spawn
pub async fn run_piped(
    cmd: &Cmd,
    dir: &Utf8Path,
    cancel: &CancellationToken,
    feed: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    drain: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
) -> Result<Output, ExecError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cap = cmd.max_output.as_ref().map_or(DEFAULT_MAX_OUTPUT, |(bytes, _)| *bytes);
    let baseline = dir_size(dir);
    let over = || ExecError::Permanent(over_cap(cmd, dir));
    let mut child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .current_dir(dir)
        .stdin(if feed.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| ExecError::Permanent(format!("cannot start `{}`: {e}", cmd.program)))?;
    let stdin = child.stdin.take();
    // Writes what `feed` sends, then closes stdin; done at once without a feed.
    let feeding = async move {
        if let (Some(mut rx), Some(mut stdin)) = (feed, stdin) {
            while let Some(chunk) = rx.recv().await {
                stdin.write_all(&chunk).await?;
            }
            stdin.shutdown().await?;
        }
        std::io::Result::Ok(())
    };
    tokio::pin!(feeding);
    let mut fed: Option<std::io::Result<()>> = None;
    let stdout = if drain.is_some() { child.stdout.take() } else { None };
    // Sends stdout on as it comes; done at once without a drain.
    let draining = async move {
        if let (Some(tx), Some(mut stdout)) = (drain, stdout) {
            let mut buf = vec![0; DRAIN_CHUNK];
            loop {
                let n = stdout.read(&mut buf).await?;
                if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                    break; // dropping stdout closes the pipe
                }
            }
        }
        std::io::Result::Ok(())
    };
    tokio::pin!(draining);
    let mut drained: Option<std::io::Result<()>> = None;
    let wait = child.wait_with_output();
    tokio::pin!(wait);
    let mut poll = tokio::time::interval(POLL);
    // Dropping `wait` (returning from any branch but the first) kills the child.
    let output = loop {
        tokio::select! {
            out = &mut wait => break out.map_err(|e| ExecError::Permanent(format!("`{}`: {e}", cmd.program)))?,
            done = &mut feeding, if fed.is_none() => fed = Some(done),
            done = &mut draining, if drained.is_none() => drained = Some(done),
            () = cancel.cancelled() => return Err(ExecError::Cancelled),
            _ = poll.tick() => {
                let written = dir_size(dir).saturating_sub(baseline);
                if written > cap {
                    return Err(over());
                }
            }
        }
    };
    // A fast process may finish between two measurements.
    let written = dir_size(dir).saturating_sub(baseline);
    if written > cap {
        return Err(over());
    }
    if !output.status.success() && cancel.is_cancelled() {
        // It died because the build is stopping (or at the same time): not a failure.
        return Err(ExecError::Cancelled);
    }
    if output.status.success() {
        // The feeder ends at once: it runs out of input, or its next write
        // meets the closed pipe.
        let fed = match fed {
            Some(done) => done,
            None => feeding.await,
        };
        if let Err(e) = fed {
            return Err(ExecError::Permanent(format!(
                "`{}` exited before it read all its input: {e}",
                cmd.program
            )));
        }
        // What it wrote last is still in the pipe.
        let drained = match drained {
            Some(done) => done,
            None => draining.await,
        };
        if let Err(e) = drained {
            return Err(ExecError::Permanent(format!(
                "cannot read the output of `{}`: {e}",
                cmd.program
            )));
        }
        return Ok(Output {
            stdout: output.stdout,
            stderr: output.stderr,
        });
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ExecError::Permanent(format!(
        "`{}` failed ({}):\n{}",
        cmd.program,
        output.status,
        tail.join("\n")
    )))
}

/// Start a long-lived worker (`exec::worker`): stdin and stdout piped for
/// its protocol, stderr appended to `log`, in a process group of its own
/// like every tool, killed when its handle is dropped.
#[allow(clippy::disallowed_methods)] // the one place that may spawn
pub fn spawn_worker(cmd: &Cmd, dir: &Utf8Path, log: &Utf8Path) -> Result<tokio::process::Child, ExecError> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ExecError::Permanent(format!("cannot open the worker log {log}: {e}")))?;
    tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| ExecError::Permanent(format!("cannot start `{}`: {e}", cmd.program)))
}

/// The error of a process stopped at its output cap.
fn over_cap(cmd: &Cmd, dir: &Utf8Path) -> String {
    let program = &cmd.program;
    match &cmd.max_output {
        Some((bytes, why)) => format!(
            "{why} (stopped `{program}` once it had written {})",
            human_bytes(*bytes)
        ),
        None => format!(
            "stopped `{program}`: it wrote more than {} into {dir}, the most one process may write",
            human_bytes(DEFAULT_MAX_OUTPUT)
        ),
    }
}

/// The total size of the files under `dir` (what a process wrote there).
fn dir_size(dir: &Utf8Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some(if meta.is_dir() {
                Utf8Path::from_path(&e.path()).map_or(0, dir_size)
            } else {
                meta.len()
            })
        })
        .sum()
}

/// `5.0 MiB`, `32 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Run a short command to completion and return its stdout (tool version
/// probes at start-up). `None` when it cannot start or fails.
#[allow(clippy::disallowed_methods)] // the one place that may spawn
pub fn run_sync(cmd: &Cmd) -> Option<String> {
    let out = std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, camino::Utf8PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = camino::Utf8PathBuf::from_path_buf(t.path().to_path_buf()).unwrap();
        (t, p)
    }

    #[tokio::test]
    async fn a_process_that_writes_past_its_cap_is_stopped() {
        let (_t, d) = dir();
        // 2 GiB unless stopped.
        let cmd = Cmd::new("dd")
            .args(["if=/dev/zero", "of=big", "bs=64K", "count=32768"])
            .max_output(1 << 20, "a test cap");
        let e = run(&cmd, &d, &CancellationToken::new()).await.unwrap_err().to_string();
        assert_eq!(e, "a test cap (stopped `dd` once it had written 1.0 MiB)");
        let written = std::fs::metadata(d.join("big")).unwrap().len();
        assert!(written < 2 << 30, "dd was killed before it finished ({written} bytes)");
    }

    #[tokio::test]
    async fn the_cap_counts_what_the_process_adds() {
        let (_t, d) = dir();
        std::fs::write(d.join("before"), vec![0u8; 64 << 10]).unwrap();
        let cmd = Cmd::new("dd")
            .args(["if=/dev/zero", "of=out", "bs=1K", "count=16"])
            .max_output(32 << 10, "cap");
        run(&cmd, &d, &CancellationToken::new()).await.unwrap();
        let over = Cmd::new("dd")
            .args(["if=/dev/zero", "of=out2", "bs=1K", "count=48"])
            .max_output(32 << 10, "cap");
        let e = run(&over, &d, &CancellationToken::new()).await.unwrap_err();
        assert!(e.to_string().contains("written 32.0 KiB"), "{e}");
    }

    #[test]
    fn the_default_cap_names_the_directory() {
        let e = over_cap(&Cmd::new("ffmpeg"), Utf8Path::new("/p/cache/tmp/job-1"));
        assert_eq!(
            e,
            "stopped `ffmpeg`: it wrote more than 32.0 GiB into /p/cache/tmp/job-1, the most one process may write"
        );
    }

    #[tokio::test]
    async fn a_failure_after_cancellation_is_a_cancellation() {
        let (_t, d) = dir();
        let cancel = CancellationToken::new();
        cancel.cancel();
        // `false` fails at once; the build is stopping, so it is not a failure.
        let r = run(&Cmd::new("false"), &d, &cancel).await;
        assert!(matches!(r, Err(ExecError::Cancelled)), "{r:?}");
        let r = run(&Cmd::new("false"), &d, &CancellationToken::new()).await;
        assert!(matches!(r, Err(ExecError::Permanent(_))), "{r:?}");
    }

    /// A feed of `chunks` chunks of `size` bytes.
    fn feed(chunks: usize, size: usize) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            for _ in 0..chunks {
                if tx.send(vec![7u8; size]).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    #[tokio::test]
    async fn a_fed_process_reads_every_chunk_then_end_of_input() {
        let (_t, d) = dir();
        let out = run_fed(
            &Cmd::new("wc").arg("-c"),
            &d,
            &CancellationToken::new(),
            feed(5, 300_000),
        )
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1500000");
    }

    #[tokio::test]
    async fn a_fed_process_that_fails_is_reported_by_its_own_error() {
        let (_t, d) = dir();
        let cmd = Cmd::new("sh").args(["-c", "echo no such codec >&2; exit 3"]);
        let e = run_fed(&cmd, &d, &CancellationToken::new(), feed(8, 1 << 20))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sh` failed") && e.contains("no such codec"), "{e}");
    }

    #[tokio::test]
    async fn a_fed_process_that_stops_reading_early_did_not_take_its_input() {
        let (_t, d) = dir();
        let cmd = Cmd::new("head").args(["-c", "10"]);
        let e = run_fed(&cmd, &d, &CancellationToken::new(), feed(8, 1 << 20))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`head` exited before it read all its input"), "{e}");
    }

    /// Everything `rx` brings, joined.
    async fn collect(mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.extend(chunk);
        }
        all
    }

    #[tokio::test]
    async fn a_pipeline_passes_every_byte_through_in_order() {
        let (_t, d) = dir();
        let cancel = CancellationToken::new();
        // feed → cat → tr → here: two processes joined by a channel.
        let (tx1, rx1) = tokio::sync::mpsc::channel(2);
        let (tx2, rx2) = tokio::sync::mpsc::channel(2);
        let input: Vec<u8> = (0..600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let chunks: Vec<Vec<u8>> = input.chunks(70_001).map(<[u8]>::to_vec).collect();
        let (tx0, rx0) = tokio::sync::mpsc::channel(2);
        let feeding = async move {
            for c in chunks {
                tx0.send(c).await.unwrap();
            }
        };
        let cat = Cmd::new("cat");
        let tr = Cmd::new("tr").args(["a-z", "A-Z"]);
        let (_, a, b, out) = tokio::join!(
            feeding,
            run_piped(&cat, &d, &cancel, Some(rx0), Some(tx1)),
            run_piped(&tr, &d, &cancel, Some(rx1), Some(tx2)),
            collect(rx2)
        );
        assert!(a.unwrap().stdout.is_empty() && b.unwrap().stdout.is_empty());
        assert_eq!(out, input.to_ascii_uppercase());
    }

    #[tokio::test]
    async fn a_drained_process_whose_reader_leaves_is_stopped() {
        let (_t, d) = dir();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = async move {
            let first = rx.recv().await;
            drop(rx); // reads one chunk of an endless stream, then leaves
            first.is_some()
        };
        let yes = Cmd::new("yes");
        let cancel = CancellationToken::new();
        let (got, run) = tokio::join!(reader, run_piped(&yes, &d, &cancel, None, Some(tx)));
        assert!(got);
        let e = run.unwrap_err().to_string();
        assert!(e.contains("`yes` failed"), "{e}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(900), "900 bytes");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(human_bytes(DEFAULT_MAX_OUTPUT), "32.0 GiB");
    }
}
