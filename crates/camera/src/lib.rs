//! The animatic's camera, drawn here: each frame of a move is the frame-size
//! canvas (the plate scaled once by ffmpeg, in yuv420p) resampled through
//! the view of that frame, bilinear in integer arithmetic, straight into
//! the yuv420p frames the lossless encoder reads on its stdin.
//!
//! Replaces ffmpeg's `perspective` over planar RGB, which cost ~30 ms a
//! frame at 960×1440 plus a colour conversion per frame: here a frame is
//! 1.5 samples a pixel (luma and two quarter-size chroma planes, each
//! sampled at its own positions, so chroma is not rounded to luma pixels),
//! and a view without roll reads one source row pair per output row.
//! Integer weights make the bytes a function of the inputs only.

/// One 8-bit plane.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
}

/// A yuv420p picture: luma `width`×`height`, chroma half each way (even sizes).
#[derive(Debug, Clone, Copy)]
pub struct Yuv420<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

impl<'a> Yuv420<'a> {
    /// The bytes of one yuv420p frame of this size.
    pub fn frame_len(width: usize, height: usize) -> usize {
        width * height + 2 * (width / 2) * (height / 2)
    }

    /// `data` as a picture, if it holds exactly one frame of an even size.
    pub fn new(width: usize, height: usize, data: &'a [u8]) -> Option<Yuv420<'a>> {
        (width >= 2
            && height >= 2
            && width.is_multiple_of(2)
            && height.is_multiple_of(2)
            && data.len() == Self::frame_len(width, height))
        .then_some(Yuv420 { width, height, data })
    }

    fn planes(&self) -> [Plane<'a>; 3] {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w / 2, h / 2);
        let (y, rest) = self.data.split_at(w * h);
        let (u, v) = rest.split_at(cw * ch);
        [
            Plane {
                data: y,
                width: w,
                height: h,
            },
            Plane {
                data: u,
                width: cw,
                height: ch,
            },
            Plane {
                data: v,
                width: cw,
                height: ch,
            },
        ]
    }
}

/// A view of the canvas: where the frame's top-left, top-right and
/// bottom-left corners fall on it, in canvas pixels (continuous
/// coordinates: the canvas spans `[0, w] × [0, h]`). A parallelogram, so
/// any pan, zoom and roll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub tl: (f64, f64),
    pub tr: (f64, f64),
    pub bl: (f64, f64),
}

/// Fractional bits of source positions.
const FRAC: u32 = 16;
/// Bits of the bilinear weights.
const WBITS: u32 = 8;
const ONE: i64 = 1 << WBITS;

/// Draw the frame `view` sees of `canvas` into `out` (one yuv420p frame of
/// the canvas's size). Samples outside the canvas repeat its edge.
pub fn draw(canvas: &Yuv420<'_>, view: &View, out: &mut [u8]) {
    let (w, h) = (canvas.width, canvas.height);
    assert_eq!(out.len(), Yuv420::frame_len(w, h), "one frame of the canvas's size");
    let (oy, rest) = out.split_at_mut(w * h);
    let (ou, ov) = rest.split_at_mut((w / 2) * (h / 2));
    let [py, pu, pv] = canvas.planes();
    // Per output pixel, the source moves by these many canvas pixels.
    let ex = ((view.tr.0 - view.tl.0) / w as f64, (view.tr.1 - view.tl.1) / w as f64);
    let ey = ((view.bl.0 - view.tl.0) / h as f64, (view.bl.1 - view.tl.1) / h as f64);
    resample(py, 1.0, view, ex, ey, oy);
    resample(pu, 2.0, view, ex, ey, ou);
    resample(pv, 2.0, view, ex, ey, ov);
}

/// Resample one plane subsampled by `sub` (1 luma, 2 chroma): output pixel
/// `(i, j)` has its centre at `((i + ½)·sub, (j + ½)·sub)` in frame pixels,
/// which the view maps onto the canvas; divided by `sub` and less half a
/// pixel, that is an index into the source plane.
fn resample(src: Plane<'_>, sub: f64, view: &View, ex: (f64, f64), ey: (f64, f64), out: &mut [u8]) {
    let fixed = |v: f64| (v * f64::from(1u32 << FRAC)).round() as i64;
    let (dx, dy) = (fixed(ex.0), fixed(ex.1));
    let upright = dy == 0 && fixed(ey.0) == 0;
    let (max_x, max_y) = (src.width as i64 - 1, src.height as i64 - 1);
    for (j, row) in out.chunks_exact_mut(src.width).enumerate() {
        let fy = (j as f64 + 0.5) * sub;
        let start = |axis: usize| {
            let (tl, e, f) = if axis == 0 {
                (view.tl.0, ex.0, ey.0)
            } else {
                (view.tl.1, ex.1, ey.1)
            };
            fixed((tl + 0.5 * sub * e + fy * f) / sub - 0.5)
        };
        let (x0, y0) = (start(0), start(1));
        if upright {
            // One pair of source rows for the whole output row.
            let (top, bottom, wy) = rows(y0, max_y);
            let (t, b) = (
                &src.data[top * src.width..][..src.width],
                &src.data[bottom * src.width..][..src.width],
            );
            let mut x = x0;
            for px in row.iter_mut() {
                let (l, r, wx) = rows(x, max_x);
                *px = mix(
                    i64::from(t[l]),
                    i64::from(t[r]),
                    i64::from(b[l]),
                    i64::from(b[r]),
                    wx,
                    wy,
                );
                x += dx;
            }
        } else {
            let (mut x, mut y) = (x0, y0);
            for px in row.iter_mut() {
                let (l, r, wx) = rows(x, max_x);
                let (top, bottom, wy) = rows(y, max_y);
                let at = |row: usize, col: usize| i64::from(src.data[row * src.width + col]);
                *px = mix(at(top, l), at(top, r), at(bottom, l), at(bottom, r), wx, wy);
                x += dx;
                y += dy;
            }
        }
    }
}

