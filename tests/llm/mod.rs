//! A fake LLM server for the write tests: HTTP/1.1 on 127.0.0.1, one thread
//! per connection, speaking Ollama's `/api/chat` or the OpenAI-compatible
//! `/v1/chat/completions` exactly. It checks every request's shape (path,
//! method, model, schema, seed, `stream: false`, Authorization), records the
//! requests, and answers what the test's script says, in the real response
//! format of its protocol. It checks the reply bound (`max_tokens`,
//! Ollama's `options.num_predict`), can answer with a cut-off reply
//! (`finish_reason`/`done_reason` `length`), and can refuse
//! `response_format: json_schema` the way llama-cpp-python's server does.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Ollama,
    Openai,
}

/// What the server expects in every request.
#[derive(Debug, Clone)]
pub struct Expect {
    pub model: String,
    /// The seeds requests may carry.
    pub seeds: Vec<u64>,
    /// `Authorization: Bearer KEY` (OpenAI only).
    pub key: Option<String>,
    /// The reply bound every request must carry; `None`: each call's
    /// documented default ([`default_max_tokens`]).
    pub max_tokens: Option<u64>,
    /// Be llama-cpp-python's server: refuse `response_format.type:
    /// json_schema` as it does, and take `{type: json_object, schema}`.
    pub llama_cpp_python: bool,
}

/// studio's `max_tokens` per call when the executor sets none (README).
pub fn default_max_tokens(kind: &str) -> u64 {
    match kind {
        "scenes" => 4096,
        "shots" | "timeline" => 3072,
        "dialogue" | "dub" => 2048,
        other => panic!("no call `{other}`"),
    }
}

/// llama-cpp-python's answer to `response_format: {type: json_schema}`:
/// FastAPI's request validation fails (`ChatCompletionRequestResponseFormat.type`
/// is `Literal["text", "json_object"]`, llama_cpp/llama_types.py), and its
/// `RouteErrorHandler` (llama_cpp/server/errors.py) wraps any exception it
/// has no pattern for as HTTP 500, `{"error": ErrorResponse}` with
/// `str(exc)` (FastAPI's `ValidationException.__str__`) as the message.
pub fn llama_cpp_python_refusal() -> (u16, String) {
    let message = "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), \
                   'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \
                   \"'text' or 'json_object'\"}}\n  Endpoint: /v1/chat/completions";
    let body = json!({"error": {"message": message, "type": "internal_server_error", "param": null, "code": null}});
    (500, body.to_string())
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Request {
    /// What the schema asks for: `scenes`, `shots`, `dialogue` or `timeline`.
    pub fn kind(&self, api: Api) -> &'static str {
        let props = &self.schema(api)["properties"];
        if props.get("scenes").is_some() {
            "scenes"
        } else if props.get("dub").is_some() {
            "dub"
        } else if props.get("summary").is_some() {
            "timeline"
        } else if props["shots"]["items"]["properties"].get("type").is_some() {
            "shots"
        } else {
            "dialogue"
        }
    }

    pub fn schema(&self, api: Api) -> &Value {
        let rf = &self.body["response_format"];
        match api {
            Api::Ollama => &self.body["format"],
            Api::Openai if rf["type"] == "json_object" => &rf["schema"],
            Api::Openai => &rf["json_schema"]["schema"],
        }
    }

    /// The reply bound: `max_tokens`, or Ollama's `options.num_predict`.
    pub fn max_tokens(&self, api: Api) -> Option<u64> {
        match api {
            Api::Ollama => self.body["options"]["num_predict"].as_u64(),
            Api::Openai => self.body["max_tokens"].as_u64(),
        }
    }

    /// `response_format.type` (OpenAI).
    pub fn format_type(&self) -> &str {
        self.body["response_format"]["type"].as_str().unwrap_or("")
    }

    pub fn messages(&self) -> &Vec<Value> {
        self.body["messages"].as_array().expect("messages")
    }

    /// The last message's text.
    pub fn last(&self) -> &str {
        self.messages().last().and_then(|m| m["content"].as_str()).unwrap_or("")
    }

    /// The first user message (the prompt).
    pub fn prompt(&self) -> &str {
        self.messages()[1]["content"].as_str().unwrap_or("")
    }

    /// Whether this is a repair turn (the model's earlier reply sent back).
    pub fn is_repair(&self) -> bool {
        self.messages().len() > 2
    }
}

/// What to answer.
pub enum Answer {
    /// A chat reply whose content is this text.
    Content(String),
    /// An HTTP error status with a body.
    Status(u16, String),
    /// Sleep, then answer (the client has given up by then).
    Hang(Duration),
    /// A reply cut off at the bound: this partial content, with
    /// `finish_reason`/`done_reason` `length` and as many tokens as asked.
    Truncated(String),
    /// `307 Temporary Redirect` to this URL.
    Redirect(String),
}

type Script = dyn Fn(&Request, usize) -> Answer + Send + Sync;

