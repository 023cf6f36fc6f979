//! Scenes into an episode: segmented video, loudness-normalized audio, and the MP4.
//!
//! `segments.rs` encodes each shot's picture and each crossfade once in
//! H.264 and `episode_video` joins them by stream copy;
//! `episode_audio` joins the scene mixes with their crossfades at the
//! gain their measurements call for, limited in process when the peaks
//! need it ([`limiter`]), into AAC ([`loudness`]); `assemble` checks both streams, writes
//! subtitles and chapters, muxes the MP4 and takes a thumbnail (media notes §7).
//!
//! Every length, offset and cue time comes from [`timing`] (frames at 30 fps,
//! 1600 samples a frame); seconds are only printed where ffmpeg wants them.

use std::collections::HashMap;
use std::fmt::Write as _;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{escape, exec, ffmpeg, input, inputs_with, param, param_f64, param_str, produced, scratch, tool, write};
use crate::engines::Tool;
use crate::exec::runner::Cmd;
use crate::exec::{ExecError, Job, JobInput, Produced};
use crate::timing;

mod limiter;
mod loudness;
mod segments;
mod shape;
#[cfg(test)]
mod tests;
mod timeline;
mod tracks;

use loudness::*;
pub use segments::{episode_video, shot_segment, transition};
use timeline::*;
use tracks::*;

fn permanent(message: impl Into<String>) -> ExecError {
    ExecError::Permanent(message.into())
}

// ---------------------------------------------------------------------------
// Transitions, shared by the three nodes
// ---------------------------------------------------------------------------

/// Studio's transition word → the xfade transition that draws it. `dissolve`
/// is the smooth cross-dissolve (xfade `fade`): xfade's own `dissolve` is a
/// noisy random-pixel dissolve.
fn xfade_name(word: &str) -> Option<&'static str> {
    match word {
        "dissolve" => Some("fade"),
        "fade" => Some("fadegrays"),
        "fadeblack" => Some("fadeblack"),
        "wipeleft" => Some("wipeleft"),
        _ => None,
    }
}

/// How the scenes join: the xfade transition of each boundary and the overlap
/// of every transition, in frames.
struct Joins {
    xfade: Vec<&'static str>,
    overlap: u64,
}

impl Joins {
    fn overlaps(&self) -> Vec<u64> {
        vec![self.overlap; self.xfade.len()]
    }
}

