//! `SHA256SUMS`: the SHA-256 of every output file, in the format `sha256sum -c` reads, written
//! last so it vouches for the files exactly as they were left. The results files are hashed
//! while they are written (and the hashes kept in the checkpoint, so a scan that leaves them as
//! they are does not read them again); the small files are hashed from their bytes.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{ReportError, io_err};
use crate::journal;
use crate::kit::{hashing::file_sha256, open::open_read};

pub const SUMS_FILE: &str = "SHA256SUMS";

/// Other files of the out dir listed when present (the scan writes the ignored-files list).
pub(super) const ALSO_LISTED: [&str; 2] = ["ignored.csv", "changes.csv"];

/// SHA-256 (hex) of bytes.
pub fn hex_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What SHA256SUMS's signature file is called.
pub const SIG_FILE: &str = "SHA256SUMS.minisig";

/// Write SHA256SUMS over `hashed` (name, hex SHA-256), the [`ALSO_LISTED`] files present and
/// the journal (hashed from disk: every run extends it), sorted by name, as `sha256sum` writes
/// them (`<hex>  <name>`). A signature of an earlier SHA256SUMS is removed (it no longer
/// matches; a signing run writes a new one). Returns every line listed but the journal's
/// (name, SHA-256) and, last, SHA256SUMS itself with the SHA-256 of what was written.
pub fn write(
    out_dir: &Path,
    hashed: &[(String, String)],
    journal_sha256: Option<[u8; 32]>,
) -> Result<Vec<(String, String)>, ReportError> {
    let mut lines: Vec<(String, String)> = hashed.to_vec();
    for name in ALSO_LISTED {
        if lines.iter().any(|(n, _)| n == name) {
            continue;
        }
        let path = out_dir.join(name);
        match file_sha256(&path) {
            Ok(sha) => lines.push((name.to_string(), sha)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    let journal_path = out_dir.join(journal::JOURNAL_FILE);
    let journal_sha = match journal_sha256 {
        Some(sha) => hex::encode(sha),
        None => file_sha256(&journal_path).map_err(io_err(&journal_path))?,
    };
    let mut all = lines.clone();
    all.push((journal::JOURNAL_FILE.to_string(), journal_sha));
    all.sort();
    lines.sort();
    let mut text = String::new();
    for (name, sha) in &all {
        text.push_str(&format!("{sha}  {name}\n"));
    }
    let path = out_dir.join(SUMS_FILE);
    let same = open_read(&path).is_ok_and(|mut f| {
        let mut old = Vec::new();
        io::Read::read_to_end(&mut f, &mut old).is_ok() && old == text.as_bytes()
    });
    if !same {
        // A signature of the SHA256SUMS it replaces no longer holds.
        super::remove_if_present(&out_dir.join(SIG_FILE))?;
        journal::write_private_atomic(&path, |w| w.write_all(text.as_bytes()))
            .map_err(io_err(&path))?;
    }
    lines.push((SUMS_FILE.to_string(), hex_of(text.as_bytes())));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_it_is_given_and_the_ignored_list_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ignored.csv"), b"path,reason\n").unwrap();
        std::fs::write(dir.path().join("journal.jsonl"), b"{}\n").unwrap();
        std::fs::write(dir.path().join(SIG_FILE), b"stale").unwrap();
        let listed = write(
            dir.path(),
            &[
                ("summary.json".into(), "bb".into()),
                ("results.csv".into(), "aa".into()),
            ],
            None,
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
                "{}  ignored.csv\n{}  journal.jsonl\naa  results.csv\nbb  summary.json\n",
                hex_of(b"path,reason\n"),
                hex_of(b"{}\n")
            )
        );
        assert_eq!(
            listed.len(),
            4,
            "the journal is listed, not returned: {listed:?}"
        );
        assert!(
            !dir.path().join(SIG_FILE).exists(),
            "a signature of another SHA256SUMS is removed"
        );
    }
}
