//! Tests of text in many scripts: every glyph comes from a font that has
//! it (no boxes), right-to-left order, colour emoji, and the plain path.
//! They use the fonts `scripts/deps.sh` installs.

use camino::{Utf8Path, Utf8PathBuf};

use super::draw::{Graph, Painter};
use super::glyphs::{Faces, Fonts, Ink, Line, Missing, ignorable};
use super::text::Tag;
use crate::exec::runner::{Cmd, run_sync};
use crate::stages::escape::filter_value;

fn fonts() -> Fonts {
    let (primary, fallbacks) = crate::exec::tools::fonts();
    let primary = primary.expect("Noto Sans CJK is installed: run `bash scripts/deps.sh`");
    assert!(
        fallbacks.iter().any(|f| f.as_str().ends_with("NotoColorEmoji.ttf"))
            && fallbacks
                .iter()
                .any(|f| f.as_str().ends_with("NotoSansArabic-Regular.ttf")),
        "the fallback fonts are installed: run `bash scripts/deps.sh` ({fallbacks:?})"
    );
    Fonts::load(&primary, &fallbacks).expect("fonts load")
}

/// Names in many scripts, with emoji sequences (ZWJ, skin tone, flag, keycap).
const NAMES: &[&str] = &[
    "Mio 🐱🥰 美央",
    "أحمد (森 海)",
    "שלום Dana",
    "👩‍👩‍👧‍👦 family",
    "🇯🇵 Hana 👋🏽",
    "❤️ 1️⃣ ✈",
    "Ελένη Приве́т",
    "नमस्ते ไทย ქართული",
    "Ωmega → ∞ ♪",
];

fn texts(line: &Line) -> Vec<(usize, &str, bool)> {
    line.pieces
        .iter()
        .filter_map(|p| match &p.ink {
            Ink::Text { font, text, rtl } => Some((*font, text.as_str(), *rtl)),
            Ink::Image { .. } => None,
        })
        .collect()
}

fn font_name<'a>(faces: &'a Faces, font: usize) -> &'a str {
    faces.paths[font].file_name().unwrap_or("")
}

#[test]
fn every_character_goes_to_a_font_that_has_it() {
    let fonts = fonts();
    let faces = fonts.faces();
    for name in NAMES {
        let line = faces
            .line(name, 40.0)
            .unwrap_or_else(|m| panic!("{name}: no font for {m:?}"));
        let mut drawn = String::new();
        for piece in &line.pieces {
            match &piece.ink {
                Ink::Text { font, text, .. } => {
                    assert!(!faces.is_color(*font), "{name}: {text} in a colour font");
                    assert!(
                        faces.covers(*font, text),
                        "{name}: {text} in {}",
                        font_name(&faces, *font)
                    );
                    drawn.push_str(text);
                }
                Ink::Image { font, glyph } => {
                    assert!(
                        faces.bitmap(*font, *glyph, 40.0).is_some(),
                        "{name}: glyph {glyph} has a bitmap"
                    );
                }
            }
            assert!(piece.width > 0.0, "{name}: {piece:?} advances");
        }
        // Every letter is drawn by drawtext (emoji are images).
        for c in name.chars().filter(|c| c.is_alphabetic() && !ignorable(*c)) {
            let is_emoji = matches!(c as u32, 0x1F000..=0x1FAFF);
            assert!(is_emoji || drawn.contains(c), "{name}: {c:?} is drawn ({drawn:?})");
        }
        let xs: Vec<f64> = line.pieces.iter().map(|p| p.x).collect();
        assert!(
            xs.windows(2).all(|w| w[0] < w[1]),
            "{name}: pieces left to right {xs:?}"
        );
    }
    // The scripts land in their own fonts.
    let line = faces.line("Mio أحمد", 40.0).unwrap();
    let used: Vec<&str> = texts(&line).iter().map(|t| font_name(&faces, t.0)).collect();
    assert_eq!(used, ["NotoSansCJK-Regular.ttc", "NotoSansArabic-Regular.ttf"]);
    // A skin tone and a ZWJ family are one emoji each, not their parts.
    for (emoji, glyphs) in [("👋🏽", 1), ("👩‍👩‍👧‍👦", 1), ("🇯🇵", 1), ("🐱🥰", 2)] {
        let line = faces.line(emoji, 40.0).unwrap();
        assert_eq!(line.pieces.len(), glyphs, "{emoji}: {:?}", line.pieces);
    }
}

