//! Command-line parsing and dispatch; one file per command.
//!
//! Exit codes (also in README.md):
//! - 0: success
//! - 1: the build ran and a node failed (or was skipped because of one)
//! - 2: bad input: the project has mistakes, an unknown target, bad flags
//! - 3: studio could not use its files (cache, out/) or an internal error
//!   (a panic: "internal error: … (please report)"; the build stops, never hangs)
//! - 130: interrupted (Ctrl-C, SIGTERM or SIGHUP); finished nodes are kept

mod build;
mod cache;
mod dashboard;
mod export;
mod graph;
mod housekeeping;
mod publish;
mod review;
mod serve;
mod status;
mod watch;
mod why;
mod write;

use std::process::ExitCode;
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use clap::{Parser, Subcommand};

use crate::cache::remote::Remote;
use crate::project::Diagnostics;
use crate::project::model::{Mode, RemoteConfig};
use crate::session::{OpenError, Session};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_IO: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(name = "studio", version, about = "A build system whose products are anime episodes")]
pub struct Cli {
    /// The project folder (default: the nearest folder upwards with a studio.yaml).
    #[arg(short = 'C', long, global = true, value_name = "DIR")]
    project: Option<Utf8PathBuf>,
    /// The profile to build with (default: `profiles.default` in studio.yaml).
    #[arg(short, long, global = true)]
    profile: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build targets: `ep01`, `ep01/s02`, `ep01/s02/sh03`, `all`, or a node id.
    Build(build::Args),
    /// Build, then rebuild what each save makes stale (Ctrl-C to stop).
    Watch(watch::Args),
    /// Watch, and serve the studio dashboard (Story, Cast, Script, Produce, Review, Publish).
    Serve(serve::Args),
    /// Say why a node is stale: which input or parameter changed, from what to what.
    Why(why::Args),
    /// Print the graph of a target as Graphviz dot, Mermaid or JSON.
    Graph(graph::Args),
    /// What is built, stale or missing.
    Status(status::Args),
    /// Remove cache objects and entries no current node refers to.
    Gc,
    /// Remove `out/` (and with --all, the cache too).
    Clean(housekeeping::CleanArgs),
    /// List the engines studio knows.
    Engines,
    /// Build an episode and lay it out in a Jellyfin library (then ask it to rescan).
    Publish(publish::Args),
    /// Write an episode's screenplay in another format (Fountain).
    Export(export::Args),
    /// Write a screenplay with the LLM, or regenerate a scene's shots or some dialogue.
    Write(write::Args),
    /// Candidates waiting for a person (scores, files, a contact sheet),
    /// and `review approve|reject HASH…` to decide them.
    Review(review::Args),
    /// The local cache and the shared remote cache: stats, push, pull.
    Cache {
        #[command(subcommand)]
        command: cache::Command,
    },
}

/// The remote cache, from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RemoteArgs {
    /// The remote cache (overrides `cache.remote` in studio.yaml):
    /// http://host/prefix, s3://bucket/prefix, gs://, az:// or file:///dir.
    #[arg(long, global = true, value_name = "URL")]
    remote: Option<String>,
    /// read-write, read-only or off (overrides `cache.mode`).
    #[arg(long, global = true, value_name = "MODE")]
    remote_mode: Option<Mode>,
}

impl RemoteArgs {
    /// The remote to use: the command line over studio.yaml.
    pub fn config(&self, project: Option<&RemoteConfig>) -> Option<RemoteConfig> {
        let url = self.remote.clone().or_else(|| project.map(|p| p.url.clone()))?;
        let mode = self.remote_mode.or(project.map(|p| p.mode)).unwrap_or(Mode::ReadWrite);
        Some(RemoteConfig { url, mode })
    }

    /// Open the remote, if one is configured and not off.
    pub fn open(&self, project: Option<&RemoteConfig>) -> Result<Option<Arc<Remote>>, u8> {
        let Some(config) = self.config(project) else {
            return Ok(None);
        };
        match Remote::open(&config) {
            Ok(r) => Ok(r.map(Arc::new)),
            Err(msg) => {
                eprintln!("error: remote cache: {msg}");
                Err(EXIT_INVALID)
            }
        }
    }
}

pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    let root = match project_root(cli.project.as_deref()) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let profile = cli.profile.as_deref();
    let code = match cli.command {
        Command::Build(args) => build::run(&root, profile, &cli.remote, args),
        Command::Watch(args) => watch::run(&root, profile, &cli.remote, args),
        Command::Serve(args) => serve::run(&root, profile, &cli.remote, args),
        Command::Why(args) => why::run(&root, profile, args),
        Command::Graph(args) => graph::run(&root, profile, args),
        Command::Status(args) => status::run(&root, profile, args),
        Command::Gc => housekeeping::gc(&root),
        Command::Clean(args) => housekeeping::clean(&root, args),
        Command::Engines => housekeeping::engines(),
        Command::Publish(args) => publish::run(&root, profile, &cli.remote, args),
        Command::Export(args) => export::run(&root, profile, args),
        Command::Write(args) => write::run(&root, profile, args),
        Command::Review(args) => review::run(&root, profile, args),
        Command::Cache { command } => cache::run(&root, profile, &cli.remote, command),
    };
    ExitCode::from(code)
}

fn project_root(explicit: Option<&Utf8Path>) -> Result<Utf8PathBuf, String> {
    if let Some(dir) = explicit {
        // Absolute, so jobs that run in their scratch directory find inputs.
        let abs = dir
            .canonicalize_utf8()
            .map_err(|e| format!("cannot use project folder {dir}: {e}"))?;
        return Ok(abs);
    }
    let cwd = std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let cwd =
        Utf8PathBuf::from_path_buf(cwd).map_err(|p| format!("the current directory is not UTF-8: {}", p.display()))?;
    cwd.ancestors()
        .find(|d| d.join("studio.yaml").is_file())
        .map(Utf8Path::to_owned)
        .ok_or_else(|| {
            format!("no studio.yaml in {cwd} or any folder above it; run inside a project or pass --project DIR")
        })
}

/// Print a diagnostic report for a failed open and pick the exit code.
fn report_open_error(e: OpenError) -> u8 {
    match e {
        OpenError::Project(d) => {
            report(d);
            EXIT_INVALID
        }
        e @ OpenError::Cache { .. } => {
            eprintln!("{:?}", miette::Report::new(e));
            EXIT_IO
        }
    }
}

/// Print every mistake; a single one stands alone, several get a summary.
fn report(d: Diagnostics) {
    eprintln!("{}", render(d));
}

/// The text [`report`] prints.
fn render(mut d: Diagnostics) -> String {
    if d.errors.len() == 1 {
        format!("{:?}", miette::Report::new(d.errors.remove(0)))
    } else {
        format!("{:?}", miette::Report::new(d))
    }
}

/// The number of CPU slots: `-j`, else the cores.
fn cpu_slots(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

fn open(root: &Utf8Path, profile: Option<&str>, jobs: Option<usize>) -> Result<Session, u8> {
    Session::open(root, profile, cpu_slots(jobs)).map_err(report_open_error)
}

/// A panic prints one line, "internal error: … (please report)", with where
/// it happened (`RUST_BACKTRACE=1` prints Rust's full report instead).
/// The build catches panics in its tasks and exits 3; `main` does the same
/// for any other.
fn install_panic_hook() {
    let rust = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            return rust(info);
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "internal error: {}{at} (please report; RUST_BACKTRACE=1 shows more)",
            crate::build::panic_text(info.payload())
        );
    }));
}

/// On Ctrl-C (or SIGTERM, or the terminal hanging up), cancel `cancel`
/// (running jobs stop, finished work is kept); on a second one, exit at
/// once. Tools run in process groups of their own (`exec::runner`), so
/// only studio sees the signal and stopping them is the build's doing.
fn cancel_on_ctrl_c(cancel: &tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let c = cancel.clone();
    // Registered now, before the build starts, not when the task first runs.
    let mut streams = [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()].map(|k| signal(k).ok());
    tokio::spawn(async move {
        for round in 0..2 {
            let [int, term, hup] = &mut streams;
            tokio::select! {
                Some(_) = async { int.as_mut()?.recv().await } => {}
                Some(_) = async { term.as_mut()?.recv().await } => {}
                Some(_) = async { hup.as_mut()?.recv().await } => {}
                else => return,
            }
            if round == 0 {
                eprintln!("\ninterrupted: stopping running jobs (Ctrl-C again to quit at once)");
                c.cancel();
            } else {
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        }
    });
}

/// Add a run's remote-cache counters to the saved totals; a failure is a warning.
fn save_remote_stats(cache: &crate::cache::Cache, remote: Option<&Remote>) {
    if let Some(r) = remote
        && let Err(e) = crate::cache::remote::save_stats(cache, r)
    {
        eprintln!("warning: saving remote cache statistics: {e}");
    }
}

/// Write to stdout, treating a closed pipe (`| head`) as success.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing to stdout: {e}");
    }
}
