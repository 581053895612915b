//! The append-only journal (`journal.jsonl`): the run's source of truth. It owns the line
//! format, reading (tolerating a torn last line), the resume index, the one-runner lock, and
//! the writer that appends and syncs records.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{Class, Record};

pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const LOCK_FILE: &str = ".liveness-batch.lock";
/// The journal is synced to disk at least this often while records arrive, and at exit.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Settings that change what the API answers: a resumed run must use the same ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub threshold: Option<f64>,
    pub rotate_image: bool,
    pub save_api_request: bool,
    /// Host of the API base URL (`verification.didit.me`, or `127.0.0.1:PORT` for an emulator).
    pub api_host: String,
    /// True when results came from the built-in emulator, not Didit.
    pub simulated: bool,
}

impl Settings {
    /// Human-readable differences from `other` (the journal's), empty when compatible.
    /// The emulator's port changes every run, so for simulated runs only "simulated" counts.
    pub fn differences(&self, journal: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        let show = |t: Option<f64>| t.map_or("Didit's default (30)".to_string(), |t| t.to_string());
        if self.threshold != journal.threshold {
            out.push(format!(
                "threshold: journal has {}, this run has {}",
                show(journal.threshold),
                show(self.threshold)
            ));
        }
        if self.rotate_image != journal.rotate_image {
            out.push(format!(
                "rotate_image: journal has {}, this run has {}",
                journal.rotate_image, self.rotate_image
            ));
        }
        if self.save_api_request != journal.save_api_request {
            out.push(format!(
                "save_api_request: journal has {}, this run has {}",
                journal.save_api_request, self.save_api_request
            ));
        }
        if self.simulated != journal.simulated {
            let what = |s: bool| {
                if s {
                    "the built-in emulator"
                } else {
                    "the API"
                }
            };
            out.push(format!(
                "results source: journal has {}, this run uses {}",
                what(journal.simulated),
                what(self.simulated)
            ));
        } else if !self.simulated && !same_api_host(&self.api_host, &journal.api_host) {
            out.push(format!(
                "API host: journal has {}, this run has {}",
                journal.api_host, self.api_host
            ));
        }
        out
    }
}

/// Hosts name the same API when equal, or when both are on loopback (a local emulator gets a
/// new port each time it starts).
fn same_api_host(a: &str, b: &str) -> bool {
    fn loopback(h: &str) -> bool {
        let host = h.rsplit_once(':').map_or(h, |(host, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                host
            } else {
                h
            }
        });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
    a == b || (loopback(a) && loopback(b))
}

/// The first line of a journal, and one more line each time a run resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub tool_version: String,
    pub started_at: String,
    pub settings: Settings,
    pub sources: Vec<String>,
    /// The configured pace, e.g. "240/min".
    pub rate: String,
    pub concurrency: usize,
    /// False for the run that created the journal.
    pub resumed: bool,
    #[serde(default)]
    pub dedupe: bool,
    #[serde(default)]
    pub max_requests: Option<u64>,
}

/// The last line a run writes: what this run did (counts that are not per item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunEnd {
    pub finished_at: String,
    pub wall_secs: f64,
    /// "completed", "interrupted", "terminated" or "stopped".
    pub outcome: String,
    /// Why the run stopped early, in words, with what to do next.
    pub stop_reason: Option<String>,
    pub exit_code: i32,
    /// Items found in this run's sources (images and would-be images, not ignored files).
    pub inputs: u64,
    /// Non-image files skipped by the folder walk.
    pub ignored: u64,
    /// Items already done by an earlier run with the same content, skipped.
    pub skipped_done: u64,
    /// Items that reused the result of an identical image (credits saved).
    pub deduplicated: u64,
    /// Records written by this run.
    pub recorded: u64,
    /// Items left without a record because the run stopped before submitting them.
    pub not_processed: u64,
    /// HTTP requests sent by this run.
    pub requests: u64,
    /// Requests per minute over the time this run was sending.
    pub achieved_rate_per_min: Option<f64>,
    /// True when the run stopped before reading a manifest on standard input to its end, so
    /// `inputs` and `not_processed` cover only what was read.
    #[serde(default)]
    pub input_unread: bool,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Run(RunInfo),
    Item(Box<Record>),
    End(RunEnd),
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the journal {path} is damaged at line {line}: {message}; repair or remove that line, \
         or rerun with --fresh to start a new journal (the old one is kept)"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{path} does not look like a liveness-batch journal (its first line is not a run header)"
    )]
    NotAJournal { path: PathBuf },
    #[error(
        "another liveness-batch run is using {dir} (lock file {lock}{holder}); wait for it to finish \
         or choose another --out"
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error(
        "this run's settings differ from the journal in {dir}:\n  {}\nRerun with the journal's \
         settings, add --force to resume anyway (results will mix settings), or --fresh to start a \
         new journal (the old one is kept)",
        differences.join("\n  ")
    )]
    SettingsChanged {
        dir: PathBuf,
        differences: Vec<String>,
    },
}

