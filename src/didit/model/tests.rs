use super::*;
use serde_json::json;

fn parse(v: Value) -> CheckResponse {
    serde_json::from_value(v).expect("lenient parse never fails on an object")
}

#[test]
fn one_lenient_reading_of_every_odd_shape() {
    let odd = json!({
        "request_id": 42,
        "liveness": {
            "status": true, "method": null, "score": "12.5", "face_quality": "x",
            "face_luminance": 1e300, "extra": [1, 2],
            "user_image": {
                "best_angle": "2.6",
                "entities": [
                    {"bbox": [1, "2", 3, 4.5], "confidence": null, "age": "31",
                     "gender": 1, "race": {"r": 1}},
                    {"bbox": [1, "y", 3, 4], "race": null},
                    {"bbox": "no"},
                    [[0, 0, 9, 9], 0.5, 20, "male", null],
                    [[0, 0, 1, 1], 0.5, 20, "male", null, "too many"],
                    ["short"],
                    "not a face", 7, null
                ]
            },
            "warnings": [
                {"risk": "  ", "log_type": " ERROR ", "additional_data": null},
                {"risk": 5, "feature": false, "additional_data": [1],
                 "short_description": "s", "long_description": 2.5},
                {"log_type": ""},
                {},
                ["LOW_FACE_QUALITY", "f", null, "Warning"],
                "WARN", null, [], {"risk": null, "log_type": null}
            ]
        },
        "vendor_data": false, "metadata": null, "created_at": "2026-06-12T01:04:42Z"
    });
    // Read from the text and from a parsed value: the same one reading, two deserializers.
    let r = CheckResponse::read(&odd.to_string()).unwrap().unwrap();
    assert_eq!(parse(odd), r);
    assert_eq!(r.request_id.as_deref(), Some("42"));
    let l = &r.verdict;
    assert_eq!(
        (l.status.as_deref(), l.method.as_deref()),
        (Some("true"), None)
    );
    assert_eq!(
        (l.score, l.face_quality, l.face_luminance),
        (Some(12.5), None, Some(1e300))
    );
    let u = l.user_image.as_ref().unwrap();
    assert_eq!(u.best_angle, Some(3));
    // Only objects are faces; every field of each read by its own lenient rule.
    assert_eq!(u.entities.len(), 3);
    let e = &u.entities[0];
    assert_eq!(e.bbox.as_deref(), Some(&[1.0, 2.0, 3.0, 4.5][..]));
    assert_eq!(
        (e.confidence, e.age, e.gender.as_deref()),
        (None, Some(31.0), Some("1"))
    );
    assert_eq!(e.race, Some(json!({"r": 1})));
    assert_eq!(
        (u.entities[1].bbox.as_ref(), u.entities[1].race.as_ref()),
        (None, None)
    );
    assert_eq!(u.entities[2], Entity::default());
    // Only objects are warnings: a blank code is UNKNOWN, a blank level `unknown`.
    let w = &l.warnings;
    assert_eq!(w.len(), 5);
    assert_eq!(
        (w[0].risk.as_str(), w[0].log_type.as_str()),
        ("UNKNOWN", "error")
    );
    assert_eq!(
        (w[1].risk.as_str(), w[1].feature.as_deref()),
        ("5", Some("false"))
    );
    assert_eq!(w[1].additional_data, Some(json!([1])));
    assert_eq!(w[1].long_description.as_deref(), Some("2.5"));
    for blank in &w[2..] {
        assert_eq!(blank, &Warning::default());
    }
    assert_eq!(
        (r.vendor_data.as_deref(), r.metadata.as_ref()),
        (Some("false"), None)
    );
    let shapes = [
        documented_declined(),
        json!({}),
        json!({"liveness": null, "metadata": {"a": [1]}}),
        json!({"liveness": [1, 2], "vendor_data": "v"}),
        json!({"liveness": {"user_image": [], "warnings": {"risk": "X"}}}),
        json!({"liveness": {"user_image": null, "warnings": null}}),
        json!({"liveness": {"user_image": {"entities": {}, "best_angle": null}}}),
    ];
    for v in shapes {
        assert_eq!(
            CheckResponse::read(&v.to_string()).unwrap(),
            Some(parse(v.clone())),
            "{v}"
        );
    }
    // Anything but an object reads as nothing.
    for v in [json!(null), json!([1]), json!("Approved")] {
        assert_eq!(CheckResponse::read(&v.to_string()).unwrap(), None);
        assert_eq!(parse(v), CheckResponse::default());
    }
    assert!(CheckResponse::read("{not json").is_err());
}

