//! The resume index saved beside the journal (`.liveness-batch-index`), so a resume reads the
//! journal's tail instead of all of it: a million-record journal is about 850 MB of JSON, its
//! index about 30 MB of fixed-size entries. The snapshot names the journal state it covers (its
//! length, and SHA-256 of its first line and of the line ending there) and ends with a SHA-256 of
//! itself; anything that does not match (another journal, a journal cut shorter or rewritten, a
//! damaged or foreign file) is ignored and the journal is read in full, as without a snapshot.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::index::Builder;
use super::keys::{self, Checked, KeyIndex, KeyState};
use super::{Index, JournalError, Orphan, Reader, Settings, files};
use crate::compact::CompactMap;
use crate::kit::hashing::Hashing;
use crate::shard::ShardHeader;

pub const INDEX_FILE: &str = ".liveness-batch-index";

/// Raised when the meaning of an entry changes (3: the flags `gone` and `unknown pending` in
/// the class byte).
const MAGIC: &[u8; 8] = b"LBINDEX3";

/// How an index was loaded, for the run's log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// From the snapshot, then the journal's lines after it (`tail` bytes).
    Snapshot { tail: u64 },
    /// From the whole journal: no snapshot, or one that did not match.
    Journal,
}

/// The index of the journal at `journal`, from the snapshot beside it when that matches the
/// journal, else by reading the whole journal. Returns the reader at the journal's end (for its
/// torn tail and length) and how it was loaded.
pub fn load(journal: &Path) -> Result<(Index, Reader, Loaded), JournalError> {
    let snapshot = path_for(journal);
    let dir = Builder::dir_of(journal);
    if let Some(state) = read_snapshot(&snapshot, journal) {
        let mut builder = Builder::resume(state.index, &dir);
        let mut reader = Reader::open_at(journal, state.covered, state.lines)?;
        builder.read(&mut reader, false)?;
        let tail = reader.good_len() - state.covered;
        return Ok((builder.finish()?, reader, Loaded::Snapshot { tail }));
    }
    let mut reader = Reader::open(journal)?;
    let index = Index::build(&mut reader)?;
    Ok((index, reader, Loaded::Journal))
}

/// The resume index built from the lines a scan writes to a new journal (a [`Tap`] on its
/// writer), so the end of the run saves it without reading the journal back.
pub struct IndexFeed {
    builder: Builder,
    /// Where the key index's sort spills.
    dir: PathBuf,
    /// Set when a line could not be taken in: the journal is read instead.
    broken: bool,
    seen: super::Seen,
}

/// Memory the feed's sort of keys may hold during the run before it spills to disk.
const FEED_BUDGET: usize = 512 << 10;

impl IndexFeed {
    /// A feed for a new journal at `journal`.
    pub fn new(journal: &Path) -> Self {
        let dir = Builder::dir_of(journal);
        Self {
            builder: Builder::with_budget(&dir, FEED_BUDGET),
            dir,
            broken: false,
            seen: super::Seen::default(),
        }
    }

    /// The builder and the journal state it covers (length, lines, offset of the last line,
    /// hashes of the first and last lines), when the journal at `journal` is the one the feed
    /// saw ([`super::Seen::holds`]).
    fn covering(self, journal: &Path) -> Result<Option<(Builder, Covered)>, JournalError> {
        if self.broken
            || !self
                .seen
                .holds(journal)
                .map_err(JournalError::io("read", journal))?
        {
            return Ok(None);
        }
        let with_break = |line: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(line);
            h.update(b"\n");
            h.finalize().into()
        };
        let covered = Covered {
            len: self.seen.next,
            lines: self.seen.lines,
            last: self.seen.last.0,
            first_hash: with_break(&self.seen.first),
            last_hash: with_break(&self.seen.last.1),
        };
        Ok(Some((self.builder, covered)))
    }
}

impl super::Tap for IndexFeed {
    fn line(&mut self, offset: u64, raw: &[u8], _sha256: &[u8; 32], line: &super::Line) {
        if self.broken {
            return;
        }
        let first = self.seen.lines == 0;
        if offset != self.seen.next || !self.builder.take(offset, line, first) {
            // Give up, and give back the memory: the end of the run reads the journal.
            self.broken = true;
            self.builder = Builder::with_budget(&self.dir, FEED_BUDGET);
            self.seen = super::Seen::default();
            return;
        }
        self.seen.take(offset, raw);
    }
}

