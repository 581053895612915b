//! Duplicate keys of a manifest read from a file, found before its rows are handed out by one
//! pass that sorts (key hash, row) in bounded memory (sorted runs spilled to unnamed temporary
//! files): only the keys on more than one row are kept in memory, with their first row, and
//! every key's first row stays in a sorted temporary file for the rare check of a renamed key.
//! A manifest on standard input cannot be read twice and keeps a map of every key instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::kit::sort::{self, Sorter};

/// Memory the sort may hold before it spills a sorted run.
const SORT_BUDGET: usize = 2 << 20;

/// Bytes of one (key hash, first row) entry in the file of every key.
const ENTRY: u64 = 16;

/// What the pass found, and the keys given out under a new name since.
pub(super) struct Duplicates {
    /// Key hash -> first row, for the keys on more than one row.
    repeated: HashMap<u64, u64>,
    /// Every key hash with its first row, sorted by hash.
    all: File,
    count: u64,
    /// Renamed keys given out (key hash -> the row given it).
    renamed: HashMap<u64, u64>,
}

impl Duplicates {
    /// From the (key hash, row) of every row, in row order; temporary files go to `dir`.
    pub(super) fn find(rows: impl Iterator<Item = (u64, u64)>, dir: &Path) -> io::Result<Self> {
        let mut sorter = Sorter::new(dir, SORT_BUDGET);
        for e in rows {
            sorter.push(e)?;
        }
        let mut w = BufWriter::with_capacity(64 << 10, sort::temp_file(dir)?);
        let mut repeated = HashMap::new();
        let mut count = 0u64;
        let mut last: Option<(u64, u64)> = None;
        for e in sorter.finish()? {
            let (hash, row) = e?;
            match last {
                // Sorted by hash, then row: the first entry of a hash is its first row.
                Some((h, first)) if h == hash => {
                    repeated.insert(h, first);
                }
                _ => {
                    w.write_all(&hash.to_le_bytes())?;
                    w.write_all(&row.to_le_bytes())?;
                    count += 1;
                    last = Some((hash, row));
                }
            }
        }
        repeated.shrink_to_fit();
        let all = w.into_inner().map_err(|e| e.into_error())?;
        Ok(Self {
            repeated,
            all,
            count,
            renamed: HashMap::new(),
        })
    }

    /// The row that was given the key of hash `hash` before row `row`, if any: an earlier row
    /// with the same key, or a key renamed earlier that reads the same.
    pub(super) fn given_before(&self, hash: u64, row: u64) -> Option<u64> {
        let original = self.repeated.get(&hash).copied().filter(|f| *f < row);
        match (original, self.renamed.get(&hash).copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Give the new name of hash `hash` to row `row` unless it is taken: given to an earlier
    /// row (renamed, or as its own key). True when it was free.
    pub(super) fn give_renamed(&mut self, hash: u64, row: u64) -> io::Result<bool> {
        if self.renamed.contains_key(&hash) || self.first_row(hash)?.is_some_and(|f| f < row) {
            return Ok(false);
        }
        self.renamed.insert(hash, row);
        Ok(true)
    }

    /// The first row whose own key has hash `hash`: a binary search of the file.
    fn first_row(&self, hash: u64) -> io::Result<Option<u64>> {
        let (mut lo, mut hi) = (0u64, self.count);
        let mut bytes = [0u8; ENTRY as usize];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            self.all.read_exact_at(&mut bytes, mid * ENTRY)?;
            let h = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            match h.cmp(&hash) {
                std::cmp::Ordering::Equal => {
                    return Ok(Some(u64::from_le_bytes(
                        bytes[8..].try_into().expect("8 bytes"),
                    )));
                }
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_on_several_rows_are_found_with_their_first_row_across_spilled_runs() {
        let dir = tempfile::tempdir().unwrap();
        // 300,000 rows (several 2 MiB runs of 16-byte entries); the key of row r is r modulo
        // 200,003, so rows 200,004 on repeat the keys of rows 1 to 99,997.
        let n = 300_000u64;
        let hash = |row: u64| (row % 200_003).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let d = Duplicates::find((1..=n).map(|r| (hash(r), r)), dir.path()).unwrap();
        assert_eq!(d.count, 200_003);
        assert_eq!(d.repeated.len(), n as usize - 200_003);
        // Row 200,004 repeats row 1's key; row 1 itself was given it first.
        assert_eq!(d.given_before(hash(1), 1), None);
        assert_eq!(d.given_before(hash(200_004), 200_004), Some(1));
        assert_eq!(
            d.given_before(hash(300_000), 300_000),
            Some(300_000 - 200_003)
        );
        assert_eq!(
            d.given_before(hash(150_000), 150_000),
            None,
            "a key on one row"
        );
        assert_eq!(d.first_row(hash(150_000)).unwrap(), Some(150_000));
        assert_eq!(d.first_row(hash(200_004)).unwrap(), Some(1));
        assert_eq!(d.first_row(12345).unwrap(), None);
    }

    #[test]
    fn a_renamed_key_is_not_given_twice_nor_taken_from_an_earlier_row() {
        let dir = tempfile::tempdir().unwrap();
        // Rows 1 and 3 share key 10; row 2's own key is 20, row 5's is 30.
        let rows = [(10, 1), (20, 2), (10, 3), (40, 4), (30, 5)];
        let mut d = Duplicates::find(rows.into_iter(), dir.path()).unwrap();
        assert_eq!(d.given_before(10, 3), Some(1));
        // Row 3's new name reads like row 2's key: taken; like row 5's key: free (row 5 comes
        // later and is then the duplicate).
        assert!(!d.give_renamed(20, 3).unwrap());
        assert!(d.give_renamed(30, 3).unwrap());
        assert!(!d.give_renamed(30, 4).unwrap(), "given to row 3 already");
        assert_eq!(d.given_before(30, 5), Some(3));
        assert_eq!(d.given_before(40, 4), None);
    }
}
