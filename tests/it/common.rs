//! Shared test helpers: the binary's path, generated images, and an emulator on a free port.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, Rgb, RgbImage};

/// Path of the built `liveness-batch` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_liveness-batch"))
}

/// A photo-like test image: smooth gradients plus seeded texture, so every seed gives different
/// content (and so a different hash and score) with realistic brightness and sharpness.
pub fn photo(seed: u64, width: u32, height: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (a, b, c) = ((next() % 90) as u32, (next() % 90) as u32, (next() % 90) as u32);
    RgbImage::from_fn(width, height, |x, y| {
        let n = (next() % 40) as u32;
        let r = (60 + a + x * 100 / width.max(1) + n).min(255) as u8;
        let g = (50 + b + y * 100 / height.max(1) + n).min(255) as u8;
        let bl = (40 + c + (x + y) * 50 / (width + height).max(1) + n).min(255) as u8;
        Rgb([r, g, bl])
    })
}

/// Encode an image in the given format.
pub fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode test image");
    out.into_inner()
}

/// A distinct JPEG per seed.
pub fn jpeg(seed: u64) -> Vec<u8> {
    encode(&photo(seed, 96, 96), ImageFormat::Jpeg)
}

/// A distinct PNG per seed.
pub fn png(seed: u64) -> Vec<u8> {
    encode(&photo(seed, 96, 96), ImageFormat::Png)
}

/// Write `bytes` to `dir/name`, creating parent folders.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p
}
