//! A scene's picture (its shots joined, checked first) and its sound (voices
//! over ducked music, with its loudness measured for the episode).
//!
//! Both keep the animatic's clock exact: the video is the shots' frames copied
//! end to end, and the mix is exactly the scene's frames × 1600 samples with
//! each line starting on the sample its subtitle does ([`timing::line_starts`]).

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::voice::{check_rate, wav_samples};
use super::{escape, exec, ffmpeg, input, inputs_with, meter, param_f64, produced, scratch, tool, write};
use crate::engines::Tool;
use crate::exec::runner::Cmd;
use crate::exec::{ExecError, Job, JobInput, Produced};
use crate::timing;

fn fail(job: &Job, what: impl std::fmt::Display) -> ExecError {
    ExecError::Permanent(format!("{}: {what}", job.node.id))
}

/// `shot:sh01` → `sh01`.
fn shot_id(role: &str) -> &str {
    role.strip_prefix("shot:").unwrap_or(role)
}

fn main_file<'a>(job: &Job, i: &'a JobInput) -> Result<&'a Utf8PathBuf, ExecError> {
    i.files
        .first()
        .map(|(_, p)| p)
        .ok_or_else(|| fail(job, format!("input {} has no file", i.role)))
}

fn seconds_of(job: &Job, i: &JobInput) -> Result<f64, ExecError> {
    i.duration
        .ok_or_else(|| fail(job, format!("input {} has no duration", i.role)))
}

fn frames_of(job: &Job, i: &JobInput) -> Result<u64, ExecError> {
    seconds_of(job, i).map(timing::frames)
}

// ---------------------------------------------------------------------------
// Scene video
// ---------------------------------------------------------------------------

/// What ffprobe says about a shot's first video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VideoInfo {
    pub codec: String,
    pub width: u64,
    pub height: u64,
    pub pix_fmt: String,
    pub frames: u64,
}

/// ffprobe `-count_packets` JSON → [`VideoInfo`] (the intermediates have no B-frames: a packet is a frame).
pub(crate) fn parse_video_info(json: &[u8]) -> Result<VideoInfo, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("unreadable ffprobe output ({e})"))?;
    let s = v.pointer("/streams/0").ok_or("no video stream")?;
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let num = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    let frames = s
        .get("nb_read_packets")
        .and_then(Value::as_str)
        .and_then(|n| n.parse().ok())
        .ok_or("no frame count")?;
    Ok(VideoInfo {
        codec: text("codec_name"),
        width: num("width"),
        height: num("height"),
        pix_fmt: text("pix_fmt"),
        frames,
    })
}

/// A shot is usable when it has its frames and matches the scene's first shot.
pub(crate) fn check_shot(info: &VideoInfo, expected: u64, first: Option<&VideoInfo>) -> Result<(), String> {
    if info.frames != expected {
        return Err(format!(
            "{} frames, expected {expected} ({:.3} s)",
            info.frames,
            timing::seconds(expected)
        ));
    }
    if let Some(f) = first {
        let (a, b) = (
            (&info.codec, info.width, info.height, &info.pix_fmt),
            (&f.codec, f.width, f.height, &f.pix_fmt),
        );
        if a != b {
            return Err(format!(
                "{} {}x{} {} differs from the first shot's {} {}x{} {} (stream copy needs equal streams)",
                a.0, a.1, a.2, a.3, b.0, b.1, b.2, b.3
            ));
        }
    }
    Ok(())
}

/// The ffconcat list of the shots, paths quoted.
pub(crate) fn concat_list<'a>(paths: impl IntoIterator<Item = &'a Utf8Path>) -> String {
    let mut list = String::from("ffconcat version 1.0\n");
    for p in paths {
        list.push_str(&format!("file {}\n", escape::concat_path(p.as_str())));
    }
    list
}

pub(crate) async fn probe_video(job: &Job, path: &Utf8Path, cancel: &CancellationToken) -> Result<VideoInfo, String> {
    let ffprobe = tool(job, Tool::Ffprobe).map_err(|e| e.to_string())?;
    let cmd = Cmd::new(ffprobe.as_str())
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,pix_fmt,nb_read_packets",
        ])
        .args(["-of", "json", path.as_str()]);
    let out = exec(job, &cmd, cancel).await.map_err(|e| match e {
        ExecError::Cancelled => "cancelled".to_string(),
        e => format!("unreadable: {e}"),
    })?;
    parse_video_info(&out.stdout)
}

