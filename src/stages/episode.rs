//! Scenes into an episode: xfade video, loudness-normalized audio, and the MP4.
//!
//! `episode_video` joins the scene videos with an xfade chain into H.264;
//! `episode_audio` joins the scene mixes with an acrossfade chain and runs a
//! two-pass linear loudnorm into AAC; `assemble` checks both streams, writes
//! subtitles and chapters, muxes the MP4 and takes a thumbnail (media notes §7).
//!
//! Every length, offset and cue time comes from [`timing`] (frames at 30 fps,
//! 1600 samples a frame); seconds are only printed where ffmpeg wants them.

use std::collections::HashMap;
use std::fmt::Write as _;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{escape, exec, ffmpeg, inputs_with, param, param_f64, param_str, produced, scratch, timing, tools, write};
use crate::exec::runner::Cmd;
use crate::exec::{ExecError, Job, JobInput, Produced};

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
        let sides = u64::from(i > 0) + u64::from(i + 1 < n);
        let need = (overlap * sides).max(1);
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
    let ffprobe = tools::need(&job.tools.ffprobe, "ffprobe", "ffmpeg")?;
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
// episode_video
// ---------------------------------------------------------------------------

/// The filtergraph joining the scenes: every input re-gridded to 30 fps, then
/// an xfade chain, each xfade followed by `setpts=N/FRAME_RATE/TB` (ffmpeg
/// 5.1 leaves a one-frame timestamp gap after each transition otherwise).
fn video_graph(starts: &[u64], joins: &Joins) -> String {
    let n = starts.len();
    let mut g = String::new();
    for i in 0..n {
        let _ = write!(g, "[{i}:v]settb=AVTB,fps=30,format=yuv420p,setsar=1[v{i}];");
    }
    if n > 1 && joins.overlap == 0 {
        for i in 0..n {
            let _ = write!(g, "[v{i}]");
        }
        let _ = write!(g, "concat=n={n}:v=1:a=0[vout]");
        return g;
    }
    let mut prev = "v0".to_string();
    for (i, (start, transition)) in (1..).zip(starts.iter().skip(1).zip(&joins.xfade)) {
        let _ = write!(
            g,
            "[{prev}][v{i}]xfade=transition={transition}:duration={}:offset={},setpts=N/FRAME_RATE/TB[x{i}];",
            secs(joins.overlap),
            secs(*start)
        );
        prev = format!("x{i}");
    }
    let _ = write!(g, "[{prev}]null[vout]");
    g
}

/// The frames of a video file's first stream (packets: exact for FFV1 and
/// H.264 alike) and its codec.
async fn video_frames(job: &Job, path: &Utf8Path, cancel: &CancellationToken) -> Result<(String, u64), ExecError> {
    let stream = probe_stream(job, path, "v:0", cancel).await?;
    let codec = stream["codec_name"].as_str().unwrap_or("unknown").to_string();
    let frames = count(&stream, "nb_read_packets")
        .ok_or_else(|| permanent(format!("ffprobe could not count the frames of {path}")))?;
    Ok((codec, frames))
}

