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
    on_hosts(&[comfy], 2, Some(&vision.url))
}

/// The sample with one ComfyUI executor per host of `comfy` (`slots`
/// each), its Ollama executor at `vision` (a closed port when `None`), and
/// every other service at a closed port.
fn on_hosts(comfy: &[&comfy::Fake], slots: usize, vision: Option<&str>) -> TestProject {
    let p = TestProject::sample();
    let text = p.read("studio.yaml");
    let start = text.find("  - id: comfy-main").unwrap();
    let end = text[start..].find("  - id: ollama-local").unwrap() + start;
    let closed = format!("http://127.0.0.1:{}", common::servers::free_port());
    let mut out = String::from(&text[..start]);
    for (i, c) in comfy.iter().enumerate() {
        out.push_str(&format!(
            "  - id: comfy-{i}\n    kind: comfyui\n    url: {}\n    slots: {slots}\n    timeout: 60\n",
            c.url
        ));
    }
    let vision = vision.map_or(closed.clone(), str::to_string);
    let mut in_ollama = false;
    for line in text[end..].lines() {
        if line.starts_with("  - id: ") {
            in_ollama = line.contains("ollama-local");
        }
        match line.split_once("url: http://") {
            Some((head, _)) if in_ollama => out.push_str(&format!("{head}url: {vision}\n")),
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

/// The image hash Hana's review `r1-N` names (its copy under out/).
fn reviewed_image(p: &TestProject, n: u32) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&p.read(&format!("out/characters/hana/reviews/r1-{n}.json"))).unwrap();
    v["image"].as_str().unwrap().to_string()
}

/// `studio.yaml` with the Ollama executor (the vision group) at `url`.
fn point_vision_at(p: &TestProject, url: &str) {
    let text = p.read("studio.yaml");
    let at = text.find("  - id: ollama-local").unwrap();
    let from = text[at..].find("url: ").unwrap() + at + "url: ".len();
    let to = text[from..].find('\n').unwrap() + from;
    p.write("studio.yaml", &format!("{}{url}{}", &text[..from], &text[to..]));
}

/// A shot of Hana's alone.
const GATE: &str = "shot_review:ep01/s01/sh02";

#[test]
fn without_a_vision_service_people_decide_then_the_reviews_are_redone_when_it_is_back() {
    let comfy = comfy::Fake::start();
    let p = on_hosts(&[&comfy], 2, None);
    p.edit(
        "rules/images.yaml",
        "candidates_per_round: 4",
        "candidates_per_round: 2",
    );
    let first = full(&p, &["characters/hana"]);
    assert_ne!(first.run.code, 0, "{}", first.run.stderr);
    let stderr = &first.run.stderr;
    // One warning for the vision group, no host set aside to wait for.
    assert_eq!(
        stderr.matches("warning: executor `ollama-local`").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("is set aside"), "{stderr}");
    for i in 1..=2 {
        let r = first.node(&format!("review:hana/r1/{i}"));
        assert_eq!(r["status"], "built", "{r}");
        assert_eq!(r["metadata"]["engine"], "person", "{r}");
        assert_eq!(r["provisional"], true, "{r}");
        let review = &r["metadata"]["review"];
        assert_eq!(review["verdict"], "pending", "{r}");
        assert_eq!(
            review["unscored"], "no vision service: `ollama-local` unreachable",
            "{r}"
        );
        assert!(review.get("character_match").is_none(), "no scores: {r}");
    }
    // Nothing was learnt, so no second round was made.
    assert!(!first.nodes.iter().any(|n| n["id"] == "candidate:hana/r2/1"));
    let pool = first.node("character_refs:hana");
    assert_eq!(pool["status"], "failed");
    let error = pool["error"].as_str().unwrap();
    for part in [
        "`ollama-local` unreachable",
        "2 candidate(s) wait for a person",
        "`studio review hana`",
    ] {
        assert!(error.contains(part), "{part}: {error}");
    }
    let prompts = negatives(&comfy).len();
    assert_eq!(prompts, 2, "round 1's candidates only");

    // `studio review` lists them unscored and draws them.
    let listing = p.run(&["review", "hana", "--profile", "full"]);
    listing.success();
    assert!(
        listing
            .stdout
            .contains("2 with no score (no vision service: `ollama-local` unreachable)"),
        "{}",
        listing.stdout
    );
    assert!(p.path("out/review/hana.png").is_file());
    let (h1, h2) = (reviewed_image(&p, 1), reviewed_image(&p, 2));
    p.run(&["review", "--profile", "full", "approve", &h1[..16], &h2[..16]])
        .success();
    // Her pool goes on with the two, and a shot of hers passes the gate's
    // structural check (the vision service is still out of reach).
    let second = full(&p, &["characters/hana", GATE]).ok();
    assert_eq!(
        second.run.stderr.matches("warning: executor `ollama-local`").count(),
        1,
        "{}",
        second.run.stderr
    );
    let gate = second.node(GATE);
    assert_eq!(
        (&gate["metadata"]["engine"], &gate["provisional"]),
        (&"structural".into(), &true.into()),
        "{gate}"
    );
    assert_eq!(gate["metadata"]["review"]["verdict"], "approved", "{gate}");
    assert_eq!(second.node("character_refs:hana")["status"], "built");
    assert_eq!(second.node("character_refs:hana")["metadata"]["approved"], 2);
    assert!(
        second.run.stderr.contains("2 approved image(s) after 1 round(s)")
            && second.run.stderr.contains("no vision service answered"),
        "{}",
        second.run.stderr
    );
    assert_eq!(negatives(&comfy).len(), prompts, "no new candidates");

    // The vision service is back: the provisional reviews are redone (the
    // candidates are not), and the loop goes on from real scores.
    let vision = vision::Fake::start(MODEL);
    vision.script(|s| s.score = Some(0.95));
    point_vision_at(&p, &vision.url);
    let third = full(&p, &["characters/hana", GATE]).ok();
    let gate = third.node(GATE);
    assert_eq!(gate["metadata"]["engine"], "vision_review", "{gate}");
    assert!(gate.get("provisional").is_none(), "{gate}");
    for i in 1..=2 {
        let r = third.node(&format!("review:hana/r1/{i}"));
        assert_eq!(
            (&r["status"], &r["metadata"]["engine"]),
            (&"built".into(), &"vision_review".into()),
            "{r}"
        );
        assert!(r.get("provisional").is_none(), "{r}");
        assert_eq!(third.node(&format!("candidate:hana/r1/{i}"))["status"], "cached");
    }
    assert!(vision.seen().len() >= 2);
    let again = full(&p, &["characters/hana", GATE]).ok();
    assert_eq!(again.total("built"), 0, "{:?}", again.built());
}

/// Issue 12's acceptance with the loop: the whole sample episode on two
/// fake ComfyUI hosts and the fake vision server, no TTS or music server
/// (about 2.5 minutes on a quiet 2-core machine; `--nocapture` prints where
/// the time goes): `cargo test --test review_full -- --nocapture whole_episode`.
#[test]
fn the_whole_episode_on_two_hosts_with_the_vision_server() {
    let (a, b) = (comfy::Fake::start(), comfy::Fake::start());
    let vision = vision::Fake::start(MODEL);
    let p = on_hosts(&[&a, &b], 1, Some(&vision.url));
    vision.script(|s| {
        s.plan = (0..12).map(|_| (0.2, Some("anatomy".to_string()))).collect();
        s.score = Some(0.95);
    });
    let began = std::time::Instant::now();
    let first = full(&p, &["ep01"]).ok();
    let took = began.elapsed();
    let (na, nb) = (a.prompts().len(), b.prompts().len());
    eprintln!(
        "whole episode: {:.1} s, {} nodes built, prompts on the hosts: {na} and {nb}, vision requests: {}",
        took.as_secs_f64(),
        first.total("built"),
        vision.seen().len()
    );
    // Where the time goes: per kind (and engine), the jobs, their seconds,
    // and when the first started and the last ended.
    let mut by_kind: std::collections::BTreeMap<String, (usize, f64, f64, f64)> = Default::default();
    for n in &first.nodes {
        if let (Some(s), Some(e)) = (n["started"].as_f64(), n["ended"].as_f64()) {
            let name = format!(
                "{} {}",
                n["kind"].as_str().unwrap_or("?"),
                n["metadata"]["engine"].as_str().unwrap_or("?")
            );
            let k = by_kind.entry(name).or_insert((0, 0.0, f64::MAX, 0.0));
            k.0 += 1;
            k.1 += e - s;
            k.2 = k.2.min(s);
            k.3 = k.3.max(e);
        }
    }
    for (kind, (n, secs, from, to)) in &by_kind {
        eprintln!("{kind:<36} {n:>3} jobs {secs:>7.1} s of jobs, from {from:>6.1} s to {to:>6.1} s");
    }
    eprintln!("{}", first.run.stderr);
    assert!(na > 0 && nb > 0, "both hosts used: {na} and {nb}");
    for who in ["hana", "ren", "sayo"] {
        let pool: serde_json::Value =
            serde_json::from_str(&p.read(&format!("out/characters/{who}/pool.json"))).unwrap();
        assert!(pool["rounds"].as_u64().unwrap() >= 2, "{who}: {pool}");
    }
    // Both audio tracks (the sample carries a Japanese dub) meet the
    // delivery targets, each with its subtitles; media-report measures each
    // where the workspace has it.
    let episode = p.path("out/ep01/ep01.mp4");
    let problems = common::media::audio_track_problems(&episode, &["eng", "jpn"]);
    assert!(problems.is_empty(), "{problems:#?}");
    let tool = std::path::Path::new(common::REPO).join("../shared/tools/media-report");
    if tool.is_file() {
        let report = common::media::media_report(&tool, &episode);
        eprintln!("media-report: {report}");
        assert_eq!(report["video"]["codec"], "h264", "{report}");
        assert_eq!(report["chapters"], 4, "{report}");
    }
    let seen = vision.seen().len();
    let began = std::time::Instant::now();
    let again = full(&p, &["ep01"]).ok();
    eprintln!("rebuild: {:.1} s", began.elapsed().as_secs_f64());
    assert_eq!(again.total("built"), 0, "{:?}", again.built());
    assert_eq!(
        (a.prompts().len(), b.prompts().len(), vision.seen().len()),
        (na, nb, seen)
    );
}
