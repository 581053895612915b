//! What one API answer means: the error classes of DESIGN.md, decided from the HTTP status
//! first and the Django REST Framework body second ([`classify`], pure), or from a transport
//! error ([`classify_transport`]).

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use serde_json::Value;
use serde_json::value::RawValue;

use super::model::{LivenessResponse, json_kind};
use crate::exit::Exit;
use crate::record::{Answer, Class};

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// HTTP 200 with a parseable body: a decision (one credit spent).
    Result {
        response: Box<LivenessResponse>,
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

    pub fn as_str(self) -> &'static str {
        match self {
            FatalKind::InvalidKey => "invalid_key",
            FatalKind::PaymentRequired => "payment_required",
            FatalKind::Permission => "permission",
            FatalKind::OutOfCredits => "out_of_credits",
            FatalKind::NotFound => "not_found",
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
            Outcome::Result { response, .. } => match response.decision() {
                Some(d) => write!(f, "{}", d.as_str()),
                None => f.write_str("a result without a decision"),
            },
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

/// Longest piece of a response body quoted in a message.
const SNIPPET: usize = 200;
/// Retry-After values are kept up to this (about 31 years) so that any number converts to a
/// `Duration`; the wait itself is capped by [`crate::retry::MAX_RATE_LIMIT_WAIT`], which also
/// reports that the server asked for more.
const MAX_RETRY_AFTER_SECS: f64 = 1e9;

/// Decide what an HTTP answer means. Pure: status first, then the body's DRF shape.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Outcome {
    match status {
        200..=299 => classify_success(status, body),
        300..=399 => {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| format!(" to {}", truncate(&clean(l), SNIPPET)))
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
        400 => {
            let (field, message) = drf_message(body);
            Outcome::Rejected {
                status,
                field,
                message: message
                    .unwrap_or_else(|| format!("HTTP 400 Bad Request{}", snippet_suffix(body))),
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
                message: message
                    .unwrap_or_else(|| format!("HTTP {status}{}", snippet_suffix(body))),
            }
        }
        _ => Outcome::Transient {
            status: Some(status),
            body_sent: true,
            message: format!("HTTP {status}{}{}", reason(status), snippet_suffix(body)),
        },
    }
}

fn classify_success(status: u16, body: &[u8]) -> Outcome {
    if let Some((response, text)) = plain_result(body) {
        return Outcome::Result {
            response: Box::new(response),
            raw: Answer::Text(text),
        };
    }
    let raw: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return Outcome::Transient {
                status: Some(status),
                body_sent: true,
                message: format!(
                    "HTTP {status} with a body that is not a JSON object ({} bytes){}",
                    body.len(),
                    snippet_suffix(body)
                ),
            };
        }
    };
    let response = LivenessResponse::from_raw(&raw);
    match unusable(&raw, &response) {
        None => Outcome::Result {
            response: Box::new(response),
            raw: Answer::Value(raw),
        },
        Some(why) => Outcome::BadAnswer {
            message: format!(
                "HTTP {status} without a usable result: {why} (billed, no decision; a rerun \
                 sends it again)"
            ),
            raw,
        },
    }
}

/// A 200 body of the shape Didit sends, with a decision: the model read straight from it
/// ([`LivenessResponse::read_plain`]) and the body made one line, kept as text for the
/// journal. `None` sends the body through the lenient reading of a JSON value.
fn plain_result(body: &[u8]) -> Option<(LivenessResponse, Box<RawValue>)> {
    let text = RawValue::from_string(one_line(body)?).ok()?;
    let response = LivenessResponse::read_plain(text.get())?;
    response.decision()?;
    Some((response, text))
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
        if b == b'"' {
            // A string, copied whole: up to the quote that ends it (one not escaped).
            let mut end = 1;
            loop {
                if end >= rest.len() {
                    break;
                }
                match memchr::memchr2(b'"', b'\\', &rest[end..]) {
                    Some(i) if rest[end + i] == b'\\' => end += i + 2,
                    Some(i) => {
                        end += i + 1;
                        break;
                    }
                    None => {
                        end = rest.len();
                        break;
                    }
                }
            }
            let end = end.min(rest.len());
            out.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
        } else {
            // Between strings: everything but white space.
            let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
            out.extend(rest[..end].iter().filter(|b| !blank(b)));
            rest = &rest[end..];
        }
    }
    String::from_utf8(out).ok()
}