/// Read `transitions` (one word per boundary) and `transition_seconds`.
fn joins(job: &Job, scenes: usize) -> Result<Joins, ExecError> {
    let words: Vec<&str> = param(job, "transitions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let boundaries = scenes.saturating_sub(1);
    if words.len() != boundaries {
        return Err(permanent(format!(
            "{scenes} scenes need {boundaries} transitions, but the node lists {}",
            words.len()
        )));
    }
    let xfade = words
        .iter()
        .map(|w| {
            xfade_name(w).ok_or_else(|| {
                permanent(format!(
                    "unknown transition `{w}` (expected dissolve, fade, fadeblack or wipeleft)"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let overlap = timing::frames(param_f64(job, "transition_seconds", 0.4));
    Ok(Joins { xfade, overlap })
}

/// Check every scene is long enough for the transitions that eat into it
/// (lengths and overlap in the same unit: frames or samples).
fn check_lengths(names: &[String], lengths: &[u64], overlap: u64, unit: &str) -> Result<(), String> {
    let n = lengths.len();
    for (i, (name, &len)) in names.iter().zip(lengths).enumerate() {
        let need = timing::scene_needs(i, n, overlap);
        if len < need {
            return Err(format!(
                "scene {name} is {len} {unit} long, shorter than the {need} {unit} its transitions overlap"
            ));
        }
    }
    Ok(())
}

/// The scene name of a `scene:<id>` or `length:scene:<id>` role.
fn scene_name(role: &str) -> String {
    role.rsplit_once("scene:").map_or(role, |(_, id)| id).to_string()
}

/// The `scene:<id>` inputs, in episode order; at least one.
fn scene_inputs(job: &Job) -> Result<Vec<&JobInput>, ExecError> {
    let scenes: Vec<&JobInput> = inputs_with(job, "scene:").collect();
    if scenes.is_empty() {
        return Err(permanent("the episode has no scene inputs"));
    }
    Ok(scenes)
}

/// Seconds with six decimals, from frames (xfade `offset`/`duration`).
fn secs(frames: u64) -> String {
    format!("{:.6}", timing::seconds(frames))
}

// ---------------------------------------------------------------------------
// Probing
// ---------------------------------------------------------------------------

/// The first stream matching `select` (`v:0`, `a:0`) as ffprobe reports it,
/// with its packets counted (`nb_read_packets`).
async fn probe_stream(
    job: &Job,
    path: &Utf8Path,
    select: &str,
    cancel: &CancellationToken,
) -> Result<Value, ExecError> {
    let ffprobe = tool(job, Tool::Ffprobe)?;
    let cmd = Cmd::new(ffprobe.as_str())
        .args([
            "-v",
            "error",
            "-select_streams",
            select,
            "-count_packets",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate,channels,duration,duration_ts,nb_read_packets",
            "-of",
            "json",
        ])
        .arg(path.as_str());
    let out = exec(job, &cmd, cancel).await?;
    let name = path.file_name().unwrap_or(path.as_str());
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| permanent(format!("ffprobe gave unreadable output for {name}: {e}")))?;
    match json.pointer("/streams/0") {
        Some(stream) => Ok(stream.clone()),
        None => Err(permanent(format!("{name} has no `{select}` stream"))),
    }
}

/// A number in ffprobe JSON, which writes some as strings.
fn num(stream: &Value, key: &str) -> Option<f64> {
    match stream.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn count(stream: &Value, key: &str) -> Option<u64> {
    num(stream, key).filter(|n| *n >= 0.0).map(|n| n as u64)
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// The frames of a video file's first stream (packets: exact for intermediates without B-frames and
/// H.264 alike) and its codec.
async fn video_frames(job: &Job, path: &Utf8Path, cancel: &CancellationToken) -> Result<(String, u64), ExecError> {
    let stream = probe_stream(job, path, "v:0", cancel).await?;
    let codec = stream["codec_name"].as_str().unwrap_or("unknown").to_string();
    let frames = count(&stream, "nb_read_packets")
        .ok_or_else(|| permanent(format!("ffprobe could not count the frames of {path}")))?;
    Ok((codec, frames))
}

/// ffmpeg's `-progress` file, in the job's scratch directory.
const PROGRESS_FILE: &str = "ffmpeg-progress.txt";
/// How often a running encode's progress file is read.
const PROGRESS_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Run an encode of `total` frames that writes `-progress` to
/// [`PROGRESS_FILE`], reporting each frame count it reaches to the job's
/// progress handle (the longest stage of an animatic).
async fn encode_reporting(job: &Job, cmd: &Cmd, total: u64, cancel: &CancellationToken) -> Result<(), ExecError> {
    let file = scratch(job, PROGRESS_FILE);
    let report = || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let frame = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("frame=")?.trim().parse::<u64>().ok());
        if let Some(frame) = frame {
            let fraction = frame as f64 / total.max(1) as f64;
            job.progress
                .report(Some(fraction), &format!("encoding frame {frame} of {total}"));
        }
    };
    let encode = exec(job, cmd, cancel);
    tokio::pin!(encode);
    let mut poll = tokio::time::interval(PROGRESS_POLL);
    let done = loop {
        tokio::select! {
            done = &mut encode => break done,
            _ = poll.tick() => report(),
        }
    };
    done?;
    report();
    Ok(())
}

// ---------------------------------------------------------------------------
// episode_audio
// ---------------------------------------------------------------------------

/// Join the scene mixes with crossfades (exactly Σsamples − Σoverlaps
/// samples) into AAC at the target loudness: integrated from the scenes'
/// measurements, gained (and limited when the peaks need it) in process,
/// one encode, metered after (media notes §7).
pub async fn episode_audio(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let inputs = scene_inputs(job)?;
    let joins = joins(job, inputs.len())?;
    let ns = joins.overlap * timing::SAMPLES_PER_FRAME;
    let names: Vec<String> = inputs.iter().map(|s| scene_name(&s.role)).collect();
    let mut scenes = Vec::with_capacity(inputs.len());
    for input in &inputs {
        scenes.push(scene_loudness(input, cancel).await?);
    }
    let lengths: Vec<u64> = scenes.iter().map(|s| s.loudness.samples).collect();
    check_lengths(&names, &lengths, ns, "samples").map_err(permanent)?;
    let expected = lengths.iter().sum::<u64>() - ns * (lengths.len() as u64 - 1);

    let token = cancel.clone();
    let (scenes, reading) = tokio::task::spawn_blocking(move || {
        let reading = episode_reading(&scenes, ns, &token);
        (scenes, reading)
    })
    .await
    .map_err(|e| permanent(format!("the loudness meter stopped: {e}")))?;
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let reading = reading.map_err(permanent)?;
    let target = Target {
        i: param_f64(job, "loudness_lufs", -16.0),
        tp: param_f64(job, "true_peak_dbtp", -1.5),
    };
    let done = normalize(job, &scenes, ns, expected, &reading, &target, cancel).await?;
    let mut metadata = crate::exec::Metadata::new();
    let round = |v: f64| (v * 100.0).round() / 100.0;
    if let Some(i) = reading.i {
        metadata.insert("scenes_lufs".into(), round(i).into());
    }
    metadata.insert("scenes_true_peak_dbtp".into(), round(reading.tp).into());
    metadata.insert("blocks".into(), reading.blocks.into());
    metadata.insert("blocks_measured_here".into(), reading.mixed_blocks.into());
    metadata.insert("gain_db".into(), round(done.shaped.pass.gain).into());
    metadata.insert("limited".into(), done.shaped.pass.limit.is_some().into());
    metadata.insert("limiter_reduction_db".into(), round(done.reduction_db).into());
    metadata.insert("shaping_rounds".into(), done.shaped.rounds.into());
    metadata.insert("encodes".into(), done.encodes.into());
    if let Some(i) = done.check.i {
        metadata.insert("lufs".into(), round(i).into());
    }
    metadata.insert("true_peak_dbtp".into(), round(done.check.tp).into());
    Ok(Produced {
        files: vec![("m4a".into(), done.aac)],
        duration: Some(expected as f64 / timing::RATE as f64),
        metadata,
    })
}

/// The timeline from the scene mixes' lengths and the transitions.
fn timeline(job: &Job) -> Result<Timeline, ExecError> {
    let mut scenes = Vec::new();
    let mut lengths = Vec::new();
    for input in inputs_with(job, "length:scene:") {
        let name = scene_name(&input.role);
        let seconds = input
            .duration
            .ok_or_else(|| permanent(format!("the mix of scene {name} has no recorded length")))?;
        lengths.push(timing::frames(seconds));
        scenes.push(name);
    }
    if scenes.is_empty() {
        return Err(permanent("the episode has no `length:scene:` inputs"));
    }
    let joins = joins(job, scenes.len())?;
    Ok(Timeline::new(scenes, lengths, &joins.overlaps()))
}

/// Shot and voice lengths from the `timing:` and `voice:` inputs.
fn media_timings(job: &Job) -> Result<(Vec<ShotTiming>, Vec<VoiceTiming>), ExecError> {
    let episode = param_str(job, "episode");
    let mut shots = Vec::new();
    for input in inputs_with(job, "timing:") {
        let path = &input.role["timing:".len()..];
        let within = path
            .strip_prefix(episode)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(path);
        let (scene, shot) = within
            .split_once('/')
            .ok_or_else(|| permanent(format!("timing input `{}` is not <episode>/<scene>/<shot>", input.role)))?;
        let seconds = input
            .duration
            .ok_or_else(|| permanent(format!("shot {path} has no recorded length")))?;
        shots.push(ShotTiming {
            scene: scene.into(),
            shot: shot.into(),
            frames: timing::frames(seconds),
        });
    }
    let mut voices = Vec::new();
    for input in inputs_with(job, "voice:") {
        let path = &input.role["voice:".len()..];
        let (scene, shot, n) = line_ref(path)
            .ok_or_else(|| permanent(format!("voice input `{}` is not <scene>/<shot>/<n>", input.role)))?;
        let seconds = input
            .duration
            .ok_or_else(|| permanent(format!("voice line {path} has no recorded length")))?;
        voices.push(VoiceTiming {
            scene,
            shot,
            n,
            seconds,
        });
    }
    Ok((shots, voices))
}

/// The dialogue lines of the `cues` param.
fn cue_specs(job: &Job) -> Result<Vec<CueSpec>, ExecError> {
    cue_list(param(job, "cues"))
}

/// A list of cues (`{line, text}`), as in the `cues` param and each dub's.
fn cue_list(cues: Option<&Value>) -> Result<Vec<CueSpec>, ExecError> {
    let Some(cues) = cues.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    cues.iter()
        .map(|c| {
            let line = c["line"].as_str().unwrap_or("");
            let (scene, shot, n) =
                line_ref(line).ok_or_else(|| permanent(format!("cue line `{line}` is not <scene>/<shot>/<n>")))?;
            Ok(CueSpec {
                scene,
                shot,
                n,
                text: c["text"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Chapter titles by scene, from the `chapters` param.
fn chapter_titles(job: &Job) -> HashMap<String, String> {
    param(job, "chapters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| Some((c["scene"].as_str()?.to_string(), c["title"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn flag(job: &Job, name: &str) -> bool {
    param(job, name).and_then(Value::as_bool).unwrap_or(true)
}

/// Global tags: title, show, episode id and number.
fn tags(job: &Job) -> Vec<(&'static str, String)> {
    let show = param_str(job, "show").to_string();
    let episode = param_str(job, "episode").to_string();
    let title = match param_str(job, "title") {
        "" => format!("{show} {episode}").trim().to_string(),
        t => t.to_string(),
    };
    let mut tags = vec![("title", title), ("show", show), ("episode_id", episode)];
    if let Some(n) = param(job, "number").and_then(Value::as_u64) {
        tags.push(("episode_sort", n.to_string()));
    }
    tags
}

/// Stream-copy the video and the tracks' audio into an MP4 with soft
/// subtitles (one per track with cues), chapters and tags ([`track_args`]).
/// Matroska keeps millisecond timestamps; a 600 Hz video timescale (20 units
/// a frame) rounds them back onto the exact 30 fps grid.
async fn mux(
    job: &Job,
    video: &Utf8Path,
    tracks: &[Track],
    metadata: &Utf8Path,
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let subtitles: Vec<&Utf8PathBuf> = tracks.iter().filter_map(|t| t.srt.as_ref()).collect();
    let meta = (1 + tracks.len() + subtitles.len()).to_string();
    let cmd = ffmpeg(job)?
        .args(["-i", video.as_str()])
        .args(tracks.iter().flat_map(|t| ["-i", t.audio.as_str()]))
        .args(subtitles.iter().flat_map(|s| ["-i", s.as_str()]))
        .args(["-f", "ffmetadata", "-i", metadata.as_str()])
        .args(track_args(tracks, 1))
        .args(["-map_metadata", meta.as_str(), "-map_chapters", meta.as_str()])
        .args(["-c:v", "copy", "-c:a", "copy"])
        .args(subtitles.first().iter().flat_map(|_| ["-c:s", "mov_text"]))
        .args(["-video_track_timescale", "600", "-movflags", "+faststart"])
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    produced(out, "ffmpeg")
}

/// A 480-px-wide still from about a second in (inside the first shot, clear
/// of any opening fade).
async fn thumbnail(
    job: &Job,
    video: &Utf8Path,
    frames: u64,
    cancel: &CancellationToken,
) -> Result<Utf8PathBuf, ExecError> {
    let out = scratch(job, "thumbnail.jpg");
    let at = secs(frames.saturating_sub(1).min(timing::FPS));
    let cmd = ffmpeg(job)?
        .args(["-ss", &at, "-i", video.as_str()])
        .args(["-frames:v", "1", "-vf", "scale=480:-2", "-q:v", "3"])
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    Ok(out)
}

/// The episode: check the streams, write subtitles and chapters, mux the MP4
/// and take a thumbnail. A dubbed episode has a track per language
/// ([`tracks`]): its audio, and its subtitles timed at its own voices.
pub async fn assemble(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let video = super::input(job, "video")?.main().clone();
    let mut tracks = vec![Track {
        lang: default_lang(job)?,
        audio: super::input(job, "audio")?.main().clone(),
        srt: None,
    }];
    let dubs = dubs(job)?;
    for (lang, _) in &dubs {
        tracks.push(Track {
            audio: super::input(job, &format!("{}:audio", lang.code))?.main().clone(),
            lang: Some(lang.clone()),
            srt: None,
        });
    }
    let tl = timeline(job)?;
    let audios: Vec<&Utf8Path> = tracks.iter().map(|t| t.audio.as_path()).collect();
    quality_gate(job, &video, &audios, tl.total, cancel).await?;

    let mut files = Vec::new();
    if flag(job, "subtitles") {
        let (shots, voices) = media_timings(job)?;
        let mut specs = vec![(String::new(), voices.clone(), cue_specs(job)?)];
        for (lang, cues) in dubs {
            let own = dub_voices(job, &lang.code, &voices)?;
            specs.push((lang.code, own, cues));
        }
        for ((code, voices, lines), track) in specs.into_iter().zip(&mut tracks) {
            let cues = place_cues(&tl, &shots, &voices, &lines).map_err(permanent)?;
            let text = srt(&cues);
            let (name, suffix) = match code.as_str() {
                "" => ("episode.srt".to_string(), "srt".to_string()),
                code => (format!("episode.{code}.srt"), format!("{code}.srt")),
            };
            let path = write(job, &name, &text)?;
            if !text.is_empty() {
                track.srt = Some(path.clone());
            }
            files.push((suffix, path));
        }
    }
    let chapters = if flag(job, "chapters") {
        chapters(&tl, &chapter_titles(job))
    } else {
        Vec::new()
    };
    let metadata = write(job, "chapters.ffmeta", &ffmetadata(&tags(job), &chapters))?;

    let mp4 = scratch(job, "episode.mp4");
    // The still comes from the video the MP4 copies, beside the mux.
    let (_, thumb) = futures_util::future::try_join(
        mux(job, &video, &tracks, &metadata, &mp4, cancel),
        thumbnail(job, &video, tl.total, cancel),
    )
    .await?;
    files.insert(0, ("mp4".to_string(), mp4));
    files.push(("jpg".to_string(), thumb));
    Ok(Produced {
        files,
        duration: Some(timing::seconds(tl.total)),
        metadata: crate::exec::Metadata::new(),
    })
}
