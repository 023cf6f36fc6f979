//! A look-ahead peak limiter on interleaved stereo, in process: the
//! episode's gain and peak limiting happen on the mixed samples before the
//! one AAC encode, so the result can be metered here and the gain corrected
//! without encoding again.
//!
//! For each frame the gain it needs is `limit / peak` (1 when under the
//! limit). The gain applied is the mean, over the `look` frames up to it,
//! of the least needed gain in the `look` frames from each: every frame is
//! at or under what it needs (each of those windows holds it), and the
//! gain ramps down linearly over `look` frames ahead of a peak. It then
//! recovers with an exponential release. Pure arithmetic in a fixed order:
//! the same samples give the same bytes.

use std::collections::VecDeque;

/// Look-ahead (attack) in frames: 5 ms at 48 kHz.
pub(super) const LOOK: usize = 240;
/// Release time constant in frames: 50 ms at 48 kHz.
pub(super) const RELEASE: f64 = 2400.0;

/// The limiter's state between calls to [`Limiter::push`].
pub(super) struct Limiter {
    /// The sample ceiling, linear.
    limit: f64,
    look: usize,
    /// Release: the fraction of the way back to unity gain taken each frame.
    recover: f64,
    /// Input frames not yet written out (the look-ahead).
    delay: VecDeque<[f32; 2]>,
    /// Monotonic queue of (frame, needed gain): the least needed gain of the
    /// frames still ahead of the output at its front.
    least: VecDeque<(u64, f64)>,
    /// The last `look` least-ahead gains, and their sum.
    window: VecDeque<f64>,
    sum: f64,
    /// The gain last applied.
    gain: f64,
    /// Frames taken in, frames written out.
    taken: u64,
    given: u64,
    /// The deepest gain applied (1 when nothing was limited).
    pub(super) deepest: f64,
}

impl Limiter {
    /// A limiter holding sample peaks at `limit_db` dBFS.
    pub(super) fn new(limit_db: f64) -> Limiter {
        Limiter::with(limit_db, LOOK, RELEASE)
    }

    pub(super) fn with(limit_db: f64, look: usize, release: f64) -> Limiter {
        let look = look.max(1);
        Limiter {
            limit: 10f64.powf(limit_db / 20.0),
            look,
            recover: 1.0 - (-1.0 / release.max(1.0)).exp(),
            delay: VecDeque::with_capacity(look + 1),
            least: VecDeque::new(),
            window: VecDeque::with_capacity(look + 1),
            sum: 0.0,
            gain: 1.0,
            taken: 0,
            given: 0,
            deepest: 1.0,
        }
    }

    /// The gain frame `frame` needs to stay under the limit.
    fn needs(&self, frame: [f32; 2]) -> f64 {
        let peak = f64::from(frame[0].abs().max(frame[1].abs()));
        if peak > self.limit { self.limit / peak } else { 1.0 }
    }

    /// Take one frame's needed gain into the look-ahead minimum.
    fn take(&mut self, needed: f64) {
        while self.least.back().is_some_and(|&(_, g)| g >= needed) {
            self.least.pop_back();
        }
        self.least.push_back((self.taken, needed));
        self.taken += 1;
    }

    /// Write out the oldest delayed frame, the `look` frames after it (or
    /// the end) having been taken.
    fn give(&mut self, out: &mut Vec<f32>) {
        let Some(frame) = self.delay.pop_front() else {
            return;
        };
        let at = self.given;
        while self.least.front().is_some_and(|&(i, _)| i < at) {
            self.least.pop_front();
        }
        let ahead = self.least.front().map_or(1.0, |&(_, g)| g);
        if at == 0 {
            // Before the start, the least gain ahead of the first frame:
            // no more than any of the first `look` frames needs.
            self.window.extend(std::iter::repeat_n(ahead, self.look - 1));
        }
        self.window.push_back(ahead);
        self.sum += ahead;
        if self.window.len() > self.look {
            self.sum -= self.window.pop_front().unwrap_or(0.0);
        }
        if at.is_multiple_of(4096) {
            self.sum = self.window.iter().sum(); // now and then afresh: no drift
        }
        let attack = self.sum / self.look as f64;
        let released = self.gain + (1.0 - self.gain) * self.recover;
        // Back at unity once within a billionth (the curve never gets there).
        let released = if released > 1.0 - 1e-9 { 1.0 } else { released };
        self.gain = attack.min(released);
        self.deepest = self.deepest.min(self.gain);
        out.push((f64::from(frame[0]) * self.gain) as f32);
        out.push((f64::from(frame[1]) * self.gain) as f32);
        self.given += 1;
    }

