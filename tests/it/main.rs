//! Integration tests: one binary, a module per area. Everything runs against the emulator on
//! loopback (and an S3-compatible test server where relevant), in temporary folders, and never
//! reads anything outside this repository.

mod common;

mod audit;
mod azure;
mod buckets;
mod charges;
mod check;
mod checks;
mod client;
mod completions;
mod emulator;
mod engines;
mod evidence;
mod failures;
mod fuzz_regressions;
mod gone;
mod input;
mod outputs;
mod pairs;
mod print;
mod quick_check;
mod report;
mod resume;
mod scan;
mod shards;
mod storage;
