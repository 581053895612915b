//! The emulator's face match and age estimation verdicts: a similarity score from how alike two
//! images look (the same image, or one derived from it by resizing, recompressing or a change of
//! brightness, matches; unrelated images do not), an age drawn from the image's bytes, and the
//! 200 bodies of `POST /v3/face-match/` and `POST /v3/age-estimation/` as Didit's schemas give
//! them.

use image::DynamicImage;
use image::imageops::{self, FilterType};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::results::{Analysis, Assessment, Draws, Entity, Warning, assess, created_at, round2};

/// Similarity lost per differing bit of the two fingerprints (64 bits).
const SCORE_PER_BIT: f64 = 4.0;
/// Share of face-bearing images whose age the model cannot estimate.
pub const AGE_NOT_DETECTED_RATE: f64 = 0.03;
/// Youngest and oldest estimated ages.
pub const AGE_RANGE: (f64, f64) = (8.0, 70.0);
/// The salt of the age draws (their stream is apart from the liveness findings').
const AGE_SALT: u64 = 0xA6E0_0000_0000_0001;

/// Two 64-bit difference hashes of the image, as it is and mirrored: where luma rises or falls
/// between neighbours of a 9 × 8 grey thumbnail. Stable under resizing, recompression and
/// brightness changes; two unrelated images differ in about half the bits.
pub fn fingerprint(img: &DynamicImage) -> [u64; 2] {
    let small = img.thumbnail(64, 64).to_luma8();
    let grid = imageops::resize(&small, 9, 8, FilterType::Triangle);
    let luma = |x: u32, y: u32| grid.get_pixel(x, y).0[0];
    let (mut plain, mut mirrored) = (0u64, 0u64);
    for y in 0..8 {
        for x in 0..8 {
            plain = plain << 1 | u64::from(luma(x, y) > luma(x + 1, y));
            mirrored = mirrored << 1 | u64::from(luma(8 - x, y) > luma(7 - x, y));
        }
    }
    [plain, mirrored]
}

/// Every warning of these two endpoints declines.
fn status_of(warnings: &[Warning]) -> &'static str {
    if warnings.is_empty() {
        "Approved"
    } else {
        "Declined"
    }
}

/// One side of a pair: the image's SHA-256, its measurements and its fingerprints.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub hash: &'a [u8; 32],
    pub analysis: &'a Analysis,
    pub print: [u64; 2],
}

/// What face match reports.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceMatch {
    pub score: Option<f64>,
    pub user: Vec<Entity>,
    pub reference: Vec<Entity>,
    pub warnings: Vec<Warning>,
}

impl FaceMatch {
    pub fn status(&self) -> &'static str {
        status_of(&self.warnings)
    }

    /// The sandbox's fixed answer.
    pub fn sandbox() -> Self {
        let face = Assessment::sandbox().entities;
        Self {
            score: Some(99.41),
            user: face.clone(),
            reference: face,
            warnings: Vec::new(),
        }
    }
}

/// Compare two images. With no face on either side the pair cannot be scored:
/// `NO_REFERENCE_IMAGE`, a null score when saved and 0 when not. Otherwise the score falls
/// with the fingerprints' differing bits (the same image, or its mirror image, scores about
/// 99); unrelated images
/// score 5 to 25. At or below `threshold`: `LOW_FACE_MATCH_SIMILARITY`. Saved scores are rounded
/// to two decimals, as Didit rounds them.
pub fn face_match(user: Side, reference: Side, threshold: f64, save: bool) -> FaceMatch {
    let found = |s: Side| assess(s.hash, s.analysis, 0.0, false).entities;
    let (user_faces, reference_faces) = (found(user), found(reference));
    if user_faces.is_empty() || reference_faces.is_empty() {
        return FaceMatch {
            score: if save { None } else { Some(0.0) },
            user: user_faces,
            reference: reference_faces,
            warnings: vec![Warning::face_match("NO_REFERENCE_IMAGE")],
        };
    }
    let mut pair = [0u8; 32];
    for (p, (a, b)) in pair.iter_mut().zip(user.hash.iter().zip(reference.hash)) {
        *p = a ^ b;
    }
    let mut d = Draws::from_hash(&pair);
    let (jitter, low) = (d.unit(), d.unit());
    let [plain, mirrored] = reference.print;
    let differing = f64::from(
        (user.print[0] ^ plain)
            .count_ones()
            .min((user.print[0] ^ mirrored).count_ones()),
    );
    let close = 99.5 - SCORE_PER_BIT * differing - jitter;
    let raw = if close >= 5.0 {
        close
    } else {
        5.0 + 20.0 * low
    };
    let score = if save { round2(raw) } else { raw };
    let mut warnings = Vec::new();
    if score <= threshold {
        warnings.push(Warning::face_match("LOW_FACE_MATCH_SIMILARITY"));
    }
    FaceMatch {
        score: Some(score),
        user: user_faces,
        reference: reference_faces,
        warnings,
    }
}

/// What age estimation reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AgeEstimate {
    /// The liveness score.
    pub score: Option<f64>,
    pub entities: Vec<Entity>,
    pub best_angle: Option<i32>,
    /// The estimated age of the largest face.
    pub age: Option<f64>,
    pub warnings: Vec<Warning>,
}

