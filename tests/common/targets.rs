//! Where integration tests live: every file in `suite/` is a module of the
//! one test binary (`build.rs` lists them), so none can be forgotten there.
//! A test file put beside `Cargo.toml` instead would never run
//! (`autotests = false`); the test below fails, naming it.

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn rust_files(dir: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".rs"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn test_files_live_in_the_suite() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let astray: Vec<String> = rust_files(root)
            .into_iter()
            .filter(|name| name != "build.rs")
            .collect();
        assert!(
            astray.is_empty(),
            "test files beside tests/Cargo.toml never run; move them to tests/suite/: {astray:?}"
        );
        let modules = rust_files(&root.join("suite")).len() - 1;
        assert!(modules >= 20, "only {modules} test modules in tests/suite");
    }
}
