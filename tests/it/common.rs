//! Shared test helpers: the binary's path, generated images, an emulator on a free port, one
//! `scan` run ([`ScanRun`]: in this process or as the binary) and the readers of what it wrote.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, Rgb, RgbImage};
use liveness_batch::emulator::Emulator;

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

/// A picture with seeded structure: bright and dark discs on a grey ground ("a person").
pub fn person(seed: u64, side: u32) -> RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let discs: Vec<(f64, f64, f64, u8)> = (0..6)
        .map(|_| {
            let (x, y) = (
                (next() % 1000) as f64 / 1000.0,
                (next() % 1000) as f64 / 1000.0,
            );
            let r = 0.1 + (next() % 200) as f64 / 1000.0;
            (x, y, r, if next() % 2 == 0 { 30 } else { 220 })
        })
        .collect();
    RgbImage::from_fn(side, side, |x, y| {
        let (fx, fy) = (
            f64::from(x) / f64::from(side),
            f64::from(y) / f64::from(side),
        );
        let v = discs
            .iter()
            .rev()
            .find(|(cx, cy, r, _)| (fx - cx).powi(2) + (fy - cy).powi(2) < r * r)
            .map_or(128, |d| d.3);
        Rgb([v, v.saturating_sub(10), v.saturating_sub(20)])
    })
}

/// The same person photographed again: smaller, brighter, another format.
pub fn derived(img: &RgbImage) -> Vec<u8> {
    let mut smaller = image::imageops::resize(
        img,
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    for p in smaller.pixels_mut() {
        p.0 = p.0.map(|c| c.saturating_add(15));
    }
    encode(&smaller, ImageFormat::Png)
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

/// `n` distinct JPEGs under `dir`, image `i` named `name(i)` with seed `seed0 + i`.
pub fn jpegs(dir: &Path, n: u64, seed0: u64, name: impl Fn(u64) -> String) {
    for i in 0..n {
        write(dir, &name(i), &jpeg(seed0 + i));
    }
}

/// A temporary folder holding `src` (made by the caller) and the path of `out` beside it.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub out: PathBuf,
}

/// [`Dirs`] with `src` filled by `fill`.
pub fn dirs(fill: impl FnOnce(&Path)) -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    fill(&src);
    Dirs { tmp, src, out }
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

    /// Assert the exit code and that stderr says `text`.
    #[track_caller]
    pub fn exited_saying(&self, code: i32, text: &str) {
        assert_eq!(self.code, code, "{self:?}");
        assert!(
            self.stderr.contains(text),
            "{text:?} not in {}",
            self.stderr
        );
    }
}

/// Fast settings for tests: no pacing to speak of, a tiny backoff.
pub const FAST: [&str; 4] = ["--rate", "2000/s", "--backoff-ms", "5"];

/// One `scan`: its sources, out dir and arguments (the [`FAST`] settings and `--quiet` unless
/// asked otherwise), the API it talks to and the key it sends. Run it in this process
/// ([`ScanRun::run`]: the exit code) or as the binary ([`ScanRun::bin`]: the code and what it
/// printed, for messages, signals and exit codes of the process itself).
#[derive(Clone, Debug)]
pub struct ScanRun {
    sources: Vec<String>,
    pub out: PathBuf,
    extra: Vec<String>,
    base_url: Option<String>,
    key: Option<String>,
    fast: bool,
    quiet: bool,
}

impl ScanRun {
    /// `scan SOURCE --out OUT` against `emu` with [`KEY`].
    pub fn new(emu: &Emulator, source: impl AsRef<Path>, out: &Path) -> Self {
        Self::against(Some(&emu.base_url()), out).source(source)
    }

    /// `scan --out OUT` (no source yet) against `base_url` (none: the default API) with [`KEY`].
    pub fn against(base_url: Option<&str>, out: &Path) -> Self {
        Self {
            sources: Vec::new(),
            out: out.to_path_buf(),
            extra: Vec::new(),
            base_url: base_url.map(String::from),
            key: Some(KEY.into()),
            fast: true,
            quiet: true,
        }
    }

