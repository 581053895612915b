//! Unit tests of the emulator's ratelimit module.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn admits_up_to_the_limit_then_limits() {
    let t0 = Instant::now();
    let mut w = SlidingWindow::new(3, ms(1000));
    assert_eq!(w.admit(t0), Admission::Allowed);
    assert_eq!(w.admit(t0 + ms(100)), Admission::Allowed);
    assert_eq!(w.admit(t0 + ms(200)), Admission::Allowed);
    assert_eq!(
        w.admit(t0 + ms(300)),
        Admission::Limited { wait: ms(700) },
        "the oldest (t0) leaves at t0+1000"
    );
    // Rejections are not counted: the wait keeps shrinking.
    assert_eq!(w.admit(t0 + ms(900)), Admission::Limited { wait: ms(100) });
}

#[test]
fn window_is_half_open_oldest_leaves_exactly_at_window() {
    let t0 = Instant::now();
    let mut w = SlidingWindow::new(1, ms(1000));
    assert_eq!(w.admit(t0), Admission::Allowed);
    assert_eq!(w.admit(t0 + ms(999)), Admission::Limited { wait: ms(1) });
    // (now - window, now]: at t0+1000, t0 is out.
    assert_eq!(w.admit(t0 + ms(1000)), Admission::Allowed);
    assert_eq!(w.in_window(t0 + ms(1000)), 1);
}

#[test]
fn sliding_not_fixed_buckets() {
    let t0 = Instant::now();
    let mut w = SlidingWindow::new(2, ms(1000));
    assert_eq!(w.admit(t0 + ms(900)), Admission::Allowed);
    assert_eq!(w.admit(t0 + ms(950)), Admission::Allowed);
    // A fixed one-second bucket would reset at t0+1000; the sliding window does not.
    assert_eq!(w.admit(t0 + ms(1100)), Admission::Limited { wait: ms(800) });
    assert_eq!(w.admit(t0 + ms(1900)), Admission::Allowed);
    assert_eq!(w.admit(t0 + ms(1920)), Admission::Limited { wait: ms(30) });
    assert_eq!(w.admit(t0 + ms(1950)), Admission::Allowed);
    assert_eq!(w.in_window(t0 + ms(1950)), 2);
}

#[test]
fn never_more_than_limit_in_any_window() {
    let t0 = Instant::now();
    let mut w = SlidingWindow::new(5, ms(1000));
    let mut accepted = Vec::new();
    for i in 0..400u64 {
        let t = t0 + ms(i * 13);
        if w.admit(t) == Admission::Allowed {
            accepted.push(t);
        }
    }
    for (i, &t) in accepted.iter().enumerate() {
        let count = accepted[i..]
            .iter()
            .take_while(|&&u| u.duration_since(t) < ms(1000))
            .count();
        assert!(count <= 5, "{count} accepted within one window");
    }
    assert!(
        accepted.len() >= 5 * 5,
        "too few accepted: {}",
        accepted.len()
    );
}

#[test]
fn parses_rate_limits() {
    assert_eq!(
        parse_rate_limit("300/60s").unwrap(),
        Some((300, Duration::from_secs(60)))
    );
    assert_eq!(
        parse_rate_limit("10/2s").unwrap(),
        Some((10, Duration::from_secs(2)))
    );
    assert_eq!(
        parse_rate_limit("300/min").unwrap(),
        Some((300, Duration::from_secs(60)))
    );
    assert_eq!(parse_rate_limit("5/500ms").unwrap(), Some((5, ms(500))));
    assert_eq!(parse_rate_limit(" 7 / 1.5s ").unwrap(), Some((7, ms(1500))));
    assert_eq!(
        parse_rate_limit("9/30").unwrap(),
        Some((9, Duration::from_secs(30)))
    );
    assert_eq!(parse_rate_limit("0/60s").unwrap(), None);
    for bad in [
        "", "300", "x/60s", "-1/60s", "300/0s", "300/abc", "300/60y", "1.5/60s",
    ] {
        let err = parse_rate_limit(bad).unwrap_err();
        assert!(err.contains("expected N/Ws"), "{bad}: {err}");
    }
}

#[test]
fn messages_describe_the_window_honestly() {
    assert_eq!(
        limit_message(300, Duration::from_secs(60)),
        "Write request rate limit exceeded. You can make up to 300 requests per minute."
    );
    assert_eq!(
        limit_message(10, Duration::from_secs(2)),
        "Write request rate limit exceeded. You can make up to 10 requests per 2 seconds."
    );
    assert_eq!(
        limit_message(1, Duration::from_secs(1)),
        "Write request rate limit exceeded. You can make up to 1 request per second."
    );
    assert_eq!(window_phrase(Duration::from_secs(300)), "5 minutes");
    assert_eq!(window_phrase(Duration::from_secs(3600)), "hour");
    assert_eq!(window_phrase(ms(1500)), "1.5 seconds");
}

#[test]
fn headers_round_up() {
    let now = UNIX_EPOCH + Duration::from_millis(1_000_000_500);
    let h = limit_headers(5, ms(700), now);
    assert_eq!(h[0], ("x-ratelimit-limit", "5".into()));
    assert_eq!(h[1], ("x-ratelimit-remaining", "0".into()));
    assert_eq!(h[2], ("x-ratelimit-reset", "1000002".into()));
    assert_eq!(h[3], ("retry-after", "1".into()));
    let h = limit_headers(5, ms(2300), now);
    assert_eq!(h[2].1, "1000003");
    assert_eq!(h[3].1, "3");
    let h = limit_headers(5, Duration::ZERO, now);
    assert_eq!(h[3].1, "1", "Retry-After is at least 1");
}

#[test]
fn spurious_headers_say_exactly_the_configured_wait() {
    let now = UNIX_EPOCH + Duration::from_millis(1_000_000_500);
    let h = spurious_headers(300, 0, now);
    assert_eq!(h[0], ("x-ratelimit-limit", "300".into()));
    assert_eq!(h[1], ("x-ratelimit-remaining", "0".into()));
    assert_eq!(h[2], ("x-ratelimit-reset", "1000000".into()));
    assert_eq!(h[3], ("retry-after", "0".into()));
    let h = spurious_headers(10, 7, now);
    assert_eq!(h[0].1, "10");
    assert_eq!(h[2].1, "1000008", "rounded up, as the limiter's own 429s");
    assert_eq!(h[3].1, "7");
    assert_eq!(
        spurious_headers(10, 1, now),
        limit_headers(10, ms(1000), now)
    );
}
