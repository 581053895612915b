//! The million-row figures: a 1,000,000-row manifest cycling through a few thousand distinct
//! small images, its first run, a rerun of the finished run, `report`, and the resume of a run
//! stopped at 90 % by SIGINT; the same three at 100,000 rows (the manifest's first 100,000 rows)
//! for the memory ratios.
//!
//! The last 10 % of the manifest holds images the first 90 % never uses (every fourth row from
//! row 900,000 on), so the resume has calls to make; the stopped run is the full manifest's run
//! interrupted with SIGINT once its journal holds 900,000 item lines, i.e. a real stop (in-flight
//! uploads finish, the end line says interrupted), not a shorter manifest.

use super::watch::{OpenCounts, OpenWatch, Outputs};
use super::*;

const ROWS: usize = 1_000_000;
const SMALL_ROWS: usize = 100_000;
/// Where the stopped run is interrupted: 90 % of the rows recorded.
const STOP_AT: usize = 900_000;
/// Distinct images of the whole manifest, and the ones only its last 10 % uses.
const OLD_IMAGES: usize = 3_000;
const NEW_IMAGES: usize = 500;
/// From row `STOP_AT` on, every `NEW_EVERY`-th row is one of the new images.
const NEW_EVERY: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(1_200);

/// Acceptance thresholds.
const MAX_RSS_MIB: f64 = 64.0;
const MAX_RSS_RATIO: f64 = 1.3;
const MAX_RERUN_SECS: f64 = 10.0;
const MAX_FIRST_CALL_SECS: f64 = 10.0;
/// What a rerun may read besides the journal and the manifest (each read once).
const RCHAR_SLACK: u64 = 16 * 1024 * 1024;

/// The generated inputs.
struct Inputs {
    small: PathBuf,
    large: PathBuf,
    old_dir: PathBuf,
    new_dir: PathBuf,
    /// Bytes of the image files behind the 1,000,000 rows (what one pass over the rows reads).
    row_image_bytes: u64,
    /// Distinct image files and their total size.
    image_files: usize,
    image_bytes: u64,
    large_bytes: u64,
}

impl Inputs {
    fn generate(dir: &Path) -> Result<Self, String> {
        let t = Instant::now();
        let old = write_images(dir, "img", OLD_IMAGES, 300_000, ImageFormat::Jpeg)?;
        let new = write_images(dir, "new", NEW_IMAGES, 400_000, ImageFormat::Jpeg)?;
        let size = |name: &String| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        let old_sizes: Vec<u64> = old.iter().map(size).collect();
        let new_sizes: Vec<u64> = new.iter().map(size).collect();
        let small = dir.join("manifest-100k.csv");
        let large = dir.join("manifest-1m.csv");
        write_rows(&small, &old, &new, SMALL_ROWS)?;
        write_rows(&large, &old, &new, ROWS)?;
        let row_image_bytes = (0..ROWS)
            .map(|i| match row_image(i) {
                Pick::Old(k) => old_sizes[k],
                Pick::New(k) => new_sizes[k],
            })
            .sum();
        let inputs = Self {
            old_dir: dir.join("img"),
            new_dir: dir.join("new"),
            row_image_bytes,
            image_files: old.len() + new.len(),
            image_bytes: old_sizes.iter().chain(&new_sizes).sum(),
            large_bytes: std::fs::metadata(&large).map_or(0, |m| m.len()),
            small,
            large,
        };
        eprintln!(
            "   generated {} images ({:.1} MiB) and the 100k and 1M manifests ({:.1} MiB) in {:.1} s",
            inputs.image_files,
            inputs.image_bytes as f64 / MIB,
            inputs.large_bytes as f64 / MIB,
            t.elapsed().as_secs_f64()
        );
        Ok(inputs)
    }
}

/// Which image row `i` points at.
enum Pick {
    Old(usize),
    New(usize),
}

fn row_image(i: usize) -> Pick {
    if i >= STOP_AT && i.is_multiple_of(NEW_EVERY) {
        Pick::New((i / NEW_EVERY) % NEW_IMAGES)
    } else {
        Pick::Old(i % OLD_IMAGES)
    }
}

