//! The ComfyUI engines' run functions: bind the node's parameters into its
//! engine's workflow (the rules' `workflows:` map, [`crate::project::workflows`];
//! the prompt text is the node's `prompt` param, [`crate::graph::prompt`]),
//! upload its source image or video, queue it on the host the scheduler
//! picked ([`crate::exec::comfyui`]), fetch the outputs, check they decode
//! and turn them into what the node kind's consumers read (PNG for images,
//! 30 fps lossless H.264 of the shot's length (the intermediates' codec) for videos). `pool_select` (the shot's
//! source image: the continuity frame, else the first character's
//! reference) is here too.

use std::sync::Arc;

use camino::Utf8PathBuf;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{exec, ffmpeg, input, inputs_with, param, param_f64, produced, scratch};
use crate::exec::comfyui::{Client, Request};
use crate::exec::http::Service;
use crate::exec::{ExecError, Job, Metadata, Produced};
use crate::kind::NodeKind;
use crate::timing;

/// Largest output file fetched.
const MAX_OUTPUT_BYTES: u64 = 2 << 30;

fn permanent(msg: impl Into<String>) -> ExecError {
    ExecError::Permanent(msg.into())
}

/// The job's host client.
fn service(job: &Job) -> Result<Arc<Service>, ExecError> {
    job.service
        .clone()
        .ok_or_else(|| permanent(format!("{}: no ComfyUI host was given to the job", job.node.id)))
}

/// A JSON object.
type Object = serde_json::Map<String, Value>;

/// The engine's workflow file, its nodes (checked against the hash in the
/// key) and its bindings.
fn workflow(job: &Job) -> Result<(String, Object, Object), ExecError> {
    let engine = job.engine.name;
    let entry = param(job, "workflows").and_then(|w| w.get(engine)).ok_or_else(|| {
        permanent(format!(
            "the rule for `{}` has no `workflows: {{{engine}: {{file, bind}}}}` entry",
            job.node.kind
        ))
    })?;
    let (file, hash) = crate::project::assets::file_of(&entry["workflow"])
        .ok_or_else(|| permanent(format!("`workflows.{engine}` names no resolved file")))?;
    let path = job.root.join(file);
    let text = std::fs::read(&path).map_err(|e| permanent(format!("cannot read {file}: {e}")))?;
    if blake3::hash(&text).to_hex().as_str() != hash {
        return Err(permanent(format!(
            "{file} changed since the project was loaded; build again"
        )));
    }
    let prompt = crate::project::workflows::parse(&text).map_err(|e| permanent(format!("workflow {file} {e}")))?;
    let bind = entry["bind"].as_object().cloned().unwrap_or_default();
    Ok((file.to_string(), prompt, bind))
}

/// The style's value of `key` (the project's `style:` in character params).
fn style<'a>(job: &'a Job, key: &str) -> Option<&'a Value> {
    param(job, key).or_else(|| param(job, "style").and_then(|s| s.get(key)))
}

/// Frames for a video model: the shot's length at `fps`, as 4k+1 (Wan and
/// LTX take lengths of that form).
fn model_frames(seconds: f64, fps: f64) -> u64 {
    let n = (seconds * fps).round().max(1.0) as u64;
    n.div_ceil(4) * 4 + 1
}

/// The shot's length in seconds: the node's `duration`, else the media
/// length the graph gave it (a refined video's is its shot's).
fn shot_seconds(job: &Job) -> f64 {
    param_f64(job, "duration", job.node.media_seconds)
}

/// Longest and shortest video FramePack's sampler takes
/// (`total_second_length`, kijai/ComfyUI-FramePackWrapper nodes.py at
/// a7c4b704: FLOAT min 0.1, max 120, step 0.1).
const SECONDS_RANGE: (f64, f64) = (0.1, 120.0);

/// `seconds` for a video node: the shot's length, within
/// [`SECONDS_RANGE`], in the node's 0.1 s steps, never shorter than the
/// shot. With FramePack's `latent_window_size` (`window`) it is rounded up
/// to whole sections: the sampler makes `max(round(s·30 / (4·window)), 1)`
/// sections of `4·window` frames at 30 fps, so a length rounded to the
/// nearest section could end before the shot does.
fn model_seconds(shot: f64, window: Option<u64>) -> f64 {
    let (min, max) = SECONDS_RANGE;
    let shot = if shot.is_finite() { shot.clamp(min, max) } else { min };
    let seconds = match window.filter(|w| *w > 0) {
        Some(w) => {
            let section = (4 * w) as f64 / 30.0;
            let most = (max / section).floor().max(1.0);
            ((shot / section - 1e-9).ceil().clamp(1.0, most)) * section
        }
        None => shot,
    };
    // Up to the next 0.1 s (the sections' count is unchanged: a section is
    // at least 4/30 s, and this moves the length by under 0.1 s).
    ((seconds * 10.0 - 1e-6).ceil() / 10.0).clamp(min, max)
}

