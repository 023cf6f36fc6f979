//! The ComfyUI client against the fake ComfyUI (tests/comfy/fake.rs) on
//! loopback: each protocol path, each trap of the real server.
#![allow(clippy::disallowed_methods)] // ffprobe checks the media

mod build;
#[path = "../common/mod.rs"]
mod common;
mod fake;
mod real;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use studio::engines::ServiceKind;
use studio::exec::JobProgress;
use studio::exec::comfyui::{Client, ComfyError, Request};
use studio::exec::http::Service;
use studio::project::model::Executor;
use tokio_util::sync::CancellationToken;

use fake::{Fake, Inject, count};

fn executor(url: &str) -> Executor {
    Executor {
        id: "comfy-a".into(),
        kind: ServiceKind::Comfyui,
        group: "comfyui".into(),
        line: 12,
        url: url.into(),
        remote_host: false,
        max_tokens: None,
        slots: 1,
        model: None,
        token_env: None,
        api_key_env: None,
        timeout: 10.0,
        connect_timeout: 2.0,
    }
}

fn client(fake: &Fake) -> Client {
    Client::new(Arc::new(Service::new(&executor(&fake.url)).unwrap()))
}

/// A txt2img prompt as ComfyUI's "Save (API)" writes it.
fn txt2img(seed: u64, steps: u64) -> Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "animagine-xl-3.1.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 96, "height": 64, "batch_size": 2}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "1girl, lantern", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 6.5, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "studio/refs", "images": ["8", 0]}}
    })
}

fn video(save: &str, seed: u64) -> Value {
    let mut p = json!({
        "1": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 96, "length": 9, "batch_size": 1}},
        "2": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 3, "latent_image": ["1", 0]}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0]}},
    });
    p["4"] = if save == "SaveVideo" {
        json!({"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 16}})
    } else {
        json!({"class_type": "VHS_VideoCombine", "inputs": {"images": ["3", 0], "frame_rate": 16, "filename_prefix": "studio/vid", "format": "video/h264-mp4"}})
    };
    if save == "SaveVideo" {
        p["5"] = json!({"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "studio/vid", "format": "mp4", "codec": "h264"}});
    }
    p
}

fn req<'a>(prompt: &'a Value) -> Request<'a> {
    Request {
        prompt,
        workflow: "rules/workflows/test.json",
        seed: "key",
    }
}

fn ffprobe_ok(path: &std::path::Path) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_streams", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

type Reports = Arc<Mutex<Vec<(Option<f64>, String)>>>;

fn progress() -> (JobProgress, Reports) {
    let got: Reports = Arc::default();
    let g = got.clone();
    (
        JobProgress::new(move |f, s| g.lock().unwrap().push((f, s.to_string()))),
        got,
    )
}

#[tokio::test]
async fn a_prompt_runs_and_its_images_download_and_decode() {
    let fake = Fake::start_with(Inject {
        step: Some(Duration::from_millis(60)),
        ..Inject::default()
    });
    let c = client(&fake);
    let prompt = txt2img(7, 4);
    let (p, reports) = progress();
    let done = c.run(req(&prompt), &p, &CancellationToken::new()).await.unwrap();
    assert!(!done.cached);
    assert_eq!(done.outputs.len(), 2, "batch of two");
    assert!(
        done.outputs
            .iter()
            .all(|o| o.key == "images" && o.subfolder == "studio" && o.node == "9")
    );
    let dir = tempfile::tempdir().unwrap();
    let to = camino::Utf8PathBuf::from_path_buf(dir.path().join("a.png")).unwrap();
    let size = c.download(&done.outputs[0], &to, 1 << 20).await.unwrap();
    assert!(size > 0);
    let probe = ffprobe_ok(to.as_std_path());
    assert_eq!(probe["streams"][0]["codec_name"], "png");
    assert_eq!(probe["streams"][0]["width"], 96);
    // Progress came from the socket: sampler ticks, named by node and class.
    let reports = reports.lock().unwrap();
    assert!(
        reports.iter().any(|(_, s)| s.contains("KSampler") && s.contains("/4")),
        "{reports:?}"
    );
    let log = fake.log();
    assert_eq!(count(&log, "GET /ws"), 1);
    assert_eq!(count(&log, "POST /prompt"), 1);
    // The prompt carried client_id and prompt_id, and the prompt itself.
    assert_eq!(fake.prompts()[0], prompt);
}

#[tokio::test]
async fn an_identical_prompt_is_answered_from_comfyuis_cache_with_the_old_files() {
    let fake = Fake::start();
    let c = client(&fake);
    let prompt = txt2img(7, 2);
    let first = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap();
    let second = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(second.cached, "execution_cached listed the nodes");
    assert_ne!(first.prompt_id, second.prompt_id, "fresh ids per prompt");
    let names = |d: &studio::exec::comfyui::Done| d.outputs.iter().map(|o| o.filename.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), names(&second));
}

