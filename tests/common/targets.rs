//! Every integration-test file of this crate is a test target: the
//! crate lists its targets by hand (`autotests = false`: the files sit at
//! the crate's root, beside `Cargo.toml`), so a file that is not listed
//! would never run. The test below fails, naming the file, when one is
//! missing from `Cargo.toml` or listed without existing.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn every_test_file_is_a_test_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files: BTreeSet<String> = std::fs::read_dir(root)
            .expect("read the crate's directory")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".rs") && name != "build.rs")
            .collect();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
        let mut listed = BTreeSet::new();
        let mut in_test = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_test = line == "[[test]]";
            } else if in_test && let Some(path) = line.strip_prefix("path = ") {
                listed.insert(path.trim_matches('"').to_string());
            }
        }
        let unlisted: Vec<_> = files.difference(&listed).collect();
        let missing: Vec<_> = listed.difference(&files).collect();
        assert!(
            unlisted.is_empty(),
            "test files no [[test]] of tests/Cargo.toml lists (they never run): {unlisted:?}"
        );
        assert!(
            missing.is_empty(),
            "[[test]] paths of tests/Cargo.toml with no file: {missing:?}"
        );
        assert!(
            listed.len() >= 20,
            "only {} test targets found",
            listed.len()
        );
    }
}
