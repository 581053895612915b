use super::*;

fn act(class: Class, status: Option<Decision>, risks: &[&str]) -> Action {
    action_for(class, status, risks)
}

#[test]
fn fraud_wins_over_everything() {
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Declined),
            &["NO_FACE_DETECTED", "FACE_IN_BLOCKLIST"]
        ),
        Action::Fraud
    );
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Declined),
            &["LIVENESS_FACE_ATTACK"]
        ),
        Action::Fraud
    );
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Declined),
            &["POSSIBLE_FACE_IN_BLOCKLIST", "DUPLICATED_FACE"]
        ),
        Action::Fraud
    );
}

#[test]
fn retake_before_review() {
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Declined),
            &["LOW_LIVENESS_SCORE", "NO_FACE_DETECTED"]
        ),
        Action::Retake
    );
    for r in [
        "LOW_FACE_QUALITY",
        "LOW_FACE_LUMINANCE",
        "HIGH_FACE_LUMINANCE",
    ] {
        assert_eq!(
            act(Class::Result, Some(Decision::Approved), &[r]),
            Action::Retake
        );
    }
}

#[test]
fn review_cases() {
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Declined),
            &["LOW_LIVENESS_SCORE"]
        ),
        Action::Review
    );
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Approved),
            &["MULTIPLE_FACES_DETECTED"]
        ),
        Action::Review
    );
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Approved),
            &["DUPLICATED_FACE"]
        ),
        Action::Review
    );
    assert_eq!(
        act(
            Class::Result,
            Some(Decision::Approved),
            &["POSSIBLE_DUPLICATED_FACE"]
        ),
        Action::Review
    );
    assert_eq!(
        act(Class::Result, Some(Decision::Approved), &["SOMETHING_NEW"]),
        Action::Review
    );
    assert_eq!(
        act(Class::Result, Some(Decision::Declined), &[]),
        Action::Review
    );
}

#[test]
fn proceed_only_when_clean_and_approved() {
    assert_eq!(
        act(Class::Result, Some(Decision::Approved), &[]),
        Action::Proceed
    );
}

#[test]
fn no_result_actions() {
    assert_eq!(act(Class::InvalidInput, None, &[]), Action::FixInput);
    assert_eq!(act(Class::Rejected, None, &[]), Action::FixInput);
    let answered = [Class::Result, Class::InvalidInput, Class::Rejected];
    for c in Class::ALL.into_iter().filter(|c| !answered.contains(c)) {
        assert_eq!(act(c, None, &[]), Action::Rerun, "{c:?}");
    }
}

#[test]
fn done_classes_for_resume() {
    assert!(Class::Result.is_done(false));
    assert!(Class::InvalidInput.is_done(true));
    assert!(Class::Rejected.is_done(false));
    assert!(!Class::Rejected.is_done(true));
    assert!(!Class::Transient.is_done(true));
    assert!(!Class::Interrupted.is_done(false));
    assert!(!Class::Fatal.is_done(false));
    assert!(!Class::BadAnswer.is_done(false));
    assert!(!Class::BadAnswer.is_done(true));
}

#[test]
fn bad_answer_has_its_wire_name() {
    assert_eq!(Class::BadAnswer.as_str(), "bad_answer");
    assert_eq!(
        serde_json::to_string(&Class::BadAnswer).unwrap(),
        "\"bad_answer\""
    );
    assert!(Class::ALL.contains(&Class::BadAnswer));
    for c in Class::ALL {
        let back: Class = serde_json::from_str(&format!("\"{}\"", c.as_str())).unwrap();
        assert_eq!(back, c);
    }
}

#[test]
fn record_round_trips_and_tolerates_missing_fields() {
    let r: Record =
        serde_json::from_str(r#"{"key":"a","path":"a.jpg","class":"result","unknown_field":1}"#)
            .unwrap();
    assert_eq!(r.key, "a");
    assert_eq!(r.class, Some(Class::Result));
    let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}
