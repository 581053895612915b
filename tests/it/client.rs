//! Integration tests: the Didit client, error classification over real HTTP, and the retry
//! driver, against a scripted loopback server (exact control of every answer) and the emulator.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use liveness_batch::didit::{Client, ClientConfig, FatalKind, Outcome, Params, Upload};
use liveness_batch::pace::Pacer;
use liveness_batch::retry::RetryPolicy;
use liveness_batch::secret::ApiKey;
use liveness_batch::submit::{Budget, Final, Submitter};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::common;

pub const KEY: &str = "test_key_5f2b9c0d";

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Like `Http`, with every `{KEY}` in the body replaced by the request's `x-api-key`
    /// header (a server or proxy reflecting the request).
    Echo { status: u16, body: String },
    /// A body of `len` bytes of `fill`, without Content-Length: delimited by closing the
    /// connection, so only the reading loop can bound it.
    Unsized { status: u16, fill: u8, len: usize },
    /// Read the request, then close the connection without answering.
    Drop,
    /// Read the request, then never answer.
    Stall,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Http {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    pub fn raw(status: u16, content_type: &str, body: &[u8]) -> Self {
        Reply::Http {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_vec(),
        }
    }

    /// A `text/plain` answer with no body.
    pub fn empty(status: u16) -> Self {
        Self::raw(status, "text/plain", b"")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Http { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub head: String,
    pub body: Vec<u8>,
    pub at: tokio::time::Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// The value of a text part of the multipart body.
    pub fn field(&self, name: &str) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body);
        let marker = format!("name=\"{name}\"\r\n\r\n");
        let start = body.find(&marker)? + marker.len();
        let end = body[start..].find("\r\n--")? + start;
        Some(body[start..end].to_string())
    }

    /// The headers of the image part (filename, content type).
    pub fn image_part_head(&self) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body);
        let start = body.find("name=\"user_image\"")?;
        let end = body[start..].find("\r\n\r\n")? + start;
        Some(body[start..end].to_string())
    }
}

/// A loopback HTTP/1.1 server answering from a script, one reply per request, in order.
pub struct Scripted {
    pub base_url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    pub requests: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub async fn start(replies: Vec<Reply>) -> Self {
        Self::start_on("127.0.0.1:0", replies).await
    }

    /// The same, listening on `addr` (e.g. `127.0.0.2:0`, `[::1]:0`).
    pub async fn start_on(addr: &str, replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(replies)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (script.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(sock, s.clone(), r.clone()));
            }
        });
        Scripted {
            base_url: format!("http://{addr}"),
            script,
            requests,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }

    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<Captured>>>,
) {
    let mut buf = Vec::new();
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        // A scan reads the balance before and after: answered apart, the script is for uploads.
        if head.starts_with("GET /v3/billing/balance/ ") {
            let answer = "{\"detail\":\"Not found.\"}";
            let reply = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if sock.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        requests.lock().unwrap().push(Captured {
            head,
            body,
            at: tokio::time::Instant::now(),
        });
        let reply = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Reply::raw(500, "text/plain", b"script exhausted"));
        let reply = match reply {
            Reply::Echo { status, body } => {
                let key = requests
                    .lock()
                    .unwrap()
                    .last()
                    .and_then(|c| c.header("x-api-key"))
                    .unwrap_or_default();
                Reply::raw(
                    status,
                    "application/json",
                    body.replace("{KEY}", &key).as_bytes(),
                )
            }
            other => other,
        };
        match reply {
            Reply::Echo { .. } => unreachable!("resolved above"),
            Reply::Unsized { status, fill, len } => {
                let head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n\r\n");
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![fill; 64 * 1024];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if sock.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                return;
            }
            Reply::Drop => return,
            Reply::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                if sock.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn client(base: &str, timeout: Duration) -> Client {
    Client::new(ClientConfig {
        base_url: base.to_string(),
        api_key: ApiKey::new(KEY).unwrap(),
        timeout,
    })
    .unwrap()
}

pub fn png_upload(seed: u64) -> Upload {
    Upload::new(Bytes::from(common::png(seed)), "png", "image/png")
}

/// A fast policy for tests: tiny backoff, Retry-After still honoured.
pub fn fast_policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    }
}

pub fn submitter(base: &str, max_retries: u32) -> Submitter {
    Submitter {
        client: Arc::new(client(base, Duration::from_secs(10))),
        pacer: Arc::new(Pacer::unlimited()),
        policy: fast_policy(max_retries),
        budget: None,
        stop: CancellationToken::new(),
        retry_unknown: true,
    }
}

/// A 200 with an approved result.
pub fn approved() -> Reply {
    Reply::json(200, approved_body())
}

pub fn approved_body() -> serde_json::Value {
    json!({
        "request_id": "a1b2c3d4-e5f6-7890-1234-567890abcdef",
        "liveness": {"status": "Approved", "method": "PASSIVE", "score": 95,
            "user_image": {"entities": [{"bbox": [661, 728, 1688, 2188], "confidence": 0.732973,
                "age": 26.91, "gender": "male", "race": null}], "best_angle": 0},
            "warnings": [], "face_quality": 84.21, "face_luminance": 50.33},
        "vendor_data": "user-123", "metadata": null,
        "created_at": "2026-06-12T01:04:42.763237+00:00"
    })
}

