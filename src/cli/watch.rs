//! `studio watch`: build, then rebuild what each save makes stale.
//!
//! The project folder is watched (folders, not files: editors save by
//! writing a temp file and renaming it), bursts of events are debounced, and
//! a batch counts as a change only if a source file's content changed. A
//! change during a build supersedes it: running jobs whose key the change
//! altered are cancelled, the others keep running and the next build waits
//! for them instead of starting them again.
//!
//! With `--json` it prints one [`WatchEvent`] per line. Each build's events
//! go to its subscribers: the progress bars (without `--json`) and, with
//! `--serve`, the feed behind `GET /events`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use notify_debouncer_full::notify::event::ModifyKind;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::build::{print_report, save_session};
use super::serve::{Feed, Listen, Served};
use super::{EXIT_INTERRUPTED, EXIT_IO, RemoteArgs, out};
use crate::build::{self, Events, InFlight, Options, Status, Supersede, Totals};
use crate::cache::lock::BuildLock;
use crate::graph::render::{Format, render};
use crate::kind::NodeKind;
use crate::session::{OpenError, Session};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to build (default: every episode with a screenplay).
    #[arg(value_name = "TARGET")]
    pub(super) targets: Vec<String>,
    /// CPU jobs at once (default: the number of cores).
    #[arg(short, long)]
    pub(super) jobs: Option<usize>,
    /// Milliseconds of quiet after a save before rebuilding.
    #[arg(long, default_value_t = 200)]
    pub(super) debounce: u64,
    /// Serve the dashboard and the latest episode on 127.0.0.1:PORT (0: any free port).
    #[arg(long, value_name = "PORT")]
    pub(super) serve: Option<u16>,
    /// Print one JSON event per line on stdout instead of progress on stderr.
    #[arg(long)]
    pub(super) json: bool,
    /// Where `studio serve` listens (`--serve` alone: 127.0.0.1, no token).
    #[arg(skip)]
    pub(super) listen: Option<Listen>,
}

/// Folders under the root that are studio's own output, never sources.
const IGNORED: [&str; 4] = ["cache", "out", "target", ".git"];

/// What `studio watch --json` prints, one JSON object per line, its `type`
/// naming it. The last `build` is also what `--serve` answers at
/// `/status.json`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WatchEvent {
    /// `--serve` listens at `url`.
    Serving { url: String },
    /// The folders watched.
    Watching { paths: Vec<Utf8PathBuf> },
    /// Build `generation` started.
    Started { generation: u64 },
    /// Saves changed these sources.
    Change { paths: Vec<String> },
    /// Saves that changed no source's content.
    Unchanged { paths: Vec<Utf8PathBuf> },
    /// The project has mistakes: the diagnostic.
    Invalid { error: String },
    /// A build ended.
    Build(BuildSummary),
}

/// How one build of the watcher went.
#[derive(Debug, Clone, Serialize)]
struct BuildSummary {
    generation: u64,
    /// `done`, `failed`, `interrupted` or `superseded`.
    state: &'static str,
    built: Vec<String>,
    fetched: Vec<String>,
    failed: Vec<String>,
    cancelled: Vec<String>,
    kept: Vec<String>,
    totals: Totals,
    episodes: Vec<ServedEpisode>,
}

