//! The Didit-compatible emulator: a local HTTP server answering Didit's passive liveness, face
//! match and age estimation endpoints as Didit documents them, for demos, tests and benchmarks
//! (the real API is not reachable here).
//!
//! It listens on 127.0.0.1 only and serves:
//! - `POST /v3/passive-liveness/`, `POST /v3/face-match/` (`user_image` against `ref_image`) and
//!   `POST /v3/age-estimation/` (trailing slash required, like Didit's), on one rate window, one
//!   fault injection and one credit counter;
//! - `GET /v3/billing/balance/`: `{"balance": "<credits left x US$0.10>", ...}` in US dollars, as
//!   Didit gives it (same authentication; 403 with `billing_forbidden`, a key that may not read it);
//! - `GET /emulator/stats`: the counters as JSON ([`Stats`]), no authentication;
//! - anything else: 404 `{"detail": "Not found."}` (another method on the two API paths gets
//!   DRF's 405 after authentication).
//!
//! A `POST` goes through the checks in the order a real API applies them:
//! 1. the whole body is received (at most 16 MiB, else an HTML 413 as a fronting proxy sends it);
//! 2. authentication: a missing or wrong `x-api-key` gets 403
//!    `{"detail": "You do not have permission to perform this action."}` (or 401
//!    `{"detail": "Invalid API Key."}` with `auth_401`);
//! 3. the rate limit: an exact sliding window per key (the emulator knows one key, so one window)
//!    of `N` requests in `(now - W, now]`. Only requests admitted by the limiter are counted in
//!    the window: a rejected request leaves no trace, so a client retrying too early does not push
//!    its own reset further away. Every admitted request counts, whatever it ends with (400,
//!    injected fault, 200), as Didit's write budget does. A 429 carries Didit's body and the only
//!    `X-RateLimit-Limit`, `X-RateLimit-Remaining` (0), `X-RateLimit-Reset` (UTC epoch second when
//!    the oldest counted request leaves the window) and `Retry-After` (whole seconds, at least 1)
//!    headers the emulator ever sends;
//! 4. injected faults (seeded): 500 with an empty body, 502 with an HTML body, 503 with DRF's
//!    `{"detail": ...}`, a spurious 429 with the four headers and `Retry-After:
//!    spurious_retry_after` (1 by default; another client on the same key used the budget; counted
//!    in `by_status` but not in `rate_limited`), the
//!    connection dropped after the request was received (the client sees the connection closed
//!    without any response), or a stall of `stall` (then an HTML 504, unless the client gave up);
//! 5. validation, with DRF's field maps (all failing fields at once) and Didit's texts;
//! 6. credits: when spent, 403 `{"error": "You don't have enough credits..."}` before any image
//!    processing (nothing billed);
//! 7. decoding, bounded (8000 px a side, 128 MiB), off the async threads: an undecodable image or
//!    a decompression bomb gets 400 `{"error": "Invalid user image format."}`;
//! 8. the result, derived from the image itself (see [`results`] and [`face_age`]: a pair
//!    matches when one image is the other or derived from it); only a 200 spends a credit.
//!    `rotate_image=true` adds 25 ms, as trying rotations is slower.
//!
//! `latency` + uniform `jitter` delay every `POST` answer. Faults and jitter come from one seeded
//! RNG, two draws per `POST` in arrival order, so a run is reproducible given the seed and the
//! order of requests. With `sandbox`, a valid request gets a fixed Approved result and nothing is
//! billed or enrolled. With `log`, one JSON line per request (not for `/emulator/stats`) is
//! appended and flushed before the answer: time, method, path, status (null when dropped or
//! stalled), fault, whether the key matched (never the key), sha256 of the uploaded image (and
//! `ref_sha256`, of the reference),
//! vendor_data, the fields received and the latency.
//!
//! Result severities: `NO_FACE_DETECTED`, `LOW_LIVENESS_SCORE`, `LIVENESS_FACE_ATTACK`,
//! `FACE_IN_BLOCKLIST`, `POSSIBLE_FACE_IN_BLOCKLIST` are `error` (Declined);
//! `MULTIPLE_FACES_DETECTED`, `LOW_FACE_QUALITY`, `LOW_FACE_LUMINANCE`, `HIGH_FACE_LUMINANCE` are
//! `warning`; `DUPLICATED_FACE`, `POSSIBLE_DUPLICATED_FACE` are `information`. `DUPLICATED_FACE`
//! is raised when the same image bytes were earlier saved (`save_api_request=true`, Approved)
//! under a different or no vendor_data.

