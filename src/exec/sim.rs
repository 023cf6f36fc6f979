//! The sim executor: sleeps a scaled expected duration and writes bytes
//! derived from what the real engine would depend on.
//!
//! It models the pipeline's timing too: a voice line lasts as long as its
//! words take to say, a shot stretches to fit its dialogue, a scene is as
//! long as its shots, an episode as its scenes minus the transitions. So the
//! whole graph, including duration-only edges, behaves as in a real build.
//!
//! Like a real engine it reports progress while it works (the fraction of
//! its sleep), and a stochastic engine reports the seed it used.
//!
//! With `check_hosts: true` in the profile's `simulate:`, sim checks that
//! the hosts answer: a job on a service host with a loopback `url:` first
//! opens a TCP connection to it through the job's client
//! ([`super::http::probe`]), so host pools,
//! cool-downs and retries on another host can be tried without services.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{ExecError, Job, Produced};
use crate::kind::NodeKind;
use crate::project::model::Simulate;
use crate::timing;

pub async fn run(job: &Job, sim: &Simulate, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    // Sim checks that the hosts answer: a host that refuses is a transient
    // failure of that host, as it would be for the real engine.
    if sim.check_hosts
        && let Some(service) = &job.service
    {
        tokio::select! {
            r = super::http::probe(service) => r?,
            () = cancel.cancelled() => return Err(ExecError::Cancelled),
        }
    }
    let duration = simulated_duration(job);
    let media = duration.unwrap_or(job.node.media_seconds);
    let seconds = job.engine.expected_seconds(media) * sim.time_scale;
    let sleep = Duration::try_from_secs_f64(seconds).map_err(|_| {
        ExecError::Permanent(format!(
            "{}: a simulated job of {seconds} s (media of {media} s, time_scale {}) is not a length of time",
            job.node.id, sim.time_scale
        ))
    })?;
    sleep_reporting(sleep, &job.progress, cancel).await?;
    for f in &sim.failures {
        let engine_matches = f.engine.as_deref().is_none_or(|e| e == job.engine.name);
        if job.node.id.starts_with(&f.node) && engine_matches {
            match f.transient {
                Some(n) if job.attempt >= n => {}
                Some(_) => {
                    return Err(ExecError::Transient(format!(
                        "simulated transient failure of {}",
                        job.engine.name
                    )));
                }
                None => {
                    return Err(ExecError::Permanent(format!(
                        "simulated failure of {}",
                        job.engine.name
                    )));
                }
            }
        }
    }
    if matches!(job.node.kind, NodeKind::Review | NodeKind::ShotReview) {
        return review(job, sim);
    }
    let identity = identity(job);
    let body = format!(
        "studio-sim {} {}\n{identity}\nduration={}\n",
        job.node.kind,
        job.engine.name,
        duration.map_or("-".into(), |d| format!("{d:.3}"))
    );
    let path = job.scratch.join(format!("out.{}", job.node.kind.extension()));
    std::fs::write(&path, body).map_err(|e| ExecError::Permanent(format!("writing {path}: {e}")))?;
    let mut metadata = super::Metadata::new();
    if let Some(seed) = job.material.seed {
        metadata.insert("seed".into(), seed.into());
    }
    Ok(Produced {
        files: vec![(job.node.kind.extension().to_string(), path)],
        duration,
        metadata,
    })
}

