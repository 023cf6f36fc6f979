//! The episode's picture in segments, each encoded once in the delivery
//! codec: a scene's frames between its transitions (`scene_segment`), each
//! crossfade on its own (`transition`), and the episode video as their
//! concatenation by stream copy (`episode_video`).
//!
//! A segment is its own H.264 encode, so it starts on an IDR frame and its
//! GOPs close inside it; the pieces join with the concat demuxer and `-c
//! copy`. The filters run on one thread and x264 on two sliced threads, so
//! a key always gives the same bytes; the segments of an episode also run
//! side by side in the CPU pool. Frame counts come from [`timing`] and are
//! checked on every piece and on the whole.

use camino::{Utf8Path, Utf8PathBuf};
use tokio_util::sync::CancellationToken;

use super::{
    PROGRESS_FILE, encode_reporting, exec, ffmpeg, input, param, param_str, permanent, produced, scratch, secs,
    video_frames, write, xfade_name,
};
use crate::exec::{ExecError, Job, JobInput, Produced};
use crate::timing;

/// The delivery encode: H.264 High, veryfast, CRF 20, a key frame at least
/// every 2 s. Two sliced threads (each frame cut in two slices coded side
/// by side): a one-scene edit's encode uses both cores, and the bytes stay
/// reproducible, which x264's default frame threads are not (measured:
/// three encodes of one input, two different files; sliced, four alike).
pub(super) const X264: [&str; 18] = [
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-crf",
    "20",
    "-profile:v",
    "high",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "60",
    "-threads",
    "2",
    "-x264-params",
    "sliced-threads=1",
    "-fflags",
    "+bitexact",
];

/// Options before the inputs: one filter thread, no stdin.
const SERIAL_FILTERS: [&str; 4] = ["-filter_threads", "1", "-filter_complex_threads", "1"];

/// Re-grid frames onto the 30 fps clock, one tick a frame (Matroska keeps
/// milliseconds), in the delivery pixel format.
fn regrid() -> String {
    format!("settb=1/{},setpts=N,format=yuv420p,setsar=1", timing::FPS)
}

/// A whole number param (frames).
fn frames_param(job: &Job, name: &str) -> Result<u64, ExecError> {
    param(job, name)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| permanent(format!("{}: the `{name}` param is missing", job.node.id)))
}

fn segment(out: Utf8PathBuf, frames: u64) -> Result<Produced, ExecError> {
    Ok(Produced {
        files: vec![("mp4".into(), out)],
        duration: Some(timing::seconds(frames)),
        metadata: crate::exec::Metadata::new(),
    })
}

/// Check an encoded segment is H.264 with exactly `frames` frames.
async fn check_segment(job: &Job, out: &Utf8Path, frames: u64, cancel: &CancellationToken) -> Result<(), ExecError> {
    produced(out, "ffmpeg")?;
    let (codec, made) = video_frames(job, out, cancel).await?;
    if codec != "h264" || made != frames {
        return Err(permanent(format!(
            "{}: the segment came out as {made} frames of {codec}, not {frames} frames of h264",
            job.node.id
        )));
    }
    Ok(())
}

/// The filter that keeps frames `[from, to)` of a scene and re-grids them.
pub(super) fn body_filter(from: u64, to: u64) -> String {
    format!("trim=start_frame={from}:end_frame={to},{}", regrid())
}

/// A scene between its transitions: its frames after the `head_frames`
/// the transition into it takes and before the `tail_frames` the one out
/// of it takes, in H.264. A middle scene no longer than its two
/// transitions has no frames of its own: its segment is an empty file.
pub async fn scene_segment(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let scene = input(job, "scene")?.main();
    let head = frames_param(job, "head_frames")?;
    let tail = frames_param(job, "tail_frames")?;
    let (_, frames) = video_frames(job, scene, cancel).await?;
    let body = frames.checked_sub(head + tail).ok_or_else(|| {
        permanent(format!(
            "{}: the scene is {frames} frames long, shorter than the {} frames its transitions overlap",
            job.node.id,
            head + tail
        ))
    })?;
    if body == 0 {
        let empty = write(job, "segment.mp4", "")?;
        return segment(empty, 0);
    }
    let out = scratch(job, "segment.mp4");
    let cmd = ffmpeg(job)?
        .args(SERIAL_FILTERS)
        .args(["-i", scene.as_str(), "-an", "-sn", "-vf"])
        .arg(body_filter(head, head + body))
        .args(X264)
        .args(["-frames:v".to_string(), body.to_string()])
        .args(["-progress", scratch(job, PROGRESS_FILE).as_str()])
        .arg(out.as_str());
    encode_reporting(job, &cmd, body, cancel).await?;
    check_segment(job, &out, body, cancel).await?;
    segment(out, body)
}

