//! The audit part of the summary (`audit` in summary.json): who ran what (every run's identity
//! and the parameters), on which inputs (manifest SHA-256s, the input fingerprint), whether the
//! journal's chain holds, the balance before and after, and the reconciliation that must close.
//! [`Tally`] counts one run's records as they stream by; [`reconcile`] checks the equations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{Balance, ManifestHash};
use crate::journal::{ChainCheck, RunEnd, RunInfo};
use crate::record::{Class, Decision, Record};

use super::{ItemCounts, cents};

/// At most this many runs are listed (the latest ones); the rest are counted.
pub const MAX_RUNS_LISTED: usize = 50;
/// At most this many distinct key fingerprints, operators or refusal reasons are kept.
const MAX_DISTINCT: usize = 20;
/// Refusal reasons past [`MAX_DISTINCT`] are counted under this one.
const OTHER_REASON: &str = "other reasons";

/// How the input fingerprint is computed, as summary.json states it.
pub const FINGERPRINT_DEFINITION: &str = "SHA-256 over the per-item digests SHA-256(key TAB \
     sha256-of-content; for a face-match pair key TAB sha256 TAB ref_sha256) of every item whose \
     latest record is a result, sorted ascending and concatenated as raw 32-byte values";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Audit {
    /// Every run's identity, oldest first (the latest [`MAX_RUNS_LISTED`]).
    pub runs: Vec<RunEntry>,
    /// Runs not listed because there were more.
    #[serde(default)]
    pub runs_not_listed: u64,
    /// The distinct API-key fingerprints the runs used (first 8 hex of the key's SHA-256).
    pub key_fingerprints: Vec<String>,
    /// Every setting that shapes results or cost, as the latest run had them.
    pub parameters: Option<Parameters>,
    /// The SHA-256 of each manifest the latest run read.
    pub manifests: Vec<ManifestHash>,
    pub input_fingerprint: Option<InputFingerprint>,
    pub journal_chain: ChainSummary,
    /// The signature check of `report --public-key` (or what a signed journal holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureSummary>,
    /// What the files built from the journal recorded of it and it no longer holds (it was cut
    /// back, emptied or rewritten since): empty when they agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<String>,
    pub balance: BalanceSummary,
    pub reconciliation: Reconciliation,
}

/// The journal's seals and SHA256SUMS.minisig, as checked with a public key (or, without one,
/// what is there).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct SignatureSummary {
    /// The minisign key id the seals name.
    pub key_id: Option<String>,
    pub seals: u64,
    /// Whether the signatures were checked with a public key.
    pub checked: bool,
    /// Every failure found; empty when every signature holds.
    pub problems: Vec<String>,
}

/// One run: who, when, with which build and key, and why.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunEntry {
    /// None for runs written before run ids existed.
    pub run_id: Option<String>,
    pub started_at: String,
    pub resumed: bool,
    pub tool_version: String,
    pub tool_commit: Option<String>,
    pub operator: Option<String>,
    pub purpose: Option<String>,
    pub command_line: Vec<String>,
    pub key_fingerprint: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Parameters {
    pub api_host: String,
    pub simulated: bool,
    /// The check (`face-match`, `age`); none for passive liveness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Age estimation's minimum age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<u32>,
    /// None: Didit's default (30). Face match's similarity threshold in a face-match run.
    pub threshold: Option<f64>,
    pub rotate_image: bool,
    pub save_api_request: bool,
    pub rate: String,
    pub concurrency: usize,
    pub max_requests: Option<u64>,
    pub dedupe: bool,
    /// Retries, backoff, timeout, price: None for runs written before they were recorded.
    pub max_retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub timeout_secs: Option<f64>,
    pub price_per_call_usd: Option<f64>,
    pub retry_failed: Option<bool>,
    pub checksum: Option<bool>,
    pub retry_unknown: Option<bool>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct InputFingerprint {
    pub sha256: String,
    /// Items it covers (those whose latest record is a result).
    pub items: u64,
    pub definition: String,
}

/// The journal's chain, as checked while building these outputs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ChainSummary {
    /// "chained" or "broken".
    pub state: String,
    pub lines: u64,
    pub chained_lines: u64,
    /// SHA-256 of the last line: the head of the chain, which vouches for every line before it.
    pub head: Option<String>,
    pub broken: Option<crate::journal::ChainBreak>,
}

