//! Integration tests: the Didit emulator over real HTTP on loopback (auth, validation, credits,
//! the sliding window, injected faults, results derived from images, the log, the subcommand).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use image::{ImageFormat, Rgb, RgbImage};
use liveness_batch::emulator::{self, Emulator, EmulatorConfig, EmulatorError, Faults};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common;

const KEY: &str = "emu_test_key_7c1e";
const PERMISSION: &str = "You do not have permission to perform this action.";
const NO_CREDITS: &str = "You don't have enough credits to perform this request. Please top up at https://business.didit.me";

fn client() -> reqwest::Client {
    common::http().no_proxy().build().unwrap()
}

async fn emu(config: EmulatorConfig) -> Emulator {
    emulator::start(config, 0).await.expect("start emulator")
}

fn image_part(bytes: Vec<u8>, name: &str) -> Part {
    Part::bytes(bytes).file_name(name.to_string())
}

/// A form with the image and text fields.
fn form(bytes: Vec<u8>, name: &str, fields: &[(&str, &str)]) -> Form {
    let mut f = Form::new().part("user_image", image_part(bytes, name));
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

fn url(e: &Emulator) -> String {
    format!("{}/v3/passive-liveness/", e.base_url())
}

async fn post_with_key(e: &Emulator, key: Option<&str>, form: Form) -> reqwest::Response {
    let mut req = client().post(url(e)).multipart(form);
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    req.send().await.expect("send")
}

async fn post(e: &Emulator, form: Form) -> reqwest::Response {
    post_with_key(e, Some(KEY), form).await
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, value)
}

fn no_rate_headers(r: &reqwest::Response) {
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ] {
        assert!(
            r.headers().get(h).is_none(),
            "{h} on a {} response",
            r.status()
        );
    }
}

