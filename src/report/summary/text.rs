//! The terminal rendering of a [`Summary`]: a compact block printed on stderr after a scan or a
//! `report`, that reads without explanation.

use std::fmt::Write as _;

use super::words::{Fact, Layout, Row};
use super::{ScoreMeasure, Summary};

/// The run details the terminal shows (the folder and its files come last, on one line).
const RUN_ROWS: &Layout = &[("Settings", Fact::Settings), ("Shards", Fact::Shards)];

impl Summary {
    /// A compact terminal summary that reads without explanation.
    pub fn render_text(&self) -> String {
        let mut t = String::new();
        head(&mut t, self);
        actions(&mut t, self);
        for (label, value) in rows(self) {
            let _ = writeln!(t, "{label:<10} {value}");
        }
        t
    }
}

/// The simulated stamp, the headline, the outcome and the warnings, then a blank line.
fn head(t: &mut String, s: &Summary) {
    if s.simulated {
        let _ = writeln!(t, "*** {} ***", super::SIMULATED_NOTICE);
    }
    let _ = writeln!(t, "{}", s.headline());
    let _ = writeln!(t, "{}.", s.outcome_line());
    for w in &s.warnings {
        let _ = writeln!(t, "Warning: {w}");
    }
    for f in s.verification_failures() {
        let _ = writeln!(t, "VERIFICATION FAILED: {f}");
    }
    let _ = writeln!(t);
}

/// What to do with each image: one aligned line per action, then a blank line.
fn actions(t: &mut String, s: &Summary) {
    let each = if s.is_face_match() { "pair" } else { "image" };
    let _ = writeln!(t, "What to do with each {each}:");
    for (a, n) in s.action_rows() {
        let _ = writeln!(t, "  {:<10} {:>7}  {}", a.as_str(), n, a.describe());
    }
    let _ = writeln!(t);
}

/// The labelled lines under the action table.
fn rows(s: &Summary) -> Vec<Row> {
    let risks = s.risk_codes_by_count();
    let levels = s.log_types_by_count();
    let errors: Vec<(&str, u64)> = s
        .errors_present()
        .into_iter()
        .map(|(c, n)| (c.as_str(), n))
        .collect();
    let mut rows: Vec<Row> = vec![
        ("Warnings", counts(&risks)),
        ("Severity", counts(&levels)),
        (
            match s.scores.measure {
                ScoreMeasure::LivenessScore => "Scores",
                ScoreMeasure::FaceMatchSimilarity => "Similarity",
            },
            s.scores_line(),
        ),
        ("No result", counts(&errors)),
    ];
    if let Some(ages) = s.ages_line() {
        rows.insert(3, ("Ages", ages));
    }
    rows.extend(s.usage_rows());
    rows.extend(s.fact_rows(RUN_ROWS));
    if let Some(a) = &s.audit {
        let id = a.identity_rows();
        let pick = |label: &str| {
            id.iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let who = if a.runs.last().is_some_and(|r| r.run_id.is_some()) {
            format!(
                "run {} by {} · key {}",
                pick("Run id"),
                pick("Operator"),
                a.key_fingerprints.join(", ")
            )
        } else {
            "run identity not recorded (written before it was kept)".to_string()
        };
        rows.push((
            "Audit",
            format!(
                "{who} · {}",
                a.provenance_rows()
                    .into_iter()
                    .find(|(l, _)| *l == "Journal chain")
                    .map(|(_, v)| format!("journal chain {v}"))
                    .unwrap_or_default()
            ),
        ));
        rows.push((
            "Reconcile",
            if a.reconciliation.closes {
                "closes (every equation in summary.md holds)".to_string()
            } else {
                "DOES NOT CLOSE: see the error below".to_string()
            },
        ));
        for (label, v) in a.balance_rows() {
            if label == "Balance before" || label == "Balance after" {
                rows.push((
                    if label == "Balance before" {
                        "Balance"
                    } else {
                        "  after"
                    },
                    v,
                ));
            }
        }
    }
    let folder = s.fact(Fact::Folder).unwrap_or_default();
    let files = s.fact(Fact::Files).unwrap_or_default();
    rows.push(("Files", format!("{folder} ({files})")));
    rows
}

/// "A 3 · B 1", or "none".
fn counts(list: &[(&str, u64)]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::super::Accumulator;
    use super::super::fixtures::{end, failed, result, run};
    use crate::record::Class;

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
        let s = acc.finish(Some(0.10), "/data/out");
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
            t.contains("Time       1m00s, last run achieved 239.5 requests/min"),
            "{t}"
        );
        assert!(
            t.contains(
                "Files      /data/out (journal.jsonl, results.csv, results.json, summary.json, \
                 summary.md, report.html, SHA256SUMS)"
            ),
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
}