/// A compact, fixed-size digest of an item key, for indexes that must stay small.
pub fn key_digest(key: &str) -> u128 {
    let d = Sha256::digest(key.as_bytes());
    u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
}

/// The first 16 bytes of a SHA-256 as a number, for compact content indexes.
pub fn content_digest_of(sha256: &[u8; 32]) -> u128 {
    u128::from_le_bytes(sha256[..16].try_into().expect("16 bytes"))
}

/// The first 16 bytes of a hex SHA-256 as a number, for compact content indexes.
pub fn content_digest(sha256_hex: &str) -> Option<u128> {
    let bytes = hex::decode(sha256_hex.get(..32)?).ok()?;
    Some(u128::from_le_bytes(bytes.try_into().ok()?))
}

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
        let file = File::open(path).map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
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

    pub fn path(&self) -> &Path {
        &self.path
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

    fn corrupt(&self, message: impl Into<String>) -> JournalError {
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
            return Some(match serde_json::from_slice::<Line>(raw) {
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

/// Reads journal lines by their offsets (as given by the reader or the writer). Offsets that
/// follow each other closely are read from the buffer without seeking, so reading many records
/// in a nearly sequential order costs few system calls. The journal is append-only, so lines
/// already written never change under the buffer.
pub struct LinesAt {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    buf: Vec<u8>,
}

impl LinesAt {
    const BUFFER: usize = 64 * 1024;

    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let file = File::open(path).map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(Self::BUFFER, file),
            pos: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The line that starts at `offset`.
    pub fn read(&mut self, offset: u64) -> Result<Line, JournalError> {
        let io_err = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let ahead = offset.wrapping_sub(self.pos) as i64;
        if (0..Self::BUFFER as i64).contains(&ahead) {
            self.reader.seek_relative(ahead).map_err(io_err)?;
        } else {
            self.reader.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        }
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(io_err)?;
        self.pos = offset + n as u64;
        serde_json::from_slice(self.buf.trim_ascii_end()).map_err(|e| JournalError::Corrupt {
            path: self.path.clone(),
            line: 0,
            message: format!("record at byte {offset}: {e}"),
        })
    }
}

/// What the resume logic needs to know about a key's latest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub content: Option<u128>,
    pub class: Class,
    pub offset: u64,
}

/// Compact index of a journal: the latest record per key, and the first reusable result per
/// content hash. Memory grows with the number of distinct keys only (about 60 bytes each).
#[derive(Debug, Default)]
pub struct Index {
    pub by_key: HashMap<u128, Done>,
    /// Content digest -> offset and class of a result (or rejection) that identical images can
    /// reuse; a result is preferred over a rejection. See [`Index::reusable`].
    pub by_content: HashMap<u128, (u64, Class)>,
    /// The settings of the latest run header.
    pub settings: Option<Settings>,
    pub runs: u64,
    pub records: u64,
}

/// The fields of a journal line that the index needs; the rest is skipped without allocating.
#[derive(Deserialize)]
struct LightLine {
    #[serde(rename = "type")]
    kind: String,
    key: Option<String>,
    sha256: Option<String>,
    class: Option<Class>,
    duplicate_of: Option<String>,
    settings: Option<Settings>,
}

/// Stream a journal's lines as the light fields indexes need, checking that it is a journal.
fn for_each_light(
    reader: &mut Reader,
    mut f: impl FnMut(u64, LightLine) -> Result<(), &'static str>,
) -> Result<(), JournalError> {
    let mut first = true;
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next?;
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let light: LightLine = match serde_json::from_slice(raw) {
            Ok(l) => l,
            Err(e) => return Err(reader.corrupt(e.to_string())),
        };
        if first && light.kind != "run" {
            return Err(JournalError::NotAJournal {
                path: reader.path().to_path_buf(),
            });
        }
        first = false;
        match light.kind.as_str() {
            "run" | "end" => {}
            "item" if light.key.is_none() || light.class.is_none() => {
                return Err(reader.corrupt("an item line without key or class"));
            }
            "item" => {}
            other => return Err(reader.corrupt(format!("unknown line type {other:?}"))),
        }
        f(offset, light).map_err(|m| reader.corrupt(m))?;
    }
    Ok(())
}

impl Index {
    /// Build the index by streaming the journal once.
    pub fn build(reader: &mut Reader) -> Result<Self, JournalError> {
        let mut index = Index::default();
        for_each_light(reader, |offset, light| {
            match light.kind.as_str() {
                "run" => {
                    index.runs += 1;
                    index.settings = light.settings;
                }
                "item" => {
                    index.records += 1;
                    let (Some(key), Some(class)) = (light.key, light.class) else {
                        return Err("an item line without key or class");
                    };
                    let content = light.sha256.as_deref().and_then(content_digest);
                    index.by_key.insert(
                        key_digest(&key),
                        Done {
                            content,
                            class,
                            offset,
                        },
                    );
                    if let Some(c) = content
                        && matches!(class, Class::Result | Class::Rejected)
                        && light.duplicate_of.is_none()
                    {
                        let slot = index.by_content.entry(c).or_insert((offset, class));
                        if slot.1 == Class::Rejected && class == Class::Result {
                            *slot = (offset, class);
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(index)
    }

    /// The offset of an earlier answer for this content that an identical image may reuse: a
    /// result, or a rejection unless `retry_failed` asks for rejected images to be sent again.
    pub fn reusable(&self, content: u128, retry_failed: bool) -> Option<u64> {
        self.by_content
            .get(&content)
            .filter(|(_, class)| reusable_class(*class, retry_failed))
            .map(|(offset, _)| *offset)
    }

    /// Whether `key` is finished with this content (so a resumed run skips it).
    pub fn is_done(&self, key: &str, content: Option<u128>, retry_failed: bool) -> bool {
        self.by_key
            .get(&key_digest(key))
            .is_some_and(|d| d.content == content && d.class.is_done(retry_failed))
    }
}

/// Which record is each key's latest, as a sorted vector of (key digest, offset): 24 bytes a
/// key, all that outputs need. Smaller than [`Index`], whose hash map also holds what resume needs.
#[derive(Debug, Default)]
pub struct Latest {
    entries: Vec<([u64; 2], u64)>,
}

fn split_digest(d: u128) -> [u64; 2] {
    [(d >> 64) as u64, d as u64]
}

impl Latest {
    pub fn build(reader: &mut Reader) -> Result<Self, JournalError> {
        let mut entries = Vec::new();
        for_each_light(reader, |offset, light| {
            if let Some(key) = light.key.as_deref().filter(|_| light.kind == "item") {
                entries.push((split_digest(key_digest(key)), offset));
            }
            Ok(())
        })?;
        // Stable sort: a key's records stay in journal order, so its last one is the latest.
        entries.sort_by_key(|e| e.0);
        let mut latest: Vec<([u64; 2], u64)> = Vec::with_capacity(entries.len());
        for e in entries {
            match latest.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => latest.push(e),
            }
        }
        latest.shrink_to_fit();
        Ok(Self { entries: latest })
    }

    /// Whether the record at `offset` is the latest for `key`.
    pub fn is_latest(&self, key: &str, offset: u64) -> bool {
        let d = split_digest(key_digest(key));
        self.entries
            .binary_search_by_key(&d, |e| e.0)
            .is_ok_and(|i| self.entries[i].1 == offset)
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether an answer of this class can stand for an identical image: a result always, a
/// rejection (the same bytes would be refused again, nothing billed) unless `retry_failed`.
pub fn reusable_class(class: Class, retry_failed: bool) -> bool {
    match class {
        Class::Result => true,
        Class::Rejected => !retry_failed,
        _ => false,
    }
}

/// Create `dir` (owner-only) if needed.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Open (creating) a file readable and writable by its owner only; existing files are narrowed too.
pub fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).mode(0o600);
    if append {
        opts.append(true);
    } else {
        opts.truncate(true);
    }
    let f = opts.open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Write a whole file owner-only, atomically (temporary file + rename), so a crash never
/// leaves a half-written output behind.
pub fn write_private_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("out")
    ));
    {
        let f = open_private(&tmp, false)?;
        let mut w = io::BufWriter::new(f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// The one-runner lock on an out dir: an OS advisory lock, released by the OS if the process dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    lock: path.clone(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(", held by process {holder}")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        write!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Appends lines to the journal: one `write` per line, data synced to disk at least every
/// [`SYNC_EVERY`] and on [`Writer::finish`].
pub struct Writer {
    path: PathBuf,
    file: File,
    len: u64,
    last_sync: Instant,
    dirty: bool,
    line: Vec<u8>,
}

impl Writer {
    /// Open for appending. A torn last line (from a crash mid-write) is cut off first so the
    /// file stays one JSON value per line; `good_len` comes from the [`Reader`] that read it.
    pub fn open(path: &Path, good_len: Option<u64>) -> Result<Self, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = open_private(path, true).map_err(io_err)?;
        if let Some(len) = good_len {
            file.set_len(len).map_err(io_err)?;
        }
        let len = file.metadata().map_err(io_err)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
            last_sync: Instant::now(),
            dirty: false,
            line: Vec::with_capacity(4096),
        })
    }

    /// Append one line; returns the offset it starts at.
    pub fn append(&mut self, line: &Line) -> Result<u64, JournalError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        self.line.push(b'\n');
        let offset = self.len;
        self.file
            .write_all(&self.line)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.len += self.line.len() as u64;
        self.dirty = true;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(offset)
    }

    /// Sync written data to disk if anything was written since the last sync.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.dirty {
            self.file.sync_data().map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), JournalError> {
        self.sync()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Decision, Record};

    fn settings() -> Settings {
        Settings {
            threshold: None,
            rotate_image: false,
            save_api_request: false,
            api_host: "verification.didit.me".into(),
            simulated: false,
        }
    }

    fn run_line() -> Line {
        Line::Run(RunInfo {
            tool_version: "0.1.0".into(),
            started_at: "2026-11-27T00:00:00Z".into(),
            settings: settings(),
            sources: vec!["photos".into()],
            rate: "240/min".into(),
            concurrency: 8,
            resumed: false,
            dedupe: true,
            max_requests: None,
        })
    }

    fn item(key: &str, sha: &str, class: Class) -> Line {
        Line::Item(Box::new(Record {
            key: key.into(),
            path: format!("{key}.jpg"),
            sha256: Some(sha.into()),
            class: Some(class),
            status: (class == Class::Result).then_some(Decision::Approved),
            ..Default::default()
        }))
    }

    const SHA_A: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
    const SHA_B: &str = "bb00000000000000000000000000000000000000000000000000000000000000";

    fn write_lines(path: &Path, lines: &[Line]) {
        let mut w = Writer::open(path, None).unwrap();
        for l in lines {
            w.append(l).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn round_trips_lines_with_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let lines = vec![
            run_line(),
            item("a", SHA_A, Class::Result),
            item("b", SHA_B, Class::Transient),
        ];
        write_lines(&p, &lines);
        let read: Vec<_> = Reader::open(&p).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(
            read.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
            lines
        );
        // offsets point at the lines
        let mut at = LinesAt::open(&p).unwrap();
        assert_eq!(at.read(read[2].0).unwrap(), lines[2]);
        assert_eq!(at.read(read[0].0).unwrap(), lines[0], "backwards");
        assert_eq!(
            at.read(read[1].0).unwrap(),
            lines[1],
            "forwards within the buffer"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn torn_last_line_is_reported_and_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        write_lines(&p, &[run_line(), item("a", SHA_A, Class::Result)]);
        let good = std::fs::metadata(&p).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"type":"item","key":"b","pa"#).unwrap();
        drop(f);

        let mut reader = Reader::open(&p).unwrap();
        let index = Index::build(&mut reader).unwrap();
        assert_eq!(index.records, 1);
        let torn = reader.torn_tail().expect("torn tail detected");
        assert_eq!(torn.offset, good);
        assert_eq!(torn.line, 3);

        let mut w = Writer::open(&p, Some(reader.good_len())).unwrap();
        w.append(&item("b", SHA_B, Class::Result)).unwrap();
        w.finish().unwrap();
        let all: Vec<_> = Reader::open(&p).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn complete_last_line_without_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let mut text = serde_json::to_string(&run_line()).unwrap();
        text.push('\n');
        text.push_str(&serde_json::to_string(&item("a", SHA_A, Class::Result)).unwrap());
        std::fs::write(&p, text).unwrap();
        let mut reader = Reader::open(&p).unwrap();
        let index = Index::build(&mut reader).unwrap();
        assert_eq!(index.records, 1);
        assert!(reader.torn_tail().is_none());
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let mut text = serde_json::to_string(&run_line()).unwrap();
        text.push_str("\n{not json\n");
        text.push_str(&serde_json::to_string(&item("a", SHA_A, Class::Result)).unwrap());
        text.push('\n');
        std::fs::write(&p, text).unwrap();
        let e = Index::build(&mut Reader::open(&p).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Reader::open(&p)
            .unwrap()
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        std::fs::write(
            &p,
            format!(
                "{}\n",
                serde_json::to_string(&item("a", SHA_A, Class::Result)).unwrap()
            ),
        )
        .unwrap();
        let e = Index::build(&mut Reader::open(&p).unwrap()).unwrap_err();
        assert!(matches!(e, JournalError::NotAJournal { .. }), "{e}");
    }

    #[test]
    fn index_keeps_the_latest_record_per_key_and_checks_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        write_lines(
            &p,
            &[
                run_line(),
                item("a", SHA_A, Class::Transient),
                item("b", SHA_B, Class::Rejected),
                item("a", SHA_A, Class::Result),
            ],
        );
        let index = Index::build(&mut Reader::open(&p).unwrap()).unwrap();
        let a = content_digest(SHA_A);
        let b = content_digest(SHA_B);
        assert!(index.is_done("a", a, false));
        assert!(index.is_done("a", a, true));
        assert!(
            !index.is_done("a", b, false),
            "changed content is screened again"
        );
        assert!(index.is_done("b", b, false));
        assert!(
            !index.is_done("b", b, true),
            "--retry-failed redoes rejected items"
        );
        assert!(!index.is_done("c", a, false));
        assert!(index.reusable(a.unwrap(), false).is_some());
        assert!(
            index.reusable(b.unwrap(), false).is_some(),
            "a rejection is reused..."
        );
        assert!(
            index.reusable(b.unwrap(), true).is_none(),
            "...unless --retry-failed"
        );
        assert_eq!(index.settings, Some(settings()));
        assert_eq!(index.runs, 1);
    }

    #[test]
    fn latest_picks_each_keys_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        write_lines(
            &p,
            &[
                run_line(),
                item("a", SHA_A, Class::Transient),
                item("b", SHA_B, Class::Result),
                item("a", SHA_A, Class::Result),
            ],
        );
        let offsets: Vec<u64> = Reader::open(&p).unwrap().map(|l| l.unwrap().0).collect();
        let latest = Latest::build(&mut Reader::open(&p).unwrap()).unwrap();
        assert_eq!(latest.len(), 2);
        assert!(!latest.is_latest("a", offsets[1]));
        assert!(latest.is_latest("b", offsets[2]));
        assert!(latest.is_latest("a", offsets[3]));
        assert!(!latest.is_latest("c", offsets[3]));
    }

    #[test]
    fn settings_differences_are_named() {
        let a = settings();
        let mut b = settings();
        assert!(b.differences(&a).is_empty());
        b.threshold = Some(50.0);
        b.save_api_request = true;
        let d = b.differences(&a);
        assert_eq!(d.len(), 2);
        assert!(d[0].contains("threshold") && d[0].contains("50"), "{d:?}");
        // emulator ports differ run to run; that is not a difference
        let mut s1 = settings();
        s1.simulated = true;
        s1.api_host = "127.0.0.1:1".into();
        let mut s2 = s1.clone();
        s2.api_host = "127.0.0.1:2".into();
        assert!(s2.differences(&s1).is_empty());
        // a local emulator restarted on another port is the same API; another host is not
        let mut l1 = settings();
        l1.api_host = "127.0.0.1:4000".into();
        let mut l2 = settings();
        l2.api_host = "localhost:5000".into();
        assert!(l2.differences(&l1).is_empty());
        let mut l3 = settings();
        l3.api_host = "[::1]:6000".into();
        assert!(l3.differences(&l1).is_empty());
        assert_eq!(settings().differences(&l1).len(), 1);
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(LOCK_FILE) && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn digests_are_stable() {
        assert_eq!(key_digest("a"), key_digest("a"));
        assert_ne!(key_digest("a"), key_digest("b"));
        assert!(content_digest(SHA_A).is_some());
        let bytes: [u8; 32] = hex::decode(SHA_A).unwrap().try_into().unwrap();
        assert_eq!(content_digest(SHA_A), Some(content_digest_of(&bytes)));
        assert!(content_digest("zz").is_none());
    }
}
