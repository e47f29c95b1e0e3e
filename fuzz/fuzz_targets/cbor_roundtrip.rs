#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stent_fuzz::cbor_roundtrip(data));