/// The value of bound parameter `name` for this job; `None`: leave the
/// workflow's own value. `target` is the node the value goes to.
async fn value(job: &Job, client: &Client, name: &str, target: &Value) -> Result<Option<Value>, ExecError> {
    let fps = param_f64(job, "model_fps", 16.0);
    Ok(match name {
        "prompt" => param(job, "prompt").cloned(),
        "seconds" => Some(json!(model_seconds(
            shot_seconds(job),
            target["inputs"]["latent_window_size"].as_u64()
        ))),
        "negative" => param(job, "negative_prompt").cloned(),
        "seed" => job.node.seed.map(|s| json!(s)),
        "width" | "height" | "steps" | "cfg" | "sampler" | "checkpoint" | "denoise" => style(
            job,
            match name {
                "sampler" => "sampler",
                n => n,
            },
        )
        .cloned(),
        "frames" => Some(json!(model_frames(shot_seconds(job), fps))),
        "fps" => Some(json!(fps)),
        "batch" => param(job, "candidates").cloned(),
        "lora" => lora(job).map(|l| json!(l)),
        "lora_strength" => param(job, "lora_strength").cloned(),
        "prefix" => Some(json!(format!("studio/{}", job.node.kind))),
        "source_image" => match source(job, &["image", "continuity"], "ref:") {
            Some(path) => Some(json!(upload(job, client, &path, "png").await?)),
            None => None,
        },
        "source_video" => match source(job, &["raw", "refined", "video"], "") {
            Some(path) => Some(json!(upload(job, client, &path, "mkv").await?)),
            None => None,
        },
        _ => None,
    })
}

/// The first character's LoRA, by the name ComfyUI's `loras/` folder knows.
fn lora(job: &Job) -> Option<String> {
    param(job, "characters")?
        .as_array()?
        .iter()
        .find_map(|c| match &c["lora"] {
            Value::String(name) => Some(name.clone()),
            Value::Object(f) => f.get("file")?.as_str()?.rsplit('/').next().map(str::to_string),
            _ => None,
        })
}

/// The main file of the first input with one of `roles` (or whose role
/// starts with `prefix`, when not empty).
fn source(job: &Job, roles: &[&str], prefix: &str) -> Option<Utf8PathBuf> {
    roles
        .iter()
        .find_map(|r| job.inputs.iter().find(|i| i.role == *r))
        .or_else(|| (!prefix.is_empty()).then(|| inputs_with(job, prefix).next()).flatten())
        .map(|i| i.main().clone())
}

async fn upload(job: &Job, client: &Client, path: &Utf8PathBuf, ext: &str) -> Result<String, ExecError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| permanent(format!("cannot read {path}: {e}")))?;
    let ext = path.extension().unwrap_or(ext);
    let _ = job;
    client
        .upload(bytes, ext)
        .await
        .map_err(|e| e.into_exec(client.service()))
}

/// The workflow with the job's parameters bound.
async fn bound(job: &Job, client: &Client) -> Result<(String, Value), ExecError> {
    let (file, mut prompt, bind) = workflow(job)?;
    for (name, target) in &bind {
        let Some((node, input)) = target.as_str().and_then(crate::project::workflows::split_target) else {
            continue;
        };
        let target_node = prompt.get(node).cloned().unwrap_or(Value::Null);
        let Some(v) = value(job, client, name, &target_node).await? else {
            continue;
        };
        let slot = prompt
            .get_mut(node)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| permanent(format!("workflow {file} has no node {node} (bound to `{name}`)")))?;
        slot.insert(input.to_string(), v);
    }
    Ok((file, Value::Object(prompt)))
}

