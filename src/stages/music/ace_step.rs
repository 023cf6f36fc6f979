//! ACE-Step 1.5's API server (`kind: ace_step`): a scene's music generated
//! from its text prompt, then fitted and normalized like the procedural bed.
//!
//! Written from the server's source, `ace-step/ACE-Step-1.5` at
//! f30aee4c186c33b7b8a6ea59a4b7fc36f795b49f, `acestep/api_server.py`:
//! - `POST /release_task` with JSON (`prompt`, `lyrics`, `audio_duration`,
//!   `batch_size`, `use_random_seed`, `seed`, `audio_format`, `bpm`,
//!   `key_scale`, `time_signature`, `thinking`, `use_cot_caption`,
//!   `use_cot_language`, `task_type`, `model`) answers
//!   `{"data": {"task_id", "status": "queued", "queue_position"}, "code": 200,
//!   "error": null, "timestamp", "extra": null}` (`_wrap_response`); a
//!   refused request is FastAPI's `{"detail": …}` with 400, 401, 415, or 429
//!   when the queue is full.
//! - `POST /query_result` with `{"task_id_list": [id]}` answers `data`, a
//!   list of `{"task_id", "status": 0|1|2, "result": "<JSON text>"}`
//!   (queued or running, succeeded, failed; `STATUS_MAP`). `result` is a
//!   JSON *string* holding a list of `{"file", "status", "progress",
//!   "stage", "error", …}`; `file` is `/v1/audio?path=<percent-encoded server
//!   path>` (`_path_to_audio_url`). An id the server does not know (it
//!   restarted) stays at status 0 with `result: "[]"` forever.
//! - `GET /v1/audio?path=…` serves the file (403 outside its output folder,
//!   404 when gone).
//!
//! Nothing in a reply is trusted: the task id must look like one, the file
//! must be the server's own `/v1/audio` link (the path inside it is sent
//! back as a query value, never used as a path here or as a URL), the
//! download is bounded by the scene's length, and the audio must decode
//! (ffprobe) before it is fitted. The whole job — submit, polls, download —
//! runs within the executor's `timeout`; a job that never finishes (or that
//! the server forgot) ends there as a permanent failure, so the rule's
//! fallback (procedural music) makes the scene's bed. The server has no
//! way to cancel a task: on Ctrl-C studio stops polling and the task runs
//! out on the server, its file unused.

use std::time::{Duration, Instant};

use camino::Utf8Path;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{bed, check_rate, fail, scene_samples, style};
use crate::exec::http::{HttpError, Service, excerpt};
use crate::exec::{ExecError, Job, JobProgress, Produced};
use crate::project::vocab::Mood;
use crate::stages::{param_str, probe_duration, scratch};
use crate::timing;

/// ACE-Step's shortest and longest `audio_duration` (seconds; `inference.py`).
pub const MIN_SECONDS: f64 = 10.0;
pub const MAX_SECONDS: f64 = 600.0;
/// The longest task id taken (the server's are UUIDs).
const MAX_TASK_ID: usize = 128;
/// The longest `file` link taken.
const MAX_FILE_LINK: usize = 4096;
/// First and longest pause between two polls.
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(2);
/// The lyrics that make the server's `_is_instrumental` true.
const INSTRUMENTAL: &str = "[Instrumental]";

/// What one scene asks ACE-Step for.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask<'a> {
    pub prompt: &'a str,
    /// Seconds, within [`MIN_SECONDS`, `MAX_SECONDS`].
    pub seconds: f64,
    pub seed: u32,
    pub mood: Mood,
    pub model: Option<&'a str>,
}

/// The seconds to ask for: the scene's length, whole seconds up, at least
/// ACE-Step's shortest (the bed cuts the rest); `None` past its longest.
pub(crate) fn ask_seconds(samples: u64) -> Option<f64> {
    let seconds = samples.div_ceil(timing::RATE) as f64;
    (seconds <= MAX_SECONDS).then_some(seconds.max(MIN_SECONDS))
}

