//! The client's CPU per request on real-size photos, beside the floor measured in the same run.
//!
//! 6,000 distinct JPEG photos (1000-1500 px, about 120 KB each) are generated once from the
//! demo portraits in `sample_data/` and kept in `target/bench-photos/`. Every file is read once
//! first, so both measurements below run on a warm page cache. Then:
//!
//! - the client: `scan` of that folder with a fresh out dir, unthrottled, `--concurrency 32`,
//!   against a server that answers at once (`instant.rs`, in its own process), so only the
//!   client's CPU is counted (user + system, from `wait4`); twice, the figure their mean;
//! - the floor, before, between and after those scans (three runs, the figure their mean):
//!   this binary re-invoked as a minimal client
//!   that reads each file into a buffer, hashes it with SHA-256 and sends the bytes over one
//!   loopback TCP connection to a sink (a thread of the harness, not counted) that reads them
//!   and answers at once, one file after the other;
//! - for information, the client's CPU against the emulator on the first 1,000 photos: the
//!   emulator decodes each photo (about 20 ms of CPU), so the client waits on it, and it costs
//!   the client more CPU per request than against a server that answers at once.
//!
//! The hash is the `sha2` crate (0.10), the one the tool itself uses: it detects the CPU's SHA
//! extensions at run time, the instructions OpenSSL uses too.

use std::net::TcpListener;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use sha2::{Digest, Sha256};

use super::*;

/// The hidden first argument that makes this binary the floor's client.
pub const FLOOR_CLIENT_ARG: &str = "--floor-client";

const PHOTOS: usize = 6_000;
const MAX_CPU_RATIO: f64 = 1.3;
/// Scans against the server that answers at once, each between two floor runs.
const CLIENT_RUNS: usize = 2;
/// Photos scanned against the emulator too (it decodes each: about 20 ms of CPU a photo).
const EMULATED_PHOTOS: usize = 1_000;
/// Bump when the generated set changes: a cached set with another version is regenerated.
const SET_VERSION: &str = "bench-photos v1";
/// The demo images the photos are derived from (the larger, well-exposed ones).
const SOURCES: &[&str] = &[
    "selfies/2026-q1/portrait_512_q90.jpg",
    "selfies/2026-q1/portrait_384_q85.jpg",
    "selfies/2026-q1/crop_shoulders_300_q85.jpg",
    "selfies/2026-q1/crop_wide_400x300_q80.jpg",
    "selfies/2026-q1/crop_tall_240x320_q80.jpg",
    "selfies/2026-q1/crop_face_256_q85.jpg",
    "selfies/2026-q2/flipped_320_q85.jpg",
    "selfies/2026-q2/dark_320_q85.jpg",
    "selfies/2026-q2/overexposed_320_q85.jpg",
];

/// The cached photos.
struct PhotoSet {
    dir: PathBuf,
    files: Vec<PathBuf>,
    bytes: u64,
    /// Seconds spent generating them in this run (None: reused).
    generated_secs: Option<f64>,
}

impl PhotoSet {
    /// The set in `target/bench-photos/`, generated when missing or of another version.
    fn ensure(target_dir: &Path) -> Result<Self, String> {
        let dir = target_dir.join("bench-photos");
        let marker = target_dir.join("bench-photos.json");
        let want = json!({ "version": SET_VERSION, "photos": PHOTOS });
        let cached = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["version"] == want["version"] && v["photos"] == want["photos"]);
        let mut generated_secs = None;
        if !cached {
            let t = Instant::now();
            generate(&dir)?;
            let secs = t.elapsed().as_secs_f64();
            std::fs::write(&marker, want.to_string() + "\n")
                .map_err(|e| format!("write {}: {e}", marker.display()))?;
            generated_secs = Some(secs);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        if files.len() != PHOTOS {
            return Err(format!(
                "{} holds {} files, not {PHOTOS}; delete {} to regenerate",
                dir.display(),
                files.len(),
                marker.display()
            ));
        }
        let bytes = files
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum();
        Ok(Self {
            dir,
            files,
            bytes,
            generated_secs,
        })
    }

    fn mib(&self) -> f64 {
        self.bytes as f64 / MIB
    }
}