/// Run the node's workflow and fetch its outputs into the scratch folder.
async fn run_workflow(job: &Job, cancel: &CancellationToken) -> Result<(Vec<Utf8PathBuf>, Metadata), ExecError> {
    let svc = service(job)?;
    let client = Client::new(svc.clone());
    // The health check: a host that does not answer is set aside by the
    // scheduler (a transient error) before anything is uploaded.
    let vram = client.system_stats().await.map_err(|e| ExecError::from(svc.error(e)))?;
    if let Some((free, total)) = vram {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        job.progress
            .report(Some(0.0), &format!("{:.1}/{:.1} GiB VRAM free", gib(free), gib(total)));
    }
    let (file, prompt) = bound(job, &client).await?;
    let seed = job.material.key();
    let done = client
        .run(
            Request {
                prompt: &prompt,
                workflow: &file,
                seed: &seed,
            },
            &job.progress,
            cancel,
        )
        .await
        .map_err(|e| e.into_exec(&svc))?;
    let mut files = Vec::new();
    for (i, out) in done.outputs.iter().enumerate() {
        let ext = out.extension();
        if !matches!(
            ext.as_str(),
            "png" | "jpg" | "jpeg" | "webp" | "gif" | "mp4" | "webm" | "mkv" | "mov"
        ) {
            continue;
        }
        let to = scratch(job, &format!("comfy-{i}.{ext}"));
        client
            .download(out, &to, MAX_OUTPUT_BYTES)
            .await
            .map_err(|e| e.into_exec(&svc))?;
        files.push(to);
    }
    if files.is_empty() {
        return Err(permanent(format!("workflow {file} returned no image or video file")));
    }
    let mut metadata = Metadata::new();
    if let Some(seed) = job.node.seed {
        metadata.insert("seed".into(), json!(seed));
    }
    metadata.insert("comfyui_cached".into(), json!(done.cached));
    Ok((files, metadata))
}

/// A ComfyUI engine: txt2img for character references, a video model for
/// raw and refined video, the post step for the shot video.
pub async fn run(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let (files, metadata) = run_workflow(job, cancel).await?;
    match job.node.kind {
        NodeKind::CharacterRefs | NodeKind::Candidate | NodeKind::ShotImage => {
            let out = scratch(job, "image.png");
            // Decodes, and is a PNG whatever the workflow saved.
            let cmd = ffmpeg(job)?
                .args(["-i", files[0].as_str(), "-frames:v", "1", "-fflags", "+bitexact"])
                .arg(out.as_str());
            exec(job, &cmd, cancel).await?;
            produced(&out, "ffmpeg")?;
            Ok(Produced {
                files: vec![("png".into(), out)],
                duration: None,
                metadata,
            })
        }
        NodeKind::RawVideo | NodeKind::RefinedVideo => {
            let frames = timing::frames(shot_seconds(job)).max(1);
            let out = scratch(job, "video.mkv");
            let hold = timing::seconds(frames);
            // Decodes; 30 fps, even size, the shot's exact length (the last frame held).
            let cmd = ffmpeg(job)?
                .args(["-i", files[0].as_str(), "-an"])
                .args([
                    "-vf",
                    &format!(
                        "fps={},scale=trunc(iw/2)*2:trunc(ih/2)*2,tpad=stop_mode=clone:stop_duration={hold}",
                        timing::FPS
                    ),
                ])
                .args(["-frames:v", &frames.to_string()])
                .args(crate::stages::video::LOSSLESS)
                .args(["-fflags", "+bitexact", "-flags", "+bitexact"])
                .arg(out.as_str());
            exec(job, &cmd, cancel).await?;
            produced(&out, "ffmpeg")?;
            Ok(Produced {
                files: vec![("mkv".into(), out)],
                duration: Some(hold),
                metadata,
            })
        }
        NodeKind::ShotVideo => {
            // The post step's video goes through the shot cut (fit to the
            // dialogue, frame size, grade) in place of the refined video.
            let mut cut = job.clone();
            let slot = cut
                .inputs
                .iter_mut()
                .find(|i| i.role == "video")
                .ok_or_else(|| permanent(format!("{} has no `video` input", job.node.id)))?;
            slot.files = vec![("mp4".into(), files[0].clone())];
            slot.duration = None;
            let mut produced = super::video::shot_video(&cut, cancel).await?;
            produced.metadata.extend(metadata);
            Ok(produced)
        }
        kind => Err(super::registry::no_executor(job.engine, kind)),
    }
}

