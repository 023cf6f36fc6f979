//! The review loop for real: `studio build --profile full` of the sample
//! with candidates made by the fake ComfyUI (tests/comfy/fake.rs) and
//! reviewed by the fake vision server (tests/vision) through the
//! `vision_review` engine, every other service at a closed port.
#![allow(clippy::disallowed_methods)] // the fake ComfyUI runs ffmpeg

#[path = "comfy/fake.rs"]
mod comfy;
mod common;
mod vision;

use common::{Build, TestProject};

const MODEL: &str = "gemma3:12b";

/// The sample with its ComfyUI executor at `comfy`, its Ollama executor
/// (the vision model's group) at `vision`, and the rest at a closed port.
fn project(comfy: &comfy::Fake, vision: &vision::Fake) -> TestProject {
    let p = TestProject::sample();
    let text = p.read("studio.yaml");
    let start = text.find("  - id: comfy-main").unwrap();
    let end = text[start..].find("  - id: ollama-local").unwrap() + start;
    let closed = format!("http://127.0.0.1:{}", common::servers::free_port());
    let mut out = String::from(&text[..start]);
    out.push_str(&format!(
        "  - id: comfy-0\n    kind: comfyui\n    url: {}\n    slots: 2\n    timeout: 60\n",
        comfy.url
    ));
    let mut in_ollama = false;
    for line in text[end..].lines() {
        if line.starts_with("  - id: ") {
            in_ollama = line.contains("ollama-local");
        }
        match line.split_once("url: http://") {
            Some((head, _)) if in_ollama => out.push_str(&format!("{head}url: {}\n", vision.url)),
            Some((head, _)) => out.push_str(&format!("{head}url: {closed}\n")),
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

/// The negative prompts of the txt2img prompts ComfyUI got, in queue order.
fn negatives(comfy: &comfy::Fake) -> Vec<String> {
    comfy
        .prompts()
        .iter()
        .filter_map(|p| {
            let p = p.get("prompt").unwrap_or(p);
            (p["3"]["class_type"] == "KSampler" && p["5"]["class_type"] == "EmptyLatentImage")
                .then(|| p["7"]["inputs"]["text"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// The three pools and one shot through the quality gate: the loop and
/// the gate, without filming the whole episode (minutes on CI's 2 cores).
const TARGETS: &[&str] = &[
    "characters/hana",
    "characters/ren",
    "characters/sayo",
    "shot_review:ep01/s01/sh01",
];

#[test]
fn the_pools_fill_in_two_rounds_and_round_two_avoids_round_one_rejections() {
    let comfy = comfy::Fake::start();
    let vision = vision::Fake::start(MODEL);
    let p = project(&comfy, &vision);
    let characters = 3;
    let per_round = 4;
    // Round 1: every candidate rejected for its anatomy; then everything passes.
    vision.script(|s| {
        s.plan = (0..characters * per_round)
            .map(|_| (0.2, Some("anatomy".to_string())))
            .collect();
        s.score = Some(0.95);
    });
    let first = full(&p, TARGETS).ok();
    assert_eq!(first.total("failed"), 0);
    let negs = negatives(&comfy);
    assert_eq!(
        negs.len(),
        2 * characters * per_round,
        "two rounds of candidates: {negs:#?}"
    );
    let terms = "bad anatomy, extra limbs, deformed hands";
    assert!(
        negs[..characters * per_round].iter().all(|n| !n.contains(terms)),
        "{negs:#?}"
    );
    assert!(
        negs[characters * per_round..].iter().all(|n| n.contains(terms)),
        "{negs:#?}"
    );
    // Every request carried one decodable image; the candidates were PNGs from ComfyUI.
    let seen = vision.seen();
    assert!(seen.iter().all(|s| s.images.len() == 1 && s.path == "/api/chat"));
    assert!(
        seen.len() > 2 * characters * per_round,
        "the quality gate reviewed shots too"
    );
    for who in ["hana", "ren", "sayo"] {
        let pool: serde_json::Value =
            serde_json::from_str(&p.read(&format!("out/characters/{who}/pool.json"))).unwrap();
        // Round 2's four approved images, none of round 1's rejected ones.
        assert_eq!(pool["rounds"], 2, "{who}: {pool}");
        assert_eq!(pool["images"].as_array().unwrap().len(), per_round, "{who}: {pool}");
        assert_eq!(pool["pending"], 0, "{who}: {pool}");
    }
    // A rebuild asks nobody anything.
    let again = full(&p, TARGETS).ok();
    assert_eq!(again.built().len(), 0, "{:?}", again.built());
    assert_eq!(vision.seen().len(), seen.len());
}