/// `id,path` rows `0..rows` (the 100k manifest is the 1M one's first 100,000 rows, same keys).
fn write_rows(path: &Path, old: &[String], new: &[String], rows: usize) -> Result<(), String> {
    let err = |e: std::io::Error| format!("write {}: {e}", path.display());
    let mut w = std::io::BufWriter::new(File::create(path).map_err(err)?);
    writeln!(w, "id,path").map_err(err)?;
    for i in 0..rows {
        let image = match row_image(i) {
            Pick::Old(k) => &old[k],
            Pick::New(k) => &new[k],
        };
        writeln!(w, "row-{i:07},{image}").map_err(err)?;
    }
    w.flush().map_err(err)
}

/// One measured child of the section.
struct MRun {
    label: &'static str,
    rows: usize,
    run: Measured,
    requests: u64,
    /// The journal's end line (scans only).
    end: Value,
    /// Journal size before the run.
    journal_before: u64,
    /// Image files opened and read during the run, when watched.
    opened: Option<OpenCounts>,
    /// Output files before the run, and those the run rewrote, when compared.
    outputs: Option<(usize, Vec<String>)>,
    /// Seconds from the process start to the first request the emulator logged.
    first_call: Option<f64>,
    /// Item lines in the journal after a stopped run.
    items_at_stop: Option<usize>,
}

/// What to run and what to watch.
struct Step<'a> {
    label: &'static str,
    args: Vec<String>,
    rows: usize,
    out: &'a Path,
    expect: i32,
    /// Count opens and reads of the image files.
    watch: bool,
    /// Compare the output files before and after.
    outputs: bool,
    /// SIGINT once the journal holds this many item lines.
    stop_at: Option<usize>,
    /// Look up the first request in the emulator's log.
    first_call: bool,
}

impl<'a> Step<'a> {
    fn scan(label: &'static str, manifest: &Path, rows: usize, out: &'a Path) -> Self {
        Self {
            label,
            args: scan_args(manifest, out, UNTHROTTLED, CONCURRENCY, &[] as &[&str]),
            rows,
            out,
            expect: 0,
            watch: false,
            outputs: false,
            stop_at: None,
            first_call: false,
        }
    }

    fn report(label: &'static str, rows: usize, out: &'a Path) -> Self {
        Self {
            args: vec!["report".into(), out.display().to_string()],
            ..Self::scan(label, out, rows, out)
        }
    }
}

/// The section: every run in order, each later one only when the one it needs succeeded.
pub(super) fn million(ctx: &Ctx) -> Result<Section, String> {
    let dir = ctx.dir("million");
    let inputs = Inputs::generate(&dir)?;
    let log = dir.join("emulator-requests.jsonl");
    let emu = Emulator::start(ctx, &dir, &["--rate-limit", "0/60s"], Some(&log))?;
    let (out_small, out_large, out_stop) = (
        dir.join("out-100k"),
        dir.join("out-1m"),
        dir.join("out-stopped"),
    );
    let mut runs: Vec<MRun> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    let mut go = |step: Step| match run_step(ctx, &emu, &dir, &log, &inputs, &step) {
        Ok(r) => {
            runs.push(r);
            true
        }
        Err(e) => {
            eprintln!("      BROKE: {e}");
            broken.push(format!("{}: {e}", step.label));
            false
        }
    };

    if go(Step::scan(
        "first 100k",
        &inputs.small,
        SMALL_ROWS,
        &out_small,
    )) {
        go(Step::scan(
            "rerun 100k",
            &inputs.small,
            SMALL_ROWS,
            &out_small,
        ));
        go(Step::report("report 100k", SMALL_ROWS, &out_small));
    }
    if go(Step::scan("first 1M", &inputs.large, ROWS, &out_large)) {
        go(Step {
            watch: true,
            outputs: true,
            ..Step::scan("rerun 1M", &inputs.large, ROWS, &out_large)
        });
        go(Step::report("report 1M", ROWS, &out_large));
    }
    let stopped = Step {
        expect: 130,
        stop_at: Some(STOP_AT),
        ..Step::scan("stopped 1M", &inputs.large, ROWS, &out_stop)
    };
    if go(stopped) {
        go(Step {
            watch: true,
            first_call: true,
            ..Step::scan("resume 1M", &inputs.large, ROWS, &out_stop)
        });
    }
    emu.stop();

    Ok(Section {
        title: "A million rows".into(),
        rows: million_rows(&runs, &inputs),
        details: million_details(&runs, &inputs),
        json: million_json(&runs, &inputs),
        broken,
    })
}