/// The quality gate: every shot readable, as long as its duration says and
/// like the first shot. Returns the scene's frames.
async fn check_shots(job: &Job, shots: &[&JobInput], cancel: &CancellationToken) -> Result<u64, ExecError> {
    let mut total = 0;
    let mut first: Option<VideoInfo> = None;
    for shot in shots {
        let broken = |e: String| fail(job, format!("shot {} is broken: {e}", shot_id(&shot.role)));
        let expected = frames_of(job, shot)?;
        let info = probe_video(job, main_file(job, shot)?, cancel).await;
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let info = info.map_err(broken)?;
        check_shot(&info, expected, first.as_ref()).map_err(broken)?;
        first.get_or_insert(info);
        total += expected;
    }
    Ok(total)
}

/// Join the scene's shots (lossless H.264 in Matroska) by stream copy, after checking each one.
pub async fn scene_video(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let shots: Vec<&JobInput> = inputs_with(job, "shot:").collect();
    if shots.is_empty() {
        return Err(fail(job, "the scene has no shots"));
    }
    let total = check_shots(job, &shots, cancel).await?;
    let paths = shots
        .iter()
        .map(|s| main_file(job, s).map(|p| p.as_path()))
        .collect::<Result<Vec<_>, _>>()?;
    let list = write(job, "shots.ffconcat", &concat_list(paths))?;
    let out = scratch(job, "scene_video.mkv");
    let cmd = ffmpeg(job)?
        .args(["-f", "concat", "-safe", "0", "-i", list.as_str()])
        .args(["-map", "0:v:0", "-c", "copy", "-fflags", "+bitexact", out.as_str()]);
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    let joined = probe_video(job, &out, cancel)
        .await
        .map_err(|e| fail(job, format!("the joined video is broken: {e}")))?;
    if joined.frames != total {
        let why = format!("the joined video has {} frames, the shots {total}", joined.frames);
        return Err(fail(job, why));
    }
    Ok(Produced {
        files: vec![("mkv".into(), out)],
        duration: Some(timing::seconds(total)),
        metadata: crate::exec::Metadata::new(),
    })
}

// ---------------------------------------------------------------------------
// Scene mix
// ---------------------------------------------------------------------------

/// Where one voice line sits in the scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Index into the voices given to [`place_lines`].
    pub voice: usize,
    /// First sample of the line in the scene.
    pub offset: u64,
}

/// `voice:sh01/2` → (`sh01`, 2).
fn voice_role(role: &str) -> Option<(&str, u32)> {
    let (shot, n) = role.strip_prefix("voice:")?.rsplit_once('/')?;
    Some((shot, n.parse().ok()?))
}

/// Place each voice (role, seconds) on the scene of shots (id, seconds):
/// its shot's start frame plus [`timing::line_starts`] of that shot's lines,
/// in samples. Returns the scene's samples and the placements.
pub(crate) fn place_lines(shots: &[(&str, f64)], voices: &[(&str, f64)]) -> Result<(u64, Vec<Placed>), String> {
    let mut by_shot: Vec<Vec<(u32, usize)>> = vec![Vec::new(); shots.len()];
    for (i, (role, _)) in voices.iter().enumerate() {
        let (shot, n) = voice_role(role).ok_or_else(|| format!("input {role} is not `voice:<shot>/<n>`"))?;
        let s = shots
            .iter()
            .position(|(id, _)| *id == shot)
            .ok_or_else(|| format!("voice {role} belongs to no shot of this scene"))?;
        by_shot[s].push((n, i));
    }
    let mut placed = Vec::new();
    let mut start = 0;
    for ((id, seconds), mut lines) in shots.iter().zip(by_shot) {
        let frames = timing::frames(*seconds);
        lines.sort_unstable();
        let lengths: Vec<f64> = lines.iter().map(|&(_, i)| voices[i].1).collect();
        for ((_, i), (at, len)) in lines
            .iter()
            .zip(timing::line_starts(&lengths).into_iter().zip(&lengths))
        {
            let end = at + timing::frames_to_hold(*len);
            if end > frames {
                return Err(format!(
                    "{} ends at frame {end} of shot {id}, which has {frames}: the shot was not lengthened for its dialogue",
                    voices[*i].0
                ));
            }
            placed.push(Placed {
                voice: *i,
                offset: (start + at) * timing::SAMPLES_PER_FRAME,
            });
        }
        start += frames;
    }
    Ok((start * timing::SAMPLES_PER_FRAME, placed))
}

/// Levels of the mix: music gain and the sidechain compressor that ducks it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Levels {
    pub music_volume: f64,
    pub threshold: f64,
    pub ratio: f64,
    pub attack_ms: f64,
    pub release_ms: f64,
}