/// The simulated vision reviewer: scores derived from the reviewed
/// file's bytes ([`crate::review::sim_scores`]), or the profile's forced
/// outcome for this node (`simulate.reviews`), as `review.json` and the
/// manifest's `review` metadata.
fn review(job: &Job, sim: &Simulate) -> Result<Produced, ExecError> {
    use crate::review::{ReviewFile, Thresholds};
    let input = (job.inputs.iter())
        .find(|i| i.role == "image" || i.role == "video")
        .ok_or_else(|| ExecError::Permanent(format!("{} has nothing to review", job.node.id)))?;
    let bytes =
        std::fs::read(input.main()).map_err(|e| ExecError::Permanent(format!("reading {}: {e}", input.main())))?;
    let categories: Vec<String> = (job
        .node
        .params
        .get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten())
    .filter_map(|c| c.as_str().map(str::to_string))
    .collect();
    let mut scores = crate::review::sim_scores(&bytes, &categories);
    if job.node.kind == NodeKind::ShotReview {
        // Simulated shots pass the gate (every score at 0.55 or more)
        // unless a test forces an outcome.
        for x in [
            &mut scores.character_match,
            &mut scores.clarity,
            &mut scores.training_value,
        ] {
            *x = ((0.55 + 0.45 * *x) * 1000.0).round() / 1000.0;
        }
        scores.rejection_categories.clear();
    }
    let take = job.node.params.get("take").and_then(Value::as_u64);
    let forced = (sim.reviews.iter())
        .filter(|f| job.node.id.starts_with(&f.node))
        .find(|f| f.take.is_none_or(|t| Some(t) == take));
    if let Some(f) = forced {
        if !(0.0..=1.0).contains(&f.score) {
            return Err(ExecError::Permanent(format!(
                "simulate.reviews: score {} for `{}` is not in 0..1",
                f.score, f.node
            )));
        }
        if let Some(c) = f.categories.iter().find(|c| !categories.contains(c)) {
            return Err(ExecError::Permanent(format!(
                "simulate.reviews: `{c}` is not a rejection category of the rules ({})",
                categories.join(", ")
            )));
        }
        scores.character_match = f.score;
        scores.clarity = f.score;
        scores.training_value = f.score;
        scores.rejection_categories = f.categories.clone();
        if let Some(framing) = f.framing {
            scores.framing = framing;
        }
    }
    let thresholds = Thresholds {
        approve_at: param_f64(job, "approve_at").unwrap_or(0.92),
        reject_below: param_f64(job, "reject_below").unwrap_or(0.4),
    };
    if job.node.kind == NodeKind::ShotReview
        && let Some(message) = crate::graph::review::gate_failure(&job.node.path, &job.node.params, &scores)
    {
        return Err(ExecError::Permanent(message));
    }
    let file = ReviewFile {
        verdict: thresholds.verdict(&scores),
        image: input
            .outputs
            .first()
            .map_or_else(|| input.hash.clone(), |o| o.hash.to_string()),
        scores: Some(scores),
        unscored: None,
    };
    let path = job.scratch.join("review.json");
    let text = serde_json::to_string_pretty(&file).expect("a review serializes");
    std::fs::write(&path, text).map_err(|e| ExecError::Permanent(format!("writing {path}: {e}")))?;
    let mut metadata = super::Metadata::new();
    metadata.insert(
        "review".into(),
        serde_json::to_value(&file).expect("a review serializes"),
    );
    Ok(Produced {
        files: vec![("json".into(), path)],
        duration: None,
        metadata,
    })
}

/// Sleeps shorter than this report nothing.
const REPORTED_SLEEP: Duration = Duration::from_millis(500);

/// Sleep `total`; a long sleep reports the fraction slept ten times.
/// Deadlines are fixed at the start, so reporting never lengthens the job.
async fn sleep_reporting(
    total: Duration,
    progress: &super::JobProgress,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let start = tokio::time::Instant::now();
    let steps: u32 = if total < REPORTED_SLEEP { 1 } else { 10 };
    for step in 1..=steps {
        tokio::select! {
            () = tokio::time::sleep_until(start + total * step / steps) => {}
            () = cancel.cancelled() => return Err(ExecError::Cancelled),
        }
        if steps > 1 {
            progress.report(Some(f64::from(step) / f64::from(steps)), "simulating");
        }
    }
    Ok(())
}

/// What the real engine's output depends on. Speech engines read words,
/// not whitespace, so the text is normalized: re-spacing a line rebuilds its
/// voice to the same bytes, and the wave stops there (early cutoff).
fn identity(job: &Job) -> String {
    let mut material = job.material.clone();
    if job.node.kind == NodeKind::VoiceLine
        && let Some(Value::String(t)) = material.params.get("text")
    {
        let spoken = crate::text::normalize(t);
        material.params.insert("text".into(), Value::String(spoken));
    }
    // The engine that actually runs (a fallback differs from the chosen one).
    material.engine = job.engine.name.to_string();
    material.engine_version = job.engine.version;
    material.key()
}

fn param_f64(job: &Job, name: &str) -> Option<f64> {
    job.node.params.get(name).and_then(Value::as_f64)
}

fn sum_roles(job: &Job, prefix: &str) -> f64 {
    job.inputs
        .iter()
        .filter(|i| i.role.starts_with(prefix))
        .filter_map(|i| i.duration)
        .sum()
}