#[tokio::test]
async fn videos_are_found_under_images_with_animated_and_under_gifs() {
    let fake = Fake::start();
    let c = client(&fake);
    let dir = tempfile::tempdir().unwrap();
    for (save, key) in [("SaveVideo", "images"), ("VHS_VideoCombine", "gifs")] {
        let prompt = video(save, 3);
        let done = c
            .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(done.outputs.len(), 1, "{save}: `animated` is not a file list");
        assert_eq!(done.outputs[0].key, key);
        assert_eq!(done.outputs[0].extension(), "mp4");
        let to = camino::Utf8PathBuf::from_path_buf(dir.path().join(format!("{save}.mp4"))).unwrap();
        c.download(&done.outputs[0], &to, 1 << 24).await.unwrap();
        let probe = ffprobe_ok(to.as_std_path());
        assert_eq!(probe["streams"][0]["codec_name"], "h264");
        assert_eq!(probe["streams"][0]["nb_read_frames"], "9");
    }
}

#[tokio::test]
async fn a_400_names_the_workflow_node_class_and_input() {
    let fake = Fake::start_with(Inject {
        reject: Some(("4".into(), "ckpt_name".into())),
        ..Inject::default()
    });
    let c = client(&fake);
    let prompt = txt2img(1, 1);
    let err = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ComfyError::Rejected { .. }), "{err:?}");
    assert!(!err.transient());
    let msg = err.to_string();
    for part in [
        "rules/workflows/test.json",
        "node 4",
        "CheckpointLoaderSimple",
        "`ckpt_name`",
        "Value not in list",
    ] {
        assert!(msg.contains(part), "{part} in {msg}");
    }
    let exec = err.into_exec(c.service());
    assert!(
        matches!(&exec, studio::exec::ExecError::Permanent(m) if m.contains("studio.yaml:12")),
        "{exec:?}"
    );
    // An unknown node class is a prompt-level 400.
    let mut bad = txt2img(1, 1);
    bad["8"]["class_type"] = json!("NoSuchNode");
    let err = c
        .run(req(&bad), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoSuchNode does not exist"), "{err}");
}

