//! The finished-item record: one journal line per screened (or refused) image, and the
//! `action` a reviewer should take on it. Every output is derived from these records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Declares an enum whose values have wire names (in journals, outputs and serde alike), the
/// list of its values and their names, from one table.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $ty:ident[$n:literal] { $($(#[$doc:meta])* $name:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $ty {
            $($(#[$doc])* #[serde(rename = $wire)] $name,)*
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: [$ty; $n] = [$($ty::$name),*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$name => $wire,)*
                }
            }
        }
    };
}

wire_enum! {
    /// How an item ended. `Result` is the only class with a liveness decision.
    Class[10] {
        /// HTTP 200: Approved or Declined with every field.
        Result = "result",
        /// Refused locally by preflight (missing, unreadable, empty, too large, not an image);
        /// never sent.
        InvalidInput = "invalid_input",
        /// 400 or 413 from the API: the file or a field was refused; not retried.
        Rejected = "rejected",
        /// HTTP 200 without a usable `liveness` (missing, null, not an object, no Approved or
        /// Declined status): billed, no decision; not retried within the run, always redone by
        /// a rerun.
        BadAnswer = "bad_answer",
        /// 429 on every attempt until the retry budget was spent.
        RateLimited = "rate_limited",
        /// 5xx, connection errors or timeouts until the retry budget was spent.
        Transient = "transient",
        /// 401/402/403/404 on this item's request: the whole run stopped.
        Fatal = "fatal",
        /// A request whose outcome is unknown (timeout or reset after the body was sent) and
        /// that was not retried (`--no-retry-unknown`): it may have been billed; reconcile by
        /// hand.
        Unknown = "unknown",
        /// The run was interrupted while this item's request was in flight.
        Interrupted = "interrupted",
        /// The object (or file) could not be read from its store (storage retries exhausted,
        /// or it changed while read): never sent, no credit spent; a rerun reads it again.
        SourceError = "source_error",
    }
}

impl Class {
    /// Whether a resumed run skips an item whose latest record has this class.
    /// With `retry_failed`, items that were rejected or ran out of retries are redone too.
    pub fn is_done(self, retry_failed: bool) -> bool {
        match self {
            Class::Result | Class::InvalidInput => true,
            Class::Rejected | Class::RateLimited | Class::Transient | Class::Unknown => {
                !retry_failed
            }
            Class::BadAnswer | Class::Fatal | Class::Interrupted | Class::SourceError => false,
        }
    }
}

wire_enum! {
    /// What a reviewer should do with an item; first matching rule wins (see [`action_for`]).
    Action[6] {
        Fraud = "fraud", Retake = "retake", Review = "review", Proceed = "proceed",
        FixInput = "fix_input", Rerun = "rerun",
    }
}

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Action::Fraud => "presentation attack or blocklisted face: treat as fraud",
            Action::Retake => "no usable face: ask the user for a new selfie",
            Action::Review => {
                "needs a human look (low score, several faces, duplicate or unknown risk)"
            }
            Action::Proceed => "approved with no warning that needs attention",
            Action::FixInput => "the file itself was refused; nothing was billed",
            Action::Rerun => {
                "no result yet (retries exhausted, interrupted, unknown outcome, an answer \
                 without a decision, or storage that could not be read): rerun"
            }
        }
    }
}

/// Risk codes that mean fraud.
pub const FRAUD_RISKS: [&str; 3] = [
    "LIVENESS_FACE_ATTACK",
    "FACE_IN_BLOCKLIST",
    "POSSIBLE_FACE_IN_BLOCKLIST",
];
/// Risk codes that mean the selfie is unusable and must be taken again (face match: no face
/// in one of the pair; age estimation: no age could be estimated).
pub const RETAKE_RISKS: [&str; 6] = [
    "NO_FACE_DETECTED",
    "LOW_FACE_QUALITY",
    "LOW_FACE_LUMINANCE",
    "HIGH_FACE_LUMINANCE",
    "NO_REFERENCE_IMAGE",
    "AGE_NOT_DETECTED",
];
/// Risk codes known to the checks that call for a human review (face match: a similarity at
/// or below the threshold; age estimation: an estimate, not proof, below the minimum).
pub const REVIEW_RISKS: [&str; 6] = [
    "LOW_LIVENESS_SCORE",
    "MULTIPLE_FACES_DETECTED",
    "DUPLICATED_FACE",
    "POSSIBLE_DUPLICATED_FACE",
    "LOW_FACE_MATCH_SIMILARITY",
    "AGE_BELOW_MINIMUM",
];

