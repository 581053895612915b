//! The resume index's per-key part, kept on disk: each key's latest record as sorted fixed-size
//! entries in a file (the saved snapshot, or an unnamed temporary file in the out dir), found by
//! one small read through an in-memory table of where each range of key digests starts (up to a
//! byte a key). It is built from the journal's records by sorting them in bounded memory
//! (sorted runs spilled to unnamed temporary files, as the outputs sort), then merging them with
//! the snapshot's entries, the newest record of a key winning.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use crate::kit::sort::{self, Sorted, Sorter};
use crate::record::Class;

/// The class's code in the lowest byte of [`KeyState::version_class`].
pub(super) const CLASS_BITS: u64 = 0x1f;
/// Flag in the lowest byte: the key's latest line is a `gone` line (its source is no longer
/// listed), after its record.
pub(super) const GONE: u64 = 0x40;
/// Flag in the lowest byte: the record's last send had an unknown outcome (the upload left, no
/// definitive answer came back) and the image has not been sent again since.
pub(super) const UNKNOWN_PENDING: u64 = 0x20;

/// What a resume knows about a key's latest record: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// The version's digest in the upper 56 bits (0 when the record has no version), the
    /// class's code in the lowest 5 ([`CLASS_BITS`]), the flags [`GONE`] and
    /// [`UNKNOWN_PENDING`] above them.
    pub(super) version_class: u64,
    /// The content's digest ([`short`]), 0 when nothing was read.
    pub(super) content: u64,
}

impl KeyState {
    pub fn class(self) -> Class {
        Class::ALL[(self.version_class & CLASS_BITS) as usize]
    }

    /// Whether the key's latest line says its source is gone (no longer listed).
    pub fn is_gone(self) -> bool {
        self.version_class & GONE != 0
    }

    /// Whether the record's last send had an unknown outcome that no later send repeated.
    pub fn unknown_pending(self) -> bool {
        self.version_class & UNKNOWN_PENDING != 0
    }

    /// Whether the record is about this content (a SHA-256's [`super::content_digest`]).
    pub fn same_content(self, content: Option<u128>) -> bool {
        self.content == content.map_or(0, short)
    }

    pub(super) fn version(self) -> u64 {
        self.version_class & !0xff
    }

    /// Whether the record finished the item at this version ([`super::version_digest`]): a resume
    /// skips it without reading it. A gone key is read again: its return is journaled.
    pub fn is_current(self, version: u64, retry_failed: bool) -> bool {
        !self.is_gone()
            && self.version() != 0
            && self.version() == version & !0xff
            && self.class().is_done(retry_failed)
    }
}

/// A class as one byte: its position in [`Class::ALL`].
pub(super) fn class_code(class: Class) -> u64 {
    Class::ALL.iter().position(|c| *c == class).unwrap_or(0) as u64
}

/// A digest in 64 bits; 0 stands for "none".
pub(super) fn short(digest: u128) -> u64 {
    (digest as u64).max(1)
}

/// Bytes of one entry on disk: key digest, version and class, content digest.
pub(super) const ENTRY: usize = 24;

/// Memory the sort of a journal's records may hold before it spills a sorted run.
const SORT_BUDGET: usize = 2 << 20;

/// Entries per range of the start table, on average, at most (between half this and this): a
/// lookup reads about this many (under 200 bytes) in one `pread`; the table costs 4 bytes a
/// range (half a byte to a byte a key).
const PER_RANGE: usize = 8;

/// At most this many entries stay in memory rather than in a temporary file.
const IN_MEMORY: u64 = 4096;

/// Entries read at once by a lookup or a scan.
const CHUNK: usize = 64;

/// The class byte of an update that is an `unchanged` line, not a record.
const UNCHANGED: u64 = 0xff;
/// The class byte of an update that is a `gone` line, not a record.
const GONE_LINE: u64 = 0xfe;

/// Each key's latest record, sorted by key digest.
pub struct KeyIndex {
    table: Table,
    keys: u64,
    without_result: u64,
    /// The first read of the index file that failed (its kind and message).
    failed: OnceLock<(io::ErrorKind, String)>,
}

