//! The one check a journal passes before anything trusts it: every line's chain hash, the
//! journal's grammar (a result belongs to a run and follows the `sending` line that announced
//! its upload; a request id is recorded once; a duplicate reuses an answer that was recorded),
//! and, with a public key, every `seal` line's signature. It reads the whole journal once, in
//! bounded memory, and gives the journal's head (lines, bytes, hash of the last line) that the
//! caches (resume index, outputs' checkpoint) are checked against.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::seal::{self, Seal};
use super::{ChainCheck, JournalError, LineKind, Reader, TornTail, content_digest, key_digest};
use crate::kit::sort::Sorter;

/// Memory each of the verification's two sorts may hold before it spills to disk.
const SORT_BUDGET: usize = 1 << 20;

/// A journal state: its complete lines, their length, and the SHA-256 of the last one (line
/// break excluded): the chain head, which vouches for every line before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub lines: u64,
    pub bytes: u64,
    pub hash: [u8; 32],
}

/// The first thing found wrong, named by its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub offset: u64,
    pub reason: String,
}

/// What a verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub head: Head,
    pub torn: Option<TornTail>,
    /// The first line that breaks the chain, the grammar or a seal; `None` when every line holds.
    pub problem: Option<Problem>,
    /// How the chain stands ("chained" or "broken").
    pub chain_state: &'static str,
    /// Seal lines, and the key id of the first (all must name the same key).
    pub seals: u64,
    pub seal_key: Option<String>,
    /// Whether the signatures were checked (a public key was given).
    pub seals_checked: bool,
    /// Lines after the last seal (all of them when there is none), and whether a `run` or
    /// `end` line is among them (a run that ends writes a seal after its end line, and a
    /// resumed run one after its run header).
    pub unsealed_lines: u64,
    pub unsealed_run_or_end: bool,
    /// Item records.
    pub records: u64,
}

impl Verified {
    /// Whether the journal holds a line at all.
    pub fn is_empty(&self) -> bool {
        self.head.lines == 0
    }
}

/// The fields of a line its grammar needs; the rest is skipped without allocating.
#[derive(Deserialize)]
struct Fact<'a> {
    #[serde(rename = "type")]
    kind: LineKind,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    attempts: u32,
    #[serde(borrow, default)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    duplicate_of: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sha256: Option<Cow<'a, str>>,
    /// An end line's: how the run ended, and the records it wrote.
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default)]
    recorded: Option<u64>,
}

/// What the grammar sees of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    Run,
    /// A run's end: whether it completed (every upload it announced was then recorded), and
    /// how many records it says it wrote.
    End {
        completed: bool,
        recorded: Option<u64>,
    },
    Seal,
    /// An upload announced (by key digest).
    Sending(u128),
    /// A record; `sent`: it says requests were sent for it (not a duplicate, not refused).
    Record {
        key: u128,
        sent: bool,
    },
    /// Another line that must belong to a run (`unchanged`).
    InRun,
}

/// The journal's grammar as a small state machine: runs open with a `run` line and close with
/// an `end` line; records and announcements belong to an open run; a record of requests sent
/// follows the `sending` line of its run that announced them. (A run without an end line died;
/// the next `run` line opens a new one, and what it announced stays unrecorded.)
#[derive(Debug, Default)]
pub(super) struct Grammar {
    lines: u64,
    started: bool,
    open: bool,
    /// The line of the last `end`, for the message.
    ended_at: Option<u64>,
    /// Uploads of the open run announced and not yet recorded, by key.
    announced: HashMap<u128, u32>,
    /// Records of the open run.
    records: u64,
}

