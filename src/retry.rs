//! Backoff policy (pure): how long to wait before retrying a transient error or a 429.

use std::time::Duration;

use rand::Rng;

/// With no rate-limit header to go by, 429 waits follow Didit's advice: about 5 s, 10 s, 20 s, 40 s.
pub const RATE_LIMIT_FALLBACK_BASE: Duration = Duration::from_secs(5);
/// No single 429 wait exceeds this, jitter included, whatever the headers say: twice Didit's
/// 60-second window, which is always enough for the window to clear. A server that asks for
/// more (`Retry-After: 999999999`, a reset time far ahead) is not obeyed beyond it; the caller
/// is told ([`RateLimitWait::capped`]) so it can warn and count it.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
/// Extra random wait on top of a 429 wait, as a share of it, so that workers (and other
/// clients of the same key) do not come back in lockstep.
pub const RATE_LIMIT_JITTER: f64 = 0.15;
/// An `X-RateLimit-Reset` below this is read as seconds from now rather than an epoch time.
const EPOCH_FLOOR: u64 = 1_000_000_000;

/// How long to pause after a 429, and whether the server asked for longer than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitWait {
    /// The pause, at most [`MAX_RATE_LIMIT_WAIT`].
    pub wait: Duration,
    /// What the server asked for (`Retry-After`, or until `X-RateLimit-Reset`, the later).
    pub asked: Option<Duration>,
    /// True when `asked` exceeded [`MAX_RATE_LIMIT_WAIT`] and was not obeyed in full.
    pub capped: bool,
}

/// Retries for 429 and transient errors share `max_retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` requests per item).
    pub max_retries: u32,
    /// First backoff ceiling; doubles on every retry.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::default_for_api()
    }
}

impl RetryPolicy {
    /// 4 retries; transient backoff ceilings 1 s, 2 s, 4 s, 8 s (capped at 60 s).
    pub fn default_for_api() -> Self {
        Self {
            max_retries: 4,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }

    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// `min(cap, base * 2^retry)`, without overflow.
    pub fn ceiling(&self, retry: u32) -> Duration {
        exp_ceiling(self.base, retry, self.cap)
    }

    /// Full jitter: uniform in `[0, min(cap, base * 2^retry)]`. `retry` counts from 0.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry).as_secs_f64();
        if ceiling <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling))
    }

    /// How long every worker pauses after a 429: at least what the server asked
    /// (`Retry-After`, or until `X-RateLimit-Reset`), at least the exponential backoff
    /// (5 s, 10 s, 20 s, 40 s... when the server said nothing), plus up to 15 % jitter on top,
    /// and never more than [`MAX_RATE_LIMIT_WAIT`]; with what the server asked and whether it
    /// was capped. `now_epoch` is the current UTC time in seconds.
    pub fn rate_limit_pause(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        reset_at: Option<u64>,
        now_epoch: f64,
        rng: &mut impl Rng,
    ) -> RateLimitWait {
        let until_reset = reset_at.map(|r| {
            if r < EPOCH_FLOOR {
                Duration::from_secs(r)
            } else {
                // Bounded so that any epoch converts; anything this long is capped anyway.
                Duration::from_secs_f64((r as f64 - now_epoch).clamp(0.0, 1e9))
            }
        });
        let told = retry_after.max(until_reset);
        let base = if told.is_some() {
            self.base
        } else {
            self.base.max(RATE_LIMIT_FALLBACK_BASE)
        };
        let exp = exp_ceiling(base, retry, self.cap.max(base));
        let wait = told.unwrap_or_default().max(exp).min(MAX_RATE_LIMIT_WAIT);
        let jitter = wait.mul_f64(rng.random_range(0.0..=RATE_LIMIT_JITTER));
        RateLimitWait {
            wait: (wait + jitter).min(MAX_RATE_LIMIT_WAIT),
            asked: told,
            capped: told.is_some_and(|t| t > MAX_RATE_LIMIT_WAIT),
        }
    }
}

fn exp_ceiling(base: Duration, retry: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(31));
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests;
