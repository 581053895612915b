//! The [`Accumulator`]: builds a [`Summary`] from journal lines streamed in order, with memory
//! bounded whatever the journal's length.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::didit::Endpoint;
use crate::journal::{RunEnd, RunInfo, Settings};
use crate::record::{Action, Class, Decision, Record};
use crate::report::action::record_action;

use super::audit::{
    AuditState, FINGERPRINT_DEFINITION, InputFingerprint, LastRun, Money, Tally, reconcile,
};
use super::{
    AgeDistribution, Credits, DecisionCounts, InputCounts, ItemCounts, RequestCounts,
    SIMULATED_NOTICE, ScoreBucket, ScoreDistribution, ScoreMeasure, Summary, cents, score_bucket,
};

/// The estimated ages of an age estimation run, as they come.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct AgeTally {
    buckets: [u64; 10],
    no_age: u64,
    below_minimum: u64,
}

/// At most this many distinct journal warnings are kept (memory stays bounded).
const MAX_WARNINGS: usize = 50;

/// How one journal (one shard, or the only one) ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Segment {
    /// The end line of the segment's latest run; None while that run has no end line.
    last_end: Option<RunEnd>,
    any_run: bool,
    /// The records of the segment's latest run so far.
    #[serde(default)]
    tally: Tally,
}

