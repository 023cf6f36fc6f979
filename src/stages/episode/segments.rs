//! The episode's picture in segments, each encoded once in the delivery
//! codec: a shot's frames less those its scene's transitions take
//! (`shot_segment`), each crossfade on its own (`transition`, from the shots
//! it overlaps), and the episode video as their concatenation by stream copy
//! (`episode_video`). A shot edit re-encodes that shot, and a transition
//! only when the shot lies under it.
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
    PROGRESS_FILE, encode_reporting, exec, ffmpeg, input, inputs_with, param, param_str, permanent, probe_stream,
    produced, scratch, secs, video_frames, write, xfade_name,
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

/// The filter that keeps frames `[from, to)` of a shot and re-grids them.
pub(super) fn body_filter(from: u64, to: u64) -> String {
    format!("trim=start_frame={from}:end_frame={to},{}", regrid())
}

/// The frames of the inputs whose role starts with `prefix`, from their
/// recorded lengths (a shot's neighbours, read for their timing only).
fn recorded_frames(job: &Job, prefix: &str) -> Result<u64, ExecError> {
    inputs_with(job, prefix)
        .map(|i| {
            i.duration
                .map(timing::frames)
                .ok_or_else(|| permanent(format!("{}: the input {} has no recorded length", job.node.id, i.role)))
        })
        .sum()
}

/// The frames of a shot video, checked against its recorded length: the
/// quality gate the scene video applies, where the episode reads the shot.
async fn shot_frames(job: &Job, shot: &JobInput, cancel: &CancellationToken) -> Result<u64, ExecError> {
    let which = match shot.role.as_str() {
        "shot" => String::new(),
        role => format!(" `{role}`"),
    };
    let broken = |e: String| permanent(format!("{}: the shot video{which} is broken: {e}", job.node.id));
    let (_, frames) = video_frames(job, shot.main(), cancel).await.map_err(|e| match e {
        ExecError::Cancelled => ExecError::Cancelled,
        e => broken(e.to_string()),
    })?;
    match shot.duration.map(timing::frames) {
        Some(expected) if expected != frames => Err(broken(format!("{frames} frames, expected {expected}"))),
        _ => Ok(frames),
    }
}

/// A shot less what the transitions take, in H.264: its frames after the
/// transition into its scene (`overlap_in` frames from the scene's start,
/// the `before:` shots' lengths ahead of it) and before the one out of it
/// (`overlap_out`, the `after:` shots behind it); [`timing::shot_cut`]. A
/// shot wholly under a transition has no frames of its own: its segment is
/// an empty file.
pub async fn shot_segment(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let shot = input(job, "shot")?;
    let overlap_in = frames_param(job, "overlap_in")?;
    let overlap_out = frames_param(job, "overlap_out")?;
    let before = recorded_frames(job, "before:")?;
    let after = recorded_frames(job, "after:")?;
    let frames = shot_frames(job, shot, cancel).await?;
    let (head, tail) = timing::shot_cut(before, frames, after, overlap_in, overlap_out).ok_or_else(|| {
        permanent(format!(
            "{}: the scene is shorter than the {overlap_in} + {overlap_out} frames its transitions overlap \
             (they meet in this shot of {frames} frames)",
            job.node.id
        ))
    })?;
    let body = frames - head - tail;
    if body == 0 {
        let empty = write(job, "segment.mp4", "")?;
        return segment(empty, 0);
    }
    let out = scratch(job, "segment.mp4");
    let cmd = ffmpeg(job)?
        .args(SERIAL_FILTERS)
        .args(["-i", shot.main().as_str(), "-an", "-sn", "-vf"])
        .arg(body_filter(head, head + body))
        .args(X264)
        .args(["-frames:v".to_string(), body.to_string()])
        .args(["-progress", scratch(job, PROGRESS_FILE).as_str()])
        .arg(out.as_str());
    encode_reporting(job, &cmd, body, cancel).await?;
    check_segment(job, &out, body, cancel).await?;
    segment(out, body)
}