fn documented_declined() -> Value {
    json!({
        "request_id": "f1c8c9b2-d3e4-4f5a-9b8c-7d6e5f4a3b2c",
        "liveness": {
            "status": "Declined", "method": "PASSIVE", "score": 12.5,
            "user_image": {"entities": [
                {"bbox": [100, 120, 420, 540], "confidence": 0.81, "age": 30.1, "gender": "female", "race": null},
                {"bbox": [0, 0, 10, 10], "confidence": 0.5, "age": 50.0, "gender": "male", "race": null}
            ], "best_angle": 0},
            "warnings": [
                {"risk": "LOW_LIVENESS_SCORE", "feature": "LIVENESS", "additional_data": null,
                 "log_type": "error", "short_description": "Low liveness score", "long_description": "..."},
                {"risk": "FACE_IN_BLOCKLIST", "feature": "LIVENESS",
                 "additional_data": {"blocklisted_session_id": "882c", "blocklisted_session_number": 3242, "api_service": null},
                 "log_type": "error", "short_description": "Face in blocklist", "long_description": "..."}
            ],
            "face_quality": 72.4, "face_luminance": 48.2
        },
        "vendor_data": "user-123", "metadata": {"batch": "q3"},
        "created_at": "2026-06-12T01:04:42.763237+00:00"
    })
}

#[test]
fn parses_every_documented_field() {
    let r = parse(documented_declined());
    assert_eq!(
        r.request_id.as_deref(),
        Some("f1c8c9b2-d3e4-4f5a-9b8c-7d6e5f4a3b2c")
    );
    assert_eq!(r.decision(), Some(Decision::Declined));
    assert_eq!(r.verdict.method.as_deref(), Some("PASSIVE"));
    assert_eq!(r.verdict.score, Some(12.5));
    assert_eq!(r.verdict.face_quality, Some(72.4));
    assert_eq!(r.verdict.face_luminance, Some(48.2));
    assert_eq!(r.verdict.user_image.as_ref().unwrap().best_angle, Some(0));
    assert_eq!(r.risks(), ["LOW_LIVENESS_SCORE", "FACE_IN_BLOCKLIST"]);
    let w = &r.verdict.warnings[1];
    assert_eq!(w.log_type, "error");
    assert_eq!(w.feature.as_deref(), Some("LIVENESS"));
    assert_eq!(
        w.additional_data.as_ref().unwrap()["blocklisted_session_number"],
        3242
    );
    assert_eq!(w.short_description.as_deref(), Some("Face in blocklist"));
    assert_eq!(r.vendor_data.as_deref(), Some("user-123"));
    assert_eq!(r.metadata, Some(json!({"batch": "q3"})));
    let face = r.largest_face().unwrap();
    assert_eq!(face.gender.as_deref(), Some("female"));
    assert_eq!(face.age, Some(30.1));
    assert_eq!(
        face.bbox.as_deref(),
        Some(&[100.0, 120.0, 420.0, 540.0][..])
    );
}

#[test]
fn no_face_detected_nulls() {
    let r = parse(json!({
        "request_id": "x",
        "liveness": {"status": "Declined", "method": "PASSIVE", "score": null,
            "user_image": {"entities": [], "best_angle": null},
            "warnings": [{"risk": "NO_FACE_DETECTED", "feature": "LIVENESS", "additional_data": null,
                "log_type": "error", "short_description": "No face detected", "long_description": "..."}],
            "face_quality": null, "face_luminance": null},
        "vendor_data": null, "metadata": null, "created_at": "2026-06-12T01:04:42Z"
    }));
    assert_eq!(r.decision(), Some(Decision::Declined));
    assert_eq!(r.verdict.score, None);
    assert_eq!(r.verdict.face_quality, None);
    assert_eq!(r.verdict.face_luminance, None);
    assert!(r.largest_face().is_none());
    assert_eq!(r.metadata, None);
    assert_eq!(r.vendor_data, None);
    let mut rec = Record::default();
    r.fill_record(json!({"raw": true}).into(), &mut rec);
    assert_eq!(rec.face, None);
    assert_eq!(rec.score, None);
    assert_eq!(rec.warnings[0].risk, "NO_FACE_DETECTED");
    assert!(rec.billed);
}

#[test]
fn unknown_keys_codes_and_odd_types_never_fail() {
    let r = parse(json!({
        "request_id": "x", "brand_new_top_level": {"a": 1},
        "liveness": {"status": "Approved", "score": "88.5", "node_id": 7,
            "user_image": {"entities": [{"bbox": "garbled", "age": null, "extra": 1}], "best_angle": 90.0},
            "warnings": [
                {"risk": "SOME_NEW_RISK", "log_type": "Warning", "node_id": "n-1", "feature": "LIVENESS"},
                {"log_type": null},
                "not an object"
            ],
            "face_quality": true, "face_luminance": 51},
        "created_at": "2026-06-12T01:04:42Z"
    }));
    assert_eq!(r.decision(), Some(Decision::Approved));
    assert_eq!(r.verdict.score, Some(88.5));
    assert_eq!(r.verdict.face_quality, None);
    assert_eq!(r.verdict.face_luminance, Some(51.0));
    assert_eq!(r.verdict.user_image.as_ref().unwrap().best_angle, Some(90));
    assert_eq!(r.largest_face().unwrap().bbox, None);
    assert_eq!(r.risks(), ["SOME_NEW_RISK", "UNKNOWN"]);
    assert_eq!(r.verdict.warnings[0].log_type, "warning");
    assert_eq!(r.verdict.warnings[1].log_type, "unknown");
}