/// Didit's guidance turned into one action per item: fraud, then retake, then review (including
/// any risk code this tool does not know), then proceed for a clean Approved.
pub fn action_for(class: Class, status: Option<Decision>, risks: &[&str]) -> Action {
    match class {
        Class::InvalidInput | Class::Rejected => return Action::FixInput,
        Class::Result => {}
        _ => return Action::Rerun,
    }
    if risks.iter().any(|r| FRAUD_RISKS.contains(r)) {
        return Action::Fraud;
    }
    if risks.iter().any(|r| RETAKE_RISKS.contains(r)) {
        return Action::Retake;
    }
    let known =
        |r: &&str| FRAUD_RISKS.contains(r) || RETAKE_RISKS.contains(r) || REVIEW_RISKS.contains(r);
    if risks.iter().any(|r| REVIEW_RISKS.contains(r) || !known(r)) {
        return Action::Review;
    }
    match status {
        Some(Decision::Approved) => Action::Proceed,
        // Declined without any known warning cannot be acted on blindly.
        _ => Action::Review,
    }
}

/// The liveness decision of a 200 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    Approved,
    Declined,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "Approved",
            Decision::Declined => "Declined",
        }
    }
}

/// One warning as kept in the record: the code and its severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningRecord {
    pub risk: String,
    pub log_type: String,
}

impl WarningRecord {
    pub fn new(risk: &str, log_type: &str) -> Self {
        Self {
            risk: risk.to_string(),
            log_type: log_type.to_string(),
        }
    }
}

/// The largest face Didit found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FaceRecord {
    /// Estimated age, gender and face box: outputs leave them out unless asked for (the
    /// journal keeps them, and Didit's answer as received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<Vec<f64>>,
    pub confidence: Option<f64>,
}

