//! Buckets: 10,000 small images in the S3-compatible test server (moto's server mode, started
//! by `source .ci/s3-server`): a first run through the emulator, then a rerun of the finished
//! run. Then a 100,000-object prefix: the listing alone (a dry run whose pattern leaves every
//! key out) and a whole dry run (a ranged GET per object), time and memory. GETs and listing
//! pages are counted in the server's request log, calls at the emulator.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::json;

use super::{Ctx, Emulator, Row, Section, million, run_scan};

const OBJECTS: usize = 10_000;
/// Uploads in flight while the bucket is filled.
const UPLOADS: usize = 16;
/// The large prefix.
const BIG: usize = 100_000;
/// Uploads in flight while the large prefix is filled.
const BIG_UPLOADS: usize = 48;
/// Peak RSS allowed to list or dry-run the large prefix.
const BIG_RSS_MIB: f64 = 100.0;
/// Wall time allowed for the listing of the large prefix alone.
const BIG_LIST_SECS: f64 = 120.0;

/// Listing requests for `bucket` in the server's request log: (all pages, first pages).
fn pages_listed(log: &Path, bucket: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let pages: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains(&format!("GET /{bucket}/?list-type=2"))
                || l.contains(&format!("GET /{bucket}?list-type=2"))
        })
        .collect();
    let first = pages
        .iter()
        .filter(|l| !l.contains("continuation-token"))
        .count();
    (pages.len(), first)
}