/// ACE-Step's seed (`prepare_seeds` draws in 0..2^32) from the node's seed,
/// which derives from its path and take and is in its key.
pub(crate) fn seed_of(node_seed: u64) -> u32 {
    (node_seed ^ (node_seed >> 32)) as u32
}

/// The `key_scale` text for a mood's key (the procedural bed's).
pub(crate) fn key_scale(mood: Mood) -> String {
    const NAMES: [&str; 12] = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
    let s = style(mood);
    let name = NAMES[usize::from(s.tonic % 12)];
    format!("{name} {}", if s.minor { "minor" } else { "major" })
}

/// The `/release_task` body: text2music, one instrumental take with the
/// node's seed, the scene's length, the mood's tempo and key, and no LM
/// rewriting of the keyed prompt.
pub(crate) fn release_body(ask: &Ask) -> Value {
    let mut body = json!({
        "prompt": ask.prompt,
        "lyrics": INSTRUMENTAL,
        "task_type": "text2music",
        "audio_duration": ask.seconds,
        "batch_size": 1,
        "use_random_seed": false,
        "seed": ask.seed,
        "audio_format": "flac",
        "bpm": style(ask.mood).bpm,
        "key_scale": key_scale(ask.mood),
        "time_signature": "4",
        "thinking": false,
        "use_cot_caption": false,
        "use_cot_language": false,
    });
    if let Some(model) = ask.model {
        body["model"] = json!(model);
    }
    body
}

/// `data` of a wrapped answer (`_wrap_response`), or the error it carries.
fn data(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("answered something that is not JSON ({e})"))?;
    let code = v.get("code").and_then(Value::as_i64);
    if code != Some(200) {
        let error = v.get("error").and_then(Value::as_str).unwrap_or("no error text");
        return Err(format!("answered code {code:?}: {}", excerpt(error, 300)));
    }
    v.get("data")
        .cloned()
        .ok_or_else(|| "answered without `data`".to_string())
}

/// The task id in `/release_task`'s answer.
pub(crate) fn task_id(body: &[u8]) -> Result<String, String> {
    let d = data(body)?;
    let id = d
        .get("task_id")
        .and_then(Value::as_str)
        .ok_or("answered without a `task_id`")?;
    let ok = !id.is_empty()
        && id.len() <= MAX_TASK_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(format!("answered a malformed task id `{}`", excerpt(id, 60)));
    }
    Ok(id.to_string())
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Queued or running; the fraction done when the server says.
    Pending(Option<f64>),
    /// Done: the server path of the first audio file (from its `file` link).
    Done(String),
    /// Failed, with the server's reason.
    Failed(String),
}

/// Our task's state in `/query_result`'s answer.
pub(crate) fn state(body: &[u8], id: &str) -> Result<State, String> {
    let d = data(body)?;
    let entry = d
        .as_array()
        .ok_or("answered `data` that is not a list")?
        .iter()
        .find(|e| e.get("task_id").and_then(Value::as_str) == Some(id))
        .ok_or_else(|| format!("answered no entry for task {id}"))?;
    let status = entry
        .get("status")
        .and_then(Value::as_i64)
        .ok_or("answered an entry without a numeric `status`")?;
    // `result` is JSON text of a list of items; bad text reads as no items.
    let items: Vec<Value> = entry
        .get("result")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let first = items.first();
    match status {
        0 => Ok(State::Pending(
            first
                .and_then(|i| i.get("progress"))
                .and_then(Value::as_f64)
                .filter(|f| (0.0..=1.0).contains(f)),
        )),
        1 => {
            let link = items
                .iter()
                .filter_map(|i| i.get("file").and_then(Value::as_str))
                .find(|f| !f.is_empty())
                .ok_or("reports success with no audio file")?;
            audio_path(link).map(State::Done)
        }
        2 => {
            let why = first
                .and_then(|i| i.get("error"))
                .and_then(Value::as_str)
                .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("no reason given");
            Ok(State::Failed(excerpt(why.trim(), 300)))
        }
        s => Err(format!("answered status {s}, not 0, 1 or 2")),
    }
}

