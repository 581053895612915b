//! Reading a journal: lines streamed with their byte offsets (a torn last line tolerated), and
//! lines read back by offset.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{JournalError, Line};

/// Streams a journal's lines with their byte offsets. A last line that was cut short (no
/// newline and not valid JSON: a crash mid-write) ends the stream and is reported by
/// [`Reader::torn_tail`]; damage anywhere else is an error.
pub struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    offset: u64,
    line_no: u64,
    buf: Vec<u8>,
    torn: Option<TornTail>,
    done: bool,
}

/// Where a journal's cut-short last line starts, and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub len: u64,
    pub line: u64,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let file = super::files::open_read(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
            line_no: 0,
            buf: Vec::with_capacity(4096),
            torn: None,
            done: false,
        })
    }

    /// A reader that starts at `offset`, the start of line `line_no + 1` (for reading only a
    /// journal's tail; the caller knows where its lines start).
    pub fn open_at(path: &Path, offset: u64, line_no: u64) -> Result<Self, JournalError> {
        let mut reader = Self::open(path)?;
        reader
            .inner
            .seek(SeekFrom::Start(offset))
            .map_err(JournalError::io("read", path))?;
        reader.offset = offset;
        reader.line_no = line_no;
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines read so far (the number of the last one).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Set once the stream ended on a torn last line.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn
    }

    /// Offset just past the last complete line read so far.
    pub fn good_len(&self) -> u64 {
        self.offset
    }

    /// The next raw line (without the newline) and its offset; `None` at the end or at a torn tail.
    pub fn next_raw(&mut self) -> Option<Result<(u64, &[u8]), JournalError>> {
        if self.done {
            return None;
        }
        self.buf.clear();
        let n = match self.inner.read_until(b'\n', &mut self.buf) {
            Ok(n) => n,
            Err(source) => {
                self.done = true;
                return Some(Err(JournalError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source,
                }));
            }
        };
        if n == 0 {
            self.done = true;
            return None;
        }
        self.line_no += 1;
        let start = self.offset;
        if self.buf.last() != Some(&b'\n') {
            // No newline: the writer was stopped mid-line (or the last record's newline was lost).
            // A complete JSON value is kept; anything else is a torn tail.
            self.done = true;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&self.buf).is_ok() {
                self.offset += n as u64;
                return Some(Ok((start, &self.buf[..])));
            }
            self.torn = Some(TornTail {
                offset: start,
                len: n as u64,
                line: self.line_no,
            });
            return None;
        }
        self.offset += n as u64;
        let mut line = &self.buf[..n - 1];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        Some(Ok((start, line)))
    }

    pub(super) fn corrupt(&self, message: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            line: self.line_no,
            message: message.into(),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<(u64, Line), JournalError>;

    /// Every line, parsed. Blank lines are skipped.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (offset, raw) = match self.next_raw()? {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Some(match Line::parse(raw) {
                Ok(line) => Ok((offset, line)),
                Err(e) => {
                    let e = self.corrupt(e.to_string());
                    self.done = true;
                    Err(e)
                }
            });
        }
    }
}

/// Reads journal lines by their offsets (as given by the reader or the writer). Lines read in
/// order are read from a 64 KiB window, so a pass in nearly sequential order costs few system
/// calls; a line far from the previous one is read on its own, a few KiB at a time, so reading
/// records scattered over a large journal (a duplicate's leader, say) costs what the line costs,
/// not a window's worth each. The journal is append-only, so lines already written never change
/// under the window.
pub struct LinesAt {
    path: PathBuf,
    file: File,
    /// Bytes of the journal from `start`.
    window: Vec<u8>,
    start: u64,
    /// Where the last line read ended.
    pos: u64,
}

impl LinesAt {
    /// What a read in order fetches at once.
    const SEQUENTIAL: usize = 64 * 1024;
    /// What a read out of order fetches first (more when the line is longer).
    const SCATTERED: usize = 4 * 1024;

    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let file = super::files::open_read(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            window: Vec::new(),
            start: 0,
            pos: 0,
        })
    }

    /// The line that starts at `offset`.
    pub fn read(&mut self, offset: u64) -> Result<Line, JournalError> {
        self.read_with(offset, Line::parse)
    }

    /// The line that starts at `offset`, parsed by `parse` (given the line without its break).
    pub fn read_with<T>(
        &mut self,
        offset: u64,
        parse: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T, JournalError> {
        let range = self.line_at(offset).map_err(|source| JournalError::Io {
            op: "read",
            path: self.path.clone(),
            source,
        })?;
        self.pos = offset + range.len() as u64;
        parse(self.window[range].trim_ascii_end()).map_err(|e| JournalError::Corrupt {
            path: self.path.clone(),
            line: 0,
            message: format!("record at byte {offset}: {e}"),
        })
    }

    /// Where in the window the line at `offset` is, its break included (to the end of the
    /// file for a last line without one), reading what is missing.
    fn line_at(&mut self, offset: u64) -> std::io::Result<std::ops::Range<usize>> {
        // Just after the last line read, or a little further on (lines skipped): in order.
        let sequential = offset >= self.pos && offset - self.pos <= Self::SEQUENTIAL as u64;
        let end = self.start + self.window.len() as u64;
        if offset < self.start || offset >= end {
            self.start = offset;
            self.window.clear();
        } else {
            let from = (offset - self.start) as usize;
            if let Some(i) = memchr::memchr(b'\n', &self.window[from..]) {
                return Ok(from..from + i + 1);
            }
            // The line runs on past the window: keep only what is read of it.
            self.window.drain(..from);
            self.start = offset;
        }
        // The window now starts at `offset` and holds no line break.
        loop {
            let searched = self.window.len();
            let first = if sequential {
                Self::SEQUENTIAL
            } else {
                Self::SCATTERED
            };
            if self.fill(first.max(searched))? == 0 {
                return Ok(0..self.window.len());
            }
            if let Some(i) = memchr::memchr(b'\n', &self.window[searched..]) {
                return Ok(0..searched + i + 1);
            }
        }
    }

    /// Append up to `n` bytes of the journal after the window; 0 at the end of the file.
    fn fill(&mut self, n: usize) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let old = self.window.len();
        self.window.resize(old + n, 0);
        let at = self.start + old as u64;
        let got = loop {
            match self.file.read_at(&mut self.window[old..], at) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let got = got.inspect_err(|_| self.window.truncate(old))?;
        self.window.truncate(old + got);
        Ok(got)
    }
}

