//! The classifier: what one API answer means, as the error classes of DESIGN.md, decided from
//! the HTTP status first and the Django REST Framework body second ([`classify`], pure), or
//! from a transport error ([`classify_transport`]).

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use serde_json::Value;
use serde_json::value::RawValue;

use super::endpoint::{Endpoint, LIVENESS};
use super::model::CheckResponse;
use crate::exit::Exit;
use crate::kit::kinds::json_kind;
use crate::messages::cut;
use crate::record::{Answer, Class};

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// HTTP 200 with a parseable body: a decision (one credit spent).
    Result {
        response: Box<CheckResponse>,
        /// The body as received (the key already removed).
        raw: Answer,
    },
    /// 400 (a field map or `{"error"}`), 413 and other item-level 4xx: this item is bad; no retry.
    Rejected {
        status: u16,
        field: Option<String>,
        message: String,
    },
    /// HTTP 200 whose JSON object has no usable `liveness` (missing, null, not an object, or no
    /// Approved/Declined status): billed, but no decision. Not retried within the run (the
    /// same answer would be billed again); recorded so a rerun tries it again. `raw` is the
    /// body as received (with the key already removed by the client).
    BadAnswer { message: String, raw: Value },
    /// 429: refused before processing; safe to retry after waiting.
    RateLimited {
        retry_after: Option<Duration>,
        /// `X-RateLimit-Reset` as sent: UTC epoch seconds (a small value is read as seconds
        /// from now by [`crate::retry::RetryPolicy::rate_limit_pause`]).
        reset_at: Option<u64>,
        limit: Option<u32>,
        remaining: Option<u32>,
    },
    /// 5xx, connection errors, timeouts, a 200 whose body is not JSON. `body_sent` tells whether
    /// the request may have reached the API (so a retry may be billed twice).
    Transient {
        status: Option<u16>,
        body_sent: bool,
        message: String,
    },
    /// 401, 402, 403, 404 (and redirects): the whole run must stop.
    Fatal {
        kind: FatalKind,
        status: u16,
        message: String,
    },
}

/// Why a run must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FatalKind {
    /// 401 `{"detail": "Invalid API Key."}`.
    InvalidKey,
    /// 402: the check could not be paid for.
    PaymentRequired,
    /// 403 `{"detail": ...}`: missing, wrong or revoked key, or no access.
    Permission,
    /// 403 `{"error": "You don't have enough credits..."}`.
    OutOfCredits,
    /// 404 (or a redirect): wrong base URL or path.
    NotFound,
}

impl FatalKind {
    pub fn exit_code(self) -> Exit {
        match self {
            FatalKind::InvalidKey | FatalKind::Permission | FatalKind::NotFound => Exit::Auth,
            FatalKind::PaymentRequired | FatalKind::OutOfCredits => Exit::Credits,
        }
    }

    /// What happened and what to do about it.
    pub fn explain(self) -> &'static str {
        match self {
            FatalKind::InvalidKey => {
                "the API key was refused (401 Invalid API Key): check DIDIT_API_KEY or \
                 --api-key-file, then rerun the same command to resume"
            }
            FatalKind::Permission => {
                "the API key was refused (403 permission denied): the key is missing, wrong or \
                 revoked, or its application has no access to Passive Liveness; check \
                 DIDIT_API_KEY or --api-key-file and the application at business.didit.me, then \
                 rerun the same command to resume"
            }
            FatalKind::PaymentRequired => {
                "payment required (402): the check could not be paid for; top up credits at \
                 business.didit.me, then rerun the same command to resume"
            }
            FatalKind::OutOfCredits => {
                "out of credits (403): nothing was billed for this request; top up at \
                 business.didit.me, then rerun the same command to resume"
            }
            FatalKind::NotFound => {
                "the endpoint was not found: the base URL is wrong; check DIDIT_BASE_URL or \
                 --base-url (Didit's is https://verification.didit.me), then rerun"
            }
        }
    }
}