pub struct Fake {
    pub url: String,
    pub api: Api,
    requests: Arc<Mutex<Vec<Request>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    /// Start a server; `script(request, index)` decides each answer.
    pub fn start(api: Api, expect: Expect, script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static) -> Fake {
        Fake::start_on("127.0.0.1", api, expect, script)
    }

    /// [`Fake::start`] on another loopback address, e.g. `127.0.0.2`.
    pub fn start_on(
        ip: &str,
        api: Api,
        expect: Expect,
        script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
    ) -> Fake {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (r, p) = (requests.clone(), problems.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (r, p, script, expect) = (r.clone(), p.clone(), script.clone(), expect.clone());
                std::thread::spawn(move || serve(stream, api, &expect, &r, &p, &*script));
            }
        });
        Fake {
            url,
            api,
            requests,
            problems,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Every request had the protocol's exact shape.
    pub fn assert_shapes(&self) {
        let p = self.problems.lock().unwrap();
        assert!(p.is_empty(), "bad requests:\n{}", p.join("\n"));
    }
}

fn serve(
    stream: TcpStream,
    api: Api,
    expect: &Expect,
    requests: &Mutex<Vec<Request>>,
    problems: &Mutex<Vec<String>>,
    script: &Script,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let req = Request {
        method,
        path,
        headers,
        body,
    };
    let refused = api == Api::Openai && expect.llama_cpp_python && req.format_type() == "json_schema";
    let bad = if refused { Vec::new() } else { check(&req, api, expect) };
    let index = {
        let mut r = requests.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    let mut location = None;
    let (status, text) = if refused {
        llama_cpp_python_refusal()
    } else if !bad.is_empty() {
        let msg = format!("request {index}: {}", bad.join("; "));
        problems.lock().unwrap().push(msg.clone());
        (400, json!({"error": msg}).to_string())
    } else {
        match script(&req, index) {
            Answer::Content(content) => (200, reply(api, &expect.model, &content, None)),
            Answer::Status(s, b) => (s, b),
            Answer::Hang(d) => {
                std::thread::sleep(d);
                (200, reply(api, &expect.model, "{}", None))
            }
            Answer::Truncated(content) => (200, reply(api, &expect.model, &content, req.max_tokens(api))),
            Answer::Redirect(to) => {
                location = Some(to);
                (307, String::new())
            }
        }
    };
    let location = location.map_or(String::new(), |to| format!("Location: {to}\r\n"));
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
}

/// The protocol's exact request shape; each mismatch is one problem.
fn check(r: &Request, api: Api, e: &Expect) -> Vec<String> {
    let mut bad = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            bad.push(what.to_string());
        }
    };
    let b = &r.body;
    want(r.method == "POST", "method is not POST");
    want(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"),
        "no Content-Type: application/json",
    );
    want(b["model"] == e.model, "wrong model");
    want(b["stream"] == json!(false), "stream is not false");
    let msgs = b["messages"].as_array();
    want(
        msgs.is_some_and(|m| {
            m.len() >= 2
                && m[0]["role"] == "system"
                && m.iter().all(|x| x["content"].is_string() && x["role"].is_string())
                && m.last().unwrap()["role"] == "user"
        }),
        "messages are not system, …, user",
    );
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    };
    let bound = match e.max_tokens {
        Some(n) => n,
        None => default_max_tokens(r.kind(api)),
    };
    match api {
        Api::Ollama => {
            want(r.path == "/api/chat", "path is not /api/chat");
            want(b["format"]["type"] == "object", "format is not a JSON schema");
            want(e.seeds.iter().any(|s| b["options"]["seed"] == json!(s)), "options.seed");
            want(b["options"]["temperature"].is_number(), "options.temperature");
            want(b["options"]["num_ctx"].is_u64(), "options.num_ctx");
            want(
                b["options"]["num_predict"] == json!(bound),
                &format!("options.num_predict is {}, not {bound}", b["options"]["num_predict"]),
            );
            want(
                keys(&b["options"]) == ["num_ctx", "num_predict", "seed", "temperature"],
                "extra or missing options",
            );
            want(keys(b).len() == 5, "extra or missing top-level keys");
        }
        Api::Openai => {
            want(r.path == "/v1/chat/completions", "path is not /v1/chat/completions");
            let rf = &b["response_format"];
            if e.llama_cpp_python {
                // llama-cpp-python's form: the schema beside `type`.
                want(rf["type"] == "json_object", "response_format.type is not json_object");
                want(rf["schema"]["type"] == "object", "response_format.schema");
                want(keys(rf) == ["schema", "type"], "extra or missing response_format keys");
            } else {
                want(rf["type"] == "json_schema", "response_format.type");
                want(
                    rf["json_schema"]["name"].is_string(),
                    "response_format.json_schema.name",
                );
                want(
                    rf["json_schema"]["schema"]["type"] == "object",
                    "response_format.json_schema.schema",
                );
            }
            want(
                b["max_tokens"] == json!(bound),
                &format!("max_tokens is {}, not {bound}", b["max_tokens"]),
            );
            want(
                keys(b)
                    == [
                        "max_tokens",
                        "messages",
                        "model",
                        "response_format",
                        "seed",
                        "stream",
                        "temperature",
                    ],
                "extra or missing top-level keys",
            );
            want(e.seeds.iter().any(|s| b["seed"] == json!(s)), "seed");
            want(b["temperature"].is_number(), "temperature");
            let auth = r
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str());
            let wanted = e.key.as_ref().map(|k| format!("Bearer {k}"));
            want(auth == wanted.as_deref(), "Authorization header");
        }
    }
    bad
}

