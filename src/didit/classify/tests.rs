use super::*;
use reqwest::header::HeaderValue;
use serde_json::json;

fn none() -> HeaderMap {
    HeaderMap::new()
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn rejected(o: Outcome) -> (u16, Option<String>, String) {
    match o {
        Outcome::Rejected {
            status,
            field,
            message,
        } => (status, field, message),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn fatal_kind(o: Outcome) -> (FatalKind, String) {
    match o {
        Outcome::Fatal { kind, message, .. } => (kind, message),
        other => panic!("expected Fatal, got {other:?}"),
    }
}

const DIDIT: &str = r#"{
  "request_id": "f1c8c9b2-d3e4",
  "liveness": {
    "status": "Declined", "method": "PASSIVE", "score": 12.5,
    "user_image": {"entities": [
        {"bbox": [1, 2.5, 40, 60], "confidence": 0.81, "age": 30.1, "gender": "male", "race": null},
        {"bbox": [0, 0, 100, 120], "confidence": 0.9, "age": null, "gender": null, "race": "x"}],
      "best_angle": 2.6},
    "warnings": [
      {"risk": "LOW_LIVENESS_SCORE", "feature": "LIVENESS", "additional_data": null,
       "log_type": " Error ", "short_description": "Low \"score\"", "long_description": "a\\b"},
      {"risk": "", "log_type": null, "additional_data": {"n": [1, 2]}}],
    "face_quality": 72, "face_luminance": 48.2, "new_field": {"x": [true]}},
  "vendor_data": "user-1",
  "metadata": {"batch": "q3", "nested": {"k": null}},
  "created_at": "2026-06-12T01:04:42.763237+00:00",
  "extra": [1, "two", {"three": 3}]
}"#;

/// The one reading, from a parsed value (the model's `Deserialize`, the other deserializer).
fn from_value(text: &str) -> (CheckResponse, Value) {
    let v: Value = serde_json::from_str(text).unwrap();
    (serde_json::from_value(v.clone()).unwrap(), v)
}

#[test]
fn an_answer_is_read_once_and_kept_as_one_line() {
    let Outcome::Result {
        raw: Answer::Text(text),
        response,
    } = classify(200, &none(), DIDIT.as_bytes())
    else {
        panic!("a result kept as text")
    };
    let (want, value) = from_value(DIDIT);
    assert_eq!(*response, want);
    assert_eq!(response.decision(), Some(crate::record::Decision::Declined));
    assert_eq!(response.verdict.face_quality, Some(72.0));
    assert_eq!(response.verdict.warnings[0].log_type, "error");
    assert_eq!(response.verdict.warnings[1].risk, "UNKNOWN");
    assert!(!text.get().contains(['\n', '\r', '\t']), "{}", text.get());
    assert!(!text.get().contains(": "), "{}", text.get());
    // The strings are copied as they are: their spaces and escapes stay.
    assert!(text.get().contains(r#""Low \"score\"""#), "{}", text.get());
    assert!(text.get().contains(r#""a\\b""#), "{}", text.get());
    let kept: Value = serde_json::from_str(text.get()).unwrap();
    assert_eq!(kept, value);
}

#[test]
fn an_answer_of_another_shape_is_read_by_the_same_lenient_rules() {
    let liveness = |l: &str| format!(r#"{{"request_id": "r", "liveness": {l}}}"#);
    let odd = [
        // A number as a string, a status as a number beside an error warning, lists and
        // objects where the other is due, a key given twice (the last counts), a non-object
        // warning (skipped).
        (
            liveness(r#"{"status": "Approved", "score": "97.5"}"#),
            "Approved",
        ),
        (
            liveness(r#"{"status": 3, "warnings": [{"risk": "X", "log_type": "error"}]}"#),
            "Declined",
        ),
        (
            liveness(r#"{"status": "Approved", "user_image": [[1, 2, 3, 4]]}"#),
            "Approved",
        ),
        (
            liveness(r#"{"status": "Approved", "warnings": {"risk": "X"}}"#),
            "Approved",
        ),
        (
            liveness(r#"{"status": "Declined", "status": "Approved"}"#),
            "Approved",
        ),
        (
            liveness(r#"{"status": "Approved", "warnings": [["X", null, null, "error"]]}"#),
            "Approved",
        ),
        (
            liveness(
                r#"{"status": "Approved", "user_image": {"entities": [{"bbox": ["1", 2, 3, 4]}]}}"#,
            ),
            "Approved",
        ),
        (
            r#"{"request_id": 7, "liveness": {"status": "Approved"}}"#.to_string(),
            "Approved",
        ),
        (
            r#"{"liveness": {"status": "Approved"}, "liveness": {"status": "Declined"}}"#
                .to_string(),
            "Declined",
        ),
    ];
    for (text, decision) in &odd {
        let (want, value) = from_value(text);
        match classify(200, &none(), text.as_bytes()) {
            Outcome::Result { response, raw } => {
                assert_eq!(*response, want, "{text}");
                assert_eq!(response.decision().map(|d| d.as_str()), Some(*decision));
                assert_eq!(raw, value, "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Without a decision the reading gives the reason.
    let o = classify(
        200,
        &none(),
        liveness(r#"{"status": "Pending"}"#).as_bytes(),
    );
    assert_eq!(o.class(), Class::BadAnswer);
    assert!(o.to_string().contains("Pending"), "{o}");
}

#[test]
fn text_and_value_readings_agree_field_by_field() {
    // Every field in its usual forms: missing, null, a value.
    let forms = [
        ("score", vec!["null", "0", "99.5", "100", "1e2", "-0.0"]),
        ("face_quality", vec!["null", "7", "7.25"]),
        ("method", vec!["null", r#""ACTIVE""#, r#""""#]),
        (
            "warnings",
            vec![
                "null",
                "[]",
                r#"[{}]"#,
                r#"[{"risk": " ", "log_type": ""}]"#,
            ],
        ),
        (
            "user_image",
            vec![
                "null",
                "{}",
                r#"{"entities": null, "best_angle": -1.5}"#,
                r#"{"entities": [{}, {"bbox": []}, {"bbox": [0, 0, 1e3, 2]}], "best_angle": 0}"#,
            ],
        ),
    ];
    for (field, values) in &forms {
        for v in values {
            for status in [r#""Approved""#, r#"" declined ""#] {
                let text = format!(
                    r#"{{"liveness": {{"status": {status}, "{field}": {v}}}, "metadata": null}}"#
                );
                let Outcome::Result { response, raw } = classify(200, &none(), text.as_bytes())
                else {
                    panic!("{text}")
                };
                let (want, value) = from_value(&text);
                assert_eq!(*response, want, "{text}");
                assert_eq!(raw, value);
            }
        }
    }
}

/// The plain byte-by-byte statement of [`one_line`].
fn one_line_reference(body: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        } else if b == b'"' {
            in_string = true;
        }
        out.push(b);
    }
    String::from_utf8(out).ok()
}

#[test]
fn one_line_agrees_with_its_plain_statement_on_any_bytes() {
    // Short strings over the bytes that matter (quotes, backslashes, white space),
    // including unfinished strings and escapes at the very end.
    const ALPHABET: &[u8] = b"\"\\ \n\t\ra{:,";
    for body in crate::testing::byte_strings(ALPHABET, 12, 20_000) {
        assert_eq!(one_line(&body), one_line_reference(&body), "{body:?}");
    }
    for body in [
        &b""[..],
        b"   ",
        b"\"",
        b"\"\\",
        b"\"a\\\"",
        b"{\"a\": \"b\\\\\"} ",
    ] {
        assert_eq!(one_line(body), one_line_reference(body), "{body:?}");
    }
}

#[test]
fn one_line_drops_only_the_space_between_tokens() {
    let pretty = "{\n  \"a b\" : [ 1 ,\t2 ],\r\n  \"c\": \"x \\\" y\\\\\" , \"d\":\"\\\\\"\n}\n";
    assert_eq!(
        one_line(pretty.as_bytes()).unwrap(),
        "{\"a b\":[1,2],\"c\":\"x \\\" y\\\\\",\"d\":\"\\\\\"}"
    );
    assert_eq!(one_line(b"{\"k\": \"\xff\"}"), None);
    // Not JSON: left for the parse to refuse.
    assert_eq!(one_line(b"not json").unwrap(), "notjson");
    for not_an_object in [
        &b"{\"liveness\": {\"status\": \"Approved\"}} trailing"[..],
        b"[{\"liveness\": {\"status\": \"Approved\"}}]",
    ] {
        let o = classify(200, &none(), not_an_object);
        assert!(matches!(o, Outcome::Transient { .. }), "{o:?}");
    }
}

#[test]
fn row_200_result() {
    let raw =
        json!({"request_id": "r", "liveness": {"status": "Approved", "score": 95, "warnings": []}});
    match classify(200, &none(), &body(raw.clone())) {
        Outcome::Result {
            response,
            raw: kept,
        } => {
            assert_eq!(kept, raw);
            assert_eq!(response.decision(), Some(crate::record::Decision::Approved));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn row_200_with_unknown_fields_risk_codes_and_nulls_is_still_a_result() {
    let raw = json!({"request_id": "r", "new_key": [1],
        "liveness": {"status": "Declined", "score": null, "face_quality": null, "face_luminance": null,
            "user_image": {"entities": [], "best_angle": null},
            "warnings": [{"risk": "BRAND_NEW_RISK", "log_type": "error", "node_id": "x"}]},
        "created_at": "2026-01-01T00:00:00Z"});
    let o = classify(200, &none(), &body(raw));
    assert_eq!(o.class(), Class::Result);
    let Outcome::Result { response, .. } = o else {
        unreachable!()
    };
    assert_eq!(response.risks(), ["BRAND_NEW_RISK"]);
}

#[test]
fn row_200_without_a_usable_liveness_is_a_bad_answer() {
    for (raw, want) in [
        (json!({"request_id": "r"}), "no `liveness` object"),
        (json!({"liveness": null}), "`liveness` is null"),
        (json!({"liveness": "Approved"}), "`liveness` is a string"),
        (json!({"liveness": [1]}), "`liveness` is an array"),
        (
            json!({"liveness": {"score": 90}}),
            "`liveness.status` is missing",
        ),
        (
            json!({"liveness": {"status": null}}),
            "`liveness.status` is null",
        ),
        (
            json!({"liveness": {"status": 1}}),
            "`liveness.status` is a number",
        ),
        (
            json!({"liveness": {"status": "In Review", "warnings": []}}),
            "\"In Review\" is neither Approved nor Declined",
        ),
    ] {
        let o = classify(200, &none(), &body(raw.clone()));
        assert_eq!(o.class(), Class::BadAnswer, "{raw}");
        assert!(!o.billed_nothing(), "a 200 is billed");
        match o {
            Outcome::BadAnswer { message, raw: kept } => {
                assert!(message.contains(want), "{message}");
                assert!(message.starts_with("HTTP 200 without a usable result"));
                assert_eq!(kept, raw);
            }
            other => panic!("{other:?}"),
        }
    }
    // A long unknown status is not echoed whole.
    let long = "X".repeat(10_000);
    let o = classify(200, &none(), &body(json!({"liveness": {"status": long}})));
    assert!(o.to_string().len() < 300, "{o}");
    // No status but an error-level warning is still Declined (as Didit derives it).
    let o = classify(
        200,
        &none(),
        &body(
            json!({"liveness": {"warnings": [{"risk": "NO_FACE_DETECTED", "log_type": "error"}]}}),
        ),
    );
    assert_eq!(o.class(), Class::Result);
}

#[test]
fn a_redirect_location_is_cut() {
    let mut h = HeaderMap::new();
    let long = format!("https://x.example/{}", "a".repeat(5000));
    h.insert("location", HeaderValue::from_str(&long).unwrap());
    let (_, message) = fatal_kind(classify(302, &h, b""));
    assert!(message.len() < 600, "{}", message.len());
}

#[test]
fn row_200_not_json_is_transient_and_may_be_billed() {
    for b in [&b"<html>oops</html>"[..], b"", b"[1,2]", b"{truncated"] {
        match classify(200, &none(), b) {
            Outcome::Transient {
                status,
                body_sent,
                message,
            } => {
                assert_eq!(status, Some(200));
                assert!(body_sent);
                assert!(message.contains("not a JSON object"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn row_400_field_maps() {
    let cases = [
        (
            json!({"user_image": ["No file was submitted."]}),
            "user_image",
            "No file was submitted.",
        ),
        (
            json!({"user_image": ["File size should not exceed 5 MB"]}),
            "user_image",
            "File size should not exceed 5 MB",
        ),
        (
            json!({"user_image": ["File extension “txt” is not allowed. Allowed extensions are: tiff, jpg, jpeg, png, webp."]}),
            "user_image",
            "File extension “txt” is not allowed.",
        ),
        (
            json!({"face_liveness_score_decline_threshold": ["Ensure this value is less than or equal to 100."]}),
            "face_liveness_score_decline_threshold",
            "less than or equal to 100",
        ),
    ];
    for (b, want_field, want_msg) in cases {
        let (status, field, message) = rejected(classify(400, &none(), &body(b)));
        assert_eq!(status, 400);
        assert_eq!(field.as_deref(), Some(want_field));
        assert!(message.contains(want_msg), "{message}");
        assert!(
            !message.starts_with(want_field),
            "field not repeated: {message}"
        );
    }
}

#[test]
fn row_400_error_shape_and_several_fields() {
    let (_, field, message) = rejected(classify(
        400,
        &none(),
        &body(json!({"error": "Invalid user image format."})),
    ));
    assert_eq!(field, None);
    assert_eq!(message, "Invalid user image format.");
    let (_, field, message) = rejected(classify(
        400,
        &none(),
        &body(
            json!({"rotate_image": ["Must be a valid boolean."], "metadata": ["Value must be valid JSON."]}),
        ),
    ));
    // The first field as the API listed it names the error.
    assert_eq!(field.as_deref(), Some("rotate_image"));
    assert!(
        message.contains("rotate_image: Must be a valid boolean.")
            && message.contains("metadata: Value"),
        "{message}"
    );
    let (_, field, message) = rejected(classify(
        400,
        &none(),
        b"<html><title>Bad Request</title></html>",
    ));
    assert_eq!(field, None);
    assert!(message.contains("Bad Request"), "{message}");
}

#[test]
fn rows_401_402_403_stop_the_run_with_their_kind() {
    let credits = json!({"error": "You don't have enough credits to perform this request. Please top up at https://business.didit.me"});
    let cases = [
        (
            401,
            body(json!({"detail": "Invalid API Key."})),
            FatalKind::InvalidKey,
            "Invalid API Key.",
            3,
            "key was refused",
        ),
        (
            402,
            Vec::new(),
            FatalKind::PaymentRequired,
            "",
            4,
            "rerun the same command",
        ),
        (
            403,
            body(json!({"detail": "You do not have permission to perform this action."})),
            FatalKind::Permission,
            "permission",
            3,
            "key was refused",
        ),
        (
            403,
            body(credits),
            FatalKind::OutOfCredits,
            "credits",
            4,
            "top up",
        ),
    ];
    for (status, raw, want, said, code, explains) in cases {
        let (kind, message) = fatal_kind(classify(status, &none(), &raw));
        assert_eq!(kind, want, "HTTP {status}");
        assert!(message.contains(said), "{message}");
        assert_eq!(kind.exit_code().code(), code, "{kind:?}");
        assert!(kind.explain().contains(explains), "{kind:?}");
    }
    assert!(
        FatalKind::OutOfCredits
            .explain()
            .contains("rerun the same command")
    );
}

#[test]
fn a_403_without_didits_body_is_read_by_its_words() {
    // A proxy's HTML 403 is a permission problem; plain text about credits is credits.
    assert_eq!(
        fatal_kind(classify(403, &none(), b"<html>Forbidden</html>")).0,
        FatalKind::Permission
    );
    assert_eq!(
        fatal_kind(classify(403, &none(), b"not enough credits")).0,
        FatalKind::OutOfCredits
    );
}

#[test]
fn row_404_and_wrong_endpoints() {
    for status in [404, 405, 410] {
        let (kind, _) = fatal_kind(classify(
            status,
            &none(),
            &body(json!({"detail": "Not found."})),
        ));
        assert_eq!(kind, FatalKind::NotFound);
        assert_eq!(kind.exit_code().code(), 3);
    }
    let mut h = HeaderMap::new();
    h.insert(
        "location",
        HeaderValue::from_static("https://elsewhere.example/v3/passive-liveness/"),
    );
    let (kind, message) = fatal_kind(classify(301, &h, b""));
    assert_eq!(kind, FatalKind::NotFound);
    assert!(message.contains("elsewhere.example"), "{message}");
}

#[test]
fn row_413_even_as_html() {
    let (status, field, message) = rejected(classify(
        413,
        &none(),
        b"<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>",
    ));
    assert_eq!(status, 413);
    assert_eq!(field.as_deref(), Some("user_image"));
    assert!(
        message.contains("too large") && message.contains("413 Request Entity Too Large"),
        "{message}"
    );
}

#[test]
fn row_429_with_all_headers() {
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("17"));
    h.insert("x-ratelimit-limit", HeaderValue::from_static("300"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("x-ratelimit-reset", HeaderValue::from_static("1781226299"));
    let o = classify(
        429,
        &h,
        &body(
            json!({"detail": "Write request rate limit exceeded. You can make up to 300 requests per minute."}),
        ),
    );
    assert_eq!(
        o,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(17)),
            reset_at: Some(1781226299),
            limit: Some(300),
            remaining: Some(0)
        }
    );
    assert!(o.billed_nothing());
    assert!(o.to_string().contains("429"));
}

#[test]
fn row_429_missing_or_garbled_headers() {
    let nothing_known = Outcome::RateLimited {
        retry_after: None,
        reset_at: None,
        limit: None,
        remaining: None,
    };
    assert_eq!(classify(429, &none(), b""), nothing_known);
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("soon"));
    h.insert("x-ratelimit-limit", HeaderValue::from_static("-5"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("lots"));
    h.insert("x-ratelimit-reset", HeaderValue::from_static("NaN"));
    assert_eq!(classify(429, &h, b"<html>slow down</html>"), nothing_known);
    // A huge Retry-After is kept as asked (the wait is capped later, with a warning);
    // absurd numbers stay convertible; decimals are fine.
    let mut h = HeaderMap::new();
    h.insert("retry-after", HeaderValue::from_static("999999999"));
    assert!(matches!(
        classify(429, &h, b""),
        Outcome::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(999_999_999)
    ));
    h.insert("retry-after", HeaderValue::from_static("1e300"));
    assert!(matches!(
        classify(429, &h, b""),
        Outcome::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1_000_000_000)
    ));
    h.insert("retry-after", HeaderValue::from_static("1.5"));
    assert!(matches!(
        classify(429, &h, b""),
        Outcome::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(1500)
    ));
    // The HTTP-date form becomes a reset time.
    h.insert(
        "retry-after",
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert!(matches!(
        classify(429, &h, b""),
        Outcome::RateLimited {
            retry_after: None,
            reset_at: Some(1445412480),
            ..
        }
    ));
}

#[test]
fn row_5xx_empty_html_or_text() {
    for (status, b, want) in [
        (
            500u16,
            &b""[..],
            "HTTP 500 Internal Server Error (empty body)",
        ),
        (
            502,
            b"<html><head><title>502 Bad Gateway</title></head></html>",
            "(HTML page: 502 Bad Gateway)",
        ),
        (
            503,
            b"upstream overloaded\n",
            "HTTP 503 Service Unavailable: upstream overloaded",
        ),
        (504, b"", "Gateway Timeout"),
    ] {
        match classify(status, &none(), b) {
            Outcome::Transient {
                status: s,
                body_sent,
                message,
            } => {
                assert_eq!(s, Some(status));
                assert!(body_sent);
                assert!(message.contains(want), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!classify(500, &none(), b"").billed_nothing());
}

#[test]
fn other_statuses() {
    assert!(matches!(
        classify(408, &none(), b""),
        Outcome::Transient {
            body_sent: true,
            ..
        }
    ));
    let (status, _, message) = rejected(classify(415, &none(), b"unsupported"));
    assert_eq!(status, 415);
    assert!(message.contains("unsupported"));
}

#[test]
fn billed_nothing_and_classes() {
    assert!(classify(400, &none(), b"{}").billed_nothing());
    assert!(classify(403, &none(), b"{}").billed_nothing());
    let pre = Outcome::Transient {
        status: None,
        body_sent: false,
        message: String::new(),
    };
    assert!(pre.billed_nothing());
    assert_eq!(pre.class(), Class::Transient);
    assert_eq!(classify(404, &none(), b"").class(), Class::Fatal);
    assert_eq!(classify(413, &none(), b"").class(), Class::Rejected);
    assert_eq!(classify(429, &none(), b"").class(), Class::RateLimited);
}

#[test]
fn long_bodies_are_cut_and_kept_on_one_line() {
    let long = "x\n".repeat(1000);
    let Outcome::Transient { message, .. } = classify(500, &none(), long.as_bytes()) else {
        unreachable!()
    };
    assert!(message.len() < 400 && !message.contains('\n'), "{message}");
}