#[test]
fn a_character_no_font_has_is_named() {
    let fonts = fonts();
    let faces = fonts.faces();
    assert_eq!(faces.line("Mio \u{10FFFD} x", 40.0), Err(Missing('\u{10FFFD}')));
    assert_eq!(faces.line("أحمد \u{E000}", 40.0), Err(Missing('\u{E000}')));
    // Joiners and selectors are not drawn, so they need no glyph.
    assert!(faces.line("a\u{200D}b\u{FE0F}", 40.0).is_ok());
}

#[test]
fn right_to_left_text_is_laid_out_right_to_left() {
    let fonts = fonts();
    let faces = fonts.faces();
    let order = |s: &str| -> (Vec<String>, bool) {
        let line = faces.line(s, 40.0).unwrap();
        let pieces = line
            .pieces
            .iter()
            .map(|p| match &p.ink {
                Ink::Text { text, rtl: true, .. } => format!("rtl:{text}"),
                Ink::Text { text, .. } => text.clone(),
                Ink::Image { .. } => "image".into(),
            })
            .collect();
        (pieces, line.rtl)
    };
    // Arabic inside Latin: its piece is shaped and reversed by drawtext.
    assert_eq!(
        order("abc أحمد def"),
        (vec!["abc".into(), "rtl:أحمد".into(), "def".into()], false)
    );
    // An Arabic paragraph: Latin and emoji to the left of the Arabic that
    // comes first, punctuation at its logical end on its left.
    assert_eq!(
        order("مرحبا Hana 😀"),
        (vec!["image".into(), "Hana".into(), "rtl:مرحبا".into()], true)
    );
    assert_eq!(order("أحمد علي!"), (vec!["!".into(), "rtl:أحمد علي".into()], true));
    // Brackets around right-to-left text are mirrored.
    assert_eq!(order("(أحمد)"), (vec!["(".into(), "rtl:أحمد".into(), ")".into()], true));
    assert_eq!(order("שלום Dana").0, vec!["Dana".to_string(), "rtl:שלום".into()]);
}

#[test]
fn text_the_primary_font_has_stays_one_drawtext() {
    let fonts = fonts();
    let faces = fonts.faces();
    for plain in ["Mio Aki", "月城 花 (Letter)", "Hana — 「手紙」", "Kai Mori (森 海)"] {
        assert!(faces.plain(plain), "{plain}");
    }
    for rich in ["Mio 😀", "أحمد", "שלום", "नमस्ते", "☔"] {
        assert!(!faces.plain(rich), "{rich}");
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let mut p = Painter::in_dir(dir, "test", &fonts, Graph::new(1));
    p.g.start("[0:v]");
    p.title("Mio 美央", 40.0, "white", 400.0, 100.0).unwrap();
    p.g.end("[out]");
    let graph = p.g.graph();
    assert_eq!(graph.matches("drawtext=").count(), 1, "{graph}");
    assert!(graph.contains(":x=(w-text_w)/2:y=(100-text_h)/2[out]"), "{graph}");
}

/// Render a graph on a `w`×`h` canvas of `color`; the RGB bytes.
fn render(dir: &Utf8Path, g: &Graph, (w, h): (u32, u32), color: &str) -> Vec<u8> {
    let out = dir.join("out.rgb");
    let mut cmd = Cmd::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("color=c={color}:s={w}x{h}:r=1,format=gbrp"));
    for input in &g.inputs {
        cmd = cmd.args(["-i", input.as_str()]);
    }
    let cmd = cmd
        .args(["-filter_complex", &g.graph(), "-map", "[out]", "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", out.as_str()]);
    run_sync(&cmd).unwrap_or_else(|| panic!("ffmpeg renders {}", g.graph()));
    let rgb = std::fs::read(&out).unwrap();
    assert_eq!(rgb.len(), (w * h * 3) as usize);
    rgb
}

