//! Store requests made and signed here, with keys exactly as the store holds them: the
//! listing (S3's ListObjectsV2, also spoken by Google Cloud Storage's XML API, or Azure's List
//! Blobs; its XML read here, page by page), and HEAD and GET for the keys the storage client
//! cannot address (every gs:// and az:// object). (The storage client turns each key into a
//! path of its own: a page holding one key it cannot represent, such as `a//b.jpg`, `./x.jpg`
//! or a key with a tab, fails whole, and the objects after it would never be seen.)

use std::time::Duration;

use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpRequest, HttpRequestBody};
use quick_xml::events::Event as Xml;

use super::{Failure, classify_text, retry_config};

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The full key, exactly as stored.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// One listing page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub objects: Vec<Listed>,
    /// The token that asks for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// Why a request failed (after the retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    pub failure: Failure,
    pub message: String,
    /// The store's HTTP status, when it answered.
    pub status: Option<u16>,
}

/// An object's size and ETag, from a HEAD or a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub etag: Option<String>,
}

/// A passing fault worth another attempt, or not.
type Attempt<T> = Result<T, (PageError, bool)>;

/// How requests are authorised. (No `Debug`: it holds the credentials.)
pub enum Auth {
    /// AWS Signature V4 with the store's own credentials.
    Aws {
        credentials: AwsCredentialProvider,
        region: String,
        sign_payload: bool,
    },
    /// An OAuth bearer token from the store's own credentials (Google Cloud Storage).
    #[cfg(feature = "gcp")]
    Bearer(object_store::gcp::GcpCredentialProvider),
    /// Azure's Shared Key (or SAS, or bearer token) with the store's own credentials and
    /// account.
    #[cfg(feature = "azure")]
    Azure {
        credentials: object_store::azure::AzureCredentialProvider,
        account: String,
    },
    /// No signature (`AWS_SKIP_SIGNATURE`: a public bucket).
    None,
}

/// Which listing API a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// S3's ListObjectsV2 (also Google Cloud Storage's XML API).
    S3,
    /// Azure Blob Storage's List Blobs.
    Azure,
}

/// Lists one bucket: its endpoint (`https://HOST/BUCKET` or a virtual-hosted
/// `https://BUCKET.HOST`) and how to sign.
pub struct Direct {
    pub(super) endpoint: String,
    pub(super) dialect: Dialect,
    pub(super) auth: Auth,
    pub(super) http: reqwest::Client,
}

impl Direct {
    pub fn new(endpoint: String, auth: Auth) -> Result<Self, String> {
        Self::speaking(endpoint, auth, Dialect::S3)
    }