impl Grammar {
    /// The next line; the reason it breaks the grammar, if it does.
    pub(super) fn line(&mut self, event: Event) -> Result<(), String> {
        self.lines += 1;
        let n = self.lines;
        if !self.started && event != Event::Run {
            return Err(format!(
                "line {n} is not a run header: this is not the start of a journal (lines were \
                 removed before it, or it was rewritten)"
            ));
        }
        self.started = true;
        let outside = |what: &str, ended: Option<u64>| match ended {
            Some(e) => format!(
                "line {n} is {what} outside any run (after the end line at line {e}, before a \
                 new run header): no run of this tool wrote it"
            ),
            None => format!("line {n} is {what} outside any run"),
        };
        match event {
            Event::Run => {
                self.open = true;
                self.announced.clear();
                self.records = 0;
            }
            Event::Seal => {}
            _ if !self.open => {
                let what = match event {
                    Event::End { .. } => "an end line",
                    Event::Sending(_) => "an upload announcement",
                    Event::Record { .. } => "a record",
                    _ => "a line",
                };
                return Err(outside(what, self.ended_at));
            }
            Event::End {
                completed,
                recorded,
            } => {
                if let Some(r) = recorded.filter(|r| *r != self.records) {
                    return Err(format!(
                        "line {n} ends a run that wrote {r} record(s), but the journal holds {} \
                         for it: records of that run were removed or added",
                        self.records
                    ));
                }
                if completed && !self.announced.is_empty() {
                    return Err(format!(
                        "line {n} ends a run that completed, but {} upload(s) it announced have \
                         no record: a run that completes records every upload it announces, so \
                         records were removed",
                        self.announced.values().sum::<u32>()
                    ));
                }
                self.open = false;
                self.ended_at = Some(n);
                self.announced.clear();
            }
            Event::Sending(key) => *self.announced.entry(key).or_default() += 1,
            Event::Record { key, sent } => {
                self.records += 1;
                if sent {
                    match self.announced.get_mut(&key) {
                        Some(k) if *k > 1 => *k -= 1,
                        Some(_) => {
                            self.announced.remove(&key);
                        }
                        None => {
                            return Err(format!(
                                "line {n} records requests sent for an item that no `sending` \
                                 line of its run announced: the tool journals every upload \
                                 before it leaves, so this record was not written by a run"
                            ));
                        }
                    }
                }
            }
            Event::InRun => {}
        }
        Ok(())
    }
}

/// Verify the journal at `path`: chain, grammar, and (with `key`) every seal's signature.
/// Its sorts spill to `tmp_dir`. An I/O failure is an error; anything wrong with the journal
/// is [`Verified::problem`].
pub fn verify(
    path: &Path,
    key: Option<&seal::Verifier>,
    tmp_dir: &Path,
) -> Result<Verified, JournalError> {
    let sort_err = |source: std::io::Error| JournalError::Io {
        op: "sort the journal's request ids in",
        path: tmp_dir.to_path_buf(),
        source,
    };
    let mut reader = Reader::open(path)?;
    let mut walk = Walk {
        key,
        chain: ChainCheck::new(),
        grammar: Grammar::default(),
        ids: Sorter::new(tmp_dir, SORT_BUDGET),
        contents: Sorter::new(tmp_dir, SORT_BUDGET),
        problem: None,
        head: Head {
            lines: 0,
            bytes: 0,
            hash: super::CHAIN_START,
        },
        seals: 0,
        seal_key: None,
        unsealed_lines: 0,
        unsealed_run_or_end: false,
        records: 0,
        segment: (0, 0),
    };
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next?;
        walk.line(offset, raw).map_err(&sort_err)?;
    }
    let Walk {
        mut head,
        mut problem,
        ..
    } = walk;
    head.bytes = reader.good_len();
    if problem.is_none() {
        problem =
            repeated_ids(walk.ids, &sort_err)?.or(orphan_duplicates(walk.contents, &sort_err)?);
    }
    if problem.is_none() && head.lines > 0 && !walk.grammar.started {
        problem = Some(Problem {
            line: 1,
            offset: 0,
            reason: "the journal holds only blank lines".into(),
        });
    }
    Ok(Verified {
        head,
        torn: reader.torn_tail(),
        chain_state: walk.chain.state(),
        problem,
        seals: walk.seals,
        seal_key: walk.seal_key,
        seals_checked: key.is_some(),
        unsealed_lines: walk.unsealed_lines,
        unsealed_run_or_end: walk.unsealed_run_or_end,
        records: walk.records,
    })
}

