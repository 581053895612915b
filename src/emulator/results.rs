//! The emulator's verdicts: bounded image decoding, real brightness and sharpness measurements,
//! hash-derived liveness findings, the face index behind `DUPLICATED_FACE`, and the 200 body.
//!
//! Everything here is a pure function of the image bytes and the request's fields (apart from
//! `request_id`, `created_at` and duplicate detection, which depends on earlier saved calls).

use std::collections::HashMap;
use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageReader, Limits};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// Widest or tallest image the emulator decodes; larger declared sizes are "Invalid user image format."
pub const MAX_DIMENSION: u32 = 8000;
/// Most memory one decode may allocate.
pub const MAX_DECODE_ALLOC: u64 = 128 * 1024 * 1024;
/// Below this many pixels on the short side there is no face to find.
pub const MIN_FACE_SIDE: u32 = 32;
/// Below this standard deviation of luma (0..255) the image is near-uniform: no face.
pub const MIN_CONTRAST: f64 = 3.0;
/// `face_luminance` below this adds `LOW_FACE_LUMINANCE`.
pub const LOW_LUMINANCE: f64 = 25.0;
/// `face_luminance` above this adds `HIGH_FACE_LUMINANCE`.
pub const HIGH_LUMINANCE: f64 = 90.0;
/// `face_quality` below this adds `LOW_FACE_QUALITY`.
pub const LOW_QUALITY: f64 = 30.0;
/// Side of the working copy the measurements are taken on (Didit also downsizes before analysis).
const WORK_SIDE: u32 = 512;
/// Sharpness (mean absolute Laplacian of luma) giving a quality of 50.
const SHARPNESS_SCALE: f64 = 4.0;

/// Decode with strict limits, so a decompression bomb is refused instead of exhausting memory.
pub fn decode_bounded(bytes: &[u8]) -> Result<DynamicImage, image::ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    reader.decode()
}

/// Measurements of the decoded image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    pub width: u32,
    pub height: u32,
    /// Mean Rec. 601 luma, scaled to 0..100.
    pub luminance: f64,
    /// Mean absolute 4-neighbour Laplacian of luma (0..255 scale) on the working copy.
    pub sharpness: f64,
    /// Standard deviation of luma (0..255 scale).
    pub contrast: f64,
}

/// Measure brightness, sharpness and contrast on a copy at most 512 px on a side.
pub fn analyze(img: &DynamicImage) -> Analysis {
    let (width, height) = (img.width(), img.height());
    let luma: GrayImage = if width > WORK_SIDE || height > WORK_SIDE {
        img.thumbnail(WORK_SIDE, WORK_SIDE).to_luma8()
    } else {
        img.to_luma8()
    };
    let (w, h) = luma.dimensions();
    let n = f64::from(w) * f64::from(h);
    let (mut sum, mut sum_sq) = (0f64, 0f64);
    for p in luma.pixels() {
        let v = f64::from(p.0[0]);
        sum += v;
        sum_sq += v * v;
    }
    let mean = if n > 0.0 { sum / n } else { 0.0 };
    let variance = if n > 0.0 {
        (sum_sq / n - mean * mean).max(0.0)
    } else {
        0.0
    };
    let mut lap_sum = 0f64;
    let mut lap_n = 0f64;
    if w >= 3 && h >= 3 {
        let px = |x: u32, y: u32| i32::from(luma.get_pixel(x, y).0[0]);
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let l = 4 * px(x, y) - px(x - 1, y) - px(x + 1, y) - px(x, y - 1) - px(x, y + 1);
                lap_sum += f64::from(l.abs());
                lap_n += 1.0;
            }
        }
    }
    Analysis {
        width,
        height,
        luminance: mean / 255.0 * 100.0,
        sharpness: if lap_n > 0.0 { lap_sum / lap_n } else { 0.0 },
        contrast: variance.sqrt(),
    }
}