    /// One more source.
    pub fn source(mut self, source: impl AsRef<Path>) -> Self {
        self.sources.push(source.as_ref().display().to_string());
        self
    }

    /// More arguments, after the others.
    pub fn args<S: AsRef<str>>(mut self, extra: &[S]) -> Self {
        self.extra
            .extend(extra.iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// Without `--quiet`: the summary and the messages are printed.
    pub fn loud(mut self) -> Self {
        self.quiet = false;
        self
    }

    /// Without the [`FAST`] settings: the defaults (or the caller's own) apply.
    pub fn plain(mut self) -> Self {
        self.fast = false;
        self
    }

    /// Send this key (none: no key at all).
    pub fn key(mut self, key: Option<&str>) -> Self {
        self.key = key.map(String::from);
        self
    }

    /// The whole command line, from `scan` on.
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec!["scan".to_string()];
        v.extend(self.sources.iter().cloned());
        v.extend(["--out".to_string(), self.out.display().to_string()]);
        if self.fast {
            v.extend(FAST.iter().map(|s| s.to_string()));
        }
        if self.quiet {
            v.push("--quiet".into());
        }
        v.extend(self.extra.iter().cloned());
        v
    }

    /// Run the binary; its output is captured.
    pub async fn bin(&self) -> Run {
        let argv = self.argv();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        run_bin(&refs, self.base_url.as_deref(), self.key.as_deref()).await
    }

    /// Run the command in this process (on the test's runtime, so under its clock) and return
    /// its exit code; what it prints goes to the test's own output.
    pub async fn run(&self) -> i32 {
        use liveness_batch::cli::{Cli, Command};
        use liveness_batch::{config::ScanConfig, scan};
        let mut argv = vec!["liveness-batch".to_string()];
        argv.extend(self.argv());
        if let Some(url) = &self.base_url {
            argv.extend(["--base-url".to_string(), url.clone()]);
        }
        let cli = <Cli as clap::Parser>::try_parse_from(&argv).expect("a valid command line");
        let Command::Scan(args) = cli.command else {
            unreachable!("a scan command line")
        };
        let code = match ScanConfig::from_args(*args, self.key.clone()) {
            Ok(cfg) => scan::run(cfg, scan::Stop::default())
                .await
                .map_err(liveness_batch::Error::from),
            Err(e) => Err(e.into()),
        };
        match code {
            Ok(exit) => exit.code(),
            Err(e) => e.exit_code().code(),
        }
    }

    /// The item lines of its journal.
    pub fn items(&self) -> Vec<serde_json::Value> {
        journal_items(&self.out)
    }

    /// Its `summary.json`.
    pub fn summary(&self) -> serde_json::Value {
        summary(&self.out)
    }
}

/// `summary.json` in `out`.
pub fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json"))
        .expect("summary.json is JSON")
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

/// The item lines of a journal whose writer is still running or was killed with SIGKILL: its
/// last line may be torn (written in part, no newline), and the journal's reader drops such a
/// tail too.
pub fn journal_items_after_kill(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("journal.jsonl")).expect("journal exists");
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    whole
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("journal line is JSON"))
        .filter(|l| l["type"] == "item")
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

/// `report OUT` and `extra`, as the binary.
pub async fn report(out: &Path, extra: &[&str]) -> Run {
    let mut argv = vec!["report", out.to_str().unwrap()];
    argv.extend_from_slice(extra);
    run_bin(&argv, None, None).await
}

/// Poll `cond` every 10 ms until it holds; fail after a minute (a generous bound, so a busy
/// machine only makes the test slower, never fail).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Serve `app` on a free loopback port: its base URL, and the task serving it.
pub async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// A plain HTTP client for the tests' own requests, with the TLS provider the binary uses
/// installed first (reqwest's TLS setup needs one even for plain http).
pub fn http() -> reqwest::ClientBuilder {
    liveness_batch::didit::install_tls();
    reqwest::Client::builder()
}
