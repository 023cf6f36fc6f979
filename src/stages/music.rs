//! Procedural scene music: a MIDI sketch per mood, rendered by fluidsynth, fitted and normalized.
//!
//! The mood picks tempo, key, progression and General MIDI instruments; the
//! scene's path seeds small variations (arpeggio, bass line, voicing) and its
//! time of day the feel. The render is padded or cut to exactly the scene's
//! samples, faded, and brought to [`TARGET_LUFS`] with one linear gain, so
//! `music_volume` in the mix means the same for every music engine. The bytes
//! are a pure function of the params and the shots' lengths.

use camino::{Utf8Path, Utf8PathBuf};
use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod ace_step;
pub mod library;

pub use ace_step::ace_step;
pub use library::library_music;

use super::voice::{check_rate, wav_samples};
use super::{asset, exec, ffmpeg, inputs_with, param_str, produced, scratch, tool};
use crate::engines::Tool;
use crate::exec::runner::Cmd;
use crate::exec::{ExecError, Job, Produced};
use crate::project::vocab::Mood;
use crate::timing;

/// Integrated loudness of every scene's music (EBU R128, linear gain).
pub const TARGET_LUFS: f64 = -20.0;
/// MIDI ticks per quarter note.
const PPQ: u32 = 480;
const BAR: u32 = 4 * PPQ;
/// Fade-in and fade-out lengths (samples), shortened for very short scenes.
const FADE_IN: u64 = timing::RATE / 2;
const FADE_OUT: u64 = timing::RATE * 3 / 2;
/// loudnorm's first pass, used only as a meter (its JSON report has `input_i`).
const METER: &str = "loudnorm=I=-20:TP=-1:LRA=20:print_format=json";
/// Never raise a render by more than this (a near-silent render stays quiet).
const MAX_GAIN_DB: f64 = 24.0;

/// What a mood sounds like (docs/media-notes/animatic.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub bpm: u32,
    /// MIDI note of the tonic (the pad's root octave).
    pub tonic: u8,
    pub minor: bool,
    /// Sharps (+) or flats (−) of the key signature.
    pub key_sf: i8,
    /// Scale degrees (0-based) of the four-bar progression.
    pub progression: [u8; 4],
    /// GM programs (0-based): pad, lead, bass.
    pub programs: [u8; 3],
}

const fn st(bpm: u32, tonic: u8, minor: bool, key_sf: i8, progression: [u8; 4], programs: [u8; 3]) -> Style {
    Style {
        bpm,
        tonic,
        minor,
        key_sf,
        progression,
        programs,
    }
}

pub(crate) fn style(mood: Mood) -> Style {
    match mood {
        Mood::Calm => st(72, 60, false, 0, [0, 4, 5, 3], [89, 0, 32]), // C: I–V–vi–IV
        Mood::Tense => st(96, 62, true, -1, [0, 5, 6, 0], [44, 45, 43]), // Dm: i–VI–VII–i
        Mood::Melancholy => st(64, 57, true, 0, [0, 3, 5, 4], [48, 0, 42]), // Am: i–iv–VI–v
        Mood::Joyful => st(120, 67, false, 1, [0, 3, 4, 0], [48, 12, 33]), // G: I–IV–V–I
        Mood::Mysterious => st(80, 64, true, 1, [0, 1, 0, 6], [91, 8, 35]), // Em: i–ii°–i–VII
        Mood::Action => st(140, 64, true, 1, [0, 5, 2, 6], [50, 30, 38]), // Em: i–VI–III–VII
        Mood::Romantic => st(76, 65, false, -1, [0, 5, 3, 4], [48, 73, 32]), // F: I–vi–IV–V
        Mood::Comedic => st(132, 60, false, 0, [0, 3, 0, 4], [45, 71, 58]), // C: I–IV–I–V
        Mood::Hopeful => st(88, 62, false, 2, [3, 0, 4, 5], [48, 46, 32]), // D: IV–I–V–vi
        Mood::Eerie => st(60, 59, true, 2, [0, 1, 0, 1], [94, 8, 43]), // Bm: i–ii°–i–ii°
    }
}

