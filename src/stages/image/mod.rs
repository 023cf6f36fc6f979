//! Drawn images for the animatic: character sheets and storyboard frames.
//!
//! Both are one ffmpeg run each: [`paint`] paints the background and the
//! figures here, into a raw frame ffmpeg reads from its stdin, and
//! `drawtext` sets the text from files (`textfile=` + `expansion=none`), so
//! user text never enters a filtergraph. Text is wrapped here, since
//! drawtext does not wrap.
//! See docs/media-notes/animatic.md §1.

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use unicode_width::UnicodeWidthChar;

use super::escape::filter_value;
use super::{ffmpeg, param, param_f64, param_str, produced, scratch, tool};
use crate::engines::Tool;
use crate::exec::runner::{self, Cmd};
use crate::exec::{ExecError, Job, Produced};

/// The plate is this much larger than the frame, so camera moves have room.
pub(crate) const PLATE_SCALE: f64 = 1.25;

/// An sRGB colour.
type Rgb = [u8; 3];

mod draw;
#[cfg(test)]
mod glyph_tests;
mod glyphs;
mod layout;
mod paint;
#[cfg(test)]
mod tests;
mod text;

use draw::{Graph, Painter};
use glyphs::Fonts;
use layout::*;
use paint::*;
use text::*;

/// A character sheet: the figure large in the character's colour, the name
/// as a title and the design prompt and appearance below it.
pub async fn character_card(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fonts = fonts(job)?;
    let color = character_color(param_str(job, "color"), param_str(job, "character"));
    let name = match clean_line(param_str(job, "name")) {
        name if name.is_empty() => param_str(job, "character").to_string(),
        name => name,
    };
    let title_size = fit_size(&name, 60.0, CARD_W as f64 - 80.0);
    let (body_size, body) = card_body(job);
    let mut p = Painter::new(job, &fonts, Graph::new(1));
    p.g.start("[0:v]");
    p.title(&name, title_size, &ink_on(color), CARD_W as f64, CARD_HEADER)?;
    p.block(&body, body_size, "0x2a2a2a", (48.0, CARD_TEXT_TOP), "the description")?;
    p.g.end("[out]");
    let out = scratch(job, "card.png");
    let cmd = with_inputs(painted_input(job, CARD_W, CARD_H)?, &p.g)
        .args(["-filter_complex", &p.g.graph()])
        .args(["-map", "[out]", "-frames:v", "1", out.as_str()]);
    let canvas = (card_backdrop(color), vec![card_figure(color)]);
    run_painted(job, &cmd, canvas, (CARD_W, CARD_H), cancel).await?;
    produced(&out, "ffmpeg")?;
    Ok(Produced {
        files: vec![("png".into(), out)],
        duration: None,
        metadata: crate::exec::Metadata::new(),
    })
}

/// The fonts text is drawn with: Noto Sans CJK, then the fallbacks found.
fn fonts(job: &Job) -> Result<Fonts, ExecError> {
    let font = tool(job, Tool::Font)?;
    Fonts::load(font, job.tools.fallback_fonts(job.engine)?).map_err(ExecError::Permanent)
}

/// `cmd` with the graph's extra inputs (emoji bitmaps) after the canvas.
fn with_inputs(mut cmd: Cmd, g: &Graph) -> Cmd {
    for input in &g.inputs {
        cmd = cmd.args(["-i", input.as_str()]);
    }
    cmd
}

/// A storyboard frame: the 1.25× plate (figures with name tags; the camera
/// move films it) and the review panel (the plate at frame size and the
/// caption).
pub async fn storyboard(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fonts = fonts(job)?;
    let board = Board::from_job(job);
    let (w, h) = frame_size(job);
    let (pw, ph) = plate_size(w, h);
    let (figures, horizon) = layout(&board.shot_type, &board.angle, &board.cast, pw as f64, ph as f64);
    let backdrop = board_backdrop(&board, &figures, horizon, (pw as f64, ph as f64));
    let mut p = Painter::new(job, &fonts, Graph::new(1));
    p.g.start("[0:v]");
    // Name tags go on the plate, so viewers of the animatic can tell who is
    // who; they move with the camera like the figures they label.
    for tag in name_tags(&board, &figures, pw as f64, ph as f64, true) {
        p.tag(&tag, pw)?;
    }
    p.g.push("split=2");
    p.g.end("[plate][p2]");
    // The panel: the tagged plate scaled to the frame, and the caption.
    p.g.start("[p2]");
    p.g.push(&format!("scale={w}:{h}:flags=bicubic"));
    let size = (CAPTION_SIZE * w as f64 / 960.0).round();
    p.caption(&caption(&board, size, CAPTION_WIDTH * w as f64 / 960.0), size, (w, h))?;
    p.g.end("[panel]");
    let (plate, panel) = (scratch(job, "plate.png"), scratch(job, "panel.png"));
    let cmd = with_inputs(painted_input(job, pw, ph)?, &p.g)
        .args(["-filter_complex", &p.g.graph()])
        .args(["-map", "[plate]", "-frames:v", "1", plate.as_str()])
        .args(["-map", "[panel]", "-frames:v", "1", panel.as_str()]);
    run_painted(job, &cmd, (backdrop, figures), (pw, ph), cancel).await?;
    produced(&plate, "ffmpeg")?;
    produced(&panel, "ffmpeg")?;
    Ok(Produced {
        files: vec![("png".into(), plate), ("panel.png".into(), panel)],
        duration: None,
        metadata: crate::exec::Metadata::new(),
    })
}