pub mod face_age;
pub mod form;
mod ratelimit;
pub mod results;
mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use form::{ALLOWED_EXTENSIONS, Check, MAX_IMAGE_BYTES};
pub use ratelimit::parse_rate_limit;

/// Probabilities (0..=1, summing to at most 1) of each injected fault per `POST`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// 500 with an empty body.
    pub p500: f64,
    /// 502 with an HTML body.
    pub p502: f64,
    /// 503 with `{"detail": "Service temporarily unavailable, try again later."}`.
    pub p503: f64,
    /// A spurious 429 with all four headers.
    pub p429: f64,
    /// Connection dropped after the request was received, without any response.
    pub reset: f64,
    /// The request stalls for `EmulatorConfig::stall`.
    pub stall: f64,
}

impl Faults {
    fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("--fault-500", self.p500),
            ("--fault-502", self.p502),
            ("--fault-503", self.p503),
            ("--fault-429", self.p429),
            ("--fault-reset", self.reset),
            ("--fault-stall", self.stall),
        ]
    }

    fn validate(&self) -> Result<(), EmulatorError> {
        let mut sum = 0.0;
        for (name, p) in self.named() {
            if !(0.0..=1.0).contains(&p) {
                return Err(EmulatorError::Probability { name, value: p });
            }
            sum += p;
        }
        if sum > 1.0 + 1e-9 {
            return Err(EmulatorError::FaultSum(sum));
        }
        Ok(())
    }
}

/// Largest `Retry-After` of a spurious 429: a day.
const MAX_SPURIOUS_RETRY_AFTER: u64 = 86_400;

/// How the emulator behaves. [`EmulatorConfig::new`] gives Didit's defaults.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The key clients must send in `x-api-key`.
    pub api_key: String,
    /// Wrong/missing key -> 401 `{"detail":"Invalid API Key."}` instead of 403.
    pub auth_401: bool,
    /// Per-key exact sliding window: (requests, window). `None` disables it.
    pub rate_limit: Option<(u32, Duration)>,
    /// Credits available; `None` = unlimited. Only 200s consume.
    pub credits: Option<u64>,
    /// Fixed Approved result, nothing billed.
    pub sandbox: bool,
    /// Fixed delay before every `POST` answer.
    pub latency: Duration,
    /// Uniform random extra delay up to this.
    pub jitter: Duration,
    pub faults: Faults,
    /// How long a stalled request stalls.
    pub stall: Duration,
    /// `Retry-After` (whole seconds) of a spurious 429; 0 is allowed (`Retry-After: 0`, with an
    /// `X-RateLimit-Reset` of the current second), so tests with many spurious 429s stay fast.
    pub spurious_retry_after: u64,
    /// Seed of the fault/jitter RNG.
    pub seed: u64,
    /// Append one JSON line per request to this file.
    pub log: Option<PathBuf>,
    /// Answer the balance endpoint with 403, as Didit does for a key that may not read billing.
    pub billing_forbidden: bool,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("api_key", &"<redacted>")
            .field("auth_401", &self.auth_401)
            .field("rate_limit", &self.rate_limit)
            .field("credits", &self.credits)
            .field("sandbox", &self.sandbox)
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("faults", &self.faults)
            .field("stall", &self.stall)
            .field("spurious_retry_after", &self.spurious_retry_after)
            .field("seed", &self.seed)
            .field("log", &self.log)
            .field("billing_forbidden", &self.billing_forbidden)
            .finish()
    }
}

