//! The episode's samples shaped in process: the scene mixes joined with
//! their crossfades, the gain, and (only when the gained peaks would pass
//! the target) the look-ahead limiter, metered here and corrected until
//! they are on target ([`shape`]); then that pass rendered once more,
//! straight into the one encode ([`write`]).
//!
//! A trial render runs on two threads: this one reads, mixes, gains and
//! limits a second at a time, and a meter thread takes each second as it
//! is done.

use std::sync::mpsc;

use camino::Utf8PathBuf;
use tokio_util::sync::CancellationToken;

use super::limiter::Limiter;
use super::loudness::{Reading, Target, render};
use crate::stages::meter::{self, Meter, STEP, Wav};
use crate::timing;

/// How the episode's samples are shaped: the gain in dB, and the limiter's
/// sample ceiling (dBFS) when the gained peaks would pass the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pass {
    pub(super) gain: f64,
    pub(super) limit: Option<f64>,
}

/// How far under the true-peak ceiling the limiter holds the sample peaks:
/// it limits samples, and the true peak between them sits higher.
const LIMIT_MARGIN_DB: f64 = 0.5;
/// How close to the target the shaped samples' loudness is brought in
/// process (the encode moves it by a few hundredths at most).
const SHAPE_TOLERANCE_LU: f64 = 0.1;
/// The most trial renders (each renders, limits and meters the episode
/// once: a fraction of one encode).
const SHAPE_ROUNDS: u32 = 8;
/// Seconds of rendered samples queued ahead of the meter thread.
const METER_QUEUE: usize = 4;

/// A scene mix as the renderer reads it: its WAV and its length.
pub(super) type Part = (Utf8PathBuf, u64);

/// Where a render's shaped samples go: interleaved stereo, a second at a
/// time.
pub(super) type Sink<'a> = &'a mut dyn FnMut(&[f32]) -> Result<(), String>;

/// What a render made and measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rendered {
    /// Integrated loudness of the samples (blocks every 100 ms from the
    /// start), LUFS, when metered; `None` for silence.
    i: Option<f64>,
    /// The deepest gain the limiter applied, dB (0 when it did nothing).
    reduction_db: f64,
}

/// The integrated loudness of the samples `chunks` brings, from block
/// energies every 100 ms from the start, as the delivery meter takes them.
fn meter_stream(mut meter: Meter, chunks: mpsc::Receiver<Vec<f32>>) -> Option<f64> {
    let (mut energies, mut pending) = (Vec::new(), Vec::new());
    let step = STEP as usize * 2;
    for frames in chunks {
        pending.extend_from_slice(&frames);
        let whole = pending.len() - pending.len() % step;
        for chunk in pending[..whole].chunks(step) {
            meter.feed(chunk);
            energies.extend(meter.block());
        }
        pending.drain(..whole);
    }
    meter::integrated(energies.into_iter())
}

