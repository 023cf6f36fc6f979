//! The episode's samples shaped in process: the scene mixes joined with
//! their crossfades, the gain, and (only when the gained peaks would pass
//! the target) the look-ahead limiter, metered here and corrected until
//! they are on target, then written as float WAV for the one encode.

use camino::{Utf8Path, Utf8PathBuf};
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

/// How far under the true-peak ceiling the limiter first holds the sample
/// peaks: it limits samples, and the true peak between them sits higher.
const LIMIT_MARGIN_DB: f64 = 0.5;
/// How close to the target the shaped samples' loudness is brought in
/// process (the encode moves it by a few hundredths at most).
const SHAPE_TOLERANCE_LU: f64 = 0.1;
/// The most shaping rounds in process (each renders, limits and meters the
/// episode once: a fraction of one encode).
const SHAPE_ROUNDS: u32 = 8;

/// A scene mix as the renderer reads it: its WAV and its length.
pub(super) type Part = (Utf8PathBuf, u64);

/// What one shaping round made and measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rendered {
    /// Integrated loudness of the written samples (blocks every 100 ms from
    /// the start), when metered.
    i: Option<f64>,
    /// Their true peak, linear, when metered.
    tp: f64,
    /// The deepest gain the limiter applied, dB (0 when it did nothing).
    reduction_db: f64,
}

/// What a render does with the shaped samples.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Use<'a> {
    /// Write them to this WAV and meter them with true peaks.
    Write(&'a Utf8Path),
    /// Meter their loudness and sample peaks only (a trial).
    Meter,
    /// Write them unmetered (a gain alone: what they measure is known).
    WriteOnly(&'a Utf8Path),
}

/// Render the episode (the scenes with their crossfades) a second at a
/// time and apply the pass's gain and limiter, for `usage`.
fn render_pass(
    parts: &[Part],
    ns: u64,
    samples: u64,
    pass: &Pass,
    usage: Use,
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
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: timing::RATE as u32,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let (mut writer, mut meter) = match usage {
        Use::Write(wav) | Use::WriteOnly(wav) => (
            Some((
                hound::WavWriter::create(wav, spec).map_err(|e| format!("cannot write {wav}: {e}"))?,
                wav,
            )),
            (usage == Use::Write(wav)).then(Meter::new),
        ),
        Use::Meter => (None, Some(Meter::sample_peaks())),
    };
    let mut limiter = pass.limit.map(Limiter::new);
    let (mut energies, mut pending) = (Vec::new(), Vec::new());
    let gain = 10f64.powf(pass.gain / 20.0);
    let mut sink = |frames: &[f32], last: bool| -> Result<(), String> {
        if let Some((writer, wav)) = writer.as_mut() {
            for &s in frames {
                writer.write_sample(s).map_err(|e| format!("cannot write {wav}: {e}"))?;
            }
        }
        let Some(meter) = meter.as_mut() else {
            return Ok(());
        };
        // Blocks every 100 ms from the start, as the delivery meter takes them.
        pending.extend_from_slice(frames);
        let step = STEP as usize * 2;
        let whole = pending.len() - pending.len() % step;
        for chunk in pending[..whole].chunks(step) {
            meter.feed(chunk);
            energies.extend(meter.block());
        }
        pending.drain(..whole);
        if last {
            meter.feed(&pending); // the tail's peaks; no whole block ends in it
        }
        Ok(())
    };
    let (mut at, mut out) = (0, Vec::new());
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
                out.clear();
                l.push(&chunk, &mut out);
                sink(&out, false)?;
            }
            None => sink(&chunk, false)?,
        }
        at = to;
    }
    out.clear();
    if let Some(l) = limiter.as_mut() {
        l.finish(&mut out);
    }
    sink(&out, true)?;
    if let Some((writer, wav)) = writer {
        writer.finalize().map_err(|e| format!("cannot write {wav}: {e}"))?;
    }
    let tp = meter.as_ref().map_or(f64::NAN, Meter::true_peak);
    Ok(Rendered {
        i: meter::integrated(energies.into_iter()),
        tp,
        reduction_db: limiter.map_or(0.0, |l| 0.0 - meter::db(l.deepest)),
    })
}

/// What shaping the episode in process made: the pass written, what its
/// samples measure, and the rounds it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Shaped {
    pub(super) pass: Pass,
    /// The written samples' loudness (LUFS) and true peak (dBTP): metered
    /// when limited, else the reading moved by the gain (a gain is linear).
    pub(super) i: Option<f64>,
    pub(super) tp: f64,
    pub(super) reduction_db: f64,
    pub(super) rounds: u32,
}