/// The journal state a snapshot covers.
struct Covered {
    /// Length of its complete lines.
    len: u64,
    lines: u64,
    /// Offset of the last line.
    last: u64,
    /// SHA-256 of the first line and of the last one (line breaks included).
    first_hash: [u8; 32],
    last_hash: [u8; 32],
}

/// Bring the snapshot up to date with the journal (after a run wrote its end line): loads the
/// index as [`load`] does (from `fed`, what a run that started the journal gathered as it
/// wrote it, when that is the journal on disk), then saves it when it is complete (no upload
/// announced without its record). Saving is an optimisation: a failure leaves the previous
/// snapshot or none.
pub fn refresh(journal: &Path, fed: Option<IndexFeed>) -> Result<(), JournalError> {
    if let Some(feed) = fed
        && let Some((builder, covered)) = feed.covering(journal)?
    {
        tracing::debug!("resume index from what the run gathered as it wrote the journal");
        if builder.settled() {
            save(journal, builder, &covered)?;
        }
        return Ok(());
    }
    let snapshot = path_for(journal);
    let loaded = read_snapshot(&snapshot, journal);
    let dir = Builder::dir_of(journal);
    let (mut builder, mut reader) = match loaded {
        Some(state) => {
            let reader = Reader::open_at(journal, state.covered, state.lines)?;
            (Builder::resume(state.index, &dir), reader)
        }
        None => (Builder::new(&dir), Reader::open(journal)?),
    };
    let from_start = reader.good_len() == 0;
    let start = reader.good_len();
    builder.read(&mut reader, from_start)?;
    if reader.good_len() == start && start > 0 {
        return Ok(()); // Nothing new since the snapshot.
    }
    if !builder.settled() || reader.torn_tail().is_some() {
        return Ok(());
    }
    let Some(last) = builder.last else {
        return Ok(());
    };
    let covered = Covered {
        len: reader.good_len(),
        lines: reader.line_no(),
        last,
        first_hash: first_line_hash(journal)?,
        last_hash: range_hash(journal, last, reader.good_len())?,
    };
    save(journal, builder, &covered)
}

/// Save the index `builder` built as the snapshot of the journal state `covered`.
fn save(journal: &Path, builder: Builder, covered: &Covered) -> Result<(), JournalError> {
    let snapshot = path_for(journal);
    let mut index = builder.finish()?;
    files::write_private_atomic(&snapshot, |w| {
        let mut w = Hashing::new(w);
        w.write_all(MAGIC)?;
        for n in [covered.len, covered.lines, covered.last] {
            w.write_all(&n.to_le_bytes())?;
        }
        w.write_all(&covered.first_hash)?;
        w.write_all(&covered.last_hash)?;
        write_index(&mut w, &mut index)?;
        let sum = w.hasher.finalize_reset();
        w.inner.write_all(&sum)
    })
    .map_err(JournalError::io("write", &snapshot))
}

/// A snapshot's index and the journal state it covers.
struct State {
    index: Index,
    covered: u64,
    lines: u64,
}

/// The snapshot at `path` when it is whole and covers a prefix of `journal`; `None` otherwise.
fn read_snapshot(path: &Path, journal: &Path) -> Option<State> {
    let (header, state) = parse(path).ok()?;
    header.matches(journal).ok()?;
    Some(state)
}

impl Covered {
    /// Whether `journal` still holds the state this snapshot covers; why not, in words.
    fn matches(&self, journal: &Path) -> Result<(), String> {
        let len = std::fs::metadata(journal)
            .map_err(|e| format!("the journal cannot be read: {e}"))?
            .len();
        if len < self.len {
            return Err(format!(
                "the resume index covers the journal's first {} lines ({} bytes), but the \
                 journal now holds {len} bytes: it was cut back or emptied",
                self.lines, self.len
            ));
        }
        if first_line_hash(journal).ok() != Some(self.first_hash) {
            return Err(
                "the journal's first line is not the one the resume index was built from: it \
                 was replaced or rewritten"
                    .into(),
            );
        }
        if range_hash(journal, self.last, self.len).ok() != Some(self.last_hash) {
            return Err(format!(
                "line {} of the journal (at byte {}) is not the line the resume index recorded \
                 there: the journal was edited, zeroed or rewritten",
                self.lines, self.last
            ));
        }
        Ok(())
    }
}

