//! `report NEW --baseline OLD`: what changed since the last audit, by key. Each side's latest
//! records are found with the first pass of the build, their keys sorted by digest (spilling to
//! disk beyond the budget), and the two sides walked together: newly declined, newly approved,
//! action changed, score moved beyond a margin, items new or gone. The rows go to
//! `changes.csv` (spreadsheet-safe like results.csv); the counts, the first rows of each kind
//! and any settings difference that makes the comparison unfair go in the summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::action::record_action;
use super::csv::{UTF8_BOM, escape_cell};
use super::out::{AtomicOut, sort_err};
use super::read::LinesAt;
use super::{ReportError, io_err, latest};
use crate::journal::{Index, JOURNAL_FILE, Line, Reader, key_digest};
use crate::kit::sort::Sorter;
use crate::record::{Action, Class, Decision, Record};

pub const CHANGES_FILE: &str = "changes.csv";

/// Rows of each kind shown in report.html and summary.md (all are in changes.csv).
pub const SHOWN_PER_KIND: usize = 25;

/// What changed for one key, most important first: a key is listed once, under its first kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    NewlyDeclined,
    NewlyApproved,
    ActionChanged,
    ScoreMoved,
    New,
    Gone,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 6] = [
        ChangeKind::NewlyDeclined,
        ChangeKind::NewlyApproved,
        ChangeKind::ActionChanged,
        ChangeKind::ScoreMoved,
        ChangeKind::New,
        ChangeKind::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::NewlyDeclined => "newly_declined",
            ChangeKind::NewlyApproved => "newly_approved",
            ChangeKind::ActionChanged => "action_changed",
            ChangeKind::ScoreMoved => "score_moved",
            ChangeKind::New => "new",
            ChangeKind::Gone => "gone",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ChangeKind::NewlyDeclined => "passed before, declined now",
            ChangeKind::NewlyApproved => "declined before, approved now",
            ChangeKind::ActionChanged => "the action to take changed",
            ChangeKind::ScoreMoved => "the score moved by more than the margin",
            ChangeKind::New => "not in the baseline",
            ChangeKind::Gone => "in the baseline, not here",
        }
    }
}

/// One side of a key: what the comparison looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub class: Class,
    pub decision: Option<Decision>,
    pub action: Action,
    pub score: Option<f64>,
}

impl Side {
    fn of(r: &Record) -> Self {
        Self {
            class: r.class.unwrap_or(Class::Interrupted),
            decision: r.status,
            action: record_action(r),
            score: r.score,
        }
    }

    fn decision_text(&self) -> String {
        self.decision.map_or_else(
            || self.class.as_str().to_string(),
            |d| d.as_str().to_string(),
        )
    }
}

/// The kinds of change between two sides of a key, most important first.
pub fn classify(old: Option<&Side>, new: Option<&Side>, margin: f64) -> Vec<ChangeKind> {
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => return vec![ChangeKind::New],
        (Some(_), None) => return vec![ChangeKind::Gone],
        (Some(o), Some(n)) => (o, n),
    };
    let mut kinds = Vec::new();
    let declined = |s: &Side| s.decision == Some(Decision::Declined);
    let approved = |s: &Side| s.decision == Some(Decision::Approved);
    if declined(new) && !declined(old) {
        kinds.push(ChangeKind::NewlyDeclined);
    }
    if approved(new) && declined(old) {
        kinds.push(ChangeKind::NewlyApproved);
    }
    if old.action != new.action {
        kinds.push(ChangeKind::ActionChanged);
    }
    if let (Some(a), Some(b)) = (old.score, new.score)
        && (b - a).abs() > margin
    {
        kinds.push(ChangeKind::ScoreMoved);
    }
    kinds
}

/// One listed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRow {
    pub key: String,
    pub kind: ChangeKind,
    /// Every kind that applies, most important first.
    pub kinds: Vec<ChangeKind>,
    pub old: Option<Side>,
    pub new: Option<Side>,
    pub vendor_data: Option<String>,
    pub path: String,
}

/// The comparison as summary.json holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// The baseline folder as given.
    pub baseline: String,
    /// When the baseline's first run started, and its latest run id.
    pub baseline_started_at: Option<String>,
    pub baseline_run_id: Option<String>,
    pub score_margin: f64,
    /// Differences in settings that make the comparison unfair (a threshold changed, ...).
    pub unfair: Vec<String>,
    /// Keys in each side.
    pub baseline_items: u64,
    pub items: u64,
    /// Keys listed, by their first kind (all kinds, zeros included).
    pub counts: BTreeMap<ChangeKind, u64>,
    /// The first rows of each kind ([`SHOWN_PER_KIND`]); every row is in changes.csv.
    pub shown: Vec<ChangeRow>,
}

