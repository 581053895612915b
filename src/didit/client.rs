//! The transport: one HTTP client for every endpoint description, one request per
//! [`Client::send`], the multipart body framed around the images' own buffers (never copied),
//! the key only ever in the `x-api-key` header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Url, redirect};

use super::classify::{Outcome, classify_for, classify_transport};
use super::endpoint::{Endpoint, LIVENESS};
use super::model::{Params, Upload};
use crate::secret::ApiKey;

/// The account balance (a read, on the read budget, not the 300 writes a minute).
pub const BALANCE_PATH: &str = "/v3/billing/balance/";
/// How long a balance read may take: it is a courtesy, never a reason to wait.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Didit's production base URL.
pub const DEFAULT_BASE_URL: &str = "https://verification.didit.me";
/// Responses larger than this are cut off and treated as broken (a result is a few KB): no
/// more than this is ever held in memory for one answer.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// What replaces the API key wherever an answer echoes it.
pub const REDACTED: &str = "[REDACTED]";
/// The only name plain http may use; it is pinned to these loopback addresses, never resolved.
const LOCALHOST: &str = "localhost";
const LOCALHOST_ADDRS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub api_key: ApiKey,
    /// Whole-request timeout (connect, upload, processing, answer).
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "refusing to send the API key over plain http to {host}: use https://, or http:// only \
         for a loopback address (127.0.0.0/8, [::1]) or exactly `localhost`, such as the emulator"
    )]
    InsecureUrl { host: String },
    #[error("invalid base URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the request timeout must be a positive number of seconds")]
    BadTimeout,
    #[error("the API key cannot be sent in an HTTP header")]
    BadKey,
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// One request's result.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// From sending to the end of the answer (or the error).
    pub latency: Duration,
}

/// A client for one base URL and key. Cheap to share behind an `Arc`; connections are pooled.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// What this client calls: path, form, reading.
    call: &'static Endpoint,
    endpoint: String,
    /// The endpoint parsed once, not for every request.
    endpoint_url: Url,
    /// The multipart boundary of this client's requests (random, so no upload can contain it
    /// by design), and the `Content-Type` naming it.
    boundary: String,
    content_type: HeaderValue,
    /// The forms of the key an answer may carry ([`key_forms`]), ready to search for.
    key_finders: Vec<memchr::memmem::Finder<'static>>,
    balance_url: String,
    host: String,
    api_key: ApiKey,
}

