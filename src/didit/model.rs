//! Didit Passive Liveness request and response types: lenient serde models of the 200 body,
//! the request fields (validated locally) and the image upload.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::record::{Answer, Class, Decision, FaceRecord, Record, WarningRecord};

/// The 200 body. Every field is optional or defaulted: unknown keys are ignored, nulls and
/// values of an unexpected type become `None`, so one odd field never loses a paid-for result
/// (the raw JSON is kept beside it anyway).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LivenessResponse {
    #[serde(default, deserialize_with = "lenient_string")]
    pub request_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_struct")]
    pub liveness: Liveness,
    #[serde(default, deserialize_with = "lenient_string")]
    pub vendor_data: Option<String>,
    #[serde(default, deserialize_with = "non_null_value")]
    pub metadata: Option<Value>,
    /// As received: `2026-06-12T01:04:42.763237+00:00` or, in older responses, `...Z`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Liveness {
    /// `Approved` or `Declined` (see [`LivenessResponse::decision`]).
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub method: Option<String>,
    /// 0..100, may have decimals; null when the model gave no confidence.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub score: Option<f64>,
    #[serde(default, deserialize_with = "lenient_option_struct")]
    pub user_image: Option<UserImage>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub warnings: Vec<Warning>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub face_quality: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub face_luminance: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserImage {
    #[serde(default, deserialize_with = "lenient_vec")]
    pub entities: Vec<Entity>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub best_angle: Option<i64>,
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Entity {
    /// `[x_min, y_min, x_max, y_max]` in the processed image.
    #[serde(default, deserialize_with = "lenient_f64_vec")]
    pub bbox: Option<Vec<f64>>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub confidence: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub age: Option<f64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub gender: Option<String>,
    /// Reserved by Didit; always null so far.
    #[serde(default, deserialize_with = "non_null_value")]
    pub race: Option<Value>,
}

impl Entity {
    /// Area of the bounding box (0 when it is missing or malformed).
    pub fn area(&self) -> f64 {
        match self.bbox.as_deref() {
            Some([x1, y1, x2, y2, ..]) => ((x2 - x1).max(0.0)) * ((y2 - y1).max(0.0)),
            _ => 0.0,
        }
    }
}

/// One risk signal. Unknown risk codes are kept as they are.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Warning {
    /// The risk code; `UNKNOWN` when the API sent none.
    #[serde(default = "unknown_code", deserialize_with = "code_string")]
    pub risk: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub feature: Option<String>,
    #[serde(default, deserialize_with = "non_null_value")]
    pub additional_data: Option<Value>,
    /// `error` (declines), `warning` or `information`; `unknown` when the API sent none.
    #[serde(default = "unknown_severity", deserialize_with = "severity_string")]
    pub log_type: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub short_description: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub long_description: Option<String>,
}

impl LivenessResponse {
    /// Approved or Declined as the API said. When `status` is missing or unrecognised, an
    /// error-level warning still means Declined (as Didit derives it); otherwise `None`: an
    /// approval is never assumed.
    pub fn decision(&self) -> Option<Decision> {
        match self.liveness.status.as_deref().map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("approved") => Some(Decision::Approved),
            Some(s) if s.eq_ignore_ascii_case("declined") => Some(Decision::Declined),
            _ if self.liveness.warnings.iter().any(|w| w.log_type == "error") => {
                Some(Decision::Declined)
            }
            _ => None,
        }
    }

    /// The face Didit evaluated: the largest bounding box (the first one on a tie).
    pub fn largest_face(&self) -> Option<&Entity> {
        let entities = &self.liveness.user_image.as_ref()?.entities;
        let mut best: Option<&Entity> = None;
        for e in entities {
            if best.is_none_or(|b| e.area() > b.area()) {
                best = Some(e);
            }
        }
        best
    }

    /// The risk codes, in the order received.
    pub fn risks(&self) -> Vec<&str> {
        self.liveness
            .warnings
            .iter()
            .map(|w| w.risk.as_str())
            .collect()
    }

    /// `created_at` as a UTC time, accepting both `+00:00` and `Z` forms.
    pub fn created_at_utc(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.created_at.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// Copy the result into a record: class, decision, score, quality, luminance, warnings
    /// (risk + log_type), the largest face, request_id, created_at, the raw JSON, billed.
    /// `action` is left to [`Record::with_action`].
    pub fn fill_record(&self, raw: Answer, rec: &mut Record) {
        rec.class = Some(Class::Result);
        rec.status = self.decision();
        rec.score = self.liveness.score;
        rec.face_quality = self.liveness.face_quality;
        rec.face_luminance = self.liveness.face_luminance;
        rec.warnings = self
            .liveness
            .warnings
            .iter()
            .map(|w| WarningRecord {
                risk: w.risk.clone(),
                log_type: w.log_type.clone(),
            })
            .collect();
        rec.face = self.largest_face().map(|e| FaceRecord {
            age: e.age,
            gender: e.gender.clone(),
            bbox: e.bbox.clone(),
            confidence: e.confidence,
        });
        rec.request_id = self.request_id.clone();
        rec.created_at = self.created_at.clone();
        rec.response = Some(raw);
        rec.billed = true;
    }
}

