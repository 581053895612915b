//! The endpoint descriptions: for each Didit check, its path, its form, how a 200 is read,
//! what makes that answer usable, and its price. A new check is a new description here; the
//! transport ([`super::Client`]), the classifier and the retries serve every description.

use serde_json::{Map, Value};

use super::model::{CheckResponse, Params};

/// One Didit call, as the rest of the tree sees it.
#[derive(Debug)]
pub struct Endpoint {
    /// The check's name, as `--check` takes it (`liveness`, `face-match`, `age`).
    pub check: &'static str,
    /// The path, trailing slash included (Didit's paths have it).
    pub path: &'static str,
    /// The form's file parts, in order; the image under screening is the first.
    pub images: &'static [&'static str],
    /// The form field that carries the check's decline threshold.
    pub threshold_field: &'static str,
    /// The form field that carries the minimum age, for the check that has one.
    pub min_age_field: Option<&'static str>,
    /// The 200's object holding the decision: an answer whose verdict has no Approved or
    /// Declined status is billed but not usable.
    pub verdict: &'static str,
    /// How a 200 body is read: the one lenient reading of this check's answer.
    pub read: fn(&str) -> serde_json::Result<Option<CheckResponse>>,
    /// The assumed price of one billed call, in US dollars.
    pub price_usd: f64,
}

/// `POST /v3/passive-liveness/`: one selfie, a liveness decision.
pub const LIVENESS: Endpoint = Endpoint {
    check: "liveness",
    path: "/v3/passive-liveness/",
    images: &["user_image"],
    threshold_field: "face_liveness_score_decline_threshold",
    min_age_field: None,
    verdict: "liveness",
    read: CheckResponse::read,
    price_usd: 0.10,
};

/// `POST /v3/face-match/`: a selfie against a reference image, a similarity decision. It
/// spends the same rate budget as liveness and enrolls no face, saved or not.
pub const FACE_MATCH: Endpoint = Endpoint {
    check: "face-match",
    path: "/v3/face-match/",
    images: &["user_image", "ref_image"],
    threshold_field: "face_match_score_decline_threshold",
    min_age_field: None,
    verdict: "face_match",
    read: CheckResponse::read,
    price_usd: 0.05,
};

/// `POST /v3/age-estimation/`: one selfie, liveness and an estimated age in one call. With
/// `save_api_request=true` Didit enrolls the face into the application's face index.
pub const AGE: Endpoint = Endpoint {
    check: "age",
    path: "/v3/age-estimation/",
    images: &["user_image"],
    threshold_field: "face_liveness_score_decline_threshold",
    min_age_field: Some("age_estimation_decline_threshold"),
    verdict: "age_estimation",
    read: CheckResponse::read,
    price_usd: 0.10,
};

/// Every check, in the order `--check` lists them.
pub const ALL: [&Endpoint; 3] = [&LIVENESS, &FACE_MATCH, &AGE];

impl Endpoint {
    /// The check named `name` (as `--check` and the journal write it).
    pub fn named(name: &str) -> Option<&'static Endpoint> {
        ALL.into_iter().find(|e| e.check == name)
    }

    /// The text fields of the form, in the order sent: `save_api_request` and `rotate_image`
    /// always explicit, then the threshold, the minimum age (age estimation), `vendor_data`
    /// and `metadata` when given.
    pub fn fields(&self, params: &Params) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("save_api_request", params.save_api_request.to_string()),
            ("rotate_image", params.rotate_image.to_string()),
        ];
        if let Some(t) = params.threshold_text() {
            fields.push((self.threshold_field, t));
        }
        if let (Some(field), Some(age)) = (self.min_age_field, params.min_age) {
            fields.push((field, age.to_string()));
        }
        if let Some(v) = &params.vendor_data {
            fields.push(("vendor_data", v.clone()));
        }
        if let Some(m) = &params.metadata {
            fields.push(("metadata", Value::Object(Map::clone(m)).to_string()));
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_is_described_once() {
        assert_eq!(LIVENESS.path, "/v3/passive-liveness/");
        assert_eq!(LIVENESS.images, ["user_image"]);
        assert_eq!(LIVENESS.price_usd, 0.10);
        let answer = r#"{"liveness": {"status": "Approved"}}"#;
        let read = (LIVENESS.read)(answer).unwrap().unwrap();
        assert!(read.decision().is_some());
    }

    #[test]
    fn the_form_names_every_field_and_skips_what_is_not_given() {
        let bare = LIVENESS.fields(&Params::default());
        assert_eq!(
            bare,
            [
                ("save_api_request", "false".to_string()),
                ("rotate_image", "false".to_string())
            ]
        );
        let full = LIVENESS.fields(&Params {
            threshold: Some(80.5),
            rotate_image: true,
            save_api_request: true,
            vendor_data: Some("u-1".into()),
            metadata: Some(crate::didit::parse_metadata(r#"{"b":1}"#).unwrap()),
            ..Params::default()
        });
        let names: Vec<_> = full.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "save_api_request",
                "rotate_image",
                "face_liveness_score_decline_threshold",
                "vendor_data",
                "metadata"
            ]
        );
        assert_eq!(full[2].1, "80.5");
        assert_eq!(full[4].1, r#"{"b":1}"#);
    }

    #[test]
    fn face_match_and_age_name_their_own_fields_and_prices() {
        let params = Params {
            threshold: Some(55.0),
            min_age: Some(21),
            ..Params::default()
        };
        let names = |e: &Endpoint| -> Vec<&'static str> {
            e.fields(&params).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(
            names(&FACE_MATCH),
            [
                "save_api_request",
                "rotate_image",
                "face_match_score_decline_threshold"
            ],
            "face match has no minimum age"
        );
        assert_eq!(
            AGE.fields(&params)[3],
            ("age_estimation_decline_threshold", "21".to_string())
        );
        assert_eq!(FACE_MATCH.images, ["user_image", "ref_image"]);
        assert_eq!((FACE_MATCH.price_usd, AGE.price_usd), (0.05, 0.10));
        for e in ALL {
            assert_eq!(Endpoint::named(e.check).map(|n| n.path), Some(e.path));
        }
        assert!(Endpoint::named("liveness ").is_none());
    }

    #[test]
    fn every_check_reads_its_own_verdict() {
        let face = r#"{"face_match": {"status": "Declined", "score": 12.5,
            "ref_image": {"entities": [{"age": 40}]}, "warnings": [{"risk": "LOW_FACE_MATCH_SIMILARITY", "log_type": "error"}]}}"#;
        let read = (FACE_MATCH.read)(face).unwrap().unwrap();
        assert_eq!(read.verdict.score, Some(12.5));
        assert_eq!(read.risks(), ["LOW_FACE_MATCH_SIMILARITY"]);
        assert_eq!(read.verdict.ref_image.unwrap().entities[0].age, Some(40.0));
        let age =
            r#"{"age_estimation": {"status": "Approved", "score": 91, "age_estimation": 33.5}}"#;
        let read = (AGE.read)(age).unwrap().unwrap();
        assert_eq!(read.verdict.age_estimation, Some(33.5));
        assert_eq!(read.verdict.score, Some(91.0));
    }
}
