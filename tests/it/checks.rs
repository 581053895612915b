//! Integration tests: the emulator's face match and age estimation endpoints over real HTTP on
//! loopback, their answers held field by field against Didit's own OpenAPI texts (copied into
//! `tests/fixtures/didit/`), and the budget they share with passive liveness.

use std::path::PathBuf;
use std::time::Duration;

use image::{ImageFormat, Rgb, RgbImage};
use liveness_batch::emulator::face_age::{
    Echo, FaceMatch, Side, face_match, face_match_body, fingerprint,
};
use liveness_batch::emulator::results::{Analysis, analyze, decode_bounded};
use liveness_batch::emulator::{self, Check, Emulator, EmulatorConfig};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common;

const KEY: &str = "checks_test_key_51d0";

/// Didit's OpenAPI text for `check`'s endpoint.
fn spec(check: Check) -> Value {
    let name = match check {
        Check::Liveness => "openapi-passive-liveness.json",
        Check::FaceMatch => "openapi-face-match.json",
        Check::Age => "openapi-age-estimation.json",
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/didit")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The schema of `check`'s answer with `status`.
fn answer_schema(check: Check, status: &str) -> Value {
    let spec = spec(check);
    spec["paths"][check.path()]["post"]["responses"][status]["content"]["application/json"]
        ["schema"]
        .clone()
}

/// Every way `value` departs from an OpenAPI 3.0 `schema` (the subset Didit's texts use:
/// type, nullable, properties, required, enum, items, minimum, maximum, minItems, maxItems,
/// format uuid). Stricter than the text in one way: a property the schema does not declare is
/// a departure too, so the emulator sends nothing Didit does not document.
fn departures(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            out.push(format!("{at}: null, not nullable"));
        }
        return;
    }
    let fits = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("number") => value.is_number(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !fits {
        out.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            out.push(format!("{at}: {n} below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            out.push(format!("{at}: {n} above the maximum"));
        }
    }
    if schema["format"] == "uuid" && uuid::Uuid::parse_str(value.as_str().unwrap()).is_err() {
        out.push(format!("{at}: {value} is not a UUID"));
    }
    if let Some(items) = value.as_array() {
        if schema["minItems"]
            .as_u64()
            .is_some_and(|n| (items.len() as u64) < n)
            || schema["maxItems"]
                .as_u64()
                .is_some_and(|n| (items.len() as u64) > n)
        {
            out.push(format!("{at}: {} items", items.len()));
        }
        for (i, item) in items.iter().enumerate() {
            departures(&schema["items"], item, &format!("{at}[{i}]"), out);
        }
    }
    if let Some(fields) = value.as_object() {
        let declared = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            if !fields.contains_key(required.as_str().unwrap()) {
                out.push(format!("{at}: {required} missing"));
            }
        }
        for (name, field) in fields {
            match declared.and_then(|d| d.get(name)) {
                Some(sub) => departures(sub, field, &format!("{at}.{name}"), out),
                None if schema["additionalProperties"].is_object() => departures(
                    &schema["additionalProperties"],
                    field,
                    &format!("{at}.{name}"),
                    out,
                ),
                None if declared.is_some() && schema["additionalProperties"] != true => {
                    out.push(format!("{at}.{name}: not in Didit's schema"));
                }
                None => {}
            }
        }
    }
}

fn assert_fits(check: Check, status: u16, body: &Value) {
    let schema = answer_schema(check, &status.to_string());
    assert!(schema.is_object(), "{check:?} documents no {status} schema");
    let mut out = Vec::new();
    departures(&schema, body, "$", &mut out);
    assert!(out.is_empty(), "{check:?} {status}: {out:#?}\n{body:#}");
}

fn file(bytes: &[u8], name: &str) -> Part {
    Part::bytes(bytes.to_vec()).file_name(name.to_string())
}

async fn start(configure: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    configure(&mut config);
    emulator::start(config, 0).await.expect("start emulator")
}

async fn post(e: &Emulator, check: Check, form: Form) -> (u16, Value) {
    let response = common::http()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}{}", e.base_url(), check.path()))
        .header("x-api-key", KEY)
        .multipart(form)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}