impl LivenessResponse {
    /// The model read from a parsed 200 body by reference, with the same lenient rules as its
    /// `Deserialize` (the same result for any JSON object), without copying each part of the
    /// answer into a value of its own first. Anything but an object reads as the default.
    pub fn from_raw(raw: &Value) -> Self {
        let Value::Object(m) = raw else {
            return Self::default();
        };
        Self {
            request_id: text_at(m, "request_id"),
            liveness: match m.get("liveness") {
                Some(Value::Object(l)) => Liveness::from_map(l),
                _ => Liveness::default(),
            },
            vendor_data: text_at(m, "vendor_data"),
            metadata: value_at(m, "metadata"),
            created_at: text_at(m, "created_at"),
        }
    }
}

impl LivenessResponse {
    /// The model read straight from a 200 body of the shape Didit sends (strings where
    /// strings are due, numbers where numbers are, objects, lists of objects, nulls), with no
    /// JSON value built first. `None` for anything else (a number given as a string, a list
    /// where an object is due, a key given twice, ...): [`LivenessResponse::from_raw`] then
    /// reads it with its lenient rules. Where this gives a model, it is the one `from_raw`
    /// gives for the same body: a JSON number is always finite, and a null read as an
    /// `Option` is `None`, so nothing here needs the lenient rules' filters.
    pub fn read_plain(text: &str) -> Option<Self> {
        let Obj(plain) = serde_json::from_str::<Obj<PlainResponse>>(text).ok()?;
        Some(plain.into_model())
    }
}

