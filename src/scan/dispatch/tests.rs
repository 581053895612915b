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
