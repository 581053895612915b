//! Integration tests: the engines for real. A single-node Slurm cluster runs the project's array
//! script (`slurm.rs`); the Kubernetes manifests and the AWS Batch job definition are held to
//! their APIs' schemas and to the README's table of exit codes (`manifests.rs`); the container
//! image is built with podman and run (`container.rs`).
//!
//! They install what is missing (Debian packages, a Python environment under `target/`); the
//! Slurm and container tests need root (daemons, packages, containers). Outside CI, a test that
//! cannot start (no root, no PyPI) passes and says it was skipped; under CI (`CI` set) nothing
//! is skipped: a test that cannot start fails.

mod container;
mod manifests;
mod slurm;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the tests run under CI, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// `true` when `test` can run; otherwise says why it is skipped, or fails under CI.
pub fn can_run(test: &str, why_not: Option<String>) -> bool {
    let Some(why) = why_not else { return true };
    if under_ci() {
        panic!("engines::{test} cannot start under CI (nothing is skipped there): {why}");
    }
    say(&format!("SKIPPED engines::{test}: {why}"));
    false
}

/// `None` when running as root, else why a test that needs root cannot run.
pub fn needs_root() -> Option<String> {
    (!is_root()).then(|| "needs root (daemons, packages, containers)".to_string())
}

/// A line for the test's log that is shown even when the harness captures output (timings and
/// sizes that CI reports).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// What a finished command printed and how it exited.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Run `cmd` to its end, at most `limit`; a command that cannot start or outlives its limit
/// fails the test.
pub async fn output(cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The directory of the built binary, first on a PATH for children.
pub fn path_with_bin() -> String {
    let bin_dir: PathBuf = crate::common::bin().parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    )
}
