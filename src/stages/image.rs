//! Drawn images for the animatic: character sheets and storyboard frames.
//!
//! Both are one ffmpeg run each: a `geq` expression paints the background and
//! the figures (pure arithmetic, built here), and `drawtext` sets the text
//! from files (`textfile=` + `expansion=none`), so user text never enters a
//! filtergraph. Text is wrapped here, since drawtext does not wrap.
//! See docs/media-notes/animatic.md §1.

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use unicode_width::UnicodeWidthChar;

use super::escape::filter_value;
use super::{exec, ffmpeg, param, param_f64, param_str, produced, scratch, tools, write};
use crate::exec::{ExecError, Job, Produced};

/// The plate is this much larger than the frame, so camera moves have room.
pub(crate) const PLATE_SCALE: f64 = 1.25;

/// An sRGB colour.
type Rgb = [u8; 3];

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// A character sheet: the figure large in the character's colour, the name
/// as a title and the design prompt and appearance below it.
pub async fn character_card(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let font = tools::need(&job.tools.font, "the Noto Sans CJK font", "fonts-noto-cjk")?;
    let font = filter_value(font.as_str());
    let color = character_color(param_str(job, "color"), param_str(job, "character"));
    let name = match clean_line(param_str(job, "name")) {
        name if name.is_empty() => param_str(job, "character").to_string(),
        name => name,
    };
    let title = write(job, "title.txt", &name)?;
    let title_size = fit_size(&name, 60.0, CARD_W as f64 - 80.0);
    let (body_size, body) = card_body(job);
    let body = write(job, "body.txt", &body)?;
    let chain = [
        geq_filter(&card_backdrop(color), &[card_figure(color)], CARD_W as f64),
        drawtext(
            &font,
            &title,
            title_size,
            &ink_on(color),
            "(w-text_w)/2",
            &format!("({CARD_HEADER}-text_h)/2"),
        ),
        drawtext(&font, &body, body_size, "0x2a2a2a", "48", &format!("{CARD_TEXT_TOP}")),
    ];
    let out = scratch(job, "card.png");
    let cmd = ffmpeg(job)?
        .args(["-f", "lavfi", "-i", &blank(CARD_W, CARD_H), "-filter_complex"])
        .arg(format!("[0:v]{}[out]", chain.join(",")))
        .args(["-map", "[out]", "-frames:v", "1", out.as_str()]);
    exec(job, &cmd, cancel).await?;
    produced(&out, "ffmpeg")?;
    Ok(Produced {
        files: vec![("png".into(), out)],
        duration: None,
    })
}

/// A storyboard frame: the 1.25× plate (no text; the camera move films it)
/// and the review panel (the plate at frame size, name tags and caption).
pub async fn storyboard(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let font = tools::need(&job.tools.font, "the Noto Sans CJK font", "fonts-noto-cjk")?;
    let font = filter_value(font.as_str());
    let board = Board::from_job(job);
    let (w, h) = frame_size(job);
    let (pw, ph) = plate_size(w, h);
    let (figures, horizon) = layout(&board.shot_type, &board.angle, &board.cast, pw as f64, ph as f64);
    let backdrop = board_backdrop(&board, &figures, horizon, (pw as f64, ph as f64));
    let graph = format!(
        "[0:v]{},split=2[plate][p2];[p2]{}[panel]",
        geq_filter(&backdrop, &figures, pw as f64),
        panel_chain(job, &board, &figures, &font, (w, h))?
    );
    let (plate, panel) = (scratch(job, "plate.png"), scratch(job, "panel.png"));
    let cmd = ffmpeg(job)?
        .args(["-f", "lavfi", "-i", &blank(pw, ph), "-filter_complex", &graph])
        .args(["-map", "[plate]", "-frames:v", "1", plate.as_str()])
        .args(["-map", "[panel]", "-frames:v", "1", panel.as_str()]);
    exec(job, &cmd, cancel).await?;
    produced(&plate, "ffmpeg")?;
    produced(&panel, "ffmpeg")?;
    Ok(Produced {
        files: vec![("png".into(), plate), ("panel.png".into(), panel)],
        duration: None,
    })
}

