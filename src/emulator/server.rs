//! The emulator's HTTP side: routes, the order of checks of a `POST`, injected faults (including
//! dropping the connection), counters and the request log.

use std::fs::File;
use std::io::Write;
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::IncomingStream;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::face_age::{self, AgeEstimate, Echo, FaceMatch, Side};
use super::form::{self, Check, CheckForm};
use super::ratelimit::{self, Admission, SlidingWindow};
use super::results::{self, Assessment, FaceIndex};
use super::{EmulatorConfig, EmulatorError, Stats};

/// Largest request body read; above it the answer is a proxy's HTML 413.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// A too-large body is read and discarded up to this size before the 413, so the client sees the
/// answer rather than a reset while it is still sending.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
/// Extra time `rotate_image=true` costs.
const ROTATE_COST: Duration = Duration::from_millis(25);

const BALANCE_PATH: &str = "/v3/billing/balance/";
/// The balance of unlimited credits: a number, as Didit writes amounts, that the client reads as
/// "unlimited".
const UNLIMITED_BALANCE: &str = "999999999.0000";

const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";
const INVALID_KEY: &str = "Invalid API Key.";
const NO_CREDITS: &str = "You don't have enough credits to perform this request. Please top up at https://business.didit.me";

/// Shared state of one emulator.
pub struct App {
    config: EmulatorConfig,
    key_digest: [u8; 32],
    limiter: Option<Mutex<SlidingWindow>>,
    rng: Mutex<StdRng>,
    stats: Mutex<Stats>,
    faces: Mutex<FaceIndex>,
    log: Option<Mutex<File>>,
    decoders: Semaphore,
    pub shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl App {
    pub fn new(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        let log = match &config.log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| EmulatorError::Log {
                        path: path.clone(),
                        source,
                    })?,
            )),
            None => None,
        };
        let decoders = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        Ok(Self {
            key_digest: Sha256::digest(config.api_key.trim().as_bytes()).into(),
            limiter: config
                .rate_limit
                .map(|(n, w)| Mutex::new(SlidingWindow::new(n, w))),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            stats: Mutex::new(Stats {
                credits_left: config.credits,
                ..Stats::default()
            }),
            faces: Mutex::new(FaceIndex::default()),
            log,
            decoders: Semaphore::new(decoders),
            shutdown: CancellationToken::new(),
            config,
        })
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    fn check_key(&self, headers: &HeaderMap) -> KeyCheck {
        match headers.get("x-api-key") {
            None => KeyCheck::Missing,
            Some(v) if Sha256::digest(v.as_bytes()).as_slice() == self.key_digest => {
                KeyCheck::Valid
            }
            Some(_) => KeyCheck::Invalid,
        }
    }

    fn auth_failure(&self) -> Response {
        if self.config.auth_401 {
            detail(StatusCode::UNAUTHORIZED, INVALID_KEY)
        } else {
            detail(StatusCode::FORBIDDEN, PERMISSION_DENIED)
        }
    }

    /// The fault for this request and its delay: two draws per `POST`, always.
    fn draw(&self) -> (Option<Fault>, Duration) {
        let (fault_roll, jitter_roll): (f64, f64) = {
            let mut rng = lock(&self.rng);
            (rng.random(), rng.random())
        };
        let f = &self.config.faults;
        let mut acc = 0.0;
        let mut fault = None;
        for (p, kind) in [
            (f.p500, Fault::E500),
            (f.p502, Fault::E502),
            (f.p503, Fault::E503),
            (f.p429, Fault::E429),
            (f.reset, Fault::Reset),
            (f.stall, Fault::Stall),
        ] {
            acc += p;
            if fault_roll < acc {
                fault = Some(kind);
                break;
            }
        }
        let delay = self.config.latency + self.config.jitter.mul_f64(jitter_roll);
        (fault, delay)
    }

    /// Take one credit before processing; `Err` when none is left.
    fn reserve_credit(&self) -> Result<(), ()> {
        let mut stats = lock(&self.stats);
        match &mut stats.credits_left {
            Some(0) => Err(()),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn refund_credit(&self) {
        if let Some(left) = &mut lock(&self.stats).credits_left {
            *left += 1;
        }
    }

    /// Sleep, but wake up when the emulator shuts down.
    async fn sleep(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    fn count_request(&self) {
        lock(&self.stats).requests += 1;
    }

    fn count_status(&self, status: StatusCode) {
        *lock(&self.stats)
            .by_status
            .entry(status.as_u16())
            .or_default() += 1;
    }

    fn write_log(&self, entry: &LogEntry) {
        let Some(file) = &self.log else { return };
        let mut line = match serde_json::to_string(entry) {
            Ok(line) => line,
            Err(_) => return,
        };
        line.push('\n');
        let mut file = lock(file);
        if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!("cannot write the emulator's request log: {e}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyCheck {
    Valid,
    Invalid,
    Missing,
}

impl KeyCheck {
    fn as_str(self) -> &'static str {
        match self {
            KeyCheck::Valid => "valid",
            KeyCheck::Invalid => "invalid",
            KeyCheck::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    E500,
    E502,
    E503,
    E429,
    Reset,
    Stall,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::E500 => "500",
            Fault::E502 => "502",
            Fault::E503 => "503",
            Fault::E429 => "429",
            Fault::Reset => "reset",
            Fault::Stall => "stall",
        }
    }
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize)]
struct LogEntry {
    time: String,
    method: String,
    path: String,
    status: Option<u16>,
    fault: Option<&'static str>,
    api_key: Option<&'static str>,
    sha256: Option<String>,
    /// The `ref_image`'s SHA-256 (face match).
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_sha256: Option<String>,
    vendor_data: Option<String>,
    fields: Map<String, Value>,
    latency_ms: f64,
    #[serde(skip)]
    started: Instant,
}

impl LogEntry {
    fn new(parts: &Parts) -> Self {
        Self {
            time: results::created_at(chrono::Utc::now()),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            status: None,
            fault: None,
            api_key: None,
            sha256: None,
            ref_sha256: None,
            vendor_data: None,
            fields: Map::new(),
            latency_ms: 0.0,
            started: Instant::now(),
        }
    }
}

/// Per-connection handle that can drop the connection from inside a handler: a duplicate of
/// the socket, shut down in both directions so the client sees the connection closed with no
/// response (the same socket hyper holds).
#[derive(Clone)]
pub struct ConnHandle(Option<Arc<std::net::TcpStream>>);

impl ConnHandle {
    fn drop_connection(&self) -> bool {
        match &self.0 {
            Some(socket) => socket.shutdown(Shutdown::Both).is_ok(),
            None => false,
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let io = stream.io();
        let _ = io.set_nodelay(true);
        #[cfg(unix)]
        let dup = {
            use std::os::fd::AsFd;
            io.as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from)
        };
        #[cfg(windows)]
        let dup = {
            use std::os::windows::io::AsSocket;
            io.as_socket()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from)
        };
        #[cfg(not(any(unix, windows)))]
        let dup: Option<std::net::TcpStream> = None;
        ConnHandle(dup.map(Arc::new))
    }
}

/// Serve until the shutdown token fires.
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let token = app.shutdown.clone();
    let router = Check::ALL
        .into_iter()
        .fold(Router::new(), |router, check| {
            router.route(
                check.path(),
                any(move |state, conn, req| endpoint(state, conn, req, check)),
            )
        })
        .route(BALANCE_PATH, any(balance))
        .route("/emulator/stats", get(stats))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(app);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<ConnHandle>(),
    )
    .with_graceful_shutdown(async move { token.cancelled().await })
    .await
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "detail": text }))).into_response()
}

