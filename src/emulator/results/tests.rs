//! Unit tests of the emulator's results module.

use super::*;
use image::{ImageFormat, Rgb, RgbImage};
use sha2::{Digest, Sha256};

fn textured(seed: u64, w: u32, h: u32, scale: f64) -> RgbImage {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    RgbImage::from_fn(w, h, |x, y| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let n = (s % 40) as f64;
        let v = |base: f64| ((base + n) * scale).clamp(0.0, 255.0) as u8;
        Rgb([
            v(90.0 + f64::from(x) * 80.0 / f64::from(w)),
            v(80.0 + f64::from(y) * 80.0 / f64::from(h)),
            v(70.0),
        ])
    })
}

fn analysis(img: &RgbImage) -> Analysis {
    analyze(&DynamicImage::ImageRgb8(img.clone()))
}

fn hash_of(i: u64) -> [u8; 32] {
    Sha256::digest(i.to_le_bytes()).into()
}

fn typical() -> Analysis {
    Analysis {
        width: 640,
        height: 480,
        luminance: 55.0,
        sharpness: 12.0,
        contrast: 40.0,
    }
}

#[test]
fn measures_brightness_and_uniformity() {
    let gray = RgbImage::from_pixel(64, 64, Rgb([128, 128, 128]));
    let a = analysis(&gray);
    assert!((a.luminance - 128.0 / 255.0 * 100.0).abs() < 0.01);
    assert_eq!(a.sharpness, 0.0);
    assert_eq!(a.contrast, 0.0);
    let photo = analysis(&textured(1, 96, 96, 1.0));
    assert!(photo.contrast > MIN_CONTRAST, "{photo:?}");
    assert!(photo.sharpness > 5.0, "{photo:?}");
    let dark = analysis(&textured(1, 96, 96, 0.2));
    assert!(dark.luminance < LOW_LUMINANCE, "{dark:?}");
    assert!(dark.luminance < photo.luminance / 4.0);
}

#[test]
fn blur_lowers_quality() {
    let sharp = DynamicImage::ImageRgb8(textured(3, 200, 200, 1.0));
    let blurred = sharp.blur(4.0);
    let (s, b) = (analyze(&sharp), analyze(&blurred));
    assert!(
        quality_from_sharpness(b.sharpness) < LOW_QUALITY,
        "blurred {b:?}"
    );
    assert!(quality_from_sharpness(s.sharpness) > 70.0, "sharp {s:?}");
}

#[test]
fn quality_scale_is_monotonic_and_bounded() {
    assert_eq!(quality_from_sharpness(0.0), 0.0);
    let mut last = 0.0;
    for s in 1..200 {
        let q = quality_from_sharpness(f64::from(s) / 4.0);
        assert!(q > last && q < 100.0);
        last = q;
    }
}

#[test]
fn tiny_and_uniform_images_have_no_face() {
    for a in [
        Analysis {
            width: 1,
            height: 1,
            ..typical()
        },
        Analysis {
            width: 31,
            height: 400,
            ..typical()
        },
        Analysis {
            contrast: 1.0,
            ..typical()
        },
    ] {
        let r = assess(&hash_of(7), &a, 30.0, false);
        assert_eq!(r.status(), "Declined");
        assert_eq!(r.score, None);
        assert_eq!(r.face_quality, None);
        assert_eq!(r.face_luminance, None);
        assert_eq!(r.best_angle, None);
        assert!(r.entities.is_empty());
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].risk, "NO_FACE_DETECTED");
        assert_eq!(r.warnings[0].log_type, LogType::Error);
    }
}

#[test]
fn deterministic_and_threshold_is_at_or_below() {
    let a = typical();
    for i in 0..200 {
        let h = hash_of(i);
        let r = assess(&h, &a, 30.0, false);
        assert_eq!(r, assess(&h, &a, 30.0, false));
        if let Some(score) = r.score {
            // At exactly the score: declined; just below: not for that reason.
            let at = assess(&h, &a, score, false);
            assert!(at.warnings.iter().any(|w| w.risk == "LOW_LIVENESS_SCORE"));
            let below = assess(&h, &a, (score - 0.01).max(0.0), false);
            assert_eq!(
                below
                    .warnings
                    .iter()
                    .any(|w| w.risk == "LOW_LIVENESS_SCORE"),
                score == 0.0
            );
            let strict = assess(&h, &a, 100.0, false);
            assert_eq!(strict.status(), "Declined");
        }
    }
}

