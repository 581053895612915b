//! `report NEW --baseline OLD`: what changed since the last audit, by key. Each side's latest
//! records are found with the first pass of the build, their keys sorted by digest (spilling to
//! disk beyond the budget), and the two sides walked together: newly declined, newly approved,
//! action changed, reference changed (face match), score moved beyond a margin, estimated age
//! moved (age estimation), items new or gone. The rows go to
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

/// An estimated age that moved by this many years or more is a change: the minimum age is in
/// whole years, and smaller moves are the estimate's noise, not news.
pub const AGE_MARGIN_YEARS: f64 = 1.0;

/// What changed for one key, most important first: a key is listed once, under its first kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    NewlyDeclined,
    NewlyApproved,
    ActionChanged,
    /// Face match: the key's selfie was compared with another reference this time.
    ReferenceChanged,
    ScoreMoved,
    /// Age estimation: the estimated age moved by [`AGE_MARGIN_YEARS`] or more.
    AgeMoved,
    New,
    Gone,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 8] = [
        ChangeKind::NewlyDeclined,
        ChangeKind::NewlyApproved,
        ChangeKind::ActionChanged,
        ChangeKind::ReferenceChanged,
        ChangeKind::ScoreMoved,
        ChangeKind::AgeMoved,
        ChangeKind::New,
        ChangeKind::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::NewlyDeclined => "newly_declined",
            ChangeKind::NewlyApproved => "newly_approved",
            ChangeKind::ActionChanged => "action_changed",
            ChangeKind::ReferenceChanged => "reference_changed",
            ChangeKind::ScoreMoved => "score_moved",
            ChangeKind::AgeMoved => "age_moved",
            ChangeKind::New => "new",
            ChangeKind::Gone => "gone",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ChangeKind::NewlyDeclined => "passed before, declined now",
            ChangeKind::NewlyApproved => "declined before, approved now",
            ChangeKind::ActionChanged => "the action to take changed",
            ChangeKind::ReferenceChanged => {
                "compared with another reference image (another name, or the same name with \
                 other contents)"
            }
            ChangeKind::ScoreMoved => "the score moved by more than the margin",
            ChangeKind::AgeMoved => "the estimated age moved by a year or more",
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
    /// Face match: the reference the selfie was compared with (the pair's second key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Face match: the reference's SHA-256, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_sha256: Option<String>,
    /// Age estimation: the estimated age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_age: Option<f64>,
}

impl Side {
    fn of(r: &Record) -> Self {
        Self {
            class: r.class.unwrap_or(Class::Interrupted),
            decision: r.status,
            action: record_action(r),
            score: r.score,
            reference: r.reference.clone(),
            ref_sha256: r.ref_sha256.clone(),
            estimated_age: r.estimated_age,
        }
    }

