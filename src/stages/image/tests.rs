//! Tests of the drawn images: layout, painting, wrapping.

use super::*;

fn cast(name: &str, slot: Option<Slot>) -> Cast {
    Cast {
        name: name.into(),
        color: [200, 60, 90],
        slot,
    }
}

#[test]
fn latin_wraps_at_spaces() {
    // 0.56 × 10 px a character: 10 characters fit in 60 px.
    assert_eq!(
        wrap("the quick brown fox jumps", 10.0, 60.0),
        "the quick\nbrown fox\njumps"
    );
    assert_eq!(
        wrap("the quick brown fox jumps", 10.0, 40.0),
        "the\nquick\nbrown\nfox\njumps"
    );
    assert_eq!(wrap("ab cd ef gh", 10.0, 50.0), "ab cd ef\ngh");
    assert_eq!(wrap("one two", 10.0, 1000.0), "one two");
}

#[test]
fn cjk_wraps_between_any_wide_characters() {
    // Wide characters are one em: four fit in 40 px.
    assert_eq!(wrap("日本語のテキスト", 10.0, 40.0), "日本語の\nテキスト");
    // Latin and CJK mixed: a break may come between a word and a wide character.
    assert_eq!(wrap("Hana 月城花です", 10.0, 60.0), "Hana 月城花\nです");
    assert_eq!(wrap("Hana 月城花です", 10.0, 40.0), "Hana 月\n城花です");
    assert_eq!(wrap("Hana 月城花です", 10.0, 30.0), "Hana\n月城花\nです");
}

#[test]
fn cjk_punctuation_hangs_and_brackets_move_down() {
    // 「。」 may not begin a line: it hangs past the margin.
    assert_eq!(wrap("あいうえ。か", 10.0, 40.0), "あいうえ。\nか");
    // 「 may not end a line: it moves down with what it opens.
    assert_eq!(wrap("あいう「え」", 10.0, 40.0), "あいう\n「え」");
}

#[test]
fn long_words_split_and_text_is_cleaned() {
    assert_eq!(wrap("abcdefghijkl", 10.0, 34.0), "abcdef\nghijkl");
    assert_eq!(wrap("a\r\nb\rc\td\u{7}e", 10.0, 1000.0), "a\nb\nc de");
    assert_eq!(wrap("line\n", 10.0, 1000.0), "line", "no trailing newline");
    assert_eq!(wrap("a  b", 10.0, 1000.0), "a  b", "spaces inside a line stay");
    assert_eq!(wrap("aaa   bbb", 10.0, 20.0), "aaa\nbbb", "and go at a break");
}

#[test]
fn long_captions_end_in_an_ellipsis() {
    let text = (0..10).map(|i| format!("line{i}")).collect::<Vec<_>>().join("\n");
    let cut = limit_lines(&text, 3, 10.0, 1000.0);
    assert_eq!(cut, "line0\nline1\nline2…");
    assert_eq!(limit_lines("a\nb", 3, 10.0, 1000.0), "a\nb");
}

#[test]
fn captions_name_shot_and_camera() {
    let board = Board {
        shot_type: "medium".into(),
        angle: "eye_level".into(),
        action: "Mio smiles.".into(),
        scene: "s01".into(),
        shot: "sh02".into(),
        motion: "slow push in".into(),
        ..Board::default()
    };
    assert_eq!(
        caption(&board, 34.0, 860.0),
        "S01 · SH02  medium / eye_level / push in\nMio smiles."
    );
    let no_motion = Board {
        motion: String::new(),
        ..board
    };
    assert!(caption(&no_motion, 34.0, 860.0).starts_with("S01 · SH02  medium / eye_level\n"));
}

#[test]
fn colours_parse_and_hash_stably() {
    assert_eq!(hex_color("#e8a33d"), Some([0xe8, 0xa3, 0x3d]));
    assert_eq!(hex_color("e8a33d"), None);
    assert_eq!(hex_color("#e8a3"), None);
    assert_eq!(hex_color("#ééé"), None);
    assert_eq!(fnv1a(""), 0x811c_9dc5);
    assert_eq!(fnv1a("a"), 0xe40c_292c);
    assert_eq!(character_color("nonsense", "kai"), character_color("", "kai"));
    let (top, _) = palette("night", "a bus stop");
    assert_eq!(top, palette("night", "a bus stop").0);
    assert_ne!(palette("night", "a bus stop").0, palette("night", "the ridge").0);
}

