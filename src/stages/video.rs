//! Shot video for the animatic: camera moves over the storyboard plate,
//! the timed and graded shot, and the last frame for continuity.
//!
//! Lengths come from [`timing`] in whole frames and are enforced with
//! `-frames:v`; intermediates are lossless H.264 (x264 `-qp 0`, ultrafast)
//! in Matroska, yuv420p from the camera on: measured on a 4-s push-in, it
//! writes in half the CPU time of FFV1 and decodes in 40% of it, at the
//! same size (utvideo writes as fast but decodes slower and is 27× larger).
//! The plate is scaled once to the frame size and the camera's frames are
//! drawn from it here ([`studio_camera`]), so every pass works at the
//! delivery size. See docs/media-notes/animatic.md §2 and §3.

use camino::{Utf8Path, Utf8PathBuf};
use tokio_util::sync::CancellationToken;

use super::image::PLATE_SCALE;
use super::{exec, ffmpeg, input, param_f64, param_str, probe_duration, produced, scratch};
use crate::exec::runner::{self, Cmd};
use crate::exec::{ExecError, Job, Produced};
use crate::timing;
use studio_camera::{self as camera, View, Yuv420};

/// Camera roll of a dutch angle, in degrees.
const DUTCH_DEGREES: f64 = 6.0;

/// Lossless H.264 in Matroska: cheap to write and to read, a key frame
/// every 2 s (seeks decode at most that far). One thread: the bytes are a
/// function of the input.
pub(crate) const LOSSLESS: [&str; 12] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-qp",
    "0",
    "-g",
    "60",
    "-pix_fmt",
    "yuv420p",
    "-threads",
    "1",
];

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// The plate filmed by a smooth camera move (from the free-text `motion`),
/// rolled for a dutch angle, at plate size / 1.25 (the plate is scaled
/// once to that size by ffmpeg), exactly `timing::frames(duration)`
/// frames: drawn here ([`studio_camera`]) and piped raw into the lossless
/// encoder.
pub async fn camera_move(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let plate = input(job, "image")?.main();
    let (w, h) = png_size(plate)?;
    let frames = timing::frames(param_f64(job, "duration", 4.0)).max(1);
    let roll = if param_str(job, "angle") == "dutch" {
        DUTCH_DEGREES
    } else {
        0.0
    };
    let shot = Shot {
        canvas: (even(w as f64 / PLATE_SCALE) as f64, even(h as f64 / PLATE_SCALE) as f64),
        frames,
        roll,
    };
    let (cw, ch) = (shot.canvas.0 as usize, shot.canvas.1 as usize);
    let scaled = exec(job, &canvas_cmd(job, plate, cw, ch)?, cancel).await?.stdout;
    let Some(_) = Yuv420::new(cw, ch, &scaled) else {
        return Err(ExecError::Permanent(format!(
            "ffmpeg scaled the plate {plate} to {} bytes, not one {cw}x{ch} yuv420p frame",
            scaled.len()
        )));
    };
    let out = scratch(job, "raw.mkv");
    let cmd = ffmpeg(job)?
        .args([
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-video_size",
            &format!("{cw}x{ch}"),
        ])
        .args(["-framerate", &timing::FPS.to_string(), "-i", "pipe:0", "-an", "-sn"])
        .args(["-frames:v".to_string(), frames.to_string()])
        .args(LOSSLESS)
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    let (tx, rx) = tokio::sync::mpsc::channel(FRAMES_IN_FLIGHT);
    let m = Move::from_motion(param_str(job, "motion"));
    let drawing = tokio::task::spawn_blocking(move || film(m, &shot, &scaled, &tx));
    let encoded = runner::run_fed(&cmd, &job.scratch, cancel, rx).await;
    // The drawer stops at its next frame once the encoder is gone.
    drawing
        .await
        .map_err(|e| ExecError::Permanent(format!("drawing the camera move failed: {e}")))?;
    encoded?;
    produced(&out, "ffmpeg")?;
    Ok(video(out, frames))
}

/// Frames drawn ahead of the encoder (2 MiB each at 960×1440).
const FRAMES_IN_FLIGHT: usize = 4;

/// ffmpeg: the plate scaled to `w`×`h` (bicubic) as one raw yuv420p frame on stdout.
fn canvas_cmd(job: &Job, plate: &Utf8Path, w: usize, h: usize) -> Result<Cmd, ExecError> {
    Ok(ffmpeg(job)?
        .args(["-i", plate.as_str(), "-an", "-sn", "-vf"])
        .arg(format!("scale={w}:{h}:flags=bicubic,format=yuv420p"))
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]))
}