enum Table {
    Memory(Vec<(u64, KeyState)>),
    /// `count` entries from byte `start` of `file`.
    File {
        file: File,
        start: u64,
        count: u64,
        starts: Starts,
    },
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self {
            table: Table::Memory(Vec::new()),
            keys: 0,
            without_result: 0,
            failed: OnceLock::new(),
        }
    }
}

impl fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.table {
            Table::Memory(_) => "memory",
            Table::File { .. } => "file",
        };
        write!(f, "KeyIndex {{ {} keys in {place} }}", self.keys)
    }
}

fn entry_bytes(key: u64, s: KeyState, out: &mut [u8]) {
    out[..8].copy_from_slice(&key.to_le_bytes());
    out[8..16].copy_from_slice(&s.version_class.to_le_bytes());
    out[16..24].copy_from_slice(&s.content.to_le_bytes());
}

pub(super) fn entry_from(bytes: &[u8]) -> (u64, KeyState) {
    let u = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    (
        u(0),
        KeyState {
            version_class: u(8),
            content: u(16),
        },
    )
}

/// Whether a stored class byte names a class (with only known flags above it).
pub(super) fn class_ok(version_class: u64) -> bool {
    let byte = version_class & 0xff;
    byte & !(CLASS_BITS | GONE | UNKNOWN_PENDING) == 0
        && ((byte & CLASS_BITS) as usize) < Class::ALL.len()
}

/// Whether a key counts as one without a result: its latest record has none, and its source
/// is still there.
fn lacks_result(state: KeyState) -> bool {
    !state.is_gone() && state.class() != Class::Result
}

impl KeyIndex {
    /// Distinct keys.
    pub fn len(&self) -> u64 {
        self.keys
    }

    /// Keys whose latest record has no result.
    pub fn without_result(&self) -> u64 {
        self.without_result
    }

    /// `key`'s latest record. A read of the index file that fails (a failing disk, or the file
    /// cut short by someone else) answers `None` and is kept: from then on
    /// [`KeyIndex::read_error`] names it, and the scan checks it before it acts on any answer,
    /// so a wrong "not recorded" never sends (and bills) an item again.
    pub fn get(&self, key: u64) -> Option<KeyState> {
        self.try_get(key).unwrap_or_else(|e| {
            let _ = self.failed.set((e.kind(), e.to_string()));
            None
        })
    }

    /// The first read of the index file that failed, if any: every lookup since may have
    /// answered "not recorded" wrongly.
    pub fn read_error(&self) -> Option<io::Error> {
        self.failed
            .get()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    fn try_get(&self, key: u64) -> io::Result<Option<KeyState>> {
        match &self.table {
            Table::Memory(v) => Ok(v.binary_search_by_key(&key, |e| e.0).ok().map(|i| v[i].1)),
            Table::File {
                file,
                start,
                starts,
                ..
            } => {
                let (mut lo, hi) = starts.range(key);
                let mut buf = [0u8; CHUNK * ENTRY];
                while lo < hi {
                    let n = (hi - lo).min(CHUNK as u64) as usize;
                    let bytes = &mut buf[..n * ENTRY];
                    file.read_exact_at(bytes, start + lo * ENTRY as u64)?;
                    for e in bytes.chunks_exact(ENTRY) {
                        let (k, s) = entry_from(e);
                        if k == key {
                            return Ok(Some(s));
                        }
                        if k > key {
                            return Ok(None);
                        }
                    }
                    lo += n as u64;
                }
                Ok(None)
            }
        }
    }

    /// Every entry in key order, read in chunks.
    pub fn for_each(&self, mut f: impl FnMut(u64, KeyState)) -> io::Result<()> {
        let mut scan = self.scan();
        while let Some(e) = scan.next_entry()? {
            f(e.0, e.1);
        }
        Ok(())
    }

    fn scan(&self) -> Scan<'_> {
        Scan {
            index: self,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// A table read from a snapshot: `count` sorted entries from byte `start` of `file`, whose
    /// start table and counts were taken while the snapshot was checked.
    pub(super) fn on_file(file: File, start: u64, count: u64, checked: Checked) -> Self {
        Self {
            table: Table::File {
                file,
                start,
                count,
                starts: checked.starts.finish(),
            },
            keys: count,
            without_result: checked.without_result,
            failed: OnceLock::new(),
        }
    }

    #[cfg(test)]
    pub(super) fn insert_in_memory(&mut self, key: u64, state: KeyState) {
        let Table::Memory(v) = &mut self.table else {
            panic!("only an index in memory takes inserts");
        };
        match v.binary_search_by_key(&key, |e| e.0) {
            Ok(i) => {
                if lacks_result(v[i].1) {
                    self.without_result -= 1;
                }
                v[i].1 = state;
            }
            Err(i) => {
                v.insert(i, (key, state));
                self.keys += 1;
            }
        }
        if lacks_result(state) {
            self.without_result += 1;
        }
    }

    #[cfg(test)]
    pub(super) fn entries(&self) -> Vec<(u64, KeyState)> {
        let mut all = Vec::new();
        self.for_each(|k, s| all.push((k, s))).unwrap();
        all
    }

    #[cfg(test)]
    pub(super) fn on_disk(&self) -> bool {
        matches!(self.table, Table::File { .. })
    }
}

/// A key index's entries in order.
struct Scan<'a> {
    index: &'a KeyIndex,
    next: u64,
    buf: Vec<u8>,
    at: usize,
}

impl Scan<'_> {
    fn next_entry(&mut self) -> io::Result<Option<(u64, KeyState)>> {
        match &self.index.table {
            Table::Memory(v) => {
                let e = v.get(self.next as usize).copied();
                self.next += 1;
                Ok(e)
            }
            Table::File {
                file, start, count, ..
            } => {
                if self.at == self.buf.len() {
                    let n = (count - self.next).min(4096) as usize;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.buf.resize(n * ENTRY, 0);
                    file.read_exact_at(&mut self.buf, start + self.next * ENTRY as u64)?;
                    self.next += n as u64;
                    self.at = 0;
                }
                let e = entry_from(&self.buf[self.at..self.at + ENTRY]);
                self.at += ENTRY;
                Ok(Some(e))
            }
        }
    }
}