/// The media duration the real engine would produce.
fn simulated_duration(job: &Job) -> Option<f64> {
    let round = |d: f64| (d * 1000.0).round() / 1000.0;
    let d = match job.node.kind {
        NodeKind::VoiceLine => {
            let text = job.node.params.get("text").and_then(Value::as_str).unwrap_or("");
            // Text without spaces (Japanese): about three characters a word.
            let cjk = text.chars().filter(|c| !c.is_ascii()).count() / 3;
            let words = text.split_whitespace().count().max(cjk) as f64;
            0.35 + words * 0.38
        }
        NodeKind::RawVideo | NodeKind::RefinedVideo => param_f64(job, "duration")?,
        NodeKind::ShotVideo => {
            let voices: Vec<(&str, f64)> = job
                .inputs
                .iter()
                .filter(|i| i.role.contains("voice:"))
                .filter_map(|i| Some((i.role.as_str(), i.duration?)))
                .collect();
            let tracks = timing::speech_tracks(&voices);
            timing::seconds(timing::tracks_frames(param_f64(job, "duration")?, &tracks))
        }
        NodeKind::SceneMusic | NodeKind::SceneVideo | NodeKind::SceneMix => sum_roles(job, "shot:"),
        NodeKind::ShotSegment => {
            let shot = timing::frames(job.inputs.iter().find(|i| i.role == "shot")?.duration?);
            let frames = |prefix: &str| -> u64 {
                (job.inputs.iter())
                    .filter(|i| i.role.starts_with(prefix))
                    .filter_map(|i| i.duration.map(timing::frames))
                    .sum()
            };
            let [overlap_in, overlap_out] =
                ["overlap_in", "overlap_out"].map(|p| job.node.params.get(p).and_then(Value::as_u64).unwrap_or(0));
            let (head, tail) = timing::shot_cut(frames("before:"), shot, frames("after:"), overlap_in, overlap_out)?;
            timing::seconds(shot - head - tail)
        }
        NodeKind::Transition => timing::seconds(job.node.params.get("frames").and_then(Value::as_u64)?),
        NodeKind::EpisodeVideo => timing::seconds(
            job.inputs
                .iter()
                .filter(|i| i.role.starts_with("segment:") || i.role.starts_with("transition:"))
                .filter_map(|i| i.duration.map(timing::frames))
                .sum(),
        ),
        NodeKind::EpisodeAudio => {
            let lengths: Vec<u64> = job
                .inputs
                .iter()
                .filter(|i| i.role.starts_with("scene:"))
                .map(|i| timing::frames(i.duration.unwrap_or(0.0)))
                .collect();
            let overlap = timing::frames(param_f64(job, "transition_seconds").unwrap_or(0.4));
            let overlaps = vec![overlap; lengths.len().saturating_sub(1)];
            timing::seconds(timing::episode_frames(&lengths, &overlaps))
        }
        NodeKind::Episode => job.inputs.iter().find(|i| i.role == "video")?.duration?,
        NodeKind::Candidate
        | NodeKind::Review
        | NodeKind::ShotReview
        | NodeKind::CharacterRefs
        | NodeKind::ShotImage
        | NodeKind::LastFrame
        | NodeKind::Publish => return None,
    };
    Some(round(d))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::exec::JobProgress;

    fn collecting() -> (JobProgress, Arc<Mutex<Vec<f64>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        (JobProgress::new(move |f, _| g.lock().unwrap().push(f.unwrap())), got)
    }

    #[tokio::test]
    async fn a_long_sleep_reports_its_progress() {
        let (p, got) = collecting();
        sleep_reporting(REPORTED_SLEEP, &p, &CancellationToken::new())
            .await
            .unwrap();
        let got = got.lock().unwrap();
        assert!(got.len() >= 2, "several reports: {got:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "rising: {got:?}");
        assert!(got.iter().all(|f| *f > 0.0 && *f <= 1.0), "{got:?}");
    }

    #[tokio::test]
    async fn a_short_sleep_reports_nothing_and_a_cancelled_one_stops() {
        let (p, got) = collecting();
        sleep_reporting(Duration::from_millis(5), &p, &CancellationToken::new())
            .await
            .unwrap();
        assert!(got.lock().unwrap().is_empty());
        let cancel = CancellationToken::new();
        cancel.cancel();
        let r = sleep_reporting(Duration::from_secs(3600), &p, &cancel).await;
        assert!(matches!(r, Err(ExecError::Cancelled)), "{r:?}");
    }
}
