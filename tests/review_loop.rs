//! The review loop in the sim profile: rounds of candidates reviewed by the
//! simulated vision model (scores derived from the image bytes, some forced
//! through `simulate.reviews`), rejection terms carried into the next
//! round, people's decisions, and early cutoff after an approval.

mod common;

use std::collections::BTreeSet;

use common::{Build, TestProject};
use serde_json::Value;

const ANATOMY: &str = "bad anatomy, extra limbs, deformed hands";
const BLURRY: &str = "blurry, out of focus, motion blur";

/// The sample with a small loop (2 candidates a round, a pool of 2) and
/// Hana's first round forced: r1/1 rejected for anatomy, r1/2 in the band
/// (full body), every round-2 image approved (face).
fn looped() -> TestProject {
    let p = TestProject::sample();
    let rules = p
        .read("rules/images.yaml")
        .replace("pool_target: 4 ", "pool_target: 2 ")
        .replace("pool_minimum: 2 ", "pool_minimum: 1 ")
        .replace("candidates_per_round: 4", "candidates_per_round: 2");
    p.write("rules/images.yaml", &rules);
    force(
        &p,
        "        - {node: 'review:hana/r1/1', score: 0.2, categories: [anatomy]}\n\
         \x20       - {node: 'review:hana/r1/2', score: 0.91, framing: full_body}\n\
         \x20       - {node: 'review:hana/r2/', score: 0.95, framing: face}\n",
    );
    p
}

/// Add forced review outcomes (YAML list items) to the sim profile.
fn force(p: &TestProject, items: &str) {
    let text = p.read("studio.yaml");
    let at = text
        .find("      time_scale: 0\n")
        .expect("the sim profile's time scale")
        + "      time_scale: 0\n".len();
    p.write(
        "studio.yaml",
        &format!("{}      reviews:\n{items}{}", &text[..at], &text[at..]),
    );
}

/// Each node of `studio graph ep01 --format json --profile sim`, by id.
fn graph(p: &TestProject) -> std::collections::BTreeMap<String, Value> {
    let run = p.run(&["graph", "ep01", "--format", "json", "--profile", "sim"]);
    run.success();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let nodes = v.as_array().or_else(|| v["nodes"].as_array()).expect("a node list");
    nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

fn negative(g: &std::collections::BTreeMap<String, Value>, id: &str) -> String {
    g[id]["negative_prompt"].as_str().unwrap_or_default().to_string()
}

/// The image hash a review of `rel` (under out/characters/) names.
fn reviewed_image(p: &TestProject, rel: &str) -> String {
    let v: Value = serde_json::from_str(&p.read(&format!("out/characters/{rel}.json"))).unwrap();
    v["image"].as_str().unwrap().to_string()
}

/// A node's last record (a re-rolled shot's gate has one per take).
fn last<'b>(b: &'b Build, id: &str) -> &'b Value {
    b.nodes
        .iter()
        .rev()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

fn of_kind(b: &Build, kind: &str) -> BTreeSet<String> {
    b.built()
        .into_iter()
        .filter(|id| id.starts_with(&format!("{kind}:")))
        .collect()
}