impl EmulatorConfig {
    /// Didit's defaults: 300 requests per 60 s, unlimited credits, no faults, no latency.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            auth_401: false,
            rate_limit: Some((300, Duration::from_secs(60))),
            credits: None,
            sandbox: false,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            faults: Faults::default(),
            stall: Duration::from_secs(600),
            spurious_retry_after: 1,
            seed: 0,
            log: None,
            billing_forbidden: false,
        }
    }

    /// Check the settings (an API key, a window longer than 0, probabilities that add up).
    pub fn validate(&self) -> Result<(), EmulatorError> {
        if self.api_key.trim().is_empty() {
            return Err(EmulatorError::EmptyApiKey);
        }
        if let Some((_, window)) = self.rate_limit
            && window.is_zero()
        {
            return Err(EmulatorError::RateLimit(
                "the rate-limit window must be longer than 0".into(),
            ));
        }
        if self.spurious_retry_after > MAX_SPURIOUS_RETRY_AFTER {
            return Err(EmulatorError::SpuriousRetryAfter(self.spurious_retry_after));
        }
        self.faults.validate()
    }

    /// The short note printed on stderr when the subcommand starts (never the key).
    fn describe(&self) -> String {
        let limit = match self.rate_limit {
            Some((n, w)) => format!("{n} requests per {} per key", ratelimit::window_phrase(w)),
            None => "off".into(),
        };
        let credits = match self.credits {
            Some(n) => n.to_string(),
            None => "unlimited".into(),
        };
        let faults: Vec<String> = self
            .faults
            .named()
            .iter()
            .filter(|(_, p)| *p > 0.0)
            .map(|(name, p)| format!("{}={p}", name.trim_start_matches("--fault-")))
            .collect();
        let faults = if faults.is_empty() {
            "none".into()
        } else {
            let mut named = faults.join(" ");
            if self.faults.p429 > 0.0 {
                named.push_str(&format!(
                    " (spurious 429s say Retry-After: {})",
                    self.spurious_retry_after
                ));
            }
            format!("{named} (seed {})", self.seed)
        };
        let mut note = format!(
            "SIMULATED Didit API: passive liveness, face match and age estimation (a local \
             emulator, not Didit's service): \
             rate limit {limit}; credits {credits}; latency {} ms + up to {} ms; faults {faults}",
            self.latency.as_millis(),
            self.jitter.as_millis()
        );
        if self.sandbox {
            note.push_str("; sandbox (fixed Approved result, nothing billed)");
        }
        if self.auth_401 {
            note.push_str("; wrong keys get 401");
        }
        if let Some(log) = &self.log {
            note.push_str(&format!("; request log {}", log.display()));
        }
        note.push_str(". Stop with Ctrl-C.");
        note
    }
}

/// A snapshot of the emulator's counters (also served at `GET /emulator/stats`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Every request received except those to `/emulator/stats` and the balance reads.
    pub requests: u64,
    /// `GET /v3/billing/balance/` requests: reads, on their own budget, counted apart (not in
    /// `requests` nor `by_status`).
    #[serde(default)]
    pub balance_reads: u64,
    /// Responses sent, by HTTP status (dropped and stalled requests are not in here).
    pub by_status: BTreeMap<u16, u64>,
    /// 429s from the rate limiter (spurious injected 429s are only in `by_status`).
    pub rate_limited: u64,
    /// Credits spent (one per 200 outside sandbox mode).
    pub credits_used: u64,
    /// Credits left; `None` when unlimited.
    pub credits_left: Option<u64>,
    /// Connections dropped by the `reset` fault.
    pub dropped: u64,
    /// Requests stalled by the `stall` fault.
    pub stalled: u64,
}