fn pair(user: &[u8], reference: &[u8], fields: &[(&str, &str)]) -> Form {
    let mut form = Form::new()
        .part("user_image", file(user, "selfie.jpg"))
        .part("ref_image", file(reference, "id.png"));
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

fn one(image: &[u8], fields: &[(&str, &str)]) -> Form {
    let mut form = Form::new().part("user_image", file(image, "selfie.jpg"));
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

fn risks(object: &Value) -> Vec<String> {
    object["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["risk"].as_str().unwrap().to_string())
        .collect()
}

/// Every decision of face match, each answer as Didit's schema gives it: the same person
/// (identical, or derived) approved, another person declined for low similarity, a pair with no
/// face declined with `NO_REFERENCE_IMAGE`, and the threshold sent deciding.
#[tokio::test]
async fn face_match_answers_every_decision_in_didits_shape() {
    let e = start(|_| {}).await;
    let alice = common::person(1, 240);
    let alice_jpeg = common::encode(&alice, ImageFormat::Jpeg);
    let unsaved = [("save_api_request", "false")];

    let (status, same) = post(
        &e,
        Check::FaceMatch,
        pair(&alice_jpeg, &alice_jpeg, &unsaved),
    )
    .await;
    assert_eq!(status, 200, "{same}");
    assert_fits(Check::FaceMatch, 200, &same);
    assert_eq!(same["face_match"]["status"], "Approved");
    assert!(
        same["face_match"]["score"].as_f64().unwrap() > 95.0,
        "{same}"
    );

    let (_, again) = post(
        &e,
        Check::FaceMatch,
        pair(&alice_jpeg, &common::derived(&alice), &unsaved),
    )
    .await;
    assert_fits(Check::FaceMatch, 200, &again);
    assert_eq!(again["face_match"]["status"], "Approved", "{again}");

    let bob = common::encode(&common::person(2, 240), ImageFormat::Jpeg);
    let (_, other) = post(&e, Check::FaceMatch, pair(&alice_jpeg, &bob, &unsaved)).await;
    assert_fits(Check::FaceMatch, 200, &other);
    assert_eq!(other["face_match"]["status"], "Declined");
    assert_eq!(risks(&other["face_match"]), ["LOW_FACE_MATCH_SIMILARITY"]);
    let low = other["face_match"]["score"].as_f64().unwrap();
    assert!(low <= 30.0, "{other}");

    // The threshold sent decides: at the score it declines, below it approves.
    let score = again["face_match"]["score"].as_f64().unwrap();
    let at = score.to_string();
    let fields = [
        ("save_api_request", "false"),
        ("face_match_score_decline_threshold", at.as_str()),
    ];
    let (_, strict) = post(
        &e,
        Check::FaceMatch,
        pair(&alice_jpeg, &common::derived(&alice), &fields),
    )
    .await;
    assert_eq!(strict["face_match"]["status"], "Declined", "{strict}");
    assert_eq!(strict["face_match"]["score"].as_f64().unwrap(), score);

    // No face on one side (a uniform picture): not scored; null when saved, 0 when not.
    let blank = common::encode(
        &RgbImage::from_pixel(200, 200, Rgb([90, 90, 90])),
        ImageFormat::Png,
    );
    let (_, saved) = post(&e, Check::FaceMatch, pair(&alice_jpeg, &blank, &[])).await;
    assert_fits(Check::FaceMatch, 200, &saved);
    assert_eq!(risks(&saved["face_match"]), ["NO_REFERENCE_IMAGE"]);
    assert!(saved["face_match"]["score"].is_null(), "{saved}");
    let (_, not_saved) = post(&e, Check::FaceMatch, pair(&blank, &alice_jpeg, &unsaved)).await;
    assert_eq!(not_saved["face_match"]["score"], 0.0);
    assert_eq!(not_saved["face_match"]["status"], "Declined");

    // Echoed fields and the envelope.
    let fields = [
        ("save_api_request", "false"),
        ("vendor_data", "user-9"),
        ("metadata", r#"{"flow":"pairs"}"#),
    ];
    let (_, echoed) = post(&e, Check::FaceMatch, pair(&alice_jpeg, &bob, &fields)).await;
    assert_fits(Check::FaceMatch, 200, &echoed);
    assert_eq!(echoed["vendor_data"], "user-9");
    assert_eq!(echoed["metadata"], json!({"flow": "pairs"}));
    assert_eq!(e.stats().credits_used, 7, "each 200 is one credit");
}

/// Face match's 400s, in Didit's field maps: a missing or broken reference costs nothing.
#[tokio::test]
async fn face_match_refuses_a_missing_reference_and_bad_fields() {
    let e = start(|_| {}).await;
    let selfie = common::encode(&common::person(3, 160), ImageFormat::Jpeg);
    let (status, body) = post(&e, Check::FaceMatch, one(&selfie, &[])).await;
    assert_eq!(
        (status, body),
        (400, json!({"ref_image": ["No file was submitted."]}))
    );
    let (status, body) = post(
        &e,
        Check::FaceMatch,
        pair(
            &selfie,
            &selfie,
            &[("face_match_score_decline_threshold", "101")],
        ),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"face_match_score_decline_threshold": ["Ensure this value is less than or equal to 100."]})
        )
    );
    let (status, body) = post(&e, Check::FaceMatch, pair(&selfie, b"not an image", &[])).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Invalid ref image format."}))
    );
    assert_eq!(e.stats().credits_used, 0);
}

