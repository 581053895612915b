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
mod tests {
    use super::*;
    use crate::record::Class;

    const A: u128 = 0xa;
    const B: u128 = 0xb;

    fn facts(key: &str, content: u128) -> Facts {
        Facts {
            key: crate::journal::key_digest(key),
            content: Some(content),
            refused: false,
            current: false,
        }
    }

    fn machine(index: Index, dedupe: bool, retry_failed: bool) -> Dispatcher<&'static str> {
        Dispatcher::new(Arc::new(index), dedupe, retry_failed)
    }

    fn index_with(key: &str, content: u128, class: Class, offset: u64) -> Index {
        let mut index = Index::default();
        index.add_record(key, None, Some(content), class, offset);
        index
    }

    #[test]
    fn skips_a_key_done_earlier_with_the_same_content() {
        let mut d = machine(index_with("k", A, Class::Result, 7), true, false);
        assert_eq!(d.admit("k", facts("k", A)), Decision::Skip("k"));
        // Changed content is screened again.
        assert_eq!(d.admit("k", facts("k", B)), Decision::Lead("k"));
    }

    #[test]
    fn refusals_are_recorded_not_sent() {
        let mut d = machine(Index::default(), true, false);
        let refused = Facts {
            key: crate::journal::key_digest("x"),
            content: Some(A),
            refused: true,
            current: false,
        };
        assert_eq!(d.admit("x", refused), Decision::Refuse("x"));
        let unreadable = Facts {
            key: crate::journal::key_digest("y"),
            content: None,
            refused: true,
            current: false,
        };
        assert_eq!(d.admit("y", unreadable), Decision::Refuse("y"));
        assert_eq!(d.leading(), 0);
        // A refused item does not claim the content: the next identical one leads.
        assert_eq!(d.admit("z", facts("z", A)), Decision::Lead("z"));
    }

    #[test]
    fn identical_items_wait_for_the_leader_then_follow_it() {
        let mut d = machine(Index::default(), true, false);
        assert_eq!(d.admit("a", facts("a", A)), Decision::Lead("a"));
        assert_eq!(d.admit("b", facts("b", A)), Decision::Wait);
        assert_eq!(d.admit("c", facts("c", A)), Decision::Wait);
        assert_eq!(d.admit("d", facts("d", B)), Decision::Lead("d"));
        assert_eq!((d.leading(), d.waiting()), (2, 2));
        let r = d.complete(A, Some(100), false);
        assert_eq!(r.follow, vec!["b", "c"]);
        assert_eq!(r.offset, Some(100));
        assert_eq!((d.leading(), d.waiting()), (1, 0));
        // Later identical items follow at once.
        assert_eq!(d.admit("e", facts("e", A)), Decision::Follow("e", 100));
    }

    #[test]
    fn a_leader_that_fails_passes_the_lead_to_the_next_waiter() {
        let mut d = machine(Index::default(), true, false);
        d.admit("a", facts("a", A));
        d.admit("b", facts("b", A));
        d.admit("c", facts("c", A));
        let r = d.complete(A, None, false);
        assert_eq!(r.lead, Some("b"));
        assert!(r.follow.is_empty() && r.dropped.is_empty());
        assert_eq!((d.leading(), d.waiting()), (1, 1));
        // The new leader succeeds: the last one follows it.
        let r = d.complete(A, Some(9), false);
        assert_eq!((r.follow, r.offset), (vec!["c"], Some(9)));
        assert_eq!((d.leading(), d.waiting()), (0, 0));
    }

    #[test]
    fn a_lone_leader_that_fails_leaves_nothing_behind() {
        let mut d = machine(Index::default(), true, false);
        d.admit("a", facts("a", A));
        assert_eq!(d.complete(A, None, false), Released::default());
        assert_eq!(d.leading(), 0);
        // The content is free again: the next identical item leads.
        assert_eq!(d.admit("b", facts("b", A)), Decision::Lead("b"));
    }

    #[test]
    fn a_released_leader_that_cannot_be_sent_passes_the_lead_on() {
        let mut d = machine(Index::default(), true, false);
        d.admit("a", facts("a", A));
        d.admit("b", facts("b", A));
        d.admit("c", facts("c", A));
        assert_eq!(d.complete(A, None, false).lead, Some("b"));
        // "b" changed on disk meanwhile: "c" leads.
        assert_eq!(d.lead_failed(A, false).lead, Some("c"));
        assert_eq!((d.leading(), d.waiting()), (1, 0));
    }

    #[test]
    fn a_stop_while_followers_wait_drops_them_unless_the_leader_answered() {
        let mut d = machine(Index::default(), true, false);
        d.admit("a", facts("a", A));
        d.admit("b", facts("b", A));
        d.admit("x", facts("x", B));
        d.admit("y", facts("y", B));
        let r = d.complete(A, None, true);
        assert_eq!(r.dropped, vec!["b"]);
        assert_eq!(r.lead, None);
        // A leader that answered before the stop still gives its followers a record.
        let r = d.complete(B, Some(5), true);
        assert_eq!(r.follow, vec!["y"]);
        assert_eq!((d.leading(), d.waiting()), (0, 0));
    }

    #[test]
    fn earlier_runs_results_are_reused_by_content() {
        let index = index_with("old", A, Class::Result, 42);
        let mut d = machine(index, true, false);
        assert_eq!(d.admit("new", facts("new", A)), Decision::Follow("new", 42));
        assert_eq!(d.leading(), 0);
    }

    #[test]
    fn retry_failed_redoes_rejections_and_never_reuses_them() {
        let index = index_with("bad", A, Class::Rejected, 3);
        let mut plain = machine(index_with("bad", A, Class::Rejected, 3), true, false);
        assert_eq!(plain.admit("bad", facts("bad", A)), Decision::Skip("bad"));
        assert_eq!(
            plain.admit("twin", facts("twin", A)),
            Decision::Follow("twin", 3)
        );
        let mut retry = machine(index, true, true);
        assert_eq!(retry.admit("bad", facts("bad", A)), Decision::Lead("bad"));
        assert_eq!(retry.admit("twin", facts("twin", A)), Decision::Wait);
    }

    #[test]
    fn without_dedupe_every_item_is_sent() {
        let mut d = machine(index_with("old", A, Class::Result, 1), false, false);
        assert_eq!(d.admit("a", facts("a", A)), Decision::Lead("a"));
        assert_eq!(d.admit("b", facts("b", A)), Decision::Lead("b"));
        assert_eq!((d.leading(), d.waiting()), (0, 0));
        assert_eq!(d.complete(A, None, false), Released::default());
        // Resume still skips finished keys.
        assert_eq!(d.admit("old", facts("old", A)), Decision::Skip("old"));
    }
}

#[cfg(test)]
mod quick_check {
    use super::*;
    use crate::record::Class;

    #[test]
    fn an_item_found_current_is_skipped_unread_and_a_changed_one_is_decided_by_content() {
        let mut index = Index::default();
        index.add_record("k", Some("size=1 mtime=t1"), Some(0xa), Class::Result, 7);
        let mut d = Dispatcher::new(Arc::new(index), true, false);
        let key = crate::journal::key_digest("k");
        // Found current by the quick check: nothing was read.
        let current = Facts {
            key,
            content: None,
            refused: false,
            current: true,
        };
        assert_eq!(d.admit("k", current), Decision::Skip("k"));
        // Read because its version changed: the same bytes are still skipped...
        let touched = Facts {
            key,
            content: Some(0xa),
            refused: false,
            current: false,
        };
        assert_eq!(d.admit("k", touched), Decision::Skip("k"));
        // ...and new bytes are screened again.
        let changed = Facts {
            content: Some(0xb),
            ..touched
        };
        assert_eq!(d.admit("k", changed), Decision::Lead("k"));
    }
}
