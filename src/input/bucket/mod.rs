//! Object storage as a source: `s3://`, `gs://` and `az://` URIs (the last two with the `gcp`
//! and `azure` cargo features, both on by default) listed as a stream of items (one listing page at a time, never collected),
//! objects read with the store's own bounded retries, and one client per bucket and endpoint.
//! Listing metadata decides what is never downloaded (too large, empty, not an image by name).
//! Keys are used exactly as stored: never normalised, never encoded twice; a key the storage
//! client cannot address becomes a row saying so, and the listing goes on past it.

pub mod direct;

use std::collections::{HashMap, VecDeque};
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
use super::{Event, IMAGE_EXTENSIONS, Item, SourceOptions, escape_bytes};

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
    #[error(
        "the storage endpoint {0} has a query or a fragment ('?' or '#'): give the endpoint's \
         scheme, host and port only"
    )]
    EndpointQuery(String),
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
    /// Whether this build can reach this store.
    pub fn built(self) -> bool {
        match self {
            Scheme::S3 => true,
            Scheme::Gcs => cfg!(feature = "gcp"),
            Scheme::Azure => cfg!(feature = "azure"),
        }
    }

    /// Why this build cannot reach this store, if it cannot.
    pub fn not_built(self) -> Option<StorageError> {
        match self {
            _ if self.built() => None,
            Scheme::Gcs => Some(StorageError::NotBuilt("gs", "gcp")),
            _ => Some(StorageError::NotBuilt("az", "azure")),
        }
    }

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
            // The key is kept exactly as written: `s3://b//x` names the key `/x`, not `x`.
            Ok(Uri {
                scheme,
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
        } else {
            Err(StorageError::BadUri(
                crate::messages::cut(text),
                scheme.prefix(),
            ))
        })
    }

    /// The bucket's URI, for messages.
    pub fn bucket_uri(&self) -> String {
        format!("{}://{}/", self.scheme.prefix(), self.bucket)
    }

    /// The listing prefix this URI names: its key as written, as a folder (a `/` added when
    /// it has none; empty for the whole bucket).
    pub fn list_prefix(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
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

/// A bucket's clients: the storage client, and where this program lists the bucket itself
/// (keys exactly as stored), the listing client.
#[derive(Clone)]
struct Client {
    store: Arc<dyn ObjectStore>,
    direct: Option<Arc<direct::Direct>>,
}

type ClientId = (Scheme, String, StorageOptions);

/// One client per bucket and endpoint, for the whole process.
static CLIENTS: Mutex<Option<HashMap<ClientId, Client>>> = Mutex::new(None);

/// The clients for `uri`'s bucket (made once, then shared).
fn client(uri: &Uri, opts: &StorageOptions) -> Result<Client, StorageError> {
    let id = (uri.scheme, uri.bucket.clone(), opts.clone());
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    let clients = clients.get_or_insert_with(HashMap::new);
    if let Some(c) = clients.get(&id) {
        return Ok(c.clone());
    }
    let made = build(uri, opts)?;
    clients.insert(id, made.clone());
    Ok(made)
}

/// The storage client for `uri`'s bucket (made once, then shared).
pub fn store(uri: &Uri, opts: &StorageOptions) -> Result<Arc<dyn ObjectStore>, StorageError> {
    client(uri, opts).map(|c| c.store)
}

/// Whether an endpoint is plain http, which only a loopback endpoint may be; an endpoint URL
/// with a query or a fragment would lose the bucket from the request's path.
fn plain_http(endpoint: &str) -> Result<bool, StorageError> {
    if endpoint.contains(['?', '#']) {
        return Err(StorageError::EndpointQuery(crate::messages::cut(endpoint)));
    }
    let http = endpoint.len() >= 7 && endpoint[..7].eq_ignore_ascii_case("http://");
    if http && !crate::kit::loopback::text_is_loopback(endpoint) {
        return Err(StorageError::PlainHttp(crate::messages::cut(endpoint)));
    }
    Ok(http)
}

/// A store that cannot be set up, with why.
fn setup(uri: &Uri) -> impl Fn(String) -> StorageError + '_ {
    |message| StorageError::Setup {
        uri: uri.bucket_uri(),
        message,
    }
}