/// The verification's state, fed the journal's lines in order.
struct Walk<'a> {
    key: Option<&'a seal::Verifier>,
    chain: ChainCheck,
    grammar: Grammar,
    /// (request id digest, line) of every record of requests sent.
    ids: Sorter<(u64, u64)>,
    /// (content digest, line * 2 + 1 for a duplicate, + 0 for an answered record).
    contents: Sorter<(u64, u64)>,
    problem: Option<Problem>,
    head: Head,
    seals: u64,
    seal_key: Option<String>,
    unsealed_lines: u64,
    unsealed_run_or_end: bool,
    records: u64,
    /// Where the current journal starts (offset, lines before it): shards merged one after
    /// another each start a chain (and count their seals' bytes and lines) from their own
    /// first line.
    segment: (u64, u64),
}

impl Walk<'_> {
    /// The line `raw` at `offset`; an error is a failure of the sort files.
    fn line(&mut self, offset: u64, raw: &[u8]) -> std::io::Result<()> {
        let hash: [u8; 32] = Sha256::digest(raw).into();
        self.chain.feed_hashed(offset, raw, &hash);
        let line = self.chain.lines;
        let head = Head {
            lines: line,
            bytes: 0,
            hash,
        };
        let prev = std::mem::replace(&mut self.head, head);
        if raw.iter().all(u8::is_ascii_whitespace) {
            self.head.hash = prev.hash;
            self.grammar.lines += 1;
            return Ok(());
        }
        if self.problem.is_some() {
            return Ok(());
        }
        if let Some(b) = &self.chain.broken {
            self.problem = Some(Problem {
                line: b.line,
                offset: b.offset,
                reason: b.reason.clone(),
            });
            return Ok(());
        }
        let fact: Fact = match serde_json::from_slice(raw) {
            Ok(f) => f,
            Err(e) => {
                self.fail(
                    line,
                    offset,
                    format!("line {line} is not a journal line: {e}"),
                );
                return Ok(());
            }
        };
        self.unsealed_lines += 1;
        let event = match self.event(&fact, raw, line, offset, prev.hash)? {
            Ok(event) => event,
            Err(reason) => {
                self.fail(line, offset, reason);
                return Ok(());
            }
        };
        if let Err(reason) = self.grammar.line(event) {
            self.fail(line, offset, reason);
        }
        Ok(())
    }

    fn fail(&mut self, line: u64, offset: u64, reason: String) {
        self.problem = Some(Problem {
            line,
            offset,
            reason,
        });
    }

    /// What the line `fact` (number `line`, at `offset`) is to the grammar, or what is wrong
    /// with it; `prev_hash`: the SHA-256 of the line before it.
    fn event(
        &mut self,
        fact: &Fact,
        raw: &[u8],
        line: u64,
        offset: u64,
        prev_hash: [u8; 32],
    ) -> std::io::Result<Result<Event, String>> {
        Ok(Ok(match fact.kind {
            LineKind::Run => {
                if line > 1 && super::read::prev_of(raw) == Some(super::CHAIN_START) {
                    self.segment = (offset, line - 1);
                }
                self.unsealed_run_or_end = true;
                Event::Run
            }
            LineKind::End => {
                self.unsealed_run_or_end = true;
                Event::End {
                    completed: fact.outcome.as_deref() == Some("completed"),
                    recorded: fact.recorded,
                }
            }
            LineKind::Sending => Event::Sending(key_digest(fact.key.as_deref().unwrap_or(""))),
            // A key this run's sources no longer hold: written by a run, before its end line.
            LineKind::Unchanged | LineKind::Gone => Event::InRun,
            LineKind::Item => {
                self.records += 1;
                let key = key_digest(fact.key.as_deref().unwrap_or(""));
                let follower = fact.duplicate_of.is_some();
                let sent = fact.attempts > 0 && !follower;
                if let Some(c) = fact.sha256.as_deref().and_then(content_digest) {
                    if follower {
                        self.contents.push((c as u64, line * 2 + 1))?;
                    } else if sent {
                        self.contents.push((c as u64, line * 2))?;
                    }
                }
                if sent && let Some(id) = fact.request_id.as_deref().filter(|i| !i.is_empty()) {
                    self.ids.push((key_digest(id) as u64, line))?;
                }
                Event::Record { key, sent }
            }
            LineKind::Seal => {
                let at = Head {
                    lines: line - 1 - self.segment.1,
                    bytes: offset - self.segment.0,
                    hash: prev_hash,
                };
                let seal = match check_seal(raw, line, &at, self.key) {
                    Ok(seal) => seal,
                    Err(reason) => return Ok(Err(reason)),
                };
                self.seals += 1;
                match &self.seal_key {
                    None => self.seal_key = Some(seal.key_id),
                    Some(k) if *k != seal.key_id => {
                        return Ok(Err(format!(
                            "the seal at line {line} names key {}, the seals before it key {k}: \
                             a journal is signed by one key",
                            seal.key_id
                        )));
                    }
                    Some(_) => {}
                }
                self.unsealed_lines = 0;
                self.unsealed_run_or_end = false;
                Event::Seal
            }
        }))
    }
}