/// Age estimation over many images: every decision and code present, each answer in Didit's
/// shape; `age_estimation_decline_threshold` 0 turns the age check off, and it is an integer.
#[tokio::test]
async fn age_estimation_answers_every_decision_in_didits_shape() {
    let e = start(|_| {}).await;
    let mut codes = std::collections::BTreeSet::new();
    let mut statuses = std::collections::BTreeSet::new();
    let mut below = None;
    for seed in 0..60 {
        let image = common::jpeg(9_000 + seed);
        let (status, body) = post(
            &e,
            Check::Age,
            one(&image, &[("save_api_request", "false")]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_fits(Check::Age, 200, &body);
        let object = &body["age_estimation"];
        statuses.insert(object["status"].as_str().unwrap().to_string());
        let found = risks(object);
        assert_eq!(object["status"] == "Approved", found.is_empty(), "{body}");
        if found.iter().any(|r| r == "AGE_BELOW_MINIMUM") {
            assert!(object["age_estimation"].as_f64().unwrap() < 18.0);
            below.get_or_insert(image.clone());
        }
        codes.extend(found);
    }
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["Approved", "Declined"]
    );
    assert!(codes.contains("AGE_BELOW_MINIMUM"), "{codes:?}");

    // The same young face with the age check off is not declined for its age.
    let young = below.expect("a face under 18 among 60");
    let (_, off) = post(
        &e,
        Check::Age,
        one(
            &young,
            &[
                ("save_api_request", "false"),
                ("age_estimation_decline_threshold", "0"),
            ],
        ),
    )
    .await;
    assert!(!risks(&off["age_estimation"]).contains(&"AGE_BELOW_MINIMUM".to_string()));

    // No face: no score, no age.
    let blank = common::encode(
        &RgbImage::from_pixel(200, 200, Rgb([90, 90, 90])),
        ImageFormat::Png,
    );
    let (_, none) = post(&e, Check::Age, one(&blank, &[])).await;
    assert_fits(Check::Age, 200, &none);
    assert_eq!(
        risks(&none["age_estimation"]),
        ["NO_FACE_DETECTED", "AGE_NOT_DETECTED"]
    );
    assert!(none["age_estimation"]["age_estimation"].is_null());

    let (status, body) = post(
        &e,
        Check::Age,
        one(&young, &[("age_estimation_decline_threshold", "17.5")]),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"age_estimation_decline_threshold": ["A valid integer is required."]})
        )
    );
}