fn header(r: &reqwest::Response, name: &str) -> u64 {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn png_of(img: &RgbImage) -> Vec<u8> {
    common::encode(img, ImageFormat::Png)
}

/// A PNG whose header declares `side` x `side` pixels (valid CRC), with one tiny data chunk.
fn bomb_png(side: u32) -> Vec<u8> {
    let mut png = png_of(&RgbImage::from_pixel(1, 1, Rgb([9, 9, 9])));
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn risks(body: &Value) -> Vec<String> {
    body["liveness"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["risk"].as_str().unwrap().to_string())
        .collect()
}

fn expected_log_type(risk: &str) -> &'static str {
    match risk {
        "NO_FACE_DETECTED"
        | "LOW_LIVENESS_SCORE"
        | "LIVENESS_FACE_ATTACK"
        | "FACE_IN_BLOCKLIST"
        | "POSSIBLE_FACE_IN_BLOCKLIST" => "error",
        "MULTIPLE_FACES_DETECTED"
        | "LOW_FACE_QUALITY"
        | "LOW_FACE_LUMINANCE"
        | "HIGH_FACE_LUMINANCE" => "warning",
        "DUPLICATED_FACE" | "POSSIBLE_DUPLICATED_FACE" => "information",
        other => panic!("unexpected risk {other}"),
    }
}

/// The first seed whose JPEG is Approved with no warning (hash-derived findings are rare).
async fn clean_jpeg(e: &Emulator) -> Vec<u8> {
    for seed in 1000.. {
        let bytes = common::jpeg(seed);
        let (s, body) = json_of(
            post(
                e,
                form(bytes.clone(), "a.jpg", &[("save_api_request", "false")]),
            )
            .await,
        )
        .await;
        assert_eq!(s, 200);
        if body["liveness"]["warnings"].as_array().unwrap().is_empty() {
            return bytes;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn missing_or_wrong_key_is_403_and_401_in_that_mode() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    for key in [None, Some("wrong"), Some("")] {
        let r = post_with_key(&e, key, form(common::jpeg(1), "a.jpg", &[])).await;
        no_rate_headers(&r);
        assert_eq!(json_of(r).await, (403, json!({ "detail": PERMISSION })));
    }
    let mut config = EmulatorConfig::new(KEY);
    config.auth_401 = true;
    let e401 = emu(config).await;
    let r = post_with_key(&e401, Some("wrong"), form(common::jpeg(1), "a.jpg", &[])).await;
    assert_eq!(
        json_of(r).await,
        (401, json!({ "detail": "Invalid API Key." }))
    );
    // The balance endpoint is authenticated the same way.
    let r = client()
        .get(format!("{}/v3/billing/balance/", e.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, (403, json!({ "detail": PERMISSION })));
    assert_eq!(
        e.stats().by_status.get(&403),
        Some(&3),
        "balance reads are counted apart"
    );
    assert_eq!(e.stats().balance_reads, 1);
    assert_eq!(e.stats().credits_used, 0);
    e.shutdown().await;
    e401.shutdown().await;
}

#[tokio::test]
async fn every_validation_error_has_didits_body() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let jpg = common::jpeg(2);
    let threshold_case = |value: &str, message: &str| {
        let f = form(
            jpg.clone(),
            "a.jpg",
            &[("face_liveness_score_decline_threshold", value)],
        );
        (
            f,
            json!({ "face_liveness_score_decline_threshold": [message] }),
        )
    };
    let png = common::png(2);
    let cases: Vec<(Form, Value)> = vec![
        (
            Form::new().text("vendor_data", "u1"),
            json!({"user_image": ["No file was submitted."]}),
        ),
        (
            form(b"hello".to_vec(), "notes.txt", &[]),
            json!({"user_image": ["File extension “txt” is not allowed. Allowed extensions are: tiff, jpg, jpeg, png, webp."]}),
        ),
        (
            form(vec![0xAB; 6 * 1024 * 1024], "big.jpg", &[]),
            json!({"user_image": ["File size should not exceed 5 MB"]}),
        ),
        (
            form(Vec::new(), "empty.jpg", &[]),
            json!({"user_image": ["The submitted file is empty."]}),
        ),
        (
            Form::new().text("user_image", "not a file"),
            json!({"user_image": ["The submitted data was not a file. Check the encoding type on the form."]}),
        ),
        threshold_case("101", "Ensure this value is less than or equal to 100."),
        threshold_case("-0.5", "Ensure this value is greater than or equal to 0."),
        threshold_case("high", "A valid number is required."),
        (
            form(jpg.clone(), "a.jpg", &[("rotate_image", "perhaps")]),
            json!({"rotate_image": ["Must be a valid boolean."]}),
        ),
        (
            form(jpg.clone(), "a.jpg", &[("save_api_request", "nope")]),
            json!({"save_api_request": ["Must be a valid boolean."]}),
        ),
        (
            form(jpg.clone(), "a.jpg", &[("metadata", "{not json")]),
            json!({"metadata": ["Value must be valid JSON."]}),
        ),
        (
            form(jpg.clone(), "a.jpg", &[("metadata", "[1, 2]")]),
            json!({"metadata": ["Value must be valid JSON."]}),
        ),
        (
            form(b"this is text, not a JPEG".to_vec(), "a.jpg", &[]),
            json!({"error": "Invalid user image format."}),
        ),
        (
            // A PNG cut off in the middle of its data.
            form(png[..png.len() / 3].to_vec(), "a.png", &[]),
            json!({"error": "Invalid user image format."}),
        ),
        (
            // Several fields wrong at once: every one is reported.
            form(
                b"x".to_vec(),
                "a.gif",
                &[
                    ("rotate_image", "2"),
                    ("face_liveness_score_decline_threshold", "1e3"),
                ],
            ),
            json!({
                "user_image": ["File extension “gif” is not allowed. Allowed extensions are: tiff, jpg, jpeg, png, webp."],
                "rotate_image": ["Must be a valid boolean."],
                "face_liveness_score_decline_threshold": ["Ensure this value is less than or equal to 100."]
            }),
        ),
    ];
    let n = cases.len() as u64;
    for (f, want) in cases {
        let r = post(&e, f).await;
        no_rate_headers(&r);
        assert_eq!(json_of(r).await, (400, want));
    }
    let stats = e.stats();
    assert_eq!(stats.by_status.get(&400), Some(&n));
    assert_eq!(stats.credits_used, 0, "400s are not billed");
    e.shutdown().await;
}

#[tokio::test]
async fn a_body_above_the_limit_gets_413() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let r = post(&e, form(vec![7u8; 17 * 1024 * 1024], "huge.jpg", &[])).await;
    assert_eq!(r.status().as_u16(), 413);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("413 Request Entity Too Large")
    );
    // The emulator keeps working.
    let r = post(&e, form(common::jpeg(3), "a.jpg", &[])).await;
    assert_eq!(r.status().as_u16(), 200);
    e.shutdown().await;
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_not_decoded() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    for side in [60_000u32, 1_000_000] {
        let r = post(&e, form(bomb_png(side), "bomb.png", &[])).await;
        assert_eq!(
            json_of(r).await,
            (400, json!({"error": "Invalid user image format."}))
        );
    }
    assert_eq!(e.stats().credits_used, 0);
    e.shutdown().await;
}

/// `GET /v3/billing/balance/` with the key: the status and the JSON body.
async fn get_balance(e: &Emulator) -> (u16, Value) {
    let r = client()
        .get(format!("{}/v3/billing/balance/", e.base_url()))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    json_of(r).await
}

#[tokio::test]
async fn credits_run_out_with_403_and_nothing_billed() {
    let mut config = EmulatorConfig::new(KEY);
    config.credits = Some(2);
    let e = emu(config).await;
    let balance = || async {
        get_balance(&e).await.1["balance"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(balance().await, "0.2000", "two credits at US$0.10");
    // A rejected file spends nothing.
    let r = post(&e, form(b"x".to_vec(), "a.txt", &[])).await;
    assert_eq!(r.status().as_u16(), 400);
    let r = post(&e, form(b"garbage".to_vec(), "a.png", &[])).await;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(balance().await, "0.2000", "two credits at US$0.10");
    for seed in 0..2 {
        let r = post(&e, form(common::jpeg(seed), "a.jpg", &[])).await;
        assert_eq!(r.status().as_u16(), 200);
    }
    assert_eq!(balance().await, "0.0000");
    let r = post(&e, form(common::jpeg(5), "a.jpg", &[])).await;
    assert_eq!(json_of(r).await, (403, json!({ "error": NO_CREDITS })));
    let stats = e.stats();
    assert_eq!(stats.credits_used, 2);
    assert_eq!(stats.credits_left, Some(0));
    assert_eq!(
        stats.by_status.get(&200),
        Some(&2),
        "2 results; the 3 balance reads are counted apart"
    );
    assert_eq!(stats.balance_reads, 3);
    e.shutdown().await;
}

#[tokio::test]
async fn unlimited_credits_show_a_large_balance() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let (s, body) = get_balance(&e).await;
    assert_eq!(s, 200);
    let balance: f64 = body["balance"].as_str().unwrap().parse().unwrap();
    assert!(balance > 1e6);
    assert!(body["balance"].as_str().unwrap().ends_with(".0000"));
    e.shutdown().await;
}

// Paused time: the window is counted on the emulator's clock, so however slow the machine the
// six requests fall in one window, and the wait for the next is not a real one.
#[tokio::test(start_paused = true)]
async fn sliding_window_limits_with_all_four_headers_then_recovers() {
    let mut config = EmulatorConfig::new(KEY);
    // The shortest window whose headers (whole seconds) still say something: the wait for the
    // oldest request to leave it is at most 2 s.
    config.rate_limit = Some((5, Duration::from_secs(2)));
    let e = emu(config).await;
    // Every admitted request counts, whatever its answer: four 400s and one 200.
    for _ in 0..4 {
        let r = post(&e, Form::new().text("vendor_data", "x")).await;
        assert_eq!(r.status().as_u16(), 400);
        no_rate_headers(&r);
    }
    let r = post(&e, form(common::jpeg(11), "a.jpg", &[])).await;
    assert_eq!(r.status().as_u16(), 200);
    no_rate_headers(&r);

    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = post(&e, form(common::jpeg(12), "a.jpg", &[])).await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(&r, "x-ratelimit-limit"), 5);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    let reset = header(&r, "x-ratelimit-reset");
    let retry_after = header(&r, "retry-after");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    // At most the window (2 s) after the answer, rounded up: however long the exchange took.
    assert!(
        reset > before && reset <= after + 3,
        "reset {reset}, sent at {before}, answered by {after}"
    );
    assert_eq!(
        json_of(r).await.1,
        json!({"detail": "Write request rate limit exceeded. You can make up to 5 requests per 2 seconds."})
    );
    // Rejected requests are not counted: another one is limited too, and is not billed.
    let r = post(&e, form(common::jpeg(13), "a.jpg", &[])).await;
    assert_eq!(r.status().as_u16(), 429);
    let stats = e.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.credits_used, 1);

    // After Retry-After the oldest request has left the window.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(50)).await;
    let r = post(&e, form(common::jpeg(14), "a.jpg", &[])).await;
    assert_eq!(r.status().as_u16(), 200);
    no_rate_headers(&r);
    e.shutdown().await;
}

