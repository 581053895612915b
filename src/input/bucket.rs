//! Object storage as a source: `s3://` URIs (and `gs://`, `az://` with the `gcp` and `azure`
//! cargo features) listed as a stream of items (one listing page at a time, never collected),
//! objects read with the store's own bounded retries, and one client per bucket and endpoint.
//! Listing metadata decides what is never downloaded (too large, empty, not an image by name).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};

use super::preflight::{self, Prepared, Refusal, StorageFault};
use super::version::Version;
use super::{Event, IMAGE_EXTENSIONS, Item, escape_bytes};

/// How object stores are reached (from the scan options; the rest comes from the environment
/// the way cloud jobs provide it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StorageOptions {
    /// An S3-compatible endpoint (MinIO, Ceph, a test server). Plain http only on loopback.
    pub endpoint: Option<String>,
    /// The S3 region (else `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1).
    pub region: Option<String>,
}

/// Why object storage cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} is not a bucket URI: write it as {1}://BUCKET/PREFIX/")]
    BadUri(String, &'static str),
    #[error(
        "{0}:// sources need this program built with the `{1}` feature (cargo build --features {1})"
    )]
    NotBuilt(&'static str, &'static str),
    #[error(
        "the storage endpoint {0} is plain http off this machine: use https (http only for \
         loopback test servers)"
    )]
    PlainHttp(String),
    #[error("cannot set up the client for {uri}: {message}")]
    Setup { uri: String, message: String },
    /// The store refused the credentials or the bucket: the run stops (exit 7).
    #[error("storage refused {uri}: {reason}")]
    Refused { uri: String, reason: String },
    /// Anything else (network, 5xx after the retries).
    #[error("cannot list {uri}: {message}")]
    Failed { uri: String, message: String },
}

impl StorageError {
    /// The store said no to the credentials or the bucket (not a passing fault).
    pub fn is_refusal(&self) -> bool {
        matches!(self, StorageError::Refused { .. })
    }
}

/// The object stores this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    S3,
    Gcs,
    Azure,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }
}

/// A parsed `SCHEME://BUCKET/KEY` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    pub bucket: String,
    /// The key or prefix within the bucket, without a leading '/'.
    pub key: String,
}

impl Uri {
    /// `Some` for text that starts with a known scheme (then it may still be malformed).
    pub fn parse(text: &str) -> Option<Result<Uri, StorageError>> {
        let (scheme, rest) = [
            ("s3://", Scheme::S3),
            ("gs://", Scheme::Gcs),
            ("az://", Scheme::Azure),
        ]
        .into_iter()
        .find_map(|(p, s)| {
            text.get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| (s, &text[p.len()..]))
        })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let ok = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        Some(if ok {
            Ok(Uri {
                scheme,
                bucket: bucket.to_string(),
                key: key.trim_start_matches('/').to_string(),
            })
        } else {
            Err(StorageError::BadUri(super::shorten(text), scheme.prefix()))
        })
    }

    /// The bucket's URI, for messages.
    pub fn bucket_uri(&self) -> String {
        format!("{}://{}/", self.scheme.prefix(), self.bucket)
    }

    fn object_uri(&self, key: &str) -> String {
        format!("{}://{}/{}", self.scheme.prefix(), self.bucket, key)
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.object_uri(&self.key))
    }
}

/// Whether a path as given is a bucket URI (and not a local path).
pub fn is_uri(path: &Path) -> bool {
    path.to_str().is_some_and(|s| Uri::parse(s).is_some())
}

/// The URI in a path, when it is one and well formed.
pub fn uri_of(path: &Path) -> Option<Uri> {
    Uri::parse(path.to_str()?)?.ok()
}

/// Storage reads retry on their own bounded policy (never the API's, never its pacer).
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    }
}

/// Whether an endpoint's host is this machine (an IP literal in 127.0.0.0/8, ::1, or exactly
/// `localhost`).
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

type Stores = HashMap<(Scheme, String, StorageOptions), Arc<dyn ObjectStore>>;

