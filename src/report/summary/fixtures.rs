//! Journal lines and records shared by the report's unit tests.

use crate::journal::{RunEnd, RunInfo};
use crate::record::{Class, Decision, Record, WarningRecord};

pub(in crate::report) fn run(resumed: bool, simulated: bool) -> RunInfo {
    crate::journal::fixtures::run_info(resumed, simulated)
}

pub(in crate::report) fn end(outcome: &str, not_processed: u64) -> RunEnd {
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

pub(in crate::report) fn result(key: &str, score: Option<f64>, risks: &[(&str, &str)]) -> Record {
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

pub(in crate::report) fn failed(key: &str, class: Class, attempts: u32) -> Record {
    Record {
        key: key.into(),
        class: Some(class),
        attempts,
        ..Default::default()
    }
    .with_action()
}

/// A run header of `check` (`face-match`, `age`) with the settings its scan writes: face
/// match's threshold (always sent), age estimation's minimum age.
pub(in crate::report) fn run_of(check: &str, resumed: bool) -> RunInfo {
    let mut run = run(resumed, false);
    run.settings.check = Some(check.into());
    match check {
        "face-match" => run.settings.threshold = Some(30.0),
        "age" => run.settings.min_age = Some(18),
        _ => {}
    }
    run
}

/// A face match result: `key`'s selfie compared with `reference`, both read.
pub(in crate::report) fn pair(
    key: &str,
    reference: &str,
    score: Option<f64>,
    risks: &[(&str, &str)],
) -> Record {
    Record {
        path: format!("{key}.jpg"),
        sha256: Some("aa".repeat(32)),
        reference: Some(reference.into()),
        ref_sha256: Some("bb".repeat(32)),
        ..result(key, score, risks)
    }
}
