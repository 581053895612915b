//! Builds the demo set in `sample_data/` from one portrait: about thirty derived images (sizes,
//! crops, encodings, lighting and geometry variants, a duplicate pair), three deliberately bad
//! files, a file the folder walk ignores, `manifest.csv`, and for face match a few ID photos
//! (`ids/`) with `pairs.csv`.
//!
//! Usage: cargo run --example make_sample_data -- /path/to/astronaut.png sample_data
//!
//! The output is deterministic: the same source image gives byte-identical files.

use std::fs;
use std::io::Cursor;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageFormat, Luma};

/// A 1x1 GIF89a: a real image in a format Didit does not take.
const GIF_1X1: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xFF, 0xFF, 0xFF,
    0x00, 0x00, 0x00, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
];

enum Enc {
    Jpeg(u8),
    Png,
    Webp,
    Tiff,
}

struct Out {
    root: PathBuf,
    written: Vec<(String, u64)>,
}

impl Out {
    fn bytes(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.written.push((rel.to_string(), bytes.len() as u64));
        Ok(())
    }

    fn image(&mut self, rel: &str, img: &DynamicImage, enc: Enc) -> Result<()> {
        let mut buf = Cursor::new(Vec::new());
        match enc {
            Enc::Jpeg(quality) => {
                let img = DynamicImage::ImageRgb8(img.to_rgb8());
                img.write_with_encoder(JpegEncoder::new_with_quality(&mut buf, quality))?;
            }
            Enc::Png => img.write_to(&mut buf, ImageFormat::Png)?,
            // image 0.25 encodes WebP losslessly.
            Enc::Webp => {
                DynamicImage::ImageRgb8(img.to_rgb8()).write_to(&mut buf, ImageFormat::WebP)?
            }
            Enc::Tiff => img.write_to(&mut buf, ImageFormat::Tiff)?,
        }
        self.bytes(rel, buf.get_ref())
    }
}

fn scaled(img: &DynamicImage, size: u32) -> DynamicImage {
    img.resize_exact(size, size, FilterType::Lanczos3)
}

/// Apply a per-channel tone curve.
fn tone(img: &DynamicImage, f: impl Fn(f32) -> f32) -> DynamicImage {
    let mut rgb = img.to_rgb8();
    for p in rgb.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = f(*c as f32).round().clamp(0.0, 255.0) as u8;
        }
    }
    DynamicImage::ImageRgb8(rgb)
}

