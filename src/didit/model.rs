//! Didit's answers and requests: the lenient model of a 200 (one reading, straight from the
//! text, no JSON value built first), the request fields (validated locally) and the upload.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::record::{Answer, Class, Decision, FaceRecord, Record, WarningRecord};

/// A 200 body. Every field is optional or defaulted: unknown keys are ignored, nulls and
/// values of an unexpected type become `None`, a key given twice keeps its last value, so one
/// odd field never loses a paid-for result (the text as received is kept beside it anyway).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckResponse {
    pub request_id: Option<String>,
    /// The endpoint's verdict object: `liveness` (passive liveness), `face_match` or
    /// `age_estimation`, whichever the answer holds (the last one when it holds several).
    pub verdict: Verdict,
    pub vendor_data: Option<String>,
    pub metadata: Option<Value>,
    /// As received: `2026-06-12T01:04:42.763237+00:00` or, in older responses, `...Z`.
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// `Approved` or `Declined` (see [`CheckResponse::decision`]).
    pub status: Option<String>,
    pub method: Option<String>,
    /// 0..100, may have decimals; null when the model gave no confidence.
    pub score: Option<f64>,
    pub user_image: Option<UserImage>,
    pub warnings: Vec<Warning>,
    pub face_quality: Option<f64>,
    pub face_luminance: Option<f64>,
    /// Face match: the faces of the reference image.
    pub ref_image: Option<UserImage>,
    /// Age estimation: the estimated age of the largest face; null when none was estimated.
    pub age_estimation: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserImage {
    pub entities: Vec<Entity>,
    pub best_angle: Option<i64>,
}

impl UserImage {
    /// The largest bounding box (the first one on a tie).
    pub fn largest_face(&self) -> Option<&Entity> {
        let mut best: Option<&Entity> = None;
        for e in &self.entities {
            if best.is_none_or(|b| e.area() > b.area()) {
                best = Some(e);
            }
        }
        best
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    /// `[x_min, y_min, x_max, y_max]` in the processed image.
    pub bbox: Option<Vec<f64>>,
    pub confidence: Option<f64>,
    pub age: Option<f64>,
    pub gender: Option<String>,
    /// Reserved by Didit; always null so far.
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
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// The risk code; `UNKNOWN` when the API sent none.
    pub risk: String,
    pub feature: Option<String>,
    pub additional_data: Option<Value>,
    /// `error` (declines), `warning` or `information`; `unknown` when the API sent none.
    pub log_type: String,
    pub short_description: Option<String>,
    pub long_description: Option<String>,
}

impl Default for Warning {
    fn default() -> Self {
        Self {
            risk: "UNKNOWN".to_string(),
            feature: None,
            additional_data: None,
            log_type: "unknown".to_string(),
            short_description: None,
            long_description: None,
        }
    }
}

impl CheckResponse {
    /// The one reading of a 200 body: the model when the text is a JSON object, `None` when
    /// it is other JSON, an error when it is not JSON.
    pub fn read(text: &str) -> serde_json::Result<Option<Self>> {
        Ok(serde_json::from_str::<Lenient<Self>>(text)?.0)
    }

    /// Approved or Declined as the API said. When `status` is missing or unrecognised, an
    /// error-level warning still means Declined (as Didit derives it); otherwise `None`: an
    /// approval is never assumed.
    pub fn decision(&self) -> Option<Decision> {
        match self.verdict.status.as_deref().map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("approved") => Some(Decision::Approved),
            Some(s) if s.eq_ignore_ascii_case("declined") => Some(Decision::Declined),
            _ if self.verdict.warnings.iter().any(|w| w.log_type == "error") => {
                Some(Decision::Declined)
            }
            _ => None,
        }
    }

    /// The face Didit evaluated: the selfie's largest bounding box (the first one on a tie).
    pub fn largest_face(&self) -> Option<&Entity> {
        self.verdict.user_image.as_ref()?.largest_face()
    }

