//! The first pass over the journal: which record is each key's latest, in which order the
//! results list them, where the complete lines end, and the marks that identify this journal
//! state (its first line, its last item record). Keys and offsets go through [`Sorter`]s, so
//! memory stays bounded whatever the journal's length.

use std::borrow::Cow;
use std::io;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

use super::ReportError;
use super::sort::{Sorted, Sorter};
use super::summary::{JournalState, LineMark};
use crate::journal::{JournalError, LineKind, Reader, TornTail, key_digest};

/// What the first pass learned.
pub struct Scanned {
    /// Where the complete lines end: later passes ignore anything past it.
    pub limit: u64,
    pub torn: Option<TornTail>,
    /// The journal state the outputs built now describe.
    pub state: JournalState,
    /// Offsets of the latest records, ascending.
    pub latest: Sorted<u64>,
    /// (input position, offset) of the latest records, ascending: the order of the results.
    /// Records without a position go last, in journal order.
    pub order: Sorted<(u64, u64)>,
}

/// The fields of a journal line this pass needs; the rest is skipped without allocating.
#[derive(Deserialize)]
struct Light<'a> {
    #[serde(rename = "type")]
    kind: LineKind,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    class: Option<IgnoredAny>,
}

pub fn mark(offset: u64, line: &[u8]) -> LineMark {
    LineMark {
        offset,
        sha256: hex::encode(Sha256::digest(line)),
    }
}

/// Stream the journal once, checking that it is one. Each sorter holds at most `budget` bytes;
/// beyond that, sorted runs go to unnamed temporary files in `tmp_dir`.
pub fn scan(journal_path: &Path, tmp_dir: &Path, budget: usize) -> Result<Scanned, ReportError> {
    let sort_err = |source: io::Error| ReportError::Io {
        path: tmp_dir.to_path_buf(),
        source,
    };
    let mut reader = Reader::open(journal_path)?;
    // (key digest, offset, input position) of every item record.
    let mut records: Sorter<(u128, u64, u64)> = Sorter::new(tmp_dir, budget);
    let mut state = JournalState::default();
    let mut last_item: Vec<u8> = Vec::new();
    let mut last_offset = None;
    let mut line_no = 0u64;
    let corrupt = |line: u64, message: String| JournalError::Corrupt {
        path: journal_path.to_path_buf(),
        line,
        message,
    };
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next?;
        line_no += 1;
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let light: Light =
            serde_json::from_slice(raw).map_err(|e| corrupt(line_no, e.to_string()))?;
        if state.first_line.is_none() {
            if light.kind != LineKind::Run {
                return Err(JournalError::NotAJournal {
                    path: journal_path.to_path_buf(),
                }
                .into());
            }
            state.first_line = Some(mark(offset, raw));
        }
        if light.kind != LineKind::Item {
            continue;
        }
        let (Some(key), Some(_)) = (light.key, light.class) else {
            return Err(corrupt(line_no, "an item line without key or class".into()).into());
        };
        state.item_records += 1;
        last_item.clear();
        last_item.extend_from_slice(raw);
        last_offset = Some(offset);
        records
            .push((key_digest(&key), offset, light.seq.unwrap_or(u64::MAX)))
            .map_err(&sort_err)?;
    }
    state.bytes = reader.good_len();
    state.last_item = last_offset.map(|o| mark(o, &last_item));
    let torn = reader.torn_tail();
    drop(reader);
    let settled = settle(records, tmp_dir, budget).map_err(&sort_err)?;
    Ok(Scanned {
        limit: state.bytes,
        torn,
        state,
        latest: settled.latest,
        order: settled.order,
    })
}

/// The latest records and the results' order, from (key digest, offset, input position) of
/// every item record.
pub struct Settled {
    /// Offsets of the latest records, ascending.
    pub latest: Sorted<u64>,
    /// (input position, offset) of the latest records, ascending.
    pub order: Sorted<(u64, u64)>,
    /// How many records are their key's latest (the number of distinct keys).
    pub count: u64,
}

/// Sort `records` by key: a key's records sort by offset, its last one is its latest.
pub fn settle(
    records: Sorter<(u128, u64, u64)>,
    tmp_dir: &Path,
    budget: usize,
) -> io::Result<Settled> {
    let mut latest: Sorter<u64> = Sorter::new(tmp_dir, budget);
    let mut order: Sorter<(u64, u64)> = Sorter::new(tmp_dir, budget);
    let mut count = 0u64;
    let mut keep = |(_, offset, seq): (u128, u64, u64)| {
        count += 1;
        latest.push(offset)?;
        order.push((seq, offset))
    };
    let mut prev: Option<(u128, u64, u64)> = None;
    for next in records.finish()? {
        let record = next?;
        if let Some(p) = prev.filter(|p| p.0 != record.0) {
            keep(p)?;
        }
        prev = Some(record);
    }
    if let Some(p) = prev {
        keep(p)?;
    }
    Ok(Settled {
        latest: latest.finish()?,
        order: order.finish()?,
        count,
    })
}
