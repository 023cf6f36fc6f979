//! The two LLM chat protocols: Ollama's `/api/chat` and the OpenAI-compatible
//! `/v1/chat/completions` (llama.cpp's server, vLLM, LM Studio, Ollama's `/v1`).
//!
//! One call is one HTTP request with a JSON Schema that constrains the reply;
//! retrying transient failures is the caller's business ([`CallError::transient`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engines::ServiceKind;
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
    #[error("{0}")]
    Config(String),
}

impl CallError {
    /// Worth another try: refused connections, timeouts, 5xx and 429.
    pub fn transient(&self) -> bool {
        match self {
            CallError::Connect { .. } | CallError::Timeout { .. } => true,
            CallError::Status { status, .. } => *status >= 500 || *status == 429,
            CallError::Protocol { .. } | CallError::Config(_) => false,
        }
    }
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(e.connect_timeout))
            .timeout(Duration::from_secs_f64(e.timeout))
            .build()
            .map_err(|err| CallError::Config(format!("HTTP client: {err}")))?;
        Ok(Client {
            http,
            protocol,
            executor: e.id.clone(),
            model,
            url: endpoint(protocol, &e.url),
            api_key,
            timeout: e.timeout,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request body for `messages` constrained by `schema`.
    pub fn body(&self, messages: &[Message], schema: &Value, o: &GenOptions) -> Value {
        match self.protocol {
            Protocol::Ollama => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "format": schema,
                "options": {"seed": o.seed, "temperature": o.temperature, "num_ctx": o.num_ctx},
            }),
            Protocol::Openai => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "seed": o.seed,
                "temperature": o.temperature,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "reply", "strict": true, "schema": schema},
                },
            }),
        }
    }

    /// One request.
    pub async fn chat(&self, messages: &[Message], schema: &Value, o: &GenOptions) -> Result<Reply, CallError> {
        let body = serde_json::to_vec(&self.body(messages, schema, o)).expect("JSON serializes");
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
        let elapsed = started.elapsed().as_secs_f64();
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
        self.parse(&v, elapsed)
    }

    fn parse(&self, v: &Value, elapsed: f64) -> Result<Reply, CallError> {
        let bad = |reason: &str| CallError::Protocol {
            url: self.url.clone(),
            reason: format!("{reason} in the response: {}", excerpt(&v.to_string(), 300)),
        };
        match self.protocol {
            Protocol::Ollama => {
                if let Some(err) = v["error"].as_str() {
                    return Err(bad(&format!("error `{err}`")));
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

    #[test]
    fn excerpts_cut_at_characters() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("ありがとう", 4), "あ…");
    }
}
