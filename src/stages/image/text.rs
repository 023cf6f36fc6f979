//! Captions, name tags and text wrapping (CJK-aware; drawtext does not wrap).

use unicode_segmentation::UnicodeSegmentation;

use super::*;

pub(super) const CAPTION_SIZE: f64 = 34.0;
/// Wrap width of the caption on a 960-px panel.
pub(super) const CAPTION_WIDTH: f64 = 860.0;
pub(super) const CAPTION_MAX_LINES: usize = 6;

/// A character's name on the panel, near their figure (panel pixels).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tag {
    pub(super) text: String,
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) size: f64,
    pub(super) color: Rgb,
    /// Which way to move when it collides: up (-1) above a head, else down.
    pub(super) away: f64,
}

/// One tag per figure in view: on the chest of a large figure, above the
/// head of a small one; kept clear of the caption at the bottom, and a row
/// lower than a neighbour it would overlap.
/// Name tags for figures laid out on the plate, on a canvas `w` × `h` that
/// is the plate itself or the frame-size panel.
pub(super) fn name_tags(board: &Board, figures: &[Figure], w: f64, h: f64, on_plate: bool) -> Vec<Tag> {
    let k = if on_plate {
        1.0
    } else {
        w / plate_size(w as u32, h as u32).0 as f64
    };
    let size = (24.0 * w / 960.0).round();
    let mut tags: Vec<Tag> = figures
        .iter()
        .map(|f| {
            let (r, head_y) = (f.r * k, f.head_y * k);
            let above = r < 0.05 * h;
            let y = if above {
                head_y - r - 2.2 * size
            } else {
                head_y + 1.15 * r
            };
            Tag {
                text: clean_line(&board.cast[f.who].name),
                x: f.cx * k,
                y: y.clamp(0.03 * h, 0.68 * h),
                size,
                color: board.cast[f.who].color,
                away: if above { -1.0 } else { 1.0 },
            }
        })
        .collect();
    unstack(&mut tags, w);
    tags
}

/// The horizontal extent of a tag on a panel `w` wide (as drawtext clamps it).
pub(super) fn tag_span(t: &Tag, w: f64) -> (f64, f64) {
    let half = text_width(&t.text, t.size) / 2.0 + t.size / 3.0;
    let x = t.x.clamp(half, (w - half).max(half));
    (x - half, x + half)
}

/// Move each tag that overlaps an earlier one a row away from its figure
/// until it is free.
pub(super) fn unstack(tags: &mut [Tag], w: f64) {
    let size = tags.first().map_or(0.0, |t| t.size);
    let row = 1.2 * size + 2.0 * (size / 3.0) + 4.0;
    for i in 1..tags.len() {
        let (l, r) = tag_span(&tags[i], w);
        while tags[..i].iter().any(|o| {
            let (ol, or) = tag_span(o, w);
            l < or && ol < r && (o.y - tags[i].y).abs() < row
        }) {
            tags[i].y += row * tags[i].away;
        }
    }
}

pub(super) fn tag_filter(font: &str, file: &camino::Utf8Path, tag: &Tag, w: u32) -> String {
    let b = (tag.size / 3.0).round();
    format!(
        "drawtext=fontfile={font}:textfile={}:expansion=none:fontsize={}:fontcolor={}:box=1:boxcolor={}@0.85:boxborderw={b}:x='max({b},min(w-text_w-{b},{:.1}-text_w/2))':y={:.1}",
        filter_value(file.as_str()),
        tag.size,
        ink_on(tag.color),
        hex(tag.color),
        tag.x.clamp(0.0, w as f64),
        tag.y,
    )
}

