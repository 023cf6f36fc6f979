//! The contact sheet of `studio review`: the pending candidates side by
//! side in one PNG, each tile labelled with its short hash, verdict and
//! scores, for people who would rather look than read.
//!
//! Drawn by ffmpeg in one run: a dark canvas, each image scaled into its
//! cell and overlaid, two `drawtext` lines under it. The label text goes
//! through files (`textfile=`, `expansion=none`) and every path through
//! [`filter_value`], so nothing in a path is read as filter syntax.

use camino::{Utf8Path, Utf8PathBuf};
use tokio_util::sync::CancellationToken;

use crate::exec::ExecError;
use crate::exec::runner::{self, Cmd};
use crate::review::{Scores, Verdict};
use crate::stages::escape::filter_value;

/// A tile's image area, in pixels (portrait, as character art is).
pub const TILE_W: u32 = 256;
pub const TILE_H: u32 = 384;
/// The label band under each image.
pub const LABEL_H: u32 = 48;
/// Tiles per row.
pub const COLUMNS: usize = 4;
/// The most tiles one sheet holds (the caller says how many were left out).
pub const MAX_TILES: usize = 48;
/// Hex digits of the hash a tile shows (what `studio review approve` takes).
pub const SHORT_HASH: usize = 12;

const BACKGROUND: &str = "0x1e1e1e";

/// One candidate on the sheet.
#[derive(Debug, Clone)]
pub struct Tile {
    pub image: Utf8PathBuf,
    /// The image's content hash (hex).
    pub hash: String,
    pub scores: Option<Scores>,
    pub verdict: Verdict,
}

/// The sheet's size for `n` tiles.
pub fn size(n: usize) -> (u32, u32) {
    let n = n.clamp(1, MAX_TILES);
    let cols = n.min(COLUMNS) as u32;
    let rows = n.div_ceil(COLUMNS) as u32;
    (cols * TILE_W, rows * (TILE_H + LABEL_H))
}

/// A tile's two label lines.
pub fn label(tile: &Tile) -> (String, String) {
    let short: String = tile
        .hash
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(SHORT_HASH)
        .collect();
    let first = format!("{short}  {}", tile.verdict.as_str());
    let second = match &tile.scores {
        Some(s) => format!(
            "m {:.2}  c {:.2}  t {:.2}  {}",
            s.character_match,
            s.clarity,
            s.training_value,
            s.framing.as_str()
        ),
        // Reviewed, pending and unscored: no vision model saw it.
        None if tile.verdict == Verdict::Pending => "no score: a person decides".to_string(),
        None => "not reviewed".to_string(),
    };
    (first, second)
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Approved => "0x7ee787",
        Verdict::Rejected => "0xff7b72",
        Verdict::Pending => "0xf2cc60",
    }
}

/// Whether `path` starts like a PNG or JPEG file.
fn is_image(path: &Utf8Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head.starts_with(b"\x89PNG\r\n\x1a\n") || head.starts_with(&[0xff, 0xd8, 0xff]))
}

/// The ffmpeg command that draws `tiles` (at most [`MAX_TILES`]) into `out`,
/// its label files written into `dir`.
pub fn command(
    ffmpeg: &Utf8Path,
    font: &Utf8Path,
    tiles: &[Tile],
    dir: &Utf8Path,
    out: &Utf8Path,
) -> Result<Cmd, String> {
    if tiles.is_empty() {
        return Err("no candidate to put on a contact sheet".into());
    }
    let tiles = &tiles[..tiles.len().min(MAX_TILES)];
    let (w, h) = size(tiles.len());
    let mut cmd = Cmd::new(ffmpeg.as_str()).args(["-hide_banner", "-nostdin", "-y", "-v", "error"]);
    let mut graph = format!("color=c={BACKGROUND}:s={w}x{h}:d=1,format=rgb24[bg0];");
    let font = filter_value(font.as_str());
    let mut inputs = 0;
    for (i, tile) in tiles.iter().enumerate() {
        // A file that is not an image (the sim profile's stand-ins) gets a
        // grey cell: the label is what matters there.
        let source = if is_image(&tile.image) {
            cmd = cmd.args(["-i", tile.image.as_str()]);
            inputs += 1;
            format!("[{}:v]", inputs - 1)
        } else {
            let path = dir.join(format!("label-{i}-none.txt"));
            std::fs::write(&path, "no image (simulated)").map_err(|e| format!("writing {path}: {e}"))?;
            format!(
                "color=c=0x3a3a3a:s={TILE_W}x{TILE_H}:d=1,drawtext=fontfile={font}:textfile={}:expansion=none:fontsize=16:fontcolor=0xb0b0b0:x=(w-text_w)/2:y=(h-text_h)/2,",
                filter_value(path.as_str())
            )
        };
        let (first, second) = label(tile);
        let mut files = Vec::new();
        for (j, text) in [first, second].iter().enumerate() {
            let path = dir.join(format!("label-{i}-{j}.txt"));
            std::fs::write(&path, text).map_err(|e| format!("writing {path}: {e}"))?;
            files.push(filter_value(path.as_str()));
        }
        let text = |file: &str, size: u32, color: &str, y: u32| {
            format!(
                "drawtext=fontfile={font}:textfile={file}:expansion=none:fontsize={size}:fontcolor={color}:x=10:y={y}"
            )
        };
        graph.push_str(&format!(
            "{source}scale={TILE_W}:{TILE_H}:force_original_aspect_ratio=decrease,\
             pad={TILE_W}:{}:(ow-iw)/2:({TILE_H}-ih)/2:color={BACKGROUND},format=rgb24,{},{}[t{i}];",
            TILE_H + LABEL_H,
            text(&files[0], 17, verdict_color(tile.verdict), TILE_H + 5),
            text(&files[1], 15, "0xe6e6e6", TILE_H + 27),
        ));
        let (x, y) = ((i % COLUMNS) as u32 * TILE_W, (i / COLUMNS) as u32 * (TILE_H + LABEL_H));
        graph.push_str(&format!("[bg{i}][t{i}]overlay=x={x}:y={y}[bg{}];", i + 1));
    }
    graph.pop();
    Ok(cmd
        .args(["-filter_complex", &graph, "-map", &format!("[bg{}]", tiles.len())])
        .args(["-frames:v", "1", "-pix_fmt", "rgb24", "-fflags", "+bitexact"])
        .arg(out.as_str())
        .max_output(256 << 20, "a contact sheet is one PNG"))
}

