//! liveness-batch: re-screen stored selfies in bulk with Didit's Passive Liveness API.
//! (Entry point being wired; see the scan module.)

pub mod check;
pub mod cli;
pub mod didit;
pub mod emulator;
pub mod exit;
pub mod input;
pub mod journal;
pub mod pace;
pub mod progress;
pub mod record;
pub mod report;
pub mod retry;
pub mod secret;
pub mod submit;