/// `S01 · SH02  medium / eye_level / push in`, then the action, wrapped.
pub(super) fn caption(board: &Board, size: f64, max_w: f64) -> String {
    let mut header = format!(
        "{} · {}  {} / {}",
        board.scene.to_uppercase(),
        board.shot.to_uppercase(),
        board.shot_type,
        board.angle
    );
    if !board.motion.trim().is_empty() {
        header.push_str(" / ");
        header.push_str(crate::stages::video::Move::from_motion(&board.motion).label());
    }
    let text = match board.action.trim() {
        "" => header,
        action => format!("{header}\n{action}"),
    };
    limit_lines(&wrap(&text, size, max_w), CAPTION_MAX_LINES, size, max_w)
}

pub(super) fn caption_filter(font: &str, file: &camino::Utf8Path, size: f64) -> String {
    format!(
        "drawtext=fontfile={font}:textfile={}:expansion=none:fontsize={size}:fontcolor=white:line_spacing={}:box=1:boxcolor=black@0.6:boxborderw={}:x=(w-text_w)/2:y=h-text_h-{}",
        filter_value(file.as_str()),
        (size * 10.0 / 34.0).round(),
        (size * 18.0 / 34.0).round(),
        (size * 60.0 / 34.0).round(),
    )
}

/// A plain drawtext of a text file at (x, y).
pub(super) fn drawtext(font: &str, file: &camino::Utf8Path, size: f64, color: &str, x: &str, y: &str) -> String {
    format!(
        "drawtext=fontfile={font}:textfile={}:expansion=none:fontsize={size}:fontcolor={color}:line_spacing={}:x={x}:y={y}",
        filter_value(file.as_str()),
        line_spacing(size),
    )
}

pub(super) fn line_spacing(size: f64) -> f64 {
    (size * 0.3).round()
}

/// Inner whitespace collapsed to single spaces.
pub(super) fn collapse(s: &str) -> String {
    crate::text::normalize(s)
}

/// One line of text: line breaks and control characters become spaces.
pub(super) fn clean_line(s: &str) -> String {
    collapse(
        &s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>(),
    )
}

/// Estimated advance of `c` at font size `size`: East Asian wide characters
/// are square, others a little over half; zero-width ones nothing.
pub(super) fn char_width(c: char, size: f64) -> f64 {
    match c.width() {
        Some(2) => size,
        Some(0) | None => 0.0,
        _ => 0.56 * size,
    }
}

/// An emoji sequence (ZWJ family, skin tone, flag) is one emoji wide.
pub(super) fn text_width(s: &str, size: f64) -> f64 {
    s.graphemes(true)
        .map(|g| match g.chars().next() {
            Some(first) if super::glyphs::is_emoji(g) => char_width(first, size).max(size),
            _ => g.chars().map(|c| char_width(c, size)).sum(),
        })
        .sum()
}

pub(super) fn is_wide(c: char) -> bool {
    c.width() == Some(2)
}

/// May not begin a line (closing brackets, small kana, CJK punctuation).
pub(super) fn no_start(c: char) -> bool {
    "、。，．・：；？！ー）」』】〕〉》〟ぁぃぅぇぉっゃゅょァィゥェォッャュョ…‥".contains(c)
}

/// May not end a line (opening brackets).
pub(super) fn no_end(c: char) -> bool {
    "（「『【〔〈《〝".contains(c)
}

/// A piece of a paragraph: a run of spaces, a word (no spaces, no wide
/// characters) or one wide character; zero-width marks stay with the piece
/// before them, and an emoji sequence is never split.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Space(usize),
    Word(String),
    Wide(String),
}

pub(super) fn pieces(para: &str) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for g in para.graphemes(true) {
        let c = g.chars().next().unwrap_or(' ');
        if g == " " {
            match out.last_mut() {
                Some(Piece::Space(n)) => *n += 1,
                _ => out.push(Piece::Space(1)),
            }
        } else if c.is_control() {
            continue;
        } else if is_wide(c) || super::glyphs::is_emoji(g) {
            out.push(Piece::Wide(g.to_string()));
        } else {
            match out.last_mut() {
                Some(Piece::Word(w)) => w.push_str(g),
                Some(Piece::Wide(w)) if c.width() == Some(0) => w.push_str(g),
                _ => out.push(Piece::Word(g.to_string())),
            }
        }
    }
    out
}

