//! Loudness measured in process (EBU R128 through the `ebur128` crate): a
//! scene mix's gating-block energies and true peak, measured once with the
//! scene, and the integrated loudness of blocks put together from them.
//!
//! BS.1770 integrates 400-ms gating blocks that start every 100 ms. Scenes
//! start on frames (1600 samples) in the episode, so a scene keeps the
//! energy of the block ending on each of its frames ([`GRID`]): whatever
//! the scene's place in the episode, the episode's blocks inside it are
//! among those. The episode node measures only the blocks that touch a
//! crossfade itself ([`crate::stages::episode`]).

use std::io::{Read, Seek, SeekFrom};

use camino::Utf8Path;
use ebur128::{EbuR128, Mode};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::timing;

/// A gating block: 400 ms of samples.
pub const BLOCK: u64 = timing::RATE * 4 / 10;
/// Gating blocks of a programme start every 100 ms.
pub const STEP: u64 = timing::RATE / 10;
/// A scene keeps the block ending on each of its frames.
pub const GRID: u64 = timing::SAMPLES_PER_FRAME;
/// Blocks per [`BLOCK`] in [`GRID`] steps.
const BLOCK_GRIDS: u64 = BLOCK / GRID;
/// The layout of [`SceneLoudness`] files; bumped when it changes.
pub const FORMAT: u32 = 1;
/// The suffix of a scene mix's measurement file.
pub const SUFFIX: &str = "loudness.json";
/// Blocks below this (−70 LUFS) are silence: BS.1770's absolute gate.
pub const ABSOLUTE_GATE_LUFS: f64 = -70.0;
/// The longest mix measured or read: 4 hours (a measurement file of it is
/// some 10 MB of JSON).
const MAX_SAMPLES: u64 = 4 * 3600 * timing::RATE;
/// Channels of every mix: stereo.
const CHANNELS: u16 = 2;

/// A scene mix's loudness: what the episode needs to integrate it without
/// reading it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneLoudness {
    pub format: u32,
    /// The mix's length in samples.
    pub samples: u64,
    /// The highest true peak of any channel, linear (1.0 is 0 dBTP).
    pub true_peak: f64,
    /// `energies[k]`: the K-weighted mean square, summed over the channels,
    /// of the block ending at sample `(k + 12) × 1600`.
    pub energies: Vec<f64>,
}

/// LUFS of a block energy (−∞ for silence).
pub fn lufs(energy: f64) -> f64 {
    if energy <= 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * energy.log10() - 0.691
    }
}

/// The block energy of a loudness in LUFS.
pub fn energy(lufs: f64) -> f64 {
    10f64.powf((lufs + 0.691) / 10.0)
}

/// dB of a linear peak.
pub fn db(linear: f64) -> f64 {
    20.0 * linear.max(1e-20).log10()
}

/// BS.1770's integrated loudness of gating-block energies: the mean of the
/// blocks above −70 LUFS and above the mean of those less 10 LU. `None`
/// when every block is silence.
pub fn integrated(energies: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let absolute = energy(ABSOLUTE_GATE_LUFS);
    let mean = |floor: f64| {
        let (sum, n) = (energies.clone())
            .filter(|e| *e >= floor)
            .fold((0.0, 0u64), |(s, n), e| (s + e, n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    let relative = mean(absolute)? / 10.0;
    mean(relative.max(absolute)).map(lufs)
}

impl SceneLoudness {
    /// How many blocks a mix of `samples` has: one ending on each frame
    /// from the 12th on.
    pub fn blocks_for(samples: u64) -> usize {
        (samples / GRID).saturating_sub(BLOCK_GRIDS - 1) as usize
    }

    /// The energy of the block that ends at sample `end` of the mix (a
    /// multiple of [`GRID`], at least [`BLOCK`]).
    pub fn ending_at(&self, end: u64) -> Option<f64> {
        if !end.is_multiple_of(GRID) || end < BLOCK {
            return None;
        }
        self.energies.get((end / GRID - BLOCK_GRIDS) as usize).copied()
    }

    /// The mix's own integrated loudness (its blocks every 100 ms).
    pub fn integrated(&self) -> Option<f64> {
        integrated(self.energies.iter().copied().step_by((STEP / GRID) as usize))
    }

    /// Check a measurement read back: its format, a length within bounds,
    /// one finite, non-negative energy for each block, a finite peak.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {} (this studio writes {FORMAT})", self.format));
        }
        if self.samples == 0 || self.samples > MAX_SAMPLES || !self.samples.is_multiple_of(GRID) {
            return Err(format!("{} samples is not a whole number of frames", self.samples));
        }
        let want = Self::blocks_for(self.samples);
        if self.energies.len() != want {
            return Err(format!(
                "{} block energies for {} samples, which have {want}",
                self.energies.len(),
                self.samples
            ));
        }
        if let Some(bad) = self.energies.iter().find(|e| !e.is_finite() || **e < 0.0) {
            return Err(format!("a block energy of {bad}"));
        }
        if !self.true_peak.is_finite() || self.true_peak < 0.0 {
            return Err(format!("a true peak of {}", self.true_peak));
        }
        Ok(())
    }

    /// Read and check a measurement file.
    pub fn read(path: &Utf8Path) -> Result<SceneLoudness, String> {
        let limit = 64 + 32 * MAX_SAMPLES / GRID;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
        let mut text = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut text)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        if text.len() as u64 > limit {
            return Err(format!("{path} is larger than a measurement can be"));
        }
        let m: SceneLoudness =
            serde_json::from_slice(&text).map_err(|e| format!("{path} is not a loudness measurement: {e}"))?;
        m.check().map_err(|e| format!("{path}: {e}"))?;
        Ok(m)
    }
}

