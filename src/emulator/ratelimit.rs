//! The emulator's rate limiter: an exact sliding window per key, the `--rate-limit` parser, and
//! the 429 answer's wording and headers.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exact sliding window: remembers the instant of every accepted request and admits a new one
/// while fewer than `limit` lie in `(now - window, now]`. Rejected requests are not remembered,
/// so a client hammering the limit does not push its own reset further away.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    accepted: VecDeque<Instant>,
}

/// What the window says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over the limit: the oldest counted request leaves the window after `wait`.
    Limited {
        wait: Duration,
    },
}

impl SlidingWindow {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            accepted: VecDeque::with_capacity(limit.min(10_000) as usize),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Admit (and remember) a request at `now`, or say how long until a slot frees.
    pub fn admit(&mut self, now: Instant) -> Admission {
        self.prune(now);
        if self.accepted.len() < self.limit as usize {
            self.accepted.push_back(now);
            return Admission::Allowed;
        }
        let wait = match self.accepted.front() {
            Some(&oldest) => (oldest + self.window).saturating_duration_since(now),
            None => self.window,
        };
        Admission::Limited { wait }
    }

    /// Requests currently counted in the window ending at `now`.
    #[cfg(test)]
    pub fn in_window(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.accepted.len()
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&t) = self.accepted.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Parse `N/W` such as `300/60s`, `10/2s`, `5/500ms`, `300/min`, `1000/1h`. A bare number in the
/// window means seconds. `0/...` disables the limiter (`Ok(None)`).
pub fn parse_rate_limit(text: &str) -> Result<Option<(u32, Duration)>, String> {
    let bad = |why: &str| {
        format!(
            "invalid rate limit \"{text}\": {why} (expected N/Ws, e.g. 300/60s or 10/2s; 0/60s disables it)"
        )
    };
    let (n, w) = text.trim().split_once('/').ok_or_else(|| bad("no '/'"))?;
    let limit: u32 = n
        .trim()
        .parse()
        .map_err(|_| bad("the request count is not a whole number"))?;
    let w = w.trim().to_ascii_lowercase();
    let split = w
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(w.len());
    let (num, unit) = w.split_at(split);
    let amount: f64 = if num.is_empty() {
        1.0
    } else {
        num.parse().map_err(|_| bad("the window is not a number"))?
    };
    let unit_secs = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        _ => return Err(bad("unknown window unit (use ms, s, min or h)")),
    };
    let secs = amount * unit_secs;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(bad("the window must be longer than 0 and at most a day"));
    }
    if limit == 0 {
        return Ok(None);
    }
    Ok(Some((limit, Duration::from_secs_f64(secs))))
}

/// Didit's 429 sentence, with the configured numbers: "... up to 300 requests per minute."
pub fn limit_message(limit: u32, window: Duration) -> String {
    let noun = if limit == 1 { "request" } else { "requests" };
    format!(
        "Write request rate limit exceeded. You can make up to {limit} {noun} per {}.",
        window_phrase(window)
    )
}

/// "minute", "second", "hour", "2 seconds", "5 minutes", "1.5 seconds".
pub fn window_phrase(window: Duration) -> String {
    let ms = window.as_millis();
    match ms {
        1_000 => "second".into(),
        60_000 => "minute".into(),
        3_600_000 => "hour".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{} hours", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{} minutes", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{} seconds", ms / 1_000),
        _ => format!("{} seconds", window.as_secs_f64()),
    }
}

/// The four headers of a 429, computed from the time until a slot frees.
/// `X-RateLimit-Reset` is the UTC epoch second (rounded up) when the oldest counted request
/// leaves the window; `Retry-After` the whole seconds until then, rounded up, at least 1.
pub fn limit_headers(limit: u32, wait: Duration, now: SystemTime) -> [(&'static str, String); 4] {
    let reset_at = now + wait;
    let epoch = reset_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let reset = epoch.as_secs() + u64::from(epoch.subsec_nanos() > 0);
    let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", "0".to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("retry-after", retry_after.to_string()),
    ]
}

/// The four headers of a spurious 429 (another client used the budget): `Retry-After` is exactly
/// `retry_after` whole seconds. Above 0 they are [`limit_headers`] for that wait; with 0,
/// `Retry-After: 0` and an `X-RateLimit-Reset` of the current epoch second (already begun), so
/// neither header asks the client to wait.
pub fn spurious_headers(
    limit: u32,
    retry_after: u64,
    now: SystemTime,
) -> [(&'static str, String); 4] {
    if retry_after > 0 {
        return limit_headers(limit, Duration::from_secs(retry_after), now);
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", "0".to_string()),
        ("x-ratelimit-reset", now.as_secs().to_string()),
        ("retry-after", "0".to_string()),
    ]
}

#[cfg(test)]
mod tests {
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
}
