//! The two LLM chat protocols: Ollama's `/api/chat` and the OpenAI-compatible
//! `/v1/chat/completions` (llama.cpp's server, vLLM, LM Studio, Ollama's `/v1`).
//!
//! One call is one HTTP request with a JSON Schema that constrains the reply
//! and a bound on its length; retrying transient failures is the caller's
//! business ([`CallError::transient`]). Requests go only where the host rule
//! allows ([`crate::project::executor::check_url`]) and never follow a
//! redirect ([`executor_http`]).
//!
//! What the wire formats were checked against:
//! - Ollama, docs/api.md "Generate a chat completion": `format` takes a JSON
//!   schema; `options` takes the Modelfile parameters, `num_predict` being
//!   the most tokens to generate; the final object's `done_reason` is
//!   `stop`, or `length` when `num_predict` ran out (llm/server.go,
//!   `DoneReasonLength`).
//! - OpenAI, API reference "Create chat completion": `max_tokens` (OpenAI
//!   now prefers `max_completion_tokens` for its own models, but `max_tokens`
//!   is what llama.cpp's server, llama-cpp-python, vLLM, LM Studio and
//!   Ollama's `/v1` read); `choices[].finish_reason` is `length` "if the
//!   maximum number of tokens specified in the request was reached".
//! - llama-cpp-python's server (llama_cpp/llama_types.py,
//!   `ChatCompletionRequestResponseFormat`): `response_format.type` is only
//!   `text` or `json_object`, with the schema beside it as `schema`. Its
//!   route error handler (llama_cpp/server/errors.py) answers
//!   `type: json_schema` with HTTP 500 `{"error": {"message": "<pydantic's
//!   literal_error: Input should be 'text' or 'json_object'>", "type":
//!   "internal_server_error"}}` (ggml-org/llama.cpp#23463); older llama.cpp
//!   servers answered 500 "response_format type must be one of \"text\" or
//!   \"json_object\", but got: json_schema" (ggml-org/llama.cpp#9522).
//!   [`refuses_json_schema`] recognises both, and the client falls back to
//!   `json_object` with the schema for the rest of the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Stage;
use crate::engines::ServiceKind;
use crate::project::executor::check_url;
use crate::project::model::Executor;

/// Which wire protocol an executor speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Ollama,
    Openai,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// Generation options; all of them enter the cache key.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GenOptions {
    pub seed: u64,
    pub temperature: f64,
    /// Ollama only; OpenAI-compatible servers size their context themselves.
    pub num_ctx: u32,
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The assistant message's content (the JSON text).
    pub content: String,
    /// Generated tokens, when the server says.
    pub tokens: Option<u64>,
    /// Seconds spent generating them (the server's own count when it gives
    /// one, else the request's wall time).
    pub seconds: f64,
}

/// A request that got no usable reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} did not answer within {seconds} s (the executor's `timeout`)")]
    Timeout { url: String, seconds: f64 },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url} cut the reply off at `max_tokens` ({max_tokens} tokens): it is unfinished, not invalid")]
    Truncated { url: String, max_tokens: u32 },
    #[error("{url} {reason}")]
    Redirect { url: String, reason: String },
    #[error("{0}")]
    Config(String),
}

impl CallError {
    /// Worth another try: refused connections, timeouts, 5xx and 429.
    pub fn transient(&self) -> bool {
        match self {
            CallError::Connect { .. } | CallError::Timeout { .. } => true,
            CallError::Status { status, .. } => *status >= 500 || *status == 429,
            CallError::Protocol { .. }
            | CallError::Truncated { .. }
            | CallError::Redirect { .. }
            | CallError::Config(_) => false,
        }
    }
}

/// A redirect studio refused to follow.
#[derive(Debug, thiserror::Error)]
#[error("answered with a redirect to {to}, and studio does not follow an executor's redirects")]
struct RedirectRefused {
    to: String,
}

/// An HTTP client for an executor: its timeouts, no proxy (the traffic
/// goes to the host the rule allowed, or nowhere), and no redirects: a 3xx
/// fails the request naming where it pointed, so a server cannot move a
/// request, prompts or tokens to another host. Check the URL with
/// [`check_url`] before sending anything with it.
pub fn executor_http(connect_timeout: Duration, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let to = attempt.url().to_string();
            attempt.error(RedirectRefused { to })
        }))
        .build()
}

/// Whether an OpenAI-compatible server's error says it does not take
/// `response_format: {type: json_schema}` but does take `json_object`
/// (llama-cpp-python: HTTP 500, or 400/422 behind other frameworks).
pub fn refuses_json_schema(status: u16, body: &str) -> bool {
    matches!(status, 400 | 422 | 500) && body.contains("json_schema") && body.contains("json_object")
}

