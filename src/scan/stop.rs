//! The run's stop switch: why a run ends early (a fatal answer, the budget, a signal, or a
//! failing stage), the first cause wins, and cancelling it stops new submissions at once.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::ScanError;
use crate::didit::FatalKind;
use crate::exit::Exit;
use crate::journal::RunOutcome;

/// Why a run stopped before the end of its input.
#[derive(Debug, Clone)]
pub enum StopCause {
    Fatal {
        kind: FatalKind,
        message: String,
    },
    Budget {
        limit: u64,
    },
    Interrupted,
    Terminated,
    /// A stage of the pipeline failed; the error itself is kept by [`Stop`].
    Failed,
}

impl StopCause {
    pub fn exit_code(&self) -> Exit {
        match self {
            StopCause::Fatal { kind, .. } => kind.exit_code(),
            StopCause::Budget { .. } => Exit::Credits,
            StopCause::Interrupted => Exit::Interrupted,
            StopCause::Terminated => Exit::Terminated,
            StopCause::Failed => Exit::Internal,
        }
    }

    pub fn outcome(&self) -> RunOutcome {
        match self {
            StopCause::Fatal { .. } | StopCause::Budget { .. } => RunOutcome::Stopped,
            StopCause::Interrupted => RunOutcome::Interrupted,
            StopCause::Terminated => RunOutcome::Terminated,
            StopCause::Failed => RunOutcome::Failed,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StopCause::Fatal { kind, message } => {
                format!("{} (the API said: {message})", kind.explain())
            }
            StopCause::Budget { limit } => format!(
                "the --max-requests budget of {limit} billable calls was reached; rerun the same \
                 command (with a new budget) to screen the rest"
            ),
            StopCause::Interrupted => {
                "interrupted (Ctrl-C); rerun the same command to screen the rest".to_string()
            }
            StopCause::Terminated => {
                "terminated (SIGTERM); rerun the same command to screen the rest".to_string()
            }
            StopCause::Failed => "a stage of the run failed".to_string(),
        }
    }
}

/// The run's stop switch, shared by every stage. The first cause wins; a failing stage also
/// leaves its error, which the run returns once everything in flight has drained.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
    failure: Arc<Mutex<Option<ScanError>>>,
}

impl Stop {
    pub fn stop(&self, cause: StopCause) {
        let mut slot = self.cause.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(cause);
        }
        self.token.cancel();
    }

    /// A stage failed: stop everything; the first failure is what the run returns.
    pub fn fail(&self, error: ScanError) {
        {
            let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(error);
            }
        }
        self.stop(StopCause::Failed);
    }

    pub fn cause(&self) -> Option<StopCause> {
        self.cause.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The failure that stopped the run, taken once at the end.
    pub fn take_failure(&self) -> Option<ScanError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub fn has_failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_cause_wins_and_a_failure_is_kept() {
        let stop = Stop::default();
        assert!(!stop.is_stopped());
        stop.stop(StopCause::Interrupted);
        stop.stop(StopCause::Terminated);
        assert!(stop.is_stopped());
        assert!(matches!(stop.cause(), Some(StopCause::Interrupted)));
        assert!(!stop.has_failed());

        let stop = Stop::default();
        stop.fail(ScanError::Internal("writer".into()));
        stop.fail(ScanError::Internal("second".into()));
        assert!(matches!(stop.cause(), Some(StopCause::Failed)));
        let err = stop.take_failure().expect("kept");
        assert!(err.to_string().contains("writer"), "{err}");
        assert!(stop.take_failure().is_none(), "taken once");
    }
}
