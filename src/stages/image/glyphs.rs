//! Text in any script: which installed font draws each character, the
//! visual (bidi) order of a line, and the advance of each piece in pixels.
//!
//! A line is split into the runs of the Unicode bidi algorithm, each run
//! into grapheme clusters, and each cluster goes to the first font of the
//! chain that has all its characters (punctuation and spaces stay with the
//! letters around them). Emoji go to the colour emoji font, whose bitmaps
//! are drawn as images; everything else is set by drawtext, one piece per
//! font. Widths are measured as drawtext lays glyphs out (hinted advances,
//! whole pixels), so pieces in different fonts sit side by side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use camino::{Utf8Path, Utf8PathBuf};
use rustybuzz::ttf_parser::GlyphId;
use unicode_bidi::BidiInfo;
use unicode_properties::{EmojiStatus, UnicodeEmoji};
use unicode_segmentation::UnicodeSegmentation;

/// A font file's bytes, read once per process.
fn font_bytes(path: &Utf8Path) -> std::io::Result<Arc<Vec<u8>>> {
    static LOADED: OnceLock<Mutex<HashMap<Utf8PathBuf, Arc<Vec<u8>>>>> = OnceLock::new();
    let mut loaded = LOADED.get_or_init(Default::default).lock().expect("font cache");
    if let Some(bytes) = loaded.get(path) {
        return Ok(bytes.clone());
    }
    let bytes = Arc::new(std::fs::read(path)?);
    loaded.insert(path.to_owned(), bytes.clone());
    Ok(bytes)
}

/// The fonts text is drawn with, the primary (Noto Sans CJK) first.
pub(crate) struct Fonts {
    paths: Vec<Utf8PathBuf>,
    data: Vec<Arc<Vec<u8>>>,
}

impl Fonts {
    /// Read the primary font and every fallback that can be read.
    pub(crate) fn load(primary: &Utf8Path, fallbacks: &[Utf8PathBuf]) -> Result<Fonts, String> {
        let mut fonts = Fonts {
            paths: Vec::new(),
            data: Vec::new(),
        };
        for (i, path) in std::iter::once(primary)
            .chain(fallbacks.iter().map(|p| p.as_path()))
            .enumerate()
        {
            match font_bytes(path) {
                Ok(bytes) if rustybuzz::Face::from_slice(&bytes, 0).is_some() => {
                    fonts.paths.push(path.to_owned());
                    fonts.data.push(bytes);
                }
                Ok(_) if i == 0 => return Err(format!("{path} is not a font")),
                Err(e) if i == 0 => return Err(format!("reading {path}: {e}")),
                _ => {}
            }
        }
        Ok(fonts)
    }

    /// The parsed faces, to measure and look up glyphs with.
    pub(crate) fn faces(&self) -> Faces<'_> {
        let faces: Vec<rustybuzz::Face<'_>> = self
            .data
            .iter()
            .map(|d| rustybuzz::Face::from_slice(d, 0).expect("parsed when loaded"))
            .collect();
        let color = faces
            .iter()
            .map(|f| f.tables().glyf.is_none() && f.tables().cff.is_none() && f.tables().cbdt.is_some())
            .collect();
        Faces {
            paths: &self.paths,
            faces,
            color,
        }
    }
}

/// Parsed [`Fonts`].
pub(crate) struct Faces<'a> {
    pub(crate) paths: &'a [Utf8PathBuf],
    faces: Vec<rustybuzz::Face<'a>>,
    /// Colour bitmap fonts (emoji): drawn as images, not by drawtext.
    color: Vec<bool>,
}