#[test]
fn missing_everything_is_still_a_value() {
    let r = parse(json!({}));
    assert_eq!(r, CheckResponse::default());
    assert_eq!(r.decision(), None);
    let r = parse(json!({"liveness": null}));
    assert_eq!(r.decision(), None);
    let r = parse(json!({"liveness": {"warnings": null, "user_image": null}}));
    assert!(r.verdict.warnings.is_empty());
}

#[test]
fn decision_without_status_follows_error_warnings_and_never_assumes_approval() {
    let declined = parse(
        json!({"liveness": {"warnings": [{"risk": "LIVENESS_FACE_ATTACK", "log_type": "error"}]}}),
    );
    assert_eq!(declined.decision(), Some(Decision::Declined));
    let odd = parse(json!({"liveness": {"status": "In Review", "warnings": []}}));
    assert_eq!(odd.decision(), None);
    let lower = parse(json!({"liveness": {"status": "approved"}}));
    assert_eq!(lower.decision(), Some(Decision::Approved));
}

#[test]
fn both_created_at_forms_parse_to_the_same_instant() {
    let a = parse(json!({"created_at": "2026-06-12T01:04:42.763237+00:00"}));
    let b = parse(json!({"created_at": "2026-06-12T01:04:42.763237Z"}));
    assert_eq!(a.created_at_utc(), b.created_at_utc());
    assert!(a.created_at_utc().is_some());
    assert_eq!(
        a.created_at.as_deref(),
        Some("2026-06-12T01:04:42.763237+00:00"),
        "kept as received"
    );
    assert_eq!(
        parse(json!({"created_at": "yesterday"})).created_at_utc(),
        None
    );
}

#[test]
fn largest_face_by_area_first_on_tie() {
    let r = parse(json!({"liveness": {"user_image": {"entities": [
        {"bbox": [0, 0, 10, 10], "gender": "a"},
        {"bbox": [0, 0, 20, 20], "gender": "b"},
        {"bbox": [5, 5, 25, 25], "gender": "c"}
    ]}}}));
    assert_eq!(r.largest_face().unwrap().gender.as_deref(), Some("b"));
}

#[test]
fn fill_record_copies_everything() {
    let raw = documented_declined();
    let r = parse(raw.clone());
    let mut rec = Record::default();
    r.fill_record(raw.clone().into(), &mut rec);
    assert_eq!(rec.class, Some(Class::Result));
    assert_eq!(rec.status, Some(Decision::Declined));
    assert_eq!(rec.score, Some(12.5));
    assert_eq!(rec.face_quality, Some(72.4));
    assert_eq!(rec.face_luminance, Some(48.2));
    assert_eq!(rec.warnings.len(), 2);
    assert_eq!(rec.warnings[1].risk, "FACE_IN_BLOCKLIST");
    assert_eq!(rec.warnings[1].log_type, "error");
    let face = rec.face.as_ref().unwrap();
    assert_eq!(face.age, Some(30.1));
    assert_eq!(face.confidence, Some(0.81));
    assert_eq!(
        rec.request_id.as_deref(),
        Some("f1c8c9b2-d3e4-4f5a-9b8c-7d6e5f4a3b2c")
    );
    assert_eq!(
        rec.created_at.as_deref(),
        Some("2026-06-12T01:04:42.763237+00:00")
    );
    assert_eq!(rec.response, Some(raw.into()));
    assert!(rec.billed);
    assert_eq!(rec.with_action().action, Some(crate::record::Action::Fraud));
}

#[test]
fn params_validation() {
    let ok = |t| {
        Params {
            threshold: t,
            ..Default::default()
        }
        .validate()
    };
    assert!(ok(None).is_ok());
    assert!(ok(Some(0.0)).is_ok());
    assert!(ok(Some(100.0)).is_ok());
    assert!(ok(Some(80.5)).is_ok());
    for bad in [-0.1, 100.01, f64::NAN, f64::INFINITY] {
        let e = ok(Some(bad)).unwrap_err().to_string();
        assert!(e.contains("0 to 100"), "{e}");
    }
}

#[test]
fn threshold_is_sent_as_a_plain_number() {
    let p = |t| {
        Params {
            threshold: Some(t),
            ..Default::default()
        }
        .threshold_text()
        .unwrap()
    };
    assert_eq!(p(30.0), "30");
    assert_eq!(p(80.5), "80.5");
    assert_eq!(p(0.0001), "0.0001");
}

#[test]
fn metadata_must_be_an_object() {
    assert_eq!(parse_metadata(r#"{"a": 1}"#).unwrap()["a"], 1);
    let e = parse_metadata("[1,2]").unwrap_err().to_string();
    assert!(
        e.contains("must be a JSON object") && e.contains("an array"),
        "{e}"
    );
    let e = parse_metadata("\"text\"").unwrap_err().to_string();
    assert!(e.contains("a string"), "{e}");
    let e = parse_metadata("{not json").unwrap_err().to_string();
    assert!(e.contains("not valid JSON"), "{e}");
}

#[test]
fn upload_names_the_real_extension() {
    let u = Upload::new(Bytes::from_static(b"x"), "jpg", "image/jpeg");
    assert_eq!(u.file_name, "image.jpg");
    assert_eq!(u.mime, "image/jpeg");
}