/// An episode `--serve` plays.
#[derive(Debug, Clone, Serialize)]
struct ServedEpisode {
    id: String,
    url: String,
    hash: String,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, remote: &RemoteArgs, args: Args) -> u8 {
    // Like `studio build`: a targeted episode without a screenplay is written first.
    if let Err(code) = super::write::write_missing(root, profile, &args.targets) {
        return code;
    }
    let Ok(_lock) = BuildLock::acquire(&root.join("cache"), || {
        eprintln!("waiting: another studio build of this project holds {root}/cache/lock …");
    }) else {
        eprintln!("error: cannot lock {root}/cache/lock");
        return EXIT_IO;
    };
    let targets = if args.targets.is_empty() {
        vec!["all".to_string()]
    } else {
        args.targets.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let status = Arc::new(std::sync::Mutex::new(json!({"state": "starting", "generation": 0})));
    let watch = Watch {
        root: root.to_owned(),
        profile: profile.map(str::to_string),
        targets,
        remote: remote.clone(),
        served: args.serve.map(|_| Served {
            publish_to: args.listen.as_ref().and_then(|l| l.publish_to.clone()),
            ..Served::new(status.clone(), root.to_owned(), profile.map(str::to_string))
        }),
        status,
        args,
    };
    let code = runtime.block_on(watch.run());
    runtime.shutdown_background();
    code
}

struct Watch {
    root: Utf8PathBuf,
    profile: Option<String>,
    targets: Vec<String>,
    args: Args,
    remote: RemoteArgs,
    /// What `--serve` answers (with `--serve`).
    served: Option<Served>,
    /// The watcher's state: what `--serve` answers at /status.json.
    status: Arc<std::sync::Mutex<Value>>,
}

type Sources = Vec<(Utf8PathBuf, String)>;

/// Where saves come from: the debounced events and the folders watched.
struct Saves {
    events: mpsc::UnboundedReceiver<DebounceEventResult>,
    debouncer: Debouncer,
    watched: BTreeSet<Utf8PathBuf>,
}
type Debouncer = notify_debouncer_full::Debouncer<
    notify_debouncer_full::notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

impl Watch {
    async fn run(self) -> u8 {
        let (tx, events) = mpsc::unbounded_channel::<DebounceEventResult>();
        let debouncer = match new_debouncer(Duration::from_millis(self.args.debounce), None, move |r| {
            let _ = tx.send(r);
        }) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: cannot watch {}: {e}", self.root);
                return EXIT_IO;
            }
        };
        let mut saves = Saves {
            events,
            debouncer,
            watched: BTreeSet::new(),
        };
        if let Err(e) = self.watch_folders(&mut saves.debouncer, &mut saves.watched) {
            eprintln!("error: cannot watch {}: {e}", self.root);
            return EXIT_IO;
        }
        if let Err(code) = self.serve().await {
            return code;
        }
        let paths = saves.watched.iter().cloned().collect();
        self.emit(WatchEvent::Watching { paths }, || {
            format!("watching {} (Ctrl-C to stop)", self.root)
        });

        let cancel = CancellationToken::new();
        super::cancel_on_ctrl_c(&cancel);

        let inflight = Arc::new(InFlight::default());
        let mut last_good: Option<Sources> = None;
        let mut generation = 0u64;
        let mut next = self.open_reporting();
        loop {
            let (mut session, nodes) = match next.take() {
                Some(s) => s,
                None => match self.wait_for_change(&mut saves, &cancel, last_good.as_ref()).await {
                    Some(s) => s,
                    None => return EXIT_INTERRUPTED,
                },
            };
            last_good = Some(session.project.sources.clone());
            let remote = self.remote.open(session.project.remote.as_ref()).unwrap_or(None);
            generation += 1;
            self.update_status(|v| {
                v["state"] = json!("building");
                v["generation"] = json!(generation);
                v["error"] = Value::Null;
            });
            self.emit(WatchEvent::Started { generation }, || {
                format!("build {generation}: {} nodes", nodes.len())
            });
            let opts = Options {
                keep_going: true,
                remote: remote.clone(),
                inflight: inflight.clone(),
                supersede: Some(Arc::new(Supersede::default())),
                events: self.subscribers(&session, &nodes),
                began: None,
            };
            // The page may cancel this build alone (`--serve`).
            let this_build = match &self.served {
                Some(s) => s.control.begin(&cancel),
                None => cancel.clone(),
            };
            let (report, changed) = self
                .build_superseding(&mut session, &nodes, &opts, &mut saves, &this_build)
                .await;
            if let Some(s) = &self.served {
                s.control.end();
            }
            if let Err(e) = save_session(&mut session) {
                eprintln!("error: saving build state: {e}");
            }
            super::save_remote_stats(&session.cache, remote.as_deref());
            self.finished(generation, &session, &nodes, &report);
            if report.interrupted && cancel.is_cancelled() {
                return EXIT_INTERRUPTED;
            }
            drop(session);
            if changed {
                // Reopen now that the state is saved.
                next = self.open_reporting();
            }
        }
    }

    /// With `--serve` (or `studio serve`), start serving and say where.
    async fn serve(&self) -> Result<(), u8> {
        let (Some(port), Some(served)) = (self.args.serve, &self.served) else {
            return Ok(());
        };
        let listen = self.args.listen.clone().unwrap_or(Listen {
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            port,
            token: None,
            publish_to: None,
        });
        match super::serve::start(&listen, served.clone()).await {
            Ok(addr) => {
                let url = format!("http://{addr}/");
                let open = match &listen.token {
                    Some(t) => format!("{url}?token={t}"),
                    None => url.clone(),
                };
                self.emit(WatchEvent::Serving { url }, || {
                    format!("the studio dashboard is at {open}")
                });
                Ok(())
            }
            Err(e) => {
                eprintln!("error: cannot serve on {}:{}: {e}", listen.bind, listen.port);
                Err(EXIT_IO)
            }
        }
    }

    /// Build; a save that yields a valid, changed project meanwhile
    /// supersedes the build (after validating and planning the new project).
    /// Returns the report and whether such a save came.
    async fn build_superseding(
        &self,
        session: &mut Session,
        nodes: &[usize],
        opts: &Options,
        saves: &mut Saves,
        cancel: &CancellationToken,
    ) -> (build::Report, bool) {
        let sources = session.project.sources.clone();
        let supersede = opts.supersede.clone().expect("watch builds can be superseded");
        let fut = build::build(session, nodes, opts, cancel.clone());
        tokio::pin!(fut);
        loop {
            tokio::select! {
                report = &mut fut => return (report, false),
                Some(batch) = saves.events.recv() => {
                    if !self.is_change(batch, &mut saves.debouncer, &mut saves.watched, &sources) {
                        continue;
                    }
                    // Validate the new project and plan it, then stop this build.
                    match self.open() {
                        Ok((probe, probe_nodes)) => {
                            supersede.trigger(probe.wanted_keys(&probe_nodes));
                            return ((&mut fut).await, true);
                        }
                        Err(text) => self.invalid(&text),
                    }
                }
            }
        }
    }

    /// Watch the root's own files and every folder below it but studio's
    /// outputs, each recursively. Called again after each change, to pick up
    /// new folders.
    fn watch_folders(
        &self,
        debouncer: &mut Debouncer,
        watched: &mut BTreeSet<Utf8PathBuf>,
    ) -> notify_debouncer_full::notify::Result<()> {
        if watched.insert(self.root.clone()) {
            debouncer.watch(&self.root, RecursiveMode::NonRecursive)?;
        }
        for entry in self.root.read_dir_utf8()?.flatten() {
            let name = entry.file_name();
            if IGNORED.contains(&name) || name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let path = entry.path().to_owned();
            if watched.insert(path.clone()) {
                debouncer.watch(&path, RecursiveMode::Recursive)?;
            }
        }
        Ok(())
    }

    /// Whether a batch of events changed a source: some path outside
    /// studio's outputs changed, and the project's source hashes differ from
    /// `current`'s.
    fn is_change(
        &self,
        batch: DebounceEventResult,
        debouncer: &mut Debouncer,
        watched: &mut BTreeSet<Utf8PathBuf>,
        current: &Sources,
    ) -> bool {
        let events = match batch {
            Ok(events) => events,
            Err(errors) => {
                for e in errors {
                    eprintln!("warning: watching {}: {e}", self.root);
                }
                return false;
            }
        };
        let mut paths = BTreeSet::new();
        // Reads (ours included: loading the project opens every source) and
        // metadata-only changes are not saves.
        let saves = events
            .iter()
            .filter(|e| !e.kind.is_access() && !matches!(e.kind, EventKind::Modify(ModifyKind::Metadata(_))));
        for event in saves {
            for p in &event.paths {
                let Some(rel) = p.strip_prefix(&self.root).ok().and_then(|r| Utf8Path::from_path(r)) else {
                    continue;
                };
                let first = rel.components().next().map_or("", |c| c.as_str());
                if !IGNORED.contains(&first) && !rel.as_str().is_empty() {
                    paths.insert(rel.to_owned());
                }
            }
        }
        if paths.is_empty() {
            return false;
        }
        let _ = self.watch_folders(debouncer, watched);
        let sources = self.current_sources();
        if sources.as_ref() == Some(current) {
            let paths = paths.into_iter().collect();
            self.emit(WatchEvent::Unchanged { paths }, || {
                "saved, but no source changed".to_string()
            });
            return false;
        }
        let changed: Vec<String> = match &sources {
            Some(new) => changed_paths(current, new),
            None => paths.iter().map(ToString::to_string).collect(),
        };
        let human = format!("changed: {}", changed.join(", "));
        self.emit(WatchEvent::Change { paths: changed }, || human);
        true
    }

    /// Wait, between builds, for a save that yields a valid, changed project.
    async fn wait_for_change(
        &self,
        saves: &mut Saves,
        cancel: &CancellationToken,
        last_good: Option<&Sources>,
    ) -> Option<(Session, Vec<usize>)> {
        let none = Sources::new();
        let current = last_good.unwrap_or(&none);
        loop {
            let start = async {
                match &self.served {
                    Some(s) => s.control.start.notified().await,
                    None => std::future::pending().await,
                }
            };
            let batch = tokio::select! {
                b = saves.events.recv() => b?,
                () = cancel.cancelled() => return None,
                // The page asked for a build.
                () = start => match self.open() {
                    Ok(s) => return Some(s),
                    Err(text) => {
                        self.invalid(&text);
                        continue;
                    }
                },
            };
            if !self.is_change(batch, &mut saves.debouncer, &mut saves.watched, current) {
                continue;
            }
            match self.open() {
                Ok(s) => return Some(s),
                Err(text) => self.invalid(&text),
            }
        }
    }

    /// The project's source files and hashes as they are now, if it loads.
    fn current_sources(&self) -> Option<Sources> {
        let mut index = crate::cache::index::SourceIndex::load(&self.root.join("cache/sources.json"));
        crate::project::load(
            &self.root,
            self.profile.as_deref(),
            &crate::stages::registry::catalog(),
            &mut index,
        )
        .ok()
        .map(|(p, _)| p.sources)
    }

    /// Open the project and select the targets, or the diagnostic text.
    fn open(&self) -> Result<(Session, Vec<usize>), String> {
        let session = Session::open(&self.root, self.profile.as_deref(), super::cpu_slots(self.args.jobs)).map_err(
            |e| match e {
                OpenError::Project(d) => super::render(d),
                e @ OpenError::Cache { .. } => format!("{:?}", miette::Report::new(e)),
            },
        )?;
        let nodes = session.select(&self.targets).map_err(super::render)?;
        Ok((session, nodes))
    }

    fn open_reporting(&self) -> Option<(Session, Vec<usize>)> {
        self.open().map_err(|text| self.invalid(&text)).ok()
    }

    /// A save broke the project: show why, keep the last good outputs, keep watching.
    fn invalid(&self, text: &str) {
        eprintln!("{text}");
        self.update_status(|v| {
            v["state"] = json!("invalid");
            v["error"] = json!(text);
        });
        if self.args.json {
            print_json(&WatchEvent::Invalid {
                error: text.to_string(),
            });
        } else {
            eprintln!("[watch] the project has mistakes; out/ keeps the last good build; waiting for the next save");
        }
    }

    fn finished(&self, generation: u64, session: &Session, nodes: &[usize], report: &build::Report) {
        // A build may grow its graph (the review loop's rounds): the page
        // gets the graph it ended with.
        if let (Some(served), Ok(all)) = (&self.served, session.select(&self.targets)) {
            served.set_graph(render(&session.graph, &all, Format::Json));
        }
        let ids = |s: Status| -> Vec<&str> {
            report
                .records
                .iter()
                .filter(|r| r.status == s)
                .map(|r| r.id.as_str())
                .collect()
        };
        let state = if report.superseded {
            "superseded"
        } else if report.interrupted {
            "interrupted"
        } else if report.ok() {
            "done"
        } else {
            "failed"
        };
        let episodes = nodes
            .iter()
            .map(|&n| &session.graph.nodes[n])
            .filter(|n| n.kind == NodeKind::Episode)
            .filter_map(|n| {
                let s = session.state.node(&n.id)?;
                let o = s.outputs.iter().find(|o| o.suffix == "mp4")?;
                Some(ServedEpisode {
                    id: n.id.clone(),
                    url: format!("/out/{}.mp4", n.out_stem),
                    hash: o.hash.to_string(),
                })
            })
            .collect();
        let own = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
        let event = WatchEvent::Build(BuildSummary {
            generation,
            state,
            built: own(ids(Status::Built)),
            fetched: own(ids(Status::Fetched)),
            failed: own(ids(Status::Failed)),
            cancelled: report.cancelled.clone(),
            kept: report.kept.clone(),
            totals: report.totals.clone(),
            episodes,
        });
        let mut status = serde_json::to_value(&event).expect("watch events serialize");
        status["updated"] = json!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        );
        self.set_status(status);
        if let Some(served) = &self.served {
            // The state is saved: pages may read what was built.
            served.mark_saved();
        }
        if self.args.json {
            print_json(&event);
            return;
        }
        if report.superseded {
            eprintln!(
                "[watch] build {generation} superseded: cancelled {} job(s) whose inputs changed, kept {} running",
                report.cancelled.len(),
                report.kept.len()
            );
            return;
        }
        print_report(report, false);
        let built = ids(Status::Built);
        if !built.is_empty() {
            eprintln!("[watch] rebuilt: {}", built.join(", "));
        }
        eprintln!("[watch] waiting for changes …");
    }

    fn set_status(&self, v: Value) {
        *self.status.lock().expect("status") = v;
    }

    /// Change some fields, keeping the last build's episodes.
    fn update_status(&self, f: impl FnOnce(&mut Value)) {
        f(&mut self.status.lock().expect("status"));
    }

    /// An event: a JSON line on stdout with --json, else a line on stderr.
    fn emit(&self, event: WatchEvent, human: impl FnOnce() -> String) {
        if self.args.json {
            print_json(&event);
        } else {
            eprintln!("[watch] {}", human());
        }
    }

    /// Who hears a build's events: the progress bars (without `--json`)
    /// and `--serve`'s feed, which also gets the build's graph.
    fn subscribers(&self, session: &Session, nodes: &[usize]) -> Events {
        let mut events = Events::default();
        if !self.args.json {
            let progress = crate::progress::Progress::new(true, &session.graph.pools);
            events = events.with(Arc::new(progress));
        }
        if let Some(served) = &self.served {
            served.set_graph(render(&session.graph, nodes, Format::Json));
            let feed: Arc<Feed> = served.feed.clone();
            events = events.with(feed);
        }
        events
    }
}