/// `face_quality` (0..100) from sharpness: saturating, so crisp images approach 100 (a crisp
/// photo scores about 70-90, a Gaussian blur of 2 px about 25).
pub fn quality_from_sharpness(sharpness: f64) -> f64 {
    let s = sharpness.max(0.0);
    100.0 * s / (s + SHARPNESS_SCALE)
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Severity of a warning; `error` declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    Error,
    Warning,
    Information,
}

/// One warning as Didit sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub risk: &'static str,
    pub feature: &'static str,
    pub additional_data: Option<Value>,
    pub log_type: LogType,
    pub short_description: &'static str,
    pub long_description: &'static str,
}

impl Warning {
    pub fn new(risk: &'static str, additional_data: Option<Value>) -> Self {
        let (log_type, short_description, long_description) = describe(risk);
        Self {
            risk,
            feature: "LIVENESS",
            additional_data,
            log_type,
            short_description,
            long_description,
        }
    }

    /// A face match warning: its feature is `FACEMATCH`.
    pub fn face_match(risk: &'static str) -> Self {
        Self {
            feature: "FACEMATCH",
            ..Self::new(risk, None)
        }
    }
}

/// Severity and texts of every risk code the emulator emits. The three capture-quality codes
/// (`LOW_FACE_QUALITY`, `LOW_FACE_LUMINANCE`, `HIGH_FACE_LUMINANCE`) are workflow codes that this
/// endpoint does not decline on: they come as `warning`.
pub fn describe(risk: &str) -> (LogType, &'static str, &'static str) {
    match risk {
        "NO_FACE_DETECTED" => (
            LogType::Error,
            "No face detected",
            "The system could not detect a face in the image. The face must be clearly visible, well lit and facing the camera.",
        ),
        "LOW_LIVENESS_SCORE" => (
            LogType::Error,
            "Low liveness score",
            "The liveness check resulted in a low score, indicating potential use of non-live facial representations or poor-quality biometric data.",
        ),
        "LIVENESS_FACE_ATTACK" => (
            LogType::Error,
            "Liveness Face Attack",
            "The system detected a potential attempt to bypass the liveness check.",
        ),
        "FACE_IN_BLOCKLIST" => (
            LogType::Error,
            "Face in blocklist",
            "The system identified a face in the blocklist, which means the face is not allowed to be verified.",
        ),
        "POSSIBLE_FACE_IN_BLOCKLIST" => (
            LogType::Error,
            "Possible face in blocklist",
            "The face closely resembles a face in the blocklist; it is treated as a blocklist match.",
        ),
        "MULTIPLE_FACES_DETECTED" => (
            LogType::Warning,
            "Multiple faces detected",
            "More than one face was detected in the image. The largest face was evaluated.",
        ),
        "DUPLICATED_FACE" => (
            LogType::Information,
            "Duplicated face",
            "The same face already appeared in another approved session with different vendor data.",
        ),
        "POSSIBLE_DUPLICATED_FACE" => (
            LogType::Information,
            "Possible duplicated face",
            "A very similar face appeared in another approved session with different vendor data.",
        ),
        "LOW_FACE_QUALITY" => (
            LogType::Warning,
            "Low face quality",
            "The face in the image is blurry or out of focus; the result may be unreliable.",
        ),
        "LOW_FACE_LUMINANCE" => (
            LogType::Warning,
            "Low face luminance",
            "The face in the image is too dark; the result may be unreliable.",
        ),
        "HIGH_FACE_LUMINANCE" => (
            LogType::Warning,
            "High face luminance",
            "The face in the image is overexposed; the result may be unreliable.",
        ),
        "AGE_NOT_DETECTED" => (
            LogType::Error,
            "Age not detected",
            "The age of the face could not be estimated.",
        ),
        "AGE_BELOW_MINIMUM" => (
            LogType::Error,
            "Age below minimum",
            "The age of the face is below the minimum age threshold for the application.",
        ),
        "LOW_FACE_MATCH_SIMILARITY" => (
            LogType::Error,
            "Low face match similarity",
            "The facial features of the provided image don't closely match the reference image, suggesting a potential identity mismatch.",
        ),
        "NO_REFERENCE_IMAGE" => (
            LogType::Error,
            "No reference image",
            "No face pair could be compared: no face was found in the image or in the reference image.",
        ),
        _ => (LogType::Warning, "Unknown risk", "Unknown risk."),
    }
}