/// The server path in a `/v1/audio?path=…` link: only the server's own
/// download link is taken (not another host's URL), and the path comes
/// back to it as a query value only.
pub(crate) fn audio_path(link: &str) -> Result<String, String> {
    let bad = || format!("answered a file link studio does not take: `{}`", excerpt(link, 80));
    if link.len() > MAX_FILE_LINK {
        return Err(bad());
    }
    let query = link.strip_prefix("/v1/audio?").ok_or_else(bad)?;
    let mut paths = url::form_urlencoded::parse(query.as_bytes());
    let (name, path) = paths.next().ok_or_else(bad)?;
    if name != "path" || paths.next().is_some() || path.is_empty() || path.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(path.into_owned())
}

/// The largest download for a scene of `seconds`: float WAV, stereo, 48 kHz
/// (FLAC is smaller), plus room for headers and metadata.
pub(crate) fn max_bytes(seconds: f64) -> u64 {
    (seconds.ceil() as u64 + 1) * 48_000 * 2 * 4 + (1 << 20)
}

/// A scene's music from the pool's ACE-Step server.
pub async fn ace_step(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    check_rate(job)?;
    let service = job
        .service
        .as_ref()
        .ok_or_else(|| fail(job, "no ACE-Step executor for this job"))?;
    let mood_word = param_str(job, "mood");
    let mood = Mood::parse(mood_word).ok_or_else(|| fail(job, format!("no music for mood `{mood_word}`")))?;
    let prompt = param_str(job, "prompt");
    if prompt.trim().is_empty() {
        return Err(fail(job, "the scene's music has no prompt"));
    }
    let samples = scene_samples(job)?;
    let seconds = ask_seconds(samples).ok_or_else(|| {
        fail(
            job,
            format!("the scene is longer than ACE-Step's longest piece ({MAX_SECONDS} s)"),
        )
    })?;
    let seed = seed_of(job.node.seed.unwrap_or(0));
    let ask = Ask {
        prompt,
        seconds,
        seed,
        mood,
        model: job.pool.model.as_deref(),
    };
    let api_key = job
        .host
        .as_ref()
        .and_then(|h| h.api_key_env.as_deref())
        .and_then(|var| std::env::var(var).ok());
    let client = Client {
        service,
        progress: &job.progress,
        api_key,
    };
    let raw = scratch(job, "ace_step.audio");
    let budget = crate::exec::http::seconds(service.timeout());
    tokio::select! {
        r = client.generate(&ask, &raw, budget) => r.map_err(|e| named(job, e))?,
        () = cancel.cancelled() => return Err(ExecError::Cancelled),
    }
    // It must decode, as audio, before anything else reads it.
    let decoded = probe_duration(job, &raw, cancel)
        .await
        .map_err(|_| client.protocol("answered a file that is not audio ffprobe can read".into()))?;
    if decoded.is_nan() || decoded <= 0.0 {
        return Err(client.protocol("answered an empty audio file".into()));
    }
    let mut made = bed(job, &raw, samples, cancel).await?;
    made.metadata.insert("seed".into(), json!(seed));
    Ok(made)
}

/// A permanent failure named with the node it failed.
fn named(job: &Job, e: ExecError) -> ExecError {
    match e {
        ExecError::Permanent(m) => ExecError::Permanent(format!("{}: {m}", job.node.id)),
        e => e,
    }
}

/// One job's calls to an ACE-Step host.
pub struct Client<'a> {
    pub service: &'a Service,
    /// Where the polls report how far the task got.
    pub progress: &'a JobProgress,
    /// Sent as `Authorization: Bearer` (the server's `ACESTEP_API_KEY`).
    pub api_key: Option<String>,
}

