//! `ignored.csv`: every file the walk skipped (not an image, a link not followed, a special
//! file, hidden), with the reason, streamed as the walk finds them and put in place at the end,
//! unless the list already there is byte for byte the same: then it is left as it is.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ScanError;
use crate::journal;
use crate::kit::open::open_read;
use crate::report::csv::escape_cell;
use crate::report::state::Listed;

pub const FILE: &str = "ignored.csv";

/// The list being written (a temporary file until [`List::finish`]).
pub struct List {
    tmp: PathBuf,
    path: PathBuf,
    out: Option<io::BufWriter<std::fs::File>>,
    /// SHA-256 of everything written, for SHA256SUMS and the outputs' checkpoint.
    hash: Sha256,
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
            hash: Sha256::new(),
        };
        list.write(b"path,reason\n")?;
        Ok(list)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        out.write_all(bytes).map_err(io_error("write", &self.tmp))?;
        self.hash.update(bytes);
        Ok(())
    }

    pub fn push(&mut self, path: &str, reason: &str) -> Result<(), ScanError> {
        let mut row = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = row.write_record([escape_cell(path).as_ref(), escape_cell(reason).as_ref()]);
        let bytes = row.into_inner().unwrap_or_default();
        self.write(&bytes)
    }

    /// Put the list in place, or leave the one already there when it holds the same bytes;
    /// on failure nothing partial is left behind. `None` when the list was already finished.
    pub fn finish(mut self) -> Result<Option<Listed>, ScanError> {
        let Some(out) = self.out.take() else {
            return Ok(None);
        };
        let sha256 = hex::encode(std::mem::take(&mut self.hash).finalize());
        let done = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| {
                f.sync_data()?;
                same_file_content(&self.tmp, &self.path)
            })
            .and_then(|same| {
                if same {
                    std::fs::remove_file(&self.tmp)?;
                } else {
                    std::fs::rename(&self.tmp, &self.path)?;
                }
                Ok(same)
            });
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        let left = done.map_err(io_error("write", &self.path))?;
        Ok(Some(Listed {
            name: FILE.to_string(),
            sha256,
            left,
        }))
    }
}

impl Drop for List {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Whether `old` is a regular file (not a link to one) holding exactly the bytes of `new`,
/// compared a block at a time. A missing or unreadable `old` is not the same.
fn same_file_content(new: &Path, old: &Path) -> io::Result<bool> {
    let Ok(mut old) = open_read(old) else {
        return Ok(false);
    };
    let mut new = open_read(new)?;
    if old.metadata()?.len() != new.metadata()?.len() {
        return Ok(false);
    }
    let mut a = vec![0u8; 64 << 10];
    let mut b = vec![0u8; 64 << 10];
    loop {
        let n = read_full(&mut new, &mut a)?;
        let m = read_full(&mut old, &mut b)?;
        if n != m || a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fill `buf` as far as the file allows; fewer bytes only at its end.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn list(dir: &Path, rows: &[(&str, &str)]) -> Listed {
        let mut l = List::create(dir).unwrap();
        for (p, r) in rows {
            l.push(p, r).unwrap();
        }
        l.finish().unwrap().unwrap()
    }

    fn ino(p: &Path) -> u64 {
        std::fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn the_same_list_is_left_in_place_and_a_different_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let first = list(dir.path(), &[("a.txt", "not an image")]);
        assert!(!first.left, "nothing to leave the first time");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(first.sha256, hex::encode(Sha256::digest(&bytes)));
        let inode = ino(&path);

        let again = list(dir.path(), &[("a.txt", "not an image")]);
        assert!(again.left);
        assert_eq!(again.sha256, first.sha256);
        assert_eq!(ino(&path), inode, "the same file");
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());

        // one more row, a changed row, a shorter list: each replaces it
        for rows in [
            &[("a.txt", "not an image"), ("b.txt", "not an image")][..],
            &[("a.txt", "hidden")][..],
            &[][..],
        ] {
            let before = ino(&path);
            let l = list(dir.path(), rows);
            assert!(!l.left, "{rows:?}");
            assert_ne!(ino(&path), before, "{rows:?}");
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(l.sha256, hex::encode(Sha256::digest(&bytes)));
        }
    }

    #[test]
    fn same_length_but_other_bytes_past_the_first_block_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let mut bytes = vec![b'x'; 200_000];
        std::fs::write(&a, &bytes).unwrap();
        std::fs::write(&b, &bytes).unwrap();
        assert!(same_file_content(&a, &b).unwrap());
        bytes[150_000] = b'y';
        std::fs::write(&b, &bytes).unwrap();
        assert!(!same_file_content(&a, &b).unwrap());
        assert!(!same_file_content(&a, &dir.path().join("missing")).unwrap());
        assert!(!same_file_content(&a, dir.path()).unwrap(), "a folder");
    }

    #[test]
    fn a_link_in_place_of_the_list_is_replaced_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("victim");
        // the target holds exactly what the list will hold: still not "the same file"
        std::fs::write(&target, "path,reason\n").unwrap();
        let path = dir.path().join(FILE);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let l = list(dir.path(), &[]);
        assert!(!l.left);
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "path,reason\n");
    }
}