impl From<&ChainCheck> for ChainSummary {
    fn from(c: &ChainCheck) -> Self {
        Self {
            state: c.state().to_string(),
            lines: c.lines,
            chained_lines: c.chained,
            head: c.head(),
            broken: c.broken.clone(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct BalanceSummary {
    /// Read before the latest run's first call.
    pub before: Option<Balance>,
    /// Read after its last answer.
    pub after: Option<Balance>,
    /// before - after, in US dollars, when both are known.
    pub spent_usd: Option<f64>,
}

/// The equations an auditor checks, every term named. `closes` is false when any fails:
/// that is a bug, reported, never hidden.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Reconciliation {
    pub closes: bool,
    /// Each equation that does not close, in words with both sides.
    pub problems: Vec<String>,
    /// The latest run of each journal; None when one has no end line.
    pub run: Option<RunReconciliation>,
    /// Why there is no run reconciliation.
    pub run_unavailable: Option<String>,
    pub items: ItemsReconciliation,
    pub money: Money,
}

/// found = ignored + refused locally + deduplicated + done earlier + screened + not processed;
/// screened = approved + declined + each error class.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct RunReconciliation {
    /// Files found in the sources: inputs + ignored.
    pub found: u64,
    pub ignored: u64,
    pub refused_locally: u64,
    pub refused_by_reason: BTreeMap<String, u64>,
    pub deduplicated: u64,
    pub done_earlier: u64,
    pub screened: u64,
    pub not_processed: u64,
    /// What the screened items ended as: approved, declined, then each class without a result.
    pub screened_outcomes: BTreeMap<String, u64>,
    /// Records the run wrote (= refused locally + deduplicated + screened).
    pub recorded: u64,
}

/// items = approved + declined + each class without a result.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ItemsReconciliation {
    pub items: u64,
    pub approved: u64,
    pub declined: u64,
    pub without_result: BTreeMap<String, u64>,
}

/// Billable calls = 200 answers; estimated cost = billable calls x price.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Money {
    pub billable_calls: u64,
    /// Sends whose outcome was unknown (each may or may not have been billed).
    #[serde(default)]
    pub unknown_outcomes: u64,
    /// Of those, the ones the same image was sent again after: each may be billed twice.
    pub possible_double_charges: u64,
    pub price_per_call_usd: f64,
    pub estimated_cost_usd: f64,
}

/// A count with its name, as the equations show them: "screened 31".
fn term(name: &str, n: u64) -> String {
    format!("{name} {n}")
}

impl Audit {
    /// Who ran the latest run, with which build and key, and why.
    pub fn identity_rows(&self) -> Vec<(&'static str, String)> {
        let Some(r) = self.runs.last() else {
            return vec![("Run", "no run recorded".to_string())];
        };
        let unknown = || "not recorded (a run written before this was kept)".to_string();
        let mut rows = vec![
            ("Run id", r.run_id.clone().unwrap_or_else(unknown)),
            (
                "Tool",
                format!(
                    "liveness-batch {} (commit {})",
                    r.tool_version,
                    r.tool_commit.as_deref().unwrap_or("not recorded")
                ),
            ),
            ("Operator", r.operator.clone().unwrap_or_else(unknown)),
            (
                "Purpose",
                r.purpose.clone().unwrap_or_else(|| "not given".to_string()),
            ),
            ("Started", r.started_at.clone()),
            (
                "Command line",
                if r.command_line.is_empty() {
                    unknown()
                } else {
                    r.command_line.join(" ")
                },
            ),
            (
                "API key fingerprint",
                match (&r.key_fingerprint, self.key_fingerprints.len()) {
                    (Some(fp), 0 | 1) => format!("{fp} (first 8 hex digits of the key's SHA-256)"),
                    (_, _) if !self.key_fingerprints.is_empty() => format!(
                        "{} (keys used by the runs in this journal: first 8 hex digits of each \
                         key's SHA-256)",
                        self.key_fingerprints.join(", ")
                    ),
                    _ => "not recorded".to_string(),
                },
            ),
        ];
        if self.runs.len() + self.runs_not_listed as usize > 1 {
            rows.push((
                "Runs",
                format!(
                    "{} in this journal (each listed in summary.json with its own id, operator \
                     and command line)",
                    self.runs.len() as u64 + self.runs_not_listed
                ),
            ));
        }
        rows
    }

