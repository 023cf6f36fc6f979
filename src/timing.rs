//! The animatic's clock: frames at 30 fps, samples at 48 kHz, never floats.
//!
//! One frame is exactly 1600 samples. A shot lasts its written duration or,
//! when its dialogue needs longer, a lead-in, the lines with gaps between
//! them, and a tail. Every stage that places audio or subtitles uses these
//! functions, so a voice line starts where its subtitle does.

pub const FPS: u64 = 30;
pub const RATE: u64 = 48_000;
pub const SAMPLES_PER_FRAME: u64 = RATE / FPS;
/// Silence before the first line of a shot.
pub const LEAD_FRAMES: u64 = 15;
/// Silence after the last line of a shot.
pub const TAIL_FRAMES: u64 = 15;
/// Silence between two lines of one shot.
pub const GAP_FRAMES: u64 = 9;

/// Seconds → whole frames (nearest).
pub fn frames(seconds: f64) -> u64 {
    (seconds * FPS as f64).round().max(0.0) as u64
}

/// Seconds of audio → the frames that hold it (rounded up).
pub fn frames_to_hold(seconds: f64) -> u64 {
    (seconds * FPS as f64 - 1e-6).ceil().max(0.0) as u64
}

pub fn seconds(frames: u64) -> f64 {
    frames as f64 / FPS as f64
}

/// Where each line of a shot starts, in frames from the shot's start.
pub fn line_starts(voices: &[f64]) -> Vec<u64> {
    let mut at = LEAD_FRAMES;
    voices
        .iter()
        .map(|v| {
            let start = at;
            at += frames_to_hold(*v) + GAP_FRAMES;
            start
        })
        .collect()
}

/// A shot's length in frames: as written, or stretched to fit its lines.
pub fn shot_frames(written: f64, voices: &[f64]) -> u64 {
    let written = frames(written).max(1);
    match voices {
        [] => written,
        _ => {
            let speech: u64 = voices.iter().map(|v| frames_to_hold(*v)).sum();
            written.max(LEAD_FRAMES + speech + GAP_FRAMES * (voices.len() as u64 - 1) + TAIL_FRAMES)
        }
    }
}

/// The spoken tracks of a shot from its voice inputs, `(role, seconds)` in
/// line order: `voice:<n>` are the default language's lines, `<lang>:voice:<n>`
/// a dub's. Returns the default track, then one per dub language (by code),
/// in which a line not written in the dub keeps the default's voice.
pub fn speech_tracks(voices: &[(&str, f64)]) -> Vec<Vec<f64>> {
    let default: Vec<(&str, f64)> = voices
        .iter()
        .filter_map(|(role, d)| Some((role.strip_prefix("voice:")?, *d)))
        .collect();
    let mut dubs: std::collections::BTreeMap<&str, Vec<(&str, f64)>> = std::collections::BTreeMap::new();
    for (role, d) in voices {
        if let Some((lang, n)) = role.split_once(":voice:") {
            dubs.entry(lang).or_default().push((n, *d));
        }
    }
    let mut tracks = vec![default.iter().map(|(_, d)| *d).collect::<Vec<f64>>()];
    for own in dubs.values() {
        tracks.push(
            default
                .iter()
                .map(|(n, d)| own.iter().find(|(m, _)| m == n).map_or(*d, |(_, o)| *o))
                .collect(),
        );
    }
    tracks
}

/// A shot's length in frames with several spoken tracks (a dub): each
/// stretches it to fit its own lines, and the longest decides, so every
/// track fits the one picture. One track: [`shot_frames`].
pub fn tracks_frames(written: f64, tracks: &[Vec<f64>]) -> u64 {
    tracks
        .iter()
        .map(|t| shot_frames(written, t))
        .max()
        .unwrap_or_else(|| shot_frames(written, &[]))
}

/// The fewest frames a shot can last: as written, or its dialogue's lead-in,
/// gaps and tail around `lines` lines of one frame each. Known before any
/// voice is made, so the loader can check scene lengths.
pub fn least_shot_frames(written: f64, lines: usize) -> u64 {
    shot_frames(written, &vec![1.0 / FPS as f64; lines])
}

/// The frames scene `index` of `scenes` must have: at least the overlap of
/// the transition on each of its sides, and one.
pub fn scene_needs(index: usize, scenes: usize, overlap: u64) -> u64 {
    let sides = u64::from(index > 0) + u64::from(index + 1 < scenes);
    overlap.saturating_mul(sides).max(1)
}

