//! The performance harness: drives the shipped (`dist` profile) `liveness-batch` binary and
//! its emulator as child processes and prints the pacing, throughput, memory and resume
//! figures, the million-row figures (`million.rs`) and the client's CPU on real-size photos
//! beside the floor (`photos.rs`), with their acceptance thresholds. Run it with `cargo bench
//! --profile dist --features jemalloc --bench harness` (optionally followed by `-- pacing throughput memory million
//! photos`, to run only some figures; `-- s3` runs the bucket figures, against the S3 test
//! server `.ci/s3-server` starts). It is never part of `cargo test`: it asserts nothing about
//! timing, reports what one run measured, and exits non-zero only when a run itself broke (a
//! child failed, an emulator did not start, a journal was missing).
//!
//! Run directly, the built binary needs `--bench` too (without it, as under `cargo test
//! --all-targets`, it does nothing). Every input is generated in a temporary folder; the figures
//! are also written as JSON to `target/bench-results.json`. Set `BENCH_KEEP=1` to keep the
//! temporary folder for inspection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use image::ImageFormat;
use serde_json::{Value, json};

/// Face match: pairs at the key's limit, CPU per pair beside CPU per liveness image.
#[path = "harness/checks.rs"]
mod checks;
/// The test suite's image generator, shared so benchmarks and tests use the same content.
#[path = "../tests/it/common.rs"]
mod common;
/// A server answering Didit's endpoint at once, for the photos section.
#[path = "harness/instant.rs"]
mod instant;
/// 1,000,000 rows: first run, rerun of the finished run, resume of a run stopped at 90 %, report.
#[path = "harness/million.rs"]
mod million;
/// Client CPU per request on 6,000 real-size photos, beside the floor measured in the same run.
#[path = "harness/photos.rs"]
mod photos;
/// Buckets: 10,000 objects in the S3 test server, first run and a rerun without GETs.
#[path = "harness/s3.rs"]
mod s3;
/// Watching a child from outside: image files it opens (inotify), output files it rewrites.
#[path = "harness/watch.rs"]
mod watch;

/// How the harness is run: the `dist` profile, the shipped binary's.
const COMMAND: &str = "cargo bench --profile dist --features jemalloc --bench harness";
/// The API key the emulator and the scans share (a bench-only value).
const KEY: &str = "bench-key-0123456789";
const MIB: f64 = 1024.0 * 1024.0;

/// Pacing: the emulator's scaled window (300 per 60 s scaled to 60 per 6 s) and the scan.
const PACE_LIMIT: u32 = 60;
const PACE_WINDOW_SECS: u32 = 6;
const PACE_IMAGES: usize = 240;
const PACE_CONCURRENCY: usize = 8;
/// Emulator latency for the pacing run: 10 ms + uniform 0..40 ms, i.e. 30 ms ± 20 ms.
const PACE_LATENCY_MS: u64 = 10;
const PACE_JITTER_MS: u64 = 40;

/// Throughput: rows and distinct images.
const TP_ROWS: usize = 3_000;
const TP_IMAGES: usize = 50;

/// Memory and resume: the two manifest sizes and the distinct images they cycle through.
const MEM_SMALL: usize = 10_000;
const MEM_LARGE: usize = 100_000;
const MEM_IMAGES: usize = 2_000;

/// An unthrottled pace for the scan (the emulator enforces no limit in these runs), and the
/// requests in flight of every unthrottled scan.
const UNTHROTTLED: &str = "100000/s";
const CONCURRENCY: usize = 32;

/// Acceptance thresholds.
const MIN_PACE_FRACTION: f64 = 0.99;
const MAX_RSS_MIB: f64 = 100.0;
const MAX_RSS_RATIO: f64 = 1.5;
const MAX_RESUME_SECS: f64 = 10.0;

