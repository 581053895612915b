//! Buckets: 10,000 small images in the S3-compatible test server (moto's server mode, started
//! by `source .ci/s3-server`): a first run through the emulator, then a rerun of the finished
//! run. GETs are counted in the server's request log, calls at the emulator.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::json;

use super::{Ctx, Emulator, Row, Section, million, run_scan};

const OBJECTS: usize = 10_000;
/// Uploads in flight while the bucket is filled.
const UPLOADS: usize = 16;

/// GETs of objects under `/bucket/` in the server's request log (listings are not counted).
fn gets(log: &Path, bucket: &str) -> usize {
    let needle = format!("GET /{bucket}/");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

pub(crate) fn s3(ctx: &Ctx) -> Result<Section, String> {
    let (endpoint, log) = match (
        std::env::var("LIVENESS_TEST_S3_ENDPOINT"),
        std::env::var("LIVENESS_TEST_S3_LOG"),
    ) {
        (Ok(e), Ok(l)) => (e, std::path::PathBuf::from(l)),
        _ => {
            return Err(
                "no S3 test server: run `source .ci/s3-server` first (it sets \
                        LIVENESS_TEST_S3_ENDPOINT and LIVENESS_TEST_S3_LOG)"
                    .into(),
            );
        }
    };
    let dir = ctx.dir("s3");
    let bucket = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let t = Instant::now();
    fill(&endpoint, &bucket)?;
    eprintln!(
        "   uploaded {OBJECTS} images to s3://{bucket}/ in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The scans inherit the test server's credentials (it accepts any); without them the
    // client would look for a cloud role.
    // SAFETY: the harness runs its sections one at a time; no other thread reads the
    // environment now (the upload's runtime has been shut down).
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    }
    let emu_log = dir.join("emulator.jsonl");
    let emu = Emulator::start(ctx, &dir, &["--rate-limit", "0/60s"], Some(&emu_log))?;
    let out = dir.join("out");
    let args: Vec<String> = [
        "scan",
        &format!("s3://{bucket}/selfies/"),
        "--out",
        &out.display().to_string(),
        "--rate",
        super::UNTHROTTLED,
        "--concurrency",
        "32",
        "--quiet",
        "--s3-endpoint",
        &endpoint,
        "--s3-region",
        "us-east-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let timeout = Duration::from_secs(1200);
    let calls = |emu: &Emulator| -> Result<u64, String> {
        emu.stats()?["requests"]
            .as_u64()
            .ok_or_else(|| "the emulator's stats have no request count".to_string())
    };

    let first = run_scan(ctx, &emu, &args, &dir.join("first"), timeout)?;
    first.expect_code(0)?;
    let first_gets = gets(&log, &bucket);
    let first_calls = calls(&emu)?;
    let first_call = million::first_call_after(&emu_log, first.started_at)?;
    let rerun = run_scan(ctx, &emu, &args, &dir.join("rerun"), timeout)?;
    rerun.expect_code(0)?;
    let rerun_gets = gets(&log, &bucket) - first_gets;
    let rerun_calls = calls(&emu)? - first_calls;
    emu.stop();

    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let rows = vec![
        Row::check(
            "S3 10k objects: first run, GETs",
            first_gets.to_string(),
            "10000 (one per object)",
            first_gets == OBJECTS,
        ),
        Row::check(
            "S3 10k objects: first run, calls",
            first_calls.to_string(),
            "10000",
            first_calls == OBJECTS as u64,
        ),
        Row::info("S3 10k objects: first run, wall time", secs(first.wall)),
        Row::info(
            "S3 10k objects: first run, peak RSS",
            format!("{:.1} MiB", first.rss_mib()),
        ),
        Row::check(
            "S3 10k objects: first call after start",
            first_call.map_or("none".into(), |s| format!("{s:.2} s")),
            "< 5 s (listing streamed)",
            first_call.is_some_and(|s| s < 5.0),
        ),
        Row::check(
            "S3 10k objects: rerun, GETs",
            rerun_gets.to_string(),
            "0",
            rerun_gets == 0,
        ),
        Row::check(
            "S3 10k objects: rerun, calls",
            rerun_calls.to_string(),
            "0",
            rerun_calls == 0,
        ),
        Row::info("S3 10k objects: rerun, wall time", secs(rerun.wall)),
        Row::info(
            "S3 10k objects: rerun, peak RSS",
            format!("{:.1} MiB", rerun.rss_mib()),
        ),
    ];
    let details = format!(
        "S3: {OBJECTS} JPEGs (96x96, about 3 KB) in moto's S3 server on loopback; scan --rate \
         {} --concurrency 32 against the emulator (no limit, no latency). First run: {} GETs, \
         {} calls, {} wall, {:.1} MiB peak RSS, first call {} after start. Rerun: {} GETs, {} \
         calls, {} wall, {:.1} MiB peak RSS.",
        super::UNTHROTTLED,
        first_gets,
        first_calls,
        secs(first.wall),
        first.rss_mib(),
        first_call.map_or("never".into(), |s| format!("{s:.2} s")),
        rerun_gets,
        rerun_calls,
        secs(rerun.wall),
        rerun.rss_mib(),
    );
    let json = json!({
        "objects": OBJECTS,
        "first": { "gets": first_gets, "calls": first_calls, "run": first.json(), "first_call_secs": first_call },
        "rerun": { "gets": rerun_gets, "calls": rerun_calls, "run": rerun.json() },
    });
    Ok(Section {
        title: "Buckets (S3)".into(),
        rows,
        details,
        json,
        broken: Vec::new(),
    })
}

/// Create the bucket and upload the images (credentials are the test server's, which accepts
/// any).
fn fill(endpoint: &str, bucket: &str) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let made = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .map_err(|e| format!("create the bucket: {e}"))?;
        if !made.status().is_success() {
            return Err(format!("create the bucket: {}", made.status()));
        }
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("bench")
            .with_secret_access_key("bench")
            .build()
            .map_err(|e| e.to_string())?;
        let store = &store;
        let mut puts = futures::stream::iter(0..OBJECTS)
            .map(|i| async move {
                let key =
                    object_store::path::Path::from(format!("selfies/{:02}/{i:05}.jpg", i % 100));
                store
                    .put(&key, super::common::jpeg(900_000 + i as u64).into())
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("upload {key}: {e}"))
            })
            .buffer_unordered(UPLOADS);
        while let Some(r) = puts.next().await {
            r?;
        }
        Ok(())
    })
}