/// A reply in the protocol's real response format; `cut_at`: generation
/// stopped at this bound (`length`) instead of finishing (`stop`).
fn reply(api: Api, model: &str, content: &str, cut_at: Option<u64>) -> String {
    let (reason, tokens) = match cut_at {
        Some(n) => ("length", n),
        None => ("stop", 100),
    };
    match api {
        Api::Ollama => json!({
            "model": model,
            "created_at": "2026-01-01T00:00:00.000000Z",
            "message": {"role": "assistant", "content": content},
            "done": true,
            "done_reason": reason,
            "total_duration": 2_500_000_000u64,
            "load_duration": 10_000_000u64,
            "prompt_eval_count": 400,
            "prompt_eval_duration": 200_000_000u64,
            "eval_count": tokens,
            "eval_duration": 2_000_000_000u64,
        }),
        Api::Openai => json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_767_225_600,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reason}],
            "usage": {"prompt_tokens": 400, "completion_tokens": tokens, "total_tokens": 400 + tokens},
        }),
    }
    .to_string()
}

/// Good replies for the tiny project (characters `kai` and `mio`).
pub mod good {
    use super::*;

    pub fn scenes() -> String {
        let scene = |n: u32, mood: &str| {
            json!({
                "id": format!("s0{n}"), "title": format!("Scene {n}"),
                "description": format!("Kai and Mio wait, part {n}: the bus is late."),
                "location": "a bus stop", "time_of_day": "evening", "mood": mood,
                "target_duration": 6, "transition": if n == 1 { "cut" } else { "fade" },
                "state": [
                    {"character": "kai", "clothing": "yellow raincoat", "injuries": "none", "emotional_state": "doubtful", "energy": 0.5},
                    {"character": "mio", "clothing": "blue umbrella", "injuries": "a scraped knee", "emotional_state": "sure: \"100%\"", "energy": 0.8},
                ],
            })
        };
        json!({"scenes": [scene(1, "calm"), scene(2, "tense"), scene(3, "joyful")]}).to_string()
    }

    /// Two shots; `tag` (the scene id) goes into the text.
    pub fn shots(tag: &str, speaker: &str) -> String {
        json!({"shots": [
            {"id": "sh01", "type": "wide", "angle": "eye_level", "motion": "static hold, rain falling",
             "action": format!("Rain at the stop ({tag})."), "characters": [{"id": "kai", "position": "left"}, {"id": "mio", "position": "right"}],
             "duration": 3, "dialogue": [{"speaker": speaker, "text": format!("Is it coming? ({tag})")}]},
            {"id": "sh02", "type": "close_up", "angle": "low", "motion": "slow push in",
             "action": "Mio smiles.", "characters": [{"id": "mio", "position": "center"}],
             "duration": 2.5, "dialogue": []},
        ]})
        .to_string()
    }

    pub fn timeline() -> String {
        json!({"summary": "The bus came late; Kai learned to trust Mio.", "characters": [
            {"character": "kai", "personality_shifts": ["trusts Mio"], "trauma_events": [], "skills_learned": ["patience"], "emotional_state": "relieved"},
            {"character": "mio", "personality_shifts": [], "trauma_events": ["the scraped knee"], "skills_learned": [], "emotional_state": "smug"},
        ]})
        .to_string()
    }

    /// New dialogue for every shot id the schema allows.
    pub fn dialogue(req: &Request, api: Api) -> String {
        let ids = req.schema(api)["properties"]["shots"]["items"]["properties"]["id"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let shots: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "dialogue": [{"speaker": "mio", "text": format!("New line: {}", id.as_str().unwrap())}]}))
            .collect();
        json!({"shots": shots}).to_string()
    }

    /// A Japanese line for each line the schema asks for (its count is the
    /// schema's `minItems`), numbered.
    pub fn dub(req: &Request, api: Api) -> String {
        let n = req.schema(api)["properties"]["dub"]["minItems"].as_u64().unwrap_or(0);
        let lines: Vec<String> = (1..=n).map(|i| format!("{i}番目の台詞だよ。")).collect();
        json!({"dub": lines}).to_string()
    }

    /// The scene id a shots prompt is about ("… break scene s02 …").
    pub fn scene_of(req: &Request) -> String {
        let p = req.prompt();
        p.split("break scene ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("s??")
            .to_string()
    }

    /// A good answer to any request.
    pub fn answer(req: &Request, api: Api) -> Answer {
        Answer::Content(match req.kind(api) {
            "scenes" => scenes(),
            "shots" => shots(&scene_of(req), "kai"),
            "timeline" => timeline(),
            "dub" => dub(req, api),
            _ => dialogue(req, api),
        })
    }
}