/// Where each scene starts in the episode, in frames, given scene lengths and
/// the overlap of each transition (`overlaps[i]` joins scene i and i+1).
pub fn scene_starts(lengths: &[u64], overlaps: &[u64]) -> Vec<u64> {
    let mut starts = Vec::with_capacity(lengths.len());
    let mut at = 0u64;
    for (i, len) in lengths.iter().enumerate() {
        starts.push(at);
        at = (at + len).saturating_sub(overlaps.get(i).copied().unwrap_or(0));
    }
    starts
}

/// The episode's length: the scenes minus the transitions' overlaps.
pub fn episode_frames(lengths: &[u64], overlaps: &[u64]) -> u64 {
    let total: u64 = lengths.iter().sum();
    total - overlaps.iter().take(lengths.len().saturating_sub(1)).sum::<u64>()
}

/// How many shots from the start of `lengths` a window of `frames` frames
/// at the start reaches: the fewest whose lengths add up to `frames` (all
/// of them when they add up to less), none for an empty window. Given the
/// shots' least lengths ([`least_shot_frames`]) it bounds the shots the
/// window can touch once voices stretch them: they only grow. For a window
/// at the end, pass the lengths reversed.
pub fn reach(lengths: &[u64], frames: u64) -> usize {
    if frames == 0 {
        return 0;
    }
    let mut sum = 0u64;
    for (i, len) in lengths.iter().enumerate() {
        sum += len;
        if sum >= frames {
            return i + 1;
        }
    }
    lengths.len()
}

/// The frames a shot of `len` frames loses to its scene's transitions:
/// `(head, tail)`, the first `head` frames under the transition into the
/// scene (`overlap_in` frames from the scene's start, `before` frames of
/// shots before this one) and the last `tail` under the one out of it
/// (`overlap_out` frames before the scene's end, `after` frames of shots
/// after it). A shot inside a transition loses all its frames (as head or
/// tail: whichever transition covers it).
/// `None` when the two transitions overlap in this shot: the scene is
/// shorter than its transitions.
pub fn shot_cut(before: u64, len: u64, after: u64, overlap_in: u64, overlap_out: u64) -> Option<(u64, u64)> {
    let head = overlap_in.saturating_sub(before);
    let tail = overlap_out.saturating_sub(after);
    if head > 0 && tail > 0 && head + tail > len {
        return None;
    }
    let head = head.min(len);
    Some((head, tail.min(len - head)))
}

