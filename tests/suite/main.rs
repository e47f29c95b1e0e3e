//! stent's integration tests, one module per concern. Every other file in
//! this directory is a module of this binary: `build.rs` lists them, so a
//! new test file runs without being registered anywhere.
//!
//! Run one concern with a filter: `cargo test -p stent-tests --test suite
//! postgres::`.

include!(concat!(env!("OUT_DIR"), "/suite_modules.rs"));
