//! `studio write EP [--scene S | --dialogue EP/S[/SH]] [--force] [--seed N]`:
//! write a screenplay with the LLM, or regenerate one part of it.
//!
//! Everything is asked for and checked before anything is written; then the
//! files are written atomically and their hashes recorded, so a later write
//! can tell a writer's edit from studio's own file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use camino::Utf8Path;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_IO, EXIT_OK, report};
use crate::cache::atomic::write_atomic;
use crate::cache::index::SourceIndex;
use crate::cache::lock::BuildLock;
use crate::project::model::Project;
use crate::project::{ProjectError, Spans};
use crate::write::client::{CallError, Client, GenOptions, HttpError};
use crate::write::prompts::Templates;
use crate::write::store::{Owner, Replies, Written};
use crate::write::{self, Llm, WriteError, timeline};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The episode, e.g. `ep01` (may be left out with --dialogue).
    episode: Option<String>,
    /// Regenerate one scene's shots, e.g. `s02`, keeping the rest of the file.
    #[arg(long, value_name = "SCENE", conflicts_with = "dialogue")]
    scene: Option<String>,
    /// Regenerate only dialogue: `ep01/s02` (a scene) or `ep01/s02/sh03` (a shot).
    #[arg(long, value_name = "TARGET")]
    dialogue: Option<String>,
    /// Write the dub text of every line that has none in this language
    /// (one of `languages:`), e.g. `--dub ja`.
    #[arg(long, value_name = "LANG", conflicts_with_all = ["scene", "dialogue"])]
    dub: Option<String>,
    /// Replace the screenplay even if a writer has edited it.
    #[arg(long)]
    force: bool,
    /// Use this seed instead of `writing.seed` (another take of every call).
    #[arg(long)]
    seed: Option<u64>,
}

/// What to write.
enum Part {
    Whole,
    Scene(String),
    Dialogue(String, Option<String>),
    Dub(String),
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let (episode, part) = match parse_part(&args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("error: {msg}");
            return EXIT_INVALID;
        }
    };
    let _lock = match lock(root) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let w = match Writer::open(root, profile, args.seed, Log::Stderr) {
        Ok(w) => w,
        Err(code) => return code,
    };
    match part {
        Part::Whole => w.whole(&episode, args.force),
        part => w.part(&episode, part),
    }
}

/// `studio build` with a profile that has a `writer:`: write the missing
/// screenplays of the targeted episodes first. Without a writer this does
/// nothing, and the build reports the missing screenplay.
pub(super) fn write_missing(root: &Utf8Path, profile: Option<&str>, targets: &[String]) -> Result<(), u8> {
    let mut index = SourceIndex::load(&root.join("cache/sources.json"));
    let Ok((project, _)) = crate::project::load(root, profile, &crate::stages::registry::catalog(), &mut index) else {
        return Ok(()); // the build reports the mistakes
    };
    if project.profile.writer.is_none() {
        return Ok(());
    }
    let missing: Vec<String> = targets
        .iter()
        // `ep02`, `ep02/s01`, or a node id such as `publish:ep02`.
        .filter_map(|t| t.rsplit(':').next().and_then(|t| t.split('/').next()))
        .filter(|ep| project.episode(ep).is_some_and(|e| e.screenplay.is_none()))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let _lock = lock(root)?;
    let w = Writer::open(root, profile, None, Log::Stderr)?;
    for ep in missing {
        match w.whole(&ep, false) {
            EXIT_OK => {}
            code => return Err(code),
        }
    }
    Ok(())
}

/// `studio write EP` for the dashboard's Story tab. Its server's watcher
/// holds the build lock, so none is taken here. The exit code, and what the
/// terminal would have shown (progress and diagnostics).
pub(super) fn write_episode(root: &Utf8Path, profile: Option<&str>, episode: &str) -> (u8, String) {
    let log = Log::buffer();
    let code = match Writer::open(root, profile, None, log.clone()) {
        Ok(w) => w.whole(episode, false),
        Err(code) => code,
    };
    (code, log.text())
}

/// `studio write --dialogue EP/SCENE[/SHOT]` for the Script tab's Rewrite
/// button (the watcher holds the lock here too). The exit code and the log.
pub(super) fn rewrite_dialogue(
    root: &Utf8Path,
    profile: Option<&str>,
    episode: &str,
    scene: &str,
    shot: Option<&str>,
) -> (u8, String) {
    let log = Log::buffer();
    let part = Part::Dialogue(scene.to_string(), shot.map(str::to_string));
    let code = match Writer::open(root, profile, None, log.clone()) {
        Ok(w) => w.part(episode, part),
        Err(code) => code,
    };
    (code, log.text())
}

