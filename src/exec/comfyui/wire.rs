//! ComfyUI's messages and replies, as its server sends them, read into
//! checked types: websocket events, `/history/{id}` entries (their output
//! files), `/prompt`'s `node_errors` and `/queue`.
//!
//! Written from ComfyUI v0.8.0 (`pollockjj/ComfyUI` at commit
//! 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce): `server.py` (`send_json`
//! frames every event as `{"type", "data"}`; `post_prompt` answers
//! `{prompt_id, number, node_errors}` or a 400 `{error, node_errors}`;
//! `get_queue` lists items `[number, prompt_id, prompt, extra_data,
//! outputs]`), `execution.py` (`execution_start`, `execution_cached`,
//! `executing`, `executed`, `execution_success`, `execution_error` with
//! `exception_type` from `full_type_name`, `execution_interrupted`;
//! `task_done` stores `{prompt, outputs, status: {status_str, completed,
//! messages}, meta}`) and `main.py` (`progress` `{value, max, prompt_id,
//! node}`; `executing` with `node: null` once the history entry exists).
//! Nothing here is trusted: every string that names a file is checked
//! before it is sent back in a query, and sizes are bounded.

use serde_json::Value;

/// Most output files one prompt may return.
pub const MAX_OUTPUT_FILES: usize = 256;
/// Longest file name or subfolder accepted from the server.
const MAX_NAME: usize = 255;

/// What a websocket message says about our prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `executing` a node; `None`: the prompt is finished and in the history.
    Executing(Option<String>),
    /// `execution_cached`: nodes answered from ComfyUI's own cache.
    Cached(Vec<String>),
    /// `progress` of a node: `value` of `max`.
    Progress {
        node: Option<String>,
        value: f64,
        max: f64,
    },
    /// `executed`: a node wrote output (its UI output is read from the history).
    Executed(String),
    /// `execution_success`: every node ran (the history entry may not be there yet).
    Success,
    Error(Failure),
    Interrupted {
        node: String,
    },
}

/// An `execution_error` of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub node: String,
    pub class_type: String,
    pub exception_type: String,
    pub message: String,
}

impl Failure {
    /// Out of memory on the GPU (or in RAM): `torch.OutOfMemoryError`
    /// (`torch.cuda.OutOfMemoryError` reports itself as such), or a message
    /// that says so.
    pub fn out_of_memory(&self) -> bool {
        self.exception_type.contains("OutOfMemoryError")
            || self.exception_type.ends_with("MemoryError")
            || self.message.to_ascii_lowercase().contains("out of memory")
    }

    fn from_data(d: &Value) -> Failure {
        Failure {
            node: text(&d["node_id"]),
            class_type: text(&d["node_type"]),
            exception_type: text(&d["exception_type"]),
            message: crate::exec::http::excerpt(text(&d["exception_message"]).trim(), 400),
        }
    }
}

/// A short string of a JSON value (ids arrive as strings; numbers are tolerated).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => crate::exec::http::excerpt(s, 200),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Read one text frame; `None` when it is not about `prompt_id` or not an
/// event studio follows (status, previews, other clients' prompts).
pub fn event(frame: &str, prompt_id: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(frame).ok()?;
    let data = &v["data"];
    if data["prompt_id"].as_str() != Some(prompt_id) {
        return None;
    }
    Some(match v["type"].as_str()? {
        "executing" => Event::Executing(data["node"].as_str().map(str::to_string)),
        "execution_cached" => Event::Cached(
            data["nodes"]
                .as_array()
                .map(|a| a.iter().map(text).take(10_000).collect())
                .unwrap_or_default(),
        ),
        "progress" => Event::Progress {
            node: data["node"].as_str().map(str::to_string),
            value: data["value"].as_f64()?,
            max: data["max"].as_f64()?,
        },
        "executed" => Event::Executed(text(&data["node"])),
        "execution_success" => Event::Success,
        "execution_error" => Event::Error(Failure::from_data(data)),
        "execution_interrupted" => Event::Interrupted {
            node: text(&data["node_id"]),
        },
        _ => return None,
    })
}