/// One client per bucket and endpoint, for the whole process.
static STORES: Mutex<Option<Stores>> = Mutex::new(None);

/// The client for `uri`'s bucket (made once, then shared).
pub fn store(uri: &Uri, opts: &StorageOptions) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let id = (uri.scheme, uri.bucket.clone(), opts.clone());
    let mut stores = STORES.lock().unwrap_or_else(|p| p.into_inner());
    let stores = stores.get_or_insert_with(HashMap::new);
    if let Some(s) = stores.get(&id) {
        return Ok(s.clone());
    }
    let made = build(uri, opts)?;
    stores.insert(id, made.clone());
    Ok(made)
}

fn build(uri: &Uri, opts: &StorageOptions) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let setup = |e: object_store::Error| StorageError::Setup {
        uri: uri.bucket_uri(),
        message: e.to_string(),
    };
    match uri.scheme {
        Scheme::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&uri.bucket)
                .with_retry(retry_config());
            if let Some(e) = &opts.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &opts.region {
                b = b.with_region(r);
            }
            let is_http = |e: &str| e.len() >= 7 && e[..7].eq_ignore_ascii_case("http://");
            let mut http = false;
            for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
                if let Some(e) = b.get_config_value(&key).filter(|e| is_http(e)) {
                    if !is_loopback_url(&e) {
                        return Err(StorageError::PlainHttp(super::shorten(&e)));
                    }
                    http = true;
                }
            }
            // Only a loopback endpoint may be plain http, whatever AWS_ALLOW_HTTP says.
            b = b.with_allow_http(http);
            Ok(Arc::new(b.build().map_err(setup)?))
        }
        #[cfg(feature = "gcp")]
        Scheme::Gcs => {
            let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&uri.bucket)
                .with_retry(retry_config());
            Ok(Arc::new(b.build().map_err(setup)?))
        }
        #[cfg(not(feature = "gcp"))]
        Scheme::Gcs => {
            let _ = setup;
            Err(StorageError::NotBuilt("gs", "gcp"))
        }
        #[cfg(feature = "azure")]
        Scheme::Azure => {
            let b = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(&uri.bucket)
                .with_retry(retry_config());
            Ok(Arc::new(b.build().map_err(setup)?))
        }
        #[cfg(not(feature = "azure"))]
        Scheme::Azure => {
            let _ = setup;
            Err(StorageError::NotBuilt("az", "azure"))
        }
    }
}

/// What a store's error means for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No such object (a manifest row pointing nowhere): the row's own error.
    Missing,
    /// The credentials or the bucket were refused: the run stops.
    Refused(String),
    /// Anything else, after the retries: the item is to be rerun.
    Failed,
}

/// Classify a store error from its status and S3 error code (the crate keeps the status of a
/// listing error only in its text).
pub fn classify(error: &object_store::Error) -> Failure {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    classify_text(
        &text,
        matches!(error, object_store::Error::NotFound { .. }),
        matches!(
            error,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ),
    )
}

fn classify_text(text: &str, not_found: bool, denied: bool) -> Failure {
    const REFUSED_CODES: [(&str, &str); 8] = [
        ("NoSuchBucket", "the bucket does not exist"),
        ("InvalidAccessKeyId", "the access key is not known"),
        ("SignatureDoesNotMatch", "the secret key is wrong"),
        ("ExpiredToken", "the credentials have expired"),
        ("InvalidToken", "the session token is not valid"),
        ("AccessDenied", "access denied"),
        ("AllAccessDisabled", "access to the bucket is disabled"),
        (
            "AuthorizationHeaderMalformed",
            "the region or credentials are malformed",
        ),
    ];
    if let Some((_, why)) = REFUSED_CODES.iter().find(|(code, _)| text.contains(code)) {
        return Failure::Refused(why.to_string());
    }
    let status = |code: &str| text.contains(&format!("status code: {code}"));
    if denied || status("401") || status("403") {
        return Failure::Refused("the credentials were refused (HTTP 401/403)".into());
    }
    if not_found {
        return Failure::Missing;
    }
    if status("404") {
        return Failure::Refused("the bucket was not found (HTTP 404)".into());
    }
    Failure::Failed
}