/// A near-uniform grey frame with faint deterministic noise: no face at all.
fn grey(size: u32) -> DynamicImage {
    let mut state: u32 = 0x2545_F491;
    let img = GrayImage::from_fn(size, size, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Luma([126 + (state % 5) as u8])
    });
    DynamicImage::ImageLuma8(img)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, out] = args.as_slice() else {
        bail!("usage: make_sample_data SOURCE_IMAGE OUT_DIR");
    };
    let photo = image::open(src).with_context(|| format!("opening {src}"))?;
    if photo.width() < 400 || photo.height() < 400 {
        bail!("{src}: expected a portrait of at least 400x400 pixels");
    }
    let photo = DynamicImage::ImageRgb8(photo.to_rgb8());
    let mut out = Out {
        root: PathBuf::from(out),
        written: Vec::new(),
    };

    // Q1: the portrait at several sizes and in every accepted format.
    let q1 = "selfies/2026-q1";
    for (size, quality) in [(512, 90), (384, 85), (256, 75), (160, 60), (96, 50)] {
        let name = format!("{q1}/portrait_{size}_q{quality}.jpg");
        out.image(&name, &scaled(&photo, size), Enc::Jpeg(quality))?;
    }
    out.image(
        &format!("{q1}/portrait_256_q30.jpg"),
        &scaled(&photo, 256),
        Enc::Jpeg(30),
    )?;
    out.image(
        &format!("{q1}/portrait_320.png"),
        &scaled(&photo, 320),
        Enc::Png,
    )?;
    out.image(
        &format!("{q1}/portrait_160.png"),
        &scaled(&photo, 160),
        Enc::Png,
    )?;
    out.image(
        &format!("{q1}/portrait_256.webp"),
        &scaled(&photo, 256),
        Enc::Webp,
    )?;
    out.image(
        &format!("{q1}/portrait_160.webp"),
        &scaled(&photo, 160),
        Enc::Webp,
    )?;
    out.image(
        &format!("{q1}/portrait_192.tiff"),
        &scaled(&photo, 192),
        Enc::Tiff,
    )?;
    out.image(
        &format!("{q1}/portrait_128.tif"),
        &scaled(&photo, 128),
        Enc::Tiff,
    )?;
    // Crops: the face close up, head and shoulders, a wide and a tall frame.
    let face = photo.crop_imm(130, 10, 260, 260);
    out.image(
        &format!("{q1}/crop_face_256_q85.jpg"),
        &scaled(&face, 256),
        Enc::Jpeg(85),
    )?;
    out.image(
        &format!("{q1}/crop_face_200.png"),
        &scaled(&face, 200),
        Enc::Png,
    )?;
    out.image(
        &format!("{q1}/crop_face_160.webp"),
        &scaled(&face, 160),
        Enc::Webp,
    )?;
    let shoulders = photo.crop_imm(60, 0, 340, 340);
    out.image(
        &format!("{q1}/crop_shoulders_300_q85.jpg"),
        &scaled(&shoulders, 300),
        Enc::Jpeg(85),
    )?;
    let wide = photo
        .crop_imm(0, 0, 512, 384)
        .resize_exact(400, 300, FilterType::Lanczos3);
    out.image(
        &format!("{q1}/crop_wide_400x300_q80.jpg"),
        &wide,
        Enc::Jpeg(80),
    )?;
    let tall = photo
        .crop_imm(110, 0, 240, 320)
        .resize_exact(240, 320, FilterType::Lanczos3);
    out.image(
        &format!("{q1}/crop_tall_240x320_q80.jpg"),
        &tall,
        Enc::Jpeg(80),
    )?;
    // An upper-case extension and a file with no extension at all (found by its bytes).
    out.image(
        &format!("{q1}/IMG_0042.JPG"),
        &scaled(&photo, 224),
        Enc::Jpeg(80),
    )?;
    out.image(
        &format!("{q1}/upload_7781"),
        &scaled(&face, 192),
        Enc::Jpeg(80),
    )?;

    // Q2: lighting, focus and geometry variants, a face-less frame and a duplicate pair.
    let q2 = "selfies/2026-q2";
    let base = scaled(&photo, 320);
    out.image(
        &format!("{q2}/dark_320_q85.jpg"),
        &tone(&base, |v| v * 0.18),
        Enc::Jpeg(85),
    )?;
    let bright = tone(&base, |v| 255.0 - (255.0 - v) * 0.15);
    out.image(
        &format!("{q2}/overexposed_320_q85.jpg"),
        &bright,
        Enc::Jpeg(85),
    )?;
    let flat = tone(&base, |v| 128.0 + (v - 128.0) * 0.2);
    out.image(
        &format!("{q2}/low_contrast_320_q85.jpg"),
        &flat,
        Enc::Jpeg(85),
    )?;
    out.image(
        &format!("{q2}/blurred_320_q85.jpg"),
        &base.blur(4.0),
        Enc::Jpeg(85),
    )?;
    out.image(
        &format!("{q2}/flipped_320_q85.jpg"),
        &base.fliph(),
        Enc::Jpeg(85),
    )?;
    out.image(
        &format!("{q2}/rotated_90_320_q85.jpg"),
        &base.rotate90(),
        Enc::Jpeg(85),
    )?;
    out.image(
        &format!("{q2}/upside_down_256.png"),
        &scaled(&photo, 256).rotate180(),
        Enc::Png,
    )?;
    let gray = DynamicImage::ImageLuma8(base.to_luma8());
    out.image(&format!("{q2}/grayscale_320_q85.jpg"), &gray, Enc::Jpeg(85))?;
    out.image(&format!("{q2}/tiny_24.png"), &scaled(&photo, 24), Enc::Png)?;
    out.image(&format!("{q2}/grey_frame_256.png"), &grey(256), Enc::Png)?;
    let dup = {
        let mut buf = Cursor::new(Vec::new());
        scaled(&photo, 288).write_with_encoder(JpegEncoder::new_with_quality(&mut buf, 82))?;
        buf.into_inner()
    };
    out.bytes(&format!("{q2}/duplicate_a.jpg"), &dup)?;
    out.bytes(&format!("{q2}/duplicate_b.jpg"), &dup)?;
    // Not an image: the folder walk skips it and counts it as ignored.
    out.bytes(
        &format!("{q2}/upload_log.json"),
        b"{\"exported\": \"2026-06-30\", \"files\": 16, \"note\": \"written by the upload service\"}\n",
    )?;

    // Deliberately bad files: each gets an invalid_input result, nothing is sent.
    out.bytes(
        "bad/not_a_photo.jpg",
        b"This is a text file named like a JPEG.\n",
    )?;
    out.bytes("bad/empty.png", b"")?;
    out.bytes("bad/animation.gif", GIF_1X1)?;

    write_manifest(&mut out)?;
    write_pairs(&mut out, &photo)?;

    let total: u64 = out.written.iter().map(|(_, n)| n).sum();
    for (name, size) in &out.written {
        println!("{size:>8}  {name}");
    }
    println!(
        "{} files, {total} bytes, in {}",
        out.written.len(),
        out.root.display()
    );
    Ok(())
}

