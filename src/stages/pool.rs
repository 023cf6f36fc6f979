//! `review_pool`: a character's approved pool (`character_refs` in the
//! review loop) from its candidates' reviews and the people's decisions.
//!
//! Writes `pool.json` ([`PoolFile`]: each approved image with its scores,
//! brightness and who approved it) and the approved images, each as
//! `<hash12>.png`. Fails, naming `studio review`, when fewer than
//! `pool_minimum` images are approved once the rounds are spent.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{exec, ffmpeg, inputs_with, scratch};
use crate::exec::{ExecError, Job, JobInput, Metadata, Produced};
use crate::graph::review::{Decisions, PoolFile, PoolImage, Reviewed, decided};
use crate::review::{ReviewFile, Verdict};

/// The most images a pool keeps (a node has at most 16 outputs, one is
/// `pool.json`): the best by score when more are approved.
pub const MAX_POOL: usize = 15;
/// The largest `review.json` read.
const MAX_REVIEW_BYTES: u64 = 64 << 10;

fn permanent(msg: impl Into<String>) -> ExecError {
    ExecError::Permanent(msg.into())
}

/// Read and check one review (the cache's, but checked like any input).
fn read_review(input: &JobInput) -> Result<ReviewFile, ExecError> {
    let path = input.main();
    let size = std::fs::metadata(path)
        .map_err(|e| permanent(format!("reading {path}: {e}")))?
        .len();
    if size > MAX_REVIEW_BYTES {
        return Err(permanent(format!("{path}: a review of {size} bytes is too large")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| permanent(format!("reading {path}: {e}")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| permanent(format!("{path}: not a review: {e}")))?;
    ReviewFile::parse(&v).map_err(|e| permanent(format!("{path}: not a review: {e}")))
}

/// Mean luma of an image in 0..1: ffmpeg scales it to one gray pixel.
async fn brightness(job: &Job, image: &JobInput, cancel: &CancellationToken) -> Result<f64, ExecError> {
    if job.simulate.is_some() {
        let bytes = std::fs::read(image.main()).map_err(|e| permanent(format!("reading {}: {e}", image.main())))?;
        return Ok(crate::review::sim_brightness(&bytes));
    }
    let out = scratch(job, &format!("luma-{}.raw", image.role.replace(['/', ':'], "-")));
    let cmd = ffmpeg(job)?
        .args(["-i", image.main().as_str(), "-frames:v", "1"])
        .args(["-vf", "scale=1:1:flags=area,format=gray", "-f", "rawvideo"])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    let bytes = std::fs::read(&out).map_err(|e| permanent(format!("reading {out}: {e}")))?;
    std::fs::remove_file(&out).ok();
    match bytes.as_slice() {
        [luma] => Ok(f64::from(*luma) / 255.0),
        _ => Err(permanent(format!("ffmpeg measured no brightness of {}", image.main()))),
    }
}

fn count(job: &Job, name: &str) -> usize {
    job.node.params.get(name).and_then(Value::as_u64).unwrap_or(0) as usize
}

pub async fn review_pool(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let character = job.node.params.get("character").and_then(Value::as_str).unwrap_or("");
    // approvals.yaml names an image none of the candidates has (found once
    // the build made them): the pool does not run without that decision.
    if let Some(refused) = job.node.params.get("refused").and_then(Value::as_str) {
        return Err(permanent(refused));
    }
    let decisions: Decisions = job
        .node
        .params
        .get("decisions")
        .map(|d| serde_json::from_value(d.clone()))
        .transpose()
        .map_err(|e| permanent(format!("{}: bad decisions: {e}", job.node.id)))?
        .unwrap_or_default();
    let candidates: BTreeMap<&str, &JobInput> = inputs_with(job, "candidate:")
        .map(|i| (i.role.trim_start_matches("candidate:"), i))
        .collect();
    let mut approved: Vec<(Reviewed, &JobInput, &'static str)> = Vec::new();
    let mut pending = 0;
    // Why candidates went unscored (the vision service was out of reach).
    let mut unscored: BTreeMap<String, usize> = BTreeMap::new();
    for input in inputs_with(job, "review:") {
        let role = input.role.trim_start_matches("review:");
        let image = candidates
            .get(role)
            .ok_or_else(|| permanent(format!("{}: review {role} has no candidate", job.node.id)))?;
        let file = read_review(input)?;
        let hash = image.outputs.first().map(|o| o.hash.to_string()).unwrap_or_default();
        if file.image != hash {
            return Err(permanent(format!(
                "{}: review {role} is of another image than its candidate",
                job.node.id
            )));
        }
        let (round, index) = role
            .trim_start_matches('r')
            .split_once('/')
            .and_then(|(r, i)| Some((r.parse().ok()?, i.parse().ok()?)))
            .ok_or_else(|| permanent(format!("{}: `{role}` is not a round/index", job.node.id)))?;
        let reviewed = Reviewed {
            round,
            index,
            image: hash,
            scores: file.scores,
            verdict: file.verdict,
        };
        if let Some(why) = &file.unscored
            && !decisions.contains_key(&reviewed.image)
        {
            *unscored.entry(why.clone()).or_default() += 1;
        }
        let by = if decisions.contains_key(&reviewed.image) {
            "person"
        } else {
            "auto"
        };
        match decided(&reviewed, &decisions).0 {
            Verdict::Approved => approved.push((reviewed, image, by)),
            Verdict::Pending => pending += 1,
            Verdict::Rejected => {}
        }
    }
    let minimum = count(job, "pool_minimum");
    if approved.len() < minimum {
        let rounds = count(job, "rounds");
        let had = approved.len();
        return Err(permanent(if unscored.is_empty() {
            format!(
                "the pool of `{character}` has {had} approved image(s) after {rounds} round(s), fewer than pool_minimum {minimum}; {pending} candidate(s) wait for a person: run `studio review {character}` and approve or reject them, or raise round_limit in rules/images.yaml"
            )
        } else {
            let why: Vec<String> = unscored.iter().map(|(why, n)| format!("{n} with {why}")).collect();
            format!(
                "the pool of `{character}` has {had} approved image(s) after {rounds} round(s), fewer than pool_minimum {minimum}, and no vision model scored its candidates ({}): {pending} candidate(s) wait for a person: run `studio review {character}` and approve at least {} of them, or start the vision service and build again (what was built is kept)",
                why.join(", "),
                minimum - had,
            )
        }));
    }
    // The best first (a person's unscored approval after every scored
    // one); a stable order by hash among equals.
    let overall = |r: &Reviewed| r.scores.as_ref().map_or(-1.0, |s| s.overall());
    approved.sort_by(|a, b| {
        overall(&b.0)
            .total_cmp(&overall(&a.0))
            .then_with(|| a.0.image.cmp(&b.0.image))
    });
    approved.truncate(MAX_POOL);
    let mut images = Vec::new();
    let mut files = Vec::new();
    for (r, input, by) in &approved {
        let suffix = format!("{}.png", &r.image[..12.min(r.image.len())]);
        let out = scratch(job, &suffix);
        std::fs::copy(input.main(), &out).map_err(|e| permanent(format!("copying {}: {e}", input.main())))?;
        images.push(PoolImage {
            image: r.image.clone(),
            file: suffix.clone(),
            round: r.round,
            index: r.index,
            scores: r.scores.clone(),
            brightness: brightness(job, input, cancel).await?,
            decided_by: (*by).to_string(),
        });
        files.push((suffix, out));
    }
    let pool = PoolFile {
        character: character.to_string(),
        images,
        pending,
        rounds: count(job, "rounds") as u32,
    };
    let path = scratch(job, "pool.json");
    let text = serde_json::to_string_pretty(&pool).expect("a pool serializes");
    std::fs::write(&path, text).map_err(|e| permanent(format!("writing {path}: {e}")))?;
    files.insert(0, ("json".into(), path));
    let mut metadata = Metadata::new();
    metadata.insert("approved".into(), json!(pool.images.len()));
    metadata.insert("pending".into(), json!(pending));
    metadata.insert("rounds".into(), json!(pool.rounds));
    Ok(Produced {
        files,
        duration: None,
        metadata,
    })
}