/// Characters that are not drawn themselves (joiners, variation
/// selectors, bidi controls): Default_Ignorable_Code_Point.
pub(crate) fn ignorable(c: char) -> bool {
    matches!(c as u32,
        0xAD | 0x34F | 0x61C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// A cluster shown as an emoji: one with emoji presentation by default, or
/// asked for with VS16, a keycap or a ZWJ sequence, unless VS15 asks for text.
pub(crate) fn is_emoji(cluster: &str) -> bool {
    if cluster.contains('\u{FE0E}') {
        return false;
    }
    let first = cluster.chars().next().unwrap_or(' ');
    let presentation = matches!(
        first.emoji_status(),
        EmojiStatus::EmojiPresentation
            | EmojiStatus::EmojiPresentationAndModifierBase
            | EmojiStatus::EmojiPresentationAndEmojiComponent
            | EmojiStatus::EmojiPresentationAndModifierAndEmojiComponent
    );
    presentation || (first.is_emoji_char() && cluster.contains(['\u{FE0F}', '\u{20E3}', '\u{200D}']))
}

/// Neither letters nor digits: takes the font of the text around it.
fn is_neutral(cluster: &str) -> bool {
    !cluster.chars().any(char::is_alphanumeric)
}

/// A piece of a line, drawn in one go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ink {
    /// drawtext with font `font`; `rtl`: the text is in logical order and
    /// drawtext's shaping (fribidi) joins and reverses it.
    Text { font: usize, text: String, rtl: bool },
    /// One glyph of a colour font, as an image.
    Image { font: usize, glyph: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub(crate) ink: Ink,
    /// Pen position (pixels from the line's left end) and advance.
    pub(crate) x: f64,
    pub(crate) width: f64,
}

/// A line in visual order, left to right.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Line {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) width: f64,
    /// Its paragraph runs right to left (align it right).
    pub(crate) rtl: bool,
}

/// A character no font of the chain has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Missing(pub(crate) char);

impl Faces<'_> {
    pub(crate) fn len(&self) -> usize {
        self.faces.len()
    }

    #[cfg(test)]
    pub(crate) fn is_color(&self, font: usize) -> bool {
        self.color[font]
    }

    /// `font` has every character of `cluster` that is drawn.
    pub(crate) fn covers(&self, font: usize, cluster: &str) -> bool {
        cluster
            .chars()
            .all(|c| ignorable(c) || self.faces[font].glyph_index(c).is_some())
    }

    /// Whether the primary font alone draws `text` as it is: every
    /// character in it, nothing right to left, no emoji.
    pub(crate) fn plain(&self, text: &str) -> bool {
        text.chars()
            .all(|c| c == '\n' || self.faces[0].glyph_index(c).is_some())
            && !text.chars().any(is_rtl_char)
            && !text.graphemes(true).any(is_emoji)
    }

    /// The first drawn character of `cluster` that no font has.
    fn missing(&self, cluster: &str) -> Missing {
        let found = cluster
            .chars()
            .find(|&c| !ignorable(c) && !(0..self.len()).any(|f| self.faces[f].glyph_index(c).is_some()));
        Missing(found.unwrap_or('\u{FFFD}'))
    }

    /// The font of each cluster of a bidi run (logical order).
    fn fonts_of(&self, clusters: &[&str]) -> Result<Vec<usize>, Missing> {
        let outline = |g: &str| (0..self.len()).find(|&f| !self.color[f] && self.covers(f, g));
        let mut chosen: Vec<Option<usize>> = clusters
            .iter()
            .map(|g| {
                if is_emoji(g) {
                    (0..self.len()).find(|&f| self.color[f] && self.covers(f, g))
                } else if is_neutral(g) {
                    None
                } else {
                    outline(g)
                }
            })
            .collect();
        for (i, g) in clusters.iter().enumerate() {
            if chosen[i].is_some() || (!is_neutral(g) && !is_emoji(g)) {
                continue;
            }
            let keeps = |f: &Option<usize>| f.filter(|&f| !self.color[f] && self.covers(f, g));
            let before = chosen[..i].iter().rev().find_map(&keeps);
            let after = || chosen[i + 1..].iter().find_map(&keeps);
            chosen[i] = before.or_else(after).or_else(|| outline(g));
        }
        chosen
            .iter()
            .zip(clusters)
            .map(|(f, g)| f.ok_or_else(|| self.missing(g)))
            .collect()
    }

    /// Lay out one line (no line breaks) at font size `size`.
    pub(crate) fn line(&self, text: &str, size: f64) -> Result<Line, Missing> {
        let mut line = Line::default();
        if text.is_empty() {
            return Ok(line);
        }
        let info = BidiInfo::new(text, None);
        line.rtl = info.paragraphs.first().is_some_and(|p| p.level.is_rtl());
        for para in &info.paragraphs {
            let (levels, runs) = info.visual_runs(para, para.range.clone());
            for run in runs {
                let rtl = levels[run.start].is_rtl();
                self.run(&text[run], rtl, size, &mut line)?;
            }
        }
        Ok(line)
    }

    /// Add one bidi run's pieces to `line`, left to right.
    fn run(&self, text: &str, rtl: bool, size: f64, line: &mut Line) -> Result<(), Missing> {
        let clusters: Vec<&str> = text.graphemes(true).collect();
        let fonts = self.fonts_of(&clusters)?;
        // Spans of one font (each emoji its own), in logical order.
        let mut spans: Vec<(usize, Vec<&str>)> = Vec::new();
        for (g, f) in clusters.iter().zip(fonts) {
            match spans.last_mut() {
                Some((last, gs)) if *last == f && !self.color[f] => gs.push(g),
                _ => spans.push((f, vec![g])),
            }
        }
        if rtl {
            spans.reverse();
        }
        for (font, gs) in spans {
            if self.color[font] {
                self.image(font, &gs.concat(), size, line);
            } else if rtl {
                self.rtl_span(font, &gs, size, line);
            } else {
                self.text(font, &gs.concat(), false, size, line);
            }
        }
        Ok(())
    }

    /// A span of one font in a right-to-left run: its letters in one piece
    /// that drawtext shapes and reverses; punctuation at either end (which
    /// drawtext's left-to-right paragraph would put on the wrong side)
    /// reversed and mirrored here.
    fn rtl_span(&self, font: usize, gs: &[&str], size: f64, line: &mut Line) {
        let first = gs.iter().position(|g| !is_neutral(g));
        let last = gs.iter().rposition(|g| !is_neutral(g));
        let edge = |part: &[&str]| -> String {
            part.iter()
                .rev()
                .map(|g| {
                    g.chars()
                        .map(|c| unicode_bidi_mirroring::get_mirrored(c).unwrap_or(c))
                        .collect::<String>()
                })
                .collect()
        };
        match (first, last) {
            (Some(a), Some(b)) => {
                self.text(font, &edge(&gs[b + 1..]), false, size, line);
                self.text(font, &gs[a..=b].concat(), true, size, line);
                self.text(font, &edge(&gs[..a]), false, size, line);
            }
            _ => self.text(font, &edge(gs), false, size, line),
        }
    }

    /// A drawtext piece; spaces at its ends only move the pen.
    fn text(&self, font: usize, text: &str, rtl: bool, size: f64, line: &mut Line) {
        let face = &self.faces[font];
        let drawn: String = text
            .chars()
            .filter(|&c| !c.is_control() && (!ignorable(c) || face.glyph_index(c).is_some()))
            .collect();
        let lead = drawn.len() - drawn.trim_start().len();
        let (spaces, rest) = drawn.split_at(lead);
        let core = rest.trim_end();
        let trail = &rest[core.len()..];
        line.width += self.advance(font, spaces, false, size);
        if !core.is_empty() {
            let width = self.advance(font, core, rtl, size);
            line.pieces.push(Piece {
                ink: Ink::Text {
                    font,
                    text: core.to_string(),
                    rtl,
                },
                x: line.width,
                width,
            });
            line.width += width;
        }
        line.width += self.advance(font, trail, false, size);
    }

    /// The glyphs of an emoji (a ZWJ sequence is one glyph when the font
    /// has it), each an image piece.
    fn image(&self, font: usize, cluster: &str, size: f64, line: &mut Line) {
        for (glyph, advance) in self.shape(font, cluster, false, size) {
            line.pieces.push(Piece {
                ink: Ink::Image { font, glyph },
                x: line.width,
                width: advance,
            });
            line.width += advance;
        }
    }

    /// Glyphs and their advances in whole pixels, as a hinted rasterizer
    /// places them: shaped (joined, ligated) for right-to-left text and
    /// emoji, else one glyph per character as drawtext does.
    fn shape(&self, font: usize, text: &str, shaped: bool, size: f64) -> Vec<(u16, f64)> {
        let face = &self.faces[font];
        let scale = size / f64::from(face.units_per_em());
        let px = |units: f64| (units * scale).round();
        if !shaped && !self.color[font] {
            return text
                .chars()
                .filter_map(|c| face.glyph_index(c))
                .map(|g| (g.0, px(f64::from(face.glyph_hor_advance(g).unwrap_or(0)))))
                .collect();
        }
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        let glyphs = rustybuzz::shape(face, &[], buffer);
        glyphs
            .glyph_infos()
            .iter()
            .zip(glyphs.glyph_positions())
            .filter(|(info, _)| info.glyph_id != 0 || !self.color[font])
            .map(|(info, pos)| (info.glyph_id as u16, px(f64::from(pos.x_advance))))
            .collect()
    }

    fn advance(&self, font: usize, text: &str, shaped: bool, size: f64) -> f64 {
        self.shape(font, text, shaped, size).iter().map(|g| g.1).sum()
    }

    /// The colour bitmap of `glyph` (PNG) and where it goes: its left and
    /// top offsets from the pen on the baseline, and its size, in pixels at
    /// font size `size`.
    pub(crate) fn bitmap(&self, font: usize, glyph: u16, size: f64) -> Option<(&[u8], [f64; 4])> {
        let image = self.faces[font].glyph_raster_image(GlyphId(glyph), u16::MAX)?;
        if image.format != rustybuzz::ttf_parser::RasterImageFormat::PNG {
            return None;
        }
        let k = size / f64::from(image.pixels_per_em);
        let top = f64::from(image.y) + f64::from(image.height);
        Some((
            image.data,
            [
                f64::from(image.x) * k,
                -top * k,
                (f64::from(image.width) * k).round().max(1.0),
                (f64::from(image.height) * k).round().max(1.0),
            ],
        ))
    }
}

/// Strong right-to-left letters (Hebrew, Arabic, Syriac, Thaana, N'Ko, …).
fn is_rtl_char(c: char) -> bool {
    use unicode_bidi::BidiClass::{AL, R};
    matches!(unicode_bidi::bidi_class(c), R | AL)
}