/// `manifest.csv`: id, path, vendor_data and a carried `branch` column (one value holds a comma,
/// so it is quoted). It lists most images (a manifest usually covers part of a folder), the bad
/// files, and one row whose file does not exist.
fn write_manifest(out: &mut Out) -> Result<()> {
    const LEFT_OUT: [&str; 4] = [
        "selfies/2026-q1/portrait_160_q60.jpg",
        "selfies/2026-q1/portrait_160.png",
        "selfies/2026-q1/portrait_128.tif",
        "selfies/2026-q1/upload_7781",
    ];
    let mut paths: Vec<String> = out
        .written
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|n| n.starts_with("selfies/") && !n.ends_with(".json"))
        .filter(|n| !LEFT_OUT.contains(&n.as_str()))
        .collect();
    paths.extend(
        [
            "bad/not_a_photo.jpg",
            "bad/empty.png",
            "bad/animation.gif",
            "selfies/2026-q2/deleted_upload.jpg",
        ]
        .map(String::from),
    );
    let branches = ["Lisbon", "Porto", "\"Madrid, Centro\"", "Berlin"];
    let mut csv = String::from("id,path,vendor_data,branch\n");
    for (i, path) in paths.iter().enumerate() {
        let n = i + 1;
        let branch = branches[i % branches.len()];
        csv.push_str(&format!(
            "cust-{n:04},{path},user-{:04},{branch}\n",
            1000 + n
        ));
    }
    out.bytes("manifest.csv", csv.as_bytes())
}

/// A drawn face, standing in for another person: the demo has one photograph, and face match
/// needs a face that is not hers. Head, hair, eyes, nose and mouth as flat shapes.
fn drawn_face(width: u32, height: u32) -> DynamicImage {
    let (w, h) = (width as f32, height as f32);
    let inside = |x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32| {
        ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0
    };
    let img = image::RgbImage::from_fn(width, height, |px, py| {
        let (x, y) = (px as f32 / w, py as f32 / h);
        let colour = if inside(x, y, 0.36, 0.42, 0.05, 0.03) || inside(x, y, 0.64, 0.42, 0.05, 0.03)
        {
            [30, 25, 20] // eyes
        } else if inside(x, y, 0.5, 0.66, 0.12, 0.025) {
            [150, 40, 50] // mouth
        } else if (0.48..0.52).contains(&x) && (0.45..0.57).contains(&y) {
            [170, 110, 80] // nose
        } else if inside(x, y, 0.5, 0.3, 0.34, 0.22) && y < 0.34 {
            [60, 35, 20] // hair
        } else if inside(x, y, 0.5, 0.5, 0.3, 0.38) {
            [205, 150, 110] // face
        } else if y > 0.85 {
            [40, 60, 110] // shoulders
        } else {
            [225, 228, 232] // background
        };
        image::Rgb(colour)
    });
    DynamicImage::ImageRgb8(img)
}

/// `pairs.csv` and the ID photos it names, for `scan --check face-match`: the same person
/// (ID photos derived from the portrait: smaller, brighter, another format), a mirrored selfie
/// against her ID photo, another person (a drawn face), a reference with no face, a reference
/// that is not there, a row without one, and a pair repeated under another id (sent once).
fn write_pairs(out: &mut Out, photo: &DynamicImage) -> Result<()> {
    let id_photo = tone(&scaled(photo, 240), |c| c * 0.9 + 30.0);
    out.image("ids/id_cust-0001.jpg", &id_photo, Enc::Jpeg(80))?;
    out.image("ids/id_cust-0002.png", &scaled(photo, 200), Enc::Png)?;
    out.image("ids/id_cust-0007.jpg", &drawn_face(240, 300), Enc::Jpeg(85))?;
    let rows = [
        (
            "pair-01",
            "selfies/2026-q1/portrait_512_q90.jpg",
            "ids/id_cust-0001.jpg",
            "same person",
        ),
        (
            "pair-02",
            "selfies/2026-q2/flipped_320_q85.jpg",
            "ids/id_cust-0001.jpg",
            "same person (mirrored selfie)",
        ),
        (
            "pair-03",
            "selfies/2026-q1/portrait_256_q75.jpg",
            "ids/id_cust-0002.png",
            "same person",
        ),
        (
            "pair-04",
            "selfies/2026-q1/portrait_384_q85.jpg",
            "ids/id_cust-0007.jpg",
            "another person",
        ),
        (
            "pair-05",
            "selfies/2026-q1/portrait_192.tiff",
            "selfies/2026-q2/grey_frame_256.png",
            "no face in the reference",
        ),
        (
            "pair-06",
            "selfies/2026-q1/portrait_320.png",
            "ids/id_cust-0006.jpg",
            "the reference is not there",
        ),
        (
            "pair-07",
            "selfies/2026-q1/portrait_160.webp",
            "",
            "no reference given",
        ),
        (
            "pair-08",
            "selfies/2026-q1/portrait_512_q90.jpg",
            "ids/id_cust-0001.jpg",
            "pair-01 again",
        ),
    ];
    let mut csv = String::from("id,path,ref_path,note\n");
    for (id, path, reference, note) in rows {
        csv.push_str(&format!("{id},{path},{reference},{note}\n"));
    }
    out.bytes("pairs.csv", csv.as_bytes())
}
