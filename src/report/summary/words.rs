//! The summary in words: the sentences, facts and (label, value) rows that the text, Markdown
//! and HTML renderings share, each worded once here so the three cannot drift apart.

use std::fmt::Write as _;

use crate::journal::Settings;
use crate::record::Action;

use super::Summary;
use crate::progress::human_duration;
use crate::report::baseline::{CHANGES_FILE, ChangeKind, ChangeRow, Changes, SHOWN_PER_KIND, Side};

/// One (label, value) row of a details table; each rendering formats a list of them its way.
pub type Row = (&'static str, String);

/// One fact about the run, worded once by [`Summary::fact`]. Each rendering shows the facts it
/// lists in its layout, under its own labels and in its own order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// "liveness-batch 0.1.0".
    Tool,
    /// When the first run started.
    Started,
    /// When the last finished run ended.
    Finished,
    /// Runs, and journals merged: "3 runs", "2 journals merged, 3 runs".
    Runs,
    /// Runs first, journals merged in brackets: "3", "3 (2 journals merged)".
    RunCount,
    /// Every setting of the latest run on one line.
    Settings,
    /// The latest run's API host (absent when no run was recorded).
    ApiHost,
    /// The latest run's threshold (absent when no run was recorded).
    Threshold,
    /// The latest run's rotate_image (absent when no run was recorded).
    RotateImage,
    /// The latest run's save_api_request (absent when no run was recorded).
    SaveApiRequest,
    /// Didit, or the built-in emulator.
    ResultsSource,
    /// How the last run ended.
    Outcome,
    /// The folder holding the journal and the outputs.
    Folder,
    /// The files in that folder.
    Files,
    /// A shard's place in its array job, or a merge's coverage (absent when not sharded).
    Shards,
}