#[tokio::test]
async fn a_disabled_limiter_never_answers_429() {
    let mut config = EmulatorConfig::new(KEY);
    config.rate_limit = None;
    let e = emu(config).await;
    for _ in 0..20 {
        let r = post(&e, Form::new()).await;
        assert_eq!(r.status().as_u16(), 400);
    }
    assert_eq!(e.stats().rate_limited, 0);
    e.shutdown().await;
}

fn faulty(faults: Faults) -> EmulatorConfig {
    let mut config = EmulatorConfig::new(KEY);
    config.faults = faults;
    config.credits = Some(10);
    config
}

/// An emulator whose every answer is the given fault, and its answer to one valid request.
async fn one_request_with(fault: impl FnOnce(&mut Faults)) -> (Emulator, reqwest::Response) {
    let mut faults = Faults::default();
    fault(&mut faults);
    let e = emu(faulty(faults)).await;
    let r = post(&e, form(common::jpeg(1), "a.jpg", &[])).await;
    (e, r)
}

#[tokio::test]
async fn fault_500_has_an_empty_body() {
    let (e, r) = one_request_with(|f| f.p500 = 1.0).await;
    assert_eq!(r.status().as_u16(), 500);
    no_rate_headers(&r);
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    assert_eq!(e.stats().credits_used, 0);
    e.shutdown().await;
}

