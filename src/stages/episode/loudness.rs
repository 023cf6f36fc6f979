//! Loudness: the episode's integrated loudness put together from its scene
//! mixes' measurements, then gain (and, only when the peaks need it, the
//! limiter, metered and corrected in process) on the mixed samples, one
//! encode into AAC, checked by metering what was encoded.
//!
//! Each scene mix comes with the energy of the gating block ending on each
//! of its frames ([`meter::SceneLoudness`]). The episode's blocks (400 ms
//! every 100 ms from its start) that lie inside one scene, clear of the
//! crossfades, are read from that scene's list; only those that touch a
//! crossfade (or a cut) are measured here, on the mixed audio around it.
//! A dialogue edit therefore re-measures one scene, not the episode.

use super::shape::{self, Part, Pass, Shaped, shape};
use super::*;
use crate::exec::runner;
use crate::stages::meter::{self, BLOCK, Meter, STEP, SceneLoudness, Wav};

/// Audio metered before a block that touches a crossfade, so the K-weighting
/// filters have settled as they would have in the whole episode.
const PREROLL: u64 = 2 * STEP;

/// The loudness target: integrated LUFS and true peak dBTP.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub(super) i: f64,
    pub(super) tp: f64,
}

/// One scene mix: its file and its measurement.
pub(super) struct SceneMix {
    pub(super) wav: Utf8PathBuf,
    pub(super) loudness: SceneLoudness,
}

/// Where an episode's gating block comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Scene `scene`'s block ending at its sample `end`.
    Scene { scene: usize, end: u64 },
    /// It touches a crossfade or a cut: measured on the mixed audio.
    Mixed,
}

/// The first sample of each scene in the episode (crossfades of `ns`
/// samples overlap neighbours).
pub(super) fn starts(lengths: &[u64], ns: u64) -> Vec<u64> {
    let mut at = 0;
    lengths
        .iter()
        .map(|len| {
            let start = at;
            at = (at + len).saturating_sub(ns);
            start
        })
        .collect()
}

/// The episode's gating blocks, by their first sample, and where each comes
/// from: a block inside one scene and clear of the crossfades is that
/// scene's; any other is measured on the mix.
pub(super) fn block_sources(lengths: &[u64], ns: u64) -> Vec<(u64, Source)> {
    let n = lengths.len();
    let starts = starts(lengths, ns);
    let total = lengths
        .iter()
        .sum::<u64>()
        .saturating_sub(ns * n.saturating_sub(1) as u64);
    let mut out = Vec::new();
    let mut w = 0;
    while w + BLOCK <= total {
        let inside = (0..n).find(|&i| {
            let from = starts[i] + if i > 0 { ns } else { 0 };
            let to = starts[i] + lengths[i] - if i + 1 < n { ns } else { 0 };
            from <= w && w + BLOCK <= to
        });
        out.push((
            w,
            match inside {
                Some(scene) => Source::Scene {
                    scene,
                    end: w + BLOCK - starts[scene],
                },
                None => Source::Mixed,
            },
        ));
        w += STEP;
    }
    out
}

/// The gain of scene sample `u` of a scene of `len` samples: acrossfade's
/// triangular curves over the `ns` samples shared with a neighbour.
fn crossfade_gain(u: u64, len: u64, ns: u64, fades_in: bool, fades_out: bool) -> f32 {
    let mut g = 1.0;
    if fades_in && u < ns {
        g *= u as f64 / ns as f64;
    }
    if fades_out && u + ns >= len {
        let j = u + ns - len;
        g *= (ns - 1 - j) as f64 / ns as f64;
    }
    g as f32
}

