//! The HTTP client for `POST {base}/v3/passive-liveness/`: one request per [`Client::send`],
//! multipart rebuilt from the image bytes each time, the key only ever in the `x-api-key` header.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::multipart::{Form, Part};
use reqwest::{Url, redirect};

use super::error::{Outcome, classify, classify_transport};
use super::model::{Params, Upload};
use crate::secret::ApiKey;

/// The endpoint's path, trailing slash included (Didit's path has it).
pub const ENDPOINT_PATH: &str = "/v3/passive-liveness/";
/// Didit's production base URL.
pub const DEFAULT_BASE_URL: &str = "https://verification.didit.me";
/// Responses larger than this are cut off and treated as broken (a result is a few KB).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

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
         for a loopback host (127.0.0.1, ::1, localhost) such as the emulator"
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
    host: String,
    api_key: ApiKey,
}

impl Client {
    /// Build the client. Refuses `http://` unless the host is loopback, so the key never
    /// crosses a network in clear. TLS is rustls with the operating system's certificate store
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
            .to_string();
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
        let loopback = is_loopback(&url);
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
        let http = builder.build().map_err(ClientError::Build)?;

        let base = url.as_str().trim_end_matches('/');
        Ok(Self {
            http,
            endpoint: format!("{base}{ENDPOINT_PATH}"),
            host: url.host_str().unwrap_or_default().to_string()
                + &url.port().map(|p| format!(":{p}")).unwrap_or_default(),
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

    /// Send one request and classify the answer. Never retries; never panics.
    pub async fn send(&self, upload: &Upload, params: &Params) -> Attempt {
        let started = Instant::now();
        let (outcome, http_status) = match self
            .http
            .post(&self.endpoint)
            .multipart(form(upload, params))
            .send()
            .await
        {
            Err(e) => (classify_transport(&e), None),
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match read_capped(&mut resp).await {
                    Ok(body) => (classify(status, &headers, &body), Some(status)),
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
                                "HTTP {status} with a response larger than {MAX_RESPONSE_BYTES} bytes"
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

    /// Belt and braces: no message may carry the key, whatever a server or proxy echoes.
    fn redact(&self, mut outcome: Outcome) -> Outcome {
        let key = self.api_key.expose();
        if let Outcome::Rejected { message, .. }
        | Outcome::Transient { message, .. }
        | Outcome::Fatal { message, .. } = &mut outcome
            && message.contains(key)
        {
            *message = message.replace(key, "<redacted>");
        }
        outcome
    }
}

/// The multipart body: the image part plus every field, `save_api_request` always explicit.
fn form(upload: &Upload, params: &Params) -> Form {
    let image = Part::stream_with_length(upload.bytes.clone(), upload.bytes.len() as u64)
        .file_name(upload.file_name.clone());
    let image = match image.mime_str(upload.mime) {
        Ok(p) => p,
        // mime strings are static and valid; fall back to a plain part rather than panic.
        Err(_) => Part::stream_with_length(upload.bytes.clone(), upload.bytes.len() as u64)
            .file_name(upload.file_name.clone()),
    };
    let mut form = Form::new()
        .part("user_image", image)
        .text("save_api_request", bool_text(params.save_api_request))
        .text("rotate_image", bool_text(params.rotate_image));
    if let Some(t) = params.threshold_text() {
        form = form.text("face_liveness_score_decline_threshold", t);
    }
    if let Some(v) = &params.vendor_data {
        form = form.text("vendor_data", v.clone());
    }
    if let Some(m) = &params.metadata {
        form = form.text("metadata", serde_json::Value::Object(m.clone()).to_string());
    }
    form
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_capped(resp: &mut reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Loopback: 127.0.0.0/8, ::1 (and IPv4-mapped loopback), `localhost` and `*.localhost`.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    let d = host.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "http://[::1]:9",
            "http://localhost:3000",
            "http://LOCALHOST.",
            "http://api.localhost",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(Client::new(cfg(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://verification.didit.me",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://[::2]",
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
