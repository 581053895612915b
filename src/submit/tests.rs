use super::*;

#[test]
fn budget_never_exceeds_its_limit() {
    let b = Budget::new(2);
    assert!(b.try_reserve());
    assert!(b.try_reserve());
    assert!(!b.try_reserve());
    assert_eq!(b.used(), 2);
    b.release();
    assert_eq!(b.used(), 1);
    assert!(b.try_reserve());
    assert!(!b.try_reserve());
    assert_eq!(b.limit(), 2);
}

#[test]
fn release_never_underflows() {
    let b = Budget::new(1);
    b.release();
    assert_eq!(b.used(), 0);
    assert!(b.try_reserve());
}

#[test]
fn budget_holds_under_contention() {
    let b = Arc::new(Budget::new(1000));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || (0..500).filter(|_| b.try_reserve()).count())
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 1000);
    assert_eq!(b.used(), 1000);
}

#[test]
fn zero_budget_sends_nothing() {
    assert!(!Budget::new(0).try_reserve());
}