#[test]
fn layout_follows_the_shot_type() {
    let two = [cast("Kai", Some(Slot::Left)), cast("Mio", Some(Slot::Right))];
    let (figs, horizon) = layout("medium", "eye_level", &two, 1200.0, 1800.0);
    assert_eq!(figs.iter().map(|f| f.cx).collect::<Vec<_>>(), vec![264.0, 936.0]);
    assert!((figs[0].r - 135.0).abs() < 1e-9 && (figs[0].head_y - 648.0).abs() < 1e-9);
    assert!((horizon.unwrap() - 1404.0).abs() < 1e-9);
    let (_, high) = layout("medium", "high", &two, 1200.0, 1800.0);
    assert!((high.unwrap() - 0.66 * 1800.0).abs() < 1e-9);
    assert_eq!(layout("wide", "worms_eye", &two, 1200.0, 1800.0).1, None);

    let (close, horizon) = layout("close_up", "eye_level", &two, 1200.0, 1800.0);
    assert_eq!((close.len(), close[0].cx, horizon), (1, 264.0, None));

    // Over the shoulder: the second character faces us, the first's back is in front.
    let (os, _) = layout("over_shoulder", "eye_level", &two, 1200.0, 1800.0);
    assert_eq!(os.len(), 2);
    assert!(!os[0].back && os[0].who == 1 && (os[0].cx - 0.66 * 1200.0).abs() < 1e-9);
    assert!(os[1].back && os[1].who == 0 && (os[1].cx - 0.24 * 1200.0).abs() < 1e-9);
    // Mirrored when the first stands right.
    let swapped = [cast("Kai", Some(Slot::Right)), cast("Mio", Some(Slot::Left))];
    let (os, _) = layout("over_shoulder", "eye_level", &swapped, 1200.0, 1800.0);
    assert!((os[0].cx - 0.34 * 1200.0).abs() < 1e-9 && (os[1].cx - 0.76 * 1200.0).abs() < 1e-9);
}

#[test]
fn positions_spread_when_they_clash() {
    let both_center = [cast("a", Some(Slot::Center)), cast("b", Some(Slot::Center))];
    let refs: Vec<&Cast> = both_center.iter().collect();
    assert_eq!(x_positions(&refs), vec![0.3, 0.7]);
    let written = [cast("a", Some(Slot::Right)), cast("b", Some(Slot::Left))];
    let refs: Vec<&Cast> = written.iter().collect();
    assert_eq!(x_positions(&refs), vec![0.78, 0.22]);
    let five: Vec<Cast> = (0..5).map(|i| cast(&i.to_string(), None)).collect();
    let refs: Vec<&Cast> = five.iter().collect();
    let xs = x_positions(&refs);
    for (x, want) in xs.iter().zip([0.1, 0.3, 0.5, 0.7, 0.9]) {
        assert!((x - want).abs() < 1e-9, "{xs:?}");
    }
}

/// The colour at (`x`, `y`) of a `w` pixels wide frame [`paint`] painted
/// (planar: green, blue, red).
fn pixel(frame: &[u8], w: usize, (x, y): (usize, usize)) -> Rgb {
    let n = frame.len() / 3;
    let i = y * w + x;
    [frame[2 * n + i], frame[i], frame[n + i]]
}

/// Sky from (10, 20, 30) to (110, 120, 130) down a 200×300 canvas, ground
/// from y 200, one building from x 0 to 20 rising to y 150.
fn test_backdrop() -> Backdrop {
    Backdrop {
        top: [10, 20, 30],
        bottom: [110, 120, 130],
        horizon: Some(200.0),
        band: None,
        shadows: Vec::new(),
        skyline: vec![[0.0, 20.0, 150.0]],
    }
}

/// Facing us in the middle of the 200 px canvas: head at (100, 60), r 20
/// (outline 2 px), body centred at (100, 140) with half axes 30 and 64.
fn front_figure() -> Figure {
    Figure {
        cx: 100.0,
        head_y: 60.0,
        r: 20.0,
        color: [200, 100, 0],
        back: false,
        who: 0,
    }
}

#[test]
fn the_painter_paints_background_then_a_figure() {
    let frame = paint(&test_backdrop(), &[front_figure()], 200, 300);
    assert_eq!(frame.len(), 200 * 300 * 3);
    let at = |x, y| pixel(&frame, 200, (x, y));
    // The sky's gradient, truncated: 10 + 100 × 30 / 300 = 20.
    assert_eq!(at(160, 30), [20, 30, 40]);
    assert_eq!(at(160, 0), [10, 20, 30]);
    assert_eq!(at(160, 199), [76, 86, 96], "76.33… truncated");
    // The ground: the gradient × 0.62 (90 × 0.62 = 55.8).
    assert_eq!(at(190, 240), [55, 62, 68]);
    // A building: the sky × 0.55 (70 × 0.55 = 38.5); not above its roof.
    assert_eq!(at(10, 180), [38, 44, 49]);
    assert_eq!(at(10, 140), [56, 66, 76]);
    assert_eq!(at(30, 180), [70, 80, 90], "right of it");
    // The figure: eyes (looking nowhere: it stands in the middle), face
    // (the colour 60 % toward white), outline (35 %), body, body outline.
    assert_eq!(at(93, 58), [EYE; 3]);
    assert_eq!(at(107, 58), [EYE; 3]);
    assert_eq!(at(100, 70), [233, 193, 153]);
    assert_eq!(at(100, 39), [70, 35, 0]);
    assert_eq!(at(100, 37), [22, 32, 42], "sky just above the outline");
    assert_eq!(at(100, 140), [200, 100, 0]);
    assert_eq!(at(131, 140), [70, 35, 0]);
    assert_eq!(at(134, 140), [56, 66, 76], "sky beside the body");
    // The body stands on the ground: its outline covers it, then the ground.
    assert_eq!(at(100, 205), [70, 35, 0]);
    assert_eq!(at(100, 208), [49, 55, 61]);
}

