//! The run summary: what `summary.json` holds, how it is accumulated from journal lines, and
//! its renderings as terminal text and Markdown (the HTML report renders the same struct).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::journal::{RunEnd, RunInfo, Settings};
use crate::record::{Action, Class, Decision, FRAUD_RISKS, RETAKE_RISKS, Record, action_for};

/// The stamp every output carries when its results came from the emulator.
pub const SIMULATED_NOTICE: &str = "SIMULATED: results from the built-in emulator, not from Didit";

/// The output files written next to the journal, in the order they are listed to the user.
pub const OUTPUT_FILES: [&str; 5] = [
    "results.csv",
    "results.json",
    "summary.json",
    "summary.md",
    "report.html",
];

/// At most this many distinct journal warnings are kept (memory stays bounded).
const MAX_WARNINGS: usize = 50;

/// Everything a reader of the outputs needs to know about the journal, computed in one pass.
/// `summary.json` is exactly this struct; the text, Markdown and HTML renderings read it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Summary {
    /// True when any run in the journal used the built-in emulator.
    pub simulated: bool,
    /// [`SIMULATED_NOTICE`] when simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Version of the tool that wrote the latest run header.
    pub tool_version: String,
    /// The folder holding the journal and these outputs.
    pub out_dir: String,
    /// Journals described: 1, or the number of shards merged.
    pub journals: u64,
    /// Runs recorded (the first run plus each resume).
    pub runs: u64,
    /// When the first run started.
    pub started_at: Option<String>,
    /// When the last finished run ended.
    pub finished_at: Option<String>,
    /// Settings of the latest run (threshold, rotate_image, save_api_request, host).
    pub settings: Option<Settings>,
    /// How the last run ended: completed, interrupted, terminated, stopped, or incomplete (no
    /// end line: killed or crashed).
    pub outcome: String,
    /// Why it stopped early, with what to do next.
    pub stop_reason: Option<String>,
    /// True when the last run was interrupted (Ctrl-C) or terminated (SIGTERM).
    pub interrupted: bool,
    pub items: ItemCounts,
    /// Latest record per item, by class (all classes, zeros included).
    pub by_class: BTreeMap<Class, u64>,
    pub by_decision: DecisionCounts,
    /// Latest record per item, by action (all actions, zeros included).
    pub by_action: BTreeMap<Action, u64>,
    /// Warnings per risk code, over items with a result.
    pub risk_codes: BTreeMap<String, u64>,
    /// Warnings per severity (log_type), over items with a result.
    pub log_types: BTreeMap<String, u64>,
    pub scores: ScoreDistribution,
    /// Items without a result, by class.
    pub errors_by_class: BTreeMap<Class, u64>,
    pub requests: RequestCounts,
    pub credits: Credits,
    /// Counts from the end of the last run; absent when the last run did not finish.
    pub inputs: Option<InputCounts>,
    /// Sum of every run's wall time, in seconds.
    pub wall_secs: f64,
    /// Requests per minute achieved by the last run.
    pub achieved_rate_per_min: Option<f64>,
    /// Problems found while reading the journal(s): cut-short last lines, mixed settings, ...
    pub warnings: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ItemCounts {
    /// Distinct item keys in the journal.
    pub total: u64,
    /// Items whose latest record is an Approved/Declined result.
    pub with_result: u64,
    /// Items whose latest record is not a result.
    pub without_result: u64,
    /// Items whose action is anything but proceed.
    pub needing_attention: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DecisionCounts {
    pub approved: u64,
    pub declined: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ScoreDistribution {
    /// Ten 10-point buckets: "0-10" holds [0, 10), ..., "90-100" holds [90, 100].
    pub buckets: Vec<ScoreBucket>,
    /// Results without a liveness score (e.g. no face detected).
    pub no_score: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ScoreBucket {
    pub range: String,
    pub count: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct RequestCounts {
    /// HTTP requests sent, over every record including superseded ones.
    pub sent: u64,
    /// Requests beyond each item's first.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited_429: u64,
    /// Retries after the body had been sent: each may have been billed twice.
    pub possible_double_charges: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Credits {
    /// Billed calls (200 answers), over every record including superseded ones.
    pub used: u64,
    pub price_per_call_usd: f64,
    /// used x price, rounded to cents.
    pub estimated_cost_usd: f64,
    /// Items that reused an identical image's result instead of being sent.
    pub saved_by_deduplication: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct InputCounts {
    /// Items found in the sources (images and would-be images).
    pub inputs: u64,
    /// Non-image files skipped by the folder walk.
    pub ignored: u64,
    /// Items already done by an earlier run, skipped.
    pub skipped_done: u64,
    /// Items that reused an identical image's result.
    pub deduplicated: u64,
    /// Items left without a record because the run stopped before submitting them.
    pub not_processed: u64,
    /// The run stopped before reading a manifest on standard input to its end: the counts
    /// cover only what was read.
    #[serde(default)]
    pub input_unread: bool,
}

/// The 10-point bucket a score falls in (0..=9); 100 and above go in the last, below 0 in the first.
pub fn score_bucket(score: f64) -> Option<usize> {
    if score.is_nan() {
        return None;
    }
    Some(((score / 10.0).floor().max(0.0) as usize).min(9))
}

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

/// Round a dollar amount to cents.
pub fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// "1h 02m 03s", "4m 05s", "12.3s".
pub fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// "US$12.30".
pub fn fmt_usd(x: f64) -> String {
    format!("US${x:.2}")
}

/// A threshold as the user understands it.
pub fn fmt_threshold(t: Option<f64>) -> String {
    t.map_or_else(|| "30 (Didit's default)".to_string(), |t| t.to_string())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// How one journal (one shard, or the only one) ended.
#[derive(Debug, Clone, Default)]
struct Segment {
    /// The end line of the segment's latest run; None while that run has no end line.
    last_end: Option<RunEnd>,
    any_run: bool,
}

/// Builds a [`Summary`] from journal lines streamed in order. Memory stays bounded: counters,
/// one entry per risk code / log type, and one small entry per merged journal.
#[derive(Debug, Default)]
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
}

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A run header: a new journal when `resumed` is false (or it is the first), else a resume.
    pub fn on_run(&mut self, run: &RunInfo) {
        self.runs += 1;
        self.simulated |= run.settings.simulated;
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
        if !run.resumed || self.segments.is_empty() {
            self.segments.push(Segment::default());
        }
        let seg = self.segments.last_mut().expect("a segment");
        seg.any_run = true;
        seg.last_end = None;
    }

    /// A run's end line.
    pub fn on_end(&mut self, end: &RunEnd) {
        if self.segments.is_empty() {
            self.segments.push(Segment::default());
        }
        self.wall_secs += end.wall_secs.max(0.0);
        self.segments.last_mut().expect("a segment").last_end = Some(end.clone());
        self.last_end = Some(end.clone());
    }

    /// An item record. Money counts over every record; `latest` marks the record that is the
    /// item's outcome (the last one for its key).
    pub fn on_record(&mut self, r: &Record, latest: bool) {
        if r.billed {
            self.credits_used += 1;
        }
        self.requests.sent += u64::from(r.attempts);
        self.requests.retries += u64::from(r.attempts.saturating_sub(1));
        self.requests.rate_limited_429 += u64::from(r.rate_limited);
        self.requests.possible_double_charges += u64::from(r.possible_double_charges);
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

    pub fn simulated(&self) -> bool {
        self.simulated
    }

    pub fn finish(self, price_per_call: f64, out_dir: &str) -> Summary {
        let by_class: BTreeMap<Class, u64> = Class::ALL
            .iter()
            .map(|c| (*c, self.by_class.get(c).copied().unwrap_or(0)))
            .collect();
        let errors_by_class = by_class
            .iter()
            .filter(|(c, _)| **c != Class::Result)
            .map(|(c, n)| (*c, *n))
            .collect();
        let by_action = Action::ALL
            .iter()
            .map(|a| (*a, self.by_action.get(a).copied().unwrap_or(0)))
            .collect();
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| ScoreBucket {
                range: format!("{}-{}", i * 10, i * 10 + 10),
                count: *n,
            })
            .collect();

        let segments: Vec<&Segment> = self.segments.iter().filter(|s| s.any_run).collect();
        let inputs = if !segments.is_empty() && segments.iter().all(|s| s.last_end.is_some()) {
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
        } else {
            None
        };
        let n = segments.len();
        let ended = |s: &Segment| -> (String, Option<String>) {
            match &s.last_end {
                Some(e) => (e.outcome.to_string(), e.stop_reason.clone()),
                None => (
                    "incomplete".into(),
                    Some(
                        "the last run did not finish (killed or crashed); rerun the same command to resume"
                            .into(),
                    ),
                ),
            }
        };
        let (outcome, stop_reason) = match n {
            0 => (
                "incomplete".to_string(),
                Some("no run has been recorded in this journal yet".to_string()),
            ),
            1 => ended(segments[0]),
            _ => segments
                .iter()
                .enumerate()
                .map(|(i, s)| (i, ended(s)))
                .find(|(_, (o, _))| o != "completed")
                .map(|(i, (o, reason))| {
                    let reason = reason.unwrap_or_else(|| format!("the run ended {o}"));
                    (o, Some(format!("journal {} of {n}: {reason}", i + 1)))
                })
                .unwrap_or_else(|| ("completed".into(), None)),
        };
        let interrupted = segments.iter().any(|s| {
            s.last_end
                .as_ref()
                .is_some_and(|e| matches!(e.outcome.as_str(), "interrupted" | "terminated"))
        });

        let price = if price_per_call.is_finite() {
            price_per_call
        } else {
            0.0
        };
        Summary {
            simulated: self.simulated,
            notice: self.simulated.then(|| SIMULATED_NOTICE.to_string()),
            tool_version: self
                .tool_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            out_dir: out_dir.to_string(),
            journals: n as u64,
            runs: self.runs,
            started_at: self.started_at,
            finished_at: self.last_end.as_ref().map(|e| e.finished_at.clone()),
            settings: self.settings,
            outcome,
            stop_reason,
            interrupted,
            items: self.items,
            by_class,
            by_decision: self.by_decision,
            by_action,
            risk_codes: self.risk_codes,
            log_types: self.log_types,
            scores: ScoreDistribution {
                buckets,
                no_score: self.no_score,
            },
            errors_by_class,
            requests: self.requests,
            credits: Credits {
                used: self.credits_used,
                price_per_call_usd: price,
                estimated_cost_usd: cents(self.credits_used as f64 * price),
                saved_by_deduplication: self.saved,
            },
            inputs,
            wall_secs: self.wall_secs,
            achieved_rate_per_min: self.last_end.and_then(|e| e.achieved_rate_per_min),
            warnings: self.warnings,
        }
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

impl Summary {
    pub fn class_count(&self, c: Class) -> u64 {
        self.by_class.get(&c).copied().unwrap_or(0)
    }

    pub fn action_count(&self, a: Action) -> u64 {
        self.by_action.get(&a).copied().unwrap_or(0)
    }

    /// True when every item has an Approved/Declined result and none was left unprocessed.
    pub fn all_have_results(&self) -> bool {
        self.items.without_result == 0 && self.inputs.as_ref().is_none_or(|i| i.not_processed == 0)
    }

    /// Risk codes, most frequent first.
    pub fn risk_codes_by_count(&self) -> Vec<(&str, u64)> {
        by_count(&self.risk_codes)
    }

    /// Severities, most frequent first.
    pub fn log_types_by_count(&self) -> Vec<(&str, u64)> {
        by_count(&self.log_types)
    }

    /// Classes without a result that occurred.
    pub fn errors_present(&self) -> Vec<(Class, u64)> {
        self.errors_by_class
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (*c, *n))
            .collect()
    }

    /// One sentence: how many images and what became of them.
    pub fn headline(&self) -> String {
        let i = &self.items;
        if i.total == 0 {
            return "No images recorded in the journal yet.".into();
        }
        let mut s = format!(
            "{} {}: {} approved, {} declined",
            i.total,
            plural(i.total, "image", "images"),
            self.by_decision.approved,
            self.by_decision.declined
        );
        if i.without_result > 0 {
            let parts: Vec<String> = [Action::FixInput, Action::Rerun]
                .iter()
                .map(|a| (a, self.action_count(*a)))
                .filter(|(_, n)| *n > 0)
                .map(|(a, n)| format!("{n} {}", a.as_str()))
                .collect();
            let _ = write!(
                s,
                ", {} without a result (see {})",
                i.without_result,
                parts.join(", ")
            );
        }
        s.push('.');
        if let Some(np) = self
            .inputs
            .as_ref()
            .map(|i| i.not_processed)
            .filter(|n| *n > 0)
        {
            let _ = write!(s, " {np} more not processed yet.");
        }
        s
    }

    /// The outcome line: how the last run ended and what to do.
    pub fn outcome_line(&self) -> String {
        let mut s = format!("Run {}", self.outcome);
        if let Some(r) = &self.stop_reason {
            let _ = write!(s, ": {r}");
        }
        s
    }

    /// Settings in words.
    pub fn settings_line(&self) -> String {
        match &self.settings {
            None => "unknown".into(),
            Some(st) => format!(
                "threshold {} · rotate_image {} · save_api_request {} · API {}",
                fmt_threshold(st.threshold),
                yes_no(st.rotate_image),
                yes_no(st.save_api_request),
                st.api_host
            ),
        }
    }

    /// Requests in words.
    pub fn requests_line(&self) -> String {
        let r = &self.requests;
        format!(
            "{} sent, {} {}, {} rate-limited (429) {}, {} possible double {}",
            r.sent,
            r.retries,
            plural(r.retries, "retry", "retries"),
            r.rate_limited_429,
            plural(r.rate_limited_429, "answer", "answers"),
            r.possible_double_charges,
            plural(r.possible_double_charges, "charge", "charges"),
        )
    }

    /// Credits and cost in words.
    pub fn credits_line(&self) -> String {
        let c = &self.credits;
        let mut s = format!(
            "{} used, estimated cost {} at {}/call",
            c.used,
            fmt_usd(c.estimated_cost_usd),
            fmt_usd(c.price_per_call_usd)
        );
        if c.saved_by_deduplication > 0 {
            let _ = write!(
                s,
                "; {} saved by deduplicating identical images",
                c.saved_by_deduplication
            );
        }
        s
    }

    /// Time and rate in words.
    pub fn time_line(&self) -> String {
        if self.finished_at.is_none() {
            return "not recorded (no run has finished)".into();
        }
        let mut s = fmt_duration(self.wall_secs);
        if self.runs > 1 {
            let _ = write!(s, " over {} runs", self.runs);
        }
        if self.outcome == "incomplete" {
            s.push_str(" (the last run did not finish; its time is not recorded)");
        } else if let Some(r) = self.achieved_rate_per_min {
            let _ = write!(s, ", last run achieved {r:.1} requests/min");
        }
        s
    }

    /// Inputs in words.
    pub fn inputs_line(&self) -> String {
        match &self.inputs {
            None => "unknown (the last run did not finish)".into(),
            Some(i) => format!(
                "{} found, {} ignored (not images), {} already done earlier, {} deduplicated, {} not processed{}",
                i.inputs,
                i.ignored,
                i.skipped_done,
                i.deduplicated,
                i.not_processed,
                if i.input_unread {
                    " (the rest of standard input was not read)"
                } else {
                    ""
                }
            ),
        }
    }

    /// The non-empty score buckets on one line: "20-30: 5 · 80-90: 22 · no score: 1".
    pub fn scores_line(&self) -> String {
        let mut parts: Vec<String> = self
            .scores
            .buckets
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| format!("{}: {}", b.range, b.count))
            .collect();
        if self.scores.no_score > 0 {
            parts.push(format!("no score: {}", self.scores.no_score));
        }
        if parts.is_empty() {
            return "none".into();
        }
        parts.join(" · ")
    }

    /// A compact terminal summary that reads without explanation.
    pub fn render_text(&self) -> String {
        let mut t = String::new();
        if self.simulated {
            let _ = writeln!(t, "*** {SIMULATED_NOTICE} ***");
        }
        let _ = writeln!(t, "{}", self.headline());
        let _ = writeln!(t, "{}.", self.outcome_line());
        for w in &self.warnings {
            let _ = writeln!(t, "Warning: {w}");
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "What to do with each image:");
        for a in Action::ALL {
            let _ = writeln!(
                t,
                "  {:<10} {:>7}  {}",
                a.as_str(),
                self.action_count(a),
                a.describe()
            );
        }
        let _ = writeln!(t);
        let risks = self.risk_codes_by_count();
        let risks = if risks.is_empty() {
            "none".to_string()
        } else {
            risks
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let levels = self.log_types_by_count();
        let levels = if levels.is_empty() {
            "none".to_string()
        } else {
            levels
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let errors = self.errors_present();
        let errors = if errors.is_empty() {
            "none".to_string()
        } else {
            errors
                .iter()
                .map(|(c, n)| format!("{} {n}", c.as_str()))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let rows: [(&str, String); 10] = [
            ("Warnings", risks),
            ("Severity", levels),
            ("Scores", self.scores_line()),
            ("No result", errors),
            ("Requests", self.requests_line()),
            ("Credits", self.credits_line()),
            ("Time", self.time_line()),
            ("Inputs", self.inputs_line()),
            ("Settings", self.settings_line()),
            (
                "Files",
                format!(
                    "{} (journal.jsonl, {})",
                    self.out_dir,
                    OUTPUT_FILES.join(", ")
                ),
            ),
        ];
        for (label, value) in rows {
            let _ = writeln!(t, "{label:<10} {value}");
        }
        t
    }

    /// The summary as a Markdown document.
    pub fn render_markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# Liveness screening summary\n");
        if self.simulated {
            let _ = writeln!(m, "> **{SIMULATED_NOTICE}**\n");
        }
        let _ = writeln!(m, "**{}**\n", md(&self.headline()));
        let _ = writeln!(m, "{}.\n", md(&self.outcome_line()));
        if !self.warnings.is_empty() {
            let _ = writeln!(m, "## Warnings\n");
            for w in &self.warnings {
                let _ = writeln!(m, "- {}", md(w));
            }
            let _ = writeln!(m);
        }
        let _ = writeln!(
            m,
            "## What to do\n\n| Action | Images | Meaning |\n|---|---:|---|"
        );
        for a in Action::ALL {
            let _ = writeln!(
                m,
                "| `{}` | {} | {} |",
                a.as_str(),
                self.action_count(a),
                md(a.describe())
            );
        }
        let _ = writeln!(
            m,
            "\n## Decisions\n\n| Decision | Images |\n|---|---:|\n| Approved | {} |\n| Declined | {} |\n| No result | {} |\n",
            self.by_decision.approved, self.by_decision.declined, self.items.without_result
        );
        let _ = writeln!(m, "## Warnings by risk code\n");
        let risks = self.risk_codes_by_count();
        if risks.is_empty() {
            let _ = writeln!(m, "None.\n");
        } else {
            let _ = writeln!(m, "| Risk code | Count | Leads to |\n|---|---:|---|");
            for (c, n) in risks {
                let _ = writeln!(m, "| {} | {n} | `{}` |", code(c), risk_action(c).as_str());
            }
            let _ = writeln!(m);
        }
        let levels = self.log_types_by_count();
        if !levels.is_empty() {
            let _ = writeln!(m, "| Severity | Count |\n|---|---:|");
            for (c, n) in levels {
                let _ = writeln!(m, "| {} | {n} |", code(c));
            }
            let _ = writeln!(m);
        }
        let _ = writeln!(m, "## Liveness scores\n\n| Score | Images |\n|---|---:|");
        for b in &self.scores.buckets {
            let _ = writeln!(m, "| {} | {} |", b.range, b.count);
        }
        let _ = writeln!(m, "| no score | {} |\n", self.scores.no_score);
        let _ = writeln!(m, "## Items without a result\n");
        let errors = self.errors_present();
        if errors.is_empty() {
            let _ = writeln!(m, "None.\n");
        } else {
            let _ = writeln!(m, "| Class | Images |\n|---|---:|");
            for (c, n) in errors {
                let _ = writeln!(m, "| `{}` | {n} |", c.as_str());
            }
            let _ = writeln!(m);
        }
        let _ = writeln!(m, "## Requests, credits and time\n\n| | |\n|---|---|");
        for (label, value) in [
            ("Requests", self.requests_line()),
            ("Credits", self.credits_line()),
            ("Time", self.time_line()),
            ("Inputs", self.inputs_line()),
        ] {
            let _ = writeln!(m, "| {label} | {} |", md(&value));
        }
        let _ = writeln!(m, "\n## Run\n\n| | |\n|---|---|");
        let journals = if self.journals > 1 {
            format!("{} journals merged, {} runs", self.journals, self.runs)
        } else {
            format!("{} {}", self.runs, plural(self.runs, "run", "runs"))
        };
        for (label, value) in [
            ("Tool", format!("liveness-batch {}", self.tool_version)),
            (
                "Started",
                self.started_at.clone().unwrap_or_else(|| "unknown".into()),
            ),
            (
                "Finished",
                self.finished_at
                    .clone()
                    .unwrap_or_else(|| "not finished".into()),
            ),
            ("Runs", journals),
            ("Settings", self.settings_line()),
            (
                "Results source",
                if self.simulated {
                    "the built-in emulator (SIMULATED)".into()
                } else {
                    "Didit".into()
                },
            ),
            ("Folder", self.out_dir.clone()),
            (
                "Files",
                format!("journal.jsonl, {}", OUTPUT_FILES.join(", ")),
            ),
        ] {
            let _ = writeln!(m, "| {label} | {} |", md(&value));
        }
        m
    }
}

fn by_count(map: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = map.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Text made safe inside a Markdown table cell: no line breaks, pipes or HTML.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A code (risk, severity) as inline code; unexpected characters are dropped.
fn code(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        .collect();
    format!("`{clean}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::WarningRecord;

    fn settings(simulated: bool) -> Settings {
        Settings {
            threshold: None,
            rotate_image: false,
            save_api_request: false,
            api_host: "verification.didit.me".into(),
            simulated,
        }
    }

    fn run(resumed: bool, simulated: bool) -> RunInfo {
        RunInfo {
            tool_version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            settings: settings(simulated),
            sources: vec!["photos".into()],
            rate: "240/min".into(),
            concurrency: 8,
            resumed,
            dedupe: true,
            max_requests: None,
        }
    }

    fn end(outcome: &str, not_processed: u64) -> RunEnd {
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

    fn result(key: &str, score: Option<f64>, risks: &[(&str, &str)]) -> Record {
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
                .map(|(r, l)| WarningRecord {
                    risk: (*r).into(),
                    log_type: (*l).into(),
                })
                .collect(),
            attempts: 1,
            billed: true,
            ..Default::default()
        }
        .with_action()
    }

    fn failed(key: &str, class: Class, attempts: u32) -> Record {
        Record {
            key: key.into(),
            class: Some(class),
            attempts,
            ..Default::default()
        }
        .with_action()
    }

    #[test]
    fn score_buckets_cover_edges() {
        assert_eq!(score_bucket(0.0), Some(0));
        assert_eq!(score_bucket(9.99), Some(0));
        assert_eq!(score_bucket(10.0), Some(1));
        assert_eq!(score_bucket(89.9), Some(8));
        assert_eq!(score_bucket(90.0), Some(9));
        assert_eq!(score_bucket(100.0), Some(9), "100 goes in the last bucket");
        assert_eq!(score_bucket(-3.0), Some(0));
        assert_eq!(score_bucket(f64::NAN), None);
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
        let s = acc.finish(0.10, "/out");

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
    fn stopped_and_crashed_runs_say_what_to_do() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        acc.on_end(&end("stopped", 3));
        let s = acc.finish(0.10, "/out");
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
        let s = acc.finish(0.10, "/out");
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
        assert!(acc.finish(0.1, "/o").interrupted);
    }

    #[test]
    fn merged_journals_sum_their_last_ends() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_end(&end("completed", 0));
        acc.on_run(&run(false, false));
        acc.on_end(&end("stopped", 7));
        let s = acc.finish(0.1, "/o");
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
    fn simulated_is_stamped_everywhere() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_run(&run(true, true));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        acc.on_end(&end("completed", 0));
        let s = acc.finish(0.1, "/o");
        assert!(s.simulated);
        assert_eq!(s.notice.as_deref(), Some(SIMULATED_NOTICE));
        assert!(
            s.render_text()
                .starts_with(&format!("*** {SIMULATED_NOTICE} ***"))
        );
        assert!(s.render_markdown().contains(SIMULATED_NOTICE));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("results mix settings")),
            "{:?}",
            s.warnings
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["simulated"], true);
        assert_eq!(json["notice"], SIMULATED_NOTICE);
    }

    #[test]
    fn summary_json_round_trips_with_named_classes() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_record(&failed("x", Class::RateLimited, 5), true);
        acc.on_end(&end("completed", 0));
        let s = acc.finish(0.1, "/o");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["by_class"]["rate_limited"], 1);
        assert_eq!(json["by_class"]["result"], 0);
        assert_eq!(json["by_action"]["rerun"], 1);
        assert_eq!(json["by_action"]["fix_input"], 0);
        assert_eq!(json["errors_by_class"]["rate_limited"], 1);
        assert!(json["errors_by_class"].get("result").is_none());
        assert_eq!(json["scores"]["buckets"][9]["range"], "90-100");
        let back: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn render_text_reads_without_explanation() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        for i in 0..22 {
            acc.on_record(&result(&format!("ok{i}"), Some(85.0), &[]), true);
        }
        for i in 0..5 {
            acc.on_record(
                &result(
                    &format!("low{i}"),
                    Some(20.0),
                    &[("LOW_LIVENESS_SCORE", "error")],
                ),
                true,
            );
        }
        for i in 0..3 {
            acc.on_record(&failed(&format!("bad{i}"), Class::InvalidInput, 0), true);
        }
        acc.on_record(&failed("net", Class::Transient, 5), true);
        acc.on_end(&end("completed", 0));
        let s = acc.finish(0.10, "/data/out");
        let t = s.render_text();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "31 images: 22 approved, 5 declined, 4 without a result (see 3 fix_input, 1 rerun)."
        );
        assert_eq!(lines[1], "Run completed.");
        assert!(
            t.contains("  proceed         22  approved with no warning"),
            "{t}"
        );
        assert!(
            t.contains("  review           5  needs a human look"),
            "{t}"
        );
        assert!(t.contains("  fraud            0  "), "{t}");
        assert!(t.contains("Warnings   LOW_LIVENESS_SCORE 5\n"), "{t}");
        assert!(t.contains("Scores     20-30: 5 · 80-90: 22\n"), "{t}");
        assert!(
            t.contains("No result  invalid_input 3 · transient 1\n"),
            "{t}"
        );
        assert!(
            t.contains("Credits    27 used, estimated cost US$2.70 at US$0.10/call"),
            "{t}"
        );
        assert!(
            t.contains("Requests   32 sent, 4 retries, 0 rate-limited (429) answers"),
            "{t}"
        );
        assert!(
            t.contains("Time       1m 00s, last run achieved 239.5 requests/min"),
            "{t}"
        );
        assert!(
            t.contains("Files      /data/out (journal.jsonl, results.csv"),
            "{t}"
        );
        assert!(t.contains("threshold 30 (Didit's default)"), "{t}");
        assert!(
            (15..=35).contains(&lines.len()),
            "{} lines:\n{t}",
            lines.len()
        );
        assert!(!t.contains("SIMULATED"));
    }

    #[test]
    fn markdown_cells_are_escaped() {
        assert_eq!(md("a|b\nc <x> *y*"), "a\\|b c &lt;x&gt; \\*y\\*");
        assert_eq!(code("LOW|<b>"), "`LOWb`");
    }

    #[test]
    fn durations_and_money_read_well() {
        assert_eq!(fmt_duration(12.34), "12.3s");
        assert_eq!(fmt_duration(125.0), "2m 05s");
        assert_eq!(fmt_duration(3723.0), "1h 02m 03s");
        assert_eq!(fmt_usd(cents(27.0 * 0.1)), "US$2.70");
        assert_eq!(cents(0.125 * 3.0), 0.38);
    }
}