/// `pool_select`: the shot's source image — the previous shot's last frame
/// when continuity gives one, else the best approved image of its main
/// character's pool by [`crate::graph::review::source_score`] (for the
/// framing its shot type wants; ties broken by hash), else (a pool made
/// without the review loop) the character's reference.
pub async fn pool_select(job: &Job, _cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let out = scratch(job, "image.png");
    let mut metadata = Metadata::new();
    let copy =
        |from: &camino::Utf8Path| std::fs::copy(from, &out).map_err(|e| permanent(format!("cannot copy {from}: {e}")));
    if let Ok(from) = input(job, "continuity") {
        copy(from.main())?;
        metadata.insert("source".into(), json!(from.role));
    } else {
        let from = inputs_with(job, "ref:").next().ok_or_else(|| {
            permanent(format!(
                "{}: no continuity frame and no character reference",
                job.node.id
            ))
        })?;
        match from.files.iter().find(|(suffix, _)| suffix == "json") {
            Some((_, pool)) => {
                let (file, chosen) = choose(job, pool)?;
                let path = (from.files.iter())
                    .find(|(suffix, _)| *suffix == file)
                    .map(|(_, p)| p)
                    .ok_or_else(|| permanent(format!("{}: the pool has no file {file}", job.node.id)))?;
                copy(path)?;
                metadata.insert("source".into(), json!("pool"));
                metadata.insert("chosen".into(), chosen);
            }
            None => {
                copy(from.main())?;
                metadata.insert("source".into(), json!(from.role));
            }
        }
    }
    Ok(Produced {
        files: vec![("png".into(), out)],
        duration: None,
        metadata,
    })
}

/// The best image of a `pool.json` for this shot: its file suffix, and
/// what `studio why` shows of the choice.
fn choose(job: &Job, pool: &camino::Utf8Path) -> Result<(String, Value), ExecError> {
    use crate::graph::review::{PoolFile, best, framing_for, source_score};
    let size = std::fs::metadata(pool).map(|m| m.len()).unwrap_or(u64::MAX);
    if size > 1 << 20 {
        return Err(permanent(format!("{pool}: a pool of {size} bytes is too large")));
    }
    let text = std::fs::read_to_string(pool).map_err(|e| permanent(format!("reading {pool}: {e}")))?;
    let pool: PoolFile = serde_json::from_str(&text).map_err(|e| permanent(format!("{pool}: not a pool: {e}")))?;
    let shot_type = param(job, "shot_type").and_then(Value::as_str).unwrap_or("medium");
    let wanted = framing_for(shot_type);
    let img = best(&pool.images, wanted)
        .ok_or_else(|| permanent(format!("{}: the pool of `{}` is empty", job.node.id, pool.character)))?;
    let why = json!({
        "image": img.image,
        "round": img.round,
        "index": img.index,
        "score": (source_score(img, wanted) * 1000.0).round() / 1000.0,
        "framing": img.scores.as_ref().map_or("unknown", |s| s.framing.as_str()),
        "wanted": wanted.as_str(),
        "brightness": img.brightness,
        "of": pool.images.len(),
    });
    Ok((img.file.clone(), why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_frames_are_4k_plus_1() {
        assert_eq!(model_frames(3.0, 16.0), 49);
        assert_eq!(model_frames(0.01, 16.0), 5);
        assert_eq!((model_frames(2.5, 16.0) - 1) % 4, 0);
    }

    #[test]
    fn model_seconds_cover_the_shot_within_the_nodes_range() {
        // (shot, latent_window_size) → total_second_length
        let cases: &[(f64, Option<u64>, f64)] = &[
            (4.0, None, 4.0),
            (2.34, None, 2.4),
            (0.0, None, 0.1),
            (500.0, None, 120.0),
            (f64::NAN, None, 0.1),
            // window 9: sections of 36 frames = 1.2 s.
            (4.0, Some(9), 4.8),
            (3.6, Some(9), 3.6),
            (1.5, Some(9), 2.4),
            (0.2, Some(9), 1.2),
            (500.0, Some(9), 120.0),
            // window 7: sections of 28/30 s; 3 of them, up to 0.1 s.
            (2.5, Some(7), 2.8),
        ];
        for &(shot, window, want) in cases {
            let got = model_seconds(shot, window);
            assert!(
                (got - want).abs() < 1e-9,
                "{shot} s, window {window:?}: {got}, want {want}"
            );
            if let Some(w) = window {
                // The sampler's own section count covers the shot.
                let sections = ((got * 30.0) / (4 * w) as f64).round().max(1.0);
                let made = sections * (4 * w) as f64 / 30.0;
                assert!(made + 1e-9 >= shot.min(120.0), "{shot} s: the sampler makes {made} s");
            }
        }
    }
}
