//! The keys this run's sources no longer yield: a scan that read its whole input journals a
//! `gone` line, before its end line, for each key of the resume index whose latest line is a
//! record and that was not listed this time (the file deleted, renamed, or replaced by a link).
//! The keys listed are gathered as digests in a bounded sort; the few missing ones get their
//! text back from one pass over the journal's item lines.

use std::borrow::Cow;
use std::io;
use std::path::Path;

use serde::Deserialize;

use crate::journal::{Index, JournalError, KeyState, LineKind, Reader, key_digest};
use crate::kit::sort::{Sorted, Sorter};

/// Memory the sort of the keys listed may hold before it spills (8 bytes a key).
const BUDGET: usize = 2 << 20;

/// The keys this run's sources listed, as 64-bit digests (the resume index's own).
pub struct Seen {
    sorter: Option<Sorter<u64>>,
    /// Why the listing cannot be taken as the whole population, if it cannot.
    incomplete: Option<String>,
}

impl Seen {
    /// Its sort spills to unnamed temporary files in `dir` (the out dir).
    pub fn new(dir: &Path) -> Self {
        Self {
            sorter: Some(Sorter::new(dir, BUDGET)),
            incomplete: None,
        }
    }

    /// A key the sources listed (its [`key_digest`]).
    pub fn push(&mut self, key: u128) {
        if let Some(s) = self.sorter.as_mut()
            && let Err(e) = s.push(key as u64)
        {
            self.sorter = None;
            self.incomplete(format!("the keys listed could not be sorted: {e}"));
        }
    }

    /// Something may be missing from the listing (a folder that could not be read, a listing
    /// or a manifest that stopped midway): no key is taken for gone.
    pub fn incomplete(&mut self, why: String) {
        self.sorter = None;
        self.incomplete.get_or_insert(why);
    }

    /// The keys listed in order, or why the listing is not whole.
    pub fn finish(self) -> Result<Sorted<u64>, String> {
        match (self.sorter, self.incomplete) {
            (Some(s), None) => s
                .finish()
                .map_err(|e| format!("sorting the keys failed: {e}")),
            (_, Some(why)) => Err(why),
            (None, None) => Err("the keys listed were not kept".into()),
        }
    }
}

