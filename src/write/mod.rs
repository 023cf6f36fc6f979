//! The text stream: writing screenplays with an LLM.
//!
//! `studio write ep01` asks for the episode's scenes, then each scene's
//! shots (concurrently, up to the executor's slots), checks every reply
//! against its schema and the project, sends invalid replies back with their
//! problems a bounded number of times, and renders the screenplay and the
//! episode's timeline. `--scene` and `--dialogue` regenerate one part and
//! splice it into the writer's file ([`splice`]). Every call is cached by its
//! inputs ([`store::key`]): asking again for the same thing makes no request.
//!
//! Nothing here writes project files; the CLI does, once everything passed.

pub mod client;
mod dub;
mod parts;
pub mod prompts;
pub mod render;
pub mod schema;
pub mod splice;
pub mod store;
pub mod timeline;
pub mod validate;

pub use dub::dub;
pub use parts::{Rewritten, dialogue, line_dubs, offsets, scene};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use client::{CallError, Client, GenOptions, Message};
use prompts::Templates;
use store::Replies;
use validate::{Checker, SceneDraft, ScenesDraft, ShotDraft, ShotsDraft, TimelineDraft};

use crate::project::model::{Episode, Project, WriteStage};
use crate::project::{Diagnostics, ProjectError};

/// Why writing stopped. Nothing was written.
#[derive(Debug)]
pub enum WriteError {
    /// The server could not be used (after retrying transient failures).
    Call { what: String, error: CallError },
    /// Every reply, repairs included, had problems.
    Invalid {
        what: String,
        tries: u32,
        problems: Vec<String>,
        reply: String,
    },
    /// A template, timeline or screenplay is wrong.
    Project(Diagnostics),
    /// The part to regenerate cannot be found or spliced.
    Target(String),
}

impl From<Box<ProjectError>> for WriteError {
    fn from(e: Box<ProjectError>) -> Self {
        WriteError::Project((*e).into())
    }
}

impl From<Diagnostics> for WriteError {
    fn from(d: Diagnostics) -> Self {
        WriteError::Project(d)
    }
}

/// What went wrong, in a few words (for a warning; the CLI reports a
/// `WriteError` that stops a write in full).
pub fn describe(e: &WriteError) -> String {
    match e {
        WriteError::Call { error, .. } => error.to_string(),
        WriteError::Invalid { tries, problems, .. } => format!(
            "no usable reply in {tries} tries: {}",
            problems.first().map_or("", String::as_str)
        ),
        WriteError::Project(d) => d.errors.first().map_or_else(
            || "a template or the screenplay is wrong".to_string(),
            |e| e.message().to_string(),
        ),
        WriteError::Target(msg) => msg.clone(),
    }
}

/// Requests, cache hits and generation speed so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u32,
    pub cached: u32,
    pub tokens: u64,
    pub seconds: f64,
}

impl Stats {
    /// ` · 41.3 tok/s` when the server reported token counts, else ``.
    pub fn rate(&self) -> String {
        if self.tokens > 0 && self.seconds > 0.0 {
            format!(" · {:.1} tok/s", self.tokens as f64 / self.seconds)
        } else {
            String::new()
        }
    }
}

/// Tries per request for transient failures (refused, timeout, 5xx).
const ATTEMPTS: u32 = 3;

/// An LLM to write with: the client, templates, reply cache and options.
#[derive(Debug, Clone)]
pub struct Llm {
    pub client: Client,
    pub templates: Arc<Templates>,
    pub replies: Replies,
    pub options: GenOptions,
    /// Repairs after an invalid reply.
    pub retries: u32,
    pub stats: Arc<Mutex<Stats>>,
    /// First backoff after a transient failure (up to twice that, with
    /// jitter; doubling).
    pub backoff: Duration,
}

impl Llm {
    pub fn stats(&self) -> Stats {
        *self.stats.lock().expect("stats lock")
    }

    /// One logical call: the cached reply for these inputs, else a request,
    /// repaired up to `retries` times until the reply parses and `check`
    /// finds no problem.
    pub async fn ask<T: DeserializeOwned>(
        &self,
        what: &str,
        stage: WriteStage,
        ctx: &Value,
        schema: &Value,
        check: impl Fn(&T) -> Vec<String>,
    ) -> Result<T, WriteError> {
        let mut messages = vec![
            Message::new("system", self.templates.render("system", ctx)?),
            Message::new("user", self.templates.render(stage.template(), ctx)?),
        ];
        let key = store::key(
            self.client.protocol,
            &self.client.model,
            &messages,
            schema,
            &self.options,
        );
        let accept = |content: &str| -> Result<T, Vec<String>> {
            let draft = validate::parse::<T>(content).map_err(|p| vec![p])?;
            let problems = check(&draft);
            if problems.is_empty() { Ok(draft) } else { Err(problems) }
        };
        if let Some(content) = self.replies.get(&key)
            && let Ok(draft) = accept(&content)
        {
            self.stats.lock().expect("stats lock").cached += 1;
            return Ok(draft);
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let reply = self.send(what, stage, &messages, schema).await?;
            match accept(&reply.content) {
                Ok(draft) => {
                    // A reply that cannot be kept is only a missed cache hit.
                    let _ = self.replies.put(&key, &self.client.model, &reply.content);
                    return Ok(draft);
                }
                Err(problems) if tries > self.retries => {
                    return Err(WriteError::Invalid {
                        what: what.to_string(),
                        tries,
                        problems,
                        reply: reply.content,
                    });
                }
                Err(problems) => {
                    let repair = self.templates.render("repair", &json!({"problems": problems}))?;
                    messages.push(Message::new("assistant", reply.content));
                    messages.push(Message::new("user", repair));
                }
            }
        }
    }