/// A detected face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    pub bbox: [u32; 4],
    pub confidence: f64,
    pub age: f64,
    pub gender: &'static str,
    pub race: Option<String>,
}

/// Everything `liveness` reports, before it is wrapped in a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub score: Option<f64>,
    pub face_quality: Option<f64>,
    pub face_luminance: Option<f64>,
    pub entities: Vec<Entity>,
    pub best_angle: Option<i32>,
    pub warnings: Vec<Warning>,
}

impl Assessment {
    /// Declined exactly when some warning is error-level.
    pub fn status(&self) -> &'static str {
        if self.warnings.iter().any(|w| w.log_type == LogType::Error) {
            "Declined"
        } else {
            "Approved"
        }
    }

    pub fn face_found(&self) -> bool {
        !self.entities.is_empty()
    }

    /// Record an exact duplicate of an enrolled face (replaces a hash-derived possible one).
    pub fn add_duplicate(&mut self, session_id: Uuid, session_number: u64) {
        self.warnings
            .retain(|w| w.risk != "POSSIBLE_DUPLICATED_FACE");
        self.warnings.push(Warning::new(
            "DUPLICATED_FACE",
            Some(json!({
                "duplicated_session_id": session_id.to_string(),
                "duplicated_session_number": session_number,
                "api_service": null,
            })),
        ));
    }

    /// The sandbox's fixed answer.
    pub fn sandbox() -> Self {
        Self {
            score: Some(95.0),
            face_quality: Some(84.21),
            face_luminance: Some(50.33),
            entities: vec![Entity {
                bbox: [661, 728, 1688, 2188],
                confidence: 0.732973,
                age: 26.91,
                gender: "male",
                race: None,
            }],
            best_angle: Some(0),
            warnings: Vec::new(),
        }
    }
}

/// Draws derived from the image hash: SplitMix64 seeded with the hash, so the same bytes always
/// give the same findings whatever the library versions.
pub(super) struct Draws(u64);

impl Draws {
    pub(super) fn from_hash(hash: &[u8; 32]) -> Self {
        let mut seed = 0u64;
        for chunk in hash.chunks(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            seed = seed.rotate_left(17) ^ u64::from_le_bytes(b);
        }
        Self(seed)
    }

