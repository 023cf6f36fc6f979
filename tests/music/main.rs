//! Scene music beyond the procedural bed: the ACE-Step client against a
//! fake ACE-Step 1.5 server (tests/music/fake.rs) on loopback, full-profile
//! builds that use it or fall back from it, and the music library.
#![allow(clippy::disallowed_methods)] // ffmpeg and ffprobe check the media

#[path = "../comfy/fake.rs"]
mod comfy;
#[path = "../common/mod.rs"]
mod common;
mod fake;
mod library;

use std::path::Path;
use std::time::Duration;

use camino::Utf8PathBuf;
use serde_json::Value;
use studio::engines::ServiceKind;
use studio::exec::http::Service;
use studio::exec::{ExecError, JobProgress};
use studio::project::model::Executor;
use studio::project::vocab::Mood;
use studio::stages::music::ace_step::{Ask, Client};

use common::{Build, TestProject};
use fake::{Fake, Inject};

fn executor(url: &str, timeout: f64) -> Executor {
    Executor {
        id: "ace-step".into(),
        kind: ServiceKind::AceStep,
        group: "ace_step".into(),
        line: 31,
        url: url.into(),
        remote_host: false,
        max_tokens: None,
        slots: 1,
        model: None,
        token_env: None,
        api_key_env: None,
        timeout,
        connect_timeout: 2.0,
    }
}

fn ask(seconds: f64) -> Ask<'static> {
    Ask {
        prompt: "instrumental anime soundtrack, calm, night atmosphere",
        seconds,
        seed: 1234,
        mood: Mood::Calm,
        model: None,
    }
}

/// Run the client against `url` with `budget` seconds; the file it wrote.
async fn generate(url: &str, budget: f64, seconds: f64) -> (Result<(), ExecError>, tempfile::TempDir) {
    generate_with(url, budget, seconds, None).await
}

async fn generate_with(
    url: &str,
    budget: f64,
    seconds: f64,
    api_key: Option<&str>,
) -> (Result<(), ExecError>, tempfile::TempDir) {
    let service = Service::new(&executor(url, budget)).unwrap();
    let progress = JobProgress::none();
    let client = Client {
        service: &service,
        progress: &progress,
        api_key: api_key.map(str::to_string),
    };
    let dir = tempfile::tempdir().unwrap();
    let to = Utf8PathBuf::from_path_buf(dir.path().join("music.audio")).unwrap();
    let r = client
        .generate(&ask(seconds), &to, Duration::from_secs_f64(budget))
        .await;
    (r, dir)
}

#[tokio::test]
async fn a_task_is_released_polled_and_its_audio_downloaded() {
    let fake = Fake::start_with(Inject {
        run: Duration::from_millis(600),
        ..Inject::default()
    });
    let (r, dir) = generate(&fake.url, 30.0, 12.0).await;
    r.unwrap();
    let file = dir.path().join("music.audio");
    let probe = common::media::ffprobe(&file);
    let audio = &common::media::streams(&probe, "audio")[0];
    assert_eq!(audio["codec_name"], "flac");
    assert_eq!(audio["sample_rate"], "48000");
    let seconds: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((seconds - 12.0).abs() < 0.01, "{seconds}");
    // The request, as the real server reads it: one seeded instrumental take.
    let task = &fake.tasks()[0];
    assert_eq!(task["batch_size"], 1);
    assert_eq!(task["use_random_seed"], false);
    assert_eq!(task["seed"], 1234);
    assert_eq!(task["audio_duration"], 12.0);
    assert_eq!(task["audio_format"], "flac");
    assert_eq!(task["lyrics"], "[Instrumental]");
    assert_eq!(task["task_type"], "text2music");
    assert!(
        fake.count("query_result") >= 2,
        "polled until done: {:?}",
        fake.requests()
    );
    // The server path came back as the query value, nothing else.
    assert_eq!(fake.served().len(), 1);
    assert!(fake.served()[0].ends_with(" take.flac"), "{:?}", fake.served());
}