#[test]
fn rates_are_realistic_and_status_follows_errors() {
    let a = typical();
    let n = 20_000u64;
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut approved = 0u64;
    for i in 0..n {
        let r = assess(&hash_of(i), &a, 30.0, false);
        let has_error = r.warnings.iter().any(|w| w.log_type == LogType::Error);
        assert_eq!(r.status() == "Declined", has_error);
        if r.status() == "Approved" {
            approved += 1;
        }
        for w in &r.warnings {
            *counts.entry(w.risk).or_default() += 1;
            assert_eq!(w.log_type, describe(w.risk).0);
            assert_eq!(w.feature, "LIVENESS");
            if w.risk == "MULTIPLE_FACES_DETECTED" {
                assert_eq!(r.entities.len(), 2);
                let area = |e: &Entity| (e.bbox[2] - e.bbox[0]) * (e.bbox[3] - e.bbox[1]);
                assert!(area(&r.entities[0]) >= area(&r.entities[1]));
            }
        }
        for e in &r.entities {
            assert!(e.bbox[0] <= e.bbox[2] && e.bbox[2] <= a.width);
            assert!(e.bbox[1] <= e.bbox[3] && e.bbox[3] <= a.height);
            assert!((0.0..=1.0).contains(&e.confidence));
            assert!(e.gender == "male" || e.gender == "female");
        }
    }
    let rate = |code: &str| counts.get(code).copied().unwrap_or(0) as f64 / n as f64;
    let near = |code: &str, want: f64| {
        let got = rate(code);
        assert!(
            (got - want).abs() < want * 0.35 + 0.002,
            "{code}: {got} vs {want}"
        );
    };
    near("NO_FACE_DETECTED", 0.01);
    near("LIVENESS_FACE_ATTACK", 0.03 * 0.99);
    near("FACE_IN_BLOCKLIST", 0.01 * 0.99);
    near("POSSIBLE_FACE_IN_BLOCKLIST", 0.01 * 0.99);
    near("MULTIPLE_FACES_DETECTED", 0.04 * 0.99);
    near("POSSIBLE_DUPLICATED_FACE", 0.02 * 0.99);
    let low = rate("LOW_LIVENESS_SCORE");
    assert!((0.03..0.10).contains(&low), "LOW_LIVENESS_SCORE {low}");
    let approved = approved as f64 / n as f64;
    assert!((0.85..0.95).contains(&approved), "approved {approved}");
}

#[test]
fn capture_quality_codes_warn_without_declining() {
    let dark = Analysis {
        luminance: 10.0,
        ..typical()
    };
    let bright = Analysis {
        luminance: 95.0,
        ..typical()
    };
    let blurry = Analysis {
        sharpness: 0.5,
        ..typical()
    };
    // Find a hash that is approved on a typical image.
    let h = (0..)
        .map(hash_of)
        .find(|h| assess(h, &typical(), 30.0, false).warnings.is_empty())
        .unwrap();
    for (a, code) in [
        (dark, "LOW_FACE_LUMINANCE"),
        (bright, "HIGH_FACE_LUMINANCE"),
        (blurry, "LOW_FACE_QUALITY"),
    ] {
        let r = assess(&h, &a, 30.0, false);
        assert_eq!(r.warnings.len(), 1, "{code}");
        assert_eq!(r.warnings[0].risk, code);
        assert_eq!(r.warnings[0].log_type, LogType::Warning);
        assert_eq!(r.status(), "Approved");
    }
}

#[test]
fn duplicates_exclude_the_same_vendor_data() {
    let mut index = FaceIndex::default();
    let h = hash_of(1);
    let s = Uuid::new_v4();
    assert_eq!(index.find_duplicate(&h, Some("u1")), None);
    index.enroll(h, s, Some("u1"));
    assert_eq!(index.find_duplicate(&h, Some("u1")), None);
    assert_eq!(index.find_duplicate(&h, Some("u2")), Some((s, 1)));
    assert_eq!(index.find_duplicate(&h, None), Some((s, 1)));
    assert_eq!(index.find_duplicate(&hash_of(2), Some("u2")), None);
    let mut r = assess(&hash_of(3), &typical(), 30.0, false);
    r.add_duplicate(s, 1);
    let w = r.warnings.last().unwrap();
    assert_eq!(w.risk, "DUPLICATED_FACE");
    assert_eq!(w.log_type, LogType::Information);
    assert_eq!(
        w.additional_data.as_ref().unwrap()["duplicated_session_id"],
        json!(s.to_string())
    );
}

#[test]
fn response_has_didits_shape() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-06-12T01:04:42.763237Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let id = Uuid::new_v4();
    let meta = json!({"flow": "x"});
    let body = response_body(id, &Assessment::sandbox(), Some("u"), Some(&meta), now);
    assert_eq!(body["created_at"], "2026-06-12T01:04:42.763237+00:00");
    assert_eq!(body["request_id"], id.to_string());
    assert_eq!(body["liveness"]["status"], "Approved");
    assert_eq!(body["liveness"]["method"], "PASSIVE");
    assert_eq!(
        body["liveness"]["user_image"]["entities"][0]["race"],
        Value::Null
    );
    assert_eq!(body["vendor_data"], "u");
    assert_eq!(body["metadata"], meta);
}

#[test]
fn bomb_headers_are_refused_before_allocation() {
    // A PNG with a valid header (CRC fixed up) declaring 60000 x 60000 pixels.
    let mut png = Vec::new();
    RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]))
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    assert!(decode_bounded(&png).is_ok());
    png[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = decode_bounded(&png).unwrap_err();
    assert!(
        matches!(err, image::ImageError::Limits(_)),
        "refused by the limits, not by a checksum: {err}"
    );
    assert!(decode_bounded(b"not an image").is_err());
}
