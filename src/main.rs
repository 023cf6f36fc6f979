//! The `studio` command. Exit codes are documented in `cli`.

fn main() -> std::process::ExitCode {
    // A panic outside the build's tasks: the hook printed "internal error: …".
    std::panic::catch_unwind(studio::cli::main).unwrap_or(std::process::ExitCode::from(studio::cli::EXIT_IO))
}