fn lock(root: &Utf8Path) -> Result<BuildLock, u8> {
    BuildLock::acquire(&root.join("cache"), || {
        eprintln!("waiting: another studio command of this project holds {root}/cache/lock …");
    })
    .map_err(|e| {
        eprintln!("error: cannot lock {root}/cache/lock: {e}");
        EXIT_IO
    })
}

fn parse_part(args: &Args) -> Result<(String, Part), String> {
    if let Some(target) = &args.dialogue {
        let parts: Vec<&str> = target.split('/').collect();
        let (ep, scene, shot) = match (parts.as_slice(), &args.episode) {
            ([ep, scene], _) => (ep.to_string(), scene, None),
            ([ep, scene, shot], _) => (ep.to_string(), scene, Some(shot.to_string())),
            _ => {
                return Err(format!(
                    "--dialogue takes EPISODE/SCENE or EPISODE/SCENE/SHOT, not `{target}`"
                ));
            }
        };
        if let Some(given) = &args.episode
            && *given != ep
        {
            return Err(format!("--dialogue {target} is not in episode `{given}`"));
        }
        return Ok((ep, Part::Dialogue(scene.to_string(), shot)));
    }
    let ep = args
        .episode
        .clone()
        .ok_or("name the episode to write, e.g. `studio write ep02`")?;
    if ep.contains('/') {
        return Err(format!(
            "write takes an episode id such as ep01, not `{ep}` (use --scene or --dialogue for parts)"
        ));
    }
    Ok(match (&args.scene, &args.dub) {
        (Some(s), _) => (ep, Part::Scene(s.clone())),
        (None, Some(lang)) => (ep, Part::Dub(lang.clone())),
        (None, None) => (ep, Part::Whole),
    })
}

/// Where a writer's messages go: the terminal, or a buffer the dashboard
/// returns with its answer (so the page shows what the terminal would).
#[derive(Clone, Default)]
pub(super) enum Log {
    #[default]
    Stderr,
    Buffer(Arc<Mutex<String>>),
}

impl Log {
    pub(super) fn buffer() -> Log {
        Log::Buffer(Arc::default())
    }

    fn line(&self, text: &str) {
        match self {
            Log::Stderr => eprintln!("{text}"),
            Log::Buffer(b) => {
                let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(text);
                b.push('\n');
            }
        }
    }

    fn diagnostics(&self, d: crate::project::Diagnostics) {
        match self {
            Log::Stderr => report(d),
            Log::Buffer(_) => self.line(&super::dashboard::plain_all(d)),
        }
    }