fn main() {
    // The photos section re-invokes this binary as the floor's client and as a server that
    // answers at once.
    match std::env::args().nth(1).as_deref() {
        Some(photos::FLOOR_CLIENT_ARG) => return photos::floor_client_main(),
        Some(instant::INSTANT_ARG) => return instant::instant_main(),
        _ => {}
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` / `--benches` does not, and must
    // not start a several-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("the performance harness runs only under `{COMMAND}`");
        return;
    }
    let started = Instant::now();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);

    let bin = PathBuf::from(env!("CARGO_BIN_EXE_liveness-batch"));
    let target_dir = bin
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    // The figures are the shipped binary's: `cargo bench --profile dist --features jemalloc`
    // builds it into target/dist/. BENCH_ANY_PROFILE=1 measures another build (to compare
    // profiles and allocators).
    let allocator = if cfg!(feature = "jemalloc") {
        "jemalloc"
    } else {
        "system"
    };
    let profile = bin
        .parent()
        .and_then(Path::file_name)
        .map_or_else(String::new, |p| p.to_string_lossy().into_owned());
    let shipped = profile == "dist" && (allocator == "jemalloc" || cfg!(target_env = "msvc"));
    if !shipped && std::env::var_os("BENCH_ANY_PROFILE").is_none() {
        eprintln!(
            "error: {} is a `{profile}` build with the {allocator} allocator; the figures are \
             the shipped binary's: run `{COMMAND}` (or set BENCH_ANY_PROFILE=1 to measure this \
             build)",
            bin.display()
        );
        std::process::exit(2);
    }
    let machine = machine_note();
    eprintln!("liveness-batch performance harness");
    eprintln!(
        "binary: {} (profile {profile}, {allocator} allocator)",
        bin.display()
    );
    eprintln!("machine: {}", machine.line());
    if !bin.is_file() {
        eprintln!("error: {} is missing; run `{COMMAND}`", bin.display());
        std::process::exit(2);
    }

    let tmp = tempfile::Builder::new()
        .prefix("liveness-bench-")
        .tempdir()
        .expect("create a temporary folder");
    let ctx = Ctx {
        bin,
        root: tmp.path().to_path_buf(),
        target_dir: target_dir.clone(),
    };
    eprintln!("work folder: {}", ctx.root.display());

    let mut report = Report::default();
    if runs("pacing") {
        section(&mut report, "pacing", || pacing(&ctx));
    }
    if runs("throughput") {
        section(&mut report, "throughput", || throughput(&ctx));
    }
    if runs("memory") || runs("resume") {
        section(&mut report, "memory", || memory_and_resume(&ctx));
    }
    if runs("checks") {
        section(&mut report, "checks", || checks::checks(&ctx));
    }
    if runs("million") {
        section(&mut report, "million", || million::million(&ctx));
    }
    if runs("photos") {
        section(&mut report, "photos", || photos::photos(&ctx));
    }
    if wanted.iter().any(|w| w == "s3") {
        // Needs the S3 test server (`source .ci/s3-server`): run only when asked for.
        section(&mut report, "s3", || s3::s3(&ctx));
    }

    let total = started.elapsed().as_secs_f64();
    let load_after = load_average();
    let text = report.render(&machine, total, load_after.as_deref());
    println!("{text}");

    write_results(&target_dir, &profile, &machine, &report, total, load_after);

    if std::env::var_os("BENCH_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("kept the work folder: {}", kept.display());
    }
    if !report.broken.is_empty() {
        eprintln!("{} section(s) broke: see above", report.broken.len());
        std::process::exit(1);
    }
}

/// The figures as JSON in `target/bench-results.json`.
fn write_results(
    target_dir: &Path,
    profile: &str,
    machine: &Machine,
    report: &Report,
    total: f64,
    load_after: Option<String>,
) {
    let results = json!({
        "tool": "liveness-batch",
        "command": COMMAND,
        "profile": profile,
        "machine": machine.json(),
        "load_average_after": load_after,
        "harness_secs": round(total, 1),
        "figures": report.rows.iter().map(Row::json).collect::<Vec<_>>(),
        "sections": report.sections,
        "section_secs": report.section_secs.iter()
            .map(|(k, v)| (k.clone(), json!(round(*v, 1))))
            .collect::<serde_json::Map<_, _>>(),
        "broken": report.broken,
    });
    let out = target_dir.join("bench-results.json");
    match std::fs::write(
        &out,
        serde_json::to_string_pretty(&results).expect("serialize results") + "\n",
    ) {
        Ok(()) => eprintln!("figures written to {}", out.display()),
        Err(e) => eprintln!("warning: cannot write {}: {e}", out.display()),
    }
}

/// Run one section; a broken run is recorded and the harness carries on with the next.
fn section(report: &mut Report, name: &str, f: impl FnOnce() -> Result<Section, String>) {
    eprintln!("\n== {name} ==");
    let t = Instant::now();
    let result = f();
    let secs = t.elapsed().as_secs_f64();
    report.section_secs.push((name.to_string(), secs));
    match result {
        Ok(s) => {
            eprintln!("   ({name} took {secs:.1} s)");
            report.rows.extend(s.rows);
            for b in s.broken {
                report.rows.push(Row {
                    figure: format!("{name}: run broke"),
                    measured: b.lines().next().unwrap_or("").to_string(),
                    threshold: String::new(),
                    verdict: Verdict::Broke,
                });
                report.broken.push(format!("{name}: {b}"));
            }
            report.details.push((s.title, s.details));
            report.sections.insert(name.to_string(), s.json);
        }
        Err(e) => {
            eprintln!("   {name} BROKE: {e}");
            report.broken.push(format!("{name}: {e}"));
            report.rows.push(Row {
                figure: format!("{name}: run broke"),
                measured: e.lines().next().unwrap_or("").to_string(),
                threshold: String::new(),
                verdict: Verdict::Broke,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The figures
// ---------------------------------------------------------------------------------------------

struct Ctx {
    bin: PathBuf,
    root: PathBuf,
    /// Cargo's target folder: `bench-results.json` and inputs cached between runs.
    target_dir: PathBuf,
}

impl Ctx {
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d).expect("create a work folder");
        d
    }
}

/// Figure 1: a scan at exactly the emulator's limit.
fn pacing(ctx: &Ctx) -> Result<Section, String> {
    let dir = ctx.dir("pacing");
    let names = write_images(&dir, "img", PACE_IMAGES, 1_000, ImageFormat::Jpeg)?;
    let manifest = dir.join("manifest.csv");
    write_manifest(&manifest, &names, PACE_IMAGES)?;
    eprintln!(
        "   scan {PACE_IMAGES} distinct images at --rate {PACE_LIMIT}/{PACE_WINDOW_SECS}s against \
         the same window (latency {PACE_LATENCY_MS}+0..{PACE_JITTER_MS} ms), about {} s",
        PACE_IMAGES as u32 * PACE_WINDOW_SECS / PACE_LIMIT
    );
    let p = scan_at_the_limit(ctx, &dir, &manifest, &[])?;
    Ok(Section {
        title: "Pacing at the limit".into(),
        rows: pacing_rows(&p, "Pacing"),
        details: pacing_details(&p),
        json: pacing_json(&p),
        broken: Vec::new(),
    })
}

/// A scan of `manifest` (with `extra` arguments) at exactly the limit of an emulator that
/// allows it, with the pacing latency, its requests logged to `dir/emulator-requests.jsonl`;
/// measured once it exited 0.
fn scan_at_the_limit(
    ctx: &Ctx,
    dir: &Path,
    manifest: &Path,
    extra: &[&str],
) -> Result<Pacing, String> {
    let log = dir.join("emulator-requests.jsonl");
    let limit = format!("{PACE_LIMIT}/{PACE_WINDOW_SECS}s");
    let emu = Emulator::start(
        ctx,
        dir,
        &[
            "--rate-limit",
            &limit,
            "--latency-ms",
            &PACE_LATENCY_MS.to_string(),
            "--jitter-ms",
            &PACE_JITTER_MS.to_string(),
        ],
        Some(&log),
    )?;
    let out = dir.join("out");
    let args = scan_args(manifest, &out, &limit, PACE_CONCURRENCY, extra);
    let before = emu.stats()?;
    let run = run_scan(
        ctx,
        &emu,
        &args,
        &dir.join("scan"),
        Duration::from_secs(180),
    )?;
    let after = emu.stats()?;
    emu.stop();
    run.expect_code(0)?;
    Pacing::measure(limit, run, StatsDelta::new(&before, &after), &out, &log)
}

impl Pacing {
    /// The figures of a finished pacing run, from its journal and the emulator's request log.
    fn measure(
        limit: String,
        run: Measured,
        delta: StatsDelta,
        out: &Path,
        log: &Path,
    ) -> Result<Pacing, String> {
        let items = journal_items(out)?;
        let end = journal_end(out)?;
        let journal_429: u64 = items
            .iter()
            .map(|i| i["rate_limited"].as_u64().unwrap_or(0))
            .sum();
        let arrivals = request_arrivals(log)?;
        let limit_per_s = f64::from(PACE_LIMIT) / f64::from(PACE_WINDOW_SECS);
        let span = match (arrivals.first(), arrivals.last()) {
            (Some(a), Some(b)) => (*b - *a).as_secs_f64(),
            _ => 0.0,
        };
        let arrival_rate = if arrivals.len() > 1 && span > 0.0 {
            (arrivals.len() - 1) as f64 / span
        } else {
            0.0
        };
        let journal_rate = end["achieved_rate_per_min"].as_f64().unwrap_or(0.0) / 60.0;
        let max_in_window = max_in_window(&arrivals, Duration::from_secs(PACE_WINDOW_SECS.into()));
        let (first_fin, last_fin) = finished_span(&items);
        let finished_rate = match (first_fin, last_fin) {
            (Some(a), Some(b)) if b > a && items.len() > 1 => {
                (items.len() - 1) as f64 / (b - a).as_secs_f64()
            }
            _ => 0.0,
        };
        let f_arrival = arrival_rate / limit_per_s;
        let f_journal = journal_rate / limit_per_s;
        let f_finished = finished_rate / limit_per_s;

        Ok(Pacing {
            limit,
            run,
            delta,
            end,
            journal_429,
            arrivals: arrivals.len(),
            span,
            arrival_rate,
            journal_rate,
            limit_per_s,
            max_in_window,
            f_arrival,
            f_journal,
            f_finished,
        })
    }
}

/// What the pacing run measured.
struct Pacing {
    limit: String,
    run: Measured,
    delta: StatsDelta,
    end: Value,
    journal_429: u64,
    arrivals: usize,
    span: f64,
    arrival_rate: f64,
    journal_rate: f64,
    limit_per_s: f64,
    max_in_window: usize,
    f_arrival: f64,
    f_journal: f64,
    f_finished: f64,
}

fn pacing_rows(p: &Pacing, what: &str) -> Vec<Row> {
    let at_least = format!(">= {:.0} %", MIN_PACE_FRACTION * 100.0);
    vec![
        Row::check(
            &format!("{what}: 429s received (emulator by_status)"),
            p.delta.status(429).to_string(),
            "0",
            p.delta.status(429) == 0,
        ),
        Row::check(
            &format!("{what}: 429s received (journal rate_limited sum)"),
            p.journal_429.to_string(),
            "0",
            p.journal_429 == 0,
        ),
        Row::check(
            &format!("{what}: achieved rate / limit (emulator arrivals, first to last)"),
            format!(
                "{:.1} % ({:.3}/s of {:.0}/s)",
                p.f_arrival * 100.0,
                p.arrival_rate,
                p.limit_per_s
            ),
            &at_least,
            p.f_arrival >= MIN_PACE_FRACTION,
        ),
        Row::check(
            &format!("{what}: achieved rate / limit (journal end line)"),
            format!(
                "{:.1} % ({:.1}/min of {:.0}/min)",
                p.f_journal * 100.0,
                p.journal_rate * 60.0,
                p.limit_per_s * 60.0
            ),
            &at_least,
            p.f_journal >= MIN_PACE_FRACTION,
        ),
        Row::info(
            &format!("{what}: most requests in any 6 s window"),
            format!("{} of {PACE_LIMIT} allowed", p.max_in_window),
        ),
    ]
}

fn pacing_details(p: &Pacing) -> String {
    let mut d = String::new();
    let _ = writeln!(
        d,
        "  emulator --rate-limit {limit} --latency-ms {PACE_LATENCY_MS} --jitter-ms {PACE_JITTER_MS}; \
         scan --rate {limit} --concurrency {PACE_CONCURRENCY} over {PACE_IMAGES} distinct JPEGs",
        limit = p.limit
    );
    let _ = writeln!(
        d,
        "  requests {} (answers: {}), exit {}, wall {:.2} s, client CPU {:.2} s, peak RSS {:.1} MiB",
        p.delta.requests,
        p.delta.statuses(),
        p.run.code,
        p.run.wall.as_secs_f64(),
        p.run.cpu().as_secs_f64(),
        p.run.rss_mib()
    );
    let _ = writeln!(
        d,
        "  achieved rate: {:.1} % from the emulator's arrival times ((N-1)/(last-first) = {}/{:.3} s); \
         {:.1} % from the scan's own figure (journal end line achieved_rate_per_min, first to last send); \
         {:.1} % from the items' first to last finished_at",
        p.f_arrival * 100.0,
        p.arrivals.saturating_sub(1),
        p.span,
        p.f_journal * 100.0,
        p.f_finished * 100.0
    );
    let _ = writeln!(
        d,
        "  the pacer keeps a {:.1} % safety margin under the configured rate, so {:.1} % is its ceiling",
        liveness_batch::pace::SAFETY_MARGIN * 100.0,
        100.0 / (1.0 + liveness_batch::pace::SAFETY_MARGIN)
    );
    d
}

fn pacing_json(p: &Pacing) -> Value {
    json!({
        "emulator_rate_limit": p.limit,
        "latency_ms": format!("{PACE_LATENCY_MS} + 0..{PACE_JITTER_MS}"),
        "scan_rate": p.limit,
        "concurrency": PACE_CONCURRENCY,
        "images": PACE_IMAGES,
        "requests": p.delta.requests,
        "by_status": p.delta.by_status,
        "emulator_429": p.delta.status(429),
        "journal_rate_limited": p.journal_429,
        "limiter_rate_limited": p.delta.rate_limited,
        "arrival_span_secs": round(p.span, 3),
        "achieved_fraction_arrivals": round(p.f_arrival, 4),
        "achieved_fraction_journal": round(p.f_journal, 4),
        "achieved_fraction_finished_at": round(p.f_finished, 4),
        "journal_achieved_rate_per_min": p.end["achieved_rate_per_min"],
        "max_requests_in_any_window": p.max_in_window,
        "run": p.run.json(),
    })
}

/// Figure 2: an unthrottled run against an emulator with no latency.
fn throughput(ctx: &Ctx) -> Result<Section, String> {
    let dir = ctx.dir("throughput");
    let names = write_images(&dir, "img", TP_IMAGES, 5_000, ImageFormat::Jpeg)?;
    let manifest = dir.join("manifest.csv");
    write_manifest(&manifest, &names, TP_ROWS)?;
    let emu = Emulator::start(ctx, &dir, &["--rate-limit", "0/60s"], None)?;
    let out = dir.join("out");
    let args = scan_args(&manifest, &out, UNTHROTTLED, CONCURRENCY, &["--no-dedupe"]);
    eprintln!(
        "   scan {TP_ROWS} rows ({TP_IMAGES} distinct images, --no-dedupe) at --rate {UNTHROTTLED} \
         --concurrency {CONCURRENCY}"
    );
    let before = emu.stats()?;
    let emu_cpu0 = emu.cpu();
    let run = run_scan(
        ctx,
        &emu,
        &args,
        &dir.join("scan"),
        Duration::from_secs(300),
    )?;
    let emu_cpu = emu.cpu().zip(emu_cpu0).map(|(a, b)| a - b);
    let after = emu.stats()?;
    emu.stop();
    run.expect_code(0)?;
    let delta = StatsDelta::new(&before, &after);
    let end = journal_end(&out)?;
    let req = delta.requests.max(1) as f64;
    let wall_rate = delta.requests as f64 / run.wall.as_secs_f64();
    let send_rate = end["achieved_rate_per_min"].as_f64().unwrap_or(0.0) / 60.0;
    let cpu_per_req = run.cpu().as_secs_f64() / req * 1e6;
    let rows = vec![
        Row::info(
            "Throughput: requests/s (whole scan process, start to exit)",
            format!("{wall_rate:.0}/s ({} requests)", delta.requests),
        ),
        Row::info(
            "Throughput: requests/s (first to last send, journal end line)",
            format!("{send_rate:.0}/s"),
        ),
        Row::info(
            "Cost: client CPU time per request",
            format!(
                "{cpu_per_req:.0} µs (user {:.0} + sys {:.0})",
                run.user.as_secs_f64() / req * 1e6,
                run.sys.as_secs_f64() / req * 1e6
            ),
        ),
    ];
    let tp = Throughput {
        run,
        delta,
        emu_cpu,
        wall_rate,
        send_rate,
        cpu_per_req,
    };
    Ok(Section {
        title: "Throughput and cost per request".into(),
        rows,
        details: throughput_details(&tp),
        json: throughput_json(&tp),
        broken: Vec::new(),
    })
}

/// What the throughput run measured.
struct Throughput {
    run: Measured,
    delta: StatsDelta,
    emu_cpu: Option<f64>,
    wall_rate: f64,
    send_rate: f64,
    cpu_per_req: f64,
}

impl Throughput {
    fn requests(&self) -> f64 {
        self.delta.requests.max(1) as f64
    }
}

fn throughput_details(tp: &Throughput) -> String {
    let (run, delta, emu_cpu, req) = (&tp.run, &tp.delta, tp.emu_cpu, tp.requests());
    let mut d = String::new();
    let _ = writeln!(
        d,
        "  emulator --rate-limit 0/60s (no latency); scan --rate {UNTHROTTLED} --concurrency {CONCURRENCY} \
         --no-dedupe over {TP_ROWS} rows of {TP_IMAGES} distinct 48x48 JPEGs"
    );
    let _ = writeln!(
        d,
        "  requests {} (answers: {}), exit {}, wall {:.2} s, client CPU {:.2} s (user {:.2}, sys {:.2}), \
         peak RSS {:.1} MiB{}",
        delta.requests,
        delta.statuses(),
        run.code,
        run.wall.as_secs_f64(),
        run.cpu().as_secs_f64(),
        run.user.as_secs_f64(),
        run.sys.as_secs_f64(),
        run.rss_mib(),
        emu_cpu
            .map(|c| format!(
                "; emulator CPU {:.2} s ({:.0} µs/request) on the same 2 cores",
                c,
                c / req * 1e6
            ))
            .unwrap_or_default()
    );
    d
}

fn throughput_json(tp: &Throughput) -> Value {
    let (run, delta, req) = (&tp.run, &tp.delta, tp.requests());
    let (wall_rate, send_rate, cpu_per_req, emu_cpu) =
        (tp.wall_rate, tp.send_rate, tp.cpu_per_req, tp.emu_cpu);
    json!({
        "rows": TP_ROWS,
        "distinct_images": TP_IMAGES,
        "concurrency": CONCURRENCY,
        "requests": delta.requests,
        "by_status": delta.by_status,
        "requests_per_sec_wall": round(wall_rate, 1),
        "requests_per_sec_sending": round(send_rate, 1),
        "client_cpu_us_per_request": round(cpu_per_req, 1),
        "client_user_us_per_request": round(run.user.as_secs_f64() / req * 1e6, 1),
        "client_sys_us_per_request": round(run.sys.as_secs_f64() / req * 1e6, 1),
        "emulator_cpu_secs": emu_cpu.map(|c| round(c, 3)),
        "run": run.json(),
    })
}

/// One measured scan in the memory section.
struct MemRun {
    label: String,
    rows: usize,
    run: Measured,
    requests: u64,
    end: Value,
}

/// Figures 3 and 4: peak RSS for 10k and 100k rows (dry run and real), then the resume.
fn memory_and_resume(ctx: &Ctx) -> Result<Section, String> {
    let dir = ctx.dir("memory");
    let t = Instant::now();
    let names = write_images(&dir, "img", MEM_IMAGES, 20_000, ImageFormat::Jpeg)?;
    let small = dir.join("manifest-10k.csv");
    let large = dir.join("manifest-100k.csv");
    write_manifest(&small, &names, MEM_SMALL)?;
    write_manifest(&large, &names, MEM_LARGE)?;
    eprintln!(
        "   generated {MEM_IMAGES} images and manifests in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let emu = Emulator::start(ctx, &dir, &["--rate-limit", "0/60s"], None)?;

    let mut runs: Vec<MemRun> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    let mut measure = |label: &str, manifest: &Path, rows: usize, out: &Path, extra: &[&str]| {
        let mem = MemCase {
            label,
            manifest,
            rows,
            out,
            extra,
        };
        match measure_memory(ctx, &emu, &dir, &mem) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("      BROKE: {e}");
                broken.push(format!("{label}: {e}"));
            }
        }
    };

    let dry_out = dir.join("out-dry");
    measure("dry 10k", &small, MEM_SMALL, &dry_out, &["--dry-run"]);
    measure("dry 100k", &large, MEM_LARGE, &dry_out, &["--dry-run"]);
    measure("real 10k", &small, MEM_SMALL, &dir.join("out-10k"), &[]);
    let out_large = dir.join("out-100k");
    measure("real 100k", &large, MEM_LARGE, &out_large, &[]);
    measure("resume 100k", &large, MEM_LARGE, &out_large, &[]);
    measure(
        "no-dedupe 10k",
        &small,
        MEM_SMALL,
        &dir.join("out-nd-10k"),
        &["--no-dedupe"],
    );
    measure(
        "no-dedupe 100k",
        &large,
        MEM_LARGE,
        &dir.join("out-nd-100k"),
        &["--no-dedupe"],
    );
    emu.stop();

    Ok(Section {
        title: "Memory and resume".into(),
        rows: memory_rows(&runs),
        details: memory_details(&runs),
        json: memory_json(&runs),
        broken,
    })
}

/// One scan of the memory figures.
struct MemCase<'a> {
    label: &'a str,
    manifest: &'a Path,
    rows: usize,
    out: &'a Path,
    extra: &'a [&'a str],
}

/// Run one memory case and print its figures.
fn measure_memory(ctx: &Ctx, emu: &Emulator, dir: &Path, mem: &MemCase) -> Result<MemRun, String> {
    let MemCase {
        label,
        manifest,
        rows,
        out,
        extra,
    } = *mem;
    let args = scan_args(manifest, out, UNTHROTTLED, CONCURRENCY, extra);
    eprintln!(
        "   {label}: scan {} {}",
        manifest_name(manifest),
        extra.join(" ")
    );
    let dry = extra.contains(&"--dry-run");
    let before = emu.stats()?;
    let run = run_scan(
        ctx,
        emu,
        &args,
        &dir.join(label.replace(' ', "-")),
        Duration::from_secs(600),
    )?;
    let after = emu.stats()?;
    run.expect_code(0)?;
    let requests = StatsDelta::new(&before, &after).requests;
    let end = if dry { Value::Null } else { journal_end(out)? };
    if !dry && end["inputs"].as_u64() != Some(rows as u64) {
        return Err(format!(
            "the end line counts {} inputs, the manifest has {rows} rows",
            end["inputs"]
        ));
    }
    let r = MemRun {
        label: label.to_string(),
        rows,
        run,
        requests,
        end,
    };
    eprintln!("      {}", r.run.summary(r.requests));
    Ok(r)
}

/// The memory and resume rows of the figures table.
fn memory_rows(runs: &[MemRun]) -> Vec<Row> {
    let get = |label: &str| runs.iter().find(|r| r.label == label);
    let mut rows = Vec::new();
    for (mode, a, b) in [
        ("dry run", "dry 10k", "dry 100k"),
        ("real run", "real 10k", "real 100k"),
        ("real, every row sent", "no-dedupe 10k", "no-dedupe 100k"),
    ] {
        let (Some(a), Some(b)) = (get(a), get(b)) else {
            continue;
        };
        let ratio = b.run.rss_mib() / a.run.rss_mib();
        rows.push(Row::info(
            &format!("Memory ({mode}): peak RSS 10,000 rows"),
            format!("{:.1} MiB", a.run.rss_mib()),
        ));
        rows.push(Row::check(
            &format!("Memory ({mode}): peak RSS 100,000 rows"),
            format!("{:.1} MiB", b.run.rss_mib()),
            "< 100 MiB",
            b.run.rss_mib() < MAX_RSS_MIB,
        ));
        rows.push(Row::check(
            &format!("Memory ({mode}): 100k / 10k peak RSS"),
            format!("{ratio:.2}x"),
            "<= 1.5x",
            ratio <= MAX_RSS_RATIO,
        ));
    }
    if let Some(r) = get("resume 100k") {
        rows.push(Row::check(
            "Resume 100k finished rows: requests sent",
            r.requests.to_string(),
            "0",
            r.requests == 0,
        ));
        rows.push(Row::check(
            "Resume 100k finished rows: wall time",
            format!("{:.2} s", r.run.wall.as_secs_f64()),
            "< 10 s",
            r.run.wall.as_secs_f64() < MAX_RESUME_SECS,
        ));
        rows.push(Row::info(
            "Resume 100k finished rows: peak RSS",
            format!("{:.1} MiB", r.run.rss_mib()),
        ));
    }

    rows
}

/// The memory section's details: one line per run.
fn memory_details(runs: &[MemRun]) -> String {
    let mut d = String::new();
    let _ = writeln!(
        d,
        "  manifests of id,path rows cycling through {MEM_IMAGES} distinct 48x48 JPEGs; one emulator with \
         --rate-limit 0/60s and no latency; every scan --rate {UNTHROTTLED} --concurrency {CONCURRENCY}"
    );
    let _ = writeln!(
        d,
        "  {:<14} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}  extra flags / end line",
        "run", "rows", "RSS MiB", "wall s", "CPU s", "requests", "recorded", "skipped"
    );
    for r in runs {
        let extra = match r.label.as_str() {
            l if l.starts_with("dry") => "--dry-run (no journal)".to_string(),
            l if l.starts_with("no-dedupe") => "--no-dedupe: every row sent".to_string(),
            l if l.starts_with("resume") => "same command, same --out as real 100k".to_string(),
            _ => format!(
                "default dedupe: {} deduplicated",
                r.end["deduplicated"].as_u64().unwrap_or(0)
            ),
        };
        let _ = writeln!(
            d,
            "  {:<14} {:>7} {:>9.1} {:>9.2} {:>9.2} {:>8} {:>8} {:>8}  {extra}",
            r.label,
            r.rows,
            r.run.rss_mib(),
            r.run.wall.as_secs_f64(),
            r.run.cpu().as_secs_f64(),
            r.requests,
            r.end["recorded"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
            r.end["skipped_done"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
        );
    }
    d
}

fn memory_json(runs: &[MemRun]) -> Value {
    json!({
        "distinct_images": MEM_IMAGES,
        "concurrency": CONCURRENCY,
        "rate": UNTHROTTLED,
        "runs": runs.iter()
            .map(|r| r.run.scan_json(&r.label, r.rows, r.requests, &r.end))
            .collect::<Vec<_>>(),
    })
}

fn manifest_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn scan_args(
    manifest: &Path,
    out: &Path,
    rate: &str,
    concurrency: usize,
    extra: &[&str],
) -> Vec<String> {
    let mut v = vec![
        "scan".to_string(),
        manifest.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--rate".into(),
        rate.into(),
        "--concurrency".into(),
        concurrency.to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A finished child: how it exited, how long it took, what it cost.
struct Measured {
    code: i32,
    wall: Duration,
    user: Duration,
    sys: Duration,
    /// Peak resident set size in KiB (Linux `ru_maxrss`).
    max_rss_kib: u64,
    /// What the child read, from `/proc/<pid>/io` just after it exited (before it was reaped).
    io: Option<ProcIo>,
    /// When it was started (wall clock, to compare with the emulator's request log).
    started_at: SystemTime,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Measured {
    fn cpu(&self) -> Duration {
        self.user + self.sys
    }

    /// The line printed after each measured run.
    fn summary(&self, requests: u64) -> String {
        format!(
            "exit {}, wall {:.2} s, CPU {:.2} s, peak RSS {:.1} MiB, requests {requests}",
            self.code,
            self.wall.as_secs_f64(),
            self.cpu().as_secs_f64(),
            self.rss_mib(),
        )
    }

    /// The JSON of one measured scan of `rows` rows; a section adds its own fields to it.
    fn scan_json(
        &self,
        label: &str,
        rows: usize,
        requests: u64,
        end: &Value,
    ) -> serde_json::Map<String, Value> {
        serde_json::Map::from_iter([
            ("label".into(), json!(label)),
            ("rows".into(), json!(rows)),
            ("peak_rss_mib".into(), json!(round(self.rss_mib(), 2))),
            ("requests".into(), json!(requests)),
            ("end_line".into(), end.clone()),
            ("run".into(), self.json()),
        ])
    }

    fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 * 1024.0 / MIB
    }

    /// Bytes the child passed to `read()`/`pread()` (`rchar`), if measured.
    fn rchar(&self) -> Option<u64> {
        self.io.map(|io| io.rchar)
    }

    fn expect_code(&self, want: i32) -> Result<(), String> {
        if self.code == want {
            return Ok(());
        }
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "the child exited {} (expected {want}); stderr ({}) ends with:\n{}",
            self.code,
            self.stderr.display(),
            tail.join("\n")
        ))
    }

    fn json(&self) -> Value {
        json!({
            "exit_code": self.code,
            "wall_secs": round(self.wall.as_secs_f64(), 3),
            "user_secs": round(self.user.as_secs_f64(), 3),
            "sys_secs": round(self.sys.as_secs_f64(), 3),
            "peak_rss_kib": self.max_rss_kib,
            "io": self.io.map(|io| io.json()),
        })
    }
}

/// The I/O counters of `/proc/<pid>/io` (whole process, every thread).
#[derive(Clone, Copy)]
struct ProcIo {
    /// Bytes returned by `read()`/`pread()`-family calls on any file descriptor that goes through
    /// the VFS (files, pipes, `/proc`); not socket `recv()` and not pages touched through `mmap`.
    rchar: u64,
    /// `read()`-family calls.
    syscr: u64,
    /// Bytes the block layer fetched from storage for this process (0 with a warm page cache).
    read_bytes: u64,
}

impl ProcIo {
    fn read(pid: libc::pid_t) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(Self {
            rchar: field("rchar")?,
            syscr: field("syscr")?,
            read_bytes: field("read_bytes")?,
        })
    }

    fn json(&self) -> Value {
        json!({ "rchar": self.rchar, "syscr": self.syscr, "read_bytes": self.read_bytes })
    }
}

/// Run `liveness-batch <args>` against `emu`; see [`run_child`].
fn run_scan(
    ctx: &Ctx,
    emu: &Emulator,
    args: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<Measured, String> {
    let child = ChildRun {
        program: &ctx.bin,
        args,
        emu: Some(emu),
        log,
        timeout,
    };
    run_child(&child, &mut |_| {})
}

/// One child process to run and measure.
struct ChildRun<'a> {
    program: &'a Path,
    args: &'a [String],
    /// The emulator the child talks to (`DIDIT_BASE_URL`), if any.
    emu: Option<&'a Emulator>,
    /// Base name of its stdout/stderr files.
    log: &'a Path,
    /// A child still running after this long is killed (a broken run).
    timeout: Duration,
}

/// Run a child to its end, measured with `wait4` (peak RSS, user and system CPU, wall time);
/// `/proc/<pid>/io` is read once it has exited and before it is reaped (`waitid` with
/// `WNOWAIT`), so the counters are complete. `tick` is called with the pid about every
/// millisecond while it runs.
fn run_child(c: &ChildRun, tick: &mut dyn FnMut(libc::pid_t)) -> Result<Measured, String> {
    let stdout = c.log.with_extension("stdout");
    let stderr = c.log.with_extension("stderr");
    let mut cmd = Command::new(c.program);
    cmd.args(c.args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).map_err(|e| format!("create {}: {e}", stdout.display()))?)
        .stderr(File::create(&stderr).map_err(|e| format!("create {}: {e}", stderr.display()))?);
    if let Some(emu) = c.emu {
        cmd.env("DIDIT_API_KEY", KEY)
            .env("DIDIT_BASE_URL", &emu.url);
    }
    let started_at = SystemTime::now();
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", c.program.display()))?;
    let pid = child.id() as libc::pid_t;
    // `child` is reaped by wait4 below, never by std.
    drop(child);
    let mut killed = false;
    while !exited(pid)? {
        if !killed && started.elapsed() > c.timeout {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        tick(pid);
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    let io = ProcIo::read(pid);
    let (status, usage) = reap(pid)?;
    if killed {
        return Err(format!(
            "{} did not finish within {} s and was killed (log: {})",
            c.args.first().map_or("the child", String::as_str),
            c.timeout.as_secs(),
            stderr.display()
        ));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Measured {
        code,
        wall,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        io,
        started_at,
        stdout,
        stderr,
    })
}

/// Whether our child `pid` has exited, leaving it unreaped (its `/proc` entry stays readable).
fn exited(pid: libc::pid_t) -> Result<bool, String> {
    loop {
        // SAFETY: siginfo_t is a plain C struct; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: a valid pointer to a local; pid is our own unreaped child.
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if r == 0 {
            // SAFETY: waitid filled `info` (si_pid stays 0 while the child runs).
            return Ok(unsafe { info.si_pid() } == pid);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitid failed: {e}"));
        }
    }
}

/// Reap our exited child `pid`: its wait status and resource usage.
fn reap(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage), String> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 failed: {e}"));
        }
    }
}

/// An emulator child process on a free loopback port.
struct Emulator {
    child: Child,
    url: String,
    addr: String,
    /// Held open so the emulator never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Emulator {
    fn start(ctx: &Ctx, dir: &Path, extra: &[&str], log: Option<&Path>) -> Result<Self, String> {
        let mut cmd = Command::new(&ctx.bin);
        cmd.args(["emulator", "--port", "0"])
            .args(extra)
            .env("DIDIT_API_KEY", KEY);
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        Self::launch(cmd, &dir.join("emulator.stderr"))
    }

    /// Start a server that prints `... listening on URL` as its first line and serves
    /// `GET /emulator/stats` (the emulator, or the photos section's instant answerer).
    fn launch(mut cmd: Command, stderr: &Path) -> Result<Self, String> {
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(stderr).map_err(|e| format!("create {}: {e}", stderr.display()))?);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let Some(url) = line
            .trim()
            .rsplit_once(" listening on ")
            .map(|(_, url)| url.to_string())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(stderr).unwrap_or_default();
            return Err(format!(
                "the emulator did not start (stdout {line:?}); stderr: {err}"
            ));
        };
        let addr = url
            .strip_prefix("http://")
            .unwrap_or(&url)
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            child,
            url,
            addr,
            _stdout: out,
        })
    }

    /// `GET /emulator/stats`.
    fn stats(&self) -> Result<Value, String> {
        let body = http_get(&self.addr, "/emulator/stats")?;
        serde_json::from_str(&body).map_err(|e| format!("emulator stats are not JSON: {e}: {body}"))
    }

    /// The emulator's CPU time so far (Linux /proc), if readable.
    fn cpu(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After "(comm) ", field 3 (state) is index 0; utime and stime are fields 14 and 15.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (hz > 0.0).then(|| (utime + stime) / hz)
    }

    /// SIGTERM, then wait (SIGKILL after 5 s).
    fn stop(mut self) {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET on loopback (Content-Length or chunked body).
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let err = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut s = TcpStream::connect(addr).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(err)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP header in the answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| format!("GET {path}: bad chunk size"))?;
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        return Ok(out);
    }
    Ok(body.to_string())
}

/// The change in the emulator's counters over one run.
struct StatsDelta {
    requests: u64,
    rate_limited: u64,
    by_status: BTreeMap<String, u64>,
}

impl StatsDelta {
    fn new(before: &Value, after: &Value) -> Self {
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        let mut by_status = BTreeMap::new();
        if let Some(m) = after["by_status"].as_object() {
            for (k, v) in m {
                let d = v.as_u64().unwrap_or(0) - before["by_status"][k].as_u64().unwrap_or(0);
                if d > 0 {
                    by_status.insert(k.clone(), d);
                }
            }
        }
        Self {
            requests: n(after, "requests") - n(before, "requests"),
            rate_limited: n(after, "rate_limited") - n(before, "rate_limited"),
            by_status,
        }
    }

    fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code.to_string()).copied().unwrap_or(0)
    }

    fn statuses(&self) -> String {
        if self.by_status.is_empty() {
            return "none".into();
        }
        self.by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs and journals
// ---------------------------------------------------------------------------------------------

/// Write `count` distinct 48x48 images into `dir/sub`; returns their paths relative to `dir`.
fn write_images(
    dir: &Path,
    sub: &str,
    count: usize,
    seed0: u64,
    format: ImageFormat,
) -> Result<Vec<String>, String> {
    let folder = dir.join(sub);
    std::fs::create_dir_all(&folder).map_err(|e| format!("create {}: {e}", folder.display()))?;
    let ext = format.extensions_str().first().copied().unwrap_or("img");
    (0..count)
        .map(|i| {
            let mut buf = Cursor::new(Vec::new());
            common::photo(seed0 + i as u64, 48, 48)
                .write_to(&mut buf, format)
                .map_err(|e| format!("encode image: {e}"))?;
            let name = format!("{sub}/{i:05}.{ext}");
            std::fs::write(dir.join(&name), buf.into_inner())
                .map_err(|e| format!("write {name}: {e}"))?;
            Ok(name)
        })
        .collect()
}

/// A manifest of `rows` `id,path` rows cycling through `images` (paths relative to it).
fn write_manifest(path: &Path, images: &[String], rows: usize) -> Result<(), String> {
    let err = |e: std::io::Error| format!("write {}: {e}", path.display());
    let mut w = std::io::BufWriter::new(File::create(path).map_err(err)?);
    writeln!(w, "id,path").map_err(err)?;
    for i in 0..rows {
        writeln!(w, "row-{i:06},{}", images[i % images.len()]).map_err(err)?;
    }
    w.flush().map_err(err)
}

fn journal_lines(out: &Path) -> Result<Vec<Value>, String> {
    let path = out.join("journal.jsonl");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("journal line is not JSON: {e}")))
        .collect()
}

fn journal_items(out: &Path) -> Result<Vec<Value>, String> {
    Ok(journal_lines(out)?
        .into_iter()
        .filter(|l| l["type"] == "item")
        .collect())
}

/// The journal's last line, which must be the run's end line.
fn journal_end(out: &Path) -> Result<Value, String> {
    let path = out.join("journal.jsonl");
    let file = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut last = String::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("read {}: {e}", path.display()))?;
        if !line.trim().is_empty() {
            last = line;
        }
    }
    let v: Value =
        serde_json::from_str(&last).map_err(|e| format!("the journal's last line: {e}"))?;
    if v["type"] != "end" {
        return Err(format!(
            "the journal's last line is not an end line: {}",
            last.chars().take(200).collect::<String>()
        ));
    }
    Ok(v)
}

/// Arrival times of the API requests in the emulator's request log, in order.
/// The paths of the emulator's logged POSTs.
fn request_paths(log: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("read {}: {e}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "POST")
        .filter_map(|v| v["path"].as_str().map(String::from))
        .collect())
}

fn request_arrivals(log: &Path) -> Result<Vec<Duration>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("read {}: {e}", log.display()))?;
    let mut times: Vec<Duration> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "POST")
        .filter_map(|v| v["time"].as_str().and_then(parse_time))
        .collect();
    times.sort();
    Ok(times)
}

/// First and last `finished_at` of the journal's items.
fn finished_span(items: &[Value]) -> (Option<Duration>, Option<Duration>) {
    let mut t: Vec<Duration> = items
        .iter()
        .filter_map(|i| i["finished_at"].as_str().and_then(parse_time))
        .collect();
    t.sort();
    (t.first().copied(), t.last().copied())
}

/// An RFC 3339 time as a duration since the epoch.
fn parse_time(s: &str) -> Option<Duration> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let nanos = t.timestamp_nanos_opt()?;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

/// The most arrivals inside any window of length `w` (the server's `(now - w, now]`).
fn max_in_window(times: &[Duration], w: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Fail,
    Info,
    Broke,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Info => "-",
            Verdict::Broke => "BROKE",
        }
    }
}

struct Row {
    figure: String,
    measured: String,
    threshold: String,
    verdict: Verdict,
}

impl Row {
    fn check(figure: &str, measured: String, threshold: &str, ok: bool) -> Self {
        Self {
            figure: figure.into(),
            measured,
            threshold: threshold.into(),
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
        }
    }

    fn info(figure: &str, measured: String) -> Self {
        Self {
            figure: figure.into(),
            measured,
            threshold: String::new(),
            verdict: Verdict::Info,
        }
    }

    fn json(&self) -> Value {
        json!({
            "figure": self.figure,
            "measured": self.measured,
            "threshold": self.threshold,
            "verdict": self.verdict.as_str(),
        })
    }
}

struct Section {
    title: String,
    rows: Vec<Row>,
    details: String,
    json: Value,
    /// Runs of this section that broke (the others are still reported).
    broken: Vec<String>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    details: Vec<(String, String)>,
    sections: BTreeMap<String, Value>,
    /// How long each section took, in the order they ran.
    section_secs: Vec<(String, f64)>,
    broken: Vec<String>,
}

impl Report {
    fn render(&self, machine: &Machine, total_secs: f64, load_after: Option<&str>) -> String {
        let width = |cell: fn(&Row) -> &str, heading: &str| {
            self.rows
                .iter()
                .map(|r| cell(r).chars().count())
                .chain([heading.len()])
                .max()
                .unwrap_or_default()
        };
        let w0 = width(|r| &r.figure, "figure");
        let w1 = width(|r| &r.measured, "measured");
        let w2 = width(|r| &r.threshold, "threshold");
        let mut s = String::new();
        let _ = writeln!(s);
        let _ = writeln!(s, "liveness-batch benchmark figures (one run)");
        let _ = writeln!(s, "machine: {}", machine.line());
        let _ = writeln!(
            s,
            "note: a small shared machine; other work on it moves these figures. Ratios measured \
             in one run are what the thresholds apply to; PASS/FAIL is information, not a test."
        );
        let _ = writeln!(s);
        let pad =
            |t: &str, w: usize| format!("{t}{}", " ".repeat(w.saturating_sub(t.chars().count())));
        let _ = writeln!(
            s,
            "{}  {}  {}  verdict",
            pad("figure", w0),
            pad("measured", w1),
            pad("threshold", w2)
        );
        let _ = writeln!(s, "{}", "-".repeat(w0 + w1 + w2 + 13));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{}  {}  {}  {}",
                pad(&r.figure, w0),
                pad(&r.measured, w1),
                pad(&r.threshold, w2),
                r.verdict.as_str()
            );
        }
        for (title, details) in &self.details {
            let _ = writeln!(s, "\n{title}:");
            let _ = write!(s, "{details}");
        }
        let fails = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .count();
        let passes = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count();
        let took: Vec<String> = self
            .section_secs
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.0} s"))
            .collect();
        let _ = writeln!(s, "\nsections took: {}", took.join(", "));
        let _ = writeln!(
            s,
            "{passes} PASS, {fails} FAIL, {} broken; harness took {total_secs:.0} s; load average after: {}",
            self.broken.len(),
            load_after.unwrap_or("unknown")
        );
        s
    }
}

/// What the figures were measured on.
struct Machine {
    cores: usize,
    cpu: String,
    memory_mib: Option<u64>,
    load_before: Option<String>,
}

impl Machine {
    fn line(&self) -> String {
        format!(
            "{} cores ({}), {} RAM, load average before: {} (shared with other work: noisy)",
            self.cores,
            self.cpu,
            self.memory_mib.map_or("unknown".into(), |m| format!(
                "{:.1} GiB",
                m as f64 / 1024.0
            )),
            self.load_before.as_deref().unwrap_or("unknown")
        )
    }

    fn json(&self) -> Value {
        json!({
            "cores": self.cores,
            "cpu": self.cpu,
            "memory_mib": self.memory_mib,
            "load_average_before": self.load_before,
            "note": "shared machine; figures are noisy",
        })
    }
}

fn machine_note() -> Machine {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map(|kib| kib / 1024)
    });
    Machine {
        cores,
        cpu,
        memory_mib,
        load_before: load_average(),
    }
}

fn load_average() -> Option<String> {
    let t = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn round(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    (x * p).round() / p
}
