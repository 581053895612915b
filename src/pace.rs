//! Request pacing: an even schedule under the configured rate, one cooldown shared by every
//! worker after a 429, and a slow-down that recovers gradually.
//!
//! Why not a token bucket such as `governor`: a bucket allows a burst up to its size, and even
//! with a burst of one its quota is fixed when built, while this pacer must also pause every
//! worker together after a 429 and run slower for a while afterwards. The schedule below is
//! pure (it takes `now` as an argument), so it is tested with a fake clock.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Headroom kept under the configured rate, so that network jitter can never push one request
/// too many into a sliding window the server counts at exactly the configured rate: with sends
/// spaced 0.8 % wider than the rate, a window holds one request too many only if a request
/// reaches the server 0.8 % of the window (480 ms of Didit's 60 s) later than the one sent a
/// whole window after it. It keeps the pace above 99 % of the rate.
pub const SAFETY_MARGIN: f64 = 0.008;
/// The slow-down after repeated 429s never goes beyond this factor.
pub const MAX_SLOWDOWN: f64 = 8.0;
/// Each success keeps this share of the extra slow-down (so it fades over a few dozen requests).
pub const RECOVERY: f64 = 0.97;

/// A request rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid rate {input:?}: {reason} (expected N/min, N/s or N/Ws, e.g. 240/min, 4/s, 30/6s)")]
pub struct RateError {
    input: String,
    reason: &'static str,
}

impl Rate {
    pub fn per_minute(count: u32) -> Self {
        Self {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.as_secs_f64()
    }

    /// Requests per minute.
    pub fn per_minute_f64(&self) -> f64 {
        self.per_second() * 60.0
    }

    /// The gap between two requests, including the safety margin.
    pub fn interval(&self) -> Duration {
        self.per.mul_f64(1.0 + SAFETY_MARGIN) / self.count
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.per.as_secs_f64();
        if secs == 60.0 {
            write!(f, "{}/min", self.count)
        } else if secs == 1.0 {
            write!(f, "{}/s", self.count)
        } else {
            write!(f, "{}/{}s", self.count, secs)
        }
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| RateError {
            input: s.to_string(),
            reason,
        };
        let (n, unit) = s.trim().split_once('/').ok_or_else(|| err("missing '/'"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| err("the count is not a whole number"))?;
        if count == 0 {
            return Err(err("the count must be at least 1"));
        }
        let unit = unit.trim().to_ascii_lowercase();
        let split = unit
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        let (num, suffix) = unit.split_at(split);
        let amount: f64 = if num.is_empty() {
            1.0
        } else {
            num.parse().map_err(|_| err("the period is not a number"))?
        };
        let unit_secs = match suffix {
            "s" | "sec" | "second" | "seconds" => 1.0,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            _ => return Err(err("unknown unit")),
        };
        let secs = amount * unit_secs;
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            return Err(err("the period must be between 0 and 24 hours"));
        }
        Ok(Rate {
            count,
            per: Duration::from_secs_f64(secs),
        })
    }
}

/// The pure schedule: given `now`, when may the next request go?
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `None` means no pacing (only cooldowns apply).
    interval: Option<Duration>,
    slowdown: f64,
    next_slot: Option<Instant>,
    cooldown_until: Option<Instant>,
    generation: u64,
}

impl Schedule {
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            interval: rate.map(|r| r.interval()),
            slowdown: 1.0,
            next_slot: None,
            cooldown_until: None,
            generation: 0,
        }
    }

    /// Claim the next slot at or after `now`; returns it with the generation it was claimed in.
    pub fn reserve(&mut self, now: Instant) -> (Instant, u64) {
        let mut slot = now;
        if let Some(c) = self.cooldown_until {
            slot = slot.max(c);
        }
        if let Some(n) = self.next_slot {
            slot = slot.max(n);
        }
        if let Some(i) = self.interval {
            self.next_slot = Some(slot + i.mul_f64(self.slowdown));
        }
        (slot, self.generation)
    }

    /// A 429 arrived: nobody sends before `now + wait`, and the pace halves (up to the cap).
    /// Slots claimed before this call are void (their generation is stale).
    pub fn rate_limited(&mut self, now: Instant, wait: Duration) {
        let until = now + wait;
        self.cooldown_until = Some(self.cooldown_until.map_or(until, |c| c.max(until)));
        self.next_slot = self.cooldown_until;
        self.slowdown = (self.slowdown * 2.0).min(MAX_SLOWDOWN);
        self.generation += 1;
    }

    /// A request succeeded: fade the extra slow-down a little.
    pub fn succeeded(&mut self) {
        self.slowdown = 1.0 + (self.slowdown - 1.0) * RECOVERY;
        if self.slowdown < 1.001 {
            self.slowdown = 1.0;
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn slowdown(&self) -> f64 {
        self.slowdown
    }

    /// The interval currently applied between requests.
    pub fn current_interval(&self) -> Option<Duration> {
        self.interval.map(|i| i.mul_f64(self.slowdown))
    }
}

/// The shared pacer every worker awaits before each request.
#[derive(Debug)]
pub struct Pacer {
    schedule: Mutex<Schedule>,
    sends: Mutex<SendLog>,
}

/// How many requests went out, and when the first and the latest did.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendLog {
    pub count: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl SendLog {
    /// Requests per second between the first and the latest send (needs two sends).
    pub fn achieved_per_second(&self) -> Option<f64> {
        let span = self
            .last?
            .checked_duration_since(self.first?)?
            .as_secs_f64();
        (self.count > 1 && span > 0.0).then(|| (self.count - 1) as f64 / span)
    }
}

impl Pacer {
    pub fn new(rate: Rate) -> Self {
        Self {
            schedule: Mutex::new(Schedule::new(Some(rate))),
            sends: Mutex::default(),
        }
    }

    /// No pacing, but 429 cooldowns still apply (used by `check`).
    pub fn unlimited() -> Self {
        Self {
            schedule: Mutex::new(Schedule::new(None)),
            sends: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for this caller's slot; if a 429 cooldown starts meanwhile, wait again.
    pub async fn acquire(&self) {
        loop {
            let now = Instant::now();
            let (slot, generation) = self.lock().reserve(now);
            if slot > now {
                // A slot already due needs no timer: registering one would wake the runtime's
                // driver for nothing, once per request when the pace is not what holds them.
                tokio::time::sleep_until(slot).await;
            }
            if self.lock().generation() == generation {
                let now = Instant::now();
                let mut log = self.sends.lock().unwrap_or_else(|p| p.into_inner());
                log.count += 1;
                log.first.get_or_insert(now);
                log.last = Some(now);
                return;
            }
        }
    }

    /// Pause every worker for `wait` and slow down.
    pub fn rate_limited(&self, wait: Duration) {
        self.lock().rate_limited(Instant::now(), wait);
    }

    pub fn succeeded(&self) {
        self.lock().succeeded();
    }

    /// The requests let through so far.
    pub fn sends(&self) -> SendLog {
        *self.sends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests per second at the current pace (None when unpaced).
    pub fn current_rate(&self) -> Option<f64> {
        self.lock()
            .current_interval()
            .map(|i| 1.0 / i.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
