//! Appending to the journal: one `write` per line (or per batch of lines the caller gathers),
//! synced at least every [`SYNC_EVERY`], each line chained to the one before it by that line's
//! SHA-256 (a `prev` field written last).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{JournalError, Line, SYNC_EVERY, open_private};

/// The `prev` of a journal's first line: no line before it.
pub const CHAIN_START: [u8; 32] = [0; 32];

/// How the chain field is written: the last field of every line, `,"prev":"<64 hex>"}`.
pub(super) const PREV_FIELD: &[u8] = br#","prev":""#;

/// Sees every line as the [`Writer`] gathers it: where it starts, its bytes as written (line
/// break excluded), their SHA-256 (the next line's `prev`) and the line itself, in journal
/// order. A scan that starts a journal builds its outputs' summary and its resume index from
/// what its taps saw instead of reading the journal back. The writer's taps are one typed value (a tuple of taps, or `Option` of one),
/// given back by [`Writer::take_tap`].
pub trait Tap: Send {
    fn line(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32], line: &Line);
}

/// No tap.
impl Tap for () {
    fn line(&mut self, _: u64, _: &[u8], _: &[u8; 32], _: &Line) {}
}

impl<T: Tap> Tap for Option<T> {
    fn line(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32], line: &Line) {
        if let Some(t) = self {
            t.line(offset, raw, sha256, line);
        }
    }
}

impl<A: Tap, B: Tap> Tap for (A, B) {
    fn line(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32], line: &Line) {
        self.0.line(offset, raw, sha256, line);
        self.1.line(offset, raw, sha256, line);
    }
}

/// The lines a tap saw, in order from the journal's start: whether the journal on disk is
/// still exactly those lines is told by its length, its first and last lines as written and
/// the line the tap kept ([`Seen::keep`]), without reading it whole ([`Seen::holds`]).
#[derive(Default)]
pub struct Seen {
    /// Where the next line must start: the length of the lines seen.
    pub next: u64,
    pub lines: u64,
    /// The first line as written (line break excluded).
    pub first: Vec<u8>,
    /// The last line's offset and bytes as written.
    pub last: (u64, Vec<u8>),
    /// A line the tap marked ([`Seen::keep`]): its offset, length and SHA-256.
    pub kept: Option<(u64, usize, [u8; 32])>,
}

impl Seen {
    /// Take the line `raw` at `offset`; `false` when it does not follow the lines seen.
    pub fn take(&mut self, offset: u64, raw: &[u8]) -> bool {
        if offset != self.next {
            return false;
        }
        self.next = offset + raw.len() as u64 + 1;
        self.lines += 1;
        if offset == 0 {
            self.first = raw.to_vec();
        }
        self.last.0 = offset;
        self.last.1.clear();
        self.last.1.extend_from_slice(raw);
        true
    }

    /// Keep the last line taken (its SHA-256 `sha256`) as one [`Seen::holds`] checks too.
    pub fn keep(&mut self, sha256: &[u8; 32]) {
        self.kept = Some((self.last.0, self.last.1.len(), *sha256));
    }

    /// Whether the journal at `journal` holds exactly the lines seen (at least one): its
    /// length, its first and last lines as written, and the line kept.
    pub fn holds(&self, journal: &Path) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        if self.next == 0 {
            return Ok(false);
        }
        let file = match crate::kit::open::open_read(journal) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() != self.next {
            return Ok(false);
        }
        let same = |offset: u64, expected: &[u8]| -> std::io::Result<bool> {
            let mut buf = vec![0u8; expected.len() + 1];
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf[..expected.len()] == *expected && buf[expected.len()] == b'\n')
        };
        if !same(0, &self.first)? || !same(self.last.0, &self.last.1)? {
            return Ok(false);
        }
        let Some((offset, len, sha256)) = self.kept else {
            return Ok(true);
        };
        let mut line = vec![0u8; len];
        file.read_exact_at(&mut line, offset)?;
        Ok(<sha2::Sha256 as sha2::Digest>::digest(&line)[..] == sha256[..])
    }
}

