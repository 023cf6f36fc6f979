//! The ComfyUI client against a real ComfyUI 0.8.0, with workflows that need
//! no model (core `EmptyImage`, `ImageBlur`, `CreateVideo`, `SaveImage`,
//! `SaveVideo`), and the same checks against the fake: what the real server
//! did here (message and history shapes, status codes, the cache replay,
//! renamed uploads, interrupt and dequeue) is what the fake must do.
//!
//! The real server is opt-in: `STUDIO_REAL_COMFYUI=http://127.0.0.1:8188`
//! (`scripts/real-comfyui.sh` sets one up and starts it; README, "ComfyUI").
//! Without it the real-server test prints a note and passes; the fake's
//! run of the same checks always runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use studio::exec::JobProgress;
use studio::exec::comfyui::{Client, ComfyError, Request};
use studio::exec::http::Service;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::fake::{Fake, Inject, count};
use super::{executor, ffprobe_ok};

/// Opt-in: a real ComfyUI at `STUDIO_REAL_COMFYUI`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_comfyui_speaks_the_protocol_the_client_and_the_fake_expect() {
    let Ok(url) = std::env::var("STUDIO_REAL_COMFYUI") else {
        eprintln!(
            "skipped: set STUDIO_REAL_COMFYUI=http://127.0.0.1:PORT (scripts/real-comfyui.sh starts a real ComfyUI 0.8.0 on CPU)"
        );
        return;
    };
    conformance(url.trim_end_matches('/'), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_passes_the_checks_the_real_comfyui_passed() {
    let fake = Fake::start_with(Inject {
        // ImageBlur's time: long enough to interrupt, as on a CPU.
        step: Some(Duration::from_millis(700)),
        ..Inject::default()
    });
    conformance(&fake.url, Some(&fake)).await;
}

/// Something unique to this run: the real server keeps its cache and its
/// files between runs, and a first prompt must not be a cache hit.
fn run_mark() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (nanos % 0xff_ffff) as u64
}

fn image(color: u64) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 2, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "studio/conformance"}}
    })
}

fn video(color: u64) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 9, "color": color}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 16.0}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "studio/conformance", "format": "mp4", "codec": "h264"}}
    })
}

/// Seconds of CPU work per blur on the real server (512², radius 31: about
/// 4 s on two cores); an interrupt lands at the next node.
fn slow(color: u64) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": color}},
        "10": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 5.0}},
        "11": {"class_type": "ImageBlur", "inputs": {"image": ["10", 0], "blur_radius": 31, "sigma": 5.0}},
        "12": {"class_type": "ImageBlur", "inputs": {"image": ["11", 0], "blur_radius": 31, "sigma": 5.0}},
        "13": {"class_type": "ImageScale", "inputs": {"image": ["12", 0], "upscale_method": "nearest-exact", "width": 8, "height": 8, "crop": "disabled"}},
        "14": {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": "studio/slow"}}
    })
}

fn req<'a>(prompt: &'a Value, workflow: &'a str) -> Request<'a> {
    Request {
        prompt,
        workflow,
        seed: "conformance",
    }
}