/// Run one step and print its figures.
fn run_step(
    ctx: &Ctx,
    emu: &Emulator,
    dir: &Path,
    log: &Path,
    inputs: &Inputs,
    step: &Step,
) -> Result<MRun, String> {
    eprintln!("   {}: liveness-batch {}", step.label, step.args[0]);
    let journal = step.out.join("journal.jsonl");
    let journal_before = std::fs::metadata(&journal).map_or(0, |m| m.len());
    let outputs_before = match step.outputs {
        true => Some(Outputs::snapshot(step.out)?),
        false => None,
    };
    let watch = match step.watch {
        true => Some(OpenWatch::start(&[&inputs.old_dir, &inputs.new_dir])?),
        false => None,
    };
    let mut stopper = step.stop_at.map(|n| Stopper::new(journal.clone(), n));
    let before = emu.stats()?;
    let child = ChildRun {
        program: &ctx.bin,
        args: &step.args,
        emu: Some(emu),
        log: &dir.join(step.label.replace(' ', "-")),
        timeout: TIMEOUT,
    };
    let run = run_child(&child, &mut |pid| {
        if let Some(s) = stopper.as_mut() {
            s.tick(pid);
        }
    });
    let opened = watch.map(OpenWatch::finish);
    let run = run?;
    let after = emu.stats()?;
    run.expect_code(step.expect)?;
    let items_at_stop = match stopper.as_mut() {
        Some(s) => Some(s.finish()?),
        None => None,
    };
    let outputs = match outputs_before {
        Some(b) => Some((b.len(), Outputs::snapshot(step.out)?.changed_since(&b))),
        None => None,
    };
    let scan = step.args[0] == "scan";
    let end = if scan {
        journal_end(step.out)?
    } else {
        Value::Null
    };
    if scan && step.stop_at.is_none() && end["inputs"].as_u64() != Some(step.rows as u64) {
        return Err(format!(
            "the end line counts {} inputs, the manifest has {} rows",
            end["inputs"], step.rows
        ));
    }
    let first_call = match step.first_call {
        true => first_call_after(log, run.started_at)?,
        false => None,
    };
    let r = MRun {
        label: step.label,
        rows: step.rows,
        requests: StatsDelta::new(&before, &after).requests,
        run,
        end,
        journal_before,
        opened,
        outputs,
        first_call,
        items_at_stop,
    };
    print_run(&r);
    Ok(r)
}