/// Builds a [`Summary`] from journal lines streamed in order. Memory stays bounded: counters,
/// one entry per risk code / log type, and one small entry per merged journal. Its state can be
/// saved (serde) and fed more lines later: a summary brought up to date that way equals one
/// built from the whole journal.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    simulated: bool,
    tool_version: Option<String>,
    started_at: Option<String>,
    settings: Option<Settings>,
    runs: u64,
    segments: Vec<Segment>,
    wall_secs: f64,
    last_end: Option<RunEnd>,
    items: ItemCounts,
    by_class: BTreeMap<Class, u64>,
    by_decision: DecisionCounts,
    by_action: BTreeMap<Action, u64>,
    risk_codes: BTreeMap<String, u64>,
    log_types: BTreeMap<String, u64>,
    buckets: [u64; 10],
    no_score: u64,
    requests: RequestCounts,
    credits_used: u64,
    saved: u64,
    warnings: Vec<String>,
    #[serde(default)]
    shard: Option<crate::shard::ShardHeader>,
    /// Run headers of different shards were seen (a merged journal): no one shard describes it.
    #[serde(default)]
    shards_mixed: bool,
    audit: AuditState,
    /// Key digests of the uploads the current run announced (`sending`) and has not recorded
    /// yet: the ones left when a run dies are sends of unknown outcome.
    #[serde(default)]
    announced: BTreeSet<u64>,
    /// Age estimation runs only.
    #[serde(default)]
    ages: Option<AgeTally>,
    /// A face match run was seen: its records are pairs (a selfie and a reference).
    #[serde(default)]
    pairs: bool,
}

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A run header: a new journal when `resumed` is false (or it is the first), else a resume.
    pub fn on_run(&mut self, run: &RunInfo) {
        self.runs += 1;
        self.simulated |= run.settings.simulated;
        if run.settings.check.as_deref() == Some(crate::didit::AGE.check) && self.ages.is_none() {
            self.ages = Some(AgeTally::default());
        }
        self.pairs |= run.settings.check.as_deref() == Some(crate::didit::FACE_MATCH.check);
        if self.started_at.is_none() {
            self.started_at = Some(run.started_at.clone());
        }
        self.tool_version = Some(run.tool_version.clone());
        if let Some(prev) = &self.settings {
            let diff = run.settings.differences(prev);
            if !diff.is_empty() {
                let w = format!(
                    "results mix settings: a later run (started {}) differs from the one before it: {}",
                    run.started_at,
                    diff.join("; ")
                );
                self.warn(w);
            }
        }
        self.settings = Some(run.settings.clone());
        if self.runs > 1
            && self.shard.as_ref().map(|h| h.shard()) != run.shard.as_ref().map(|h| h.shard())
        {
            self.shards_mixed = true;
        }
        self.shard = run.shard.clone();
        // Uploads the run before announced and never recorded: it died with them in flight.
        self.settle_announced();
        if !run.resumed || self.segments.is_empty() {
            self.segments.push(Segment::default());
        }
        let seg = self.segments.last_mut().expect("a segment");
        seg.any_run = true;
        seg.last_end = None;
        seg.tally = Tally::default();
        self.audit.on_run(run);
    }

    /// One raw journal line (line break excluded) at `offset`, for the chain check: every line
    /// the summary is built from, in order, blank ones included.
    pub fn on_raw_line(&mut self, offset: u64, raw: &[u8]) {
        self.audit.chain.feed(offset, raw);
    }

    /// [`Accumulator::on_raw_line`] for a line whose SHA-256 is known already (the journal
    /// writer's, as it chained the line).
    pub fn on_hashed_line(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32]) {
        self.audit.chain.feed_hashed(offset, raw, sha256);
    }

    /// The input fingerprint, computed by the build over the latest records.
    pub fn set_input_fingerprint(&mut self, sha256: String, items: u64) {
        self.audit.input_fingerprint = Some(InputFingerprint {
            sha256,
            items,
            definition: FINGERPRINT_DEFINITION.to_string(),
        });
    }

    /// A `sending` line: an upload of `key` leaves.
    pub fn on_sending(&mut self, key: &str) {
        self.announced
            .insert(crate::journal::key_digest(key) as u64);
    }

    /// The uploads announced and never recorded by a run that died count as sends of unknown
    /// outcome (the record of a later send of the image counts it repeated).
    fn settle_announced(&mut self) {
        self.requests.unknown_outcomes += self.announced.len() as u64;
        self.announced.clear();
    }

    /// How many keys' sources are gone.
    pub fn gone(&self) -> u64 {
        self.items.gone
    }

    /// How many keys' sources are gone (out of the counts, in gone.csv).
    pub fn set_gone(&mut self, gone: u64) {
        self.items.gone = gone;
    }

    /// A run's end line.
    pub fn on_end(&mut self, end: &RunEnd) {
        // A run that ended recorded what it sent (or knew it sent nothing more).
        self.announced.clear();
        if self.segments.is_empty() {
            self.segments.push(Segment::default());
        }
        self.wall_secs += end.wall_secs.max(0.0);
        self.requests.retry_after_capped += end.retry_after_capped;
        self.segments.last_mut().expect("a segment").last_end = Some(end.clone());
        self.last_end = Some(end.clone());
        self.audit.on_end(end);
    }

    /// An item record. Money counts over every record; `latest` marks the record that is the
    /// item's outcome (the last one for its key).
    pub fn on_record(&mut self, r: &Record, latest: bool) {
        if let Some(seg) = self.segments.last_mut() {
            seg.tally.on_record(r);
        }
        if !self.announced.is_empty() {
            self.announced
                .remove(&(crate::journal::key_digest(&r.key) as u64));
        }
        if r.billed {
            self.credits_used += 1;
        }
        self.requests.sent += u64::from(r.attempts);
        self.requests.retries += u64::from(r.attempts.saturating_sub(1));
        self.requests.rate_limited_429 += u64::from(r.rate_limited);
        self.requests.possible_double_charges += u64::from(r.possible_double_charges);
        self.requests.unknown_outcomes += u64::from(r.unknown_outcomes);
        if !latest {
            return;
        }
        let class = r.class.unwrap_or(Class::Interrupted);
        let action = record_action(r);
        self.items.total += 1;
        *self.by_class.entry(class).or_default() += 1;
        *self.by_action.entry(action).or_default() += 1;
        if action != Action::Proceed {
            self.items.needing_attention += 1;
        }
        if class != Class::Result {
            self.items.without_result += 1;
            return;
        }
        self.items.with_result += 1;
        match r.status {
            Some(Decision::Approved) => self.by_decision.approved += 1,
            Some(Decision::Declined) => self.by_decision.declined += 1,
            None => {}
        }
        match r.score.and_then(score_bucket) {
            Some(b) => self.buckets[b] += 1,
            None => self.no_score += 1,
        }
        if let Some(ages) = &mut self.ages {
            // Ten-year buckets are the scores' ten-point ones; 100 and over go in the last.
            match r.estimated_age.and_then(score_bucket) {
                Some(b) => ages.buckets[b] += 1,
                None => ages.no_age += 1,
            }
            if r.warnings.iter().any(|w| w.risk == "AGE_BELOW_MINIMUM") {
                ages.below_minimum += 1;
            }
        }
        for w in &r.warnings {
            bump(&mut self.risk_codes, &w.risk);
            bump(&mut self.log_types, &w.log_type);
        }
        if r.duplicate_of.is_some() {
            self.saved += 1;
        }
    }

    /// Add a warning (distinct texts only, bounded).
    pub fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS && !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Whether the journal is an age estimation run's.
    pub fn estimates_ages(&self) -> bool {
        self.ages.is_some()
    }

    /// Whether the journal is a face match run's: its items are pairs.
    pub fn compares_pairs(&self) -> bool {
        self.pairs
    }

    /// The check of the latest run seen (passive liveness before any run, and for a check
    /// this build does not know).
    fn check(&self) -> &'static Endpoint {
        self.settings
            .as_ref()
            .and_then(|s| s.check.as_deref())
            .and_then(Endpoint::named)
            .unwrap_or(&crate::didit::LIVENESS)
    }

    /// The price of one billed call: `asked` (`--price-per-call`), else the list price of the
    /// latest run's check.
    pub fn price_per_call(&self, asked: Option<f64>) -> f64 {
        asked.unwrap_or(self.check().price_usd)
    }

    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// The summary of everything seen; `price_per_call` (US dollars) prices the credits used,
    /// the list price of the latest run's check when `None`.
    pub fn finish(mut self, price_per_call: Option<f64>, out_dir: &str) -> Summary {
        let price_per_call = self.price_per_call(price_per_call);
        let measure = if self.check().check == crate::didit::FACE_MATCH.check {
            ScoreMeasure::FaceMatchSimilarity
        } else {
            ScoreMeasure::LivenessScore
        };
        // The last run died with these in flight (a run still going holds the lock).
        self.settle_announced();
        // Every repeat follows a send of unknown outcome; records written before they counted
        // those kept only the repeats, so the repeats are the least there were.
        self.requests.unknown_outcomes = self
            .requests
            .unknown_outcomes
            .max(self.requests.possible_double_charges);
        let by_class = every_key(&Class::ALL, &self.by_class);
        let errors_by_class: BTreeMap<Class, u64> = by_class
            .iter()
            .filter(|(c, _)| **c != Class::Result)
            .map(|(c, n)| (*c, *n))
            .collect();
        let by_action = every_key(&Action::ALL, &self.by_action);
        // A latest run whose population was incomplete says so (an earlier one, completed
        // since by a rerun, does not).
        let incomplete: Vec<String> = self
            .segments
            .iter()
            .filter(|s| s.any_run)
            .filter_map(|s| s.last_end.as_ref()?.incomplete.as_ref())
            .map(|i| i.warning())
            .collect();
        for w in incomplete {
            self.warn(w);
        }
        let segments: Vec<&Segment> = self.segments.iter().filter(|s| s.any_run).collect();
        let (outcome, stop_reason) = outcome(&segments);
        let price = if price_per_call.is_finite() {
            price_per_call
        } else {
            0.0
        };
        let last_runs = segments
            .iter()
            .map(|s| {
                s.last_end.as_ref().map(|end| LastRun {
                    end,
                    tally: &s.tally,
                })
            })
            .collect::<Option<Vec<_>>>();
        let reconciliation = reconcile(
            last_runs,
            &self.items,
            self.by_decision.approved,
            self.by_decision.declined,
            errors_by_class
                .iter()
                .map(|(c, n): (&Class, &u64)| (c.as_str().to_string(), *n))
                .collect(),
            Money {
                billable_calls: self.credits_used,
                unknown_outcomes: self.requests.unknown_outcomes,
                possible_double_charges: self.requests.possible_double_charges,
                price_per_call_usd: price,
                estimated_cost_usd: cents(self.credits_used as f64 * price),
            },
        );
        let audit = self.audit.finish(reconciliation);
        let minimum_age = self.settings.as_ref().and_then(|s| s.min_age);
        Summary {
            simulated: self.simulated,
            notice: self.simulated.then(|| SIMULATED_NOTICE.to_string()),
            tool_version: self
                .tool_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            out_dir: out_dir.to_string(),
            journals: segments.len() as u64,
            runs: self.runs,
            started_at: self.started_at,
            finished_at: self.last_end.as_ref().map(|e| e.finished_at.clone()),
            settings: self.settings,
            outcome,
            stop_reason,
            interrupted: segments.iter().any(|s| s.interrupted()),
            items: self.items,
            by_class,
            by_decision: self.by_decision,
            by_action,
            risk_codes: self.risk_codes,
            log_types: self.log_types,
            scores: ScoreDistribution {
                measure,
                ..score_distribution(&self.buckets, self.no_score)
            },
            ages: self.ages.map(|t| AgeDistribution {
                minimum_age,
                buckets: score_distribution(&t.buckets, 0).buckets,
                no_age: t.no_age,
                below_minimum: t.below_minimum,
            }),
            errors_by_class,
            requests: self.requests,
            credits: Credits {
                used: self.credits_used,
                price_per_call_usd: price,
                estimated_cost_usd: cents(self.credits_used as f64 * price),
                saved_by_deduplication: self.saved,
            },
            inputs: last_inputs(&segments),
            shard: self.shard.filter(|_| !self.shards_mixed),
            shards: None,
            wall_secs: self.wall_secs,
            achieved_rate_per_min: self.last_end.and_then(|e| e.achieved_rate_per_min),
            warnings: self.warnings,
            built_from: None,
            audit: Some(audit),
            changes: None,
        }
    }
}