    /// A bucket (an Azure container) reached with the listing API `dialect`.
    pub fn speaking(endpoint: String, auth: Auth, dialect: Dialect) -> Result<Self, String> {
        crate::kit::tls::install();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Direct {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            dialect,
            auth,
            http,
        })
    }

    /// The page of keys starting with `prefix` (sent as it is: no key is ever normalised) that
    /// `token` asks for (the first page without one), with the store's bounded retries on
    /// passing faults (connection errors, 5xx, 429).
    pub async fn page(&self, prefix: &str, token: Option<&str>) -> Result<Page, PageError> {
        let (mut query, next) = match self.dialect {
            Dialect::S3 => (
                format!("list-type=2&prefix={}", encode(prefix)),
                "continuation-token",
            ),
            Dialect::Azure => (
                format!("restype=container&comp=list&prefix={}", encode(prefix)),
                "marker",
            ),
        };
        if let Some(t) = token {
            query.push('&');
            query.push_str(next);
            query.push('=');
            query.push_str(&encode(t));
        }
        let url = match self.dialect {
            Dialect::S3 => format!("{}/?{query}", self.endpoint),
            Dialect::Azure => format!("{}?{query}", self.endpoint),
        };
        let dialect = self.dialect;
        retried(|| async {
            let (body, _) = self
                .send(reqwest::Method::GET, &url, &[], u64::MAX, true)
                .await?;
            let body = String::from_utf8_lossy(&body);
            let body = body.trim_start_matches('\u{feff}');
            let parsed = match dialect {
                Dialect::S3 => parse_page(body),
                Dialect::Azure => parse_blob_page(body),
            };
            parsed.map_err(|e| {
                failed(
                    format!("the listing page is not readable: {e}"),
                    false,
                    None,
                )
            })
        })
        .await
    }

    /// An object's size and ETag (HEAD), addressed by its exact key.
    pub async fn head(&self, key: &str) -> Result<Head, PageError> {
        let url = self.object_url(key);
        retried(|| async {
            let (_, head) = self
                .send(reqwest::Method::HEAD, &url, &[], 0, false)
                .await?;
            Ok(head)
        })
        .await
    }

    /// An object's content (GET), addressed by its exact key, only if its ETag is still
    /// `if_match` (412 otherwise); `Ok(None)` when it holds more than `max` bytes (not read
    /// beyond that). With `first`, only its first that many bytes (a ranged GET).
    pub async fn get(
        &self,
        key: &str,
        if_match: Option<&str>,
        max: u64,
        first: Option<usize>,
    ) -> Result<(Option<bytes::Bytes>, Head), PageError> {
        let url = self.object_url(key);
        let range = first.map(|n| format!("bytes=0-{}", n.max(1) - 1));
        let mut headers: Vec<(&str, &str)> =
            if_match.map(|e| ("if-match", e)).into_iter().collect();
        if let Some(r) = &range {
            headers.push(("range", r));
        }
        retried(|| async {
            match self
                .send(reqwest::Method::GET, &url, &headers, max, false)
                .await
            {
                Ok((body, head)) => Ok((Some(body), head)),
                Err((e, _)) if e.status == Some(TOO_LARGE) => Ok((
                    None,
                    Head {
                        size: max + 1,
                        etag: None,
                    },
                )),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The URL of the object `key`: every byte but the unreserved ones percent-encoded; a key
    /// with a `.` or `..` segment has its `/` encoded too, so no URL layer resolves the
    /// segment into another key.
    fn object_url(&self, key: &str) -> String {
        let dots = key.split('/').any(|s| s == "." || s == "..");
        let path: Vec<String> = key.split('/').map(encode).collect();
        let sep = if dots { "%2F" } else { "/" };
        format!("{}/{}", self.endpoint, path.join(sep))
    }

    /// One signed request; the body (at most `max` bytes, else a failure with status
    /// [`TOO_LARGE`]) and the object's size and ETag from the headers.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        extra: &[(&str, &str)],
        max: u64,
        listing: bool,
    ) -> Attempt<(bytes::Bytes, Head)> {
        let (headers, url) = self.sign(&method, url, extra).await.map_err(|message| {
            (
                PageError {
                    failure: Failure::Refused(message.clone()),
                    message,
                    status: None,
                },
                false,
            )
        })?;
        let mut response = self
            .http
            .request(method.clone(), url.as_str())
            .headers(headers)
            .send()
            .await
            // Without the URL: a SAS token would be in it.
            .map_err(|e| {
                failed(
                    format!("the request failed: {}", error_chain(e)),
                    true,
                    None,
                )
            })?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let length = header("content-length").and_then(|l| l.parse::<u64>().ok());
        // A HEAD's length is the object's, not a body's.
        let has_body = method != reqwest::Method::HEAD;
        if has_body && status.is_success() && length.is_some_and(|l| l > max) {
            return Err(failed("too large".into(), false, Some(TOO_LARGE)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            failed(
                format!("the answer was cut off: {}", error_chain(e)),
                true,
                None,
            )
        })? {
            body.extend_from_slice(&chunk);
            if status.is_success() && body.len() as u64 > max {
                return Err(failed("too large".into(), false, Some(TOO_LARGE)));
            }
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let passing = status.is_server_error() || status.as_u16() == 429;
            let failure = if passing {
                Failure::Failed
            } else {
                let full = format!("Server returned non-2xx status code: {status}: {text}");
                match classify_text(&full, status.as_u16() == 404 && !listing, false) {
                    // A listing has no object to miss: the bucket itself was not found.
                    Failure::Missing if listing => {
                        Failure::Refused("the bucket was not found (HTTP 404)".into())
                    }
                    other => other,
                }
            };
            let message = format!("the store answered {status}: {}", short_body(&text));
            return Err((
                PageError {
                    failure,
                    message,
                    status: Some(status.as_u16()),
                },
                passing,
            ));
        }
        let size = length.unwrap_or(body.len() as u64);
        Ok((bytes::Bytes::from(body), Head { size, etag }))
    }

    /// The headers that authorise `method` on `url` with the `extra` headers.
    async fn sign(
        &self,
        method: &reqwest::Method,
        url: &str,
        extra: &[(&str, &str)],
    ) -> Result<(reqwest::header::HeaderMap, String), String> {
        let mut request = HttpRequest::new(HttpRequestBody::from(Vec::new()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = url.parse().map_err(|e| format!("{e}"))?;
        for (name, value) in extra {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| e.to_string())?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request.headers_mut().insert(name, value);
        }
        #[cfg(feature = "gcp")]
        if let Auth::Bearer(credentials) = &self.auth {
            let credential = credential(credentials).await?;
            if !credential.bearer.is_empty() {
                let value = reqwest::header::HeaderValue::from_str(&format!(
                    "Bearer {}",
                    credential.bearer
                ))
                .map_err(|_| "the bearer token is not a valid header value".to_string())?;
                request
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        if let Auth::Aws {
            credentials,
            region,
            sign_payload,
        } = &self.auth
        {
            let credential = credential(credentials).await?;
            AwsAuthorizer::new(&credential, "s3", region)
                .with_sign_payload(*sign_payload)
                .try_authorize(&mut request, None)
                .map_err(|e| format!("cannot sign the request: {e}"))?;
        }
        #[cfg(feature = "azure")]
        if let Auth::Azure {
            credentials,
            account,
        } = &self.auth
        {
            let credential = credential(credentials).await?;
            object_store::azure::AzureAuthorizer::new(&credential, account)
                .try_authorize(&mut request)
                .map_err(|e| format!("cannot sign the request: {e}"))?;
        }
        // A SAS token is added to the URL's query.
        Ok((request.headers().clone(), request.uri().to_string()))
    }
}

/// The credential a provider holds now.
async fn credential<T>(
    provider: &std::sync::Arc<dyn object_store::CredentialProvider<Credential = T>>,
) -> Result<std::sync::Arc<T>, String> {
    provider
        .get_credential()
        .await
        .map_err(|e| format!("no credentials: {e}"))
}

/// A request's error and its causes, without the URL (a SAS token would be in it).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The status a body over its limit is reported with (no store sends it for that).
const TOO_LARGE: u16 = 413;

fn failed(message: String, passing: bool, status: Option<u16>) -> (PageError, bool) {
    (
        PageError {
            failure: Failure::Failed,
            message,
            status,
        },
        passing,
    )
}

/// `attempt` with the store's bounded retries (backoff with jitter) on passing faults.
async fn retried<T, F, Fut>(attempt: F) -> Result<T, PageError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let config = retry_config();
    let mut wait = config.backoff.init_backoff;
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err((e, true)) if tries < config.max_retries => {
                tracing::debug!("storage request failed, retrying: {}", e.message);
                tries += 1;
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                tokio::time::sleep(wait.mul_f64(jitter)).await;
                wait = wait
                    .mul_f64(config.backoff.base)
                    .min(config.backoff.max_backoff);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The start of a store's error body, for a message (its XML `Code` and `Message` are there).
fn short_body(body: &str) -> String {
    crate::messages::cut(body.trim())
}

/// Percent-encode a query value: everything but the unreserved characters, so a `+`, a space,
/// a `%` or a `/` reach the store as exactly themselves.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One element of a listing page as [`walk_page`] reads it, under its `parents` (the root
/// first): as it opens (`opening`: `<name ...>`, or `<name/>`, closed at once with no text),
/// then as it closes, with its text (references resolved, CDATA included).
struct Step<'a> {
    parents: &'a [Vec<u8>],
    name: &'a [u8],
    opening: Option<&'a quick_xml::events::BytesStart<'a>>,
    text: String,
}

/// Walk a listing page whose root element is `root`, telling `step` each element as it opens
/// and closes: the structure is checked the same way for every store.
fn walk_page(
    xml: &str,
    root: &str,
    mut step: impl FnMut(Step<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut root_seen = false;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let (start, empty) = match &event {
            Xml::Start(start) => (start, false),
            Xml::Empty(start) => (start, true),
            Xml::Text(_) | Xml::CData(_) | Xml::GeneralRef(_) => {
                push_text(&mut text, &event)?;
                continue;
            }
            Xml::End(_) => {
                let name = path.pop().unwrap_or_default();
                let text = std::mem::take(&mut text);
                step(Step {
                    parents: &path,
                    name: &name,
                    opening: None,
                    text,
                })?;
                continue;
            }
            Xml::Eof => break,
            _ => continue,
        };
        let name = start.local_name().as_ref().to_vec();
        if path.is_empty() {
            if name != root.as_bytes() {
                let found = String::from_utf8_lossy(&name);
                return Err(format!("expected {root}, found <{found}>"));
            }
            root_seen = true;
        }
        // `<name/>` opens and closes at once.
        for opening in [Some(start), None]
            .into_iter()
            .take(if empty { 2 } else { 1 })
        {
            step(Step {
                parents: &path,
                name: &name,
                opening,
                text: String::new(),
            })?;
        }
        if !empty {
            path.push(name);
            text.clear();
        }
    }
    if !path.is_empty() {
        return Err("the listing page is cut short (an element is not closed)".into());
    }
    if !root_seen {
        return Err(format!("the answer holds no {root}"));
    }
    Ok(())
}

/// Read a `ListBucketResult` page: each `Contents` entry's `Key` (exactly, white space and
/// all, entities resolved), `Size` and `ETag`, and the `NextContinuationToken` when
/// `IsTruncated` says more follows.
pub fn parse_page(xml: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let (mut truncated, mut token) = (false, None);
    let mut entry: Option<(Option<String>, Option<u64>, Option<String>)> = None;
    walk_page(xml, "ListBucketResult", |step| {
        let (parents, name, opening, value) = (step.parents, step.name, step.opening, step.text);
        if opening.is_some() {
            if parents.len() == 1 && name == b"Contents" {
                entry = Some((None, None, None));
            }
            return Ok(());
        }
        match (parents.len(), name) {
            (1, b"IsTruncated") => truncated = value.trim() == "true",
            (1, b"NextContinuationToken") => token = Some(value),
            (1, b"Contents") => {
                let (key, size, etag) = entry.take().unwrap_or_default();
                let key = key.ok_or("a listed object has no Key")?;
                let size = size.ok_or_else(|| {
                    format!("the object {} has no Size", crate::messages::cut(&key))
                })?;
                page.objects.push(Listed { key, size, etag });
            }
            (2, field) if parents[1] == b"Contents" => {
                let Some(entry) = entry.as_mut() else {
                    return Ok(());
                };
                match field {
                    b"Key" => entry.0 = Some(value),
                    b"Size" => entry.1 = Some(number(&value, "Size")?),
                    b"ETag" => entry.2 = Some(value).filter(|v| !v.is_empty()),
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if truncated {
        match token {
            Some(t) if !t.is_empty() => page.next = Some(t),
            _ => return Err("the page says more follows but gives no continuation token".into()),
        }
    }
    Ok(page)
}

/// A listed size.
fn number(value: &str, field: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("a listed {field} is not a number: {value:?}"))
}

/// Read an Azure `EnumerationResults` page (List Blobs): each `Blob`'s `Name` (exactly; a name
/// the store sends with `Encoded="true"` is percent-decoded), its `Content-Length` and `Etag`,
/// and the `NextMarker` when more follows.
pub fn parse_blob_page(xml: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let mut entry: Option<BlobEntry> = None;
    let mut encoded = false;
    let in_blob = |path: &[Vec<u8>]| path.len() >= 3 && path[1] == b"Blobs" && path[2] == b"Blob";
    walk_page(xml, "EnumerationResults", |step| {
        let (parents, name, opening, value) = (step.parents, step.name, step.opening, step.text);
        if let Some(start) = opening {
            if parents.len() == 2 && parents[1] == b"Blobs" && name == b"Blob" {
                entry = Some(BlobEntry::default());
            }
            if parents.len() == 3 && in_blob(parents) && name == b"Name" {
                encoded = start
                    .try_get_attribute("Encoded")
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.value.as_ref() == b"true");
            }
            return Ok(());
        }
        match (parents.len(), name) {
            (1, b"NextMarker") => page.next = Some(value).filter(|m| !m.is_empty()),
            (2, b"Blob") if parents[1] == b"Blobs" => {
                let BlobEntry {
                    name: key,
                    encoded,
                    size,
                    etag,
                } = entry.take().unwrap_or_default();
                let key = key.ok_or("a listed blob has no Name")?;
                let key = if encoded { percent_decode(&key)? } else { key };
                let size = size.ok_or_else(|| {
                    format!(
                        "the blob {} has no Content-Length",
                        crate::messages::cut(&key)
                    )
                })?;
                page.objects.push(Listed { key, size, etag });
            }
            (3, b"Name") if in_blob(parents) => {
                if let Some(entry) = entry.as_mut() {
                    entry.name = Some(value);
                    entry.encoded = encoded;
                }
            }
            (4, field) if in_blob(parents) && parents[3] == b"Properties" => {
                let Some(entry) = entry.as_mut() else {
                    return Ok(());
                };
                match field {
                    b"Content-Length" => entry.size = Some(number(&value, "Content-Length")?),
                    b"Etag" => entry.etag = Some(value).filter(|v| !v.is_empty()),
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(page)
}

/// One `Blob` of a List Blobs page as it is read.
#[derive(Default)]
struct BlobEntry {
    name: Option<String>,
    /// The name came percent-encoded (`Encoded="true"`).
    encoded: bool,
    size: Option<u64>,
    etag: Option<String>,
}

/// Undo percent-encoding (an Azure name sent `Encoded="true"`); the bytes must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a listed name is not well encoded: {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("a listed name is not UTF-8: {text:?}"))
}

/// Add an element's text, a CDATA section or a character or entity reference to `text`: the
/// listing's text decoded the same way for every store.
fn push_text(text: &mut String, ev: &Xml<'_>) -> Result<(), String> {
    match ev {
        Xml::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
        Xml::CData(c) => text.push_str(&c.decode().map_err(|e| e.to_string())?),
        Xml::GeneralRef(r) => {
            if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                text.push(c);
            } else {
                let name = r.decode().map_err(|e| e.to_string())?;
                let value = quick_xml::escape::resolve_predefined_entity(&name)
                    .ok_or_else(|| format!("unknown entity &{name};"))?;
                text.push_str(value);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