/// A struct read only from a JSON object (serde's derived structs also read arrays).
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct PlainResponse {
    request_id: Option<String>,
    liveness: Option<Obj<PlainLiveness>>,
    vendor_data: Option<String>,
    metadata: Option<Value>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct PlainLiveness {
    status: Option<String>,
    method: Option<String>,
    score: Option<f64>,
    user_image: Option<Obj<PlainUserImage>>,
    warnings: Option<Vec<Obj<PlainWarning>>>,
    face_quality: Option<f64>,
    face_luminance: Option<f64>,
}

#[derive(Deserialize)]
struct PlainUserImage {
    entities: Option<Vec<Obj<PlainEntity>>>,
    best_angle: Option<f64>,
}

#[derive(Deserialize)]
struct PlainEntity {
    bbox: Option<Vec<f64>>,
    confidence: Option<f64>,
    age: Option<f64>,
    gender: Option<String>,
    race: Option<Value>,
}

#[derive(Deserialize)]
struct PlainWarning {
    risk: Option<String>,
    feature: Option<String>,
    additional_data: Option<Value>,
    log_type: Option<String>,
    short_description: Option<String>,
    long_description: Option<String>,
}

impl PlainResponse {
    fn into_model(self) -> LivenessResponse {
        LivenessResponse {
            request_id: self.request_id,
            liveness: self
                .liveness
                .map(|Obj(l)| l.into_model())
                .unwrap_or_default(),
            vendor_data: self.vendor_data,
            metadata: self.metadata,
            created_at: self.created_at,
        }
    }
}

impl PlainLiveness {
    fn into_model(self) -> Liveness {
        Liveness {
            status: self.status,
            method: self.method,
            score: self.score,
            user_image: self.user_image.map(|Obj(u)| UserImage {
                entities: u
                    .entities
                    .unwrap_or_default()
                    .into_iter()
                    .map(|Obj(e)| e.into_model())
                    .collect(),
                best_angle: u.best_angle.map(|f| f.round() as i64),
            }),
            warnings: self
                .warnings
                .unwrap_or_default()
                .into_iter()
                .map(|Obj(w)| w.into_model())
                .collect(),
            face_quality: self.face_quality,
            face_luminance: self.face_luminance,
        }
    }
}

impl PlainEntity {
    fn into_model(self) -> Entity {
        Entity {
            bbox: self.bbox,
            confidence: self.confidence,
            age: self.age,
            gender: self.gender,
            race: self.race,
        }
    }
}

impl PlainWarning {
    fn into_model(self) -> Warning {
        Warning {
            risk: self
                .risk
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(unknown_code),
            feature: self.feature,
            additional_data: self.additional_data,
            log_type: self
                .log_type
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(unknown_severity),
            short_description: self.short_description,
            long_description: self.long_description,
        }
    }
}

impl Liveness {
    fn from_map(m: &Map<String, Value>) -> Self {
        Self {
            status: text_at(m, "status"),
            method: text_at(m, "method"),
            score: number_at(m, "score"),
            user_image: match m.get("user_image") {
                Some(Value::Object(u)) => Some(UserImage::from_map(u)),
                _ => None,
            },
            warnings: list_at(m, "warnings", Warning::from_map),
            face_quality: number_at(m, "face_quality"),
            face_luminance: number_at(m, "face_luminance"),
        }
    }
}

impl UserImage {
    fn from_map(m: &Map<String, Value>) -> Self {
        Self {
            entities: list_at(m, "entities", Entity::from_map),
            best_angle: number_at(m, "best_angle").map(|f| f.round() as i64),
        }
    }
}

impl Entity {
    fn from_map(m: &Map<String, Value>) -> Self {
        Self {
            bbox: match m.get("bbox") {
                Some(Value::Array(items)) => items.iter().map(value_to_f64).collect(),
                _ => None,
            },
            confidence: number_at(m, "confidence"),
            age: number_at(m, "age"),
            gender: text_at(m, "gender"),
            race: value_at(m, "race"),
        }
    }
}

impl Warning {
    fn from_map(m: &Map<String, Value>) -> Self {
        Self {
            risk: text_at(m, "risk")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(unknown_code),
            feature: text_at(m, "feature"),
            additional_data: value_at(m, "additional_data"),
            log_type: text_at(m, "log_type")
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(unknown_severity),
            short_description: text_at(m, "short_description"),
            long_description: text_at(m, "long_description"),
        }
    }
}

/// A field as [`value_to_string`] reads it, without copying anything else.
fn text_at(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number_at(m: &Map<String, Value>, key: &str) -> Option<f64> {
    value_to_f64(m.get(key)?)
}

/// A field kept as it is, unless missing or null.
fn value_at(m: &Map<String, Value>, key: &str) -> Option<Value> {
    m.get(key).filter(|v| !v.is_null()).cloned()
}

/// A list as [`lenient_vec`] reads it: objects read by reference; any other element goes
/// through `Deserialize` as before (a struct also reads from an array of its fields).
fn list_at<T: serde::de::DeserializeOwned>(
    m: &Map<String, Value>,
    key: &str,
    read: fn(&Map<String, Value>) -> T,
) -> Vec<T> {
    match m.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(read(o)),
                other => serde_json::from_value(other.clone()).ok(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn unknown_code() -> String {
    "UNKNOWN".to_string()
}

fn unknown_severity() -> String {
    "unknown".to_string()
}

/// A JSON value as a string: strings as they are, numbers and booleans as text, else `None`.
fn value_to_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON value as a finite number: numbers, or strings holding one.
fn value_to_f64(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    f.is_finite().then_some(f)
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(value_to_string(Value::deserialize(d)?))
}

fn code_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(value_to_string(Value::deserialize(d)?)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(unknown_code))
}

fn severity_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(value_to_string(Value::deserialize(d)?)
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(unknown_severity))
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(value_to_f64(&Value::deserialize(d)?))
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(value_to_f64(&Value::deserialize(d)?).map(|f| f.round() as i64))
}

fn lenient_f64_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f64>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items.iter().map(value_to_f64).collect(),
        _ => None,
    })
}

fn non_null_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Some(Value::deserialize(d)?).filter(|v| !v.is_null()))
}

/// An object of the expected shape, or the default when it is null or of another type.
fn lenient_struct<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    Ok(lenient_option_struct(d)?.unwrap_or_default())
}

fn lenient_option_struct<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Value::deserialize(d)? {
        v @ Value::Object(_) => Ok(serde_json::from_value(v).ok()),
        _ => Ok(None),
    }
}

/// A list whose malformed elements are skipped; null or a non-list is an empty list.
fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// The request fields besides the image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params {
    /// `face_liveness_score_decline_threshold`, 0..=100; Didit's default (30) when `None`.
    pub threshold: Option<f64>,
    pub rotate_image: bool,
    /// Always sent explicitly; `false` keeps the call one-shot (nothing stored or enrolled).
    pub save_api_request: bool,
    pub vendor_data: Option<String>,
    /// Sent as a JSON string part; Didit echoes it back as an object.
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("--threshold must be a number from 0 to 100 (decimals allowed), got {0}")]
    Threshold(f64),
    #[error("metadata is not valid JSON: {0}")]
    MetadataNotJson(String),
    #[error("metadata must be a JSON object like {{\"batch\": \"q3\"}}, got {0}")]
    MetadataNotObject(&'static str),
}

