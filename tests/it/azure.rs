//! Integration tests: az:// sources against Azurite, the Azure Blob Storage emulator (its blob
//! service, started by .ci/run: LIVENESS_TEST_AZURITE_URL, with its request log at
//! LIVENESS_TEST_AZURITE_LOG, where GETs are counted). The binary reaches it the way a user's
//! job would: `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`.
//!
//! Without the emulator these tests pass and say they were skipped; in CI (CI set) they fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::{HttpRequest, HttpRequestBody};

use crate::buckets::{sha256, url_path};
use crate::common;
use crate::storage::{cell, results, scan_env};

/// The emulator's well-known account and key (public, the same in every Azurite).
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite, or `None` (with a note) when it is not configured outside CI.
fn azurite() -> Option<(String, PathBuf)> {
    let url = std::env::var("LIVENESS_TEST_AZURITE_URL").ok();
    let log = std::env::var("LIVENESS_TEST_AZURITE_LOG").ok();
    match (url, log) {
        (Some(u), Some(l)) if !u.is_empty() && !l.is_empty() => Some((u, PathBuf::from(l))),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but LIVENESS_TEST_AZURITE_URL / LIVENESS_TEST_AZURITE_LOG are not: \
             .ci/run must start Azurite (.ci/azurite); az:// tests cannot be skipped in CI"
        ),
        _ => {
            eprintln!(
                "SKIPPED az:// test: no Azurite (source .ci/azurite, as .ci/run does, to set \
                 LIVENESS_TEST_AZURITE_URL and LIVENESS_TEST_AZURITE_LOG)"
            );
            None
        }
    }
}

/// One client for every request made here (making one loads the system's root certificates).
/// It keeps no idle connection: each test has its own runtime, and a pooled connection would
/// die with the runtime that opened it.
fn http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| common::http().pool_max_idle_per_host(0).build().unwrap())
}

/// A request to the emulator signed with its account key (Shared Key).
async fn signed(
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = HttpRequest::new(HttpRequestBody::from(body.clone()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = url.parse().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request.headers_mut().insert(
        reqwest::header::CONTENT_LENGTH,
        body.len().to_string().parse().unwrap(),
    );
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(ACCOUNT_KEY).unwrap());
    AzureAuthorizer::new(&credential, ACCOUNT)
        .try_authorize(&mut request)
        .unwrap();
    let mut sent = request.headers().clone();
    sent.remove(reqwest::header::CONTENT_LENGTH);
    http()
        .request(method, url)
        .headers(sent)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A fresh container on Azurite.
struct Container {
    url: String,
    log: PathBuf,
    name: String,
}

impl Container {
    async fn new() -> Option<Container> {
        let (url, log) = azurite()?;
        let name = format!("it-{}", uuid::Uuid::new_v4().simple());
        let made = signed(
            reqwest::Method::PUT,
            &format!("{url}/{ACCOUNT}/{name}?restype=container"),
            Vec::new(),
            &[],
        )
        .await;
        assert!(made.status().is_success(), "{made:?}");
        Some(Container { url, log, name })
    }

    /// Upload `bytes` as a block blob named exactly `key`.
    async fn put(&self, key: &str, bytes: Vec<u8>) {
        put_at(&self.url, &self.name, key, bytes).await;
    }

    fn uri(&self, key: &str) -> String {
        format!("az://{}/{key}", self.name)
    }

    /// The request targets (path and query) of the emulator's log for this container.
    fn requests(&self, method: &str) -> Vec<String> {
        let needle = format!("\"{method} /{ACCOUNT}/{}", self.name);
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let at = l.find(&needle)?;
                let target = l[at + method.len() + 2..].split(' ').next()?;
                Some(target.to_string())
            })
            .collect()
    }

    /// GETs of this container's blobs (listings not counted).
    fn object_gets(&self) -> Vec<String> {
        self.requests("GET")
            .into_iter()
            .filter(|t| !t.contains("comp=list"))
            .collect()
    }

    fn listings(&self) -> usize {
        self.requests("GET")
            .iter()
            .filter(|t| t.contains("comp=list"))
            .count()
    }

    /// The request target that reads `key` from this container.
    fn target(&self, key: &str) -> String {
        format!("/{ACCOUNT}/{}/{}", self.name, url_path(key))
    }
}

async fn put_at(url: &str, container: &str, key: &str, bytes: Vec<u8>) {
    let answer = signed(
        reqwest::Method::PUT,
        &format!("{url}/{ACCOUNT}/{container}/{}", url_path(key)),
        bytes,
        &[("x-ms-blob-type", "BlockBlob")],
    )
    .await;
    assert!(answer.status().is_success(), "PUT {key:?}: {answer:?}");
}

/// The environment that points az:// at the emulator at `url`.
fn az_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
        ("AZURITE_BLOB_STORAGE_URL", url.to_string()),
    ]
}