fn print_run(r: &MRun) {
    let mut extra = String::new();
    if let Some(o) = r.opened {
        let _ = write!(extra, ", image files opened {}", o.opened_text());
    }
    if let Some((n, changed)) = &r.outputs {
        let _ = write!(extra, ", outputs rewritten {} of {n}", changed.len());
    }
    if let Some(s) = r.first_call {
        let _ = write!(extra, ", first request after {s:.2} s");
    }
    if let Some(n) = r.items_at_stop {
        let _ = write!(extra, ", {n} items recorded when it stopped");
    }
    eprintln!(
        "      {}, read {}{extra}",
        r.run.summary(r.requests),
        r.run.rchar().map_or("?".into(), mib)
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// Seconds from `since` to the first request the emulator logged at or after it.
pub(crate) fn first_call_after(log: &Path, since: SystemTime) -> Result<Option<f64>, String> {
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?;
    Ok(request_arrivals(log)?
        .into_iter()
        .find(|t| *t >= since)
        .map(|t| (t - since).as_secs_f64()))
}

/// Follows a growing journal and sends SIGINT once it holds `at` item lines.
struct Stopper {
    journal: PathBuf,
    file: Option<File>,
    partial: Vec<u8>,
    items: usize,
    at: usize,
    signalled: bool,
    last_poll: Option<Instant>,
}

impl Stopper {
    fn new(journal: PathBuf, at: usize) -> Self {
        Self {
            journal,
            file: None,
            partial: Vec::new(),
            items: 0,
            at,
            signalled: false,
            last_poll: None,
        }
    }

    /// Called about every millisecond; reads what was appended every 20 ms.
    fn tick(&mut self, pid: libc::pid_t) {
        if self.signalled
            || self
                .last_poll
                .is_some_and(|t| t.elapsed() < Duration::from_millis(20))
        {
            return;
        }
        self.last_poll = Some(Instant::now());
        if self.poll().is_ok() && self.items >= self.at {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGINT) };
            self.signalled = true;
        }
    }

    /// Count the item lines appended since the last call.
    fn poll(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(File::open(&self.journal)?);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            self.partial.extend_from_slice(&chunk[..n]);
            let complete = self
                .partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            self.items += self.partial[..complete]
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(br#"{"type":"item""#))
                .count();
            self.partial.drain(..complete);
        }
    }

    /// After the run: the item lines in the journal; an error if SIGINT was never sent.
    fn finish(&mut self) -> Result<usize, String> {
        self.poll()
            .map_err(|e| format!("read {}: {e}", self.journal.display()))?;
        if !self.signalled {
            return Err(format!(
                "the run ended with {} items recorded, before the {} it was to be stopped at",
                self.items, self.at
            ));
        }
        Ok(self.items)
    }
}

// ---------------------------------------------------------------------------------------------
// Rows, details, JSON
// ---------------------------------------------------------------------------------------------

fn million_rows(runs: &[MRun], inputs: &Inputs) -> Vec<Row> {
    let get = |label: &str| runs.iter().find(|r| r.label == label);
    let mut rows = Vec::new();
    if let Some(r) = get("first 1M") {
        rows.push(Row::info(
            "Million: first run of 1,000,000 rows: wall time",
            format!(
                "{:.1} s ({} requests)",
                r.run.wall.as_secs_f64(),
                r.requests
            ),
        ));
    }
    for (what, small, large) in [
        ("first run", "first 100k", "first 1M"),
        ("rerun of the finished run", "rerun 100k", "rerun 1M"),
        ("report", "report 100k", "report 1M"),
    ] {
        rss_rows(&mut rows, what, get(small), get(large));
    }
    if let Some(r) = get("rerun 1M") {
        rerun_rows(&mut rows, r, inputs);
    }
    if let Some(r) = get("report 1M") {
        rows.push(Row::info(
            "Million: report of the 1M run: wall time",
            format!("{:.1} s", r.run.wall.as_secs_f64()),
        ));
    }
    if let Some(r) = get("resume 1M") {
        resume_rows(&mut rows, r, get("stopped 1M"));
    }
    rows
}

/// Peak RSS at 1M rows against the limit, and against the same run at 100k rows.
fn rss_rows(rows: &mut Vec<Row>, what: &str, small: Option<&MRun>, large: Option<&MRun>) {
    let Some(large) = large else { return };
    rows.push(Row::check(
        &format!("Million: {what}: peak RSS at 1M rows"),
        format!("{:.1} MiB", large.run.rss_mib()),
        "<= 64 MiB",
        large.run.rss_mib() <= MAX_RSS_MIB,
    ));
    if let Some(small) = small {
        let ratio = large.run.rss_mib() / small.run.rss_mib();
        rows.push(Row::check(
            &format!("Million: {what}: peak RSS 1M / 100k rows"),
            format!(
                "{ratio:.2}x ({:.1} / {:.1} MiB)",
                large.run.rss_mib(),
                small.run.rss_mib()
            ),
            "<= 1.3x",
            ratio <= MAX_RSS_RATIO,
        ));
    }
}