/// The panel from the plate: scaled to the frame, a name tag per figure and
/// the caption, each text in its own file.
fn panel_chain(
    job: &Job,
    board: &Board,
    figures: &[Figure],
    font: &str,
    (w, h): (u32, u32),
) -> Result<String, ExecError> {
    let mut chain = vec![format!("scale={w}:{h}:flags=bicubic")];
    for (i, tag) in name_tags(board, figures, w as f64, h as f64).iter().enumerate() {
        let file = write(job, &format!("tag-{i}.txt"), &tag.text)?;
        chain.push(tag_filter(font, &file, tag, w));
    }
    let size = (CAPTION_SIZE * w as f64 / 960.0).round();
    let text = caption(board, size, CAPTION_WIDTH * w as f64 / 960.0);
    let file = write(job, "caption.txt", &text)?;
    chain.push(caption_filter(font, &file, size));
    Ok(chain.join(","))
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

/// A black canvas for `geq` to paint over (planar RGB: no chroma rounding).
fn blank(w: u32, h: u32) -> String {
    format!("color=c=black:s={w}x{h}:r=1,format=gbrp")
}

// ---------------------------------------------------------------------------
// Colours
// ---------------------------------------------------------------------------

/// FNV-1a (32 bit) of the UTF-8 bytes: a hash that is stable across builds.
fn fnv1a(s: &str) -> u32 {
    s.bytes()
        .fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `#rrggbb` → colour.
fn hex_color(s: &str) -> Option<Rgb> {
    let hex = s.trim().strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// A character's colour, or a stable one derived from its id.
fn character_color(color: &str, id: &str) -> Rgb {
    hex_color(color).unwrap_or_else(|| hsv((fnv1a(id) % 360) as f64 / 360.0, 0.55, 0.85))
}

fn hsv(h: f64, s: f64, v: f64) -> Rgb {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r, g, b].map(|c| (c * 255.0) as u8)
}

/// `a` moved toward `b` by `t` (0 = a, 1 = b).
fn mix(a: Rgb, b: Rgb, t: f64) -> Rgb {
    [0, 1, 2].map(|k| (a[k] as f64 * (1.0 - t) + b[k] as f64 * t) as u8)
}

fn scale(c: Rgb, f: f64) -> Rgb {
    c.map(|v| (v as f64 * f).clamp(0.0, 255.0) as u8)
}

fn luminance(c: Rgb) -> f64 {
    (0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64) / 255.0
}

/// Text colour readable on `c`.
fn ink_on(c: Rgb) -> String {
    if luminance(c) > 0.55 { "0x1a1a1a" } else { "0xffffff" }.to_string()
}

fn hex(c: Rgb) -> String {
    format!("0x{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Sky gradient (top, bottom) for a time of day, tinted 20 % by the location.
fn palette(time_of_day: &str, location: &str) -> (Rgb, Rgb) {
    let (top, bottom) = match time_of_day {
        "dawn" => ([120, 140, 200], [250, 180, 160]),
        "morning" => ([150, 195, 245], [250, 235, 205]),
        "afternoon" => ([120, 170, 230], [250, 220, 170]),
        "dusk" => ([40, 50, 110], [245, 150, 90]),
        "evening" => ([25, 30, 75], [120, 80, 120]),
        "night" => ([8, 12, 40], [45, 55, 95]),
        _ => ([100, 165, 240], [205, 230, 250]),
    };
    let tint = hsv((fnv1a(location) % 360) as f64 / 360.0, 0.5, 0.9);
    (mix(top, tint, 0.2), mix(bottom, tint, 0.2))
}

// ---------------------------------------------------------------------------
// Geometry → geq
// ---------------------------------------------------------------------------

/// A figure: head circle over a body ellipse, in canvas pixels.
#[derive(Debug, Clone, PartialEq)]
struct Figure {
    cx: f64,
    head_y: f64,
    r: f64,
    color: Rgb,
    /// Seen from behind (over-the-shoulder foreground): no eyes.
    back: bool,
    /// Index into the shot's characters.
    who: usize,
}

/// What lies behind the figures.
#[derive(Debug, Clone, PartialEq)]
struct Backdrop {
    top: Rgb,
    bottom: Rgb,
    /// Ground from this y down (the gradient darkened).
    horizon: Option<f64>,
    /// A solid band from the top down to this y (the card's header).
    band: Option<(f64, Rgb)>,
    /// Soft shadows on the ground: (cx, cy, a, b).
    shadows: Vec<[f64; 4]>,
    /// Building silhouettes standing on the horizon: (x0, x1, top y).
    skyline: Vec<[f64; 3]>,
}

const EYE: u8 = 25;

fn ellipse(cx: f64, cy: f64, a: f64, b: f64) -> String {
    format!("lt(pow((X-{cx:.1})/{a:.1},2)+pow((Y-{cy:.1})/{b:.1},2),1)")
}

fn circle(cx: f64, cy: f64, r: f64) -> String {
    format!("lt(hypot(X-{cx:.1},Y-{cy:.1}),{r:.1})")
}

fn bbox(x0: f64, x1: f64, y0: f64, y1: f64) -> String {
    format!("between(X,{x0:.1},{x1:.1})*between(Y,{y0:.1},{y1:.1})")
}

/// Inside either eye of `f` (none from behind); the eyes look toward the
/// middle of the frame.
fn eyes(f: &Figure, canvas_w: f64) -> String {
    if f.back {
        return "0".into();
    }
    let off_centre = f.cx - canvas_w / 2.0;
    let look = if off_centre.abs() > 1.0 {
        -0.12 * f.r * off_centre.signum()
    } else {
        0.0
    };
    let (ex, ey, er) = (f.cx + look, f.head_y - 0.1 * f.r, 0.12 * f.r);
    format!(
        "lt(min(hypot(X-{:.1},Y-{ey:.1}),hypot(X-{:.1},Y-{ey:.1})),{er:.1})",
        ex - 0.35 * f.r,
        ex + 0.35 * f.r
    )
}

/// One statement painting `f` into var 0 for colour channel `k`: a bounding
/// box test first (cheap, and `if` is lazy), then eye, head, outline, body.
fn figure_stmt(f: &Figure, canvas_w: f64, k: usize) -> String {
    let r = f.r;
    let body_y = f.head_y + 4.0 * r;
    let o = (0.03 * r).max(2.0);
    // A face is the colour lightened; the back of a head is hair, darker.
    let light = if f.back {
        scale(f.color, 0.7)
    } else {
        mix(f.color, [255; 3], 0.6)
    }[k];
    let dark = scale(f.color, 0.35)[k];
    let eyes = eyes(f, canvas_w);
    let test = bbox(
        f.cx - 1.5 * r - o,
        f.cx + 1.5 * r + o,
        f.head_y - r - o,
        body_y + 3.2 * r + o,
    );
    format!(
        "if({test},if({eyes},st(0,{EYE}),if({},st(0,{light}),if({},st(0,{dark}),if({},st(0,{}),if({},st(0,{dark})))))))",
        circle(f.cx, f.head_y, r),
        circle(f.cx, f.head_y, r + o),
        ellipse(f.cx, body_y, 1.5 * r, 3.2 * r),
        f.color[k],
        ellipse(f.cx, body_y, 1.5 * r + o, 3.2 * r + o),
    )
}

/// The expression for colour channel `k`: background, then figures back to front.
fn channel_expr(bd: &Backdrop, figures: &[Figure], canvas_w: f64, k: usize) -> String {
    let (top, bottom) = (bd.top[k] as i32, bd.bottom[k] as i32);
    let mut stmts = vec![format!("st(0,{top}+{}*Y/H)", bottom - top)];
    if let Some(y) = bd.horizon {
        stmts.push(format!("if(gte(Y,{y:.1}),st(0,ld(0)*0.62))"));
        for &[x0, x1, top] in &bd.skyline {
            stmts.push(format!("if({},st(0,ld(0)*0.55))", bbox(x0, x1, top, y)));
        }
    }
    if let Some((y, c)) = bd.band {
        stmts.push(format!("if(lt(Y,{y:.1}),st(0,{}))", c[k]));
    }
    for &[cx, cy, a, b] in &bd.shadows {
        let test = bbox(cx - a, cx + a, cy - b, cy + b);
        stmts.push(format!("if({test},if({},st(0,ld(0)*0.7)))", ellipse(cx, cy, a, b)));
    }
    stmts.extend(figures.iter().map(|f| figure_stmt(f, canvas_w, k)));
    stmts.push("ld(0)".into());
    stmts.join(";")
}

/// `geq=r='…':g='…':b='…'` (quoted: `,` and `;` are literal inside).
fn geq_filter(bd: &Backdrop, figures: &[Figure], canvas_w: f64) -> String {
    let [r, g, b] = [0, 1, 2].map(|k| channel_expr(bd, figures, canvas_w, k));
    format!("geq=r='{r}':g='{g}':b='{b}'")
}

// ---------------------------------------------------------------------------
// Storyboard layout
// ---------------------------------------------------------------------------

/// Where a character stands, as written in the screenplay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Left,
    Center,
    Right,
}

impl Slot {
    fn parse(s: &str) -> Option<Slot> {
        match s {
            "left" => Some(Slot::Left),
            "center" => Some(Slot::Center),
            "right" => Some(Slot::Right),
            _ => None,
        }
    }

    fn x(self) -> f64 {
        match self {
            Slot::Left => 0.22,
            Slot::Center => 0.5,
            Slot::Right => 0.78,
        }
    }
}

/// One character of a shot.
#[derive(Debug, Clone, PartialEq)]
struct Cast {
    name: String,
    color: Rgb,
    slot: Option<Slot>,
}

impl Cast {
    fn from_value(v: &Value) -> Cast {
        let s = |k| v.get(k).and_then(Value::as_str).unwrap_or("");
        let name = if s("name").is_empty() { s("id") } else { s("name") };
        Cast {
            name: name.to_string(),
            color: character_color(s("color"), s("id")),
            slot: Slot::parse(s("position")),
        }
    }
}

/// The slice of the screenplay a storyboard frame draws.
#[derive(Debug, Clone, Default)]
struct Board {
    shot_type: String,
    angle: String,
    cast: Vec<Cast>,
    location: String,
    time_of_day: String,
    action: String,
    scene: String,
    shot: String,
    /// Only when the graph passes it: names the camera move in the caption.
    motion: String,
}

impl Board {
    fn from_job(job: &Job) -> Board {
        let cast = param(job, "characters")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Cast::from_value).collect())
            .unwrap_or_default();
        let text = |name| param_str(job, name).to_string();
        Board {
            shot_type: text("shot_type"),
            angle: text("angle"),
            cast,
            location: text("location"),
            time_of_day: text("time_of_day"),
            action: text("action"),
            scene: text("scene"),
            shot: text("shot"),
            motion: text("motion"),
        }
    }
}

/// x positions (fractions of the width) for `cast`: as written when every
/// one has a different position, else evenly spread.
fn x_positions(cast: &[&Cast]) -> Vec<f64> {
    let slots: Vec<Option<Slot>> = cast.iter().map(|c| c.slot).collect();
    let distinct = slots
        .iter()
        .enumerate()
        .all(|(i, s)| s.is_some() && !slots[..i].contains(s));
    if distinct {
        return slots.iter().flatten().map(|s| s.x()).collect();
    }
    match cast.len() {
        1 => vec![0.5],
        2 => vec![0.3, 0.7],
        3 => vec![0.2, 0.5, 0.8],
        n => (0..n).map(|i| 0.1 + 0.8 * i as f64 / (n - 1) as f64).collect(),
    }
}

/// Head radius, head y (fractions of the height) and horizon for a shot
/// type with `n` figures in view (notes §1).
fn framing(shot_type: &str, n: usize) -> (f64, f64, Option<f64>) {
    match shot_type {
        "establishing" => (0.022, 0.80 - 7.2 * 0.022, Some(0.66)),
        "wide" => (0.035, 0.80 - 7.2 * 0.035, Some(0.70)),
        "close_up" => (0.20, 0.42, None),
        "extreme_close_up" => (0.34, 0.50, None),
        _ => (if n <= 2 { 0.075 } else { 0.062 }, 0.36, Some(0.78)),
    }
}

/// Figures (back to front, canvas pixels) and the horizon for a shot, by
/// shot type and camera angle. Close-ups show the first character only; an
/// over-the-shoulder shot shows the second, with the back of the first's
/// head in the foreground (mirrored when the first stands right).
fn layout(shot_type: &str, angle: &str, cast: &[Cast], w: f64, h: f64) -> (Vec<Figure>, Option<f64>) {
    let over_shoulder = shot_type == "over_shoulder" && cast.len() >= 2;
    let shown: Vec<(usize, &Cast)> = match shot_type {
        "close_up" | "extreme_close_up" => cast.iter().enumerate().take(1).collect(),
        _ if over_shoulder => vec![(1, &cast[1])],
        _ => cast.iter().enumerate().collect(),
    };
    let (r, head_y, horizon) = framing(shot_type, shown.len());
    let mirrored = over_shoulder && (cast[0].slot == Some(Slot::Right) || cast[1].slot == Some(Slot::Left));
    let xs = match (over_shoulder, mirrored) {
        (true, false) => vec![0.66],
        (true, true) => vec![0.34],
        _ => x_positions(&shown.iter().map(|(_, c)| *c).collect::<Vec<_>>()),
    };
    let mut figures: Vec<Figure> = shown
        .iter()
        .zip(xs)
        .map(|(&(who, c), x)| Figure {
            cx: x * w,
            head_y: head_y * h,
            r: r * h,
            color: c.color,
            back: false,
            who,
        })
        .collect();
    if over_shoulder {
        figures.push(Figure {
            cx: if mirrored { 0.76 } else { 0.24 } * w,
            head_y: 0.74 * h,
            r: 0.19 * h,
            color: cast[0].color,
            back: true,
            who: 0,
        });
    }
    (figures, horizon_for(horizon, angle).map(|y| y * h))
}

/// The horizon (fraction of the height) after the camera angle: a high
/// camera sees more ground, a low one less; bird's eye is all ground (the
/// backdrop darkens everything), worm's eye all sky.
fn horizon_for(base: Option<f64>, angle: &str) -> Option<f64> {
    let base = base?;
    match angle {
        "high" => Some(base - 0.12),
        "low" => Some(base + 0.10),
        "birds_eye" | "worms_eye" => None,
        _ => Some(base),
    }
}

fn board_backdrop(board: &Board, figures: &[Figure], horizon: Option<f64>, (w, h): (f64, f64)) -> Backdrop {
    let (mut top, mut bottom) = palette(&board.time_of_day, &board.location);
    if board.angle == "birds_eye" {
        (top, bottom) = (scale(bottom, 0.62), scale(bottom, 0.5));
    }
    // Small figures on visible ground (or seen from above) stand on a shadow.
    let grounded = horizon.is_some() || board.angle == "birds_eye";
    let shadows = match board.shot_type.as_str() {
        "establishing" | "wide" if grounded => figures
            .iter()
            .map(|f| [f.cx, f.head_y + 7.2 * f.r, 1.7 * f.r, 0.35 * f.r])
            .collect(),
        _ => Vec::new(),
    };
    let skyline = match (board.shot_type.as_str(), horizon) {
        ("establishing", Some(y)) => skyline(&board.location, y, w, h),
        _ => Vec::new(),
    };
    Backdrop {
        top,
        bottom,
        horizon,
        band: None,
        shadows,
        skyline,
    }
}

/// Silhouettes of buildings along the horizon of an establishing shot, their
/// widths and heights drawn from the location's hash (stable per place).
fn skyline(location: &str, horizon: f64, w: f64, h: f64) -> Vec<[f64; 3]> {
    let mut seed = fnv1a(location);
    let mut next = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f64 / (1u32 << 24) as f64
    };
    let mut out = Vec::new();
    let mut x = -0.02 * w;
    while x < w {
        let width = (0.07 + 0.09 * next()) * w;
        let height = (0.03 + 0.11 * next()) * h;
        if next() > 0.25 {
            out.push([x, x + width, horizon - height]);
        }
        x += width + 0.015 * w * next();
    }
    out
}

