//! Where figures stand: slots, framing by shot type and angle, the horizon.

use super::*;

/// Where a character stands, as written in the screenplay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Left,
    Center,
    Right,
}

impl Slot {
    pub(super) fn parse(s: &str) -> Option<Slot> {
        match s {
            "left" => Some(Slot::Left),
            "center" => Some(Slot::Center),
            "right" => Some(Slot::Right),
            _ => None,
        }
    }

    pub(super) fn x(self) -> f64 {
        match self {
            Slot::Left => 0.22,
            Slot::Center => 0.5,
            Slot::Right => 0.78,
        }
    }
}

/// One character of a shot.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cast {
    pub(super) name: String,
    pub(super) color: Rgb,
    pub(super) slot: Option<Slot>,
}

impl Cast {
    pub(super) fn from_value(v: &Value) -> Cast {
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
pub(super) struct Board {
    pub(super) shot_type: String,
    pub(super) angle: String,
    pub(super) cast: Vec<Cast>,
    pub(super) location: String,
    pub(super) time_of_day: String,
    pub(super) action: String,
    pub(super) scene: String,
    pub(super) shot: String,
    /// Only when the graph passes it: names the camera move in the caption.
    pub(super) motion: String,
}

impl Board {
    pub(super) fn from_job(job: &Job) -> Board {
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
pub(super) fn x_positions(cast: &[&Cast]) -> Vec<f64> {
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
pub(super) fn framing(shot_type: &str, n: usize) -> (f64, f64, Option<f64>) {
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
pub(super) fn layout(shot_type: &str, angle: &str, cast: &[Cast], w: f64, h: f64) -> (Vec<Figure>, Option<f64>) {
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
pub(super) fn horizon_for(base: Option<f64>, angle: &str) -> Option<f64> {
    let base = base?;
    match angle {
        "high" => Some(base - 0.12),
        "low" => Some(base + 0.10),
        "birds_eye" | "worms_eye" => None,
        _ => Some(base),
    }
}

pub(super) fn board_backdrop(board: &Board, figures: &[Figure], horizon: Option<f64>, (w, h): (f64, f64)) -> Backdrop {
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
pub(super) fn skyline(location: &str, horizon: f64, w: f64, h: f64) -> Vec<[f64; 3]> {
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
