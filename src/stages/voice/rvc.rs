//! RVC voice conversion (`kind: rvc`): the line is first spoken here by a
//! local engine (`voice.rvc.over`: `espeak` or `piper`, with the
//! character's settings for it), then converted into the character's
//! trained voice by an RVC server.
//!
//! The server is daswer123/rvc-python's API (`python -m rvc_python api`),
//! the most used HTTP API for RVC inference (the RVC WebUI itself serves
//! only its Gradio page). Written from `rvc_python/api.py` at commit
//! ff313f1ead8e6a7cd09098584ee958c84631051d and `rvc_python/infer.py` at
//! 5a09a274e11f6a37567ee88d7b76dd7befee3e23: `GET /models` →
//! `{"models": [names]}` (the folders of its models dir holding a `.pth`);
//! `POST /upload_model` (multipart `file`: a zip extracted into the models
//! dir); `POST /models/{name}` loads one (`400 {"detail": "Model … not
//! found."}`); `POST /params {"params": {f0up_key, f0method, …}}`;
//! `POST /convert {"audio_data": base64 WAV}` answers the converted WAV
//! (`500 {"detail": "An error occurred: …"}`, e.g. no model loaded).
//!
//! The server holds one model and one set of params for everyone, so
//! studio's jobs on one host take turns (a lock per host) from loading the
//! model to the converted line. A model named by file (`voice.model:
//! {file: voices/kai.pth}`, in the key by content) is uploaded once, as
//! `studio_<hash>/model.pth` in a zip, and loaded by that name; a plain
//! name is a model the server already has.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::server;
use crate::exec::{ExecError, Job, Produced};
use crate::project::assets::file_of;
use crate::stages::{asset_in, param};

/// The engines an RVC line may be spoken by first.
pub const OVER: &[&str] = &["espeak", "piper"];
/// `f0up_key`'s range, in semitones.
pub const PITCH: (i64, i64) = (-24, 24);
/// The largest model file studio uploads (a v2 `.pth` is about 55 MB).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;
/// The largest non-audio answer read.
const MAX_JSON: usize = 1 << 20;

/// `voice.rvc`: what speaks first, and the pitch shift.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub over: String,
    pub pitch: i64,
}

/// Read `voice.rvc: {over, pitch}`.
pub(crate) fn settings(voice: Option<&Value>) -> Result<Settings, String> {
    let s = voice.and_then(|v| v.get("rvc"));
    let field = |k: &str| s.and_then(|s| s.get(k)).filter(|v| !v.is_null());
    let over = match field("over") {
        None => OVER[0].to_string(),
        Some(v) => match v.as_str() {
            Some(o) if OVER.contains(&o) => o.to_string(),
            _ => return Err(format!("voice.rvc.over {v} is not one of {}", OVER.join(", "))),
        },
    };
    let pitch = match field("pitch") {
        None => 0,
        Some(v) => v.as_i64().filter(|p| (PITCH.0..=PITCH.1).contains(p)).ok_or_else(|| {
            format!(
                "voice.rvc.pitch is {v}; it takes whole semitones {}–{}",
                PITCH.0, PITCH.1
            )
        })?,
    };
    Ok(Settings { over, pitch })
}

/// The model to load: a name the server has, or a project file to upload
/// under a name derived from its hash.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Model {
    Name(String),
    File { name: String, file: String },
}

/// `voice.model` as an RVC model.
pub(crate) fn model(voice: Option<&Value>) -> Result<Model, String> {
    let v = voice
        .and_then(|v| v.get("model"))
        .filter(|v| !v.is_null())
        .ok_or("RVC needs the speaker's `voice.model` (a model the server has, or {file: ….pth}) in studio.yaml")?;
    if let Some((file, hash)) = file_of(v) {
        let short = hash.get(..16).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(short) = short else {
            return Err(format!("voice.model {file} has no content hash"));
        };
        return Ok(Model::File {
            name: format!("studio_{short}"),
            file: file.to_string(),
        });
    }
    let name = v.as_str().unwrap_or("");
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(Model::Name(name.to_string()))
    } else {
        Err(format!("voice.model {v} is not a model name (letters, digits, _ - .)"))
    }
}

