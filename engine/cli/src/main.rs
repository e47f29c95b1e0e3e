//! The plain `stent` binary: every inspection command, no user code (so no
//! replay debugger; see `stent_cli::run` to build a binary that has one).

fn main() -> std::process::ExitCode {
    stent_cli::run(None)
}
