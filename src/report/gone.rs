//! `gone.csv`: the keys whose source is no longer listed (deleted, renamed, replaced by a
//! link), each with its last result, when that was recorded and since which run it is missing.
//! They are out of the current results, the counts and the input fingerprint; a later record or
//! `unchanged` line of the key brings it back.

use std::io::{self, Write};
use std::path::Path;

use super::action::record_action;
use super::csv::{UTF8_BOM, escape_cell};
use super::out::AtomicOut;
use super::read::LinesAt;
use super::{ReportError, io_err};
use crate::journal::{Gone, Line};
use crate::kit::sort::Sorted;
use crate::record::{Class, Record};

pub const GONE_FILE: &str = "gone.csv";

/// The columns of gone.csv, in order.
pub const COLUMNS: [&str; 8] = [
    "key",
    "action",
    "class",
    "status",
    "score",
    "last_recorded_at",
    "missing_since",
    "missing_since_run",
];

/// The columns of a face-match run's gone.csv: the pair's reference follows its key.
fn columns(pairs: bool) -> Vec<&'static str> {
    let mut c = COLUMNS.to_vec();
    if pairs {
        c.insert(1, "reference");
    }
    c
}

/// One row of a face-match run's gone.csv: [`row`] with the pair's reference after the key.
fn pair_row(r: &Record, gone: &Gone) -> Vec<String> {
    let mut cells = row(r, gone);
    let reference = r.reference.as_deref().unwrap_or("");
    cells.insert(1, escape_cell(reference).into_owned());
    cells
}

/// One row: the key's last record and the `gone` line that took it out of the results.
/// Outside text (the key) is escaped so a spreadsheet never runs it as a formula.
pub fn row(r: &Record, gone: &Gone) -> Vec<String> {
    vec![
        escape_cell(&r.key).into_owned(),
        record_action(r).as_str().to_string(),
        r.class.unwrap_or(Class::Interrupted).as_str().to_string(),
        r.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        r.score.map(|s| s.to_string()).unwrap_or_default(),
        escape_cell(r.finished_at.as_deref().unwrap_or("")).into_owned(),
        escape_cell(&gone.since).into_owned(),
        escape_cell(gone.run_id.as_deref().unwrap_or("")).into_owned(),
    ]
}

/// Write gone.csv (owner-only, atomically) from `gone`: (input position, offset of the last
/// record, offset of the `gone` line, 0) of each gone key, in order. Returns its size and
/// SHA-256.
pub(super) fn write(
    out_dir: &Path,
    journal_path: &Path,
    gone: Sorted<(u64, u64, u64, u64)>,
    pairs: bool,
) -> Result<(u64, String), ReportError> {
    let path = out_dir.join(GONE_FILE);
    let mut file = AtomicOut::create(&path).map_err(io_err(&path))?;
    file.write_all(UTF8_BOM).map_err(io_err(&path))?;
    let mut lines = LinesAt::open(journal_path)?;
    {
        let mut csv = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut file);
        let csv_err = |e: csv::Error| io_err(&path)(e.into());
        csv.write_record(columns(pairs)).map_err(csv_err)?;
        for next in gone {
            let (_, record_at, gone_at, _) = next.map_err(io_err(out_dir))?;
            let (Line::Item(r), Line::Gone(g)) = (lines.read(record_at)?, lines.read(gone_at)?)
            else {
                return Err(io_err(journal_path)(io::Error::other(
                    "a gone key's lines are not where the first pass found them",
                )));
            };
            let cells = if pairs { pair_row(&r, &g) } else { row(&r, &g) };
            csv.write_record(cells).map_err(csv_err)?;
        }
        csv.flush().map_err(io_err(&path))?;
    }
    file.commit().map_err(io_err(&path))
}

/// Remove a gone.csv left by an earlier build when no key is gone now. Returns whether one was
/// removed.
pub fn remove_stale(out_dir: &Path) -> Result<bool, ReportError> {
    super::remove_if_present(&out_dir.join(GONE_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Decision;

    #[test]
    fn a_row_carries_the_last_result_and_escapes_outside_text() {
        let r = Record {
            key: "=cmd|' /C calc'!A0".into(),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            score: Some(91.5),
            finished_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let g = Gone {
            key: r.key.clone(),
            since: "2026-02-01T00:00:00Z".into(),
            run_id: Some("-run".into()),
        };
        assert_eq!(
            row(&r, &g),
            [
                "'=cmd|' /C calc'!A0",
                "proceed",
                "result",
                "Approved",
                "91.5",
                "2026-01-01T00:00:00Z",
                "2026-02-01T00:00:00Z",
                "'-run",
            ]
        );
        let unsent = Record {
            key: "b.jpg".into(),
            class: Some(Class::Transient),
            ..Default::default()
        };
        let g = Gone { run_id: None, ..g };
        let cells = row(&unsent, &g);
        assert_eq!(&cells[1..5], ["rerun", "transient", "", ""]);
        assert_eq!(cells[7], "");
    }

    #[test]
    fn a_pairs_row_names_its_reference_after_the_key() {
        let r = Record {
            key: "u1.jpg".into(),
            reference: Some("=ids/u1.png".into()),
            class: Some(Class::Result),
            ..Default::default()
        };
        let g = Gone {
            key: r.key.clone(),
            since: "2026-02-01T00:00:00Z".into(),
            run_id: None,
        };
        assert_eq!(columns(true)[..2], ["key", "reference"]);
        assert_eq!(columns(false), COLUMNS);
        let cells = pair_row(&r, &g);
        assert_eq!(cells.len(), columns(true).len());
        assert_eq!(cells[..2], ["u1.jpg", "'=ids/u1.png"]);
    }
}