    /// Every setting that shapes results or cost.
    pub fn parameter_rows(&self) -> Vec<(&'static str, String)> {
        let Some(p) = &self.parameters else {
            return Vec::new();
        };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "not recorded".to_string());
        vec![
            (
                "API host",
                format!(
                    "{}{}",
                    p.api_host,
                    if p.simulated {
                        " (the built-in emulator)"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "Check",
                match (p.check.as_deref(), p.min_age) {
                    (Some(c), Some(age)) => format!("{c} (minimum age {age})"),
                    (Some(c), None) => c.to_string(),
                    (None, _) => "liveness".to_string(),
                },
            ),
            (
                if p.check.as_deref() == Some(crate::didit::FACE_MATCH.check) {
                    "Threshold (face match similarity)"
                } else {
                    "Threshold"
                },
                super::fmt_threshold(p.threshold),
            ),
            ("rotate_image", p.rotate_image.to_string()),
            ("save_api_request", p.save_api_request.to_string()),
            ("Rate", p.rate.clone()),
            ("Concurrency", p.concurrency.to_string()),
            ("Retries", opt(p.max_retries.map(|n| n.to_string()))),
            ("Backoff", opt(p.backoff_ms.map(|n| format!("{n} ms")))),
            ("Timeout", opt(p.timeout_secs.map(|n| format!("{n} s")))),
            (
                "Budget (--max-requests)",
                p.max_requests
                    .map_or_else(|| "none".to_string(), |n| n.to_string()),
            ),
            (
                "Assumed price",
                opt(p.price_per_call_usd.map(|x| format!("US${x:.2} a call"))),
            ),
            (
                "Deduplication",
                if p.dedupe { "on" } else { "off" }.to_string(),
            ),
            ("Retry failed", opt(p.retry_failed.map(|b| b.to_string()))),
            (
                "Checksum every item",
                opt(p.checksum.map(|b| b.to_string())),
            ),
        ]
    }

    /// The inputs and the journal: manifest hashes, the input fingerprint, the chain.
    pub fn provenance_rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        for m in &self.manifests {
            rows.push((
                "Manifest",
                match (&m.sha256, &m.note) {
                    (Some(sha), _) => format!("{} SHA-256 {sha}", m.path),
                    (None, Some(note)) => format!("{} ({note})", m.path),
                    (None, None) => m.path.clone(),
                },
            ));
        }
        rows.push((
            "Input fingerprint",
            match &self.input_fingerprint {
                Some(f) => format!("{} over {} item(s) with a result", f.sha256, f.items),
                None => "not computed".to_string(),
            },
        ));
        let c = &self.journal_chain;
        rows.push((
            "Journal chain",
            match &c.broken {
                Some(b) => format!("BROKEN at line {}: {}", b.line, b.reason),
                None => format!(
                    "intact: each of the {} lines carries the hash of the line before it",
                    c.chained_lines
                ),
            },
        ));
        if let Some(head) = &c.head {
            rows.push(("Chain head (last line's SHA-256)", head.clone()));
        }
        for d in &self.disagreements {
            rows.push(("Journal", format!("CUT BACK OR REWRITTEN: {d}")));
        }
        if let Some(sig) = &self.signature {
            let key = sig.key_id.as_deref().unwrap_or("none");
            rows.push((
                "Signature",
                match (sig.checked, sig.problems.first()) {
                    (true, None) => format!(
                        "verified with minisign key {key}: {} seal(s), the last one closing the \
                         journal, and SHA256SUMS.minisig",
                        sig.seals
                    ),
                    (true, Some(p)) => format!("FAILED with minisign key {key}: {p}"),
                    (false, _) => format!(
                        "{} seal(s) by minisign key {key}, not checked (give --public-key)",
                        sig.seals
                    ),
                },
            ));
        }
        rows
    }

    /// The balance before and after the latest run.
    pub fn balance_rows(&self) -> Vec<(&'static str, String)> {
        let b = &self.balance;
        let show = |x: &Option<Balance>| {
            x.as_ref()
                .map_or_else(|| "not read".to_string(), Balance::describe)
        };
        let mut rows = vec![
            ("Balance before", show(&b.before)),
            ("Balance after", show(&b.after)),
        ];
        if let Some(spent) = b.spent_usd {
            rows.push(("Balance change", format!("US${spent:.2} spent")));
        }
        rows
    }

