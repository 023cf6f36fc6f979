//! The vision reviewer's client: one chat request with images, its reply
//! constrained by a JSON schema, checked ([`check`]) and sent back with its
//! problems a bounded number of times, like the screenplay writer's replies
//! (`crate::write`). The HTTP layer (timeouts, the host rule, error classes)
//! is [`crate::exec::http`]'s; the protocol names, the URL rule and the
//! `json_schema` refusal test are the writer's ([`crate::write::client`]).
//!
//! What the wire formats were checked against:
//! - Ollama, docs/api.md "Chat request (with images)": a message carries
//!   `images`, "an array, with the individual images encoded in Base64"
//!   (bare base64, no `data:` prefix) beside its `content` string; `format`
//!   takes the JSON schema and `options.num_predict` bounds the reply, as
//!   for the writer.
//! - OpenAI, API reference "Create chat completion", user message content
//!   parts: `content` is an array of `{"type": "text", "text": …}` and
//!   `{"type": "image_url", "image_url": {"url": …}}`, the URL being a
//!   `data:image/png;base64,…` URI for inline images; `response_format:
//!   {type: json_schema, json_schema: {name, strict, schema}}`.
//! - llama.cpp's server (tools/server/README.md, "multimodal" — started with
//!   `--mmproj`; tools/server/utils.hpp `oaicompat_chat_params_parse`):
//!   the same `image_url` parts, a `data:` URL's base64 decoded in place
//!   (remote URLs only when the server allows them, so studio always sends
//!   the bytes); Ollama's `/v1` and vLLM take the same shape.
//!   llama-cpp-python's `json_object` form of the schema is the writer's
//!   fallback, reused here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::engines::ServiceKind;
use crate::exec::http::{HttpError, Service, excerpt};
use crate::project::model::Executor;
use crate::review::{Framing, Scores};
use crate::write::client::{CallError, Protocol, refuses_json_schema};

/// The longest reply content read (a review is a few hundred bytes).
pub const MAX_REPLY_BYTES: usize = 16 * 1024;
/// The longest `notes` kept, in characters.
pub const MAX_NOTES_CHARS: usize = 600;
/// The most tokens a review may take (the executor's `max_tokens` wins).
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// The largest image sent (a candidate is a PNG of about a megapixel).
pub const MAX_IMAGE_BYTES: usize = 32 << 20;

/// One chat message: text, and the images a user message shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: &'static str,
    pub text: String,
    /// PNG files' bytes, base64-encoded.
    pub images: Vec<String>,
}

impl Message {
    pub fn text(role: &'static str, text: impl Into<String>) -> Message {
        Message {
            role,
            text: text.into(),
            images: Vec::new(),
        }
    }

    /// A user message with PNG images.
    pub fn with_images(text: impl Into<String>, pngs: &[Vec<u8>]) -> Message {
        let b64 = base64::engine::general_purpose::STANDARD;
        Message {
            role: "user",
            text: text.into(),
            images: pngs.iter().map(|p| b64.encode(p)).collect(),
        }
    }

    /// The message as `protocol` takes it.
    fn wire(&self, protocol: Protocol) -> Value {
        match protocol {
            Protocol::Ollama if self.images.is_empty() => json!({"role": self.role, "content": self.text}),
            Protocol::Ollama => json!({"role": self.role, "content": self.text, "images": self.images}),
            Protocol::OpenaiChat if self.images.is_empty() => json!({"role": self.role, "content": self.text}),
            Protocol::OpenaiChat => {
                let mut parts = vec![json!({"type": "text", "text": self.text})];
                parts.extend(
                    self.images.iter().map(
                        |b| json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b}")}}),
                    ),
                );
                json!({"role": self.role, "content": parts})
            }
        }
    }
}

/// A vision model behind an `ollama` or `openai_chat` executor.
#[derive(Debug, Clone)]
pub struct Vision {
    service: Arc<Service>,
    pub protocol: Protocol,
    pub model: String,
    url: String,
    api_key: Option<String>,
    max_tokens: u32,
    json_object: Arc<AtomicBool>,
}

