//! Face match in bulk: pairs per minute at the key's limit (no 429, at least 99 % of it), and
//! the client's CPU per pair beside its CPU per liveness image, measured in the same run on the
//! same selfies.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use image::ImageFormat;
use serde_json::{Value, json};

use super::{
    CONCURRENCY, Ctx, Emulator, MIN_PACE_FRACTION, PACE_CONCURRENCY, PACE_JITTER_MS,
    PACE_LATENCY_MS, PACE_LIMIT, PACE_WINDOW_SECS, Pacing, Row, Section, StatsDelta, TP_IMAGES,
    TP_ROWS, UNTHROTTLED, journal_end, pacing_rows, round, run_scan, scan_args, write_images,
};

/// Pairs in the run at the limit (about 24 s at 60 per 6 s).
const PAIRS_AT_LIMIT: usize = 240;
/// A pair costs at most this many times a liveness image's client CPU.
const MAX_PAIR_CPU_RATIO: f64 = 2.0;

/// A manifest of `rows` pairs: selfie `i % n` with reference `(i + 1) % n` of `refs`.
fn write_pairs(
    path: &Path,
    selfies: &[String],
    refs: &[String],
    rows: usize,
) -> Result<(), String> {
    let err = |e: std::io::Error| format!("write {}: {e}", path.display());
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    writeln!(w, "id,path,ref_path").map_err(err)?;
    for i in 0..rows {
        let (s, r) = (&selfies[i % selfies.len()], &refs[(i + 1) % refs.len()]);
        writeln!(w, "row-{i:06},{s},{r}").map_err(err)?;
    }
    w.flush().map_err(err)
}

pub(super) fn checks(ctx: &Ctx) -> Result<Section, String> {
    let (pacing, pacing_detail) = at_the_limit(ctx)?;
    let cpu = cpu_per_pair(ctx)?;
    let mut rows = pacing_rows(&pacing, "Face match pacing");
    rows.push(Row::info(
        "Face match: client CPU per liveness image (same selfies, same settings)",
        format!("{:.0} µs", cpu.liveness_us),
    ));
    rows.push(Row::check(
        "Face match: client CPU per pair (two images read, hashed and sent)",
        format!("{:.0} µs ({:.2}× liveness)", cpu.pair_us, cpu.ratio()),
        &format!("<= {MAX_PAIR_CPU_RATIO}× liveness"),
        cpu.ratio() <= MAX_PAIR_CPU_RATIO,
    ));
    let mut details = pacing_detail;
    let _ = writeln!(
        details,
        "  CPU: emulator --rate-limit 0/60s (no latency); scan --rate {UNTHROTTLED} --concurrency \
         {CONCURRENCY} --no-dedupe over {TP_ROWS} rows of {TP_IMAGES} distinct 48x48 JPEGs: \
         liveness {} requests in {:.2} s CPU; face match (each row a pair, the reference \
         another of the same JPEGs) {} requests in {:.2} s CPU",
        cpu.liveness_requests, cpu.liveness_cpu, cpu.pair_requests, cpu.pair_cpu
    );
    Ok(Section {
        title: "Face match: pairs at the limit, CPU per pair".into(),
        rows,
        details,
        json: json!({
            "pairs_at_limit": PAIRS_AT_LIMIT,
            "emulator_rate_limit": pacing.limit,
            "requests": pacing.delta.requests,
            "emulator_429": pacing.delta.status(429),
            "journal_rate_limited": pacing.journal_429,
            "achieved_fraction_arrivals": round(pacing.f_arrival, 4),
            "achieved_fraction_journal": round(pacing.f_journal, 4),
            "max_requests_in_any_window": pacing.max_in_window,
            "run": pacing.run.json(),
            "cpu_per_liveness_image_us": round(cpu.liveness_us, 1),
            "cpu_per_pair_us": round(cpu.pair_us, 1),
            "pair_over_liveness": round(cpu.ratio(), 3),
        }),
        broken: Vec::new(),
    })
}