/// Read the snapshot at `path` whole, checking its own digest: its header and index, or why
/// it cannot be used (a damaged or foreign file).
fn parse(path: &Path) -> Result<(Covered, State), String> {
    let damaged = |what: &str| format!("the resume index {} is {what}", path.display());
    let file = files::open_read(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = Hashing::new(BufReader::with_capacity(64 * 1024, file));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| damaged("cut short"))?;
    if &magic != MAGIC {
        return Err(damaged("not a resume index of this version"));
    }
    let header = (|| -> io::Result<Covered> {
        Ok(Covered {
            len: r.u64()?,
            lines: r.u64()?,
            last: r.u64()?,
            first_hash: r.array::<32>()?,
            last_hash: r.array::<32>()?,
        })
    })()
    .map_err(|_| damaged("cut short"))?;
    if header.last >= header.len {
        return Err(damaged("inconsistent"));
    }
    let mut index = read_index(&mut r, len).map_err(|_| damaged("damaged"))?;
    let sum = r.hasher.finalize_reset();
    let mut stored = [0u8; 32];
    r.inner
        .read_exact(&mut stored)
        .map_err(|_| damaged("cut short"))?;
    let mut more = [0u8; 1];
    if sum[..] != stored || r.inner.read(&mut more).map_err(|e| e.to_string())? != 0 {
        return Err(damaged(
            "not the file this tool wrote (its digest does not match its content)",
        ));
    }
    // The entries stay in the file, read where a lookup needs them.
    let (start, count, checked) = index.1;
    index.0.by_key = KeyIndex::on_file(r.inner.into_inner(), start, count, checked);
    let state = State {
        index: index.0,
        covered: header.len,
        lines: header.lines,
    };
    Ok((header, state))
}

/// What a cache beside the journal is worth to a resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCheck {
    /// There is none.
    Absent,
    /// It is whole and describes a state the journal still holds.
    Good,
    /// It is not usable (damaged, of another version, not signed by the key): it is discarded
    /// and rebuilt from the verified journal.
    Damaged(String),
    /// It is whole but describes a journal state the journal no longer holds: the journal
    /// was cut back, emptied or rewritten since.
    Foreign(String),
}

/// Check the resume index saved beside `journal` against it (and with `key`, its signature).
pub fn check(journal: &Path, key: Option<&super::seal::Verifier>) -> CacheCheck {
    let path = path_for(journal);
    if std::fs::symlink_metadata(&path).is_err() {
        return CacheCheck::Absent;
    }
    if let Some(key) = key {
        let signed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| key.check_file(&path, &bytes));
        if let Err(e) = signed {
            return CacheCheck::Damaged(format!(
                "the resume index {} is not signed by key {}: {e}",
                path.display(),
                key.key_id()
            ));
        }
    }
    let header = match parse(&path) {
        Ok((header, _)) => header,
        Err(e) => return CacheCheck::Damaged(e),
    };
    match header.matches(journal) {
        Ok(()) => CacheCheck::Good,
        Err(e) => CacheCheck::Foreign(e),
    }
}

