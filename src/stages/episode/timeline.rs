//! The episode timeline: scene starts, subtitle cues, chapters, and the
//! quality gate that checks the streams before the mux.

use super::*;

/// Where every scene sits on the episode timeline, in frames.
#[derive(Debug)]
pub(super) struct Timeline {
    pub(super) scenes: Vec<String>,
    pub(super) lengths: Vec<u64>,
    pub(super) starts: Vec<u64>,
    pub(super) total: u64,
}

impl Timeline {
    pub(super) fn new(scenes: Vec<String>, lengths: Vec<u64>, overlaps: &[u64]) -> Timeline {
        let starts = timing::scene_starts(&lengths, overlaps);
        let total = timing::episode_frames(&lengths, overlaps);
        Timeline {
            scenes,
            lengths,
            starts,
            total,
        }
    }

    pub(super) fn index(&self, scene: &str) -> Option<usize> {
        self.scenes.iter().position(|s| s == scene)
    }
}

/// Frames → whole milliseconds (nearest).
pub(super) fn ms(frames: u64) -> u64 {
    (frames * 1000 + timing::FPS / 2) / timing::FPS
}

/// One shot's measured length, from a `timing:<ep>/<scene>/<shot>` input.
#[derive(Debug, Clone)]
pub(super) struct ShotTiming {
    pub(super) scene: String,
    pub(super) shot: String,
    pub(super) frames: u64,
}

/// One voice line's length, from a `voice:<scene>/<shot>/<n>` input.
#[derive(Debug, Clone)]
pub(super) struct VoiceTiming {
    pub(super) scene: String,
    pub(super) shot: String,
    pub(super) n: usize,
    pub(super) seconds: f64,
}

/// A dialogue line from the `cues` param.
#[derive(Debug, Clone)]
pub(super) struct CueSpec {
    pub(super) scene: String,
    pub(super) shot: String,
    pub(super) n: usize,
    pub(super) text: String,
}

/// A subtitle, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cue {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) text: String,
}

/// `<scene>/<shot>/<n>` → its parts.
pub(super) fn line_ref(s: &str) -> Option<(String, String, usize)> {
    let (rest, n) = s.rsplit_once('/')?;
    let (scene, shot) = rest.split_once('/')?;
    Some((scene.to_string(), shot.to_string(), n.parse().ok().filter(|n| *n > 0)?))
}

/// Where each shot starts on the episode timeline; every scene's shots must
/// add up to the scene's length.
pub(super) fn shot_starts(tl: &Timeline, shots: &[ShotTiming]) -> Result<HashMap<(String, String), u64>, String> {
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
pub(super) fn place_cues(
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

pub(super) fn srt_time(ms: u64) -> String {
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
pub(super) fn srt(cues: &[Cue]) -> String {
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
pub(super) struct Chapter {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) title: String,
}

/// One chapter per scene, starting where its transition starts.
pub(super) fn chapters(tl: &Timeline, titles: &HashMap<String, String>) -> Vec<Chapter> {
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
pub(super) fn ffmetadata(tags: &[(&str, String)], chapters: &[Chapter]) -> String {
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
pub(super) fn video_problems(stream: &Value, frames: u64) -> Vec<String> {
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
pub(super) fn audio_problems(stream: &Value, frames: u64) -> Vec<String> {
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

/// Refuse to assemble streams that would make a broken episode: the video
/// and every track's audio, probed side by side (each probe reads its whole
/// file to count packets).
pub(super) async fn quality_gate(
    job: &Job,
    video: &Utf8Path,
    audios: &[&Utf8Path],
    frames: u64,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let probes = futures_util::future::try_join(
        probe_stream(job, video, "v:0", cancel),
        futures_util::future::try_join_all(audios.iter().map(|a| probe_stream(job, a, "a:0", cancel))),
    );
    let (v, audio) = probes.await?;
    let problems: Vec<String> = video_problems(&v, frames)
        .into_iter()
        .chain(audio.iter().flat_map(|a| audio_problems(a, frames)))
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