/// One finished item: a journal line with `"type": "item"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Record {
    /// Stable identity: manifest id, else the path relative to the source root.
    pub key: String,
    /// The path as given (manifest) or found (folder walk).
    pub path: String,
    /// Where the item came from (folder or manifest path as given on the command line).
    #[serde(default)]
    pub source: String,
    /// The item's position in its run's input (outputs list items in this order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// SHA-256 of the file's bytes; absent when the file could not be read.
    pub sha256: Option<String>,
    /// Face match: the reference image the selfie was compared with, as given (a manifest's
    /// `ref_path` cell) or found (under `--ref-dir`): the pair's second key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Face match: SHA-256 of the reference's bytes, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_sha256: Option<String>,
    pub size_bytes: Option<u64>,
    /// The version of what was read (for a file, its size and modification time), which a
    /// resume compares before reading the item again. Absent in journals written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Detected format by magic bytes (jpeg, png, webp, tiff, or what it really is).
    pub format: Option<String>,
    pub vendor_data: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// Manifest columns carried through so users can join back to their data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,

    pub class: Option<Class>,
    pub action: Option<Action>,
    pub status: Option<Decision>,
    pub score: Option<f64>,
    pub face_quality: Option<f64>,
    pub face_luminance: Option<f64>,
    #[serde(default)]
    pub warnings: Vec<WarningRecord>,
    pub face: Option<FaceRecord>,
    /// Age estimation: the estimated age of the largest face (none when none was estimated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_age: Option<f64>,
    pub request_id: Option<String>,
    pub created_at: Option<String>,
    pub http_status: Option<u16>,
    /// Requests sent for this item (0 when refused locally or deduplicated).
    #[serde(default)]
    pub attempts: u32,
    /// 429 answers received while screening this item.
    #[serde(default)]
    pub rate_limited: u32,
    /// Sends of this image that repeated an earlier send whose outcome was unknown (the
    /// upload left, no definitive answer came back: a timeout or reset after sending, a 5xx),
    /// within this record's retries or from an earlier record or a dead run of the same key:
    /// each may have been billed twice. Counted only when this record sent.
    #[serde(default)]
    pub possible_double_charges: u32,
    /// Sends of this record whose outcome was unknown (repeated or not).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub unknown_outcomes: u32,
    /// True when the image's last send (this record's, or an earlier one this record did not
    /// repeat) had an unknown outcome that no send has repeated yet: the next send of the same
    /// image is a possible double charge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown_pending: bool,
    /// Whether a 200 was received for this item (one credit spent).
    #[serde(default)]
    pub billed: bool,
    pub latency_ms: Option<u64>,
    /// Human-readable error: preflight reason, the API's field message, or the transport error.
    pub error: Option<String>,
    /// The API field the error names (`user_image`, `face_liveness_score_decline_threshold`, ...).
    pub error_field: Option<String>,
    /// Set when this item had the same content as an earlier item and reuses its result.
    pub duplicate_of: Option<String>,
    pub finished_at: Option<String>,
    /// The API's JSON as received (200 only), for the audit trail.
    #[serde(default, deserialize_with = "response_as_kept")]
    pub response: Option<Answer>,
}

/// Didit's answer as a record keeps it: the text as received (made one line, the key already
/// removed), written to the journal as it is, or the value read back from a journal (or built
/// when the text could not be kept as it came).
#[derive(Debug, Clone)]
pub enum Answer {
    Text(Box<serde_json::value::RawValue>),
    Value(serde_json::Value),
}

impl Answer {
    /// The answer as a JSON value (text that does not parse, which [`Answer::Text`] never
    /// holds, reads as null).
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Answer::Text(text) => serde_json::from_str(text.get()).unwrap_or_default(),
            Answer::Value(v) => v.clone(),
        }
    }
}

impl From<serde_json::Value> for Answer {
    fn from(v: serde_json::Value) -> Self {
        Answer::Value(v)
    }
}

/// Two answers are equal when they hold the same JSON value, however written.
impl PartialEq for Answer {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl PartialEq<serde_json::Value> for Answer {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Text(text) => text.serialize(s),
            Answer::Value(v) => v.serialize(s),
        }
    }
}

/// Read back as a value: a journal line may come through serde's buffering (a line written
/// by hand or by an older release), where text cannot be borrowed as it is.
impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Answer::Value)
    }
}

thread_local! {
    /// False while [`without_response`] runs on this thread.
    static KEEP_RESPONSE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Run `parse` with every record it deserializes on this thread leaving `response` out
/// (`None`; the JSON is still checked, not built): the outputs never show Didit's answer, and
/// building it is most of the cost of parsing a record.
pub fn without_response<T>(parse: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            KEEP_RESPONSE.set(self.0);
        }
    }
    let _restore = Restore(KEEP_RESPONSE.replace(false));
    parse()
}

fn response_as_kept<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Answer>, D::Error> {
    if KEEP_RESPONSE.get() {
        Option::deserialize(d)
    } else {
        serde::de::IgnoredAny::deserialize(d).map(|_| None)
    }
}

impl Record {
    pub fn risks(&self) -> Vec<&str> {
        self.warnings.iter().map(|w| w.risk.as_str()).collect()
    }

    /// Fill in `action` from class, status and warnings.
    pub fn with_action(mut self) -> Self {
        let risks = self.risks();
        let action = action_for(
            self.class.unwrap_or(Class::Interrupted),
            self.status,
            &risks,
        );
        self.action = Some(action);
        self
    }
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests;