/// Appends lines to the journal: one `write` per line ([`Writer::append`]) or per batch
/// ([`Writer::gather`] then [`Writer::flush`]), data synced to disk at least every
/// [`SYNC_EVERY`] and on [`Writer::finish`]; every line shown to its tap `T`.
pub struct Writer<T: Tap = ()> {
    path: PathBuf,
    /// Shared with the [`SyncJob`]s that sync it on another thread.
    file: Arc<File>,
    /// The journal's length, lines gathered and not yet written included.
    len: u64,
    /// Lines gathered, written together by the next [`Writer::flush`].
    gathered: Vec<u8>,
    last_sync: Instant,
    dirty: bool,
    line: Vec<u8>,
    /// SHA-256 of the last line written (its bytes without the line break), or
    /// [`CHAIN_START`] for an empty journal.
    prev: [u8; 32],
    tap: T,
    /// Lines in the journal (gathered ones included), when known: a new journal's, or the
    /// count a verification gave ([`Writer::seal_with`]).
    lines: Option<u64>,
    /// Signs a `seal` line every [`SEAL_EVERY_RECORDS`] records or [`SEAL_EVERY`], and when
    /// asked ([`Writer::seal`]).
    sealer: Option<Arc<super::Signer>>,
    records_since_seal: u64,
    last_seal: Instant,
    /// Where the journal stood at the last seal (its length).
    sealed_at: u64,
}

/// A signing run seals the journal after this many records at most...
pub const SEAL_EVERY_RECORDS: u64 = 1000;
/// ...and at least this often while records arrive: a crash leaves at most this much unsealed.
pub const SEAL_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Writer {
    /// Open for appending. A torn last line (from a crash mid-write) is cut off first so the
    /// file stays one JSON value per line; `good_len` comes from the [`Reader`] that read it.
    pub fn open(path: &Path, good_len: Option<u64>) -> Result<Self, JournalError> {
        let file = open_private(path, true).map_err(JournalError::io("open", path))?;
        if let Some(len) = good_len {
            file.set_len(len)
                .map_err(JournalError::io("cut the torn last line of", path))?;
        }
        let len = file
            .metadata()
            .map_err(JournalError::io("inspect", path))?
            .len();
        let mut len = len;
        let lines = (len == 0).then_some(0);
        let prev = if len == 0 {
            CHAIN_START
        } else {
            let mut reader = super::files::open_read(path)?;
            let prev =
                last_line_hash(&reader, len).map_err(JournalError::io("read the end of", path))?;
            // A complete last line that lost its line break gets it back before anything is
            // appended, so the next line does not run into it.
            let mut last = [0u8];
            reader
                .seek(SeekFrom::Start(len - 1))
                .and_then(|_| reader.read_exact(&mut last))
                .map_err(JournalError::io("read the end of", path))?;
            if last[0] != b'\n' {
                (&file)
                    .write_all(b"\n")
                    .map_err(JournalError::io("write", path))?;
                len += 1;
            }
            prev
        };
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            len,
            gathered: Vec::new(),
            last_sync: Instant::now(),
            dirty: false,
            line: Vec::with_capacity(4096),
            prev,
            tap: (),
            lines,
            sealer: None,
            records_since_seal: 0,
            last_seal: Instant::now(),
            sealed_at: u64::MAX,
        })
    }

    /// The same writer showing every line gathered from now on to `tap`.
    pub fn tapped<T: Tap>(self, tap: T) -> Writer<T> {
        Writer {
            path: self.path,
            file: self.file,
            len: self.len,
            gathered: self.gathered,
            last_sync: self.last_sync,
            dirty: self.dirty,
            line: self.line,
            prev: self.prev,
            tap,
            lines: self.lines,
            sealer: self.sealer,
            records_since_seal: self.records_since_seal,
            last_seal: self.last_seal,
            sealed_at: self.sealed_at,
        }
    }
}

impl<T: Tap> Writer<T> {
    /// Sign the journal from now on with `signer`: a `seal` line now and then (see
    /// [`SEAL_EVERY_RECORDS`]) and at each [`Writer::seal`]. `lines`: how many lines the
    /// journal holds (a verification counted them).
    pub fn seal_with(&mut self, signer: Arc<super::Signer>, lines: u64) {
        self.sealer = Some(signer);
        self.lines = Some(lines);
    }

    /// Gather a `seal` line signing everything before it, unless the journal is unsigned or
    /// nothing was added since the last seal.
    pub fn seal(&mut self) -> Result<(), JournalError> {
        let (Some(signer), Some(lines)) = (self.sealer.clone(), self.lines) else {
            return Ok(());
        };
        if self.sealed_at == self.len {
            return Ok(());
        }
        let seal = signer.seal(self.len, lines, &self.prev);
        self.gather_line(&Line::Seal(seal))?;
        self.sealed_at = self.len;
        self.records_since_seal = 0;
        self.last_seal = Instant::now();
        Ok(())
    }

    /// Whether nothing was ever written to the journal.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tap, no longer shown any line.
    pub fn take_tap(&mut self) -> T
    where
        T: Default,
    {
        std::mem::take(&mut self.tap)
    }