/// A transport failure after the body was sent: the outcome is unknown.
#[track_caller]
fn assert_unknown_after_sending(outcome: &Outcome) {
    assert!(
        matches!(
            outcome,
            Outcome::Transient {
                status: None,
                body_sent: true,
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// The client's timeout struck after the body was sent.
#[track_caller]
fn assert_timed_out_after_sending(outcome: &Outcome) {
    match outcome {
        Outcome::Transient {
            status: None,
            body_sent: true,
            message,
        } => assert!(message.contains("timed out"), "{message}"),
        other => panic!("{other:?}"),
    }
}

fn rate_limited_429(retry_after: &str) -> Reply {
    Reply::json(
        429,
        json!({"detail": "Write request rate limit exceeded. You can make up to 300 requests per minute."}),
    )
    .with_header("retry-after", retry_after)
    .with_header("x-ratelimit-limit", "300")
    .with_header("x-ratelimit-remaining", "0")
    .with_header("x-ratelimit-reset", "1781226299")
}

// ---------------------------------------------------------------- the request itself

#[tokio::test]
async fn sends_every_field_and_the_key_only_in_its_header() {
    let server = Scripted::start(vec![approved()]).await;
    let c = client(&server.base_url, Duration::from_secs(10));
    let params = Params {
        threshold: Some(80.5),
        rotate_image: true,
        save_api_request: false,
        vendor_data: Some("user-42".into()),
        metadata: Some(
            liveness_batch::didit::parse_metadata(r#"{"batch": "q3", "n": 1}"#).unwrap(),
        ),
        ..Params::default()
    };
    let upload = Upload::new(Bytes::from(common::jpeg(1)), "jpg", "image/jpeg");
    let a = c.send(&upload, &params).await;
    assert!(
        matches!(a.outcome, Outcome::Result { .. }),
        "{:?}",
        a.outcome
    );
    assert_eq!(a.http_status, Some(200));

    let req = &server.captured()[0];
    assert_eq!(req.request_line(), "POST /v3/passive-liveness/ HTTP/1.1");
    assert_eq!(req.header("x-api-key").as_deref(), Some(KEY));
    assert!(
        req.header("content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
    assert_eq!(req.field("save_api_request").as_deref(), Some("false"));
    assert_eq!(req.field("rotate_image").as_deref(), Some("true"));
    assert_eq!(
        req.field("face_liveness_score_decline_threshold")
            .as_deref(),
        Some("80.5")
    );
    assert_eq!(req.field("vendor_data").as_deref(), Some("user-42"));
    let meta: serde_json::Value = serde_json::from_str(&req.field("metadata").unwrap()).unwrap();
    assert_eq!(meta, json!({"batch": "q3", "n": 1}));
    let image_head = req.image_part_head().unwrap();
    assert!(
        image_head.contains("filename=\"image.jpg\""),
        "{image_head}"
    );
    assert!(
        image_head.contains("Content-Type: image/jpeg"),
        "{image_head}"
    );
    let body = &req.body;
    let jpeg = common::jpeg(1);
    assert!(
        body.windows(jpeg.len()).any(|w| w == jpeg.as_slice()),
        "image bytes sent intact"
    );
    // The key appears nowhere but the header.
    assert!(!String::from_utf8_lossy(body).contains(KEY));
}

#[tokio::test]
async fn save_api_request_is_always_explicit_and_defaults_are_left_to_didit() {
    let server = Scripted::start(vec![approved(), approved()]).await;
    let c = client(&format!("{}/", server.base_url), Duration::from_secs(10));
    c.send(&png_upload(1), &Params::default()).await;
    c.send(
        &png_upload(1),
        &Params {
            save_api_request: true,
            ..Default::default()
        },
    )
    .await;
    let reqs = server.captured();
    assert_eq!(
        reqs[0].request_line(),
        "POST /v3/passive-liveness/ HTTP/1.1",
        "no double slash"
    );
    assert_eq!(reqs[0].field("save_api_request").as_deref(), Some("false"));
    assert_eq!(reqs[0].field("rotate_image").as_deref(), Some("false"));
    assert_eq!(reqs[0].field("face_liveness_score_decline_threshold"), None);
    assert_eq!(reqs[0].field("vendor_data"), None);
    assert_eq!(reqs[0].field("metadata"), None);
    assert!(
        reqs[0]
            .image_part_head()
            .unwrap()
            .contains("filename=\"image.png\"")
    );
    assert_eq!(reqs[1].field("save_api_request").as_deref(), Some("true"));
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let e = Client::new(ClientConfig {
        base_url: "http://verification.didit.me".into(),
        api_key: ApiKey::new(KEY).unwrap(),
        timeout: Duration::from_secs(1),
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("refusing to send the API key over plain http"),
        "{e}"
    );
    assert!(!e.contains(KEY));
}

// ---------------------------------------------------------------- answers, over real HTTP

#[tokio::test]
async fn a_200_with_unknown_fields_and_risk_codes_is_a_result() {
    let body = json!({
        "request_id": "r-1", "session_kind": "api", "node_id": 12,
        "liveness": {"status": "Declined", "method": "PASSIVE", "score": 41.25, "model_version": "v9",
            "user_image": {"entities": [{"bbox": [1, 2, 30, 40], "confidence": 0.9, "age": 33.3,
                "gender": "female", "race": null, "pose": {"yaw": 3}}], "best_angle": null},
            "warnings": [
                {"risk": "DEEPFAKE_SUSPECTED", "feature": "LIVENESS", "additional_data": {"x": 1},
                 "log_type": "error", "short_description": "New check", "long_description": "...", "node_id": "n1"},
                {"risk": "DUPLICATED_FACE", "feature": "LIVENESS",
                 "additional_data": {"duplicated_session_id": "s", "duplicated_session_number": 7, "api_service": "x"},
                 "log_type": "information", "short_description": "Duplicated face", "long_description": "..."}
            ],
            "face_quality": 70.1, "face_luminance": null},
        "vendor_data": null, "metadata": {"k": "v"}, "created_at": "2026-06-12T01:04:42Z"
    });
    let server = Scripted::start(vec![Reply::json(200, body.clone())]).await;
    let a = client(&server.base_url, Duration::from_secs(10))
        .send(&png_upload(2), &Params::default())
        .await;
    let Outcome::Result { response, raw } = a.outcome else {
        panic!("{:?}", a.outcome)
    };
    assert_eq!(raw, body, "the raw JSON is kept whole for the journal");
    assert_eq!(response.risks(), ["DEEPFAKE_SUSPECTED", "DUPLICATED_FACE"]);
    assert_eq!(
        response.decision(),
        Some(liveness_batch::record::Decision::Declined)
    );
    assert_eq!(response.verdict.face_luminance, None);
    let mut rec = liveness_batch::record::Record::default();
    response.fill_record(raw, &mut rec);
    let rec = rec.with_action();
    assert_eq!(
        rec.action,
        Some(liveness_batch::record::Action::Review),
        "unknown risk => review"
    );
    assert_eq!(rec.face.unwrap().gender.as_deref(), Some("female"));
}

#[tokio::test]
async fn error_statuses_are_classified_over_http() {
    let html502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let server = Scripted::start(vec![
        Reply::json(400, json!({"user_image": ["File size should not exceed 5 MB"]})),
        Reply::json(400, json!({"error": "Invalid user image format."})),
        Reply::json(401, json!({"detail": "Invalid API Key."})),
        Reply::empty(402),
        Reply::json(403, json!({"detail": "You do not have permission to perform this action."})),
        Reply::json(
            403,
            json!({"error": "You don't have enough credits to perform this request. Please top up at https://business.didit.me"}),
        ),
        Reply::json(404, json!({"detail": "Not found."})),
        Reply::raw(413, "text/html", b"<html><title>413 Request Entity Too Large</title></html>"),
        rate_limited_429("7"),
        Reply::empty(500),
        Reply::raw(502, "text/html", html502),
        Reply::raw(503, "text/plain", b"busy"),
        Reply::raw(200, "text/html", b"<html>captive portal</html>"),
    ])
    .await;
    let c = client(&server.base_url, Duration::from_secs(10));
    let mut got = Vec::new();
    for _ in 0..13 {
        got.push(c.send(&png_upload(3), &Params::default()).await);
    }
    let field = |o: &Outcome| o.field().map(str::to_string);
    assert!(
        matches!(&got[0].outcome, Outcome::Rejected { status: 400, message, .. } if message.contains("5 MB"))
    );
    assert_eq!(field(&got[0].outcome).as_deref(), Some("user_image"));
    assert!(
        matches!(&got[1].outcome, Outcome::Rejected { status: 400, field: None, message } if message == "Invalid user image format.")
    );
    let kinds: Vec<_> = got[2..7]
        .iter()
        .map(|a| match &a.outcome {
            Outcome::Fatal { kind, .. } => *kind,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            FatalKind::InvalidKey,
            FatalKind::PaymentRequired,
            FatalKind::Permission,
            FatalKind::OutOfCredits,
            FatalKind::NotFound
        ]
    );
    assert!(matches!(
        &got[7].outcome,
        Outcome::Rejected { status: 413, .. }
    ));
    assert_eq!(
        got[8].outcome,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            reset_at: Some(1781226299),
            limit: Some(300),
            remaining: Some(0)
        }
    );
    for (a, s) in got[9..12].iter().zip([500u16, 502, 503]) {
        assert!(
            matches!(&a.outcome, Outcome::Transient { status: Some(x), body_sent: true, .. } if *x == s),
            "{:?}",
            a.outcome
        );
        assert_eq!(a.http_status, Some(s));
    }
    assert!(
        matches!(&got[10].outcome, Outcome::Transient { message, .. } if message.contains("502 Bad Gateway"))
    );
    assert!(matches!(
        &got[12].outcome,
        Outcome::Transient {
            status: Some(200),
            body_sent: true,
            ..
        }
    ));
    for a in &got {
        assert!(!format!("{:?}", a.outcome).contains(KEY));
    }
}

// Paused time: timeouts, stalls and rate windows on tokio's clock, whatever the load.
#[tokio::test(start_paused = true)]
async fn transport_failures_say_whether_the_body_was_sent() {
    // Nothing listening: connection refused, nothing sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let a = client(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
        .send(&png_upload(4), &Params::default())
        .await;
    match &a.outcome {
        Outcome::Transient {
            status: None,
            body_sent: false,
            message,
        } => assert!(message.contains("could not connect"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(a.outcome.billed_nothing());

    // Dropped after the request was read: unknown outcome.
    let server = Scripted::start(vec![Reply::Drop, Reply::Stall]).await;
    let c = client(&server.base_url, Duration::from_millis(700));
    let a = c.send(&png_upload(4), &Params::default()).await;
    assert_unknown_after_sending(&a.outcome);
    assert!(!a.outcome.billed_nothing());
    // Stalled past the client's timeout.
    let a = c.send(&png_upload(4), &Params::default()).await;
    assert_timed_out_after_sending(&a.outcome);
    assert_eq!(server.count(), 2);
}

// ---------------------------------------------------------------- the retry driver

#[tokio::test]
async fn transient_errors_are_retried_and_counted_as_possible_double_charges() {
    let server = Scripted::start(vec![
        Reply::empty(500),
        Reply::raw(
            502,
            "text/html",
            b"<html><title>502 Bad Gateway</title></html>",
        ),
        Reply::empty(503),
        approved(),
    ])
    .await;
    let s = submitter(&server.base_url, 4);
    let sub = s.submit(&png_upload(5), &Params::default()).await;
    assert!(
        matches!(sub.outcome, Final::Done(Outcome::Result { .. })),
        "{:?}",
        sub.outcome
    );
    assert_eq!(sub.attempts, 4);
    // Three sends without a definitive answer, each sent again.
    assert_eq!(sub.unknown_outcomes, 3);
    assert_eq!(sub.possible_double_charges, 3);
    assert!(!sub.unknown_pending);
    assert_eq!(sub.rate_limited, 0);
    assert_eq!(sub.http_status, Some(200));
    assert!(sub.latency_ms.is_some());
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = Scripted::start(vec![Reply::empty(500); 10]).await;
    let sub = submitter(&server.base_url, 2)
        .submit(&png_upload(6), &Params::default())
        .await;
    assert!(
        matches!(
            sub.outcome,
            Final::Done(Outcome::Transient {
                status: Some(500),
                ..
            })
        ),
        "{:?}",
        sub.outcome
    );
    assert_eq!(sub.attempts, 3);
    // Three unknown outcomes; the last one was never sent again (yet).
    assert_eq!(sub.unknown_outcomes, 3);
    assert_eq!(sub.possible_double_charges, 2);
    assert!(sub.unknown_pending);
    assert_eq!(server.count(), 3);
}

// Paused time: timeouts, stalls and rate windows on tokio's clock, whatever the load.
#[tokio::test(start_paused = true)]
async fn a_429_waits_at_least_retry_after_then_succeeds() {
    let server = Scripted::start(vec![rate_limited_429("1"), approved()]).await;
    let sub = submitter(&server.base_url, 4)
        .submit(&png_upload(7), &Params::default())
        .await;
    assert!(
        matches!(sub.outcome, Final::Done(Outcome::Result { .. })),
        "{:?}",
        sub.outcome
    );
    assert_eq!(sub.attempts, 2);
    assert_eq!(sub.rate_limited, 1);
    assert_eq!(
        sub.possible_double_charges, 0,
        "a 429 was not processed: no double charge"
    );
    let reqs = server.captured();
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After honoured: waited {gap:?}"
    );
}

#[tokio::test]
async fn a_429_is_final_only_when_retries_are_spent() {
    let server = Scripted::start(vec![rate_limited_429("0"); 5]).await;
    let sub = submitter(&server.base_url, 2)
        .submit(&png_upload(8), &Params::default())
        .await;
    assert!(
        matches!(sub.outcome, Final::Done(Outcome::RateLimited { .. })),
        "{:?}",
        sub.outcome
    );
    assert_eq!(sub.attempts, 3);
    assert_eq!(sub.rate_limited, 3);
}

// Paused time: the cooldown is waited out on tokio's clock, and the other worker's moment
// of arrival does not depend on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_429_pauses_every_worker_sharing_the_pacer() {
    // Worker A gets a 429 with Retry-After 1; worker B, arriving during the cooldown, waits too.
    let server = Scripted::start(vec![rate_limited_429("1"), approved(), approved()]).await;
    let s = submitter(&server.base_url, 4);
    let (sa, sb) = (s.clone(), s.clone());
    let a = tokio::spawn(async move { sa.submit(&png_upload(9), &Params::default()).await });
    while server.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = tokio::spawn(async move { sb.submit(&png_upload(10), &Params::default()).await });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.rate_limited, 1);
    assert!(matches!(a.outcome, Final::Done(Outcome::Result { .. })));
    assert!(matches!(b.outcome, Final::Done(Outcome::Result { .. })));
    assert_eq!(b.attempts, 1, "B never sent into the cooldown");
    let reqs = server.captured();
    assert_eq!(reqs.len(), 3);
    for r in &reqs[1..] {
        assert!(
            r.at - reqs[0].at >= Duration::from_secs(1),
            "every worker waited out the cooldown"
        );
    }
}

// Paused time: the cooldown is waited out on tokio's clock, and the other worker's moment
// of arrival does not depend on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_final_429_still_pauses_the_other_workers() {
    let server = Scripted::start(vec![rate_limited_429("1"), approved()]).await;
    let s = submitter(&server.base_url, 0);
    let a = s.submit(&png_upload(20), &Params::default()).await;
    assert!(matches!(
        a.outcome,
        Final::Done(Outcome::RateLimited { .. })
    ));
    let b = s.submit(&png_upload(21), &Params::default()).await;
    assert!(matches!(b.outcome, Final::Done(Outcome::Result { .. })));
    let reqs = server.captured();
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_secs(1),
        "the cooldown applied to the next item"
    );
}

#[tokio::test]
async fn rejected_and_fatal_answers_are_final_at_once() {
    let server = Scripted::start(vec![
        Reply::json(400, json!({"user_image": ["No file was submitted."]})),
        Reply::json(
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        ),
    ])
    .await;
    let s = submitter(&server.base_url, 4);
    let a = s.submit(&png_upload(11), &Params::default()).await;
    assert!(matches!(
        a.outcome,
        Final::Done(Outcome::Rejected { status: 400, .. })
    ));
    assert_eq!(a.attempts, 1);
    let b = s.submit(&png_upload(11), &Params::default()).await;
    assert!(matches!(
        b.outcome,
        Final::Done(Outcome::Fatal {
            kind: FatalKind::Permission,
            ..
        })
    ));
    assert_eq!(b.attempts, 1);
    assert!(
        !s.stop.is_cancelled(),
        "the caller decides to stop, not the driver"
    );
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn an_unknown_outcome_is_retried_by_default_or_recorded_as_unknown() {
    let server = Scripted::start(vec![Reply::Drop, approved(), Reply::Drop]).await;
    let s = submitter(&server.base_url, 4);
    let sub = s.submit(&png_upload(12), &Params::default()).await;
    assert!(matches!(sub.outcome, Final::Done(Outcome::Result { .. })));
    assert_eq!(sub.attempts, 2);
    assert_eq!((sub.unknown_outcomes, sub.possible_double_charges), (1, 1));
    assert!(!sub.unknown_pending);

    let s = Submitter {
        retry_unknown: false,
        ..s
    };
    let sub = s.submit(&png_upload(12), &Params::default()).await;
    match &sub.outcome {
        Final::Unknown { message } => assert!(message.contains("outcome unknown"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sub.attempts, 1);
    // Unknown, and not repeated: no double charge until the image is sent again.
    assert_eq!((sub.unknown_outcomes, sub.possible_double_charges), (1, 0));
    assert!(sub.unknown_pending);
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn with_retry_unknown_off_a_5xx_is_still_retried() {
    let server = Scripted::start(vec![Reply::empty(503), approved()]).await;
    let s = Submitter {
        retry_unknown: false,
        ..submitter(&server.base_url, 4)
    };
    let sub = s.submit(&png_upload(13), &Params::default()).await;
    assert!(matches!(sub.outcome, Final::Done(Outcome::Result { .. })));
    assert_eq!(sub.possible_double_charges, 1);
}

// Paused time: timeouts, stalls and rate windows on tokio's clock, whatever the load.
#[tokio::test(start_paused = true)]
async fn a_stall_times_out_and_is_retried() {
    let server = Scripted::start(vec![Reply::Stall, approved()]).await;
    let s = Submitter {
        client: Arc::new(client(&server.base_url, Duration::from_millis(500))),
        ..submitter(&server.base_url, 4)
    };
    let sub = s.submit(&png_upload(14), &Params::default()).await;
    assert!(
        matches!(sub.outcome, Final::Done(Outcome::Result { .. })),
        "{:?}",
        sub.outcome
    );
    assert_eq!(sub.attempts, 2);
    assert_eq!(sub.possible_double_charges, 1);
}

#[tokio::test]
async fn a_stopped_submitter_sends_nothing() {
    let server = Scripted::start(vec![approved()]).await;
    let s = submitter(&server.base_url, 4);
    s.stop.cancel();
    let sub = s.submit(&png_upload(15), &Params::default()).await;
    assert!(matches!(sub.outcome, Final::Stopped { last: None }));
    assert_eq!(sub.attempts, 0);
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn stopping_during_a_backoff_sends_nothing_more() {
    let server = Scripted::start(vec![Reply::empty(500), approved()]).await;
    let s = Submitter {
        policy: RetryPolicy {
            max_retries: 4,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(30),
        },
        ..submitter(&server.base_url, 4)
    };
    let stop = s.stop.clone();
    let handle = tokio::spawn(async move { s.submit(&png_upload(16), &Params::default()).await });
    while server.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let sub = handle.await.unwrap();
    match &sub.outcome {
        Final::Stopped {
            last: Some(Outcome::Transient {
                status: Some(500), ..
            }),
        } => {}
        // The backoff is uniform in [0, 30 s]: it may (rarely) have been short enough to retry.
        Final::Done(Outcome::Result { .. }) => {}
        other => panic!("{other:?}"),
    }
    if matches!(sub.outcome, Final::Stopped { .. }) {
        assert_eq!(server.count(), 1, "no retry was sent");
        // The item ends interrupted with its unknown outcome (a 500 after the body) pending:
        // the next run's resend is the possible double charge, not this unrepeated send.
        assert_eq!((sub.unknown_outcomes, sub.possible_double_charges), (1, 0));
        assert!(sub.unknown_pending);
    }
}

// Paused time: the cooldown is waited out on tokio's clock, and the other worker's moment
// of arrival does not depend on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn stopping_during_a_429_cooldown_sends_nothing_more() {
    let server = Scripted::start(vec![rate_limited_429("30"), approved()]).await;
    let s = submitter(&server.base_url, 4);
    let stop = s.stop.clone();
    let handle = tokio::spawn(async move { s.submit(&png_upload(17), &Params::default()).await });
    while server.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();
    let sub = handle.await.unwrap();
    assert!(
        matches!(
            sub.outcome,
            Final::Stopped {
                last: Some(Outcome::RateLimited { .. })
            }
        ),
        "{:?}",
        sub.outcome
    );
    assert_eq!(sub.rate_limited, 1);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn the_budget_is_reserved_before_sending_and_released_when_nothing_was_billed() {
    let server = Scripted::start(vec![
        Reply::json(400, json!({"error": "Invalid user image format."})),
        rate_limited_429("0"),
        approved(),
        Reply::empty(500),
    ])
    .await;
    let budget = Arc::new(Budget::new(1));
    let s = Submitter {
        budget: Some(budget.clone()),
        ..submitter(&server.base_url, 0)
    };
    // 400: released.
    let sub = s.submit(&png_upload(18), &Params::default()).await;
    assert!(matches!(sub.outcome, Final::Done(Outcome::Rejected { .. })));
    assert_eq!(budget.used(), 0);
    // 429 (no retries left): released.
    s.submit(&png_upload(18), &Params::default()).await;
    assert_eq!(budget.used(), 0);
    // 200: kept.
    let sub = s.submit(&png_upload(18), &Params::default()).await;
    assert!(matches!(sub.outcome, Final::Done(Outcome::Result { .. })));
    assert_eq!(budget.used(), 1);
    // Spent: nothing more is sent.
    let sub = s.submit(&png_upload(18), &Params::default()).await;
    assert!(matches!(sub.outcome, Final::BudgetReached));
    assert_eq!(sub.attempts, 0);
    assert_eq!(server.count(), 3);
    assert_eq!(server.remaining(), 1);
}

#[tokio::test]
async fn a_5xx_keeps_its_budget_reservation() {
    let server = Scripted::start(vec![Reply::empty(500)]).await;
    let budget = Arc::new(Budget::new(5));
    let s = Submitter {
        budget: Some(budget.clone()),
        ..submitter(&server.base_url, 0)
    };
    s.submit(&png_upload(19), &Params::default()).await;
    assert_eq!(budget.used(), 1, "a 5xx may have been billed");
}

// ---------------------------------------------------------------- against the emulator

mod against_the_emulator {
    use super::*;
    use liveness_batch::emulator::{self, Emulator, EmulatorConfig};

    async fn emu(cfg: EmulatorConfig) -> Emulator {
        emulator::start(cfg, 0).await.expect("emulator starts")
    }

    fn rejected(o: &Outcome) -> (u16, Option<&str>, &str) {
        match o {
            Outcome::Rejected {
                status,
                field,
                message,
            } => (*status, field.as_deref(), message.as_str()),
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_400_variant() {
        let server = emu(EmulatorConfig::new(KEY)).await;
        let c = client(&server.base_url(), Duration::from_secs(10));

        // No file: the client always sends one, so send the form by hand.
        let form = reqwest::multipart::Form::new().text("save_api_request", "false");
        let resp = common::http()
            .no_proxy()
            .build()
            .unwrap()
            .post(c.endpoint())
            .header("x-api-key", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        let o = liveness_batch::didit::classify(status, &headers, &body);
        assert_eq!(
            rejected(&o),
            (400, Some("user_image"), "No file was submitted.")
        );

        // An extension Didit does not allow.
        let txt = Upload::new(Bytes::from(common::png(1)), "txt", "text/plain");
        let a = c.send(&txt, &Params::default()).await;
        let (s, f, m) = rejected(&a.outcome);
        assert_eq!((s, f), (400, Some("user_image")));
        assert!(m.contains("File extension “txt” is not allowed"), "{m}");

        // Over 5 MB (the local preflight would refuse it; the client sends what it is given).
        let mut big = common::jpeg(1);
        big.resize(5 * 1024 * 1024 + 1, 0);
        let a = c
            .send(
                &Upload::new(Bytes::from(big), "jpg", "image/jpeg"),
                &Params::default(),
            )
            .await;
        let (s, f, m) = rejected(&a.outcome);
        assert!(s == 400 || s == 413, "{s}");
        if s == 400 {
            assert_eq!(f, Some("user_image"), "{:?}", a.outcome);
            assert!(m.contains("5 MB"), "{m}");
        }

        // Threshold out of range (Params::validate would refuse it locally).
        let a = c
            .send(
                &png_upload(1),
                &Params {
                    threshold: Some(150.0),
                    ..Default::default()
                },
            )
            .await;
        let (s, f, m) = rejected(&a.outcome);
        assert_eq!((s, f), (400, Some("face_liveness_score_decline_threshold")));
        assert!(m.contains("less than or equal to 100"), "{m}");

        // Not an image at all, with an allowed extension: Didit's {"error"} shape.
        let junk = Upload::new(
            Bytes::from_static(b"\xFF\xD8\xFF\xE0 definitely not a jpeg"),
            "jpg",
            "image/jpeg",
        );
        let a = c.send(&junk, &Params::default()).await;
        assert_eq!(
            rejected(&a.outcome),
            (400, None, "Invalid user image format.")
        );

        assert_eq!(server.stats().credits_used, 0, "400s are not billed");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn wrong_keys_403_permission_or_401() {
        for (auth_401, want) in [
            (false, FatalKind::Permission),
            (true, FatalKind::InvalidKey),
        ] {
            let mut cfg = EmulatorConfig::new(KEY);
            cfg.auth_401 = auth_401;
            let server = emu(cfg).await;
            let c = Client::new(ClientConfig {
                base_url: server.base_url(),
                api_key: ApiKey::new("not_the_key").unwrap(),
                timeout: Duration::from_secs(10),
            })
            .unwrap();
            let a = c.send(&png_upload(2), &Params::default()).await;
            match &a.outcome {
                Outcome::Fatal { kind, status, .. } => {
                    assert_eq!(*kind, want);
                    assert_eq!(*status, if auth_401 { 401 } else { 403 });
                    assert_eq!(kind.exit_code().code(), 3);
                }
                other => panic!("{other:?}"),
            }
            server.shutdown().await;
        }
    }

    #[tokio::test]
    async fn out_of_credits_is_403_credits() {
        let mut cfg = EmulatorConfig::new(KEY);
        cfg.credits = Some(1);
        let server = emu(cfg).await;
        let c = client(&server.base_url(), Duration::from_secs(10));
        let first = c.send(&png_upload(3), &Params::default()).await;
        assert!(
            matches!(first.outcome, Outcome::Result { .. }),
            "{:?}",
            first.outcome
        );
        let second = c.send(&png_upload(4), &Params::default()).await;
        assert!(
            matches!(
                &second.outcome,
                Outcome::Fatal {
                    kind: FatalKind::OutOfCredits,
                    status: 403,
                    ..
                }
            ),
            "{:?}",
            second.outcome
        );
        assert_eq!(server.stats().credits_used, 1);
        server.shutdown().await;
    }

    // Paused time: timeouts, stalls and rate windows on tokio's clock, whatever the load.
    #[tokio::test(start_paused = true)]
    async fn rate_limit_429_carries_its_headers_and_the_retry_honours_them() {
        let mut cfg = EmulatorConfig::new(KEY);
        cfg.rate_limit = Some((2, Duration::from_secs(1)));
        let server = emu(cfg).await;
        let c = client(&server.base_url(), Duration::from_secs(10));
        let mut limited = None;
        for _ in 0..3 {
            let a = c.send(&png_upload(5), &Params::default()).await;
            if let o @ Outcome::RateLimited { .. } = a.outcome {
                limited = Some(o);
            }
        }
        match limited.expect("the third request in the window is limited") {
            Outcome::RateLimited {
                retry_after,
                reset_at,
                limit,
                remaining,
            } => {
                let ra = retry_after.expect("Retry-After");
                assert!(ra <= Duration::from_secs(1), "{ra:?}");
                assert!(reset_at.is_some());
                assert_eq!(limit, Some(2));
                assert_eq!(remaining, Some(0));
            }
            _ => unreachable!(),
        }

        // The driver waits the cooldown out and gets through, without a double charge.
        let s = submitter(&server.base_url(), 4);
        let mut results = 0;
        let mut rate_limited = 0;
        for seed in 0..4 {
            let sub = s.submit(&png_upload(seed), &Params::default()).await;
            assert!(
                matches!(sub.outcome, Final::Done(Outcome::Result { .. })),
                "{:?}",
                sub.outcome
            );
            assert_eq!(sub.possible_double_charges, 0);
            results += 1;
            rate_limited += sub.rate_limited;
        }
        assert_eq!(results, 4);
        assert!(rate_limited >= 1, "the window of 2/s was hit");
        assert_eq!(server.stats().rate_limited, 1 + rate_limited as u64);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn server_errors_500_502_503() {
        for (status, set) in [
            (
                500u16,
                (|f: &mut emulator::Faults| f.p500 = 1.0) as fn(&mut emulator::Faults),
            ),
            (502, |f| f.p502 = 1.0),
            (503, |f| f.p503 = 1.0),
        ] {
            let mut cfg = EmulatorConfig::new(KEY);
            set(&mut cfg.faults);
            let server = emu(cfg).await;
            let a = client(&server.base_url(), Duration::from_secs(10))
                .send(&png_upload(6), &Params::default())
                .await;
            match &a.outcome {
                Outcome::Transient {
                    status: Some(s),
                    body_sent: true,
                    ..
                } => assert_eq!(*s, status),
                other => panic!("{status}: {other:?}"),
            }
            // And the driver gives up after the retries with the last transient outcome.
            let sub = submitter(&server.base_url(), 2)
                .submit(&png_upload(6), &Params::default())
                .await;
            assert!(
                matches!(sub.outcome, Final::Done(Outcome::Transient { .. })),
                "{:?}",
                sub.outcome
            );
            assert_eq!(sub.attempts, 3);
            assert_eq!(server.stats().requests, 4);
            server.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_dropped_connection_is_transient_after_sending() {
        let mut cfg = EmulatorConfig::new(KEY);
        cfg.faults.reset = 1.0;
        let server = emu(cfg).await;
        let a = client(&server.base_url(), Duration::from_secs(10))
            .send(&png_upload(7), &Params::default())
            .await;
        assert_unknown_after_sending(&a.outcome);
        assert_eq!(server.stats().dropped, 1);
        server.shutdown().await;
    }

    // Paused time: timeouts, stalls and rate windows on tokio's clock, whatever the load.
    #[tokio::test(start_paused = true)]
    async fn a_stall_times_out() {
        let mut cfg = EmulatorConfig::new(KEY);
        cfg.faults.stall = 1.0;
        cfg.stall = Duration::from_secs(30);
        let server = emu(cfg).await;
        let a = client(&server.base_url(), Duration::from_millis(500))
            .send(&png_upload(8), &Params::default())
            .await;
        assert_timed_out_after_sending(&a.outcome);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn no_face_detected_comes_back_with_nulls() {
        let server = emu(EmulatorConfig::new(KEY)).await;
        let tiny = common::encode(&image::RgbImage::new(1, 1), image::ImageFormat::Png);
        let a = client(&server.base_url(), Duration::from_secs(10))
            .send(
                &Upload::new(Bytes::from(tiny), "png", "image/png"),
                &Params::default(),
            )
            .await;
        let Outcome::Result { response, raw } = a.outcome else {
            panic!("{:?}", a.outcome)
        };
        assert_eq!(
            response.decision(),
            Some(liveness_batch::record::Decision::Declined)
        );
        assert_eq!(response.risks(), ["NO_FACE_DETECTED"]);
        assert_eq!(response.verdict.warnings[0].log_type, "error");
        assert_eq!(response.verdict.score, None);
        assert_eq!(response.verdict.face_quality, None);
        assert_eq!(response.verdict.face_luminance, None);
        assert!(response.largest_face().is_none());
        assert!(raw.to_value()["liveness"]["score"].is_null());
        let mut rec = liveness_batch::record::Record::default();
        response.fill_record(raw, &mut rec);
        assert_eq!(
            rec.with_action().action,
            Some(liveness_batch::record::Action::Retake)
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn every_field_reaches_the_emulator_and_is_echoed() {
        let server = emu(EmulatorConfig::new(KEY)).await;
        let params = Params {
            threshold: Some(99.5),
            rotate_image: true,
            save_api_request: false,
            vendor_data: Some("user-9".into()),
            metadata: Some(liveness_batch::didit::parse_metadata(r#"{"batch":"q3"}"#).unwrap()),
            ..Params::default()
        };
        let a = client(&server.base_url(), Duration::from_secs(10))
            .send(&png_upload(9), &params)
            .await;
        let Outcome::Result { response, .. } = a.outcome else {
            panic!("{:?}", a.outcome)
        };
        assert_eq!(response.vendor_data.as_deref(), Some("user-9"));
        assert_eq!(response.metadata, Some(json!({"batch": "q3"})));
        assert!(response.created_at_utc().is_some());
        server.shutdown().await;
    }
}

// ---------------------------------------------------------------- hardening against a hostile server

fn port_of(base_url: &str) -> u16 {
    base_url.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn plain_http_to_names_that_only_look_local_is_refused() {
    for base in [
        "http://api.localhost:8080",
        "http://localhost.:8080",
        "http://LOCALHOST.",
        "http://10.0.0.1",
        "http://127.0.0.1.nip.io:80",
        "http://[::ffff:10.0.0.1]:80",
    ] {
        let e = Client::new(ClientConfig {
            base_url: base.to_string(),
            api_key: ApiKey::new(KEY).unwrap(),
            timeout: Duration::from_secs(5),
        })
        .unwrap_err();
        assert!(
            matches!(e, liveness_batch::didit::ClientError::InsecureUrl { .. }),
            "{base}: {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("refusing to send the API key over plain http")
                && msg.contains("exactly `localhost`"),
            "{base}: {msg}"
        );
        assert!(!msg.contains(KEY));
    }
}

#[tokio::test]
async fn plain_http_to_real_loopback_is_accepted_and_localhost_is_pinned() {
    // (where the server listens, the host the client is given)
    for (bind, host) in [
        ("127.0.0.1:0", "localhost"),
        ("127.0.0.2:0", "127.0.0.2"),
        ("[::1]:0", "[::1]"),
        // Only on ::1: `localhost` still reaches it, through the pinned ::1.
        ("[::1]:0", "localhost"),
    ] {
        let server = Scripted::start_on(bind, vec![approved()]).await;
        let port = port_of(&server.base_url);
        // Keep 127.0.0.1:port refused (bound, not listening) so `localhost` can only mean ::1.
        let _guard = if bind.starts_with('[') && host == "localhost" {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            if sock.bind(([127, 0, 0, 1], port).into()).is_err() {
                continue;
            }
            Some(sock)
        } else {
            None
        };
        let base = format!("http://{host}:{port}");
        let c = client(&base, Duration::from_secs(10));
        let a = c.send(&png_upload(40), &Params::default()).await;
        assert!(
            matches!(a.outcome, Outcome::Result { .. }),
            "{base}: {:?}",
            a.outcome
        );
        assert_eq!(server.count(), 1, "{base}");
        assert_eq!(
            server.captured()[0].header("x-api-key").as_deref(),
            Some(KEY)
        );
    }
}

#[test]
fn the_loopback_rule_is_public_for_host_strings() {
    use liveness_batch::didit::is_loopback_host;
    assert!(is_loopback_host("127.0.0.1:8080"));
    assert!(is_loopback_host("[::1]:9"));
    assert!(is_loopback_host("localhost:3000"));
    assert!(!is_loopback_host("api.localhost:3000"));
    assert!(!is_loopback_host("localhost.:3000"));
    assert!(!is_loopback_host("10.0.0.1:80"));
}

#[tokio::test]
async fn a_huge_retry_after_is_capped_counted_and_warned() {
    use liveness_batch::retry::MAX_RATE_LIMIT_WAIT;
    for asked in ["999999999", "3600"] {
        let server = Scripted::start(vec![
            Reply::json(429, json!({"detail": "slow down"})).with_header("retry-after", asked),
        ])
        .await;
        // No retry left: the submission ends at once, but the shared pause is still set.
        let s = submitter(&server.base_url, 0);
        let warnings = Mutex::new(Vec::<String>::new());
        let sub = s
            .submit_warning_to(&png_upload(41), &Params::default(), &|w: &str| {
                warnings.lock().unwrap().push(w.to_string())
            })
            .await;
        assert!(
            matches!(sub.outcome, Final::Done(Outcome::RateLimited { .. })),
            "{:?}",
            sub.outcome
        );
        assert_eq!(sub.retry_after_capped, 1, "{asked}");
        let warnings = warnings.into_inner().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&format!("asked to wait {asked} s"))
                && warnings[0].contains("waiting 120 s"),
            "{}",
            warnings[0]
        );
        // The pause every worker waits out is the cap, not what was asked (virtual time).
        tokio::time::pause();
        let t0 = tokio::time::Instant::now();
        s.pacer.acquire().await;
        let waited = t0.elapsed();
        tokio::time::resume();
        // (tokio timers round up to the millisecond)
        assert!(
            waited <= MAX_RATE_LIMIT_WAIT + Duration::from_millis(5)
                && waited >= MAX_RATE_LIMIT_WAIT - Duration::from_secs(2),
            "{asked}: waited {waited:?}"
        );
    }
    // Within the cap: obeyed, neither counted nor warned.
    let server = Scripted::start(vec![
        Reply::json(429, json!({})).with_header("retry-after", "0"),
        approved(),
    ])
    .await;
    let warned = Mutex::new(0);
    let sub = submitter(&server.base_url, 2)
        .submit_warning_to(&png_upload(42), &Params::default(), &|_: &str| {
            *warned.lock().unwrap() += 1
        })
        .await;
    assert!(matches!(sub.outcome, Final::Done(Outcome::Result { .. })));
    assert_eq!(sub.retry_after_capped, 0);
    assert_eq!(*warned.lock().unwrap(), 0);
}

#[tokio::test]
async fn huge_bodies_are_never_read_whole_nor_echoed() {
    let big = 10 * 1024 * 1024;
    for reply in [
        Reply::raw(200, "application/json", &vec![b'x'; big]),
        Reply::raw(500, "text/plain", &vec![b'y'; big]),
        Reply::raw(400, "application/json", &vec![b'w'; big]),
        Reply::Unsized {
            status: 200,
            fill: b'z',
            len: big,
        },
        Reply::Unsized {
            status: 503,
            fill: b'v',
            len: big,
        },
    ] {
        let server = Scripted::start(vec![reply]).await;
        let a = client(&server.base_url, Duration::from_secs(20))
            .send(&png_upload(43), &Params::default())
            .await;
        match &a.outcome {
            Outcome::Transient {
                message, body_sent, ..
            } => {
                assert!(*body_sent);
                assert!(message.contains("larger than 4194304 bytes"), "{message}");
                assert!(message.len() < 200, "{}", message.len());
            }
            other => panic!("{other:?}"),
        }
    }
    // Below the cap, echoed text is cut in every kind of message.
    let long = "q".repeat(3 * 1024 * 1024);
    for reply in [
        Reply::raw(500, "text/plain", long.as_bytes()),
        Reply::json(400, json!({"user_image": [long.clone()]})),
        Reply::json(403, json!({"detail": long.clone()})),
        Reply::json(200, json!({"liveness": {"status": long.clone()}})),
    ] {
        let server = Scripted::start(vec![reply]).await;
        let a = client(&server.base_url, Duration::from_secs(20))
            .send(&png_upload(44), &Params::default())
            .await;
        let text = a.outcome.to_string();
        let message = match &a.outcome {
            Outcome::Transient { message, .. }
            | Outcome::Rejected { message, .. }
            | Outcome::Fatal { message, .. }
            | Outcome::BadAnswer { message, .. } => message.clone(),
            other => panic!("{other:?}"),
        };
        assert!(message.len() < 1000, "{}", message.len());
        assert!(text.len() < 1000, "{}", text.len());
    }
}

#[tokio::test]
async fn a_200_without_a_usable_liveness_is_a_bad_answer_billed_and_not_retried() {
    for body in [
        json!({"request_id": "r"}),
        json!({"request_id": "r", "liveness": null}),
        json!({"liveness": "Approved"}),
        json!({"liveness": {"status": 1}}),
        json!({"liveness": {"status": "In Review", "warnings": []}}),
    ] {
        let server = Scripted::start(vec![Reply::json(200, body.clone()), approved()]).await;
        let mut s = submitter(&server.base_url, 4);
        let budget = Arc::new(Budget::new(5));
        s.budget = Some(budget.clone());
        let sub = s.submit(&png_upload(45), &Params::default()).await;
        match &sub.outcome {
            Final::Done(o @ Outcome::BadAnswer { message, raw }) => {
                assert_eq!(raw, &body);
                assert!(message.contains("without a usable result"), "{message}");
                assert_eq!(o.class(), liveness_batch::record::Class::BadAnswer);
                assert!(!o.billed_nothing());
            }
            other => panic!("{body}: {other:?}"),
        }
        assert_eq!(sub.attempts, 1, "not retried within the run");
        assert_eq!(sub.http_status, Some(200));
        assert_eq!(server.count(), 1);
        assert_eq!(budget.used(), 1, "a 200 is billed");
    }
}

#[tokio::test]
async fn a_key_echoed_in_any_answer_is_redacted_before_classification() {
    let echo_200 = r#"{"request_id": "r", "liveness": {"status": "Approved", "score": 90, "warnings": []},
        "vendor_data": "{KEY}", "metadata": {"echo": "x-api-key: {KEY}", "list": ["{KEY}"]},
        "reflected": {"headers": {"x-api-key": "{KEY}"}}, "{KEY}": true}"#;
    let server = Scripted::start(vec![
        Reply::Echo {
            status: 200,
            body: echo_200.to_string(),
        },
        Reply::Echo {
            status: 200,
            body: r#"{"echo": "{KEY}"}"#.to_string(),
        },
        Reply::Echo {
            status: 400,
            body: r#"{"user_image": ["bad request from {KEY}"]}"#.to_string(),
        },
        Reply::Echo {
            status: 403,
            body: r#"{"detail": "key {KEY} revoked"}"#.to_string(),
        },
        Reply::Echo {
            status: 502,
            body: "upstream rejected {KEY}".to_string(),
        },
        // The key written with a \u escape (as some JSON encoders do).
        Reply::raw(
            200,
            "application/json",
            format!(
                r#"{{"liveness": {{"status": "Declined", "warnings": []}}, "u": "\u0074{}"}}"#,
                &KEY[1..]
            )
            .as_bytes(),
        ),
    ])
    .await;
    assert!(KEY.starts_with('t'));
    let c = client(&server.base_url, Duration::from_secs(10));
    let mut outcomes = Vec::new();
    for i in 0..6 {
        outcomes.push(
            c.send(&png_upload(50 + i), &Params::default())
                .await
                .outcome,
        );
    }
    for o in &outcomes {
        let all = format!("{o:?} {o}");
        assert!(!all.contains(KEY), "{all}");
    }
    match &outcomes[0] {
        Outcome::Result { response, raw } => {
            let raw = &raw.to_value();
            assert!(!raw.to_string().contains(KEY));
            assert_eq!(raw["vendor_data"], "[REDACTED]");
            assert_eq!(raw["metadata"]["echo"], "x-api-key: [REDACTED]");
            assert_eq!(raw["metadata"]["list"][0], "[REDACTED]");
            assert_eq!(raw["reflected"]["headers"]["x-api-key"], "[REDACTED]");
            assert_eq!(raw["[REDACTED]"], true);
            assert_eq!(response.vendor_data.as_deref(), Some("[REDACTED]"));
        }
        other => panic!("{other:?}"),
    }
    match &outcomes[1] {
        Outcome::BadAnswer { raw, .. } => assert_eq!(raw["echo"], "[REDACTED]"),
        other => panic!("{other:?}"),
    }
    for (o, class) in [
        (&outcomes[2], "Rejected"),
        (&outcomes[3], "Fatal"),
        (&outcomes[4], "Transient"),
    ] {
        let dbg = format!("{o:?}");
        assert!(
            dbg.starts_with(class) && dbg.contains("[REDACTED]"),
            "{dbg}"
        );
    }
    match &outcomes[5] {
        Outcome::Result { raw, .. } => assert_eq!(raw.to_value()["u"], "[REDACTED]"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- through the scan command

/// An answer printed over several lines (indented, with spaces inside its strings) is kept in
/// the journal on one line, as received otherwise; the key it echoes is still removed, and the
/// journal's chain and the outputs rebuilt by `report` hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pretty_printed_answer_is_journaled_on_one_line_as_received() {
    let pretty = "{\n  \"request_id\" : \"r 1\",\n  \"liveness\": {\n    \"status\": \"Approved\",\n    \
                  \"score\": 97.50,\n    \"warnings\": [ ]\n  },\n  \"vendor_data\": \"a \\\"quoted\\\" {KEY}\",\n  \
                  \"metadata\": {\"note\": \"two\\nlines\"}\n}\n";
    let server = Scripted::start(vec![Reply::Echo {
        status: 200,
        body: pretty.to_string(),
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    common::write(&src, "a.png", &common::png(61));
    let out = dir.path().join("out");
    let scan = common::ScanRun::against(Some(&server.base_url), &out).source(&src);
    assert_eq!(scan.run().await, 0);
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let line = journal
        .lines()
        .find(|l| l.contains("\"type\":\"item\""))
        .expect("an item line");
    // As received, white space between tokens dropped: the number keeps its form.
    assert!(
        line.contains(
            r#""response":{"request_id":"r 1","liveness":{"status":"Approved","score":97.50,"warnings":[]},"vendor_data":"a \"quoted\" [REDACTED]","metadata":{"note":"two\nlines"}},"prev":"#
        ),
        "{line}"
    );
    let item: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(item["score"], 97.5);
    assert_eq!(item["status"], "Approved");
    assert!(!journal.contains(KEY));
    assert_eq!(
        scan.summary()["audit"]["journal_chain"]["state"],
        "chained",
        "{}",
        scan.summary()
    );
    let results = std::fs::read(out.join("results.json")).unwrap();
    let report = common::report(&out, &[]).await;
    assert_eq!(report.code, 0, "{report:?}");
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_records_a_bad_answer_as_billed_without_result_and_redoes_it_on_rerun() {
    let server = Scripted::start(vec![
        Reply::Echo {
            status: 200,
            body: r#"{"request_id": "r1", "liveness": null, "vendor_data": "{KEY}"}"#.to_string(),
        },
        Reply::Echo {
            status: 200,
            body: r#"{"request_id": "r2", "liveness": {"status": "Approved", "score": 97, "warnings": []}, "metadata": {"k": "{KEY}"}}"#.to_string(),
        },
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    common::write(&src, "a.png", &common::png(60));
    let out = dir.path().join("out");
    let scan = common::ScanRun::against(Some(&server.base_url), &out).source(&src);
    assert_eq!(
        scan.run().await,
        1,
        "an answer without a decision is no result"
    );
    assert_eq!(server.count(), 1, "not retried within the run");
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["class"], "bad_answer");
    assert_eq!(item["action"], "rerun");
    assert_eq!(item["billed"], true);
    assert_eq!(item["http_status"], 200);
    assert_eq!(item["response"]["vendor_data"], "[REDACTED]");
    assert!(
        item["error"]
            .as_str()
            .unwrap()
            .contains("`liveness` is null"),
        "{item}"
    );
    let summary = scan.summary();
    assert_eq!(summary["by_class"]["bad_answer"], 1, "{summary}");
    assert_eq!(summary["items"]["without_result"], 1, "{summary}");
    assert_eq!(summary["credits"]["used"], 1, "{summary}");

    // The rerun (the binary: what it prints is checked too) sends it again (a bad answer is
    // never "done").
    let run = scan.bin().await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(server.count(), 2);
    let items = common::journal_items(&out);
    assert_eq!(items.last().unwrap()["class"], "result");
    assert_eq!(
        items.last().unwrap()["response"]["metadata"]["k"],
        "[REDACTED]"
    );

    // The key is in no output at all.
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(KEY),
                "{} holds the key",
                path.display()
            );
        }
    }
    assert!(!run.all().contains(KEY));
}

/// HTTPS is spoken with the TLS provider the binary installs (rustls on *ring*): against a
/// loopback server whose certificate no authority signed, the handshake runs and the
/// certificate is refused, and the call fails as a transport error that names it.
#[tokio::test]
async fn https_runs_the_handshake_and_refuses_an_unknown_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (the test command installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(stream)) = listener.incoming().next() {
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut byte = [0u8; 1];
            let _ = tx.send(tls.read(&mut byte).map_err(|e| e.to_string()));
        }
    });

    let c = client(
        &format!("https://127.0.0.1:{port}"),
        Duration::from_secs(10),
    );
    let a = c.send(&png_upload(30), &Params::default()).await;
    let Outcome::Transient { message, .. } = &a.outcome else {
        panic!("{:?}", a.outcome);
    };
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(a.http_status, None, "no HTTP answer without a handshake");
    let server_side = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let refused = server_side.unwrap_err();
    assert!(
        refused.to_lowercase().contains("alert") || refused.to_lowercase().contains("certificate"),
        "the client alerted the server: {refused}"
    );
}