    /// The reconciliation as equations with every term named, in order.
    pub fn equations(&self) -> Vec<String> {
        let r = &self.reconciliation;
        let mut out = Vec::new();
        match (&r.run, &r.run_unavailable) {
            (Some(run), _) => {
                let reasons = if run.refused_by_reason.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        run.refused_by_reason
                            .iter()
                            .map(|(k, n)| format!("{k}: {n}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                };
                out.push(format!(
                    "Latest run: {} = {} + {}{reasons} + {} + {} + {} + {}",
                    term("files found", run.found),
                    term("ignored", run.ignored),
                    term("refused locally", run.refused_locally),
                    term("deduplicated", run.deduplicated),
                    term("done earlier", run.done_earlier),
                    term("screened", run.screened),
                    term("not processed", run.not_processed),
                ));
                let outcomes: Vec<String> = run
                    .screened_outcomes
                    .iter()
                    .map(|(k, n)| term(k, *n))
                    .collect();
                out.push(format!(
                    "Latest run: {} = {}",
                    term("screened", run.screened),
                    if outcomes.is_empty() {
                        "0".to_string()
                    } else {
                        outcomes.join(" + ")
                    }
                ));
            }
            (None, Some(why)) => out.push(format!("Latest run: not reconciled: {why}")),
            (None, None) => {}
        }
        let i = &r.items;
        let errors: Vec<String> = i
            .without_result
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| term(k, *n))
            .collect();
        out.push(format!(
            "All items: {} = {} + {}{}",
            term("items", i.items),
            term("approved", i.approved),
            term("declined", i.declined),
            if errors.is_empty() {
                String::new()
            } else {
                format!(" + {}", errors.join(" + "))
            }
        ));
        let m = &r.money;
        out.push(format!(
            "Money: billable calls (200 answers) {} x US${:.2} = estimated cost US${:.2}; \
             sends with an unknown outcome {}, of them sent again (possible double charges) {}",
            m.billable_calls,
            m.price_per_call_usd,
            m.estimated_cost_usd,
            m.unknown_outcomes,
            m.possible_double_charges
        ));
        out
    }

    /// "closes" or "DOES NOT CLOSE: ...".
    pub fn verdict(&self) -> String {
        let r = &self.reconciliation;
        if r.closes {
            "The reconciliation closes: every equation holds.".to_string()
        } else {
            format!(
                "THE RECONCILIATION DOES NOT CLOSE (a bug in this tool, never hidden): {}",
                r.problems.join("; ")
            )
        }
    }
}

/// One run's records, counted as they stream by.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Tally {
    pub records: u64,
    pub refused: BTreeMap<String, u64>,
    pub deduplicated: u64,
    pub screened: BTreeMap<String, u64>,
}

impl Tally {
    pub fn on_record(&mut self, r: &Record) {
        self.records += 1;
        let class = r.class.unwrap_or(Class::Interrupted);
        if r.duplicate_of.is_some() {
            self.deduplicated += 1;
        } else if class == Class::InvalidInput {
            let reason = crate::audit::category(r.error.as_deref().unwrap_or("refused"));
            let key = if self.refused.contains_key(&reason) || self.refused.len() < MAX_DISTINCT {
                reason
            } else {
                OTHER_REASON.to_string()
            };
            *self.refused.entry(key).or_default() += 1;
        } else {
            let outcome = match (class, r.status) {
                (Class::Result, Some(Decision::Approved)) => "approved",
                (Class::Result, Some(Decision::Declined)) => "declined",
                (c, _) => c.as_str(),
            };
            *self.screened.entry(outcome.to_string()).or_default() += 1;
        }
    }

    fn add(&mut self, other: &Tally) {
        self.records += other.records;
        self.deduplicated += other.deduplicated;
        for (k, n) in &other.refused {
            *self.refused.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &other.screened {
            *self.screened.entry(k.clone()).or_default() += n;
        }
    }
}

/// The audit facts gathered from the run headers and end lines, streamed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct AuditState {
    runs: std::collections::VecDeque<RunEntry>,
    runs_not_listed: u64,
    key_fingerprints: Vec<String>,
    parameters: Option<Parameters>,
    manifests: Vec<ManifestHash>,
    before: Option<Balance>,
    after: Option<Balance>,
    pub chain: ChainCheck,
    pub input_fingerprint: Option<InputFingerprint>,
}