#[tokio::test]
async fn a_200_with_node_errors_is_taken_back_and_refused() {
    let fake = Fake::start_with(Inject {
        step: Some(Duration::from_millis(200)),
        ..Inject::default()
    });
    let c = client(&fake);
    // A slow prompt ahead keeps ours in the queue.
    let ahead = txt2img(99, 10);
    let c2 = c.clone();
    let first = tokio::spawn(async move {
        let _ = c2
            .run(req(&ahead), &JobProgress::none(), &CancellationToken::new())
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.inject(|i| i.partial = Some("9".into()));
    let prompt = txt2img(2, 1);
    let err = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ComfyError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("node 9 (SaveImage)"), "{err}");
    let log = fake.log();
    assert_eq!(count(&log, "POST /queue"), 1, "removed from the queue: {log:?}");
    first.abort();
}

#[tokio::test]
async fn out_of_memory_is_a_permanent_failure_naming_the_node() {
    let fake = Fake::start_with(Inject {
        oom_class: Some("KSampler".into()),
        ..Inject::default()
    });
    let c = client(&fake);
    let prompt = txt2img(1, 3);
    let err = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    let ComfyError::Failed { failure, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(failure.out_of_memory());
    assert_eq!((failure.node.as_str(), failure.class_type.as_str()), ("3", "KSampler"));
    assert!(
        matches!(err.into_exec(c.service()), studio::exec::ExecError::Permanent(m) if m.contains("torch.OutOfMemoryError"))
    );
}

#[tokio::test]
async fn a_socket_closed_mid_run_falls_back_to_the_history() {
    let fake = Fake::start_with(Inject {
        drop_socket: true,
        step: Some(Duration::from_millis(30)),
        ..Inject::default()
    });
    let c = client(&fake);
    let prompt = txt2img(5, 8);
    let done = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.outputs.len(), 2);
    let log = fake.log();
    assert_eq!(
        count(&log, "GET /ws"),
        1,
        "never reconnects with the same clientId: {log:?}"
    );
    assert!(count(&log, "GET /history/") >= 2, "polled: {log:?}");
}

#[tokio::test]
async fn cancel_interrupts_a_running_prompt_and_deletes_a_queued_one() {
    let fake = Fake::start_with(Inject {
        step: Some(Duration::from_millis(100)),
        ..Inject::default()
    });
    let c = client(&fake);
    let running = CancellationToken::new();
    let queued = CancellationToken::new();
    let (a, b) = (txt2img(1, 40), txt2img(2, 40));
    let (c1, c2) = (c.clone(), c.clone());
    let (r1, q1) = (running.clone(), queued.clone());
    let first = tokio::spawn(async move { c1.run(req(&a), &JobProgress::none(), &r1).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = tokio::spawn(async move { c2.run(req(&b), &JobProgress::none(), &q1).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    queued.cancel();
    assert!(matches!(second.await.unwrap(), Err(ComfyError::Cancelled)));
    running.cancel();
    assert!(matches!(first.await.unwrap(), Err(ComfyError::Cancelled)));
    let log = fake.log();
    let interrupts: Vec<_> = log.iter().filter(|l| l.starts_with("POST /interrupt")).collect();
    assert_eq!(interrupts.len(), 1, "{log:?}");
    assert!(
        interrupts[0].contains("prompt_id"),
        "a targeted interrupt: {interrupts:?}"
    );
    assert_eq!(count(&log, "POST /queue"), 1, "{log:?}");
    // The interrupted prompt ends as ComfyUI ends it: interrupted, no outputs.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fake.prompts().len() == 2);
}

#[tokio::test]
async fn refused_connections_and_5xx_are_transient() {
    let mut fake = Fake::start_with(Inject {
        fail_5xx: 1,
        ..Inject::default()
    });
    let c = client(&fake);
    let prompt = txt2img(1, 1);
    let err = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.transient(), "{err:?}");
    assert!(err.to_string().contains("500"), "{err}");
    c.run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap();
    fake.stop();
    let err = c
        .run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.transient(), "{err:?}");
    assert!(matches!(err.into_exec(c.service()), studio::exec::ExecError::Transient(m) if m.contains("comfy-a")));
}

#[tokio::test]
async fn uploads_are_named_by_content_sent_once_and_renamed_names_are_used() {
    let fake = Fake::start();
    let c = client(&fake);
    let png = b"\x89PNG\r\n\x1a\n not really but bytes".to_vec();
    let hash = blake3::hash(&png).to_hex().to_string();
    let expected = format!("studio-{}.png", &hash[..32]);
    // Someone else's file already has that name: the server renames ours.
    fake.put_input(&expected, b"other bytes");
    let name = c.upload(png.clone(), "png").await.unwrap();
    assert_eq!(name, format!("studio-{} (1).png", &hash[..32]));
    assert_eq!(fake.input(&name).unwrap(), png);
    assert_eq!(c.upload(png.clone(), "png").await.unwrap(), name);
    assert_eq!(count(&fake.log(), "POST /upload/image"), 1, "sent once per host");
    // The name works in a LoadImage node.
    let mut prompt = txt2img(3, 1);
    prompt["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    c.run(req(&prompt), &JobProgress::none(), &CancellationToken::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn system_stats_is_the_health_check() {
    let mut fake = Fake::start();
    let c = client(&fake);
    let (free, total) = c.system_stats().await.unwrap().unwrap();
    assert_eq!((free, total), (20 << 30, 24 << 30));
    fake.stop();
    let err = c.system_stats().await.unwrap_err();
    assert!(err.transient(), "{err:?}");
}
