//! Unit tests of the emulator's form module.

use super::*;

fn form_with(image: Option<(&str, &[u8])>, text: &[(&str, &str)]) -> RawForm {
    RawForm {
        image: image.map(|(name, bytes)| {
            ImagePart::File(Upload {
                file_name: name.into(),
                bytes: Bytes::copy_from_slice(bytes),
            })
        }),
        reference: None,
        text: text
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        log_fields: Map::new(),
    }
}

fn file(name: &str, bytes: &[u8]) -> ImagePart {
    ImagePart::File(Upload {
        file_name: name.into(),
        bytes: Bytes::copy_from_slice(bytes),
    })
}

#[test]
fn face_match_needs_both_images_and_reads_its_own_threshold() {
    let mut form = form_with(
        Some(("a.jpg", b"xx")),
        &[
            ("face_match_score_decline_threshold", "55"),
            ("face_liveness_score_decline_threshold", "99"),
        ],
    );
    let err = validate_for(Check::FaceMatch, &form).unwrap_err();
    assert_eq!(err, json!({"ref_image": ["No file was submitted."]}));
    form.reference = Some(file("id.png", b"yy"));
    let f = validate_for(Check::FaceMatch, &form).unwrap();
    assert_eq!(
        f.threshold, 55.0,
        "the liveness threshold is not face match's"
    );
    assert_eq!(f.reference.as_deref(), Some(&b"yy"[..]));
    assert!(f.save_api_request, "Didit's default is true");

    // Both images wrong: both listed, user_image first, with the threshold's message after.
    let mut bad = form_with(
        Some(("a.txt", b"xx")),
        &[("face_match_score_decline_threshold", "101")],
    );
    bad.reference = Some(ImagePart::Text);
    let err = validate_for(Check::FaceMatch, &bad).unwrap_err();
    let keys: Vec<&String> = err.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "user_image",
            "ref_image",
            "face_match_score_decline_threshold"
        ]
    );
    assert_eq!(
        err["ref_image"],
        json!(["The submitted data was not a file. Check the encoding type on the form."])
    );
    assert_eq!(
        err["face_match_score_decline_threshold"],
        json!(["Ensure this value is less than or equal to 100."])
    );
}

#[test]
fn liveness_ignores_a_reference_image() {
    let mut form = form_with(Some(("a.jpg", b"xx")), &[]);
    form.reference = Some(ImagePart::Text);
    let f = validate(&form).unwrap();
    assert_eq!(f.check, Check::Liveness);
    assert_eq!(f.reference, None);
}

#[test]
fn the_minimum_age_is_an_integer_from_0_to_100_defaulting_to_18() {
    let age =
        |text: &[(&str, &str)]| validate_for(Check::Age, &form_with(Some(("a.jpg", b"x")), text));
    assert_eq!(age(&[]).unwrap().min_age, 18);
    assert_eq!(age(&[(MIN_AGE_FIELD, "0")]).unwrap().min_age, 0);
    assert_eq!(age(&[(MIN_AGE_FIELD, " 21 ")]).unwrap().min_age, 21);
    assert_eq!(age(&[(MIN_AGE_FIELD, "21.00")]).unwrap().min_age, 21);
    assert_eq!(age(&[(MIN_AGE_FIELD, "21.")]).unwrap().min_age, 21);
    for (text, message) in [
        ("18.5", "A valid integer is required."),
        ("eighteen", "A valid integer is required."),
        (".5", "A valid integer is required."),
        ("101", "Ensure this value is less than or equal to 100."),
        ("-1", "Ensure this value is greater than or equal to 0."),
    ] {
        assert_eq!(
            age(&[(MIN_AGE_FIELD, text)]).unwrap_err(),
            json!({ MIN_AGE_FIELD: [message] }),
            "{text}"
        );
    }
    // The liveness threshold is validated beside it, in Didit's order of the fields.
    let err = age(&[
        (MIN_AGE_FIELD, "x"),
        ("face_liveness_score_decline_threshold", "-3"),
    ])
    .unwrap_err();
    let keys: Vec<&String> = err.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["face_liveness_score_decline_threshold", MIN_AGE_FIELD]
    );
}

#[test]
fn defaults() {
    let f = validate(&form_with(Some(("a.JPG", b"xx")), &[])).unwrap();
    assert_eq!(f.threshold, 30.0);
    assert!(!f.rotate_image);
    assert!(f.save_api_request, "Didit's default is true");
    assert_eq!(f.vendor_data, None);
    assert_eq!(f.metadata, None);
}