/// A seal line: it must describe the journal before it, and (with a key) verify.
fn check_seal(
    raw: &[u8],
    line: u64,
    before: &Head,
    key: Option<&seal::Verifier>,
) -> Result<Seal, String> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(flatten)]
        seal: Seal,
    }
    let seal = serde_json::from_slice::<Line>(raw)
        .map_err(|e| format!("line {line} is not a seal line: {e}"))?
        .seal;
    if seal.bytes != before.bytes
        || seal.lines != before.lines
        || seal.head != hex::encode(before.hash)
    {
        return Err(format!(
            "the seal at line {line} vouches for {} lines ({} bytes) ending with a line of \
             SHA-256 {}, but the {} lines before it ({} bytes) end with {}: lines before it \
             were changed, removed or inserted",
            seal.lines,
            seal.bytes,
            seal.head,
            before.lines,
            before.bytes,
            hex::encode(before.hash)
        ));
    }
    if let Some(key) = key {
        key.check_seal(&seal)
            .map_err(|e| format!("the seal at line {line} does not verify: {e}"))?;
    }
    Ok(seal)
}

/// The first record whose request id an earlier record already carries.
fn repeated_ids(
    ids: Sorter<(u64, u64)>,
    sort_err: &impl Fn(std::io::Error) -> JournalError,
) -> Result<Option<Problem>, JournalError> {
    let mut first: Option<Problem> = None;
    let mut prev: Option<(u64, u64)> = None;
    for next in ids.finish().map_err(sort_err)? {
        let (id, line) = next.map_err(sort_err)?;
        if let Some((p_id, p_line)) = prev
            && p_id == id
            && first.as_ref().is_none_or(|f| f.line > line)
        {
            first = Some(Problem {
                line,
                offset: 0,
                reason: format!(
                    "line {line} carries the request id of the record at line {p_line}: one \
                     request is answered once, so one of the two records was copied"
                ),
            });
        }
        prev = Some((id, line));
    }
    Ok(first)
}

