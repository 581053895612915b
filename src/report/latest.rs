//! The first pass over the journal: which record is each key's latest, in which order the
//! results list them, where the complete lines end, and the marks that identify this journal
//! state (its first line, its last item record), and which keys' sources are gone (a `gone`
//! line after their last record, with no `unchanged` line or record since). Keys and offsets go
//! through [`Sorter`]s, so memory stays bounded whatever the journal's length.

use std::borrow::Cow;
use std::io;
use std::path::Path;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ReportError;
use crate::journal::{JournalError, LineKind, Reader, TornTail, key_digest};
use crate::kit::sort::{Entry, Sorted, Sorter};

/// A journal state, identified without reading the whole journal again.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct JournalState {
    /// Bytes of complete lines described (the journal's length when the summary was written).
    pub bytes: u64,
    /// Item records, superseded ones included.
    pub item_records: u64,
    /// The journal's first line (the first run's header).
    pub first_line: Option<LineMark>,
    /// The last item record: the results files describe every record up to this one.
    pub last_item: Option<LineMark>,
}

/// Where a journal line starts and the SHA-256 (hex) of its bytes, line break excluded.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LineMark {
    pub offset: u64,
    pub sha256: String,
}

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
    /// The keys whose source is gone, in the results' order: see [`Settled::gone`].
    pub gone: Sorted<(u64, u64, u64, u64)>,
    /// How many keys are gone.
    pub gone_count: u64,
}

/// What a journal line says of its key's place in the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A record: the key's latest result, and listed again.
    Item = 0,
    /// An `unchanged` line: listed again.
    Unchanged = 1,
    /// A `gone` line: no longer listed.
    Gone = 2,
}

/// One line that decides a key's place in the outputs; sorts by key digest, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyLine {
    pub key: u128,
    pub offset: u64,
    /// The record's input position (`u64::MAX` when it has none, and for other lines).
    pub seq: u64,
    pub kind: u8,
}

impl KeyLine {
    pub fn new(key: u128, offset: u64, seq: u64, kind: Kind) -> Self {
        Self {
            key,
            offset,
            seq,
            kind: kind as u8,
        }
    }
}

impl Entry for KeyLine {
    const SIZE: usize = 33;
    fn put(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.key.to_le_bytes());
        self.offset.put(&mut out[16..24]);
        self.seq.put(&mut out[24..32]);
        out[32] = self.kind;
    }
    fn get(bytes: &[u8]) -> Self {
        Self {
            key: u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes")),
            offset: u64::get(&bytes[16..24]),
            seq: u64::get(&bytes[24..32]),
            kind: bytes[32],
        }
    }
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
    let sort_err = super::out::sort_err(tmp_dir);
    let mut reader = Reader::open(journal_path)?;
    // Every item record, `unchanged` and `gone` line.
    let mut records: Sorter<KeyLine> = Sorter::new(tmp_dir, budget);
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
        let other = match light.kind {
            LineKind::Unchanged => Some(Kind::Unchanged),
            LineKind::Gone => Some(Kind::Gone),
            LineKind::Item => None,
            LineKind::Run | LineKind::Sending | LineKind::End | LineKind::Seal => continue,
        };
        if let Some(kind) = other {
            let Some(key) = light.key else {
                return Err(corrupt(line_no, "a line without key".into()).into());
            };
            records
                .push(KeyLine::new(key_digest(&key), offset, u64::MAX, kind))
                .map_err(&sort_err)?;
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
            .push(KeyLine::new(
                key_digest(&key),
                offset,
                light.seq.unwrap_or(u64::MAX),
                Kind::Item,
            ))
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
        gone: settled.gone,
        gone_count: settled.gone_count,
    })
}

/// The latest records and the results' order, from every key's records, `unchanged` and
/// `gone` lines.
pub struct Settled {
    /// Offsets of the latest records of the keys still listed, ascending.
    pub latest: Sorted<u64>,
    /// (input position, offset) of those records, ascending.
    pub order: Sorted<(u64, u64)>,
    /// (input position, offset of the last record, offset of the `gone` line, 0) of the keys
    /// whose source is gone, ascending.
    pub gone: Sorted<(u64, u64, u64, u64)>,
    /// How many records are their key's latest and still listed.
    pub count: u64,
    /// How many keys are gone.
    pub gone_count: u64,
}

/// What one key's lines, in journal order, leave it as.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyFate {
    /// (offset, input position) of its last record.
    pub record: Option<(u64, u64)>,
    /// The offset of a `gone` line after that record with nothing since that lists it again.
    pub gone: Option<u64>,
}

impl KeyFate {
    /// The next line of the key.
    pub fn take(&mut self, line: &KeyLine) {
        match line.kind {
            k if k == Kind::Item as u8 => {
                self.record = Some((line.offset, line.seq));
                self.gone = None;
            }
            k if k == Kind::Gone as u8 => {
                if self.record.is_some() {
                    self.gone = Some(line.offset);
                }
            }
            _ => self.gone = None,
        }
    }
}