#[tokio::test]
async fn a_server_with_an_api_key_gets_it_on_every_call_and_a_wrong_one_is_permanent() {
    let fake = Fake::start_with(Inject {
        api_key: Some("s3cret".into()),
        ..Inject::default()
    });
    let (r, dir) = generate_with(&fake.url, 30.0, 10.0, Some("s3cret")).await;
    r.unwrap();
    assert!(dir.path().join("music.audio").is_file());
    assert_eq!(fake.served().len(), 1, "the download carried the key too");
    let (r, _dir) = generate_with(&fake.url, 30.0, 10.0, Some("wrong")).await;
    assert!(
        matches!(&r, Err(ExecError::Permanent(m)) if m.contains("401") && m.contains("Invalid API key")),
        "{r:?}"
    );
    let (r, _dir) = generate(&fake.url, 30.0, 10.0).await;
    assert!(
        matches!(&r, Err(ExecError::Permanent(m)) if m.contains("Missing ai_token")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_failed_task_is_permanent_and_gives_the_servers_reason() {
    let fake = Fake::start_with(Inject {
        fail_task: Some("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n".into()),
        ..Inject::default()
    });
    let (r, _dir) = generate(&fake.url, 30.0, 10.0).await;
    let Err(ExecError::Permanent(m)) = r else {
        panic!("{r:?}")
    };
    assert!(
        m.contains("RuntimeError: CUDA out of memory") && m.contains("studio.yaml:31"),
        "{m}"
    );
}

#[tokio::test]
async fn a_500_a_full_queue_and_a_refused_connection_are_transient() {
    let fake = Fake::start_with(Inject {
        fail_5xx: 1,
        ..Inject::default()
    });
    let (r, _dir) = generate(&fake.url, 30.0, 10.0).await;
    assert!(matches!(&r, Err(ExecError::Transient(m)) if m.contains("500")), "{r:?}");
    let (r, _dir) = generate(&fake.url, 30.0, 10.0).await;
    r.unwrap();
    fake.inject(|i| i.queue_full = true);
    let (r, _dir) = generate(&fake.url, 30.0, 10.0).await;
    assert!(
        matches!(&r, Err(ExecError::Transient(m)) if m.contains("429") && m.contains("queue is full")),
        "{r:?}"
    );
    let closed = format!("http://127.0.0.1:{}", common::servers::free_port());
    let (r, _dir) = generate(&closed, 30.0, 10.0).await;
    assert!(matches!(&r, Err(ExecError::Transient(_))), "{r:?}");
}

#[tokio::test]
async fn a_task_that_never_finishes_ends_at_the_executors_timeout_as_permanent() {
    let fake = Fake::start_with(Inject {
        never: true,
        ..Inject::default()
    });
    let (r, _dir) = generate(&fake.url, 1.5, 10.0).await;
    let Err(ExecError::Permanent(m)) = r else {
        panic!("{r:?}")
    };
    assert!(m.contains("not ready within 1.5 s"), "{m}");
    assert!(fake.count("query_result") >= 2, "it polled meanwhile");
    assert!(fake.served().is_empty());
}

#[tokio::test]
async fn a_larger_file_than_the_scene_needs_is_refused() {
    let fake = Fake::start_with(Inject {
        oversize: Some(6 << 20),
        ..Inject::default()
    });
    let (r, _dir) = generate(&fake.url, 30.0, 10.0).await;
    assert!(
        matches!(&r, Err(ExecError::Permanent(m)) if m.contains("more than")),
        "{r:?}"
    );
}

/// `p` with its ComfyUI executor at `comfy`, ACE-Step at `ace` (with its
/// `timeout`), every other service at a closed port.
fn on_fakes(p: TestProject, comfy: &str, ace: &str, ace_timeout: u32) -> TestProject {
    // No vision server here: character art straight from ComfyUI.
    p.without_review_loop();
    let closed = format!("http://127.0.0.1:{}", common::servers::free_port());
    let text = p.read("studio.yaml");
    let mut out = String::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(id) = line.trim_start().strip_prefix("- id: ") {
            current = id.trim().to_string();
        }
        match line.split_once("url: http://127.0.0.1:") {
            Some((head, _)) => {
                let url = match current.as_str() {
                    "comfy-main" => comfy.to_string(),
                    "ace-step" => ace.to_string(),
                    _ => closed.clone(),
                };
                out.push_str(&format!("{head}url: {url}\n"));
                if current == "ace-step" {
                    out.push_str(&format!("{head}timeout: {ace_timeout}\n"));
                }
            }
            None => out.push_str(&format!("{line}\n")),
        }
    }
    p.write("studio.yaml", &out);
    p
}

fn full(p: &TestProject, args: &[&str]) -> Build {
    let mut all = vec!["build", "--json", "--profile", "full"];
    all.extend_from_slice(args);
    Build::parse_run(p.run(&all))
}

fn music_nodes(b: &Build) -> Vec<&Value> {
    b.nodes.iter().filter(|n| n["kind"] == "scene_music").collect()
}

/// Samples of a 48 kHz WAV (ffprobe's `duration_ts`).
pub fn samples(wav: &Path) -> u64 {
    let probe = common::media::ffprobe(wav);
    let a = &common::media::streams(&probe, "audio")[0];
    assert_eq!(a["sample_rate"], "48000");
    a["duration_ts"].as_u64().unwrap()
}

#[test]
fn a_full_build_makes_scene_music_with_ace_step_normalized_like_the_bed() {
    let comfy = comfy::Fake::start();
    let ace = Fake::start();
    let p = on_fakes(TestProject::example("tiny"), &comfy.url, &ace.url, 60);
    // The scene videos too (the episode joins shot segments, not them): the
    // music is checked against their frames.
    let b = full(&p, &["ep01", "scene_video:ep01/s01", "scene_video:ep01/s02"]).ok();
    let music = music_nodes(&b);
    assert_eq!(music.len(), 2);
    for n in &music {
        assert_eq!(n["engine"], "ace_step", "{n}");
        assert_eq!(n["metadata"]["executor"], "ace-step", "{n}");
        assert!(n["metadata"]["seed"].is_u64(), "{n}");
    }
    // Each scene asked once, with its own prompt and seed.
    let tasks = ace.tasks();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let prompts: Vec<&str> = tasks.iter().map(|t| t["prompt"].as_str().unwrap()).collect();
    assert!(
        prompts.iter().any(|t| t.contains("calm") && t.contains("evening")),
        "{prompts:?}"
    );
    assert!(
        prompts.iter().any(|t| t.contains("joyful") && t.contains("night")),
        "{prompts:?}"
    );
    assert!(
        prompts
            .iter()
            .all(|t| t.contains("a bus stop") && t.contains("slice of life"))
    );
    assert_ne!(tasks[0]["seed"], tasks[1]["seed"]);
    for scene in ["s01", "s02"] {
        let wav = p.path(&format!("out/ep01/{scene}/music.wav"));
        let (lufs, _) = common::media::loudness(&wav);
        assert!((lufs + 20.0).abs() < 1.0, "{scene}: {lufs} LUFS");
        // Exactly the scene's length: its video's frames at 1600 samples each.
        let frames = common::media::frame_count(&p.path(&format!("out/ep01/{scene}/video.mkv")));
        assert_eq!(samples(&wav), frames * 1600, "{scene}");
    }
    assert!(p.path("out/ep01/ep01.mp4").is_file());
    // Nothing changed: nothing asked again.
    let again = full(&p, &["ep01"]).ok();
    assert_eq!(again.total("failed"), 0);
    assert!(music_nodes(&again).iter().all(|n| n["status"] != "built"));
    assert_eq!(ace.tasks().len(), 2);
}

#[test]
fn a_job_that_never_completes_or_answers_no_audio_falls_back_to_procedural_music() {
    let comfy = comfy::Fake::start();
    // One scene's task never finishes; the other's "music" is not audio.
    let ace = Fake::start_with(Inject {
        never: true,
        not_audio_tasks: vec![1],
        ..Inject::default()
    });
    let p = on_fakes(TestProject::example("tiny"), &comfy.url, &ace.url, 2);
    let b = full(&p, &["ep01"]).ok();
    for n in music_nodes(&b) {
        assert_eq!(n["engine"], "procedural", "{n}");
    }
    // Each scene was asked once, not retried: both failures are permanent,
    // so the fallback plays at once.
    assert_eq!(ace.count("release_task"), 2, "{:?}", ace.requests());
    assert!(ace.count("query_result") >= 3, "the stuck one polled until the timeout");
    assert_eq!(ace.served().len(), 1, "only the finished one downloaded");
    assert!(p.path("out/ep01/ep01.mp4").is_file(), "the build still delivers");
}

#[test]
fn the_music_prompt_is_keyed_printed_by_graph_and_diffed_by_why() {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "characters:\n",
        "world:\n  music_style: lo-fi rain piano\n\ncharacters:\n",
    );
    let prompt_of = |p: &TestProject, profile: &str| -> Option<String> {
        let run = p.run(&["graph", "ep01", "--format", "json", "--profile", profile]);
        let g: Value = serde_json::from_str(&run.success().stdout).unwrap();
        let node = g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "scene_music:ep01/s01")
            .unwrap()
            .clone();
        node["prompt"].as_str().map(str::to_string)
    };
    let prompt = prompt_of(&p, "full").unwrap();
    for part in [
        "instrumental",
        "calm",
        "evening atmosphere",
        "a bus stop",
        "lo-fi rain piano",
    ] {
        assert!(prompt.contains(part), "{part} in {prompt}");
    }
    assert_eq!(prompt_of(&p, "animatic"), None, "procedural music reads no prompt");

    p.build(&[]).ok();
    p.edit("studio.yaml", "lo-fi rain piano", "brass band march");
    let why = p.run(&["why", "scene_music:ep01/s01", "--profile", "sim"]);
    why.success();
    assert!(why.stdout.contains("`prompt` changed"), "{}", why.stdout);
    let b = p.build(&[]).ok();
    assert!(b.built().contains("scene_music:ep01/s01"));
    assert!(
        !b.built()
            .iter()
            .any(|id| id.starts_with("shot_") || id.starts_with("voice_line")),
        "only the music and what it feeds: {:?}",
        b.built()
    );
}