    /// The risk codes, in the order received.
    pub fn risks(&self) -> Vec<&str> {
        self.verdict
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
        rec.score = self.verdict.score;
        rec.face_quality = self.verdict.face_quality;
        rec.face_luminance = self.verdict.face_luminance;
        rec.estimated_age = self.verdict.age_estimation;
        rec.warnings = self
            .verdict
            .warnings
            .iter()
            .map(|w| WarningRecord::new(&w.risk, &w.log_type))
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

/// Any JSON value reads as the model (the default for anything but an object).
impl<'de> Deserialize<'de> for CheckResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Lenient::<Self>::deserialize(d)?.0.unwrap_or_default())
    }
}

/// A value read leniently: any JSON reads, and what does not fit its type is `None` (read
/// through, never kept).
struct Lenient<T>(Option<T>);

/// How each JSON type becomes a `Self`; every default is "does not fit".
trait Lenience: Sized {
    fn text(_: &str) -> Option<Self> {
        None
    }
    fn number(_: Number) -> Option<Self> {
        None
    }
    fn boolean(_: bool) -> Option<Self> {
        None
    }
    fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn list<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de, T: Lenience> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any<T>(std::marker::PhantomData<T>);
        impl<'de, T: Lenience> Visitor<'de> for Any<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient<T>, E> {
                Ok(Lenient(T::text(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient<T>, E> {
                Ok(Lenient(T::number(v.into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient<T>, E> {
                Ok(Lenient(T::number(v.into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient<T>, E> {
                Ok(Lenient(Number::from_f64(v).and_then(T::number)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient<T>, E> {
                Ok(Lenient(T::boolean(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
                T::object(map).map(Lenient)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Lenient<T>, A::Error> {
                T::list(seq).map(Lenient)
            }
        }
        d.deserialize_any(Any(std::marker::PhantomData))
    }
}

/// Strings as they are, numbers and booleans as text.
impl Lenience for String {
    fn text(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
    fn number(n: Number) -> Option<Self> {
        Some(n.to_string())
    }
    fn boolean(b: bool) -> Option<Self> {
        Some(b.to_string())
    }
}

/// Finite numbers, or strings holding one.
impl Lenience for f64 {
    fn text(s: &str) -> Option<Self> {
        s.trim().parse::<f64>().ok().filter(|f| f.is_finite())
    }
    fn number(n: Number) -> Option<Self> {
        n.as_f64().filter(|f| f.is_finite())
    }
}

/// A box: a list whose every element reads as a number.
struct Numbers(Vec<f64>);

impl Lenience for Numbers {
    fn list<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut all = Some(Vec::new());
        while let Some(Lenient(n)) = seq.next_element::<Lenient<f64>>()? {
            all = all.zip(n).map(|(mut v, n)| {
                v.push(n);
                v
            });
        }
        Ok(all.map(Numbers))
    }
}

/// A list of objects; elements of another type are skipped.
struct Objects<T>(Vec<T>);

impl<T: Fields> Lenience for Objects<T> {
    fn list<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut items = Vec::new();
        while let Some(Lenient(item)) = seq.next_element::<Lenient<T>>()? {
            items.extend(item);
        }
        Ok(Some(Objects(items)))
    }
}

/// An object's fields, by name; unknown names are skipped.
trait Fields: Default {
    const NAMES: &'static [&'static str];
    fn field<'de, A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error>;
}

impl<T: Fields> Lenience for T {
    fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut t = T::default();
        while let Some(name) = map.next_key_seed(Name(T::NAMES))? {
            match name {
                Some(name) => t.field(name, &mut map)?,
                None => map.next_value::<IgnoredAny>().map(drop)?,
            }
        }
        Ok(Some(t))
    }
}

/// A key read as one of the names a model knows (`None` for any other), without a copy.
struct Name(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Option<&'static str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|n| *n == v))
    }
}

fn next<'de, T: Lenience, A: MapAccess<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    Ok(map.next_value::<Lenient<T>>()?.0)
}

/// A value kept as it is, unless null.
fn kept<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Value>, A::Error> {
    map.next_value::<Option<Value>>()
}

impl Fields for CheckResponse {
    const NAMES: &'static [&'static str] = &[
        "request_id",
        "liveness",
        "face_match",
        "age_estimation",
        "vendor_data",
        "metadata",
        "created_at",
    ];
    fn field<'de, A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "request_id" => self.request_id = next(map)?,
            "liveness" | "face_match" | "age_estimation" => {
                if let Some(verdict) = next(map)? {
                    self.verdict = verdict;
                }
            }
            "vendor_data" => self.vendor_data = next(map)?,
            "metadata" => self.metadata = kept(map)?,
            _ => self.created_at = next(map)?,
        }
        Ok(())
    }
}

impl Fields for Verdict {
    const NAMES: &'static [&'static str] = &[
        "status",
        "method",
        "score",
        "user_image",
        "warnings",
        "face_quality",
        "face_luminance",
        "ref_image",
        "age_estimation",
    ];
    fn field<'de, A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "status" => self.status = next(map)?,
            "ref_image" => self.ref_image = next(map)?,
            "age_estimation" => self.age_estimation = next(map)?,
            "method" => self.method = next(map)?,
            "score" => self.score = next(map)?,
            "user_image" => self.user_image = next(map)?,
            "warnings" => {
                self.warnings = next::<Objects<_>, _>(map)?.map_or_else(Vec::new, |l| l.0)
            }
            "face_quality" => self.face_quality = next(map)?,
            _ => self.face_luminance = next(map)?,
        }
        Ok(())
    }
}

impl Fields for UserImage {
    const NAMES: &'static [&'static str] = &["entities", "best_angle"];
    fn field<'de, A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "entities" => {
                self.entities = next::<Objects<_>, _>(map)?.map_or_else(Vec::new, |l| l.0)
            }
            _ => self.best_angle = next::<f64, _>(map)?.map(|f| f.round() as i64),
        }
        Ok(())
    }
}

impl Fields for Entity {
    const NAMES: &'static [&'static str] = &["bbox", "confidence", "age", "gender", "race"];
    fn field<'de, A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "bbox" => self.bbox = next::<Numbers, _>(map)?.map(|n| n.0),
            "confidence" => self.confidence = next(map)?,
            "age" => self.age = next(map)?,
            "gender" => self.gender = next(map)?,
            _ => self.race = kept(map)?,
        }
        Ok(())
    }
}