impl Levels {
    fn from_params(job: &Job) -> Result<Levels, String> {
        let get = |name: &str, default: f64, lo: f64, hi: f64| {
            let v = param_f64(job, name, default);
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{name} is {v}; it must lie in {lo}…{hi} (rules/audio.yaml)"))
            }
        };
        Ok(Levels {
            music_volume: get("music_volume", 0.5, 0.0, 4.0)?,
            threshold: get("duck_threshold", 0.02, 0.000_976_563, 1.0)?,
            ratio: get("duck_ratio", 6.0, 1.0, 20.0)?,
            attack_ms: get("duck_attack_ms", 200.0, 0.01, 2000.0)?,
            release_ms: get("duck_release_ms", 1000.0, 0.01, 9000.0)?,
        })
    }
}

/// The scene mix filtergraph. Input 0 is the music, input i (1-based) the
/// voice placed at `offsets[i-1]` samples. Output `[mix]`: stereo, `samples` long.
pub(crate) fn mix_graph(samples: u64, offsets: &[u64], l: &Levels) -> String {
    let music = format!(
        "[0:a]aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,apad=whole_len={samples},\
         atrim=end_sample={samples},volume={}",
        l.music_volume
    );
    if offsets.is_empty() {
        return format!("{music}[mix]");
    }
    let mut g = format!("anullsrc=r=48000:cl=stereo,atrim=end_sample={samples}[bed];");
    let mut bus = String::from("[bed]");
    for (k, off) in offsets.iter().enumerate() {
        let i = k + 1;
        g.push_str(&format!(
            "[{i}:a]aresample=48000,aformat=channel_layouts=mono,pan=stereo|c0=c0|c1=c0,adelay=delays={off}S:all=1[v{i}];"
        ));
        bus.push_str(&format!("[v{i}]"));
    }
    g.push_str(&format!(
        "{bus}amix=inputs={}:normalize=0:duration=first,asplit=2[sc][vox];{music}[mus];\
         [mus][sc]sidechaincompress=threshold={}:ratio={}:attack={}:release={}[duck];\
         [duck][vox]amix=inputs=2:normalize=0:duration=first,atrim=end_sample={samples}[mix]",
        offsets.len() + 1,
        l.threshold,
        l.ratio,
        l.attack_ms,
        l.release_ms
    ));
    g
}