/// One lock per RVC server: its model and params are shared state.
fn host_lock(base: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Mutex::default);
    LOCKS
        .lock()
        .expect("rvc locks")
        .entry(base.to_string())
        .or_default()
        .clone()
}

/// rvc: the character's line spoken by `voice.rvc.over`, converted by the
/// server into `voice.model`.
pub async fn rvc(job: &Job, cancel: &CancellationToken) -> Result<Produced, ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    let service = server::service(job)?;
    let voice = param(job, "voice");
    let s = settings(voice).map_err(fail)?;
    let model = model(voice).map_err(fail)?;
    let source = spoken(job, &s.over, cancel).await?;
    let audio = std::fs::read(&source).map_err(|e| fail(format!("cannot read {source}: {e}")))?;

    let lock = host_lock(&service.base);
    let _turn = tokio::select! {
        t = lock.lock() => t,
        () = cancel.cancelled() => return Err(ExecError::Cancelled),
    };
    let name = match &model {
        Model::Name(n) => n.clone(),
        Model::File { name, file } => {
            upload(job, service, voice, name, file, cancel).await?;
            name.clone()
        }
    };
    server::post_json(service, &format!("/models/{name}"), &json!({}), MAX_JSON, cancel).await?;
    let params = json!({"params": {"f0up_key": s.pitch, "f0method": "rmvpe"}});
    server::post_json(service, "/params", &params, MAX_JSON, cancel).await?;
    let body = json!({"audio_data": base64::engine::general_purpose::STANDARD.encode(&audio)});
    let wav = server::post_json(service, "/convert", &body, server::max_wav_bytes(), cancel).await?;
    let mut metadata = crate::exec::Metadata::new();
    metadata.insert("spoken_by".into(), s.over.clone().into());
    server::into_line(job, service, "/convert", &wav, metadata, cancel).await
}

/// The line spoken by `over` into a folder of the scratch directory.
async fn spoken(job: &Job, over: &str, cancel: &CancellationToken) -> Result<camino::Utf8PathBuf, ExecError> {
    let scratch = job.scratch.join("spoken");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ExecError::Permanent(format!("{}: cannot create {scratch}: {e}", job.node.id)))?;
    let mut base = job.clone();
    base.scratch = scratch;
    let made = match over {
        "piper" => super::piper(&base, cancel).await?,
        _ => super::espeak(&base, cancel).await?,
    };
    made.files
        .into_iter()
        .find(|(suffix, _)| suffix == "wav")
        .map(|(_, path)| path)
        .ok_or_else(|| ExecError::Permanent(format!("{}: {over} made no WAV", job.node.id)))
}