/// A configured LLM endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    pub protocol: Protocol,
    pub executor: String,
    pub model: String,
    url: String,
    api_key: Option<String>,
    timeout: f64,
    /// The executor's `max_tokens`; `None`: each stage's default.
    max_tokens: Option<u32>,
    /// The server refused `json_schema`: send `json_object` with the schema
    /// (shared by clones, so it is learned once per run).
    json_object: Arc<AtomicBool>,
}

impl Client {
    /// A client for an `ollama` or `openai` executor.
    pub fn new(e: &Executor) -> Result<Client, CallError> {
        let protocol = match e.kind {
            ServiceKind::Ollama => Protocol::Ollama,
            ServiceKind::Openai => Protocol::Openai,
            other => {
                return Err(CallError::Config(format!(
                    "executor `{}` is `{}`, not an LLM",
                    e.id,
                    other.as_str()
                )));
            }
        };
        let model = e
            .model
            .clone()
            .ok_or_else(|| CallError::Config(format!("executor `{}` names no `model:`", e.id)))?;
        // `token_env` is the older name the other services use.
        let api_key = match e.api_key_env.as_ref().or(e.token_env.as_ref()) {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                CallError::Config(format!(
                    "executor `{}` reads its API key from ${var}, which is not set",
                    e.id
                ))
            })?),
            None => None,
        };
        let url = endpoint(protocol, &e.url);
        // Defence in depth: the loader already refused such a URL.
        check_url(&url, e.remote_host).map_err(|err| CallError::Config(format!("executor `{}`: {err}", e.id)))?;
        let http = executor_http(
            Duration::from_secs_f64(e.connect_timeout),
            Duration::from_secs_f64(e.timeout),
        )
        .map_err(|err| CallError::Config(format!("HTTP client: {err}")))?;
        Ok(Client {
            http,
            protocol,
            executor: e.id.clone(),
            model,
            url,
            api_key,
            timeout: e.timeout,
            max_tokens: e.max_tokens,
            json_object: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The most tokens a reply of `stage` may have.
    pub fn max_tokens(&self, stage: Stage) -> u32 {
        self.max_tokens.unwrap_or_else(|| stage.default_max_tokens())
    }

    /// The request body for `messages` constrained by `schema`, its reply
    /// at most `max_tokens` long. `json_object`: llama-cpp-python's form of
    /// the schema constraint instead of OpenAI's `json_schema`.
    pub fn body(
        &self,
        messages: &[Message],
        schema: &Value,
        o: &GenOptions,
        max_tokens: u32,
        json_object: bool,
    ) -> Value {
        match self.protocol {
            Protocol::Ollama => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "format": schema,
                "options": {
                    "seed": o.seed,
                    "temperature": o.temperature,
                    "num_ctx": o.num_ctx,
                    "num_predict": max_tokens,
                },
            }),
            Protocol::Openai => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "seed": o.seed,
                "temperature": o.temperature,
                "max_tokens": max_tokens,
                "response_format": if json_object {
                    json!({"type": "json_object", "schema": schema})
                } else {
                    json!({
                        "type": "json_schema",
                        "json_schema": {"name": "reply", "strict": true, "schema": schema},
                    })
                },
            }),
        }
    }

    /// One request (two when the server refuses `json_schema` for the first
    /// time: then again with `json_object`, and so on for the rest of the run).
    pub async fn chat(
        &self,
        messages: &[Message],
        schema: &Value,
        o: &GenOptions,
        max_tokens: u32,
    ) -> Result<Reply, CallError> {
        let json_object = self.json_object.load(Ordering::SeqCst);
        let (status, bytes, elapsed) = self
            .post(&self.body(messages, schema, o, max_tokens, json_object))
            .await?;
        let (status, bytes, elapsed) = if self.protocol == Protocol::Openai
            && !json_object
            && refuses_json_schema(status, &String::from_utf8_lossy(&bytes))
        {
            if !self.json_object.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "warning: `{}` ({}) refuses `response_format: json_schema` (HTTP {status}); sending the schema \
                     as `json_object` (llama-cpp-python's form) for the rest of this run",
                    self.executor, self.url
                );
            }
            self.post(&self.body(messages, schema, o, max_tokens, true)).await?
        } else {
            (status, bytes, elapsed)
        };
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            return Err(CallError::Status {
                url: self.url.clone(),
                status,
                body: excerpt(text.trim(), 300),
            });
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| CallError::Protocol {
            url: self.url.clone(),
            reason: format!("the response is not JSON ({e})"),
        })?;
        self.parse(&v, elapsed, max_tokens)
    }

    /// POST `body`: the status, the response body and the seconds it took.
    async fn post(&self, body: &Value) -> Result<(u16, bytes::Bytes, f64), CallError> {
        let body = serde_json::to_vec(body).expect("JSON serializes");
        let mut request = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        Ok((status, bytes, started.elapsed().as_secs_f64()))
    }

    fn parse(&self, v: &Value, elapsed: f64, max_tokens: u32) -> Result<Reply, CallError> {
        let bad = |reason: &str| CallError::Protocol {
            url: self.url.clone(),
            reason: format!("{reason} in the response: {}", excerpt(&v.to_string(), 300)),
        };
        let truncated = || CallError::Truncated {
            url: self.url.clone(),
            max_tokens,
        };
        match self.protocol {
            Protocol::Ollama => {
                if let Some(err) = v["error"].as_str() {
                    return Err(bad(&format!("error `{err}`")));
                }
                if v["done_reason"] == "length" {
                    return Err(truncated());
                }
                let content = v["message"]["content"]
                    .as_str()
                    .ok_or_else(|| bad("no message.content"))?;
                let tokens = v["eval_count"].as_u64();
                let seconds = v["eval_duration"].as_u64().map_or(elapsed, |ns| ns as f64 / 1e9);
                Ok(Reply {
                    content: content.to_string(),
                    tokens,
                    seconds,
                })
            }
            Protocol::Openai => {
                if v["choices"][0]["finish_reason"] == "length" {
                    return Err(truncated());
                }
                let content = v["choices"][0]["message"]["content"]
                    .as_str()
                    .ok_or_else(|| bad("no choices[0].message.content"))?;
                Ok(Reply {
                    content: content.to_string(),
                    tokens: v["usage"]["completion_tokens"].as_u64(),
                    seconds: elapsed,
                })
            }
        }
    }

    fn transport(&self, e: reqwest::Error) -> CallError {
        let url = self.url.clone();
        if e.is_timeout() {
            CallError::Timeout {
                url,
                seconds: self.timeout,
            }
        } else if e.is_redirect() {
            CallError::Redirect {
                url,
                reason: root_cause(&e),
            }
        } else if e.is_connect() {
            CallError::Connect {
                url,
                reason: root_cause(&e),
            }
        } else {
            CallError::Protocol {
                url,
                reason: root_cause(&e),
            }
        }
    }
}

