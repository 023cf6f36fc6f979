//! Measuring media files in tests: ffprobe, loudness, levels, silences.
#![allow(dead_code, clippy::disallowed_methods)] // tests run ffmpeg to measure

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-show_chapters",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn streams<'a>(probe: &'a Value, kind: &str) -> Vec<&'a Value> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == kind)
        .collect()
}

fn num(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

/// Duration of a file's first stream of `kind`, in seconds.
pub fn stream_duration(path: &Path, kind: &str) -> f64 {
    let p = ffprobe(path);
    let s = streams(&p, kind)[0];
    let d = num(&s["duration"]);
    if d.is_nan() { num(&p["format"]["duration"]) } else { d }
}

/// Decoded video frames.
pub fn frame_count(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn ffmpeg_stderr(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Integrated loudness (LUFS) and true peak (dBTP) of the first audio stream.
pub fn loudness(path: &Path) -> (f64, f64) {
    loudness_of(path, 0)
}

/// Integrated loudness (LUFS) and true peak (dBTP) of audio stream `track`
/// (a silent one measures −70 LUFS and −inf dBTP).
pub fn loudness_of(path: &Path, track: usize) -> (f64, f64) {
    let map = format!("0:a:{track}");
    let err = ffmpeg_stderr(&[
        "-i",
        path.to_str().unwrap(),
        "-map",
        &map,
        "-af",
        "ebur128=peak=true",
        "-f",
        "null",
        "-",
    ]);
    let summary = &err[err.rfind("Summary:").expect("ebur128 summary")..];
    let grab = |label: &str| -> f64 {
        let at = summary.find(label).unwrap() + label.len();
        summary[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    (grab("I:"), grab("Peak:"))
}

/// RMS level (dBFS) of `filter_input` between `start` and `end` seconds.
pub fn rms_db(args_before_af: &[&str], start: f64, end: f64) -> f64 {
    let mut args: Vec<String> = args_before_af.iter().map(|s| s.to_string()).collect();
    args.extend([
        "-af".into(),
        format!("atrim=start={start}:end={end},astats=measure_perchannel=none:measure_overall=RMS_level"),
        "-f".into(),
        "null".into(),
        "-".into(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = ffmpeg_stderr(&refs);
    let line = err
        .lines()
        .rev()
        .find(|l| l.contains("RMS level dB:"))
        .unwrap_or_else(|| panic!("no RMS in {err}"));
    line.rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or(f64::NEG_INFINITY)
}

/// Where sound starts after silence (seconds), by silencedetect.
pub fn sound_onsets(path: &Path) -> Vec<f64> {
    let err = ffmpeg_stderr(&[
        "-i",
        path.to_str().unwrap(),
        "-af",
        "silencedetect=noise=-45dB:d=0.12",
        "-f",
        "null",
        "-",
    ]);
    let mut onsets = vec![];
    // Sound at 0 counts as an onset when the file does not start silent.
    if !err.contains("silence_start: 0") && !err.contains("silence_start: -") {
        onsets.push(0.0);
    }
    for l in err.lines() {
        if let Some(i) = l.find("silence_end: ") {
            onsets.push(l[i + 13..].split_whitespace().next().unwrap().parse().unwrap());
        }
    }
    onsets
}

/// Run ffmpeg and return what it wrote to stdout.
fn ffmpeg_stdout(args: &[&str]) -> String {
    String::from_utf8(ffmpeg_bytes(args)).unwrap()
}

/// Run ffmpeg and return the bytes it wrote to stdout.
fn ffmpeg_bytes(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every frame of a video (or an image), decoded to packed RGB, one after another.
pub fn rgb24(path: &Path) -> Vec<u8> {
    ffmpeg_bytes(&["-i", path.to_str().unwrap(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
}

/// MD5 of a stream's packets (`v` or `a`), to compare streams across files.
pub fn stream_md5(path: &Path, kind: &str) -> String {
    let map = format!("0:{kind}:0");
    ffmpeg_stdout(&[
        "-i",
        path.to_str().unwrap(),
        "-map",
        &map,
        "-c",
        "copy",
        "-f",
        "md5",
        "-",
    ])
    .trim()
    .to_string()
}

/// The first subtitle track of an MP4, as SRT text.
pub fn subtitle_track(path: &Path) -> String {
    subtitle_track_of(path, 0)
}

/// Subtitle track `n` of an MP4, as SRT text.
pub fn subtitle_track_of(path: &Path, n: usize) -> String {
    let map = format!("0:s:{n}");
    ffmpeg_stdout(&["-i", path.to_str().unwrap(), "-map", &map, "-f", "srt", "-"])
}

/// SRT cues: (start seconds, text without word joiners).
pub fn srt_cues(srt: &str) -> Vec<(f64, String)> {
    srt.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
            lines.next()?; // index
            let times = lines.next()?;
            let start = times.split(" --> ").next()?;
            let parts: Vec<f64> = start.replace(',', ".").split(':').map(|p| p.parse().unwrap()).collect();
            let text = lines.collect::<Vec<_>>().join("\n").replace('\u{2060}', "");
            Some((parts[0] * 3600.0 + parts[1] * 60.0 + parts[2], text))
        })
        .collect()
}

/// Run ffmpeg to completion, panicking with its stderr on failure.
pub fn run_ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The workspace's delivery check, as JSON.
pub fn media_report(tool: &Path, file: &Path) -> Value {
    let out = Command::new(tool).arg(file).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An episode's audio tracks checked as a delivery, one by one: each is
/// tagged with its language (`tags`, ISO 639-2, in track order), measures
/// −16 ± 1 LUFS integrated with a true peak at most −1 dBTP, and lasts as
/// long as the picture (within 40 ms); there is one subtitle track per
/// language, tagged the same. Where the workspace has
/// `../shared/tools/media-report`, each track is also remuxed alone with the
/// picture and measured by it. What is wrong, each naming its track; empty
/// when the episode passes.
pub fn audio_track_problems(episode: &Path, tags: &[&str]) -> Vec<String> {
    let probe = ffprobe(episode);
    let lang = |s: &Value| s["tags"]["language"].as_str().unwrap_or("").to_string();
    let mut problems = Vec::new();
    let audio = streams(&probe, "audio");
    let subs: Vec<String> = streams(&probe, "subtitle").into_iter().map(lang).collect();
    let want: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    if audio.iter().map(|s| lang(s)).collect::<Vec<_>>() != want {
        problems.push(format!(
            "audio tracks tagged {:?}, expected {want:?}",
            audio.iter().map(|s| lang(s)).collect::<Vec<_>>()
        ));
    }
    if subs != want {
        problems.push(format!("subtitle tracks tagged {subs:?}, expected {want:?}"));
    }
    let video = num(&streams(&probe, "video")[0]["duration"]);
    let tool = Path::new(super::REPO).join("../shared/tools/media-report");
    let scratch = tempfile::tempdir().unwrap();
    for (n, a) in audio.iter().enumerate() {
        let track = format!("audio track {n} ({})", lang(a));
        let (lufs, peak) = loudness_of(episode, n);
        if lufs.is_nan() || (lufs + 16.0).abs() > 1.0 {
            problems.push(format!("{track}: integrated loudness {lufs} LUFS, not −16 ± 1"));
        }
        if peak > -1.0 || peak.is_nan() {
            problems.push(format!("{track}: true peak {peak} dBTP, above −1"));
        }
        let drift = (num(&a["duration"]) - video).abs();
        if drift.is_nan() || drift >= 0.040 {
            problems.push(format!(
                "{track}: lasts {} s, the picture {video} s",
                num(&a["duration"])
            ));
        }
        if !tool.is_file() {
            continue;
        }
        let alone = scratch.path().join(format!("track{n}.mp4"));
        let map = format!("0:a:{n}");
        run_ffmpeg(&[
            "-i",
            episode.to_str().unwrap(),
            "-map",
            "0:v",
            "-map",
            &map,
            "-c",
            "copy",
            alone.to_str().unwrap(),
        ]);
        let report = media_report(&tool, &alone);
        let got = |k: &str| report["audio"][k].as_f64().unwrap_or(f64::NAN);
        let (lufs, peak) = (got("integrated_lufs"), got("true_peak_dbtp"));
        let drift = report["av_drift_ms"].as_f64().unwrap_or(f64::NAN);
        if lufs.is_nan() || (lufs + 16.0).abs() > 1.0 || peak.is_nan() || peak > -1.0 || drift.is_nan() || drift >= 40.0
        {
            problems.push(format!(
                "{track}: media-report: {lufs} LUFS, {peak} dBTP, drift {drift} ms"
            ));
        }
    }
    problems
}