/// Draw the `shot.frames` frames of move `m` over `canvas` and send each to
/// `tx`; a view that does not move is drawn once and sent again. Stops
/// when the receiver is gone.
fn film(m: Move, shot: &Shot, canvas: &[u8], tx: &tokio::sync::mpsc::Sender<Vec<u8>>) {
    let (w, h) = (shot.canvas.0 as usize, shot.canvas.1 as usize);
    let Some(canvas) = Yuv420::new(w, h, canvas) else {
        return;
    };
    let mut last: Option<(View, Vec<u8>)> = None;
    for n in 0..shot.frames {
        let view = view_at(m, shot, n);
        let frame = match &last {
            Some((v, f)) if *v == view => f.clone(),
            _ => {
                let mut f = vec![0; Yuv420::frame_len(w, h)];
                camera::draw(&canvas, &view, &mut f);
                last = Some((view, f.clone()));
                f
            }
        };
        if tx.blocking_send(frame).is_err() {
            return;
        }
    }
}

/// The shot as cut: its frames fitted to its dialogue (the last frame held
/// when the video is shorter), scaled to the frame size and graded.
pub async fn shot_video(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    check_fps(job)?;
    let source = input(job, "video")?;
    let mut voices = Vec::new();
    // `voice:<n>` and a dub's `<lang>:voice:<n>`: every track must fit.
    for voice in job.inputs.iter().filter(|i| i.role.contains("voice:")) {
        voices.push((
            voice.role.as_str(),
            match voice.duration {
                Some(d) => d,
                None => probe_duration(job, voice.main(), cancel).await?,
            },
        ));
    }
    let frames = timing::tracks_frames(param_f64(job, "duration", 4.0), &timing::speech_tracks(&voices));
    let grade = Grade {
        width: even(param_f64(job, "width", 960.0)),
        height: even(param_f64(job, "height", 1440.0)),
        contrast: param_f64(job, "contrast", 1.0),
        saturation: param_f64(job, "saturation", 1.0),
    };
    let out = scratch(job, "shot.mkv");
    let cmd = encode(job, source.main(), &shot_chain(&grade), frames, &out)?;
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    Ok(video(out, frames))
}

/// The exact last frame of a video, as PNG: decode the last half second,
/// reversed, and encode only its first frame (overwriting one image with
/// every decoded frame encoded 15 PNGs, nine tenths of the job).
pub async fn last_frame(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let source = input(job, "video")?.main();
    let out = scratch(job, "last_frame.png");
    let cmd = ffmpeg(job)?.args(["-sseof", "-0.5", "-i", source.as_str()]).args([
        "-an",
        "-sn",
        "-vf",
        "reverse",
        "-frames:v",
        "1",
        "-update",
        "1",
        "-c:v",
        "png",
        out.as_str(),
    ]);
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    Ok(Produced {
        files: vec![("png".into(), out)],
        duration: None,
        metadata: crate::exec::Metadata::new(),
    })
}

/// ffmpeg: `source` through the filter chain `vf`, exactly `frames` frames, lossless.
fn encode(job: &Job, source: &Utf8Path, vf: &str, frames: u64, out: &Utf8Path) -> Result<Cmd, ExecError> {
    Ok(ffmpeg(job)?
        .args(["-i", source.as_str(), "-an", "-sn", "-vf", vf])
        .args(["-frames:v".to_string(), frames.to_string()])
        .args(LOSSLESS)
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str()))
}

fn video(out: Utf8PathBuf, frames: u64) -> Produced {
    Produced {
        files: vec![("mkv".into(), out)],
        duration: Some(timing::seconds(frames)),
        metadata: crate::exec::Metadata::new(),
    }
}

/// The animatic's clock is 30 fps; another `fps` would desynchronize the
/// frame counts every later stage computes.
fn check_fps(job: &Job) -> Result<(), ExecError> {
    let fps = param_f64(job, "fps", timing::FPS as f64);
    if (fps - timing::FPS as f64).abs() > 1e-9 {
        return Err(ExecError::Permanent(format!(
            "{}: fps {fps} is not supported by the animatic (its clock is {} fps); set `fps: {}` in rules/video.yaml",
            job.node.id,
            timing::FPS,
            timing::FPS
        )));
    }
    Ok(())
}

/// Round to the nearest even number of pixels (at least 2): yuv420p needs even sizes.
fn even(v: f64) -> u32 {
    ((v / 2.0).round().max(1.0) as u32) * 2
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Utf8Path) -> Result<(u32, u32), ExecError> {
    use std::io::Read;
    let mut head = [0u8; 24];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| ExecError::Permanent(format!("reading the plate {path}: {e}")))?;
    parse_png_size(&head).ok_or_else(|| ExecError::Permanent(format!("the plate {path} is not a PNG image")))
}