impl Client {
    /// Build the client. Refuses `http://` unless the host is a loopback IP literal
    /// (127.0.0.0/8, ::1, IPv4-mapped loopback) or exactly `localhost`, which is pinned to
    /// 127.0.0.1 and ::1 (never looked up in DNS or the hosts file), so the key never crosses
    /// a network in clear. TLS is rustls with the operating system's certificate store
    /// (so a corporate proxy's re-signing CA installed there is trusted); `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured, except for loopback hosts, which
    /// are always reached directly. Redirects are not followed. Calls Passive Liveness.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        Self::for_endpoint(cfg, &LIVENESS)
    }

    /// [`Client::new`] for the check `call` describes.
    pub fn for_endpoint(cfg: ClientConfig, call: &'static Endpoint) -> Result<Self, ClientError> {
        let trimmed = cfg.base_url.trim();
        let bad = |reason: &str| ClientError::BadUrl {
            url: trimmed.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| bad("it has no host"))?
            .to_string()
            + &url.port().map(|p| format!(":{p}")).unwrap_or_default();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials in the URL are not allowed; the key goes in DIDIT_API_KEY or --api-key-file",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "a base URL has no query or fragment (e.g. https://verification.didit.me)",
            ));
        }
        let loopback = crate::kit::loopback::url_is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(ClientError::InsecureUrl { host }),
            other => return Err(bad(&format!("unsupported scheme {other:?}; use https://"))),
        }
        if cfg.timeout.is_zero() {
            return Err(ClientError::BadTimeout);
        }

        let mut key =
            HeaderValue::from_str(cfg.api_key.expose()).map_err(|_| ClientError::BadKey)?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );

        crate::kit::tls::install();
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("liveness-batch/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(15)))
            .redirect(redirect::Policy::none())
            .tcp_nodelay(true);
        if loopback {
            builder = builder.no_proxy();
        }
        if url.host_str() == Some(LOCALHOST) {
            // Port 0: the URL's own port is used.
            let pinned = LOCALHOST_ADDRS.map(|ip| SocketAddr::new(ip, 0));
            builder = builder.resolve_to_addrs(LOCALHOST, &pinned);
        }
        let http = builder.build().map_err(ClientError::Build)?;

        let base = url.as_str().trim_end_matches('/');
        let endpoint = format!("{base}{}", call.path);
        let endpoint_url = Url::parse(&endpoint).map_err(|e| bad(&e.to_string()))?;
        let boundary = format!("liveness-batch-{}", uuid::Uuid::new_v4().simple());
        let content_type =
            HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
                .map_err(|e| bad(&e.to_string()))?;
        let key_finders = key_forms(cfg.api_key.expose())
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(|f| memchr::memmem::Finder::new(f.as_bytes()).into_owned())
            .collect();
        Ok(Self {
            http,
            call,
            endpoint,
            endpoint_url,
            boundary,
            content_type,
            key_finders,
            balance_url: format!("{base}{BALANCE_PATH}"),
            host,
            api_key: cfg.api_key,
        })
    }

    /// The description of the check this client calls.
    pub fn call(&self) -> &'static Endpoint {
        self.call
    }

    /// The full endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Host (and port when given) of the API, for journals and messages.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// Send one request and classify the answer. Never retries; never panics. Every answer's
    /// body is read at most [`MAX_RESPONSE_BYTES`] long and has the key removed
    /// ([`redact_body`]) before anything looks at it, so no outcome, raw JSON or message
    /// downstream can carry the key, whatever a server or proxy echoes.
    pub async fn send(&self, upload: &Upload, params: &Params) -> Attempt {
        let started = Instant::now();
        let images: Vec<&Upload> = std::iter::once(upload)
            .chain(params.reference.as_ref())
            .collect();
        let chunks = frame(&self.boundary, self.call, &images, params);
        let length: usize = chunks.iter().map(Bytes::len).sum();
        let chunks = chunks.into_iter().map(Ok::<Bytes, std::io::Error>);
        let (outcome, http_status) = match self
            .http
            .post(self.endpoint_url.clone())
            .header(CONTENT_TYPE, self.content_type.clone())
            .header(CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
        {
            Err(e) => (classify_transport(&e), None),
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                match read_capped(&mut resp).await {
                    Ok(body) => {
                        let body = self.redact_answer(body);
                        let o = classify_for(self.call, status, resp.headers(), &body);
                        (o, Some(status))
                    }
                    Err(BodyError::Transport(e)) => {
                        let mut o = classify_transport(&e);
                        if let Outcome::Transient {
                            status: s,
                            body_sent,
                            ..
                        } = &mut o
                        {
                            *s = Some(status);
                            *body_sent = true;
                        }
                        (o, Some(status))
                    }
                    Err(BodyError::TooLarge) => (
                        Outcome::Transient {
                            status: Some(status),
                            body_sent: true,
                            message: format!(
                                "HTTP {status} with a response larger than {MAX_RESPONSE_BYTES} bytes \
                                 (not read further)"
                            ),
                        },
                        Some(status),
                    ),
                }
            }
        };
        Attempt {
            outcome: self.redact(outcome),
            http_status,
            latency: started.elapsed(),
        }
    }

    /// The account balance in US dollars (`GET /v3/billing/balance/`), or why it is unknown: a
    /// key that may not read billing (401/403), another answer, or no answer. Never an error:
    /// the run goes on either way. Nothing of the answer but the balance is kept.
    pub async fn balance(&self) -> crate::audit::Balance {
        use crate::audit::Balance;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let resp = match self
            .http
            .get(&self.balance_url)
            .timeout(BALANCE_TIMEOUT)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let o = self.redact(classify_transport(&e));
                let why = match o {
                    Outcome::Transient { message, .. } => message,
                    _ => "no answer".to_string(),
                };
                return Balance::unknown(at, format!("no answer from the balance endpoint: {why}"));
            }
        };
        let status = resp.status().as_u16();
        if matches!(status, 401 | 403) {
            return Balance::unknown(
                at,
                format!("HTTP {status}: this key may not read the billing balance"),
            );
        }
        let mut resp = resp;
        let body = match read_capped(&mut resp).await {
            Ok(b) => b,
            Err(_) => {
                return Balance::unknown(at, format!("HTTP {status} with an unreadable body"));
            }
        };
        if status != 200 {
            return Balance::unknown(at, format!("HTTP {status} from the balance endpoint"));
        }
        let value: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| match v.get("balance")? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| {
                s.len() <= 32
                    && s.parse::<f64>().is_ok_and(f64::is_finite)
                    && !s.contains(self.api_key.expose())
            });
        match value {
            Some(usd) => Balance::known(at, usd),
            None => Balance::unknown(at, "the balance endpoint answered without a balance"),
        }
    }

    /// The answer's body without the key ([`redact_body`]); searched without a copy, and left
    /// as it is when it holds no form of the key and no `\u` escape that could spell one.
    fn redact_answer(&self, body: Vec<u8>) -> Vec<u8> {
        let suspect = memchr::memmem::find(&body, b"\\u").is_some()
            || self.key_finders.iter().any(|f| f.find(&body).is_some());
        if suspect {
            redact_body(&body, self.api_key.expose())
        } else {
            body
        }
    }

    /// Belt and braces: no message may carry the key, whatever a server or proxy echoes
    /// (headers such as `Location` are quoted in messages and never pass through
    /// [`redact_body`]).
    fn redact(&self, mut outcome: Outcome) -> Outcome {
        let key = self.api_key.expose();
        if let Outcome::Rejected { message, .. }
        | Outcome::Transient { message, .. }
        | Outcome::Fatal { message, .. }
        | Outcome::BadAnswer { message, .. } = &mut outcome
            && message.contains(key)
        {
            *message = message.replace(key, REDACTED);
        }
        outcome
    }
}