impl Outcome {
    /// The record class this outcome ends an item with.
    pub fn class(&self) -> Class {
        match self {
            Outcome::Result { .. } => Class::Result,
            Outcome::Rejected { .. } => Class::Rejected,
            Outcome::BadAnswer { .. } => Class::BadAnswer,
            Outcome::RateLimited { .. } => Class::RateLimited,
            Outcome::Transient { .. } => Class::Transient,
            Outcome::Fatal { .. } => Class::Fatal,
        }
    }

    /// True when the answer proves nothing was billed (Didit bills 200s only; 400/401/402/403/
    /// 404/413/429 are refused before processing; a connection that never opened sent nothing).
    pub fn billed_nothing(&self) -> bool {
        match self {
            Outcome::Result { .. } | Outcome::BadAnswer { .. } => false,
            Outcome::Rejected { .. } | Outcome::RateLimited { .. } | Outcome::Fatal { .. } => true,
            Outcome::Transient { body_sent, .. } => !body_sent,
        }
    }

    /// The error's field (400 field maps) if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Outcome::Rejected { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A result always has a decision (an answer without one is a BadAnswer).
            Outcome::Result { response, .. } => {
                let decision = response.decision().map_or("no decision", |d| d.as_str());
                f.write_str(decision)
            }
            Outcome::Rejected {
                status,
                field: Some(field),
                message,
            } => write!(f, "refused by the API (HTTP {status}, {field}): {message}"),
            Outcome::Rejected {
                status, message, ..
            } => write!(f, "refused by the API (HTTP {status}): {message}"),
            Outcome::RateLimited {
                retry_after, limit, ..
            } => {
                f.write_str("rate limited (HTTP 429)")?;
                if let Some(l) = limit {
                    write!(f, ", limit {l} per window")?;
                }
                if let Some(r) = retry_after {
                    write!(f, ", retry after {}s", r.as_secs_f64())?;
                }
                Ok(())
            }
            Outcome::Transient { message, .. } | Outcome::BadAnswer { message, .. } => {
                f.write_str(message)
            }
            Outcome::Fatal { kind, .. } => f.write_str(kind.explain()),
        }
    }
}

/// Retry-After values are kept up to this (about 31 years) so that any number converts to a
/// `Duration`; the wait itself is capped by [`crate::retry::MAX_RATE_LIMIT_WAIT`], which also
/// reports that the server asked for more.
const MAX_RETRY_AFTER_SECS: f64 = 1e9;

/// Decide what an HTTP answer of Passive Liveness means ([`classify_for`]).
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Outcome {
    classify_for(&LIVENESS, status, headers, body)
}

/// Decide what an HTTP answer of `endpoint` means. Pure: status first, then the body's DRF
/// shape; a 200 is read once, by the endpoint's lenient model.
pub fn classify_for(endpoint: &Endpoint, status: u16, headers: &HeaderMap, body: &[u8]) -> Outcome {
    match status {
        200..=299 => classify_success(endpoint, status, body),
        300..=399 => {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| format!(" to {}", cut(l)))
                .unwrap_or_default();
            Outcome::Fatal {
                kind: FatalKind::NotFound,
                status,
                message: format!(
                    "HTTP {status}: the API redirected{to}; redirects are not followed (a POST \
                     would lose its body and the key could go elsewhere): use the final URL as the base URL"
                ),
            }
        }
        401 => fatal(FatalKind::InvalidKey, status, body),
        402 => fatal(FatalKind::PaymentRequired, status, body),
        403 => {
            let kind = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(m)) if m.contains_key("error") => FatalKind::OutOfCredits,
                Ok(Value::Object(m)) if m.contains_key("detail") => FatalKind::Permission,
                _ if String::from_utf8_lossy(body)
                    .to_ascii_lowercase()
                    .contains("credit") =>
                {
                    FatalKind::OutOfCredits
                }
                _ => FatalKind::Permission,
            };
            fatal(kind, status, body)
        }
        404 | 405 | 410 => fatal(FatalKind::NotFound, status, body),
        408 => Outcome::Transient {
            status: Some(status),
            body_sent: true,
            message: format!("HTTP 408 Request Timeout{}", snippet_suffix(body)),
        },
        413 => Outcome::Rejected {
            status,
            field: Some("user_image".to_string()),
            message: format!(
                "the image is too large for the server (HTTP 413 Payload Too Large){}",
                snippet_suffix(body)
            ),
        },
        429 => classify_rate_limited(headers),
        _ if (400..500).contains(&status) => {
            let (field, message) = drf_message(body);
            Outcome::Rejected {
                status,
                field,
                message: message.unwrap_or_else(|| {
                    format!("HTTP {status}{}{}", reason(status), snippet_suffix(body))
                }),
            }
        }
        _ => Outcome::Transient {
            status: Some(status),
            body_sent: true,
            message: format!("HTTP {status}{}{}", reason(status), snippet_suffix(body)),
        },
    }
}