/// The liveness answers hold to Didit's passive liveness text too.
#[tokio::test]
async fn liveness_answers_fit_didits_schema() {
    let e = start(|_| {}).await;
    for seed in 0..30 {
        let (status, body) = post(
            &e,
            Check::Liveness,
            one(
                &common::jpeg(7_000 + seed),
                &[("save_api_request", "false")],
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_fits(Check::Liveness, 200, &body);
    }
}

/// One key, one budget: liveness, face match and age estimation calls fill the same window,
/// and the same answer for the same bytes comes back from each endpoint every time.
#[tokio::test(start_paused = true)]
async fn the_three_endpoints_share_one_rate_window() {
    let e = start(|c| c.rate_limit = Some((3, Duration::from_secs(60)))).await;
    let selfie = common::encode(&common::person(4, 160), ImageFormat::Jpeg);
    let unsaved = [("save_api_request", "false")];
    assert_eq!(
        post(&e, Check::Liveness, one(&selfie, &unsaved)).await.0,
        200
    );
    let (_, first) = post(&e, Check::FaceMatch, pair(&selfie, &selfie, &unsaved)).await;
    let (_, age) = post(&e, Check::Age, one(&selfie, &unsaved)).await;
    assert_eq!(age["age_estimation"]["method"], "PASSIVE");
    let (status, limited) = post(&e, Check::FaceMatch, pair(&selfie, &selfie, &unsaved)).await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(e.stats().rate_limited, 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    let (status, second) = post(&e, Check::FaceMatch, pair(&selfie, &selfie, &unsaved)).await;
    assert_eq!(status, 200);
    assert_eq!(
        second["face_match"]["score"], first["face_match"]["score"],
        "deterministic by content"
    );
}

/// The schema check itself finds what departs: an undeclared field, a wrong type, a value out
/// of its enum or range, a null where none is allowed.
#[test]
fn the_schema_check_finds_departures() {
    let good = json!({
        "request_id": "0c40ba43-64ab-4e2e-b4b8-7d1f12f81bc1",
        "age_estimation": {"status": "Approved", "method": "PASSIVE", "score": 97.5,
            "user_image": {"entities": [], "best_angle": 0}, "age_estimation": 27.3,
            "warnings": []},
        "vendor_data": null, "metadata": null, "created_at": "2026-06-12T02:24:11.512941+00:00"
    });
    let schema = answer_schema(Check::Age, "200");
    let mut out = Vec::new();
    departures(&schema, &good, "$", &mut out);
    assert!(out.is_empty(), "{out:?}");
    for (path, bad) in [
        ("/age_estimation/method", json!("ACTIVE")),
        ("/age_estimation/score", json!(101)),
        ("/age_estimation/status", json!(null)),
        ("/age_estimation/user_image/best_angle", json!(1.5)),
        ("/request_id", json!("not-a-uuid")),
        ("/age_estimation/race", json!(null)),
    ] {
        let mut body = good.clone();
        let (parent, name) = path.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[name] = bad;
        let mut out = Vec::new();
        departures(&schema, &body, "$", &mut out);
        assert_eq!(out.len(), 1, "{path}: {out:?}");
    }
}

// The verdicts themselves, through the library (no HTTP): decode, measure, compare.

fn jpeg(img: &RgbImage) -> Vec<u8> {
    common::encode(img, ImageFormat::Jpeg)
}

struct Measured {
    hash: [u8; 32],
    analysis: Analysis,
    print: [u64; 2],
}

fn measure(bytes: &[u8]) -> Measured {
    let img = decode_bounded(bytes).unwrap();
    Measured {
        hash: Sha256::digest(bytes).into(),
        analysis: analyze(&img),
        print: fingerprint(&img),
    }
}

fn side(m: &Measured) -> Side<'_> {
    Side {
        hash: &m.hash,
        analysis: &m.analysis,
        print: m.print,
    }
}

fn compare(a: &[u8], b: &[u8], threshold: f64, save: bool) -> FaceMatch {
    face_match(side(&measure(a)), side(&measure(b)), threshold, save)
}

#[test]
fn the_same_image_and_its_derivations_match_unrelated_ones_do_not() {
    let original = common::person(1, 256);
    let bytes = jpeg(&original);
    let same = compare(&bytes, &bytes, 30.0, true);
    assert_eq!(same.status(), "Approved");
    assert!(same.score.unwrap() >= 98.0, "{same:?}");

    // Smaller, brighter and recompressed: still the same face.
    let smaller =
        image::imageops::resize(&original, 128, 128, image::imageops::FilterType::Triangle);
    let mut brighter = smaller.clone();
    for p in brighter.pixels_mut() {
        p.0 = p.0.map(|c| c.saturating_add(12));
    }
    let derived = compare(&bytes, &jpeg(&brighter), 30.0, true);
    assert_eq!(derived.status(), "Approved", "{derived:?}");
    assert!(derived.score.unwrap() > 70.0, "{derived:?}");
    // A mirrored selfie is the same face.
    let mirrored = image::imageops::flip_horizontal(&original);
    let flipped = compare(&bytes, &jpeg(&mirrored), 30.0, true);
    assert!(flipped.score.unwrap() > 95.0, "{flipped:?}");

    let mut unrelated_scores = Vec::new();
    for seed in 2..12 {
        let other = compare(&bytes, &jpeg(&common::person(seed, 256)), 30.0, true);
        assert_eq!(other.status(), "Declined", "seed {seed}: {other:?}");
        assert_eq!(other.warnings[0].risk, "LOW_FACE_MATCH_SIMILARITY");
        assert_eq!(other.warnings[0].feature, "FACEMATCH");
        unrelated_scores.push(other.score.unwrap());
    }
    assert!(
        unrelated_scores.iter().all(|s| (0.0..=30.0).contains(s)),
        "{unrelated_scores:?}"
    );
}

#[test]
fn the_threshold_decides_at_or_below() {
    let bytes = jpeg(&common::person(3, 200));
    let score = compare(&bytes, &bytes, 30.0, true).score.unwrap();
    let at = compare(&bytes, &bytes, score, true);
    assert_eq!(at.status(), "Declined", "a score at the threshold declines");
    let below = compare(&bytes, &bytes, score - 0.01, true);
    assert_eq!(below.status(), "Approved");
}

#[test]
fn a_pair_without_a_face_is_not_scored() {
    let face = jpeg(&common::person(4, 200));
    let blank = jpeg(&RgbImage::from_pixel(200, 200, Rgb([120, 120, 120])));
    for (a, b) in [(&face, &blank), (&blank, &face)] {
        let saved = compare(a, b, 30.0, true);
        assert_eq!(saved.status(), "Declined");
        assert_eq!(saved.score, None, "null when saved");
        let risks: Vec<&str> = saved.warnings.iter().map(|w| w.risk).collect();
        assert_eq!(risks, ["NO_REFERENCE_IMAGE"]);
        assert_eq!(
            compare(a, b, 30.0, false).score,
            Some(0.0),
            "0 when not saved"
        );
    }
}

#[test]
fn saved_scores_are_rounded_and_unsaved_ones_are_not() {
    let a = jpeg(&common::person(5, 200));
    let b = jpeg(&common::person(6, 200));
    for (x, y) in [(&a, &a), (&a, &b)] {
        let saved = compare(x, y, 30.0, true).score.unwrap();
        assert_eq!(saved, (saved * 100.0).round() / 100.0);
        let unsaved = compare(x, y, 30.0, false).score.unwrap();
        assert_eq!(
            (unsaved * 100.0).round() / 100.0,
            saved,
            "the same score, unrounded"
        );
    }
}

#[test]
fn the_face_match_body_has_didits_shape() {
    let bytes = jpeg(&common::person(7, 200));
    let m = compare(&bytes, &jpeg(&common::person(8, 200)), 30.0, true);
    let echo = Echo {
        request_id: uuid::Uuid::nil(),
        vendor_data: Some("u-1"),
        metadata: None,
        now: chrono::DateTime::from_timestamp(1_781_226_282, 0).unwrap(),
    };
    let body = face_match_body(&m, echo);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "request_id",
            "face_match",
            "vendor_data",
            "metadata",
            "created_at"
        ]
    );
    let fm = &body["face_match"];
    assert_eq!(fm["status"], "Declined");
    assert_eq!(fm["user_image"]["best_angle"], 0);
    assert!(fm["ref_image"]["entities"][0]["race"].is_null());
    assert_eq!(fm["warnings"][0]["log_type"], "error");
    assert!(fm.get("method").is_none(), "face match has no method");
}

