//! `studio build --profile full` against fake ComfyUI hosts: the sample
//! episode end to end, the tiny example for edits, fallbacks, a 400, a
//! bad binding and Ctrl-C.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::common::{Build, TestProject, signal_group};
use super::fake::{Fake, Inject, count};

/// A closed loopback port: no server there.
fn closed() -> String {
    format!("http://127.0.0.1:{}", super::common::servers::free_port())
}

/// `p` with its ComfyUI executors at `hosts` and every other service at a
/// closed port (and no review loop).
pub fn on_hosts(p: TestProject, hosts: &[&Fake]) -> TestProject {
    p.without_review_loop();
    let text = p.read("studio.yaml");
    let start = text.find("  - id: comfy-main").unwrap();
    let end = text[start..].find("  - id: ollama-local").unwrap() + start;
    let mut comfy = String::new();
    for (i, h) in hosts.iter().enumerate() {
        comfy.push_str(&format!(
            "  - id: comfy-{i}\n    kind: comfyui\n    url: {}\n    slots: 1\n    timeout: 60\n",
            h.url
        ));
    }
    let mut out = String::new();
    for line in text[..start].lines().chain(comfy.lines()).chain(text[end..].lines()) {
        match line.split_once("url: http://127.0.0.1:") {
            Some((head, _)) if !hosts.iter().any(|h| line.contains(&h.url)) => {
                out.push_str(&format!("{head}url: {}\n", closed()));
            }
            _ => out.push_str(&format!("{line}\n")),
        }
    }
    p.write("studio.yaml", &out);
    p
}

pub fn full(p: &TestProject, args: &[&str]) -> Build {
    let mut all = vec!["build", "--json", "--profile", "full"];
    all.extend_from_slice(args);
    Build::parse_run(p.run(&all))
}

fn engine(b: &Build, id: &str) -> String {
    b.node(id)["metadata"]["engine"].as_str().unwrap_or("").to_string()
}

fn built_of(b: &Build, kind: &str) -> BTreeSet<String> {
    b.built()
        .into_iter()
        .filter(|id| id.starts_with(&format!("{kind}:")))
        .collect()
}