/// The chat URL for a base URL: `http://host:11434` → `…/api/chat`;
/// `http://host:8080` or `…/v1` → `…/v1/chat/completions`.
pub fn endpoint(protocol: Protocol, base: &str) -> String {
    let base = base.trim_end_matches('/');
    match protocol {
        Protocol::Ollama => format!("{base}/api/chat"),
        Protocol::Openai if base.ends_with("/v1") => format!("{base}/chat/completions"),
        Protocol::Openai => format!("{base}/v1/chat/completions"),
    }
}

/// The innermost cause ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for (p, base, want) in [
            (
                Protocol::Ollama,
                "http://127.0.0.1:11434",
                "http://127.0.0.1:11434/api/chat",
            ),
            (
                Protocol::Ollama,
                "http://127.0.0.1:11434/",
                "http://127.0.0.1:11434/api/chat",
            ),
            (
                Protocol::Openai,
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                Protocol::Openai,
                "http://127.0.0.1:8080/v1",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                Protocol::Openai,
                "http://127.0.0.1:11434/v1/",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
        ] {
            assert_eq!(endpoint(p, base), want, "{p:?} {base}");
        }
    }

    #[test]
    fn transient_errors() {
        let status = |status| CallError::Status {
            url: String::new(),
            status,
            body: String::new(),
        };
        assert!(status(500).transient());
        assert!(status(503).transient());
        assert!(status(429).transient());
        assert!(!status(400).transient());
        assert!(!status(404).transient());
    }

    fn executor(kind: ServiceKind, url: &str, remote_host: bool) -> Executor {
        Executor {
            id: "llm".into(),
            kind,
            url: url.into(),
            remote_host,
            max_tokens: None,
            slots: 1,
            model: Some("m".into()),
            token_env: None,
            api_key_env: None,
            timeout: 5.0,
            connect_timeout: 1.0,
        }
    }

    #[test]
    fn the_client_refuses_a_host_its_executor_did_not_allow() {
        for kind in [ServiceKind::Ollama, ServiceKind::Openai] {
            let err = Client::new(&executor(kind, "http://10.1.2.3:11434", false)).unwrap_err();
            let CallError::Config(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("10.1.2.3") && msg.contains("remote_host: true"), "{msg}");
            assert!(!err.transient());
            Client::new(&executor(kind, "http://10.1.2.3:11434", true)).unwrap();
            Client::new(&executor(kind, "http://localhost:11434", false)).unwrap();
            Client::new(&executor(kind, "http://127.0.0.2:11434", false)).unwrap();
        }
        let err = Client::new(&executor(ServiceKind::Ollama, "file:///etc/passwd", true)).unwrap_err();
        assert!(matches!(err, CallError::Config(_)), "{err:?}");
    }

    #[test]
    fn bodies_bound_the_reply() {
        let messages = [Message::new("system", "s"), Message::new("user", "u")];
        let schema = json!({"type": "object"});
        let o = GenOptions {
            seed: 3,
            temperature: 0.5,
            num_ctx: 4096,
        };
        let ollama = Client::new(&executor(ServiceKind::Ollama, "http://127.0.0.1:1", false)).unwrap();
        let b = ollama.body(&messages, &schema, &o, 777, false);
        assert_eq!(b["options"]["num_predict"], 777);
        assert!(b.get("max_tokens").is_none());
        let openai = Client::new(&executor(ServiceKind::Openai, "http://127.0.0.1:1", false)).unwrap();
        let b = openai.body(&messages, &schema, &o, 777, false);
        assert_eq!(b["max_tokens"], 777);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["response_format"]["json_schema"]["schema"], schema);
        let b = openai.body(&messages, &schema, &o, 777, true);
        assert_eq!(b["response_format"], json!({"type": "json_object", "schema": schema}));
        // Each stage has its default unless the executor sets one bound.
        assert_eq!(openai.max_tokens(Stage::Scenes), Stage::Scenes.default_max_tokens());
        assert_eq!(openai.max_tokens(Stage::Dialogue), Stage::Dialogue.default_max_tokens());
        let mut e = executor(ServiceKind::Openai, "http://127.0.0.1:1", false);
        e.max_tokens = Some(900);
        let c = Client::new(&e).unwrap();
        assert!(Stage::ALL.iter().all(|s| c.max_tokens(*s) == 900));
    }

    #[test]
    fn a_reply_cut_at_the_bound_is_truncated_not_invalid() {
        let ollama = Client::new(&executor(ServiceKind::Ollama, "http://127.0.0.1:1", false)).unwrap();
        let v = json!({"message": {"role": "assistant", "content": "{\"scenes\": ["}, "done": true, "done_reason": "length"});
        assert!(matches!(
            ollama.parse(&v, 1.0, 64),
            Err(CallError::Truncated { max_tokens: 64, .. })
        ));
        let v = json!({"message": {"role": "assistant", "content": "{}"}, "done": true, "done_reason": "stop"});
        assert_eq!(ollama.parse(&v, 1.0, 64).unwrap().content, "{}");
        let openai = Client::new(&executor(ServiceKind::Openai, "http://127.0.0.1:1", false)).unwrap();
        let v = json!({"choices": [{"message": {"content": "{\"sc"}, "finish_reason": "length"}]});
        let err = openai.parse(&v, 1.0, 100).unwrap_err();
        assert!(matches!(err, CallError::Truncated { max_tokens: 100, .. }), "{err:?}");
        assert!(err.to_string().contains("`max_tokens` (100 tokens)"), "{err}");
        assert!(!err.transient());
    }

    #[test]
    fn json_schema_refusals() {
        // llama-cpp-python (llama_cpp/server/errors.py wraps the validation error).
        let lcp = r#"{"error":{"message":"[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}]","type":"internal_server_error","param":null,"code":null}}"#;
        assert!(refuses_json_schema(500, lcp));
        assert!(refuses_json_schema(422, lcp));
        // Older llama.cpp servers.
        let old = r#"{"error":{"code":500,"message":"response_format type must be one of \"text\" or \"json_object\", but got: json_schema","type":"server_error"}}"#;
        assert!(refuses_json_schema(500, old));
        // Not refusals: a loading model, an unknown model, a bad schema.
        assert!(!refuses_json_schema(500, r#"{"error": "model is loading"}"#));
        assert!(!refuses_json_schema(404, old));
        assert!(!refuses_json_schema(
            400,
            r#"{"error":{"message":"JSON schema conversion failed: Unrecognized schema"}}"#
        ));
    }

    #[test]
    fn excerpts_cut_at_characters() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("ありがとう", 4), "あ…");
    }
}
