//! `SHA256SUMS`: the SHA-256 of every output file, in the format `sha256sum -c` reads, written
//! last so it vouches for the files exactly as they were left. The results files are hashed
//! while they are written (and the hashes kept in the checkpoint, so a scan that leaves them as
//! they are does not read them again); the small files are hashed from their bytes.

use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{ReportError, io_err};
use crate::journal;

pub const SUMS_FILE: &str = "SHA256SUMS";

/// Other files of the out dir listed when present (the scan writes the ignored-files list).
pub(super) const ALSO_LISTED: [&str; 2] = ["ignored.csv", "changes.csv"];

/// SHA-256 (hex) of bytes.
pub fn hex_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Write SHA256SUMS over `hashed` (name, hex SHA-256) and the [`ALSO_LISTED`] files present,
/// sorted by name, as `sha256sum` writes them (`<hex>  <name>`). Returns every line listed
/// (name, SHA-256) and, last, SHA256SUMS itself with the SHA-256 of what was written.
pub fn write(
    out_dir: &Path,
    hashed: &[(String, String)],
) -> Result<Vec<(String, String)>, ReportError> {
    let mut lines: Vec<(String, String)> = hashed.to_vec();
    for name in ALSO_LISTED {
        if lines.iter().any(|(n, _)| n == name) {
            continue;
        }
        let path = out_dir.join(name);
        match super::state::open_read(&path) {
            Ok(mut f) => {
                let mut h = Sha256::new();
                io::copy(&mut f, &mut h).map_err(io_err(&path))?;
                lines.push((name.to_string(), hex::encode(h.finalize())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    lines.sort();
    let mut text = String::new();
    for (name, sha) in &lines {
        text.push_str(&format!("{sha}  {name}\n"));
    }
    let path = out_dir.join(SUMS_FILE);
    journal::write_private_atomic(&path, |w| w.write_all(text.as_bytes()))
        .map_err(io_err(&path))?;
    lines.push((SUMS_FILE.to_string(), hex_of(text.as_bytes())));
    Ok(lines)
}

/// A writer that hashes what passes through it.
pub struct Hashing<W> {
    pub inner: W,
    pub hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_it_is_given_and_the_ignored_list_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ignored.csv"), b"path,reason\n").unwrap();
        let listed = write(
            dir.path(),
            &[
                ("summary.json".into(), "bb".into()),
                ("results.csv".into(), "aa".into()),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap();
        assert_eq!(
            listed.last().unwrap(),
            &(SUMS_FILE.to_string(), hex_of(text.as_bytes()))
        );
        assert_eq!(listed[0].0, "ignored.csv");
        assert_eq!(
            text,
            format!(
                "{}  ignored.csv\naa  results.csv\nbb  summary.json\n",
                hex_of(b"path,reason\n")
            )
        );
    }
}