fn html(status: StatusCode, title: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// A 429 with Didit's body and the given rate-limit headers.
fn too_many(limit: u32, window: Duration, headers: [(&'static str, String); 4]) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({ "detail": ratelimit::limit_message(limit, window) })),
    )
        .into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn method_not_allowed(method: &Method, allow: &'static str) -> Response {
    let mut response = detail(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method \"{method}\" not allowed."),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn stats(State(app): State<Arc<App>>) -> Json<Stats> {
    Json(app.stats())
}

async fn not_found(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    app.count_request();
    let mut entry = LogEntry::new(&parts);
    let response = detail(StatusCode::NOT_FOUND, "Not found.");
    finish(&app, &mut entry, response)
}

async fn balance(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    lock(&app.stats).balance_reads += 1;
    let mut entry = LogEntry::new(&parts);
    let key = app.check_key(&parts.headers);
    entry.api_key = Some(key.as_str());
    let response = if key != KeyCheck::Valid {
        app.auth_failure()
    } else if parts.method != Method::GET {
        method_not_allowed(&parts.method, "GET, HEAD, OPTIONS")
    } else if app.config.billing_forbidden {
        detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        )
    } else {
        let balance = match app.stats().credits_left {
            // Didit gives the balance in US dollars: each credit left is one call's price.
            Some(left) => usd_of_credits(left),
            None => UNLIMITED_BALANCE.to_string(),
        };
        Json(json!({ "balance": balance, "simulated": true })).into_response()
    };
    // A read on its own budget: logged, not counted with the liveness requests.
    entry.status = Some(response.status().as_u16());
    entry.latency_ms = entry.started.elapsed().as_secs_f64() * 1000.0;
    app.write_log(&entry);
    response
}

/// What one call costs, in US dollars: the emulator's balance is its credits at this price.
pub const PRICE_PER_CALL_USD: f64 = 0.10;

/// The balance of `credits` calls, as Didit writes amounts (`"12.3000"`), counted in cents so
/// no rounding creeps in.
fn usd_of_credits(credits: u64) -> String {
    let cents = u128::from(credits) * (PRICE_PER_CALL_USD * 100.0).round() as u128;
    format!("{}.{:02}00", cents / 100, cents % 100)
}

/// Count the status, write the log line, hand the response back.
fn finish(app: &App, entry: &mut LogEntry, response: Response) -> Response {
    app.count_status(response.status());
    entry.status = Some(response.status().as_u16());
    entry.latency_ms = entry.started.elapsed().as_secs_f64() * 1000.0;
    app.write_log(entry);
    response
}

/// What the `POST` handler decided.
enum Reply {
    Send(Response),
    /// Drop the connection without answering.
    Drop,
    /// Stall, then answer a gateway timeout.
    Stall,
}

async fn endpoint(
    State(app): State<Arc<App>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
    check: Check,
) -> Response {
    let (parts, body) = req.into_parts();
    app.count_request();
    let mut entry = LogEntry::new(&parts);
    if parts.method != Method::POST {
        let key = app.check_key(&parts.headers);
        entry.api_key = Some(key.as_str());
        let response = if key == KeyCheck::Valid {
            method_not_allowed(&parts.method, "POST, OPTIONS")
        } else {
            app.auth_failure()
        };
        return finish(&app, &mut entry, response);
    }

    let (reply, delay) = handle_post(&app, check, &parts, body, &mut entry).await;
    // If the client goes away during the delay, hyper drops this handler: the guard still
    // logs the request (it was received, and a 200 was billed).
    let mut gone = ClientGoneLog {
        app: app.clone(),
        entry: Some(entry.clone()),
        status: match &reply {
            Reply::Send(response) => Some(response.status().as_u16()),
            Reply::Drop | Reply::Stall => None,
        },
    };
    app.sleep(delay).await;
    gone.entry = None;
    match reply {
        Reply::Send(response) => finish(&app, &mut entry, response),
        Reply::Drop => {
            lock(&app.stats).dropped += 1;
            entry.latency_ms = entry.started.elapsed().as_secs_f64() * 1000.0;
            app.write_log(&entry);
            if conn.drop_connection() {
                // The socket is shut down both ways: hyper's attempt to write this fails and
                // nothing reaches the client.
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            } else {
                aborted_body()
            }
        }
        Reply::Stall => {
            lock(&app.stats).stalled += 1;
            entry.latency_ms = entry.started.elapsed().as_secs_f64() * 1000.0;
            app.write_log(&entry);
            app.sleep(app.config.stall).await;
            html(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out")
        }
    }
}

/// Logs a request whose client left before the (delayed) answer was sent.
struct ClientGoneLog {
    app: Arc<App>,
    entry: Option<LogEntry>,
    status: Option<u16>,
}

impl Drop for ClientGoneLog {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.status = self.status;
            entry.fault = Some("client_gone");
            entry.latency_ms = entry.started.elapsed().as_secs_f64() * 1000.0;
            self.app.write_log(&entry);
        }
    }
}

/// Fallback when the socket could not be duplicated: a response whose body breaks off.
fn aborted_body() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by the emulator",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1024"));
    response
}