/// One side of a crossfade: `count` inputs from `first` on, joined, their
/// first `frames` frames re-gridded into `[label]`. One input is trimmed
/// alone; several are concatenated in the filter first.
fn transition_side(label: &str, first: usize, count: usize, frames: u64) -> String {
    let grid = regrid();
    if count == 1 {
        return format!("[{first}:v]trim=end_frame={frames},{grid}[{label}];");
    }
    let mut graph = String::new();
    let mut joined = String::new();
    for i in 0..count {
        graph.push_str(&format!("[{}:v]{grid}[{label}{i}];", first + i));
        joined.push_str(&format!("[{label}{i}]"));
    }
    graph.push_str(&format!(
        "{joined}concat=n={count}:v=1:a=0,trim=end_frame={frames},{grid}[{label}];"
    ));
    graph
}

/// The filtergraph of a crossfade of `frames` frames: the `from` inputs
/// (the first already seeked to the previous scene's last `frames`) and
/// the `to` inputs after them, each side joined and cut to `frames`,
/// blended by `xfade` from its start.
pub(super) fn transition_graph(xfade: &str, from: usize, to: usize, frames: u64) -> String {
    format!(
        "{}{}[a][b]xfade=transition={xfade}:duration={}:offset=0,{}[v]",
        transition_side("a", 0, from, frames),
        transition_side("b", from, to, frames),
        secs(frames),
        regrid()
    )
}

/// Where to seek in a shot to start on its frame `first`: half a frame
/// early, so Matroska's millisecond timestamps round onto the right frame
/// (an input seek decodes from the key frame before it and drops frames up
/// to the seek point, so it lands exactly).
pub(super) fn seek_to(first: u64) -> Option<String> {
    (first > 0).then(|| format!("{:.6}", (first as f64 - 0.5) / timing::FPS as f64))
}

/// The shots of one side of a transition with their frames (each checked
/// like a segment's shot), in order.
async fn side<'j>(
    job: &'j Job,
    prefix: &'j str,
    cancel: &CancellationToken,
) -> Result<Vec<(&'j JobInput, u64)>, ExecError> {
    let shots: Vec<&JobInput> = inputs_with(job, prefix).collect();
    if shots.is_empty() {
        return Err(permanent(format!(
            "{}: the transition has no `{prefix}` shots",
            job.node.id
        )));
    }
    let frames = futures_util::future::try_join_all(shots.iter().map(|s| shot_frames(job, s, cancel))).await?;
    Ok(shots.into_iter().zip(frames).collect())
}

/// The crossfade into a scene: the `frames` last frames of the scene before
/// (from its last shots, `from:<shot>`) blended into the `frames` first
/// frames of this one (its first shots, `to:<shot>`), drawn by the
/// `transition` word, in H.264. The graph gives it every shot the overlap
/// may reach before voices lengthen them; only those it does reach are read.
pub async fn transition(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let word = param_str(job, "transition");
    let xfade = xfade_name(word).ok_or_else(|| {
        permanent(format!(
            "{}: unknown transition `{word}` (expected dissolve, fade, fadeblack or wipeleft)",
            job.node.id
        ))
    })?;
    let frames = frames_param(job, "frames")?;
    if frames == 0 {
        return Err(permanent(format!("{}: a transition of no frames", job.node.id)));
    }
    let (from, to) = (side(job, "from:", cancel).await?, side(job, "to:", cancel).await?);
    let too_short = |which: &str, len: u64| {
        permanent(format!(
            "{}: the scene {which} is {len} frames long in the shots given, shorter than the {frames}-frame transition",
            job.node.id
        ))
    };
    // The last shots of the scene before that hold its last `frames`.
    let lengths: Vec<u64> = from.iter().rev().map(|(_, f)| *f).collect();
    let reached = timing::reach(&lengths, frames);
    let held: u64 = lengths[..reached].iter().sum();
    if held < frames {
        return Err(too_short("before", held));
    }
    let from = &from[from.len() - reached..];
    let first = held - frames;
    // The first shots of this scene that hold its first `frames`.
    let lengths: Vec<u64> = to.iter().map(|(_, f)| *f).collect();
    let reached = timing::reach(&lengths, frames);
    let held: u64 = lengths[..reached].iter().sum();
    if held < frames {
        return Err(too_short("after", held));
    }
    let to = &to[..reached];

    let out = scratch(job, "transition.mp4");
    let mut cmd = ffmpeg(job)?.args(SERIAL_FILTERS);
    for (i, (shot, _)) in from.iter().chain(to).enumerate() {
        if i == 0
            && let Some(at) = seek_to(first)
        {
            cmd = cmd.args(["-ss", &at]);
        }
        cmd = cmd.args(["-i", shot.main().as_str()]);
    }
    let cmd = cmd
        .args([
            "-filter_complex",
            &transition_graph(xfade, from.len(), to.len(), frames),
        ])
        .args(["-map", "[v]", "-an", "-sn"])
        .args(X264)
        .args(["-frames:v".to_string(), frames.to_string()])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    check_segment(job, &out, frames, cancel).await?;
    segment(out, frames)
}

