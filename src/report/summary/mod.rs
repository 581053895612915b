//! The run summary model: what `summary.json` holds (the [`Summary`] struct and its parts, with
//! their serde form) and the plain queries on it. Accumulation, wording and the text and Markdown
//! renderings live in the sibling modules; the HTML report renders the same struct.

mod accumulate;
pub mod audit;
#[cfg(test)]
pub(in crate::report) mod fixtures;
mod markdown;
mod text;
mod words;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::journal::Settings;
use crate::record::{Action, Class};

pub use super::action::{record_action, risk_action};
pub use accumulate::Accumulator;
pub use markdown::md;
pub use words::{
    Block, Fact, Layout, Row, Section, Span, changes_section, fmt_duration, fmt_threshold, fmt_usd,
};

/// The stamp every output carries when its results came from the emulator.
pub const SIMULATED_NOTICE: &str = "SIMULATED: results from the built-in emulator, not from Didit";

/// The output files written next to the journal by default, in the order they are listed to the
/// user (`--results-format` swaps or adds results.jsonl).
pub const OUTPUT_FILES: [&str; 5] = [
    "results.csv",
    "results.json",
    "summary.json",
    "summary.md",
    "report.html",
];

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
    /// Age estimation runs: the estimated ages of the items with a result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ages: Option<AgeDistribution>,
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
    /// Which journal state these outputs describe, and which files they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_from: Option<BuiltFrom>,
    /// A shard's own folder (`scan --shard K/N`): the latest run's shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardHeader>,
    /// A merge of shards (`report DIR... --out`): whether together they cover one input
    /// exactly once, and identical images screened in more than one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<super::shards::Coverage>,
    /// Who ran what on which inputs, the journal's chain, the balance and the reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<audit::Audit>,
    /// What changed since a baseline (`report --baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::report::baseline::Changes>,
}

/// Which journal state the outputs were built from and which files they are: `built_from` in
/// summary.json. A scan that adds no item record leaves the results files alone (and every
/// other output when it is still the one last written, this included) while the journal's
/// state recorded here still holds the same results (see [`crate::report::refresh_outputs`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BuiltFrom {
    /// Version of the outputs' layout: outputs of another version are always rebuilt.
    pub format: u32,
    /// The build of the tool that wrote them (another build rebuilds them too).
    pub tool_version: String,
    pub journal: super::latest::JournalState,
    /// The output files next to the journal, in the order they are listed.
    pub files: Vec<String>,
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
    /// Items whose source is no longer listed (deleted, renamed, replaced by a link): their
    /// last result is in gone.csv, and in none of the counts above.
    #[serde(default)]
    pub gone: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DecisionCounts {
    pub approved: u64,
    pub declined: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ScoreDistribution {
    /// What the scores are: the liveness score, or face match's similarity (the latest run's
    /// check); absent in summaries written before face match, whose scores are liveness's.
    #[serde(default)]
    pub measure: ScoreMeasure,
    /// Ten 10-point buckets: "0-10" holds [0, 10), ..., "90-100" holds [90, 100].
    pub buckets: Vec<ScoreBucket>,
    /// Results without a score (e.g. no face detected).
    pub no_score: u64,
}

/// What a record's `score` measures, by check.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMeasure {
    /// Passive liveness and age estimation: how likely the face is a live person's.
    #[default]
    LivenessScore,
    /// Face match: how alike the selfie's face and the reference's are.
    FaceMatchSimilarity,
}

impl ScoreMeasure {
    /// The histogram's title.
    pub fn title(self) -> &'static str {
        match self {
            ScoreMeasure::LivenessScore => "Liveness scores",
            ScoreMeasure::FaceMatchSimilarity => "Face match similarity scores",
        }
    }

    /// The score's name as a column head or a row label.
    pub fn label(self) -> &'static str {
        match self {
            ScoreMeasure::LivenessScore => "Score",
            ScoreMeasure::FaceMatchSimilarity => "Similarity",
        }
    }
}

