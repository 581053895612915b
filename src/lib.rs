//! liveness-batch: re-screen stored selfies in bulk with Didit's Passive Liveness API.
//!
//! The binary is a thin shell around [`run`]; integration tests call the same entry points.

pub mod check;
pub mod cli;
pub mod config;
pub mod didit;
pub mod emulator;
pub mod exit;
pub mod input;
pub mod journal;
pub mod pace;
pub mod record;
pub mod report;
pub mod retry;
pub mod scan;
pub mod secret;
pub mod submit;
