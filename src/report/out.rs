//! What every output file shares: written owner-only under a temporary name and renamed into
//! place ([`AtomicOut`]), the errors of the temporary sort files, and the torn-line warning.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ReportError;
use crate::journal::{self, TornTail};

/// An output file written owner-only under a temporary name and renamed into place by
/// [`AtomicOut::commit`]. Dropped uncommitted (an error, a full disk), it removes its temporary
/// file, and the previous version of the output stays as it was.
pub(super) struct AtomicOut {
    path: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
    committed: bool,
    /// SHA-256 of everything written, for SHA256SUMS.
    hash: Sha256,
}

impl AtomicOut {
    pub(super) fn create(path: &Path) -> io::Result<Self> {
        let tmp = path.with_extension(format!(
            "{}.tmp",
            path.extension().and_then(|e| e.to_str()).unwrap_or("out")
        ));
        match journal::open_private(&tmp, false) {
            Ok(f) => Ok(Self {
                path: path.to_path_buf(),
                tmp,
                w: Some(BufWriter::with_capacity(256 << 10, f)),
                committed: false,
                hash: Sha256::new(),
            }),
            Err(e) => {
                // A planted link is removed, never followed.
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.w
            .as_mut()
            .ok_or_else(|| io::Error::other("output already committed"))
    }

    /// Flush, sync and rename into place; returns the file's size and SHA-256 (hex).
    pub(super) fn commit(mut self) -> io::Result<(u64, String)> {
        let w = self.w.take().expect("committed once");
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_data()?;
        let len = f.metadata()?.len();
        std::fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        let hash = std::mem::take(&mut self.hash);
        Ok((len, hex::encode(hash.finalize())))
    }
}

impl Write for AtomicOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer()?.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)?;
        self.hash.update(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicOut {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.w.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub(super) fn torn_warning(what: &str, t: TornTail) -> String {
    format!(
        "{what}'s last line (line {}, {} bytes at byte {}) was cut short, probably by a crash or a kill; \
         that item has no result here and will be screened again by the next run",
        t.line, t.len, t.offset
    )
}

pub(super) fn torn_shard_warning(dir: &Path, t: TornTail) -> String {
    torn_warning(&format!("the journal in {}", dir.display()), t)
}

/// A failure of the temporary sort files in `dir`.
pub(super) fn sort_err(dir: &Path) -> impl Fn(io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    }
}
