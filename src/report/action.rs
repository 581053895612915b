//! The action each record leads to (proceed, retake, review, fraud), as every output names it.

use crate::record::{Action, Class, FRAUD_RISKS, RETAKE_RISKS, Record, action_for};

/// Which action a risk code leads to on its own (for the warnings tables).
pub fn risk_action(code: &str) -> Action {
    if FRAUD_RISKS.contains(&code) {
        Action::Fraud
    } else if RETAKE_RISKS.contains(&code) {
        Action::Retake
    } else {
        // REVIEW_RISKS, and any code this tool does not know
        Action::Review
    }
}

/// The action of a record: the stored one, or derived from class, status and warnings.
pub fn record_action(r: &Record) -> Action {
    r.action
        .unwrap_or_else(|| action_for(r.class.unwrap_or(Class::Interrupted), r.status, &r.risks()))
}
