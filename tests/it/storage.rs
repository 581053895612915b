//! Integration tests: bucket sources against a real S3-compatible server on loopback (moto's
//! server mode, started by .ci/run: LIVENESS_TEST_S3_ENDPOINT, with its request log at
//! LIVENESS_TEST_S3_LOG, where GETs are counted), and a refusing store (a small local stub
//! answering every request as S3 does for an unknown access key).
//!
//! Without the server these tests pass and say they were skipped; in CI (CI set) they fail.

use std::path::{Path, PathBuf};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::common::{self, KEY};

/// The S3 test server, or `None` (with a note) when it is not configured outside CI.
pub(crate) fn server() -> Option<(String, PathBuf)> {
    let endpoint = std::env::var("LIVENESS_TEST_S3_ENDPOINT").ok();
    let log = std::env::var("LIVENESS_TEST_S3_LOG").ok();
    match (endpoint, log) {
        (Some(e), Some(l)) if !e.is_empty() && !l.is_empty() => Some((e, PathBuf::from(l))),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but LIVENESS_TEST_S3_ENDPOINT / LIVENESS_TEST_S3_LOG are not: .ci/run \
             must start the S3 test server; storage tests cannot be skipped in CI"
        ),
        _ => {
            eprintln!(
                "SKIPPED storage test: no S3 test server (set LIVENESS_TEST_S3_ENDPOINT and \
                 LIVENESS_TEST_S3_LOG, as .ci/run does after starting moto_server)"
            );
            None
        }
    }
}

/// A fresh bucket on the test server, with its store for uploads.
pub(crate) struct Bucket {
    pub(crate) endpoint: String,
    pub(crate) log: PathBuf,
    pub(crate) name: String,
    store: Box<dyn ObjectStore>,
}

impl Bucket {
    pub(crate) async fn new() -> Option<Bucket> {
        let (endpoint, log) = server()?;
        let name = format!("it-{}", uuid::Uuid::new_v4().simple());
        let made = common::http()
            .build()
            .unwrap()
            .put(format!("{endpoint}/{name}"))
            .send()
            .await
            .expect("create the bucket");
        assert!(made.status().is_success(), "{made:?}");
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&name)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        Some(Bucket {
            endpoint,
            log,
            name,
            store: Box::new(store),
        })
    }

    pub(crate) async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.store
            .put(&ObjectPath::from(key), bytes.into())
            .await
            .unwrap();
    }

    pub(crate) fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// `scan` of `prefix` in this bucket into `out`, against `emu`.
    pub(crate) async fn scan(
        &self,
        prefix: &str,
        out: &Path,
        emu: &liveness_batch::emulator::Emulator,
    ) -> common::Run {
        let out = out.display().to_string();
        scan(
            &[&self.uri(prefix), "--out", &out],
            &self.endpoint,
            &emu.base_url(),
        )
        .await
    }

    /// GETs of this bucket's objects in the server's request log (listings are not counted).
    pub(crate) fn gets(&self, key_prefix: &str) -> usize {
        let needle = format!("GET /{}/{key_prefix}", self.name);
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

/// The secret key the tests hand the binary (the test server accepts any).
pub(crate) const SECRET: &str = "secret-key-never-printed-7f3a";

/// `scan ARGS` against `base_url` with test credentials for the S3 endpoint.
pub(crate) async fn scan(args: &[&str], endpoint: &str, base_url: &str) -> common::Run {
    scan_env(args, endpoint, base_url, &[]).await
}

/// `scan s3://selfies/p/ --out OUT` through the store at `endpoint`, against `emu`.
pub(crate) async fn prefix_scan(
    endpoint: &str,
    out: &Path,
    emu: &liveness_batch::emulator::Emulator,
) -> common::Run {
    let out = out.display().to_string();
    scan(
        &["s3://selfies/p/", "--out", &out],
        endpoint,
        &emu.base_url(),
    )
    .await
}

/// [`scan`] with more environment variables (a scheduler's, for shards).
pub(crate) async fn scan_env(
    args: &[&str],
    endpoint: &str,
    base_url: &str,
    env: &[(&str, &str)],
) -> common::Run {
    let mut cmd = tokio::process::Command::new(common::bin());
    cmd.arg("scan")
        .args(args)
        .args(["--s3-endpoint", endpoint, "--s3-region", "us-east-1"])
        .args(common::FAST)
        .arg("--quiet")
        .env_remove("RUST_LOG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("DIDIT_BASE_URL", base_url)
        .env("DIDIT_API_KEY", KEY)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_SERVICE_ACCOUNT")
        .env_remove("GOOGLE_SERVICE_ACCOUNT_KEY")
        .env_remove("GOOGLE_BASE_URL")
        .env_remove("GOOGLE_BEARER_TOKEN")
        .env_remove("AZURE_STORAGE_USE_EMULATOR")
        .env_remove("AZURITE_BLOB_STORAGE_URL")
        .env_remove("AZURE_STORAGE_ACCOUNT_NAME")
        .env_remove("AZURE_STORAGE_ACCOUNT_KEY")
        .env_remove("AZURE_STORAGE_ENDPOINT")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    let out = cmd.output().await.expect("run liveness-batch");
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn results(out: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    common::csv_rows(&out.join("results.csv"))
}

pub(crate) fn cell<'a>(
    rows: &'a [std::collections::BTreeMap<String, String>],
    key: &str,
    col: &str,
) -> &'a str {
    rows.iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key}"))[col]
        .as_str()
}