/// The estimated ages of an age estimation run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AgeDistribution {
    /// The minimum age the run sent (0: the age check was off).
    pub minimum_age: Option<u32>,
    /// Ten 10-year buckets: "0-10" holds [0, 10), ..., "90-100" holds 90 and over.
    pub buckets: Vec<ScoreBucket>,
    /// Results without an estimated age (`AGE_NOT_DETECTED`, no face).
    pub no_age: u64,
    /// Results declined with `AGE_BELOW_MINIMUM`.
    pub below_minimum: u64,
}

/// One histogram of the summary, as every form of it shows one.
pub struct Histogram<'a> {
    pub title: String,
    /// The column head of the buckets (`Score`, `Age`).
    pub unit: &'static str,
    pub buckets: &'a [ScoreBucket],
    /// The rows after the buckets (`no score`, `no age`).
    pub rest: Vec<(&'static str, u64)>,
}

impl Summary {
    /// The scores (liveness's, or face match's similarity), then the estimated ages when the
    /// run estimated them.
    pub fn histograms(&self) -> Vec<Histogram<'_>> {
        let mut all = vec![Histogram {
            title: self.scores.measure.title().into(),
            unit: self.scores.measure.label(),
            buckets: &self.scores.buckets,
            rest: vec![("no score", self.scores.no_score)],
        }];
        if let Some(a) = &self.ages {
            let minimum = match a.minimum_age {
                Some(0) | None => "the age check off".to_string(),
                Some(n) => format!("{} below the minimum of {n}", a.below_minimum),
            };
            all.push(Histogram {
                title: format!("Estimated ages ({minimum})"),
                unit: "Age",
                buckets: &a.buckets,
                rest: vec![("no age", a.no_age)],
            });
        }
        all
    }
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
    /// Sends whose outcome was unknown (the upload left and no definitive answer came back: a
    /// timeout or reset after sending, a 5xx), uploads a dead run never recorded included.
    #[serde(default)]
    pub unknown_outcomes: u64,
    /// Of those, the ones after which the same image was sent again: each of these may have
    /// been billed twice.
    pub possible_double_charges: u64,
    /// `Retry-After` waits longer than the cap, cut to it.
    #[serde(default)]
    pub retry_after_capped: u64,
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

/// Round a dollar amount to cents.
pub fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Summary {
    /// The output files next to the journal, as built (the default set for a summary that does
    /// not say).
    pub fn output_files(&self) -> Vec<&str> {
        match &self.built_from {
            Some(b) => b.files.iter().map(String::as_str).collect(),
            None => OUTPUT_FILES.to_vec(),
        }
    }

    /// Every file the outputs' build writes, as listed to the user: the output files, then
    /// changes.csv (when compared with a baseline) and SHA256SUMS.
    pub fn files_written(&self) -> Vec<&str> {
        let mut files = self.output_files();
        if self.changes.is_some() {
            files.push(crate::report::baseline::CHANGES_FILE);
        }
        if self.items.gone > 0 {
            files.push(crate::report::gone::GONE_FILE);
        }
        files.push(crate::report::sums::SUMS_FILE);
        files
    }

    /// The files holding one row per item (results.csv, and results.json and/or results.jsonl).
    pub fn results_files(&self) -> Vec<&str> {
        self.output_files()
            .into_iter()
            .filter(|f| f.starts_with("results."))
            .collect()
    }

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

    /// What makes `report` fail verification (exit 8): a broken journal chain, a
    /// reconciliation that does not close. Empty when the outputs can be trusted.
    pub fn verification_failures(&self) -> Vec<String> {
        let Some(a) = &self.audit else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(b) = &a.journal_chain.broken {
            out.push(format!(
                "the journal's chain is broken at line {} (byte {}): {}",
                b.line, b.offset, b.reason
            ));
        }
        for p in &a.reconciliation.problems {
            out.push(format!("the reconciliation does not close: {p}"));
        }
        for d in &a.disagreements {
            out.push(format!(
                "the journal no longer holds what was built from it: {d}"
            ));
        }
        if let Some(sig) = &a.signature {
            for p in &sig.problems {
                out.push(format!("the signature does not hold: {p}"));
            }
        }
        out
    }

    /// Classes without a result that occurred.
    pub fn errors_present(&self) -> Vec<(Class, u64)> {
        self.errors_by_class
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (*c, *n))
            .collect()
    }
}