    /// One request, retried with backoff and jitter while the failure is
    /// transient (at most [`ATTEMPTS`] tries).
    async fn send(
        &self,
        what: &str,
        stage: WriteStage,
        messages: &[Message],
        schema: &Value,
    ) -> Result<client::Reply, WriteError> {
        use backon::Retryable;
        let max_tokens = self.client.max_tokens(stage);
        let call = || async {
            self.stats.lock().expect("stats lock").requests += 1;
            self.client.chat(messages, schema, &self.options, max_tokens).await
        };
        let reply = call
            .retry(crate::exec::http::backoff(self.backoff, ATTEMPTS as usize - 1))
            .when(CallError::transient)
            .notify(|e, wait| eprintln!("  retrying {what} in {:.1} s: {e}", wait.as_secs_f64()))
            .await
            .map_err(|error| WriteError::Call {
                what: what.to_string(),
                error,
            })?;
        let mut s = self.stats.lock().expect("stats lock");
        if let Some(t) = reply.tokens {
            s.tokens += t;
            s.seconds += reply.seconds;
        }
        Ok(reply)
    }
}

fn checker(project: &Project) -> Checker {
    Checker {
        characters: project.characters.iter().map(|c| c.id.clone()).collect(),
    }
}

fn char_ids(project: &Project) -> Vec<&str> {
    project.characters.iter().map(|c| c.id.as_str()).collect()
}

/// The prompts' context for `episode`, with history from earlier episodes.
pub fn base_context(project: &Project, episode: &Episode) -> Result<Value, WriteError> {
    let (previous, arcs) = timeline::history(project, &episode.id)?;
    Ok(prompts::context(project, episode, &previous, &arcs))
}

/// A screenplay and its timeline, as text.
#[derive(Debug)]
pub struct Written {
    pub screenplay: String,
    pub timeline: String,
}

/// Write `episode` from its synopsis. `progress` gets one line per step.
pub async fn episode(
    llm: &Llm,
    project: &Project,
    episode: &Episode,
    slots: usize,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Written, WriteError> {
    let ctx = base_context(project, episode)?;
    let chars = char_ids(project);
    let check = checker(project);
    let what = format!("the scenes of {}", episode.id);
    let scenes: ScenesDraft = llm
        .ask(&what, WriteStage::Scenes, &ctx, &schema::scenes(&chars), |d| {
            check.scenes(d)
        })
        .await?;
    let n = scenes.scenes.len();
    progress(format!("scenes: {n} planned{}", llm.stats().rate()));

    let outline: Vec<Value> = scenes
        .scenes
        .iter()
        .map(|s| json!({"id": s.id, "title": s.title, "description": s.description}))
        .collect();
    let shots_schema = Arc::new(schema::shots(&chars));
    let slots = Arc::new(tokio::sync::Semaphore::new(slots.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, scene) in scenes.scenes.iter().enumerate() {
        let mut ctx = ctx.clone();
        ctx["scene"] = serde_json::to_value(scene).expect("scene serializes");
        ctx["scenes"] = json!(outline);
        let (llm, check, schema, slots) = (llm.clone(), check.clone(), shots_schema.clone(), slots.clone());
        let what = format!("the shots of {}/{}", episode.id, scene.id);
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore open");
            let r: Result<ShotsDraft, _> = llm
                .ask(&what, WriteStage::Shots, &ctx, &schema, |d| check.shots(d))
                .await;
            (i, r)
        });
    }
    let mut shots: Vec<Option<Vec<ShotDraft>>> = vec![None; n];
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined.expect("a shot task panicked");
        let drafted = r?.shots;
        done += 1;
        progress(format!(
            "scenes {done}/{n} · {}: {} shots{}",
            scenes.scenes[i].id,
            drafted.len(),
            llm.stats().rate()
        ));
        shots[i] = Some(drafted);
    }
    let scenes: Vec<(SceneDraft, Vec<ShotDraft>)> = scenes
        .scenes
        .into_iter()
        .zip(shots)
        .map(|(s, sh)| (s, sh.expect("every scene task finished")))
        .collect();
    let screenplay = render::screenplay(&episode.id, &episode.title, &scenes);
    let name = format!("episodes/{}.yaml", episode.id);
    crate::project::load::check_screenplay(project, name.as_ref(), &screenplay, &episode.id)?;

    let mut ctx = ctx;
    ctx["scenes"] = json!(
        scenes
            .iter()
            .map(|(s, sh)| json!({"id": s.id, "title": s.title, "description": s.description, "shots": sh}))
            .collect::<Vec<_>>()
    );
    let what = format!("the timeline of {}", episode.id);
    let arcs: TimelineDraft = llm
        .ask(&what, WriteStage::Timeline, &ctx, &schema::timeline(&chars), |d| {
            check.timeline(d)
        })
        .await?;
    progress(format!(
        "timeline: {} characters{}",
        arcs.characters.len(),
        llm.stats().rate()
    ));
    Ok(Written {
        screenplay,
        timeline: render::timeline(&episode.id, &arcs),
    })
}