/// Draw the sheet of `tiles` into `out` (its folder must exist), with
/// `ffmpeg` and the `font` the labels are set in.
pub async fn draw(
    ffmpeg: &Utf8Path,
    font: &Utf8Path,
    tiles: &[Tile],
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let dir = tempfile::tempdir().map_err(|e| ExecError::Permanent(format!("a temporary folder: {e}")))?;
    let dir = Utf8Path::from_path(dir.path())
        .ok_or_else(|| ExecError::Permanent("the temporary folder's path is not UTF-8".into()))?
        .to_owned();
    let tmp = dir.join("sheet.png");
    let cmd = command(ffmpeg, font, tiles, &dir, &tmp).map_err(ExecError::Permanent)?;
    runner::run(&cmd, &dir, cancel).await?;
    crate::stages::produced(&tmp, "ffmpeg")?;
    let bytes = std::fs::read(&tmp).map_err(|e| ExecError::Permanent(format!("reading {tmp}: {e}")))?;
    crate::cache::atomic::write_atomic(out, &bytes).map_err(|e| ExecError::Permanent(format!("writing {out}: {e}")))?;
    // Readable like the rest of out/ (the temporary file was private).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| ExecError::Permanent(format!("{out}: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Framing;

    #[test]
    fn sizes_follow_the_grid() {
        assert_eq!(size(1), (TILE_W, TILE_H + LABEL_H));
        assert_eq!(size(4), (4 * TILE_W, TILE_H + LABEL_H));
        assert_eq!(size(5), (4 * TILE_W, 2 * (TILE_H + LABEL_H)));
        assert_eq!(size(1000), size(MAX_TILES));
    }

    #[test]
    fn labels_show_the_short_hash_verdict_and_scores() {
        let tile = Tile {
            image: "x.png".into(),
            hash: "0123456789abcdef0123".into(),
            scores: Some(Scores {
                character_match: 0.934,
                clarity: 0.5,
                training_value: 0.25,
                framing: Framing::UpperBody,
                rejection_categories: vec![],
                notes: String::new(),
            }),
            verdict: Verdict::Pending,
        };
        assert_eq!(
            label(&tile),
            (
                "0123456789ab  pending".to_string(),
                "m 0.93  c 0.50  t 0.25  upper_body".to_string()
            )
        );
    }

    #[test]
    fn paths_are_escaped_in_the_graph() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let tile = Tile {
            image: "a.png".into(),
            hash: "ab".into(),
            scores: None,
            verdict: Verdict::Rejected,
        };
        let cmd = command(
            "ffmpeg".into(),
            "/f/it's:a,font.ttf".into(),
            &[tile],
            dir,
            "o.png".into(),
        )
        .unwrap();
        let graph = cmd
            .args
            .iter()
            .position(|a| a == "-filter_complex")
            .map(|i| cmd.args[i + 1].clone())
            .unwrap();
        let graph = graph.to_str().unwrap();
        assert!(graph.contains(r"fontfile=/f/it\\\'s\\:a\,font.ttf"), "{graph}");
        assert!(std::fs::read_to_string(dir.join("label-0-1.txt")).unwrap() == "not reviewed");
        assert!(command("ffmpeg".into(), "f".into(), &[], dir, "o.png".into()).is_err());
    }
}