/// Join the scene videos with their transitions into one H.264 stream of
/// exactly `timing::episode_frames` frames, in Matroska.
pub async fn episode_video(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let scenes = scene_inputs(job)?;
    let joins = joins(job, scenes.len())?;
    let names: Vec<String> = scenes.iter().map(|s| scene_name(&s.role)).collect();
    let mut lengths = Vec::with_capacity(scenes.len());
    for (scene, name) in scenes.iter().zip(&names) {
        let (_, frames) = video_frames(job, scene.main(), cancel).await?;
        if frames == 0 {
            return Err(permanent(format!("the video of scene {name} has no frames")));
        }
        lengths.push(frames);
    }
    check_lengths(&names, &lengths, joins.overlap, "frames").map_err(permanent)?;
    let overlaps = joins.overlaps();
    let starts = timing::scene_starts(&lengths, &overlaps);
    let total = timing::episode_frames(&lengths, &overlaps);

    let out = scratch(job, "episode_video.mkv");
    let mut cmd = ffmpeg(job)?;
    for scene in &scenes {
        cmd = cmd.arg("-i").arg(scene.main().as_str());
    }
    let cmd = cmd
        .arg("-filter_complex")
        .arg(video_graph(&starts, &joins))
        .args([
            "-map", "[vout]", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
        ])
        .args(["-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "60", "-threads", "2"])
        .arg("-frames:v")
        .arg(total.to_string())
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    let (_, made) = video_frames(job, &out, cancel).await?;
    if made != total {
        return Err(permanent(format!(
            "the episode video came out {made} frames long instead of {total} (scenes {lengths:?}, transitions of {} frames)",
            joins.overlap
        )));
    }
    Ok(Produced {
        files: vec![("mkv".into(), out)],
        duration: Some(timing::seconds(total)),
    })
}

// ---------------------------------------------------------------------------
// episode_audio
// ---------------------------------------------------------------------------

/// The filtergraph joining the scene mixes: an acrossfade chain of `ns`
/// samples with triangular (linear) curves.
fn audio_graph(n: usize, ns: u64) -> String {
    let mut g = String::new();
    for i in 0..n {
        let _ = write!(g, "[{i}:a]aformat=sample_fmts=flt:channel_layouts=stereo[s{i}];");
    }
    if n > 1 && ns == 0 {
        for i in 0..n {
            let _ = write!(g, "[s{i}]");
        }
        let _ = write!(g, "concat=n={n}:v=0:a=1[aout]");
        return g;
    }
    let mut prev = "s0".to_string();
    for i in 1..n {
        let _ = write!(g, "[{prev}][s{i}]acrossfade=ns={ns}:c1=tri:c2=tri[a{i}];");
        prev = format!("a{i}");
    }
    let _ = write!(g, "[{prev}]anull[aout]");
    g
}

/// The sample count of a 48 kHz audio file (exact for WAV).
async fn audio_samples(job: &Job, path: &Utf8Path, what: &str, cancel: &CancellationToken) -> Result<u64, ExecError> {
    let stream = probe_stream(job, path, "a:0", cancel).await?;
    let rate = count(&stream, "sample_rate").unwrap_or(0);
    if rate != timing::RATE {
        return Err(permanent(format!("{what} is {rate} Hz, not {} Hz", timing::RATE)));
    }
    count(&stream, "duration_ts").ok_or_else(|| permanent(format!("ffprobe could not count the samples of {what}")))
}

/// Join the scene mixes with crossfades (exactly Σsamples − Σoverlaps
/// samples), normalize the loudness linearly and encode AAC.
pub async fn episode_audio(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let scenes = scene_inputs(job)?;
    let joins = joins(job, scenes.len())?;
    let ns = joins.overlap * timing::SAMPLES_PER_FRAME;
    let names: Vec<String> = scenes.iter().map(|s| scene_name(&s.role)).collect();
    let mut lengths = Vec::with_capacity(scenes.len());
    for (scene, name) in scenes.iter().zip(&names) {
        lengths.push(audio_samples(job, scene.main(), &format!("the mix of scene {name}"), cancel).await?);
    }
    check_lengths(&names, &lengths, ns, "samples").map_err(permanent)?;
    let expected = lengths.iter().sum::<u64>() - ns * (lengths.len() as u64 - 1);

    let raw = scratch(job, "episode_raw.wav");
    let mut cmd = ffmpeg(job)?;
    for scene in &scenes {
        cmd = cmd.arg("-i").arg(scene.main().as_str());
    }
    let cmd = cmd
        .arg("-filter_complex")
        .arg(audio_graph(scenes.len(), ns))
        .args(["-map", "[aout]", "-c:a", "pcm_f32le"])
        .arg(raw.as_str());
    exec(job, &cmd, cancel).await?;
    produced(&raw, "ffmpeg")?;
    let made = audio_samples(job, &raw, "the joined episode audio", cancel).await?;
    if made != expected {
        return Err(permanent(format!(
            "the joined episode audio has {made} samples instead of {expected} (scenes {lengths:?}, crossfades of {ns})"
        )));
    }

    let out = scratch(job, "episode_audio.m4a");
    let target = Target {
        i: param_f64(job, "loudness_lufs", -16.0),
        tp: param_f64(job, "true_peak_dbtp", -1.5),
    };
    normalize(job, &raw, expected, &target, &out, cancel).await?;
    Ok(Produced {
        files: vec![("m4a".into(), out)],
        duration: Some(expected as f64 / timing::RATE as f64),
    })
}

// ---- loudness ---------------------------------------------------------------

/// Below this integrated loudness the audio is silence: nothing to normalize.
const SILENCE_LUFS: f64 = -70.0;

/// The loudness target: integrated LUFS and true peak dBTP.
struct Target {
    i: f64,
    tp: f64,
}

/// What a loudnorm measuring pass reports.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    i: f64,
    tp: f64,
    lra: f64,
    thresh: f64,
    offset: f64,
}

impl Target {
    fn gain(&self, m: &Measured) -> f64 {
        self.i - m.i
    }

    /// loudnorm stays linear only if the gained true peak fits under the
    /// target and the measured range fits under the LRA it is given.
    fn linear_ok(&self, m: &Measured) -> bool {
        m.tp + self.gain(m) <= self.tp && m.lra <= lra_target(m)
    }

    /// A look-ahead limiter that keeps the peaks `margin` dB under what a
    /// linear gain allows. `level=0` keeps it from auto-gaining; `latency=1`
    /// keeps the length exact.
    fn limiter(&self, m: &Measured, margin: f64) -> String {
        let db = self.tp - self.gain(m) - margin;
        let limit = 10f64.powf(db / 20.0).clamp(0.0625, 1.0);
        format!("alimiter=limit={limit:.4}:attack=5:release=50:level=0:latency=1")
    }

    fn measure_filter(&self) -> String {
        format!("loudnorm=I={}:TP={}:LRA=11:print_format=json", self.i, self.tp)
    }

    /// The applying pass. loudnorm treats a measured LRA of exactly 0, a
    /// threshold of exactly -70 and an I of exactly 0 as "not measured" and
    /// then goes dynamic; a steady mix (LRA 0.00) must still stay linear, so
    /// those values are nudged by 0.01 (LRA and threshold play no other part
    /// in linear mode).
    fn apply_filter(&self, m: &Measured) -> String {
        let nudge = |v: f64, sentinel: f64, by: f64| if v == sentinel { v + by } else { v };
        format!(
            "loudnorm=I={}:TP={}:LRA={}:measured_I={}:measured_TP={}:measured_LRA={}:measured_thresh={}:offset={}:linear=true:print_format=json",
            self.i,
            self.tp,
            lra_target(m),
            nudge(m.i, 0.0, -0.01),
            m.tp,
            m.lra.max(0.01),
            nudge(m.thresh, -70.0, 0.01),
            m.offset
        )
    }
}

/// An LRA target the measured range cannot exceed (ffmpeg 5.1's default of 7
/// would force dynamic mode on a wide mix).
fn lra_target(m: &Measured) -> f64 {
    (m.lra + 1.0).ceil().clamp(11.0, 50.0)
}

/// The JSON loudnorm prints last on stderr.
fn loudnorm_json(stderr: &str) -> Result<Value, String> {
    let (Some(open), Some(close)) = (stderr.rfind('{'), stderr.rfind('}')) else {
        return Err("loudnorm printed no measurements".into());
    };
    if close < open {
        return Err("loudnorm printed no measurements".into());
    }
    serde_json::from_str(&stderr[open..=close]).map_err(|e| format!("loudnorm printed unreadable JSON: {e}"))
}

fn parse_measured(stderr: &str) -> Result<Measured, String> {
    let json = loudnorm_json(stderr)?;
    let field = |key: &str| -> Result<f64, String> {
        num(&json, key).ok_or_else(|| format!("loudnorm's measurements lack `{key}`"))
    };
    Ok(Measured {
        i: field("input_i")?,
        tp: field("input_tp")?,
        lra: field("input_lra")?,
        thresh: field("input_thresh")?,
        offset: field("target_offset")?,
    })
}

/// `ffmpeg` at log level info: loudnorm prints its JSON there.
fn ffmpeg_measuring(job: &Job) -> Result<Cmd, ExecError> {
    let path = tools::need(&job.tools.ffmpeg, "ffmpeg", "ffmpeg")?;
    Ok(Cmd::new(path.as_str()).args(["-hide_banner", "-nostdin", "-nostats", "-y", "-filter_threads", "2"]))
}

/// A loudnorm measuring pass, after the limiter `pre` when there is one.
async fn measure(
    job: &Job,
    raw: &Utf8Path,
    pre: Option<&str>,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Measured, ExecError> {
    let chain = match pre {
        Some(pre) => format!("{pre},{}", target.measure_filter()),
        None => target.measure_filter(),
    };
    let cmd = ffmpeg_measuring(job)?
        .arg("-i")
        .arg(raw.as_str())
        .args(["-af", &chain, "-f", "null", "-"]);
    let out = exec(job, &cmd, cancel).await?;
    parse_measured(&String::from_utf8_lossy(&out.stderr)).map_err(permanent)
}

/// How the applying pass runs: an optional limiter, then loudnorm with these
/// measurements (none for silence, which is left as it is).
struct Plan {
    pre: Option<String>,
    measured: Option<Measured>,
}

/// What earlier encodes taught: dB of true peak to keep spare, and how far
/// loudnorm's integrated reading sits below the delivery meter's (ebur128;
/// they differ by up to a LU on short or uneven mixes).
#[derive(Debug, Clone, Copy, Default)]
struct Lessons {
    headroom: f64,
    correction: f64,
}

/// Measure; while linear mode (with the learnt headroom to spare) is out of
/// reach, put a limiter in front and measure again.
async fn plan(
    job: &Job,
    raw: &Utf8Path,
    target: &Target,
    lessons: Lessons,
    cancel: &CancellationToken,
) -> Result<Plan, ExecError> {
    let measured = measure(job, raw, None, target, cancel).await?;
    if !measured.i.is_finite() || measured.i < SILENCE_LUFS {
        return Ok(Plan {
            pre: None,
            measured: None,
        });
    }
    let corrected = |m: Measured| Measured {
        i: m.i + lessons.correction,
        ..m
    };
    let mut m = corrected(measured);
    let spared = Target {
        i: target.i,
        tp: target.tp - lessons.headroom,
    };
    let mut pre = None;
    for extra in [0.0, 0.5, 1.0, 1.5] {
        if spared.linear_ok(&m) {
            break;
        }
        let limiter = spared.limiter(&m, 0.5 + extra);
        m = corrected(measure(job, raw, Some(&limiter), target, cancel).await?);
        pre = Some(limiter);
    }
    if !spared.linear_ok(&m) {
        return Err(permanent(format!(
            "loudnorm cannot stay linear: {:.2} LUFS with a true peak of {:.2} dBTP cannot reach {} LUFS under {:.2} dBTP even after limiting",
            m.i, m.tp, target.i, spared.tp
        )));
    }
    Ok(Plan { pre, measured: Some(m) })
}

/// The applying pass: limiter, linear loudnorm, back to 48 kHz, exactly
/// `samples` long, AAC 192k stereo.
async fn encode(
    job: &Job,
    raw: &Utf8Path,
    samples: u64,
    target: &Target,
    plan: &Plan,
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let mut chain: Vec<String> = plan.pre.iter().cloned().collect();
    if let Some(m) = &plan.measured {
        chain.push(target.apply_filter(m));
    }
    chain.push(format!(
        "aresample={},apad=whole_len={samples},atrim=end_sample={samples}",
        timing::RATE
    ));
    let cmd = ffmpeg_measuring(job)?
        .arg("-i")
        .arg(raw.as_str())
        .arg("-af")
        .arg(chain.join(","))
        .args([
            "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2", "-threads", "2",
        ])
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    let done = exec(job, &cmd, cancel).await?;
    produced(out, "ffmpeg")?;
    if plan.measured.is_some() {
        check_linear(&String::from_utf8_lossy(&done.stderr)).map_err(permanent)?;
    }
    Ok(())
}

/// What the delivery meter (ebur128) reads: integrated LUFS, true peak dBTP.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Meter {
    i: f64,
    peak: f64,
}

/// The summary ebur128 prints last: `I: … LUFS` and, under `True peak:`, `Peak: … dBFS`.
fn parse_meter(stderr: &str) -> Option<Meter> {
    let summary = &stderr[stderr.rfind("Summary:")?..];
    let value = |key: &str| -> Option<f64> {
        let after = &summary[summary.find(key)? + key.len()..];
        after.split_whitespace().next()?.parse().ok()
    };
    Some(Meter {
        i: value("I:")?,
        peak: value("Peak:")?,
    })
}

async fn meter(job: &Job, path: &Utf8Path, cancel: &CancellationToken) -> Result<Meter, ExecError> {
    let cmd = ffmpeg_measuring(job)?.arg("-i").arg(path.as_str()).args([
        "-af",
        "ebur128=peak=true:framelog=verbose",
        "-f",
        "null",
        "-",
    ]);
    let out = exec(job, &cmd, cancel).await?;
    parse_meter(&String::from_utf8_lossy(&out.stderr))
        .ok_or_else(|| permanent("ebur128 printed no summary for the episode audio"))
}

/// Normalize to the target loudness linearly and encode, then meter the
/// encoded audio as the delivery check does. AAC overshoots, loudnorm's peak
/// meter reads sharp clicks low and its integrated reading can sit a LU off
/// ebur128's: when the true peak is over `max_true_peak_dbtp` or the loudness
/// more than half a LU off, limit harder or correct the gain and redo.
async fn normalize(
    job: &Job,
    raw: &Utf8Path,
    samples: u64,
    target: &Target,
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let ceiling = param_f64(job, "max_true_peak_dbtp", -1.0);
    let mut lessons = Lessons::default();
    let mut last = None;
    for round in 0..3 {
        let plan = plan(job, raw, target, lessons, cancel).await?;
        encode(job, raw, samples, target, &plan, out, cancel).await?;
        if plan.measured.is_none() {
            return Ok(()); // silence
        }
        let got = meter(job, out, cancel).await?;
        let off = got.i - target.i;
        let peak_ok = got.peak <= ceiling;
        if peak_ok && (off.abs() <= 0.5 || (round == 2 && off.abs() <= 1.0)) {
            return Ok(());
        }
        if !peak_ok {
            lessons.headroom += got.peak - ceiling + 0.5;
        }
        if off.abs() > 0.5 {
            lessons.correction += off;
        }
        last = Some(got);
    }
    let got = last.unwrap_or(Meter {
        i: f64::NAN,
        peak: f64::NAN,
    });
    Err(permanent(format!(
        "the episode audio measures {:.1} LUFS with a true peak of {:.1} dBTP after three tries (target {} LUFS, peaks at most {ceiling} dBTP)",
        got.i, got.peak, target.i
    )))
}

/// The applying pass must report `"normalization_type" : "linear"`.
fn check_linear(stderr: &str) -> Result<(), String> {
    let json = loudnorm_json(stderr)?;
    match json.get("normalization_type").and_then(Value::as_str) {
        Some("linear") => Ok(()),
        other => Err(format!(
            "loudnorm normalized in {} mode instead of linear",
            other.unwrap_or("an unknown")
        )),
    }
}

// ---------------------------------------------------------------------------
// episode (assemble)
// ---------------------------------------------------------------------------

/// Where every scene sits on the episode timeline, in frames.
#[derive(Debug)]
struct Timeline {
    scenes: Vec<String>,
    lengths: Vec<u64>,
    starts: Vec<u64>,
    total: u64,
}

impl Timeline {
    fn new(scenes: Vec<String>, lengths: Vec<u64>, overlaps: &[u64]) -> Timeline {
        let starts = timing::scene_starts(&lengths, overlaps);
        let total = timing::episode_frames(&lengths, overlaps);
        Timeline {
            scenes,
            lengths,
            starts,
            total,
        }
    }

    fn index(&self, scene: &str) -> Option<usize> {
        self.scenes.iter().position(|s| s == scene)
    }
}

/// Frames → whole milliseconds (nearest).
fn ms(frames: u64) -> u64 {
    (frames * 1000 + timing::FPS / 2) / timing::FPS
}

/// One shot's measured length, from a `timing:<ep>/<scene>/<shot>` input.
#[derive(Debug, Clone)]
struct ShotTiming {
    scene: String,
    shot: String,
    frames: u64,
}

/// One voice line's length, from a `voice:<scene>/<shot>/<n>` input.
#[derive(Debug, Clone)]
struct VoiceTiming {
    scene: String,
    shot: String,
    n: usize,
    seconds: f64,
}

/// A dialogue line from the `cues` param.
#[derive(Debug, Clone)]
struct CueSpec {
    scene: String,
    shot: String,
    n: usize,
    text: String,
}

/// A subtitle, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
struct Cue {
    start: u64,
    end: u64,
    text: String,
}

/// `<scene>/<shot>/<n>` → its parts.
fn line_ref(s: &str) -> Option<(String, String, usize)> {
    let (rest, n) = s.rsplit_once('/')?;
    let (scene, shot) = rest.split_once('/')?;
    Some((scene.to_string(), shot.to_string(), n.parse().ok().filter(|n| *n > 0)?))
}

/// Where each shot starts on the episode timeline; every scene's shots must
/// add up to the scene's length.
fn shot_starts(tl: &Timeline, shots: &[ShotTiming]) -> Result<HashMap<(String, String), u64>, String> {
    let mut within = vec![0u64; tl.scenes.len()];
    let mut starts = HashMap::new();
    for shot in shots {
        let i = tl
            .index(&shot.scene)
            .ok_or_else(|| format!("shot {}/{} belongs to no scene of the episode", shot.scene, shot.shot))?;
        starts.insert((shot.scene.clone(), shot.shot.clone()), tl.starts[i] + within[i]);
        within[i] += shot.frames;
    }
    for (i, scene) in tl.scenes.iter().enumerate() {
        if within[i] != tl.lengths[i] {
            return Err(format!(
                "the shots of scene {scene} add up to {} frames, but its mix is {} frames long",
                within[i], tl.lengths[i]
            ));
        }
    }
    Ok(starts)
}

/// Subtitle times: scene start + shot start + the line's start in its shot
/// (as the mix placed it); each shown for its voice's length, at least one
/// second, never past the next cue or the episode's end.
fn place_cues(
    tl: &Timeline,
    shots: &[ShotTiming],
    voices: &[VoiceTiming],
    lines: &[CueSpec],
) -> Result<Vec<Cue>, String> {
    let starts = shot_starts(tl, shots)?;
    let mut by_shot: HashMap<(&str, &str), Vec<(usize, f64)>> = HashMap::new();
    for v in voices {
        by_shot.entry((&v.scene, &v.shot)).or_default().push((v.n, v.seconds));
    }
    for lines in by_shot.values_mut() {
        lines.sort_by_key(|(n, _)| *n);
    }
    let mut cues = Vec::with_capacity(lines.len());
    for line in lines {
        let name = format!("{}/{}/{}", line.scene, line.shot, line.n);
        let shot_start = starts
            .get(&(line.scene.clone(), line.shot.clone()))
            .ok_or_else(|| format!("line {name} is in a shot with no timing input"))?;
        let shot_voices = by_shot.get(&(line.scene.as_str(), line.shot.as_str()));
        let durations: Vec<f64> = shot_voices
            .map(|v| v.iter().map(|(_, d)| *d).collect())
            .unwrap_or_default();
        let index = shot_voices
            .and_then(|v| v.iter().position(|(n, _)| *n == line.n))
            .ok_or_else(|| format!("line {name} has no voice input"))?;
        let start = ms(shot_start + timing::line_starts(&durations)[index]);
        let shown = ((durations[index] * 1000.0).round() as u64).max(1000);
        cues.push(Cue {
            start,
            end: start + shown,
            text: line.text.clone(),
        });
    }
    cues.sort_by_key(|c| c.start);
    let end_of_episode = ms(tl.total);
    let next_starts: Vec<u64> = cues.iter().skip(1).map(|c| c.start).chain([end_of_episode]).collect();
    for (cue, next) in cues.iter_mut().zip(next_starts) {
        let limit = if next > cue.start { next } else { end_of_episode };
        cue.end = cue.end.min(limit).min(end_of_episode).max(cue.start);
    }
    Ok(cues)
}

fn srt_time(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// An SRT file: the dialogue text only, escaped for the mov_text round trip.
/// Cues with no visible text are left out (a blank cue ends the block).
fn srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    let visible = cues
        .iter()
        .map(|c| (c, escape::srt_text(&c.text)))
        .filter(|(c, text)| !text.trim().is_empty() && c.end > c.start);
    for (n, (cue, text)) in visible.enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            n + 1,
            srt_time(cue.start),
            srt_time(cue.end),
            text
        );
    }
    out
}