enum BodyError {
    TooLarge { drained: bool },
    Broken,
}

/// Receive the whole body, up to [`BODY_LIMIT`].
async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, BodyError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(BodyError::TooLarge { drained: false });
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            return Err(BodyError::TooLarge { drained: false });
        }
        if total <= BODY_LIMIT {
            buf.extend_from_slice(&chunk);
        } else if !buf.is_empty() {
            buf = bytes::BytesMut::new();
        }
    }
    if total > BODY_LIMIT {
        return Err(BodyError::TooLarge { drained: true });
    }
    Ok(buf.freeze())
}

/// The checks of a `POST`, in order. Returns the reply and the delay to apply before it.
async fn handle_post(
    app: &App,
    check: Check,
    parts: &Parts,
    body: Body,
    entry: &mut LogEntry,
) -> (Reply, Duration) {
    let bytes = match read_body(parts, body).await {
        Ok(bytes) => bytes,
        Err(e) => return (Reply::Send(body_failure(e)), Duration::ZERO),
    };
    // Parse first so the log shows what was sent, whatever the answer.
    let form = form::read_form(parts, bytes).await;
    if let Ok(raw) = &form {
        entry.fields = raw.log_fields.clone();
        entry.vendor_data = raw.text.get("vendor_data").cloned();
        let digest = |part: &Option<form::ImagePart>| match part {
            Some(form::ImagePart::File(upload)) => Some(hex::encode(Sha256::digest(&upload.bytes))),
            _ => None,
        };
        entry.sha256 = digest(&raw.image);
        entry.ref_sha256 = digest(&raw.reference);
    }
    let (fault, delay) = app.draw();
    // In Didit's order: auth, rate limit, (injected faults), validation, credits, result.
    if let Some(refusal) = app.refuse_before_work(parts, entry) {
        return (Reply::Send(refusal), delay);
    }
    if let Some(fault) = fault {
        entry.fault = Some(fault.as_str());
        return (app.fault_reply(fault), delay);
    }
    let raw = match form {
        Ok(raw) => raw,
        Err(message) => {
            let response = detail(StatusCode::BAD_REQUEST, &message);
            return (Reply::Send(response), delay);
        }
    };
    let valid = match form::validate_for(check, &raw) {
        Ok(valid) => valid,
        Err(errors) => {
            let response = (StatusCode::BAD_REQUEST, Json(errors)).into_response();
            return (Reply::Send(response), delay);
        }
    };
    let extra = if valid.rotate_image {
        ROTATE_COST
    } else {
        Duration::ZERO
    };
    (Reply::Send(app.answer_billed(&valid).await), delay + extra)
}

