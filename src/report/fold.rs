//! The summary pass: one fold over the journal's lines in order, into the summary's
//! accumulator, the carried columns, the attention rows and the input fingerprint of the latest
//! records; fed by a scan's writer as it writes the journal, or by a walk of the journal.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use super::out::sort_err;
use super::read::parse_line;
use super::summary::Accumulator;
use super::{ReportError, html};
use crate::journal::{JournalError, Line, Reader};
use crate::kit::sort::{self, Sorted};

/// What the summary pass gathers besides the summary itself.
pub(super) struct Walked {
    /// Every manifest column carried by a latest record.
    pub carried: BTreeSet<String>,
    pub attention: html::Attention,
}

/// The summary pass, fed the journal's lines in order: the summary's accumulator, and the
/// carried columns, the attention rows and the input fingerprint of the latest records.
pub(super) struct SummaryPass {
    acc: Accumulator,
    carried: BTreeSet<String>,
    attention: html::Attention,
    /// The per-item digests of the input fingerprint, sorted whatever their number.
    digests: sort::Sorter<[u8; 32]>,
}

impl SummaryPass {
    /// A pass adding to `acc`; its sorter holds at most `budget` bytes, spilling to `tmp_dir`.
    pub(super) fn new(acc: Accumulator, tmp_dir: &Path, budget: usize) -> Self {
        Self {
            acc,
            carried: BTreeSet::new(),
            attention: html::Attention::new(),
            digests: sort::Sorter::new(tmp_dir, budget),
        }
    }

    /// A blank line (it counts in the chain check only).
    fn blank(&mut self, offset: u64, raw: &[u8]) {
        self.acc.on_raw_line(offset, raw);
    }

    /// The line `line` at `offset`, `raw` its bytes (line break excluded), `sha256` their
    /// SHA-256 when the caller has it already; `latest`: an item record that is its key's
    /// latest.
    pub(super) fn line(
        &mut self,
        offset: u64,
        raw: &[u8],
        sha256: Option<&[u8; 32]>,
        line: &Line,
        latest: bool,
    ) -> io::Result<()> {
        match sha256 {
            Some(hash) => self.acc.on_hashed_line(offset, raw, hash),
            None => self.acc.on_raw_line(offset, raw),
        }
        match line {
            Line::Run(run) => self.acc.on_run(run),
            Line::End(end) => self.acc.on_end(end),
            // An upload announced: one the run never records has an unknown outcome.
            Line::Sending(s) => self.acc.on_sending(&s.key),
            // New versions of unchanged items matter to a resume; a key listed again or gone
            // is settled by the first pass; seals are for the verification.
            Line::Unchanged(_) | Line::Gone(_) | Line::Seal(_) => {}
            Line::Item(r) => {
                self.acc.on_record(r, latest);
                if latest {
                    for name in r.columns.keys() {
                        if !self.carried.contains(name) {
                            self.carried.insert(name.clone());
                        }
                    }
                    self.attention.offer(r);
                    if r.class == Some(crate::record::Class::Result)
                        && let Some(sha) = &r.sha256
                    {
                        let digest = match &r.ref_sha256 {
                            // A pair's content is both images.
                            Some(reference) => {
                                crate::audit::item_digest(&r.key, &format!("{sha}\t{reference}"))
                            }
                            None => crate::audit::item_digest(&r.key, sha),
                        };
                        self.digests.push(digest)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The accumulator, with the input fingerprint set, and what else the pass gathered.
    pub(super) fn finish(self) -> io::Result<(Accumulator, Walked)> {
        let mut acc = self.acc;
        let mut fingerprint = crate::audit::Fingerprint::new();
        for d in self.digests.finish()? {
            fingerprint.push(d?);
        }
        let (sha256, items) = fingerprint.finish();
        acc.set_input_fingerprint(sha256, items);
        let walked = Walked {
            carried: self.carried,
            attention: self.attention,
        };
        Ok((acc, walked))
    }
}

/// Stream the journal's complete lines into `acc`, gathering the carried columns and the
/// attention rows of the latest records (`latest`: their offsets, ascending).
pub(super) fn walk_latest(
    journal_path: &Path,
    limit: u64,
    latest: &mut Sorted<u64>,
    acc: Accumulator,
    tmp_dir: &Path,
    budget: usize,
) -> Result<(Accumulator, Walked), ReportError> {
    let sort_err = sort_err(tmp_dir);
    let mut pass = SummaryPass::new(acc, tmp_dir, budget);
    let mut next_latest = latest.next().transpose().map_err(&sort_err)?;
    let mut reader = Reader::open(journal_path)?;
    let mut line_no = 0u64;
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next?;
        line_no += 1;
        if offset >= limit {
            break;
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            pass.blank(offset, raw);
            continue;
        }
        let line = parse_line(raw).map_err(|e| JournalError::Corrupt {
            path: journal_path.to_path_buf(),
            line: line_no,
            message: e.to_string(),
        })?;
        let mut is_latest = false;
        if let Line::Item(_) = line {
            while next_latest.is_some_and(|l| l < offset) {
                next_latest = latest.next().transpose().map_err(&sort_err)?;
            }
            is_latest = next_latest == Some(offset);
        }
        pass.line(offset, raw, None, &line, is_latest)
            .map_err(&sort_err)?;
    }
    pass.finish().map_err(&sort_err)
}