/// A chapter: start and end in milliseconds, title.
#[derive(Debug, Clone, PartialEq)]
struct Chapter {
    start: u64,
    end: u64,
    title: String,
}

/// One chapter per scene, starting where its transition starts.
fn chapters(tl: &Timeline, titles: &HashMap<String, String>) -> Vec<Chapter> {
    let ends = tl.starts.iter().skip(1).copied().chain([tl.total]);
    tl.scenes
        .iter()
        .zip(&tl.starts)
        .zip(ends)
        .map(|((scene, &start), end)| Chapter {
            start: ms(start),
            end: ms(end),
            title: titles
                .get(scene)
                .filter(|t| !t.trim().is_empty())
                .cloned()
                .unwrap_or_else(|| format!("Scene {scene}")),
        })
        .collect()
}

/// An `;FFMETADATA1` file: global tags, then the chapters.
fn ffmetadata(tags: &[(&str, String)], chapters: &[Chapter]) -> String {
    let one_line = |s: &str| escape::ffmetadata(&s.replace(['\r', '\n'], " "));
    let mut out = String::from(";FFMETADATA1\n");
    for (key, value) in tags {
        let _ = writeln!(out, "{key}={}", one_line(value));
    }
    for c in chapters {
        let _ = write!(
            out,
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART={}\nEND={}\ntitle={}\n",
            c.start,
            c.end,
            one_line(&c.title)
        );
    }
    out
}