#[test]
fn figures_are_painted_back_to_front() {
    // Seen from behind, left of the one facing us and overlapping it.
    let back = Figure {
        cx: 80.0,
        color: [0, 0, 200],
        back: true,
        who: 1,
        ..front_figure()
    };
    let frame = paint(&test_backdrop(), &[back.clone(), front_figure()], 200, 300);
    let at = |x, y| pixel(&frame, 200, (x, y));
    // Where both bodies are, the front one shows; where only the back one
    // is, it does.
    assert_eq!(at(95, 140), [200, 100, 0]);
    assert_eq!(at(55, 140), [0, 0, 200]);
    // The back of a head is its hair (the colour × 0.7), with no eyes
    // where they would be (75.4, 58).
    assert_eq!(at(75, 58), [0, 0, 140]);
    assert_eq!(at(70, 70), [0, 0, 140]);
    // In the other order the figure behind covers the other.
    let frame = paint(&test_backdrop(), &[front_figure(), back], 200, 300);
    assert_eq!(pixel(&frame, 200, (95, 140)), [0, 0, 200]);
}

#[test]
fn the_painter_paints_bands_and_shadows() {
    let bd = Backdrop {
        horizon: None,
        band: Some((20.0, [1, 2, 3])),
        shadows: vec![[100.0, 250.0, 40.0, 10.0]],
        ..test_backdrop()
    };
    let frame = paint(&bd, &[], 200, 300);
    let at = |x, y| pixel(&frame, 200, (x, y));
    assert_eq!(at(5, 0), [1, 2, 3]);
    assert_eq!(at(199, 19), [1, 2, 3]);
    assert_eq!(at(5, 20), [16, 26, 36], "below the band: the sky");
    // The shadow: the sky × 0.7 inside its ellipse (93.33 × 0.7 = 65.3).
    assert_eq!(at(100, 250), [65, 72, 79]);
    assert_eq!(at(139, 250), [65, 72, 79]);
    assert_eq!(at(140, 250), [93, 103, 113], "its edge is outside");
    assert_eq!(at(100, 239), [89, 99, 109], "above it");
    // No horizon: no skyline either (buildings stand on the horizon).
    assert_eq!(at(10, 180), [70, 80, 90]);
}

#[test]
fn tags_do_not_overlap() {
    let tag = |x: f64| Tag {
        text: "Hana Tsukishiro (月城 花)".into(),
        x,
        y: 100.0,
        size: 24.0,
        color: [0; 3],
        away: -1.0,
    };
    let mut tags = vec![tag(200.0), tag(300.0), tag(800.0)];
    unstack(&mut tags, 960.0);
    assert_eq!(tags[0].y, 100.0);
    assert!(tags[1].y < 100.0 - 30.0, "moved up a row: {}", tags[1].y);
    assert_eq!(tags[2].y, 100.0, "far away: stays");
}

#[test]
fn sizes_fit() {
    assert_eq!(plate_size(960, 1440), (1200, 1800));
    assert_eq!(plate_size(512, 320), (640, 400));
    assert_eq!(fit_size("short", 60.0, 880.0), 60.0);
    assert!(fit_size(&"x".repeat(100), 60.0, 880.0) < 20.0);
    let (size, text) = fit_block(&"word ".repeat(400), 864.0, 436.0);
    assert_eq!(size, 20.0);
    assert!(text.ends_with('…'));
    assert!(text.lines().count() as f64 * line_height(size) <= 436.0);
}

#[test]
fn emoji_sequences_and_marks_are_never_split() {
    // A ZWJ family and a skin tone are one emoji, one em wide.
    assert_eq!(text_width("👩‍👩‍👧", 10.0), 10.0);
    assert_eq!(text_width("👋🏽", 10.0), 10.0);
    assert_eq!(text_width("🇯🇵", 10.0), 10.0);
    // They break like a wide character, whole.
    assert_eq!(wrap("ab 👩‍👩‍👧👋🏽🇯🇵", 10.0, 30.0), "ab 👩‍👩‍👧\n👋🏽🇯🇵");
    assert_eq!(wrap("👩‍👩‍👧👋🏽🇯🇵", 10.0, 20.0), "👩‍👩‍👧👋🏽\n🇯🇵");
    // A long word splits between clusters, never inside one.
    assert_eq!(
        wrap("e\u{301}e\u{301}e\u{301}e\u{301}", 10.0, 12.0),
        "e\u{301}e\u{301}\ne\u{301}e\u{301}"
    );
}
