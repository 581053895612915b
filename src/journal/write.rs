//! Appending to the journal: one `write` per line, synced at least every [`SYNC_EVERY`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{JournalError, Line, SYNC_EVERY, open_private};

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
        let file = open_private(path, true).map_err(JournalError::io("open", path))?;
        if let Some(len) = good_len {
            file.set_len(len)
                .map_err(JournalError::io("cut the torn last line of", path))?;
        }
        let len = file
            .metadata()
            .map_err(JournalError::io("inspect", path))?
            .len();
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
        serde_json::to_writer(&mut self.line, line)
            .map_err(|e| JournalError::io("encode a line for", &self.path)(e.into()))?;
        self.line.push(b'\n');
        let offset = self.len;
        self.file
            .write_all(&self.line)
            .map_err(JournalError::io("write", &self.path))?;
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
            self.file
                .sync_data()
                .map_err(JournalError::io("sync", &self.path))?;
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