/// What is wrong with the episode's video stream, if anything.
fn video_problems(stream: &Value, frames: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let codec = stream["codec_name"].as_str().unwrap_or("unknown");
    if codec != "h264" {
        problems.push(format!("the video is {codec}, not h264"));
    }
    match count(stream, "nb_read_packets") {
        Some(n) if n == frames => {}
        Some(n) => problems.push(format!("the video has {n} frames, expected {frames}")),
        None => problems.push("the video's frames could not be counted".into()),
    }
    problems
}

/// What is wrong with the episode's audio stream, if anything.
fn audio_problems(stream: &Value, frames: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let codec = stream["codec_name"].as_str().unwrap_or("unknown");
    if codec != "aac" {
        problems.push(format!("the audio is {codec}, not aac"));
    }
    let rate = count(stream, "sample_rate").unwrap_or(0);
    if rate != timing::RATE {
        problems.push(format!("the audio is {rate} Hz, not {} Hz", timing::RATE));
    }
    let channels = count(stream, "channels").unwrap_or(0);
    if channels != 2 {
        problems.push(format!("the audio has {channels} channels, not 2"));
    }
    let expected = timing::seconds(frames);
    match num(stream, "duration") {
        Some(d) if (d - expected).abs() <= timing::seconds(1) => {}
        Some(d) => problems.push(format!(
            "the audio lasts {d:.3} s, the video {expected:.3} s (more than a frame apart)"
        )),
        None => problems.push("the audio's duration could not be read".into()),
    }
    problems
}