impl Fields for Warning {
    const NAMES: &'static [&'static str] = &[
        "risk",
        "feature",
        "additional_data",
        "log_type",
        "short_description",
        "long_description",
    ];
    fn field<'de, A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        let unset = Warning::default();
        match name {
            "risk" => {
                let risk = next::<String, _>(map)?.filter(|s| !s.trim().is_empty());
                self.risk = risk.unwrap_or(unset.risk);
            }
            "log_type" => {
                let level = next::<String, _>(map)?.map(|s| s.trim().to_ascii_lowercase());
                self.log_type = level.filter(|s| !s.is_empty()).unwrap_or(unset.log_type);
            }
            "feature" => self.feature = next(map)?,
            "additional_data" => self.additional_data = kept(map)?,
            "short_description" => self.short_description = next(map)?,
            _ => self.long_description = next(map)?,
        }
        Ok(())
    }
}

/// The request fields besides the image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params {
    /// The check's decline threshold (the liveness score's, or face match's similarity),
    /// 0..=100; Didit's default (30) when `None`.
    pub threshold: Option<f64>,
    /// Age estimation's minimum age (0 disables the age check); Didit's default (18) when
    /// `None`. Sent only to the check that has one.
    pub min_age: Option<u32>,
    /// Face match's reference image (`ref_image`), sent after the selfie.
    pub reference: Option<Upload>,
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
#[derive(Debug, Clone, PartialEq)]
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
mod tests;