/// Mix the scene's voices, each where its subtitle starts, over the ducked music.
pub async fn scene_mix(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    check_rate(job)?;
    let levels = Levels::from_params(job).map_err(|e| fail(job, e))?;
    let shots = inputs_with(job, "shot:")
        .map(|s| Ok((shot_id(&s.role), seconds_of(job, s)?)))
        .collect::<Result<Vec<_>, ExecError>>()?;
    let voice_inputs: Vec<&JobInput> = inputs_with(job, "voice:").collect();
    let voices = voice_inputs
        .iter()
        .map(|v| Ok((v.role.as_str(), seconds_of(job, v)?)))
        .collect::<Result<Vec<_>, ExecError>>()?;
    let (samples, placed) = place_lines(&shots, &voices).map_err(|e| fail(job, e))?;
    if samples == 0 {
        return Err(fail(job, "the scene has no frames"));
    }
    let music = main_file(job, input(job, "music")?)?;

    let mut cmd = ffmpeg(job)?.args(["-i", music.as_str()]);
    for p in &placed {
        cmd = cmd.args(["-i", main_file(job, voice_inputs[p.voice])?.as_str()]);
    }
    let offsets: Vec<u64> = placed.iter().map(|p| p.offset).collect();
    let out = scratch(job, "scene_mix.wav");
    let graph = mix_graph(samples, &offsets, &levels);
    let cmd = cmd.args(["-filter_complex", graph.as_str(), "-map", "[mix]"]).args([
        "-c:a",
        "pcm_f32le",
        "-fflags",
        "+bitexact",
        out.as_str(),
    ]);
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    let got = wav_samples(job, &out)?;
    if got != samples {
        return Err(fail(job, format!("the mix has {got} samples, the scene {samples}")));
    }
    // Measured once here, so the episode integrates its loudness from the
    // scenes' blocks instead of reading the whole episode again.
    let loudness = meter::measure_file(&out, cancel).await;
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let loudness = loudness.map_err(|e| fail(job, format!("measuring the mix: {e}")))?;
    let json = serde_json::to_string(&loudness).map_err(|e| fail(job, e))?;
    let measured = write(job, "scene_mix.loudness.json", &json)?;
    Ok(Produced {
        files: vec![("wav".into(), out), (meter::SUFFIX.into(), measured)],
        duration: Some(samples as f64 / timing::RATE as f64),
        metadata: crate::exec::Metadata::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Levels {
        Levels {
            music_volume: 0.5,
            threshold: 0.02,
            ratio: 6.0,
            attack_ms: 200.0,
            release_ms: 1000.0,
        }
    }

    #[test]
    fn lines_start_where_subtitles_do() {
        // sh01: 2 s written, one 1.2-s line → 15 + 36 + 15 = 66 frames; sh02: 3 s, two lines.
        let shots = [("sh01", 2.2), ("sh02", 3.0)];
        let voices = [("voice:sh02/2", 0.5), ("voice:sh01/1", 1.2), ("voice:sh02/1", 1.0)];
        let (samples, placed) = place_lines(&shots, &voices).unwrap();
        assert_eq!(samples, (66 + 90) * 1600);
        let at: Vec<(usize, u64)> = placed.iter().map(|p| (p.voice, p.offset)).collect();
        assert_eq!(
            at,
            [(1, 15 * 1600), (2, (66 + 15) * 1600), (0, (66 + 15 + 30 + 9) * 1600)],
            "sh02/1 before sh02/2, each after the shot's lead-in"
        );
        assert_eq!(timing::line_starts(&[1.0, 0.5]), [15, 54]);
    }

    #[test]
    fn lines_must_fit_their_shot() {
        let err = place_lines(&[("sh01", 1.0)], &[("voice:sh01/1", 1.0)]).unwrap_err();
        assert!(
            err.contains("voice:sh01/1 ends at frame 45 of shot sh01, which has 30"),
            "{err}"
        );
        assert!(
            place_lines(&[("sh01", 1.0)], &[("voice:sh09/1", 0.1)])
                .unwrap_err()
                .contains("no shot")
        );
        assert!(place_lines(&[("sh01", 1.0)], &[("voice:x", 0.1)]).is_err());
        assert_eq!(place_lines(&[("sh01", 1.0)], &[]).unwrap(), (48_000, vec![]));
    }

    #[test]
    fn mix_graph_delays_in_samples_and_ducks() {
        let g = mix_graph(160_000, &[24_000, 105_600], &levels());
        assert_eq!(
            g,
            "anullsrc=r=48000:cl=stereo,atrim=end_sample=160000[bed];\
             [1:a]aresample=48000,aformat=channel_layouts=mono,pan=stereo|c0=c0|c1=c0,adelay=delays=24000S:all=1[v1];\
             [2:a]aresample=48000,aformat=channel_layouts=mono,pan=stereo|c0=c0|c1=c0,adelay=delays=105600S:all=1[v2];\
             [bed][v1][v2]amix=inputs=3:normalize=0:duration=first,asplit=2[sc][vox];\
             [0:a]aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,apad=whole_len=160000,\
             atrim=end_sample=160000,volume=0.5[mus];\
             [mus][sc]sidechaincompress=threshold=0.02:ratio=6:attack=200:release=1000[duck];\
             [duck][vox]amix=inputs=2:normalize=0:duration=first,atrim=end_sample=160000[mix]"
        );
        let quiet = mix_graph(48_000, &[], &levels());
        assert!(
            quiet.starts_with("[0:a]") && quiet.ends_with("volume=0.5[mix]"),
            "{quiet}"
        );
    }

    #[test]
    fn shots_are_checked_before_joining() {
        let json = br#"{"streams":[{"codec_name":"ffv1","width":960,"height":1440,"pix_fmt":"yuv420p","nb_read_packets":"120"}]}"#;
        let info = parse_video_info(json).unwrap();
        assert_eq!(info.frames, 120);
        assert_eq!(check_shot(&info, 120, None), Ok(()));
        assert!(
            check_shot(&info, 90, None)
                .unwrap_err()
                .contains("120 frames, expected 90 (3.000 s)")
        );
        let other = VideoInfo {
            width: 512,
            ..info.clone()
        };
        assert!(check_shot(&other, 120, Some(&info)).unwrap_err().contains("512x1440"));
        assert_eq!(parse_video_info(br#"{"streams":[]}"#).unwrap_err(), "no video stream");
        assert!(parse_video_info(b"").is_err());
    }

    #[test]
    fn concat_list_quotes_paths() {
        let list = concat_list([Utf8Path::new("/c/a.mkv"), Utf8Path::new("/c/it's.mkv")]);
        assert_eq!(list, "ffconcat version 1.0\nfile '/c/a.mkv'\nfile '/c/it'\\''s.mkv'\n");
    }
}
