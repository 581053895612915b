//! The `scan` command: sources → preflight → dispatch (skip done, dedupe) → pacer → workers
//! submitting with retries → one journal writer → outputs. Bounded channels everywhere; only
//! compact indexes grow with the backlog. `run` reads as the pipeline reads; each stage has its
//! own module.

mod dispatch;
mod dry_run;
mod gone;
mod ignored;
mod open;
mod run;
mod source;
mod stop;
mod worker;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exit::Exit;
use crate::journal::JournalError;
use crate::{emulator, input, report};

pub use dispatch::{Decision, Dispatcher, Facts, Released};
pub use run::run;
pub use stop::{Stop, StopCause};

/// Counters of this run that are not per record.
#[derive(Default)]
pub struct RunCounts {
    pub inputs: AtomicU64,
    pub ignored: AtomicU64,
    pub skipped_done: AtomicU64,
    /// Of those, the items skipped without being read (same version as recorded).
    pub skipped_unread: AtomicU64,
    pub deduplicated: AtomicU64,
    pub recorded: AtomicU64,
    pub not_processed: AtomicU64,
    pub requests: AtomicU64,
    /// Answers that came back after the journal writer failed: possibly billed, not recorded.
    pub unrecorded: AtomicU64,
    /// Waits a server asked for (Retry-After) that were longer than the cap.
    pub retry_after_capped: AtomicU64,
}

impl RunCounts {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error(transparent)]
    Client(#[from] crate::didit::ClientError),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error("cannot {op} {path}: {source}")]
    OutDir {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{dir} holds results of an earlier run ({evidence}) but its journal is {state}; resuming \
         would screen (and bill) everything again. If that is what you want, rerun with --fresh \
         (earlier files are kept); otherwise restore {journal}"
    )]
    JournalMissing {
        dir: PathBuf,
        journal: PathBuf,
        state: &'static str,
        evidence: String,
    },
    #[error(
        "{dir} holds the journal of {journal}, and this run has {this}; a folder holds one \
         shard's journal. Use that shard's own --out folder, or --fresh to start a new journal \
         here (the old one is kept)"
    )]
    ShardChanged {
        dir: PathBuf,
        journal: String,
        this: String,
    },
    #[error(
        "the evidence in {dir} does not hold: {what}.\nNothing was sent. Inspect it with \
         `liveness-batch report {dir}` (it rebuilds the outputs from the journal and names what \
         fails); to screen afresh, use a new --out folder; if the journal is the truth and only \
         the caches beside it (.liveness-batch-index, .liveness-batch-outputs.json) are stale, \
         rerun with --rebuild-from-journal, which accepts a journal that passes every check and \
         rebuilds them from it"
    )]
    Evidence { dir: PathBuf, what: String },
    #[error(
        "the journal in {dir} is signed ({seals} seal(s) by minisign key {key_id}): resume it \
         with --sign-key and that key's secret file, so its seals are verified and new lines \
         are sealed too"
    )]
    SignedJournal {
        dir: PathBuf,
        seals: u64,
        key_id: String,
    },
    #[error("internal error: the {stage} panicked: {message}")]
    Panicked {
        stage: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// Object storage refused the credentials or the bucket while objects were read.
    #[error("{0}")]
    StorageRefused(String),
}

impl ScanError {
    pub fn exit_code(&self) -> Exit {
        match self {
            ScanError::Journal(e) if e.is_io() => Exit::Io,
            ScanError::Report(e) if e.is_io() => Exit::Io,
            ScanError::OutDir { .. } => Exit::Io,
            ScanError::Input(input::InputError::Storage(e)) if e.is_refusal() => Exit::Storage,
            ScanError::StorageRefused(_) => Exit::Storage,
            ScanError::Input(_)
            | ScanError::Client(_)
            | ScanError::Journal(_)
            | ScanError::Report(_)
            | ScanError::Emulator(_)
            | ScanError::SignedJournal { .. }
            | ScanError::ShardChanged { .. } => Exit::Usage,
            ScanError::Evidence { .. } | ScanError::JournalMissing { .. } => Exit::Verify,
            ScanError::Panicked { .. } | ScanError::Internal(_) => Exit::Internal,
        }
    }
}

/// Run a stage's future as a task; a failure or a panic stops the run with its own cause.
fn spawn_stage<F>(stage: &'static str, stop: Stop, fut: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), ScanError>> + Send + 'static,
{
    use futures::FutureExt;
    tokio::spawn(async move {
        match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stop.fail(e),
            Err(panic) => stop.fail(ScanError::Panicked {
                stage,
                message: panic_message(panic.as_ref()),
            }),
        }
    })
}

/// The text a panic carried.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

/// Run a stage's work on a thread of its own; a panic in it stops the run with its cause. The
/// caller keeps the sender of the thread's channel outside `work`: dropped only after the
/// failure is recorded, its closing can never pass for the end of the input, which would let
/// the run claim it read everything.
fn guarded(stage: &'static str, stop: &Stop, work: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        stop.fail(ScanError::Panicked {
            stage,
            message: panic_message(panic.as_ref()),
        });
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_or_panicking_stage_stops_the_run_with_its_own_cause() {
        let stop = Stop::default();
        spawn_stage("worker", stop.clone(), async {
            Err(ScanError::Internal("the worker's own error".into()))
        })
        .await
        .unwrap();
        assert!(stop.is_stopped(), "everyone learns at once");
        let err = stop.take_failure().unwrap();
        assert!(err.to_string().contains("the worker's own error"), "{err}");

        let stop = Stop::default();
        spawn_stage("worker", stop.clone(), async {
            if stop_now() {
                panic!("index out of bounds");
            }
            Ok(())
        })
        .await
        .unwrap();
        assert!(stop.is_stopped());
        let err = stop.take_failure().unwrap();
        assert!(
            matches!(
                err,
                ScanError::Panicked {
                    stage: "worker",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "internal error: the worker panicked: index out of bounds"
        );
        assert_eq!(err.exit_code(), Exit::Internal);

        let stop = Stop::default();
        spawn_stage("worker", stop.clone(), async { Ok(()) })
            .await
            .unwrap();
        assert!(!stop.is_stopped(), "a stage that ends well stops nothing");
    }

    #[test]
    fn a_panicking_thread_stops_the_run_with_its_cause_before_its_sender_closes() {
        let stop = Stop::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn({
            let stop = stop.clone();
            move || {
                let tx = tx;
                guarded("checking thread", &stop, || {
                    let _ = &tx;
                    if stop_now() {
                        panic!("index out of bounds");
                    }
                });
                // Only now may the channel close.
                assert!(stop.is_stopped());
                drop(tx);
            }
        })
        .join()
        .unwrap();
        assert!(rx.recv().is_err(), "closed after the failure was recorded");
        let err = stop.take_failure().unwrap();
        assert_eq!(
            err.to_string(),
            "internal error: the checking thread panicked: index out of bounds"
        );
        assert_eq!(err.exit_code(), Exit::Internal);

        let stop = Stop::default();
        guarded("walker", &stop, || {});
        assert!(!stop.is_stopped(), "work that ends well stops nothing");
    }

    fn stop_now() -> bool {
        true
    }
}