impl AgeEstimate {
    pub fn status(&self) -> &'static str {
        status_of(&self.warnings)
    }

    /// The sandbox's fixed answer (an age of 30).
    pub fn sandbox() -> Self {
        let mut entities = Assessment::sandbox().entities;
        entities.truncate(1);
        entities[0].age = 30.0;
        Self {
            score: Some(95.0),
            entities,
            best_angle: Some(0),
            age: Some(30.0),
            warnings: Vec::new(),
        }
    }
}

/// Liveness as the liveness endpoint finds it (only its three codes: no face, a low score, an
/// attack), then an age drawn from the bytes: about 3 % of faces get no age
/// (`AGE_NOT_DETECTED`), the others 8 to 70 years; below `min_age` (unless it is 0):
/// `AGE_BELOW_MINIMUM`. No face: `NO_FACE_DETECTED` and `AGE_NOT_DETECTED`, no score.
pub fn age_estimation(
    hash: &[u8; 32],
    analysis: &Analysis,
    threshold: f64,
    min_age: u32,
    rotate_image: bool,
) -> AgeEstimate {
    let liveness = assess(hash, analysis, threshold, rotate_image);
    let mut warnings: Vec<Warning> = liveness
        .warnings
        .into_iter()
        .filter(|w| {
            matches!(
                w.risk,
                "NO_FACE_DETECTED" | "LOW_LIVENESS_SCORE" | "LIVENESS_FACE_ATTACK"
            )
        })
        .collect();
    let mut entities = liveness.entities;
    entities.truncate(1);
    let mut d = Draws::salted(hash, AGE_SALT);
    let (not_detected, age_draw) = (d.unit() < AGE_NOT_DETECTED_RATE, d.unit());
    let age = match entities.first_mut() {
        Some(face) if !not_detected => {
            let age = round2(AGE_RANGE.0 + (AGE_RANGE.1 - AGE_RANGE.0) * age_draw);
            face.age = age;
            Some(age)
        }
        _ => None,
    };
    match age {
        None => warnings.push(Warning::new("AGE_NOT_DETECTED", None)),
        Some(age) if min_age > 0 && age < f64::from(min_age) => {
            warnings.push(Warning::new("AGE_BELOW_MINIMUM", None));
        }
        Some(_) => {}
    }
    AgeEstimate {
        score: liveness.score,
        entities,
        best_angle: liveness.best_angle,
        age,
        warnings,
    }
}

/// The faces of one image in a face match answer.
#[derive(Debug, Serialize)]
struct Faces<'a> {
    entities: &'a [Entity],
    best_angle: i32,
}

#[derive(Debug, Serialize)]
struct FaceMatchObject<'a> {
    status: &'static str,
    score: Option<f64>,
    user_image: Faces<'a>,
    ref_image: Faces<'a>,
    warnings: &'a [Warning],
}

/// A face of an age estimation answer: no `race`.
#[derive(Debug, Serialize)]
struct AgedFace {
    age: f64,
    bbox: [u32; 4],
    confidence: f64,
    gender: &'static str,
}

#[derive(Debug, Serialize)]
struct AgedFaces {
    entities: Vec<AgedFace>,
    best_angle: Option<i32>,
}

#[derive(Debug, Serialize)]
struct AgeObject<'a> {
    status: &'static str,
    method: &'static str,
    score: Option<f64>,
    user_image: AgedFaces,
    age_estimation: Option<f64>,
    warnings: &'a [Warning],
}

/// The envelope every check's 200 shares, around the check's own object.
#[derive(Debug, Serialize)]
struct Body<'a, T> {
    request_id: String,
    #[serde(flatten)]
    check: T,
    vendor_data: Option<&'a str>,
    metadata: Option<&'a Value>,
    created_at: String,
}

#[derive(Debug, Serialize)]
struct FaceMatchKey<'a> {
    face_match: FaceMatchObject<'a>,
}

#[derive(Debug, Serialize)]
struct AgeKey<'a> {
    age_estimation: AgeObject<'a>,
}

/// The caller's echoed fields and the answer's time.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a> {
    pub request_id: Uuid,
    pub vendor_data: Option<&'a str>,
    pub metadata: Option<&'a Value>,
    pub now: chrono::DateTime<chrono::Utc>,
}

fn body<T: Serialize>(echo: Echo, check: T) -> Value {
    serde_json::to_value(Body {
        request_id: echo.request_id.to_string(),
        check,
        vendor_data: echo.vendor_data,
        metadata: echo.metadata,
        created_at: created_at(echo.now),
    })
    .unwrap_or(Value::Null)
}

/// The 200 body of a face match.
pub fn face_match_body(m: &FaceMatch, echo: Echo) -> Value {
    let faces = |entities| Faces {
        entities,
        best_angle: 0,
    };
    body(
        echo,
        FaceMatchKey {
            face_match: FaceMatchObject {
                status: m.status(),
                score: m.score,
                user_image: faces(&m.user),
                ref_image: faces(&m.reference),
                warnings: &m.warnings,
            },
        },
    )
}

/// The 200 body of an age estimation.
pub fn age_body(a: &AgeEstimate, echo: Echo) -> Value {
    let entities = a
        .entities
        .iter()
        .map(|e| AgedFace {
            age: e.age,
            bbox: e.bbox,
            confidence: e.confidence,
            gender: e.gender,
        })
        .collect();
    body(
        echo,
        AgeKey {
            age_estimation: AgeObject {
                status: a.status(),
                method: "PASSIVE",
                score: a.score,
                user_image: AgedFaces {
                    entities,
                    best_angle: a.best_angle,
                },
                age_estimation: a.age,
                warnings: &a.warnings,
            },
        },
    )
}

#[cfg(test)]
mod tests;