/// The client's form for each check, field by field against Didit's request schema: every
/// part it sends is one the endpoint declares, of the declared type and range, and every
/// required part is there (read back from the emulator's request log).
#[tokio::test]
async fn every_checks_form_fits_didits_request_schema() {
    use bytes::Bytes;
    use liveness_batch::didit::{self, Client, ClientConfig, Params, Upload};
    use liveness_batch::secret::ApiKey;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let e = start(|c| c.log = Some(log.clone())).await;
    let jpeg = |seed| Upload::new(Bytes::from(common::jpeg(seed)), "jpg", "image/jpeg");
    for (call, check) in [
        (&didit::LIVENESS, Check::Liveness),
        (&didit::FACE_MATCH, Check::FaceMatch),
        (&didit::AGE, Check::Age),
    ] {
        assert_eq!(call.path, check.path());
        let client = Client::for_endpoint(
            ClientConfig {
                base_url: e.base_url(),
                api_key: ApiKey::new(KEY).unwrap(),
                timeout: Duration::from_secs(10),
            },
            call,
        )
        .unwrap();
        let params = Params {
            threshold: Some(42.5),
            min_age: Some(21),
            reference: (call.images.len() == 2).then(|| jpeg(2)),
            rotate_image: true,
            save_api_request: false,
            vendor_data: Some("user-3".into()),
            metadata: Some(liveness_batch::didit::parse_metadata(r#"{"flow":"audit"}"#).unwrap()),
        };
        let sent = client.send(&jpeg(1), &params).await;
        assert_eq!(sent.http_status, Some(200), "{check:?}: {:?}", sent.outcome);

        let last = std::fs::read_to_string(&log).unwrap();
        let line: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
        assert_eq!(line["path"], check.path());
        let fields = line["fields"].as_object().unwrap();
        let spec = spec(check);
        let schema = &spec["paths"][check.path()]["post"]["requestBody"]["content"]["multipart/form-data"]
            ["schema"];
        for required in schema["required"].as_array().unwrap() {
            assert!(
                fields.contains_key(required.as_str().unwrap()),
                "{check:?}: {required} not sent"
            );
        }
        for (name, value) in fields {
            let declared = &schema["properties"][name];
            assert!(
                declared.is_object(),
                "{check:?}: {name} is not in Didit's form"
            );
            let text = value.as_str().unwrap();
            let in_range = |n: f64| {
                declared["minimum"].as_f64().is_none_or(|m| n >= m)
                    && declared["maximum"].as_f64().is_none_or(|m| n <= m)
            };
            let fits = match (declared["type"].as_str(), declared["format"].as_str()) {
                (Some("string"), Some("binary")) => {
                    text.starts_with("image.jpg (") && text.ends_with(" bytes)")
                }
                (Some("number"), _) => text.parse::<f64>().is_ok_and(in_range),
                (Some("integer"), _) => text.parse::<i64>().is_ok_and(|n| in_range(n as f64)),
                (Some("boolean"), _) => text == "true" || text == "false",
                (Some("object"), _) => {
                    serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object())
                }
                (Some("string"), _) => true,
                other => panic!("{check:?}: {name} has a type this test does not know: {other:?}"),
            };
            assert!(fits, "{check:?}: {name} = {text:?} does not fit {declared}");
        }
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let expected: &[&str] = match check {
            Check::Liveness => &["user_image", "face_liveness_score_decline_threshold"],
            Check::FaceMatch => &[
                "user_image",
                "ref_image",
                "face_match_score_decline_threshold",
            ],
            Check::Age => &[
                "user_image",
                "face_liveness_score_decline_threshold",
                "age_estimation_decline_threshold",
            ],
        };
        for name in expected {
            assert!(names.contains(name), "{check:?} sends {name}: {names:?}");
        }
    }
}

/// `scan --check age` over 40 images against the emulator: every decision and the age codes,
/// the estimated age in the journal, results.csv (`estimated_age`) and the summary (the age
/// histogram, how many were below the minimum); the minimum age is sent with every image; a
/// rerun with another check or minimum age is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_scan_estimates_ages_and_refuses_a_change_of_check() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    common::jpegs(&src, 40, 6_000, |i| format!("s{i:02}.jpg"));
    let log = tmp.path().join("requests.jsonl");
    let emu = common::emulator(|c| c.log = Some(log.clone())).await;
    let out = tmp.path().join("out");
    let age = common::ScanRun::new(&emu, &src, &out).args(&["--check", "age", "--min-age", "21"]);
    assert_eq!(age.run().await, 0);

    let items = age.items();
    assert_eq!(items.len(), 40);
    let statuses: std::collections::BTreeSet<&str> =
        items.iter().filter_map(|i| i["status"].as_str()).collect();
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["Approved", "Declined"]
    );
    let below = items
        .iter()
        .filter(|i| i.to_string().contains("AGE_BELOW_MINIMUM"))
        .count();
    assert!(below > 0, "some faces are estimated under 21");
    for i in &items {
        let declined_for_age = i.to_string().contains("AGE_BELOW_MINIMUM");
        match i["estimated_age"].as_f64() {
            Some(a) => assert_eq!(declined_for_age, a < 21.0, "{i}"),
            None => assert!(i.to_string().contains("AGE_NOT_DETECTED"), "{i}"),
        }
    }
    let requests = std::fs::read_to_string(&log).unwrap();
    let posts: Vec<Value> = requests
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["method"] == "POST")
        .collect();
    assert!(!posts.is_empty());
    for line in posts {
        assert_eq!(line["path"], "/v3/age-estimation/");
        assert_eq!(line["fields"]["age_estimation_decline_threshold"], "21");
    }

    let rows = common::csv_rows(&out.join("results.csv"));
    assert!(rows.iter().all(|r| r.contains_key("estimated_age")));
    assert!(rows.iter().any(|r| !r["estimated_age"].is_empty()));
    let summary = age.summary();
    assert_eq!(summary["ages"]["minimum_age"], 21);
    assert_eq!(summary["ages"]["below_minimum"], below);
    assert_eq!(summary["settings"]["check"], "age");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("check age · minimum age 21 · "), "{md}");
    let counted: u64 = summary["ages"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum::<u64>()
        + summary["ages"]["no_age"].as_u64().unwrap();
    assert_eq!(counted, 40);

    // Another check, or another minimum, is a settings change: refused, nothing sent.
    let sent = emu.stats().requests;
    for extra in [
        &["--check", "liveness"][..],
        &["--check", "age", "--min-age", "18"][..],
    ] {
        let other = common::ScanRun::new(&emu, &src, &out)
            .args(extra)
            .bin()
            .await;
        assert_eq!(other.code, 2, "{extra:?}: {}", other.stderr);
        assert!(other.stderr.contains("settings differ"), "{}", other.stderr);
    }
    assert_eq!(emu.stats().requests, sent);

    // A liveness scan writes no age column.
    let live = tmp.path().join("live");
    assert_eq!(common::ScanRun::new(&emu, &src, &live).run().await, 0);
    let rows = common::csv_rows(&live.join("results.csv"));
    assert!(!rows[0].contains_key("estimated_age"));
    assert!(common::summary(&live).get("ages").is_none());
}