fn build(uri: &Uri, opts: &StorageOptions) -> Result<Client, StorageError> {
    crate::kit::tls::install();
    match uri.scheme {
        Scheme::S3 => build_s3(uri, opts),
        #[cfg(feature = "gcp")]
        Scheme::Gcs => build_gcs(uri),
        #[cfg(not(feature = "gcp"))]
        Scheme::Gcs => Err(StorageError::NotBuilt("gs", "gcp")),
        #[cfg(feature = "azure")]
        Scheme::Azure => build_azure(uri),
        #[cfg(not(feature = "azure"))]
        Scheme::Azure => Err(StorageError::NotBuilt("az", "azure")),
    }
}

fn build_s3(uri: &Uri, opts: &StorageOptions) -> Result<Client, StorageError> {
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
    let mut http = false;
    for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
        if let Some(e) = b.get_config_value(&key) {
            http |= plain_http(&e)?;
        }
    }
    // Only a loopback endpoint may be plain http, whatever AWS_ALLOW_HTTP says.
    b = b.with_allow_http(http);
    let listing = s3_listing(&b, &uri.bucket);
    let s3 = b.build().map_err(|e| setup(uri)(e.to_string()))?;
    let direct = match listing {
        Some(l) => {
            let auth = if l.skip_signature {
                direct::Auth::None
            } else {
                direct::Auth::Aws {
                    credentials: s3.credentials().clone(),
                    region: l.region,
                    sign_payload: l.sign_payload,
                }
            };
            Some(Arc::new(
                direct::Direct::new(l.endpoint, auth).map_err(setup(uri))?,
            ))
        }
        None => None,
    };
    Ok(Client {
        store: Arc::new(s3),
        direct,
    })
}

#[cfg(feature = "gcp")]
fn build_gcs(uri: &Uri) -> Result<Client, StorageError> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&uri.bucket)
        .with_retry(retry_config());
    let base = b
        .get_config_value(&GoogleConfigKey::BaseUrl)
        .unwrap_or_else(|| "https://storage.googleapis.com".to_string());
    let http = plain_http(&base)?;
    // Only a loopback base URL may be plain http (the client would allow it anywhere).
    b = b.with_client_options(object_store::ClientOptions::new().with_allow_http(http));
    let gcs = b.build().map_err(|e| setup(uri)(e.to_string()))?;
    // The XML API, as the storage client uses it: keys exactly as stored.
    let direct = direct::Direct::new(
        format!("{}/{}", base.trim_end_matches('/'), uri.bucket),
        direct::Auth::Bearer(gcs.credentials().clone()),
    )
    .map_err(setup(uri))?;
    Ok(Client {
        store: Arc::new(gcs),
        direct: Some(Arc::new(direct)),
    })
}

#[cfg(feature = "azure")]
fn build_azure(uri: &Uri) -> Result<Client, StorageError> {
    use object_store::azure::{AzureConfigKey as K, MicrosoftAzureBuilder};
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(&uri.bucket)
        .with_retry(retry_config());
    let service = azure_service(&b);
    let http = plain_http(&service.url)?;
    if service.emulator {
        // The client takes the emulator's URL from the environment itself.
        b = b.with_use_emulator(true);
    } else {
        // Only a loopback endpoint may be plain http, whatever the environment says.
        b = b.with_client_options(object_store::ClientOptions::new().with_allow_http(http));
    }
    let skip_signature = b
        .get_config_value(&K::SkipSignature)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let azure = b.build().map_err(|e| setup(uri)(e.to_string()))?;
    let auth = if skip_signature {
        direct::Auth::None
    } else {
        direct::Auth::Azure {
            credentials: azure.credentials().clone(),
            account: service.account.clone(),
        }
    };
    // List Blobs and the blobs themselves, as the storage client reaches them: keys exactly as
    // stored.
    let endpoint = format!(
        "{}/{}",
        service.container_base().trim_end_matches('/'),
        uri.bucket
    );
    let direct =
        direct::Direct::speaking(endpoint, auth, direct::Dialect::Azure).map_err(setup(uri))?;
    Ok(Client {
        store: Arc::new(azure),
        direct: Some(Arc::new(direct)),
    })
}