/// The rerun of the finished 1M run: no call, no image read, no output rewritten, quick.
fn rerun_rows(rows: &mut Vec<Row>, r: &MRun, inputs: &Inputs) {
    rows.push(Row::check(
        "Million: rerun of the finished 1M run: requests",
        r.requests.to_string(),
        "0",
        r.requests == 0,
    ));
    if let Some(o) = r.opened {
        rows.push(Row::check(
            "Million: rerun: image files opened (inotify)",
            format!("{} ({} reads)", o.opened_text(), o.read),
            "0",
            o.opened == 0 && o.read == 0 && !o.overflowed,
        ));
    }
    if let Some(rchar) = r.run.rchar() {
        // What the rerun read before the evidence checks (at most the journal, the manifest
        // and 16 MiB), and the journal twice more: the verification reads all of it before
        // anything is trusted, and SHA256SUMS hashes it (it lists the journal, which the rerun
        // extends).
        let allowed = 3 * r.journal_before + inputs.large_bytes + RCHAR_SLACK;
        rows.push(Row::check(
            "Million: rerun: bytes read by the process (rchar)",
            format!(
                "{} (a pass over the rows' images: {})",
                mib(rchar),
                mib(inputs.row_image_bytes)
            ),
            &format!("<= 3 x journal + manifest + 16 MiB = {}", mib(allowed)),
            rchar <= allowed,
        ));
    }
    if let Some((n, changed)) = &r.outputs {
        // SHA256SUMS lists the journal, which every run extends: it alone is brought up to date.
        let others: Vec<&String> = changed
            .iter()
            .filter(|f| !f.starts_with("SHA256SUMS"))
            .collect();
        rows.push(Row::check(
            "Million: rerun: output files rewritten (mtime, size, inode)",
            format!("{} of {n} besides SHA256SUMS", others.len()),
            "0 (SHA256SUMS apart)",
            others.is_empty(),
        ));
    }
    rows.push(Row::check(
        "Million: rerun: wall time",
        format!("{:.2} s", r.run.wall.as_secs_f64()),
        "<= 10 s",
        r.run.wall.as_secs_f64() <= MAX_RERUN_SECS,
    ));
}

/// The resume of the run stopped at 90 %: the first new call within 10 s.
fn resume_rows(rows: &mut Vec<Row>, r: &MRun, stopped: Option<&MRun>) {
    rows.push(Row::check(
        "Million: resume of a 1M run stopped at 90 %: first new call after start",
        r.first_call
            .map_or("no call".into(), |s| format!("{s:.2} s")),
        "<= 10 s",
        r.first_call.is_some_and(|s| s <= MAX_FIRST_CALL_SECS),
    ));
    let left = stopped
        .and_then(|s| s.items_at_stop)
        .map_or(String::new(), |n| {
            format!(" ({} rows left at the stop)", ROWS.saturating_sub(n))
        });
    rows.push(Row::info(
        "Million: resume: requests, image files opened",
        format!(
            "{} requests, {} opened{left}",
            r.requests,
            r.opened.map_or("?".into(), |o| o.opened_text())
        ),
    ));
    rows.push(Row::info(
        "Million: resume: wall time, peak RSS",
        format!(
            "{:.1} s, {:.1} MiB",
            r.run.wall.as_secs_f64(),
            r.run.rss_mib()
        ),
    ));
}

