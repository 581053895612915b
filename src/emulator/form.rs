//! The emulator's request form: reading the multipart body and validating every field of each
//! check's form with the exact Django REST Framework messages Didit answers in its 400 field maps.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::request::Parts;
use serde_json::{Map, Value, json};

/// Largest accepted `user_image`: 5 MB as Didit counts it (5 × 1024 × 1024 bytes).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Extensions Didit accepts, in the order its message lists them.
pub const ALLOWED_EXTENSIONS: [&str; 5] = ["tiff", "jpg", "jpeg", "png", "webp"];
/// Didit's default decline threshold (liveness score, face match similarity).
pub const DEFAULT_THRESHOLD: f64 = 30.0;
/// Didit's default minimum age of the age estimation.
pub const DEFAULT_MIN_AGE: u32 = 18;

/// The check a `POST` asks for: its path decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `POST /v3/passive-liveness/`: one image.
    Liveness,
    /// `POST /v3/face-match/`: `user_image` against `ref_image`.
    FaceMatch,
    /// `POST /v3/age-estimation/`: one image, liveness and age.
    Age,
}

impl Check {
    pub const ALL: [Check; 3] = [Check::Liveness, Check::FaceMatch, Check::Age];

    /// The path, trailing slash included.
    pub fn path(self) -> &'static str {
        match self {
            Check::Liveness => "/v3/passive-liveness/",
            Check::FaceMatch => "/v3/face-match/",
            Check::Age => "/v3/age-estimation/",
        }
    }

    /// The form field of the decline threshold.
    fn threshold_field(self) -> &'static str {
        match self {
            Check::Liveness | Check::Age => "face_liveness_score_decline_threshold",
            Check::FaceMatch => "face_match_score_decline_threshold",
        }
    }
}

/// One file part.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_name: String,
    pub bytes: Bytes,
}

/// An image part (`user_image`, `ref_image`) as received.
#[derive(Debug, Clone)]
pub enum ImagePart {
    File(Upload),
    /// Sent as a plain text part (no filename): not a file.
    Text,
}

/// Every part of the form, before validation. Later parts with the same name win, like
/// Django's `QueryDict`.
#[derive(Debug, Default)]
pub struct RawForm {
    pub image: Option<ImagePart>,
    /// `ref_image` (face match).
    pub reference: Option<ImagePart>,
    pub text: BTreeMap<String, String>,
    /// What was received, for the request log: text values, or "<name> (N bytes)" for files.
    pub log_fields: Map<String, Value>,
}

/// The validated request.
#[derive(Debug, Clone)]
pub struct CheckForm {
    pub check: Check,
    pub image: Bytes,
    /// `ref_image`: face match only.
    pub reference: Option<Bytes>,
    /// The decline threshold: liveness score, or face match similarity.
    pub threshold: f64,
    /// `age_estimation_decline_threshold` (age only; 0 disables the age check).
    pub min_age: u32,
    pub rotate_image: bool,
    pub save_api_request: bool,
    pub vendor_data: Option<String>,
    pub metadata: Option<Value>,
}

/// Longest text value kept in the request log.
const LOG_TEXT_MAX: usize = 2000;

/// Read a multipart body. A body that is not `multipart/form-data` reads as an empty form (so it
/// gets "No file was submitted."); a malformed multipart body is `Err(detail)` as DRF words it.
///
/// `parts` are the request's head (only its `Content-Type` is read); `body` is the whole body,
/// already received and bounded by the server. Public so that it can be fuzzed on its own.
pub async fn read_form(parts: &Parts, body: Bytes) -> Result<RawForm, String> {
    let is_multipart = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let mut form = RawForm::default();
    if !is_multipart {
        return Ok(form);
    }
    // The parts carry the router's body-limit setting (disabled: the body is already bounded).
    let request = Request::from_parts(parts.clone(), Body::from(body));
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| format!("Multipart form parse error - {}", e.body_text()))?;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(format!("Multipart form parse error - {}", e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("Multipart form parse error - {}", e.body_text()))?;
        match file_name {
            Some(file_name) => {
                form.log_fields.insert(
                    name.clone(),
                    Value::String(format!("{file_name} ({} bytes)", bytes.len())),
                );
                if let Some(slot) = form.image_slot(&name) {
                    // Django ignores a file part whose filename is empty: "No file was submitted."
                    *slot = if file_name.is_empty() {
                        None
                    } else {
                        Some(ImagePart::File(Upload { file_name, bytes }))
                    };
                }
            }
            None => {
                let value = String::from_utf8_lossy(&bytes).into_owned();
                form.log_fields
                    .insert(name.clone(), Value::String(truncate(&value, LOG_TEXT_MAX)));
                if let Some(slot) = form.image_slot(&name) {
                    *slot = Some(ImagePart::Text);
                } else {
                    form.text.insert(name, value);
                }
            }
        }
    }
    Ok(form)
}

