//! The one process runner. Every child process studio starts goes through
//! [`run`]: arguments as a vector (never a shell), killed when cancelled,
//! stderr kept for the error report.

use std::ffi::OsString;
use std::process::Stdio;

use camino::Utf8Path;
use tokio_util::sync::CancellationToken;

use super::ExecError;

/// A command line: program and arguments, each a separate string.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<OsString>,
}

impl Cmd {
    pub fn new(program: &str) -> Cmd {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
        }
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

/// Run `cmd` in `dir` to completion; on cancel, kill it.
#[allow(clippy::disallowed_methods)] // the one place that may spawn
pub async fn run(cmd: &Cmd, dir: &Utf8Path, cancel: &CancellationToken) -> Result<Output, ExecError> {
    let child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExecError::Permanent(format!("cannot start `{}`: {e}", cmd.program)))?;
    let output = tokio::select! {
        out = child.wait_with_output() => out.map_err(|e| ExecError::Permanent(format!("`{}`: {e}", cmd.program)))?,
        () = cancel.cancelled() => return Err(ExecError::Cancelled), // dropping the child kills it
    };
    if output.status.success() {
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