/// A file a prompt wrote, as `/history` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// The output node.
    pub node: String,
    /// The key of its output map (`images`, `gifs`, `videos`, `audio`, …).
    pub key: String,
    pub filename: String,
    pub subfolder: String,
    /// `output`, `temp` or `input`.
    pub kind: String,
}

impl OutputRef {
    /// The file's extension, lower case (checked by [`history`]).
    pub fn extension(&self) -> String {
        self.filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// A finished prompt's history entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `status.status_str == "success"`.
    pub success: bool,
    /// The failure its status messages record, if it failed.
    pub failure: Option<Failure>,
    /// The node an `execution_interrupted` stopped at, if one did.
    pub interrupted: Option<String>,
    /// Whether its `execution_cached` message named any node (answered,
    /// at least in part, from ComfyUI's own cache).
    pub cached: bool,
    pub outputs: Vec<OutputRef>,
}

/// A file name the server named: one path component, no `..`, no
/// separators, no control characters.
fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.chars().any(char::is_control)
}

/// A subfolder: empty, or `/`-separated safe names.
fn safe_subfolder(s: &str) -> bool {
    s.is_empty() || (s.len() <= MAX_NAME && s.split('/').all(safe_name))
}

/// Read `GET /history/{prompt_id}`'s body: `Ok(None)` while the prompt is
/// not finished (ComfyUI answers `{}` until `task_done`).
pub fn history(body: &[u8], prompt_id: &str) -> Result<Option<Entry>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("history is not JSON ({e})"))?;
    let map = v.as_object().ok_or("history is not a JSON object")?;
    let Some(entry) = map.get(prompt_id) else {
        return Ok(None);
    };
    let status = &entry["status"];
    let success = status["status_str"].as_str() == Some("success");
    let mut failure = None;
    let mut interrupted = None;
    let mut cached = false;
    for m in status["messages"].as_array().into_iter().flatten() {
        match m[0].as_str() {
            Some("execution_error") => failure = Some(Failure::from_data(&m[1])),
            Some("execution_cached") => cached |= m[1]["nodes"].as_array().is_some_and(|n| !n.is_empty()),
            Some("execution_interrupted") => interrupted = Some(text(&m[1]["node_id"])),
            _ => {}
        }
    }
    let mut outputs = Vec::new();
    let nodes = entry["outputs"]
        .as_object()
        .ok_or("history entry has no `outputs` map")?;
    for (node, lists) in nodes {
        let Some(lists) = lists.as_object() else { continue };
        // Every list of files, whatever its key: core SaveImage and SaveVideo
        // use `images` (a video with `animated: [true]`), VideoHelperSuite
        // `gifs`, others `videos` or `audio`. Lists of other things
        // (`animated`, `text`) are not files.
        for (key, list) in lists {
            for item in list.as_array().into_iter().flatten() {
                let Some(filename) = item.get("filename").and_then(Value::as_str) else {
                    continue;
                };
                let subfolder = item.get("subfolder").and_then(Value::as_str).unwrap_or("");
                let kind = item.get("type").and_then(Value::as_str).unwrap_or("output");
                if !safe_name(filename) || !safe_subfolder(subfolder) {
                    return Err(format!(
                        "node {node} names an output file studio will not ask for: {:?} in {:?}",
                        crate::exec::http::excerpt(filename, 80),
                        crate::exec::http::excerpt(subfolder, 80)
                    ));
                }
                if !matches!(kind, "output" | "temp" | "input") {
                    return Err(format!(
                        "node {node}: output type {kind:?} is not output, temp or input"
                    ));
                }
                if outputs.len() == MAX_OUTPUT_FILES {
                    return Err(format!("the prompt lists more than {MAX_OUTPUT_FILES} output files"));
                }
                outputs.push(OutputRef {
                    node: node.clone(),
                    key: key.clone(),
                    filename: filename.to_string(),
                    subfolder: subfolder.to_string(),
                    kind: kind.to_string(),
                });
            }
        }
    }
    Ok(Some(Entry {
        success,
        failure,
        interrupted,
        cached,
        outputs,
    }))
}