/// A stereo 48-kHz float WAV (what the mixes and the check decode are).
/// hound checks the header; the samples are then read straight from the
/// data chunk in bulk (a sample at a time through hound's iterator was
/// most of a render's time).
pub struct Wav {
    file: std::fs::File,
    /// Where the data chunk starts in the file.
    data: u64,
    /// Its length in samples (per channel).
    pub samples: u64,
}

/// Bytes of one stereo float sample frame.
const FRAME_BYTES: u64 = 8;

impl Wav {
    pub fn open(path: &Utf8Path) -> Result<Wav, String> {
        let reader = hound::WavReader::open(path).map_err(|e| format!("cannot read {path} as WAV: {e}"))?;
        let spec = reader.spec();
        if spec.channels != CHANNELS
            || u64::from(spec.sample_rate) != timing::RATE
            || spec.sample_format != hound::SampleFormat::Float
            || spec.bits_per_sample != 32
        {
            return Err(format!(
                "{path} is {} channels of {}-bit {:?} at {} Hz, not stereo 32-bit float at {} Hz",
                spec.channels,
                spec.bits_per_sample,
                spec.sample_format,
                spec.sample_rate,
                timing::RATE
            ));
        }
        let samples = u64::from(reader.duration());
        if samples > MAX_SAMPLES {
            return Err(format!(
                "{path} is longer than {} hours",
                MAX_SAMPLES / timing::RATE / 3600
            ));
        }
        // hound stops reading the header at the data chunk.
        let mut inner = reader.into_inner();
        let data = inner
            .stream_position()
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        Ok(Wav {
            file: inner.into_inner(),
            data,
            samples,
        })
    }

    /// Interleaved samples `from..to` (per channel).
    pub fn read(&mut self, from: u64, to: u64) -> Result<Vec<f32>, String> {
        let to = to.min(self.samples);
        if from >= to {
            return Ok(Vec::new());
        }
        let mut bytes = vec![0u8; ((to - from) * FRAME_BYTES) as usize];
        self.file
            .seek(SeekFrom::Start(self.data + from * FRAME_BYTES))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| format!("cannot read a WAV's samples {from}..{to}: {e}"))?;
        Ok(floats(&bytes).collect())
    }
}