/// Checks the journal's chain line by line: each line's `prev` must be the SHA-256 of the line
/// before it, so an edited, removed, inserted or reordered line is found, at the first line
/// after the change; a line without one was inserted or rewritten. A chain starts again (from [`super::CHAIN_START`])
/// only at a new journal's first run header, as in shards merged one after the other. Its state
/// is small and serde, so a checkpoint can carry it and be fed more lines later.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChainCheck {
    /// Lines seen (blank ones included), so a break is named by its line number.
    pub lines: u64,
    /// Lines that carry a `prev` (every non-blank one, in a journal that holds).
    pub chained: u64,
    /// SHA-256 of the last non-blank line: the chain's head (in hex in a checkpoint).
    #[serde(with = "hex_digest")]
    head: Option<[u8; 32]>,
    /// The first break found; later lines are still counted.
    pub broken: Option<ChainBreak>,
}

/// A digest kept as bytes and written as 64 hex digits, as checkpoints always held it.
mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&hex::encode(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(&h, &mut out)
                    .map(|()| out)
                    .map_err(|e| D::Error::custom(format!("a chain head of 64 hex digits: {e}")))
            })
            .transpose()
    }
}

/// Where the chain first breaks, and what that means.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChainBreak {
    pub line: u64,
    pub offset: u64,
    pub reason: String,
}

impl ChainCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// One raw line (line break excluded) starting at `offset`.
    pub fn feed(&mut self, offset: u64, raw: &[u8]) {
        if raw.iter().all(u8::is_ascii_whitespace) {
            self.lines += 1;
            return;
        }
        self.feed_hashed(offset, raw, &sha2::Sha256::digest(raw).into());
    }

    /// [`ChainCheck::feed`] with the line's SHA-256 already known (the writer's, which chained
    /// the line): not computed a second time.
    pub fn feed_hashed(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32]) {
        self.lines += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let line = self.lines;
        let head = self.head.replace(*sha256);
        match prev_of(raw) {
            None => self.fail(
                line,
                offset,
                format!("line {line} carries no chain hash: it was inserted or rewritten"),
            ),
            Some(prev) => {
                self.chained += 1;
                let starts = prev == super::CHAIN_START && raw.starts_with(br#"{"type":"run","#);
                let follows = head == Some(prev);
                if !(starts || follows) {
                    let reason = if line == 1 || head.is_none() {
                        format!(
                            "line {line} is not the start of a journal: the lines before it \
                             were removed"
                        )
                    } else {
                        format!(
                            "line {line} does not carry the hash of line {0} as it is now: line \
                             {0} was edited, or lines were removed, inserted or moved between \
                             the two",
                            line - 1
                        )
                    };
                    self.fail(line, offset, reason);
                }
            }
        }
    }

    /// SHA-256 (hex) of the last non-blank line: the chain's head, which vouches for every
    /// line before it.
    pub fn head(&self) -> Option<String> {
        self.head.map(hex::encode)
    }

    fn fail(&mut self, line: u64, offset: u64, reason: String) {
        if self.broken.is_none() {
            self.broken = Some(ChainBreak {
                line,
                offset,
                reason,
            });
        }
    }

    /// In one word: "chained" or "broken".
    pub fn state(&self) -> &'static str {
        if self.broken.is_some() {
            "broken"
        } else {
            "chained"
        }
    }
}

/// The `prev` a line carries: its last field, as the writer writes it.
pub(super) fn prev_of(raw: &[u8]) -> Option<[u8; 32]> {
    let rest = raw.strip_suffix(b"\"}")?;
    let at = rest.len().checked_sub(64)?;
    let (head, hex_digits) = rest.split_at(at);
    if !head.ends_with(super::write::PREV_FIELD) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}