/// The frame size from the `width`/`height` params (even, at least 64).
fn frame_size(job: &Job) -> (u32, u32) {
    let dim = |name, default| (param_f64(job, name, default).round().clamp(64.0, 8192.0) as u32) & !1;
    (dim("width", 960.0), dim("height", 1440.0))
}

/// The plate for a frame: [`PLATE_SCALE`] times larger, even.
pub(crate) fn plate_size(w: u32, h: u32) -> (u32, u32) {
    let up = |v: u32| ((v as f64 * PLATE_SCALE).round() as u32 + 1) & !1;
    (up(w), up(h))
}

/// ffmpeg whose input 0 is the painted `w`×`h` frame, raw on its stdin
/// (planar RGB, as [`paint`] writes it: no chroma rounding).
fn painted_input(job: &Job, w: u32, h: u32) -> Result<Cmd, ExecError> {
    Ok(ffmpeg(job)?.args([
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gbrp",
        "-video_size",
        &format!("{w}x{h}"),
        "-i",
        "pipe:0",
    ]))
}

/// Paint `backdrop` and `figures` on a `w`×`h` canvas and run `cmd` with the
/// frame on its stdin.
async fn run_painted(
    job: &Job,
    cmd: &Cmd,
    (backdrop, figures): (Backdrop, Vec<Figure>),
    (w, h): (u32, u32),
    cancel: &CancellationToken,
) -> Result<runner::Output, ExecError> {
    // Tens of milliseconds of arithmetic: off the async workers.
    let frame = tokio::task::spawn_blocking(move || paint(&backdrop, &figures, w, h))
        .await
        .map_err(|e| ExecError::Permanent(format!("painting the {w}x{h} canvas failed: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    // The one frame fits the channel, so this never waits; the sender is
    // dropped with it, which ends ffmpeg's input after the frame.
    tx.try_send(frame)
        .map_err(|e| ExecError::Permanent(format!("queueing the painted canvas: {e}")))?;
    drop(tx);
    runner::run_fed(cmd, &job.scratch, cancel, rx).await
}

const CARD_W: u32 = 960;
const CARD_H: u32 = 1440;
const CARD_HEADER: f64 = 170.0;
/// Where the text below the figure starts, and the margin under it.
const CARD_TEXT_TOP: f64 = 960.0;
const CARD_MARGIN: f64 = 44.0;

fn card_backdrop(color: Rgb) -> Backdrop {
    Backdrop {
        top: [246, 243, 236],
        bottom: [222, 217, 206],
        horizon: None,
        band: Some((CARD_HEADER, color)),
        skyline: Vec::new(),
        shadows: vec![[CARD_W as f64 / 2.0, card_figure(color).head_y + 7.2 * 84.0, 150.0, 26.0]],
    }
}

/// The character standing large in the middle of the sheet.
fn card_figure(color: Rgb) -> Figure {
    Figure {
        cx: CARD_W as f64 / 2.0,
        head_y: 310.0,
        r: 84.0,
        color,
        back: false,
        who: 0,
    }
}

/// The text under the figure: the design prompt, then the appearance notes
/// and the LoRA, at the largest size that fits.
fn card_body(job: &Job) -> (f64, String) {
    let mut paragraphs = vec![collapse(param_str(job, "design_prompt"))];
    if let Some(map) = param(job, "appearance").and_then(Value::as_object)
        && !map.is_empty()
    {
        paragraphs.push(String::new());
        for (key, value) in map {
            let value = value.as_str().map(collapse).unwrap_or_else(|| value.to_string());
            paragraphs.push(format!("{key}: {value}"));
        }
    }
    // A LoRA's name, or the project file it is.
    let lora = param(job, "lora").and_then(|v| v.as_str().or_else(|| v.get("file")?.as_str()));
    if let Some(lora) = lora {
        paragraphs.push(format!("LoRA: {}", collapse(lora)));
    }
    fit_block(
        &paragraphs.join("\n"),
        CARD_W as f64 - 2.0 * 48.0,
        CARD_H as f64 - CARD_TEXT_TOP - CARD_MARGIN,
    )
}

/// Wrap `text` at the largest size from 30 down to 20 whose lines fit
/// `height`; at the smallest, cut it with an ellipsis.
fn fit_block(text: &str, width: f64, height: f64) -> (f64, String) {
    let mut size = 30.0;
    loop {
        let wrapped = wrap(text, size, width);
        let max_lines = (height / line_height(size)).floor().max(1.0) as usize;
        if wrapped.lines().count() <= max_lines || size <= 20.0 {
            return (size, limit_lines(&wrapped, max_lines, size, width));
        }
        size -= 2.0;
    }
}

/// The advance of one line of drawtext in Noto Sans CJK: its glyph box is
/// about 1.2 em tall, plus our line spacing.
fn line_height(size: f64) -> f64 {
    1.2 * size + line_spacing(size)
}

/// The largest font size up to `max` at which `text` fits `width` on one line.
fn fit_size(text: &str, max: f64, width: f64) -> f64 {
    let at_one = text_width(text, 1.0);
    if at_one <= 0.0 {
        max
    } else {
        (width / at_one).min(max).floor().max(12.0)
    }
}