/// The keys of `index` whose latest line is a record (not already gone) and that `seen` (in
/// ascending order) does not hold, in digest order (8 bytes a key), and which of them have no
/// result (a bit a key, in the same order).
pub fn missing(index: &Index, seen: Sorted<u64>) -> io::Result<(Vec<u64>, Vec<bool>)> {
    let mut seen = seen.peekable();
    let mut out = Vec::new();
    let mut without_result = Vec::new();
    let mut failed = None;
    index.for_each_key(|key, state| {
        if failed.is_some() {
            return;
        }
        loop {
            match seen.peek() {
                Some(Ok(s)) if *s < key => {
                    seen.next();
                }
                Some(Ok(_)) | None => break,
                Some(Err(_)) => {
                    if let Some(Err(e)) = seen.next() {
                        failed = Some(e);
                    }
                    return;
                }
            }
        }
        let listed = matches!(seen.peek(), Some(Ok(s)) if *s == key);
        if !listed && !state.is_gone() {
            out.push(key);
            without_result.push(!has_result(state));
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok((out, without_result)),
    }
}

fn has_result(state: KeyState) -> bool {
    state.class() == crate::record::Class::Result
}

/// The fields of a journal line this pass needs.
#[derive(Deserialize)]
struct KeyOnly<'a> {
    #[serde(rename = "type")]
    kind: LineKind,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
}

/// Hand `f` the text of each key in `digests` (ascending), once, in the order of the journal's
/// first item line of the key, with the source that record names and the key's position in
/// `digests`; one pass over the lines the journal holds now (lines appended meanwhile, by `f`
/// itself, are not read), ended as soon as every key is found. Memory: a bit a key besides
/// `digests`. Returns how many keys `f` took (returned true for).
pub fn each_key_of(
    journal: &Path,
    digests: &[u64],
    mut f: impl FnMut(String, Option<&str>, usize) -> Result<bool, JournalError>,
) -> Result<usize, JournalError> {
    let mut taken = 0usize;
    let mut found = vec![0u64; digests.len().div_ceil(64)];
    let mut count = 0usize;
    let mut reader = Reader::open(journal)?;
    let end = std::fs::metadata(journal)
        .map_err(JournalError::io("inspect", journal))?
        .len();
    let mut line = 0u64;
    while count < digests.len()
        && let Some(next) = reader.next_raw()
    {
        let (offset, raw) = next?;
        if offset >= end {
            break;
        }
        line += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let light: KeyOnly = serde_json::from_slice(raw).map_err(|e| JournalError::Corrupt {
            path: journal.to_path_buf(),
            line,
            message: e.to_string(),
        })?;
        let (LineKind::Item, Some(key)) = (light.kind, light.key) else {
            continue;
        };
        let Ok(at) = digests.binary_search(&(key_digest(&key) as u64)) else {
            continue;
        };
        let (word, bit) = (at / 64, 1u64 << (at % 64));
        if found[word] & bit == 0 {
            found[word] |= bit;
            count += 1;
            taken += usize::from(f(key.into_owned(), light.source.as_deref(), at)?);
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Line, Writer, fixtures};
    use crate::record::Class;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn journal(dir: &Path, lines: &[Line]) -> std::path::PathBuf {
        let p = dir.join(crate::journal::JOURNAL_FILE);
        let mut w = Writer::open(&p, None).unwrap();
        for l in lines {
            w.append(l).unwrap();
        }
        w.finish().unwrap();
        p
    }

    fn gone(key: &str) -> Line {
        Line::Gone(crate::journal::Gone {
            key: key.into(),
            since: "2026-01-02T00:00:00Z".into(),
            run_id: None,
        })
    }

    #[test]
    fn the_keys_not_listed_are_missing_unless_already_gone() {
        let dir = tempfile::tempdir().unwrap();
        let p = journal(
            dir.path(),
            &[
                fixtures::run_line(),
                fixtures::item("a", SHA, Class::Result),
                fixtures::item("b", SHA, Class::Transient),
                fixtures::item("c", SHA, Class::Result),
                fixtures::item("d", SHA, Class::Result),
                gone("d"),
            ],
        );
        let index = Index::build(&mut Reader::open(&p).unwrap()).unwrap();
        // A tiny sort that spills: "a" listed, "b" and "c" not, "d" already gone.
        let mut seen = Seen {
            sorter: Some(Sorter::new(dir.path(), 16)),
            incomplete: None,
        };
        seen.push(key_digest("a"));
        for i in 0..100 {
            seen.push(key_digest(&format!("new{i}")));
        }
        let (digests, without_result) = missing(&index, seen.finish().unwrap()).unwrap();
        let mut want = vec![key_digest("b") as u64, key_digest("c") as u64];
        want.sort();
        assert_eq!(digests, want);
        assert_eq!(
            without_result.iter().filter(|n| **n).count(),
            1,
            "b has no result"
        );
        let mut keys = Vec::new();
        let n = each_key_of(&p, &digests, |k, _, _| {
            keys.push(k);
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(keys, ["b", "c"], "once each, in journal order");
    }

    #[test]
    fn the_index_keeps_an_unrepeated_unknown_outcome_of_the_same_content() {
        let dir = tempfile::tempdir().unwrap();
        let Line::Item(mut pending) = fixtures::item("a", SHA, Class::Transient) else {
            unreachable!()
        };
        pending.unknown_outcomes = 1;
        pending.unknown_pending = true;
        let p = journal(
            dir.path(),
            &[
                fixtures::run_line(),
                Line::Item(pending),
                fixtures::item("b", SHA, Class::Transient),
            ],
        );
        let index = Index::build(&mut Reader::open(&p).unwrap()).unwrap();
        let same = crate::journal::content_digest(SHA);
        let other = crate::journal::content_digest(&"b".repeat(64));
        assert!(index.unknown_pending(key_digest("a"), same));
        assert!(
            !index.unknown_pending(key_digest("a"), other),
            "another image"
        );
        assert!(!index.unknown_pending(key_digest("b"), same));
    }

    #[test]
    fn a_listing_that_may_be_short_takes_no_key_for_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Seen::new(dir.path());
        seen.push(1);
        seen.incomplete("cannot read photos/x: permission denied".into());
        seen.push(2);
        assert_eq!(
            seen.finish().err().unwrap(),
            "cannot read photos/x: permission denied"
        );
    }
}