/// Greedy line filling for one paragraph.
pub(super) struct Filler {
    pub(super) size: f64,
    pub(super) max_w: f64,
    pub(super) lines: Vec<String>,
    pub(super) line: String,
    /// Spaces before the next piece (dropped at a line break).
    pub(super) space: usize,
}

impl Filler {
    pub(super) fn width(&self, s: &str) -> f64 {
        text_width(s, self.size)
    }

    /// Put `piece` (a word or a wide character) on the line, or break first.
    pub(super) fn place(&mut self, piece: &str, wide: bool) {
        let sep = if self.line.is_empty() {
            String::new()
        } else {
            " ".repeat(self.space)
        };
        self.space = 0;
        let need = self.width(&self.line) + self.width(&sep) + self.width(piece);
        let first = piece.chars().next().unwrap_or(' ');
        // Closing punctuation hangs one character past the margin instead
        // of starting a line.
        let hangs = wide && no_start(first) && sep.is_empty() && need <= self.max_w + self.size;
        if self.line.is_empty() || need <= self.max_w || hangs {
            self.line.push_str(&sep);
            self.push_long(piece);
        } else {
            self.break_line();
            self.push_long(piece);
        }
    }

    /// Append `piece`, splitting it anywhere when it alone is wider than a line.
    pub(super) fn push_long(&mut self, piece: &str) {
        if self.width(&self.line) + self.width(piece) <= self.max_w || no_start(piece.chars().next().unwrap_or(' ')) {
            self.line.push_str(piece);
            return;
        }
        for g in piece.graphemes(true) {
            if !self.line.is_empty() && self.width(&self.line) + self.width(g) > self.max_w {
                self.break_line();
            }
            self.line.push_str(g);
        }
    }

    /// End the line; an opening bracket at its end moves to the next.
    pub(super) fn break_line(&mut self) {
        let mut carry = String::new();
        while self.line.chars().count() > 1
            && let Some(c) = self.line.chars().last()
            && no_end(c)
        {
            self.line.pop();
            carry.insert(0, c);
        }
        self.lines.push(self.line.trim_end().to_string());
        self.line = carry;
    }

    pub(super) fn finish(mut self) -> Vec<String> {
        self.lines.push(self.line.trim_end().to_string());
        self.lines
    }
}

/// Wrap `text` to `max_w` pixels at font size `size`: break at spaces
/// between Latin words, anywhere between wide (CJK) characters. CR/CRLF
/// become LF, tabs spaces; control characters go; no trailing newline.
pub(super) fn wrap(text: &str, size: f64, max_w: f64) -> String {
    let text = text.replace("\r\n", "\n").replace(['\r'], "\n").replace('\t', " ");
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut f = Filler {
            size,
            max_w,
            lines: Vec::new(),
            line: String::new(),
            space: 0,
        };
        for piece in pieces(para) {
            match piece {
                Piece::Space(n) => f.space = n,
                Piece::Word(w) => f.place(&w, false),
                Piece::Wide(w) => f.place(&w, true),
            }
        }
        lines.extend(f.finish());
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

/// At most `max` lines; a cut text ends with an ellipsis that fits.
pub(super) fn limit_lines(text: &str, max: usize, size: f64, max_w: f64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max {
        return text.to_string();
    }
    let mut kept: Vec<String> = lines[..max].iter().map(|l| l.to_string()).collect();
    if let Some(last) = kept.last_mut() {
        while !last.is_empty() && text_width(last, size) + char_width('…', size) > max_w {
            let cut = last.grapheme_indices(true).next_back().map_or(0, |(i, _)| i);
            last.truncate(cut);
        }
        *last = format!("{}…", last.trim_end());
    }
    kept.join("\n")
}