/// Lead arpeggios: eight eighth notes per bar over [root, third, fifth, octave].
const ARPEGGIOS: [[usize; 8]; 4] = [
    [0, 1, 2, 1, 0, 1, 2, 1],
    [0, 1, 2, 3, 2, 1, 0, 1],
    [0, 2, 1, 2, 0, 2, 1, 2],
    [2, 1, 0, 1, 2, 1, 0, 1],
];

/// The small, deterministic differences between two scenes of one mood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variation {
    pub arpeggio: usize,
    /// Second half note of the bass: the root again (false) or the fifth.
    pub bass_fifth: bool,
    /// Pad in first inversion (root an octave up).
    pub inversion: bool,
    /// Tempo in percent of the mood's.
    pub tempo_pct: u32,
    /// Added to the lead's velocity.
    pub lead_vel: i8,
}

/// FNV-1a 32 (stable across builds and platforms, unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u32 {
    s.bytes()
        .fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

pub(crate) fn variation(scene: &str, time_of_day: &str) -> Variation {
    let h = fnv1a(scene);
    let (tempo_pct, lead_vel) = match time_of_day {
        "dawn" | "dusk" => (96, -4),
        "evening" => (94, -6),
        "night" => (92, -8),
        _ => (100, 0),
    };
    Variation {
        arpeggio: (h % 4) as usize,
        bass_fifth: h & 0x10 != 0,
        inversion: h & 0x20 != 0,
        tempo_pct,
        lead_vel,
    }
}

/// One note or setting on a channel, at an absolute tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ev {
    Program(u8),
    Volume(u8),
    On(u8, u8),
    Off(u8),
}

/// A song: tempo, bars and three tracks of `(tick, event)` (pad, lead, bass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Song {
    pub bpm: u32,
    pub bars: u32,
    pub minor: bool,
    pub key_sf: i8,
    pub tracks: [Vec<(u32, Ev)>; 3],
}

/// The triad on scale degree `degree` (MIDI notes, root first).
pub(crate) fn triad(style: &Style, degree: u8) -> [u8; 3] {
    const MAJOR: [u8; 7] = [0, 2, 4, 5, 7, 9, 11];
    const MINOR: [u8; 7] = [0, 2, 3, 5, 7, 8, 10];
    let scale = if style.minor { MINOR } else { MAJOR };
    [0, 2, 4].map(|i| {
        let step = degree + i;
        style.tonic + 12 * (step / 7) + scale[usize::from(step % 7)]
    })
}

/// Bars needed to cover `samples` at `bpm`, plus one spare (trimmed later).
pub(crate) fn bars_for(samples: u64, bpm: u32) -> u32 {
    let bar_samples_x_bpm = timing::RATE * 240; // samples per bar × bpm
    (samples * u64::from(bpm)).div_ceil(bar_samples_x_bpm) as u32 + 1
}

/// Compose the song for a scene of `samples` samples.
pub(crate) fn compose(style: &Style, var: &Variation, samples: u64) -> Song {
    let bpm = style.bpm * var.tempo_pct / 100;
    let bars = bars_for(samples, bpm);
    let volumes = [70, 80, 90];
    let mut tracks: [Vec<(u32, Ev)>; 3] =
        std::array::from_fn(|t| vec![(0, Ev::Program(style.programs[t])), (0, Ev::Volume(volumes[t]))]);
    let note = |track: &mut Vec<(u32, Ev)>, at: u32, len: u32, key: u8, vel: u8| {
        track.push((at, Ev::On(key, vel)));
        track.push((at + len, Ev::Off(key)));
    };
    for bar in 0..bars {
        let t0 = bar * BAR;
        let chord = triad(style, style.progression[bar as usize % 4]);
        let mut pad = chord;
        if var.inversion {
            pad[0] += 12;
        }
        for key in pad {
            note(&mut tracks[0], t0, BAR, key, 60);
        }
        let tones = [chord[0], chord[1], chord[2], chord[0] + 12];
        for (i, &k) in ARPEGGIOS[var.arpeggio].iter().enumerate() {
            let accent = if i % 4 == 0 { 62 } else { 50 };
            let vel = (accent + i32::from(var.lead_vel)).clamp(1, 127) as u8;
            note(&mut tracks[1], t0 + i as u32 * PPQ / 2, PPQ / 2, tones[k] + 12, vel);
        }
        let second = if var.bass_fifth { chord[2] } else { chord[0] };
        note(&mut tracks[2], t0, 2 * PPQ, chord[0] - 24, 80);
        note(&mut tracks[2], t0 + 2 * PPQ, 2 * PPQ, second - 24, 80);
    }
    Song {
        bpm,
        bars,
        minor: style.minor,
        key_sf: style.key_sf,
        tracks,
    }
}

