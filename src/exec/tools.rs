//! The local tools the animatic uses, found once per build, and each one's
//! identity for cache keys (a new espeak-ng means new voice lines, and
//! nothing else).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::cache::atomic::write_atomic;
use crate::cache::index::SourceIndex;
use crate::engines::{EngineSpec, Tool};
use crate::exec::ExecError;
use crate::exec::runner::{Cmd, run_sync};

/// Fonts that render Japanese, in order of preference.
const FONTS: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
];

/// Fonts for what Noto Sans CJK lacks, tried in this order for each
/// character (see README: Fonts): scripts from fonts-noto-core, symbols,
/// DejaVu Sans (fonts-dejavu-core) for the rest, and colour emoji
/// (fonts-noto-color-emoji), drawn as images.
const FALLBACK_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansHebrew-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansSyriac-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansThaana-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansThai-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansLao-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansKhmer-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansMyanmar-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansDevanagari-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansBengali-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansGurmukhi-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansGujarati-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansOriya-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansTamil-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansTelugu-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansKannada-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansMalayalam-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansSinhala-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansArmenian-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansGeorgian-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansEthiopic-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansCherokee-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansCanadianAboriginal-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansMongolian-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansTifinagh-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansMath-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansSymbols-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansSymbols2-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
];

const SOUNDFONTS: &[&str] = &[
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
];

/// Paths of the tools, and each one's identity for cache keys.
#[derive(Debug, Clone, Default)]
pub struct Toolchain {
    pub ffmpeg: Option<Utf8PathBuf>,
    pub ffprobe: Option<Utf8PathBuf>,
    pub espeak: Option<Utf8PathBuf>,
    pub fluidsynth: Option<Utf8PathBuf>,
    pub font: Option<Utf8PathBuf>,
    /// The [`FALLBACK_FONTS`] that are installed, in order.
    pub fallback_fonts: Vec<Utf8PathBuf>,
    pub soundfont: Option<Utf8PathBuf>,
    /// Every tool's identity: its version line (`ffmpeg version 5.1.9-0+deb12u1 …`),
    /// or for fonts and the soundfont the file name and content hash;
    /// `missing` when it is not installed. A node's key holds the
    /// identities of the tools its engines declare, and only those.
    pub identities: BTreeMap<Tool, String>,
    /// The neural voices' venv (`scripts/deps.sh`), when it is installed.
    pub voices: super::voices::VoiceEnv,
    /// The build's persistent workers (the neural voices), started on
    /// demand and stopped when the last handle to this toolchain goes.
    pub workers: std::sync::Arc<super::worker::Workers>,
}

/// `tool version` lines remembered by the binary's (size, mtime, inode).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Versions {
    tools: BTreeMap<String, (u64, i64, u64, String)>,
}