#[tokio::test]
async fn a_bucket_prefix_is_screened_once_per_image_and_a_rerun_makes_no_get_and_no_call() {
    let Some(b) = Bucket::new().await else { return };
    b.put("selfies/a.jpg", common::jpeg(1)).await;
    b.put("selfies/2026/b.png", common::png(2)).await;
    b.put("selfies/c", common::jpeg(3)).await; // no extension: downloaded and sniffed
    b.put("selfies/notes.txt", b"not an image".to_vec()).await;
    b.put("selfies/big.jpg", vec![0xFF; 5 * 1024 * 1024 + 1])
        .await;
    b.put("elsewhere/x.jpg", common::jpeg(4)).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (src, out_s) = (b.uri("selfies/"), out.display().to_string());

    let first = scan(&[&src, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(first.code, 1, "big.jpg has no result: {first:?}");
    assert_eq!(emu.stats().requests, 3, "a, b and c are screened once");
    let rows = results(&out);
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str()).collect();
    assert_eq!(
        keys,
        ["2026/b.png", "a.jpg", "big.jpg", "c"],
        "keys are relative to the prefix"
    );
    assert_eq!(
        cell(&rows, "a.jpg", "path"),
        b.uri("selfies/a.jpg"),
        "outputs carry the URI"
    );
    assert_eq!(cell(&rows, "a.jpg", "class"), "result");
    assert_eq!(cell(&rows, "c", "class"), "result");
    assert_eq!(cell(&rows, "big.jpg", "class"), "invalid_input");
    assert!(
        cell(&rows, "big.jpg", "error").contains("over Didit's 5 MB limit (not downloaded)"),
        "{rows:?}"
    );
    assert_eq!(
        b.gets("selfies/big.jpg"),
        0,
        "the large object was never downloaded"
    );
    assert_eq!(b.gets("selfies/notes.txt"), 0, "nor the non-image");
    assert_eq!(b.gets("elsewhere/"), 0, "nor anything outside the prefix");
    assert_eq!(b.gets("selfies/"), 3, "one GET per image");
    let ignored = std::fs::read_to_string(out.join("ignored.csv")).unwrap();
    assert!(
        ignored.contains("notes.txt,not an image by its name (.txt); never downloaded"),
        "{ignored}"
    );
    let items = common::journal_items(&out);
    let a = items.iter().find(|i| i["key"] == "a.jpg").unwrap();
    assert!(a["version"].as_str().unwrap().starts_with("size="), "{a}");
    assert!(a["version"].as_str().unwrap().contains(" etag=\""), "{a}");

    let rerun = scan(&[&src, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(rerun.code, 1, "{rerun:?}");
    assert_eq!(emu.stats().requests, 3, "no call on the rerun");
    assert_eq!(b.gets("selfies/"), 3, "no GET on the rerun");

    // A changed object (new ETag) is downloaded and screened again; the others are not.
    b.put("selfies/a.jpg", common::jpeg(5)).await;
    let changed = scan(&[&src, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(changed.code, 1, "{changed:?}");
    assert_eq!(emu.stats().requests, 4);
    assert_eq!(b.gets("selfies/"), 4);
}

#[tokio::test]
async fn a_manifest_mixes_local_paths_and_uris_and_a_missing_object_is_its_rows_error() {
    let Some(b) = Bucket::new().await else { return };
    b.put("p/one.jpg", common::jpeg(11)).await;
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "local.jpg", &common::jpeg(12));
    let manifest = common::write(
        dir.path(),
        "m.csv",
        format!(
            "id,path\nr1,local.jpg\nr2,{}\nr3,{}\n",
            b.uri("p/one.jpg"),
            b.uri("p/missing.jpg")
        )
        .as_bytes(),
    );
    let emu = common::emulator(|_| {}).await;
    let out = dir.path().join("out");
    let (m, out_s) = (manifest.display().to_string(), out.display().to_string());
    let run = scan(&[&m, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(run.code, 1, "finished, one row without a result: {run:?}");
    assert_eq!(emu.stats().requests, 2);
    let rows = results(&out);
    assert_eq!(cell(&rows, "r1", "class"), "result");
    assert_eq!(cell(&rows, "r2", "class"), "result");
    assert_eq!(cell(&rows, "r2", "path"), b.uri("p/one.jpg"));
    assert_eq!(cell(&rows, "r3", "class"), "invalid_input");
    assert_eq!(
        cell(&rows, "r3", "error"),
        format!("object not found: {}", b.uri("p/missing.jpg"))
    );

    // Resumed: the object row is looked up (HEAD), not downloaded, and nothing is sent.
    let gets = b.gets("p/one.jpg");
    let rerun = scan(&[&m, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(rerun.code, 1, "{rerun:?}");
    assert_eq!(emu.stats().requests, 2);
    assert_eq!(b.gets("p/one.jpg"), gets);
}

#[tokio::test]
async fn a_missing_bucket_stops_before_any_call_with_exit_7() {
    let Some((endpoint, _)) = server() else {
        return;
    };
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let src = format!("s3://no-such-{}/selfies/", uuid::Uuid::new_v4().simple());
    let run = scan(
        &[&src, "--out", &out.display().to_string()],
        &endpoint,
        &emu.base_url(),
    )
    .await;
    run.exited_saying(
        7,
        &format!(
            "storage refused {}: the bucket does not exist",
            src.trim_end_matches("selfies/")
        ),
    );
    assert_eq!(emu.stats().requests, 0);
    assert!(!out.exists(), "nothing written");
}

/// A store that refuses every request the way S3 refuses an unknown access key.
async fn refusing_store() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::StatusCode;
    let app = axum::Router::new().fallback(|| async {
        (
            StatusCode::FORBIDDEN,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code>\
             <Message>The AWS Access Key Id you provided does not exist in our records.\
             </Message></Error>",
        )
    });
    common::serve(app).await
}

#[tokio::test]
async fn refused_credentials_stop_with_exit_7_and_spend_no_call() {
    let (endpoint, server) = refusing_store().await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();

    // A bucket source: refused on its first listing page, before the out dir is touched.
    let out = dir.path().join("out");
    let run = prefix_scan(&endpoint, &out, &emu).await;
    run.exited_saying(
        7,
        "storage refused s3://selfies/: the access key is not known",
    );
    assert!(!out.exists());

    // URIs in a manifest: the first refused read stops the run, with no call spent.
    let manifest = common::write(
        dir.path(),
        "m.csv",
        b"path\ns3://selfies/a.jpg\ns3://selfies/b.jpg\n",
    );
    let out2 = dir.path().join("out2");
    let run = scan(
        &[
            &manifest.display().to_string(),
            "--out",
            &out2.display().to_string(),
        ],
        &endpoint,
        &emu.base_url(),
    )
    .await;
    // A HEAD's answer has no body to name the cause: the status is all there is. Objects are
    // read a few at a time, so either row may be the first refused.
    run.exited_saying(7, "storage refused s3://selfies/");
    assert!(
        !run.all().contains(SECRET),
        "no credential is printed: {run:?}"
    );
    assert_eq!(emu.stats().requests, 0);
    server.abort();
}

/// A store whose listing works but whose every download fails with 503 SlowDown.
async fn failing_store() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, Uri};
    let app = axum::Router::new().fallback(|uri: Uri| async move {
        if uri.query().is_some_and(|q| q.contains("list-type=2")) {
            (
                StatusCode::OK,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult \
                 xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>selfies</Name>\
                 <Prefix>p/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>\
                 <IsTruncated>false</IsTruncated><Contents><Key>p/a.jpg</Key>\
                 <LastModified>2026-11-30T09:12:44.000Z</LastModified>\
                 <ETag>&quot;0123abcd&quot;</ETag><Size>2000</Size>\
                 <StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>",
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                 <Message>Please reduce your request rate.</Message></Error>",
            )
        }
    });
    common::serve(app).await
}

#[tokio::test]
async fn an_object_that_cannot_be_read_is_a_source_error_to_rerun_and_spends_no_call() {
    let (endpoint, server) = failing_store().await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = prefix_scan(&endpoint, &out, &emu).await;
    assert_eq!(run.code, 1, "finished without a result: {run:?}");
    let rows = results(&out);
    assert_eq!(cell(&rows, "a.jpg", "class"), "source_error");
    assert_eq!(cell(&rows, "a.jpg", "action"), "rerun");
    assert_eq!(cell(&rows, "a.jpg", "billed"), "false");
    assert!(
        cell(&rows, "a.jpg", "error").contains("(storage retries exhausted)"),
        "{rows:?}"
    );
    assert_eq!(emu.stats().requests, 0, "no Didit call spent");
    server.abort();
}

#[tokio::test]
async fn plain_http_to_a_store_off_this_machine_is_refused() {
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let run = scan(
        &[
            "s3://selfies/",
            "--out",
            &dir.path().join("o").display().to_string(),
        ],
        "http://minio.internal:9000",
        &emu.base_url(),
    )
    .await;
    run.exited_saying(
        2,
        "the storage endpoint http://minio.internal:9000 is plain http off this machine",
    );
    assert_eq!(emu.stats().requests, 0);
}

#[tokio::test]
async fn a_malformed_bucket_uri_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::run_bin(
        &[
            "scan",
            "s3://",
            "--out",
            &dir.path().join("o").display().to_string(),
        ],
        None,
        Some(KEY),
    )
    .await;
    run.exited_saying(
        2,
        "s3:// is not a bucket URI: write it as s3://BUCKET/PREFIX/",
    );
}
