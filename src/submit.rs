//! Submitting one image with retries: the pacer before every attempt, the billable-call budget,
//! 429 cooldowns shared by all workers, backoff for transient errors, and the stop token.
//! Used by both `check` and the `scan` workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::didit::{Client, Outcome, Params, Upload};
use crate::pace::Pacer;
use crate::record::Class;
use crate::retry::{MAX_RATE_LIMIT_WAIT, RetryPolicy};

/// A budget of billable calls for one run (`--max-requests`). A call is reserved before it is
/// sent and released when the answer proves nothing was billed, so the budget is never exceeded
/// even with many workers.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Take one call from the budget; false when it is spent.
    pub fn try_reserve(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.limit).then_some(u + 1)
            })
            .is_ok()
    }

    /// Give back a reserved call that was not billed.
    pub fn release(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
    }

    /// Calls reserved and not released.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Everything a worker needs to submit images; share one per run.
#[derive(Debug, Clone)]
pub struct Submitter {
    pub client: Arc<Client>,
    pub pacer: Arc<Pacer>,
    pub policy: RetryPolicy,
    pub budget: Option<Arc<Budget>>,
    /// Cancelled: no new request is sent (requests in flight still finish).
    pub stop: CancellationToken,
    /// Retry a timeout or reset after the body was sent (may be billed twice) instead of
    /// ending with [`Final::Unknown`].
    pub retry_unknown: bool,
}

/// How one image's submission ended, with its counters.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub outcome: Final,
    /// Requests sent.
    pub attempts: u32,
    /// 429 answers received.
    pub rate_limited: u32,
    /// Sends that repeated a send of unknown outcome (each may have been billed twice).
    pub possible_double_charges: u32,
    /// Sends whose outcome was unknown: the body was sent and no definitive answer came back
    /// (a timeout or reset after sending, a 5xx).
    pub unknown_outcomes: u32,
    /// True while the last send had an unknown outcome and none has followed it.
    pub unknown_pending: bool,
    /// 429s whose server asked for a longer wait than [`MAX_RATE_LIMIT_WAIT`]: the pause was
    /// cut to the cap (and a warning printed).
    pub retry_after_capped: u32,
    /// The last answer's HTTP status.
    pub http_status: Option<u16>,
    /// The last attempt's latency.
    pub latency_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Final {
    /// The last attempt's outcome: Result, Rejected, BadAnswer, Fatal, or RateLimited/Transient
    /// once the retries were spent.
    Done(Outcome),
    /// A timeout or reset after the body was sent, not retried (`retry_unknown` false): it may
    /// have been billed.
    Unknown { message: String },
    /// The stop token was cancelled before a request could be sent; `last` is the previous
    /// attempt's outcome, if any.
    Stopped { last: Option<Outcome> },
    /// The budget of billable calls is spent; nothing was sent for this attempt.
    BudgetReached,
}

/// Nothing sent yet.
impl Default for Final {
    fn default() -> Self {
        Final::Stopped { last: None }
    }
}

impl Final {
    /// The one answer-to-class mapping, shared by `scan`'s records and `check`'s errors: the
    /// class an item ends with after `attempts` requests, and why (one line) when it has no
    /// result. `None`: nothing was sent (stopped before the first request).
    pub fn ending(&self, attempts: u32) -> Option<(Class, Option<String>)> {
        let why = match self {
            Final::Done(Outcome::Result { .. }) => None,
            Final::Done(
                Outcome::Rejected { message, .. }
                | Outcome::BadAnswer { message, .. }
                | Outcome::Fatal { message, .. },
            ) => Some(message.clone()),
            Final::Done(Outcome::RateLimited { .. }) => Some(format!(
                "still rate limited (429) after {attempts} attempts; rerun later or lower --rate"
            )),
            Final::Done(Outcome::Transient { message, .. }) => {
                Some(format!("{message} (gave up after {attempts} attempts)"))
            }
            Final::Unknown { message } => Some(format!(
                "{message}: the request may have been processed and billed; not retried \
                 (--no-retry-unknown)"
            )),
            Final::Stopped { .. } | Final::BudgetReached if attempts == 0 => return None,
            Final::Stopped { last: Some(o) } => {
                Some(format!("the run stopped before a retry; last answer: {o}"))
            }
            Final::Stopped { last: None } => Some("the run stopped before a retry".to_string()),
            Final::BudgetReached => {
                Some("the --max-requests budget was reached before a retry".to_string())
            }
        };
        let class = match self {
            Final::Done(o) => o.class(),
            Final::Unknown { .. } => Class::Unknown,
            Final::Stopped { .. } | Final::BudgetReached => Class::Interrupted,
        };
        Some((class, why))
    }
}

/// Why no request was sent.
enum Halt {
    Stopped,
    Budget,
}

/// What follows one answer.
enum Step {
    /// The answer is final.
    Done,
    /// The submission ends otherwise.
    End(Final),
    /// Send again.
    Retry,
    /// The run stopped during the backoff before a retry.
    StoppedInBackoff,
}

impl Submitter {
    /// Submit one image until it has a final outcome. See the module docs for the rules.
    /// Warnings go to stderr through [`crate::messages::warn`] (safe with the progress bar).
    pub async fn submit(&self, upload: &Upload, params: &Params) -> Submission {
        self.submit_warning_to(upload, params, &|w: &str| crate::messages::warn(w))
            .await
    }