/// Upload the model file as `name` unless the server lists it already.
async fn upload(
    job: &Job,
    service: &crate::exec::http::Service,
    voice: Option<&Value>,
    name: &str,
    file: &str,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let fail = |what: String| ExecError::Permanent(format!("{}: {what}", job.node.id));
    let url = service.url("/models").map_err(|e| service.error(e))?;
    let listed = server::send(service, &url, service.get(&url), MAX_JSON, cancel).await?;
    let listed: Value = serde_json::from_slice(&listed).unwrap_or(Value::Null);
    let Some(models) = listed.get("models").and_then(Value::as_array) else {
        return Err(service
            .error(crate::exec::http::HttpError::Protocol {
                url,
                reason: "answered no `models` list".into(),
            })
            .into());
    };
    if models.iter().any(|m| m.as_str() == Some(name)) {
        return Ok(());
    }
    let path = asset_in(job, voice.and_then(|v| v.get("model")), "voice.model")?
        .ok_or_else(|| fail(format!("voice.model {file} is not a project file")))?;
    let size = std::fs::metadata(&path)
        .map_err(|e| fail(format!("cannot read {path}: {e}")))?
        .len();
    if size > MAX_MODEL_BYTES {
        return Err(fail(format!(
            "{file} is {size} bytes; an RVC model is at most {MAX_MODEL_BYTES}"
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| fail(format!("cannot read {path}: {e}")))?;
    let zip = stored_zip(&format!("{name}/model.pth"), &bytes);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip)
            .file_name(format!("{name}.zip"))
            .mime_str("application/zip")
            .expect("a MIME type"),
    );
    let url = service.url("/upload_model").map_err(|e| service.error(e))?;
    server::send(service, &url, service.post(&url).multipart(form), MAX_JSON, cancel).await?;
    Ok(())
}

/// A zip archive holding one file, stored (not compressed): what Python's
/// `zipfile.extractall` reads. `data` is at most [`MAX_MODEL_BYTES`].
pub(crate) fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let size = u32::try_from(data.len()).expect("models are under 4 GiB");
    let name_len = u16::try_from(name.len()).expect("a short name");
    let mut z = Vec::with_capacity(data.len() + 2 * name.len() + 128);
    let common = |z: &mut Vec<u8>| {
        // version 2.0, no flags, stored, 1980-01-01 00:00, crc, sizes, name length, no extra
        for v in [20u16, 0, 0, 0, 0x21] {
            z.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            z.extend_from_slice(&v.to_le_bytes());
        }
        z.extend_from_slice(&name_len.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
    };
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    common(&mut z);
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(data);
    let central = z.len();
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    z.extend_from_slice(&20u16.to_le_bytes()); // made by
    common(&mut z);
    for v in [0u16, 0, 0] {
        z.extend_from_slice(&v.to_le_bytes()); // comment, disk, internal attributes
    }
    z.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    z.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    z.extend_from_slice(name.as_bytes());
    let central_size = u32::try_from(z.len() - central).expect("small");
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&central_size.to_le_bytes());
    z.extend_from_slice(&u32::try_from(central).expect("under 4 GiB").to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// CRC-32 (IEEE, as zip uses it).
fn crc32(data: &[u8]) -> u32 {
    static TABLE: LazyLock<[u32; 256]> = LazyLock::new(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !data
        .iter()
        .fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_models_are_checked() {
        assert_eq!(
            settings(None).unwrap(),
            Settings {
                over: "espeak".into(),
                pitch: 0
            }
        );
        let s = settings(Some(&json!({"rvc": {"over": "piper", "pitch": -5}}))).unwrap();
        assert_eq!((s.over.as_str(), s.pitch), ("piper", -5));
        assert!(
            settings(Some(&json!({"rvc": {"over": "xtts"}}))).is_err(),
            "a service cannot speak first"
        );
        assert!(settings(Some(&json!({"rvc": {"pitch": 1.5}}))).is_err());
        assert!(settings(Some(&json!({"rvc": {"pitch": 30}}))).is_err());
        assert_eq!(
            model(Some(&json!({"model": "kai_v2"}))).unwrap(),
            Model::Name("kai_v2".into())
        );
        assert!(model(Some(&json!({"model": "../x"}))).is_err());
        assert!(model(Some(&json!({"model": "a/b"}))).is_err());
        assert!(model(None).is_err());
        let f = model(Some(
            &json!({"model": {"file": "voices/kai.pth", "hash": "0123456789abcdef0123"}}),
        ))
        .unwrap();
        assert_eq!(
            f,
            Model::File {
                name: "studio_0123456789abcdef".into(),
                file: "voices/kai.pth".into()
            }
        );
    }

    #[test]
    fn the_zip_is_one_stored_file_with_its_crc() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the CRC-32 check value");
        let z = stored_zip("studio_x/model.pth", b"weights");
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(&z[14..18], &crc32(b"weights").to_le_bytes());
        assert_eq!(&z[30..48], b"studio_x/model.pth");
        assert_eq!(&z[48..55], b"weights");
        let end = z.len() - 22;
        assert_eq!(&z[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([z[end + 10], z[end + 11]]), 1, "one entry");
        let central = u32::from_le_bytes(z[end + 16..end + 20].try_into().unwrap()) as usize;
        assert_eq!(&z[central..central + 4], b"PK\x01\x02");
    }
}