/// One JSON line on stdout.
fn print_json(event: &WatchEvent) {
    let line = serde_json::to_string(event).expect("watch events serialize");
    out(&format!("{line}\n"));
}

/// Sources added, removed or changed between two loads.
fn changed_paths(old: &Sources, new: &Sources) -> Vec<String> {
    let old: BTreeSet<(&Utf8PathBuf, &String)> = old.iter().map(|(p, h)| (p, h)).collect();
    let new: BTreeSet<(&Utf8PathBuf, &String)> = new.iter().map(|(p, h)| (p, h)).collect();
    let paths: BTreeSet<String> = old.symmetric_difference(&new).map(|(p, _)| p.to_string()).collect();
    paths.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_paths_lists_edits_additions_and_removals() {
        let s = |v: &[(&str, &str)]| -> Sources { v.iter().map(|(p, h)| ((*p).into(), (*h).into())).collect() };
        let old = s(&[("studio.yaml", "a"), ("episodes/ep01.yaml", "b"), ("rules/x.yaml", "c")]);
        let new = s(&[("studio.yaml", "a"), ("episodes/ep01.yaml", "B"), ("rules/y.yaml", "d")]);
        assert_eq!(
            changed_paths(&old, &new),
            vec!["episodes/ep01.yaml", "rules/x.yaml", "rules/y.yaml"]
        );
        assert!(changed_paths(&old, &old).is_empty());
    }
}
