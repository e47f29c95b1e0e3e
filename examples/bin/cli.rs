//! The `stent` command line with the examples' durable functions registered
//! (`stent_cli::run(Some(registry))`): every inspection command, plus the
//! commands that need the code.

fn main() -> std::process::ExitCode {
    let registry = stent::FunctionRegistry::global().as_ref().clone();
    stent_cli::run(Some(registry))
}
