//! stent's fuzz targets. The bodies live in [`targets`] so that the stable
//! corpus test (`journal/tests/fuzz_corpus.rs`) runs exactly the same code.

pub mod targets;

pub use targets::*;