#[tokio::test]
async fn fault_502_has_an_html_body() {
    let (e, r) = one_request_with(|f| f.p502 = 1.0).await;
    assert_eq!(r.status().as_u16(), 502);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<h1>502 Bad Gateway</h1>"));
    e.shutdown().await;
}

#[tokio::test]
async fn fault_503_says_unavailable() {
    let (e, r) = one_request_with(|f| f.p503 = 1.0).await;
    assert_eq!(
        json_of(r).await,
        (
            503,
            json!({"detail": "Service temporarily unavailable, try again later."})
        )
    );
    e.shutdown().await;
}

#[tokio::test]
async fn fault_429_is_spurious_with_headers() {
    let epoch_now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = epoch_now();
    let (e, r) = one_request_with(|f| f.p429 = 1.0).await;
    let after = epoch_now();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(&r, "x-ratelimit-limit"), 300);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    assert_eq!(header(&r, "retry-after"), 1);
    // A second after the answer was made, rounded up: however long the exchange took.
    let reset = header(&r, "x-ratelimit-reset");
    assert!(
        reset > before && reset <= after + 2,
        "reset {reset}, sent at {before}, answered by {after}"
    );
    assert_eq!(
        json_of(r).await.1["detail"],
        "Write request rate limit exceeded. You can make up to 300 requests per minute."
    );
    let stats = e.stats();
    assert_eq!(stats.by_status.get(&429), Some(&1));
    assert_eq!(stats.rate_limited, 0, "not from the limiter");
    e.shutdown().await;
}

#[tokio::test]
async fn a_spurious_429_carries_the_configured_retry_after() {
    fn epoch_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
    let mut config = faulty(Faults {
        p429: 1.0,
        ..Faults::default()
    });
    config.rate_limit = Some((10, Duration::from_secs(2)));
    config.spurious_retry_after = 0;
    let e = emu(config).await;
    let before = epoch_now();
    let r = post(&e, form(common::jpeg(1), "a.jpg", &[])).await;
    let after = epoch_now();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(&r, "retry-after"), 0);
    assert_eq!(header(&r, "x-ratelimit-limit"), 10);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    let reset = header(&r, "x-ratelimit-reset");
    assert!(
        (before..=after).contains(&reset),
        "a zero wait resets in the current second: {reset} not in {before}..={after}"
    );
    assert_eq!(
        json_of(r).await.1["detail"],
        "Write request rate limit exceeded. You can make up to 10 requests per 2 seconds."
    );
    assert_eq!(e.stats().rate_limited, 0, "not from the limiter");
    e.shutdown().await;

    let mut config = faulty(Faults {
        p429: 1.0,
        ..Faults::default()
    });
    config.spurious_retry_after = 45;
    let e = emu(config).await;
    let before = epoch_now();
    let r = post(&e, form(common::jpeg(1), "a.jpg", &[])).await;
    let after = epoch_now();
    assert_eq!(header(&r, "retry-after"), 45);
    let reset = header(&r, "x-ratelimit-reset");
    assert!(
        (before + 45..=after + 46).contains(&reset),
        "reset {reset} is 45 s after {before}..={after}"
    );
    e.shutdown().await;
}

#[tokio::test]
async fn fault_reset_drops_the_connection_without_an_answer() {
    let e = emu(faulty(Faults {
        reset: 1.0,
        ..Faults::default()
    }))
    .await;
    for _ in 0..3 {
        let err = client()
            .post(url(&e))
            .header("x-api-key", KEY)
            .multipart(form(common::jpeg(1), "a.jpg", &[]))
            .send()
            .await
            .expect_err("a dropped connection is not an HTTP response");
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.status().is_none(), "{err:?}");
        assert!(
            err.is_request() || err.is_connect() || err.is_body(),
            "{err:?}"
        );
    }
    let stats = e.stats();
    assert_eq!(stats.dropped, 3);
    assert!(stats.by_status.is_empty(), "{stats:?}");
    assert_eq!(stats.credits_used, 0);
    e.shutdown().await;
}

#[tokio::test]
async fn fault_stall_outlasts_the_client_timeout_and_shutdown_ends_it() {
    let mut config = faulty(Faults {
        stall: 1.0,
        ..Faults::default()
    });
    config.stall = Duration::from_secs(120);
    let e = emu(config).await;
    let slow = common::http()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = slow
        .post(url(&e))
        .header("x-api-key", KEY)
        .multipart(form(common::jpeg(1), "a.jpg", &[]))
        .send()
        .await
        .expect_err("stalled");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(e.stats().stalled, 1);
    // Shutting down does not wait for the stall to end.
    tokio::time::timeout(Duration::from_secs(30), e.shutdown())
        .await
        .expect("shutdown is prompt");
}