/// One input a node's validation refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    pub node: String,
    pub class_type: String,
    /// `extra_info.input_name`, when the error names one.
    pub input: Option<String>,
    pub message: String,
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} ({})", self.node, self.class_type)?;
        if let Some(input) = &self.input {
            write!(f, " input `{input}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The `node_errors` map of a `/prompt` answer, flattened (at most 20).
pub fn node_errors(v: &Value) -> Vec<NodeError> {
    let mut out = Vec::new();
    for (node, e) in v["node_errors"].as_object().into_iter().flatten() {
        let class_type = text(&e["class_type"]);
        for err in e["errors"].as_array().into_iter().flatten() {
            let message = match (text(&err["message"]), text(&err["details"])) {
                (m, d) if d.is_empty() => m,
                (m, d) => format!("{m}: {d}"),
            };
            out.push(NodeError {
                node: crate::exec::http::excerpt(node, 40),
                class_type: class_type.clone(),
                input: err["extra_info"]["input_name"]
                    .as_str()
                    .map(|s| crate::exec::http::excerpt(s, 80)),
                message,
            });
        }
    }
    out.truncate(20);
    out
}

/// The prompt-level `error` of a 400 (`Prompt has no outputs`, an unknown
/// node class, …) as one line.
pub fn prompt_error(v: &Value) -> String {
    let e = &v["error"];
    match (text(&e["message"]), text(&e["details"])) {
        (m, _) if m.is_empty() => "no reason given".into(),
        (m, d) if d.is_empty() => m,
        (m, d) => format!("{m} ({d})"),
    }
}

/// Where a prompt is in `GET /queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Running,
    Pending,
    Absent,
}

/// Find `prompt_id` in `GET /queue`'s body.
pub fn place(body: &[u8], prompt_id: &str) -> Result<Place, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("queue is not JSON ({e})"))?;
    let has = |key: &str| {
        v[key]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i[1].as_str() == Some(prompt_id)))
    };
    Ok(if has("queue_running") {
        Place::Running
    } else if has("queue_pending") {
        Place::Pending
    } else {
        Place::Absent
    })
}

