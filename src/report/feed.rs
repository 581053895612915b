//! The outputs' first two passes done as a scan writes a new journal: a [`Feed`] on the
//! journal writer sees every line as it is written and gathers what [`super::latest::scan`]
//! and the summary pass would read back at the end (each key's records, the summary, the
//! attention rows). The end of the scan then writes the results files only. Anything the feed
//! cannot vouch for (a line it could not take in, a journal on disk that is not the one it
//! saw, a key recorded twice) leaves the outputs to be built from the journal, as `report`
//! does; the outputs are the same either way.

use std::io;
use std::path::{Path, PathBuf};

use super::fold::{SummaryPass, Walked};
use super::latest::{self, KeyLine, Kind, Scanned};
use super::latest::{JournalState, LineMark};
use super::summary::Accumulator;
use crate::journal::{Line, Seen, Tap, key_digest};
use crate::kit::sort::Sorter;

/// Memory each of the feed's sorters may hold during the run before it spills to disk (the
/// pipeline's own buffers are in use meanwhile).
const BUDGET: usize = 512 << 10;

/// Gathers the outputs' first two passes from the lines a scan writes to a new journal.
pub struct Feed {
    dir: PathBuf,
    /// Set when a line could not be taken in: the outputs are then built from the journal.
    broken: bool,
    /// The lines taken in, to tell whether the journal on disk is still those; the last item
    /// record kept.
    seen: Seen,
    item_records: u64,
    /// Every item record.
    records: Sorter<KeyLine>,
    /// The summary pass, every record taken as its key's latest (checked at the end).
    pass: SummaryPass,
}

/// What the feed gathered, checked against the journal on disk.
pub(super) struct Fed {
    pub scanned: Scanned,
    /// The summary pass; `None` when a key has more than one record (the pass must then know
    /// which one is the latest, and reads the journal).
    pub summary: Option<(Accumulator, Walked)>,
}

impl Feed {
    /// A feed for a journal started empty in `out_dir` (its sorters spill there).
    pub fn new(out_dir: &Path) -> Self {
        Self {
            dir: out_dir.to_path_buf(),
            broken: false,
            seen: Seen::default(),
            item_records: 0,
            records: Sorter::new(out_dir, BUDGET),
            pass: SummaryPass::new(Accumulator::new(), out_dir, BUDGET),
        }
    }

    fn take(
        &mut self,
        offset: u64,
        raw: &[u8],
        sha256: &[u8; 32],
        line: &Line,
    ) -> io::Result<bool> {
        if !self.seen.take(offset, raw) || (offset == 0 && !matches!(line, Line::Run(_))) {
            return Ok(false);
        }
        if let Line::Gone(_) = line {
            // A key leaving the results: the journal's pass sorts it out (a journal a scan
            // starts has none: every key it holds was listed by that scan).
            return Ok(false);
        }
        if let Line::Item(r) = line {
            // What the journal's pass would refuse, or read back otherwise than it was
            // written, is left to that pass.
            if r.class.is_none() || r.score.is_some_and(|s| !s.is_finite()) {
                return Ok(false);
            }
            self.item_records += 1;
            self.seen.keep(sha256);
            self.records.push(KeyLine::new(
                key_digest(&r.key),
                offset,
                r.seq.unwrap_or(u64::MAX),
                Kind::Item,
            ))?;
        }
        self.pass.line(offset, raw, Some(sha256), line, true)?;
        Ok(true)
    }

    /// What was gathered, when the journal at `journal_path` holds exactly the lines the feed
    /// saw ([`Seen::holds`]); `None` otherwise.
    /// `budget`: memory each sorter of the build may hold.
    pub(super) fn finish(self, journal_path: &Path, budget: usize) -> io::Result<Option<Fed>> {
        if self.broken || !self.seen.holds(journal_path)? {
            return Ok(None);
        }
        let settled = latest::settle(self.records, &self.dir, budget)?;
        let state = JournalState {
            bytes: self.seen.next,
            item_records: self.item_records,
            first_line: Some(latest::mark(0, &self.seen.first)),
            last_item: self.seen.kept.map(|(offset, _, sha)| LineMark {
                offset,
                sha256: hex::encode(sha),
            }),
        };
        let summary = if settled.count == self.item_records {
            Some(self.pass.finish()?)
        } else {
            None
        };
        Ok(Some(Fed {
            scanned: Scanned {
                limit: state.bytes,
                torn: None,
                state,
                latest: settled.latest,
                order: settled.order,
                gone: settled.gone,
                gone_count: settled.gone_count,
            },
            summary,
        }))
    }
}

impl Tap for Feed {
    fn line(&mut self, offset: u64, raw: &[u8], sha256: &[u8; 32], line: &Line) {
        if self.broken {
            return;
        }
        if !matches!(self.take(offset, raw, sha256, line), Ok(true)) {
            // Give up, and give back the memory: the outputs will read the journal.
            self.broken = true;
            self.records = Sorter::new(&self.dir, BUDGET);
            self.pass = SummaryPass::new(Accumulator::new(), &self.dir, BUDGET);
            self.seen = Seen::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::fixtures::{item, run_line};
    use crate::journal::{Gone, JOURNAL_FILE, Writer};
    use crate::record::Class;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// Write `lines` to a new journal in `dir` with a feed on the writer; what it gathered.
    fn fed(dir: &Path, lines: &[Line]) -> Option<Fed> {
        let path = dir.join(JOURNAL_FILE);
        let mut w = Writer::open(&path, None)
            .unwrap()
            .tapped(Some(Feed::new(dir)));
        for l in lines {
            w.append(l).unwrap();
        }
        let feed = w.take_tap().unwrap();
        w.finish().unwrap();
        feed.finish(&path, 1 << 20).unwrap()
    }

    #[test]
    fn a_gone_line_leaves_the_outputs_to_the_journals_own_pass() {
        let dir = tempfile::tempdir().unwrap();
        let plain = [run_line(), item("a", SHA, Class::Result)];
        let gathered = fed(dir.path(), &plain).expect("the feed vouches for its journal");
        assert_eq!(gathered.scanned.gone_count, 0);
        let dir = tempfile::tempdir().unwrap();
        let gone = Line::Gone(Gone {
            key: "a".into(),
            since: "2026-01-02T00:00:00Z".into(),
            run_id: None,
        });
        let with_gone = [run_line(), item("a", SHA, Class::Result), gone];
        assert!(
            fed(dir.path(), &with_gone).is_none(),
            "a key leaving the results is sorted out by the journal's pass"
        );
    }
}
