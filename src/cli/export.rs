//! `studio export EP --format fountain [-o FILE]`.

use camino::{Utf8Path, Utf8PathBuf};

use super::{EXIT_INVALID, EXIT_IO, EXIT_OK, out};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Fountain (https://fountain.io), the plain-text screenplay format.
    Fountain,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The episode, e.g. `ep01`.
    episode: String,
    #[arg(long, value_enum, default_value = "fountain")]
    format: Format,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<Utf8PathBuf>,
}

pub fn run(root: &Utf8Path, profile: Option<&str>, args: Args) -> u8 {
    let session = match super::open(root, profile, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(episode) = session
        .project
        .episode(&args.episode)
        .filter(|e| e.screenplay.is_some())
    else {
        eprintln!(
            "error: no screenplay for `{}` (episodes/{}.yaml)",
            args.episode, args.episode
        );
        return EXIT_INVALID;
    };
    let text = match args.format {
        Format::Fountain => crate::export::fountain(&session.project, episode),
    };
    match args.output {
        Some(path) => match crate::cache::atomic::write_atomic(&path, text.as_bytes()) {
            Ok(()) => {
                eprintln!("wrote {path}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: writing {path}: {e}");
                EXIT_IO
            }
        },
        None => {
            out(&text);
            EXIT_OK
        }
    }
}