#[test]
fn the_sample_episode_builds_on_two_fake_hosts_and_rebuilds_nothing() {
    let (a, b) = (Fake::start(), Fake::start());
    let p = on_hosts(TestProject::sample(), &[&a, &b]);
    let first = full(&p, &["ep01"]).ok();
    assert_eq!(first.total("failed"), 0);
    let (na, nb) = (a.prompts().len(), b.prompts().len());
    assert!(na > 0 && nb > 0, "both hosts used: {na} and {nb}");
    let hosts: BTreeSet<String> = first
        .nodes
        .iter()
        .filter_map(|n| n["metadata"]["executor"].as_str().map(str::to_string))
        .filter(|e| e.starts_with("comfy-"))
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    // Every ComfyUI engine of the map ran for real.
    let engines: BTreeSet<String> = first
        .nodes
        .iter()
        .map(|n| engine(&first, n["id"].as_str().unwrap()))
        .collect();
    for e in [
        "comfyui_txt2img",
        "wan_t2v",
        "framepack_i2v",
        "framepack_v2v",
        "rife_esrgan",
        "pool_select",
    ] {
        assert!(engines.contains(e), "{e} in {engines:?}");
    }
    // What the video workflows were sent: the style's negative prompt (as
    // txt2img's), and FramePack's length from the shot in whole sections
    // of 1.2 s (latent_window_size 9), not the workflow's 4 s.
    let prompts: Vec<serde_json::Value> = a.prompts().into_iter().chain(b.prompts()).collect();
    let of = |class: &str| -> Vec<&serde_json::Value> {
        (prompts.iter())
            .filter(|p| p.as_object().unwrap().values().any(|n| n["class_type"] == class))
            .collect()
    };
    let negative = &of("CheckpointLoaderSimple")[0]["7"]["inputs"]["text"];
    assert!(negative.as_str().is_some_and(|t| t.contains("lowres")), "{negative}");
    for class in ["UNETLoader", "FramePackSampler"] {
        let sent = of(class);
        assert!(!sent.is_empty(), "a {class} workflow ran");
        assert!(
            sent.iter().all(|p| p["7"]["inputs"]["text"] == *negative),
            "{class}: {sent:?}"
        );
    }
    for p in of("FramePackSampler") {
        let seconds = p["9"]["inputs"]["total_second_length"].as_f64().unwrap();
        let sections = seconds / 1.2;
        assert!(
            (sections - sections.round()).abs() < 1e-6 && sections >= 1.0,
            "{seconds}"
        );
    }
    // Voices and music fell back to the offline engines.
    assert!(
        first
            .nodes
            .iter()
            .filter(|n| n["kind"] == "voice_line")
            // The Japanese dub's lines have their own chain (Kokoro, here).
            .filter(|n| !n["id"].as_str().unwrap().ends_with(".ja"))
            .all(|n| n["metadata"]["engine"] == "espeak")
    );
    assert!(
        first
            .nodes
            .iter()
            .filter(|n| n["kind"] == "scene_music")
            .all(|n| n["metadata"]["engine"] == "procedural")
    );
    // The delivery passes the checks the animatic's does (media-report,
    // when the workspace has it; a bare clone checks the streams itself).
    let episode = p.path("out/ep01/ep01.mp4");
    let tool = std::path::Path::new(super::common::REPO).join("../shared/tools/media-report");
    if tool.is_file() {
        let report = super::common::media::media_report(&tool, &episode);
        assert_eq!(report["video"]["codec"], "h264", "{report}");
        assert_eq!(report["video"]["fps"], 30.0, "{report}");
        assert_eq!(report["audio"]["codec"], "aac", "{report}");
        assert!(report["av_drift_ms"].as_f64().unwrap() < 40.0, "{report}");
        let lufs = report["audio"]["integrated_lufs"].as_f64().unwrap();
        assert!((lufs + 16.0).abs() <= 1.0, "{report}");
        assert_eq!(report["chapters"], 4, "{report}");
    } else {
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(&episode)
            .output()
            .unwrap();
        let codecs = String::from_utf8_lossy(&probe.stdout);
        assert!(codecs.contains("h264") && codecs.contains("aac"), "{codecs}");
    }
    // The unreachable voice server is skipped with one warning, not waited for.
    assert_eq!(
        first.run.stderr.matches("warning: executor `tts-local`").count(),
        1,
        "{}",
        first.run.stderr
    );
    assert!(p.path("out/ep01/ep01.srt").is_file());
    let again = full(&p, &["ep01"]).ok();
    assert_eq!(again.total("built"), 0, "{:?}", again.built());
    assert_eq!(
        (a.prompts().len(), b.prompts().len()),
        (na, nb),
        "a no-op rebuild sends nothing"
    );
}