/// Where an Azure account's blob service is, as the storage client finds it.
#[cfg(feature = "azure")]
#[derive(Debug, PartialEq, Eq)]
struct AzureService {
    /// The service's URL (the emulator's, or the account's endpoint).
    url: String,
    account: String,
    /// The emulator (`AZURE_STORAGE_USE_EMULATOR`): the account is the URL's first segment.
    emulator: bool,
}

#[cfg(feature = "azure")]
impl AzureService {
    /// The URL containers are under.
    fn container_base(&self) -> String {
        let url = self.url.trim_end_matches('/');
        if self.emulator {
            format!("{url}/{}", self.account)
        } else {
            url.to_string()
        }
    }
}

/// [`AzureService`] from the storage client's settings (the emulator's URL from
/// `AZURITE_BLOB_STORAGE_URL`, as the client reads it).
#[cfg(feature = "azure")]
fn azure_service(b: &object_store::azure::MicrosoftAzureBuilder) -> AzureService {
    use object_store::azure::AzureConfigKey as K;
    let flag = |k: K| {
        b.get_config_value(&k)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
    };
    let account = b.get_config_value(&K::AccountName);
    if flag(K::UseEmulator) {
        return AzureService {
            url: std::env::var("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:10000".to_string()),
            account: account.unwrap_or_else(|| "devstoreaccount1".to_string()),
            emulator: true,
        };
    }
    let account = account.unwrap_or_default();
    let url = match b.get_config_value(&K::Endpoint) {
        Some(e) => e,
        None if flag(K::UseFabricEndpoint) => {
            format!("https://{account}.blob.fabric.microsoft.com")
        }
        None => format!("https://{account}.blob.core.windows.net"),
    };
    AzureService {
        url,
        account,
        emulator: false,
    }
}

/// How this program reaches an S3 bucket itself (its listing, and keys the storage client
/// cannot address).
#[derive(Debug, PartialEq, Eq)]
struct S3Direct {
    /// The bucket's endpoint, as the storage client addresses it.
    endpoint: String,
    region: String,
    sign_payload: bool,
    /// `AWS_SKIP_SIGNATURE`: requests are not signed (a public bucket).
    skip_signature: bool,
}

