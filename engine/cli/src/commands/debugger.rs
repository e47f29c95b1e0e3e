//! `replay`, `resume`, `fork`: the replay debugger's commands. They need the
//! user's durable functions, so the plain `stent` binary only explains how to
//! get them.

use clap::Args;
use stent::FunctionRegistry;

use crate::CliError;

/// Whatever the debugger commands are given; read by the debugger itself.
#[derive(Debug, Clone, Args)]
pub struct DebuggerArgs {
    /// Arguments of the command.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// The answer of a binary that cannot run `command`: exit code 2
/// ([`crate::exit::USAGE`]) and how to get a binary that can.
pub fn unavailable(command: &str, registry: &Option<FunctionRegistry>) -> Result<(), CliError> {
    let why = match registry {
        None => format!(
            "`stent {command}` re-runs recorded journals against your workflow code, which this \
             plain `stent` binary does not contain.\n\
             Build your own binary with your durable functions registered:\n\n\
             \x20   fn main() -> std::process::ExitCode {{\n\
             \x20       let mut registry = stent::FunctionRegistry::new();\n\
             \x20       registry.register(my_workflow); // every #[stent::durable] fn you run\n\
             \x20       stent_cli::run(Some(registry))\n\
             \x20   }}\n\n\
             (add `stent-cli` to its [dependencies]); it has every `stent` command plus \
             `{command}`."
        ),
        Some(_) => format!(
            "`stent {command}` needs the replay debugger (stent::debugger), which this build of \
             stent-cli does not include yet"
        ),
    };
    Err(CliError::Unavailable(why))
}