async fn scan_az(args: &[&str], base_url: &str, env: &[(&'static str, String)]) -> common::Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    scan_env(args, "http://127.0.0.1:9", base_url, &env).await
}

/// An az:// prefix end to end: every blob screened once under its exact key (non-ASCII, `%`,
/// `+`, spaces), nothing outside the prefix, a rerun with no GET and no Didit call, and a
/// changed blob screened again.
#[tokio::test]
async fn an_az_prefix_is_screened_once_resumed_without_reading_and_a_change_is_seen() {
    let Some(c) = Container::new().await else {
        return;
    };
    let keys = [
        "a.jpg",
        "pct%20x.jpg",
        "ünïcødé.jpg",
        "sp ace+plus.jpg",
        "ñandú/deep.jpg",
    ];
    for (i, k) in keys.iter().enumerate() {
        c.put(&format!("p/{k}"), common::jpeg(80 + i as u64)).await;
    }
    c.put("p/notes.txt", b"not an image".to_vec()).await;
    c.put("other/z.jpg", common::jpeg(99)).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let src = c.uri("p/");
    let mut env = az_env(&c.url);
    // Given explicitly: the key must never be printed.
    env.push(("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY.to_string()));
    let run = scan_az(&[&src, "--out", &out], &emu.base_url(), &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.all().contains(ACCOUNT_KEY), "{run:?}");
    let rows = results(Path::new(&out));
    let mut listed: Vec<&str> = rows.iter().map(|r| r["key"].as_str()).collect();
    listed.sort_unstable();
    let mut expected = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(cell(&rows, k, "class"), "result", "{k}: {rows:?}");
        assert_eq!(
            cell(&rows, k, "sha256"),
            sha256(&common::jpeg(80 + i as u64)),
            "{k}"
        );
        assert_eq!(cell(&rows, k, "path"), c.uri(&format!("p/{k}")));
    }
    let ignored = std::fs::read_to_string(Path::new(&out).join("ignored.csv")).unwrap();
    assert!(ignored.contains("notes.txt"), "{ignored}");
    // Each blob read once, under its exact key; nothing outside the prefix; one listing.
    let mut gets = c.object_gets();
    gets.sort_unstable();
    let mut wanted: Vec<String> = keys.iter().map(|k| c.target(&format!("p/{k}"))).collect();
    wanted.sort_unstable();
    assert_eq!(gets, wanted);
    assert_eq!(c.listings(), 1, "the first page requested once");
    assert_eq!(emu.stats().requests, keys.len() as u64);

    let rerun = scan_az(&[&src, "--out", &out], &emu.base_url(), &env).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(
        (emu.stats().requests, c.object_gets().len()),
        (keys.len() as u64, keys.len()),
        "a rerun: 0 GETs, 0 calls"
    );

    c.put("p/a.jpg", common::jpeg(90)).await;
    let changed = scan_az(&[&src, "--out", &out], &emu.base_url(), &env).await;
    assert_eq!(changed.code, 0, "{changed:?}");
    assert_eq!(
        (emu.stats().requests, c.object_gets().len()),
        (keys.len() as u64 + 1, keys.len() + 1),
        "only the changed blob"
    );
    assert_eq!(
        cell(&results(Path::new(&out)), "a.jpg", "sha256"),
        sha256(&common::jpeg(90))
    );
    // The journal now holds the read's quoted ETag; the listing gives it unquoted: the same.
    let again = scan_az(&[&src, "--out", &out], &emu.base_url(), &env).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        (emu.stats().requests, c.object_gets().len()),
        (keys.len() as u64 + 1, keys.len() + 1),
        "0 GETs, 0 calls"
    );
}

/// Plain http to an emulator or an endpoint off this machine is refused before any request
/// (the one loopback rule), and so is an endpoint with a query; nothing is sent to Didit.
#[tokio::test]
async fn plain_http_off_this_machine_is_refused_for_az() {
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o").display().to_string();
    let cases: [(Vec<(&'static str, String)>, &str); 3] = [
        (
            az_env("http://azurite.internal:10000"),
            "http://azurite.internal:10000 is plain http off this machine",
        ),
        (
            vec![
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct".to_string()),
                ("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY.to_string()),
                ("AZURE_STORAGE_ENDPOINT", "http://blob.internal".to_string()),
            ],
            "http://blob.internal is plain http off this machine",
        ),
        (
            az_env("http://127.0.0.1:1/?x=1"),
            "has a query or a fragment",
        ),
    ];
    for (env, says) in cases {
        let run = scan_az(&["az://selfies/p/", "--out", &out], &emu.base_url(), &env).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
        assert!(!run.all().contains(ACCOUNT_KEY), "{run:?}");
    }
    assert_eq!(emu.stats().requests, 0);
}

/// A proxy in front of the emulator that, on the first read of a blob, overwrites that blob
/// (through the emulator itself) before passing the read on: the read asks for the listed
/// ETag, the emulator holds another.
async fn changing_proxy(
    upstream: String,
    container: String,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::http::{Request, Response};
    let changed = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (upstream, container, changed) = (upstream.clone(), container.clone(), changed.clone());
        async move {
            let target = req.uri().path_and_query().unwrap().to_string();
            let read = req.method() == axum::http::Method::GET && !target.contains("comp=list");
            if read && !changed.swap(true, Ordering::SeqCst) {
                put_at(&upstream, &container, "p/a.jpg", common::jpeg(77)).await;
            }
            let mut forward = http().request(req.method().clone(), format!("{upstream}{target}"));
            let hop = |n: &str| {
                matches!(
                    n,
                    "host" | "connection" | "keep-alive" | "transfer-encoding" | "content-length"
                )
            };
            for (name, value) in req.headers() {
                if !hop(name.as_str()) {
                    forward = forward.header(name, value);
                }
            }
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let answer = forward.body(body).send().await.unwrap();
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !hop(name.as_str()) {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    });
    common::serve(app).await
}

/// A blob that changed between the listing and the read gets the emulator's 412 and is a
/// source error to rerun (never sent); the next run screens the new content. A wrong account
/// key stops the run with exit 7 before any Didit call, the key never printed.
#[tokio::test]
async fn a_stale_az_version_is_a_source_error_and_a_wrong_key_exits_7() {
    let Some(c) = Container::new().await else {
        return;
    };
    c.put("p/a.jpg", common::jpeg(76)).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let src = c.uri("p/");
    let (proxy, server) = changing_proxy(c.url.clone(), c.name.clone()).await;
    let run = scan_az(&[&src, "--out", &out_s], &emu.base_url(), &az_env(&proxy)).await;
    server.abort();
    assert_eq!(run.code, 1, "{run:?}");
    let rows = results(&out);
    assert_eq!(cell(&rows, "a.jpg", "class"), "source_error", "{rows:?}");
    assert_eq!(cell(&rows, "a.jpg", "action"), "rerun");
    assert!(
        cell(&rows, "a.jpg", "error").contains("changed after it was listed"),
        "{rows:?}"
    );
    assert_eq!(emu.stats().requests, 0, "never sent");
    let rerun = scan_az(&[&src, "--out", &out_s], &emu.base_url(), &az_env(&c.url)).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(
        cell(&results(&out), "a.jpg", "sha256"),
        sha256(&common::jpeg(77))
    );
    assert_eq!(emu.stats().requests, 1);

    let wrong = "d3Jvbmcta2V5LW5ldmVyLXByaW50ZWQtMGI3Yw==";
    let mut env = az_env(&c.url);
    env.push(("AZURE_STORAGE_ACCOUNT_KEY", wrong.to_string()));
    let refused_out = dir.path().join("refused");
    let refused = scan_az(
        &[&src, "--out", &refused_out.display().to_string()],
        &emu.base_url(),
        &env,
    )
    .await;
    assert_eq!(refused.code, 7, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains(&format!("storage refused az://{}/", c.name)),
        "{}",
        refused.stderr
    );
    assert!(!refused_out.exists(), "nothing written");
    assert!(!refused.all().contains(wrong), "{refused:?}");
    assert_eq!(emu.stats().requests, 1, "no Didit call");
}

/// The keys other stores make hard: `//`, `.` and `..` segments, a tab, a segment ending in
/// '.'. Azurite holds each (it refuses only a name ending in '/', so there are no folder
/// markers to ignore there); each is listed, read once under exactly its key, and screened.
#[tokio::test]
async fn odd_az_keys_are_each_read_once_under_their_exact_key() {
    let Some(c) = Container::new().await else {
        return;
    };
    let keys = [
        "a//b.jpg",
        "./x.jpg",
        "a/../b.jpg",
        "tab\there.jpg",
        "trail./y.jpg",
        "end.jpg",
    ];
    for (i, k) in keys.iter().enumerate() {
        c.put(&format!("o/{k}"), common::jpeg(60 + i as u64)).await;
    }
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let run = scan_az(
        &[&c.uri("o/"), "--out", &out],
        &emu.base_url(),
        &az_env(&c.url),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = results(Path::new(&out));
    assert_eq!(rows.len(), keys.len(), "{rows:?}");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(cell(&rows, k, "class"), "result", "{k}: {rows:?}");
        assert_eq!(
            cell(&rows, k, "sha256"),
            sha256(&common::jpeg(60 + i as u64)),
            "{k}"
        );
    }
    let mut gets = c.object_gets();
    gets.sort_unstable();
    let mut wanted: Vec<String> = keys.iter().map(|k| c.target(&format!("o/{k}"))).collect();
    wanted.sort_unstable();
    assert_eq!(gets, wanted, "each blob once, under its exact key");
    assert_eq!(emu.stats().requests, keys.len() as u64);
}