fn event<'a>(delta: u32, kind: TrackEventKind<'a>) -> TrackEvent<'a> {
    TrackEvent {
        delta: u28::new(delta),
        kind,
    }
}

/// Sort a track by tick (note-offs before note-ons at one tick) and delta-encode it.
fn track(channel: u8, mut events: Vec<(u32, Ev)>) -> Vec<TrackEvent<'static>> {
    events.sort_by_key(|&(t, e)| (t, matches!(e, Ev::On(..))));
    let mut last = 0;
    let mut out: Vec<TrackEvent> = events
        .into_iter()
        .map(|(t, e)| {
            let message = match e {
                Ev::Program(p) => MidiMessage::ProgramChange { program: u7::new(p) },
                Ev::Volume(v) => MidiMessage::Controller {
                    controller: u7::new(7),
                    value: u7::new(v),
                },
                Ev::On(key, vel) => MidiMessage::NoteOn {
                    key: u7::new(key),
                    vel: u7::new(vel),
                },
                Ev::Off(key) => MidiMessage::NoteOff {
                    key: u7::new(key),
                    vel: u7::new(0),
                },
            };
            let delta = t - last;
            last = t;
            event(
                delta,
                TrackEventKind::Midi {
                    channel: u4::new(channel),
                    message,
                },
            )
        })
        .collect();
    out.push(event(0, TrackEventKind::Meta(MetaMessage::EndOfTrack)));
    out
}

/// The song as a Standard MIDI File (format 1, 480 PPQ, 4/4).
pub(crate) fn smf_bytes(song: &Song) -> Vec<u8> {
    let mut smf = Smf::new(Header::new(Format::Parallel, Timing::Metrical(u15::new(PPQ as u16))));
    let meta = |m| event(0, TrackEventKind::Meta(m));
    smf.tracks.push(vec![
        meta(MetaMessage::Tempo(u24::new(60_000_000 / song.bpm))),
        meta(MetaMessage::TimeSignature(4, 2, 24, 8)),
        meta(MetaMessage::KeySignature(song.key_sf, song.minor)),
        meta(MetaMessage::EndOfTrack),
    ]);
    for (channel, events) in song.tracks.iter().enumerate() {
        smf.tracks.push(track(channel as u8, events.clone()));
    }
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).expect("writing MIDI to memory cannot fail");
    bytes
}

/// The scene's length in samples: its shots' whole frames.
pub(crate) fn scene_samples(job: &Job) -> Result<u64, ExecError> {
    let mut frames = 0;
    for shot in inputs_with(job, "shot:") {
        let seconds = shot
            .duration
            .ok_or_else(|| fail(job, format!("input {} has no duration", shot.role)))?;
        frames += timing::frames(seconds);
    }
    match frames {
        0 => Err(fail(job, "the scene has no frames")),
        f => Ok(f * timing::SAMPLES_PER_FRAME),
    }
}

/// Resample, pad/cut to exactly `samples`, fade in and out (all in samples).
pub(crate) fn fit_filter(samples: u64) -> String {
    let fade_in = FADE_IN.min(samples / 4);
    let fade_out = FADE_OUT.min(samples / 3);
    format!(
        "aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,apad=whole_len={samples},\
         atrim=end_sample={samples},afade=t=in:ss=0:ns={fade_in},afade=t=out:ss={}:ns={fade_out}",
        samples - fade_out
    )
}

/// The gain that brings `input_i` (LUFS) to [`TARGET_LUFS`]; 0 for silence.
pub(crate) fn gain_db(input_i: f64) -> f64 {
    if input_i.is_finite() && input_i > -70.0 {
        (TARGET_LUFS - input_i).min(MAX_GAIN_DB)
    } else {
        0.0
    }
}