impl Vision {
    /// The client for executor `e`, through `service` (the build's client of
    /// that host).
    pub fn new(e: &Executor, service: Arc<Service>) -> Result<Vision, HttpError> {
        let protocol = match e.kind {
            ServiceKind::Ollama => Protocol::Ollama,
            ServiceKind::OpenaiChat => Protocol::OpenaiChat,
            other => {
                return Err(HttpError::Config(format!(
                    "executor `{}` is `{}`, not a vision model's (`ollama` or `openai_chat`)",
                    e.id,
                    other.as_str()
                )));
            }
        };
        let model = e
            .model
            .clone()
            .ok_or_else(|| HttpError::Config(format!("executor `{}` names no `model:`", e.id)))?;
        let api_key = match e.api_key_env.as_ref().or(e.token_env.as_ref()) {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                HttpError::Config(format!(
                    "executor `{}` reads its API key from ${var}, which is not set",
                    e.id
                ))
            })?),
            None => None,
        };
        let path = match protocol {
            Protocol::Ollama => "/api/chat",
            Protocol::OpenaiChat if service.base.ends_with("/v1") => "/chat/completions",
            Protocol::OpenaiChat => "/v1/chat/completions",
        };
        let url = service.url(path)?;
        Ok(Vision {
            service,
            protocol,
            model,
            url,
            api_key,
            max_tokens: e.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            json_object: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request body: `messages`, the reply constrained by `schema`,
    /// greedy decoding (a review should not depend on a dice roll).
    pub fn body(&self, messages: &[Message], schema: &Value, json_object: bool) -> Value {
        let messages: Vec<Value> = messages.iter().map(|m| m.wire(self.protocol)).collect();
        match self.protocol {
            Protocol::Ollama => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "format": schema,
                "options": {"seed": 0, "temperature": 0.0, "num_predict": self.max_tokens},
            }),
            Protocol::OpenaiChat => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "seed": 0,
                "temperature": 0.0,
                "max_tokens": self.max_tokens,
                "response_format": if json_object {
                    json!({"type": "json_object", "schema": schema})
                } else {
                    json!({"type": "json_schema", "json_schema": {"name": "review", "strict": true, "schema": schema}})
                },
            }),
        }
    }

    /// One request; the reply's content text. A server that refuses
    /// `json_schema` gets the `json_object` form from then on.
    pub async fn chat(&self, messages: &[Message], schema: &Value) -> Result<String, CallError> {
        let json_object = self.json_object.load(Ordering::SeqCst);
        let answer = self.post(&self.body(messages, schema, json_object)).await?;
        let answer = if self.protocol == Protocol::OpenaiChat
            && !json_object
            && refuses_json_schema(answer.status, &String::from_utf8_lossy(&answer.body))
        {
            self.json_object.store(true, Ordering::SeqCst);
            self.post(&self.body(messages, schema, true)).await?
        } else {
            answer
        };
        self.service.check_status(&self.url, &answer)?;
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| self.protocol_error(format!("the response is not JSON ({e})")))?;
        self.content(&v)
    }

    async fn post(&self, body: &Value) -> Result<crate::exec::http::Answer, HttpError> {
        self.service.post_json(&self.url, body, self.api_key.as_deref()).await
    }

    fn protocol_error(&self, reason: String) -> CallError {
        CallError::Http(HttpError::Protocol {
            url: self.url.clone(),
            reason,
        })
    }

    /// The assistant message's content, from either protocol's reply.
    fn content(&self, v: &Value) -> Result<String, CallError> {
        let bad = |what: &str| self.protocol_error(format!("{what} in the response: {}", excerpt(&v.to_string(), 300)));
        let truncated = || CallError::Truncated {
            url: self.url.clone(),
            max_tokens: self.max_tokens,
        };
        let content = match self.protocol {
            Protocol::Ollama => {
                if let Some(err) = v["error"].as_str() {
                    return Err(bad(&format!("error `{err}`")));
                }
                if v["done_reason"] == "length" {
                    return Err(truncated());
                }
                v["message"]["content"]
                    .as_str()
                    .ok_or_else(|| bad("no message.content"))?
            }
            Protocol::OpenaiChat => {
                if v["choices"][0]["finish_reason"] == "length" {
                    return Err(truncated());
                }
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .ok_or_else(|| bad("no choices[0].message.content"))?
            }
        };
        Ok(content.to_string())
    }
}

/// The JSON Schema of a review. Every property is required and no other
/// is allowed (OpenAI's strict mode); scores are bounded numbers (Ollama and
/// llama.cpp turn bounds into their grammar where they can; [`check`]
/// holds the line either way).
pub fn schema(categories: &[&str]) -> Value {
    let score = || json!({"type": "number", "minimum": 0, "maximum": 1});
    let category = if categories.is_empty() {
        json!({"type": "string"})
    } else {
        json!({"type": "string", "enum": categories})
    };
    let framings: Vec<&str> = Framing::ALL.iter().map(|f| f.as_str()).collect();
    json!({
        "type": "object",
        "properties": {
            "character_match": score(),
            "clarity": score(),
            "training_value": score(),
            "framing": {"type": "string", "enum": framings},
            "rejection_categories": {"type": "array", "items": category, "maxItems": categories.len()},
            "notes": {"type": "string", "maxLength": MAX_NOTES_CHARS},
        },
        "required": ["character_match", "clarity", "training_value", "framing", "rejection_categories", "notes"],
        "additionalProperties": false,
    })
}

use crate::review::SCORE_FIELDS as FIELDS;