#[test]
fn rounds_carry_rejection_terms_then_a_rebuild_is_a_no_op() {
    let p = looped();
    let first = p.build(&["ep01"]).ok();
    let built = first.built();
    for id in [
        "candidate:hana/r1/1",
        "review:hana/r1/2",
        "candidate:hana/r2/1",
        "review:hana/r2/2",
        "character_refs:hana",
    ] {
        assert!(built.contains(id), "{id} built: {built:?}");
    }
    // Round 2 filled Hana's pool: no third round.
    assert!(
        !built.iter().any(|id| id.starts_with("candidate:hana/r3/")),
        "{built:?}"
    );
    let pool: Value = serde_json::from_str(&p.read("out/characters/hana/pool.json")).unwrap();
    let rounds: BTreeSet<u64> = (pool["images"].as_array().unwrap().iter())
        .map(|i| i["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, BTreeSet::from([2]), "{pool}");
    assert_eq!(pool["pending"], 1, "r1/2 waits for a person: {pool}");

    // Round 2's negative prompt carries round 1's rejection, round 1's does not.
    let g = graph(&p);
    assert!(!negative(&g, "candidate:hana/r1/1").contains(ANATOMY));
    assert!(
        negative(&g, "candidate:hana/r2/1").contains(ANATOMY),
        "{}",
        negative(&g, "candidate:hana/r2/1")
    );

    // Shots take their source from the pool, and `why` names the choice.
    let chosen = (first.nodes.iter())
        .find(|n| n["kind"] == "shot_image" && n["metadata"]["source"] == "pool")
        .expect("a shot sourced from a pool");
    let why = p.run(&["why", chosen["id"].as_str().unwrap(), "--profile", "sim"]);
    assert!(why.success().stdout.contains("chosen"), "{}", why.stdout);

    let again = p.build(&["ep01"]).ok();
    assert_eq!(again.total("built"), 0, "a no-op: {:?}", again.built());
    assert_eq!(again.total("cached"), first.total("built"));
}

#[test]
fn a_loop_builds_times_count_from_the_builds_start_across_its_passes() {
    let p = looped().time_scale(0.0002);
    let b = p.build(&["ep01"]).ok();
    let at = |id: &str, what: &str| b.node(id)[what].as_f64().unwrap_or_else(|| panic!("{id} has {what}"));
    // Round 2 is made in a later pass than round 1's reviews: its job
    // starts after they end, on the same clock.
    let reviewed = at("review:hana/r1/2", "ended");
    let second = at("candidate:hana/r2/1", "started");
    assert!(
        second >= reviewed,
        "round 2 started at {second} s, round 1's review ended at {reviewed} s"
    );
    // The build's seconds cover every pass.
    let last = (b.nodes.iter()).filter_map(|n| n["ended"].as_f64()).fold(0.0, f64::max);
    let seconds = b.totals["seconds"].as_f64().unwrap();
    assert!(seconds >= last, "the build took {seconds} s, a job ended at {last} s");
}

#[test]
fn an_approval_rebuilds_the_pool_and_only_the_shots_whose_source_changed() {
    let p = looped();
    let first = p.build(&["ep01"]).ok();
    let image = reviewed_image(&p, "hana/reviews/r1-2");
    p.write(
        "approvals.yaml",
        &format!("hana:\n  - {{image: {image}, decision: approve}}\n"),
    );
    let second = p.build(&["ep01"]).ok();
    let built = second.built();
    assert!(built.contains("character_refs:hana"), "{built:?}");
    for kind in ["candidate", "review"] {
        assert!(of_kind(&second, kind).is_empty(), "no {kind} rebuilt: {built:?}");
    }
    assert_eq!(
        of_kind(&second, "character_refs"),
        BTreeSet::from(["character_refs:hana".to_string()]),
        "only Hana's pool keys on her decisions"
    );
    // Shots whose chosen image changed, and only those, are filmed again.
    let changed: BTreeSet<String> = (second.nodes.iter())
        .filter(|n| n["kind"] == "shot_image")
        .filter(|n| n["output"] != first.node(n["id"].as_str().unwrap())["output"])
        .map(|n| n["id"].as_str().unwrap().trim_start_matches("shot_image:").to_string())
        .collect();
    assert!(!changed.is_empty(), "the full-body image wins a wide shot");
    let filmed: BTreeSet<String> = of_kind(&second, "raw_video")
        .into_iter()
        .map(|id| id.trim_start_matches("raw_video:").to_string())
        .collect();
    assert_eq!(filmed, changed);
    // Only shots sourced from Hana's pool chose again; the rest kept their image.
    let pool: Value = serde_json::from_str(&p.read("out/characters/hana/pool.json")).unwrap();
    let hana: BTreeSet<&str> = (pool["images"].as_array().unwrap().iter())
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert!(
        hana.contains(image.as_str()),
        "the approved image is in the pool: {pool}"
    );
    let reselected: Vec<&Value> = (second.nodes.iter())
        .filter(|n| n["kind"] == "shot_image" && n["status"] == "built")
        .collect();
    // (A shot continuing from a re-filmed one takes its new last frame.)
    for n in reselected.iter().filter(|n| n["metadata"]["source"] == "pool") {
        let chosen = n["metadata"]["chosen"]["image"].as_str().unwrap_or_default();
        assert!(hana.contains(chosen), "{n}");
    }
    let shots = second.nodes.iter().filter(|n| n["kind"] == "shot_image").count();
    assert!(reselected.len() < shots, "other shots kept their source");
}

#[test]
fn a_rejection_with_a_category_adds_its_terms_to_the_next_round() {
    let p = looped();
    p.build(&["ep01"]).ok();
    let image = reviewed_image(&p, "hana/reviews/r1-2");
    p.write(
        "approvals.yaml",
        &format!(
            "# people's decisions\nhana:\n  - {{image: {}, decision: reject, category: blurry}}\n",
            &image[..16]
        ),
    );
    let why = p.run(&["why", "candidate:hana/r2/1", "--profile", "sim"]);
    assert!(why.success().stdout.contains("blurry"), "{}", why.stdout);
    let g = graph(&p);
    let terms = negative(&g, "candidate:hana/r2/1");
    assert!(terms.contains(ANATOMY) && terms.contains(BLURRY), "{terms}");
    assert!(!negative(&g, "candidate:hana/r1/1").contains(BLURRY));
    let b = p.build(&["ep01"]).ok();
    let candidates = of_kind(&b, "candidate");
    assert_eq!(
        candidates,
        BTreeSet::from(["candidate:hana/r2/1".to_string(), "candidate:hana/r2/2".to_string()])
    );
}

#[test]
fn rounds_spent_below_the_minimum_fail_naming_studio_review() {
    let p = TestProject::sample();
    let rules = p
        .read("rules/images.yaml")
        .replace("round_limit: 3", "round_limit: 1")
        .replace("candidates_per_round: 4", "candidates_per_round: 2");
    p.write("rules/images.yaml", &rules);
    // Ren's candidates all wait for a person; everyone else's are approved.
    force(
        &p,
        "        - {node: 'review:ren/', score: 0.6}\n\
         \x20       - {node: 'review:', score: 0.95}\n",
    );
    let b = Build::parse_run(p.run(&["build", "--json", "--profile", "sim", "ep01"]));
    assert_ne!(b.run.code, 0);
    let pool = b.node("character_refs:ren");
    assert_eq!(pool["status"], "failed");
    let error = pool["error"].as_str().unwrap();
    assert!(error.contains("studio review ren"), "{error}");
    assert!(error.contains("2 candidate(s) wait for a person"), "{error}");
    assert_eq!(b.node("episode:ep01")["status"], "skipped");
    assert_eq!(
        b.node("character_refs:hana")["status"],
        "built",
        "Hana's pool is at its minimum"
    );
    // Below target but at the minimum, a pool goes on and says who waits.
    assert!(
        b.run
            .stderr
            .contains("the pool of `hana` has 2 approved image(s) after 1 round(s)"),
        "{}",
        b.run.stderr
    );
}

#[test]
fn a_shot_below_the_gate_is_rerolled_then_reported_and_the_episode_is_not_assembled() {
    let p = TestProject::sample();
    // s01/sh01 fails its first take and passes its second; s01/sh02 fails
    // every take.
    force(
        &p,
        "        - {node: 'shot_review:ep01/s01/sh01', take: 1, score: 0.2}\n\
         \x20       - {node: 'shot_review:ep01/s01/sh01', score: 0.9}\n\
         \x20       - {node: 'shot_review:ep01/s01/sh02', score: 0.1}\n",
    );
    let b = Build::parse_run(p.run(&["build", "--json", "--profile", "sim", "ep01"]));
    assert_ne!(b.run.code, 0, "{}", b.run.stderr);
    assert_eq!(last(&b, "shot_review:ep01/s01/sh01")["status"], "built");
    // Takes 1 and 2 were reviewed, below the gate, then take 3 failed it.
    let takes = (b.nodes.iter())
        .filter(|n| n["id"] == "shot_review:ep01/s01/sh02")
        .count();
    assert_eq!(takes, 3, "one review per take");
    let gate = last(&b, "shot_review:ep01/s01/sh02");
    assert_eq!(gate["status"], "failed");
    let error = gate["error"].as_str().unwrap();
    assert!(
        error.contains("shot ep01/s01/sh02 failed the quality gate")
            && error.contains("at take 3, after 2 re-roll(s) from take 1"),
        "{error}"
    );
    // The failing shot's segment is not encoded (s01/sh02 lies under no
    // transition), so neither is the episode.
    for id in ["shot_segment:ep01/s01/sh02", "episode_video:ep01", "episode:ep01"] {
        assert_eq!(b.node(id)["status"], "skipped", "{id}");
    }
    assert!(!p.path("out/ep01/ep01.mp4").exists(), "no episode from a failing shot");

    // The re-rolls are derived from the cache: nothing is filmed again, and
    // the last take is judged (and reported) again.
    let again = Build::parse_run(p.run(&["build", "--json", "--profile", "sim", "ep01"]));
    assert_ne!(again.run.code, 0);
    assert_eq!(of_kind(&again, "raw_video"), BTreeSet::new());
    assert_eq!(last(&again, "shot_review:ep01/s01/sh02")["status"], "failed");
    // The passing shot's take 2 is found in the cache.
    assert_eq!(again.node("raw_video:ep01/s01/sh01")["status"], "cached");
}

#[test]
fn an_approval_that_fills_the_pool_earlier_keeps_the_rounds_already_made() {
    let p = looped();
    p.edit("rules/images.yaml", "pool_target: 2 ", "pool_target: 1 ");
    p.build(&["ep01"]).ok();
    let image = reviewed_image(&p, "hana/reviews/r1-2");
    p.write(
        "approvals.yaml",
        &format!("hana:\n  - {{image: {image}, decision: approve}}\n"),
    );
    let b = p.build(&["ep01"]).ok();
    assert!(of_kind(&b, "candidate").is_empty(), "{:?}", b.built());
    let pool: Value = serde_json::from_str(&p.read("out/characters/hana/pool.json")).unwrap();
    let rounds: Vec<u64> = (pool["images"].as_array().unwrap().iter())
        .map(|i| i["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds.len(), 3, "round 2's two images and the approved one: {pool}");
    assert_eq!(pool["rounds"], 2, "{pool}");
    assert_eq!(b.node("character_refs:hana")["metadata"]["approved"], 3);
}

#[test]
fn a_decision_about_a_later_rounds_candidate_is_no_unknown_hash() {
    // The build's session leaves the rounds to the build; the approvals
    // check must still see round 2's candidates, not round 1's alone.
    let p = looped();
    p.build(&["ep01"]).ok();
    let image = reviewed_image(&p, "hana/reviews/r2-1");
    p.write(
        "approvals.yaml",
        &format!("hana:\n  - {{image: {image}, decision: reject, category: blurry}}\n"),
    );
    let b = p.build(&["ep01"]).ok();
    assert!(b.built().contains("character_refs:hana"), "{:?}", b.built());
    let pool: Value = serde_json::from_str(&p.read("out/characters/hana/pool.json")).unwrap();
    assert!(
        !pool.to_string().contains(&image),
        "the rejected image left the pool: {pool}"
    );
}

#[test]
fn bad_loop_rules_are_refused_before_anything_is_built() {
    let p = TestProject::sample();
    p.edit("rules/images.yaml", "pool_minimum: 2 ", "pool_minimum: 9 ");
    let run = p.run(&["build", "ep01", "--profile", "sim"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("pool_minimum") && run.stderr.contains("rules/images.yaml"),
        "{}",
        run.stderr
    );
    assert!(!p.path("cache/ac").exists() || std::fs::read_dir(p.path("cache/ac")).unwrap().next().is_none());
}

#[test]
fn a_changed_forced_review_re_reviews_only_the_reviews_it_names() {
    let p = looped();
    p.edit(
        "studio.yaml",
        "      reviews:\n",
        "      reviews:\n        - {node: 'shot_review:ep01/s01/sh01', score: 0.9}\n",
    );
    p.build(&["ep01"]).ok();
    // Hana's r1/2 is still in the band, now framed as a face.
    p.edit(
        "studio.yaml",
        "{node: 'review:hana/r1/2', score: 0.91, framing: full_body}",
        "{node: 'review:hana/r1/2', score: 0.91, framing: face}",
    );
    let b = p.build(&["ep01"]).ok();
    assert_eq!(of_kind(&b, "review"), common::set(&["review:hana/r1/2"]));
    assert!(of_kind(&b, "candidate").is_empty(), "{:?}", b.built());
    assert!(of_kind(&b, "shot_review").is_empty(), "{:?}", b.built());
    // A gate's forced score: that shot's review only.
    p.edit(
        "studio.yaml",
        "{node: 'shot_review:ep01/s01/sh01', score: 0.9}",
        "{node: 'shot_review:ep01/s01/sh01', score: 0.8}",
    );
    let b = p.build(&["ep01"]).ok();
    assert_eq!(of_kind(&b, "shot_review"), common::set(&["shot_review:ep01/s01/sh01"]));
    assert!(of_kind(&b, "review").is_empty(), "{:?}", b.built());
    let again = p.build(&["ep01"]).ok();
    assert_eq!(again.total("built"), 0, "{:?}", again.built());
}

/// Everything a build may change: out/ and the cache's entries.
fn snapshot(p: &TestProject) -> (std::collections::BTreeMap<String, String>, usize) {
    let entries = walkdir(&p.path("cache/ac"));
    (p.tree("out"), entries)
}

fn walkdir(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { walkdir(&p) } else { 1 })
            .sum()
    })
}

#[test]
fn an_approvals_mistake_is_refused_located_at_build_time_and_nothing_changes() {
    let p = looped();
    p.build(&["ep01"]).ok();
    let before = snapshot(&p);
    let real = reviewed_image(&p, "hana/reviews/r1-2");
    let unknown = "ab".repeat(32);
    for (text, at, what) in [
        // A hash no candidate of Hana has, her candidates all known.
        (
            format!(
                "# decisions\nhana:\n  - {{image: {real}, decision: approve}}\n  - {{image: {unknown}, decision: approve}}\n"
            ),
            "approvals.yaml:4:",
            "no candidate of `hana` has an image hash",
        ),
        (
            format!("hana:\n  - {{image: {real}, decision: reject, category: ugly}}\n"),
            "approvals.yaml:2:",
            "`ugly` is not a rejection category",
        ),
        (
            "hana:\n  - {image: [unclosed\n".to_string(),
            "approvals.yaml:",
            "approvals.yaml",
        ),
    ] {
        p.write("approvals.yaml", &text);
        let r = p.run(&["build", "--json", "--profile", "sim", "ep01"]);
        assert_eq!(r.code, 2, "{text}: {}", r.stderr);
        assert!(r.stderr.contains(at) && r.stderr.contains(what), "{text}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing ran: {}", r.stdout);
        assert_eq!(snapshot(&p), before, "{text} changed something");
    }
    // The fix the unknown hash's diagnostic names.
    p.write("approvals.yaml", "# decisions\nhana:\n");
    assert_eq!(p.build(&["ep01"]).ok().total("built"), 0);
}

#[test]
fn on_a_fresh_cache_an_unknown_hash_stops_its_pool_once_the_candidates_are_made() {
    let p = looped();
    let unknown = "cd".repeat(32);
    p.write(
        "approvals.yaml",
        &format!("hana:\n  - {{image: {unknown}, decision: approve}}\n"),
    );
    let b = Build::parse_run(p.run(&["build", "--json", "--profile", "sim", "ep01"]));
    assert_ne!(b.run.code, 0);
    // The candidates and reviews are made (they do not depend on it)...
    assert_eq!(b.node("candidate:hana/r1/1")["status"], "built");
    assert_eq!(b.node("review:hana/r1/1")["status"], "built");
    // ...Hana's pool does not run without the decision, nor what needs it.
    let pool = b.node("character_refs:hana");
    assert_eq!(pool["status"], "failed");
    let error = pool["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("approvals.yaml:2: {unknown}")) && error.contains("studio review hana"),
        "{error}"
    );
    assert_eq!(b.node("episode:ep01")["status"], "skipped");
    // Now the candidates are known: the next build refuses before it starts.
    let r = p.run(&["build", "--profile", "sim", "ep01"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("approvals.yaml:2:"), "{}", r.stderr);
}
