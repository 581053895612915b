//! Integration tests: every object of a bucket exactly once, under its exact key (odd keys,
//! listings over several pages, manifest URIs that differ by one '/'), a population that says
//! when it is not whole (a listing that stops midway: exit 9), sources with nothing to screen,
//! and the bad URIs and endpoints a user can type. Against the S3 test server on loopback and
//! small local stores that misbehave on purpose.

use std::path::Path;

use futures::StreamExt;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use serde_json::Value;
use sha2::Digest;

use crate::common;
use crate::storage::{Bucket, cell, prefix_scan, results, scan, scan_env};

/// The path of `key` in a request URL, encoded so the server reads back exactly `key` (a '/'
/// next to a '.' or '..' segment encoded too, so no URL layer resolves the segment).
pub(crate) fn url_path(key: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let dots = key.split('/').any(|s| s == "." || s == "..");
    let parts: Vec<String> = key.split('/').map(enc).collect();
    parts.join(if dots { "%2F" } else { "/" })
}

/// Upload `bytes` under exactly `key` (a signed PUT made here: the storage client cannot
/// address keys such as `a//b.jpg`).
async fn put_exact(b: &Bucket, key: &str, bytes: Vec<u8>) {
    let url = format!("{}/{}/{}", b.endpoint, b.name, url_path(key));
    let credential = AwsCredential {
        key_id: "test".into(),
        secret_key: "test".into(),
        token: None,
    };
    let mut request = HttpRequest::new(HttpRequestBody::from(bytes.clone()));
    *request.method_mut() = reqwest::Method::PUT;
    *request.uri_mut() = url.parse().unwrap();
    AwsAuthorizer::new(&credential, "s3", "us-east-1")
        .try_authorize(&mut request, None)
        .unwrap();
    // One client for every upload (making one loads the system's root certificates), with no
    // idle connection: a pooled one would die with the test runtime that opened it.
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let answer = HTTP
        .get_or_init(|| common::http().pool_max_idle_per_host(0).build().unwrap())
        .put(&url)
        .headers(request.headers().clone())
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "PUT {key:?}: {answer:?}");
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The server's log lines for this bucket: `(method, path and query)`.
fn requests(b: &Bucket) -> Vec<(String, String)> {
    let needle = format!(" /{}", b.name);
    std::fs::read_to_string(&b.log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once('"')?;
            let mut words = rest.split(' ');
            let method = words
                .next()?
                .trim_start_matches(|c: char| !c.is_ascii_uppercase());
            let target = words.next()?;
            (format!(" {target}").starts_with(&needle))
                .then(|| (method.to_string(), target.to_string()))
        })
        .collect()
}

fn object_gets(b: &Bucket) -> Vec<String> {
    requests(b)
        .into_iter()
        .filter(|(m, t)| m == "GET" && !t.contains("list-type=2"))
        .map(|(_, t)| t)
        .collect()
}

fn listings(b: &Bucket) -> usize {
    requests(b)
        .iter()
        .filter(|(m, t)| m == "GET" && t.contains("list-type=2"))
        .count()
}

fn end_line(out: &Path) -> Value {
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let last = journal.lines().last().unwrap();
    serde_json::from_str(last).unwrap()
}