impl Client<'_> {
    /// Submit `ask`, poll until it is done and download its audio into
    /// `to`, all within `budget`: a task still pending then is a permanent
    /// failure (the rule's fallback makes the music instead of a retry
    /// waiting as long again).
    pub async fn generate(&self, ask: &Ask<'_>, to: &Utf8Path, budget: Duration) -> Result<(), ExecError> {
        let deadline = Instant::now() + budget;
        let work = async {
            let id = self.release(ask).await?;
            let path = self.wait(&id, deadline).await?;
            self.download(&path, to, max_bytes(ask.seconds)).await
        };
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), work).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::Permanent(
                self.service
                    .error(HttpError::Protocol {
                        url: self.service.base.clone(),
                        reason: format!(
                            "the music was not ready within {} s (the executor's `timeout`)",
                            budget.as_secs_f64()
                        ),
                    })
                    .to_string(),
            )),
        }
    }

    fn error(&self, e: HttpError) -> ExecError {
        self.service.error(e).into()
    }

    fn protocol(&self, reason: String) -> ExecError {
        self.error(HttpError::Protocol {
            url: self.service.base.clone(),
            reason,
        })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// POST `body` to `path`; the 2xx answer's body.
    async fn post(&self, path: &str, body: &Value) -> Result<bytes::Bytes, ExecError> {
        let url = self.service.url(path).map_err(|e| self.error(e))?;
        let req = self
            .service
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).expect("JSON"));
        let answer = self
            .service
            .send(&url, self.auth(req))
            .await
            .map_err(|e| self.error(e))?;
        self.service.check_status(&url, &answer).map_err(|e| self.error(e))?;
        Ok(answer.body)
    }

    async fn release(&self, ask: &Ask<'_>) -> Result<String, ExecError> {
        let body = self.post("/release_task", &release_body(ask)).await?;
        task_id(&body).map_err(|e| self.protocol(format!("/release_task {e}")))
    }

    /// Poll until the task is done or failed; the caller's deadline ends
    /// the wait.
    async fn wait(&self, id: &str, deadline: Instant) -> Result<String, ExecError> {
        let mut pause = POLL_FIRST;
        let query = json!({"task_id_list": [id]});
        loop {
            let body = self.post("/query_result", &query).await?;
            match state(&body, id).map_err(|e| self.protocol(format!("/query_result {e}")))? {
                State::Done(path) => return Ok(path),
                State::Failed(why) => {
                    return Err(ExecError::Permanent(format!(
                        "executor `{}` (studio.yaml:{}): ACE-Step task {id} failed: {why}",
                        self.service.executor, self.service.line
                    )));
                }
                State::Pending(fraction) => self.progress.report(fraction, "ACE-Step generating"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// GET the file into `to`, at most `max` bytes.
    async fn download(&self, path: &str, to: &Utf8Path, max: u64) -> Result<(), ExecError> {
        let base = self.service.url("/v1/audio").map_err(|e| self.error(e))?;
        let mut url = url::Url::parse(&base).map_err(|e| self.error(HttpError::Config(e.to_string())))?;
        url.query_pairs_mut().append_pair("path", path);
        let url = url.to_string();
        let mut response = self
            .auth(self.service.get(&url))
            .send()
            .await
            .map_err(|e| self.error(self.service.transport(&base, e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.error(HttpError::Status {
                url: base,
                status,
                body: String::new(),
            }));
        }
        let write = |e: std::io::Error| ExecError::Permanent(format!("cannot write {to}: {e}"));
        let mut file = tokio::fs::File::create(to).await.map_err(write)?;
        let mut size = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.error(self.service.transport(&base, e)))?
        {
            size += chunk.len() as u64;
            if size > max {
                return Err(self.protocol(format!(
                    "/v1/audio answered more than {max} bytes for the scene's music"
                )));
            }
            file.write_all(&chunk).await.map_err(write)?;
        }
        file.flush().await.map_err(write)?;
        if size == 0 {
            return Err(self.protocol("/v1/audio answered an empty file".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"data": data, "code": 200, "error": null, "timestamp": 1, "extra": null})).unwrap()
    }

    #[test]
    fn the_request_is_one_seeded_instrumental_take_of_the_scene() {
        let ask = Ask {
            prompt: "instrumental, calm",
            seconds: 12.0,
            seed: 7,
            mood: Mood::Tense,
            model: None,
        };
        let b = release_body(&ask);
        assert_eq!(b["batch_size"], 1);
        assert_eq!(b["use_random_seed"], false);
        assert_eq!(b["seed"], 7);
        assert_eq!(b["audio_duration"], 12.0);
        assert_eq!(b["lyrics"], "[Instrumental]");
        assert_eq!(b["bpm"], 96);
        assert_eq!(b["key_scale"], "D minor");
        assert!(b.get("model").is_none());
        let b = release_body(&Ask {
            model: Some("acestep-v15-turbo"),
            ..ask
        });
        assert_eq!(b["model"], "acestep-v15-turbo");
        assert_eq!(key_scale(Mood::Calm), "C major");
        assert_eq!(key_scale(Mood::Romantic), "F major");
    }

    #[test]
    fn durations_and_seeds() {
        assert_eq!(ask_seconds(48_000), Some(10.0), "at least ACE-Step's shortest");
        assert_eq!(ask_seconds(48_000 * 12 + 1), Some(13.0));
        assert_eq!(ask_seconds(48_000 * 600), Some(600.0));
        assert_eq!(ask_seconds(48_000 * 600 + 1), None);
        assert_eq!(seed_of(5), 5);
        assert_eq!(seed_of(1 << 32), 1);
        assert_ne!(seed_of(u64::MAX - 3), seed_of(u64::MAX - 4));
    }

    #[test]
    fn task_ids_are_checked() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(
            task_id(&wrap(json!({"task_id": id, "status": "queued", "queue_position": 1}))),
            Ok(id.into())
        );
        assert!(task_id(&wrap(json!({"task_id": "../../etc"}))).is_err());
        assert!(task_id(&wrap(json!({"task_id": ""}))).is_err());
        assert!(task_id(&wrap(json!({}))).is_err());
        assert!(task_id(b"<html>").is_err());
        let err = br#"{"data": null, "code": 500, "error": "boom", "timestamp": 1, "extra": null}"#;
        assert!(task_id(err).unwrap_err().contains("boom"));
    }

    #[test]
    fn query_results_read_as_the_server_writes_them() {
        let id = "t-1";
        let pending = wrap(json!([{"task_id": id, "status": 0,
            "result": "[{\"file\": \"\", \"status\": 0, \"progress\": 0.4, \"stage\": \"diffusion\"}]"}]));
        assert_eq!(state(&pending, id), Ok(State::Pending(Some(0.4))));
        let unknown = wrap(json!([{"task_id": id, "result": "[]", "status": 0}]));
        assert_eq!(state(&unknown, id), Ok(State::Pending(None)));
        let done = wrap(json!([{"task_id": id, "status": 1,
            "result": "[{\"file\": \"/v1/audio?path=%2Ftmp%2Fapi_audio%2Fa%20b.flac\", \"status\": 1}]"}]));
        assert_eq!(state(&done, id), Ok(State::Done("/tmp/api_audio/a b.flac".into())));
        let failed = wrap(json!([{"task_id": id, "status": 2,
            "result": "[{\"file\": \"\", \"status\": 2, \"error\": \"Traceback...\\nRuntimeError: CUDA out of memory\\n\"}]"}]));
        assert_eq!(
            state(&failed, id),
            Ok(State::Failed("RuntimeError: CUDA out of memory".into()))
        );
        assert!(state(&wrap(json!([{"task_id": "other", "status": 1}])), id).is_err());
        assert!(state(&wrap(json!([{"task_id": id, "status": 7}])), id).is_err());
        let no_file = wrap(json!([{"task_id": id, "status": 1, "result": "[{\"file\": \"\"}]"}]));
        assert!(state(&no_file, id).is_err());
    }

    #[test]
    fn only_the_servers_own_download_link_is_taken() {
        assert_eq!(audio_path("/v1/audio?path=%2Fx%2Fy.mp3"), Ok("/x/y.mp3".into()));
        for bad in [
            "http://10.0.0.1/v1/audio?path=%2Fx",
            "/v1/audio?path=",
            "/v1/audio?path=a&path=b",
            "/v1/audio?other=a",
            "/view?path=a",
            "/v1/audio?path=a%0Ab",
        ] {
            assert!(audio_path(bad).is_err(), "{bad}");
        }
        assert!(audio_path(&format!("/v1/audio?path={}", "a".repeat(5000))).is_err());
        assert!(max_bytes(10.0) > 10 * 48_000 * 2 * 4);
    }
}