impl Changes {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

const COLUMNS: [&str; 14] = [
    "key",
    "change",
    "all_changes",
    "old_decision",
    "new_decision",
    "old_action",
    "new_action",
    "old_score",
    "new_score",
    "score_delta",
    "old_class",
    "new_class",
    "vendor_data",
    "path",
];

fn row_cells(r: &ChangeRow) -> Vec<String> {
    let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let delta = match (
        r.old.as_ref().and_then(|s| s.score),
        r.new.as_ref().and_then(|s| s.score),
    ) {
        (Some(a), Some(b)) => (((b - a) * 1000.0).round() / 1000.0).to_string(),
        _ => String::new(),
    };
    let side =
        |s: &Option<Side>, f: &dyn Fn(&Side) -> String| s.as_ref().map(f).unwrap_or_default();
    let text = |s: &str| escape_cell(s).into_owned();
    // Our own words and numbers as they are; outside text (key, vendor_data, path) escaped so a
    // spreadsheet never runs it as a formula.
    vec![
        text(&r.key),
        r.kind.as_str().to_string(),
        r.kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(";"),
        side(&r.old, &|s| s.decision_text()),
        side(&r.new, &|s| s.decision_text()),
        side(&r.old, &|s| s.action.as_str().to_string()),
        side(&r.new, &|s| s.action.as_str().to_string()),
        num(r.old.as_ref().and_then(|s| s.score)),
        num(r.new.as_ref().and_then(|s| s.score)),
        delta,
        side(&r.old, &|s| s.class.as_str().to_string()),
        side(&r.new, &|s| s.class.as_str().to_string()),
        text(r.vendor_data.as_deref().unwrap_or_default()),
        text(&r.path),
    ]
}

/// Check the baseline folder before anything is built.
pub fn check_baseline(baseline: &Path, out_dir: &Path) -> Result<(), ReportError> {
    if !baseline.join(JOURNAL_FILE).is_file() {
        return Err(ReportError::NoJournal {
            dir: baseline.to_path_buf(),
        });
    }
    let same = match (baseline.canonicalize(), out_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => baseline == out_dir,
    };
    if same {
        return Err(ReportError::Usage(format!(
            "report: --baseline {} is the folder being reported; give the folder of an earlier \
             audit",
            baseline.display()
        )));
    }
    Ok(())
}

/// Compare `out_dir`'s journal with `baseline`'s, write changes.csv, and return the summary's
/// part and changes.csv's SHA-256. Temporary sort files go in `out_dir`.
pub fn compare(
    out_dir: &Path,
    baseline: &Path,
    margin: f64,
    budget: usize,
) -> Result<(Changes, String), ReportError> {
    let sort_err = sort_err(out_dir);
    let sides = [baseline.join(JOURNAL_FILE), out_dir.join(JOURNAL_FILE)];
    // (key digest, side, offset of the latest record) of both journals.
    let mut keys: Sorter<(u128, u64, u64)> = Sorter::new(out_dir, budget);
    let mut items = [0u64; 2];
    for (side, path) in sides.iter().enumerate() {
        let scanned = latest::scan(path, out_dir, budget)?;
        let mut lines = LinesAt::open(path)?;
        for next in scanned.latest {
            let offset = next.map_err(&sort_err)?;
            if let Line::Item(r) = lines.read(offset)? {
                keys.push((key_digest(&r.key), side as u64, offset))
                    .map_err(&sort_err)?;
                items[side] += 1;
            }
        }
    }
    let (unfair, started, run_id) = settings_differences(&sides[0], &sides[1])?;

    let path = out_dir.join(CHANGES_FILE);
    let mut file = AtomicOut::create(&path).map_err(io_err(&path))?;
    file.write_all(UTF8_BOM).map_err(io_err(&path))?;
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(&mut file);
    csv.write_record(COLUMNS)
        .map_err(|e| io_err(&path)(e.into()))?;
    let mut readers = [LinesAt::open(&sides[0])?, LinesAt::open(&sides[1])?];
    let mut counts: BTreeMap<ChangeKind, u64> = ChangeKind::ALL.iter().map(|k| (*k, 0)).collect();
    let mut shown: Vec<ChangeRow> = Vec::new();
    let mut group: Vec<(u64, u64)> = Vec::with_capacity(2);
    let mut current: Option<u128> = None;
    let mut entries = keys.finish().map_err(&sort_err)?;
    loop {
        let next = entries.next().transpose().map_err(&sort_err)?;
        if current.is_some() && next.map(|e| e.0) != current {
            let mut recs: [Option<Record>; 2] = [None, None];
            for (side, offset) in group.drain(..) {
                if let Line::Item(r) = readers[side as usize].read(offset)? {
                    recs[side as usize] = Some(*r);
                }
            }
            let [old, new] = recs;
            let (o, n) = (old.as_ref().map(Side::of), new.as_ref().map(Side::of));
            let kinds = classify(o.as_ref(), n.as_ref(), margin);
            if let Some(&kind) = kinds.first() {
                let rec = new.as_ref().or(old.as_ref()).expect("one side");
                let row = ChangeRow {
                    key: rec.key.clone(),
                    kind,
                    kinds,
                    old: o,
                    new: n,
                    vendor_data: rec.vendor_data.clone(),
                    path: rec.path.clone(),
                };
                csv.write_record(row_cells(&row))
                    .map_err(|e| io_err(&path)(e.into()))?;
                let n = counts.entry(kind).or_default();
                *n += 1;
                if *n <= SHOWN_PER_KIND as u64 {
                    shown.push(row);
                }
            }
        }
        let Some((digest, side, offset)) = next else {
            break;
        };
        current = Some(digest);
        group.push((side, offset));
    }
    csv.flush().map_err(io_err(&path))?;
    drop(csv);
    let (_, sha) = file.commit().map_err(io_err(&path))?;
    shown.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.key.cmp(&b.key)));
    Ok((
        Changes {
            baseline: baseline.display().to_string(),
            baseline_started_at: started,
            baseline_run_id: run_id,
            score_margin: margin,
            unfair,
            baseline_items: items[0],
            items: items[1],
            counts,
            shown,
        },
        sha,
    ))
}

