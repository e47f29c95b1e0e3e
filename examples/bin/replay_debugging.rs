//! `stent-replay-debugging`: the `stent` command line built with the
//! functions of `stent_examples::replay_debugging` (the embeddable CLI,
//! `stent_cli::run(Some(registry))`). It runs the code that recorded the
//! example's journals, or the next deployment's code when
//! `STENT_EXAMPLE_CODE=changed`; `replay`, `resume` and `fork` run that code.

use stent_examples::replay_debugging::{Code, registry};

fn main() -> std::process::ExitCode {
    stent_cli::run(Some(registry(Code::from_env())))
}