/// [`shot_cut`] for every shot of a scene of shots `lengths` long, between
/// a transition of `overlap_in` frames into it and one of `overlap_out`
/// frames out of it. What the segments keep and the transitions take add up
/// to the scene: the transitions cover exactly `overlap_in` and
/// `overlap_out` frames. `None` when the scene is shorter than the two.
pub fn shot_cuts(lengths: &[u64], overlap_in: u64, overlap_out: u64) -> Option<Vec<(u64, u64)>> {
    let total: u64 = lengths.iter().sum();
    if overlap_in + overlap_out > total {
        return None;
    }
    let mut before = 0;
    lengths
        .iter()
        .map(|&len| {
            let after = total - before - len;
            let cut = shot_cut(before, len, after, overlap_in, overlap_out);
            before += len;
            cut
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_reach_the_shots_they_overlap() {
        assert_eq!(reach(&[60, 90], 12), 1);
        assert_eq!(reach(&[12, 90], 12), 1, "exactly the first shot");
        assert_eq!(reach(&[5, 4, 90], 12), 3, "a window over three shots");
        assert_eq!(reach(&[5, 4], 12), 2, "a scene shorter than the window: all of it");
        assert_eq!(reach(&[60, 90], 0), 0, "no transition, no shot");
        assert_eq!(reach(&[], 12), 0);
    }

    #[test]
    fn shots_lose_the_frames_their_transitions_take() {
        // One long shot between two transitions: both ends.
        assert_eq!(shot_cuts(&[100], 12, 9), Some(vec![(12, 9)]));
        // The first scene (no transition in), the last (none out), a lone one.
        assert_eq!(shot_cuts(&[60, 90], 0, 12), Some(vec![(0, 0), (0, 12)]));
        assert_eq!(shot_cuts(&[60, 90], 12, 0), Some(vec![(12, 0), (0, 0)]));
        assert_eq!(shot_cuts(&[60, 90], 0, 0), Some(vec![(0, 0), (0, 0)]));
        // A last shot shorter than the transition out: all of it goes, and
        // the rest from the shot before; the same at the start.
        assert_eq!(shot_cuts(&[50, 10], 0, 12), Some(vec![(0, 2), (0, 10)]));
        assert_eq!(shot_cuts(&[5, 40], 12, 0), Some(vec![(5, 0), (7, 0)]));
        // A transition over three shots, the first two wholly inside; one
        // out over the last two.
        assert_eq!(
            shot_cuts(&[4, 5, 30, 3, 3], 12, 8),
            Some(vec![(4, 0), (5, 0), (3, 2), (0, 3), (0, 3)])
        );
        // Exactly a transition long: the shot is all transition.
        assert_eq!(shot_cuts(&[12, 30], 12, 0), Some(vec![(12, 0), (0, 0)]));
        // The two transitions meet: nothing of the scene's own is left.
        assert_eq!(shot_cuts(&[10, 14], 12, 12), Some(vec![(10, 0), (2, 12)]));
        assert_eq!(shot_cuts(&[24], 12, 12), Some(vec![(12, 12)]));
        // Shorter than its transitions: refused, and by the shot where they
        // overlap.
        assert_eq!(shot_cuts(&[10, 13], 12, 12), None);
        assert_eq!(shot_cut(10, 13, 0, 12, 12), None);
        assert_eq!(shot_cuts(&[23], 12, 12), None);
        // What the segments keep plus the transitions is the scene.
        for (lengths, i, o) in [
            (&[4u64, 5, 30, 3, 3][..], 12, 8),
            (&[50, 10], 0, 12),
            (&[7, 7, 7], 12, 9),
        ] {
            let cuts = shot_cuts(lengths, i, o).unwrap();
            let kept: u64 = lengths.iter().zip(&cuts).map(|(l, (h, t))| l - h - t).sum();
            assert_eq!(kept + i + o, lengths.iter().sum::<u64>(), "{lengths:?}");
            let heads: u64 = cuts.iter().map(|c| c.0).sum();
            let tails: u64 = cuts.iter().map(|c| c.1).sum();
            assert_eq!((heads, tails), (i, o), "{lengths:?}");
        }
    }

    #[test]
    fn shots_stretch_to_fit_dialogue() {
        assert_eq!(shot_frames(4.0, &[]), 120);
        assert_eq!(shot_frames(4.0, &[1.0]), 120, "fits: 15 + 30 + 15 < 120");
        assert_eq!(shot_frames(2.0, &[2.5]), 15 + 75 + 15);
        assert_eq!(shot_frames(2.0, &[1.0, 1.0]), 15 + 30 + 9 + 30 + 15);
        assert_eq!(line_starts(&[1.01, 2.0]), vec![15, 15 + 31 + 9]);
    }

    #[test]
    fn the_longest_track_decides_a_dubbed_shot() {
        let roles = [("voice:1", 1.0), ("voice:2", 1.0), ("ja:voice:2", 3.0)];
        let tracks = speech_tracks(&roles);
        assert_eq!(
            tracks,
            vec![vec![1.0, 1.0], vec![1.0, 3.0]],
            "line 1 keeps the default voice"
        );
        assert_eq!(tracks_frames(2.0, &tracks), 15 + 30 + 9 + 90 + 15);
        // Without a dub: exactly the one-track length, so keys stay put.
        let one = speech_tracks(&roles[..2]);
        assert_eq!(tracks_frames(2.0, &one), shot_frames(2.0, &[1.0, 1.0]));
        // A shorter dub changes nothing.
        let short = speech_tracks(&[("voice:1", 2.0), ("ja:voice:1", 0.5)]);
        assert_eq!(tracks_frames(1.0, &short), shot_frames(1.0, &[2.0]));
        assert_eq!(tracks_frames(2.0, &speech_tracks(&[])), 60);
    }

    #[test]
    fn least_lengths_are_known_before_the_voices() {
        assert_eq!(least_shot_frames(2.0, 0), 60);
        assert_eq!(least_shot_frames(0.01, 0), 1, "never empty");
        assert_eq!(least_shot_frames(0.5, 1), 15 + 1 + 15);
        assert_eq!(least_shot_frames(0.5, 2), 15 + 1 + 9 + 1 + 15);
        for voice in [0.001, 0.4, 3.0] {
            assert!(shot_frames(0.5, &[voice, voice]) >= least_shot_frames(0.5, 2));
        }
        assert_eq!(scene_needs(0, 1, 12), 1);
        assert_eq!(scene_needs(0, 3, 12), 12);
        assert_eq!(scene_needs(1, 3, 12), 24);
        assert_eq!(scene_needs(2, 3, 12), 12);
    }

    #[test]
    fn scenes_overlap_by_their_transitions() {
        assert_eq!(scene_starts(&[100, 200, 50], &[12, 9]), vec![0, 88, 279]);
        assert_eq!(episode_frames(&[100, 200, 50], &[12, 9]), 329);
        assert_eq!(episode_frames(&[100], &[]), 100);
    }
}