/// A listing's first page, fetched before anything else happens: a store that refuses the
/// credentials or the bucket stops the run before any API call.
pub async fn check_listing(uri: &Uri, opts: &StorageOptions) -> Result<(), StorageError> {
    let store = store(uri, opts)?;
    let prefix = prefix_of(uri);
    let mut list = store.list(prefix.as_ref());
    match list.next().await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(listing_error(uri, &e)),
    }
}

fn listing_error(uri: &Uri, e: &object_store::Error) -> StorageError {
    match classify(e) {
        Failure::Refused(reason) => StorageError::Refused {
            uri: uri.bucket_uri(),
            reason,
        },
        Failure::Missing | Failure::Failed => StorageError::Failed {
            uri: uri.to_string(),
            message: e.to_string(),
        },
    }
}

fn prefix_of(uri: &Uri) -> Option<ObjectPath> {
    let p = uri.key.trim_end_matches('/');
    (!p.is_empty()).then(|| ObjectPath::from(p))
}

/// A bucket prefix as a stream of events, read one listing page at a time on the caller's
/// thread (blocking on the runtime it was opened in).
pub struct Listing {
    uri: Uri,
    source: String,
    strip: usize,
    hidden: bool,
    runtime: Runtime,
    stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    done: bool,
}

/// Where the listing's requests run: the caller's runtime, or one of its own when it has none.
enum Runtime {
    Handle(tokio::runtime::Handle),
    Own(tokio::runtime::Runtime),
}

impl Runtime {
    fn current() -> std::io::Result<Self> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => Ok(Runtime::Handle(h)),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(Runtime::Own),
        }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Runtime::Handle(h) => h.block_on(f),
            Runtime::Own(rt) => rt.block_on(f),
        }
    }
}

impl Listing {
    pub fn open(
        uri: Uri,
        source: &str,
        hidden: bool,
        opts: &StorageOptions,
    ) -> Result<Self, StorageError> {
        let store = store(&uri, opts)?;
        let prefix = prefix_of(&uri);
        let strip = prefix.as_ref().map_or(0, |p| p.as_ref().len() + 1);
        let runtime = Runtime::current().map_err(|e| StorageError::Setup {
            uri: uri.bucket_uri(),
            message: e.to_string(),
        })?;
        let stream = store.list(prefix.as_ref());
        Ok(Listing {
            uri,
            source: source.to_string(),
            strip,
            hidden,
            runtime,
            stream,
            done: false,
        })
    }

    fn event(&self, meta: ObjectMeta) -> Event {
        let full = meta.location.as_ref();
        let key = full.get(self.strip..).unwrap_or(full).to_string();
        let shown = self.uri.object_uri(full);
        let name = key.rsplit('/').next().unwrap_or(&key);
        if !self.hidden && key.split('/').any(|part| part.starts_with('.')) {
            return Event::Ignored {
                path: shown,
                reason: "hidden object (--hidden includes it)".into(),
            };
        }
        if let Some(reason) = not_an_image_by_name(name) {
            return Event::Ignored {
                path: shown,
                reason,
            };
        }
        let problem = if meta.size > preflight::MAX_BYTES {
            Some(format!(
                "{} ({} bytes) is over Didit's 5 MB limit (not downloaded)",
                preflight::megabytes(meta.size),
                meta.size
            ))
        } else if meta.size == 0 {
            Some("empty object (0 bytes)".to_string())
        } else {
            None
        };
        Event::Item(Item {
            key: escape_bytes(key.as_bytes()),
            path: shown.clone().into(),
            display_path: shown,
            source: self.source.clone(),
            row: None,
            vendor_data: None,
            metadata: None,
            columns: Default::default(),
            problem,
            seq: 0,
            version: Version::of_object(meta.size, meta.e_tag.as_deref()),
            regular: false,
        })
    }
}