/// The body with every occurrence of `key` replaced by [`REDACTED`]: the raw bytes, the key's
/// JSON-escaped forms (`\"`, `\\`, `\/`), and, when the body is JSON using `\uXXXX`
/// escapes, any string that decodes to something containing the key (the JSON is then
/// rewritten without those escapes).
pub fn redact_body(body: &[u8], key: &str) -> Vec<u8> {
    if key.is_empty() {
        return body.to_vec();
    }
    let mut out = body.to_vec();
    for form in key_forms(key) {
        out = replace_bytes(&out, form.as_bytes(), REDACTED.as_bytes());
    }
    if memchr::memmem::find(&out, b"\\u").is_some()
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&out)
        && redact_value(&mut v, key)
        && let Ok(text) = serde_json::to_vec(&v)
    {
        out = text;
    }
    out
}

/// The key as written raw and as a JSON string body may write it.
fn key_forms(key: &str) -> Vec<String> {
    let escaped = serde_json::to_string(key).unwrap_or_default();
    let escaped = escaped
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(key)
        .to_string();
    let slashed = escaped.replace('/', "\\/");
    let mut forms = vec![key.to_string(), escaped, slashed];
    forms.dedup();
    forms
}

/// Redact the key in every string and object key of a JSON value; true when anything changed.
fn redact_value(v: &mut serde_json::Value, key: &str) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains(key) => {
            *s = s.replace(key, REDACTED);
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, i| redact_value(i, key) | changed),
        Value::Object(map) => {
            let mut changed = false;
            let old = std::mem::take(map);
            for (k, mut item) in old {
                changed |= redact_value(&mut item, key);
                let k = if k.contains(key) {
                    changed = true;
                    k.replace(key, REDACTED)
                } else {
                    k
                };
                map.insert(k, item);
            }
            changed
        }
        _ => false,
    }
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = memchr::memmem::find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The multipart body (RFC 7578) in the order sent: each image part's header followed by the
/// image from its own buffer, then every text field of the endpoint's form, then the closing
/// boundary.
fn frame(boundary: &str, call: &Endpoint, uploads: &[&Upload], params: &Params) -> Vec<Bytes> {
    let mut chunks = Vec::with_capacity(2 * uploads.len() + 1);
    let mut text = String::with_capacity(512);
    let part = |text: &mut String, name: &str| {
        text.push_str("--");
        text.push_str(boundary);
        text.push_str("\r\nContent-Disposition: form-data; name=\"");
        text.push_str(name);
        text.push('"');
    };
    for (name, upload) in call.images.iter().zip(uploads) {
        part(&mut text, name);
        let file = upload.file_name.replace('"', "%22");
        let file = file.replace('\r', "%0D").replace('\n', "%0A");
        text.push_str(&format!(
            "; filename=\"{file}\"\r\nContent-Type: {}\r\n\r\n",
            upload.mime
        ));
        chunks.push(Bytes::from(std::mem::take(&mut text)));
        chunks.push(upload.bytes.clone());
        text.push_str("\r\n");
    }
    for (name, value) in call.fields(params) {
        part(&mut text, name);
        text.push_str("\r\n\r\n");
        text.push_str(&value);
        text.push_str("\r\n");
    }
    text.push_str("--");
    text.push_str(boundary);
    text.push_str("--\r\n");
    chunks.push(Bytes::from(text));
    chunks
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it is known to exceed
/// [`MAX_RESPONSE_BYTES`] (from `Content-Length`, before reading anything, or while reading):
/// never more than the cap is held.
async fn read_capped(resp: &mut reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