/// The answer to a body that was too large or did not arrive in full.
fn body_failure(e: BodyError) -> Response {
    match e {
        BodyError::TooLarge { drained } => {
            let mut response = html(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            );
            if !drained {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
        BodyError::Broken => detail(
            StatusCode::BAD_REQUEST,
            "The request body was not received in full.",
        ),
    }
}

impl App {
    /// A wrong key, or a key over its rate limit: answered before any work.
    fn refuse_before_work(&self, parts: &Parts, entry: &mut LogEntry) -> Option<Response> {
        let key = self.check_key(&parts.headers);
        entry.api_key = Some(key.as_str());
        if key != KeyCheck::Valid {
            return Some(self.auth_failure());
        }
        let limiter = self.limiter.as_ref()?;
        let mut window = lock(limiter);
        let Admission::Limited { wait } = window.admit(Instant::now()) else {
            return None;
        };
        let headers = ratelimit::limit_headers(window.limit(), wait, SystemTime::now());
        let response = too_many(window.limit(), window.window(), headers);
        drop(window);
        lock(&self.stats).rate_limited += 1;
        Some(response)
    }

    /// What an injected fault answers (or does to the connection).
    fn fault_reply(&self, fault: Fault) -> Reply {
        match fault {
            Fault::E500 => Reply::Send(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            Fault::E502 => Reply::Send(html(StatusCode::BAD_GATEWAY, "502 Bad Gateway")),
            Fault::E503 => Reply::Send(detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, try again later.",
            )),
            Fault::E429 => {
                let (limit, window) = self
                    .config
                    .rate_limit
                    .unwrap_or((300, Duration::from_secs(60)));
                let headers = ratelimit::spurious_headers(
                    limit,
                    self.config.spurious_retry_after,
                    SystemTime::now(),
                );
                Reply::Send(too_many(limit, window, headers))
            }
            Fault::Reset => Reply::Drop,
            Fault::Stall => Reply::Stall,
        }
    }

    /// A valid request: a credit is reserved (unless sandboxed), the result computed, and the
    /// credit kept only for a 200.
    async fn answer_billed(&self, valid: &CheckForm) -> Response {
        let billed = !self.config.sandbox;
        if billed && self.reserve_credit().is_err() {
            return (StatusCode::FORBIDDEN, Json(json!({ "error": NO_CREDITS }))).into_response();
        }
        let response = match valid.check {
            Check::Liveness => process(self, valid).await,
            Check::FaceMatch => match_faces(self, valid).await,
            Check::Age => estimate_age(self, valid).await,
        };
        if billed {
            if response.status() == StatusCode::OK {
                lock(&self.stats).credits_used += 1;
            } else {
                self.refund_credit();
            }
        }
        response
    }
}

/// An image decoded (bounded, off the async threads) and measured, with its fingerprint when
/// asked (face match).
struct Decoded {
    hash: [u8; 32],
    analysis: results::Analysis,
    print: [u64; 2],
}

impl Decoded {
    fn side(&self) -> Side<'_> {
        Side {
            hash: &self.hash,
            analysis: &self.analysis,
            print: self.print,
        }
    }
}

/// Decode and measure `image`, or the answer Didit gives an image it cannot read (`field`
/// names it: `user` or `ref`).
async fn decode(app: &App, image: &Bytes, field: &str, print: bool) -> Result<Decoded, Response> {
    let hash: [u8; 32] = Sha256::digest(image).into();
    let measured = {
        let Ok(_permit) = app.decoders.acquire().await else {
            return Err(detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, try again later.",
            ));
        };
        let image = image.clone();
        tokio::task::spawn_blocking(move || {
            results::decode_bounded(&image).map(|img| {
                (
                    results::analyze(&img),
                    print.then(|| face_age::fingerprint(&img)),
                )
            })
        })
        .await
    };
    match measured {
        Ok(Ok((analysis, print))) => Ok(Decoded {
            hash,
            analysis,
            print: print.unwrap_or_default(),
        }),
        _ => Err((
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("Invalid {field} image format.") })),
        )
            .into_response()),
    }
}