/// Which rows of a layout the rendering shows: `(label, fact)` pairs, in order.
pub type Layout = [(&'static str, Fact)];

/// A duration in seconds as [`human_duration`] writes it; "unknown" for none.
pub fn fmt_duration(secs: f64) -> String {
    std::time::Duration::try_from_secs_f64(secs).map_or("unknown".into(), human_duration)
}

/// "US$12.30".
pub fn fmt_usd(x: f64) -> String {
    format!("US${x:.2}")
}

/// A threshold as the user understands it.
pub fn fmt_threshold(t: Option<f64>) -> String {
    t.map_or_else(|| "30 (Didit's default)".to_string(), |t| t.to_string())
}

/// Whether the run compared pairs (face match): its threshold is the similarity's, not the
/// liveness score's.
fn face_match(st: &Settings) -> bool {
    st.check.as_deref() == Some(crate::didit::FACE_MATCH.check)
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub(super) fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

impl Summary {
    /// Whether the run compared pairs (face match).
    pub fn is_face_match(&self) -> bool {
        self.settings.as_ref().is_some_and(face_match)
    }

    /// The title of the summary and the report: which screening this is.
    pub fn title(&self) -> &'static str {
        let check = self.settings.as_ref().and_then(|s| s.check.as_deref());
        match check {
            Some(c) if c == crate::didit::FACE_MATCH.check => "Face match screening",
            Some(c) if c == crate::didit::AGE.check => "Age estimation screening",
            _ => "Liveness screening",
        }
    }

    /// One sentence: how many images and what became of them.
    pub fn headline(&self) -> String {
        let i = &self.items;
        if i.total == 0 && i.gone == 0 {
            return "No images recorded in the journal yet.".into();
        }
        let (one, many) = if self.is_face_match() {
            ("pair", "pairs")
        } else {
            ("image", "images")
        };
        let mut s = format!(
            "{} {}: {} approved, {} declined",
            i.total,
            plural(i.total, one, many),
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
        if i.gone > 0 {
            let _ = write!(
                s,
                " {} more no longer in the sources (deleted, renamed or now a link; see {}).",
                i.gone,
                crate::report::gone::GONE_FILE
            );
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
                "{}{} {} · rotate_image {} · save_api_request {} · API {}",
                match (&st.check, st.min_age) {
                    (Some(check), Some(age)) => format!("check {check} · minimum age {age} · "),
                    (Some(check), None) => format!("check {check} · "),
                    (None, _) => String::new(),
                },
                // The threshold that decided: face match's is the similarity's.
                if face_match(st) {
                    "face match threshold"
                } else {
                    "threshold"
                },
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
        let mut line = format!(
            "{} sent, {} {}, {} rate-limited (429) {}, {} {} with an unknown outcome, {} of them \
             sent again ({} possible double {})",
            r.sent,
            r.retries,
            plural(r.retries, "retry", "retries"),
            r.rate_limited_429,
            plural(r.rate_limited_429, "answer", "answers"),
            r.unknown_outcomes,
            plural(r.unknown_outcomes, "send", "sends"),
            r.possible_double_charges,
            r.possible_double_charges,
            plural(r.possible_double_charges, "charge", "charges"),
        );
        if r.retry_after_capped > 0 {
            let _ = write!(
                line,
                ", {} Retry-After {} cut to {} s",
                r.retry_after_capped,
                plural(r.retry_after_capped, "wait", "waits"),
                crate::retry::MAX_RATE_LIMIT_WAIT.as_secs()
            );
        }
        line
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
        histogram_line(&self.histograms()[0])
    }

    /// The estimated ages on one line, with how many were below the minimum, for an age
    /// estimation run.
    pub fn ages_line(&self) -> Option<String> {
        let ages = self.ages.as_ref()?;
        let line = histogram_line(self.histograms().get(1)?);
        Some(match ages.minimum_age {
            Some(0) | None => format!("{line} (age check off)"),
            Some(n) => format!("{line} · below {n}: {}", ages.below_minimum),
        })
    }

    /// Requests, credits, time and inputs, one line each.
    pub fn usage_rows(&self) -> [Row; 4] {
        [
            ("Requests", self.requests_line()),
            ("Credits", self.credits_line()),
            ("Time", self.time_line()),
            ("Inputs", self.inputs_line()),
        ]
    }

    /// The decision table: approved, declined, and items without a result.
    pub fn decision_rows(&self) -> [(&'static str, u64); 3] {
        [
            ("Approved", self.by_decision.approved),
            ("Declined", self.by_decision.declined),
            ("No result", self.items.without_result),
        ]
    }

    /// Every action with its number of images, in the order the tables list them.
    pub fn action_rows(&self) -> impl Iterator<Item = (Action, u64)> + '_ {
        Action::ALL.into_iter().map(|a| (a, self.action_count(a)))
    }

    /// One fact about the run in words; None when the journal does not record it.
    pub fn fact(&self, fact: Fact) -> Option<String> {
        let settings = self.settings.as_ref();
        Some(match fact {
            Fact::Tool => format!("liveness-batch {}", self.tool_version),
            Fact::Started => self.started_at.clone().unwrap_or_else(|| "unknown".into()),
            Fact::Finished => self
                .finished_at
                .clone()
                .unwrap_or_else(|| "not finished".into()),
            Fact::Runs if self.journals > 1 => {
                format!("{} journals merged, {} runs", self.journals, self.runs)
            }
            Fact::Runs => format!("{} {}", self.runs, plural(self.runs, "run", "runs")),
            Fact::RunCount if self.journals > 1 => {
                format!("{} ({} journals merged)", self.runs, self.journals)
            }
            Fact::RunCount => self.runs.to_string(),
            Fact::Settings => self.settings_line(),
            Fact::ApiHost => settings?.api_host.clone(),
            Fact::Threshold if face_match(settings?) => {
                format!(
                    "{} (face match similarity)",
                    fmt_threshold(settings?.threshold)
                )
            }
            Fact::Threshold => fmt_threshold(settings?.threshold),
            Fact::RotateImage => yes_no(settings?.rotate_image).to_string(),
            Fact::SaveApiRequest => yes_no(settings?.save_api_request).to_string(),
            Fact::ResultsSource if self.simulated => "the built-in emulator (SIMULATED)".into(),
            Fact::ResultsSource => "Didit".into(),
            Fact::Outcome => self.outcome.clone(),
            Fact::Folder => self.out_dir.clone(),
            Fact::Files => format!("journal.jsonl, {}", self.files_written().join(", ")),
            Fact::Shards => match (&self.shards, &self.shard) {
                (Some(c), _) => c.line(),
                (None, Some(h)) => format!(
                    "shard {} of {} (split {}); --rate {} is the key's budget, shared by {} \
                     shards; merge all {} folders with `liveness-batch report DIR... --out DIR`",
                    h.index, h.total, h.algorithm, h.key_rate, h.total, h.total
                ),
                (None, None) => return None,
            },
        })
    }

    /// The rows of `layout` whose facts are recorded, labelled as the layout says.
    pub fn fact_rows(&self, layout: &Layout) -> Vec<Row> {
        layout
            .iter()
            .filter_map(|(label, fact)| Some((*label, self.fact(*fact)?)))
            .collect()
    }
}

/// Text in a document: worded, or code (a path, a key, a file name), each form marking it up
/// its way.
#[derive(Debug, Clone, PartialEq)]
pub enum Span {
    Text(String),
    Code(String),
}

/// A part of a section, worded once here and rendered by the Markdown and the HTML.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Para(Vec<Span>),
    /// A paragraph that warns.
    Warn(Vec<Span>),
    /// A table: each column's label and whether it holds numbers, then the rows' cells.
    Table {
        head: Vec<(&'static str, bool)>,
        rows: Vec<Vec<Vec<Span>>>,
    },
}

/// A section of the summary: its anchor, title and blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub blocks: Vec<Block>,
}

fn text(s: impl Into<String>) -> Span {
    Span::Text(s.into())
}

fn code(s: impl Into<String>) -> Span {
    Span::Code(s.into())
}

/// Changes since the baseline: counts by kind, then the first rows of each kind.
pub fn changes_section(c: &Changes) -> Section {
    let mut blocks = vec![Block::Para(vec![
        text("Baseline "),
        code(c.baseline.as_str()),
        text(format!(
            "{}: {} items; {} here. Score margin {} points. Every change is in ",
            c.baseline_started_at
                .as_deref()
                .map(|t| format!(", first run started {t}"))
                .unwrap_or_default(),
            c.baseline_items,
            c.items,
            c.score_margin
        )),
        code(CHANGES_FILE),
        text("."),
    ])];
    for u in &c.unfair {
        blocks.push(Block::Warn(vec![text(format!("Not like for like: {u}"))]));
    }
    // A kind another check cannot have is left out of the table (summary.json counts it, 0).
    let applies = |k: &ChangeKind, n: u64| match k {
        ChangeKind::ReferenceChanged => c.references || n > 0,
        ChangeKind::AgeMoved => c.ages || n > 0,
        _ => true,
    };
    let counted = ChangeKind::ALL
        .iter()
        .map(|k| (k, c.counts.get(k).copied().unwrap_or(0)));
    let rows = counted.filter(|(k, n)| applies(k, *n)).map(|(k, n)| {
        vec![
            vec![code(k.as_str())],
            vec![text(n.to_string())],
            vec![text(k.describe())],
        ]
    });
    blocks.push(Block::Table {
        head: vec![("Change", false), ("Items", true), ("Meaning", false)],
        rows: rows.collect(),
    });
    if c.shown.is_empty() {
        blocks.push(Block::Para(vec![text("No item changed.")]));
    } else {
        let side = |x: &Option<Side>| {
            x.as_ref().map_or("—".to_string(), |s| {
                let decision = s.decision.map_or(s.class.as_str(), |d| d.as_str());
                format!("{decision} / {}", s.action.as_str())
            })
        };
        let number = |v: Option<f64>| v.map_or("—".into(), |v| v.to_string());
        let score = |x: &Option<Side>| number(x.as_ref().and_then(|s| s.score));
        let age = |x: &Option<Side>| number(x.as_ref().and_then(|s| s.estimated_age));
        // The pair's second key: the one reference, or the one before and the one now.
        let reference = |r: &ChangeRow| {
            fn of(x: &Option<Side>) -> Option<&str> {
                x.as_ref().and_then(|s| s.reference.as_deref())
            }
            let named = |n: Option<&str>| n.map_or_else(|| text("—"), code);
            match (of(&r.old), of(&r.new)) {
                (a, b) if a == b => vec![named(a)],
                (a, b) => vec![named(a), text(" → "), named(b)],
            }
        };
        let rows = c.shown.iter().map(|r| {
            let mut row = vec![vec![code(r.kind.as_str())], vec![code(r.key.as_str())]];
            if c.references {
                row.push(reference(r));
            }
            row.extend([
                vec![text(side(&r.old))],
                vec![text(side(&r.new))],
                vec![text(format!("{} → {}", score(&r.old), score(&r.new)))],
            ]);
            if c.ages {
                row.push(vec![text(format!("{} → {}", age(&r.old), age(&r.new)))]);
            }
            row.push(vec![text(r.vendor_data.as_deref().unwrap_or(""))]);
            row
        });
        let mut head = vec![("Change", false)];
        if c.references {
            head.extend([("Selfie key", false), ("Reference", false)]);
        } else {
            head.push(("Key", false));
        }
        head.extend([
            ("Before", false),
            ("Now", false),
            if c.references {
                ("Similarity before → now", true)
            } else {
                ("Score before → now", true)
            },
        ]);
        if c.ages {
            head.push(("Age before → now", true));
        }
        head.push(("vendor_data", false));
        blocks.push(Block::Table {
            head,
            rows: rows.collect(),
        });
        let shown = c.shown.len() as u64;
        if shown < c.total() {
            blocks.push(Block::Para(vec![
                text(format!(
                    "Showing {shown} of {} changes (the first {SHOWN_PER_KIND} of each kind); all are in ",
                    c.total()
                )),
                code(CHANGES_FILE),
                text("."),
            ]));
        }
    }
    Section {
        id: "changes",
        title: format!("Changes since the baseline ({})", c.total()),
        blocks,
    }
}

/// A histogram's non-empty rows on one line: "20-30: 5 · 80-90: 22 · no score: 1".
fn histogram_line(h: &super::Histogram) -> String {
    let parts: Vec<String> = h
        .buckets
        .iter()
        .map(|b| (b.range.as_str(), b.count))
        .chain(h.rest.iter().copied())
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| format!("{label}: {n}"))
        .collect();
    if parts.is_empty() {
        return "none".into();
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::super::cents;
    use super::*;

    #[test]
    fn durations_and_money_read_well() {
        assert_eq!(fmt_duration(12.34), "12.3s");
        assert_eq!(fmt_duration(125.0), "2m05s");
        assert_eq!(fmt_duration(3723.0), "1h02m03s");
        assert_eq!(fmt_duration(f64::NAN), "unknown");
        assert_eq!(fmt_usd(cents(27.0 * 0.1)), "US$2.70");
        assert_eq!(cents(0.125 * 3.0), 0.38);
    }
}
