//! The `vision_review` engines: a vision model scores one candidate image of
//! a character (a `review` node), or the key frames of a shot video (a
//! `shot_review` node, the quality gate: the weakest frame decides), through
//! the LLM protocols studio speaks ([`client`]). The contact sheet of
//! `studio review` is drawn here too ([`sheet`]).
//!
//! A review's output is `review.json`: the checked [`Scores`], the
//! automatic `verdict` and the reviewed file's content hash (`image`, or
//! `video` for a shot); the same object goes in the manifest metadata under
//! `review`, so reviews travel through the remote cache with their nodes.

pub mod client;
pub mod sheet;
pub mod stand_in;

use std::sync::Arc;

use camino::Utf8Path;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{asset, exec, ffmpeg, param, param_f64, param_str, probe_duration, produced, scratch};
use crate::exec::http::ServiceError;
use crate::exec::{ExecError, Job, JobInput, Metadata, Produced};
use crate::kind::NodeKind;
use crate::review::{Framing, Scores, Thresholds, Verdict};
use crate::write::client::CallError;
use client::{ReviewError, Vision};

/// The prompt template studio ships (a project's `vision_prompt` file wins).
pub const TEMPLATE: &str = include_str!("../../../rules/prompts/vision_review.j2");
/// Repairs after an invalid reply, unless the rule's `retries` says.
const RETRIES: u32 = 2;
/// Key frames a shot review scores, unless the rule's `key_frames` says.
const KEY_FRAMES: u32 = 3;
/// The most key frames a rule may ask for.
const MAX_KEY_FRAMES: u32 = 8;

fn permanent(msg: impl Into<String>) -> ExecError {
    ExecError::Permanent(msg.into())
}

/// The vision model of the job's host.
fn vision(job: &Job) -> Result<Vision, ExecError> {
    let (Some(host), Some(service)) = (&job.host, &job.service) else {
        return Err(permanent(format!(
            "{}: no vision host was given to the job",
            job.node.id
        )));
    };
    Vision::new(host, Arc::clone(service)).map_err(|e| ServiceError::new(host, e).into())
}

/// A failed review as the scheduler needs it: transient failures (refused,
/// timeouts, 5xx) are retried or moved to another host; the rest are final.
fn failed(job: &Job, e: ReviewError) -> ExecError {
    let host = job.host.as_ref().map_or("?", |h| h.id.as_str());
    match e {
        ReviewError::Call(CallError::Http(http)) => match &job.host {
            Some(h) => ServiceError::new(h, http).into(),
            None => permanent(http.to_string()),
        },
        ReviewError::Call(e) => permanent(format!("executor `{host}`: {e}")),
        e @ ReviewError::Invalid { .. } => permanent(format!("{}: the vision model on `{host}`: {e}", job.node.id)),
    }
}

/// The rules' closed list of rejection categories and each one's negative
/// terms (`categories: {NAME: "terms"}`), in the rules' order.
pub fn categories(job: &Job) -> Vec<(String, String)> {
    match param(job, "categories") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| (s.to_string(), String::new()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The prompt for one image of `subject` (`candidate` or `shot_frame`).
pub fn prompt(job: &Job, subject: &str) -> Result<String, ExecError> {
    let template = match asset(job, "vision_prompt")? {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| permanent(format!("cannot read {path}: {e}")))?,
        None => TEMPLATE.to_string(),
    };
    let ctx = json!({
        "subject": subject,
        "character": {
            "id": param_str(job, "character"),
            "name": param_str(job, "name"),
            "design_prompt": param_str(job, "design_prompt"),
            "appearance": param_str(job, "appearance"),
        },
        "categories": categories(job).iter().map(|(n, t)| json!({"name": n, "terms": t})).collect::<Vec<_>>(),
        "framings": Framing::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
    });
    render(&template, &ctx).map_err(|e| permanent(format!("{}: the vision prompt template: {e}", job.node.id)))
}

/// Render a vision prompt template (strict: an unknown variable is an error).
pub fn render(template: &str, ctx: &Value) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, ctx).map(|s| s.trim().to_string())
}

fn retries(job: &Job) -> u32 {
    param(job, "retries")
        .and_then(Value::as_u64)
        .map_or(RETRIES, |r| r.min(5) as u32)
}

/// The reviewed file: the input with role `role`, else the job's only input.
pub(super) fn reviewed<'a>(job: &'a Job, role: &str) -> Result<&'a JobInput, ExecError> {
    job.inputs
        .iter()
        .find(|i| i.role == role)
        .or(match job.inputs.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| permanent(format!("{} has no `{role}` input", job.node.id)))
}

