//! The HTTP client for `POST {base}/v3/passive-liveness/`: one request per [`Client::send`],
//! the multipart body framed around the image's own buffer (never copied), the key only ever
//! in the `x-api-key` header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Url, redirect};

use super::error::{Outcome, classify, classify_transport};
use super::model::{Params, Upload};
use crate::secret::ApiKey;

/// The endpoint's path, trailing slash included (Didit's path has it).
pub const ENDPOINT_PATH: &str = "/v3/passive-liveness/";
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
    /// are always reached directly. Redirects are not followed.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
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
        let endpoint = format!("{base}{ENDPOINT_PATH}");
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
        let (head, tail) = frame(&self.boundary, upload, params);
        let length = head.len() + upload.bytes.len() + tail.len();
        let chunks = [head, upload.bytes.clone(), tail].map(Ok::<Bytes, std::io::Error>);
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
                        (classify(status, resp.headers(), &body), Some(status))
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
    if memfind(&out, b"\\u").is_some()
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

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = memfind(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The multipart body around the image, as `multipart/form-data` (RFC 7578) writes it: what
/// goes before the image's bytes (the image part's header) and what follows them (every field,
/// `save_api_request` always explicit, then the closing boundary). The image is sent from its
/// own buffer between the two.
fn frame(boundary: &str, upload: &Upload, params: &Params) -> (Bytes, Bytes) {
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"user_image\"; \
         filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
        upload
            .file_name
            .replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A"),
        upload.mime
    );
    let mut tail = String::with_capacity(512);
    let mut field = |name: &str, value: &str| {
        tail.push_str("\r\n--");
        tail.push_str(boundary);
        tail.push_str("\r\nContent-Disposition: form-data; name=\"");
        tail.push_str(name);
        tail.push_str("\"\r\n\r\n");
        tail.push_str(value);
    };
    field("save_api_request", bool_text(params.save_api_request));
    field("rotate_image", bool_text(params.rotate_image));
    if let Some(t) = params.threshold_text() {
        field("face_liveness_score_decline_threshold", &t);
    }
    if let Some(v) = &params.vendor_data {
        field("vendor_data", v);
    }
    if let Some(m) = &params.metadata {
        field(
            "metadata",
            &serde_json::Value::Object(m.clone()).to_string(),
        );
    }
    tail.push_str("\r\n--");
    tail.push_str(boundary);
    tail.push_str("--\r\n");
    (Bytes::from(head), Bytes::from(tail))
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
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

/// Whether plain http may carry the key to this host: an IP literal in 127.0.0.0/8, `::1` or
/// IPv4-mapped loopback (with or without brackets), or exactly `localhost` (which the client
/// pins to 127.0.0.1 and ::1). `*.localhost`, `localhost.` and every other name are not
/// loopback: a name can resolve anywhere. A `:port` suffix is allowed (`127.0.0.1:8080`,
/// `[::1]:9`, `localhost:3000`), so host strings as journals keep them can be passed as is.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        match rest.split_once(']') {
            Some((inside, tail)) if tail.is_empty() || is_port_suffix(tail) => inside,
            _ => return false,
        }
    } else if host.parse::<IpAddr>().is_ok() {
        host
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if is_port_suffix(&format!(":{port}")) => h,
            _ => host,
        }
    };
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    bare.eq_ignore_ascii_case(LOCALHOST)
}

