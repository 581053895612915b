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

fn round2(x: f64) -> f64 {
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
struct Draws(u64);

impl Draws {
    fn from_hash(hash: &[u8; 32]) -> Self {
        let mut seed = 0u64;
        for chunk in hash.chunks(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            seed = seed.rotate_left(17) ^ u64::from_le_bytes(b);
        }
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
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
mod tests {
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
}