impl Segment {
    /// How the segment's latest run ended, and why when it stopped early.
    fn ended(&self) -> (String, Option<String>) {
        match &self.last_end {
            Some(e) => (e.outcome.to_string(), e.stop_reason.clone()),
            None => (
                "incomplete".into(),
                Some(
                    "the last run did not finish (killed or crashed); rerun the same command to resume"
                        .into(),
                ),
            ),
        }
    }

    /// True when the segment's latest run was interrupted (Ctrl-C) or terminated (SIGTERM).
    fn interrupted(&self) -> bool {
        self.last_end
            .as_ref()
            .is_some_and(|e| matches!(e.outcome.as_str(), "interrupted" | "terminated"))
    }
}

/// How the journal(s) ended: the only segment's outcome, or the first merged journal that did
/// not complete, named by its place.
fn outcome(segments: &[&Segment]) -> (String, Option<String>) {
    let n = segments.len();
    match n {
        0 => (
            "incomplete".to_string(),
            Some("no run has been recorded in this journal yet".to_string()),
        ),
        1 => segments[0].ended(),
        _ => segments
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.ended()))
            .find(|(_, (o, _))| o != "completed")
            .map(|(i, (o, reason))| {
                let reason = reason.unwrap_or_else(|| format!("the run ended {o}"));
                (o, Some(format!("journal {} of {n}: {reason}", i + 1)))
            })
            .unwrap_or_else(|| ("completed".into(), None)),
    }
}