#[test]
fn no_glyph_is_drawn_as_a_box() {
    // Each character of each name, in the font the layout gives it, next
    // to the font's own missing-glyph box: they must differ.
    let fonts = fonts();
    let faces = fonts.faces();
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let mut cells: Vec<(Utf8PathBuf, char)> = Vec::new();
    for name in NAMES {
        for (font, text, _) in texts(&faces.line(name, 40.0).unwrap()) {
            for c in text.chars().filter(|c| !c.is_whitespace() && !ignorable(*c)) {
                cells.push((faces.paths[font].clone(), c));
            }
        }
    }
    let mut g = Graph::new(1);
    g.start("[0:v]");
    for (i, (font, c)) in cells.iter().enumerate() {
        for (row, shown) in [(0, *c), (1, '\u{10FFFD}')] {
            let file = dir.join(format!("c{i}-{row}.txt"));
            std::fs::write(&file, shown.to_string()).unwrap();
            g.push(&format!(
                "drawtext=fontfile={}:textfile={}:expansion=none:text_shaping=0:fontsize=40:fontcolor=white:x={}:y={}",
                filter_value(font.as_str()),
                filter_value(file.as_str()),
                64 * i + 8,
                64 * row + 8
            ));
        }
    }
    g.end("[out]");
    let w = 64 * cells.len() as u32;
    let rgb = render(dir, &g, (w, 128), "black");
    let cell = |i: usize, row: usize| -> Vec<u8> {
        (64 * row..64 * row + 64)
            .flat_map(|y| {
                let start = (y * w as usize + 64 * i) * 3;
                rgb[start..start + 64 * 3].to_vec()
            })
            .collect()
    };
    for (i, (font, c)) in cells.iter().enumerate() {
        let glyph = cell(i, 0);
        assert!(glyph.iter().any(|&v| v > 128), "{c:?} leaves ink ({font})");
        assert_ne!(glyph, cell(i, 1), "{c:?} is drawn as the missing-glyph box of {font}");
    }
}

#[test]
fn emoji_are_drawn_in_colour_and_arabic_is_shaped() {
    let fonts = fonts();
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(dir.path()).unwrap();
    let mut p = Painter::in_dir(dir, "test", &fonts, Graph::new(1));
    p.g.start("[0:v]");
    p.title("Mio 🐱", 60.0, "white", 400.0, 100.0).unwrap();
    let tag = Tag {
        text: "أحمد".into(),
        x: 200.0,
        y: 120.0,
        size: 30.0,
        color: [200, 60, 90],
        away: 1.0,
    };
    p.tag(&tag, 400).unwrap();
    p.g.end("[out]");
    let graph = p.g.graph();
    assert!(
        graph.contains("text_shaping=1") && graph.contains("drawbox="),
        "{graph}"
    );
    assert_eq!(p.g.inputs.len(), 1, "the cat is one image: {graph}");
    let rgb = render(dir, &p.g, (400, 200), "0x3070d0");
    // The cat's face is orange and yellow: nothing else on a blue canvas
    // with white and pink is.
    let warm = rgb
        .chunks(3)
        .filter(|px| px[0] > 200 && px[1] > 120 && px[2] < 90)
        .count();
    assert!(warm > 200, "a colour emoji ({warm} warm pixels)");
    // The tag's box is the character's colour, around the name.
    let at = |x: usize, y: usize| &rgb[(y * 400 + x) * 3..(y * 400 + x) * 3 + 3];
    assert!(
        at(200, 116).iter().zip([200, 60, 90]).all(|(&a, b)| a.abs_diff(b) < 40),
        "{:?}",
        at(200, 116)
    );
}