/// Why a parsed 200 gives no decision, or `None` when it does. A missing or unknown status
/// with an error-level warning is still Declined ([`LivenessResponse::decision`]).
fn unusable(raw: &Value, response: &LivenessResponse) -> Option<String> {
    if response.decision().is_some() {
        return None;
    }
    let why = match raw.get("liveness") {
        None => "no `liveness` object".to_string(),
        Some(Value::Null) => "`liveness` is null".to_string(),
        Some(Value::Object(l)) => match l.get("status") {
            None => "`liveness.status` is missing".to_string(),
            Some(Value::Null) => "`liveness.status` is null".to_string(),
            Some(Value::String(st)) => format!(
                "`liveness.status` {:?} is neither Approved nor Declined",
                truncate(&clean(st), 40)
            ),
            Some(other) => format!("`liveness.status` is {}", json_kind(other)),
        },
        Some(other) => format!("`liveness` is {}, not an object", json_kind(other)),
    };
    Some(why)
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
    (field, Some(truncate(&clean(&message), 2 * SNIPPET)))
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
            return format!(
                " (HTML page: {})",
                truncate(&clean(&text[a + 7..b]), SNIPPET)
            );
        }
        return " (HTML page)".to_string();
    }
    format!(": {}", truncate(&clean(text), SNIPPET))
}