fn parse_png_size(head: &[u8; 24]) -> Option<(u32, u32)> {
    let signature = head[..8] == *b"\x89PNG\r\n\x1a\n" && head[12..16] == *b"IHDR";
    let be = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (w, h) = (be(16), be(20));
    (signature && w > 0 && h > 0).then_some((w, h))
}

// ---------------------------------------------------------------------------
// Grade (shot_video)
// ---------------------------------------------------------------------------

/// Frame size and colour grade of a finished shot.
#[derive(Debug, Clone, PartialEq)]
struct Grade {
    width: u32,
    height: u32,
    contrast: f64,
    saturation: f64,
}

/// Re-grid to 30 fps (Matroska keeps ms timestamps), scale, grade, and hold
/// the last frame for as long as needed: the clone is endless and lazy, and
/// `-frames:v` cuts the shot at its length, so a video of any length gives
/// exactly the frames the shot needs.
fn shot_chain(g: &Grade) -> String {
    format!(
        "fps={},scale={}:{}:flags=bicubic,setsar=1,format=yuv420p,eq=contrast={:.3}:saturation={:.3},tpad=stop_mode=clone:stop=-1",
        timing::FPS,
        g.width,
        g.height,
        g.contrast,
        g.saturation
    )
}

// ---------------------------------------------------------------------------
// Camera moves (camera_move)
// ---------------------------------------------------------------------------

/// A camera move over the plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    Hold,
    PushIn,
    PullOut,
    PanLeft,
    PanRight,
    TiltUp,
    TiltDown,
}

/// Phrases in `motion` that name a move; a longer phrase before its prefix.
/// Words also match their inflections ("pans", "panning", "pushes").
const PHRASES: &[(&[&str], Move)] = &[
    (&["push", "in"], Move::PushIn),
    (&["zoom", "in"], Move::PushIn),
    (&["dolly", "in"], Move::PushIn),
    (&["dolly", "forward"], Move::PushIn),
    (&["track", "in"], Move::PushIn),
    (&["move", "in"], Move::PushIn),
    (&["pull", "out"], Move::PullOut),
    (&["pull", "back"], Move::PullOut),
    (&["zoom", "out"], Move::PullOut),
    (&["dolly", "out"], Move::PullOut),
    (&["dolly", "back"], Move::PullOut),
    (&["track", "back"], Move::PullOut),
    (&["pan", "left"], Move::PanLeft),
    (&["pan", "right"], Move::PanRight),
    (&["tilt", "up"], Move::TiltUp),
    (&["tilt", "down"], Move::TiltDown),
    (&["crane", "up"], Move::TiltUp),
    (&["boom", "up"], Move::TiltUp),
    (&["crane", "down"], Move::TiltDown),
    (&["boom", "down"], Move::TiltDown),
    (&["static"], Move::Hold),
    (&["hold"], Move::Hold),
    (&["locked", "off"], Move::Hold),
    (&["pan"], Move::PanRight),
    (&["tilt"], Move::TiltDown),
];

/// `word` is `base` or an inflection of it: -s, -es, -ing (with a doubled
/// last consonant); "into" counts as "in".
fn same_word(word: &str, base: &str) -> bool {
    if word == base || (base == "in" && word == "into") {
        return true;
    }
    let stem = word
        .strip_suffix("ing")
        .or_else(|| word.strip_suffix("es"))
        .or_else(|| word.strip_suffix('s'));
    stem.is_some_and(|s| {
        s == base || (s.len() == base.len() + 1 && s.starts_with(base) && s.ends_with(&base[base.len() - 1..]))
    })
}

fn phrase_at(words: &[&str], phrase: &[&str]) -> bool {
    words.len() >= phrase.len() && words.iter().zip(phrase).all(|(w, p)| same_word(w, p))
}

impl Move {
    /// The move the free text names first (whole words, any case); a hold
    /// when it names none.
    pub(crate) fn from_motion(motion: &str) -> Move {
        let lower = motion.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        (0..words.len())
            .find_map(|i| {
                PHRASES
                    .iter()
                    .find(|(phrase, _)| phrase_at(&words[i..], phrase))
                    .map(|(_, m)| *m)
            })
            .unwrap_or(Move::Hold)
    }

