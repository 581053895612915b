//! The endpoint descriptions: for each Didit check, its path, its form, how a 200 is read,
//! what makes that answer usable, and its price. A new check is a new description here; the
//! transport ([`super::Client`]), the classifier and the retries serve every description.

use serde_json::{Map, Value};

use super::model::{LivenessResponse, Params};

/// One Didit call, as the rest of the tree sees it.
#[derive(Debug)]
pub struct Endpoint {
    /// The check's name (`liveness`).
    pub check: &'static str,
    /// The path, trailing slash included (Didit's paths have it).
    pub path: &'static str,
    /// The form's file parts, in order; the image under screening is the first.
    pub images: &'static [&'static str],
    /// The form field that carries `--threshold`.
    pub threshold_field: &'static str,
    /// The 200's object holding the decision: an answer whose verdict has no Approved or
    /// Declined status is billed but not usable.
    pub verdict: &'static str,
    /// How a 200 body is read: the one lenient reading of this check's answer.
    pub read: fn(&str) -> serde_json::Result<Option<LivenessResponse>>,
    /// The assumed price of one billed call, in US dollars.
    pub price_usd: f64,
}

/// `POST /v3/passive-liveness/`: one selfie, a liveness decision.
pub const LIVENESS: Endpoint = Endpoint {
    check: "liveness",
    path: "/v3/passive-liveness/",
    images: &["user_image"],
    threshold_field: "face_liveness_score_decline_threshold",
    verdict: "liveness",
    read: LivenessResponse::read,
    price_usd: 0.10,
};

impl Endpoint {
    /// The text fields of the form, in the order sent: `save_api_request` and `rotate_image`
    /// always explicit, then the threshold, `vendor_data` and `metadata` when given.
    pub fn fields(&self, params: &Params) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("save_api_request", params.save_api_request.to_string()),
            ("rotate_image", params.rotate_image.to_string()),
        ];
        if let Some(t) = params.threshold_text() {
            fields.push((self.threshold_field, t));
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
}