impl RawForm {
    /// Where a file part of this name goes, if it is one of the images.
    fn image_slot(&mut self, name: &str) -> Option<&mut Option<ImagePart>> {
        match name {
            "user_image" => Some(&mut self.image),
            "ref_image" => Some(&mut self.reference),
            _ => None,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Validate a liveness form (see [`validate_for`]).
pub fn validate(form: &RawForm) -> Result<CheckForm, Value> {
    validate_for(Check::Liveness, form)
}

/// Validate every field of `check`'s form like DRF does: all errors of all fields are collected
/// into one map, listed in Didit's order of the fields.
pub fn validate_for(check: Check, form: &RawForm) -> Result<CheckForm, Value> {
    let mut errors: Map<String, Value> = Map::new();
    let image = keep(&mut errors, "user_image", image_field(form.image.as_ref()));
    let reference = match check {
        Check::FaceMatch => keep(
            &mut errors,
            "ref_image",
            image_field(form.reference.as_ref()).map(Some),
        ),
        Check::Liveness | Check::Age => Some(None),
    };
    let threshold_field_name = check.threshold_field();
    let threshold = keep(
        &mut errors,
        threshold_field_name,
        threshold_field(form, threshold_field_name),
    );
    let min_age = match check {
        Check::Age => keep(&mut errors, MIN_AGE_FIELD, min_age_field(form)),
        Check::Liveness | Check::FaceMatch => Some(DEFAULT_MIN_AGE),
    };
    let rotate_image = keep(
        &mut errors,
        "rotate_image",
        bool_field(form, "rotate_image", false),
    );
    let save_api_request = keep(
        &mut errors,
        "save_api_request",
        bool_field(form, "save_api_request", true),
    );
    let metadata = keep(&mut errors, "metadata", metadata_field(form));
    let vendor_data = present(form, "vendor_data").map(str::to_string);
    if !errors.is_empty() {
        return Err(Value::Object(errors));
    }
    // Every field without an error has its value.
    let unset = || Value::Object(Map::new());
    Ok(CheckForm {
        check,
        image: image.ok_or_else(unset)?,
        reference: reference.ok_or_else(unset)?,
        threshold: threshold.ok_or_else(unset)?,
        min_age: min_age.ok_or_else(unset)?,
        rotate_image: rotate_image.ok_or_else(unset)?,
        save_api_request: save_api_request.ok_or_else(unset)?,
        vendor_data,
        metadata: metadata.ok_or_else(unset)?,
    })
}

/// The age estimation's minimum-age field.
const MIN_AGE_FIELD: &str = "age_estimation_decline_threshold";

/// A field's value, or its messages added to `errors` under its name.
fn keep<T>(errors: &mut Map<String, Value>, field: &str, r: Result<T, Vec<String>>) -> Option<T> {
    match r {
        Ok(value) => Some(value),
        Err(messages) => {
            errors.insert(field.to_string(), json!(messages));
            None
        }
    }
}

fn image_field(part: Option<&ImagePart>) -> Result<Bytes, Vec<String>> {
    match part {
        None => Err(vec!["No file was submitted.".into()]),
        Some(ImagePart::Text) => Err(vec![
            "The submitted data was not a file. Check the encoding type on the form.".into(),
        ]),
        Some(ImagePart::File(upload)) => match image_errors(upload) {
            messages if messages.is_empty() => Ok(upload.bytes.clone()),
            messages => Err(messages),
        },
    }
}

fn threshold_field(form: &RawForm, field: &str) -> Result<f64, Vec<String>> {
    match present(form, field) {
        None => Ok(DEFAULT_THRESHOLD),
        Some(text) => parse_threshold(text).map_err(|message| vec![message]),
    }
}

fn min_age_field(form: &RawForm) -> Result<u32, Vec<String>> {
    match present(form, MIN_AGE_FIELD) {
        None => Ok(DEFAULT_MIN_AGE),
        Some(text) => parse_min_age(text).map_err(|message| vec![message]),
    }
}

fn bool_field(form: &RawForm, field: &str, default: bool) -> Result<bool, Vec<String>> {
    match present(form, field) {
        None => Ok(default),
        Some(text) => parse_bool(text).ok_or_else(|| vec!["Must be a valid boolean.".into()]),
    }
}

fn metadata_field(form: &RawForm) -> Result<Option<Value>, Vec<String>> {
    match present(form, "metadata") {
        None => Ok(None),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => Ok(Some(value)),
            _ => Err(vec!["Value must be valid JSON.".into()]),
        },
    }
}

/// A text field that was sent and is not empty (DRF treats an empty optional field as absent).
fn present<'a>(form: &'a RawForm, field: &str) -> Option<&'a str> {
    form.text
        .get(field)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// DRF's FileField checks, then Didit's validators (extension, then size).
fn image_errors(upload: &Upload) -> Vec<String> {
    if upload.bytes.is_empty() {
        return vec!["The submitted file is empty.".into()];
    }
    let mut messages = Vec::new();
    let extension = extension_of(&upload.file_name);
    if !ALLOWED_EXTENSIONS.contains(&extension.as_str()) {
        messages.push(format!(
            "File extension “{extension}” is not allowed. Allowed extensions are: {}.",
            ALLOWED_EXTENSIONS.join(", ")
        ));
    }
    if upload.bytes.len() > MAX_IMAGE_BYTES {
        messages.push("File size should not exceed 5 MB".into());
    }
    messages
}

/// The lower-cased extension after the last dot of the file name's last path component, as
/// Django's FileExtensionValidator takes it ("" when there is none).
pub fn extension_of(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    // Python's PurePath.suffix: the last dot counts unless it starts or ends the name.
    match base.rfind('.') {
        Some(i) if i > 0 && i + 1 < base.len() => base[i + 1..].to_lowercase(),
        _ => String::new(),
    }
}

/// DRF FloatField with min 0 and max 100.
fn parse_threshold(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| "A valid number is required.".to_string())?;
    if value.is_nan() {
        return Err("A valid number is required.".into());
    }
    if value > 100.0 {
        return Err("Ensure this value is less than or equal to 100.".into());
    }
    if value < 0.0 {
        return Err("Ensure this value is greater than or equal to 0.".into());
    }
    Ok(value)
}

/// DRF IntegerField with min 0 and max 100: an integral number, also with a fraction of zeros
/// ("18.0", "18."), which DRF strips before reading it.
fn parse_min_age(text: &str) -> Result<u32, String> {
    let invalid = || "A valid integer is required.".to_string();
    let text = text.trim();
    let value: i64 = match text.parse::<i64>() {
        Ok(v) => v,
        Err(_) => {
            let (whole, fraction) = text.split_once('.').ok_or_else(invalid)?;
            if !fraction.bytes().all(|b| b == b'0') {
                return Err(invalid());
            }
            whole.parse().map_err(|_| invalid())?
        }
    };
    if value > 100 {
        return Err("Ensure this value is less than or equal to 100.".into());
    }
    if value < 0 {
        return Err("Ensure this value is greater than or equal to 0.".into());
    }
    Ok(value as u32)
}

/// DRF BooleanField's accepted spellings.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On"
        | "ON" | "1" => Some(true),
        "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off"
        | "Off" | "OFF" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
