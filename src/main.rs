//! The `studio` command. Exit codes are documented in `cli`.

fn main() -> std::process::ExitCode {
    studio::cli::main()
}
