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