/// Where each range of the key digest's top bits starts in a sorted table: `starts[r]` is the
/// position of the first key whose top `bits` bits are `r` or more (one more entry at the end).
struct Starts {
    bits: u32,
    starts: Vec<u32>,
}

impl Starts {
    fn range_of(bits: u32, key: u64) -> usize {
        if bits == 0 {
            0
        } else {
            (key >> (64 - bits)) as usize
        }
    }

    /// The positions `key` may be at.
    fn range(&self, key: u64) -> (u64, u64) {
        let r = Self::range_of(self.bits, key);
        (u64::from(self.starts[r]), u64::from(self.starts[r + 1]))
    }
}

/// A start table and counts taken from sorted entries as they stream past, checking their order
/// and their class codes.
pub(super) struct Checked {
    starts: StartsBuilder,
    without_result: u64,
    last: Option<u64>,
}

impl Checked {
    /// For at most `count` entries.
    pub(super) fn new(count: u64) -> Self {
        // The next power of two at or above the ranges wanted.
        let wanted = count.div_ceil(PER_RANGE as u64).max(1);
        let bits = (64 - (wanted - 1).leading_zeros()).min(30);
        Self {
            starts: StartsBuilder {
                bits,
                starts: Vec::with_capacity((1usize << bits) + 1),
                count: 0,
            },
            without_result: 0,
            last: None,
        }
    }

    /// The next entry; false when it is out of order, repeated, or of no known class.
    pub(super) fn push(&mut self, key: u64, state: KeyState) -> bool {
        if self.last.is_some_and(|l| l >= key)
            || !class_ok(state.version_class)
            || self.starts.count == u32::MAX
        {
            return false;
        }
        self.last = Some(key);
        self.starts.push(key);
        if lacks_result(state) {
            self.without_result += 1;
        }
        true
    }
}

struct StartsBuilder {
    bits: u32,
    starts: Vec<u32>,
    count: u32,
}

impl StartsBuilder {
    fn push(&mut self, key: u64) {
        let r = Starts::range_of(self.bits, key);
        while self.starts.len() <= r {
            self.starts.push(self.count);
        }
        self.count += 1;
    }

    fn finish(mut self) -> Starts {
        let ranges = 1usize << self.bits;
        while self.starts.len() <= ranges {
            self.starts.push(self.count);
        }
        self.starts.shrink_to_fit();
        Starts {
            bits: self.bits,
            starts: self.starts,
        }
    }
}