/// The episode's audio `from..to` as the acrossfade chain mixes it.
pub(super) fn render(wavs: &mut [Wav], lengths: &[u64], ns: u64, from: u64, to: u64) -> Result<Vec<f32>, String> {
    let n = lengths.len();
    let mut out = vec![0f32; ((to - from) * 2) as usize];
    for (i, (wav, start)) in wavs.iter_mut().zip(starts(lengths, ns)).enumerate() {
        let (lo, hi) = (from.max(start), to.min(start + lengths[i]));
        if lo >= hi {
            continue;
        }
        let samples = wav.read(lo - start, hi - start)?;
        for (k, frame) in samples.chunks_exact(2).enumerate() {
            let u = lo - start + k as u64;
            let g = crossfade_gain(u, lengths[i], ns, i > 0, i + 1 < n);
            let at = ((lo - from) as usize + k) * 2;
            out[at] += frame[0] * g;
            out[at + 1] += frame[1] * g;
        }
    }
    Ok(out)
}

/// What the episode measures before any gain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reading {
    /// Integrated loudness, LUFS; `None` for silence.
    pub(super) i: Option<f64>,
    /// True peak, dBTP: the highest of the scenes' and the mixed stretches'.
    pub(super) tp: f64,
    /// Blocks measured here (the others came from the scenes).
    pub(super) mixed_blocks: usize,
    pub(super) blocks: usize,
}

/// Integrate the episode from its scenes' measurements, metering only the
/// blocks that touch a crossfade (on a blocking thread's time).
pub(super) fn episode_reading(scenes: &[SceneMix], ns: u64, cancel: &CancellationToken) -> Result<Reading, String> {
    let lengths: Vec<u64> = scenes.iter().map(|s| s.loudness.samples).collect();
    let sources = block_sources(&lengths, ns);
    let mut energies = vec![0.0; sources.len()];
    let mut peak = scenes.iter().map(|s| s.loudness.true_peak).fold(0.0, f64::max);
    for (k, (_, source)) in sources.iter().enumerate() {
        if let Source::Scene { scene, end } = *source {
            energies[k] = (scenes[scene].loudness.ending_at(end))
                .ok_or_else(|| format!("scene {scene} has no block ending at sample {end}"))?;
        }
    }
    let mut wavs = scenes
        .iter()
        .map(|s| Wav::open(&s.wav))
        .collect::<Result<Vec<_>, _>>()?;
    for (wav, s) in wavs.iter().zip(scenes) {
        if wav.samples != s.loudness.samples {
            return Err(format!(
                "{} has {} samples, its measurement {}",
                s.wav, wav.samples, s.loudness.samples
            ));
        }
    }
    // Runs of consecutive mixed blocks, each metered in one go.
    let mut k = 0;
    let mut mixed = 0;
    while k < sources.len() {
        if sources[k].1 != Source::Mixed {
            k += 1;
            continue;
        }
        let first = k;
        while k < sources.len() && sources[k].1 == Source::Mixed {
            k += 1;
        }
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let (w0, wl) = (sources[first].0, sources[k - 1].0);
        let from = w0.saturating_sub(PREROLL);
        let audio = render(&mut wavs, &lengths, ns, from, wl + BLOCK)?;
        let mut meter = Meter::new();
        let mut fed = from;
        for (j, energy) in energies.iter_mut().enumerate().take(k).skip(first) {
            let end = sources[j].0 + BLOCK;
            meter.feed(&audio[((fed - from) * 2) as usize..((end - from) * 2) as usize]);
            fed = end;
            *energy = meter.block().ok_or("a mixed block shorter than 400 ms")?;
        }
        peak = peak.max(meter.true_peak());
        mixed += k - first;
    }
    Ok(Reading {
        i: meter::integrated(energies.iter().copied()),
        tp: meter::db(peak),
        mixed_blocks: mixed,
        blocks: sources.len(),
    })
}

/// Chunks queued between the stages of the encode's pipeline.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The AAC file, in the job's scratch directory (named relative to it: the
/// tee muxer's output list has a syntax of its own).
const AAC_FILE: &str = "episode_audio.m4a";
/// ffmpeg's AAC encoder delay (its `initial_padding`): the M4A's edit list
/// skips it, the ADTS copy decodes it first.
const AAC_PRIMING: u64 = 1024;

/// What the encoded audio measures, decoded as the delivery meter does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Check {
    pub(super) i: Option<f64>,
    pub(super) tp: f64,
}

