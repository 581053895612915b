use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn parses_rates() {
    assert_eq!("240/min".parse::<Rate>().unwrap(), Rate::per_minute(240));
    assert_eq!(
        "4/s".parse::<Rate>().unwrap(),
        Rate {
            count: 4,
            per: Duration::from_secs(1)
        }
    );
    assert_eq!(
        "30/6s".parse::<Rate>().unwrap(),
        Rate {
            count: 30,
            per: Duration::from_secs(6)
        }
    );
    assert_eq!("300/60s".parse::<Rate>().unwrap(), Rate::per_minute(300));
    assert_eq!("100/1m".parse::<Rate>().unwrap(), Rate::per_minute(100));
    assert_eq!(
        "1000/h".parse::<Rate>().unwrap().per,
        Duration::from_secs(3600)
    );
}

#[test]
fn rejects_bad_rates_with_a_reason() {
    for bad in [
        "",
        "240",
        "x/min",
        "0/min",
        "10/",
        "10/5",
        "10/fortnight",
        "10/0s",
        "-1/s",
    ] {
        let e = bad.parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains("expected N/min"), "{bad}: {e}");
    }
}

#[test]
fn display_round_trips() {
    for s in ["240/min", "4/s", "30/6s"] {
        assert_eq!(s.parse::<Rate>().unwrap().to_string(), s);
    }
}

#[test]
fn evenly_spaced_from_the_first_request_with_margin() {
    let rate: Rate = "60/6s".parse().unwrap();
    let mut s = Schedule::new(Some(rate));
    let t0 = Instant::now();
    // Ten callers arrive at once: no burst, each gets its own slot.
    let slots: Vec<_> = (0..10).map(|_| s.reserve(t0).0).collect();
    assert_eq!(slots[0], t0);
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], gap(100));
    }
}

#[test]
fn never_more_than_the_limit_in_any_sliding_window() {
    // Callers that always ask "now" (a saturated pool) for 5 windows.
    let rate: Rate = "30/6s".parse().unwrap();
    let mut s = Schedule::new(Some(rate));
    let t0 = Instant::now();
    let mut sends = Vec::new();
    let mut now = t0;
    while now < t0 + Duration::from_secs(30) {
        let (slot, _) = s.reserve(now);
        sends.push(slot);
        now = slot;
    }
    for (i, &start) in sends.iter().enumerate() {
        let in_window = sends[i..]
            .iter()
            .take_while(|&&t| t < start + rate.per)
            .count();
        assert!(in_window <= 30, "window at {i} holds {in_window}");
    }
    // and the pace is still within 1 % of the limit
    let achieved = (sends.len() - 1) as f64 / (*sends.last().unwrap() - t0).as_secs_f64();
    assert!(
        achieved >= 0.99 * rate.per_second() && achieved <= rate.per_second(),
        "{achieved}"
    );
}

#[test]
fn idle_time_is_not_banked_into_a_burst() {
    let mut s = Schedule::new(Some("10/s".parse().unwrap()));
    let t0 = Instant::now();
    s.reserve(t0);
    // Long idle gap, then three callers at once.
    let later = t0 + Duration::from_secs(5);
    let a = s.reserve(later).0;
    let b = s.reserve(later).0;
    let c = s.reserve(later).0;
    assert_eq!(a, later);
    assert_eq!(b - a, gap(100));
    assert_eq!(c - b, gap(100));
}

#[test]
fn a_429_pauses_everyone_and_voids_earlier_slots() {
    let mut s = Schedule::new(Some("10/s".parse().unwrap()));
    let t0 = Instant::now();
    let (_, g0) = s.reserve(t0);
    let (slot1, g1) = s.reserve(t0);
    assert_eq!(g0, g1);
    s.rate_limited(t0 + ms(50), Duration::from_secs(2));
    assert_ne!(
        s.generation(),
        g1,
        "a slot claimed before the 429 must be re-claimed"
    );
    let (after, _) = s.reserve(slot1);
    assert_eq!(after, t0 + ms(2050));
    // the pace halved
    let (next, _) = s.reserve(after);
    assert_eq!(next - after, gap(200));
}

#[test]
fn cooldowns_extend_but_never_shorten() {
    let mut s = Schedule::new(None);
    let t0 = Instant::now();
    s.rate_limited(t0, Duration::from_secs(10));
    s.rate_limited(t0 + ms(100), Duration::from_secs(1));
    assert_eq!(s.reserve(t0).0, t0 + Duration::from_secs(10));
}

#[test]
fn slowdown_is_capped_and_recovers_gradually() {
    let mut s = Schedule::new(Some("10/s".parse().unwrap()));
    let t0 = Instant::now();
    for _ in 0..10 {
        s.rate_limited(t0, ms(1));
    }
    assert_eq!(s.slowdown(), MAX_SLOWDOWN);
    s.succeeded();
    assert!(s.slowdown() < MAX_SLOWDOWN && s.slowdown() > MAX_SLOWDOWN * 0.9);
    let mut n = 0;
    while s.slowdown() > 1.0 {
        s.succeeded();
        n += 1;
    }
    assert!((100..400).contains(&n), "recovered after {n} successes");
}

#[test]
fn unpaced_schedule_only_waits_for_cooldowns() {
    let mut s = Schedule::new(None);
    let t0 = Instant::now();
    assert_eq!(s.reserve(t0).0, t0);
    assert_eq!(s.reserve(t0).0, t0);
    assert_eq!(s.current_interval(), None);
}

#[tokio::test(start_paused = true)]
async fn pacer_spaces_concurrent_callers_in_time() {
    let pacer = std::sync::Arc::new(Pacer::new("10/s".parse().unwrap()));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..5 {
        let p = pacer.clone();
        handles.push(tokio::spawn(async move {
            p.acquire().await;
            Instant::now()
        }));
    }
    let mut times = Vec::new();
    for h in handles {
        times.push(h.await.unwrap() - t0);
    }
    times.sort();
    assert_eq!(times[0], Duration::ZERO);
    // Tokio's timer fires on the millisecond after the slot.
    let fifth = gap(100) * 4;
    assert!(
        times[4] >= fifth && times[4] <= fifth + ms(1),
        "{:?}",
        times[4]
    );
    let log = pacer.sends();
    assert_eq!(log.count, 5);
    let achieved = log.achieved_per_second().unwrap();
    // From the sends as they happened, on the timer's milliseconds.
    let planned = 1.0 / gap(100).as_secs_f64();
    assert!((achieved - planned).abs() < planned * 0.005, "{achieved}");
}

#[tokio::test(start_paused = true)]
async fn pacer_waiter_re_queues_after_a_cooldown() {
    let pacer = std::sync::Arc::new(Pacer::new("1/s".parse().unwrap()));
    let t0 = Instant::now();
    pacer.acquire().await; // slot at t0
    let p = pacer.clone();
    let waiter = tokio::spawn(async move {
        p.acquire().await; // slot at ~1.008 s
        Instant::now()
    });
    tokio::time::sleep(ms(500)).await;
    pacer.rate_limited(Duration::from_secs(3));
    let woke = waiter.await.unwrap() - t0;
    assert_eq!(woke, ms(3500));
}

/// `base_ms` widened by the pacer's safety margin: the gap it keeps for a rate whose plain gap
/// is `base_ms`.
fn gap(base_ms: u64) -> Duration {
    ms(base_ms).mul_f64(1.0 + super::SAFETY_MARGIN)
}