impl Params {
    pub fn validate(&self) -> Result<(), ParamError> {
        if let Some(t) = self.threshold
            && !(t.is_finite() && (0.0..=100.0).contains(&t))
        {
            return Err(ParamError::Threshold(t));
        }
        Ok(())
    }

    /// The threshold as the text part sent (`30`, `80.5`); `None` leaves Didit's default.
    pub fn threshold_text(&self) -> Option<String> {
        self.threshold.map(|t| t.to_string())
    }
}

/// Parse the text of a `--metadata` value or manifest cell: it must be a JSON object.
pub fn parse_metadata(s: &str) -> Result<Map<String, Value>, ParamError> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ParamError::MetadataNotObject(json_kind(&other))),
        Err(e) => Err(ParamError::MetadataNotJson(e.to_string())),
    }
}

pub use crate::kit::kinds::json_kind;

/// The image to send. Cloning is cheap (`Bytes`), so the multipart body is rebuilt per attempt.
#[derive(Debug, Clone)]
pub struct Upload {
    pub bytes: Bytes,
    /// The part's filename: Didit judges the extension, so it carries the detected format's
    /// real one (`image.jpg`). The user's own file name is never sent.
    pub file_name: String,
    pub mime: &'static str,
}

impl Upload {
    /// An upload named `image.<ext>`.
    pub fn new(bytes: Bytes, ext: &str, mime: &'static str) -> Self {
        Self {
            bytes,
            file_name: format!("image.{ext}"),
            mime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> LivenessResponse {
        serde_json::from_value(v).expect("lenient parse never fails on an object")
    }

    #[test]
    fn reading_by_reference_gives_what_deserialize_gives() {
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
        let cases = [
            documented_declined(),
            odd,
            json!({}),
            json!({"liveness": null, "metadata": {"a": [1]}}),
            json!({"liveness": [1, 2], "vendor_data": "v"}),
            json!({"liveness": {"user_image": [], "warnings": {"risk": "X"}}}),
            json!({"liveness": {"user_image": null, "warnings": null}}),
            json!({"liveness": {"user_image": {"entities": {}, "best_angle": null}}}),
        ];
        for v in cases {
            let by_serde: LivenessResponse = parse(v.clone());
            assert_eq!(LivenessResponse::from_raw(&v), by_serde, "{v}");
        }
        // Anything but an object reads as nothing.
        for v in [json!(null), json!([1]), json!("Approved")] {
            assert_eq!(LivenessResponse::from_raw(&v), LivenessResponse::default());
        }
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
        assert_eq!(r.liveness.method.as_deref(), Some("PASSIVE"));
        assert_eq!(r.liveness.score, Some(12.5));
        assert_eq!(r.liveness.face_quality, Some(72.4));
        assert_eq!(r.liveness.face_luminance, Some(48.2));
        assert_eq!(r.liveness.user_image.as_ref().unwrap().best_angle, Some(0));
        assert_eq!(r.risks(), ["LOW_LIVENESS_SCORE", "FACE_IN_BLOCKLIST"]);
        let w = &r.liveness.warnings[1];
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
        assert_eq!(r.liveness.score, None);
        assert_eq!(r.liveness.face_quality, None);
        assert_eq!(r.liveness.face_luminance, None);
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
        assert_eq!(r.liveness.score, Some(88.5));
        assert_eq!(r.liveness.face_quality, None);
        assert_eq!(r.liveness.face_luminance, Some(51.0));
        assert_eq!(r.liveness.user_image.as_ref().unwrap().best_angle, Some(90));
        assert_eq!(r.largest_face().unwrap().bbox, None);
        assert_eq!(r.risks(), ["SOME_NEW_RISK", "UNKNOWN"]);
        assert_eq!(r.liveness.warnings[0].log_type, "warning");
        assert_eq!(r.liveness.warnings[1].log_type, "unknown");
    }

    #[test]
    fn missing_everything_is_still_a_value() {
        let r = parse(json!({}));
        assert_eq!(r, LivenessResponse::default());
        assert_eq!(r.decision(), None);
        let r = parse(json!({"liveness": null}));
        assert_eq!(r.decision(), None);
        let r = parse(json!({"liveness": {"warnings": null, "user_image": null}}));
        assert!(r.liveness.warnings.is_empty());
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
}