/// Render the episode (the scenes with their crossfades) a second at a
/// time, apply the pass's gain and limiter, and hand the samples to the
/// sink or (a trial) meter their loudness on a thread of its own.
fn render_pass(
    parts: &[Part],
    (ns, samples): (u64, u64),
    pass: &Pass,
    mut sink: Option<Sink>,
    cancel: &CancellationToken,
) -> Result<Rendered, String> {
    let lengths: Vec<u64> = parts.iter().map(|p| p.1).collect();
    let mut wavs = Vec::with_capacity(parts.len());
    for (path, len) in parts {
        let w = Wav::open(path)?;
        if w.samples != *len {
            return Err(format!("{path} has {} samples, its measurement {len}", w.samples));
        }
        wavs.push(w);
    }
    let mut limiter = pass.limit.map(Limiter::new);
    let gain = 10f64.powf(pass.gain / 20.0);
    std::thread::scope(|scope| {
        // Made in here: an early return drops the sender, ending the meter
        // thread before the scope joins it.
        let (tx, rx) = mpsc::sync_channel(METER_QUEUE);
        let metering = sink
            .is_none()
            .then(|| scope.spawn(move || meter_stream(Meter::sample_peaks(), rx)));
        let mut give = |frames: Vec<f32>| -> Result<(), String> {
            match sink.as_mut() {
                Some(sink) => sink(&frames),
                None => tx.send(frames).map_err(|_| "the meter stopped".to_string()),
            }
        };
        let mut at = 0;
        while at < samples {
            if cancel.is_cancelled() {
                return Err("cancelled".into());
            }
            let to = (at + timing::RATE).min(samples);
            let mut chunk = render(&mut wavs, &lengths, ns, at, to)?;
            for s in &mut chunk {
                *s = (f64::from(*s) * gain) as f32;
            }
            match limiter.as_mut() {
                Some(l) => {
                    let mut out = Vec::with_capacity(chunk.len());
                    l.push(&chunk, &mut out);
                    give(out)?;
                }
                None => give(chunk)?,
            }
            at = to;
        }
        if let Some(l) = limiter.as_mut() {
            let mut out = Vec::new();
            l.finish(&mut out);
            give(out)?;
        }
        drop(tx);
        let i = match metering {
            Some(m) => m.join().map_err(|_| "the meter thread panicked".to_string())?,
            None => None,
        };
        Ok(Rendered {
            i,
            reduction_db: limiter.as_ref().map_or(0.0, |l| 0.0 - meter::db(l.deepest)),
        })
    })
}

/// Render the episode with `pass` into `sink` (the samples the encoder
/// takes); returns the deepest gain the limiter applied, dB (0 when it did
/// nothing).
pub(super) fn write(
    parts: &[Part],
    (ns, samples): (u64, u64),
    pass: &Pass,
    sink: Sink,
    cancel: &CancellationToken,
) -> Result<f64, String> {
    render_pass(parts, (ns, samples), pass, Some(sink), cancel).map(|r| r.reduction_db)
}

/// What shaping the episode in process found: the pass to write, what
/// its samples are expected to measure, and the trial renders it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Shaped {
    pub(super) pass: Pass,
    /// Their loudness, LUFS: the reading moved by the gain (a gain is
    /// linear), or the last trial's when limited.
    pub(super) i: Option<f64>,
    pub(super) rounds: u32,
}

/// Find the pass that shapes the episode to the target, in process: the
/// gain the reading asks for when the gained peaks stay `headroom` dB
/// under the true-peak target (no render: a gain is linear); else gain and
/// the limiter, holding sample peaks [`LIMIT_MARGIN_DB`] under that
/// ceiling. Trial renders meter the loudness (sample peaks only, nothing
/// written) and correct the gain (secant steps: limiting makes loudness
/// grow slower than the gain) until it is within [`SHAPE_TOLERANCE_LU`] of
/// `target.i + correction`. The encode is metered with true peaks; the
/// caller adds headroom when they pass the ceiling.
#[allow(clippy::too_many_arguments)]
pub(super) fn shape(
    parts: &[Part],
    ns: u64,
    samples: u64,
    reading: &Reading,
    target: &Target,
    headroom: f64,
    correction: f64,
    cancel: &CancellationToken,
) -> Result<Shaped, String> {
    let unlimited = |gain: f64| Pass { gain, limit: None };
    let Some(i) = reading.i else {
        return Ok(Shaped {
            pass: unlimited(0.0),
            i: None,
            rounds: 0,
        });
    };
    let want = target.i + correction;
    let ceiling = target.tp - headroom;
    let mut gain = want - i;
    if reading.tp + gain <= ceiling {
        return Ok(Shaped {
            pass: unlimited(gain),
            i: Some(i + gain),
            rounds: 0,
        });
    }
    let mut before: Option<(f64, f64)> = None;
    for round in 1..=SHAPE_ROUNDS {
        let pass = Pass {
            gain,
            limit: Some(ceiling - LIMIT_MARGIN_DB),
        };
        let trial = render_pass(parts, (ns, samples), &pass, None, cancel)?;
        let Some(i) = trial.i else {
            return Err("the limited episode audio measures as silence".into());
        };
        let off = want - i;
        if off.abs() <= SHAPE_TOLERANCE_LU || round == SHAPE_ROUNDS {
            // Out of rounds, the encode's check decides.
            return Ok(Shaped {
                pass,
                i: Some(i),
                rounds: round,
            });
        }
        let slope = match before {
            Some((g, l)) if (gain - g).abs() > 1e-3 => ((i - l) / (gain - g)).clamp(0.2, 1.0),
            _ => 1.0,
        };
        before = Some((gain, i));
        gain += off / slope;
    }
    unreachable!("the last round returns")
}