/// The first duplicate record that reuses an answer no earlier record of the same image holds.
fn orphan_duplicates(
    contents: Sorter<(u64, u64)>,
    sort_err: &impl Fn(std::io::Error) -> JournalError,
) -> Result<Option<Problem>, JournalError> {
    let mut first: Option<Problem> = None;
    let mut group: Option<u64> = None;
    let mut answered = false;
    for next in contents.finish().map_err(sort_err)? {
        let (content, tagged) = next.map_err(sort_err)?;
        if group != Some(content) {
            group = Some(content);
            answered = false;
        }
        let (line, follower) = (tagged / 2, tagged % 2 == 1);
        if !follower {
            answered = true;
        } else if !answered && first.as_ref().is_none_or(|f| f.line > line) {
            first = Some(Problem {
                line,
                offset: 0,
                reason: format!(
                    "line {line} is a duplicate that reuses the answer of an identical image, \
                     but no record before it answered that image"
                ),
            });
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[Event]) -> Result<(), String> {
        let mut g = Grammar::default();
        events.iter().try_for_each(|e| g.line(*e))
    }

    const A: u128 = 1;
    const B: u128 = 2;
    const END: Event = Event::End {
        completed: true,
        recorded: None,
    };

    #[test]
    fn a_run_that_completed_recorded_every_upload_it_announced_and_as_many_records_as_it_says() {
        let stopped = Event::End {
            completed: false,
            recorded: Some(0),
        };
        // stopped before the upload left: announced, never recorded
        run(&[Event::Run, Event::Sending(A), stopped]).unwrap();
        let e = run(&[Event::Run, Event::Sending(A), END]).unwrap_err();
        assert!(e.contains("1 upload(s) it announced have no record"), "{e}");
        let counted = |n| Event::End {
            completed: true,
            recorded: Some(n),
        };
        let a = Event::Record {
            key: A,
            sent: false,
        };
        run(&[Event::Run, a, a, counted(2)]).unwrap();
        let e = run(&[Event::Run, a, counted(2)]).unwrap_err();
        assert!(
            e.contains("wrote 2 record(s), but the journal holds 1"),
            "{e}"
        );
        let e = run(&[Event::Run, a, a, a, counted(2)]).unwrap_err();
        assert!(e.contains("holds 3"), "{e}");
    }

    #[test]
    fn a_run_with_announced_records_refusals_and_duplicates_holds() {
        run(&[
            Event::Run,
            Event::Sending(A),
            Event::Record {
                key: B,
                sent: false,
            },
            Event::Record { key: A, sent: true },
            Event::InRun,
            Event::End {
                completed: true,
                recorded: None,
            },
            Event::Seal,
            Event::Run,
            Event::Seal,
            Event::Sending(A),
            Event::Sending(B),
            // a run that died: the next header opens a new one
            Event::Run,
            Event::Sending(A),
            Event::Record { key: A, sent: true },
            Event::End {
                completed: true,
                recorded: None,
            },
        ])
        .unwrap();
    }

    #[test]
    fn a_record_after_the_end_line_is_outside_any_run() {
        let e = run(&[
            Event::Run,
            Event::End {
                completed: true,
                recorded: None,
            },
            Event::Record {
                key: A,
                sent: false,
            },
        ]);
        assert_eq!(
            e.unwrap_err(),
            "line 3 is a record outside any run (after the end line at line 2, before a new run \
             header): no run of this tool wrote it"
        );
        let e = run(&[Event::Run, END, Event::Sending(A)]).unwrap_err();
        assert!(
            e.starts_with("line 3 is an upload announcement outside"),
            "{e}"
        );
        let e = run(&[Event::Run, END, END]).unwrap_err();
        assert!(e.starts_with("line 3 is an end line outside"), "{e}");
        let e = run(&[Event::Run, END, Event::InRun]).unwrap_err();
        assert!(e.starts_with("line 3 is a line outside"), "{e}");
    }

    #[test]
    fn a_record_of_requests_sent_needs_its_announcement_in_its_own_run() {
        let e = run(&[Event::Run, Event::Record { key: A, sent: true }]).unwrap_err();
        assert!(e.contains("line 2 records requests sent"), "{e}");
        // announced by a run that died: not this run's
        let e = run(&[
            Event::Run,
            Event::Sending(A),
            Event::Run,
            Event::Record { key: A, sent: true },
        ])
        .unwrap_err();
        assert!(e.contains("line 4 records"), "{e}");
        // one announcement, one record
        let e = run(&[
            Event::Run,
            Event::Sending(A),
            Event::Record { key: A, sent: true },
            Event::Record { key: A, sent: true },
        ])
        .unwrap_err();
        assert!(e.contains("line 4 records"), "{e}");
        // another key's announcement does not count
        let e = run(&[
            Event::Run,
            Event::Sending(B),
            Event::Record { key: A, sent: true },
        ]);
        assert!(e.is_err());
    }

    #[test]
    fn the_first_line_must_be_a_run_header() {
        let e = run(&[Event::Sending(A)]).unwrap_err();
        assert!(e.starts_with("line 1 is not a run header"), "{e}");
        assert!(run(&[Event::Seal]).is_err());
    }
}