/// Sort a key's lines by key: they sort by offset, the last record is its latest; a `gone`
/// line after it (and no `unchanged` line or record since) moves it to the gone keys.
pub fn settle(records: Sorter<KeyLine>, tmp_dir: &Path, budget: usize) -> io::Result<Settled> {
    let mut latest: Sorter<u64> = Sorter::new(tmp_dir, budget);
    let mut order: Sorter<(u64, u64)> = Sorter::new(tmp_dir, budget);
    let mut gone: Sorter<(u64, u64, u64, u64)> = Sorter::new(tmp_dir, budget);
    let (mut count, mut gone_count) = (0u64, 0u64);
    let mut keep = |fate: KeyFate| -> io::Result<()> {
        match fate {
            KeyFate {
                record: Some((offset, seq)),
                gone: None,
            } => {
                count += 1;
                latest.push(offset)?;
                order.push((seq, offset))
            }
            KeyFate {
                record: Some((offset, seq)),
                gone: Some(at),
            } => {
                gone_count += 1;
                gone.push((seq, offset, at, 0))
            }
            KeyFate { record: None, .. } => Ok(()),
        }
    };
    let mut current: Option<u128> = None;
    let mut fate = KeyFate::default();
    for next in records.finish()? {
        let line = next?;
        if current.is_some_and(|k| k != line.key) {
            keep(std::mem::take(&mut fate))?;
        }
        current = Some(line.key);
        fate.take(&line);
    }
    if current.is_some() {
        keep(fate)?;
    }
    Ok(Settled {
        latest: latest.finish()?,
        order: order.finish()?,
        gone: gone.finish()?,
        count,
        gone_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fate(lines: &[(Kind, u64)]) -> KeyFate {
        let mut f = KeyFate::default();
        for (kind, offset) in lines {
            f.take(&KeyLine::new(1, *offset, 7, *kind));
        }
        f
    }

    #[test]
    fn a_gone_line_after_the_last_record_makes_the_key_gone_until_it_is_listed_again() {
        use Kind::*;
        assert_eq!(fate(&[(Item, 10)]).gone, None);
        assert_eq!(fate(&[(Item, 10), (Gone, 20)]).gone, Some(20));
        assert_eq!(fate(&[(Item, 10), (Gone, 20)]).record, Some((10, 7)));
        // Listed again: by an unchanged line, or a new record.
        assert_eq!(fate(&[(Item, 10), (Gone, 20), (Unchanged, 30)]).gone, None);
        let back = fate(&[(Item, 10), (Gone, 20), (Item, 30)]);
        assert_eq!((back.record, back.gone), (Some((30, 7)), None));
        // Gone again after coming back.
        assert_eq!(
            fate(&[(Item, 10), (Gone, 20), (Unchanged, 30), (Gone, 40)]).gone,
            Some(40)
        );
        // A gone line with no record before it leaves nothing to move.
        assert_eq!(fate(&[(Gone, 5)]), KeyFate::default());
    }

    #[test]
    fn a_gone_line_without_key_is_named_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::journal::JOURNAL_FILE);
        let run = serde_json::to_string(&crate::journal::fixtures::run_line()).unwrap();
        std::fs::write(
            &path,
            format!("{run}\n{{\"type\":\"gone\",\"since\":\"x\"}}\n"),
        )
        .unwrap();
        let e = scan(&path, dir.path(), 1 << 20).err().unwrap().to_string();
        assert!(e.contains("line 2") && e.contains("without key"), "{e}");
        let e = crate::journal::Index::build(&mut crate::journal::Reader::open(&path).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("a gone line without key"),
            "{e}"
        );
    }

    #[test]
    fn settle_splits_current_and_gone_keys_in_bounded_sorts() {
        let dir = tempfile::tempdir().unwrap();
        // A tiny budget: the sorts spill.
        let mut lines: Sorter<KeyLine> = Sorter::new(dir.path(), 64);
        let mut offset = 0;
        for key in 0..100u128 {
            offset += 10;
            lines
                .push(KeyLine::new(key, offset, key as u64, Kind::Item))
                .unwrap();
        }
        for key in (0..100u128).filter(|k| k % 10 == 3) {
            offset += 10;
            lines
                .push(KeyLine::new(key, offset, u64::MAX, Kind::Gone))
                .unwrap();
        }
        // Key 13 comes back.
        offset += 10;
        lines
            .push(KeyLine::new(13, offset, u64::MAX, Kind::Unchanged))
            .unwrap();
        let settled = settle(lines, dir.path(), 64).unwrap();
        assert_eq!((settled.count, settled.gone_count), (91, 9));
        let gone: Vec<u64> = settled.gone.map(|g| g.unwrap().0).collect();
        assert_eq!(gone, [3, 23, 33, 43, 53, 63, 73, 83, 93]);
        let order: Vec<u64> = settled.order.map(|o| o.unwrap().0).collect();
        assert_eq!(order.len(), 91);
        assert!(order.contains(&13) && !order.contains(&23));
    }
}
