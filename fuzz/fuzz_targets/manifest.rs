//! Fuzz target `manifest`: see [`harness::manifest`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manifest(data));