    /// Feed interleaved stereo; limited frames are appended to `out`, `look`
    /// frames behind the input.
    pub(super) fn push(&mut self, interleaved: &[f32], out: &mut Vec<f32>) {
        for pair in interleaved.chunks_exact(2) {
            let frame = [pair[0], pair[1]];
            let needed = self.needs(frame);
            self.take(needed);
            self.delay.push_back(frame);
            if self.delay.len() > self.look {
                self.give(out);
            }
        }
    }

    /// Write out the frames still held back.
    pub(super) fn finish(&mut self, out: &mut Vec<f32>) {
        while !self.delay.is_empty() {
            self.give(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(input: &[f32], limit_db: f64, look: usize, chunk: usize) -> (Vec<f32>, f64) {
        let mut l = Limiter::with(limit_db, look, 100.0);
        let mut out = Vec::new();
        for c in input.chunks(chunk * 2) {
            l.push(c, &mut out);
        }
        l.finish(&mut out);
        (out, l.deepest)
    }

    #[test]
    fn peaks_stay_under_the_limit_and_quiet_audio_passes_untouched() {
        // A tone at 0.3 with bursts at 0.95 and a lone spike at full scale,
        // one at the very first frame.
        let input: Vec<f32> = (0..20_000)
            .flat_map(|t| {
                let s = (t as f32 * 0.05).sin();
                let a = if (5_000..5_400).contains(&t) || (9_000..9_050).contains(&t) {
                    0.95
                } else {
                    0.3
                };
                let left = if t == 0 || t == 14_000 { 1.0 } else { s * a };
                [left, -s * a]
            })
            .collect();
        let limit = -3.0;
        let linear = 10f32.powf(limit as f32 / 20.0);
        for (look, chunk) in [(64, 1), (64, 777), (240, 4096), (1, 3)] {
            let (out, deepest) = limited(&input, limit, look, chunk);
            assert_eq!(out.len(), input.len(), "every frame comes out, in order");
            let over = out.iter().map(|s| s.abs()).fold(0.0, f32::max);
            assert!(over <= linear * 1.000_001, "peak {over} over {linear} (look {look})");
            assert!(deepest < 0.75 && deepest > 0.6, "{deepest}");
            // Far from any peak, the samples are the input's exactly.
            for t in [2_000usize, 12_000, 19_000] {
                assert_eq!(out[t * 2..t * 2 + 2], input[t * 2..t * 2 + 2], "frame {t}");
            }
        }
        // The gain ramps down ahead of a burst rather than jumping.
        let (out, _) = limited(&input, limit, 64, 1000);
        let gain_at = |t: usize| out[t * 2 + 1] / input[t * 2 + 1];
        let ramp: Vec<f32> = (4_940..5_000)
            .filter(|&t| input[t * 2 + 1].abs() > 0.05)
            .map(gain_at)
            .collect();
        assert!(ramp.windows(2).all(|w| w[1] <= w[0] + 1e-6), "{ramp:?}");
        assert!(
            ramp.first().unwrap() > &0.95 && ramp.last().unwrap() < &0.85,
            "{ramp:?}"
        );
        // Audio under the limit is not touched at all.
        let quiet: Vec<f32> = input.iter().map(|s| s * 0.5).collect();
        let (out, deepest) = limited(&quiet, -3.0, 240, 1000);
        assert_eq!(out, quiet);
        assert_eq!(deepest, 1.0);
    }

    #[test]
    fn the_same_samples_give_the_same_bytes_however_they_are_fed() {
        let input: Vec<f32> = (0..9_000).map(|t| ((t as f32) * 0.013).sin() * 1.2).collect();
        let (a, _) = limited(&input, -1.0, 240, 1);
        let (b, _) = limited(&input, -1.0, 240, 4096);
        assert_eq!(a, b);
    }
}
