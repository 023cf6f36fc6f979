//! Colours, and the painter of backgrounds and figures.

use super::*;

/// FNV-1a (32 bit) of the UTF-8 bytes: a hash that is stable across builds.
pub(super) fn fnv1a(s: &str) -> u32 {
    s.bytes()
        .fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// `#rrggbb` → colour.
pub(super) fn hex_color(s: &str) -> Option<Rgb> {
    let hex = s.trim().strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// A character's colour, or a stable one derived from its id.
pub(super) fn character_color(color: &str, id: &str) -> Rgb {
    hex_color(color).unwrap_or_else(|| hsv((fnv1a(id) % 360) as f64 / 360.0, 0.55, 0.85))
}

pub(super) fn hsv(h: f64, s: f64, v: f64) -> Rgb {
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
pub(super) fn mix(a: Rgb, b: Rgb, t: f64) -> Rgb {
    [0, 1, 2].map(|k| (a[k] as f64 * (1.0 - t) + b[k] as f64 * t) as u8)
}

pub(super) fn scale(c: Rgb, f: f64) -> Rgb {
    c.map(|v| (v as f64 * f).clamp(0.0, 255.0) as u8)
}

pub(super) fn luminance(c: Rgb) -> f64 {
    (0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64) / 255.0
}

/// Text colour readable on `c`.
pub(super) fn ink_on(c: Rgb) -> String {
    if luminance(c) > 0.55 { "0x1a1a1a" } else { "0xffffff" }.to_string()
}

pub(super) fn hex(c: Rgb) -> String {
    format!("0x{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Sky gradient (top, bottom) for a time of day, tinted 20 % by the location.
pub(super) fn palette(time_of_day: &str, location: &str) -> (Rgb, Rgb) {
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

/// A figure: head circle over a body ellipse, in canvas pixels.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Figure {
    pub(super) cx: f64,
    pub(super) head_y: f64,
    pub(super) r: f64,
    pub(super) color: Rgb,
    /// Seen from behind (over-the-shoulder foreground): no eyes.
    pub(super) back: bool,
    /// Index into the shot's characters.
    pub(super) who: usize,
}

/// What lies behind the figures.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Backdrop {
    pub(super) top: Rgb,
    pub(super) bottom: Rgb,
    /// Ground from this y down (the gradient darkened).
    pub(super) horizon: Option<f64>,
    /// A solid band from the top down to this y (the card's header).
    pub(super) band: Option<(f64, Rgb)>,
    /// Soft shadows on the ground: (cx, cy, a, b).
    pub(super) shadows: Vec<[f64; 4]>,
    /// Building silhouettes standing on the horizon: (x0, x1, top y).
    pub(super) skyline: Vec<[f64; 3]>,
}

pub(super) const EYE: u8 = 25;

/// `x` at the 0.1 px the `geq` expressions that painted these images wrote
/// their numbers with (printed and read back, as ffmpeg read them), so every
/// shape keeps the pixels it had.
fn tenth(x: f64) -> f64 {
    format!("{x:.1}").parse().unwrap_or(x)
}

/// Inside the ellipse centred on (`cx`, `cy`) with half axes `a`, `b`.
fn in_ellipse(x: f64, y: f64, [cx, cy, a, b]: [f64; 4]) -> bool {
    ((x - cx) / a).powi(2) + ((y - cy) / b).powi(2) < 1.0
}

/// Inside the box from `x0` to `x1` and `y0` to `y1`, edges included.
fn in_box(x: f64, y: f64, [x0, x1, y0, y1]: [f64; 4]) -> bool {
    (x0..=x1).contains(&x) && (y0..=y1).contains(&y)
}

/// A figure's shapes in canvas pixels, and its colours.
struct Shapes {
    /// Outside this box nothing of the figure is drawn.
    bounds: [f64; 4],
    /// The eyes' centres' x, their y and radius; none from behind.
    eyes: Option<[f64; 4]>,
    /// The head's centre and radius, and the radius of its outline.
    head: [f64; 4],
    /// The body ellipse, and its outline's half axes.
    body: [f64; 4],
    body_outline: [f64; 2],
    /// The face (or hair), the outline and the body.
    light: Rgb,
    dark: Rgb,
    color: Rgb,
}

impl Shapes {
    fn new(f: &Figure, canvas_w: f64) -> Shapes {
        let r = f.r;
        let body_y = f.head_y + 4.0 * r;
        let o = (0.03 * r).max(2.0);
        // The eyes look toward the middle of the frame.
        let eyes = (!f.back).then(|| {
            let off_centre = f.cx - canvas_w / 2.0;
            let look = if off_centre.abs() > 1.0 {
                -0.12 * r * off_centre.signum()
            } else {
                0.0
            };
            let ex = f.cx + look;
            [ex - 0.35 * r, ex + 0.35 * r, f.head_y - 0.1 * r, 0.12 * r].map(tenth)
        });
        Shapes {
            bounds: [
                f.cx - 1.5 * r - o,
                f.cx + 1.5 * r + o,
                f.head_y - r - o,
                body_y + 3.2 * r + o,
            ]
            .map(tenth),
            eyes,
            head: [f.cx, f.head_y, r, r + o].map(tenth),
            body: [f.cx, body_y, 1.5 * r, 3.2 * r].map(tenth),
            body_outline: [1.5 * r + o, 3.2 * r + o].map(tenth),
            // A face is the colour lightened; the back of a head is hair, darker.
            light: if f.back {
                scale(f.color, 0.7)
            } else {
                mix(f.color, [255; 3], 0.6)
            },
            dark: scale(f.color, 0.35),
            color: f.color,
        }
    }

    /// The figure's colour at (`x`, `y`), if it covers the point: eye, then
    /// head, its outline, body, its outline.
    fn at(&self, x: f64, y: f64) -> Option<Rgb> {
        if !in_box(x, y, self.bounds) {
            return None;
        }
        let [hx, hy, r, outline] = self.head;
        let head = (x - hx).hypot(y - hy);
        let [cx, cy, ..] = self.body;
        let [a, b] = self.body_outline;
        if let Some([left, right, ey, er]) = self.eyes
            && (x - left).hypot(y - ey).min((x - right).hypot(y - ey)) < er
        {
            Some([EYE; 3])
        } else if head < r {
            Some(self.light)
        } else if head < outline {
            Some(self.dark)
        } else if in_ellipse(x, y, self.body) {
            Some(self.color)
        } else if in_ellipse(x, y, [cx, cy, a, b]) {
            Some(self.dark)
        } else {
            None
        }
    }
}

/// Paint `bd` and then `figures` (in order: the first is furthest back) on a
/// `w`×`h` canvas, as one raw planar RGB frame (ffmpeg's `gbrp`: the green
/// plane, then blue, then red), ready for the drawtext that sets the text.
///
/// The arithmetic is that of the `geq` expressions that painted these
/// images before (kept value for value: a channel is computed in `f64` and
/// truncated, as geq stored it), in Rust because geq interprets its
/// expression per pixel and channel, which made a frame take seconds.
pub(super) fn paint(bd: &Backdrop, figures: &[Figure], w: u32, h: u32) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let shapes: Vec<Shapes> = figures.iter().map(|f| Shapes::new(f, w as f64)).collect();
    let horizon = bd.horizon.map(tenth);
    let skyline: Vec<[f64; 4]> = match horizon {
        Some(y) => bd
            .skyline
            .iter()
            .map(|&[x0, x1, top]| [x0, x1, top, y].map(tenth))
            .collect(),
        None => Vec::new(),
    };
    let band = bd.band.map(|(y, c)| (tenth(y), c));
    let shadows: Vec<([f64; 4], [f64; 4])> = bd
        .shadows
        .iter()
        .map(|&[cx, cy, a, b]| ([cx - a, cx + a, cy - b, cy + b].map(tenth), [cx, cy, a, b].map(tenth)))
        .collect();
    let n = w * h;
    let mut out = vec![0u8; 3 * n];
    let (g_plane, rest) = out.split_at_mut(n);
    let (b_plane, r_plane) = rest.split_at_mut(n);
    for row in 0..h {
        let y = row as f64;
        // The sky: a vertical gradient, darkened below the horizon.
        let mut sky = [0, 1, 2].map(|k| {
            let (top, bottom) = (f64::from(bd.top[k]), f64::from(bd.bottom[k]));
            top + (bottom - top) * y / h as f64
        });
        if horizon.is_some_and(|hy| y >= hy) {
            sky = sky.map(|v| v * 0.62);
        }
        for col in 0..w {
            let x = col as f64;
            let mut v = sky;
            // Where buildings overlap, each darkens the ground again.
            for &b in &skyline {
                if in_box(x, y, b) {
                    v = v.map(|c| c * 0.55);
                }
            }
            if let Some((by, c)) = band
                && y < by
            {
                v = c.map(f64::from);
            }
            for (bounds, ellipse) in &shadows {
                if in_box(x, y, *bounds) && in_ellipse(x, y, *ellipse) {
                    v = v.map(|c| c * 0.7);
                }
            }
            for s in &shapes {
                if let Some(c) = s.at(x, y) {
                    v = c.map(f64::from);
                }
            }
            let i = row * w + col;
            // Truncated, as geq stored a channel.
            (r_plane[i], g_plane[i], b_plane[i]) = (v[0] as u8, v[1] as u8, v[2] as u8);
        }
    }
    out
}