/// A key index being built: the journal's records and `unchanged` lines in journal order, on
/// top of an earlier index (a snapshot's).
pub(super) struct KeyBuilder {
    base: KeyIndex,
    updates: Sorter<(u64, u64, u64, u64)>,
    seq: u64,
    dir: std::path::PathBuf,
}

impl KeyBuilder {
    /// On top of `base`; spilled runs and the built table go to unnamed files in `dir`.
    pub(super) fn new(base: KeyIndex, dir: &Path) -> Self {
        Self::with_budget(base, dir, SORT_BUDGET)
    }

    /// [`KeyBuilder::new`] whose sort holds at most `budget` bytes before it spills.
    pub(super) fn with_budget(base: KeyIndex, dir: &Path, budget: usize) -> Self {
        Self {
            base,
            updates: Sorter::new(dir, budget),
            seq: 0,
            dir: dir.to_path_buf(),
        }
    }

    fn push(&mut self, key: u64, version_class: u64, content: u64) -> io::Result<()> {
        self.seq += 1;
        self.updates.push((key, self.seq, version_class, content))
    }

    /// A record: the key's state is now `state`.
    pub(super) fn record(&mut self, key: u64, state: KeyState) -> io::Result<()> {
        self.push(key, state.version_class, state.content)
    }

    /// An `unchanged` line: the key's record stands for `version` (a [`super::version_digest`])
    /// when it is still about `content`.
    pub(super) fn unchanged(&mut self, key: u64, version: u64, content: u64) -> io::Result<()> {
        self.push(key, (version & !0xff) | UNCHANGED, content)
    }

    /// A `gone` line: the key's record no longer describes a listed source.
    pub(super) fn gone(&mut self, key: u64) -> io::Result<()> {
        self.push(key, GONE_LINE, 0)
    }

    /// The index: the base's entries and the updates merged, the newest state of each key
    /// winning. Without updates, the base as it is.
    pub(super) fn finish(self) -> io::Result<KeyIndex> {
        let KeyBuilder {
            base,
            updates,
            seq,
            dir,
        } = self;
        if seq == 0 {
            return Ok(base);
        }
        let mut out = TableWriter::new(base.len() + seq, &dir)?;
        let mut updates = updates.finish()?;
        let mut base = base.scan();
        let mut next_base = base.next_entry()?;
        let mut next_update = next(&mut updates)?;
        loop {
            let key = match (next_base, next_update) {
                (None, None) => break,
                (Some(b), None) => b.0,
                (None, Some(u)) => u.0,
                (Some(b), Some(u)) => b.0.min(u.0),
            };
            let mut state = None;
            if let Some(b) = next_base.filter(|b| b.0 == key) {
                state = Some(b.1);
                next_base = base.next_entry()?;
            }
            while let Some(u) = next_update.filter(|u| u.0 == key) {
                apply(&mut state, u.2, u.3);
                next_update = next(&mut updates)?;
            }
            if let Some(s) = state {
                out.push(key, s)?;
            }
        }
        out.finish()
    }
}

fn next(sorted: &mut Sorted<(u64, u64, u64, u64)>) -> io::Result<Option<(u64, u64, u64, u64)>> {
    sorted.next().transpose()
}

/// One update on top of a key's state.
fn apply(state: &mut Option<KeyState>, version_class: u64, content: u64) {
    if version_class & 0xff == UNCHANGED {
        // The key is listed again (and its record stands for the new version).
        if let Some(s) = state.as_mut().filter(|s| s.content == content) {
            s.version_class = (version_class & !0xff) | (s.version_class & 0xff & !GONE);
        }
    } else if version_class & 0xff == GONE_LINE {
        if let Some(s) = state.as_mut() {
            s.version_class |= GONE;
        }
    } else {
        *state = Some(KeyState {
            version_class,
            content,
        });
    }
}

/// Writes a table of sorted entries: in memory when few, else to an unnamed temporary file.
struct TableWriter {
    memory: Vec<(u64, KeyState)>,
    file: Option<BufWriter<File>>,
    checked: Checked,
    count: u64,
}

impl TableWriter {
    /// For at most `bound` entries.
    fn new(bound: u64, dir: &Path) -> io::Result<Self> {
        let file = match bound > IN_MEMORY {
            true => Some(BufWriter::with_capacity(64 << 10, sort::temp_file(dir)?)),
            false => None,
        };
        Ok(Self {
            memory: Vec::new(),
            file,
            checked: Checked::new(bound),
            count: 0,
        })
    }