impl AuditState {
    pub fn on_run(&mut self, run: &RunInfo) {
        let id = run.identity.as_ref();
        if self.runs.len() == MAX_RUNS_LISTED {
            self.runs.pop_front();
            self.runs_not_listed += 1;
        }
        self.runs.push_back(RunEntry {
            run_id: id.map(|i| i.run_id.clone()),
            started_at: run.started_at.clone(),
            resumed: run.resumed,
            tool_version: run.tool_version.clone(),
            tool_commit: id.map(|i| i.tool_commit.clone()),
            operator: id.map(|i| i.operator.clone()),
            purpose: id.and_then(|i| i.purpose.clone()),
            command_line: id.map(|i| i.command_line.clone()).unwrap_or_default(),
            key_fingerprint: id.and_then(|i| i.key_fingerprint.clone()),
        });
        if let Some(fp) = id.and_then(|i| i.key_fingerprint.as_ref())
            && !self.key_fingerprints.contains(fp)
            && self.key_fingerprints.len() < MAX_DISTINCT
        {
            self.key_fingerprints.push(fp.clone());
        }
        let t = run.tuning.as_ref();
        self.parameters = Some(Parameters {
            api_host: run.settings.api_host.clone(),
            simulated: run.settings.simulated,
            check: run.settings.check.clone(),
            min_age: run.settings.min_age,
            threshold: run.settings.threshold,
            rotate_image: run.settings.rotate_image,
            save_api_request: run.settings.save_api_request,
            rate: run.rate.clone(),
            concurrency: run.concurrency,
            max_requests: run.max_requests,
            dedupe: run.dedupe,
            max_retries: t.map(|t| t.max_retries),
            backoff_ms: t.map(|t| t.backoff_ms),
            timeout_secs: t.map(|t| t.timeout_secs),
            price_per_call_usd: t.map(|t| t.price_per_call_usd),
            retry_failed: t.map(|t| t.retry_failed),
            checksum: t.map(|t| t.checksum),
            retry_unknown: t.map(|t| t.retry_unknown),
        });
        self.manifests = run.manifests.clone();
        self.before = run.balance.clone();
        self.after = None;
    }

    pub fn on_end(&mut self, end: &RunEnd) {
        self.after = end.balance.clone();
    }

    pub fn finish(self, reconciliation: Reconciliation) -> Audit {
        let spent_usd = match (
            self.before.as_ref().and_then(Balance::amount),
            self.after.as_ref().and_then(Balance::amount),
        ) {
            (Some(b), Some(a)) => Some(cents(b - a)),
            _ => None,
        };
        Audit {
            runs: self.runs.into_iter().collect(),
            runs_not_listed: self.runs_not_listed,
            key_fingerprints: self.key_fingerprints,
            parameters: self.parameters,
            manifests: self.manifests,
            input_fingerprint: self.input_fingerprint,
            journal_chain: ChainSummary::from(&self.chain),
            signature: None,
            disagreements: Vec::new(),
            balance: BalanceSummary {
                before: self.before,
                after: self.after,
                spent_usd,
            },
            reconciliation,
        }
    }
}

/// The latest run of one journal: its end line and its records.
pub struct LastRun<'a> {
    pub end: &'a RunEnd,
    pub tally: &'a Tally,
}