/// Free and total VRAM of the first device in `/system_stats`, in bytes.
pub fn vram(body: &[u8]) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let d = &v["devices"][0];
    Some((d["vram_free"].as_u64()?, d["vram_total"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_read_for_our_prompt_only() {
        let f = |v: Value| event(&v.to_string(), "p1");
        assert_eq!(
            f(json!({"type": "executing", "data": {"node": null, "prompt_id": "p1"}})),
            Some(Event::Executing(None))
        );
        assert_eq!(
            f(json!({"type": "executing", "data": {"node": "3", "prompt_id": "p2"}})),
            None
        );
        assert_eq!(f(json!({"type": "status", "data": {"status": {}}})), None);
        assert_eq!(
            f(json!({"type": "progress", "data": {"value": 3, "max": 28, "prompt_id": "p1", "node": "3"}})),
            Some(Event::Progress {
                node: Some("3".into()),
                value: 3.0,
                max: 28.0
            })
        );
        let Some(Event::Error(e)) = f(json!({"type": "execution_error", "data": {
            "prompt_id": "p1", "node_id": "3", "node_type": "KSampler",
            "exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory. Tried to allocate 2 GiB\n"}}))
        else {
            panic!()
        };
        assert!(e.out_of_memory());
        assert_eq!(e.class_type, "KSampler");
        assert_eq!(f(json!("not an event")), None);
    }

    #[test]
    fn history_lists_every_file_list_and_refuses_paths() {
        let body = json!({"p1": {"outputs": {
            "9": {"images": [{"filename": "a_00001_.mp4", "subfolder": "studio", "type": "output"}], "animated": [true]},
            "12": {"gifs": [{"filename": "v_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"}]}},
            "status": {"status_str": "success", "completed": true, "messages": []}}});
        let e = history(body.to_string().as_bytes(), "p1").unwrap().unwrap();
        assert!(e.success && e.failure.is_none());
        let names: Vec<_> = e
            .outputs
            .iter()
            .map(|o| (o.key.as_str(), o.filename.as_str()))
            .collect();
        assert_eq!(names, [("gifs", "v_00001.mp4"), ("images", "a_00001_.mp4")]);
        assert_eq!(history(b"{}", "p1").unwrap(), None);
        for bad in ["../../etc/passwd", "a/b.png", "", ".."] {
            let body =
                json!({"p1": {"outputs": {"9": {"images": [{"filename": bad, "subfolder": "", "type": "output"}]}}}});
            assert!(history(body.to_string().as_bytes(), "p1").is_err(), "{bad}");
        }
        let body = json!({"p1": {"outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "../x", "type": "output"}]}}}});
        assert!(history(body.to_string().as_bytes(), "p1").is_err());
    }

    #[test]
    fn an_interrupted_entry_names_its_node() {
        // As ComfyUI 0.8.0 on CPU stored it (`/history/{id}` after `/interrupt`).
        let body = json!({"p1": {"prompt": [0, "p1", {}, {"client_id": "c", "create_time": 1}, ["9"]], "outputs": {},
            "status": {"status_str": "error", "completed": false, "messages": [
                ["execution_start", {"prompt_id": "p1", "timestamp": 1}],
                ["execution_cached", {"nodes": [], "prompt_id": "p1", "timestamp": 1}],
                ["execution_interrupted", {"prompt_id": "p1", "node_id": "10", "node_type": "ImageBlur", "executed": ["1"], "timestamp": 2}]]},
            "meta": {}}});
        let e = history(body.to_string().as_bytes(), "p1").unwrap().unwrap();
        assert_eq!(e.interrupted.as_deref(), Some("10"));
        assert!(!e.success && e.failure.is_none() && e.outputs.is_empty());
        assert!(!e.cached, "an empty execution_cached list caches nothing");
    }

    #[test]
    fn an_entry_answered_from_comfyuis_cache_says_so() {
        // The status messages hold what the socket said: a client that
        // finds the prompt done before it reads `execution_cached` from
        // the socket still learns that the files are old.
        let body = json!({"p1": {"outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": true, "messages": [
                ["execution_start", {"prompt_id": "p1", "timestamp": 1}],
                ["execution_cached", {"nodes": ["1", "9"], "prompt_id": "p1", "timestamp": 1}],
                ["execution_success", {"prompt_id": "p1", "timestamp": 2}]]}}});
        let e = history(body.to_string().as_bytes(), "p1").unwrap().unwrap();
        assert!(e.success && e.cached);
    }

    #[test]
    fn node_errors_name_node_class_and_input() {
        let v = json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": ""},
            "node_errors": {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                "details": "ckpt_name: 'x.safetensors' not in []", "extra_info": {"input_name": "ckpt_name"}}],
                "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}});
        let errs = node_errors(&v);
        assert_eq!(
            errs[0].to_string(),
            "node 4 (CheckpointLoaderSimple) input `ckpt_name`: Value not in list: ckpt_name: 'x.safetensors' not in []"
        );
        assert_eq!(prompt_error(&v), "Prompt outputs failed validation");
    }

    #[test]
    fn queue_places() {
        let body =
            json!({"queue_running": [[0, "a", {}, {}, []]], "queue_pending": [[1, "b", {}, {}, []]]}).to_string();
        assert_eq!(place(body.as_bytes(), "a").unwrap(), Place::Running);
        assert_eq!(place(body.as_bytes(), "b").unwrap(), Place::Pending);
        assert_eq!(place(body.as_bytes(), "c").unwrap(), Place::Absent);
    }
}