/// `ep01/s01/sh01` of every shot `who` appears in.
fn shots_with(p: &TestProject, who: &str) -> BTreeSet<String> {
    let ep: serde_json::Value = serde_saphyr::from_str(&p.read("episodes/ep01.yaml")).unwrap();
    let mut out = BTreeSet::new();
    for scene in ep["scenes"].as_array().unwrap() {
        for shot in scene["shots"].as_array().unwrap() {
            if shot["characters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["id"] == who)
            {
                out.insert(format!(
                    "ep01/{}/{}",
                    scene["id"].as_str().unwrap(),
                    shot["id"].as_str().unwrap()
                ));
            }
        }
    }
    out
}

#[test]
fn edits_rebuild_what_they_touch() {
    let (a, b) = (Fake::start(), Fake::start());
    let p = on_hosts(TestProject::example("tiny"), &[&a, &b]);
    let first = full(&p, &["ep01"]).ok();
    assert_eq!(first.total("failed"), 0);
    // Continuity: s01/sh02 (Mio alone) starts from s01/sh01's last frame,
    // uploaded as the source image of its FramePack I2V workflow.
    assert_eq!(
        first.node("shot_image:ep01/s01/sh02")["metadata"]["source"],
        "continuity"
    );
    assert_eq!(
        first.node("raw_video:ep01/s01/sh02")["metadata"]["engine"],
        "framepack_i2v"
    );
    let uploads = count(&a.log(), "POST /upload/image") + count(&b.log(), "POST /upload/image");
    assert!(uploads > 0);

    // A character's design prompt: its art and the shots it appears in.
    let design = p.read("studio.yaml");
    let line = design
        .lines()
        .find(|l| l.contains("design_prompt"))
        .unwrap()
        .to_string();
    p.edit("studio.yaml", &line, &format!("{line}, silver hairpin"));
    let edit = full(&p, &["ep01"]).ok();
    let refs = built_of(&edit, "character_refs");
    assert_eq!(refs.len(), 1, "{refs:?}");
    let who = refs
        .iter()
        .next()
        .unwrap()
        .trim_start_matches("character_refs:")
        .to_string();
    let with = shots_with(&p, &who);
    assert!(!with.is_empty());
    let raws = built_of(&edit, "raw_video");
    for shot in &with {
        assert!(
            raws.contains(&format!("raw_video:{shot}")),
            "{shot} has {who}: {raws:?}"
        );
    }
    assert!(built_of(&edit, "voice_line").is_empty(), "no voice re-made");

    // A take re-rolls one shot.
    let action = "        action: Mio smiles confidently.\n";
    p.edit("episodes/ep01.yaml", action, &format!("{action}        take: 2\n"));
    let take = full(&p, &["ep01"]).ok();
    let raws = built_of(&take, "raw_video");
    assert_eq!(raws, BTreeSet::from(["raw_video:ep01/s01/sh02".to_string()]));
    assert_ne!(
        take.node("raw_video:ep01/s01/sh02")["metadata"]["seed"],
        first.node("raw_video:ep01/s01/sh02")["metadata"]["seed"]
    );

    // A changed workflow file rebuilds exactly the nodes of its engine.
    let wf = p.read("rules/workflows/framepack_v2v.json");
    p.write(
        "rules/workflows/framepack_v2v.json",
        &wf.replace("\"steps\": 25", "\"steps\": 26"),
    );
    let v2v = full(&p, &["ep01"]).ok();
    let rebuilt = built_of(&v2v, "refined_video");
    let of_engine: BTreeSet<String> = v2v
        .nodes
        .iter()
        .filter(|n| n["kind"] == "refined_video" && n["metadata"]["engine"] == "framepack_v2v")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!of_engine.is_empty());
    assert_eq!(rebuilt, of_engine);
    assert!(built_of(&v2v, "raw_video").is_empty());
}

#[test]
fn out_of_memory_falls_back_to_the_raw_video_and_a_400_to_the_drawn_card() {
    let oom = Fake::start_with(Inject {
        oom_class: Some("FramePackSampler".into()),
        reject: Some(("4".into(), "ckpt_name".into())),
        ..Inject::default()
    });
    let p = on_hosts(TestProject::example("tiny"), &[&oom]);
    let b = full(&p, &["ep01"]).ok();
    let refined: Vec<_> = b.nodes.iter().filter(|n| n["kind"] == "refined_video").collect();
    assert!(!refined.is_empty());
    assert!(
        refined.iter().all(|n| n["metadata"]["engine"] == "passthrough"),
        "{refined:?}"
    );
    let raw: Vec<_> = b.nodes.iter().filter(|n| n["kind"] == "raw_video").collect();
    assert!(raw.iter().all(|n| n["metadata"]["engine"] == "wan_t2v"), "{raw:?}");
    // The references fell back to the drawn card (the driver records the
    // engine used; the 400's own message is tested on the client).
    assert!(
        b.nodes
            .iter()
            .filter(|n| n["kind"] == "character_refs")
            .all(|n| n["metadata"]["engine"] == "character_card")
    );
    assert!(
        oom.prompts()
            .iter()
            .all(|p| p["4"]["class_type"] != "CheckpointLoaderSimple"),
        "the 400 queued nothing"
    );
}

