//! Every file of this crate that is meant to run does: the crate lists its
//! examples and tests by hand (`autoexamples`/`autotests = false`), so an
//! example or test file that is not listed would never build or run.

use std::collections::BTreeSet;
use std::path::Path;

/// The `.rs` files directly in `dir` (relative to the crate), prefixed
/// with `prefix`.
fn rust_files(dir: &Path, prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".rs"))
        .map(|name| format!("{prefix}{name}"))
        .collect()
}

/// The `path`s of the `[[section]]` tables of `manifest`.
fn listed(manifest: &str, section: &str) -> BTreeSet<String> {
    let header = format!("[[{section}]]");
    let mut paths = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside && let Some(path) = line.strip_prefix("path = ") {
            paths.insert(path.trim_matches('"').to_string());
        }
    }
    paths
}

#[test]
fn every_example_and_test_file_is_built_and_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");

    let examples = rust_files(root, "");
    let listed_examples = listed(&manifest, "example");
    let unlisted: Vec<_> = examples.difference(&listed_examples).collect();
    assert!(
        unlisted.is_empty(),
        "example files no [[example]] lists: {unlisted:?}"
    );

    let tests = rust_files(&root.join("tests"), "tests/");
    let listed_tests = listed(&manifest, "test");
    let unlisted: Vec<_> = tests.difference(&listed_tests).collect();
    assert!(
        unlisted.is_empty(),
        "test files no [[test]] lists: {unlisted:?}"
    );

    let main = std::fs::read_to_string(root.join("tests/examples/main.rs")).expect("main.rs");
    let undeclared: Vec<_> = rust_files(&root.join("tests/examples"), "")
        .into_iter()
        .filter(|file| file != "main.rs")
        .filter(|file| !main.contains(&format!("mod {};", file.trim_end_matches(".rs"))))
        .collect();
    assert!(
        undeclared.is_empty(),
        "modules of tests/examples/ main.rs does not declare: {undeclared:?}"
    );
}