/// The settings of each side's latest run, compared: what makes the comparison unfair. Also
/// the baseline's first start and latest run id, to name it.
/// The unfair differences, the baseline's first start and its latest run id.
type Differences = (Vec<String>, Option<String>, Option<String>);

fn settings_differences(old: &PathBuf, new: &PathBuf) -> Result<Differences, ReportError> {
    let index =
        |p: &PathBuf| -> Result<Index, ReportError> { Ok(Index::build(&mut Reader::open(p)?)?) };
    let (old_index, new_index) = (index(old)?, index(new)?);
    let mut unfair = Vec::new();
    if let (Some(o), Some(n)) = (&old_index.settings, &new_index.settings) {
        for d in n.differences(o) {
            unfair.push(d.replace("journal has", "baseline has"));
        }
    }
    // The baseline's first run header, for its start time and the latest run id.
    let mut started = None;
    let mut run_id = None;
    for line in Reader::open(old)? {
        if let Ok((_, Line::Run(run))) = line {
            started.get_or_insert(run.started_at.clone());
            run_id = run.identity.map(|i| i.run_id);
        }
    }
    Ok((unfair, started, run_id))
}

/// Remove a changes.csv left by an earlier comparison: outputs rebuilt without `--baseline`
/// no longer describe it. Returns whether one was removed.
pub fn remove_stale(out_dir: &Path) -> Result<bool, ReportError> {
    super::remove_if_present(&out_dir.join(CHANGES_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(decision: Option<Decision>, action: Action, score: Option<f64>) -> Side {
        Side {
            class: if decision.is_some() {
                Class::Result
            } else {
                Class::Transient
            },
            decision,
            action,
            score,
        }
    }

    #[test]
    fn kinds_most_important_first() {
        use ChangeKind::*;
        let ok = side(Some(Decision::Approved), Action::Proceed, Some(80.0));
        let bad = side(Some(Decision::Declined), Action::Fraud, Some(20.0));
        assert_eq!(
            classify(Some(&ok), Some(&bad), 10.0),
            [NewlyDeclined, ActionChanged, ScoreMoved]
        );
        assert_eq!(
            classify(Some(&bad), Some(&ok), 10.0),
            [NewlyApproved, ActionChanged, ScoreMoved]
        );
        assert_eq!(classify(Some(&ok), Some(&ok), 10.0), []);
        let moved = side(Some(Decision::Approved), Action::Proceed, Some(91.0));
        assert_eq!(classify(Some(&ok), Some(&moved), 10.0), [ScoreMoved]);
        assert_eq!(classify(Some(&ok), Some(&moved), 11.0), []);
        assert_eq!(classify(None, Some(&ok), 10.0), [New]);
        assert_eq!(classify(Some(&ok), None, 10.0), [Gone]);
        // no result before, declined now: newly declined
        let none = side(None, Action::Rerun, None);
        assert_eq!(
            classify(Some(&none), Some(&bad), 10.0),
            [NewlyDeclined, ActionChanged]
        );
    }
}
