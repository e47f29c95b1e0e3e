//! The shared conformance suite, run against [`stent_memory::MemoryBackend`].

use stent_memory::MemoryBackend;

stent_conformance::conformance_tests!(async { MemoryBackend::new() });
