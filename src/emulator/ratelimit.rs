//! The emulator's rate limiter: an exact sliding window per key on tokio's clock (so a test can
//! run it under paused time), the `--rate-limit` parser, and the 429 answer's wording and headers.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

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
mod tests;