fn echo(valid: &CheckForm) -> Echo<'_> {
    Echo {
        request_id: Uuid::new_v4(),
        vendor_data: valid.vendor_data.as_deref(),
        metadata: valid.metadata.as_ref(),
        now: chrono::Utc::now(),
    }
}

/// Decode, assess, detect duplicates, enroll, answer.
async fn process(app: &App, valid: &CheckForm) -> Response {
    let user = match decode(app, &valid.image, "user", valid.check == Check::FaceMatch).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let (hash, analysis) = (user.hash, user.analysis);
    let request_id = Uuid::new_v4();
    let assessment = if app.config.sandbox {
        Assessment::sandbox()
    } else {
        let mut assessment = results::assess(&hash, &analysis, valid.threshold, valid.rotate_image);
        if assessment.face_found() {
            let mut faces = lock(&app.faces);
            if let Some((session, number)) =
                faces.find_duplicate(&hash, valid.vendor_data.as_deref())
            {
                assessment.add_duplicate(session, number);
            }
            if valid.save_api_request && assessment.status() == "Approved" {
                faces.enroll(hash, request_id, valid.vendor_data.as_deref());
            }
        }
        assessment
    };
    let body = results::response_body(
        request_id,
        &assessment,
        valid.vendor_data.as_deref(),
        valid.metadata.as_ref(),
        chrono::Utc::now(),
    );
    (StatusCode::OK, Json(body)).into_response()
}

/// Decode both images and compare them. Face match enrolls nothing, saved or not.
async fn match_faces(app: &App, valid: &CheckForm) -> Response {
    let user = match decode(app, &valid.image, "user", valid.check == Check::FaceMatch).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let reference = valid.reference.as_ref().unwrap_or(&valid.image);
    let reference = match decode(app, reference, "ref", true).await {
        Ok(reference) => reference,
        Err(refusal) => return refusal,
    };
    let verdict = if app.config.sandbox {
        FaceMatch::sandbox()
    } else {
        face_age::face_match(
            user.side(),
            reference.side(),
            valid.threshold,
            valid.save_api_request,
        )
    };
    let body = face_age::face_match_body(&verdict, echo(valid));
    (StatusCode::OK, Json(body)).into_response()
}

/// Decode the image, then liveness and age. A saved approved call enrolls the face, as Didit's
/// age estimation does with `save_api_request=true`.
async fn estimate_age(app: &App, valid: &CheckForm) -> Response {
    let user = match decode(app, &valid.image, "user", valid.check == Check::FaceMatch).await {
        Ok(user) => user,
        Err(refusal) => return refusal,
    };
    let echo = echo(valid);
    let verdict = if app.config.sandbox {
        AgeEstimate::sandbox()
    } else {
        let verdict = face_age::age_estimation(
            &user.hash,
            &user.analysis,
            valid.threshold,
            valid.min_age,
            valid.rotate_image,
        );
        if valid.save_api_request && verdict.status() == "Approved" {
            lock(&app.faces).enroll(user.hash, echo.request_id, echo.vendor_data);
        }
        verdict
    };
    let body = face_age::age_body(&verdict, echo);
    (StatusCode::OK, Json(body)).into_response()
}