/// A reply's content as checked [`Scores`], or every problem with it, in
/// words the model can act on. Nothing in it is trusted: its size, its
/// form, every number's range, the closed lists, the length of the notes.
pub fn check(content: &str, categories: &[&str]) -> Result<Scores, Vec<String>> {
    if content.len() > MAX_REPLY_BYTES {
        return Err(vec![format!(
            "the reply is {} bytes; a review is one small JSON object (at most {MAX_REPLY_BYTES} bytes)",
            content.len()
        )]);
    }
    let v: Value = serde_json::from_str(content.trim()).map_err(|e| {
        vec![format!(
            "the reply is not valid JSON ({e}); reply with one JSON object only"
        )]
    })?;
    let Some(o) = v.as_object() else {
        return Err(vec!["the reply must be one JSON object".into()]);
    };
    let mut problems = Vec::new();
    for k in o.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        problems.push(format!(
            "unknown field `{}`; the fields are {}",
            excerpt(k, 40),
            FIELDS.join(", ")
        ));
    }
    let mut score = |name: &str| -> f64 {
        match o.get(name).map(Value::as_f64) {
            Some(Some(x)) if (0.0..=1.0).contains(&x) => x,
            Some(Some(x)) => {
                problems.push(format!("`{name}` is {x}; it must be between 0 and 1"));
                0.0
            }
            Some(None) => {
                problems.push(format!("`{name}` must be a number between 0 and 1"));
                0.0
            }
            None => {
                problems.push(format!("`{name}` is missing"));
                0.0
            }
        }
    };
    let (character_match, clarity, training_value) =
        (score("character_match"), score("clarity"), score("training_value"));
    let framings: Vec<&str> = Framing::ALL.iter().map(|f| f.as_str()).collect();
    let framing = match o.get("framing").and_then(Value::as_str) {
        Some(s) => Framing::ALL.into_iter().find(|f| f.as_str() == s).or_else(|| {
            problems.push(format!(
                "`framing` is `{}`; it must be one of {}",
                excerpt(s, 40),
                framings.join(", ")
            ));
            None
        }),
        None => {
            problems.push(format!("`framing` must be one of {}", framings.join(", ")));
            None
        }
    };
    let mut rejection_categories: Vec<String> = Vec::new();
    match o.get("rejection_categories").and_then(Value::as_array) {
        Some(list) if list.len() > categories.len() => problems.push(format!(
            "`rejection_categories` has {} entries; there are only {} categories: {}",
            list.len(),
            categories.len(),
            categories.join(", ")
        )),
        Some(list) => {
            for c in list {
                match c.as_str() {
                    Some(s) if categories.contains(&s) => {
                        if rejection_categories.iter().any(|r| r == s) {
                            problems.push(format!("`rejection_categories` names `{s}` twice"));
                        } else {
                            rejection_categories.push(s.to_string());
                        }
                    }
                    _ => problems.push(format!(
                        "`rejection_categories` has `{}`; each must be one of {}",
                        excerpt(&c.as_str().map_or_else(|| c.to_string(), str::to_string), 40),
                        if categories.is_empty() {
                            "(none: leave the list empty)".to_string()
                        } else {
                            categories.join(", ")
                        }
                    )),
                }
            }
        }
        None => problems.push("`rejection_categories` must be a list (empty when nothing is wrong)".into()),
    }
    let notes = match o.get("notes").and_then(Value::as_str) {
        Some(n) if n.chars().count() > MAX_NOTES_CHARS => {
            problems.push(format!(
                "`notes` is {} characters; at most {MAX_NOTES_CHARS}",
                n.chars().count()
            ));
            String::new()
        }
        // Kept as text a person reads: one line, no control characters.
        Some(n) => n.chars().map(|c| if c.is_control() { ' ' } else { c }).collect(),
        None => {
            problems.push("`notes` must be a string (empty when there is nothing to say)".into());
            String::new()
        }
    };
    match (problems.is_empty(), framing) {
        (true, Some(framing)) => Ok(Scores {
            character_match,
            clarity,
            training_value,
            framing,
            rejection_categories,
            notes: notes.trim().to_string(),
        }),
        _ => Err(problems),
    }
}

/// Why a review got no scores.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{tries} replies, repairs included, had problems; the last one's: {}", problems.join("; "))]
    Invalid {
        tries: u32,
        problems: Vec<String>,
        reply: String,
    },
}

impl ReviewError {
    /// Worth another try later or on another host: what the HTTP layer says.
    pub fn transient(&self) -> bool {
        match self {
            ReviewError::Call(e) => e.transient(),
            ReviewError::Invalid { .. } => false,
        }
    }
}