/// Little-endian 32-bit floats (a float WAV's data, ffmpeg's `f32le`); a
/// trailing partial sample is left out.
pub fn floats(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// An R128 meter fed interleaved stereo: the energy of the last block and
/// the true peak so far.
pub struct Meter {
    r128: EbuR128,
    fed: u64,
}

impl Meter {
    pub fn new() -> Meter {
        Meter::with(Mode::M | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK)
    }

    /// Block energies and sample peaks only, without the oversampling true
    /// peak meter (most of the metering's time): for trial renders whose
    /// peaks are checked again.
    pub fn sample_peaks() -> Meter {
        Meter::with(Mode::M | Mode::SAMPLE_PEAK)
    }

    fn with(mode: Mode) -> Meter {
        Meter {
            r128: EbuR128::new(u32::from(CHANNELS), timing::RATE as u32, mode)
                .expect("stereo at 48 kHz is a valid meter"),
            fed: 0,
        }
    }

    pub fn feed(&mut self, interleaved: &[f32]) {
        self.r128.add_frames_f32(interleaved).expect("whole stereo frames");
        self.fed += (interleaved.len() / usize::from(CHANNELS)) as u64;
    }

    /// The energy of the last 400 ms fed (`None` before 400 ms were).
    pub fn block(&self) -> Option<f64> {
        if self.fed < BLOCK {
            return None;
        }
        let l = self.r128.loudness_momentary().ok()?;
        Some(if l.is_finite() { energy(l) } else { 0.0 })
    }

    /// The highest true peak of any channel so far, linear. The
    /// interpolating meter can read a lone spike under its own sample, so
    /// the sample peak bounds it from below.
    pub fn true_peak(&self) -> f64 {
        (0..u32::from(CHANNELS))
            .flat_map(|c| [self.r128.true_peak(c), self.r128.sample_peak(c)])
            .filter_map(Result::ok)
            .fold(0.0, f64::max)
    }
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

/// Measure a whole mix: the block ending on every frame and the true peak.
/// Checks `cancel` between seconds of audio.
pub fn measure(wav: &mut Wav, cancel: &CancellationToken) -> Result<SceneLoudness, String> {
    let samples = wav.samples;
    if !samples.is_multiple_of(GRID) {
        return Err(format!(
            "the mix is {samples} samples long, not a whole number of frames"
        ));
    }
    let mut meter = Meter::new();
    let mut energies = Vec::with_capacity(SceneLoudness::blocks_for(samples));
    let second = timing::RATE;
    let mut at = 0;
    while at < samples {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let chunk = wav.read(at, (at + second).min(samples))?;
        for frame in chunk.chunks(GRID as usize * usize::from(CHANNELS)) {
            meter.feed(frame);
            if let Some(e) = meter.block() {
                energies.push(e);
            }
        }
        at += second;
    }
    let m = SceneLoudness {
        format: FORMAT,
        samples,
        true_peak: meter.true_peak(),
        energies,
    };
    m.check()?;
    Ok(m)
}

/// [`measure`] the WAV at `path` on a blocking thread.
pub async fn measure_file(path: &Utf8Path, cancel: &CancellationToken) -> Result<SceneLoudness, String> {
    let (path, cancel) = (path.to_owned(), cancel.clone());
    tokio::task::spawn_blocking(move || {
        let mut wav = Wav::open(&path)?;
        measure(&mut wav, &cancel)
    })
    .await
    .map_err(|e| format!("the loudness meter stopped: {e}"))?
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What [`Wav`] reads: stereo 32-bit float at 48 kHz.
    pub(crate) fn stereo_float() -> hound::WavSpec {
        hound::WavSpec {
            channels: 2,
            sample_rate: timing::RATE as u32,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        }
    }

    /// A stereo float WAV of `samples` per channel from `f(t) -> (l, r)`.
    pub(crate) fn write_wav(path: &Utf8Path, samples: u64, f: impl Fn(u64) -> (f32, f32)) {
        let mut w = hound::WavWriter::create(path, stereo_float()).unwrap();
        for t in 0..samples {
            let (l, r) = f(t);
            w.write_sample(l).unwrap();
            w.write_sample(r).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn energies_and_loudness_convert_both_ways() {
        for l in [-70.0, -23.0, -16.0, 0.0] {
            assert!((lufs(energy(l)) - l).abs() < 1e-9);
        }
        assert_eq!(lufs(0.0), f64::NEG_INFINITY);
        assert!((db(0.5) + 6.0206).abs() < 1e-4);
    }

    #[test]
    fn integration_gates_silence_and_quiet_blocks() {
        let e = energy(-20.0);
        assert!((integrated([e, e, e].into_iter()).unwrap() + 20.0).abs() < 1e-9);
        // Silence (below −70) is not counted.
        let with_silence = [e, e, 0.0, energy(-80.0)];
        assert!((integrated(with_silence.into_iter()).unwrap() + 20.0).abs() < 1e-9);
        // A block 20 LU under the rest falls under the relative gate; one 5 LU under does not.
        let quiet = integrated([e, e, energy(-40.0)].into_iter()).unwrap();
        assert!((quiet + 20.0).abs() < 1e-9, "{quiet}");
        let near = integrated([e, energy(-25.0)].into_iter()).unwrap();
        assert!((near - lufs((e + energy(-25.0)) / 2.0)).abs() < 1e-9);
        assert_eq!(integrated([0.0, 0.0].into_iter()), None);
        assert_eq!(integrated(std::iter::empty()), None);
    }

    #[test]
    fn a_measured_mix_integrates_as_the_crate_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("mix.wav");
        // 3 s: a tone that gets louder, with a loud click.
        let samples = 90 * GRID;
        let f = |t: u64| {
            let s = t as f32 / timing::RATE as f32;
            let a = 0.02 + 0.1 * s;
            let click = if t == 70_000 { 0.9 } else { 0.0 };
            (
                (2.0 * std::f32::consts::PI * 440.0 * s).sin() * a + click,
                (2.0 * std::f32::consts::PI * 660.0 * s).sin() * a,
            )
        };
        write_wav(&path, samples, f);
        let mut wav = Wav::open(&path).unwrap();
        let m = measure(&mut wav, &CancellationToken::new()).unwrap();
        assert_eq!(m.samples, samples);
        assert_eq!(m.energies.len(), 90 - 11);
        assert_eq!(m.ending_at(BLOCK), Some(m.energies[0]));
        assert_eq!(m.ending_at(samples), m.energies.last().copied());
        assert_eq!(m.ending_at(BLOCK + 1), None);
        assert_eq!(m.ending_at(GRID), None);

        let mut r = EbuR128::new(2, timing::RATE as u32, Mode::I | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK).unwrap();
        let all: Vec<f32> = (0..samples)
            .flat_map(|t| {
                let (l, r) = f(t);
                [l, r]
            })
            .collect();
        r.add_frames_f32(&all).unwrap();
        let crate_i = r.loudness_global().unwrap();
        let ours = m.integrated().unwrap();
        assert!((ours - crate_i).abs() < 1e-6, "{ours} vs the crate's {crate_i}");
        let peak = (0..2)
            .map(|c| r.true_peak(c).unwrap().max(r.sample_peak(c).unwrap()))
            .fold(0.0, f64::max);
        assert!((m.true_peak - peak).abs() < 1e-9);
        let click = f64::from(f(70_000).0.abs());
        assert!(
            click > 0.7 && m.true_peak >= click,
            "the click is in the peak: {}",
            m.true_peak
        );

        // Written and read back, and refused when it does not add up.
        let json = dir.path().join("m.json");
        std::fs::write(&json, serde_json::to_string(&m).unwrap()).unwrap();
        let json = Utf8Path::from_path(&json).unwrap();
        // serde_json reads a float back to within an ulp.
        let back = SceneLoudness::read(json).unwrap();
        assert_eq!(
            (back.samples, back.true_peak, back.energies.len()),
            (m.samples, m.true_peak, m.energies.len())
        );
        assert!(
            back.energies
                .iter()
                .zip(&m.energies)
                .all(|(a, b)| (a - b).abs() <= b * 1e-15)
        );
        for (bad, why) in [
            (
                SceneLoudness {
                    energies: m.energies[1..].to_vec(),
                    ..m.clone()
                },
                "78 block energies",
            ),
            (
                SceneLoudness {
                    samples: samples + 1,
                    ..m.clone()
                },
                "not a whole number of frames",
            ),
            (SceneLoudness { format: 9, ..m.clone() }, "format 9"),
            (
                SceneLoudness {
                    true_peak: -1.0,
                    ..m.clone()
                },
                "true peak",
            ),
            (
                SceneLoudness {
                    energies: vec![-1.0; m.energies.len()],
                    ..m.clone()
                },
                "block energy of -1",
            ),
        ] {
            let err = bad.check().unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        std::fs::write(
            json,
            r#"{"format":1,"samples":1600,"true_peak":0,"energies":[],"extra":1}"#,
        )
        .unwrap();
        assert!(
            SceneLoudness::read(json)
                .unwrap_err()
                .contains("not a loudness measurement")
        );
    }

    #[test]
    fn only_stereo_float_at_48k_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("mono.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let err = Wav::open(&path).err().unwrap();
        assert!(err.contains("not stereo 32-bit float at 48000 Hz"), "{err}");
    }
}