/// Refuse to assemble streams that would make a broken episode.
async fn quality_gate(
    job: &Job,
    video: &Utf8Path,
    audio: &Utf8Path,
    frames: u64,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let v = probe_stream(job, video, "v:0", cancel).await?;
    let a = probe_stream(job, audio, "a:0", cancel).await?;
    let problems: Vec<String> = video_problems(&v, frames)
        .into_iter()
        .chain(audio_problems(&a, frames))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(permanent(format!(
            "refusing to assemble the episode: {}",
            problems.join("; ")
        )))
    }
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
    let Some(cues) = param(job, "cues").and_then(Value::as_array) else {
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

/// Stream-copy the video and audio into an MP4 with soft subtitles, chapters
/// and tags. Matroska keeps millisecond timestamps; a 600 Hz video timescale
/// (20 units a frame) rounds them back onto the exact 30 fps grid.
async fn mux(
    job: &Job,
    video: &Utf8Path,
    audio: &Utf8Path,
    subtitles: Option<&Utf8Path>,
    metadata: &Utf8Path,
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let mut cmd = ffmpeg(job)?
        .args(["-i", video.as_str(), "-i", audio.as_str()])
        .args(subtitles.iter().flat_map(|s| ["-i", s.as_str()]))
        .args(["-f", "ffmetadata", "-i", metadata.as_str()])
        .args(["-map", "0:v:0", "-map", "1:a:0"]);
    let meta = if subtitles.is_some() {
        cmd = cmd.args(["-map", "2:s:0"]);
        "3"
    } else {
        "2"
    };
    let cmd = cmd
        .args(["-map_metadata", meta, "-map_chapters", meta])
        .args(["-c:v", "copy", "-c:a", "copy"])
        .args(subtitles.iter().flat_map(|_| ["-c:s", "mov_text"]))
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
    mp4: &Utf8Path,
    frames: u64,
    cancel: &CancellationToken,
) -> Result<Utf8PathBuf, ExecError> {
    let out = scratch(job, "thumbnail.jpg");
    let at = secs(frames.saturating_sub(1).min(timing::FPS));
    let cmd = ffmpeg(job)?
        .args(["-ss", &at, "-i", mp4.as_str()])
        .args(["-frames:v", "1", "-vf", "scale=480:-2", "-q:v", "3"])
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    Ok(out)
}

/// The episode: check the streams, write subtitles and chapters, mux the MP4
/// and take a thumbnail.
pub async fn assemble(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let video = super::input(job, "video")?.main().clone();
    let audio = super::input(job, "audio")?.main().clone();
    let tl = timeline(job)?;
    quality_gate(job, &video, &audio, tl.total, cancel).await?;

    let mut files = Vec::new();
    let mut subtitles = None;
    if flag(job, "subtitles") {
        let (shots, voices) = media_timings(job)?;
        let cues = place_cues(&tl, &shots, &voices, &cue_specs(job)?).map_err(permanent)?;
        let text = srt(&cues);
        let path = write(job, "episode.srt", &text)?;
        if !text.is_empty() {
            subtitles = Some(path.clone());
        }
        files.push(("srt".to_string(), path));
    }
    let chapters = if flag(job, "chapters") {
        chapters(&tl, &chapter_titles(job))
    } else {
        Vec::new()
    };
    let metadata = write(job, "chapters.ffmeta", &ffmetadata(&tags(job), &chapters))?;

    let mp4 = scratch(job, "episode.mp4");
    mux(job, &video, &audio, subtitles.as_deref(), &metadata, &mp4, cancel).await?;
    let thumb = thumbnail(job, &mp4, tl.total, cancel).await?;
    files.insert(0, ("mp4".to_string(), mp4));
    files.push(("jpg".to_string(), thumb));
    Ok(Produced {
        files,
        duration: Some(timing::seconds(tl.total)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joins(words: &[&'static str], overlap: u64) -> Joins {
        Joins {
            xfade: words.to_vec(),
            overlap,
        }
    }

    #[test]
    fn transitions_map_to_xfade() {
        assert_eq!(xfade_name("dissolve"), Some("fade"));
        assert_eq!(xfade_name("fade"), Some("fadegrays"));
        assert_eq!(xfade_name("fadeblack"), Some("fadeblack"));
        assert_eq!(xfade_name("wipeleft"), Some("wipeleft"));
        assert_eq!(xfade_name("swirl"), None);
    }

    #[test]
    fn video_graph_chains_xfades_at_scene_starts() {
        let starts = timing::scene_starts(&[230, 306, 90], &[12, 12]);
        assert_eq!(starts, vec![0, 218, 512]);
        let g = video_graph(&starts, &joins(&["fade", "wipeleft"], 12));
        assert_eq!(
            g,
            "[0:v]settb=AVTB,fps=30,format=yuv420p,setsar=1[v0];\
             [1:v]settb=AVTB,fps=30,format=yuv420p,setsar=1[v1];\
             [2:v]settb=AVTB,fps=30,format=yuv420p,setsar=1[v2];\
             [v0][v1]xfade=transition=fade:duration=0.400000:offset=7.266667,setpts=N/FRAME_RATE/TB[x1];\
             [x1][v2]xfade=transition=wipeleft:duration=0.400000:offset=17.066667,setpts=N/FRAME_RATE/TB[x2];\
             [x2]null[vout]"
        );
    }

    #[test]
    fn one_scene_needs_no_xfade_and_zero_overlap_concatenates() {
        let g = video_graph(&[0], &joins(&[], 12));
        assert!(!g.contains("xfade") && g.ends_with("[v0]null[vout]"));
        let g = video_graph(&[0, 100], &joins(&["fade"], 0));
        assert!(g.ends_with("[v0][v1]concat=n=2:v=1:a=0[vout]"));
    }

    #[test]
    fn audio_graph_chains_crossfades() {
        assert_eq!(
            audio_graph(3, 19200),
            "[0:a]aformat=sample_fmts=flt:channel_layouts=stereo[s0];\
             [1:a]aformat=sample_fmts=flt:channel_layouts=stereo[s1];\
             [2:a]aformat=sample_fmts=flt:channel_layouts=stereo[s2];\
             [s0][s1]acrossfade=ns=19200:c1=tri:c2=tri[a1];\
             [a1][s2]acrossfade=ns=19200:c1=tri:c2=tri[a2];\
             [a2]anull[aout]"
        );
        assert!(audio_graph(1, 19200).ends_with("[s0]anull[aout]"));
        assert!(audio_graph(2, 0).ends_with("[s0][s1]concat=n=2:v=0:a=1[aout]"));
    }

    #[test]
    fn scenes_must_outlast_their_transitions() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(check_lengths(&names, &[12, 24, 12], 12, "frames").is_ok());
        let err = check_lengths(&names, &[12, 23, 12], 12, "frames").unwrap_err();
        assert!(err.contains("scene b is 23 frames"), "{err}");
        assert!(check_lengths(&names[..1], &[0], 12, "frames").is_err());
    }

    const PASS1: &str = r#"[Parsed_loudnorm_0 @ 0x5581] 
{
	"input_i" : "-16.36",
	"input_tp" : "-0.89",
	"input_lra" : "4.80",
	"input_thresh" : "-26.55",
	"output_i" : "-16.02",
	"output_tp" : "-1.50",
	"output_lra" : "4.20",
	"output_thresh" : "-26.20",
	"normalization_type" : "dynamic",
	"target_offset" : "0.02"
}
"#;

    #[test]
    fn loudnorm_measurements_parse_and_decide_on_a_limiter() {
        let m = parse_measured(&format!("Input #0, wav\n  Duration: 00:00:17.87\n{PASS1}")).unwrap();
        assert_eq!(
            m,
            Measured {
                i: -16.36,
                tp: -0.89,
                lra: 4.8,
                thresh: -26.55,
                offset: 0.02
            }
        );
        let target = Target { i: -16.0, tp: -1.5 };
        assert!(!target.linear_ok(&m), "-0.89 + 0.36 > -1.5");
        // limit = -1.5 - 0.36 - 0.5 = -2.36 dB
        assert_eq!(
            target.limiter(&m, 0.5),
            "alimiter=limit=0.7621:attack=5:release=50:level=0:latency=1"
        );
        let limited = Measured {
            i: -16.4,
            tp: -2.36,
            ..m
        };
        assert!(target.linear_ok(&limited));
        assert_eq!(
            target.apply_filter(&limited),
            "loudnorm=I=-16:TP=-1.5:LRA=11:measured_I=-16.4:measured_TP=-2.36:measured_LRA=4.8:measured_thresh=-26.55:offset=0.02:linear=true:print_format=json"
        );
        assert_eq!(lra_target(&Measured { lra: 14.2, ..m }), 16.0);
        let steady = Measured {
            lra: 0.0,
            thresh: -70.0,
            ..limited
        };
        assert!(
            target
                .apply_filter(&steady)
                .contains(":measured_LRA=0.01:measured_thresh=-69.99:")
        );
        assert!(check_linear(PASS1).unwrap_err().contains("dynamic"));
        assert!(check_linear(&PASS1.replace("dynamic", "linear")).is_ok());
        assert!(parse_measured("no json here").is_err());
        let silent = parse_measured(&PASS1.replace("\"-16.36\"", "\"-inf\"")).unwrap();
        assert!(silent.i.is_infinite());
        let summary = "t: 3.1 M: -16\n[Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:  -15.9 LUFS\n\n  True peak:\n    Peak:       -0.7 dBFS\n";
        assert_eq!(parse_meter(summary), Some(Meter { i: -15.9, peak: -0.7 }));
        assert_eq!(parse_meter("I: -16 LUFS Peak: 1.0"), None);
    }

    fn tl() -> Timeline {
        // Two scenes (s1: 60 + 90 frames, s2: 120), a 12-frame transition.
        Timeline::new(vec!["s1".into(), "s2".into()], vec![150, 120], &[12])
    }

    fn shot(scene: &str, shot: &str, frames: u64) -> ShotTiming {
        ShotTiming {
            scene: scene.into(),
            shot: shot.into(),
            frames,
        }
    }

    fn voice(scene: &str, shot: &str, n: usize, seconds: f64) -> VoiceTiming {
        VoiceTiming {
            scene: scene.into(),
            shot: shot.into(),
            n,
            seconds,
        }
    }

    fn line(l: &str, text: &str) -> CueSpec {
        let (scene, shot, n) = line_ref(l).unwrap();
        CueSpec {
            scene,
            shot,
            n,
            text: text.into(),
        }
    }

    #[test]
    fn cues_sit_where_the_mix_put_the_voices() {
        let shots = [shot("s1", "a", 60), shot("s1", "b", 90), shot("s2", "a", 120)];
        let voices = [
            voice("s1", "a", 1, 0.5),
            voice("s1", "b", 1, 1.01),
            voice("s1", "b", 2, 2.0),
            voice("s2", "a", 1, 1.5),
        ];
        let lines = [
            line("s1/a/1", "one"),
            line("s1/b/1", "two"),
            line("s1/b/2", "three"),
            line("s2/a/1", "four"),
        ];
        let cues = place_cues(&tl(), &shots, &voices, &lines).unwrap();
        let times: Vec<(u64, u64)> = cues.iter().map(|c| (c.start, c.end)).collect();
        // s1/a/1: frame 15 → 500 ms, shown 1 s (voice shorter than a second).
        // s1/b/1: 60 + 15 = 75 → 2500 ms, 1010 ms. s1/b/2: 60 + 15 + 31 + 9 = 115 → 3833 ms.
        // s2/a/1: scene 2 starts at 150 - 12 = 138; + 15 = 153 → 5100 ms, 1.5 s.
        assert_eq!(times, vec![(500, 1500), (2500, 3510), (3833, 5100), (5100, 6600)]);
        assert_eq!(cues[2].end, 5100, "cut at the next cue instead of 5833");
    }

    #[test]
    fn cues_never_run_past_the_episode() {
        let shots = [shot("s1", "a", 150), shot("s2", "a", 120)];
        let voices = [voice("s2", "a", 1, 9.0)];
        let cues = place_cues(&tl(), &shots, &voices, &[line("s2/a/1", "long")]).unwrap();
        assert_eq!((cues[0].start, cues[0].end), (5100, 8600));
    }

    #[test]
    fn cue_placement_reports_what_is_missing() {
        let shots = [shot("s1", "a", 150), shot("s2", "a", 120)];
        let err = place_cues(&tl(), &shots, &[], &[line("s1/a/1", "x")]).unwrap_err();
        assert_eq!(err, "line s1/a/1 has no voice input");
        let err = place_cues(&tl(), &shots, &[], &[line("s1/zz/1", "x")]).unwrap_err();
        assert!(err.contains("no timing input"), "{err}");
        let err = place_cues(&tl(), &[shot("s1", "a", 149), shot("s2", "a", 120)], &[], &[]).unwrap_err();
        assert!(err.contains("add up to 149 frames"), "{err}");
    }

    #[test]
    fn srt_is_numbered_timed_and_escaped() {
        let cues = [
            Cue {
                start: 500,
                end: 1500,
                text: "He said: <b>\"100%\"</b>".into(),
            },
            Cue {
                start: 3_723_004,
                end: 3_724_004,
                text: "  ".into(),
            },
            Cue {
                start: 3_725_000,
                end: 3_726_000,
                text: "「夜」 --> {\\an8}".into(),
            },
        ];
        let text = srt(&cues);
        assert_eq!(
            text,
            format!(
                "1\n00:00:00,500 --> 00:00:01,500\n{}\n\n2\n01:02:05,000 --> 01:02:06,000\n{}\n\n",
                escape::srt_text("He said: <b>\"100%\"</b>"),
                escape::srt_text("「夜」 --> {\\an8}")
            )
        );
        assert_eq!(srt(&[]), "");
    }

    #[test]
    fn chapters_start_with_their_transitions() {
        let titles = HashMap::from([("s1".to_string(), "Rain; #1 = \"wet\"\nagain".to_string())]);
        let ch = chapters(&tl(), &titles);
        assert_eq!(
            ch,
            vec![
                Chapter {
                    start: 0,
                    end: 4600,
                    title: "Rain; #1 = \"wet\"\nagain".into()
                },
                Chapter {
                    start: 4600,
                    end: 8600,
                    title: "Scene s2".into()
                },
            ]
        );
        let meta = ffmetadata(&[("title", "Ep 1: a=b".into()), ("episode_sort", "1".into())], &ch);
        assert_eq!(
            meta,
            ";FFMETADATA1\ntitle=Ep 1: a\\=b\nepisode_sort=1\n\
             [CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=4600\ntitle=Rain\\; \\#1 \\= \"wet\" again\n\
             [CHAPTER]\nTIMEBASE=1/1000\nSTART=4600\nEND=8600\ntitle=Scene s2\n"
        );
    }

    #[test]
    fn quality_gate_names_what_is_broken() {
        let v = serde_json::json!({"codec_name": "h264", "nb_read_packets": "258"});
        assert!(video_problems(&v, 258).is_empty());
        let v = serde_json::json!({"codec_name": "ffv1", "nb_read_packets": "257"});
        assert_eq!(
            video_problems(&v, 258),
            vec!["the video is ffv1, not h264", "the video has 257 frames, expected 258"]
        );
        let a = serde_json::json!({"codec_name": "aac", "sample_rate": "48000", "channels": 2, "duration": "8.600000"});
        assert!(audio_problems(&a, 258).is_empty());
        let a = serde_json::json!({"codec_name": "aac", "sample_rate": "44100", "channels": 1, "duration": "8.650000"});
        let p = audio_problems(&a, 258);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].contains("8.650 s"), "{p:?}");
    }

    #[test]
    fn line_refs_and_milliseconds() {
        assert_eq!(line_ref("s01/sh02/3"), Some(("s01".into(), "sh02".into(), 3)));
        assert_eq!(line_ref("s01/3"), None);
        assert_eq!(line_ref("s01/sh02/0"), None);
        assert_eq!((ms(1), ms(2), ms(30), ms(230)), (33, 67, 1000, 7667));
        assert_eq!(scene_name("length:scene:s02"), "s02");
        assert_eq!(scene_name("scene:s01"), "s01");
    }

    /// End to end with the real ffmpeg on small synthetic scenes: two FFV1
    /// scene videos (60 and 45 frames, 96×144) and two f32 scene mixes with
    /// hot clicks (so loudnorm needs the limiter), one 0.4-s dissolve. Set
    /// `EPISODE_TEST_OUT=dir` to keep the episode for `media-report`.
    mod media {
        use std::collections::BTreeMap;
        use std::sync::Arc;

        use serde_json::json;

        use super::super::*;
        use crate::cache::index::SourceIndex;
        use crate::exec::runner;
        use crate::graph::{Node, NodeKind, Pool};
        use crate::stages::tools::Toolchain;

        struct Bench {
            dir: tempfile::TempDir,
            tools: Arc<Toolchain>,
        }

        impl Bench {
            fn path(&self, name: &str) -> Utf8PathBuf {
                Utf8Path::from_path(self.dir.path()).expect("utf-8 temp dir").join(name)
            }

            async fn ffmpeg(&self, args: &[&str]) {
                let ffmpeg = self.tools.ffmpeg.as_ref().expect("ffmpeg");
                let cmd = Cmd::new(ffmpeg.as_str())
                    .args(["-hide_banner", "-nostdin", "-y", "-v", "error"])
                    .args(args);
                runner::run(&cmd, &self.path(""), &CancellationToken::new())
                    .await
                    .expect("ffmpeg makes a test input");
            }

            fn job(&self, kind: NodeKind, name: &str, params: Value, inputs: Vec<JobInput>) -> Job {
                let scratch = self.path(name);
                std::fs::create_dir_all(&scratch).expect("scratch dir");
                let engine = crate::engines::find("ffmpeg").expect("ffmpeg engine");
                let params: BTreeMap<String, Value> = serde_json::from_value(params).expect("params");
                let material_params = params.clone();
                Job {
                    node: Node {
                        id: format!("{}:ep01", kind.as_str()),
                        kind,
                        path: "ep01".into(),
                        engines: vec![engine],
                        pool: 0,
                        params,
                        inputs: Vec::new(),
                        seed: None,
                        media_seconds: 0.0,
                        retries: 0,
                        out_stem: "ep01/ep01".into(),
                    },
                    engine,
                    attempt: 0,
                    inputs,
                    scratch,
                    root: self.path(""),
                    pool: Pool {
                        name: "cpu".into(),
                        slots: 1,
                        service: None,
                        url: String::new(),
                        model: None,
                    },
                    simulate: None,
                    tools: self.tools.clone(),
                    material: crate::graph::key::KeyMaterial {
                        schema: 0,
                        kind,
                        engine: engine.name.into(),
                        engine_version: engine.version,
                        backend: crate::graph::key::Backend {
                            simulated: false,
                            service: None,
                            model: None,
                        },
                        params: material_params,
                        inputs: Vec::new(),
                        seed: None,
                    },
                }
            }
        }

        fn input(role: &str, suffix: &str, path: Option<Utf8PathBuf>, duration: f64) -> JobInput {
            JobInput {
                role: role.into(),
                files: path.map(|p| vec![(suffix.to_string(), p)]).unwrap_or_default(),
                outputs: Vec::new(),
                duration: Some(duration),
                hash: String::new(),
            }
        }

        async fn scene(bench: &Bench, name: &str, frames: u64, hue: u32) -> (Utf8PathBuf, Utf8PathBuf) {
            let video = bench.path(&format!("{name}.mkv"));
            let src = format!("testsrc2=s=96x144:r=30,hue=h={hue}");
            let count = frames.to_string();
            bench
                .ffmpeg(&[
                    "-f",
                    "lavfi",
                    "-i",
                    &src,
                    "-frames:v",
                    &count,
                    "-c:v",
                    "ffv1",
                    "-level",
                    "3",
                    "-g",
                    "1",
                    "-pix_fmt",
                    "yuv420p",
                    video.as_str(),
                ])
                .await;
            let audio = bench.path(&format!("{name}.wav"));
            let samples = frames * timing::SAMPLES_PER_FRAME;
            let tone =
                "aevalsrc=0.05*sin(2*PI*330*t)+if(lt(mod(t\\,0.5)\\,0.002)\\,0.9\\,0)|0.05*sin(2*PI*440*t):s=48000:d=5";
            let trim = format!("atrim=end_sample={samples}");
            bench
                .ffmpeg(&[
                    "-f",
                    "lavfi",
                    "-i",
                    tone,
                    "-af",
                    &trim,
                    "-c:a",
                    "pcm_f32le",
                    audio.as_str(),
                ])
                .await;
            (video, audio)
        }

        #[tokio::test]
        async fn scenes_become_an_episode() {
            let dir = tempfile::tempdir().expect("temp dir");
            let cache = Utf8Path::from_path(dir.path()).expect("utf-8").to_owned();
            let tools = Toolchain::discover(&cache, &mut SourceIndex::load(&cache.join("index.json")));
            if tools.ffmpeg.is_none() || tools.ffprobe.is_none() {
                eprintln!("ffmpeg is not installed; skipping");
                return;
            }
            let bench = Bench {
                dir,
                tools: Arc::new(tools),
            };
            let cancel = CancellationToken::new();
            let (v1, a1) = scene(&bench, "s1", 60, 0).await;
            let (v2, a2) = scene(&bench, "s2", 45, 120).await;
            let joins = json!({"transitions": ["dissolve"], "transition_seconds": 0.4});

            let scenes = |v1: &Utf8PathBuf, v2: &Utf8PathBuf, suffix: &str| {
                vec![
                    input("scene:s1", suffix, Some(v1.clone()), 2.0),
                    input("scene:s2", suffix, Some(v2.clone()), 1.5),
                ]
            };
            let job = bench.job(NodeKind::EpisodeVideo, "video", joins.clone(), scenes(&v1, &v2, "mkv"));
            let video = episode_video(&job, &cancel).await.expect("episode video");
            assert_eq!(video.duration, Some(timing::seconds(93)));

            let mut params = joins.clone();
            params["loudness_lufs"] = json!(-16);
            params["true_peak_dbtp"] = json!(-1.5);
            let job = bench.job(NodeKind::EpisodeAudio, "audio", params, scenes(&a1, &a2, "wav"));
            let audio = episode_audio(&job, &cancel).await.expect("episode audio");
            assert_eq!(audio.duration, Some(93.0 * 1600.0 / 48000.0));

            let mut params = joins.clone();
            params["show"] = json!("Test Show");
            params["episode"] = json!("ep01");
            params["number"] = json!(1);
            params["title"] = json!("Episode 1: \"Sunset\"; #1 = ok");
            params["cues"] = json!([
                {"line": "s1/a/1", "speaker": "Kai", "text": "He said: <b>\"100%\"</b> {\\an8} C:\\New"},
                {"line": "s2/a/1", "speaker": "Mio", "text": "「夜」だね"},
            ]);
            params["chapters"] = json!([{"scene": "s1", "title": "Rain; #1"}, {"scene": "s2", "title": "Night = 夜"}]);
            let inputs = vec![
                input("video", "mkv", Some(video.files[0].1.clone()), 3.1),
                input("audio", "m4a", Some(audio.files[0].1.clone()), 3.1),
                input("length:scene:s1", "wav", None, 2.0),
                input("length:scene:s2", "wav", None, 1.5),
                input("timing:ep01/s1/a", "mkv", None, 1.0),
                input("timing:ep01/s1/b", "mkv", None, 1.0),
                input("timing:ep01/s2/a", "mkv", None, 1.5),
                input("voice:s1/a/1", "wav", None, 0.4),
                input("voice:s2/a/1", "wav", None, 0.6),
            ];
            let job = bench.job(NodeKind::Episode, "episode", params, inputs.clone());
            let episode = assemble(&job, &cancel).await.expect("episode");
            let suffixes: Vec<&str> = episode.files.iter().map(|(s, _)| s.as_str()).collect();
            assert_eq!(suffixes, ["mp4", "srt", "jpg"]);
            let srt = std::fs::read_to_string(&episode.files[1].1).expect("srt");
            assert!(srt.starts_with("1\n00:00:00,500 --> 00:00:01,500\n"), "{srt}");
            assert!(srt.contains("2\n00:00:02,100 --> 00:00:03,100\n「夜」だね\n"), "{srt}");

            let mp4 = &episode.files[0].1;
            let v = probe_stream(&job, mp4, "v:0", &cancel).await.expect("video stream");
            assert!(video_problems(&v, 93).is_empty(), "{v}");
            let a = probe_stream(&job, mp4, "a:0", &cancel).await.expect("audio stream");
            assert!(audio_problems(&a, 93).is_empty(), "{a}");
            let s = probe_stream(&job, mp4, "s:0", &cancel).await.expect("subtitle stream");
            assert_eq!(s["codec_name"], "mov_text");

            // The gate refuses an audio track that does not match the video.
            let mut short = inputs;
            short[3].duration = Some(1.0);
            let job = bench.job(
                NodeKind::Episode,
                "refused",
                job.node
                    .params
                    .clone()
                    .into_iter()
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                short,
            );
            let err = assemble(&job, &cancel).await.expect_err("gate").to_string();
            assert!(err.contains("the video has 93 frames, expected 78"), "{err}");

            if let Ok(keep) = std::env::var("EPISODE_TEST_OUT") {
                for (suffix, path) in &episode.files {
                    let _ = std::fs::copy(path, format!("{keep}/episode.{suffix}"));
                }
            }
        }
    }
}
