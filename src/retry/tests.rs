use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn s(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

#[test]
fn backoff_is_full_jitter_under_a_doubling_capped_ceiling() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(7);
    for retry in 0..10 {
        let ceiling = s((2f64.powi(retry as i32)).min(60.0));
        assert_eq!(p.ceiling(retry), ceiling);
        let mut max_seen = Duration::ZERO;
        let mut min_seen = Duration::MAX;
        for _ in 0..500 {
            let b = p.backoff(retry, &mut rng);
            assert!(b <= ceiling, "retry {retry}: {b:?} > {ceiling:?}");
            max_seen = max_seen.max(b);
            min_seen = min_seen.min(b);
        }
        // spread over the whole range, not clustered at the top
        assert!(max_seen > ceiling.mul_f64(0.8), "retry {retry}");
        assert!(min_seen < ceiling.mul_f64(0.2), "retry {retry}");
    }
}

#[test]
fn backoff_never_overflows() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(1);
    assert!(p.backoff(u32::MAX, &mut rng) <= s(60.0));
    assert_eq!(p.ceiling(1000), s(60.0));
    let zero = RetryPolicy {
        base: Duration::ZERO,
        ..p
    };
    assert_eq!(zero.backoff(3, &mut rng), Duration::ZERO);
}

#[test]
fn retry_after_is_a_floor_with_jitter_on_top() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..200 {
        let w = p
            .rate_limit_pause(0, Some(s(17.0)), None, 1e9, &mut rng)
            .wait;
        assert!(w >= s(17.0) && w <= s(17.0 * 1.15), "{w:?}");
    }
}

#[test]
fn reset_time_counts_when_later_than_retry_after() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(3);
    let now = 1_781_226_000.0;
    let w = p
        .rate_limit_pause(0, Some(s(2.0)), Some(1_781_226_030), now, &mut rng)
        .wait;
    assert!(w >= s(30.0) && w <= s(30.0 * 1.15), "{w:?}");
    // a reset in the past leaves Retry-After in charge
    let w = p
        .rate_limit_pause(0, Some(s(2.0)), Some(1_781_225_000), now, &mut rng)
        .wait;
    assert!(w >= s(2.0) && w <= s(2.3), "{w:?}");
    // a small reset value is seconds from now
    let w = p.rate_limit_pause(0, None, Some(12), now, &mut rng).wait;
    assert!(w >= s(12.0) && w <= s(12.0 * 1.15), "{w:?}");
}

#[test]
fn exponential_part_grows_past_a_short_retry_after() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(4);
    let w = p
        .rate_limit_pause(4, Some(s(1.0)), None, 0.0, &mut rng)
        .wait;
    assert!(w >= s(16.0), "{w:?}");
}

#[test]
fn without_headers_waits_follow_didits_advice() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(5);
    for (retry, want) in [
        (0, 5.0),
        (1, 10.0),
        (2, 20.0),
        (3, 40.0),
        (4, 60.0),
        (9, 60.0),
    ] {
        let w = p.rate_limit_pause(retry, None, None, 0.0, &mut rng).wait;
        assert!(w >= s(want) && w <= s(want * 1.15), "retry {retry}: {w:?}");
    }
}

#[test]
fn absurd_headers_cannot_hang_a_run() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(6);
    let w = p
        .rate_limit_pause(0, Some(s(86_400.0)), Some(u64::MAX), 0.0, &mut rng)
        .wait;
    assert!(w <= MAX_RATE_LIMIT_WAIT, "{w:?}");
}

#[test]
fn a_huge_retry_after_is_capped_and_reported() {
    let p = RetryPolicy::default_for_api();
    let mut rng = StdRng::seed_from_u64(9);
    for asked in [999_999_999.0, 121.0, 3600.0] {
        let r = p.rate_limit_pause(0, Some(s(asked)), None, 0.0, &mut rng);
        assert_eq!(r.wait, MAX_RATE_LIMIT_WAIT, "{asked}");
        assert!(r.capped, "{asked}");
        assert_eq!(r.asked, Some(s(asked)));
    }
    // A reset time an hour ahead is capped too.
    let now = 1_781_226_000.0;
    let r = p.rate_limit_pause(0, None, Some(1_781_229_600), now, &mut rng);
    assert!(r.capped && r.wait == MAX_RATE_LIMIT_WAIT, "{r:?}");
    // Within the cap: obeyed, not reported.
    let r = p.rate_limit_pause(0, Some(s(100.0)), None, 0.0, &mut rng);
    assert!(
        !r.capped && r.wait >= s(100.0) && r.wait <= MAX_RATE_LIMIT_WAIT,
        "{r:?}"
    );
    let r = p.rate_limit_pause(9, None, None, 0.0, &mut rng);
    assert!(
        !r.capped && r.asked.is_none() && r.wait <= MAX_RATE_LIMIT_WAIT,
        "{r:?}"
    );
    assert_eq!(MAX_RATE_LIMIT_WAIT, Duration::from_secs(120));
}

#[test]
fn small_bases_for_tests_still_respect_the_floor() {
    let p = RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(100),
    };
    let mut rng = StdRng::seed_from_u64(8);
    let w = p
        .rate_limit_pause(0, Some(s(1.0)), None, 0.0, &mut rng)
        .wait;
    assert!(w >= s(1.0) && w <= s(1.15), "{w:?}");
    assert!(p.backoff(5, &mut rng) <= Duration::from_millis(100));
}