async fn get(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// `POST /prompt` by hand: the status and the JSON answer.
async fn post_prompt(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/prompt"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
}

/// The queue's items (`[number, prompt_id, prompt, extra_data, outputs]`)
/// whose prompt is `prompt`: (running, pending) ids.
async fn queued(url: &str, prompt: &Value) -> (Vec<String>, Vec<String>) {
    let q = get(&format!("{url}/queue")).await;
    let ids = |key: &str| -> Vec<String> {
        q[key]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|i| assert_eq!(i.as_array().unwrap().len(), 5, "a queue item: {i}"))
            .filter(|i| i[2] == *prompt)
            .map(|i| i[1].as_str().unwrap().to_string())
            .collect()
    };
    (ids("queue_running"), ids("queue_pending"))
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Queue `prompt` by hand on a socket of our own and record its messages
/// (text frames about it) until `executing` with `node: null`; then its
/// history entry.
async fn raw_run(url: &str, prompt: &Value) -> (Vec<Value>, Value) {
    let client_id = format!("conformance{}", run_mark());
    let ws_url = format!("{}/ws?clientId={client_id}", url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let prompt_id = format!("{:032x}", u128::from(run_mark()) << 40 | 0xc0ffee);
    let (status, body) = post_prompt(
        url,
        &json!({"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prompt_id"], prompt_id.as_str(), "{body}");
    assert!(body["number"].is_number() && body["node_errors"] == json!({}), "{body}");
    let mut events = Vec::new();
    let mut first = true;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a message within a minute")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        if first {
            // The greeting: the queue status and our sid.
            assert_eq!(v["type"], "status", "{v}");
            assert_eq!(v["data"]["sid"], client_id.as_str(), "{v}");
            assert!(v["data"]["status"]["exec_info"]["queue_remaining"].is_number(), "{v}");
            first = false;
        }
        if v["data"]["prompt_id"] != prompt_id.as_str() {
            continue;
        }
        let end = v["type"] == "executing" && v["data"]["node"].is_null();
        events.push(v);
        if end {
            break;
        }
    }
    drop(socket);
    let history = get(&format!("{url}/history/{prompt_id}")).await;
    (events, history[&prompt_id].clone())
}

/// Every check, against `url`; `fake` when it is the fake (its request log).
async fn conformance(url: &str, fake: Option<&Fake>) {
    let mut ex = executor(url);
    ex.timeout = 300.0;
    let c = Client::new(Arc::new(Service::new(&ex).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let mark = run_mark();

    // The health check: ComfyUI's own system stats.
    let stats = get(&format!("{url}/system_stats")).await;
    assert_eq!(stats["system"]["comfyui_version"], "0.8.0", "{stats}");
    assert!(c.system_stats().await.unwrap().is_some(), "{stats}");

    // Messages and history of one prompt, as the server sends them.
    let (events, entry) = raw_run(url, &image(mark ^ 0x5555)).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let core: Vec<&str> = types.iter().copied().filter(|t| *t != "progress_state").collect();
    assert_eq!(
        core,
        [
            "execution_start",
            "execution_cached",
            "executing",
            "executing",
            "executed",
            "execution_success",
            "executing"
        ],
        "{events:#?}"
    );
    for e in &events {
        let t = e["type"].as_str().unwrap();
        if t.starts_with("execution_") {
            assert!(e["data"]["timestamp"].is_u64(), "{t} is stamped: {e}");
        }
    }
    assert_eq!(events[1]["data"]["nodes"], json!([]), "nothing cached the first time");
    let executed = events.iter().find(|e| e["type"] == "executed").unwrap();
    assert_eq!(executed["data"]["node"], "2");
    assert_eq!(executed["data"]["output"]["images"].as_array().unwrap().len(), 2);
    // The entry is there once `executing` with `node: null` came.
    let item = entry["prompt"].as_array().expect("prompt item");
    assert_eq!(item.len(), 5, "[number, id, prompt, extra_data, outputs]: {entry}");
    assert!(
        item[3]["client_id"].is_string() && item[3]["create_time"].is_u64(),
        "{entry}"
    );
    assert_eq!(item[4], json!(["2"]), "outputs to execute");
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["status"]["completed"], true);
    let kept: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["execution_start", "execution_cached", "execution_success"]);
    assert_eq!(entry["meta"]["2"]["node_id"], "2", "{entry}");

    // An image workflow through the client: files, download, decode.
    let prompt = image(mark);
    let first = c
        .run(
            req(&prompt, "rules/workflows/image.json"),
            &JobProgress::none(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(!first.cached);
    assert_eq!(first.outputs.len(), 2, "a batch of two");
    for (i, out) in first.outputs.iter().enumerate() {
        assert_eq!(
            (out.node.as_str(), out.key.as_str(), out.kind.as_str()),
            ("2", "images", "output")
        );
        assert_eq!(out.subfolder, "studio");
        assert_eq!(out.extension(), "png");
        let to = camino::Utf8PathBuf::from_path_buf(dir.path().join(format!("image-{i}.png"))).unwrap();
        assert!(c.download(out, &to, 1 << 20).await.unwrap() > 0);
        let probe = ffprobe_ok(to.as_std_path());
        assert_eq!(probe["streams"][0]["codec_name"], "png");
        assert_eq!(
            (
                probe["streams"][0]["width"].clone(),
                probe["streams"][0]["height"].clone()
            ),
            (json!(64), json!(48))
        );
    }

    // The same prompt again: ComfyUI's cache answers with the old files.
    let again = c
        .run(
            req(&prompt, "rules/workflows/image.json"),
            &JobProgress::none(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(again.cached, "execution_cached listed the nodes");
    assert_ne!(again.prompt_id, first.prompt_id);
    let names = |d: &studio::exec::comfyui::Done| d.outputs.iter().map(|o| o.filename.clone()).collect::<Vec<_>>();
    assert_eq!(names(&again), names(&first));

    // A video: core SaveVideo lists it under `images`, with `animated`.
    let prompt = video(mark);
    let done = c
        .run(
            req(&prompt, "rules/workflows/video.json"),
            &JobProgress::none(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        done.outputs.len(),
        1,
        "`animated` is not a file list: {:?}",
        done.outputs
    );
    assert_eq!(
        (done.outputs[0].key.as_str(), done.outputs[0].extension()),
        ("images", "mp4".to_string())
    );
    let raw = get(&format!("{url}/history/{}", done.prompt_id)).await;
    assert_eq!(raw[&done.prompt_id]["outputs"]["3"]["animated"], json!([true]), "{raw}");
    let to = camino::Utf8PathBuf::from_path_buf(dir.path().join("video.mp4")).unwrap();
    c.download(&done.outputs[0], &to, 1 << 24).await.unwrap();
    let probe = ffprobe_ok(to.as_std_path());
    assert_eq!(probe["streams"][0]["codec_name"], "h264");
    assert_eq!(probe["streams"][0]["nb_read_frames"], "9");
    assert_eq!(probe["streams"][0]["width"], 64);

    // `/view`: a missing file is a 404, a subfolder outside is a 403.
    let view = |q: &str| format!("{url}/view?{q}");
    let status = |u: String| async move { reqwest::get(u).await.unwrap().status().as_u16() };
    assert_eq!(
        status(view("filename=nope-studio.png&subfolder=&type=output")).await,
        404
    );
    assert_eq!(status(view("filename=a.png&subfolder=../..&type=output")).await, 403);

    // A 400: an input out of range names the node, its class and the input.
    let mut bad = image(mark);
    bad["1"]["inputs"]["width"] = json!(0);
    let err = c
        .run(
            req(&bad, "rules/workflows/image.json"),
            &JobProgress::none(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ComfyError::Rejected { .. }) && !err.transient(),
        "{err:?}"
    );
    let msg = err.to_string();
    for part in [
        "rules/workflows/image.json",
        "Prompt outputs failed validation",
        "node 1 (EmptyImage) input `width`",
        "Value 0 smaller than min of 1",
    ] {
        assert!(msg.contains(part), "`{part}` in {msg}");
    }
    let (status, v) = post_prompt(url, &json!({"prompt": bad})).await;
    assert_eq!(status, 400, "{v}");
    let e = &v["node_errors"]["1"];
    assert_eq!(e["dependent_outputs"], json!(["2"]), "{v}");
    assert_eq!(e["errors"][0]["type"], "value_smaller_than_min", "{v}");
    assert_eq!(e["errors"][0]["extra_info"]["received_value"], 0, "{v}");
    // An unknown class, a missing input file.
    let mut bad = image(mark);
    bad["1"]["class_type"] = json!("NoSuchNode");
    let err = c
        .run(req(&bad, "x.json"), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Cannot execute because node NoSuchNode does not exist. (Node ID '#1')"),
        "{err}"
    );
    let load = |name: &str| {
        json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "width": 32, "height": 24, "crop": "disabled"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "studio/loaded"}}
        })
    };
    let err = c
        .run(
            req(&load("studio-missing.png"), "x.json"),
            &JobProgress::none(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("node 1 (LoadImage) input `image`: Custom validation failed for node: image - Invalid image file: studio-missing.png"),
        "{err}"
    );

    // Uploads: named by content; a name taken by other bytes is renamed,
    // and the returned name is the one a LoadImage node takes.
    let png = std::fs::read(dir.path().join("image-0.png")).unwrap();
    let hash = blake3::hash(&png).to_hex().to_string();
    let ours = format!("studio-{}.png", &hash[..32]);
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(format!("other bytes {mark}").into_bytes()).file_name(ours.clone()),
        )
        .text("type", "input");
    let up = reqwest::Client::new()
        .post(format!("{url}/upload/image"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    let up: Value = serde_json::from_slice(&up.bytes().await.unwrap()).unwrap();
    assert_eq!(up, json!({"name": ours, "subfolder": "", "type": "input"}));
    let name = c.upload(png.clone(), "png").await.unwrap();
    assert_eq!(name, format!("studio-{} (1).png", &hash[..32]));
    assert_eq!(c.upload(png.clone(), "png").await.unwrap(), name, "once per host");
    if let Some(fake) = fake {
        assert_eq!(count(&fake.log(), "POST /upload/image"), 2, "{:?}", fake.log());
    }
    let done = c
        .run(
            req(&load(&name), "x.json"),
            &JobProgress::none(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let to = camino::Utf8PathBuf::from_path_buf(dir.path().join("loaded.png")).unwrap();
    c.download(&done.outputs[0], &to, 1 << 20).await.unwrap();
    assert_eq!(ffprobe_ok(to.as_std_path())["streams"][0]["width"], 32);

    // Cancel: a running prompt is interrupted (at its next node), a
    // waiting one is taken off the queue.
    let (a, b) = (slow(mark ^ 1), slow(mark ^ 2));
    let (run_a, run_b) = (CancellationToken::new(), CancellationToken::new());
    let first = tokio::spawn({
        let (c, a, t) = (c.clone(), a.clone(), run_a.clone());
        async move { c.run(req(&a, "slow.json"), &JobProgress::none(), &t).await }
    });
    until("the first slow prompt to run", || async {
        queued(url, &a).await.0.len() == 1
    })
    .await;
    let a_id = queued(url, &a).await.0[0].clone();
    let second = tokio::spawn({
        let (c, b, t) = (c.clone(), b.clone(), run_b.clone());
        async move { c.run(req(&b, "slow.json"), &JobProgress::none(), &t).await }
    });
    until("the second to wait", || async { queued(url, &b).await.1.len() == 1 }).await;
    let b_id = queued(url, &b).await.1[0].clone();
    run_b.cancel();
    assert!(matches!(second.await.unwrap(), Err(ComfyError::Cancelled)));
    assert_eq!(queued(url, &b).await, (vec![], vec![]), "taken off the queue");
    run_a.cancel();
    assert!(matches!(first.await.unwrap(), Err(ComfyError::Cancelled)));
    let history = format!("{url}/history/{a_id}");
    until("the interrupted prompt's history", || {
        let (history, a_id) = (history.clone(), a_id.clone());
        async move { get(&history).await.get(&a_id).is_some() }
    })
    .await;
    let entry = get(&history).await[&a_id].clone();
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
    assert_eq!(entry["outputs"], json!({}), "{entry}");
    let stopped = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == "execution_interrupted")
        .unwrap_or_else(|| panic!("no execution_interrupted: {entry}"))[1]
        .clone();
    assert!(
        ["10", "11", "12", "13"].contains(&stopped["node_id"].as_str().unwrap_or("")),
        "{stopped}"
    );
    assert!(
        stopped["executed"].as_array().unwrap().contains(&json!("1")),
        "{stopped}"
    );
    assert_eq!(get(&format!("{url}/history/{b_id}")).await, json!({}), "never ran");
}