fn classify_success(endpoint: &Endpoint, status: u16, body: &[u8]) -> Outcome {
    // The body made one line (for the journal) and checked to be JSON, then read once.
    let text = one_line(body).and_then(|t| RawValue::from_string(t).ok());
    let Some((text, Ok(Some(response)))) = text.map(|t| {
        let read = (endpoint.read)(t.get());
        (t, read)
    }) else {
        return Outcome::Transient {
            status: Some(status),
            body_sent: true,
            message: format!(
                "HTTP {status} with a body that is not a JSON object ({} bytes){}",
                body.len(),
                snippet_suffix(body)
            ),
        };
    };
    if response.decision().is_some() {
        return Outcome::Result {
            response: Box::new(response),
            raw: Answer::Text(text),
        };
    }
    let raw: Value = serde_json::from_str(text.get()).unwrap_or_default();
    Outcome::BadAnswer {
        message: format!(
            "HTTP {status} without a usable result: {} (billed, no decision; a rerun sends it \
             again)",
            unusable(endpoint.verdict, &raw)
        ),
        raw,
    }
}

/// JSON text without the white space between its tokens (so it fits on one journal line),
/// or `None` when it is not UTF-8. Strings are copied as they are: a line break inside one is
/// always escaped in valid JSON, and invalid JSON is refused by the parse that follows.
fn one_line(body: &[u8]) -> Option<String> {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    if !body.iter().any(blank) {
        return String::from_utf8(body.to_vec()).ok();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(&b) = rest.first() {
        let end = if b == b'"' {
            // A string, copied whole: up to the quote that ends it (one not escaped).
            let mut end = 1;
            let end = loop {
                match memchr::memchr2(b'"', b'\\', &rest[end.min(rest.len())..]) {
                    Some(i) if rest[end + i] == b'\\' => end += i + 2,
                    Some(i) => break end + i + 1,
                    None => break rest.len(),
                }
            };
            out.extend_from_slice(&rest[..end]);
            end
        } else {
            // Between strings: everything but white space.
            let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
            out.extend(rest[..end].iter().filter(|b| !blank(b)));
            end
        };
        rest = &rest[end..];
    }
    String::from_utf8(out).ok()
}

/// Why a parsed 200 gives no decision: what its verdict object (`liveness`) lacks.
fn unusable(verdict: &str, raw: &Value) -> String {
    match raw.get(verdict) {
        None => format!("no `{verdict}` object"),
        Some(Value::Null) => format!("`{verdict}` is null"),
        Some(Value::Object(l)) => match l.get("status") {
            None => format!("`{verdict}.status` is missing"),
            Some(Value::Null) => format!("`{verdict}.status` is null"),
            Some(Value::String(st)) => format!(
                "`{verdict}.status` {:?} is neither Approved nor Declined",
                cut(st)
            ),
            Some(other) => format!("`{verdict}.status` is {}", json_kind(other)),
        },
        Some(other) => format!("`{verdict}` is {}, not an object", json_kind(other)),
    }
}

fn classify_rate_limited(headers: &HeaderMap) -> Outcome {
    let text = |name: &str| {
        headers
            .get(HeaderName::from_bytes(name.as_bytes()).ok()?)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let num = |name: &str| {
        text(name)
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f >= 0.0)
    };
    let mut reset_at = num("x-ratelimit-reset").map(|f| f.ceil() as u64);
    let retry_after = match text("retry-after") {
        Some(t) => match t.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => {
                Some(Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER_SECS)))
            }
            Ok(_) => None,
            // The HTTP-date form: fold it into the reset time.
            Err(_) => {
                if let Ok(at) = chrono::DateTime::parse_from_rfc2822(t) {
                    let at = at.timestamp().max(0) as u64;
                    reset_at = Some(reset_at.map_or(at, |r| r.max(at)));
                }
                None
            }
        },
        None => None,
    };
    Outcome::RateLimited {
        retry_after,
        reset_at,
        limit: num("x-ratelimit-limit").and_then(|f| u32::try_from(f as u64).ok()),
        remaining: num("x-ratelimit-remaining").and_then(|f| u32::try_from(f as u64).ok()),
    }
}