fn million_details(runs: &[MRun], inputs: &Inputs) -> String {
    let mut d = String::new();
    let _ = writeln!(
        d,
        "  one manifest of {ROWS} id,path rows cycling through {OLD_IMAGES} distinct 48x48 JPEGs; from \
         row {STOP_AT} on every {NEW_EVERY}th row is one of {NEW_IMAGES} images the first 90 % never uses; \
         the 100k runs use its first {SMALL_ROWS} rows (same keys). Images {}, the manifest {}, \
         one pass over the 1M rows' images {}.",
        mib(inputs.image_bytes),
        mib(inputs.large_bytes),
        mib(inputs.row_image_bytes)
    );
    let _ = writeln!(
        d,
        "  one emulator (--rate-limit 0/60s, no latency, --log); every scan --rate {UNTHROTTLED} \
         --concurrency {CONCURRENCY}, default dedupe. 'stopped 1M' is the full manifest's run, \
         SIGINT once its journal held {STOP_AT} item lines; 'resume 1M' the same command after it."
    );
    let _ = writeln!(
        d,
        "  read = rchar of /proc/<pid>/io after exit: bytes returned by read()/pread() on files \
         (journal, manifest, images, /proc), not socket recv() nor mmap; disk = its read_bytes, \
         what the block device delivered (0 when the page cache holds everything); journal = \
         the journal's size before the run. opened = IN_OPEN events of inotify on the two image \
         folders (image files only)."
    );
    let _ = writeln!(
        d,
        "  {:<11} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9} {:>10} {:>9}  notes",
        "run",
        "rows",
        "wall s",
        "CPU s",
        "RSS MiB",
        "requests",
        "read MiB",
        "disk MiB",
        "journal",
        "opened"
    );
    for r in runs {
        let _ = writeln!(
            d,
            "  {:<11} {:>7} {:>8.2} {:>8.2} {:>8.1} {:>8} {:>11} {:>9} {:>10} {:>9}  {}",
            r.label,
            r.rows,
            r.run.wall.as_secs_f64(),
            r.run.cpu().as_secs_f64(),
            r.run.rss_mib(),
            r.requests,
            r.run
                .rchar()
                .map_or("?".into(), |b| format!("{:.1}", b as f64 / MIB)),
            r.run.io.map_or("?".into(), |io| format!(
                "{:.1}",
                io.read_bytes as f64 / MIB
            )),
            format!("{:.1}", r.journal_before as f64 / MIB),
            r.opened.map_or("-".into(), |o| o.opened.to_string()),
            run_notes(r)
        );
    }
    d
}

/// The notes column of one run.
fn run_notes(r: &MRun) -> String {
    let mut notes = Vec::new();
    if let Some(n) = r.items_at_stop {
        notes.push(format!("exit {}, {n} items recorded", r.run.code));
    }
    if let Some((n, changed)) = &r.outputs {
        notes.push(match changed.is_empty() {
            true => format!("no output of {n} rewritten"),
            false => format!("rewrote {}", changed.join(" ")),
        });
    }
    if let Some(s) = r.first_call {
        notes.push(format!("first request {s:.2} s after start"));
    }
    if !r.end.is_null() {
        notes.push(format!(
            "end: {} recorded, {} skipped, {} deduplicated",
            r.end["recorded"], r.end["skipped_done"], r.end["deduplicated"]
        ));
    }
    notes.join("; ")
}

fn million_json(runs: &[MRun], inputs: &Inputs) -> Value {
    json!({
        "rows": ROWS,
        "small_rows": SMALL_ROWS,
        "stop_at": STOP_AT,
        "distinct_images": OLD_IMAGES + NEW_IMAGES,
        "images_only_in_last_10_percent": NEW_IMAGES,
        "image_bytes": inputs.image_bytes,
        "row_image_bytes": inputs.row_image_bytes,
        "manifest_bytes": inputs.large_bytes,
        "concurrency": CONCURRENCY,
        "rate": UNTHROTTLED,
        "runs": runs.iter().map(|r| {
            let mut run = r.run.scan_json(r.label, r.rows, r.requests, &r.end);
            run.extend([
                ("journal_bytes_before".into(), json!(r.journal_before)),
                ("image_files".into(), json!(r.opened.map(|o| o.json()))),
                ("outputs".into(), json!(r.outputs.as_ref()
                    .map(|(n, changed)| json!({"files": n, "rewritten": changed})))),
                ("first_call_secs".into(), json!(r.first_call.map(|s| round(s, 3)))),
                ("items_at_stop".into(), json!(r.items_at_stop)),
            ]);
            run
        }).collect::<Vec<_>>(),
    })
}