/// Generate the photos into `dir` (emptied first), on every core.
fn generate(dir: &Path) -> Result<(), String> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let sources: Vec<RgbImage> = SOURCES
        .iter()
        .map(|s| {
            image::open(sample.join(s))
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("read sample_data/{s}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!(
        "   generating {PHOTOS} photos into {} on {threads} threads (once; kept for later runs)",
        dir.display()
    );
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let sources = &sources;
                scope.spawn(move || -> Result<(), String> {
                    for i in (t..PHOTOS).step_by(threads) {
                        let bytes = photo(sources, i as u64)?;
                        let path = dir.join(format!("photo-{i:05}.jpg"));
                        std::fs::write(&path, bytes)
                            .map_err(|e| format!("write {}: {e}", path.display()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| "a generator thread panicked".to_string())?
        })
    })
}

/// A small seeded generator (xorshift64*).
struct Seeded(u64);

impl Seeded {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
}

/// Photo `i`: a random crop of one source, scaled so its long side is 1000-1500 px, mirrored or
/// not, with its own exposure, tint and sensor grain, saved at JPEG quality 80-90.
fn photo(sources: &[RgbImage], i: u64) -> Result<Vec<u8>, String> {
    let mut rng = Seeded::new(i + 1);
    let src = &sources[(rng.next() % sources.len() as u64) as usize];
    let (sw, sh) = src.dimensions();
    let (cw, ch) = (sw * rng.range(70, 100) / 100, sh * rng.range(70, 100) / 100);
    let (x0, y0) = (rng.range(0, sw - cw), rng.range(0, sh - ch));
    let crop = imageops::crop_imm(src, x0, y0, cw, ch).to_image();
    let long = rng.range(1000, 1500);
    let (w, h) = if cw >= ch {
        (long, (long * ch / cw).max(1))
    } else {
        ((long * cw / ch).max(1), long)
    };
    let mut img = imageops::resize(&crop, w, h, FilterType::Triangle);
    if rng.next().is_multiple_of(2) {
        imageops::flip_horizontal_in_place(&mut img);
    }
    grade(&mut img, &mut rng);
    let quality = rng.range(78, 88) as u8;
    let mut out = Vec::with_capacity(160 * 1024);
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .map_err(|e| format!("encode photo {i}: {e}"))?;
    Ok(out)
}

/// Exposure (x0.85-1.15), a tint (±8 per channel) and grain (about ±6, per pixel and channel).
fn grade(img: &mut RgbImage, rng: &mut Seeded) {
    let gain = rng.range(85, 115) as f32 / 100.0;
    let tint = [0; 3].map(|_: i32| rng.range(0, 16) as f32 - 8.0);
    for Rgb(px) in img.pixels_mut() {
        let noise = rng.next();
        for (c, v) in px.iter_mut().enumerate() {
            // Two uniform bytes summed: a triangular grain centred on 0.
            let g = ((noise >> (16 * c)) & 0xff) as f32 + ((noise >> (16 * c + 8)) & 0xff) as f32;
            let grain = (g - 255.0) * 3.5 / 255.0;
            *v = (f32::from(*v) * gain + tint[c] + grain).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Read every file once, so both measurements start from a warm page cache.
fn warm_cache(set: &PhotoSet) -> Result<f64, String> {
    let t = Instant::now();
    let mut buf = Vec::new();
    for f in &set.files {
        buf.clear();
        File::open(f)
            .and_then(|mut file| file.read_to_end(&mut buf))
            .map_err(|e| format!("read {}: {e}", f.display()))?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// What the section measured.
struct Photos {
    photos: usize,
    mib: f64,
    generated_secs: Option<f64>,
    warm_secs: f64,
    /// The scans against the server that answers at once, each between two floor runs: their
    /// mean is the figure held against the floor.
    instants: Vec<ClientScan>,
    /// The scan of the first photos against the emulator, which decodes each one.
    emulated: ClientScan,
    floors: Vec<Floor>,
}

impl Photos {
    /// The floor per request: the mean of the floor runs.
    fn floor_us(&self) -> f64 {
        self.floors.iter().map(Floor::us).sum::<f64>() / self.floors.len().max(1) as f64
    }

    /// The client per request: the mean of the scans against the server that answers at once.
    fn client_us(&self) -> f64 {
        self.scans_mean(ClientScan::us)
    }

    /// The mean of a figure of the scans against the server that answers at once.
    fn scans_mean(&self, figure: impl Fn(&ClientScan) -> f64) -> f64 {
        self.instants.iter().map(figure).sum::<f64>() / self.instants.len().max(1) as f64
    }

    fn ratio(&self) -> f64 {
        self.client_us() / self.floor_us()
    }
}

/// One measured scan of a photo folder.
struct ClientScan {
    photos: usize,
    run: Measured,
    requests: u64,
    by_status: String,
    /// The server's CPU over the scan (not counted in the client's).
    server_cpu: Option<f64>,
}

impl ClientScan {
    /// Client CPU per request, in microseconds.
    fn us(&self) -> f64 {
        self.run.cpu().as_secs_f64() / self.requests.max(1) as f64 * 1e6
    }

    fn per_request(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.requests.max(1) as f64 * 1e6
    }
}

/// One run of the floor's client.
struct Floor {
    run: Measured,
    files: u64,
    bytes: u64,
    /// The client's own split of its wall time.
    read_secs: f64,
    hash_secs: f64,
    send_secs: f64,
}

impl Floor {
    fn us(&self) -> f64 {
        self.run.cpu().as_secs_f64() / self.files.max(1) as f64 * 1e6
    }

    fn hash_mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.hash_secs.max(1e-9)
    }
}

pub(super) fn photos(ctx: &Ctx) -> Result<Section, String> {
    let set = PhotoSet::ensure(&ctx.target_dir)?;
    let warm_secs = warm_cache(&set)?;
    eprintln!(
        "   {} photos, {:.0} MiB in {}; read once in {warm_secs:.1} s to warm the page cache",
        set.files.len(),
        set.mib(),
        set.dir.display()
    );
    let dir = ctx.dir("photos");
    // Floor and client in turn (floor, scan, floor, scan, floor), so that both sample the
    // same moments of a shared machine whose speed drifts from second to second.
    let exe = std::env::current_exe().map_err(|e| format!("this binary's path: {e}"))?;
    let mut floors = vec![measure_floor(&set, &dir, "floor-1")?];
    let mut instants = Vec::new();
    for n in 1..=CLIENT_RUNS {
        let mut cmd = Command::new(&exe);
        cmd.arg(instant::INSTANT_ARG);
        let server = Emulator::launch(cmd, &dir.join(format!("instant-server-{n}.stderr")))?;
        let label = format!("instant-{n}");
        instants.push(scan_photos(
            ctx,
            server,
            &set.dir,
            set.files.len(),
            &dir,
            &label,
        )?);
        floors.push(measure_floor(&set, &dir, &format!("floor-{}", n + 1))?);
    }

    let subset = link_first(&set, EMULATED_PHOTOS, &dir.join("first-photos"))?;
    let emu = Emulator::start(ctx, &dir, &["--rate-limit", "0/60s"], None)?;
    let emulated = scan_photos(ctx, emu, &subset, EMULATED_PHOTOS, &dir, "emulator")?;

    let p = Photos {
        photos: set.files.len(),
        mib: set.mib(),
        generated_secs: set.generated_secs,
        warm_secs,
        instants,
        emulated,
        floors,
    };
    Ok(Section {
        title: "Client CPU on real photos beside the floor".into(),
        rows: photos_rows(&p),
        details: photos_details(&p),
        json: photos_json(&p),
        broken: Vec::new(),
    })
}

/// A folder of hard links to the first `n` photos (copies where links fail).
fn link_first(set: &PhotoSet, n: usize, folder: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("create {}: {e}", folder.display()))?;
    for f in set.files.iter().take(n) {
        let to = folder.join(f.file_name().unwrap_or_default());
        if std::fs::hard_link(f, &to).is_err() {
            std::fs::copy(f, &to).map_err(|e| format!("copy {}: {e}", f.display()))?;
        }
    }
    Ok(folder.to_path_buf())
}

/// `scan` of a photo folder against `server` (stopped after), fresh out dir, unthrottled.
fn scan_photos(
    ctx: &Ctx,
    server: Emulator,
    folder: &Path,
    photos: usize,
    dir: &Path,
    label: &str,
) -> Result<ClientScan, String> {
    let out = dir.join(format!("out-{label}"));
    let args = scan_args(folder, &out, UNTHROTTLED, CONCURRENCY, &[] as &[&str]);
    eprintln!(
        "   {label}: scan of {photos} photos, --rate {UNTHROTTLED} --concurrency {CONCURRENCY}"
    );
    let before = server.stats()?;
    let cpu0 = server.cpu();
    let log = dir.join(format!("scan-{label}"));
    let run = run_scan(ctx, &server, &args, &log, Duration::from_secs(900))?;
    let server_cpu = server.cpu().zip(cpu0).map(|(a, b)| a - b);
    let after = server.stats()?;
    server.stop();
    run.expect_code(0)?;
    let delta = StatsDelta::new(&before, &after);
    let scan = ClientScan {
        photos,
        run,
        requests: delta.requests,
        by_status: delta.statuses(),
        server_cpu,
    };
    eprintln!(
        "      exit {}, wall {:.1} s, CPU {:.2} s ({:.0} µs per request), requests {}",
        scan.run.code,
        scan.run.wall.as_secs_f64(),
        scan.run.cpu().as_secs_f64(),
        scan.us(),
        scan.requests
    );
    if scan.requests != photos as u64 {
        return Err(format!(
            "{label}: {} requests for {photos} photos",
            scan.requests
        ));
    }
    Ok(scan)
}

/// Run the floor's client (this binary, re-invoked) against a sink thread.
fn measure_floor(set: &PhotoSet, dir: &Path, label: &str) -> Result<Floor, String> {
    let list = dir.join("photos.txt");
    let text: String = set
        .files
        .iter()
        .map(|f| format!("{}\n", f.display()))
        .collect();
    std::fs::write(&list, text).map_err(|e| format!("write {}: {e}", list.display()))?;
    let (addr, sink) = start_sink()?;
    let exe = std::env::current_exe().map_err(|e| format!("this binary's path: {e}"))?;
    let args = vec![
        FLOOR_CLIENT_ARG.to_string(),
        list.display().to_string(),
        addr,
    ];
    let child = ChildRun {
        program: &exe,
        args: &args,
        emu: None,
        log: &dir.join(label),
        timeout: Duration::from_secs(300),
    };
    let run = run_child(&child, &mut |_| {})?;
    run.expect_code(0)?;
    let received = sink
        .join()
        .map_err(|_| "the floor's sink panicked".to_string())?
        .map_err(|e| format!("the floor's sink: {e}"))?;
    let out = std::fs::read_to_string(&run.stdout).unwrap_or_default();
    let v: Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("the floor's client printed {out:?}: {e}"))?;
    let floor = Floor {
        files: v["files"].as_u64().unwrap_or(0),
        bytes: v["bytes"].as_u64().unwrap_or(0),
        read_secs: v["read_secs"].as_f64().unwrap_or(0.0),
        hash_secs: v["hash_secs"].as_f64().unwrap_or(0.0),
        send_secs: v["send_secs"].as_f64().unwrap_or(0.0),
        run,
    };
    if floor.files != set.files.len() as u64 || received != (floor.files, floor.bytes) {
        return Err(format!(
            "the floor sent {} files ({} bytes), the sink received {received:?}, the set has {}",
            floor.files,
            floor.bytes,
            set.files.len()
        ));
    }
    eprintln!(
        "   {label}: CPU {:.2} s ({:.0} µs per file; user {:.2}, sys {:.2}), wall {:.2} s; \
         SHA-256 at {:.0} MB/s",
        floor.run.cpu().as_secs_f64(),
        floor.us(),
        floor.run.user.as_secs_f64(),
        floor.run.sys.as_secs_f64(),
        floor.run.wall.as_secs_f64(),
        floor.hash_mb_per_s()
    );
    Ok(floor)
}

/// The sink's thread: the files and bytes it received.
type Sink = std::thread::JoinHandle<std::io::Result<(u64, u64)>>;

/// The floor's sink: one connection; each message is an 8-byte length and the bytes, answered
/// with one byte once read. Returns the files and bytes it received.
fn start_sink() -> Result<(String, Sink), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind the floor's sink: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the floor's sink: {e}"))?
        .to_string();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut files, mut bytes) = (0u64, 0u64);
        loop {
            let mut len = [0u8; 8];
            match s.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let mut left = u64::from_le_bytes(len);
            bytes += left;
            while left > 0 {
                let n = s.read(&mut buf[..left.min(1 << 20) as usize])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
            }
            files += 1;
            s.write_all(b"k")?;
        }
        Ok((files, bytes))
    });
    Ok((addr, thread))
}