/// Shape the episode into `wav` at the target, in process: the gain the
/// reading asks for when the gained peaks stay `headroom` dB under the
/// true-peak target; else gain and the limiter. Trial renders meter the
/// loudness (no true peaks, nothing written) and correct the gain (secant
/// steps: limiting makes loudness grow slower than the gain) until it is
/// within [`SHAPE_TOLERANCE_LU`] of `target.i + correction`; the render
/// that is written is metered with true peaks, and the limiter's margin
/// grows and the trials go on while they pass the ceiling.
#[allow(clippy::too_many_arguments)]
pub(super) fn shape(
    parts: &[Part],
    ns: u64,
    samples: u64,
    reading: &Reading,
    target: &Target,
    headroom: f64,
    correction: f64,
    wav: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<Shaped, String> {
    let unlimited = |gain: f64| -> Result<Pass, String> {
        let pass = Pass { gain, limit: None };
        render_pass(parts, ns, samples, &pass, Use::WriteOnly(wav), cancel)?;
        Ok(pass)
    };
    let Some(i) = reading.i else {
        return Ok(Shaped {
            pass: unlimited(0.0)?,
            i: None,
            tp: reading.tp,
            reduction_db: 0.0,
            rounds: 1,
        });
    };
    let want = target.i + correction;
    let ceiling = target.tp - headroom;
    let mut gain = want - i;
    if reading.tp + gain <= ceiling {
        return Ok(Shaped {
            pass: unlimited(gain)?,
            i: Some(i + gain),
            tp: reading.tp + gain,
            reduction_db: 0.0,
            rounds: 1,
        });
    }
    let mut margin = LIMIT_MARGIN_DB;
    let mut before: Option<(f64, f64)> = None;
    let mut round = 0;
    loop {
        round += 1;
        let last = round == SHAPE_ROUNDS;
        let pass = Pass {
            gain,
            limit: Some(ceiling - margin),
        };
        let trial = render_pass(parts, ns, samples, &pass, Use::Meter, cancel)?;
        let Some(i) = trial.i else {
            return Err("the limited episode audio measures as silence".into());
        };
        let off = want - i;
        if off.abs() > SHAPE_TOLERANCE_LU && !last {
            let slope = match before {
                Some((g, l)) if (gain - g).abs() > 1e-3 => ((i - l) / (gain - g)).clamp(0.2, 1.0),
                _ => 1.0,
            };
            before = Some((gain, i));
            gain += off / slope;
            continue;
        }
        let written = render_pass(parts, ns, samples, &pass, Use::Write(wav), cancel)?;
        let tp = meter::db(written.tp);
        if tp <= ceiling || last {
            // Out of rounds, the encode's check decides.
            return Ok(Shaped {
                pass,
                i: written.i,
                tp,
                reduction_db: written.reduction_db,
                rounds: round,
            });
        }
        margin += tp - ceiling + 0.05;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::episode::loudness::{SceneMix, episode_reading};
    use crate::stages::meter::tests::write_wav;

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
            let got = shape(&parts, ns, total, &reading, &target, 0.0, 0.0, out, &cancel).unwrap();
            (reading, got, total)
        };

        // Quiet tones: the gain alone reaches the target, one render, no meter.
        let quiet_a = |t| (sine(330.0, t) * 0.05, sine(440.0, t) * 0.04);
        let quiet_b = |t| (sine(220.0, t) * 0.08, sine(220.0, t) * 0.08);
        let quiet = scenes_of(root, "q", &[(75 * F, &quiet_a), (50 * F, &quiet_b)]);
        let out = root.join("quiet.wav");
        let (reading, got, total) = shaped(&quiet, &out);
        assert_eq!(
            (got.pass.limit, got.rounds, got.reduction_db),
            (None, 1, 0.0),
            "{got:?}"
        );
        assert!((got.pass.gain - (-16.0 - reading.i.unwrap())).abs() < 1e-9);
        let (i, tp, len) = crate_reading(&out);
        assert_eq!(len, total);
        assert!((i + 16.0).abs() < 0.05, "{i} LUFS");
        assert!(
            (tp - got.tp).abs() < 0.05 && tp < -1.5,
            "{tp} dBTP, predicted {}",
            got.tp
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
        let (reading, got, total) = shaped(&loud, &out);
        assert!(reading.tp > -1.0, "the scenes peak near full scale: {reading:?}");
        assert!(got.pass.limit.is_some() && got.reduction_db > 1.0, "{got:?}");
        assert!((2..=SHAPE_ROUNDS).contains(&got.rounds), "{got:?}");
        assert!(
            got.pass.gain > -16.0 - reading.i.unwrap(),
            "the gain grew to make up what the limiter took: {got:?}"
        );
        let (i, tp, len) = crate_reading(&out);
        assert_eq!(len, total);
        assert!((i + 16.0).abs() <= SHAPE_TOLERANCE_LU + 0.01, "{i} LUFS ({got:?})");
        assert!((i - got.i.unwrap()).abs() < 0.01, "metered {i}, shaped {:?}", got.i);
        assert!(tp <= -1.5 && (tp - got.tp).abs() < 0.01, "{tp} dBTP ({got:?})");

        // The same scenes give the same bytes.
        let again = root.join("hot-again.wav");
        assert_eq!(shaped(&loud, &again).1, got);
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap());

        // More headroom (what a hot encode taught) lowers the ceiling.
        let parts: Vec<Part> = loud.iter().map(|s| (s.wav.clone(), s.loudness.samples)).collect();
        let more = shape(&parts, ns, total, &reading, &target, 1.0, 0.0, &out, &cancel).unwrap();
        let (_, tp, _) = crate_reading(&out);
        assert!(
            tp <= -2.5 && more.pass.limit.unwrap() < got.pass.limit.unwrap(),
            "{tp} {more:?}"
        );
    }
}