#[tokio::test]
async fn faults_are_reproducible_from_the_seed() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let mut config = faulty(Faults {
            p500: 0.3,
            p503: 0.3,
            ..Faults::default()
        });
        config.seed = seed;
        config.credits = None;
        let e = emu(config).await;
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(post(&e, Form::new()).await.status().as_u16());
        }
        e.shutdown().await;
        out
    }
    let a = statuses(42).await;
    assert_eq!(a, statuses(42).await);
    assert_ne!(a, statuses(43).await);
    let kinds: BTreeSet<u16> = a.iter().copied().collect();
    assert_eq!(kinds, BTreeSet::from([400, 500, 503]), "{a:?}");
}

#[tokio::test]
async fn results_are_deterministic_for_the_same_bytes() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    for seed in [21u64, 22, 23] {
        let bytes = common::png(seed);
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let f = form(
                bytes.clone(),
                "a.png",
                &[
                    ("save_api_request", "false"),
                    ("face_liveness_score_decline_threshold", "55.5"),
                ],
            );
            let (s, mut body) = json_of(post(&e, f).await).await;
            assert_eq!(s, 200);
            let id = body["request_id"].as_str().unwrap();
            let id = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(id.get_version_num(), 4);
            body.as_object_mut().unwrap().remove("request_id");
            body.as_object_mut().unwrap().remove("created_at");
            bodies.push(body);
        }
        assert_eq!(bodies[0], bodies[1]);
    }
    e.shutdown().await;
}

#[tokio::test]
async fn a_response_has_didits_shape_and_echoes() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let f = form(
        common::jpeg(31),
        "selfie.JPEG",
        &[
            ("vendor_data", "user-123"),
            ("metadata", r#"{"flow": "withdrawal", "n": 2}"#),
            ("save_api_request", "false"),
            ("rotate_image", "true"),
        ],
    );
    let (s, body) = json_of(post(&e, f).await).await;
    assert_eq!(s, 200);
    assert_eq!(body["vendor_data"], "user-123");
    assert_eq!(body["metadata"], json!({"flow": "withdrawal", "n": 2}));
    let created = body["created_at"].as_str().unwrap();
    assert!(
        created.ends_with("+00:00") && created.len() == 32,
        "{created}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok());
    let l = &body["liveness"];
    assert_eq!(l["method"], "PASSIVE");
    assert!(l["status"] == "Approved" || l["status"] == "Declined");
    let n = |v: &Value| v.as_f64().unwrap();
    assert!((0.0..=100.0).contains(&n(&l["face_quality"])));
    assert!((0.0..=100.0).contains(&n(&l["face_luminance"])));
    let entity = &l["user_image"]["entities"][0];
    assert_eq!(entity["bbox"].as_array().unwrap().len(), 4);
    assert_eq!(entity["race"], Value::Null);
    assert!(entity["age"].is_f64() && entity["confidence"].is_f64());
    assert!([0, 90, 180, 270].contains(&l["user_image"]["best_angle"].as_i64().unwrap()));
    // Without vendor_data and metadata both come back null.
    let (_, body) = json_of(post(&e, form(common::jpeg(32), "a.jpg", &[])).await).await;
    assert_eq!(body["vendor_data"], Value::Null);
    assert_eq!(body["metadata"], Value::Null);
    e.shutdown().await;
}

#[tokio::test]
async fn tiny_and_uniform_images_get_no_face_detected_with_nulls() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let one_pixel = png_of(&RgbImage::from_pixel(1, 1, Rgb([200, 180, 160])));
    let uniform = common::encode(
        &RgbImage::from_pixel(320, 240, Rgb([120, 110, 100])),
        ImageFormat::Jpeg,
    );
    for (bytes, name) in [(one_pixel, "dot.png"), (uniform, "wall.jpg")] {
        let (s, body) = json_of(post(&e, form(bytes, name, &[])).await).await;
        assert_eq!(s, 200, "a face-less image is still a 200");
        let l = &body["liveness"];
        assert_eq!(l["status"], "Declined");
        assert_eq!(l["score"], Value::Null);
        assert_eq!(l["face_quality"], Value::Null);
        assert_eq!(l["face_luminance"], Value::Null);
        assert_eq!(l["user_image"]["entities"], json!([]));
        assert_eq!(l["user_image"]["best_angle"], Value::Null);
        assert_eq!(risks(&body), ["NO_FACE_DETECTED"]);
        assert_eq!(l["warnings"][0]["log_type"], "error");
        assert_eq!(l["warnings"][0]["feature"], "LIVENESS");
    }
    e.shutdown().await;
}

