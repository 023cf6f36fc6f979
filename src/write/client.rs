//! The two LLM chat protocols: Ollama's `/api/chat` and the OpenAI-compatible
//! `/v1/chat/completions` (llama.cpp's server, vLLM, LM Studio, Ollama's `/v1`).
//!
//! One call is one HTTP request with a JSON Schema that constrains the reply
//! and a bound on its length; retrying transient failures is the caller's
//! business ([`CallError::transient`]). The HTTP part (timeouts, the host
//! rule, no redirects, error classes) is [`crate::exec::http`]'s; this file
//! holds only the two protocols' request and reply shapes.
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

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engines::ServiceKind;
use crate::exec::http::{Answer, Service};
pub use crate::exec::http::{HttpError, excerpt};
use crate::project::model::Executor;
use crate::project::model::WriteStage;

/// Which chat protocol an executor speaks. Its serialized name is part of
/// every reply-cache key, so `openai_chat` keeps the name it had, `openai`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[serde(rename = "ollama")]
    Ollama,
    #[serde(rename = "openai")]
    OpenaiChat,
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
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url} cut the reply off at `max_tokens` ({max_tokens} tokens): it is unfinished, not invalid")]
    Truncated { url: String, max_tokens: u32 },
}

impl CallError {
    /// Worth another try: refused connections, timeouts, 5xx and 429.
    pub fn transient(&self) -> bool {
        match self {
            CallError::Http(e) => e.transient(),
            CallError::Truncated { .. } => false,
        }
    }
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
    service: Service,
    pub protocol: Protocol,
    pub executor: String,
    pub model: String,
    url: String,
    api_key: Option<String>,
    /// The executor's `max_tokens`; `None`: each stage's default.
    max_tokens: Option<u32>,
    /// The server refused `json_schema`: send `json_object` with the schema
    /// (shared by clones, so it is learned once per run).
    json_object: Arc<AtomicBool>,
}