/// `Some(reason)` when an object's name says it is not an image: an extension that is not an
/// image's. Names without an extension are downloaded and sniffed.
fn not_an_image_by_name(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 5 {
        return None;
    }
    if IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(ext)) {
        return None;
    }
    Some(format!(
        "not an image by its name (.{}); never downloaded",
        super::shorten(ext)
    ))
}

impl Iterator for Listing {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        match self.runtime.block_on(self.stream.next()) {
            Some(Ok(meta)) => Some(self.event(meta)),
            Some(Err(e)) => {
                self.done = true;
                Some(Event::Warning(format!(
                    "the listing of {} stopped midway; objects after this point were not \
                     listed (rerun to continue): {}",
                    self.uri,
                    listing_error(&self.uri, &e)
                )))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// An object's version without downloading it (one HEAD request), for manifest rows.
pub async fn head_version(uri: &Uri, opts: &StorageOptions) -> Option<Version> {
    let store = store(uri, opts).ok()?;
    let meta = store.head(&ObjectPath::from(uri.key.as_str())).await.ok()?;
    Version::of_object(meta.size, meta.e_tag.as_deref())
}

/// Download and check one object (after a HEAD when its size is not known from a listing): at
/// most 5 MB is ever downloaded; the content check is the files' one. A listed object is read
/// only if it still has the listed ETag.
pub async fn read(
    uri: &Uri,
    known: Option<&Version>,
    opts: &StorageOptions,
) -> Result<Prepared, Refusal> {
    let shown = uri.to_string();
    let failed = |e: &object_store::Error, what: &str| {
        let (reason, fault) = match classify(e) {
            Failure::Missing => (format!("object not found: {shown}"), None),
            Failure::Refused(why) => (
                format!("storage refused {shown}: {why}"),
                Some(StorageFault::Refused),
            ),
            Failure::Failed => (
                format!("cannot {what} {shown} (storage retries exhausted): {e}"),
                Some(StorageFault::Failed),
            ),
        };
        Refusal {
            storage: fault,
            ..Refusal::unread(reason)
        }
    };
    let store = store(uri, opts).map_err(|e| Refusal {
        storage: Some(StorageFault::Failed),
        ..Refusal::unread(e.to_string())
    })?;
    let location = ObjectPath::from(uri.key.as_str());
    let version = match known {
        Some(v) => v.clone(),
        None => {
            let meta = store
                .head(&location)
                .await
                .map_err(|e| failed(&e, "look up"))?;
            let version = Version::of_object(meta.size, meta.e_tag.as_deref());
            if meta.size > preflight::MAX_BYTES || meta.size == 0 {
                let reason = if meta.size == 0 {
                    "empty object (0 bytes)".to_string()
                } else {
                    format!(
                        "{} ({} bytes) is over Didit's 5 MB limit (not downloaded)",
                        preflight::megabytes(meta.size),
                        meta.size
                    )
                };
                return Err(Refusal {
                    size: Some(meta.size),
                    version,
                    ..Refusal::unread(reason)
                });
            }
            match version {
                Some(v) => v,
                // No ETag: read without a precondition; the content hash decides.
                None => Version::Object(Box::new(super::version::ObjectVersion {
                    size: meta.size,
                    etag: String::new(),
                })),
            }
        }
    };
    let options = object_store::GetOptions {
        if_match: version.etag().filter(|e| !e.is_empty()).map(str::to_string),
        ..Default::default()
    };
    let got = store.get_opts(&location, options).await.map_err(|e| {
        if matches!(e, object_store::Error::Precondition { .. }) {
            Refusal {
                storage: Some(StorageFault::Failed),
                ..Refusal::unread(format!(
                    "{shown} changed after it was listed (its ETag differs); rerun to screen \
                     the new content"
                ))
            }
        } else {
            failed(&e, "download")
        }
    })?;
    if got.meta.size > preflight::MAX_BYTES {
        return Err(Refusal::unread(format!(
            "{} ({} bytes) is over Didit's 5 MB limit (not downloaded)",
            preflight::megabytes(got.meta.size),
            got.meta.size
        )));
    }
    let version = Version::of_object(got.meta.size, got.meta.e_tag.as_deref()).or(Some(version));
    let bytes: Bytes = got.bytes().await.map_err(|e| failed(&e, "download"))?;
    preflight::check_bytes(bytes, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_told_from_paths() {
        let u = Uri::parse("s3://selfies/2026/q3/").unwrap().unwrap();
        assert_eq!(
            u,
            Uri {
                scheme: Scheme::S3,
                bucket: "selfies".into(),
                key: "2026/q3/".into()
            }
        );
        assert_eq!(Uri::parse("S3://b").unwrap().unwrap().key, "");
        assert_eq!(Uri::parse("gs://b/x").unwrap().unwrap().scheme, Scheme::Gcs);
        assert_eq!(
            Uri::parse("az://c/x").unwrap().unwrap().scheme,
            Scheme::Azure
        );
        assert!(Uri::parse("selfies/a.jpg").is_none());
        assert!(Uri::parse("/tmp/s3://x").is_none());
        assert!(!is_uri(Path::new("./s3:/b")));
        for bad in ["s3://", "s3:///key", "s3://bad bucket/x"] {
            let e = Uri::parse(bad).unwrap().unwrap_err();
            assert!(
                e.to_string().ends_with("write it as s3://BUCKET/PREFIX/"),
                "{e}"
            );
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://localhost:1/x",
            "http://[::1]:80",
            "http://127.8.9.10",
        ] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:9000",
            "http://minio.internal",
            "http://127.0.0.1.evil.example",
            "http://localhost@evil.example",
            "nonsense",
        ] {
            assert!(!is_loopback_url(bad), "{bad}");
        }
        let uri = Uri::parse("s3://b/").unwrap().unwrap();
        let opts = StorageOptions {
            endpoint: Some("http://minio.internal:9000".into()),
            region: Some("us-east-1".into()),
        };
        let e = build(&uri, &opts).unwrap_err();
        assert!(
            e.to_string()
                .contains("http://minio.internal:9000 is plain http off this machine"),
            "{e}"
        );
    }

    #[test]
    fn store_errors_are_told_apart() {
        let status = |code: &str, body: &str| {
            format!(
                "Error performing list request: Server returned non-2xx status code: {code}: {body}"
            )
        };
        assert_eq!(
            classify_text(
                &status("404 Not Found", "<Code>NoSuchBucket</Code>"),
                false,
                false
            ),
            Failure::Refused("the bucket does not exist".into())
        );
        assert_eq!(
            classify_text(
                &status("403 Forbidden", "<Code>InvalidAccessKeyId</Code>"),
                false,
                false
            ),
            Failure::Refused("the access key is not known".into())
        );
        assert_eq!(
            classify_text(&status("403 Forbidden", ""), false, false),
            Failure::Refused("the credentials were refused (HTTP 401/403)".into())
        );
        assert_eq!(classify_text("not found", true, false), Failure::Missing);
        assert_eq!(
            classify_text(&status("503 Service Unavailable", "SlowDown"), false, false),
            Failure::Failed
        );
        assert_eq!(
            classify_text("connection refused", false, false),
            Failure::Failed
        );
    }

    #[test]
    fn names_that_are_clearly_not_images_are_never_downloaded() {
        assert!(not_an_image_by_name("a.jpg").is_none());
        assert!(not_an_image_by_name("A.JPEG").is_none());
        assert!(not_an_image_by_name("0f3c2a9e").is_none(), "no extension");
        assert!(not_an_image_by_name(".jpg").is_none());
        assert!(not_an_image_by_name("v1.2.selfie-capture").is_none());
        assert_eq!(
            not_an_image_by_name("notes.txt").unwrap(),
            "not an image by its name (.txt); never downloaded"
        );
        assert!(not_an_image_by_name("clip.mp4").is_some());
    }
}