    /// Append one line; returns the offset it starts at.
    pub fn append(&mut self, line: &Line) -> Result<u64, JournalError> {
        let offset = self.gather(line)?;
        self.flush()?;
        Ok(offset)
    }

    /// Add one line to those written by the next [`Writer::flush`] (or sync); returns the
    /// offset it will start at. Nothing may read it before that flush.
    pub fn gather(&mut self, line: &Line) -> Result<u64, JournalError> {
        let offset = self.gather_line(line)?;
        if self.sealer.is_some() && matches!(line, Line::Item(_)) {
            self.records_since_seal += 1;
            if self.records_since_seal >= SEAL_EVERY_RECORDS
                || self.last_seal.elapsed() >= SEAL_EVERY
            {
                self.seal()?;
            }
        }
        Ok(offset)
    }

    fn gather_line(&mut self, line: &Line) -> Result<u64, JournalError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line)
            .map_err(|e| JournalError::io("encode a line for", &self.path)(e.into()))?;
        chain(&mut self.line, &self.prev);
        self.prev = Sha256::digest(&self.line).into();
        let offset = self.len;
        self.tap.line(offset, &self.line, &self.prev, line);
        self.line.push(b'\n');
        self.gathered.extend_from_slice(&self.line);
        self.len += self.line.len() as u64;
        if let Some(n) = self.lines.as_mut() {
            *n += 1;
        }
        Ok(offset)
    }

    /// Write the lines gathered, in one `write`; sync when the last sync is [`SYNC_EVERY`] old.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.write_gathered()?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Sync written data to disk (lines gathered are written first) if anything was written
    /// since the last sync.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.write_gathered()?;
        if self.dirty {
            self.file
                .sync_data()
                .map_err(JournalError::io("sync", &self.path))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Write the lines gathered and return the job that syncs them, with everything written
    /// before, to disk: run on another thread ([`SyncJob::run`]) while this writer goes on
    /// gathering and writing lines (which the next sync covers). `None` when nothing was
    /// written since the last sync (or since the last job was made).
    pub fn sync_job(&mut self) -> Result<Option<SyncJob>, JournalError> {
        self.write_gathered()?;
        self.last_sync = Instant::now();
        if !std::mem::take(&mut self.dirty) {
            return Ok(None);
        }
        Ok(Some(SyncJob {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
        }))
    }

    fn write_gathered(&mut self) -> Result<(), JournalError> {
        if !self.gathered.is_empty() {
            let written = (&*self.file).write_all(&self.gathered);
            self.gathered.clear();
            written.map_err(JournalError::io("write", &self.path))?;
            self.dirty = true;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), JournalError> {
        self.sync()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A sync of what a [`Writer`] had written when it made the job ([`Writer::sync_job`]).
pub struct SyncJob {
    file: Arc<File>,
    path: PathBuf,
}

impl SyncJob {
    /// Sync the journal's data to disk (blocking: run it on a thread that may wait).
    pub fn run(self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(JournalError::io("sync", &self.path))
    }
}

/// Close the JSON object in `line` with the chain field naming `prev`.
fn chain(line: &mut Vec<u8>, prev: &[u8; 32]) {
    debug_assert_eq!(line.last(), Some(&b'}'), "a line is one JSON object");
    line.pop();
    line.extend_from_slice(PREV_FIELD);
    let mut hex = [0u8; 64];
    hex::encode_to_slice(prev, &mut hex).expect("64 hex digits");
    line.extend_from_slice(&hex);
    line.extend_from_slice(b"\"}");
}

/// SHA-256 of the last line in the first `len` bytes of `file` (line break excluded), read
/// backwards in blocks; [`CHAIN_START`] when there is none.
fn last_line_hash(mut file: &File, len: u64) -> std::io::Result<[u8; 32]> {
    const BLOCK: u64 = 64 << 10;
    // The line ends before a final line break (and a CR before it).
    let mut end = len;
    let mut tail = Vec::new();
    let mut pos = len;
    let mut start = None;
    while pos > 0 && start.is_none() {
        let from = pos.saturating_sub(BLOCK);
        let mut block = vec![0u8; (pos - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        pos = from;
        if end == len {
            // Skip the trailing line break(s) once they are in the buffer.
            while end > pos && matches!(tail[(end - pos - 1) as usize], b'\n' | b'\r') {
                end -= 1;
            }
        }
        if end > pos {
            start = tail[..(end - pos) as usize]
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|i| pos + i as u64 + 1);
        }
    }
    let start = start.unwrap_or(0);
    if end <= start {
        return Ok(CHAIN_START);
    }
    let line = &tail[(start - pos) as usize..(end - pos) as usize];
    Ok(Sha256::digest(line).into())
}
