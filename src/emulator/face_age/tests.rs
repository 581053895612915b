//! Unit tests of the emulator's face match and age estimation verdicts.

use super::*;
use sha2::{Digest, Sha256};

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