/// The two neighbouring indices of a fixed-point position and the weight
/// of the second, clamped to `[0, max]`.
fn rows(p: i64, max: i64) -> (usize, usize, i64) {
    let i = p >> FRAC;
    let w = (p >> (FRAC - WBITS)) & (ONE - 1);
    if i < 0 {
        (0, 0, 0)
    } else if i >= max {
        (max as usize, max as usize, 0)
    } else {
        (i as usize, i as usize + 1, w)
    }
}

/// Bilinear blend of four samples, rounded.
fn mix(tl: i64, tr: i64, bl: i64, br: i64, wx: i64, wy: i64) -> u8 {
    let top = tl * (ONE - wx) + tr * wx;
    let bottom = bl * (ONE - wx) + br * wx;
    ((top * (ONE - wy) + bottom * wy + (1 << (2 * WBITS - 1))) >> (2 * WBITS)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canvas whose planes hold a gradient (and a different one per plane).
    fn canvas(w: usize, h: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(Yuv420::frame_len(w, h));
        for y in 0..h {
            for x in 0..w {
                data.push(((x * 3 + y * 5) % 256) as u8);
            }
        }
        for plane in 0..2 {
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    data.push(((x * 7 + y * 2 + plane * 40) % 256) as u8);
                }
            }
        }
        data
    }

    fn whole(w: usize, h: usize) -> View {
        View {
            tl: (0.0, 0.0),
            tr: (w as f64, 0.0),
            bl: (0.0, h as f64),
        }
    }

    /// The frame `view` sees of `data`, a `w`×`h` canvas.
    fn drawn(data: &[u8], (w, h): (usize, usize), view: &View) -> Vec<u8> {
        let c = Yuv420::new(w, h, data).unwrap();
        let mut out = vec![0; data.len()];
        draw(&c, view, &mut out);
        out
    }

    #[test]
    fn the_whole_canvas_is_the_canvas() {
        let data = canvas(16, 12);
        assert_eq!(drawn(&data, (16, 12), &whole(16, 12)), data);
    }

    #[test]
    fn a_view_shifted_by_whole_pixels_is_the_canvas_shifted() {
        let data = canvas(16, 12);
        // Two luma pixels right and four down: one and two chroma pixels.
        let v = View {
            tl: (2.0, 4.0),
            tr: (18.0, 4.0),
            bl: (2.0, 16.0),
        };
        let out = drawn(&data, (16, 12), &v);
        for y in 0..8 {
            for x in 0..14 {
                assert_eq!(out[y * 16 + x], data[(y + 4) * 16 + x + 2], "luma {x},{y}");
            }
        }
        // Past the edge, the edge repeats.
        assert_eq!(out[15], data[4 * 16 + 15]);
        let u = 16 * 12;
        for y in 0..4 {
            for x in 0..7 {
                assert_eq!(out[u + y * 8 + x], data[u + (y + 2) * 8 + x + 1], "chroma {x},{y}");
            }
        }
    }

    #[test]
    fn half_a_pixel_between_two_samples_is_their_mean() {
        let data = canvas(16, 12);
        let v = View {
            tl: (0.5, 0.0),
            tr: (16.5, 0.0),
            bl: (0.5, 12.0),
        };
        let out = drawn(&data, (16, 12), &v);
        for x in 0..15 {
            let (a, b) = (u16::from(data[x]), u16::from(data[x + 1]));
            assert_eq!(u16::from(out[x]), (a + b).div_ceil(2), "luma {x}");
        }
    }

    #[test]
    fn a_rolled_view_matches_the_upright_path_when_it_is_not_rolled() {
        // The general (rolled) path and the one-row-pair path agree: a
        // view rolled by a hair differs from the upright one by at most
        // one level anywhere.
        let data = canvas(64, 48);
        let zoom = View {
            tl: (6.4, 4.8),
            tr: (57.6, 4.8),
            bl: (6.4, 43.2),
        };
        let upright = drawn(&data, (64, 48), &zoom);
        let tilted = View {
            bl: (6.4 + 1e-4, 43.2),
            ..zoom
        };
        let rolled = drawn(&data, (64, 48), &tilted);
        let worst = upright.iter().zip(&rolled).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 1, "{worst}");
        assert_ne!(upright, data, "a zoom resamples");
    }

    #[test]
    fn pictures_must_hold_one_frame_of_an_even_size() {
        let data = canvas(16, 12);
        assert!(Yuv420::new(16, 12, &data).is_some());
        assert!(Yuv420::new(16, 12, &data[1..]).is_none());
        assert!(Yuv420::new(15, 12, &data).is_none());
        assert_eq!(Yuv420::frame_len(960, 1440), 960 * 1440 * 3 / 2);
    }
}
