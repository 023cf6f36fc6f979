//! The filtergraph of a drawn image, and text set on it in the fonts that
//! have its characters.
//!
//! Text the primary font (Noto Sans CJK) draws alone takes one drawtext, as
//! it always has. Other text (Arabic, Hebrew, emoji, scripts CJK lacks) is
//! laid out by [`glyphs`](super::glyphs): a drawtext per piece of one font
//! at a measured position, emoji overlaid from their colour bitmaps, and
//! the background box drawn with drawbox.

use camino::{Utf8Path, Utf8PathBuf};

use super::glyphs::{Faces, Fonts, Ink, Line};
use super::text::{Tag, caption_filter, drawtext, line_spacing, tag_filter};
use super::{filter_value, hex, ink_on};
use crate::exec::{ExecError, Job};

/// Where a text line's baseline sits below the top of its glyph box, in em
/// (the top of a CJK ideograph, as drawtext aligns its first line).
const ASCENT: f64 = 0.88;
/// The height of a line's glyph box, in em (see `line_height` in mod.rs).
const LINE: f64 = 1.2;

/// A filtergraph built chain by chain: filters on the current chain, and
/// images from extra inputs overlaid on it.
pub(super) struct Graph {
    done: Vec<String>,
    chain: String,
    /// Extra inputs (emoji bitmaps), numbered from `first_input`.
    pub(super) inputs: Vec<Utf8PathBuf>,
    first_input: usize,
    labels: usize,
}

impl Graph {
    /// A graph whose first extra input will be `-i` number `first_input`.
    pub(super) fn new(first_input: usize) -> Graph {
        Graph {
            done: Vec::new(),
            chain: String::new(),
            inputs: Vec::new(),
            first_input,
            labels: 0,
        }
    }

    /// Start a chain on pad `label` (`[0:v]`).
    pub(super) fn start(&mut self, label: &str) {
        self.chain = label.to_string();
    }

    pub(super) fn push(&mut self, filter: &str) {
        if !self.chain.ends_with(']') {
            self.chain.push(',');
        }
        self.chain.push_str(filter);
    }

    /// End the chain on pad(s) `out` (`[out]`, `[a][b]` after a split).
    pub(super) fn end(&mut self, out: &str) {
        if self.chain.ends_with(']') {
            self.push("null");
        }
        self.done.push(format!("{}{out}", std::mem::take(&mut self.chain)));
    }

    /// Overlay `image` scaled to `w`×`h` with its top left at (`x`, `y`).
    pub(super) fn overlay(&mut self, image: Utf8PathBuf, [x, y, w, h]: [f64; 4]) {
        let n = self.labels;
        self.labels += 1;
        let input = self.first_input + self.inputs.len();
        self.inputs.push(image);
        self.end(&format!("[c{n}]"));
        self.done.push(format!(
            "[{input}:v]scale={w:.0}:{h:.0}:flags=lanczos,format=rgba[i{n}]"
        ));
        self.chain = format!("[c{n}][i{n}]overlay=x={x:.0}:y={y:.0}:format=gbrp");
    }

    pub(super) fn graph(&self) -> String {
        self.done.join(";")
    }
}

/// Sets text on a [`Graph`]: files go to the job's scratch directory.
pub(super) struct Painter<'a> {
    scratch: &'a Utf8Path,
    /// The node's path, for messages.
    node: &'a str,
    faces: Faces<'a>,
    /// The primary font's path, escaped for a filter.
    font: String,
    files: usize,
    pub(super) g: Graph,
}