/// The one encode, checked as it goes: the pass rendered straight into the
/// encoder's stdin (raw float stereo); the encoder writes the M4A and,
/// through the tee muxer, the same AAC packets as ADTS on its stdout; a
/// decoder turns those back into float, metered here (integrated loudness
/// and true peak, past the priming, over the whole 100-ms steps) while the
/// encode goes on. Render, encoder, decoder and meter run side by side, so
/// the check costs next to nothing after the encode. Returns the M4A, the
/// deepest gain the render's limiter applied (dB) and the check.
async fn encode(
    job: &Job,
    (parts, ns, samples): (&[Part], u64, u64),
    pass: &Pass,
    cancel: &CancellationToken,
) -> Result<(Utf8PathBuf, f64, Check), ExecError> {
    let rate = timing::RATE.to_string();
    let encoder = ffmpeg(job)?
        .args(["-f", "f32le", "-ar", rate.as_str(), "-ac", "2", "-i", "pipe:0"])
        .args(["-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2"])
        // The fast coder: the encode is most of a dialogue edit's wait
        // (92 s of audio: 1.2 s instead of 2.9 s), at the same loudness and
        // peaks; at 192 kb/s it is transparent enough for an animatic.
        .args(["-aac_coder", "fast"])
        // `ipod` is the muxer ffmpeg picks for .m4a: the same bytes as
        // writing the file alone (checked with cmp).
        .args(["-fflags", "+bitexact", "-map", "0:a", "-f", "tee"])
        .arg(format!("[f=ipod:fflags=+bitexact]{AAC_FILE}|[f=adts]pipe:1"));
    let decoder = ffmpeg(job)?.args(["-f", "aac", "-i", "pipe:0"]).args([
        "-f",
        "f32le",
        "-c:a",
        "pcm_f32le",
        "-ar",
        "48000",
        "-ac",
        "2",
        "pipe:1",
    ]);
    let channel = || tokio::sync::mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let ((to_encoder, encoder_in), (to_decoder, decoder_in), (to_meter, mut meter_in)) =
        (channel(), channel(), channel());
    let (parts, pass, token) = (parts.to_vec(), *pass, cancel.clone());
    let rendering = tokio::task::spawn_blocking(move || {
        let mut send = |frames: &[f32]| {
            let bytes = frames.iter().flat_map(|s| s.to_le_bytes()).collect();
            to_encoder
                .blocking_send(bytes)
                .map_err(|_| "the encoder stopped".to_string())
        };
        shape::write(&parts, (ns, samples), &pass, &mut send, &token)
    });
    let metering = tokio::task::spawn_blocking(move || {
        let mut check = CheckMeter::new(samples);
        while let Some(bytes) = meter_in.blocking_recv() {
            check.take(&bytes);
        }
        check.finish()
    });
    let (encoded, decoded) = tokio::join!(
        runner::run_piped(&encoder, &job.scratch, cancel, Some(encoder_in), Some(to_decoder)),
        runner::run_piped(&decoder, &job.scratch, cancel, Some(decoder_in), Some(to_meter)),
    );
    let stopped = |what: &str, e: tokio::task::JoinError| permanent(format!("{what} the episode audio stopped: {e}"));
    let rendered = rendering.await.map_err(|e| stopped("rendering", e))?;
    let checked = metering.await.map_err(|e| stopped("checking", e))?;
    // The encoder's own error first: a render that stops early only ends
    // the encoder's input, which then finishes cleanly.
    encoded?;
    decoded?;
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let reduction_db = rendered.map_err(permanent)?;
    let out = scratch(job, AAC_FILE);
    produced(&out, "ffmpeg")?;
    Ok((out, reduction_db, checked.map_err(permanent)?))
}

/// Meters the decoded check stream: raw float stereo that starts with the
/// encoder's priming and may end past the audio (AAC codes whole frames of
/// 1024 samples); what lies between is metered in blocks every 100 ms from
/// its start, over its whole steps, as the delivery meter takes them.
struct CheckMeter {
    /// Bytes still to skip (the priming), and the bytes to meter after it.
    skip: usize,
    want: usize,
    /// A sample split across two chunks waits here.
    pending: Vec<u8>,
    samples: Vec<f32>,
    meter: Meter,
    energies: Vec<f64>,
}