impl Stats {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let left = match self.credits_left {
            Some(n) => n.to_string(),
            None => "unlimited".into(),
        };
        format!(
            "emulator served {} requests ({}); rate-limited {}; credits used {}, left {}; \
             connections dropped {}; stalled {}",
            self.requests,
            if statuses.is_empty() {
                "none answered".into()
            } else {
                statuses.join(", ")
            },
            self.rate_limited,
            self.credits_used,
            left,
            self.dropped,
            self.stalled
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    RateLimit(String),
    #[error("{name} must be a probability between 0 and 1, got {value}")]
    Probability { name: &'static str, value: f64 },
    #[error("the fault probabilities add up to {0}, more than 1")]
    FaultSum(f64),
    #[error("--fault-429-retry-after must be at most {MAX_SPURIOUS_RETRY_AFTER} seconds, got {0}")]
    SpuriousRetryAfter(u64),
    #[error("the emulator's API key must not be empty (--api-key or DIDIT_API_KEY)")]
    EmptyApiKey,
    #[error("cannot open the emulator's request log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("emulator I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A running emulator. Dropping it stops the server (in the background); [`Emulator::shutdown`]
/// stops it and waits.
pub struct Emulator {
    addr: SocketAddr,
    app: Arc<server::App>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Bind 127.0.0.1:`port` (0 = a free port) and serve in a spawned task.
pub async fn start(config: EmulatorConfig, port: u16) -> Result<Emulator, EmulatorError> {
    config.validate()?;
    let app = Arc::new(server::App::new(config)?);
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|source| EmulatorError::Bind { port, source })?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(server::serve(listener, app.clone()));
    Ok(Emulator {
        addr,
        app,
        task: Some(task),
    })
}

impl Emulator {
    /// "http://127.0.0.1:PORT"
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.app.stats()
    }

    /// Stop accepting, end stalls and delays, let answers in progress finish (at most 5 s).
    pub async fn shutdown(mut self) {
        self.app.shutdown.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
    }
}

/// The `liveness-batch emulator` subcommand: serve until Ctrl-C or SIGTERM, then print the
/// counters on stderr.
pub async fn run_command(config: EmulatorConfig, port: u16) -> Result<(), EmulatorError> {
    let note = config.describe();
    let emulator = start(config, port).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "Didit emulator listening on {}", emulator.base_url())?;
        out.flush()?;
    }
    crate::messages::note(&note);
    wait_for_stop().await?;
    let app = emulator.app.clone();
    emulator.shutdown().await;
    crate::messages::note(&app.stats().summary());
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_names_the_settings_not_the_key() {
        let mut c = EmulatorConfig::new("secret-key-value");
        c.credits = Some(3);
        c.faults.p503 = 0.1;
        let d = c.describe();
        assert!(d.starts_with("SIMULATED"));
        assert!(d.contains("300 requests per minute per key"), "{d}");
        assert!(d.contains("credits 3"), "{d}");
        assert!(d.contains("503=0.1"), "{d}");
        assert!(!d.contains("Retry-After"), "no spurious 429s: {d}");
        assert!(!d.contains("secret-key-value"));
        c.faults.p429 = 0.2;
        c.spurious_retry_after = 0;
        let d = c.describe();
        assert!(
            d.contains("429=0.2 (spurious 429s say Retry-After: 0) (seed 0)"),
            "{d}"
        );
    }

    #[test]
    fn stats_round_trip_as_json() {
        let mut s = Stats {
            requests: 3,
            credits_left: Some(1),
            ..Stats::default()
        };
        s.by_status.insert(200, 2);
        s.by_status.insert(429, 1);
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains("\"by_status\":{\"200\":2,\"429\":1}"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Stats>(&text).unwrap(), s);
        assert!(s.summary().contains("200: 2, 429: 1"));
    }
}