fn by_count(map: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = map.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::fixtures::{end, failed, pair, result, run, run_of};
    use super::*;

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
    fn simulated_is_stamped_everywhere() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_run(&run(true, true));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        acc.on_end(&end("completed", 0));
        let s = acc.finish(Some(0.1), "/o");
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
        let s = acc.finish(Some(0.1), "/o");
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

    /// A face match run's summary: two similar pairs, one below the threshold, one without a
    /// reference found.
    fn face_match_summary() -> Summary {
        let mut acc = Accumulator::new();
        acc.on_run(&run_of("face-match", false));
        acc.on_record(&pair("u1", "ref/u1.jpg", Some(91.0), &[]), true);
        acc.on_record(&pair("u2", "ref/u2.jpg", Some(84.5), &[]), true);
        let low = [("LOW_FACE_MATCH_SIMILARITY", "error")];
        acc.on_record(&pair("u3", "ref/u3.jpg", Some(12.0), &low), true);
        acc.on_record(&failed("u4", Class::InvalidInput, 0), true);
        acc.on_end(&end("completed", 0));
        acc.finish(None, "/o")
    }

    #[test]
    fn face_match_scores_are_similarities_and_its_threshold_is_named() {
        let s = face_match_summary();
        assert_eq!(s.scores.measure, ScoreMeasure::FaceMatchSimilarity);
        let h = s.histograms();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].title, "Face match similarity scores");
        assert_eq!(h[0].unit, "Similarity");
        assert_eq!(
            s.settings_line(),
            "check face-match · face match threshold 30 · rotate_image no · save_api_request no \
             · API verification.didit.me"
        );
        assert_eq!(
            s.fact(Fact::Threshold).as_deref(),
            Some("30 (face match similarity)")
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["scores"]["measure"], "face_match_similarity");
        assert_eq!(json["settings"]["check"], "face-match");
        assert_eq!(json["settings"]["threshold"], 30.0);
        let back: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);

        let text = s.render_text();
        assert!(
            text.contains("Similarity 10-20: 1 · 80-90: 1 · 90-100: 1\n"),
            "{text}"
        );
        assert!(!text.contains("Scores "), "{text}");
        assert!(text.contains("face match threshold 30 · "), "{text}");
        let md = s.render_markdown();
        assert!(
            md.contains("## Face match similarity scores\n\n| Similarity | Images |"),
            "{md}"
        );
        assert!(!md.contains("Liveness scores"), "{md}");
        assert!(md.contains("face match threshold 30"), "{md}");
        let page = crate::report::html::render(&s, &crate::report::html::Attention::new());
        assert!(page.contains("<h2>Face match similarity scores</h2>"));
        assert!(!page.contains("Liveness scores"));
        assert!(page.contains("<dt>Threshold</dt><dd>30 (face match similarity)</dd>"));
    }

    #[test]
    fn liveness_and_age_scores_stay_liveness_scores() {
        let mut acc = Accumulator::new();
        acc.on_run(&run(false, false));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        let s = acc.finish(None, "/o");
        assert_eq!(s.scores.measure, ScoreMeasure::LivenessScore);
        assert_eq!(s.histograms()[0].title, "Liveness scores");
        assert!(
            s.settings_line()
                .starts_with("threshold 30 (Didit's default) · ")
        );
        assert!(s.render_text().contains("Scores     80-90: 1\n"));

        let mut acc = Accumulator::new();
        acc.on_run(&run_of("age", false));
        acc.on_record(&result("a", Some(80.0), &[]), true);
        let s = acc.finish(None, "/o");
        assert_eq!(s.histograms()[0].title, "Liveness scores");
        assert!(
            s.settings_line()
                .starts_with("check age · minimum age 18 · threshold 30 (Didit's default) · "),
            "{}",
            s.settings_line()
        );
        // A summary.json written before face match says nothing of the measure: liveness's.
        let mut json = serde_json::to_value(&s).unwrap();
        json["scores"].as_object_mut().unwrap().remove("measure");
        let back: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(back.scores.measure, ScoreMeasure::LivenessScore);
    }
}