#[test]
fn a_binding_to_a_missing_input_is_a_located_error() {
    let p = TestProject::example("tiny");
    p.edit("rules/video.yaml", "seed: 5.seed,", "seed: 5.sed,");
    let run = p.run(&["status", "--profile", "full"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for part in [
        "rules/video.yaml:",
        "input `sed` on node 5 (KSampler)",
        "rules/workflows/wan_t2v.json",
        "that node's inputs",
    ] {
        assert!(run.stderr.contains(part), "{part} in {}", run.stderr);
    }
    p.edit("rules/video.yaml", "seed: 5.sed,", "seed: 55.seed,");
    let run = p.run(&["status", "--profile", "full"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("node 55"), "{}", run.stderr);
}

#[test]
fn ctrl_c_during_a_comfyui_job_interrupts_it_and_keeps_nothing_half_written() {
    let slow = Fake::start_with(Inject {
        step: Some(Duration::from_millis(500)),
        ..Inject::default()
    });
    let p = on_hosts(TestProject::example("tiny"), &[&slow]);
    let child = p.spawn_group(&["build", "--profile", "full", "ep01"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&slow.log(), "POST /prompt") == 0 {
        assert!(Instant::now() < deadline, "no prompt sent: {:?}", slow.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700));
    signal_group(child.id(), "-INT");
    let run = super::common::wait_within(child, Duration::from_secs(60));
    assert_ne!(run.code, 0);
    let log = slow.log();
    assert!(
        count(&log, "POST /interrupt") + count(&log, "POST /queue") >= 1,
        "{log:?}"
    );
    if std::fs::read_dir(p.path("cache/objects")).is_ok_and(|mut d| d.next().is_some()) {
        p.assert_cache_sound();
    }
    let tmp = p.path("cache/tmp");
    assert!(
        !tmp.exists() || std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "nothing half-written left in cache/tmp"
    );
    // The interrupted prompt never became an output.
    let interrupted: Vec<_> = log.iter().filter(|l| l.starts_with("POST /interrupt")).collect();
    assert!(interrupted.iter().all(|l| l.contains("prompt_id")), "{interrupted:?}");
}

#[test]
fn a_host_that_goes_down_mid_build_is_set_aside_and_its_jobs_run_elsewhere() {
    let mut down = Fake::start_with(Inject {
        step: Some(Duration::from_millis(300)),
        ..Inject::default()
    });
    let up = Fake::start();
    let p = on_hosts(TestProject::example("tiny"), &[&down, &up]);
    let child = p.spawn_group(&["build", "--json", "--profile", "full", "ep01"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&down.log(), "POST /prompt") == 0 {
        assert!(Instant::now() < deadline, "no prompt sent to the first host");
        std::thread::sleep(Duration::from_millis(50));
    }
    down.stop();
    let run = super::common::wait_within(child, Duration::from_secs(600));
    let b = Build::parse_run(run).ok();
    assert_eq!(b.total("failed"), 0);
    let comfy: Vec<_> = b
        .nodes
        .iter()
        .filter(|n| {
            n["metadata"]["executor"]
                .as_str()
                .is_some_and(|e| e.starts_with("comfy-"))
        })
        .collect();
    assert!(!comfy.is_empty());
    assert!(
        comfy.iter().all(|n| n["metadata"]["executor"] == "comfy-1"),
        "every ComfyUI node made on the host that stayed up"
    );
    assert!(
        b.run.stderr.contains("comfy-0"),
        "the host going down is reported: {}",
        b.run.stderr
    );
}

#[test]
fn the_prompt_is_built_from_the_screenplay_printed_by_graph_and_diffed_by_why() {
    let p = TestProject::example("tiny");
    let run = p.run(&["graph", "ep01", "--format", "json", "--profile", "full"]);
    run.success();
    let g: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let node = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "raw_video:ep01/s01/sh01")
        .unwrap();
    let prompt = node["prompt"].as_str().unwrap();
    for part in [
        "wide shot",
        "kai on the left",
        "mio on the right",
        "clothing: yellow raincoat",
        "rainy bus stop",
    ] {
        assert!(prompt.contains(part), "{part} in {prompt}");
    }
    // The style's negative prompt goes to the video workflows that bind
    // one (Wan, FramePack, LTX), the image workflow's too.
    let negative = |id: &str| {
        let n = g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap();
        n["negative_prompt"].clone()
    };
    assert_eq!(node["negative_prompt"], "lowres, bad anatomy, watermark", "{node}");
    // The review loop's first round of character art: the style's negative alone.
    assert_eq!(negative("candidate:kai/r1/1"), node["negative_prompt"]);
    let refined: Vec<&serde_json::Value> = (g["nodes"].as_array().unwrap().iter())
        .filter(|n| n["kind"] == "refined_video" && n["engine"] == "framepack_v2v")
        .collect();
    assert!(!refined.is_empty());
    assert!(
        refined.iter().all(|n| n["negative_prompt"] == node["negative_prompt"]),
        "{refined:?}"
    );
    // Nodes whose engines bind none key on none.
    let shot = negative("shot_video:ep01/s01/sh01");
    assert!(shot.is_null(), "{shot}");
    // The animatic sends no prompt.
    let run = p.run(&["graph", "ep01", "--format", "json"]);
    assert!(!run.stdout.contains("\"prompt\": \""), "{}", run.stdout);

    p.build(&[]).ok();
    // Kai's state in the first scene (the second scene has its own).
    let ep = p.read("episodes/ep01.yaml");
    p.write(
        "episodes/ep01.yaml",
        &ep.replacen("clothing: yellow raincoat", "clothing: torn yellow raincoat", 1),
    );
    let why = p.run(&["why", "raw_video:ep01/s01/sh01", "--profile", "sim"]);
    why.success();
    assert!(why.stdout.contains("prompt"), "{}", why.stdout);
    assert!(why.stdout.contains("torn yellow raincoat"), "{}", why.stdout);
}

#[test]
fn a_dry_run_prints_the_prompt_each_comfyui_node_will_send() {
    let p = TestProject::example("tiny");
    p.edit(
        "studio.yaml",
        "characters:\n",
        "world:\n  art_style: ink wash cel shading\n\ncharacters:\n",
    );
    let run = p.run(&["build", "-n", "--profile", "full"]);
    let out = &run.success().stdout;
    // The plan line of a ComfyUI node, then its prompt indented under it.
    let lines: Vec<&str> = out.lines().collect();
    let prompts: Vec<(&str, &str)> = lines
        .windows(2)
        .filter_map(|w| w[1].strip_prefix("    prompt: ").map(|p| (w[0], p)))
        .collect();
    assert!(!prompts.is_empty(), "no prompt in the plan:\n{out}");
    let (node, prompt) = prompts
        .iter()
        .find(|(_, p)| p.contains("1girl, long brown hair, blue umbrella"))
        .unwrap_or_else(|| panic!("no prompt with a design prompt:\n{out}"));
    assert!(prompt.contains("ink wash cel shading"), "{prompt}");
    assert!(!node.starts_with(' '), "the prompt follows its node's line: {node}");
    // Only nodes with a workflow carry one: the animatic plan has none.
    let animatic = p.run(&["build", "-n", "--profile", "animatic"]);
    assert!(
        !animatic.success().stdout.contains("    prompt: "),
        "{}",
        animatic.stdout
    );
}