/// The text sent back with an invalid reply (rules/prompts/repair.j2, the
/// writer's: the problems as a list).
pub fn repair_text(problems: &[String]) -> String {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(
        include_str!("../../../rules/prompts/repair.j2"),
        json!({"problems": problems}),
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|_| {
        format!(
            "Your reply had these problems:\n- {}\nReply again with the whole JSON object, fixed.",
            problems.join("\n- ")
        )
    })
}

/// Ask `vision` to review `pngs` with `prompt`; an invalid reply is sent
/// back with its problems up to `retries` times. `tries` counts requests.
pub async fn review(
    vision: &Vision,
    prompt: &str,
    pngs: &[Vec<u8>],
    categories: &[&str],
    retries: u32,
) -> Result<(Scores, u32), ReviewError> {
    let schema = schema(categories);
    let mut messages = vec![Message::with_images(prompt, pngs)];
    let mut tries = 0;
    loop {
        tries += 1;
        let reply = vision.chat(&messages, &schema).await?;
        match check(&reply, categories) {
            Ok(scores) => return Ok((scores, tries)),
            Err(problems) if tries > retries => {
                return Err(ReviewError::Invalid {
                    tries,
                    problems,
                    reply: excerpt(&reply, 300),
                });
            }
            Err(problems) => {
                messages.push(Message::text("assistant", excerpt(&reply, MAX_REPLY_BYTES)));
                messages.push(Message::text("user", repair_text(&problems)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATS: [&str; 3] = ["off_model", "bad_hands", "blurry"];

    fn good() -> Value {
        json!({"character_match": 0.9, "clarity": 0.8, "training_value": 0.7, "framing": "full_body",
               "rejection_categories": ["bad_hands"], "notes": "left hand\nhas six fingers"})
    }

    #[test]
    fn a_good_reply_is_scores() {
        let s = check(&good().to_string(), &CATS).unwrap();
        assert_eq!(s.framing, Framing::FullBody);
        assert_eq!(s.rejection_categories, ["bad_hands"]);
        assert_eq!(s.notes, "left hand has six fingers");
        assert_eq!(s.overall(), 0.7);
    }

    #[test]
    fn every_problem_is_named() {
        let mut v = good();
        v["clarity"] = json!(1.5);
        v["training_value"] = json!("high");
        v["framing"] = json!("portrait");
        v["rejection_categories"] = json!(["ugly", "bad_hands", "bad_hands"]);
        v["extra"] = json!(1);
        let problems = check(&v.to_string(), &CATS).unwrap_err();
        let all = problems.join("\n");
        for want in [
            "`clarity` is 1.5",
            "`training_value` must be a number",
            "`framing` is `portrait`",
            "`ugly`",
            "twice",
            "unknown field `extra`",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        assert!(check("{\"character_match\": 0.9", &CATS).unwrap_err()[0].contains("not valid JSON"));
        assert!(check("[1]", &CATS).is_err());
        let mut v = good();
        v["notes"] = json!("x".repeat(MAX_NOTES_CHARS + 1));
        assert!(check(&v.to_string(), &CATS).unwrap_err()[0].contains("at most"));
        let mut v = good();
        v["character_match"] = json!(-0.01);
        assert!(check(&v.to_string(), &CATS).is_err());
        assert!(check(&" ".repeat(MAX_REPLY_BYTES + 1), &CATS).unwrap_err()[0].contains("bytes"));
        // A category outside an empty list.
        assert!(check(&good().to_string(), &[]).is_err());
    }

    #[test]
    fn the_schema_closes_every_list() {
        let s = schema(&CATS);
        assert_eq!(s["properties"]["rejection_categories"]["items"]["enum"], json!(CATS));
        assert_eq!(
            s["properties"]["framing"]["enum"],
            json!(["full_body", "upper_body", "face"])
        );
        assert_eq!(s["required"].as_array().unwrap().len(), FIELDS.len());
        assert_eq!(s["additionalProperties"], false);
    }

    #[test]
    fn images_travel_as_each_protocol_takes_them() {
        let m = Message::with_images("look", &[vec![0x89, b'P', b'N', b'G']]);
        let o = m.wire(Protocol::Ollama);
        assert_eq!(o["content"], "look");
        assert_eq!(o["images"], json!(["iVBORw=="]));
        let a = m.wire(Protocol::OpenaiChat);
        assert_eq!(a["content"][0], json!({"type": "text", "text": "look"}));
        assert_eq!(a["content"][1]["image_url"]["url"], "data:image/png;base64,iVBORw==");
        let t = Message::text("assistant", "{}");
        assert_eq!(
            t.wire(Protocol::OpenaiChat),
            json!({"role": "assistant", "content": "{}"})
        );
        assert!(t.wire(Protocol::Ollama).get("images").is_none());
    }

    #[test]
    fn repairs_list_the_problems() {
        let t = repair_text(&["`clarity` is 2".into()]);
        assert!(t.contains("- `clarity` is 2"), "{t}");
    }
}