impl<'a> Painter<'a> {
    pub(super) fn new(job: &'a Job, fonts: &'a Fonts, g: Graph) -> Painter<'a> {
        Painter::in_dir(&job.scratch, &job.node.path, fonts, g)
    }

    /// A painter writing its files to `scratch`.
    pub(super) fn in_dir(scratch: &'a Utf8Path, node: &'a str, fonts: &'a Fonts, g: Graph) -> Painter<'a> {
        let faces = fonts.faces();
        let font = filter_value(faces.paths[0].as_str());
        Painter {
            scratch,
            node,
            faces,
            font,
            files: 0,
            g,
        }
    }

    fn file(&mut self, text: &str) -> Result<Utf8PathBuf, ExecError> {
        self.files += 1;
        let path = self.scratch.join(format!("text-{}.txt", self.files));
        std::fs::write(&path, text).map_err(|e| ExecError::Permanent(format!("writing {path}: {e}")))?;
        Ok(path)
    }

    /// Lay out `text` line by line, or say which character no font has.
    fn lines(&self, text: &str, size: f64, what: &str) -> Result<Vec<Line>, ExecError> {
        text.split('\n')
            .map(|l| {
                self.faces.line(l, size).map_err(|m| {
                    ExecError::Permanent(format!(
                        "{}: no installed font has {:?} (U+{:04X}) in {what} {l:?}: run `bash scripts/deps.sh` to install the fonts studio draws with (README: Fonts), or change the text",
                        self.node, m.0, m.0 as u32
                    ))
                })
            })
            .collect()
    }

    /// Draw laid-out `lines` in a block `block_w` wide whose top left is
    /// (`left`, `top`); lines `advance` apart, right-to-left ones aligned right.
    fn draw(
        &mut self,
        lines: &[Line],
        (left, top): (f64, f64),
        block_w: f64,
        size: f64,
        advance: f64,
        color: &str,
    ) -> Result<(), ExecError> {
        for (i, line) in lines.iter().enumerate() {
            let baseline = (top + ASCENT * size + i as f64 * advance).round();
            let x0 = left + if line.rtl { block_w - line.width } else { 0.0 };
            for piece in &line.pieces {
                let x = (x0 + piece.x).round();
                match &piece.ink {
                    Ink::Text { font, text, rtl } => {
                        let file = self.file(text)?;
                        self.g.push(&format!(
                            "drawtext=fontfile={}:textfile={}:expansion=none:text_shaping={}:fontsize={size}:fontcolor={color}:x={x}:y={baseline}-ascent",
                            filter_value(self.faces.paths[*font].as_str()),
                            filter_value(file.as_str()),
                            u8::from(*rtl),
                        ));
                    }
                    Ink::Image { font, glyph } => {
                        let Some((png, [dx, dy, w, h])) = self.faces.bitmap(*font, *glyph, size) else {
                            continue;
                        };
                        let path = self.scratch.join(format!("glyph-{font}-{glyph}.png"));
                        std::fs::write(&path, png).map_err(|e| ExecError::Permanent(format!("writing {path}: {e}")))?;
                        self.g.overlay(path, [x + dx, baseline + dy, w, h]);
                    }
                }
            }
        }
        Ok(())
    }

    fn width(lines: &[Line]) -> f64 {
        lines.iter().map(|l| l.width).fold(0.0, f64::max)
    }

    /// A character's name on a panel `w` wide, on a box of its colour.
    pub(super) fn tag(&mut self, tag: &Tag, w: u32) -> Result<(), ExecError> {
        if self.faces.plain(&tag.text) {
            let file = self.file(&tag.text)?;
            self.g.push(&tag_filter(&self.font, &file, tag, w));
            return Ok(());
        }
        let lines = self.lines(&tag.text, tag.size, "the name")?;
        let b = (tag.size / 3.0).round();
        let width = Self::width(&lines);
        let left = (tag.x - width / 2.0)
            .clamp(b, (f64::from(w) - width - b).max(b))
            .round();
        self.g.push(&format!(
            "drawbox=x={}:y={}:w={}:h={}:color={}@0.85:t=fill",
            left - b,
            (tag.y - b).round(),
            (width + 2.0 * b).round(),
            (tag.size + 2.0 * b).round(),
            hex(tag.color)
        ));
        self.draw(&lines, (left, tag.y), width, tag.size, 0.0, &ink_on(tag.color))
    }

    /// The caption at the bottom of a `w`×`h` panel, on a dark box.
    pub(super) fn caption(&mut self, text: &str, size: f64, (w, h): (u32, u32)) -> Result<(), ExecError> {
        if self.faces.plain(text) {
            let file = self.file(text)?;
            self.g.push(&caption_filter(&self.font, &file, size));
            return Ok(());
        }
        let lines = self.lines(text, size, "the caption")?;
        let spacing = (size * 10.0 / 34.0).round();
        let (b, margin) = ((size * 18.0 / 34.0).round(), (size * 60.0 / 34.0).round());
        let advance = LINE * size + spacing;
        let height = lines.len() as f64 * advance - spacing;
        let width = Self::width(&lines);
        let (left, top) = (
            ((f64::from(w) - width) / 2.0).round(),
            (f64::from(h) - height - margin).round(),
        );
        self.g.push(&format!(
            "drawbox=x={}:y={}:w={}:h={}:color=black@0.6:t=fill",
            left - b,
            top - b,
            (width + 2.0 * b).round(),
            (height + 2.0 * b).round()
        ));
        self.draw(&lines, (left, top), width, size, advance, "white")
    }

    /// One line centred on a canvas `w` wide and in a band `band` high
    /// at its top (a card's title).
    pub(super) fn title(&mut self, text: &str, size: f64, color: &str, w: f64, band: f64) -> Result<(), ExecError> {
        if self.faces.plain(text) {
            let file = self.file(text)?;
            let y = format!("({band}-text_h)/2");
            self.g
                .push(&drawtext(&self.font, &file, size, color, "(w-text_w)/2", &y));
            return Ok(());
        }
        let lines = self.lines(text, size, "the name")?;
        let width = Self::width(&lines);
        let at = (((w - width) / 2.0).round(), ((band - size) / 2.0).round());
        self.draw(&lines, at, width, size, 0.0, color)
    }

    /// Lines with their top left at (`x`, `y`).
    pub(super) fn block(
        &mut self,
        text: &str,
        size: f64,
        color: &str,
        (x, y): (f64, f64),
        what: &str,
    ) -> Result<(), ExecError> {
        if self.faces.plain(text) {
            let file = self.file(text)?;
            self.g.push(&drawtext(
                &self.font,
                &file,
                size,
                color,
                &format!("{x}"),
                &format!("{y}"),
            ));
            return Ok(());
        }
        let lines = self.lines(text, size, what)?;
        let advance = LINE * size + line_spacing(size);
        self.draw(&lines, (x, y), Self::width(&lines), size, advance, color)
    }
}