/// GETs of objects under `/bucket/` in the server's request log (listings are not counted).
fn gets(log: &Path, bucket: &str) -> usize {
    let needle = format!("GET /{bucket}/");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle) && !l.contains("list-type=2"))
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
    fill(&endpoint, &bucket, "selfies", OBJECTS, UPLOADS)?;
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
    let big = big_prefix(ctx, &emu, &endpoint, &log, &dir);
    emu.stop();
    let (big_rows, big_details, big_json) = big?;

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
    let rows = rows.into_iter().chain(big_rows).collect();
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
    ) + " "
        + &big_details;
    let json = json!({
        "big": big_json,
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

/// The 100,000-object prefix in a bucket of its own: a listing-only dry run, then a whole dry
/// run; rows, a paragraph and the figures.
fn big_prefix(
    ctx: &Ctx,
    emu: &Emulator,
    endpoint: &str,
    log: &Path,
    dir: &Path,
) -> Result<(Vec<Row>, String, serde_json::Value), String> {
    let bucket = format!("bench-big-{}", uuid::Uuid::new_v4().simple());
    let t = Instant::now();
    fill(endpoint, &bucket, "big", BIG, BIG_UPLOADS)?;
    let upload = t.elapsed();
    eprintln!(
        "   uploaded {BIG} objects to s3://{bucket}/big/ in {:.1} s",
        upload.as_secs_f64()
    );
    let timeout = Duration::from_secs(1800);
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        [
            "scan",
            &format!("s3://{bucket}/big/"),
            "--out",
            &out.display().to_string(),
            "--dry-run",
            "--concurrency",
            "32",
            "--quiet",
            "--s3-endpoint",
            endpoint,
            "--s3-region",
            "us-east-1",
        ]
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .map(str::to_string)
        .collect()
    };
    // The listing alone: a pattern no key matches (each is counted as left out, none read).
    let gets_before = gets(log, &bucket);
    let listing = run_scan(
        ctx,
        emu,
        &args(
            &dir.join("big-listing"),
            &["--include", "no-such-name", "--allow-empty"],
        ),
        &dir.join("big-listing"),
        timeout,
    )?;
    listing.expect_code(0)?;
    let listing_gets = gets(log, &bucket) - gets_before;
    let (listing_pages, listing_first) = pages_listed(log, &bucket);
    let dry = run_scan(
        ctx,
        emu,
        &args(&dir.join("big-dry"), &[]),
        &dir.join("big-dry"),
        timeout,
    )?;
    dry.expect_code(0)?;
    let dry_gets = gets(log, &bucket) - gets_before - listing_gets;
    let (all_pages, all_first) = pages_listed(log, &bucket);
    let (dry_pages, dry_first) = (all_pages - listing_pages, all_first - listing_first);
    let pages = BIG.div_ceil(1000);

    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let rows = vec![
        Row::info("S3 100k prefix: upload (not the program)", secs(upload)),
        Row::check(
            "S3 100k prefix: listing only, wall time",
            secs(listing.wall),
            &format!("< {BIG_LIST_SECS:.0} s"),
            listing.wall.as_secs_f64() < BIG_LIST_SECS,
        ),
        Row::check(
            "S3 100k prefix: listing only, peak RSS",
            format!("{:.1} MiB", listing.rss_mib()),
            &format!("< {BIG_RSS_MIB:.0} MiB"),
            listing.rss_mib() < BIG_RSS_MIB,
        ),
        Row::check(
            "S3 100k prefix: listing only, pages (first page)",
            format!("{listing_pages} ({listing_first})"),
            &format!("{pages} (1): each page once"),
            listing_pages == pages && listing_first == 1,
        ),
        Row::check(
            "S3 100k prefix: listing only, GETs",
            listing_gets.to_string(),
            "0",
            listing_gets == 0,
        ),
        Row::info("S3 100k prefix: dry run, wall time", secs(dry.wall)),
        Row::check(
            "S3 100k prefix: dry run, peak RSS",
            format!("{:.1} MiB", dry.rss_mib()),
            &format!("< {BIG_RSS_MIB:.0} MiB"),
            dry.rss_mib() < BIG_RSS_MIB,
        ),
        Row::check(
            "S3 100k prefix: dry run, pages (first page)",
            format!("{dry_pages} ({dry_first})"),
            &format!("{pages} (1): each page once"),
            dry_pages == pages && dry_first == 1,
        ),
        Row::check(
            "S3 100k prefix: dry run, ranged GETs",
            dry_gets.to_string(),
            "100000 (one per object)",
            dry_gets == BIG,
        ),
    ];
    let details = format!(
        "S3 100k: {BIG} objects (one 3 KB JPEG each) under one prefix, uploaded in {} ({BIG_UPLOADS}          PUTs in flight). Listing only (`--dry-run --include no-such-name --allow-empty`): {}          wall, {:.1} MiB peak RSS, {listing_pages} listing pages ({listing_first} first page),          {listing_gets} GETs. Whole dry run (`--dry-run --concurrency 32`): {} wall, {:.1} MiB          peak RSS, {dry_pages} pages ({dry_first} first page), {dry_gets} ranged GETs.",
        secs(upload),
        secs(listing.wall),
        listing.rss_mib(),
        secs(dry.wall),
        dry.rss_mib(),
    );
    let json = json!({
        "objects": BIG,
        "upload_secs": upload.as_secs_f64(),
        "listing": { "pages": listing_pages, "first_pages": listing_first, "gets": listing_gets, "run": listing.json() },
        "dry_run": { "pages": dry_pages, "first_pages": dry_first, "gets": dry_gets, "run": dry.json() },
    });
    Ok((rows, details, json))
}

/// Create the bucket and upload `count` images under `prefix/` (credentials are the test
/// server's, which accepts any), `uploads` at a time.
fn fill(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    count: usize,
    uploads: usize,
) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    liveness_batch::didit::install_tls();
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
        let mut puts = futures::stream::iter(0..count)
            .map(|i| async move {
                let key =
                    object_store::path::Path::from(format!("{prefix}/{:02}/{i:06}.jpg", i % 100));
                store
                    .put(&key, super::common::jpeg(900_000 + i as u64).into())
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("upload {key}: {e}"))
            })
            .buffer_unordered(uploads);
        while let Some(r) = puts.next().await {
            r?;
        }
        Ok(())
    })
}