fn is_port_suffix(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The framed body, read back by the emulator's own multipart reader: every field as sent,
    /// the image byte for byte.
    #[tokio::test]
    async fn the_framed_body_reads_back_as_the_form_sent() {
        let boundary = "liveness-batch-0123456789abcdef";
        let image = Bytes::from_static(b"\xff\xd8\xff\xe0 not really a jpeg \r\n--x\r\n");
        let upload = Upload::new(image.clone(), "jpg", "image/jpeg");
        let mut metadata = serde_json::Map::new();
        metadata.insert("case".into(), serde_json::json!("A-1"));
        let params = Params {
            threshold: Some(42.5),
            rotate_image: true,
            save_api_request: false,
            vendor_data: Some("user \"7\"\r\nline two".into()),
            metadata: Some(metadata),
        };
        let (head, tail) = frame(boundary, &upload, &params);
        let body = [&head[..], &image[..], &tail[..]].concat();
        let req = axum::http::Request::post("/")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let form = crate::emulator::form::read_form(&parts, Bytes::from(body))
            .await
            .expect("a well-formed body");
        match &form.image {
            Some(crate::emulator::form::ImagePart::File(f)) => {
                assert_eq!(f.file_name, "image.jpg");
                assert_eq!(f.bytes, image);
            }
            other => panic!("no image part: {other:?}"),
        }
        let text = |k: &str| form.text.get(k).map(String::as_str);
        assert_eq!(text("save_api_request"), Some("false"));
        assert_eq!(text("rotate_image"), Some("true"));
        assert_eq!(text("face_liveness_score_decline_threshold"), Some("42.5"));
        assert_eq!(text("vendor_data"), Some("user \"7\"\r\nline two"));
        assert_eq!(text("metadata"), Some(r#"{"case":"A-1"}"#));
        assert_eq!(form.text.len(), 5, "{:?}", form.text);
        let validated = crate::emulator::form::validate(&form).expect("valid");
        assert_eq!(validated.threshold, 42.5);
    }

    fn cfg(base: &str) -> ClientConfig {
        ClientConfig {
            base_url: base.to_string(),
            api_key: ApiKey::new("k_secret_value").unwrap(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn endpoint_is_base_plus_path_with_trailing_slash() {
        for base in [
            "https://verification.didit.me",
            "https://verification.didit.me/",
            " https://verification.didit.me// ",
        ] {
            let c = Client::new(cfg(base)).unwrap();
            assert_eq!(
                c.endpoint(),
                "https://verification.didit.me/v3/passive-liveness/"
            );
            assert_eq!(c.host(), "verification.didit.me");
        }
        let c = Client::new(cfg("http://127.0.0.1:8080/prefix/")).unwrap();
        assert_eq!(
            c.endpoint(),
            "http://127.0.0.1:8080/prefix/v3/passive-liveness/"
        );
        assert_eq!(c.host(), "127.0.0.1:8080");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:1",
            "http://127.8.9.10",
            "http://2130706433",
            "http://[::1]:9",
            "http://localhost:3000",
            "http://LOCALHOST",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(Client::new(cfg(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://verification.didit.me",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://[::2]",
            "http://api.localhost",
            "http://localhost.",
            "http://LOCALHOST.",
            "http://127.0.0.1.nip.io",
            "http://[::ffff:10.0.0.1]",
            "http://0.0.0.0:8080",
        ] {
            let e = Client::new(cfg(bad)).unwrap_err().to_string();
            assert!(
                e.contains("refusing to send the API key over plain http"),
                "{bad}: {e}"
            );
            assert!(!e.contains("k_secret_value"));
        }
    }

    #[test]
    fn loopback_hosts_as_strings() {
        for yes in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.255.0.9",
            "::1",
            "[::1]",
            "[::1]:9",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]:80",
            "localhost",
            "LocalHost:3000",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "api.localhost",
            "api.localhost:80",
            "localhost.",
            "localhost.:80",
            "localhost.evil.com",
            "10.0.0.1",
            "10.0.0.1:80",
            "[::2]",
            "[::1]x",
            "[::1]:",
            "::ffff:10.0.0.1",
            "verification.didit.me",
            "",
            "localhost:http",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn the_key_is_redacted_from_bodies_in_every_form() {
        let key = "k/se\\cr\"et";
        let raw = serde_json::json!({ "a": key, "nested": {"x": [format!("pre {key} post")]} });
        let body = serde_json::to_vec(&raw).unwrap();
        let out = String::from_utf8(redact_body(&body, key)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], REDACTED);
        assert_eq!(v["nested"]["x"][0], "pre [REDACTED] post");
        // \/ escapes and \u escapes
        let body = br#"{"a": "k\/se\\cr\"et", "b": "\u006b/se\\cr\"et", "\u006b/se\\cr\"et": 1}"#;
        let out = redact_body(body, key);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["a"], REDACTED);
        assert_eq!(v["b"], REDACTED);
        assert_eq!(v[REDACTED], 1);
        assert!(!v.to_string().contains(key));
        // plain text and HTML bodies
        let out = redact_body(format!("<p>{key}</p>{key}").as_bytes(), key);
        assert_eq!(out, b"<p>[REDACTED]</p>[REDACTED]");
        // nothing to do
        assert_eq!(redact_body(b"{}", key), b"{}");
    }

    #[test]
    fn odd_urls_are_refused_with_a_reason() {
        for (bad, want) in [
            ("verification.didit.me", "invalid base URL"),
            ("ftp://x.example", "unsupported scheme"),
            ("https://user:pw@x.example", "credentials"),
            ("https://x.example/?a=1", "no query"),
            ("", "invalid base URL"),
        ] {
            let e = Client::new(cfg(bad)).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let mut c = cfg("https://x.example");
        c.timeout = Duration::ZERO;
        assert!(matches!(Client::new(c), Err(ClientError::BadTimeout)));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let c = Client::new(cfg("https://x.example")).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("k_secret_value"), "{dbg}");
    }

    #[test]
    fn messages_are_redacted() {
        let c = Client::new(cfg("https://x.example")).unwrap();
        let o = c.redact(Outcome::Fatal {
            kind: crate::didit::FatalKind::Permission,
            status: 403,
            message: "bad key k_secret_value".into(),
        });
        assert!(!format!("{o:?}").contains("k_secret_value"));
    }
}