#[tokio::test]
async fn dark_bright_and_blurry_images_get_capture_warnings() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let mut seen = BTreeSet::new();
    for seed in 40..46u64 {
        let base = common::photo(seed, 200, 160);
        let dark = RgbImage::from_fn(200, 160, |x, y| {
            let p = base.get_pixel(x, y).0;
            Rgb([p[0] / 6, p[1] / 6, p[2] / 6])
        });
        let bright = RgbImage::from_fn(200, 160, |x, y| {
            let p = base.get_pixel(x, y).0;
            Rgb(p.map(|c| (200 + u16::from(c) / 4).min(255) as u8))
        });
        let blurry = image::imageops::blur(&base, 4.0);
        for (img, code) in [
            (dark, "LOW_FACE_LUMINANCE"),
            (bright, "HIGH_FACE_LUMINANCE"),
            (blurry, "LOW_FACE_QUALITY"),
        ] {
            let f = form(png_of(&img), "a.png", &[("save_api_request", "false")]);
            let (s, body) = json_of(post(&e, f).await).await;
            assert_eq!(s, 200);
            let r = risks(&body);
            if r.iter().any(|x| x == "NO_FACE_DETECTED") {
                continue; // the rare hash-derived miss
            }
            assert!(r.contains(&code.to_string()), "{code} missing: {body}");
            let w = body["liveness"]["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["risk"] == code)
                .unwrap();
            assert_eq!(w["log_type"], "warning");
            let lum = body["liveness"]["face_luminance"].as_f64().unwrap();
            match code {
                "LOW_FACE_LUMINANCE" => assert!(lum < 25.0, "{lum}"),
                "HIGH_FACE_LUMINANCE" => assert!(lum > 90.0, "{lum}"),
                _ => assert!(body["liveness"]["face_quality"].as_f64().unwrap() < 30.0),
            }
            seen.insert(code);
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    e.shutdown().await;
}

#[tokio::test]
async fn varied_images_mostly_approve_and_status_follows_error_warnings() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let url = url(&e);
    let http = client();
    let bodies: Vec<Value> = futures::stream::iter(0..200u64)
        .map(|seed| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let (w, h) = (64 + (seed % 5) as u32 * 24, 64 + (seed % 7) as u32 * 16);
                let img = common::photo(seed, w, h);
                let (bytes, name) = if seed % 2 == 0 {
                    (common::encode(&img, ImageFormat::Jpeg), "s.jpg")
                } else {
                    (common::encode(&img, ImageFormat::Png), "s.png")
                };
                let f = form(bytes, name, &[("save_api_request", "false")]);
                let r = http
                    .post(url)
                    .header("x-api-key", KEY)
                    .multipart(f)
                    .send()
                    .await
                    .unwrap();
                let (s, body) = json_of(r).await;
                assert_eq!(s, 200);
                body
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    let mut approved = 0;
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for body in &bodies {
        let l = &body["liveness"];
        let warnings = l["warnings"].as_array().unwrap();
        let has_error = warnings.iter().any(|w| w["log_type"] == "error");
        assert_eq!(l["status"] == "Declined", has_error, "{body}");
        if l["status"] == "Approved" {
            approved += 1;
        }
        for w in warnings {
            let risk = w["risk"].as_str().unwrap();
            assert_eq!(w["log_type"], expected_log_type(risk), "{w}");
            assert_eq!(w["feature"], "LIVENESS");
            assert!(!w["short_description"].as_str().unwrap().is_empty());
            assert!(!w["long_description"].as_str().unwrap().is_empty());
            *codes.entry(risk.to_string()).or_default() += 1;
        }
        if risks(body).contains(&"MULTIPLE_FACES_DETECTED".to_string()) {
            assert_eq!(l["user_image"]["entities"].as_array().unwrap().len(), 2);
        }
        if let Some(score) = l["score"].as_f64() {
            let low = risks(body).contains(&"LOW_LIVENESS_SCORE".to_string());
            assert_eq!(low, score <= 30.0, "{body}");
        }
    }
    assert!(
        approved >= 160,
        "{approved} of 200 approved; codes {codes:?}"
    );
    assert!(approved < 200, "some are declined");
    assert!(codes.len() >= 3, "{codes:?}");
    assert_eq!(e.stats().credits_used, 200);
    e.shutdown().await;
}

/// The answer to `bytes` sent for `vendor` without saving it.
async fn unsaved_answer(e: &Emulator, bytes: &[u8], vendor: &str) -> Value {
    let f = form(
        bytes.to_vec(),
        "a.jpg",
        &[("vendor_data", vendor), ("save_api_request", "false")],
    );
    json_of(post(e, f).await).await.1
}

async fn unsaved_risks(e: &Emulator, bytes: &[u8], vendor: &str) -> Vec<String> {
    risks(&unsaved_answer(e, bytes, vendor).await)
}

#[tokio::test]
async fn a_saved_face_is_a_duplicate_for_another_vendor_only() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let bytes = clean_jpeg(&e).await;
    // Not saved: nothing enrolled.
    assert!(unsaved_risks(&e, &bytes, "alice").await.is_empty());
    assert!(unsaved_risks(&e, &bytes, "bob").await.is_empty());
    // Saved (Didit's default) under alice.
    let f = form(bytes.clone(), "a.jpg", &[("vendor_data", "alice")]);
    let (_, first) = json_of(post(&e, f).await).await;
    assert!(risks(&first).is_empty());
    // Alice again: her own faces are excluded.
    assert!(unsaved_risks(&e, &bytes, "alice").await.is_empty());
    // Bob with the same face: DUPLICATED_FACE pointing at alice's session; still Approved.
    let dup = unsaved_answer(&e, &bytes, "bob").await;
    assert_eq!(risks(&dup), ["DUPLICATED_FACE"]);
    assert_eq!(dup["liveness"]["status"], "Approved");
    let w = &dup["liveness"]["warnings"][0];
    assert_eq!(w["log_type"], "information");
    assert_eq!(
        w["additional_data"]["duplicated_session_id"],
        first["request_id"]
    );
    assert!(w["additional_data"]["duplicated_session_number"].is_u64());
    assert!(w["additional_data"].get("api_service").is_some());
    e.shutdown().await;
}

#[tokio::test]
async fn sandbox_answers_a_fixed_approval_and_bills_nothing() {
    let mut config = EmulatorConfig::new(KEY);
    config.sandbox = true;
    config.credits = Some(0);
    let e = emu(config).await;
    let uniform = png_of(&RgbImage::from_pixel(64, 64, Rgb([5, 5, 5])));
    let mut livenesses = Vec::new();
    for bytes in [common::jpeg(1), uniform] {
        let (s, body) =
            json_of(post(&e, form(bytes, "a.png", &[("vendor_data", "v")])).await).await;
        assert_eq!(s, 200);
        assert_eq!(body["liveness"]["status"], "Approved");
        assert_eq!(body["vendor_data"], "v");
        livenesses.push(body["liveness"].clone());
    }
    assert_eq!(livenesses[0], livenesses[1], "fixed result");
    // Validation still applies.
    let r = post(&e, form(b"x".to_vec(), "a.txt", &[])).await;
    assert_eq!(r.status().as_u16(), 400);
    let stats = e.stats();
    assert_eq!(stats.credits_used, 0);
    assert_eq!(stats.credits_left, Some(0));
    e.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_stats_are_served() {
    let e = emu(EmulatorConfig::new(KEY)).await;
    let c = client();
    let unknown = [
        "/v3/passive-liveness",
        "/v3/face-match",
        "/v3/age-estimation",
        "/v3/face-search/",
        "/",
        "/v2/passive-liveness/",
    ];
    for path in unknown {
        let r = c
            .post(format!("{}{path}", e.base_url()))
            .header("x-api-key", KEY)
            .multipart(form(common::jpeg(1), "a.jpg", &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            json_of(r).await,
            (404, json!({"detail": "Not found."})),
            "{path}"
        );
    }
    let r = c
        .get(url(&e))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(r).await,
        (405, json!({"detail": "Method \"GET\" not allowed."}))
    );
    let r = c.get(url(&e)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403, "authentication comes first");
    let r = c
        .get(format!("{}/emulator/stats", e.base_url()))
        .send()
        .await
        .unwrap();
    let (s, body) = json_of(r).await;
    assert_eq!(s, 200);
    let stats: emulator::Stats = serde_json::from_value(body).unwrap();
    // The unknown paths and the two GETs; the stats request itself is not counted.
    let n = unknown.len() as u64;
    assert_eq!(
        stats.requests,
        n + 2,
        "the stats request itself is not counted"
    );
    assert_eq!(stats.by_status.get(&404), Some(&n));
    assert_eq!(stats, e.stats());
    e.shutdown().await;
}

#[tokio::test]
async fn the_log_has_one_line_per_request_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("emulator.jsonl");
    let mut config = EmulatorConfig::new(KEY);
    config.log = Some(log.clone());
    let e = emu(config).await;
    let bytes = common::jpeg(61);
    let f = form(
        bytes.clone(),
        "selfie.jpg",
        &[
            ("vendor_data", "user-9"),
            ("metadata", r#"{"k":"v"}"#),
            ("save_api_request", "false"),
        ],
    );
    let r = post(&e, f).await;
    assert_eq!(r.status().as_u16(), 200);
    let r = post_with_key(&e, Some("not-the-key"), form(bytes.clone(), "b.png", &[])).await;
    assert_eq!(r.status().as_u16(), 403);
    let r = post(&e, form(b"x".to_vec(), "c.txt", &[])).await;
    assert_eq!(r.status().as_u16(), 400);
    e.shutdown().await;

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(KEY) && !text.contains("not-the-key"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let sha = hex::encode(Sha256::digest(&bytes));
    let first = &lines[0];
    assert_eq!(first["status"], 200);
    assert_eq!(first["fault"], Value::Null);
    assert_eq!(first["api_key"], "valid");
    assert_eq!(first["sha256"], sha);
    assert_eq!(first["vendor_data"], "user-9");
    assert_eq!(first["path"], "/v3/passive-liveness/");
    assert_eq!(
        first["fields"]["user_image"],
        format!("selfie.jpg ({} bytes)", bytes.len())
    );
    assert_eq!(first["fields"]["metadata"], r#"{"k":"v"}"#);
    assert_eq!(first["fields"]["save_api_request"], "false");
    assert!(first["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(chrono::DateTime::parse_from_rfc3339(first["time"].as_str().unwrap()).is_ok());
    assert_eq!(lines[1]["status"], 403);
    assert_eq!(lines[1]["api_key"], "invalid");
    assert_eq!(lines[1]["sha256"], sha);
    assert_eq!(lines[2]["status"], 400);
    assert_eq!(lines[2]["fields"]["user_image"], "c.txt (1 bytes)");
}

#[tokio::test]
async fn faults_and_drops_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let mut config = faulty(Faults {
        reset: 1.0,
        ..Faults::default()
    });
    config.log = Some(log.clone());
    let e = emu(config).await;
    let r = client()
        .post(url(&e))
        .header("x-api-key", KEY)
        .multipart(form(common::jpeg(1), "a.jpg", &[]))
        .send()
        .await;
    assert!(r.is_err());
    e.shutdown().await;
    let line: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["fault"], "reset");
    assert_eq!(line["status"], Value::Null);
}

#[tokio::test]
async fn start_reports_clear_errors() {
    let taken = emu(EmulatorConfig::new(KEY)).await;
    let err = emulator::start(EmulatorConfig::new(KEY), taken.port())
        .await
        .err()
        .expect("port in use");
    assert!(matches!(err, EmulatorError::Bind { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on 127.0.0.1:{}", taken.port())),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(KEY);
    config.log = Some(dir.path().to_path_buf()); // a folder, not a file
    let err = emulator::start(config, 0).await.err().expect("bad log");
    assert!(
        err.to_string()
            .starts_with("cannot open the emulator's request log"),
        "{err}"
    );
    let mut config = EmulatorConfig::new(KEY);
    config.faults.p503 = 2.0;
    let err = emulator::start(config, 0).await.err().expect("bad fault");
    assert_eq!(
        err.to_string(),
        "--fault-503 must be a probability between 0 and 1, got 2"
    );
    taken.shutdown().await;
}

#[tokio::test]
async fn the_emulator_subcommand_serves_until_terminated() {
    let mut child = Command::new(common::bin())
        .args([
            "emulator",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--credits",
            "3",
        ])
        .env_remove("DIDIT_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("Didit emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let c = client();
    let r = c
        .post(format!("{base}/v3/passive-liveness/"))
        .header("x-api-key", KEY)
        .multipart(form(
            common::jpeg(1),
            "a.jpg",
            &[("save_api_request", "false")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stats: emulator::Stats = c
        .get(format!("{base}/emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.credits_used, 1);
    assert_eq!(stats.credits_left, Some(2));

    // SIGTERM: it stops and prints its counters on stderr.
    #[cfg(unix)]
    {
        let pid = child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains("SIMULATED"), "{err}");
        assert!(err.contains("credits 3"), "{err}");
        assert!(err.contains("emulator served 1 requests (200: 1)"), "{err}");
        assert!(!err.contains(KEY), "the key is never printed");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(!rest.contains(KEY));
        assert!(status.success(), "{status:?}: {err}");
    }
    #[cfg(not(unix))]
    {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[tokio::test]
async fn concurrent_requests_never_overspend_credits_or_the_window() {
    async fn burst(config: EmulatorConfig) -> (Emulator, BTreeMap<u16, usize>) {
        let e = emu(config).await;
        let url = url(&e);
        let http = client();
        let statuses: Vec<u16> = futures::stream::iter(0..20u64)
            .map(|seed| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    http.post(url)
                        .header("x-api-key", KEY)
                        .multipart(form(
                            common::jpeg(seed),
                            "a.jpg",
                            &[("save_api_request", "false")],
                        ))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                }
            })
            .buffer_unordered(20)
            .collect()
            .await;
        let mut counts = BTreeMap::new();
        for s in statuses {
            *counts.entry(s).or_default() += 1;
        }
        (e, counts)
    }
    let mut config = EmulatorConfig::new(KEY);
    config.credits = Some(5);
    let (e, counts) = burst(config).await;
    assert_eq!(counts, BTreeMap::from([(200, 5), (403, 15)]));
    assert_eq!(e.stats().credits_left, Some(0));
    e.shutdown().await;

    let mut config = EmulatorConfig::new(KEY);
    config.rate_limit = Some((7, Duration::from_secs(600)));
    let (e, counts) = burst(config).await;
    assert_eq!(counts, BTreeMap::from([(200, 7), (429, 13)]));
    assert_eq!(e.stats().rate_limited, 13);
    assert_eq!(e.stats().credits_used, 7);
    e.shutdown().await;
}