    /// Whether `self` compared the selfie with another reference than `before` did: another
    /// name, or the same name with other contents. A side without a reference (none found, or
    /// a check without one) changes nothing here: the action says what became of it.
    fn other_reference(&self, before: &Side) -> bool {
        match (&before.reference, &self.reference) {
            (Some(a), Some(b)) if a != b => true,
            (Some(_), Some(_)) => matches!(
                (&before.ref_sha256, &self.ref_sha256),
                (Some(a), Some(b)) if a != b
            ),
            _ => false,
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
    if new.other_reference(old) {
        kinds.push(ChangeKind::ReferenceChanged);
    }
    if let (Some(a), Some(b)) = (old.score, new.score)
        && (b - a).abs() > margin
    {
        kinds.push(ChangeKind::ScoreMoved);
    }
    if let (Some(a), Some(b)) = (old.estimated_age, new.estimated_age)
        && (b - a).abs() >= AGE_MARGIN_YEARS
    {
        kinds.push(ChangeKind::AgeMoved);
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
    /// Face match on either side: the rows name each side's reference.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub references: bool,
    /// Age estimation on either side: the rows name each side's estimated age.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ages: bool,
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

const COLUMNS: [&str; 18] = [
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
    "old_estimated_age",
    "new_estimated_age",
    "old_reference",
    "new_reference",
    "old_class",
    "new_class",
    "vendor_data",
    "path",
];

/// The columns written only when a side is an age estimation run's.
const AGE_COLUMNS: [&str; 2] = ["old_estimated_age", "new_estimated_age"];
/// The columns written only when a side is a face match run's.
const REFERENCE_COLUMNS: [&str; 2] = ["old_reference", "new_reference"];

/// Which of [`COLUMNS`] changes.csv has: the age and reference columns only when a side's
/// check has them.
#[derive(Debug, Clone, Copy)]
struct Columns {
    ages: bool,
    references: bool,
}

impl Columns {
    fn written(self, name: &str) -> bool {
        (self.ages || !AGE_COLUMNS.contains(&name))
            && (self.references || !REFERENCE_COLUMNS.contains(&name))
    }

    fn header(self) -> Vec<&'static str> {
        COLUMNS.into_iter().filter(|c| self.written(c)).collect()
    }

    /// The cells of `r` under [`Columns::header`].
    fn row(self, r: &ChangeRow) -> Vec<String> {
        COLUMNS
            .into_iter()
            .zip(row_cells(r))
            .filter(|(c, _)| self.written(c))
            .map(|(_, cell)| cell)
            .collect()
    }
}

/// One row's cells under every one of [`COLUMNS`].
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
    // Our own words and numbers as they are; outside text (key, references, vendor_data, path)
    // escaped so a spreadsheet never runs it as a formula.
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
        num(r.old.as_ref().and_then(|s| s.estimated_age)),
        num(r.new.as_ref().and_then(|s| s.estimated_age)),
        side(&r.old, &|s| {
            text(s.reference.as_deref().unwrap_or_default())
        }),
        side(&r.new, &|s| {
            text(s.reference.as_deref().unwrap_or_default())
        }),
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
    let (unfair, started, run_id, checks) = settings_differences(&sides[0], &sides[1])?;
    let has = |check: &str| checks.iter().any(|c| c.as_deref() == Some(check));
    let columns = Columns {
        ages: has(crate::didit::AGE.check),
        references: has(crate::didit::FACE_MATCH.check),
    };

    let path = out_dir.join(CHANGES_FILE);
    let mut file = AtomicOut::create(&path).map_err(io_err(&path))?;
    file.write_all(UTF8_BOM).map_err(io_err(&path))?;
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(&mut file);
    csv.write_record(columns.header())
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
                csv.write_record(columns.row(&row))
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
            references: columns.references,
            ages: columns.ages,
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
/// The unfair differences, the baseline's first start, its latest run id, and each side's
/// latest check (`None` for passive liveness).
type Differences = (
    Vec<String>,
    Option<String>,
    Option<String>,
    [Option<String>; 2],
);

fn settings_differences(old: &PathBuf, new: &PathBuf) -> Result<Differences, ReportError> {
    let index =
        |p: &PathBuf| -> Result<Index, ReportError> { Ok(Index::build(&mut Reader::open(p)?)?) };
    let (old_index, new_index) = (index(old)?, index(new)?);
    let mut unfair = Vec::new();
    let check = |i: &Index| i.settings.as_ref().and_then(|s| s.check.clone());
    let checks = [check(&old_index), check(&new_index)];
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
    Ok((unfair, started, run_id, checks))
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
            reference: None,
            ref_sha256: None,
            estimated_age: None,
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

    #[test]
    fn another_reference_or_a_moved_age_is_a_change() {
        use ChangeKind::*;
        let ok = side(Some(Decision::Approved), Action::Proceed, Some(80.0));
        let with = |reference: Option<&str>, sha: Option<&str>| Side {
            reference: reference.map(String::from),
            ref_sha256: sha.map(String::from),
            ..ok.clone()
        };
        let a = with(Some("refs/u1.jpg"), Some("aa"));
        assert_eq!(classify(Some(&a), Some(&a), 10.0), []);
        let renamed = with(Some("refs/u1-new.jpg"), Some("aa"));
        assert_eq!(classify(Some(&a), Some(&renamed), 10.0), [ReferenceChanged]);
        let replaced = with(Some("refs/u1.jpg"), Some("bb"));
        assert_eq!(
            classify(Some(&a), Some(&replaced), 10.0),
            [ReferenceChanged],
            "the same name, other contents"
        );
        let unread = with(Some("refs/u1.jpg"), None);
        assert_eq!(classify(Some(&a), Some(&unread), 10.0), []);
        // No reference on one side: what became of the item is its action's change.
        assert_eq!(classify(Some(&ok), Some(&a), 10.0), []);
        let missing = Side {
            class: Class::InvalidInput,
            decision: None,
            action: Action::FixInput,
            score: None,
            ..with(None, None)
        };
        assert_eq!(classify(Some(&a), Some(&missing), 10.0), [ActionChanged]);
        // A lower similarity with another reference: the reference comes first, then the score.
        let worse = Side {
            decision: Some(Decision::Declined),
            action: Action::Review,
            score: Some(12.0),
            ..renamed.clone()
        };
        assert_eq!(
            classify(Some(&a), Some(&worse), 10.0),
            [NewlyDeclined, ActionChanged, ReferenceChanged, ScoreMoved]
        );

        let aged = |age: Option<f64>| Side {
            estimated_age: age,
            ..ok.clone()
        };
        assert_eq!(
            classify(Some(&aged(Some(30.0))), Some(&aged(Some(31.0))), 10.0),
            [AgeMoved]
        );
        assert_eq!(
            classify(Some(&aged(Some(31.0))), Some(&aged(Some(29.5))), 10.0),
            [AgeMoved]
        );
        assert_eq!(
            classify(Some(&aged(Some(30.0))), Some(&aged(Some(30.9))), 10.0),
            []
        );
        assert_eq!(
            classify(Some(&aged(Some(30.0))), Some(&aged(None)), 10.0),
            []
        );
        let moved = Side {
            score: Some(95.0),
            ..aged(Some(40.0))
        };
        assert_eq!(
            classify(Some(&aged(Some(30.0))), Some(&moved), 10.0),
            [ScoreMoved, AgeMoved]
        );
    }

    /// Two out dirs of one check (`liveness`, `face-match`, `age`), the baseline's records and
    /// today's, compared: the changes and changes.csv.
    fn compared(check: &str, old: Vec<Record>, new: Vec<Record>) -> (Changes, String) {
        use crate::journal::fixtures::{run_info, write_lines};
        let journal = |dir: &Path, records: Vec<Record>| {
            let mut run = run_info(false, false);
            run.settings.check = (check != "liveness").then(|| check.into());
            let mut lines = vec![Line::Run(run)];
            lines.extend(
                records
                    .into_iter()
                    .map(|r| Line::Item(Box::new(r.with_action()))),
            );
            write_lines(&dir.join(JOURNAL_FILE), &lines);
        };
        let (before, now) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        journal(before.path(), old);
        journal(now.path(), new);
        let (changes, _) = compare(now.path(), before.path(), 10.0, 1 << 20).unwrap();
        let csv = std::fs::read_to_string(now.path().join(CHANGES_FILE)).unwrap();
        (changes, csv)
    }

    /// The kinds the section's table of counts lists, in order.
    fn kinds_listed(section: &crate::report::summary::Section) -> Vec<&str> {
        use crate::report::summary::{Block, Span};
        let counts = section.blocks.iter().find_map(|b| match b {
            Block::Table { head, rows } if head[1].0 == "Items" => Some(rows),
            _ => None,
        });
        counts
            .unwrap()
            .iter()
            .filter_map(|row| match row[0].as_slice() {
                [Span::Code(kind)] => Some(kind.as_str()),
                _ => None,
            })
            .collect()
    }

    fn approved(key: &str, score: f64) -> Record {
        Record {
            key: key.into(),
            path: format!("{key}.jpg"),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            score: Some(score),
            ..Default::default()
        }
    }

    #[test]
    fn face_match_lists_a_key_compared_with_another_reference() {
        let pair = |key: &str, reference: &str| Record {
            reference: Some(reference.into()),
            ref_sha256: Some("bb".repeat(32)),
            ..approved(key, 90.0)
        };
        let (changes, csv) = compared(
            "face-match",
            vec![pair("u1", "refs/u1.jpg"), pair("u2", "refs/u2.jpg")],
            vec![pair("u1", "refs/u1.jpg"), pair("u2", "=refs/other.jpg")],
        );
        assert!(changes.references && !changes.ages);
        assert_eq!(changes.counts[&ChangeKind::ReferenceChanged], 1);
        assert_eq!(changes.total(), 1, "u1 is unchanged");
        let row = &changes.shown[0];
        assert_eq!(
            (row.key.as_str(), row.kind),
            ("u2", ChangeKind::ReferenceChanged)
        );
        let mut lines = csv.trim_start_matches('\u{feff}').lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert!(head.contains(&"old_reference") && head.contains(&"new_reference"));
        assert!(!head.contains(&"old_estimated_age"));
        let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = |name: &str| head.iter().position(|h| *h == name).unwrap();
        assert_eq!(cells.len(), head.len());
        assert_eq!(cells[at("change")], "reference_changed");
        assert_eq!(cells[at("old_reference")], "refs/u2.jpg");
        assert_eq!(
            cells[at("new_reference")],
            "'=refs/other.jpg",
            "escaped like results.csv"
        );

        let section = crate::report::summary::changes_section(&changes);
        let kinds = kinds_listed(&section);
        assert!(kinds.contains(&"reference_changed") && !kinds.contains(&"age_moved"));
        let table = section.blocks.iter().rev().find_map(|b| match b {
            crate::report::summary::Block::Table { head, rows } => Some((head, rows)),
            _ => None,
        });
        let (head, rows) = table.unwrap();
        let labels: Vec<&str> = head.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            labels,
            [
                "Change",
                "Selfie key",
                "Reference",
                "Before",
                "Now",
                "Similarity before → now",
                "vendor_data"
            ]
        );
        use crate::report::summary::Span;
        assert_eq!(
            rows[0][2],
            [
                Span::Code("refs/u2.jpg".into()),
                Span::Text(" → ".into()),
                Span::Code("=refs/other.jpg".into())
            ]
        );
    }

    #[test]
    fn an_age_run_lists_an_estimated_age_that_moved() {
        let aged = |key: &str, age: f64| Record {
            estimated_age: Some(age),
            ..approved(key, 90.0)
        };
        let (changes, csv) = compared(
            "age",
            vec![aged("a", 30.0), aged("b", 40.0)],
            vec![aged("a", 30.4), aged("b", 37.0)],
        );
        assert!(changes.ages && !changes.references);
        assert_eq!(changes.counts[&ChangeKind::AgeMoved], 1);
        assert_eq!(changes.total(), 1, "a moved less than a year");
        let side = |s: &Option<Side>| s.as_ref().and_then(|s| s.estimated_age);
        let row = &changes.shown[0];
        assert_eq!((side(&row.old), side(&row.new)), (Some(40.0), Some(37.0)));
        let mut lines = csv.trim_start_matches('\u{feff}').lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert!(!head.contains(&"old_reference"));
        let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = |name: &str| head.iter().position(|h| *h == name).unwrap();
        assert_eq!(
            (
                cells[at("old_estimated_age")],
                cells[at("new_estimated_age")]
            ),
            ("40", "37")
        );
        assert_eq!(cells[at("change")], "age_moved");
        let section = crate::report::summary::changes_section(&changes);
        let kinds = kinds_listed(&section);
        assert!(kinds.contains(&"age_moved") && !kinds.contains(&"reference_changed"));
        let md_head = section.blocks.iter().find_map(|b| match b {
            crate::report::summary::Block::Table { head, .. } if head.len() > 3 => Some(head),
            _ => None,
        });
        assert!(md_head.unwrap().contains(&("Age before → now", true)));

        // A liveness comparison keeps its columns.
        let (changes, csv) = compared(
            "liveness",
            vec![approved("a", 90.0)],
            vec![approved("a", 20.0)],
        );
        assert!(!changes.ages && !changes.references);
        let section = crate::report::summary::changes_section(&changes);
        let kinds = kinds_listed(&section);
        assert_eq!(
            kinds,
            [
                "newly_declined",
                "newly_approved",
                "action_changed",
                "score_moved",
                "new",
                "gone"
            ],
            "a liveness comparison's table lists its own kinds"
        );
        assert!(csv.trim_start_matches('\u{feff}').starts_with(
            "key,change,all_changes,old_decision,new_decision,old_action,new_action,old_score,\
             new_score,score_delta,old_class,new_class,vendor_data,path\r\n"
        ));
    }
}
