use super::*;

/// The framed body, read back by the emulator's own multipart reader: every field as sent,
/// the image byte for byte.
#[tokio::test]
async fn the_framed_body_reads_back_as_the_form_sent() {
    let boundary = "liveness-batch-0123456789abcdef";
    let image = Bytes::from_static(b"\xff\xd8\xff\xe0 not really a jpeg \r\n--x\r\n");
    let upload = Upload::new(image.clone(), "jpg", "image/jpeg");
    let mut metadata = serde_json::Map::new();
    metadata.insert("case".into(), serde_json::json!("A-1"));
    let params = Params {
        threshold: Some(42.5),
        rotate_image: true,
        save_api_request: false,
        vendor_data: Some("user \"7\"\r\nline two".into()),
        metadata: Some(metadata),
        ..Params::default()
    };
    let body = frame(boundary, &LIVENESS, &[&upload], &params).concat();
    let req = axum::http::Request::post("/")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    let form = crate::emulator::form::read_form(&parts, Bytes::from(body))
        .await
        .expect("a well-formed body");
    match &form.image {
        Some(crate::emulator::form::ImagePart::File(f)) => {
            assert_eq!(f.file_name, "image.jpg");
            assert_eq!(f.bytes, image);
        }
        other => panic!("no image part: {other:?}"),
    }
    let text = |k: &str| form.text.get(k).map(String::as_str);
    assert_eq!(text("save_api_request"), Some("false"));
    assert_eq!(text("rotate_image"), Some("true"));
    assert_eq!(text("face_liveness_score_decline_threshold"), Some("42.5"));
    assert_eq!(text("vendor_data"), Some("user \"7\"\r\nline two"));
    assert_eq!(text("metadata"), Some(r#"{"case":"A-1"}"#));
    assert_eq!(form.text.len(), 5, "{:?}", form.text);
    let validated = crate::emulator::form::validate(&form).expect("valid");
    assert_eq!(validated.threshold, 42.5);
}

fn cfg(base: &str) -> ClientConfig {
    ClientConfig {
        base_url: base.to_string(),
        api_key: ApiKey::new("k_secret_value").unwrap(),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn endpoint_is_base_plus_path_with_trailing_slash() {
    for base in [
        "https://verification.didit.me",
        "https://verification.didit.me/",
        " https://verification.didit.me// ",
    ] {
        let c = Client::new(cfg(base)).unwrap();
        assert_eq!(
            c.endpoint(),
            "https://verification.didit.me/v3/passive-liveness/"
        );
        assert_eq!(c.host(), "verification.didit.me");
    }
    let c = Client::new(cfg("http://127.0.0.1:8080/prefix/")).unwrap();
    assert_eq!(
        c.endpoint(),
        "http://127.0.0.1:8080/prefix/v3/passive-liveness/"
    );
    assert_eq!(c.host(), "127.0.0.1:8080");
}

#[test]
fn plain_http_only_on_loopback() {
    for ok in [
        "http://127.0.0.1:1",
        "http://127.8.9.10",
        "http://2130706433",
        "http://[::1]:9",
        "http://localhost:3000",
        "http://LOCALHOST",
        "http://[::ffff:127.0.0.1]",
    ] {
        assert!(Client::new(cfg(ok)).is_ok(), "{ok}");
    }
    for bad in [
        "http://verification.didit.me",
        "http://10.0.0.1",
        "http://localhost.evil.com",
        "http://[::2]",
        "http://api.localhost",
        "http://localhost.",
        "http://LOCALHOST.",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:10.0.0.1]",
        "http://0.0.0.0:8080",
    ] {
        let e = Client::new(cfg(bad)).unwrap_err().to_string();
        assert!(
            e.contains("refusing to send the API key over plain http"),
            "{bad}: {e}"
        );
        assert!(!e.contains("k_secret_value"));
    }
}

#[test]
fn the_key_is_redacted_from_bodies_in_every_form() {
    let key = "k/se\\cr\"et";
    let raw = serde_json::json!({ "a": key, "nested": {"x": [format!("pre {key} post")]} });
    let body = serde_json::to_vec(&raw).unwrap();
    let out = String::from_utf8(redact_body(&body, key)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["a"], REDACTED);
    assert_eq!(v["nested"]["x"][0], "pre [REDACTED] post");
    // \/ escapes and \u escapes
    let body = br#"{"a": "k\/se\\cr\"et", "b": "\u006b/se\\cr\"et", "\u006b/se\\cr\"et": 1}"#;
    let out = redact_body(body, key);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["a"], REDACTED);
    assert_eq!(v["b"], REDACTED);
    assert_eq!(v[REDACTED], 1);
    assert!(!v.to_string().contains(key));
    // plain text and HTML bodies
    let out = redact_body(format!("<p>{key}</p>{key}").as_bytes(), key);
    assert_eq!(out, b"<p>[REDACTED]</p>[REDACTED]");
    // nothing to do
    assert_eq!(redact_body(b"{}", key), b"{}");
}

#[test]
fn odd_urls_are_refused_with_a_reason() {
    for (bad, want) in [
        ("verification.didit.me", "invalid base URL"),
        ("ftp://x.example", "unsupported scheme"),
        ("https://user:pw@x.example", "credentials"),
        ("https://x.example/?a=1", "no query"),
        ("", "invalid base URL"),
    ] {
        let e = Client::new(cfg(bad)).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
    let mut c = cfg("https://x.example");
    c.timeout = Duration::ZERO;
    assert!(matches!(Client::new(c), Err(ClientError::BadTimeout)));
}

#[test]
fn debug_output_never_shows_the_key() {
    let c = Client::new(cfg("https://x.example")).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("k_secret_value"), "{dbg}");
}

#[test]
fn messages_are_redacted() {
    let c = Client::new(cfg("https://x.example")).unwrap();
    let o = c.redact(Outcome::Fatal {
        kind: crate::didit::FatalKind::Permission,
        status: 403,
        message: "bad key k_secret_value".into(),
    });
    assert!(!format!("{o:?}").contains("k_secret_value"));
}