    /// [`Self::submit`], with every warning (one line, without a `warning:` prefix) handed to
    /// `warn`.
    pub async fn submit_warning_to(
        &self,
        upload: &Upload,
        params: &Params,
        warn: &(dyn Fn(&str) + Sync),
    ) -> Submission {
        let mut sub = Submission::default();
        let mut retries = 0u32;
        let mut last: Option<Outcome> = None;
        loop {
            let outcome = match self.send_once(upload, params, &mut sub).await {
                Ok(outcome) => outcome,
                Err(Halt::Stopped) => return sub.end(Final::Stopped { last }),
                Err(Halt::Budget) => return sub.end(Final::BudgetReached),
            };
            match self.next_step(&outcome, &mut retries, &mut sub, warn).await {
                Step::Done => return sub.end(Final::Done(outcome)),
                Step::End(fin) => return sub.end(fin),
                Step::StoppedInBackoff => {
                    // The item ends `interrupted`, which the next run sends again: its record
                    // keeps the unknown outcome pending, and that resend counts it repeated.
                    return sub.end(Final::Stopped {
                        last: Some(outcome),
                    });
                }
                Step::Retry => last = Some(outcome),
            }
        }
    }

    /// One paced request, within the budget; its counters go into `sub`.
    async fn send_once(
        &self,
        upload: &Upload,
        params: &Params,
        sub: &mut Submission,
    ) -> Result<Outcome, Halt> {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => return Err(Halt::Stopped),
            _ = self.pacer.acquire() => {}
        }
        if self.stop.is_cancelled() {
            return Err(Halt::Stopped);
        }
        if let Some(b) = &self.budget
            && !b.try_reserve()
        {
            return Err(Halt::Budget);
        }
        sub.attempts += 1;
        if std::mem::take(&mut sub.unknown_pending) {
            // The send before had an unknown outcome: this one may be billed a second time.
            sub.possible_double_charges += 1;
        }
        let attempt = self.client.send(upload, params).await;
        sub.http_status = attempt.http_status;
        sub.latency_ms = Some(attempt.latency.as_millis().min(u64::MAX as u128) as u64);
        if let Some(b) = &self.budget
            && attempt.outcome.billed_nothing()
        {
            b.release();
        }
        tracing::debug!(
            attempt = sub.attempts,
            status = ?attempt.http_status,
            latency_ms = sub.latency_ms,
            outcome = %attempt.outcome,
            "request finished"
        );
        Ok(attempt.outcome)
    }

    /// What follows an answer: the end, or a retry (after a shared pause or a backoff).
    async fn next_step(
        &self,
        outcome: &Outcome,
        retries: &mut u32,
        sub: &mut Submission,
        warn: &(dyn Fn(&str) + Sync),
    ) -> Step {
        match outcome {
            // A 200 without a usable result was billed: sending it again in this run would
            // be billed again for what is likely the same answer. A rerun redoes it.
            Outcome::Result { .. } | Outcome::Rejected { .. } | Outcome::BadAnswer { .. } => {
                self.pacer.succeeded();
                Step::Done
            }
            Outcome::Fatal { .. } => Step::Done,
            Outcome::RateLimited {
                retry_after,
                reset_at,
                ..
            } => {
                self.pause_for_rate_limit(*retries, *retry_after, *reset_at, sub, warn);
                if *retries >= self.policy.max_retries {
                    return Step::Done;
                }
                *retries += 1;
                // The next attempt waits out the shared cooldown in `acquire`.
                Step::Retry
            }
            Outcome::Transient {
                status,
                body_sent,
                message,
            } => {
                // The upload left with no definitive answer (a timeout or reset after sending,
                // a 5xx): it may have been processed and billed.
                if *body_sent {
                    sub.unknown_outcomes += 1;
                    sub.unknown_pending = true;
                }
                // A timeout or reset after sending ends the item `unknown` unless retried; an
                // HTTP error status is retried either way.
                if *body_sent && status.is_none() && !self.retry_unknown {
                    let message = message.clone();
                    return Step::End(Final::Unknown { message });
                }
                if *retries >= self.policy.max_retries {
                    return Step::Done;
                }
                let wait = self.policy.backoff(*retries, &mut rand::rng());
                tracing::info!(wait_ms = wait.as_millis() as u64, error = %message, "transient error: retrying");
                *retries += 1;
                if self.sleep_unless_stopped(wait).await {
                    Step::Retry
                } else {
                    Step::StoppedInBackoff
                }
            }
        }
    }

    /// A 429: the key is over its limit for every worker, so pause them all (even when this
    /// item has no retry left), for at most the capped wait.
    fn pause_for_rate_limit(
        &self,
        retries: u32,
        retry_after: Option<Duration>,
        reset_at: Option<u64>,
        sub: &mut Submission,
        warn: &(dyn Fn(&str) + Sync),
    ) {
        sub.rate_limited += 1;
        let pause = self.policy.rate_limit_pause(
            retries.min(self.policy.max_retries),
            retry_after,
            reset_at,
            now_epoch(),
            &mut rand::rng(),
        );
        if pause.capped {
            sub.retry_after_capped += 1;
            warn(&capped_warning(pause.asked.unwrap_or_default()));
        }
        tracing::info!(
            wait_ms = pause.wait.as_millis() as u64,
            "rate limited (429): pausing every worker"
        );
        self.pacer.rate_limited(pause.wait);
    }

    /// Sleep unless the stop token fires first; false when stopped.
    async fn sleep_unless_stopped(&self, wait: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

impl Submission {
    fn end(mut self, outcome: Final) -> Self {
        self.outcome = outcome;
        self
    }
}

/// The warning for a 429 whose requested wait was cut to [`MAX_RATE_LIMIT_WAIT`].
pub fn capped_warning(asked: Duration) -> String {
    format!(
        "the API asked to wait {} s after a 429 (Retry-After or X-RateLimit-Reset); waiting {} s \
         instead, the most this tool waits at once",
        asked.as_secs(),
        MAX_RATE_LIMIT_WAIT.as_secs()
    )
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