/// Remove the resume index saved beside `journal` (and its signature): the next resume builds
/// it from the journal.
pub fn discard(journal: &Path) -> Result<(), JournalError> {
    let path = path_for(journal);
    for p in [super::seal::sig_path(&path), path] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(JournalError::io("remove", &p)(e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn write_index(w: &mut impl Write, index: &mut Index) -> io::Result<()> {
    let header = (&index.settings, &index.shard, index.shard_changed);
    let settings = serde_json::to_vec(&header).map_err(io::Error::other)?;
    w.write_all(&(settings.len() as u64).to_le_bytes())?;
    w.write_all(&settings)?;
    for n in [index.runs, index.records, index.orphans.len() as u64] {
        w.write_all(&n.to_le_bytes())?;
    }
    for o in &index.orphans {
        w.write_all(&o.offset.to_le_bytes())?;
        w.write_all(&(o.key.len() as u64).to_le_bytes())?;
        w.write_all(o.key.as_bytes())?;
    }
    keys::write_entries(w, &index.by_key)?;
    let by_content = index.by_content.sorted();
    w.write_all(&(by_content.len() as u64).to_le_bytes())?;
    for (k, v) in by_content {
        w.write_all(&k.to_le_bytes())?;
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// The index part of a snapshot of `len` bytes; counts are checked against the length before
/// anything is allocated for them. The key entries are checked and passed over, not kept:
/// returned with the index are where they start in the file, their count and their start table.
fn read_index<R: Read>(r: &mut Hashing<R>, len: u64) -> io::Result<(Index, (u64, u64, Checked))> {
    let bad = || io::Error::from(io::ErrorKind::InvalidData);
    let count = |r: &mut Hashing<R>, size: u64| -> io::Result<usize> {
        let n = r.u64()?;
        if n.checked_mul(size).is_none_or(|bytes| bytes > len) {
            return Err(bad());
        }
        Ok(n as usize)
    };
    let settings_len = count(r, 1)?;
    let mut settings = vec![0u8; settings_len];
    r.read_exact(&mut settings)?;
    type Header = (Option<Settings>, Option<ShardHeader>, bool);
    let (settings, shard, shard_changed): Header =
        serde_json::from_slice(&settings).map_err(|_| bad())?;
    let runs = r.u64()?;
    let records = r.u64()?;
    let orphan_count = count(r, 16)?;
    let mut orphans = Vec::with_capacity(orphan_count);
    for _ in 0..orphan_count {
        let offset = r.u64()?;
        let mut key = vec![0u8; count(r, 1)?];
        r.read_exact(&mut key)?;
        let key = String::from_utf8(key).map_err(|_| bad())?;
        orphans.push(Orphan { key, offset });
    }
    let class_ok = keys::class_ok;
    let key_count = count(r, keys::ENTRY as u64)?;
    let start = r.pos;
    let mut checked = Checked::new(key_count as u64);
    for _ in 0..key_count {
        let (k, state): (u64, KeyState) = keys::entry_from(&r.array::<{ keys::ENTRY }>()?);
        if !checked.push(k, state) {
            return Err(bad());
        }
    }
    let n = count(r, 24)?;
    let mut by_content = Vec::with_capacity(n);
    for _ in 0..n {
        let k = u128::from_le_bytes(r.array::<16>()?);
        let v = r.u64()?;
        if !class_ok(v) {
            return Err(bad());
        }
        by_content.push((k, v));
    }
    let index = Index {
        by_key: KeyIndex::default(),
        by_content: CompactMap::from_sorted(by_content).ok_or_else(bad)?,
        settings,
        shard,
        shard_changed,
        runs,
        records,
        orphans,
    };
    Ok((index, (start, key_count as u64, checked)))
}

/// SHA-256 of the journal's first line (with its newline).
fn first_line_hash(journal: &Path) -> Result<[u8; 32], JournalError> {
    let file = files::open_read(journal)?;
    let mut line = Vec::new();
    BufReader::new(file.take(1 << 20))
        .read_until(b'\n', &mut line)
        .map_err(JournalError::io("read", journal))?;
    Ok(Sha256::digest(&line).into())
}

/// SHA-256 of the journal's bytes from `start` to `end`.
fn range_hash(journal: &Path, start: u64, end: u64) -> Result<[u8; 32], JournalError> {
    let read = |mut file: File| -> io::Result<[u8; 32]> {
        file.seek(SeekFrom::Start(start))?;
        let mut hasher = Sha256::new();
        let n = io::copy(&mut file.take(end - start), &mut hasher)?;
        if n != end - start {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(hasher.finalize().into())
    };
    read(files::open_read(journal)?).map_err(JournalError::io("read", journal))
}

impl<R: Read> Hashing<R> {
    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut a = [0u8; N];
        self.read_exact(&mut a)?;
        Ok(a)
    }

    fn u64(&mut self) -> io::Result<u64> {
        self.array::<8>().map(u64::from_le_bytes)
    }
}

/// The snapshot's path for a journal.
pub fn path_for(journal: &Path) -> PathBuf {
    journal.with_file_name(INDEX_FILE)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::journal::fixtures::*;
    use crate::journal::{JOURNAL_FILE, Line, RunEnd, Sending, Writer, key_digest};
    use crate::record::Class;

    /// Everything an index holds, comparable.
    fn contents(index: &mut Index) -> String {
        format!(
            "{:?} {:?} {} {} {} {:?} {:?} {:?}",
            index.settings,
            index.shard,
            index.shard_changed,
            index.runs,
            index.records,
            index.orphans,
            index.by_key.entries(),
            index.by_content.sorted()
        )
    }

    fn sha(n: usize) -> String {
        format!("{n:064x}")
    }

    fn append(path: &Path, lines: &[Line]) {
        let len = std::fs::metadata(path).map(|m| m.len()).ok();
        let mut w = Writer::open(path, len).unwrap();
        for l in lines {
            w.append(l).unwrap();
        }
        w.finish().unwrap();
    }

    /// A journal of `n` items over a few runs, a dead run's orphan among them, ending cleanly.
    fn journal(dir: &Path, n: usize) -> PathBuf {
        let p = dir.join(JOURNAL_FILE);
        write_lines(&p, &journal_lines(n));
        p
    }

    /// The lines of [`journal`].
    fn journal_lines(n: usize) -> Vec<Line> {
        let mut lines = vec![run_line(), Line::Sending(Sending { key: "lost".into() })];
        lines.push(run_line());
        for i in 0..n {
            let class = if i % 7 == 0 {
                Class::Transient
            } else {
                Class::Result
            };
            lines.push(item(&format!("k{i}"), &sha(i % 50), class));
        }
        lines.push(Line::End(RunEnd::default()));
        lines
    }

    /// Write `lines` as a new journal at `p` with an [`IndexFeed`] on the writer; returns it.
    fn fed(p: &Path, lines: &[Line]) -> IndexFeed {
        let mut w = Writer::open(p, None)
            .unwrap()
            .tapped(Some(IndexFeed::new(p)));
        for l in lines {
            w.append(l).unwrap();
        }
        let feed = w.take_tap().unwrap();
        w.finish().unwrap();
        feed
    }

    /// The index gathered as the journal was written is saved as the very snapshot a read of
    /// the journal saves (byte for byte), and loads as the index of the whole journal; a
    /// journal changed since (a line appended, its last line altered) is read instead.
    #[test]
    fn a_snapshot_from_a_feed_is_the_one_the_journal_gives() {
        let lines = journal_lines(5_000);
        let read = tempfile::tempdir().unwrap();
        let p = journal(read.path(), 5_000);
        refresh(&p, None).unwrap();
        let expected = std::fs::read(path_for(&p)).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join(JOURNAL_FILE);
        let feed = fed(&q, &lines);
        refresh(&q, Some(feed)).unwrap();
        assert!(
            std::fs::read(path_for(&q)).unwrap() == expected,
            "same snapshot"
        );
        let (mut index, _, loaded) = load(&q).unwrap();
        assert_eq!(loaded, Loaded::Snapshot { tail: 0 });
        assert_eq!(contents(&mut index), contents(&mut built(&q)));

        // A line appended after the feed's: the journal is read, and the snapshot covers it.
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join(JOURNAL_FILE);
        let feed = fed(&q, &lines);
        append(
            &q,
            &[
                run_line(),
                item("late", &sha(7), Class::Result),
                Line::End(RunEnd::default()),
            ],
        );
        refresh(&q, Some(feed)).unwrap();
        let (mut index, _, loaded) = load(&q).unwrap();
        assert_eq!(loaded, Loaded::Snapshot { tail: 0 });
        assert_eq!(contents(&mut index), contents(&mut built(&q)));
        assert!(index.latest(key_digest("late")).is_some());

        // The last line changed in place (same length): not the journal the feed saw.
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join(JOURNAL_FILE);
        assert!(fed(&q, &lines).covering(&q).unwrap().is_some());
        std::fs::remove_file(&q).unwrap();
        let feed = fed(&q, &lines);
        let mut bytes = std::fs::read(&q).unwrap();
        let n = bytes.len();
        // A digit of its chain field (`..."prev":"<hex>"}`): still a JSON line.
        bytes[n - 4] = if bytes[n - 4] == b'0' { b'1' } else { b'0' };
        std::fs::write(&q, &bytes).unwrap();
        assert!(feed.covering(&q).unwrap().is_none(), "a changed last line");
        let feed = fed(&dir.path().join("other.jsonl"), &lines);
        std::fs::write(&q, &bytes[..n - 1]).unwrap();
        assert!(feed.covering(&q).unwrap().is_none(), "another length");
    }

    /// A feed that could not take a line in (a record without a class) saves nothing of its
    /// own: the journal is read, and its defect reported.
    #[test]
    fn a_feed_that_gave_up_leaves_the_index_to_the_journal() {
        let mut lines = journal_lines(50);
        if let Some(Line::Item(r)) = lines.iter_mut().find(|l| matches!(l, Line::Item(_))) {
            r.class = None;
        }
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join(JOURNAL_FILE);
        let feed = fed(&q, &lines);
        assert!(feed.broken);
        let err = refresh(&q, Some(feed)).unwrap_err();
        assert!(err.to_string().contains("without key or class"), "{err}");
        assert!(!path_for(&q).exists());
    }

    fn built(p: &Path) -> Index {
        Index::build(&mut Reader::open(p).unwrap()).unwrap()
    }

    /// A run that records nothing and ends cleanly, then the snapshot saved: it covers the
    /// whole journal and gives the index of the whole journal. Returns the loaded index.
    fn clean_rerun(p: &Path) -> Index {
        append(
            p,
            &[
                Line::Run(run_info(true, false)),
                Line::End(RunEnd::default()),
            ],
        );
        refresh(p, None).unwrap();
        let (mut index, _, loaded) = load(p).unwrap();
        assert_eq!(loaded, Loaded::Snapshot { tail: 0 });
        assert_eq!(contents(&mut index), contents(&mut built(p)));
        index
    }

    #[test]
    fn a_snapshot_and_the_tail_give_the_index_of_the_whole_journal() {
        let dir = tempfile::tempdir().unwrap();
        // More keys than an index keeps in memory: its entries are read from the file.
        let p = journal(dir.path(), 5_000);
        refresh(&p, None).unwrap();
        let snap = path_for(&p);
        let mode = std::fs::metadata(&snap).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (mut index, _, loaded) = load(&p).unwrap();
        assert_eq!(loaded, Loaded::Snapshot { tail: 0 });
        assert!(index.by_key.on_disk());
        assert_eq!(contents(&mut index), contents(&mut built(&p)));

        // A rerun that records nothing: the snapshot is saved again from the one it read.
        let index = clean_rerun(&p);
        assert_eq!(
            index.latest(key_digest("k1")),
            built(&p).latest(key_digest("k1"))
        );
        assert!(index.latest(key_digest("k1")).is_some());

        // A resumed run appends: the tail is read on top of the snapshot.
        let mut resumed = vec![Line::Run(run_info(true, false))];
        resumed.push(item("k0", &sha(3), Class::Result));
        resumed.push(item("new", &sha(99), Class::Result));
        resumed.push(Line::Sending(Sending { key: "k1".into() }));
        append(&p, &resumed);
        let (mut index, reader, loaded) = load(&p).unwrap();
        assert!(matches!(loaded, Loaded::Snapshot { tail } if tail > 0));
        assert_eq!(reader.good_len(), std::fs::metadata(&p).unwrap().len());
        assert_eq!(contents(&mut index), contents(&mut built(&p)));

        // That run died (no end line): the snapshot is not refreshed past an open upload.
        let before = std::fs::read(&snap).unwrap();
        refresh(&p, None).unwrap();
        assert_eq!(std::fs::read(&snap).unwrap(), before);
        // The next run ends cleanly: the snapshot now covers everything.
        let index = clean_rerun(&p);
        assert_eq!(index.orphans.len(), 2, "lost, and k1 of the dead run");
    }

    #[test]
    fn a_snapshot_that_does_not_match_its_journal_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = journal(dir.path(), 300);
        refresh(&p, None).unwrap();
        let snap = path_for(&p);
        let good = std::fs::read(&snap).unwrap();
        let journal_bytes = std::fs::read(&p).unwrap();
        let expect = |why: &str| {
            let (mut index, _, loaded) = load(&p).unwrap();
            assert_eq!(loaded, Loaded::Journal, "{why}");
            assert_eq!(contents(&mut index), contents(&mut built(&p)), "{why}");
        };

        // Damaged anywhere (the trailing checksum, a count, an entry), cut short, or grown.
        for at in [0, 20, good.len() / 2, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&snap, &bad).unwrap();
            expect(&format!("byte {at} flipped"));
        }
        std::fs::write(&snap, &good[..good.len() - 1]).unwrap();
        expect("cut short");

        // Whole by its checksum but its key entries out of order (as no snapshot is written):
        // lookups could miss keys, so it is not used.
        let contents_len = 24 * built(&p).by_content.len();
        let end = good.len() - 32 - 8 - contents_len;
        let mut swapped = good.clone();
        let last: Vec<u8> = swapped[end - 24..end].to_vec();
        swapped.copy_within(end - 48..end - 24, end - 24);
        swapped[end - 48..end - 24].copy_from_slice(&last);
        let body = swapped.len() - 32;
        let sum: [u8; 32] = Sha256::digest(&swapped[..body]).into();
        swapped[body..].copy_from_slice(&sum);
        std::fs::write(&snap, &swapped).unwrap();
        expect("key entries out of order");
        std::fs::write(&snap, [&good[..], b"x"].concat()).unwrap();
        expect("a byte more");
        std::fs::write(&snap, b"").unwrap();
        expect("empty");

        // Another journal in its place (set aside by --fresh and started again).
        std::fs::write(&snap, &good).unwrap();
        let other = journal(&dir.path().join("x").tap_mkdir(), 300);
        std::fs::copy(&other, &p).unwrap();
        let mut header = std::fs::read(&p).unwrap();
        let at = header.iter().position(|b| *b == b'8').unwrap(); // concurrency 8 -> 9
        header[at] = b'9';
        std::fs::write(&p, &header).unwrap();
        expect("another journal");

        // The journal cut shorter than the snapshot covers, or its last covered line changed.
        std::fs::write(&p, &journal_bytes[..journal_bytes.len() - 3]).unwrap();
        expect("journal cut short");
        let end = journal_bytes[..journal_bytes.len() - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap();
        std::fs::write(&p, &journal_bytes[..=end]).unwrap();
        append(
            &p,
            &[Line::End(RunEnd {
                inputs: 300,
                ..RunEnd::default()
            })],
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            journal_bytes.len() as u64 + 2
        );
        expect("last covered line changed");
        std::fs::write(&p, &journal_bytes[..=end]).unwrap();
        append(
            &p,
            &[Line::End(RunEnd {
                wall_secs: 1.0,
                ..RunEnd::default()
            })],
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            journal_bytes.len() as u64
        );
        expect("last covered line changed, same length");

        // A link planted in the snapshot's place is not followed.
        std::fs::write(&p, &journal_bytes).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, &good).unwrap();
        std::fs::remove_file(&snap).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &snap).unwrap();
        expect("a link");
        refresh(&p, None).unwrap();
        assert!(!std::fs::symlink_metadata(&snap).unwrap().is_symlink());
        assert_eq!(std::fs::read(&elsewhere).unwrap(), good, "target untouched");
        assert!(matches!(load(&p).unwrap().2, Loaded::Snapshot { tail: 0 }));
    }

    trait TapMkdir {
        fn tap_mkdir(self) -> PathBuf;
    }

    impl TapMkdir for PathBuf {
        fn tap_mkdir(self) -> PathBuf {
            std::fs::create_dir_all(&self).unwrap();
            self
        }
    }
}