#[test]
fn all_fields() {
    let f = validate(&form_with(
        Some(("selfie.webp", b"xx")),
        &[
            ("face_liveness_score_decline_threshold", "72.5"),
            ("rotate_image", "true"),
            ("save_api_request", "False"),
            ("vendor_data", "user-1"),
            ("metadata", r#"{"a": 1}"#),
            ("unknown", "ignored"),
        ],
    ))
    .unwrap();
    assert_eq!(f.threshold, 72.5);
    assert!(f.rotate_image);
    assert!(!f.save_api_request);
    assert_eq!(f.vendor_data.as_deref(), Some("user-1"));
    assert_eq!(f.metadata, Some(json!({"a": 1})));
}

#[test]
fn errors_are_collected_per_field() {
    let err = validate(&form_with(
        Some(("notes.TXT", &vec![0u8; MAX_IMAGE_BYTES + 1])),
        &[
            ("face_liveness_score_decline_threshold", "abc"),
            ("rotate_image", "maybe"),
            ("metadata", "[1, 2]"),
        ],
    ))
    .unwrap_err();
    assert_eq!(
        err,
        json!({
            "user_image": [
                "File extension “txt” is not allowed. Allowed extensions are: tiff, jpg, jpeg, png, webp.",
                "File size should not exceed 5 MB"
            ],
            "face_liveness_score_decline_threshold": ["A valid number is required."],
            "rotate_image": ["Must be a valid boolean."],
            "metadata": ["Value must be valid JSON."]
        })
    );
}

#[test]
fn image_part_variants() {
    assert_eq!(
        validate(&form_with(None, &[])).unwrap_err(),
        json!({"user_image": ["No file was submitted."]})
    );
    assert_eq!(
        validate(&form_with(Some(("a.png", b"")), &[])).unwrap_err(),
        json!({"user_image": ["The submitted file is empty."]})
    );
    let mut text = form_with(None, &[]);
    text.image = Some(ImagePart::Text);
    assert_eq!(
        validate(&text).unwrap_err(),
        json!({"user_image": ["The submitted data was not a file. Check the encoding type on the form."]})
    );
    assert_eq!(
        validate(&form_with(Some(("noext", b"x")), &[])).unwrap_err(),
        json!({"user_image": ["File extension “” is not allowed. Allowed extensions are: tiff, jpg, jpeg, png, webp."]})
    );
    // Exactly 5 MB is allowed.
    assert!(
        validate(&form_with(
            Some(("a.tiff", &vec![1u8; MAX_IMAGE_BYTES])),
            &[]
        ))
        .is_ok()
    );
}

#[test]
fn thresholds() {
    let t = |v: &str| {
        validate(&form_with(
            Some(("a.jpeg", b"x")),
            &[("face_liveness_score_decline_threshold", v)],
        ))
        .map(|f| f.threshold)
        .map_err(|e| e["face_liveness_score_decline_threshold"][0].clone())
    };
    assert_eq!(t("0"), Ok(0.0));
    assert_eq!(t("100"), Ok(100.0));
    assert_eq!(t(" 80 "), Ok(80.0));
    assert_eq!(t(""), Ok(30.0), "empty means absent");
    assert_eq!(
        t("100.01"),
        Err(json!("Ensure this value is less than or equal to 100."))
    );
    assert_eq!(
        t("-1"),
        Err(json!("Ensure this value is greater than or equal to 0."))
    );
    assert_eq!(t("NaN"), Err(json!("A valid number is required.")));
    assert_eq!(t("ten"), Err(json!("A valid number is required.")));
}

#[test]
fn booleans_follow_drf() {
    for (v, want) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("0", false),
        ("off", false),
    ] {
        let f = validate(&form_with(
            Some(("a.jpg", b"x")),
            &[("save_api_request", v)],
        ))
        .unwrap();
        assert_eq!(f.save_api_request, want, "{v}");
    }
    let err = validate(&form_with(
        Some(("a.jpg", b"x")),
        &[("save_api_request", "TRUE!")],
    ))
    .unwrap_err();
    assert_eq!(
        err,
        json!({"save_api_request": ["Must be a valid boolean."]})
    );
}

#[test]
fn extensions() {
    assert_eq!(extension_of("a.JPG"), "jpg");
    assert_eq!(extension_of("dir.x/a.tar.gz"), "gz");
    assert_eq!(extension_of(".png"), "");
    assert_eq!(extension_of("..png"), "png");
    assert_eq!(extension_of("a."), "");
    assert_eq!(extension_of("C:\\x\\y.webp"), "webp");
    assert_eq!(extension_of("noext"), "");
}
