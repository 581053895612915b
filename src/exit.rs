//! Exit codes: the contract with scripts and cron jobs (documented in the README).

/// Every item has a result (scan), or the image was Approved (check).
pub const OK: i32 = 0;
/// Finished, but some items failed (scan), or the image was Declined (check).
pub const SOME_FAILED: i32 = 1;
/// Usage or configuration error, or a bad local file for `check`; nothing was sent.
pub const USAGE: i32 = 2;
/// Stopped: the API refused the key, the permission, or the endpoint (401, 403, 404).
pub const AUTH: i32 = 3;
/// Stopped: out of credits (402, 403 credits) or the --max-requests budget was reached. Resumable.
pub const CREDITS: i32 = 4;
/// `check` only: the API kept failing after every retry.
pub const API_FAILED: i32 = 5;
/// Interrupted by Ctrl-C (SIGINT).
pub const INTERRUPTED: i32 = 130;
/// Terminated by SIGTERM.
pub const TERMINATED: i32 = 143;