/// The input counts summed over every segment's last end; None when any segment's latest run
/// has no end line (or there is no run at all).
fn last_inputs(segments: &[&Segment]) -> Option<InputCounts> {
    if segments.is_empty() || segments.iter().any(|s| s.last_end.is_none()) {
        return None;
    }
    let mut c = InputCounts::default();
    for e in segments.iter().filter_map(|s| s.last_end.as_ref()) {
        c.inputs += e.inputs;
        c.ignored += e.ignored;
        c.skipped_done += e.skipped_done;
        c.deduplicated += e.deduplicated;
        c.not_processed += e.not_processed;
        c.input_unread |= e.input_unread;
    }
    Some(c)
}

/// Every key of `all` with its count (zeros included), so summary.json always lists them all.
fn every_key<K: Ord + Copy>(all: &[K], counts: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    all.iter()
        .map(|k| (*k, counts.get(k).copied().unwrap_or(0)))
        .collect()
}

/// The ten 10-point buckets, named by their range.
fn score_distribution(buckets: &[u64; 10], no_score: u64) -> ScoreDistribution {
    ScoreDistribution {
        measure: ScoreMeasure::LivenessScore,
        buckets: buckets
            .iter()
            .enumerate()
            .map(|(i, n)| ScoreBucket {
                range: format!("{}-{}", i * 10, i * 10 + 10),
                count: *n,
            })
            .collect(),
        no_score,
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{end, failed, pair, result, run, run_of};
    use super::*;

    fn shard_run(k: u32, resumed: bool) -> RunInfo {
        let mut r = run(resumed, false);
        r.shard = Some(crate::shard::ShardHeader {
            index: k,
            total: 2,
            algorithm: crate::shard::ALGORITHM.into(),
            input_fingerprint: "sha256:aa".into(),
            key_rate: "240/min".into(),
            key_max_requests: None,
        });
        r
    }

    #[test]
    fn a_shards_own_journal_names_its_shard_and_a_merged_one_does_not() {
        let mut acc = Accumulator::new();
        acc.on_run(&shard_run(2, false));
        acc.on_run(&shard_run(2, true));
        let s = acc.finish(Some(0.1), "out");
        assert_eq!(s.shard.as_ref().map(|h| h.index), Some(2));
        let line = s.fact(super::super::words::Fact::Shards).unwrap();
        assert!(
            line.starts_with("shard 2 of 2") && line.contains("240/min"),
            "{line}"
        );

        let mut acc = Accumulator::new();
        acc.on_run(&shard_run(1, false));
        acc.on_run(&shard_run(2, false));
        let s = acc.finish(Some(0.1), "merged");
        assert_eq!(s.shard, None, "a merged journal is no one shard");
        assert_eq!(s.fact(super::super::words::Fact::Shards), None);
    }

    #[test]
    fn counts_latest_records_and_money_over_all() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        // a superseded attempt that was billed (e.g. the image changed and was redone)
        acc.on_record(
            &result("a", Some(12.0), &[("LOW_LIVENESS_SCORE", "error")]),
            false,
        );
        acc.on_record(&failed("b", Class::Transient, 5), false);
        acc.on_end(&end("stopped", 2));
        acc.on_run(&run(true, false));
        let mut a = result("a", Some(100.0), &[]);
        a.rate_limited = 2;
        a.attempts = 3;
        a.possible_double_charges = 1;
        acc.on_record(&a, true);
        acc.on_record(&result("b", None, &[("NO_FACE_DETECTED", "error")]), true);
        acc.on_record(&failed("c", Class::InvalidInput, 0), true);
        let mut d = result("d", Some(55.0), &[("LOW_FACE_QUALITY", "warning")]);
        d.billed = false;
        d.attempts = 0;
        d.duplicate_of = Some("a".into());
        acc.on_record(&d, true);
        acc.on_end(&end("completed", 0));
        let s = acc.finish(Some(0.10), "/out");

        assert_eq!(s.items.total, 4);
        assert_eq!(s.items.with_result, 3);
        assert_eq!(s.items.without_result, 1);
        assert_eq!(s.class_count(Class::Result), 3);
        assert_eq!(s.class_count(Class::InvalidInput), 1);
        assert_eq!(
            s.class_count(Class::Transient),
            0,
            "superseded records do not count as outcomes"
        );
        assert_eq!(s.by_class.len(), Class::ALL.len(), "all classes listed");
        assert_eq!(s.by_action.len(), 6, "all actions listed");
        assert_eq!(s.errors_by_class.len(), Class::ALL.len() - 1);
        assert_eq!(s.action_count(Action::Proceed), 1);
        assert_eq!(s.action_count(Action::Retake), 2);
        assert_eq!(s.action_count(Action::FixInput), 1);
        assert_eq!(s.items.needing_attention, 3);
        assert_eq!(s.by_decision.approved, 2);
        assert_eq!(s.by_decision.declined, 1);
        assert_eq!(s.scores.buckets[9].count, 1);
        assert_eq!(s.scores.buckets[5].count, 1);
        assert_eq!(
            s.scores.buckets[1].count, 0,
            "the superseded 12.0 is not counted"
        );
        assert_eq!(s.scores.no_score, 1);
        assert_eq!(s.risk_codes.get("NO_FACE_DETECTED"), Some(&1));
        assert_eq!(s.risk_codes.get("LOW_LIVENESS_SCORE"), None);
        assert_eq!(s.log_types.get("error"), Some(&1));
        assert_eq!(s.log_types.get("warning"), Some(&1));
        // money: every record, superseded ones included
        assert_eq!(s.credits.used, 3, "first a, latest a, b");
        assert!((s.credits.estimated_cost_usd - 0.30).abs() < 1e-9);
        assert_eq!(s.credits.saved_by_deduplication, 1);
        assert_eq!(s.requests.sent, 1 + 5 + 3 + 1);
        assert_eq!(s.requests.retries, 4 + 2);
        assert_eq!(s.requests.rate_limited_429, 2);
        assert_eq!(s.requests.possible_double_charges, 1);
        assert_eq!(
            s.requests.unknown_outcomes, 1,
            "a record that kept only its repeats: they are the least there were"
        );
        // the last run's end
        assert_eq!(s.outcome, "completed");
        assert_eq!(s.stop_reason, None);
        assert!(!s.interrupted);
        assert_eq!(s.inputs.as_ref().unwrap().not_processed, 0);
        assert_eq!(s.wall_secs, 120.0);
        assert_eq!(s.runs, 2);
        assert_eq!(s.journals, 1);
        assert!(!s.all_have_results());
        assert!(!s.simulated);
        assert!(s.notice.is_none());
    }

    #[test]
    fn uploads_a_dead_run_never_recorded_are_unknown_outcomes() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        // Announced and recorded: a known outcome.
        acc.on_sending("a");
        acc.on_record(&result("a", Some(80.0), &[]), true);
        // Announced, never recorded: the run dies with "b" and "c" in flight.
        acc.on_sending("b");
        acc.on_sending("c");
        acc.on_run(&run(true, false));
        // The next run sends "b" again: its record counts that repeat.
        acc.on_sending("b");
        let mut b = result("b", Some(70.0), &[]);
        b.possible_double_charges = 1;
        acc.on_record(&b, true);
        // A run that ends announced nothing left unrecorded.
        acc.on_sending("d");
        acc.on_end(&end("completed", 0));
        // A last run that died with "e" in flight.
        acc.on_run(&run(true, false));
        acc.on_sending("e");
        let mut saved = acc.clone();
        let s = acc.finish(Some(0.10), "/out");
        assert_eq!(s.requests.unknown_outcomes, 3, "b, c and e");
        assert_eq!(s.requests.possible_double_charges, 1);
        // A record's own unknown outcomes add up too; a checkpoint goes on where it stopped.
        let mut e = failed("e", Class::Transient, 1);
        e.unknown_outcomes = 1;
        e.unknown_pending = true;
        saved.on_record(&e, true);
        let s = saved.finish(Some(0.10), "/out");
        assert_eq!(s.requests.unknown_outcomes, 3, "b, c, and e's own");
        assert!(
            s.requests_line().contains(
                "3 sends with an unknown outcome, 1 of them sent again (1 possible double charge)"
            ),
            "{}",
            s.requests_line()
        );
    }

    #[test]
    fn gone_keys_are_counted_apart_and_said_in_the_headline() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        acc.on_end(&end("completed", 0));
        acc.set_gone(2);
        assert_eq!(acc.gone(), 2);
        let s = acc.finish(Some(0.10), "/out");
        assert_eq!((s.items.total, s.items.gone), (1, 2));
        assert!(
            s.headline().contains(
                "2 more no longer in the sources (deleted, renamed or now a link; see gone.csv)"
            ),
            "{}",
            s.headline()
        );
    }

    #[test]
    fn stopped_and_crashed_runs_say_what_to_do() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        acc.on_end(&end("stopped", 3));
        let s = acc.finish(Some(0.10), "/out");
        assert_eq!(s.outcome, "stopped");
        assert!(
            s.stop_reason
                .as_deref()
                .unwrap()
                .contains("rerun the same command")
        );
        assert!(!s.all_have_results(), "3 items not processed");
        assert!(
            s.headline().contains("3 more not processed"),
            "{}",
            s.headline()
        );

        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        acc.on_end(&end("completed", 0));
        acc.on_run(&run(true, false));
        let s = acc.finish(Some(0.10), "/out");
        assert_eq!(s.outcome, "incomplete");
        assert!(s.stop_reason.as_deref().unwrap().contains("did not finish"));
        assert!(s.inputs.is_none());
        assert!(s.all_have_results());
        assert!(
            s.time_line().contains("did not finish"),
            "{}",
            s.time_line()
        );

        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_end(&end("interrupted", 4));
        assert!(acc.finish(Some(0.1), "/o").interrupted);
    }

    #[test]
    fn merged_journals_sum_their_last_ends() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_end(&end("completed", 0));
        acc.on_run(&run(false, false));
        acc.on_end(&end("stopped", 7));
        let s = acc.finish(Some(0.1), "/o");
        assert_eq!(s.journals, 2);
        assert_eq!(s.inputs.as_ref().unwrap().inputs, 10);
        assert_eq!(s.inputs.as_ref().unwrap().not_processed, 7);
        assert_eq!(s.outcome, "stopped");
        assert!(
            s.stop_reason
                .unwrap()
                .starts_with("journal 2 of 2: out of credits")
        );
    }

    #[test]
    fn calls_are_priced_at_the_latest_checks_list_price_unless_a_price_is_given() {
        let face_match = || {
            let mut acc = Accumulator::new();
            acc.on_run(&run_of("face-match", false));
            acc.on_record(&pair("a", "ref/a.jpg", Some(80.0), &[]), true);
            acc.on_record(&pair("b", "ref/b.jpg", Some(20.0), &[]), true);
            acc.on_end(&end("completed", 0));
            acc
        };
        let s = face_match().finish(None, "/out");
        assert_eq!(
            s.credits.price_per_call_usd,
            crate::didit::FACE_MATCH.price_usd
        );
        assert_eq!(s.credits.estimated_cost_usd, 0.10, "2 calls at US$0.05");
        let money = &s.audit.as_ref().unwrap().reconciliation.money;
        assert_eq!(
            (money.price_per_call_usd, money.estimated_cost_usd),
            (0.05, 0.10),
            "the reconciliation prices them alike"
        );
        let given = face_match().finish(Some(0.2), "/out");
        assert_eq!(given.credits.price_per_call_usd, 0.2, "a price given wins");
        assert_eq!(given.credits.estimated_cost_usd, 0.40);

        let mut acc = Accumulator::new();
        assert_eq!(acc.price_per_call(None), 0.10, "no run yet: liveness's");
        acc.on_run(&run(false, false));
        assert_eq!(acc.price_per_call(None), crate::didit::LIVENESS.price_usd);
        // A later run of another check (resumed with --force): the latest run's price.
        acc.on_run(&run_of("face-match", true));
        assert_eq!(acc.price_per_call(None), 0.05);
        acc.on_run(&run_of("age", true));
        assert_eq!(acc.price_per_call(None), crate::didit::AGE.price_usd);
        let mut unknown = run(true, false);
        unknown.settings.check = Some("a-check-of-a-later-build".into());
        acc.on_run(&unknown);
        assert_eq!(
            acc.price_per_call(None),
            0.10,
            "an unknown check: liveness's"
        );
    }
}