// ---------------------------------------------------------------------------
// Storyboard text: name tags and caption
// ---------------------------------------------------------------------------

const CAPTION_SIZE: f64 = 34.0;
/// Wrap width of the caption on a 960-px panel.
const CAPTION_WIDTH: f64 = 860.0;
const CAPTION_MAX_LINES: usize = 6;

/// A character's name on the panel, near their figure (panel pixels).
#[derive(Debug, Clone, PartialEq)]
struct Tag {
    text: String,
    x: f64,
    y: f64,
    size: f64,
    color: Rgb,
    /// Which way to move when it collides: up (-1) above a head, else down.
    away: f64,
}

/// One tag per figure in view: on the chest of a large figure, above the
/// head of a small one; kept clear of the caption at the bottom, and a row
/// lower than a neighbour it would overlap.
fn name_tags(board: &Board, figures: &[Figure], w: f64, h: f64) -> Vec<Tag> {
    let k = w / plate_size(w as u32, h as u32).0 as f64;
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
fn tag_span(t: &Tag, w: f64) -> (f64, f64) {
    let half = text_width(&t.text, t.size) / 2.0 + t.size / 3.0;
    let x = t.x.clamp(half, (w - half).max(half));
    (x - half, x + half)
}

/// Move each tag that overlaps an earlier one a row away from its figure
/// until it is free.
fn unstack(tags: &mut [Tag], w: f64) {
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

fn tag_filter(font: &str, file: &camino::Utf8Path, tag: &Tag, w: u32) -> String {
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
fn caption(board: &Board, size: f64, max_w: f64) -> String {
    let mut header = format!(
        "{} · {}  {} / {}",
        board.scene.to_uppercase(),
        board.shot.to_uppercase(),
        board.shot_type,
        board.angle
    );
    if !board.motion.trim().is_empty() {
        header.push_str(" / ");
        header.push_str(super::video::Move::from_motion(&board.motion).label());
    }
    let text = match board.action.trim() {
        "" => header,
        action => format!("{header}\n{action}"),
    };
    limit_lines(&wrap(&text, size, max_w), CAPTION_MAX_LINES, size, max_w)
}

fn caption_filter(font: &str, file: &camino::Utf8Path, size: f64) -> String {
    format!(
        "drawtext=fontfile={font}:textfile={}:expansion=none:fontsize={size}:fontcolor=white:line_spacing={}:box=1:boxcolor=black@0.6:boxborderw={}:x=(w-text_w)/2:y=h-text_h-{}",
        filter_value(file.as_str()),
        (size * 10.0 / 34.0).round(),
        (size * 18.0 / 34.0).round(),
        (size * 60.0 / 34.0).round(),
    )
}

/// A plain drawtext of a text file at (x, y).
fn drawtext(font: &str, file: &camino::Utf8Path, size: f64, color: &str, x: &str, y: &str) -> String {
    format!(
        "drawtext=fontfile={font}:textfile={}:expansion=none:fontsize={size}:fontcolor={color}:line_spacing={}:x={x}:y={y}",
        filter_value(file.as_str()),
        line_spacing(size),
    )
}

fn line_spacing(size: f64) -> f64 {
    (size * 0.3).round()
}

// ---------------------------------------------------------------------------
// Character card
// ---------------------------------------------------------------------------

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
    if let Some(lora) = param(job, "lora").and_then(Value::as_str) {
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

// ---------------------------------------------------------------------------
// Text: cleaning, measuring, wrapping
// ---------------------------------------------------------------------------

/// Inner whitespace collapsed to single spaces.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line of text: line breaks and control characters become spaces.
fn clean_line(s: &str) -> String {
    collapse(
        &s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>(),
    )
}

/// Estimated advance of `c` at font size `size`: East Asian wide characters
/// are square, others a little over half; zero-width ones nothing.
fn char_width(c: char, size: f64) -> f64 {
    match c.width() {
        Some(2) => size,
        Some(0) | None => 0.0,
        _ => 0.56 * size,
    }
}

fn text_width(s: &str, size: f64) -> f64 {
    s.chars().map(|c| char_width(c, size)).sum()
}

fn is_wide(c: char) -> bool {
    c.width() == Some(2)
}

/// May not begin a line (closing brackets, small kana, CJK punctuation).
fn no_start(c: char) -> bool {
    "、。，．・：；？！ー）」』】〕〉》〟ぁぃぅぇぉっゃゅょァィゥェォッャュョ…‥".contains(c)
}

/// May not end a line (opening brackets).
fn no_end(c: char) -> bool {
    "（「『【〔〈《〝".contains(c)
}

/// A piece of a paragraph: a run of spaces, a word (no spaces, no wide
/// characters) or one wide character; zero-width marks stay with the piece
/// before them.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Space(usize),
    Word(String),
    Wide(String),
}

fn pieces(para: &str) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for c in para.chars() {
        if c == ' ' {
            match out.last_mut() {
                Some(Piece::Space(n)) => *n += 1,
                _ => out.push(Piece::Space(1)),
            }
        } else if c.is_control() {
            continue;
        } else if is_wide(c) {
            out.push(Piece::Wide(c.to_string()));
        } else {
            match out.last_mut() {
                Some(Piece::Word(w)) => w.push(c),
                Some(Piece::Wide(w)) if c.width() == Some(0) => w.push(c),
                _ => out.push(Piece::Word(c.to_string())),
            }
        }
    }
    out
}

/// Greedy line filling for one paragraph.
struct Filler {
    size: f64,
    max_w: f64,
    lines: Vec<String>,
    line: String,
    /// Spaces before the next piece (dropped at a line break).
    space: usize,
}

impl Filler {
    fn width(&self, s: &str) -> f64 {
        text_width(s, self.size)
    }

    /// Put `piece` (a word or a wide character) on the line, or break first.
    fn place(&mut self, piece: &str, wide: bool) {
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
    fn push_long(&mut self, piece: &str) {
        if self.width(&self.line) + self.width(piece) <= self.max_w || no_start(piece.chars().next().unwrap_or(' ')) {
            self.line.push_str(piece);
            return;
        }
        for c in piece.chars() {
            if !self.line.is_empty() && self.width(&self.line) + char_width(c, self.size) > self.max_w {
                self.break_line();
            }
            self.line.push(c);
        }
    }

    /// End the line; an opening bracket at its end moves to the next.
    fn break_line(&mut self) {
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

    fn finish(mut self) -> Vec<String> {
        self.lines.push(self.line.trim_end().to_string());
        self.lines
    }
}

/// Wrap `text` to `max_w` pixels at font size `size`: break at spaces
/// between Latin words, anywhere between wide (CJK) characters. CR/CRLF
/// become LF, tabs spaces; control characters go; no trailing newline.
fn wrap(text: &str, size: f64, max_w: f64) -> String {
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
fn limit_lines(text: &str, max: usize, size: f64, max_w: f64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max {
        return text.to_string();
    }
    let mut kept: Vec<String> = lines[..max].iter().map(|l| l.to_string()).collect();
    if let Some(last) = kept.last_mut() {
        while !last.is_empty() && text_width(last, size) + char_width('…', size) > max_w {
            last.pop();
        }
        *last = format!("{}…", last.trim_end());
    }
    kept.join("\n")
}

#[cfg(test)]
mod tests {
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
}
