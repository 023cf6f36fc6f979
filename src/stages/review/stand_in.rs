//! The review engines' fallbacks, for when no vision service answers:
//! `person` stands in for a candidate's review (no scores, verdict
//! `pending`: a person decides with `studio review`), and `structural`
//! for a shot's quality gate (the animatic's structural check: the video
//! reads, with the frames its length says).
//!
//! What they make is provisional when the vision engine was left for a
//! failure that may pass (unreachable, a 5xx): never uploaded, and made
//! again by the vision engine once its service answers.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{reviewed, write_json};
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::review::{ReviewFile, Verdict, unreachable_note};

fn hash_of(input: &crate::exec::JobInput) -> String {
    (input.outputs.first()).map_or_else(|| input.hash.clone(), |o| o.hash.to_string())
}

fn produced(job: &Job, name: &str, review: Value) -> Result<Produced, ExecError> {
    let out = write_json(job, name, &review)?;
    let mut metadata = Metadata::new();
    metadata.insert("review".into(), review);
    Ok(Produced {
        files: vec![("json".into(), out)],
        duration: None,
        metadata,
    })
}

/// `person`: a candidate's review with no scores, pending a person.
pub async fn person(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let image = reviewed(job, "image")?;
    let file = ReviewFile {
        scores: None,
        verdict: Verdict::Pending,
        image: hash_of(image),
        unscored: Some(unreachable_note(job.provisional.as_deref())),
    };
    produced(
        job,
        "review.json",
        serde_json::to_value(&file).expect("a review serializes"),
    )
}

/// `structural`: the gate without a vision model. The shot passes when
/// its video reads and has the frames its length says; a broken one fails
/// naming the shot, so the episode is not assembled from it.
pub async fn structural(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let video = reviewed(job, "video")?;
    let broken = |e: String| ExecError::Permanent(format!("shot {} is broken: {e}", job.node.path));
    let expected = match video.duration {
        Some(d) if d > 0.0 => crate::timing::frames(d),
        _ => return Err(broken("its video has no duration".into())),
    };
    let info = crate::stages::mix::probe_video(job, video.main(), cancel).await;
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let info = info.map_err(broken)?;
    crate::stages::mix::check_shot(&info, expected, None).map_err(broken)?;
    let review = json!({
        "verdict": Verdict::Approved.as_str(),
        "video": hash_of(video),
        "structural": {
            "codec": info.codec,
            "width": info.width,
            "height": info.height,
            "pix_fmt": info.pix_fmt,
            "frames": info.frames,
        },
        "unscored": unreachable_note(job.provisional.as_deref()),
    });
    produced(job, "shot_review.json", review)
}
