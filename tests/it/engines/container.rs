//! The container image for real: `deploy/container/build-and-run` builds the runtime-only
//! Containerfile with podman from a Debian base made by mmdebstrap (no registry), runs the
//! sample scan in it as the image's non-root user on a read-only root with no network, then a
//! run terminated with SIGTERM and resumed, and checks that nothing podman made is left. Its
//! lines (timings, the image size) go straight to the test's output.

use std::process::Stdio;
use std::time::Duration;

use super::{can_run, repo};
use crate::common;

#[tokio::test]
async fn the_image_builds_and_runs_the_sample_scan_and_a_resume() {
    if !can_run(
        "container::the_image_builds_and_runs_the_sample_scan_and_a_resume",
        super::needs_root(),
    ) {
        return;
    }
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(repo().join("deploy/container/build-and-run"))
        .arg(common::bin())
        .env_remove("DIDIT_API_KEY")
        .env_remove("DIDIT_BASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("run deploy/container/build-and-run");
    let limit = Duration::from_secs(20 * 60);
    let Ok(status) = tokio::time::timeout(limit, child.wait()).await else {
        // SIGTERM, not SIGKILL: the script then removes what podman made before it ends.
        if let Some(pid) = child.id() {
            // SAFETY: kill has no memory-safety preconditions; the PID is our own child's.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(180), child.wait()).await;
        panic!("deploy/container/build-and-run did not end within {limit:?}");
    };
    let status = status.expect("wait for deploy/container/build-and-run");
    assert!(
        status.success(),
        "deploy/container/build-and-run failed ({status}); its messages are above"
    );
}