/// Read a PNG for the model, bounded, and its content hash.
fn read_png(path: &Utf8Path) -> Result<(Vec<u8>, String), ExecError> {
    let size = std::fs::metadata(path)
        .map_err(|e| permanent(format!("cannot read {path}: {e}")))?
        .len();
    if size > client::MAX_IMAGE_BYTES as u64 {
        return Err(permanent(format!(
            "{path} is {size} bytes; a reviewed image is at most {} MiB",
            client::MAX_IMAGE_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| permanent(format!("cannot read {path}: {e}")))?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(permanent(format!("{path} is not a PNG file")));
    }
    let hash = blake3::hash(&bytes).to_hex().to_string();
    Ok((bytes, hash))
}

/// `review.json`'s object: the scores, the verdict, and more fields.
fn record(scores: &Scores, verdict: Verdict, more: Value) -> Value {
    let mut v = serde_json::to_value(scores).expect("scores serialize");
    v["verdict"] = json!(verdict.as_str());
    v["overall"] = json!(scores.overall());
    if let (Some(o), Value::Object(more)) = (v.as_object_mut(), more) {
        o.extend(more);
    }
    v
}

pub(super) fn write_json(job: &Job, name: &str, v: &Value) -> Result<camino::Utf8PathBuf, ExecError> {
    let out = scratch(job, name);
    let text = serde_json::to_string_pretty(v).expect("JSON serializes");
    std::fs::write(&out, text + "\n").map_err(|e| permanent(format!("writing {out}: {e}")))?;
    Ok(out)
}

/// The `vision_review` engines' run function: a candidate's review or a
/// shot's quality gate, by the node's kind.
pub async fn run(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    match job.node.kind {
        NodeKind::Review => candidate(job, cancel).await,
        NodeKind::ShotReview => shot(job, cancel).await,
        kind => Err(super::registry::no_executor(job.engine, kind)),
    }
}

/// A `review` node: the candidate image scored, the thresholds' verdict.
pub async fn candidate(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let vision = vision(job)?;
    let image = reviewed(job, "image")?;
    let (png, hash) = read_png(image.main())?;
    let cats = categories(job);
    let names: Vec<&str> = cats.iter().map(|(n, _)| n.as_str()).collect();
    let prompt = prompt(job, "candidate")?;
    job.progress.report(None, &format!("asking {}", vision.model));
    let (scores, tries) = client::review(&vision, &prompt, &[png], &names, retries(job))
        .await
        .map_err(|e| failed(job, e))?;
    let thresholds = Thresholds {
        approve_at: param_f64(job, "approve_at", 0.92),
        reject_below: param_f64(job, "reject_below", 0.4),
    };
    let verdict = thresholds.verdict(&scores);
    let review = record(&scores, verdict, json!({"image": hash, "model": vision.model}));
    let out = write_json(job, "review.json", &review)?;
    let mut metadata = Metadata::new();
    metadata.insert("review".into(), review);
    metadata.insert("requests".into(), json!(tries));
    Ok(Produced {
        files: vec![("json".into(), out)],
        duration: None,
        metadata,
    })
}

/// Where the key frames of a `seconds`-long video are taken: the middles
/// of `n` equal parts (never the first or last frame, which fades and
/// continuity frames make unrepresentative).
pub fn key_times(seconds: f64, n: u32) -> Vec<f64> {
    let n = n.clamp(1, MAX_KEY_FRAMES);
    (0..n)
        .map(|i| (seconds * (f64::from(i) + 0.5) / f64::from(n) * 1000.0).round() / 1000.0)
        .collect()
}

/// A `shot_review` node, the quality gate: key frames of the shot video
/// extracted with ffmpeg, each scored; the weakest frame's scores decide
/// against the rules' `gate_threshold`.
pub async fn shot(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let vision = vision(job)?;
    let video = reviewed(job, "video")?;
    let seconds = match video.duration {
        Some(d) if d > 0.0 => d,
        _ => probe_duration(job, video.main(), cancel).await?,
    };
    let n = param(job, "key_frames")
        .and_then(Value::as_u64)
        .map_or(KEY_FRAMES, |k| k.min(u64::from(MAX_KEY_FRAMES)) as u32);
    let cats = categories(job);
    let names: Vec<&str> = cats.iter().map(|(n, _)| n.as_str()).collect();
    let prompt = prompt(job, "shot_frame")?;
    let video_hash = crate::cache::index::hash_file(video.main())
        .map_err(|e| permanent(format!("cannot read {}: {e}", video.main())))?;
    let times = key_times(seconds, n);
    let mut frames: Vec<(f64, Scores)> = Vec::new();
    let mut requests = 0;
    for (i, t) in times.iter().enumerate() {
        job.progress.report(
            Some(i as f64 / times.len() as f64),
            &format!("frame {} of {}", i + 1, times.len()),
        );
        let frame = scratch(job, &format!("frame-{i}.png"));
        let cmd = ffmpeg(job)?
            .args(["-ss", &format!("{t:.3}"), "-i", video.main().as_str()])
            .args(["-frames:v", "1", "-fflags", "+bitexact"])
            .arg(frame.as_str());
        exec(job, &cmd, cancel).await?;
        produced(&frame, "ffmpeg")?;
        let (png, _) = read_png(&frame)?;
        let (scores, tries) = client::review(&vision, &prompt, &[png], &names, retries(job))
            .await
            .map_err(|e| failed(job, e))?;
        requests += tries;
        frames.push((*t, scores));
    }
    let (weakest, (_, worst)) = frames
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.1.overall().total_cmp(&b.1.1.overall()))
        .ok_or_else(|| permanent(format!("{}: no key frame to review", job.node.id)))?;
    // The last take allowed fails the gate here, naming the shot (earlier
    // takes are re-rolled by the build).
    if let Some(message) = crate::graph::review::gate_failure(&job.node.path, &job.node.params, worst) {
        return Err(permanent(message));
    }
    let gate = param_f64(job, "gate_threshold", 0.6);
    let verdict = if worst.overall() >= gate {
        Verdict::Approved
    } else {
        Verdict::Rejected
    };
    let overalls: Vec<Value> = frames
        .iter()
        .map(|(t, s)| json!({"t": t, "overall": s.overall()}))
        .collect();
    let summary = record(
        worst,
        verdict,
        json!({"video": video_hash, "model": vision.model, "gate_threshold": gate, "weakest": weakest, "frames": overalls}),
    );
    let mut full = summary.clone();
    full["frames"] = json!(
        frames
            .iter()
            .map(|(t, s)| {
                let mut v = serde_json::to_value(s).expect("scores serialize");
                v["t"] = json!(t);
                v["overall"] = json!(s.overall());
                v
            })
            .collect::<Vec<_>>()
    );
    let out = write_json(job, "shot_review.json", &full)?;
    let mut metadata = Metadata::new();
    metadata.insert("review".into(), summary);
    metadata.insert("requests".into(), json!(requests));
    Ok(Produced {
        files: vec![("json".into(), out)],
        duration: None,
        metadata,
    })
}

/// A review's outcome read back from its `review.json` or manifest
/// metadata, checked again (the remote cache is not trusted either).
pub fn read_review(v: &Value, categories: &[&str]) -> Result<(Scores, Verdict), String> {
    let mut fields = v.as_object().ok_or("a review is a JSON object")?.clone();
    let verdict = match fields.remove("verdict").as_ref().and_then(Value::as_str) {
        Some("approved") => Verdict::Approved,
        Some("rejected") => Verdict::Rejected,
        Some("pending") => Verdict::Pending,
        _ => return Err("a review's `verdict` is approved, rejected or pending".into()),
    };
    fields.retain(|k, _| {
        matches!(
            k.as_str(),
            "character_match" | "clarity" | "training_value" | "framing" | "rejection_categories" | "notes"
        )
    });
    let scores = client::check(&Value::Object(fields).to_string(), categories).map_err(|p| p.join("; "))?;
    Ok((scores, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frames_are_the_middles_of_equal_parts() {
        assert_eq!(key_times(3.0, 3), vec![0.5, 1.5, 2.5]);
        assert_eq!(key_times(4.0, 1), vec![2.0]);
        assert_eq!(key_times(1.0, 0), vec![0.5], "at least one frame");
        assert_eq!(key_times(8.0, 100).len(), MAX_KEY_FRAMES as usize);
    }

    #[test]
    fn the_shipped_template_renders_with_and_without_a_character() {
        let ctx = json!({
            "subject": "candidate",
            "character": {"id": "aiko", "name": "Aiko", "design_prompt": "red scarf, short black hair", "appearance": ""},
            "categories": [{"name": "bad_hands", "terms": "bad hands, extra fingers"}],
            "framings": ["full_body", "upper_body", "face"],
        });
        let text = render(TEMPLATE, &ctx).unwrap();
        assert!(text.contains("Aiko (aiko)") && text.contains("red scarf"), "{text}");
        assert!(text.contains("- bad_hands: bad hands, extra fingers"), "{text}");
        assert!(text.contains("full_body, upper_body, face"), "{text}");
        assert!(!text.contains("Appearance:"), "an empty appearance is left out: {text}");
        let mut shot = ctx.clone();
        shot["subject"] = json!("shot_frame");
        shot["character"]["name"] = json!("");
        let text = render(TEMPLATE, &shot).unwrap();
        assert!(
            text.contains("a frame of an animated shot") && !text.contains("The character is"),
            "{text}"
        );
        // A template naming what the context lacks is an error, not a blank.
        assert!(render("{{ nope }}", &ctx).is_err());
    }

    #[test]
    fn a_review_read_back_is_checked_again() {
        let s = Scores {
            character_match: 0.9,
            clarity: 0.95,
            training_value: 0.93,
            framing: Framing::Face,
            rejection_categories: vec![],
            notes: "ok".into(),
        };
        let v = record(&s, Verdict::Pending, json!({"image": "ab"}));
        assert_eq!(v["overall"], json!(0.9));
        assert_eq!(read_review(&v, &["blurry"]).unwrap(), (s, Verdict::Pending));
        let mut bad = v.clone();
        bad["clarity"] = json!(7);
        assert!(read_review(&bad, &["blurry"]).is_err());
        let mut bad = v;
        bad["verdict"] = json!("maybe");
        assert!(read_review(&bad, &["blurry"]).is_err());
    }
}