impl Client {
    /// A client for an `ollama` or `openai_chat` executor.
    pub fn new(e: &Executor) -> Result<Client, CallError> {
        let config = |msg: String| CallError::Http(HttpError::Config(msg));
        let protocol = match e.kind {
            ServiceKind::Ollama => Protocol::Ollama,
            ServiceKind::OpenaiChat => Protocol::OpenaiChat,
            other => {
                return Err(config(format!(
                    "executor `{}` is `{}`, not an LLM",
                    e.id,
                    other.as_str()
                )));
            }
        };
        let model = e
            .model
            .clone()
            .ok_or_else(|| config(format!("executor `{}` names no `model:`", e.id)))?;
        // `token_env` is the older name the other services use.
        let api_key = match e.api_key_env.as_ref().or(e.token_env.as_ref()) {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                config(format!(
                    "executor `{}` reads its API key from ${var}, which is not set",
                    e.id
                ))
            })?),
            None => None,
        };
        let service = Service::new(e)?;
        let url = service.url(endpoint_path(protocol, &service.base))?;
        Ok(Client {
            service,
            protocol,
            executor: e.id.clone(),
            model,
            url,
            api_key,
            max_tokens: e.max_tokens,
            json_object: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The most tokens a reply of `stage` may have.
    pub fn max_tokens(&self, stage: WriteStage) -> u32 {
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
            Protocol::OpenaiChat => json!({
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
        let answer = self
            .post(&self.body(messages, schema, o, max_tokens, json_object))
            .await?;
        let answer = if self.protocol == Protocol::OpenaiChat
            && !json_object
            && refuses_json_schema(answer.status, &String::from_utf8_lossy(&answer.body))
        {
            if !self.json_object.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "warning: `{}` ({}) refuses `response_format: json_schema` (HTTP {}); sending the schema \
                     as `json_object` (llama-cpp-python's form) for the rest of this run",
                    self.executor, self.url, answer.status
                );
            }
            self.post(&self.body(messages, schema, o, max_tokens, true)).await?
        } else {
            answer
        };
        self.service.check_status(&self.url, &answer)?;
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| HttpError::Protocol {
            url: self.url.clone(),
            reason: format!("the response is not JSON ({e})"),
        })?;
        self.parse(&v, answer.seconds, max_tokens)
    }

    /// POST `body` to the chat URL.
    async fn post(&self, body: &Value) -> Result<Answer, HttpError> {
        self.service.post_json(&self.url, body, self.api_key.as_deref()).await
    }

    fn parse(&self, v: &Value, elapsed: f64, max_tokens: u32) -> Result<Reply, CallError> {
        let bad = |reason: &str| {
            CallError::Http(HttpError::Protocol {
                url: self.url.clone(),
                reason: format!("{reason} in the response: {}", excerpt(&v.to_string(), 300)),
            })
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
            Protocol::OpenaiChat => {
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
}

/// The chat URL for a base URL: `http://host:11434` → `…/api/chat`;
/// `http://host:8080` or `…/v1` → `…/v1/chat/completions`.
pub fn endpoint(protocol: Protocol, base: &str) -> String {
    let base = base.trim_end_matches('/');
    format!("{base}{}", endpoint_path(protocol, base))
}

/// The path [`endpoint`] appends to `base`.
fn endpoint_path(protocol: Protocol, base: &str) -> &'static str {
    match protocol {
        Protocol::Ollama => "/api/chat",
        Protocol::OpenaiChat if base.trim_end_matches('/').ends_with("/v1") => "/chat/completions",
        Protocol::OpenaiChat => "/v1/chat/completions",
    }
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
                Protocol::OpenaiChat,
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                Protocol::OpenaiChat,
                "http://127.0.0.1:8080/v1",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                Protocol::OpenaiChat,
                "http://127.0.0.1:11434/v1/",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
        ] {
            assert_eq!(endpoint(p, base), want, "{p:?} {base}");
        }
    }

    #[test]
    fn transient_errors() {
        let status = |status| {
            CallError::Http(HttpError::Status {
                url: String::new(),
                status,
                body: String::new(),
            })
        };
        // HTTP errors keep exec::http's classification (tested there).
        assert!(status(503).transient());
        assert!(!status(400).transient());
        let cut = CallError::Truncated {
            url: String::new(),
            max_tokens: 1,
        };
        assert!(!cut.transient());
    }

    fn executor(kind: ServiceKind, url: &str, remote_host: bool) -> Executor {
        Executor {
            id: "llm".into(),
            kind,
            group: kind.as_str().into(),
            line: 1,
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
        for kind in [ServiceKind::Ollama, ServiceKind::OpenaiChat] {
            let err = Client::new(&executor(kind, "http://10.1.2.3:11434", false)).unwrap_err();
            let CallError::Http(HttpError::Config(msg)) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("10.1.2.3") && msg.contains("remote_host: true"), "{msg}");
            assert!(!err.transient());
            Client::new(&executor(kind, "http://10.1.2.3:11434", true)).unwrap();
            Client::new(&executor(kind, "http://localhost:11434", false)).unwrap();
            Client::new(&executor(kind, "http://127.0.0.2:11434", false)).unwrap();
        }
        let err = Client::new(&executor(ServiceKind::Ollama, "file:///etc/passwd", true)).unwrap_err();
        assert!(matches!(err, CallError::Http(HttpError::Config(_))), "{err:?}");
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
        let openai = Client::new(&executor(ServiceKind::OpenaiChat, "http://127.0.0.1:1", false)).unwrap();
        let b = openai.body(&messages, &schema, &o, 777, false);
        assert_eq!(b["max_tokens"], 777);
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["response_format"]["json_schema"]["schema"], schema);
        let b = openai.body(&messages, &schema, &o, 777, true);
        assert_eq!(b["response_format"], json!({"type": "json_object", "schema": schema}));
        // Each stage has its default unless the executor sets one bound.
        assert_eq!(
            openai.max_tokens(WriteStage::Scenes),
            WriteStage::Scenes.default_max_tokens()
        );
        assert_eq!(
            openai.max_tokens(WriteStage::Dialogue),
            WriteStage::Dialogue.default_max_tokens()
        );
        let mut e = executor(ServiceKind::OpenaiChat, "http://127.0.0.1:1", false);
        e.max_tokens = Some(900);
        let c = Client::new(&e).unwrap();
        assert!(WriteStage::ALL.iter().all(|s| c.max_tokens(*s) == 900));
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
        let openai = Client::new(&executor(ServiceKind::OpenaiChat, "http://127.0.0.1:1", false)).unwrap();
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
}