    /// How a storyboard caption names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Move::Hold => "hold",
            Move::PushIn => "push in",
            Move::PullOut => "pull out",
            Move::PanLeft => "pan left",
            Move::PanRight => "pan right",
            Move::TiltUp => "tilt up",
            Move::TiltDown => "tilt down",
        }
    }

    /// Start and end view: (cx, cy, v) in canvas fractions, v = view width /
    /// canvas width (the view keeps the canvas's aspect).
    fn views(self) -> ([f64; 3], [f64; 3]) {
        match self {
            Move::Hold => ([0.5, 0.5, 1.0], [0.5, 0.5, 1.0]),
            Move::PushIn => ([0.5, 0.5, 1.0], [0.5, 0.45, 0.8]),
            Move::PullOut => ([0.5, 0.45, 0.8], [0.5, 0.5, 1.0]),
            Move::PanLeft => ([0.6, 0.5, 0.8], [0.4, 0.5, 0.8]),
            Move::PanRight => ([0.4, 0.5, 0.8], [0.6, 0.5, 0.8]),
            Move::TiltUp => ([0.5, 0.6, 0.8], [0.5, 0.4, 0.8]),
            Move::TiltDown => ([0.5, 0.4, 0.8], [0.5, 0.6, 0.8]),
        }
    }
}

/// What a camera filter needs to know about the shot.
#[derive(Debug, Clone, Copy)]
struct Shot {
    /// The size the plate is filmed at: the frame size, in pixels.
    canvas: (f64, f64),
    frames: u64,
    /// Camera roll in degrees (dutch angle).
    roll: f64,
}

/// The four corners (TL, TR, BL, BR) of a view on the canvas, in pixels,
/// rotated by `roll` about the view's centre. The view shrinks so that the
/// rotated rectangle fits the canvas, and moves inside it.
fn corners([cx, cy, v]: [f64; 3], shot: &Shot) -> [(f64, f64); 4] {
    let (w, h) = shot.canvas;
    let th = shot.roll.to_radians();
    let (sin, cos) = (th.sin().abs(), th.cos());
    // Half extents of the rotated view's bounding box, as canvas fractions.
    let (fit_x, fit_y) = (cos + sin * h / w, cos + sin * w / h);
    let v = v / fit_x.max(fit_y);
    let (hx, hy) = (v / 2.0 * fit_x, v / 2.0 * fit_y);
    let cx = cx.clamp(hx, 1.0 - hx) * w;
    let cy = cy.clamp(hy, 1.0 - hy) * h;
    let (vw, vh) = (v * w / 2.0, v * h / 2.0);
    let rotate = |dx: f64, dy: f64| (cx + dx * th.cos() - dy * th.sin(), cy + dx * th.sin() + dy * th.cos());
    [rotate(-vw, -vh), rotate(vw, -vh), rotate(-vw, vh), rotate(vw, vh)]
}