/// The filtergraph of a crossfade of `frames` frames: the first `frames`
/// of each input (the first input already seeked to the previous scene's
/// last `frames`), blended by `xfade` from its start.
pub(super) fn transition_graph(xfade: &str, frames: u64) -> String {
    let grid = regrid();
    format!(
        "[0:v]trim=end_frame={frames},{grid}[a];[1:v]trim=end_frame={frames},{grid}[b];\
         [a][b]xfade=transition={xfade}:duration={}:offset=0,{grid}[v]",
        secs(frames)
    )
}

/// Where to seek in a scene of `length` frames to start on its frame
/// `first`: half a frame early, so Matroska's millisecond timestamps
/// round onto the right frame (an input seek decodes from the key frame before it
/// and drops frames up to the seek point, so it lands exactly).
pub(super) fn seek_to(first: u64) -> Option<String> {
    (first > 0).then(|| format!("{:.6}", (first as f64 - 0.5) / timing::FPS as f64))
}

/// The crossfade into a scene: the `frames` last frames of the `from`
/// scene blended into the `frames` first frames of the `to` scene, drawn by
/// the `transition` word, in H.264.
pub async fn transition(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let word = param_str(job, "transition");
    let xfade = xfade_name(word).ok_or_else(|| {
        permanent(format!(
            "{}: unknown transition `{word}` (expected dissolve, fade, fadeblack or wipeleft)",
            job.node.id
        ))
    })?;
    let frames = frames_param(job, "frames")?;
    let from = input(job, "from")?.main();
    let to = input(job, "to")?.main();
    let (_, from_len) = video_frames(job, from, cancel).await?;
    let first = from_len.checked_sub(frames).filter(|_| frames > 0).ok_or_else(|| {
        permanent(format!(
            "{}: the scene before is {from_len} frames long, shorter than the {frames}-frame transition",
            job.node.id
        ))
    })?;
    let out = scratch(job, "transition.mp4");
    let mut cmd = ffmpeg(job)?.args(SERIAL_FILTERS);
    if let Some(at) = seek_to(first) {
        cmd = cmd.args(["-ss", &at]);
    }
    let cmd = cmd
        .args(["-i", from.as_str(), "-i", to.as_str()])
        .args(["-filter_complex", &transition_graph(xfade, frames)])
        .args(["-map", "[v]", "-an", "-sn"])
        .args(X264)
        .args(["-frames:v".to_string(), frames.to_string()])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    check_segment(job, &out, frames, cancel).await?;
    segment(out, frames)
}

/// The parts of the episode, in order: scene segments and transitions.
fn parts(job: &Job) -> Vec<&JobInput> {
    job.inputs
        .iter()
        .filter(|i| i.role.starts_with("scene:") || i.role.starts_with("transition:"))
        .collect()
}

/// The episode's picture: its segments joined by stream copy (the concat
/// demuxer), exactly the sum of their frames. Empty scene segments (a
/// scene that is all transition) are left out.
pub async fn episode_video(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let parts = parts(job);
    if parts.is_empty() {
        return Err(permanent("the episode has no video segments"));
    }
    let mut paths = Vec::new();
    let mut total = 0;
    for part in parts {
        let path = part.main();
        let expected = part
            .duration
            .map(timing::frames)
            .ok_or_else(|| permanent(format!("the segment {} has no recorded length", part.role)))?;
        if expected == 0 && std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            continue;
        }
        let (codec, frames) = video_frames(job, path, cancel).await?;
        if codec != "h264" || frames != expected || frames == 0 {
            return Err(permanent(format!(
                "the segment {} is {frames} frames of {codec}, not {expected} frames of h264",
                part.role
            )));
        }
        total += frames;
        paths.push(path.as_path());
    }
    let list = write(job, "segments.ffconcat", &crate::stages::mix::concat_list(paths))?;
    let out = scratch(job, "episode_video.mkv");
    let cmd = ffmpeg(job)?
        .args(["-f", "concat", "-safe", "0", "-i", list.as_str()])
        .args(["-map", "0:v:0", "-c", "copy", "-fflags", "+bitexact", out.as_str()]);
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    let (_, made) = video_frames(job, &out, cancel).await?;
    if made != total {
        return Err(permanent(format!(
            "the episode video came out {made} frames long instead of {total} (the sum of its segments)"
        )));
    }
    Ok(Produced {
        files: vec![("mkv".into(), out)],
        duration: Some(timing::seconds(total)),
        metadata: crate::exec::Metadata::new(),
    })
}
