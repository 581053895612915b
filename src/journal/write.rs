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
/// order. A scan that starts a journal builds
/// its outputs' summary and its resume index from what its taps saw instead of reading the
/// journal back.
pub trait Tap: std::any::Any + Send {
    fn line(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32], line: &Line);
}

/// Appends lines to the journal: one `write` per line ([`Writer::append`]) or per batch
/// ([`Writer::gather`] then [`Writer::flush`]), data synced to disk at least every
/// [`SYNC_EVERY`] and on [`Writer::finish`].
pub struct Writer {
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
    taps: Vec<Box<dyn Tap>>,
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
            taps: Vec::new(),
            lines,
            sealer: None,
            records_since_seal: 0,
            last_seal: Instant::now(),
            sealed_at: u64::MAX,
        })
    }

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

    /// Show every line gathered from now on to `tap` (too).
    pub fn add_tap(&mut self, tap: Box<dyn Tap>) {
        self.taps.push(tap);
    }

    /// The taps added, no longer shown any line.
    pub fn take_taps(&mut self) -> Vec<Box<dyn Tap>> {
        std::mem::take(&mut self.taps)
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
        for tap in &mut self.taps {
            tap.line(offset, &self.line, &self.prev, line);
        }
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
