//! `library_music`: the user's own track for the scene's mood (studio.yaml's
//! `music_library`), cut or looped with crossfades to the scene's length and
//! normalized like the procedural bed.
//!
//! The graph picks the track (`MusicLibrary::pick`) and puts it in the
//! node's `track` param as `{file, hash}`, so the key holds that one file by
//! content. Here it is decoded to 48 kHz stereo float; a track shorter than
//! the scene is laid end to start again as often as needed, each join an
//! equal-power crossfade (`acrossfade`, `qsin` both ways: no click, no dip
//! in level on music that does not line up); then [`super::bed`] cuts it to
//! exactly the scene's samples, fades it and brings it to −20 LUFS.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{bed, check_rate, fail, scene_samples, wav_samples};
use crate::exec::{ExecError, Job, Produced};
use crate::stages::{asset, exec, ffmpeg, param_str, produced, scratch};
use crate::timing;

/// The longest crossfade between two passes of a track (samples).
pub const CROSSFADE: u64 = 2 * timing::RATE;
/// The shortest track that may loop (samples): half a second.
pub const MIN_LOOP: u64 = timing::RATE / 2;
/// The most passes of one track in a scene.
pub const MAX_PASSES: u64 = 200;

/// How a track of `track` samples covers a scene of `scene` samples:
/// `(passes, crossfade)`; one pass when it is long enough.
pub(crate) fn plan(track: u64, scene: u64) -> Result<(u64, u64), String> {
    if track >= scene {
        return Ok((1, 0));
    }
    if track < MIN_LOOP {
        return Err(format!(
            "the track is {:.2} s long, too short to loop (at least {:.1} s)",
            track as f64 / timing::RATE as f64,
            MIN_LOOP as f64 / timing::RATE as f64
        ));
    }
    let fade = CROSSFADE.min(track / 4);
    // Each pass after the first adds `track - fade`.
    let passes = 1 + (scene - track).div_ceil(track - fade);
    if passes > MAX_PASSES {
        return Err(format!(
            "the track would play {passes} times to fill the scene (at most {MAX_PASSES}); use a longer track"
        ));
    }
    Ok((passes, fade))
}

/// The filtergraph joining `passes` inputs with `fade`-sample crossfades, into `[out]`.
pub(crate) fn loop_graph(passes: u64, fade: u64) -> String {
    let mut graph = Vec::new();
    let mut last = "0:a".to_string();
    for i in 1..passes {
        let next = if i + 1 == passes {
            "out".to_string()
        } else {
            format!("x{i}")
        };
        graph.push(format!(
            "[{last}][{i}:a]acrossfade=ns={fade}:o=1:c1=qsin:c2=qsin[{next}]"
        ));
        last = next;
    }
    graph.join(";")
}

/// The scene's music from the library track its node names.
pub async fn library_music(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    check_rate(job)?;
    let samples = scene_samples(job)?;
    let file = crate::stages::param(job, "track")
        .and_then(crate::project::assets::file_of)
        .map(|(f, _)| f.to_string());
    let Some(track) = asset(job, "track")? else {
        return Err(fail(
            job,
            format!(
                "no track in studio.yaml's `music_library` is tagged `{}`; tag one with this mood (or let the rule fall back to `procedural`)",
                param_str(job, "mood")
            ),
        ));
    };
    // Decoded, at most as long as the scene: a long track is read only so far.
    let source = scratch(job, "track.wav");
    let decode = ffmpeg(job)?
        .args(["-i", track.as_str(), "-vn", "-af"])
        .arg(format!(
            "aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,atrim=end_sample={samples}"
        ))
        .args(["-c:a", "pcm_f32le", "-fflags", "+bitexact", source.as_str()]);
    exec(job, &decode, cancel)
        .await
        .map_err(|e| fail(job, format!("{track} does not decode as audio: {e}")))?;
    produced(&source, "ffmpeg")?;
    let have = wav_samples(job, &source)?;
    let (passes, fade) = plan(have, samples).map_err(|e| fail(job, format!("{track}: {e}")))?;
    let raw = if passes == 1 {
        source
    } else {
        let looped = scratch(job, "looped.wav");
        let mut cmd = ffmpeg(job)?;
        for _ in 0..passes {
            cmd = cmd.args(["-i", source.as_str()]);
        }
        let cmd = cmd
            .args(["-filter_complex", &loop_graph(passes, fade), "-map", "[out]"])
            .args(["-c:a", "pcm_f32le", "-fflags", "+bitexact", looped.as_str()]);
        exec(job, &cmd, cancel).await?;
        produced(&looped, "ffmpeg")?;
        looped
    };
    let mut made = bed(job, &raw, samples, cancel).await?;
    made.metadata.insert("passes".into(), json!(passes));
    made.metadata.insert("track".into(), json!(file));
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_track_loops_with_crossfades_to_cover_the_scene() {
        let s = timing::RATE;
        assert_eq!(plan(10 * s, 10 * s), Ok((1, 0)));
        assert_eq!(plan(30 * s, 10 * s), Ok((1, 0)));
        // 4 s track, 10 s scene: fade 1 s (a quarter), each pass adds 3 s.
        assert_eq!(plan(4 * s, 10 * s), Ok((3, s)));
        // 20 s track, 50 s scene: fade 2 s, each pass adds 18 s.
        assert_eq!(plan(20 * s, 50 * s), Ok((3, 2 * s)));
        for (track, scene) in [(4 * s, 10 * s), (s, 61 * s), (20 * s, 50 * s), (s / 2, 3 * s)] {
            let (passes, fade) = plan(track, scene).unwrap();
            let covered = track + (passes - 1) * (track - fade);
            assert!(covered >= scene, "{track} {scene}");
            assert!(covered - (track - fade) < scene, "no pass too many");
        }
        assert!(plan(s / 4, 10 * s).unwrap_err().contains("too short"));
        assert!(plan(s, 600 * s).unwrap_err().contains("longer track"));
    }

    #[test]
    fn the_loop_graph_chains_the_passes() {
        assert_eq!(
            loop_graph(3, 100),
            "[0:a][1:a]acrossfade=ns=100:o=1:c1=qsin:c2=qsin[x1];[x1][2:a]acrossfade=ns=100:o=1:c1=qsin:c2=qsin[out]"
        );
        assert_eq!(loop_graph(2, 5), "[0:a][1:a]acrossfade=ns=5:o=1:c1=qsin:c2=qsin[out]");
    }
}