/// The view of frame `n` of the move: the corners of the start and end
/// views eased by smoothstep (`e = p²(3 − 2p)`, `p = n / (frames − 1)`),
/// so the move starts and stops gently and moves by sub-pixel steps.
fn view_at(m: Move, shot: &Shot, n: u64) -> View {
    let (start, end) = m.views();
    let (a, b) = (corners(start, shot), corners(end, shot));
    let p = (n as f64 / shot.frames.saturating_sub(1).max(1) as f64).clamp(0.0, 1.0);
    let e = p * p * (3.0 - 2.0 * p);
    let at = |i: usize| (a[i].0 + (b[i].0 - a[i].0) * e, a[i].1 + (b[i].1 - a[i].1) * e);
    View {
        tl: at(0),
        tr: at(1),
        bl: at(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn motion_words_pick_the_move() {
        let cases = [
            ("slow push in toward the one lit window", Move::PushIn),
            ("Zoom in on the letter", Move::PushIn),
            ("camera pulls back to reveal the town", Move::PullOut),
            ("pull out slowly", Move::PullOut),
            ("door bursts open, pan left to follow Ren", Move::PanLeft),
            ("pan right across the counter", Move::PanRight),
            ("slow pan across the rooftops", Move::PanRight),
            ("high tracking shot, tilt up to reveal the tower", Move::TiltUp),
            ("tilt down to the street", Move::TiltDown),
            ("static hold, rain falling", Move::Hold),
            ("over-the-shoulder static hold, then push in", Move::Hold),
            ("headlights sweep across", Move::Hold),
            ("", Move::Hold),
            ("the camera pushes into the room", Move::PushIn),
            ("slowly panning left", Move::PanLeft),
            ("the camera holds on her face", Move::Hold),
            ("slow dolly forward through falling snow", Move::PushIn),
            ("slow crane up from the swinging bell to the valley", Move::TiltUp),
            ("handheld shake, slow push in on Hana's face", Move::PushIn),
            ("slow tilt down to her hands, then tilt up to the rope", Move::TiltDown),
            (
                "slow push in as Hana pulls a second envelope from her bag",
                Move::PushIn,
            ),
            ("the camera tracks back as she walks", Move::PullOut),
            // Whole words only: no pan in "panic" or "Japan", no hold in "holder".
            ("panic in Japan, the holder shakes", Move::Hold),
        ];
        for (motion, expected) in cases {
            assert_eq!(Move::from_motion(motion), expected, "{motion:?}");
        }
    }

    fn shot(frames: u64, roll: f64) -> Shot {
        Shot {
            canvas: (1200.0, 1800.0),
            frames,
            roll,
        }
    }

    #[test]
    fn views_map_to_canvas_corners() {
        let c = corners([0.4, 0.5, 0.8], &shot(120, 0.0));
        assert_eq!(c, [(0.0, 180.0), (960.0, 180.0), (0.0, 1620.0), (960.0, 1620.0)]);
        let full = corners([0.5, 0.5, 1.0], &shot(120, 0.0));
        assert_eq!(full[3], (1200.0, 1800.0));
    }

    #[test]
    fn rolled_views_stay_inside_the_canvas() {
        for m in [
            Move::Hold,
            Move::PushIn,
            Move::PanLeft,
            Move::PanRight,
            Move::TiltUp,
            Move::TiltDown,
        ] {
            let (a, b) = m.views();
            for view in [a, b] {
                for (x, y) in corners(view, &shot(90, DUTCH_DEGREES)) {
                    assert!((-1e-6..=1200.0 + 1e-6).contains(&x), "{m:?} x {x}");
                    assert!((-1e-6..=1800.0 + 1e-6).contains(&y), "{m:?} y {y}");
                }
            }
        }
    }

    #[test]
    fn views_ease_from_the_start_to_the_end_of_the_move() {
        let s = shot(121, 0.0);
        let (start, end) = Move::PanRight.views();
        let first = view_at(Move::PanRight, &s, 0);
        let last = view_at(Move::PanRight, &s, 120);
        let (a, b) = (corners(start, &s), corners(end, &s));
        assert_eq!((first.tl, first.tr, first.bl), (a[0], a[1], a[2]));
        assert_eq!((last.tl, last.tr, last.bl), (b[0], b[1], b[2]));
        // Halfway in time is halfway in space; a tenth in is less than a tenth (eased).
        assert!((view_at(Move::PanRight, &s, 60).tl.0 - 120.0).abs() < 1e-9);
        let early = view_at(Move::PanRight, &s, 12).tl.0;
        assert!(early > 0.0 && early < 24.0, "{early}");
        // Past the end it stays at the end; one frame never divides by zero.
        assert_eq!(view_at(Move::PanRight, &s, 500), last);
        assert_eq!(view_at(Move::PanRight, &shot(1, 0.0), 0), first);
        // A hold does not move; rolled, it is not the whole canvas.
        let hold = view_at(Move::Hold, &s, 0);
        assert_eq!(hold, view_at(Move::Hold, &s, 77));
        assert_eq!((hold.tl, hold.tr, hold.bl), ((0.0, 0.0), (1200.0, 0.0), (0.0, 1800.0)));
        let dutch = view_at(Move::Hold, &shot(1, DUTCH_DEGREES), 0);
        assert_ne!(dutch, hold);
        assert!(dutch.tr.1 > dutch.tl.1, "rolled clockwise: {dutch:?}");
    }

    #[test]
    fn shot_chain_grades_and_holds_the_last_frame() {
        let g = Grade {
            width: 960,
            height: 1440,
            contrast: 1.15,
            saturation: 1.15,
        };
        assert_eq!(
            shot_chain(&g),
            "fps=30,scale=960:1440:flags=bicubic,setsar=1,format=yuv420p,eq=contrast=1.150:saturation=1.150,tpad=stop_mode=clone:stop=-1"
        );
    }

    #[test]
    fn png_headers_give_the_size() {
        let mut head = [0u8; 24];
        head[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
        head[12..16].copy_from_slice(b"IHDR");
        head[16..20].copy_from_slice(&1200u32.to_be_bytes());
        head[20..24].copy_from_slice(&1800u32.to_be_bytes());
        assert_eq!(parse_png_size(&head), Some((1200, 1800)));
        head[1] = b'X';
        assert_eq!(parse_png_size(&head), None);
        assert_eq!(even(1200.0 / PLATE_SCALE), 960);
        assert_eq!(even(333.0), 334);
    }
}
