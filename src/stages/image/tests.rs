//! Tests of the drawn images: layout, expressions, wrapping.

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

#[test]
fn geq_paints_background_then_figures() {
    let bd = Backdrop {
        top: [10, 20, 30],
        bottom: [110, 120, 130],
        horizon: Some(1000.0),
        band: None,
        shadows: Vec::new(),
        skyline: vec![[0.0, 100.0, 900.0]],
    };
    let fig = Figure {
        cx: 600.0,
        head_y: 500.0,
        r: 100.0,
        color: [200, 100, 0],
        back: false,
        who: 0,
    };
    let g = geq_filter(&bd, std::slice::from_ref(&fig), 1200.0);
    assert!(g.starts_with("geq=r='st(0,10+100*Y/H);if(gte(Y,1000.0),st(0,ld(0)*0.62));"));
    assert!(g.contains("if(between(X,0.0,100.0)*between(Y,900.0,1000.0),st(0,ld(0)*0.55))"));
    // Red channel: light head 200 + 0.6 × 55 = 233, dark outline 70, body 200.
    assert!(g.contains("st(0,233)") && g.contains("st(0,70)") && g.contains("st(0,200)"));
    assert!(g.contains(&format!("st(0,{EYE})")));
    assert_eq!(g.matches("ld(0)'").count(), 3, "each channel ends with its value");
    // A figure seen from behind has no eyes and hair-coloured head.
    let back = geq_filter(&bd, &[Figure { back: true, ..fig }], 1200.0);
    assert!(back.contains("if(0,st(0,25)") && back.contains("st(0,140)"));
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