/// The parts of the episode, in order: per scene, the transition into it
/// (after the first), then its shots' segments.
fn parts(job: &Job) -> Vec<&JobInput> {
    job.inputs
        .iter()
        .filter(|i| i.role.starts_with("segment:") || i.role.starts_with("transition:"))
        .collect()
}

/// A segment's codec, frames and size.
async fn segment_stream(
    job: &Job,
    path: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(String, u64, (u64, u64)), ExecError> {
    let stream = probe_stream(job, path, "v:0", cancel).await?;
    let codec = stream["codec_name"].as_str().unwrap_or("unknown").to_string();
    let frames = super::count(&stream, "nb_read_packets")
        .ok_or_else(|| permanent(format!("ffprobe could not count the frames of {path}")))?;
    let size = (
        super::count(&stream, "width").unwrap_or(0),
        super::count(&stream, "height").unwrap_or(0),
    );
    Ok((codec, frames, size))
}

/// The episode's picture: its segments joined by stream copy (the concat
/// demuxer), exactly the sum of their frames, every one the size of the
/// first (stream copy needs equal streams). Empty segments (a shot that is
/// all transition) are left out.
pub async fn episode_video(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let mut parts: Vec<(&JobInput, u64)> = Vec::new();
    for part in self::parts(job) {
        let expected = part
            .duration
            .map(timing::frames)
            .ok_or_else(|| permanent(format!("the segment {} has no recorded length", part.role)))?;
        if expected == 0 && std::fs::metadata(part.main()).is_ok_and(|m| m.len() == 0) {
            continue;
        }
        parts.push((part, expected));
    }
    if parts.is_empty() {
        return Err(permanent("the episode has no video segments"));
    }
    // One probe per segment, side by side: an episode has a segment a shot.
    let streams =
        futures_util::future::try_join_all(parts.iter().map(|(part, _)| segment_stream(job, part.main(), cancel)))
            .await?;
    let mut total = 0;
    let first_size = streams[0].2;
    for ((part, expected), (codec, frames, size)) in parts.iter().zip(&streams) {
        if codec != "h264" || frames != expected || *frames == 0 {
            return Err(permanent(format!(
                "the segment {} is {frames} frames of {codec}, not {expected} frames of h264",
                part.role
            )));
        }
        if *size != first_size {
            return Err(permanent(format!(
                "the segment {} is {}x{}, the first {}x{}: the shots differ in size",
                part.role, size.0, size.1, first_size.0, first_size.1
            )));
        }
        total += frames;
    }
    let list = write(
        job,
        "segments.ffconcat",
        &crate::stages::mix::concat_list(parts.iter().map(|(p, _)| p.main().as_path())),
    )?;
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
