//! The dispatch decision for each item, as a synchronous state machine with no channels or
//! tasks inside: skip what an earlier run finished, record a local refusal, send a leader, let
//! identical images follow a finished leader, or hold them while it is in flight. The real run
//! and the dry run both ask it, so the dry run's estimate cannot drift from what a run does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::compact::CompactMap;
use crate::journal::Index;

/// What the dispatcher knows of one item once it has been read (or found unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The item key's digest ([`crate::journal::key_digest`]).
    pub key: u128,
    /// Digest of the content's SHA-256, when the bytes could be read.
    pub content: Option<u128>,
    /// Refused locally (not an image, too large, unreadable, a bad manifest row).
    pub refused: bool,
    /// The quick check found an earlier run finished this key at the item's current version:
    /// the item was not read.
    pub current: bool,
}

/// What to do with one item.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<T> {
    /// An earlier run finished this key at the same version or with the same content: nothing
    /// to do.
    Skip(T),
    /// Refused locally: record it, never send it.
    Refuse(T),
    /// Send it. With deduplication, identical items wait for its answer.
    Lead(T),
    /// Reuse the record of an identical image at this journal offset.
    Follow(T, u64),
    /// Held: an identical image is in flight; [`Dispatcher::complete`] releases it.
    Wait,
}

/// Items released when a leader finished.
#[derive(Debug, PartialEq, Eq)]
pub struct Released<T> {
    /// Items that reuse the leader's record at `offset`.
    pub follow: Vec<T>,
    pub offset: Option<u64>,
    /// The leader got no answer others can reuse: this waiter leads now (read it again and
    /// send it, or hand it back with [`Dispatcher::lead_failed`] if it cannot be sent).
    pub lead: Option<T>,
    /// The run stopped: these were never processed.
    pub dropped: Vec<T>,
}

impl<T> Default for Released<T> {
    fn default() -> Self {
        Self {
            follow: Vec::new(),
            offset: None,
            lead: None,
            dropped: Vec::new(),
        }
    }
}

/// The state machine. `T` is whatever the run carries per item (the item itself in a run).
pub struct Dispatcher<T> {
    index: Arc<Index>,
    dedupe: bool,
    retry_failed: bool,
    /// Contents with a leader in flight, and the identical items waiting for it, in input order.
    in_flight: HashMap<u128, VecDeque<T>>,
    /// Contents this run finished: identical items reuse the record at this offset. Compact,
    /// as it grows with every distinct image of the run.
    done: CompactMap<u128, u64>,
    waiting: usize,
    leading: usize,
}

impl<T> Dispatcher<T> {
    pub fn new(index: Arc<Index>, dedupe: bool, retry_failed: bool) -> Self {
        Self {
            index,
            dedupe,
            retry_failed,
            in_flight: HashMap::new(),
            done: CompactMap::new(),
            waiting: 0,
            leading: 0,
        }
    }

    /// Decide what happens to one item.
    pub fn admit(&mut self, item: T, facts: Facts) -> Decision<T> {
        if facts.current
            || self
                .index
                .is_done_digest(facts.key, facts.content, self.retry_failed)
        {
            return Decision::Skip(item);
        }
        let Some(content) = facts.content.filter(|_| !facts.refused) else {
            return Decision::Refuse(item);
        };
        if !self.dedupe {
            return Decision::Lead(item);
        }
        if let Some(waiters) = self.in_flight.get_mut(&content) {
            waiters.push_back(item);
            self.waiting += 1;
            return Decision::Wait;
        }
        if let Some(offset) = self
            .done
            .get(&content)
            .or_else(|| self.index.reusable(content, self.retry_failed))
        {
            return Decision::Follow(item, offset);
        }
        self.in_flight.insert(content, VecDeque::new());
        self.leading += 1;
        Decision::Lead(item)
    }

    /// The leader of `content` finished. `reusable` is the journal offset of a record that
    /// identical items may reuse (a result, or a rejection of the image itself); `None` when
    /// it got none (retries spent, a rejection of its own row's fields, or never sent).
    /// `stopped`: the run is stopping, so nobody leads again.
    pub fn complete(&mut self, content: u128, reusable: Option<u64>, stopped: bool) -> Released<T> {
        if !self.dedupe {
            return Released::default();
        }
        let Some(mut waiters) = self.in_flight.remove(&content) else {
            return Released::default();
        };
        self.leading -= 1;
        self.waiting -= waiters.len();
        match reusable {
            Some(offset) => {
                self.done.insert(content, offset);
                Released {
                    follow: waiters.into(),
                    offset: Some(offset),
                    ..Released::default()
                }
            }
            None if stopped => Released {
                dropped: waiters.into(),
                ..Released::default()
            },
            None => {
                let lead = waiters.pop_front();
                if lead.is_some() {
                    self.waiting += waiters.len();
                    self.leading += 1;
                    self.in_flight.insert(content, waiters);
                }
                Released {
                    lead,
                    ..Released::default()
                }
            }
        }
    }

    /// A waiter released to lead `content` could not be sent after all (its file changed or
    /// became unreadable): the next waiter leads instead. The item itself is decided again
    /// with [`Dispatcher::admit`] by the caller.
    pub fn lead_failed(&mut self, content: u128, stopped: bool) -> Released<T> {
        self.complete(content, None, stopped)
    }

    /// Leaders in flight whose waiters are still held.
    pub fn leading(&self) -> usize {
        self.leading
    }

    /// Items held behind a leader.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod quick_check;
