//! Fuzz target `classify`: see [`harness::classify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::classify(data));
