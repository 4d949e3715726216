//! The `penguin-mta` binary: everything lives in the library; see `penguin_mta::cli`.

fn main() -> std::process::ExitCode {
    penguin_mta::cli::main()
}