/// `input_i` from loudnorm's JSON report (the last `{…}` on stderr).
pub(crate) fn parse_input_i(stderr: &str) -> Result<f64, String> {
    let (start, end) = (stderr.rfind('{'), stderr.rfind('}'));
    let json = match (start, end) {
        (Some(s), Some(e)) if s < e => &stderr[s..=e],
        _ => return Err("loudnorm printed no report".into()),
    };
    let v: Value = serde_json::from_str(json).map_err(|e| format!("loudnorm report unreadable ({e})"))?;
    let text = v
        .get("input_i")
        .and_then(Value::as_str)
        .ok_or("loudnorm report has no input_i")?;
    match text.trim() {
        "-inf" => Ok(f64::NEG_INFINITY),
        t => t.parse().map_err(|_| format!("loudnorm input_i `{t}` is not a number")),
    }
}

/// Compose and render the scene's music; stereo f32 WAV of the scene's exact length.
pub async fn procedural(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    check_rate(job)?;
    let mood_word = param_str(job, "mood");
    let mood = Mood::parse(mood_word).ok_or_else(|| fail(job, format!("no music for mood `{mood_word}`")))?;
    let samples = scene_samples(job)?;
    let var = variation(param_str(job, "scene"), param_str(job, "time_of_day"));
    let song = compose(&style(mood), &var, samples);
    let raw = render(job, &smf_bytes(&song), cancel).await?;
    bed(job, &raw, samples, cancel).await
}

/// The scene's music bed from any decodable audio `raw`: resampled, padded
/// or cut to exactly `samples`, faded ([`fit_filter`]) and brought to
/// [`TARGET_LUFS`] with one linear gain; stereo f32 WAV. Every music engine
/// ends here, so `music_volume` in the mix means the same for all of them.
pub(crate) async fn bed(
    job: &Job,
    raw: &Utf8Path,
    samples: u64,
    cancel: &CancellationToken,
) -> Result<Produced, ExecError> {
    let fit = fit_filter(samples);
    let gain = gain_db(measure_loudness(job, raw, &fit, cancel).await?);
    let wav = scratch(job, "music.wav");
    let finish = ffmpeg(job)?
        .args([
            "-i",
            raw.as_str(),
            "-af",
            &format!("{fit},volume={gain:.2}dB:precision=float"),
        ])
        .args(["-c:a", "pcm_f32le", "-fflags", "+bitexact", wav.as_str()]);
    exec(job, &finish, cancel).await?;
    produced(&wav, "ffmpeg")?;
    let got = wav_samples(job, &wav)?;
    if got != samples {
        return Err(fail(job, format!("music has {got} samples, the scene {samples}")));
    }
    Ok(Produced {
        files: vec![("wav".into(), wav)],
        duration: Some(samples as f64 / timing::RATE as f64),
        metadata: crate::exec::Metadata::new(),
    })
}

pub(crate) fn fail(job: &Job, what: impl std::fmt::Display) -> ExecError {
    ExecError::Permanent(format!("{}: {what}", job.node.id))
}

/// Render MIDI bytes with fluidsynth: 48 kHz stereo float (no dither, so
/// the samples are the same on every run), longer than the song.
async fn render(job: &Job, midi: &[u8], cancel: &CancellationToken) -> Result<Utf8PathBuf, ExecError> {
    let fluidsynth = tool(job, Tool::Fluidsynth)?;
    // The rule's `soundfont: {file: PATH}`, else the system's GM soundfont.
    let soundfont = match asset(job, "soundfont")? {
        Some(path) => path,
        None => tool(job, Tool::Soundfont)?.clone(),
    };
    check_soundfont(job, &soundfont)?;
    let song = scratch(job, "song.mid");
    std::fs::write(&song, midi).map_err(|e| fail(job, format!("writing {song}: {e}")))?;
    let raw = scratch(job, "music_raw.wav");
    let cmd = Cmd::new(fluidsynth.as_str())
        .args(["-ni", "-q", "-g", "1.0", "-r", "48000", "-O", "float", "-T", "wav"])
        .args(["-F", raw.as_str(), soundfont.as_str(), song.as_str()]);
    exec(job, &cmd, cancel).await?;
    produced(&raw, "fluidsynth")?;
    Ok(raw)
}