/// 240 distinct pairs at exactly the emulator's limit.
fn at_the_limit(ctx: &Ctx) -> Result<(Pacing, String), String> {
    let dir = ctx.dir("checks-pacing");
    let selfies = write_images(&dir, "selfies", PAIRS_AT_LIMIT, 30_000, ImageFormat::Jpeg)?;
    let refs = write_images(&dir, "ids", PAIRS_AT_LIMIT, 40_000, ImageFormat::Png)?;
    let manifest = dir.join("pairs.csv");
    write_pairs(&manifest, &selfies, &refs, PAIRS_AT_LIMIT)?;
    eprintln!(
        "   scan --check face-match over {PAIRS_AT_LIMIT} distinct pairs at --rate \
         {PACE_LIMIT}/{PACE_WINDOW_SECS}s against the same window, about {} s",
        PAIRS_AT_LIMIT as u32 * PACE_WINDOW_SECS / PACE_LIMIT
    );
    let p = super::scan_at_the_limit(ctx, &dir, &manifest, &["--check", "face-match"])?;
    let log = dir.join("emulator-requests.jsonl");
    let paths = super::request_paths(&log)?;
    if paths.iter().any(|p| p != "/v3/face-match/") {
        return Err(format!(
            "a request went elsewhere than /v3/face-match/: {paths:?}"
        ));
    }
    let limit = &p.limit;
    let mut d = String::new();
    let _ = writeln!(
        d,
        "  emulator --rate-limit {limit} --latency-ms {PACE_LATENCY_MS} --jitter-ms {PACE_JITTER_MS}; \
         scan --check face-match --rate {limit} --concurrency {PACE_CONCURRENCY} over \
         {PAIRS_AT_LIMIT} distinct pairs (48x48 JPEG selfie, PNG reference); requests {} \
         (answers: {}), wall {:.2} s; achieved {:.1} % from the emulator's arrivals, {:.1} % from \
         the journal end line (acceptance >= {:.0} %)",
        p.delta.requests,
        p.delta.statuses(),
        p.run.wall.as_secs_f64(),
        p.f_arrival * 100.0,
        p.f_journal * 100.0,
        MIN_PACE_FRACTION * 100.0
    );
    Ok((p, d))
}

struct Cpu {
    liveness_us: f64,
    pair_us: f64,
    liveness_cpu: f64,
    pair_cpu: f64,
    liveness_requests: u64,
    pair_requests: u64,
}

impl Cpu {
    fn ratio(&self) -> f64 {
        self.pair_us / self.liveness_us.max(1e-9)
    }
}

/// The same 3,000 rows unthrottled, as liveness images and as pairs.
fn cpu_per_pair(ctx: &Ctx) -> Result<Cpu, String> {
    let dir = ctx.dir("checks-cpu");
    let names = write_images(&dir, "img", TP_IMAGES, 5_000, ImageFormat::Jpeg)?;
    let single = dir.join("single.csv");
    super::write_manifest(&single, &names, TP_ROWS)?;
    let pairs = dir.join("pairs.csv");
    write_pairs(&pairs, &names, &names, TP_ROWS)?;
    let emu = Emulator::start(ctx, &dir, &["--rate-limit", "0/60s"], None)?;
    let measure = |name: &str, manifest: &Path, extra: &[&str]| -> Result<(f64, u64), String> {
        let out = dir.join(format!("out-{name}"));
        let mut args = vec!["--no-dedupe"];
        args.extend_from_slice(extra);
        let args = scan_args(manifest, &out, UNTHROTTLED, CONCURRENCY, &args);
        eprintln!("   scan {TP_ROWS} rows as {name}, unthrottled");
        let before = emu.stats()?;
        let run = run_scan(ctx, &emu, &args, &dir.join(name), Duration::from_secs(300))?;
        let after = emu.stats()?;
        run.expect_code(0)?;
        let _: Value = journal_end(&out)?;
        let requests = StatsDelta::new(&before, &after).requests;
        Ok((run.cpu().as_secs_f64(), requests))
    };
    let (liveness_cpu, liveness_requests) = measure("liveness", &single, &[])?;
    let (pair_cpu, pair_requests) = measure("pairs", &pairs, &["--check", "face-match"])?;
    emu.stop();
    let per = |cpu: f64, n: u64| cpu / n.max(1) as f64 * 1e6;
    Ok(Cpu {
        liveness_us: per(liveness_cpu, liveness_requests),
        pair_us: per(pair_cpu, pair_requests),
        liveness_cpu,
        pair_cpu,
        liveness_requests,
        pair_requests,
    })
}
