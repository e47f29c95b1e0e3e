//! Runs every committed fuzz seed and crash regression (`fuzz/corpus/<target>/`)
//! through the same target functions the cargo-fuzz binaries call, on stable,
//! as part of `cargo test --workspace`. See `fuzz/README.md`.

// Shared with the fuzz crate; some helpers there exist for its corpus generator.
#[allow(dead_code)]
#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("read corpus file");
            (p, data)
        })
        .collect()
}

fn run(target: &str) {
    let (_, f) = targets::ALL
        .iter()
        .find(|(name, _)| *name == target)
        .expect("known target");
    let files = corpus(target);
    assert!(
        files.len() >= 5,
        "{target}: only {} corpus files",
        files.len()
    );
    let mut failed = Vec::new();
    for (path, data) in &files {
        if std::panic::catch_unwind(|| f(data)).is_err() {
            failed.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: failing corpus files {failed:?}"
    );
}

#[test]
fn event_decode() {
    run("event_decode");
}

#[test]
fn cbor_roundtrip() {
    run("cbor_roundtrip");
}

#[test]
fn call_key_stability() {
    run("call_key_stability");
}

#[test]
fn duration_parse() {
    run("duration_parse");
}

#[test]
fn payload_limits() {
    run("payload_limits");
}

#[test]
fn replay_journal() {
    run("replay_journal");
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    let names: Vec<&str> = targets::ALL.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "event_decode",
            "cbor_roundtrip",
            "call_key_stability",
            "duration_parse",
            "payload_limits",
            "replay_journal"
        ]
    );
    for name in names {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(bin.is_file(), "missing {}", bin.display());
    }
}