    /// Another stream for the same bytes: `salt` names what it draws.
    pub(super) fn salted(hash: &[u8; 32], salt: u64) -> Self {
        let mut d = Self::from_hash(hash);
        d.0 ^= salt;
        d
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uuid(&mut self) -> Uuid {
        let bytes = (u128::from(self.next_u64()) << 64 | u128::from(self.next_u64())).to_le_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// Rates of the hash-derived findings (per face-bearing image).
pub mod rates {
    pub const NO_FACE: f64 = 0.01;
    pub const ATTACK: f64 = 0.03;
    pub const BLOCKLIST: f64 = 0.01;
    pub const POSSIBLE_BLOCKLIST: f64 = 0.01;
    pub const MULTIPLE_FACES: f64 = 0.04;
    pub const POSSIBLE_DUPLICATE: f64 = 0.02;
}

/// The findings for an image: its hash decides the liveness score and the rare risks, its
/// pixels decide whether there is a face at all, its quality and its luminance.
pub fn assess(hash: &[u8; 32], a: &Analysis, threshold: f64, rotate_image: bool) -> Assessment {
    let mut d = Draws::from_hash(hash);
    // A fixed order of draws: every image consumes the same ones.
    let no_face = d.unit() < rates::NO_FACE;
    let attack = d.unit() < rates::ATTACK;
    let blocklist_draw = d.unit();
    let multiple = d.unit() < rates::MULTIPLE_FACES;
    let possible_duplicate = d.unit() < rates::POSSIBLE_DUPLICATE;
    let score_draw = d.unit();
    let angle_draw = d.unit();
    let primary = face(&mut d, a, 0.35, 0.60);
    let secondary = face(&mut d, a, 0.12, 0.25);
    let blocklisted_session = d.uuid();
    let blocklisted_number = 100 + d.next_u64() % 9_900;
    let duplicated_session = d.uuid();
    let duplicated_number = 100 + d.next_u64() % 9_900;

    if no_face || a.width.min(a.height) < MIN_FACE_SIDE || a.contrast < MIN_CONTRAST {
        return Assessment {
            score: None,
            face_quality: None,
            face_luminance: None,
            entities: Vec::new(),
            best_angle: None,
            warnings: vec![Warning::new("NO_FACE_DETECTED", None)],
        };
    }

    let score = liveness_score(attack, score_draw);
    let face_quality = round2(quality_from_sharpness(a.sharpness));
    let face_luminance = round2(a.luminance);

    let mut warnings = Vec::new();
    if score <= threshold {
        warnings.push(Warning::new("LOW_LIVENESS_SCORE", None));
    }
    if attack {
        warnings.push(Warning::new("LIVENESS_FACE_ATTACK", None));
    }
    let blocklist_data = || session_data("blocklisted", blocklisted_session, blocklisted_number);
    if blocklist_draw < rates::BLOCKLIST {
        warnings.push(Warning::new("FACE_IN_BLOCKLIST", blocklist_data()));
    } else if blocklist_draw < rates::BLOCKLIST + rates::POSSIBLE_BLOCKLIST {
        warnings.push(Warning::new("POSSIBLE_FACE_IN_BLOCKLIST", blocklist_data()));
    }
    let mut entities = vec![primary];
    if multiple {
        warnings.push(Warning::new("MULTIPLE_FACES_DETECTED", None));
        entities.push(secondary);
    }
    if possible_duplicate {
        let data = session_data("duplicated", duplicated_session, duplicated_number);
        warnings.push(Warning::new("POSSIBLE_DUPLICATED_FACE", data));
    }
    capture_warnings(face_quality, face_luminance, &mut warnings);
    let best_angle = if rotate_image && angle_draw < 0.08 {
        [90, 180, 270][(angle_draw / 0.08 * 3.0) as usize % 3]
    } else {
        0
    };
    Assessment {
        score: Some(score),
        face_quality: Some(face_quality),
        face_luminance: Some(face_luminance),
        entities,
        best_angle: Some(best_angle),
        warnings,
    }
}

/// The liveness score (0-100, two decimals) from its draw: attacks score low, about 4 % of the
/// rest at or below Didit's default threshold of 30.
fn liveness_score(attack: bool, draw: f64) -> f64 {
    round2(if attack {
        2.0 + 36.0 * draw
    } else if draw < 0.04 {
        1.0 + 29.0 * (draw / 0.04)
    } else if draw < 0.12 {
        30.0 + 30.0 * ((draw - 0.04) / 0.08)
    } else {
        60.0 + 39.99 * ((draw - 0.12) / 0.88)
    })
}

/// The `additional_data` of a blocklist or duplicate hit (`kind`: "blocklisted" or "duplicated").
fn session_data(kind: &str, session: uuid::Uuid, number: u64) -> Option<Value> {
    let mut data = serde_json::Map::new();
    data.insert(format!("{kind}_session_id"), json!(session.to_string()));
    data.insert(format!("{kind}_session_number"), json!(number));
    data.insert("api_service".into(), Value::Null);
    Some(Value::Object(data))
}

/// The capture warnings: low quality, and too dark or too bright.
fn capture_warnings(quality: f64, luminance: f64, warnings: &mut Vec<Warning>) {
    if quality < LOW_QUALITY {
        warnings.push(Warning::new("LOW_FACE_QUALITY", None));
    }
    if luminance < LOW_LUMINANCE {
        warnings.push(Warning::new("LOW_FACE_LUMINANCE", None));
    } else if luminance > HIGH_LUMINANCE {
        warnings.push(Warning::new("HIGH_FACE_LUMINANCE", None));
    }
}

/// A face box inside the image whose side is `lo..hi` of the short side, and its attributes.
fn face(d: &mut Draws, a: &Analysis, lo: f64, hi: f64) -> Entity {
    let short = f64::from(a.width.min(a.height));
    let side = (short * (lo + (hi - lo) * d.unit())).max(1.0);
    let x = (f64::from(a.width) - side).max(0.0) * d.unit();
    let y = (f64::from(a.height) - side).max(0.0) * d.unit();
    let height = (side * 1.3).min(f64::from(a.height) - y);
    let confidence = ((0.55 + 0.44 * d.unit()) * 1e6).round() / 1e6;
    let age = round2(18.0 + 50.0 * d.unit());
    let gender = if d.next_u64() & 1 == 0 {
        "male"
    } else {
        "female"
    };
    Entity {
        bbox: [
            x as u32,
            y as u32,
            (x + side).min(f64::from(a.width)) as u32,
            (y + height) as u32,
        ],
        confidence,
        age,
        gender,
        race: None,
    }
}

/// The `liveness` object of a 200.
#[derive(Debug, Serialize)]
struct Liveness<'a> {
    status: &'static str,
    method: &'static str,
    score: Option<f64>,
    user_image: UserImage<'a>,
    warnings: &'a [Warning],
    face_quality: Option<f64>,
    face_luminance: Option<f64>,
}

#[derive(Debug, Serialize)]
struct UserImage<'a> {
    entities: &'a [Entity],
    best_angle: Option<i32>,
}

#[derive(Debug, Serialize)]
struct Body<'a> {
    request_id: String,
    liveness: Liveness<'a>,
    vendor_data: Option<&'a str>,
    metadata: Option<&'a Value>,
    created_at: String,
}