/// The floor's client: `--floor-client LIST ADDR`. Prints its counts as one JSON line.
pub fn floor_client_main() {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = floor_client(&args[2..]) {
        eprintln!("floor client: {e}");
        std::process::exit(1);
    }
}

fn floor_client(args: &[String]) -> std::io::Result<()> {
    let [list, addr] = args else {
        return Err(std::io::Error::other("usage: --floor-client LIST ADDR"));
    };
    let list = std::fs::read_to_string(list)?;
    let mut s = TcpStream::connect(addr.as_str())?;
    s.set_nodelay(true)?;
    let (mut files, mut bytes, mut check) = (0u64, 0u64, 0u8);
    let (mut read, mut hash, mut send) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut ack = [0u8; 1];
    for path in list.lines().filter(|l| !l.is_empty()) {
        let t0 = Instant::now();
        let data = std::fs::read(path)?;
        let t1 = Instant::now();
        let digest = Sha256::digest(&data);
        let t2 = Instant::now();
        s.write_all(&(data.len() as u64).to_le_bytes())?;
        s.write_all(&data)?;
        s.read_exact(&mut ack)?;
        let t3 = Instant::now();
        (read, hash, send) = (read + (t1 - t0), hash + (t2 - t1), send + (t3 - t2));
        check ^= digest[0];
        files += 1;
        bytes += data.len() as u64;
    }
    drop(s);
    println!(
        "{}",
        json!({
            "files": files,
            "bytes": bytes,
            "read_secs": read.as_secs_f64(),
            "hash_secs": hash.as_secs_f64(),
            "send_secs": send.as_secs_f64(),
            "check": check,
        })
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rows, details, JSON
// ---------------------------------------------------------------------------------------------

fn photos_rows(p: &Photos) -> Vec<Row> {
    let e = &p.emulated;
    let wall = p.scans_mean(|s| s.run.wall.as_secs_f64());
    vec![
        Row::info(
            "Photos: client CPU per request (scan; server answers at once)",
            format!(
                "{:.0} µs (user {:.0} + sys {:.0}; runs: {}; {} requests each)",
                p.client_us(),
                p.scans_mean(|s| s.per_request(s.run.user)),
                p.scans_mean(|s| s.per_request(s.run.sys)),
                p.instants
                    .iter()
                    .map(|s| format!("{:.0}", s.us()))
                    .collect::<Vec<_>>()
                    .join(", "),
                p.photos
            ),
        ),
        Row::info(
            "Photos: floor CPU per request (read + SHA-256 + loopback send)",
            format!(
                "{:.0} µs (runs: {})",
                p.floor_us(),
                p.floors
                    .iter()
                    .map(|f| format!("{:.0}", f.us()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Row::check(
            "Photos: client CPU / floor, same files, same run",
            format!("{:.2}x", p.ratio()),
            "<= 1.3x",
            p.ratio() <= MAX_CPU_RATIO,
        ),
        Row::info(
            "Photos: scan wall time (server answers at once)",
            format!("{wall:.1} s ({:.0} requests/s)", p.photos as f64 / wall),
        ),
        Row::info(
            "Photos: client CPU per request against the emulator (decodes each)",
            format!(
                "{:.0} µs ({:.2}x the floor; first {} photos, wall {:.1} s)",
                e.us(),
                e.us() / p.floor_us(),
                e.photos,
                e.run.wall.as_secs_f64()
            ),
        ),
    ]
}

fn photos_details(p: &Photos) -> String {
    let mut d = String::new();
    let _ = writeln!(
        d,
        "  {} distinct JPEG photos, {:.0} MiB ({:.0} KiB each on average), 1000-1500 px, derived \
         from sample_data's portraits; {}; every file read once before the measurements \
         ({:.1} s), so all of them run on a warm page cache",
        p.photos,
        p.mib,
        p.mib * 1024.0 / p.photos.max(1) as f64,
        p.generated_secs
            .map_or("reused from target/bench-photos/".into(), |s| format!(
                "generated in this run ({s:.0} s) into target/bench-photos/"
            )),
        p.warm_secs
    );
    let _ = writeln!(
        d,
        "  client: scan FOLDER --rate {UNTHROTTLED} --concurrency {CONCURRENCY}, fresh out dir, \
         measured with wait4 (user + system CPU of every thread)"
    );
    let photo_bytes = p.mib * MIB / p.photos.max(1) as f64;
    let instant = "server answering at once (this binary, --instant-server: reads the upload, \
                   answers the emulator's sandbox result, no decoding)";
    let emulator = "emulator (--rate-limit 0/60s, no latency, no faults; decodes and measures \
                    every photo)";
    let scans = p.instants.iter().map(|s| (instant, s));
    for (name, s) in scans.chain([(emulator, &p.emulated)]) {
        let _ = writeln!(
            d,
            "  against the {name}: {} photos, requests {} (answers: {}), exit {}, wall {:.1} s, \
             CPU {:.2} s (user {:.2}, sys {:.2}) = {:.0} µs per request, peak RSS {:.1} MiB, \
             bytes read / photo bytes {}{}",
            s.photos,
            s.requests,
            s.by_status,
            s.run.code,
            s.run.wall.as_secs_f64(),
            s.run.cpu().as_secs_f64(),
            s.run.user.as_secs_f64(),
            s.run.sys.as_secs_f64(),
            s.us(),
            s.run.rss_mib(),
            s.run.rchar().map_or("?".into(), |b| format!(
                "{:.2}",
                b as f64 / (photo_bytes * s.photos as f64)
            )),
            s.server_cpu
                .map(|c| format!("; server CPU {c:.1} s (not counted)"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        d,
        "  floor: this binary re-invoked (--floor-client): for each file, one after the other, \
         std::fs::read, SHA-256 (sha2 0.10, the tool's own hash; SHA extensions detected at run \
         time), an 8-byte length and the bytes written to one loopback TCP connection \
         (TCP_NODELAY), one byte of answer read back; the sink is a harness thread (not counted). \
         Run before, between and after the scans against the instant server (floor, scan, floor, \
         scan, floor); the floor is the mean of its runs, the client the mean of its scans."
    );
    for (n, f) in p.floors.iter().enumerate() {
        let _ = writeln!(
            d,
            "  floor run {}: CPU {:.2} s (user {:.2}, sys {:.2}) = {:.0} µs per file; wall {:.2} s \
             (read {:.2}, SHA-256 {:.2} = {:.0} MB/s, send and answer {:.2}); bytes read / photo \
             bytes {}",
            n + 1,
            f.run.cpu().as_secs_f64(),
            f.run.user.as_secs_f64(),
            f.run.sys.as_secs_f64(),
            f.us(),
            f.run.wall.as_secs_f64(),
            f.read_secs,
            f.hash_secs,
            f.hash_mb_per_s(),
            f.send_secs,
            f.run
                .rchar()
                .map_or("?".into(), |b| format!("{:.2}", b as f64 / (p.mib * MIB)))
        );
    }
    d
}

fn scan_json(s: &ClientScan) -> Value {
    json!({
        "photos": s.photos,
        "requests": s.requests,
        "cpu_us_per_request": round(s.us(), 1),
        "server_cpu_secs": s.server_cpu.map(|c| round(c, 2)),
        "run": s.run.json(),
    })
}

fn photos_json(p: &Photos) -> Value {
    json!({
        "photos": p.photos,
        "photo_mib": round(p.mib, 1),
        "generated_secs": p.generated_secs.map(|s| round(s, 1)),
        "warm_cache_secs": round(p.warm_secs, 2),
        "concurrency": CONCURRENCY,
        "rate": UNTHROTTLED,
        "client_cpu_us_per_request": round(p.client_us(), 1),
        "floor_cpu_us_per_request": round(p.floor_us(), 1),
        "ratio": round(p.ratio(), 3),
        "scans_instant_server": p.instants.iter().map(scan_json).collect::<Vec<_>>(),
        "scan_emulator": scan_json(&p.emulated),
        "floors": p.floors.iter().map(|f| json!({
            "files": f.files,
            "bytes": f.bytes,
            "cpu_us_per_file": round(f.us(), 1),
            "read_secs": round(f.read_secs, 3),
            "hash_secs": round(f.hash_secs, 3),
            "hash_mb_per_s": round(f.hash_mb_per_s(), 0),
            "send_secs": round(f.send_secs, 3),
            "run": f.run.json(),
        })).collect::<Vec<_>>(),
    })
}
