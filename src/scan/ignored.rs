//! `ignored.csv`: every file the walk skipped (not an image, a link not followed, a special
//! file, hidden), with the reason, streamed as the walk finds them and put in place at the end.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::ScanError;
use crate::journal;
use crate::report::csv::escape_cell;

pub const FILE: &str = "ignored.csv";

/// The list being written (a temporary file until [`List::finish`]).
pub struct List {
    tmp: PathBuf,
    path: PathBuf,
    out: Option<io::BufWriter<std::fs::File>>,
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ScanError + 'a {
    move |source| ScanError::OutDir {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl List {
    pub fn create(dir: &Path) -> Result<Self, ScanError> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let file = journal::open_private(&tmp, false).map_err(io_error("create", &tmp))?;
        // From here on, dropping the list removes the temporary file.
        let mut list = Self {
            tmp,
            path,
            out: Some(io::BufWriter::new(file)),
        };
        if let Some(out) = list.out.as_mut() {
            out.write_all(b"path,reason\n")
                .map_err(io_error("write", &list.tmp))?;
        }
        Ok(list)
    }

    pub fn push(&mut self, path: &str, reason: &str) -> Result<(), ScanError> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let mut row = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = row.write_record([escape_cell(path).as_ref(), escape_cell(reason).as_ref()]);
        let bytes = row.into_inner().unwrap_or_default();
        out.write_all(&bytes).map_err(io_error("write", &self.tmp))
    }

    /// Put the list in place; on failure nothing partial is left behind.
    pub fn finish(mut self) -> Result<(), ScanError> {
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let done = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        done.map_err(io_error("write", &self.path))
    }
}

impl Drop for List {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