/// fluidsynth skips a file that is not a SoundFont and plays its default
/// one instead, which the key does not describe: refuse it first.
fn check_soundfont(job: &Job, path: &Utf8Path) -> Result<(), ExecError> {
    use std::io::Read;
    let mut head = [0u8; 12];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| fail(job, format!("reading the soundfont {path}: {e}")))?;
    if &head[..4] != b"RIFF" || &head[8..] != b"sfbk" {
        return Err(fail(job, format!("{path} is not a SoundFont 2 file (.sf2)")));
    }
    Ok(())
}

/// Integrated loudness (LUFS) of `raw` after `fit` (loudnorm's first pass).
async fn measure_loudness(job: &Job, raw: &Utf8Path, fit: &str, cancel: &CancellationToken) -> Result<f64, ExecError> {
    let program = tool(job, Tool::Ffmpeg)?;
    // loudnorm reports at log level info, so not the usual `-v error` prefix.
    let cmd = Cmd::new(program.as_str())
        .args(["-hide_banner", "-nostdin", "-nostats", "-i", raw.as_str()])
        .args(["-af", &format!("{fit},{METER}"), "-f", "null", "-"]);
    let out = exec(job, &cmd, cancel).await?;
    parse_input_i(&String::from_utf8_lossy(&out.stderr)).map_err(|e| fail(job, format!("measuring the music: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(song: &Song, track: usize) -> Vec<(u32, u8, u8)> {
        song.tracks[track]
            .iter()
            .filter_map(|&(t, e)| match e {
                Ev::On(k, v) => Some((t, k, v)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_mood_has_a_playable_style() {
        for word in Mood::WORDS {
            let s = style(Mood::parse(word).unwrap());
            assert!((50..=160).contains(&s.bpm), "{word}");
            assert!(s.programs.iter().all(|&p| p < 128), "{word}");
            for deg in s.progression {
                let chord = triad(&s, deg);
                assert!(chord[0] >= 24 + 12 && chord[2] + 24 <= 127, "{word}: {chord:?}");
            }
        }
    }

    #[test]
    fn triads_are_diatonic() {
        let c = style(Mood::Calm);
        assert_eq!(triad(&c, 0), [60, 64, 67]); // C E G
        assert_eq!(triad(&c, 5), [69, 72, 76]); // vi: A C E
        let eerie = style(Mood::Eerie);
        assert_eq!(triad(&eerie, 1), [61, 64, 67]); // ii° of B minor: C# E G
        let hopeful = style(Mood::Hopeful);
        assert_eq!(triad(&hopeful, 3), [67, 71, 74]); // IV of D: G B D
    }

    #[test]
    fn song_covers_the_scene_plus_a_bar() {
        // 10 s at 72 bpm: a bar is 3.333 s → 3 bars + 1 spare.
        assert_eq!(bars_for(480_000, 72), 4);
        assert_eq!(bars_for(480_001, 72), 5);
        let var = variation("ep01/s01", "day");
        let song = compose(&style(Mood::Calm), &var, 480_000);
        assert_eq!(song.bpm, 72);
        assert_eq!(notes(&song, 0).len(), 4 * 3, "one triad per bar");
        assert_eq!(notes(&song, 1).len(), 4 * 8, "eighth-note arpeggio");
        assert_eq!(notes(&song, 2).len(), 4 * 2, "half-note bass");
        let first_bass = notes(&song, 2)[0];
        assert_eq!(first_bass, (0, 36, 80));
        for (i, t) in song.tracks.iter().enumerate() {
            let ons = t.iter().filter(|(_, e)| matches!(e, Ev::On(..))).count();
            let offs = t.iter().filter(|(_, e)| matches!(e, Ev::Off(..))).count();
            assert_eq!(ons, offs);
            assert_eq!(t[0].1, Ev::Program(style(Mood::Calm).programs[i]));
        }
    }

    #[test]
    fn moods_set_tempo_and_instruments_in_the_file() {
        let var = variation("ep01/s02", "night");
        assert_eq!((var.tempo_pct, var.lead_vel), (92, -8));
        let song = compose(&style(Mood::Action), &var, 96_000);
        assert_eq!(song.bpm, 140 * 92 / 100);
        let bytes = smf_bytes(&song);
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.tracks.len(), 4);
        assert!(
            smf.tracks[0]
                .iter()
                .any(|e| e.kind == TrackEventKind::Meta(MetaMessage::Tempo(u24::new(60_000_000 / 128))))
        );
        assert!(
            smf.tracks[0]
                .iter()
                .any(|e| e.kind == TrackEventKind::Meta(MetaMessage::KeySignature(1, true)))
        );
        let programs: Vec<u8> = smf.tracks[1..]
            .iter()
            .map(|t| match t[0].kind {
                TrackEventKind::Midi {
                    message: MidiMessage::ProgramChange { program },
                    ..
                } => program.as_int(),
                _ => panic!("a track starts with its program"),
            })
            .collect();
        assert_eq!(programs, [50, 30, 38]);
        assert!(
            smf.tracks
                .iter()
                .all(|t| t.last().unwrap().kind == TrackEventKind::Meta(MetaMessage::EndOfTrack))
        );
    }

    #[test]
    fn note_offs_come_before_note_ons_at_one_tick() {
        let song = compose(&style(Mood::Joyful), &variation("x", "day"), 200_000);
        let events = track(0, song.tracks[0].clone());
        let mut tick = 0;
        let mut sounding = std::collections::BTreeSet::new();
        for e in &events {
            tick += e.delta.as_int();
            if let TrackEventKind::Midi { message, .. } = e.kind {
                match message {
                    MidiMessage::NoteOn { key, .. } => assert!(sounding.insert(key.as_int()), "retrigger at {tick}"),
                    MidiMessage::NoteOff { key, .. } => assert!(sounding.remove(&key.as_int())),
                    _ => {}
                }
            }
        }
        assert!(sounding.is_empty());
    }

    #[test]
    fn scenes_vary_deterministically() {
        let a = variation("ep01/s01", "day");
        assert_eq!(a, variation("ep01/s01", "day"));
        let all: std::collections::BTreeSet<_> = (1..=12)
            .map(|i| {
                let v = variation(&format!("ep01/s{i:02}"), "day");
                (v.arpeggio, v.bass_fifth, v.inversion)
            })
            .collect();
        assert!(all.len() > 3, "paths should spread over the variations: {all:?}");
        let s = style(Mood::Calm);
        assert_eq!(
            smf_bytes(&compose(&s, &a, 300_000)),
            smf_bytes(&compose(&s, &a, 300_000))
        );
        assert_eq!(fnv1a(""), 0x811c_9dc5);
        assert_eq!(fnv1a("a"), 0xe40c_292c);
    }

    #[test]
    fn fit_is_exact_in_samples() {
        assert_eq!(
            fit_filter(480_000),
            "aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,apad=whole_len=480000,\
             atrim=end_sample=480000,afade=t=in:ss=0:ns=24000,afade=t=out:ss=408000:ns=72000"
        );
        assert!(fit_filter(48_000).ends_with("afade=t=in:ss=0:ns=12000,afade=t=out:ss=32000:ns=16000"));
    }

    #[test]
    fn loudness_report_parses() {
        let stderr = "[Parsed_loudnorm_1 @ 0x5] \n{\n\t\"input_i\" : \"-27.61\",\n\t\"input_tp\" : \"-12.80\"\n}\n";
        assert_eq!(parse_input_i(stderr), Ok(-27.61));
        assert_eq!(parse_input_i("{\"input_i\" : \"-inf\"}"), Ok(f64::NEG_INFINITY));
        assert!(parse_input_i("nothing").is_err());
        assert!((gain_db(-27.61) - 7.61).abs() < 1e-9);
        assert_eq!(gain_db(f64::NEG_INFINITY), 0.0);
        assert_eq!(gain_db(-60.0), MAX_GAIN_DB);
    }
}