    /// What was logged (empty for the terminal).
    pub(super) fn text(&self) -> String {
        match self {
            Log::Stderr => String::new(),
            Log::Buffer(b) => b.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// A loaded project and the LLM that writes for it.
struct Writer {
    project: Project,
    spans: Spans,
    llm: Llm,
    slots: usize,
    log: Log,
}

impl Writer {
    fn open(root: &Utf8Path, profile: Option<&str>, seed: Option<u64>, log: Log) -> Result<Writer, u8> {
        let mut index = SourceIndex::load(&root.join("cache/sources.json"));
        let (project, spans) = crate::project::load(root, profile, &crate::stages::registry::catalog(), &mut index)
            .map_err(|d| {
                log.diagnostics(d);
                EXIT_INVALID
            })?;
        let id = project
            .profile
            .writer
            .clone()
            .or_else(|| project.writing.executor.clone());
        let Some(executor) = id.and_then(|id| project.executors.iter().find(|e| e.id == id)) else {
            log.line(
                "error: studio.yaml has no LLM executor to write with\n  help: add one under `executors:`, e.g. \
                 `- {id: llm, kind: ollama, url: http://127.0.0.1:11434, model: qwen2.5:7b}` (or `kind: openai_chat` for \
                 llama.cpp, vLLM, LM Studio), and optionally `writing: {executor: llm, seed: 1}`",
            );
            return Err(EXIT_INVALID);
        };
        let client = Client::new(executor).map_err(|e| {
            log.diagnostics(at_executor(&spans, &executor.id, e.to_string(), None).into());
            EXIT_INVALID
        })?;
        let templates = Templates::load(root).map_err(|d| {
            log.diagnostics(d);
            EXIT_INVALID
        })?;
        let llm = Llm {
            client,
            templates: Arc::new(templates),
            replies: Replies::new(&root.join("cache")),
            options: GenOptions {
                seed: seed.unwrap_or(project.writing.seed),
                temperature: project.writing.temperature,
                num_ctx: project.writing.num_ctx,
            },
            retries: project.writing.retries,
            stats: Arc::new(Mutex::new(write::Stats::default())),
            backoff: Duration::from_millis(500),
        };
        Ok(Writer {
            slots: executor.slots,
            project,
            spans,
            llm,
            log,
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    fn announce(&self, what: &str) {
        let c = &self.llm.client;
        self.log.line(&format!(
            "writing {what} with `{}` ({} at {})",
            c.executor,
            c.model,
            c.url()
        ));
    }

    fn whole(&self, ep_id: &str, force: bool) -> u8 {
        let Some(episode) = self.episode(ep_id) else {
            return EXIT_INVALID;
        };
        let root = &self.project.root;
        let rel = format!("episodes/{ep_id}.yaml");
        let mut written = Written::load(&root.join("cache"));
        if written.owner(root, &rel) == Owner::Writer && !force {
            self.log.line(&format!(
                "error: {rel} is the writer's: it changed since studio wrote it (or studio has no record of writing \
                 it), and studio never overwrites a writer's screenplay\n  help: regenerate a part with `studio write \
                 {ep_id} --scene s02` or `studio write --dialogue {ep_id}/s02[/sh03]`, or replace it all with --force"
            ));
            return EXIT_INVALID;
        }
        self.announce(ep_id);
        let progress = |line: String| self.log.line(&format!("  {line}"));
        let result = Self::runtime().block_on(write::episode(&self.llm, &self.project, episode, self.slots, &progress));
        let out = match result {
            Ok(out) => out,
            Err(e) => return self.fail(e),
        };
        let trel = timeline::path(ep_id);
        let keep_timeline = written.owner(root, &trel) == Owner::Writer && !force;
        let mut files = vec![(rel.as_str(), &out.screenplay)];
        if keep_timeline {
            self.log.line(&format!(
                "note: kept {trel}: it was edited (pass --force to replace it)"
            ));
        } else {
            files.push((trel.as_str(), &out.timeline));
        }
        for (rel, text) in files {
            if let Err(e) = write_atomic(&root.join(rel), text.as_bytes()) {
                self.log.line(&format!("error: writing {rel}: {e}"));
                return EXIT_IO;
            }
            written.record(rel, text.as_bytes());
            self.log.line(&format!("wrote {rel}"));
        }
        self.finish(&written)
    }

    fn part(&self, ep_id: &str, part: Part) -> u8 {
        let Some(episode) = self.episode(ep_id) else {
            return EXIT_INVALID;
        };
        let root = &self.project.root;
        let rel = format!("episodes/{ep_id}.yaml");
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            self.log.line(&format!(
                "error: {rel} does not exist\n  help: write the whole episode first: `studio write {ep_id}`"
            ));
            return EXIT_INVALID;
        };
        let mut written = Written::load(&root.join("cache"));
        let owner = written.owner(root, &rel);
        let rt = Self::runtime();
        let result = match &part {
            Part::Scene(s) => {
                self.announce(&format!("the shots of {ep_id}/{s}"));
                rt.block_on(write::scene(&self.llm, &self.project, episode, s, &text))
                    .map(|r| (r.text, r.warnings))
            }
            Part::Dialogue(s, shot) => {
                let target = shot
                    .as_ref()
                    .map_or_else(|| format!("{ep_id}/{s}"), |sh| format!("{ep_id}/{s}/{sh}"));
                self.announce(&format!("the dialogue of {target}"));
                rt.block_on(write::dialogue(
                    &self.llm,
                    &self.project,
                    episode,
                    s,
                    shot.as_deref(),
                    &text,
                ))
                .map(|r| (r.text, r.warnings))
            }
            Part::Dub(lang) => {
                self.announce(&format!("the `{lang}` dub of {ep_id}"));
                rt.block_on(write::dub(&self.llm, &self.project, episode, lang, &text))
                    .map(|t| (t, Vec::new()))
            }
            Part::Whole => unreachable!("whole episodes go through `whole`"),
        };
        let new = match result {
            Ok((t, warnings)) => {
                for w in warnings {
                    self.log.line(&format!("warning: {w}"));
                }
                t
            }
            Err(e) => return self.fail(e),
        };
        if new == text {
            self.log.line(&format!("{rel} is unchanged"));
            return self.finish(&written);
        }
        if let Err(e) = write_atomic(&root.join(&rel), new.as_bytes()) {
            self.log.line(&format!("error: writing {rel}: {e}"));
            return EXIT_IO;
        }
        if owner == Owner::Studio {
            written.record(&rel, new.as_bytes());
        }
        self.log.line(&format!("wrote {rel}"));
        self.finish(&written)
    }

    fn finish(&self, written: &Written) -> u8 {
        let s = self.llm.stats();
        self.log.line(&format!(
            "done: {} requests, {} cached replies{}",
            s.requests,
            s.cached,
            s.rate()
        ));
        match written.save() {
            Ok(()) => EXIT_OK,
            Err(e) => {
                self.log.line(&format!(
                    "error: recording what studio wrote in cache/written.json: {e}"
                ));
                EXIT_IO
            }
        }
    }

    fn episode(&self, id: &str) -> Option<&crate::project::model::Episode> {
        let e = self.project.episode(id);
        if e.is_none() {
            let known: Vec<&str> = self.project.episodes.iter().map(|e| e.id.as_str()).collect();
            self.log.line(&format!(
                "error: unknown episode `{id}`\n  help: episodes in studio.yaml: {}",
                known.join(", ")
            ));
        }
        e
    }

    fn fail(&self, e: WriteError) -> u8 {
        match e {
            WriteError::Call { what, error } => {
                let help = help_for(&error, &self.llm.client);
                let msg = format!("writing {what}: {error}");
                self.log
                    .diagnostics(at_executor(&self.spans, &self.llm.client.executor, msg, Some(help)).into());
                self.log.line("nothing was written");
                EXIT_FAILED
            }
            WriteError::Invalid {
                what,
                tries,
                problems,
                reply,
            } => {
                self.log.line(&format!(
                    "error: writing {what}: no usable reply in {tries} tries; the last one had these problems:\n  - {}\n\
                     the last reply began: {}\nnothing was written\n  help: raise `writing.retries`, try another \
                     seed (`--seed N`), or a stronger model",
                    problems.join("\n  - "),
                    write::client::excerpt(&reply, 400)
                ));
                EXIT_FAILED
            }
            WriteError::Project(d) => {
                self.log.diagnostics(d);
                EXIT_INVALID
            }
            WriteError::Target(msg) => {
                self.log.line(&format!("error: {msg}"));
                EXIT_INVALID
            }
        }
    }
}

/// A diagnostic pointing at the executor's entry in studio.yaml.
fn at_executor(spans: &Spans, id: &str, message: String, help: Option<String>) -> ProjectError {
    let studio = spans.studio.as_ref().expect("studio.yaml was read");
    let e = ProjectError::at(studio, "write::executor", message);
    let e = match spans.executors.get(id) {
        Some(loc) => e.label_loc(studio, loc, format!("executor `{id}`")),
        None => e,
    };
    e.help(help.unwrap_or_else(|| "fix this executor in studio.yaml".to_string()))
}

fn help_for(e: &CallError, c: &Client) -> String {
    let server = match c.protocol {
        write::client::Protocol::Ollama => "`ollama serve`",
        write::client::Protocol::OpenaiChat => "the OpenAI-compatible server (e.g. `llama-server --port 8080`)",
    };
    let http = match e {
        CallError::Http(http) => http,
        CallError::Truncated { max_tokens, .. } => {
            return format!(
                "raise this executor's `max_tokens:` above {max_tokens}; a model that rambles or repeats itself may \
                 need a lower `writing.temperature` or a stronger model instead"
            );
        }
    };
    match http {
        HttpError::Connect { .. } => format!("start {server}, or point this executor's `url:` at the running server"),
        HttpError::Timeout { .. } => {
            "raise this executor's `timeout:` (seconds for a whole request) or use a smaller model".to_string()
        }
        HttpError::Status { status: 404, .. } => format!(
            "is the model `{}` on the server (`ollama pull {}`)? Is `kind:` the protocol the server speaks?",
            c.model, c.model
        ),
        HttpError::Status { .. } => "see the server's log; studio retried transient failures".to_string(),
        HttpError::Protocol { .. } => "set `kind:` to the protocol the server speaks: `ollama` (/api/chat) or \
                                       `openai_chat` (/v1/chat/completions)"
            .to_string(),
        HttpError::Redirect { .. } => {
            "point this executor's `url:` at the server itself, not at an address that redirects".to_string()
        }
        HttpError::Config(_) => "fix this executor in studio.yaml".to_string(),
    }
}
