//! Fuzz target `journal`: see [`harness::journal`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::journal(data));