impl CheckMeter {
    fn new(samples: u64) -> CheckMeter {
        let whole = samples - samples % STEP;
        CheckMeter {
            skip: (AAC_PRIMING * 8) as usize,
            want: (whole * 8) as usize,
            pending: Vec::new(),
            samples: Vec::new(),
            meter: Meter::new(),
            energies: Vec::new(),
        }
    }

    /// Take the next bytes of the stream.
    fn take(&mut self, mut bytes: &[u8]) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        bytes = &bytes[skipped..];
        let kept = self.want.min(bytes.len());
        self.want -= kept;
        self.pending.extend_from_slice(&bytes[..kept]);
        let whole = self.pending.len() - self.pending.len() % 4;
        self.samples.extend(meter::floats(&self.pending[..whole]));
        self.pending.drain(..whole);
        let step = STEP as usize * 2;
        let blocks = self.samples.len() - self.samples.len() % step;
        for chunk in self.samples[..blocks].chunks(step) {
            self.meter.feed(chunk);
            self.energies.extend(self.meter.block());
        }
        self.samples.drain(..blocks);
    }

    /// The check, once the stream has ended; an error when it was short.
    fn finish(self) -> Result<Check, String> {
        if self.skip > 0 || self.want > 0 || !self.pending.is_empty() || !self.samples.is_empty() {
            return Err(format!(
                "the encoded episode audio decodes {} samples short",
                (self.skip + self.want) / 8
            ));
        }
        Ok(Check {
            i: meter::integrated(self.energies.into_iter()),
            tp: meter::db(self.meter.true_peak()),
        })
    }
}

/// What `normalize` did, for the node's metadata.
#[derive(Debug, Clone)]
pub(super) struct Normalized {
    /// The encoded episode audio.
    pub(super) aac: Utf8PathBuf,
    pub(super) shaped: Shaped,
    /// The deepest gain the limiter applied, dB (0 when it did nothing).
    pub(super) reduction_db: f64,
    pub(super) check: Check,
    pub(super) encodes: u32,
}

