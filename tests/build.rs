//! Lists the integration-test modules: every `suite/*.rs` file but
//! `main.rs` becomes `mod <file>;` of the one test binary (`suite/main.rs`
//! includes the list), so a new test file runs without being registered
//! anywhere.

use std::path::Path;
use std::{env, fs};

fn main() {
    let suite = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("suite");
    println!("cargo:rerun-if-changed={}", suite.display());
    let mut modules: Vec<(String, String)> = fs::read_dir(&suite)
        .unwrap_or_else(|e| panic!("reading {}: {e}", suite.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_owned();
            (name != "main").then(|| (name, path.display().to_string()))
        })
        .collect();
    modules.sort();
    let mut list = String::new();
    for (name, path) in modules {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "test file suite/{name}.rs: its name must be a Rust identifier"
        );
        list.push_str(&format!("#[path = {path:?}]\nmod {name};\n"));
    }
    let out = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("suite_modules.rs");
    fs::write(&out, list).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
