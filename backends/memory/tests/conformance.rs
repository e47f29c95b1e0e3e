//! The shared conformance suite, run against [`stent_memory::MemoryBackend`].

stent_conformance::conformance_tests!(async { stent_memory::MemoryBackend::new() });