/// Shape the samples in process ([`shape`]), encode them once, and meter
/// the encode. AAC can overshoot the peaks a little: when the true peak is
/// over `max_true_peak_dbtp` or the loudness more than half a LU off, shape
/// again with more headroom or a corrected gain and encode again (three
/// tries).
#[allow(clippy::too_many_arguments)]
pub(super) async fn normalize(
    job: &Job,
    scenes: &[SceneMix],
    ns: u64,
    samples: u64,
    reading: &Reading,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Normalized, ExecError> {
    let ceiling = param_f64(job, "max_true_peak_dbtp", -1.0);
    let parts: Vec<Part> = scenes.iter().map(|s| (s.wav.clone(), s.loudness.samples)).collect();
    let (mut headroom, mut correction) = (0.0, 0.0);
    let mut last = None;
    for round in 1..=3 {
        let (p, r, t, token) = (parts.clone(), *reading, *target, cancel.clone());
        let shaped = tokio::task::spawn_blocking(move || shape(&p, ns, samples, &r, &t, headroom, correction, &token))
            .await
            .map_err(|e| permanent(format!("shaping the episode audio stopped: {e}")))?;
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let shaped = shaped.map_err(permanent)?;
        let (aac, reduction_db, got) = encode(job, (&parts, ns, samples), &shaped.pass, cancel).await?;
        let done = Normalized {
            aac,
            shaped,
            reduction_db,
            check: got,
            encodes: round,
        };
        let Some(i) = got.i else {
            return Ok(done); // silence stays silence
        };
        let off = i - target.i;
        let peak_ok = got.tp <= ceiling;
        if peak_ok && (off.abs() <= 0.5 || (round == 3 && off.abs() <= 1.0)) {
            return Ok(done);
        }
        if !peak_ok {
            headroom += got.tp - ceiling + 0.5;
        }
        if off.abs() > 0.5 {
            correction -= off;
        }
        last = Some(got);
    }
    let got = last.unwrap_or(Check { i: None, tp: f64::NAN });
    Err(permanent(format!(
        "the episode audio measures {:.1} LUFS with a true peak of {:.1} dBTP after three tries (target {} LUFS, peaks at most {ceiling} dBTP)",
        got.i.unwrap_or(f64::NEG_INFINITY),
        got.tp,
        target.i
    )))
}

/// A scene's measurement: its `loudness.json` when the mix came with one,
/// else measured here from the WAV (a mix made before scenes were measured,
/// or by an engine that does not measure).
pub(super) async fn scene_loudness(input: &JobInput, cancel: &CancellationToken) -> Result<SceneMix, ExecError> {
    let file = |suffix: &str| input.files.iter().find(|(s, _)| s == suffix).map(|(_, p)| p.clone());
    let wav = file("wav").unwrap_or_else(|| input.main().clone());
    let loudness = match file(meter::SUFFIX) {
        Some(path) => SceneLoudness::read(&path),
        None => meter::measure_file(&wav, cancel).await,
    };
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled);
    }
    let loudness = loudness.map_err(|e| permanent(format!("the mix of scene {}: {e}", scene_name(&input.role))))?;
    Ok(SceneMix { wav, loudness })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::meter::tests::write_wav;

    const F: u64 = timing::SAMPLES_PER_FRAME;

    #[test]
    fn blocks_inside_a_scene_come_from_it_the_rest_are_mixed() {
        // 60 and 45 frames, a 12-frame crossfade: 93 frames, 148 800 samples.
        let sources = block_sources(&[60 * F, 45 * F], 12 * F);
        assert_eq!(sources.len(), ((93 * F - BLOCK) / STEP + 1) as usize);
        assert_eq!(sources[0], (0, Source::Scene { scene: 0, end: BLOCK }));
        // Scene 1 starts at frame 48; its crossfade ends at frame 60.
        let (s1, xf_end) = (48 * F, 60 * F);
        for &(w, source) in &sources {
            let touches = w < xf_end && w + BLOCK > s1;
            match source {
                Source::Mixed => assert!(touches, "{w}"),
                Source::Scene { scene: 0, end } => assert!(!touches && end == w + BLOCK, "{w}"),
                Source::Scene { scene: 1, end } => {
                    assert!(!touches && w >= xf_end && end == w + BLOCK - s1 && end % F == 0, "{w}")
                }
                other => panic!("{other:?}"),
            }
        }
        let mixed = sources.iter().filter(|s| s.1 == Source::Mixed).count();
        assert_eq!(mixed, 7, "blocks starting in (frame 36, frame 60) touch the crossfade");
        // A cut (no crossfade): only the blocks across the cut are mixed.
        let cut = block_sources(&[60 * F, 45 * F], 0);
        assert_eq!(cut.iter().filter(|s| s.1 == Source::Mixed).count(), 3);
        assert!(block_sources(&[6 * F], 0).is_empty(), "shorter than a block");
        assert_eq!(starts(&[60, 45, 30], 12), [0, 48, 81]);
    }

    #[test]
    fn crossfade_gains_are_acrossfades_triangles() {
        let ns = 4;
        let gains: Vec<f32> = (0..10).map(|u| crossfade_gain(u, 10, ns, true, true)).collect();
        assert_eq!(gains, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]);
        assert_eq!(crossfade_gain(0, 10, ns, false, true), 1.0);
        assert_eq!(crossfade_gain(9, 10, ns, true, false), 1.0);
    }

    /// The check meters what lies between the priming and the padding,
    /// whatever the chunks the decoder's pipe brings, and refuses a stream
    /// that ends short.
    #[test]
    fn the_check_meters_past_the_priming_across_any_chunks() {
        let samples = 3 * timing::RATE + 777;
        let tone = |t: u64| (2.0 * std::f32::consts::PI * 440.0 * t as f32 / timing::RATE as f32).sin() * 0.3;
        let mut stream: Vec<u8> = Vec::new();
        // Loud priming that must not count, the audio, then a frame's padding.
        for _ in 0..AAC_PRIMING * 2 {
            stream.extend(0.99f32.to_le_bytes());
        }
        for t in 0..samples {
            stream.extend(tone(t).to_le_bytes());
            stream.extend((tone(t) * 0.5).to_le_bytes());
        }
        stream.extend(std::iter::repeat_n(0x3f, 1000 * 8));
        let mut direct = Meter::new();
        let mut energies = Vec::new();
        let whole = samples - samples % STEP;
        let audio: Vec<f32> = (0..whole).flat_map(|t| [tone(t), tone(t) * 0.5]).collect();
        for chunk in audio.chunks(STEP as usize * 2) {
            direct.feed(chunk);
            energies.extend(direct.block());
        }
        let want = Check {
            i: meter::integrated(energies.into_iter()),
            tp: meter::db(direct.true_peak()),
        };
        for size in [1, 7, 4096, 65_536, stream.len()] {
            let mut check = CheckMeter::new(samples);
            stream.chunks(size).for_each(|c| check.take(c));
            assert_eq!(check.finish(), Ok(want), "chunks of {size} bytes");
        }
        let mut short = CheckMeter::new(samples);
        short.take(&stream[..stream.len() / 2]);
        let err = short.finish().unwrap_err();
        assert!(err.contains("samples short"), "{err}");
    }

    /// The episode's loudness put together from its scenes equals the
    /// loudness of the joined audio measured whole.
    #[test]
    fn the_episode_integrates_from_its_scenes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let tone = |hz: f32, amp: f32| {
            move |t: u64| {
                let s = t as f32 / timing::RATE as f32;
                let a = amp * (1.0 + 0.5 * (2.0 * std::f32::consts::PI * 0.7 * s).sin());
                let v = (2.0 * std::f32::consts::PI * hz * s).sin() * a;
                (v, v * 0.8)
            }
        };
        let cancel = CancellationToken::new();
        // Three scenes at different levels; the middle one short.
        let specs = [
            (75 * F, tone(330.0, 0.05)),
            (40 * F, tone(550.0, 0.3)),
            (61 * F, tone(220.0, 0.1)),
        ];
        let mut scenes = Vec::new();
        for (i, (len, f)) in specs.iter().enumerate() {
            let wav = root.join(format!("s{i}.wav"));
            write_wav(&wav, *len, f);
            let loudness = meter::measure(&mut Wav::open(&wav).unwrap(), &cancel).unwrap();
            scenes.push(SceneMix { wav, loudness });
        }
        for ns in [12 * F, 0] {
            let reading = episode_reading(&scenes, ns, &cancel).unwrap();
            let lengths: Vec<u64> = specs.iter().map(|s| s.0).collect();
            let total = lengths.iter().sum::<u64>() - 2 * ns;
            let mut wavs: Vec<Wav> = scenes.iter().map(|s| Wav::open(&s.wav).unwrap()).collect();
            let whole = render(&mut wavs, &lengths, ns, 0, total).unwrap();
            let mut m = Meter::new();
            let mut energies = Vec::new();
            for chunk in whole[..(total - total % STEP) as usize * 2].chunks(STEP as usize * 2) {
                m.feed(chunk);
                energies.extend(m.block());
            }
            let direct = meter::integrated(energies.into_iter()).unwrap();
            let i = reading.i.unwrap();
            assert!(
                (i - direct).abs() < 0.02,
                "from the scenes {i}, whole {direct} (ns {ns})"
            );
            assert!(
                reading.tp >= meter::db(m.true_peak()) - 1e-9,
                "the peak bounds the whole's"
            );
            assert_eq!(reading.blocks, ((total - BLOCK) / STEP + 1) as usize);
            assert!(
                reading.mixed_blocks > 0 && reading.mixed_blocks < reading.blocks / 2,
                "{reading:?}"
            );
        }
        // A measurement that does not match its mix is refused.
        scenes[1].loudness.samples += F;
        scenes[1].loudness.energies.push(0.0);
        let err = episode_reading(&scenes, 12 * F, &cancel).unwrap_err();
        assert!(err.contains("s1.wav has 64000 samples, its measurement 65600"), "{err}");
    }
}