    fn push(&mut self, key: u64, state: KeyState) -> io::Result<()> {
        if !self.checked.push(key, state) {
            return Err(io::Error::other("index entries out of order"));
        }
        self.count += 1;
        match &mut self.file {
            Some(w) => {
                let mut bytes = [0u8; ENTRY];
                entry_bytes(key, state, &mut bytes);
                w.write_all(&bytes)
            }
            None => {
                self.memory.push((key, state));
                Ok(())
            }
        }
    }

    fn finish(self) -> io::Result<KeyIndex> {
        let Some(w) = self.file else {
            return Ok(KeyIndex {
                keys: self.count,
                without_result: self.checked.without_result,
                table: Table::Memory(self.memory),
                failed: OnceLock::new(),
            });
        };
        let file = w.into_inner().map_err(|e| e.into_error())?;
        Ok(KeyIndex::on_file(file, 0, self.count, self.checked))
    }
}

/// Write an index's entries as the snapshot stores them: their count, then each entry.
pub(super) fn write_entries(w: &mut impl Write, index: &KeyIndex) -> io::Result<()> {
    w.write_all(&index.len().to_le_bytes())?;
    let mut scan = index.scan();
    let mut bytes = [0u8; ENTRY];
    while let Some((k, s)) = scan.next_entry()? {
        entry_bytes(k, s, &mut bytes);
        w.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn state(version: u64, class: Class, content: u64) -> KeyState {
        let code = Class::ALL.iter().position(|c| *c == class).unwrap() as u64;
        KeyState {
            version_class: (version << 8) | code,
            content,
        }
    }

    /// A fixed pseudo-random sequence.
    fn keys(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    fn built(base: KeyIndex, dir: &Path, updates: &[(u64, KeyState)]) -> KeyIndex {
        let mut b = KeyBuilder::new(base, dir);
        for (k, s) in updates {
            b.record(*k, *s).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn a_lookup_that_cannot_read_the_file_answers_none_and_keeps_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let all = keys(10_000, 3);
        let updates: Vec<_> = all
            .iter()
            .map(|k| (*k, state(1, Class::Result, *k)))
            .collect();
        let index = built(KeyIndex::default(), dir.path(), &updates);
        assert!(index.on_disk());
        assert!(index.get(all[0]).is_some());
        assert!(index.read_error().is_none());
        // The file cut short under the index (as a failing disk or another process could).
        let Table::File { file, .. } = &index.table else {
            unreachable!("on disk")
        };
        file.set_len(0).unwrap();
        assert_eq!(index.get(all[1]), None);
        let e = index.read_error().expect("the failed read is kept");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // Still there after later lookups.
        assert_eq!(index.get(all[2]), None);
        assert_eq!(
            index.read_error().unwrap().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn lookups_find_the_newest_record_of_each_key_across_spilled_runs_and_the_base() {
        let dir = tempfile::tempdir().unwrap();
        // Enough records for several spilled runs (2 MiB of 32-byte updates each).
        let all = keys(150_000, 7);
        let mut model = BTreeMap::new();
        let mut first = Vec::new();
        for (i, k) in all.iter().enumerate() {
            let s = state(i as u64 % 5 + 1, Class::Result, *k);
            first.push((*k, s));
            model.insert(*k, s);
        }
        let base = built(KeyIndex::default(), dir.path(), &first);
        assert!(base.on_disk());
        assert_eq!(base.len(), model.len() as u64);
        assert_eq!(base.without_result(), 0);

        // A second journal segment: some keys again (newer records win, the later of two in
        // the same segment too), some new ones.
        let mut second = Vec::new();
        for (i, k) in all.iter().enumerate().step_by(3) {
            second.push((*k, state(9, Class::Transient, 1)));
            if i % 2 == 0 {
                second.push((*k, state(10, Class::Rejected, 2)));
            }
        }
        for k in keys(80_000, 99) {
            second.push((k, state(3, Class::Result, 3)));
        }
        for (k, s) in &second {
            model.insert(*k, *s);
        }
        let index = built(base, dir.path(), &second);
        assert_eq!(index.len(), model.len() as u64);
        let without = model
            .values()
            .filter(|s| s.class() != Class::Result)
            .count();
        assert_eq!(index.without_result(), without as u64);
        assert_eq!(
            index.entries(),
            model.iter().map(|(k, s)| (*k, *s)).collect::<Vec<_>>()
        );
        for (k, s) in &model {
            assert_eq!(index.get(*k), Some(*s));
        }
        for k in keys(2_000, 12345) {
            assert_eq!(index.get(k), model.get(&k).copied());
        }
        assert_eq!(index.get(0), model.get(&0).copied());
        assert_eq!(index.get(u64::MAX), model.get(&u64::MAX).copied());
    }

    #[test]
    fn an_unchanged_line_renews_the_version_only_for_the_same_content() {
        let dir = tempfile::tempdir().unwrap();
        let base = built(
            KeyIndex::default(),
            dir.path(),
            &[
                (1, state(5, Class::Result, 11)),
                (2, state(5, Class::Result, 22)),
            ],
        );
        let mut b = KeyBuilder::new(base, dir.path());
        b.unchanged(1, 7 << 8, 11).unwrap();
        b.unchanged(2, 7 << 8, 99).unwrap();
        b.unchanged(3, 7 << 8, 33).unwrap();
        // A record after an unchanged line replaces it; one before is renewed by it.
        b.record(4, state(1, Class::Transient, 44)).unwrap();
        b.unchanged(4, 8 << 8, 44).unwrap();
        let index = b.finish().unwrap();
        assert!(!index.on_disk(), "a few entries stay in memory");
        assert_eq!(index.get(1), Some(state(7, Class::Result, 11)));
        assert_eq!(index.get(2), Some(state(5, Class::Result, 22)));
        assert_eq!(
            index.get(3),
            None,
            "unchanged says nothing of a key never recorded"
        );
        assert_eq!(index.get(4), Some(state(8, Class::Transient, 44)));
        assert_eq!(index.len(), 3);
        assert_eq!(index.without_result(), 1);
    }

    #[test]
    fn a_gone_line_flags_the_key_until_an_unchanged_line_or_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let base = built(
            KeyIndex::default(),
            dir.path(),
            &[
                (1, state(5, Class::Result, 11)),
                (2, state(5, Class::Transient, 22)),
                (3, state(5, Class::Result, 33)),
            ],
        );
        assert_eq!(base.without_result(), 1);
        let mut b = KeyBuilder::new(base, dir.path());
        b.gone(1).unwrap();
        b.gone(2).unwrap();
        b.gone(3).unwrap();
        b.gone(9).unwrap();
        // 2 is listed again (same content), 3 gets a new record.
        b.unchanged(2, 6 << 8, 22).unwrap();
        b.record(3, state(7, Class::Result, 34)).unwrap();
        let index = b.finish().unwrap();
        let one = index.get(1).unwrap();
        assert!(one.is_gone() && one.class() == Class::Result);
        assert!(
            !one.is_current(5 << 8, false),
            "a gone key is read again, never skipped unread"
        );
        let two = index.get(2).unwrap();
        assert!(!two.is_gone());
        assert_eq!(two, state(6, Class::Transient, 22));
        assert_eq!(index.get(3), Some(state(7, Class::Result, 34)));
        assert_eq!(
            index.get(9),
            None,
            "gone says nothing of a key never recorded"
        );
        assert_eq!(index.without_result(), 1, "2, back without a result");
        // The flag survives a saved table and is checked on load.
        let mut c = Checked::new(2);
        assert!(c.push(1, one));
        let flagged = KeyState {
            version_class: one.version_class | super::UNKNOWN_PENDING,
            ..one
        };
        assert!(c.push(2, flagged));
        assert!(flagged.unknown_pending() && flagged.class() == Class::Result);
        assert_eq!(c.without_result, 0, "a gone key lacks no result");
    }

    #[test]
    fn a_start_table_rejects_entries_out_of_order_or_of_no_class() {
        let mut c = Checked::new(3);
        assert!(c.push(5, state(1, Class::Result, 1)));
        assert!(!c.push(5, state(1, Class::Result, 1)), "repeated");
        assert!(!c.push(4, state(1, Class::Result, 1)), "out of order");
        let bad = KeyState {
            version_class: 0xfe,
            content: 1,
        };
        assert!(!c.push(6, bad));
    }
}