/// [`S3Direct`] from the storage client's settings; `None` for S3 Express buckets, which the
/// storage client lists itself.
fn s3_listing(b: &object_store::aws::AmazonS3Builder, bucket: &str) -> Option<S3Direct> {
    use object_store::aws::AmazonS3ConfigKey as K;
    let flag = |k: K| {
        b.get_config_value(&k)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    if flag(K::S3Express) {
        return None;
    }
    let region = b
        .get_config_value(&K::Region)
        .unwrap_or_else(|| "us-east-1".to_string());
    let endpoint = b
        .get_config_value(&K::S3Endpoint)
        .or_else(|| b.get_config_value(&K::Endpoint));
    let virtual_hosted = flag(K::VirtualHostedStyleRequest);
    // As the storage client builds it, so both reach the same place.
    let bucket_endpoint = match (endpoint, virtual_hosted) {
        (Some(e), true) => e,
        (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    Some(S3Direct {
        endpoint: bucket_endpoint,
        region,
        sign_payload: !flag(K::UnsignedPayload),
        skip_signature: flag(K::SkipSignature),
    })
}

/// The storage client's path for `key`, addressing exactly that key; `Err` with the reason
/// when it cannot (an empty segment, a `.` or `..` segment, a control character): the client
/// would address another key, or none.
pub fn object_path(key: &str) -> Result<ObjectPath, String> {
    if key.is_empty() {
        return Err(
            "the URI names a bucket, not an object: write it as SCHEME://BUCKET/KEY".into(),
        );
    }
    match ObjectPath::parse(key) {
        Ok(p) if p.as_ref() == key => Ok(p),
        _ => Err(unaddressable(key)),
    }
}

fn unaddressable(key: &str) -> String {
    let why = if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        "an empty segment ('//', or a '/' at its start or end)"
    } else if key.split('/').any(|s| s == "." || s == "..") {
        "a '.' or '..' segment"
    } else if key.chars().any(|c| c.is_ascii_control()) {
        "a control character (such as a tab)"
    } else {
        "a form the storage client cannot address"
    };
    format!(
        "the object key has {why}, which the storage client cannot address exactly: not \
         downloaded (copy the object to a plain key to screen it)"
    )
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

/// First pages fetched by [`check_listing`], kept for the listing that follows so no page is
/// requested twice. Each check replaces its URI's page; the first listing of the URI takes it.
static FIRST_PAGES: Mutex<Option<HashMap<(String, StorageOptions), direct::Page>>> =
    Mutex::new(None);

fn first_pages<T>(f: impl FnOnce(&mut HashMap<(String, StorageOptions), direct::Page>) -> T) -> T {
    let mut pages = FIRST_PAGES.lock().unwrap_or_else(|p| p.into_inner());
    f(pages.get_or_insert_with(HashMap::new))
}

/// What the first listing page of a source showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPage {
    /// The whole listing is this page, and it holds no image to screen.
    NoImages,
    /// Images on this page, or more pages to come.
    Objects,
}

/// A listing's first page, fetched before anything else happens: a store that refuses the
/// credentials or the bucket stops the run before any API call. The page is kept for the
/// listing that follows (it is not requested again).
pub async fn check_listing(
    uri: &Uri,
    source: &str,
    opts: &SourceOptions,
) -> Result<FirstPage, StorageError> {
    let client = client(uri, &opts.storage)?;
    let prefix = uri.list_prefix();
    let Some(direct) = client.direct else {
        let mut list = client.store.list(store_prefix(&prefix).as_ref());
        return match list.next().await {
            None => Ok(FirstPage::NoImages),
            Some(Ok(_)) => Ok(FirstPage::Objects),
            Some(Err(e)) => Err(store_error(uri, &e)),
        };
    };
    let page = direct
        .page(&prefix, None)
        .await
        .map_err(|e| page_error(uri, e))?;
    let first = if page.next.is_some() {
        FirstPage::Objects
    } else {
        // The whole listing: does it hold an item, as the listing will see it?
        let mut probe = Listing::open(uri.clone(), source, opts)?;
        probe.pages = Pages::Own {
            direct,
            next: None,
            started: true,
        };
        probe.buffer = page.objects.iter().cloned().collect();
        if probe.any(|e| matches!(e, Event::Item(_))) {
            FirstPage::Objects
        } else {
            FirstPage::NoImages
        }
    };
    first_pages(|pages| pages.insert((uri.to_string(), opts.storage.clone()), page));
    Ok(first)
}

/// A listing that failed: refused (the credentials or the bucket), or failed otherwise.
fn listing_error(uri: &Uri, failure: Failure, message: String) -> StorageError {
    match failure {
        Failure::Refused(reason) => StorageError::Refused {
            uri: uri.bucket_uri(),
            reason,
        },
        Failure::Missing | Failure::Failed => StorageError::Failed {
            uri: uri.to_string(),
            message,
        },
    }
}

fn store_error(uri: &Uri, e: &object_store::Error) -> StorageError {
    listing_error(uri, classify(e), e.to_string())
}

fn page_error(uri: &Uri, e: direct::PageError) -> StorageError {
    listing_error(uri, e.failure, e.message)
}

/// The storage client's form of a listing prefix (it adds the final '/' itself).
fn store_prefix(prefix: &str) -> Option<ObjectPath> {
    let p = prefix.trim_end_matches('/');
    (!p.is_empty()).then(|| ObjectPath::from(p))
}

/// A bucket prefix as a stream of events, read one listing page at a time on the caller's
/// thread (blocking on the runtime it was opened in). A listing that cannot reach its end
/// (after the retries) ends with [`Event::Incomplete`].
pub struct Listing {
    uri: Uri,
    source: String,
    /// The prefix as sent: the URI's key as a folder.
    prefix: String,
    hidden: bool,
    filters: super::filter::Filters,
    opts: StorageOptions,
    runtime: Runtime,
    pages: Pages,
    buffer: VecDeque<direct::Listed>,
    /// The last key listed (relative to the prefix), for the incomplete notice.
    last_key: Option<String>,
    done: bool,
}

/// Where the listing's pages come from.
enum Pages {
    /// Listed here, keys exactly as stored.
    Own {
        direct: Arc<direct::Direct>,
        /// The next page's token; `None` before the first page and after the last.
        next: Option<String>,
        started: bool,
    },
    /// The storage client's own listing (stores this program does not list itself).
    Store(BoxStream<'static, object_store::Result<ObjectMeta>>),
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
    /// Set up the listing of `uri` (no request is made until the first item is asked for).
    pub fn open(uri: Uri, source: &str, opts: &SourceOptions) -> Result<Self, StorageError> {
        let client = client(&uri, &opts.storage)?;
        let prefix = uri.list_prefix();
        let runtime = Runtime::current().map_err(|e| StorageError::Setup {
            uri: uri.bucket_uri(),
            message: e.to_string(),
        })?;
        let pages = match client.direct {
            Some(direct) => Pages::Own {
                direct,
                next: None,
                started: false,
            },
            None => Pages::Store(client.store.list(store_prefix(&prefix).as_ref())),
        };
        Ok(Listing {
            uri,
            source: source.to_string(),
            prefix,
            hidden: opts.hidden,
            filters: opts.filters.clone(),
            opts: opts.storage.clone(),
            runtime,
            pages,
            buffer: VecDeque::new(),
            last_key: None,
            done: false,
        })
    }

    /// The next listed object; `Err` (the reason) when the listing cannot go on.
    fn next_listed(&mut self) -> Option<Result<direct::Listed, String>> {
        loop {
            if let Some(o) = self.buffer.pop_front() {
                return Some(Ok(o));
            }
            match &mut self.pages {
                Pages::Store(stream) => {
                    return match self.runtime.block_on(stream.next())? {
                        Ok(meta) => Some(Ok(direct::Listed {
                            key: meta.location.as_ref().to_string(),
                            size: meta.size,
                            etag: meta.e_tag,
                        })),
                        Err(e) => Some(Err(store_error(&self.uri, &e).to_string())),
                    };
                }
                Pages::Own {
                    direct,
                    next,
                    started,
                } => {
                    if *started && next.is_none() {
                        return None;
                    }
                    let page = if *started {
                        None
                    } else {
                        let id = (self.uri.to_string(), self.opts.clone());
                        first_pages(|pages| pages.remove(&id))
                    };
                    let page = match page {
                        Some(p) => p,
                        None => match self
                            .runtime
                            .block_on(direct.page(&self.prefix, next.as_deref()))
                        {
                            Ok(p) => p,
                            Err(e) => return Some(Err(page_error(&self.uri, e).to_string())),
                        },
                    };
                    *started = true;
                    *next = page.next;
                    self.buffer.extend(page.objects);
                }
            }
        }
    }

    fn event(&self, listed: direct::Listed) -> Event {
        let full = listed.key.as_str();
        let key = full
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(full)
            .to_string();
        let shown = self.uri.object_uri(full);
        if full.ends_with('/') && listed.size == 0 {
            return Event::Ignored {
                path: shown,
                reason: "folder marker (an empty object ending in '/')".into(),
            };
        }
        let name = key.rsplit('/').next().unwrap_or(&key);
        let hidden = |part: &str| part.starts_with('.') && part != "." && part != "..";
        if !self.hidden && key.split('/').any(hidden) {
            return Event::Ignored {
                path: shown,
                reason: "hidden object (--hidden includes it)".into(),
            };
        }
        if let Some(reason) = self.filters.leaves_out(&key) {
            return Event::Ignored {
                path: shown,
                reason,
            };
        }
        if let Some(reason) = not_an_image_by_name(name) {
            return Event::Ignored {
                path: shown,
                reason,
            };
        }
        let size = listed.size;
        let problem = if size > preflight::MAX_BYTES {
            Some(format!(
                "{} ({} bytes) is over Didit's 5 MB limit (not downloaded)",
                preflight::megabytes(size),
                size
            ))
        } else if size == 0 {
            Some("empty object (0 bytes)".to_string())
        } else if matches!(self.pages, Pages::Own { .. }) {
            // Listed here: any key it lists, it can fetch.
            None
        } else {
            object_path(full).err()
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
            version: Version::of_object(size, listed.etag.as_deref()),
            regular: false,
            reference: None,
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
        crate::messages::cut(ext)
    ))
}

impl Iterator for Listing {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        match self.next_listed() {
            Some(Ok(listed)) => {
                let full = listed.key.as_str();
                let key = full.strip_prefix(self.prefix.as_str()).unwrap_or(full);
                self.last_key = Some(key.to_string());
                Some(self.event(listed))
            }
            Some(Err(reason)) => {
                self.done = true;
                Some(Event::Incomplete {
                    source: self.source.clone(),
                    last_key: self.last_key.clone(),
                    reason,
                })
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// How one object is fetched: by the storage client, or (a key it cannot address) by the
/// requests made here.
enum Fetch {
    Store(Arc<dyn ObjectStore>, ObjectPath),
    Direct(Arc<direct::Direct>, String),
}

/// A fetch that failed: what it means, the store's words, and whether the object's ETag was
/// no longer the one asked for (412).
struct Fault {
    failure: Failure,
    message: String,
    changed: bool,
}

impl Fault {
    fn of_store(e: &object_store::Error) -> Self {
        Fault {
            failure: classify(e),
            message: e.to_string(),
            changed: matches!(e, object_store::Error::Precondition { .. }),
        }
    }

    fn of_direct(e: direct::PageError) -> Self {
        Fault {
            changed: e.status == Some(412),
            failure: e.failure,
            message: e.message,
        }
    }
}

impl Fetch {
    /// How `uri`'s object is reached; `Err` (the row's reason) when it cannot be.
    fn of(uri: &Uri, opts: &StorageOptions) -> Result<Fetch, Refusal> {
        let shown = uri.to_string();
        if let Some(e) = uri.scheme.not_built() {
            // No rerun of this build can read it: the row's own error.
            return Err(Refusal::unread(format!("{shown}: {e}")));
        }
        let client = client(uri, opts).map_err(|e| Refusal {
            storage: Some(StorageFault::Failed),
            ..Refusal::unread(e.to_string())
        })?;
        match (object_path(&uri.key), client.direct) {
            // The GCS client puts a key in its URLs unencoded (`%`, `#`, `?` would address
            // another key): every gs:// object is fetched by the requests made here.
            // Every az:// object too: the requests made here address exactly the listed key.
            (_, Some(d))
                if matches!(uri.scheme, Scheme::Gcs | Scheme::Azure) && !uri.key.is_empty() =>
            {
                Ok(Fetch::Direct(d, uri.key.clone()))
            }
            (Ok(path), _) => Ok(Fetch::Store(client.store, path)),
            (Err(_), Some(d)) if !uri.key.is_empty() => Ok(Fetch::Direct(d, uri.key.clone())),
            (Err(why), _) => Err(Refusal::unread(format!("{shown}: {why}"))),
        }
    }

    async fn head(&self) -> Result<direct::Head, Fault> {
        match self {
            Fetch::Store(store, path) => store
                .head(path)
                .await
                .map(|m| direct::Head {
                    size: m.size,
                    etag: m.e_tag,
                })
                .map_err(|e| Fault::of_store(&e)),
            Fetch::Direct(d, key) => d.head(key).await.map_err(Fault::of_direct),
        }
    }

    /// The content if its ETag is still `if_match` (`None`: over the 5 MB limit, not read);
    /// with `first`, only its first that many bytes.
    async fn get(
        &self,
        if_match: Option<&str>,
        first: Option<usize>,
    ) -> Result<(Option<Bytes>, direct::Head), Fault> {
        match self {
            Fetch::Store(store, path) => {
                let options = object_store::GetOptions {
                    if_match: if_match.map(str::to_string),
                    range: first.map(|n| (0..n as u64).into()),
                    ..Default::default()
                };
                let got = store
                    .get_opts(path, options)
                    .await
                    .map_err(|e| Fault::of_store(&e))?;
                let head = direct::Head {
                    size: got.meta.size,
                    etag: got.meta.e_tag.clone(),
                };
                if got.meta.size > preflight::MAX_BYTES {
                    return Ok((None, head));
                }
                let bytes = got.bytes().await.map_err(|e| Fault::of_store(&e))?;
                Ok((Some(bytes), head))
            }
            Fetch::Direct(d, key) => d
                .get(key, if_match, preflight::MAX_BYTES, first)
                .await
                .map_err(Fault::of_direct),
        }
    }
}

/// An object's version without downloading it (one HEAD request), for manifest rows.
pub async fn head_version(uri: &Uri, opts: &StorageOptions) -> Option<Version> {
    let head = Fetch::of(uri, opts).ok()?.head().await.ok()?;
    Version::of_object(head.size, head.etag.as_deref())
}

fn too_large(size: u64) -> String {
    format!(
        "{} ({size} bytes) is over Didit's 5 MB limit (not downloaded)",
        preflight::megabytes(size)
    )
}

/// Download and check one object (after a HEAD when its size is not known from a listing): at
/// most 5 MB is ever downloaded; the content check is the files' one. A listed object is read
/// only if it still has the listed ETag, and one that is gone since it was listed is a source
/// error (to rerun), not the input's fault.
///
/// With `sniff_only` (a dry run), only the first bytes the format check needs are read (a
/// ranged GET): the size comes from the listing or the HEAD, and a digest of the object's
/// version stands in for its content's (objects with the same ETag and size count as
/// identical).
pub async fn read(
    uri: &Uri,
    known: Option<&Version>,
    opts: &StorageOptions,
    sniff_only: bool,
) -> Result<Prepared, Refusal> {
    let shown = uri.to_string();
    let failed = |f: Fault, what: &str| {
        let (reason, fault) = match f.failure {
            _ if f.changed => (
                format!(
                    "{shown} changed after it was listed (its ETag differs); rerun to screen \
                     the new content"
                ),
                Some(StorageFault::Failed),
            ),
            Failure::Missing if known.is_some() => (
                format!(
                    "{shown} was listed but is gone now (deleted since); rerun to screen what \
                     the prefix holds then"
                ),
                Some(StorageFault::Failed),
            ),
            Failure::Missing => (format!("object not found: {shown}"), None),
            Failure::Refused(why) => (
                format!("storage refused {shown}: {why}"),
                Some(StorageFault::Refused),
            ),
            Failure::Failed => (
                format!(
                    "cannot {what} {shown} (storage retries exhausted): {}",
                    f.message
                ),
                Some(StorageFault::Failed),
            ),
        };
        Refusal {
            storage: fault,
            ..Refusal::unread(reason)
        }
    };
    let fetch = Fetch::of(uri, opts)?;
    let version = match known {
        Some(v) => v.clone(),
        None => {
            let head = fetch.head().await.map_err(|f| failed(f, "look up"))?;
            let version = Version::of_object(head.size, head.etag.as_deref());
            if head.size > preflight::MAX_BYTES || head.size == 0 {
                let reason = if head.size == 0 {
                    "empty object (0 bytes)".to_string()
                } else {
                    too_large(head.size)
                };
                return Err(Refusal {
                    size: Some(head.size),
                    version,
                    ..Refusal::unread(reason)
                });
            }
            match version {
                Some(v) => v,
                // No ETag: read without a precondition; the content hash decides.
                None => Version::Object(Box::new(super::version::ObjectVersion {
                    size: head.size,
                    etag: String::new(),
                })),
            }
        }
    };
    let if_match = version.etag().filter(|e| !e.is_empty());
    let first = sniff_only.then_some(preflight::SNIFF_LEN);
    let (bytes, head) = fetch
        .get(if_match, first)
        .await
        .map_err(|f| failed(f, "download"))?;
    if sniff_only {
        let Some(bytes) = bytes else {
            return Err(Refusal::unread(too_large(head.size)));
        };
        let size = match &version {
            Version::Object(o) => o.size,
            Version::File { size, .. } => *size,
        };
        use sha2::Digest;
        let stand_in = sha2::Sha256::digest(format!("object version {version}")).into();
        return preflight::check_head(bytes, size, stand_in, Some(version));
    }
    let Some(bytes) = bytes else {
        return Err(Refusal::unread(too_large(head.size)));
    };
    let version = Version::of_object(head.size, head.etag.as_deref()).or(Some(version));
    preflight::check_bytes(bytes, version)
}

#[cfg(test)]
mod tests;
