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
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (a, b, c) = (
        (next() % 90) as u32,
        (next() % 90) as u32,
        (next() % 90) as u32,
    );
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

/// The API key every test emulator accepts.
pub const KEY: &str = "test-key-0123456789";

/// Start an emulator on a free loopback port with `KEY` and no rate limit unless set by `tune`.
pub async fn emulator(
    tune: impl FnOnce(&mut liveness_batch::emulator::EmulatorConfig),
) -> liveness_batch::emulator::Emulator {
    let mut cfg = liveness_batch::emulator::EmulatorConfig::new(KEY);
    cfg.rate_limit = None;
    tune(&mut cfg);
    liveness_batch::emulator::start(cfg, 0)
        .await
        .expect("start emulator")
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for "never printed" checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Run the binary with `args`, pointed at `base_url` with `key` (no key when `None`).
pub async fn run_bin(args: &[&str], base_url: Option<&str>, key: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args)
        .env_remove("DIDIT_API_KEY")
        .env_remove("DIDIT_BASE_URL")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    if let Some(url) = base_url {
        cmd.env("DIDIT_BASE_URL", url);
    }
    if let Some(k) = key {
        cmd.env("DIDIT_API_KEY", k);
    }
    let out = cmd.output().await.expect("run liveness-batch");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Parse every line of a journal as JSON.
pub fn journal_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("journal.jsonl"))
        .expect("journal exists")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

/// The item lines of a journal.
pub fn journal_items(out: &Path) -> Vec<serde_json::Value> {
    journal_lines(out)
        .into_iter()
        .filter(|l| l["type"] == "item")
        .collect()
}

/// Rows of a CSV file as maps from header to cell.
pub fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).expect("open csv");
    let headers = rdr.headers().expect("csv headers").clone();
    rdr.records()
        .map(|r| {
            let r = r.expect("csv row");
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}
