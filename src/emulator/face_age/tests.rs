//! Unit tests of the emulator's face match and age estimation verdicts.

use super::*;
use crate::emulator::results::{analyze, decode_bounded};
use image::{ImageFormat, Rgb, RgbImage};
use sha2::{Digest, Sha256};

/// A picture with seeded structure: a few bright and dark discs on a mid-grey ground.
fn scene(seed: u64, side: u32) -> RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let discs: Vec<(f64, f64, f64, u8)> = (0..6)
        .map(|_| {
            let x = (next() % 1000) as f64 / 1000.0;
            let y = (next() % 1000) as f64 / 1000.0;
            let r = 0.1 + (next() % 200) as f64 / 1000.0;
            let v = if next() % 2 == 0 { 30 } else { 220 };
            (x, y, r, v)
        })
        .collect();
    RgbImage::from_fn(side, side, |x, y| {
        let (fx, fy) = (
            f64::from(x) / f64::from(side),
            f64::from(y) / f64::from(side),
        );
        let v = discs
            .iter()
            .rev()
            .find(|(cx, cy, r, _)| (fx - cx).powi(2) + (fy - cy).powi(2) < r * r)
            .map_or(128, |d| d.3);
        Rgb([v, v.saturating_sub(10), v.saturating_sub(20)])
    })
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    out.into_inner()
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
    let original = scene(1, 256);
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
        let other = compare(&bytes, &jpeg(&scene(seed, 256)), 30.0, true);
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
    let bytes = jpeg(&scene(3, 200));
    let score = compare(&bytes, &bytes, 30.0, true).score.unwrap();
    let at = compare(&bytes, &bytes, score, true);
    assert_eq!(at.status(), "Declined", "a score at the threshold declines");
    let below = compare(&bytes, &bytes, score - 0.01, true);
    assert_eq!(below.status(), "Approved");
}

#[test]
fn a_pair_without_a_face_is_not_scored() {
    let face = jpeg(&scene(4, 200));
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
    let a = jpeg(&scene(5, 200));
    let b = jpeg(&scene(6, 200));
    for (x, y) in [(&a, &a), (&a, &b)] {
        let saved = compare(x, y, 30.0, true).score.unwrap();
        assert_eq!(saved, round2(saved));
        let unsaved = compare(x, y, 30.0, false).score.unwrap();
        assert_eq!(round2(unsaved), saved, "the same score, unrounded");
    }
}

#[test]
fn the_face_match_body_has_didits_shape() {
    let bytes = jpeg(&scene(7, 200));
    let m = compare(&bytes, &jpeg(&scene(8, 200)), 30.0, true);
    let echo = Echo {
        request_id: Uuid::nil(),
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

/// Draw ages for many images: the spread, the share with no age, and the minimum's effect.
#[test]
fn ages_spread_from_8_to_70_and_the_minimum_declines_below_it() {
    let a = Analysis {
        width: 640,
        height: 480,
        luminance: 55.0,
        sharpness: 12.0,
        contrast: 40.0,
    };
    let (mut ages, mut not_detected, mut below) = (Vec::new(), 0, 0);
    for i in 0..2_000u64 {
        let hash: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
        let e = age_estimation(&hash, &a, 30.0, 18, false);
        let risks: Vec<&str> = e.warnings.iter().map(|w| w.risk).collect();
        assert_eq!(e.status() == "Approved", risks.is_empty());
        assert!(
            risks.iter().all(|r| [
                "NO_FACE_DETECTED",
                "LOW_LIVENESS_SCORE",
                "LIVENESS_FACE_ATTACK",
                "AGE_NOT_DETECTED",
                "AGE_BELOW_MINIMUM"
            ]
            .contains(r)),
            "only the endpoint's five codes: {risks:?}"
        );
        assert!(e.entities.len() <= 1);
        match e.age {
            Some(age) => {
                assert_eq!(e.entities[0].age, age, "the largest face's age");
                assert_eq!(risks.contains(&"AGE_BELOW_MINIMUM"), age < 18.0);
                below += usize::from(age < 18.0);
                ages.push(age);
                // The same image with the age check off is never declined for its age.
                let off = age_estimation(&hash, &a, 30.0, 0, false);
                assert!(off.warnings.iter().all(|w| w.risk != "AGE_BELOW_MINIMUM"));
            }
            None => {
                assert!(risks.contains(&"AGE_NOT_DETECTED"));
                not_detected += 1;
            }
        }
    }
    let (lo, hi) = ages
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), a| (lo.min(*a), hi.max(*a)));
    assert!(
        lo >= AGE_RANGE.0 && lo < 10.0 && hi < AGE_RANGE.1 && hi > 68.0,
        "{lo}..{hi}"
    );
    assert!(
        (30..=110).contains(&not_detected),
        "{not_detected} of 2000 without an age"
    );
    assert!((200..=420).contains(&below), "{below} of 2000 below 18");
}

#[test]
fn no_face_gives_no_score_and_no_age() {
    let tiny = Analysis {
        width: 20,
        height: 20,
        luminance: 50.0,
        sharpness: 10.0,
        contrast: 30.0,
    };
    let e = age_estimation(&[7; 32], &tiny, 30.0, 18, false);
    assert_eq!((e.score, e.age, e.best_angle), (None, None, None));
    assert!(e.entities.is_empty());
    let risks: Vec<&str> = e.warnings.iter().map(|w| w.risk).collect();
    assert_eq!(risks, ["NO_FACE_DETECTED", "AGE_NOT_DETECTED"]);
    let body = age_body(
        &e,
        Echo {
            request_id: Uuid::nil(),
            vendor_data: None,
            metadata: None,
            now: chrono::Utc::now(),
        },
    );
    let obj = &body["age_estimation"];
    assert_eq!(obj["status"], "Declined");
    assert_eq!(obj["method"], "PASSIVE");
    assert!(obj["age_estimation"].is_null() && obj["score"].is_null());
    assert_eq!(obj["user_image"]["entities"], serde_json::json!([]));
}

#[test]
fn the_sandbox_answers_are_fixed() {
    assert_eq!(FaceMatch::sandbox().status(), "Approved");
    let age = AgeEstimate::sandbox();
    assert_eq!((age.age, age.status()), (Some(30.0), "Approved"));
}
