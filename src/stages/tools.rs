//! The local tools the animatic uses, found once per build, and their
//! identity for cache keys (a new ffmpeg or font means new outputs).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::cache::atomic::write_atomic;
use crate::cache::index::SourceIndex;
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

/// Paths of the tools, and an identity string covering their versions.
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
    /// `ffmpeg 5.1.9; espeak-ng 1.51; …; font <hash>; fallback fonts
    /// <hash>`: enters every key of a job that runs on the CPU pool.
    pub identity: String,
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

impl Toolchain {
    /// Find the tools; ask each for its version only when its binary changed.
    pub fn discover(cache_dir: &Utf8Path, index: &mut SourceIndex) -> Toolchain {
        let versions_path = cache_dir.join("tools.json");
        let mut versions: Versions = std::fs::read(&versions_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut changed = false;
        let mut identity = Vec::new();
        let mut version = |name: &str, path: &Option<Utf8PathBuf>, flag: &str| {
            let Some(path) = path else {
                identity.push(format!("{name} missing"));
                return;
            };
            let Ok(meta) = path.metadata() else { return };
            let stamp = (meta.size(), meta.mtime(), meta.ino());
            let line = match versions.tools.get(name) {
                Some((s, m, i, v)) if (*s, *m, *i) == stamp => v.clone(),
                _ => {
                    let out = run_sync(&Cmd::new(path.as_str()).arg(flag)).unwrap_or_default();
                    let line = out.lines().next().unwrap_or("unknown").trim().to_string();
                    versions
                        .tools
                        .insert(name.to_string(), (stamp.0, stamp.1, stamp.2, line.clone()));
                    changed = true;
                    line
                }
            };
            identity.push(line);
        };
        let mut t = Toolchain {
            ffmpeg: which("ffmpeg"),
            ffprobe: which("ffprobe"),
            espeak: which("espeak-ng"),
            fluidsynth: which("fluidsynth"),
            font: fonts().0,
            fallback_fonts: fonts().1,
            soundfont: SOUNDFONTS.iter().map(Utf8PathBuf::from).find(|p| p.is_file()),
            identity: String::new(),
        };
        version("ffmpeg", &t.ffmpeg, "-version");
        version("espeak-ng", &t.espeak, "--version");
        version("fluidsynth", &t.fluidsynth, "--version");
        if changed {
            let _ = write_atomic(
                &versions_path,
                &serde_json::to_vec_pretty(&versions).expect("versions serialize"),
            );
        }
        for (what, path) in [("font", &t.font), ("soundfont", &t.soundfont)] {
            match path.as_ref().and_then(|p| index.hash(Utf8Path::new("/"), p).ok()) {
                Some(h) => identity.push(format!("{what} {}", &h[..16])),
                None => identity.push(format!("{what} missing")),
            }
        }
        // Which fallbacks are installed and their bytes: a font added,
        // removed or updated redraws the images (file names, not paths).
        let mut fallbacks = blake3::Hasher::new();
        for path in &t.fallback_fonts {
            let hash = index.hash(Utf8Path::new("/"), path).unwrap_or_default();
            fallbacks.update(format!("{} {hash}\n", path.file_name().unwrap_or("")).as_bytes());
        }
        identity.push(format!("fallback fonts {}", &fallbacks.finalize().to_hex()[..16]));
        t.identity = identity.join("; ");
        t
    }
}

/// The installed primary font and fallback fonts.
pub(crate) fn fonts() -> (Option<Utf8PathBuf>, Vec<Utf8PathBuf>) {
    let installed =
        |list: &[&str]| -> Vec<Utf8PathBuf> { list.iter().map(Utf8PathBuf::from).filter(|p| p.is_file()).collect() };
    (installed(FONTS).into_iter().next(), installed(FALLBACK_FONTS))
}

/// The path of a tool, or an error that says how to install it.
pub fn need<'a>(
    path: &'a Option<Utf8PathBuf>,
    what: &str,
    package: &str,
) -> Result<&'a Utf8PathBuf, crate::exec::ExecError> {
    path.as_ref().ok_or_else(|| {
        crate::exec::ExecError::Permanent(format!(
            "{what} is not installed: run `bash scripts/deps.sh` (or `apt-get install {package}`)"
        ))
    })
}
