//! Journal lines and records shared by the summary's unit tests.

use crate::journal::{RunEnd, RunInfo};
use crate::record::{Class, Decision, Record, WarningRecord};

pub(super) fn run(resumed: bool, simulated: bool) -> RunInfo {
    crate::journal::fixtures::run_info(resumed, simulated)
}

pub(super) fn end(outcome: &str, not_processed: u64) -> RunEnd {
    RunEnd {
        finished_at: "2026-01-01T01:00:00Z".into(),
        wall_secs: 60.0,
        outcome: serde_json::from_value(outcome.into()).expect("an outcome"),
        stop_reason: (outcome != "completed")
            .then(|| "out of credits: rerun the same command to resume".into()),
        inputs: 5,
        not_processed,
        achieved_rate_per_min: Some(239.5),
        ..Default::default()
    }
}

pub(super) fn result(key: &str, score: Option<f64>, risks: &[(&str, &str)]) -> Record {
    let approved = risks.iter().all(|(_, l)| *l != "error");
    Record {
        key: key.into(),
        class: Some(Class::Result),
        status: Some(if approved {
            Decision::Approved
        } else {
            Decision::Declined
        }),
        score,
        warnings: risks
            .iter()
            .map(|(r, l)| WarningRecord::new(r, l))
            .collect(),
        attempts: 1,
        billed: true,
        ..Default::default()
    }
    .with_action()
}

pub(super) fn failed(key: &str, class: Class, attempts: u32) -> Record {
    Record {
        key: key.into(),
        class: Some(class),
        attempts,
        ..Default::default()
    }
    .with_action()
}