/// The acceptance keys: `%`, non-ASCII, `+` and spaces, `//`, `.` and `..` segments, a tab;
/// folder markers beside them; a prefix that is not ASCII.
#[tokio::test]
async fn every_odd_key_is_screened_once_under_its_exact_key_and_folder_markers_are_ignored() {
    let Some(b) = Bucket::new().await else { return };
    let keys = [
        "q3/pct%20x.jpg",
        "q3/ünïcødé.jpg",
        "q3/plus+sign space.jpg",
        "q3/a//b.jpg",
        "q3/./x.jpg",
        "q3/a/../b.jpg",
        "q3/tab\tkey.jpg",
        "q3/pct%2520y.jpg",
    ];
    let mut expected = std::collections::BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        let bytes = common::jpeg(100 + i as u64);
        expected.insert(k.strip_prefix("q3/").unwrap().to_string(), sha256(&bytes));
        put_exact(&b, k, bytes).await;
    }
    // Near-twins that must never be fetched in their place.
    for (i, k) in ["a/b.jpg", "x.jpg", "b.jpg"].iter().enumerate() {
        let bytes = common::jpeg(200 + i as u64);
        expected.insert(k.to_string(), sha256(&bytes));
        put_exact(&b, &format!("q3/{k}"), bytes).await;
    }
    // Folder markers, as consoles make them.
    put_exact(&b, "q3/", Vec::new()).await;
    put_exact(&b, "q3/sub/", Vec::new()).await;
    put_exact(&b, "ñandú/uno.jpg", common::jpeg(300)).await;

    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (src, out_s) = (b.uri("q3/"), out.display().to_string());
    let run = scan(&[&src, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(run.code, 0, "every image has a result: {run:?}");
    let rows = results(&out);
    let got: std::collections::BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r["key"].clone(), r["sha256"].clone()))
        .collect();
    assert_eq!(got, expected, "each key's own object, under its exact key");
    for r in &rows {
        assert_eq!(r["class"], "result", "{r:?}");
        assert_eq!(r["path"], b.uri(&format!("q3/{}", r["key"])), "{r:?}");
    }
    assert_eq!(emu.stats().requests, expected.len() as u64, "one call each");
    let gets = object_gets(&b);
    assert_eq!(gets.len(), expected.len(), "one GET per object: {gets:#?}");
    let unique: std::collections::BTreeSet<&String> = gets.iter().collect();
    assert_eq!(
        unique.len(),
        gets.len(),
        "no object fetched twice: {gets:#?}"
    );
    // Each key encoded once in its URL (the server's log shows non-ASCII decoded).
    let bucket_path = format!("/{}/q3/", b.name);
    for one in [
        "pct%2520x.jpg",
        "pct%252520y.jpg",
        "plus+sign%20space.jpg",
        "a//b.jpg",
        "ünïcødé.jpg",
    ] {
        let target = format!("{bucket_path}{one}");
        assert_eq!(
            gets.iter().filter(|g| **g == target).count(),
            1,
            "{target}: {gets:#?}"
        );
    }
    assert_eq!(listings(&b), 1, "the first (only) page requested once");
    let ignored = std::fs::read_to_string(out.join("ignored.csv")).unwrap();
    for marker in ["q3/", "q3/sub/"] {
        assert!(
            ignored.contains(&format!(
                "{},folder marker (an empty object ending in '/')",
                b.uri(marker)
            )),
            "{ignored}"
        );
    }

    // A rerun: no GET, no call.
    let rerun = scan(&[&src, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(emu.stats().requests, expected.len() as u64);
    assert_eq!(object_gets(&b).len(), expected.len());

    // A prefix that is not ASCII is listed as written.
    let out2 = dir.path().join("out2");
    let run = b.scan("ñandú/", &out2, &emu).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(cell(&results(&out2), "uno.jpg", "class"), "result");
}

/// 1,001 objects: the listing's second page holds an odd key and the image after it; each
/// page is requested once and nothing is lost.
#[tokio::test]
async fn a_listing_over_two_pages_with_an_odd_key_on_the_second_loses_nothing() {
    let Some(b) = Bucket::new().await else { return };
    let b = std::sync::Arc::new(b);
    futures::stream::iter(0..1000)
        .map(|i| {
            let b = b.clone();
            async move { put_exact(&b, &format!("big/n{i:04}.txt"), b"x".to_vec()).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    put_exact(&b, "big/z//odd.jpg", common::jpeg(1)).await;
    put_exact(&b, "big/zz.jpg", common::jpeg(2)).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = b.scan("big/", &out, &emu).await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = results(&out);
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, ["z//odd.jpg", "zz.jpg"]);
    assert!(rows.iter().all(|r| r["class"] == "result"), "{rows:?}");
    let ignored = std::fs::read_to_string(out.join("ignored.csv")).unwrap();
    assert_eq!(
        ignored.lines().count(),
        1001,
        "a header and 1,000 text objects"
    );
    assert_eq!(listings(&b), 2, "two pages, each requested once");
    assert_eq!(
        object_gets(&b).len(),
        2,
        "the text objects are never downloaded"
    );
    let end = end_line(&out);
    assert_eq!(end["outcome"], "completed");
    assert_eq!(end["inputs"], 2);
    assert_eq!(end["ignored"], 1000);
}

/// Manifest URIs are used exactly as written: two keys that differ by one '/' are two objects,
/// each with its own result; URIs that name no object get their own clear error.
#[tokio::test]
async fn manifest_uris_are_never_normalised_into_another_key() {
    let Some(b) = Bucket::new().await else { return };
    let (double, single, slash) = (common::jpeg(7), common::jpeg(8), common::jpeg(9));
    put_exact(&b, "dbl//double.jpg", double.clone()).await;
    put_exact(&b, "dbl/double.jpg", single.clone()).await;
    put_exact(&b, "dbl/double.jpg/", slash.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = common::write(
        dir.path(),
        "m.csv",
        format!(
            "id,path\ntwo,{}\none,{}\nend,{}\nnone,s3:///x.jpg\nbare,s3://{}\nbare2,s3://{}/\naz,az://{}/x.jpg\n",
            b.uri("dbl//double.jpg"),
            b.uri("dbl/double.jpg"),
            b.uri("dbl/double.jpg/"),
            b.name,
            b.name,
            b.name,
        )
        .as_bytes(),
    );
    let emu = common::emulator(|_| {}).await;
    let out = dir.path().join("out");
    let (m, out_s) = (manifest.display().to_string(), out.display().to_string());
    let run = scan(&[&m, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(run.code, 1, "four rows cannot be read: {run:?}");
    let rows = results(&out);
    assert_eq!(cell(&rows, "two", "sha256"), sha256(&double));
    assert_eq!(cell(&rows, "one", "sha256"), sha256(&single));
    assert_eq!(cell(&rows, "end", "sha256"), sha256(&slash));
    for id in ["two", "one", "end"] {
        assert_eq!(cell(&rows, id, "class"), "result", "{id}");
    }
    assert_eq!(cell(&rows, "two", "path"), b.uri("dbl//double.jpg"));
    assert_eq!(emu.stats().requests, 3);
    for (id, says) in [
        (
            "none",
            "s3:///x.jpg is not a bucket URI: write it as s3://BUCKET/PREFIX/",
        ),
        ("bare", "names a bucket, not an object"),
        ("bare2", "names a bucket, not an object"),
    ] {
        assert_eq!(cell(&rows, id, "class"), "invalid_input", "{id}");
        assert_eq!(cell(&rows, id, "action"), "fix_input", "{id}");
        assert!(cell(&rows, id, "error").contains(says), "{id}: {rows:?}");
    }
    // az:// is built, but no Azure account is configured here: the row cannot be read until
    // one is (a source error, to rerun), never another store's object.
    assert_eq!(cell(&rows, "az", "class"), "source_error");
    assert_eq!(cell(&rows, "az", "action"), "rerun");
    assert!(
        cell(&rows, "az", "error").contains(&format!(
            "cannot set up the client for az://{}/: Generic MicrosoftAzure error: Account must \
             be specified",
            b.name
        )),
        "{rows:?}"
    );

    // Resumed: each object row is looked up by its exact key; nothing is downloaded or sent.
    let gets = object_gets(&b).len();
    let rerun = scan(&[&m, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
    assert_eq!(rerun.code, 1, "{rerun:?}");
    assert_eq!(emu.stats().requests, 3);
    assert_eq!(object_gets(&b).len(), gets);
}

/// A mistyped prefix lists nothing: exit 2 naming it, before anything is written; with
/// --allow-empty the run completes with nothing to do. An endpoint with a query or fragment
/// is refused before any request.
#[tokio::test]
async fn a_source_with_nothing_to_screen_and_a_bad_endpoint_are_usage_errors() {
    let Some(b) = Bucket::new().await else { return };
    b.put("q3/notes.txt", b"text".to_vec()).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    for prefix in ["q4/", "q3/"] {
        let src = b.uri(prefix);
        let run = scan(&[&src, "--out", &out_s], &b.endpoint, &emu.base_url()).await;
        run.exited_saying(2, &format!("{src} holds no image to screen"));
        assert!(!out.exists(), "nothing written");
    }
    let run = scan(
        &[&b.uri("q4/"), "--out", &out_s, "--allow-empty"],
        &b.endpoint,
        &emu.base_url(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(end_line(&out)["inputs"], 0);

    let folder = dir.path().join("empty");
    std::fs::create_dir(&folder).unwrap();
    let folder_s = folder.display().to_string();
    let run = scan(
        &[
            &folder_s,
            "--out",
            &dir.path().join("o2").display().to_string(),
        ],
        &b.endpoint,
        &emu.base_url(),
    )
    .await;
    run.exited_saying(2, &format!("{folder_s} holds no image to screen"));

    for endpoint in [
        format!("{}/?x=1", b.endpoint),
        format!("{}#frag", b.endpoint),
    ] {
        let run = scan(
            &[
                &b.uri("q3/"),
                "--out",
                &dir.path().join("o3").display().to_string(),
            ],
            &endpoint,
            &emu.base_url(),
        )
        .await;
        run.exited_saying(2, "has a query or a fragment ('?' or '#')");
    }
    assert_eq!(emu.stats().requests, 0);
}

/// A store whose listing gives one page and then, while `broken`, fails on the second (an
/// answer no retry changes); mended, the second page lists one more object. Its objects are
/// all readable, except one deleted since it was listed.
async fn store_that_stops_listing(
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, Uri, header};
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    let image = common::jpeg(5);
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (image, broken) = (image.clone(), broken.clone());
        async move {
            let query = uri.query().unwrap_or("");
            if query.contains("list-type=2")
                && query.contains("continuation-token")
                && !broken.load(Ordering::SeqCst)
            {
                return (
                    StatusCode::OK,
                    "<ListBucketResult><IsTruncated>false</IsTruncated>\
                     <Contents><Key>p/z.jpg</Key><ETag>&quot;e1&quot;</ETag><Size>2000</Size></Contents>\
                     </ListBucketResult>",
                )
                    .into_response();
            }
            if query.contains("list-type=2") && query.contains("continuation-token") {
                return (
                    StatusCode::BAD_REQUEST,
                    "<Error><Code>InvalidArgument</Code><Message>The continuation token \
                     provided is incorrect</Message></Error>",
                )
                    .into_response();
            }
            if query.contains("list-type=2") {
                return (
                    StatusCode::OK,
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>\
                     <IsTruncated>true</IsTruncated>\
                     <Contents><Key>p/a.jpg</Key><ETag>&quot;e1&quot;</ETag><Size>2000</Size></Contents>\
                     <Contents><Key>p/b.jpg</Key><ETag>&quot;e1&quot;</ETag><Size>2000</Size></Contents>\
                     <Contents><Key>p/gone.jpg</Key><ETag>&quot;e1&quot;</ETag><Size>2000</Size></Contents>\
                     <NextContinuationToken>page2</NextContinuationToken></ListBucketResult>",
                )
                    .into_response();
            }
            if uri.path().ends_with("/gone.jpg") {
                return (
                    StatusCode::NOT_FOUND,
                    "<Error><Code>NoSuchKey</Code><Message>The specified key does not \
                     exist.</Message></Error>",
                )
                    .into_response();
            }
            ([(header::ETAG, "\"e1\"")], image).into_response()
        }
    });
    common::serve(app).await
}

/// A listing that stops midway: the run ends with exit 9, the journal's end line and
/// summary.json say "incomplete" with the source and the last key reached, every output
/// warns, and the reconciliation does not close. An object gone since it was listed is a
/// source error to rerun.
#[tokio::test]
async fn a_listing_that_stops_midway_makes_the_run_incomplete_with_exit_9() {
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (endpoint, server) = store_that_stops_listing(broken.clone()).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = prefix_scan(&endpoint, &out, &emu).await;
    run.exited_saying(
        9,
        "INCOMPLETE POPULATION: the listing of s3://selfies/p/ stopped after the key \"gone.jpg\"",
    );
    assert!(!run.stderr.contains("Run completed"), "{}", run.stderr);
    let rows = results(&out);
    assert_eq!(cell(&rows, "a.jpg", "class"), "result");
    assert_eq!(cell(&rows, "gone.jpg", "class"), "source_error");
    assert_eq!(cell(&rows, "gone.jpg", "action"), "rerun");
    assert!(
        cell(&rows, "gone.jpg", "error").contains("was listed but is gone now"),
        "{rows:?}"
    );
    let end = end_line(&out);
    assert_eq!(end["outcome"], "incomplete");
    assert_eq!(end["exit_code"], 9);
    assert_eq!(end["incomplete"]["source"], "s3://selfies/p/");
    assert_eq!(end["incomplete"]["last_key"], "gone.jpg");
    assert!(
        end["incomplete"]["reason"]
            .as_str()
            .unwrap()
            .contains("400 Bad Request"),
        "{end}"
    );
    let s = common::summary(&out);
    assert_eq!(s["outcome"], "incomplete");
    let warnings = s["warnings"].to_string();
    assert!(
        warnings.contains("INCOMPLETE POPULATION") && warnings.contains("gone.jpg"),
        "{warnings}"
    );
    assert_eq!(s["audit"]["reconciliation"]["closes"], false, "{s}");
    for file in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(text.contains("INCOMPLETE POPULATION"), "{file}");
    }
    // The dry run says the same.
    let dry = scan(
        &[
            "s3://selfies/p/",
            "--out",
            &out.display().to_string(),
            "--dry-run",
        ],
        &endpoint,
        &emu.base_url(),
    )
    .await;
    assert_eq!(dry.code, 9, "{dry:?}");
    assert!(dry.stdout.contains("INCOMPLETE"), "{}", dry.stdout);

    // The store mended, the same command lists to the end: the population is whole again and
    // the outputs no longer warn.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let calls = emu.stats().requests;
    let rerun = prefix_scan(&endpoint, &out, &emu).await;
    assert_eq!(rerun.code, 1, "gone.jpg still has no result: {rerun:?}");
    assert_eq!(
        emu.stats().requests,
        calls,
        "z.jpg, listed now, holds a.jpg's content: its answer is reused"
    );
    assert_eq!(cell(&results(&out), "z.jpg", "class"), "result");
    let end = end_line(&out);
    assert_eq!(end["outcome"], "completed");
    assert!(end.get("incomplete").is_none(), "{end}");
    let s = common::summary(&out);
    assert_eq!(s["outcome"], "completed");
    assert!(
        !s["warnings"].to_string().contains("INCOMPLETE"),
        "{}",
        s["warnings"]
    );
    assert_eq!(s["audit"]["reconciliation"]["closes"], true, "{s}");
    server.abort();
}

/// A bucket prefix in 4 shards, by `--shard K/4` and by `--shard-from-env` with
/// `JOB_COMPLETION_INDEX`: each dry run counts its share, the shards together hold every
/// object exactly once, and `report` merges them with the coverage proof.
#[tokio::test]
async fn four_shards_of_one_prefix_merge_with_every_object_exactly_once() {
    const N: u32 = 4;
    let Some(b) = Bucket::new().await else { return };
    let mut keys = std::collections::BTreeSet::new();
    for i in 0..16u64 {
        let key = if i == 3 {
            "s/odd//key 3.jpg".to_string()
        } else {
            format!("s/img{i:02}.jpg")
        };
        put_exact(&b, &key, common::jpeg(500 + i)).await;
        keys.insert(key.strip_prefix("s/").unwrap().to_string());
    }
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let src = b.uri("s/");
    let report = |dirs: Vec<String>, merged: String| async move {
        let mut args: Vec<&str> = vec!["report"];
        args.extend(dirs.iter().map(String::as_str));
        args.extend(["--out", &merged]);
        common::run_bin(&args, None, None).await
    };

    let mut dry_total = 0;
    for k in 1..=N {
        let shard = format!("{k}/{N}");
        let dry = scan(
            &[
                &src,
                "--out",
                &dir.path().join("dry").display().to_string(),
                "--shard",
                &shard,
                "--dry-run",
            ],
            &b.endpoint,
            &emu.base_url(),
        )
        .await;
        assert_eq!(dry.code, 0, "{dry:?}");
        let found: u64 = dry
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("images found"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        dry_total += found;
    }
    assert_eq!(dry_total, keys.len() as u64, "the dry runs' shares add up");
    assert_eq!(emu.stats().requests, 0);

    for (how, tag) in [("--shard", "k"), ("--shard-from-env", "env")] {
        let mut dirs = Vec::new();
        for k in 1..=N {
            let out = dir.path().join(format!("{tag}-{k}")).display().to_string();
            let index = (k - 1).to_string();
            let shard = format!("{k}/{N}");
            let total = N.to_string();
            let run = if how == "--shard" {
                scan(
                    &[&src, "--out", &out, "--shard", &shard],
                    &b.endpoint,
                    &emu.base_url(),
                )
                .await
            } else {
                scan_env(
                    &[
                        &src,
                        "--out",
                        &out,
                        "--shard-from-env",
                        "--shard-total",
                        &total,
                    ],
                    &b.endpoint,
                    &emu.base_url(),
                    &[("JOB_COMPLETION_INDEX", &index)],
                )
                .await
            };
            assert_eq!(run.code, 0, "{how} {k}: {run:?}");
            dirs.push(out);
        }
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for d in &dirs {
            for r in results(Path::new(d)) {
                assert_eq!(r["class"], "result", "{r:?}");
                *seen.entry(r["key"].clone()).or_default() += 1;
            }
        }
        assert!(seen.values().all(|n| *n == 1), "{how}: {seen:?}");
        assert_eq!(
            seen.keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            keys,
            "{how}: every object in one shard"
        );
        let merged = dir
            .path()
            .join(format!("{tag}-merged"))
            .display()
            .to_string();
        let rep = report(dirs, merged.clone()).await;
        assert_eq!(rep.code, 0, "{rep:?}");
        assert!(
            rep.stderr.contains("4 of 4 shards merged") && rep.stderr.contains("(verified)"),
            "{}",
            rep.stderr
        );
        let s = common::summary(Path::new(&merged));
        assert_eq!(s["shards"]["verified"], true, "{s}");
        assert_eq!(s["items"]["total"], keys.len());
    }
    assert_eq!(emu.stats().requests, 2 * keys.len() as u64);
}

/// `--include '*.jpg' --exclude 'tmp/**'` on a folder and on a bucket prefix: the same keys
/// taken, the others in ignored.csv with the pattern, the dry run's counts the run's, and a
/// resume with other patterns refused as a settings change.
#[tokio::test]
async fn include_and_exclude_take_the_same_subset_of_a_folder_and_a_prefix() {
    let Some(b) = Bucket::new().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("photos");
    let files = [
        ("a.jpg", common::jpeg(61)),
        ("2026/b.jpg", common::jpeg(62)),
        ("2026/c.png", common::png(63)),
        ("tmp/d.jpg", common::jpeg(64)),
        ("tmp/deep/e.jpg", common::jpeg(65)),
    ];
    for (k, bytes) in &files {
        common::write(&folder, k, bytes);
        put_exact(&b, &format!("f/{k}"), bytes.clone()).await;
    }
    let emu = common::emulator(|_| {}).await;
    let patterns = ["--include", "*.jpg", "--exclude", "tmp/**"];
    for (src, shown) in [
        (
            folder.display().to_string(),
            format!("{}/", folder.display()),
        ),
        (b.uri("f/"), b.uri("f/")),
    ] {
        let out = dir.path().join(format!("out-{}", src.len()));
        let out_s = out.display().to_string();
        let mut args = vec![src.as_str(), "--out", &out_s];
        args.extend(patterns);
        let mut dry_args = args.clone();
        dry_args.push("--dry-run");
        let dry = scan(&dry_args, &b.endpoint, &emu.base_url()).await;
        assert_eq!(dry.code, 0, "{dry:?}");
        assert!(
            dry.stdout.contains("images found          2\n"),
            "{}",
            dry.stdout
        );
        assert!(
            dry.stdout.contains("left out by patterns  3\n"),
            "{}",
            dry.stdout
        );

        let run = scan(&args, &b.endpoint, &emu.base_url()).await;
        assert_eq!(run.code, 0, "{run:?}");
        let keys: Vec<String> = results(&out).iter().map(|r| r["key"].clone()).collect();
        assert_eq!(keys, ["2026/b.jpg", "a.jpg"], "{src}");
        let ignored = std::fs::read_to_string(out.join("ignored.csv")).unwrap();
        for (key, why) in [
            ("2026/c.png", "not matched by --include *.jpg"),
            ("tmp/d.jpg", "excluded by --exclude tmp/**"),
            ("tmp/deep/e.jpg", "excluded by --exclude tmp/**"),
        ] {
            assert!(
                ignored.contains(&format!("{shown}{key},{why}")),
                "{ignored}"
            );
        }
        let end = end_line(&out);
        assert_eq!(
            (end["inputs"].as_u64(), end["ignored"].as_u64()),
            (Some(2), Some(3))
        );

        // Other patterns on resume: a settings change, refused before anything is sent.
        let other = scan(
            &[src.as_str(), "--out", &out_s, "--include", "*.png"],
            &b.endpoint,
            &emu.base_url(),
        )
        .await;
        other.exited_saying(
            2,
            "--include (which items the run takes): journal has *.jpg, this run has *.png",
        );
    }
    assert_eq!(emu.stats().requests, 4);

    // A pattern that is not a glob is a usage error.
    let bad = scan(
        &[
            &b.uri("f/"),
            "--out",
            &dir.path().join("o").display().to_string(),
            "--exclude",
            "a[",
        ],
        &b.endpoint,
        &emu.base_url(),
    )
    .await;
    bad.exited_saying(2, "--exclude \"a[\" is not a valid glob");
}

/// A store that serves one listed image and records each object request's Range header.
async fn store_recording_ranges() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    tokio::task::JoinHandle<()>,
) {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::IntoResponse;
    let image = common::jpeg(9);
    let size = image.len();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let (image, log) = (image.clone(), log.clone());
        async move {
            if uri.query().unwrap_or("").contains("list-type=2") {
                let page = format!(
                    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents>\
                     <Key>p/a.jpg</Key><ETag>&quot;e9&quot;</ETag><Size>{size}</Size>\
                     </Contents></ListBucketResult>"
                );
                return (StatusCode::OK, page).into_response();
            }
            let range = headers
                .get(header::RANGE)
                .map(|v| v.to_str().unwrap().to_string());
            log.lock().unwrap().push(range.clone());
            let end = match range.as_deref().and_then(|r| r.strip_prefix("bytes=0-")) {
                Some(last) => (last.parse::<usize>().unwrap() + 1).min(image.len()),
                None => image.len(),
            };
            let status = if end < image.len() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            (
                status,
                [
                    (header::ETAG, "\"e9\"".to_string()),
                    (
                        header::CONTENT_RANGE,
                        format!("bytes 0-{}/{}", end - 1, image.len()),
                    ),
                ],
                image[..end].to_vec(),
            )
                .into_response()
        }
    });
    let (url, task) = common::serve(app).await;
    (url, seen, task)
}

/// A bucket dry run reads only the bytes the format check needs (a ranged GET); the run
/// itself reads the object whole.
#[tokio::test]
async fn a_bucket_dry_run_reads_only_the_first_bytes_of_each_object() {
    let (endpoint, seen, server) = store_recording_ranges().await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let dry = scan(
        &["s3://selfies/p/", "--out", &out, "--dry-run"],
        &endpoint,
        &emu.base_url(),
    )
    .await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("would send            1\n"),
        "{}",
        dry.stdout
    );
    assert_eq!(*seen.lock().unwrap(), [Some("bytes=0-1023".to_string())]);
    let run = scan(
        &["s3://selfies/p/", "--out", &out],
        &endpoint,
        &emu.base_url(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&None),
        "the run reads it whole"
    );
    assert_eq!(emu.stats().requests, 1);
    server.abort();
}

/// The environment that points gs:// at a test server speaking the XML API (the S3 test
/// server does), with a bearer token.
fn gcs_env(endpoint: &str) -> [(&str, &str); 2] {
    [
        ("GOOGLE_BASE_URL", endpoint),
        ("GOOGLE_BEARER_TOKEN", "gcs-token-never-printed-5c1e"),
    ]
}

/// `scan SRC --out OUT` through the store at `endpoint`, for s3:// and gs:// alike.
async fn scan_store(
    src: &str,
    out: &Path,
    endpoint: &str,
    emu: &liveness_batch::emulator::Emulator,
) -> common::Run {
    let out = out.display().to_string();
    let env = gcs_env(endpoint);
    scan_env(&[src, "--out", &out], endpoint, &emu.base_url(), &env).await
}

/// gs:// end to end against the test server's XML API: a prefix scanned (odd keys included),
/// a rerun with no GET and no call, a changed object screened again.
#[tokio::test]
async fn a_gs_prefix_is_screened_resumed_without_reading_and_a_change_is_seen() {
    let Some(b) = Bucket::new().await else { return };
    put_exact(&b, "g/a.jpg", common::jpeg(71)).await;
    put_exact(&b, "g/pct%20 b.jpg", common::jpeg(72)).await;
    put_exact(&b, "g/x//c.jpg", common::jpeg(73)).await;
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let src = format!("gs://{}/g/", b.name);
    let env = gcs_env(&b.endpoint);
    let run = scan_env(&[&src, "--out", &out], &b.endpoint, &emu.base_url(), &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.all().contains("gcs-token-never-printed"), "{run:?}");
    let rows = results(Path::new(&out));
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, ["a.jpg", "pct%20 b.jpg", "x//c.jpg"]);
    assert_eq!(
        cell(&rows, "pct%20 b.jpg", "sha256"),
        sha256(&common::jpeg(72))
    );
    assert_eq!(
        cell(&rows, "a.jpg", "path"),
        format!("gs://{}/g/a.jpg", b.name)
    );
    assert_eq!((emu.stats().requests, object_gets(&b).len()), (3, 3));

    let rerun = scan_env(&[&src, "--out", &out], &b.endpoint, &emu.base_url(), &env).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(
        (emu.stats().requests, object_gets(&b).len()),
        (3, 3),
        "0 GETs, 0 calls"
    );

    put_exact(&b, "g/a.jpg", common::jpeg(74)).await;
    let changed = scan_env(&[&src, "--out", &out], &b.endpoint, &emu.base_url(), &env).await;
    assert_eq!(changed.code, 0, "{changed:?}");
    assert_eq!((emu.stats().requests, object_gets(&b).len()), (4, 4));
    assert_eq!(
        cell(&results(Path::new(&out)), "a.jpg", "sha256"),
        sha256(&common::jpeg(74))
    );
}

/// A store that lists one object and then answers every object request with `status` (412:
/// the object changed since it was listed), or answers everything with `status` (`refuse_all`:
/// a key it does not accept).
async fn answering_store(status: u16, refuse_all: bool) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, Uri};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move |uri: Uri| async move {
        let code = StatusCode::from_u16(status).unwrap();
        if !refuse_all && uri.query().unwrap_or("").contains("list-type=2") {
            return (
                StatusCode::OK,
                "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>p/a.jpg</Key>\
                 <ETag>&quot;e1&quot;</ETag><Size>2000</Size></Contents></ListBucketResult>",
            )
                .into_response();
        }
        let body = if status == 412 {
            "<Error><Code>PreconditionFailed</Code></Error>"
        } else {
            "<Error><Code>AccessDenied</Code><Message>Invalid credentials</Message></Error>"
        };
        (code, body).into_response()
    });
    common::serve(app).await
}