/// Check every equation. `runs` holds the latest run of each journal, or None when one of
/// them has no end line.
pub fn reconcile(
    runs: Option<Vec<LastRun<'_>>>,
    items: &ItemCounts,
    approved: u64,
    declined: u64,
    without_result: BTreeMap<String, u64>,
    money: Money,
) -> Reconciliation {
    let mut problems = Vec::new();
    let mut run_unavailable = None;
    let run = match runs {
        None => {
            run_unavailable = Some(
                "the last run has no end line (killed or crashed), so its counts cannot be \
                 reconciled; rerun the same command to resume"
                    .to_string(),
            );
            None
        }
        Some(runs) if runs.is_empty() => {
            run_unavailable = Some("no run has been recorded".to_string());
            None
        }
        Some(runs) => {
            let mut tally = Tally::default();
            let mut r = RunReconciliation::default();
            let mut end_dedup = 0;
            let mut end_recorded = 0;
            let mut inputs = 0;
            for run in &runs {
                tally.add(run.tally);
                inputs += run.end.inputs;
                r.ignored += run.end.ignored;
                r.done_earlier += run.end.skipped_done;
                r.not_processed += run.end.not_processed;
                end_dedup += run.end.deduplicated;
                end_recorded += run.end.recorded;
                if let Some(i) = &run.end.incomplete {
                    problems.push(format!(
                        "the population is incomplete: {} was not listed to its end, so \
                         files found counts only what was listed",
                        i.source
                    ));
                }
            }
            r.found = inputs + r.ignored;
            r.refused_locally = tally.refused.values().sum();
            r.refused_by_reason = tally.refused;
            r.deduplicated = tally.deduplicated;
            r.screened = tally.screened.values().sum();
            r.screened_outcomes = tally.screened;
            r.recorded = tally.records;
            let right = r.ignored
                + r.refused_locally
                + r.deduplicated
                + r.done_earlier
                + r.screened
                + r.not_processed;
            if r.found != right {
                problems.push(format!(
                    "files found ({}) != ignored ({}) + refused locally ({}) + deduplicated ({}) \
                     + done earlier ({}) + screened ({}) + not processed ({}) = {right}",
                    r.found,
                    r.ignored,
                    r.refused_locally,
                    r.deduplicated,
                    r.done_earlier,
                    r.screened,
                    r.not_processed
                ));
            }
            if end_dedup != r.deduplicated {
                problems.push(format!(
                    "the run counted {end_dedup} deduplicated item(s) but its records show {}",
                    r.deduplicated
                ));
            }
            if end_recorded != r.recorded {
                problems.push(format!(
                    "the run counted {end_recorded} record(s) written but the journal holds {} \
                     for it",
                    r.recorded
                ));
            }
            Some(r)
        }
    };
    let errors: u64 = without_result.values().sum();
    if items.total != approved + declined + errors {
        problems.push(format!(
            "items ({}) != approved ({approved}) + declined ({declined}) + without a result \
             ({errors})",
            items.total
        ));
    }
    if items.with_result != approved + declined {
        problems.push(format!(
            "items with a result ({}) != approved ({approved}) + declined ({declined}): a \
             result without a decision",
            items.with_result
        ));
    }
    Reconciliation {
        closes: problems.is_empty(),
        problems,
        run,
        run_unavailable,
        items: ItemsReconciliation {
            items: items.total,
            approved,
            declined,
            without_result,
        },
        money,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(inputs: u64, ignored: u64, skipped: u64, dedup: u64, recorded: u64) -> RunEnd {
        RunEnd {
            inputs,
            ignored,
            skipped_done: skipped,
            deduplicated: dedup,
            recorded,
            ..Default::default()
        }
    }

    fn tally() -> Tally {
        let mut t = Tally::default();
        let rec = |class: Class, status: Option<Decision>| Record {
            class: Some(class),
            status,
            ..Default::default()
        };
        t.on_record(&rec(Class::Result, Some(Decision::Approved)));
        t.on_record(&rec(Class::Result, Some(Decision::Declined)));
        t.on_record(&rec(Class::Transient, None));
        let mut bad = rec(Class::InvalidInput, None);
        bad.error = Some("not an image: PDF".into());
        t.on_record(&bad);
        let mut dup = rec(Class::Result, Some(Decision::Approved));
        dup.duplicate_of = Some("a".into());
        t.on_record(&dup);
        t
    }

    fn items() -> ItemCounts {
        ItemCounts {
            total: 5,
            with_result: 3,
            without_result: 2,
            needing_attention: 0,
            gone: 0,
        }
    }

    fn without() -> BTreeMap<String, u64> {
        [("invalid_input".to_string(), 1), ("transient".into(), 1)].into()
    }

    #[test]
    fn a_consistent_run_closes_with_every_term_named() {
        let t = tally();
        let e = end(7, 2, 2, 1, 5);
        let r = reconcile(
            Some(vec![LastRun { end: &e, tally: &t }]),
            &items(),
            2,
            1,
            without(),
            Money::default(),
        );
        assert!(r.closes, "{:?}", r.problems);
        let run = r.run.unwrap();
        assert_eq!(
            (
                run.found,
                run.refused_locally,
                run.deduplicated,
                run.screened
            ),
            (9, 1, 1, 3)
        );
        assert_eq!(run.refused_by_reason.get("not an image"), Some(&1));
        assert_eq!(run.screened_outcomes.get("transient"), Some(&1));
    }

    #[test]
    fn a_count_off_by_one_is_named() {
        let t = tally();
        let e = end(8, 2, 2, 1, 5);
        let r = reconcile(
            Some(vec![LastRun { end: &e, tally: &t }]),
            &items(),
            2,
            1,
            without(),
            Money::default(),
        );
        assert!(!r.closes);
        assert!(
            r.problems[0].starts_with("files found (10) != ignored (2)"),
            "{:?}",
            r.problems
        );
        let r = reconcile(None, &items(), 2, 0, without(), Money::default());
        assert!(!r.closes, "items do not add up");
        assert!(r.run_unavailable.is_some());
        assert!(r.problems[0].contains("items (5) != approved (2) + declined (0)"));
    }
}