fn which(name: &str) -> Option<Utf8PathBuf> {
    let path = std::env::var("PATH").ok()?;
    path.split(':')
        .map(|dir| Utf8Path::new(dir).join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

pub(crate) const MISSING: &str = "missing";

impl Toolchain {
    /// Find the tools; ask each for its version only when its binary changed.
    pub fn discover(cache_dir: &Utf8Path, index: &mut SourceIndex) -> Toolchain {
        let versions_path = cache_dir.join("tools.json");
        let mut versions: Versions = std::fs::read(&versions_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut changed = false;
        let mut version = |tool: Tool, path: &Option<Utf8PathBuf>, flag: &str| -> String {
            let Some(meta) = path.as_ref().and_then(|p| p.metadata().ok()) else {
                return MISSING.into();
            };
            let path = path.as_ref().expect("a path with metadata");
            let stamp = (meta.size(), meta.mtime(), meta.ino());
            let name = tool.as_str();
            match versions.tools.get(name) {
                // (Normalized again: an older studio kept the whole line.)
                Some((s, m, i, v)) if (*s, *m, *i) == stamp => version_line(v),
                _ => {
                    let out = run_sync(&Cmd::new(path.as_str()).arg(flag)).unwrap_or_default();
                    let line = version_line(&out);
                    versions
                        .tools
                        .insert(name.to_string(), (stamp.0, stamp.1, stamp.2, line.clone()));
                    changed = true;
                    line
                }
            }
        };
        let (font, fallback_fonts) = fonts();
        let mut t = Toolchain {
            ffmpeg: which("ffmpeg"),
            ffprobe: which("ffprobe"),
            espeak: which("espeak-ng"),
            fluidsynth: which("fluidsynth"),
            font,
            fallback_fonts,
            soundfont: SOUNDFONTS.iter().map(Utf8PathBuf::from).find(|p| p.is_file()),
            identities: BTreeMap::new(),
            voices: super::voices::VoiceEnv::discover(cache_dir),
            workers: Default::default(),
        };
        let mut ids = BTreeMap::new();
        ids.insert(Tool::Ffmpeg, version(Tool::Ffmpeg, &t.ffmpeg, "-version"));
        ids.insert(Tool::Ffprobe, version(Tool::Ffprobe, &t.ffprobe, "-version"));
        ids.insert(Tool::EspeakNg, version(Tool::EspeakNg, &t.espeak, "--version"));
        ids.insert(Tool::Fluidsynth, version(Tool::Fluidsynth, &t.fluidsynth, "--version"));
        if changed {
            let _ = write_atomic(
                &versions_path,
                &serde_json::to_vec_pretty(&versions).expect("versions serialize"),
            );
        }
        // Files by name and content, never by path.
        for (tool, path) in [(Tool::Font, &t.font), (Tool::Soundfont, &t.soundfont)] {
            let id = path.as_ref().and_then(|p| {
                let hash = index.hash(Utf8Path::new("/"), p).ok()?;
                Some(format!("{} {}", p.file_name().unwrap_or(""), &hash[..16]))
            });
            ids.insert(tool, id.unwrap_or_else(|| MISSING.into()));
        }
        // Which fallbacks are installed and their bytes: a font added,
        // removed or updated redraws the images (file names, not paths).
        let mut fallbacks = blake3::Hasher::new();
        for path in &t.fallback_fonts {
            let hash = index.hash(Utf8Path::new("/"), path).unwrap_or_default();
            fallbacks.update(format!("{} {hash}\n", path.file_name().unwrap_or("")).as_bytes());
        }
        ids.insert(
            Tool::FallbackFonts,
            format!(
                "{} fonts {}",
                t.fallback_fonts.len(),
                &fallbacks.finalize().to_hex()[..16]
            ),
        );
        ids.insert(Tool::Piper, t.voices.piper_identity(index));
        ids.insert(Tool::Kokoro, t.voices.kokoro_identity(index));
        t.identities = ids;
        t
    }

    /// The path of `tool` for a job of `engine`, or an error that says how
    /// to install it. An engine may use only the tools it declares in
    /// `engines.rs`: they are what its keys cover.
    pub fn path(&self, engine: &EngineSpec, tool: Tool) -> Result<&Utf8PathBuf, ExecError> {
        declared(engine, tool)?;
        let (path, what, package) = match tool {
            Tool::Ffmpeg => (&self.ffmpeg, "ffmpeg", "ffmpeg"),
            Tool::Ffprobe => (&self.ffprobe, "ffprobe", "ffmpeg"),
            Tool::EspeakNg => (&self.espeak, "espeak-ng", "espeak-ng"),
            Tool::Fluidsynth => (&self.fluidsynth, "fluidsynth", "fluidsynth"),
            Tool::Font => (&self.font, "the Noto Sans CJK font", "fonts-noto-cjk"),
            Tool::Soundfont => (&self.soundfont, "a General MIDI soundfont", "fluid-soundfont-gm"),
            Tool::FallbackFonts => {
                return Err(ExecError::Permanent(
                    "the fallback fonts are a list: use Toolchain::fallback_fonts".into(),
                ));
            }
            Tool::Piper | Tool::Kokoro => {
                return Err(ExecError::Permanent(
                    "the neural voices run as workers: use Toolchain::voice_worker".into(),
                ));
            }
        };
        path.as_ref().ok_or_else(|| {
            ExecError::Permanent(format!(
                "{what} is not installed: run `bash scripts/deps.sh` (or `apt-get install {package}`)"
            ))
        })
    }

    /// How to start the worker of a neural voice `tool` for `engine`, or
    /// an error that says to run `scripts/deps.sh`.
    pub fn voice_worker(
        &self,
        engine: &EngineSpec,
        tool: Tool,
        threads: usize,
    ) -> Result<super::worker::WorkerSpec, ExecError> {
        declared(engine, tool)?;
        if self.identities.get(&tool).is_none_or(|id| id == MISSING) {
            return Err(ExecError::Permanent(self.voices.missing(tool)));
        }
        self.voices.worker(engine.name, tool, threads)
    }

    /// What to install for the workers `engines` declare that are missing
    /// (the voices venv), one message per tool.
    pub fn missing_workers<'a>(&self, engines: impl Iterator<Item = &'a EngineSpec>) -> Vec<String> {
        let mut tools: Vec<Tool> = engines
            .flat_map(|e| e.tools.iter().copied())
            .filter(|t| matches!(t, Tool::Piper | Tool::Kokoro))
            .filter(|t| self.identities.get(t).is_none_or(|id| id == MISSING))
            .collect();
        tools.sort_unstable();
        tools.dedup();
        tools.into_iter().map(|t| self.voices.missing(t)).collect()
    }

    /// The installed fallback fonts, for an engine that declares them.
    pub fn fallback_fonts(&self, engine: &EngineSpec) -> Result<&[Utf8PathBuf], ExecError> {
        declared(engine, Tool::FallbackFonts)?;
        Ok(&self.fallback_fonts)
    }
}

/// A tool an engine uses without declaring it would be missing from its
/// keys: refuse, so the first build that runs it says so.
fn declared(engine: &EngineSpec, tool: Tool) -> Result<(), ExecError> {
    if engine.tools.contains(&tool) {
        Ok(())
    } else {
        Err(ExecError::Permanent(format!(
            "engine `{}` uses {} without declaring it in engines.rs (`.uses(&[…])`), so its keys would not cover it",
            engine.name,
            tool.as_str()
        )))
    }
}

/// A tool's identity from its version output: the first line, without
/// where it is installed (espeak-ng adds `Data at: /usr/lib/…`), so a key
/// names a version, not a machine's layout.
fn version_line(out: &str) -> String {
    let line = out.lines().next().unwrap_or("unknown");
    let line = line.split(" Data at:").next().unwrap_or(line);
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The installed primary font and fallback fonts.
pub(crate) fn fonts() -> (Option<Utf8PathBuf>, Vec<Utf8PathBuf>) {
    let installed =
        |list: &[&str]| -> Vec<Utf8PathBuf> { list.iter().map(Utf8PathBuf::from).filter(|p| p.is_file()).collect() };
    (installed(FONTS).into_iter().next(), installed(FALLBACK_FONTS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_name_no_install_path() {
        assert_eq!(
            version_line("eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data\n"),
            "eSpeak NG text-to-speech: 1.51"
        );
        assert_eq!(
            version_line("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024\nbuilt with gcc"),
            "ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024"
        );
        assert_eq!(version_line(""), "unknown");
    }
}