fn fatal(kind: FatalKind, status: u16, body: &[u8]) -> Outcome {
    let said = drf_message(body)
        .1
        .map(|m| format!(": {m}"))
        .unwrap_or_else(|| snippet_suffix(body));
    Outcome::Fatal {
        kind,
        status,
        message: format!("HTTP {status}{}{said}", reason(status)),
    }
}

/// The field and message of a DRF error body: `{"field": ["msg", ...], ...}`, `{"error": "msg"}`
/// or `{"detail": "msg"}`. The first field (in key order) is named; every message is kept.
fn drf_message(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let mut field = None;
    let mut parts = Vec::new();
    for (k, v) in &map {
        let text = flatten_messages(v);
        if text.is_empty() {
            continue;
        }
        match k.as_str() {
            "error" | "detail" | "non_field_errors" | "message" => parts.push(text),
            _ => {
                if field.is_none() {
                    field = Some(k.clone());
                }
                parts.push(format!("{k}: {text}"));
            }
        }
    }
    if parts.is_empty() {
        return (field, None);
    }
    // With a single named field, the message is that field's text alone.
    let message = if parts.len() == 1 {
        let only = parts.remove(0);
        match &field {
            Some(f) => only
                .strip_prefix(&format!("{f}: "))
                .unwrap_or(&only)
                .to_string(),
            None => only,
        }
    } else {
        parts.join("; ")
    };
    (field, Some(cut(&message)))
}

fn flatten_messages(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(flatten_messages)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", flatten_messages(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// `": <text>"` for a readable body, `": <title>"` for HTML, nothing for an empty one.
fn snippet_suffix(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return " (empty body)".to_string();
    }
    if text.starts_with('<') {
        let lower = text.to_ascii_lowercase();
        if let (Some(a), Some(b)) = (lower.find("<title>"), lower.find("</title>"))
            && a + 7 <= b
        {
            return format!(" (HTML page: {})", cut(&text[a + 7..b]));
        }
        return " (HTML page)".to_string();
    }
    format!(": {}", cut(text))
}

fn reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

/// Decide what a transport error means. Connection failures sent nothing; anything later
/// (timeout, reset, broken body) may have reached the API.
pub fn classify_transport(err: &reqwest::Error) -> Outcome {
    let body_sent = !err.is_connect();
    let what = if err.is_connect() {
        if err.is_timeout() {
            "connection timed out"
        } else {
            "could not connect"
        }
    } else if err.is_timeout() {
        "timed out waiting for the answer (outcome unknown: it may have been processed and billed)"
    } else {
        "the connection failed after the request was sent (outcome unknown: it may have been processed and billed)"
    };
    Outcome::Transient {
        status: err.status().map(|s| s.as_u16()),
        body_sent,
        message: format!("{what}: {}", error_chain(err)),
    }
}

/// The error and its sources on one line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests;