#[cfg(test)]
mod tests {
    use camino::Utf8Path;

    use super::*;
    use crate::stages::episode::loudness::{SceneMix, episode_reading};
    use crate::stages::meter::tests::{stereo_float, write_wav};

    const F: u64 = timing::SAMPLES_PER_FRAME;

    /// What the crate measures of a whole WAV: integrated loudness and
    /// true peak (dBTP), and its length.
    fn crate_reading(path: &Utf8Path) -> (f64, f64, u64) {
        let mut wav = Wav::open(path).unwrap();
        let all = wav.read(0, wav.samples).unwrap();
        let mut r = ebur128::EbuR128::new(
            2,
            timing::RATE as u32,
            ebur128::Mode::I | ebur128::Mode::TRUE_PEAK | ebur128::Mode::SAMPLE_PEAK,
        )
        .unwrap();
        r.add_frames_f32(&all).unwrap();
        let peak = (0..2)
            .map(|c| r.true_peak(c).unwrap().max(r.sample_peak(c).unwrap()))
            .fold(0.0, f64::max);
        (r.loudness_global().unwrap(), meter::db(peak), wav.samples)
    }

    /// Write `pass` into a float WAV at `out`, as the encoder would take
    /// it; the limiter's deepest gain, dB.
    fn write_wav_pass(parts: &[Part], ns: u64, total: u64, pass: &Pass, out: &Utf8Path) -> f64 {
        let mut w = hound::WavWriter::create(out, stereo_float()).unwrap();
        let mut sink = |frames: &[f32]| -> Result<(), String> {
            frames
                .iter()
                .try_for_each(|&s| w.write_sample(s))
                .map_err(|e| e.to_string())
        };
        let written = write(parts, (ns, total), pass, &mut sink, &CancellationToken::new()).unwrap();
        w.finalize().unwrap();
        written
    }

    /// A stereo signal by sample.
    type Signal<'a> = &'a dyn Fn(u64) -> (f32, f32);

    /// Scenes of `f` made and measured as the mixes are.
    fn scenes_of(root: &Utf8Path, name: &str, specs: &[(u64, Signal)]) -> Vec<SceneMix> {
        let cancel = CancellationToken::new();
        specs
            .iter()
            .enumerate()
            .map(|(i, (len, f))| {
                let wav = root.join(format!("{name}{i}.wav"));
                write_wav(&wav, *len, f);
                let loudness = meter::measure(&mut Wav::open(&wav).unwrap(), &cancel).unwrap();
                SceneMix { wav, loudness }
            })
            .collect()
    }

    #[test]
    fn shaping_gains_in_one_render_or_limits_until_the_samples_meet_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let cancel = CancellationToken::new();
        let target = Target { i: -16.0, tp: -1.5 };
        let ns = 12 * F;
        let sine = |hz: f32, t: u64| (2.0 * std::f32::consts::PI * hz * t as f32 / timing::RATE as f32).sin();
        let shaped = |scenes: &[SceneMix], out: &Utf8Path| {
            let parts: Vec<Part> = scenes.iter().map(|s| (s.wav.clone(), s.loudness.samples)).collect();
            let reading = episode_reading(scenes, ns, &cancel).unwrap();
            let total = parts.iter().map(|p| p.1).sum::<u64>() - ns * (parts.len() as u64 - 1);
            let got = shape(&parts, ns, total, &reading, &target, 0.0, 0.0, &cancel).unwrap();
            let written = write_wav_pass(&parts, ns, total, &got.pass, out);
            (reading, got, written, total)
        };