/// Control characters (including newlines) become spaces so a message stays one line.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
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
    clean(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn none() -> HeaderMap {
        HeaderMap::new()
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn rejected(o: Outcome) -> (u16, Option<String>, String) {
        match o {
            Outcome::Rejected {
                status,
                field,
                message,
            } => (status, field, message),
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    fn fatal_kind(o: Outcome) -> (FatalKind, String) {
        match o {
            Outcome::Fatal { kind, message, .. } => (kind, message),
            other => panic!("expected Fatal, got {other:?}"),
        }
    }

    /// The old reading: a JSON value first, then the lenient model.
    fn lenient(text: &str) -> (LivenessResponse, Value) {
        let v: Value = serde_json::from_str(text).unwrap();
        (LivenessResponse::from_raw(&v), v)
    }

    const DIDIT: &str = r#"{
      "request_id": "f1c8c9b2-d3e4",
      "liveness": {
        "status": "Declined", "method": "PASSIVE", "score": 12.5,
        "user_image": {"entities": [
            {"bbox": [1, 2.5, 40, 60], "confidence": 0.81, "age": 30.1, "gender": "male", "race": null},
            {"bbox": [0, 0, 100, 120], "confidence": 0.9, "age": null, "gender": null, "race": "x"}],
          "best_angle": 2.6},
        "warnings": [
          {"risk": "LOW_LIVENESS_SCORE", "feature": "LIVENESS", "additional_data": null,
           "log_type": " Error ", "short_description": "Low \"score\"", "long_description": "a\\b"},
          {"risk": "", "log_type": null, "additional_data": {"n": [1, 2]}}],
        "face_quality": 72, "face_luminance": 48.2, "new_field": {"x": [true]}},
      "vendor_data": "user-1",
      "metadata": {"batch": "q3", "nested": {"k": null}},
      "created_at": "2026-06-12T01:04:42.763237+00:00",
      "extra": [1, "two", {"three": 3}]
    }"#;

    #[test]
    fn a_plain_answer_is_read_straight_into_the_same_model_and_kept_as_one_line() {
        let (response, text) = plain_result(DIDIT.as_bytes()).expect("the plain reading");
        let (want, value) = lenient(DIDIT);
        assert_eq!(response, want);
        assert_eq!(response.decision(), Some(crate::record::Decision::Declined));
        assert!(!text.get().contains(['\n', '\r', '\t']), "{}", text.get());
        assert!(!text.get().contains(": "), "{}", text.get());
        // The strings are copied as they are: their spaces and escapes stay.
        assert!(text.get().contains(r#""Low \"score\"""#), "{}", text.get());
        assert!(text.get().contains(r#""a\\b""#), "{}", text.get());
        let kept: Value = serde_json::from_str(text.get()).unwrap();
        assert_eq!(kept, value);
        match classify(200, &none(), DIDIT.as_bytes()) {
            Outcome::Result {
                raw: Answer::Text(t),
                response,
            } => {
                assert_eq!(t.get(), text.get());
                assert_eq!(*response, want);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_of_another_shape_takes_the_lenient_reading_with_the_same_result() {
        let liveness = |l: &str| format!(r#"{{"request_id": "r", "liveness": {l}}}"#);
        let odd = [
            // A number as a string, a status as a number beside an error warning, lists and
            // objects where the other is due, a key given twice, a non-object warning.
            liveness(r#"{"status": "Approved", "score": "97.5"}"#),
            liveness(r#"{"status": 3, "warnings": [{"risk": "X", "log_type": "error"}]}"#),
            liveness(r#"{"status": "Approved", "user_image": [[1, 2, 3, 4]]}"#),
            liveness(r#"{"status": "Approved", "warnings": {"risk": "X"}}"#),
            liveness(r#"{"status": "Declined", "status": "Approved"}"#),
            liveness(r#"{"status": "Approved", "warnings": [["X", null, null, "error"]]}"#),
            liveness(
                r#"{"status": "Approved", "user_image": {"entities": [{"bbox": ["1", 2, 3, 4]}]}}"#,
            ),
            r#"{"request_id": 7, "liveness": {"status": "Approved"}}"#.to_string(),
            r#"{"liveness": {"status": "Approved"}, "liveness": {"status": "Declined"}}"#
                .to_string(),
        ];
        for text in &odd {
            assert!(plain_result(text.as_bytes()).is_none(), "{text}");
            let (want, value) = lenient(text);
            match classify(200, &none(), text.as_bytes()) {
                Outcome::Result { response, raw } => {
                    assert_eq!(*response, want, "{text}");
                    assert!(matches!(raw, Answer::Value(_)), "{text}");
                    assert_eq!(raw, value, "{text}");
                }
                Outcome::BadAnswer { raw, .. } => {
                    assert_eq!(want.decision(), None, "{text}");
                    assert_eq!(raw, value, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Without a decision the lenient reading gives the reason.
        let o = classify(
            200,
            &none(),
            liveness(r#"{"status": "Pending"}"#).as_bytes(),
        );
        assert_eq!(o.class(), Class::BadAnswer);
        assert!(o.to_string().contains("Pending"), "{o}");
    }

    #[test]
    fn plain_and_lenient_readings_agree_field_by_field() {
        // Every field in each of the forms the plain reading accepts: missing, null, a value.
        let forms = [
            ("score", vec!["null", "0", "99.5", "100", "1e2", "-0.0"]),
            ("face_quality", vec!["null", "7", "7.25"]),
            ("method", vec!["null", r#""ACTIVE""#, r#""""#]),
            (
                "warnings",
                vec![
                    "null",
                    "[]",
                    r#"[{}]"#,
                    r#"[{"risk": " ", "log_type": ""}]"#,
                ],
            ),
            (
                "user_image",
                vec![
                    "null",
                    "{}",
                    r#"{"entities": null, "best_angle": -1.5}"#,
                    r#"{"entities": [{}, {"bbox": []}, {"bbox": [0, 0, 1e3, 2]}], "best_angle": 0}"#,
                ],
            ),
        ];
        for (field, values) in &forms {
            for v in values {
                for status in [r#""Approved""#, r#"" declined ""#] {
                    let text = format!(
                        r#"{{"liveness": {{"status": {status}, "{field}": {v}}}, "metadata": null}}"#
                    );
                    let (response, kept) = plain_result(text.as_bytes()).expect(&text);
                    let (want, value) = lenient(&text);
                    assert_eq!(response, want, "{text}");
                    assert_eq!(serde_json::from_str::<Value>(kept.get()).unwrap(), value);
                }
            }
        }
    }

    /// The plain byte-by-byte statement of [`one_line`].
    fn one_line_reference(body: &[u8]) -> Option<String> {
        let mut out = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        for &b in body {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                continue;
            } else if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
        String::from_utf8(out).ok()
    }

    #[test]
    fn one_line_agrees_with_its_plain_statement_on_any_bytes() {
        // Short strings over the bytes that matter (quotes, backslashes, white space),
        // including unfinished strings and escapes at the very end.
        const ALPHABET: &[u8] = b"\"\\ \n\t\ra{:,";
        for body in crate::testing::byte_strings(ALPHABET, 12, 20_000) {
            assert_eq!(one_line(&body), one_line_reference(&body), "{body:?}");
        }
        for body in [
            &b""[..],
            b"   ",
            b"\"",
            b"\"\\",
            b"\"a\\\"",
            b"{\"a\": \"b\\\\\"} ",
        ] {
            assert_eq!(one_line(body), one_line_reference(body), "{body:?}");
        }
    }

    #[test]
    fn one_line_drops_only_the_space_between_tokens() {
        let pretty =
            "{\n  \"a b\" : [ 1 ,\t2 ],\r\n  \"c\": \"x \\\" y\\\\\" , \"d\":\"\\\\\"\n}\n";
        assert_eq!(
            one_line(pretty.as_bytes()).unwrap(),
            "{\"a b\":[1,2],\"c\":\"x \\\" y\\\\\",\"d\":\"\\\\\"}"
        );
        assert_eq!(one_line(b"{\"k\": \"\xff\"}"), None);
        // Not JSON: left for the parse to refuse.
        assert_eq!(one_line(b"not json").unwrap(), "notjson");
        assert!(plain_result(b"{\"liveness\": {\"status\": \"Approved\"}} trailing").is_none());
        assert!(plain_result(b"[{\"liveness\": {\"status\": \"Approved\"}}]").is_none());
    }

    #[test]
    fn row_200_result() {
        let raw = json!({"request_id": "r", "liveness": {"status": "Approved", "score": 95, "warnings": []}});
        match classify(200, &none(), &body(raw.clone())) {
            Outcome::Result {
                response,
                raw: kept,
            } => {
                assert_eq!(kept, raw);
                assert_eq!(response.decision(), Some(crate::record::Decision::Approved));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn row_200_with_unknown_fields_risk_codes_and_nulls_is_still_a_result() {
        let raw = json!({"request_id": "r", "new_key": [1],
            "liveness": {"status": "Declined", "score": null, "face_quality": null, "face_luminance": null,
                "user_image": {"entities": [], "best_angle": null},
                "warnings": [{"risk": "BRAND_NEW_RISK", "log_type": "error", "node_id": "x"}]},
            "created_at": "2026-01-01T00:00:00Z"});
        let o = classify(200, &none(), &body(raw));
        assert_eq!(o.class(), Class::Result);
        let Outcome::Result { response, .. } = o else {
            unreachable!()
        };
        assert_eq!(response.risks(), ["BRAND_NEW_RISK"]);
    }

    #[test]
    fn row_200_without_a_usable_liveness_is_a_bad_answer() {
        for (raw, want) in [
            (json!({"request_id": "r"}), "no `liveness` object"),
            (json!({"liveness": null}), "`liveness` is null"),
            (json!({"liveness": "Approved"}), "`liveness` is a string"),
            (json!({"liveness": [1]}), "`liveness` is an array"),
            (
                json!({"liveness": {"score": 90}}),
                "`liveness.status` is missing",
            ),
            (
                json!({"liveness": {"status": null}}),
                "`liveness.status` is null",
            ),
            (
                json!({"liveness": {"status": 1}}),
                "`liveness.status` is a number",
            ),
            (
                json!({"liveness": {"status": "In Review", "warnings": []}}),
                "\"In Review\" is neither Approved nor Declined",
            ),
        ] {
            let o = classify(200, &none(), &body(raw.clone()));
            assert_eq!(o.class(), Class::BadAnswer, "{raw}");
            assert!(!o.billed_nothing(), "a 200 is billed");
            match o {
                Outcome::BadAnswer { message, raw: kept } => {
                    assert!(message.contains(want), "{message}");
                    assert!(message.starts_with("HTTP 200 without a usable result"));
                    assert_eq!(kept, raw);
                }
                other => panic!("{other:?}"),
            }
        }
        // A long unknown status is not echoed whole.
        let long = "X".repeat(10_000);
        let o = classify(200, &none(), &body(json!({"liveness": {"status": long}})));
        assert!(o.to_string().len() < 300, "{o}");
        // No status but an error-level warning is still Declined (as Didit derives it).
        let o = classify(
            200,
            &none(),
            &body(
                json!({"liveness": {"warnings": [{"risk": "NO_FACE_DETECTED", "log_type": "error"}]}}),
            ),
        );
        assert_eq!(o.class(), Class::Result);
    }

    #[test]
    fn a_redirect_location_is_cut() {
        let mut h = HeaderMap::new();
        let long = format!("https://x.example/{}", "a".repeat(5000));
        h.insert("location", HeaderValue::from_str(&long).unwrap());
        let (_, message) = fatal_kind(classify(302, &h, b""));
        assert!(message.len() < 600, "{}", message.len());
    }

    #[test]
    fn row_200_not_json_is_transient_and_may_be_billed() {
        for b in [&b"<html>oops</html>"[..], b"", b"[1,2]", b"{truncated"] {
            match classify(200, &none(), b) {
                Outcome::Transient {
                    status,
                    body_sent,
                    message,
                } => {
                    assert_eq!(status, Some(200));
                    assert!(body_sent);
                    assert!(message.contains("not a JSON object"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn row_400_field_maps() {
        let cases = [
            (
                json!({"user_image": ["No file was submitted."]}),
                "user_image",
                "No file was submitted.",
            ),
            (
                json!({"user_image": ["File size should not exceed 5 MB"]}),
                "user_image",
                "File size should not exceed 5 MB",
            ),
            (
                json!({"user_image": ["File extension “txt” is not allowed. Allowed extensions are: tiff, jpg, jpeg, png, webp."]}),
                "user_image",
                "File extension “txt” is not allowed.",
            ),
            (
                json!({"face_liveness_score_decline_threshold": ["Ensure this value is less than or equal to 100."]}),
                "face_liveness_score_decline_threshold",
                "less than or equal to 100",
            ),
        ];
        for (b, want_field, want_msg) in cases {
            let (status, field, message) = rejected(classify(400, &none(), &body(b)));
            assert_eq!(status, 400);
            assert_eq!(field.as_deref(), Some(want_field));
            assert!(message.contains(want_msg), "{message}");
            assert!(
                !message.starts_with(want_field),
                "field not repeated: {message}"
            );
        }
    }

    #[test]
    fn row_400_error_shape_and_several_fields() {
        let (_, field, message) = rejected(classify(
            400,
            &none(),
            &body(json!({"error": "Invalid user image format."})),
        ));
        assert_eq!(field, None);
        assert_eq!(message, "Invalid user image format.");
        let (_, field, message) = rejected(classify(
            400,
            &none(),
            &body(
                json!({"rotate_image": ["Must be a valid boolean."], "metadata": ["Value must be valid JSON."]}),
            ),
        ));
        // The first field as the API listed it names the error.
        assert_eq!(field.as_deref(), Some("rotate_image"));
        assert!(
            message.contains("rotate_image: Must be a valid boolean.")
                && message.contains("metadata: Value"),
            "{message}"
        );
        let (_, field, message) = rejected(classify(
            400,
            &none(),
            b"<html><title>Bad Request</title></html>",
        ));
        assert_eq!(field, None);
        assert!(message.contains("Bad Request"), "{message}");
    }

    #[test]
    fn rows_401_402_403_stop_the_run_with_their_kind() {
        let credits = json!({"error": "You don't have enough credits to perform this request. Please top up at https://business.didit.me"});
        let cases = [
            (
                401,
                body(json!({"detail": "Invalid API Key."})),
                FatalKind::InvalidKey,
                "Invalid API Key.",
                3,
                "key was refused",
            ),
            (
                402,
                Vec::new(),
                FatalKind::PaymentRequired,
                "",
                4,
                "rerun the same command",
            ),
            (
                403,
                body(json!({"detail": "You do not have permission to perform this action."})),
                FatalKind::Permission,
                "permission",
                3,
                "key was refused",
            ),
            (
                403,
                body(credits),
                FatalKind::OutOfCredits,
                "credits",
                4,
                "top up",
            ),
        ];
        for (status, raw, want, said, code, explains) in cases {
            let (kind, message) = fatal_kind(classify(status, &none(), &raw));
            assert_eq!(kind, want, "HTTP {status}");
            assert!(message.contains(said), "{message}");
            assert_eq!(kind.exit_code().code(), code, "{kind:?}");
            assert!(kind.explain().contains(explains), "{kind:?}");
        }
        assert!(
            FatalKind::OutOfCredits
                .explain()
                .contains("rerun the same command")
        );
    }

    #[test]
    fn a_403_without_didits_body_is_read_by_its_words() {
        // A proxy's HTML 403 is a permission problem; plain text about credits is credits.
        assert_eq!(
            fatal_kind(classify(403, &none(), b"<html>Forbidden</html>")).0,
            FatalKind::Permission
        );
        assert_eq!(
            fatal_kind(classify(403, &none(), b"not enough credits")).0,
            FatalKind::OutOfCredits
        );
    }

    #[test]
    fn row_404_and_wrong_endpoints() {
        for status in [404, 405, 410] {
            let (kind, _) = fatal_kind(classify(
                status,
                &none(),
                &body(json!({"detail": "Not found."})),
            ));
            assert_eq!(kind, FatalKind::NotFound);
            assert_eq!(kind.exit_code().code(), 3);
        }
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            HeaderValue::from_static("https://elsewhere.example/v3/passive-liveness/"),
        );
        let (kind, message) = fatal_kind(classify(301, &h, b""));
        assert_eq!(kind, FatalKind::NotFound);
        assert!(message.contains("elsewhere.example"), "{message}");
    }

    #[test]
    fn row_413_even_as_html() {
        let (status, field, message) = rejected(classify(
            413,
            &none(),
            b"<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>",
        ));
        assert_eq!(status, 413);
        assert_eq!(field.as_deref(), Some("user_image"));
        assert!(
            message.contains("too large") && message.contains("413 Request Entity Too Large"),
            "{message}"
        );
    }

    #[test]
    fn row_429_with_all_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("17"));
        h.insert("x-ratelimit-limit", HeaderValue::from_static("300"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1781226299"));
        let o = classify(
            429,
            &h,
            &body(
                json!({"detail": "Write request rate limit exceeded. You can make up to 300 requests per minute."}),
            ),
        );
        assert_eq!(
            o,
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(17)),
                reset_at: Some(1781226299),
                limit: Some(300),
                remaining: Some(0)
            }
        );
        assert!(o.billed_nothing());
        assert!(o.to_string().contains("429"));
    }

    #[test]
    fn row_429_missing_or_garbled_headers() {
        let nothing_known = Outcome::RateLimited {
            retry_after: None,
            reset_at: None,
            limit: None,
            remaining: None,
        };
        assert_eq!(classify(429, &none(), b""), nothing_known);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("soon"));
        h.insert("x-ratelimit-limit", HeaderValue::from_static("-5"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("lots"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("NaN"));
        assert_eq!(classify(429, &h, b"<html>slow down</html>"), nothing_known);
        // A huge Retry-After is kept as asked (the wait is capped later, with a warning);
        // absurd numbers stay convertible; decimals are fine.
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("999999999"));
        assert!(matches!(
            classify(429, &h, b""),
            Outcome::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(999_999_999)
        ));
        h.insert("retry-after", HeaderValue::from_static("1e300"));
        assert!(matches!(
            classify(429, &h, b""),
            Outcome::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1_000_000_000)
        ));
        h.insert("retry-after", HeaderValue::from_static("1.5"));
        assert!(matches!(
            classify(429, &h, b""),
            Outcome::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(1500)
        ));
        // The HTTP-date form becomes a reset time.
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert!(matches!(
            classify(429, &h, b""),
            Outcome::RateLimited {
                retry_after: None,
                reset_at: Some(1445412480),
                ..
            }
        ));
    }

    #[test]
    fn row_5xx_empty_html_or_text() {
        for (status, b, want) in [
            (
                500u16,
                &b""[..],
                "HTTP 500 Internal Server Error (empty body)",
            ),
            (
                502,
                b"<html><head><title>502 Bad Gateway</title></head></html>",
                "(HTML page: 502 Bad Gateway)",
            ),
            (
                503,
                b"upstream overloaded\n",
                "HTTP 503 Service Unavailable: upstream overloaded",
            ),
            (504, b"", "Gateway Timeout"),
        ] {
            match classify(status, &none(), b) {
                Outcome::Transient {
                    status: s,
                    body_sent,
                    message,
                } => {
                    assert_eq!(s, Some(status));
                    assert!(body_sent);
                    assert!(message.contains(want), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(!classify(500, &none(), b"").billed_nothing());
    }

    #[test]
    fn other_statuses() {
        assert!(matches!(
            classify(408, &none(), b""),
            Outcome::Transient {
                body_sent: true,
                ..
            }
        ));
        let (status, _, message) = rejected(classify(415, &none(), b"unsupported"));
        assert_eq!(status, 415);
        assert!(message.contains("unsupported"));
    }

    #[test]
    fn billed_nothing_and_classes() {
        assert!(classify(400, &none(), b"{}").billed_nothing());
        assert!(classify(403, &none(), b"{}").billed_nothing());
        let pre = Outcome::Transient {
            status: None,
            body_sent: false,
            message: String::new(),
        };
        assert!(pre.billed_nothing());
        assert_eq!(pre.class(), Class::Transient);
        assert_eq!(classify(404, &none(), b"").class(), Class::Fatal);
        assert_eq!(classify(413, &none(), b"").class(), Class::Rejected);
        assert_eq!(classify(429, &none(), b"").class(), Class::RateLimited);
    }

    #[test]
    fn long_bodies_are_cut_and_kept_on_one_line() {
        let long = "x\n".repeat(1000);
        let Outcome::Transient { message, .. } = classify(500, &none(), long.as_bytes()) else {
            unreachable!()
        };
        assert!(message.len() < 400 && !message.contains('\n'), "{message}");
    }
}