/// Didit's `created_at`: "2026-06-12T01:04:42.763237+00:00".
pub fn created_at(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The 200 body.
pub fn response_body(
    request_id: Uuid,
    a: &Assessment,
    vendor_data: Option<&str>,
    metadata: Option<&Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let body = Body {
        request_id: request_id.to_string(),
        liveness: Liveness {
            status: a.status(),
            method: "PASSIVE",
            score: a.score,
            user_image: UserImage {
                entities: &a.entities,
                best_angle: a.best_angle,
            },
            warnings: &a.warnings,
            face_quality: a.face_quality,
            face_luminance: a.face_luminance,
        },
        vendor_data,
        metadata,
        created_at: created_at(now),
    };
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// One enrolled face: a saved, approved session.
#[derive(Debug, Clone)]
struct Enrolled {
    session_id: Uuid,
    session_number: u64,
    vendor_data: Option<String>,
}

/// The application's face index: faces of saved (`save_api_request=true`) approved calls, keyed
/// by the image's SHA-256 (the emulator's stand-in for "the same face").
#[derive(Debug, Default)]
pub struct FaceIndex {
    faces: HashMap<[u8; 32], Vec<Enrolled>>,
    enrolled: usize,
    next_number: u64,
}

/// Most faces the index keeps; later saves are not enrolled.
const FACE_INDEX_CAP: usize = 1_000_000;

impl FaceIndex {
    /// An earlier session with this face and a different (or no) vendor_data: faces enrolled
    /// under the caller's own vendor_data are excluded, as Didit does.
    pub fn find_duplicate(
        &self,
        hash: &[u8; 32],
        vendor_data: Option<&str>,
    ) -> Option<(Uuid, u64)> {
        self.faces.get(hash)?.iter().find_map(|e| {
            let same_user =
                matches!((e.vendor_data.as_deref(), vendor_data), (Some(a), Some(b)) if a == b);
            (!same_user).then_some((e.session_id, e.session_number))
        })
    }

    pub fn enroll(&mut self, hash: [u8; 32], session_id: Uuid, vendor_data: Option<&str>) {
        if self.enrolled >= FACE_INDEX_CAP {
            return;
        }
        self.next_number += 1;
        self.enrolled += 1;
        self.faces.entry(hash).or_default().push(Enrolled {
            session_id,
            session_number: self.next_number,
            vendor_data: vendor_data.map(str::to_string),
        });
    }
}

#[cfg(test)]
mod tests;