        // Quiet tones: the gain alone reaches the target, no trial render.
        let quiet_a = |t| (sine(330.0, t) * 0.05, sine(440.0, t) * 0.04);
        let quiet_b = |t| (sine(220.0, t) * 0.08, sine(220.0, t) * 0.08);
        let quiet = scenes_of(root, "q", &[(75 * F, &quiet_a), (50 * F, &quiet_b)]);
        let out = root.join("quiet.wav");
        let (reading, got, reduction, total) = shaped(&quiet, &out);
        assert_eq!((got.pass.limit, got.rounds, reduction), (None, 0, 0.0), "{got:?}");
        assert!((got.pass.gain - (-16.0 - reading.i.unwrap())).abs() < 1e-9);
        let (i, tp, len) = crate_reading(&out);
        assert_eq!(len, total);
        assert!((i + 16.0).abs() < 0.05 && (i - got.i.unwrap()).abs() < 0.05, "{i} LUFS");
        assert!(
            (tp - (reading.tp + got.pass.gain)).abs() < 0.05 && tp < -1.5,
            "{tp} dBTP, predicted {}",
            reading.tp + got.pass.gain
        );

        // Short bursts that peak at full scale over a quiet bed (Piper's
        // lines: -18 LUFS with peaks at 0 dBFS): the gain needs the limiter,
        // which costs loudness; the trials win it back.
        let hot = |t: u64| {
            let burst = if t % 9_600 < 96 { sine(2_000.0, t) * 0.95 } else { 0.0 };
            let v = sine(300.0, t) * 0.04 + burst;
            (v, v * 0.9)
        };
        let calm = |t: u64| (sine(300.0, t) * 0.03, sine(300.0, t) * 0.03);
        let loud = scenes_of(root, "h", &[(90 * F, &hot), (40 * F, &calm), (70 * F, &hot)]);
        let out = root.join("hot.wav");
        let (reading, got, reduction, total) = shaped(&loud, &out);
        assert!(reading.tp > -1.0, "the scenes peak near full scale: {reading:?}");
        assert!(got.pass.limit.is_some() && reduction > 1.0, "{got:?} {reduction}");
        assert!((2..=SHAPE_ROUNDS).contains(&got.rounds), "{got:?}");
        assert!(
            got.pass.gain > -16.0 - reading.i.unwrap(),
            "the gain grew to make up what the limiter took: {got:?}"
        );
        let (i, tp, len) = crate_reading(&out);
        assert_eq!(len, total);
        assert!((i + 16.0).abs() <= SHAPE_TOLERANCE_LU + 0.01, "{i} LUFS ({got:?})");
        assert!((i - got.i.unwrap()).abs() < 0.01, "metered {i}, shaped {:?}", got.i);
        assert!(tp <= -1.5, "{tp} dBTP ({got:?})");

        // The same scenes give the same bytes.
        let again = root.join("hot-again.wav");
        let twice = shaped(&loud, &again);
        assert_eq!((twice.1, twice.2), (got, reduction));
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap());

        // More headroom (what a hot encode taught) lowers the ceiling.
        let parts: Vec<Part> = loud.iter().map(|s| (s.wav.clone(), s.loudness.samples)).collect();
        let more = shape(&parts, ns, total, &reading, &target, 1.0, 0.0, &cancel).unwrap();
        write_wav_pass(&parts, ns, total, &more.pass, &out);
        let (_, tp, _) = crate_reading(&out);
        assert!(
            tp <= -2.5 && more.pass.limit.unwrap() < got.pass.limit.unwrap(),
            "{tp} {more:?}"
        );
    }
}