/// For s3:// and gs:// alike: an object whose ETag changed between the listing and the read
/// (412) is a source error to rerun, never sent; a key the store does not accept stops the
/// run with exit 7 before any Didit call.
#[tokio::test]
async fn a_stale_version_is_a_source_error_and_a_wrong_key_exits_7_for_s3_and_gs() {
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    for scheme in ["s3", "gs"] {
        let (endpoint, server) = answering_store(412, false).await;
        let out = dir.path().join(format!("{scheme}-412"));
        let src = format!("{scheme}://selfies/p/");
        let run = scan_store(&src, &out, &endpoint, &emu).await;
        assert_eq!(run.code, 1, "{scheme}: {run:?}");
        let rows = results(&out);
        assert_eq!(cell(&rows, "a.jpg", "class"), "source_error", "{scheme}");
        assert_eq!(cell(&rows, "a.jpg", "action"), "rerun", "{scheme}");
        assert!(
            cell(&rows, "a.jpg", "error").contains("changed after it was listed"),
            "{scheme}: {rows:?}"
        );
        server.abort();

        let (endpoint, server) = answering_store(403, true).await;
        let out = dir.path().join(format!("{scheme}-403"));
        let run = scan_store(&src, &out, &endpoint, &emu).await;
        assert_eq!(run.code, 7, "{scheme}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("storage refused {scheme}://selfies/")),
            "{}",
            run.stderr
        );
        assert!(!out.exists(), "nothing written");
        assert!(!run.all().contains("never-printed"), "{run:?}");
        server.abort();
    }
    assert_eq!(emu.stats().requests, 0, "no Didit call");
}
