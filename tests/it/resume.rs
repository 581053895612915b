//! Integration tests: resume, interruption and crash safety (issue 4). kill -9, Ctrl-C, SIGTERM,
//! the out-dir lock, changed settings, torn journals, budgets and deduplication, each proved
//! against the journal and the emulator's own counters and request log.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::ImageFormat;
use liveness_batch::emulator::Emulator;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

use crate::common::{self, KEY, ScanRun};

/// `scan SRC --out OUT` with the fast settings, `--quiet`, and `extra`.
fn args(src: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    ScanRun::against(None, out).source(src).args(extra).argv()
}

/// Like [`args`] but without `--quiet`, for checks on the summary and messages on stderr.
fn loud_args(src: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    ScanRun::against(None, out)
        .source(src)
        .loud()
        .args(extra)
        .argv()
}

async fn run(emu: &Emulator, args: &[String]) -> common::Run {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_bin(&refs, Some(&emu.base_url()), Some(KEY)).await
}

/// Start the binary in the background against `emu`, output captured.
fn spawn(emu: &Emulator, args: &[String]) -> Child {
    spawn_with(emu, args, Stdio::piped)
}

fn spawn_with(emu: &Emulator, args: &[String], out: fn() -> Stdio) -> Child {
    launch(emu, args, Stdio::null(), out)
}

/// Start the binary against `emu` with this standard input and output.
fn launch(emu: &Emulator, args: &[String], stdin: Stdio, out: fn() -> Stdio) -> Child {
    Command::new(common::bin())
        .args(args)
        .env("DIDIT_API_KEY", KEY)
        .env("DIDIT_BASE_URL", emu.base_url())
        .env_remove("RUST_LOG")
        .stdin(stdin)
        .stdout(out())
        .stderr(out())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn liveness-batch")
}

fn send_signal(child: &Child, sig: libc::c_int) {
    let pid = child.id().expect("the child is still running") as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// `n` distinct 64×64 JPEGs `img000.jpg`... under `dir`; returns key → sha256 (hex).
fn images(dir: &Path, n: u64, seed0: u64) -> HashMap<String, String> {
    (0..n)
        .map(|i| {
            let bytes = common::encode(&common::photo(seed0 + i, 64, 64), ImageFormat::Jpeg);
            let key = format!("img{i:03}.jpg");
            common::write(dir, &key, &bytes);
            (key, sha_hex(&bytes))
        })
        .collect()
}

/// A temporary folder, `src` in it with `n` distinct images from `seed0` on (see [`images`]),
/// the path of `out` next to it, key -> sha256 of every image, and the set of keys.
type Batch = (
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    HashMap<String, String>,
    BTreeSet<String>,
);

fn batch(n: u64, seed0: u64) -> Batch {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let shas = images(&src, n, seed0);
    let inputs = shas.keys().cloned().collect();
    let out = tmp.path().join("out");
    (tmp, src, out, shas, inputs)
}

/// An emulator that answers after `latency` plus up to `jitter` and logs every request to `log`.
async fn logging_emulator(log: &Path, latency_ms: u64, jitter_ms: u64) -> Emulator {
    let log = log.to_path_buf();
    common::emulator(|c| {
        c.latency = Duration::from_millis(latency_ms);
        c.jitter = Duration::from_millis(jitter_ms);
        c.log = Some(log);
    })
    .await
}

/// An emulator on which every request stalls for 5 s.
async fn stalling_emulator() -> Emulator {
    common::emulator(|c| {
        c.faults.stall = 1.0;
        c.stall = Duration::from_secs(5);
    })
    .await
}

/// Start a run, kill -9 it after `moment_ms` unless it has finished by then, reap it, and let
/// anything it had on the wire reach the emulator and its log. Returns the exit status and
/// whether the run had finished before the kill.
async fn kill_9_after(
    emu: &Emulator,
    argv: &[String],
    moment_ms: u64,
) -> (std::process::ExitStatus, bool) {
    let mut child = spawn_with(emu, argv, Stdio::null);
    tokio::time::sleep(Duration::from_millis(moment_ms)).await;
    let finished_first = child.try_wait().unwrap().is_some();
    if !finished_first {
        child.start_kill().unwrap();
    }
    let status = child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    (status, finished_first)
}

/// Note, for each journaled item (each must hold a result), how many logged requests carried
/// its image when its record was first seen; returns the current counts.
fn freeze_journaled(
    items: &[&Value],
    log: &Path,
    frozen: &mut HashMap<String, u64>,
) -> HashMap<String, u64> {
    let counts = log_counts(log);
    for it in items {
        assert_eq!(it["class"], "result", "{it}");
        let sha = it["sha256"].as_str().unwrap();
        frozen
            .entry(sha.to_string())
            .or_insert(counts.get(sha).copied().unwrap_or(0));
    }
    counts
}

/// No image in `frozen` was sent again after its record was journaled; returns the log counts.
fn assert_none_sent_again(log: &Path, frozen: &HashMap<String, u64>) -> HashMap<String, u64> {
    let counts = log_counts(log);
    for (sha, logged) in frozen {
        assert_eq!(
            counts.get(sha).copied().unwrap_or(0),
            *logged,
            "image {sha} was sent again after its result was in the journal"
        );
    }
    counts
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A journal read the way a crashed run leaves it: every complete line must parse; a last line
/// without its newline that is not JSON is reported as torn.
struct Journal {
    lines: Vec<Value>,
    torn: bool,
    ends_with_newline: bool,
}

impl Journal {
    fn read(out: &Path) -> Option<Journal> {
        let bytes = std::fs::read(out.join("journal.jsonl")).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let mut parts: Vec<&str> = text.split('\n').collect();
        let last = parts.pop().unwrap_or("");
        let mut lines: Vec<Value> = parts
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("journal line {} does not parse ({e}): {l}", i + 1))
            })
            .collect();
        let mut torn = false;
        if !last.is_empty() {
            match serde_json::from_str(last) {
                Ok(v) => lines.push(v),
                Err(_) => torn = true,
            }
        }
        Some(Journal {
            lines,
            torn,
            ends_with_newline: bytes.is_empty() || bytes.ends_with(b"\n"),
        })
    }

    fn items(&self) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == "item").collect()
    }

    fn item_count(out: &Path) -> usize {
        Journal::read(out).map_or(0, |j| j.items().len())
    }
}

/// The emulator's request log: POSTs to the endpoint, in the order they were answered.
fn logged_posts(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "POST" && v["path"] == "/v3/passive-liveness/")
        .collect()
}

/// How many logged POSTs carried each image (by sha256).
fn log_counts(log: &Path) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for v in logged_posts(log) {
        if let Some(sha) = v["sha256"].as_str() {
            *m.entry(sha.to_string()).or_default() += 1;
        }
    }
    m
}

/// Keys of results.csv, checking each key appears once.
fn csv_keys(out: &Path) -> BTreeSet<String> {
    let rows = common::csv_rows(&out.join("results.csv"));
    let keys: BTreeSet<String> = rows.iter().map(|r| r["key"].clone()).collect();
    assert_eq!(keys.len(), rows.len(), "results.csv repeats a key");
    keys
}

/// Assert results.csv holds exactly `want` keys, each with a result.
fn assert_all_results(out: &Path, want: &BTreeSet<String>) {
    let rows = common::csv_rows(&out.join("results.csv"));
    let keys = csv_keys(out);
    assert_eq!(&keys, want, "results.csv keys differ from the inputs");
    for r in &rows {
        assert_eq!(r["class"], "result", "row without a result: {r:?}");
    }
}

/// Every item line of the journal names a distinct key.
fn assert_one_record_per_key(items: &[&Value]) {
    let mut seen = BTreeSet::new();
    for i in items {
        let key = i["key"].as_str().expect("item key");
        assert!(seen.insert(key.to_string()), "{key} was recorded twice");
    }
}

fn leftover_temp_files(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// A tiny seeded xorshift, so the kill moments are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Acceptance 1: kill -9 at ten random moments of a 300-item run, rerunning after each. The
/// final outputs hold one result per input; no image is sent again once its result is in the
/// journal; each kill wastes at most the requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_never_repays_a_journaled_item() {
    const N: u64 = 300;
    const CONCURRENCY: u64 = 8;
    const KILLS: usize = 10;
    let (tmp, src, out, shas, inputs) = batch(N, 7_000);
    let log = tmp.path().join("emulator.jsonl");
    // Latency 100-300 ms: with 8 in flight the run takes several seconds, so every kill lands
    // mid-run with requests in flight.
    let emu = logging_emulator(&log, 100, 200).await;
    let argv = args(
        &src,
        &out,
        &["--rate", "400/s", "--concurrency", "8", "--no-dedupe"],
    );

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // sha256 -> logged requests for it when its record was first seen in the journal.
    let mut frozen: HashMap<String, u64> = HashMap::new();
    let mut extras = Vec::new();
    let mut torn_seen = 0;
    for k in 0..KILLS {
        let requests_before = emu.stats().requests;
        let items_before = Journal::item_count(&out);
        let moment = 50 + rng.next() % 1450;
        let (status, finished_first) = kill_9_after(&emu, &argv, moment).await;

        let journal = Journal::read(&out);
        let (items, torn) = match &journal {
            Some(j) => (j.items(), j.torn),
            None => (Vec::new(), false),
        };
        torn_seen += usize::from(torn);
        assert_one_record_per_key(&items);
        let sent = emu.stats().requests - requests_before;
        let recorded = (items.len() - items_before) as u64;
        assert!(
            sent >= recorded,
            "kill {k}: {recorded} new records but only {sent} requests"
        );
        let extra = sent - recorded;
        eprintln!(
            "kill {k}: at {moment} ms ({status}){}: {sent} requests, {recorded} recorded, \
             {extra} extra{}",
            if finished_first {
                ", the run had already finished"
            } else {
                ""
            },
            if torn { ", torn journal tail" } else { "" }
        );
        assert!(
            extra <= CONCURRENCY,
            "kill {k}: {extra} requests were sent but not recorded; at most {CONCURRENCY} can be in flight"
        );
        extras.push(extra);
        let counts = freeze_journaled(&items, &log, &mut frozen);
        for it in &items {
            let logged = counts.get(it["sha256"].as_str().unwrap()).copied();
            assert!(
                logged.unwrap_or(0) >= 1,
                "{} is recorded but was never sent",
                it["key"]
            );
        }
    }

    let requests_before = emu.stats().requests;
    let items_before = Journal::item_count(&out);
    let last = run(&emu, &argv).await;
    assert_eq!(last.code, 0, "the final rerun completes: {last:?}");
    let final_sent = emu.stats().requests - requests_before;

    // The journal is clean: every line parses, it ends with a newline, one record per key.
    let journal = Journal::read(&out).unwrap();
    assert!(
        !journal.torn && journal.ends_with_newline,
        "torn final journal"
    );
    let items = journal.items();
    assert_one_record_per_key(&items);
    assert_eq!(items.len() as u64, N);
    assert_eq!(
        final_sent,
        (items.len() - items_before) as u64,
        "the final run sends exactly what it records"
    );
    let end = journal.lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["outcome"], "completed");
    assert_all_results(&out, &inputs);
    assert!(
        leftover_temp_files(&out).is_empty(),
        "{:?}",
        leftover_temp_files(&out)
    );
    let s = common::summary(&out);
    assert_eq!(s["items"]["total"], N);
    assert_eq!(s["items"]["with_result"], N);
    assert_eq!(s["outcome"], "completed");

    // The emulator's log: nothing was sent again after its record was journaled.
    let counts = assert_none_sent_again(&log, &frozen);
    for (key, sha) in &shas {
        assert!(counts.contains_key(sha), "{key} never reached the emulator");
    }
    let total_extra: u64 = extras.iter().sum();
    let logged_extra: u64 = counts.values().map(|c| c - 1).sum();
    let stats = emu.stats();
    eprintln!(
        "kill -9 x{KILLS}: extra submissions per kill {extras:?} (total {total_extra}, max {}); \
         {logged_extra} repeats in the request log; emulator requests {}, credits used {}; \
         torn tails seen {torn_seen}; final run sent {final_sent}",
        extras.iter().max().unwrap(),
        stats.requests,
        stats.credits_used
    );
    assert_eq!(stats.requests, N + total_extra);
    assert!(logged_extra <= total_extra);
    // Every image Didit saw more than once is counted as a possible double charge: the dead
    // runs announced their uploads before sending them.
    let counted = s["requests"]["possible_double_charges"].as_u64().unwrap();
    assert!(
        counted >= logged_extra,
        "the summary counts {counted} possible double charges; Didit saw {logged_extra} repeats"
    );
}

/// kill -9 with deduplication on: 60 distinct images, each in 5 files. Once an image's result
/// is journaled it is never sent again (its copies reuse it, in this run or the next), and the
/// final outputs hold one result per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_duplicates_never_resends_a_journaled_image() {
    const DISTINCT: u64 = 60;
    const COPIES: u64 = 5;
    const CONCURRENCY: u64 = 4;
    const KILLS: usize = 5;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("emulator.jsonl");
    let emu = logging_emulator(&log, 200, 200).await;
    let src = tmp.path().join("src");
    let mut inputs = BTreeSet::new();
    let mut bytes_of = Vec::new();
    for i in 0..DISTINCT {
        bytes_of.push(common::encode(
            &common::photo(130_000 + i, 64, 64),
            ImageFormat::Jpeg,
        ));
    }
    // Copies interleaved, so identical images are far apart in the input order.
    for c in 0..COPIES {
        for (i, bytes) in bytes_of.iter().enumerate() {
            let key = format!("c{c}/img{i:03}.jpg");
            common::write(&src, &key, bytes);
            inputs.insert(key);
        }
    }
    let out = tmp.path().join("out");
    let argv = args(&src, &out, &["--rate", "400/s", "--concurrency", "4"]);

    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut frozen: HashMap<String, u64> = HashMap::new();
    for k in 0..KILLS {
        let requests_before = emu.stats().requests;
        let moment = 100 + rng.next() % 900;
        kill_9_after(&emu, &argv, moment).await;
        let journal = Journal::read(&out);
        let items = journal.as_ref().map(Journal::items).unwrap_or_default();
        assert_one_record_per_key(&items);
        let sent = emu.stats().requests - requests_before;
        let leaders = items.iter().filter(|i| i["duplicate_of"].is_null()).count();
        eprintln!(
            "dedupe kill {k} at {moment} ms: {sent} requests; journal {} records, {leaders} sent",
            items.len()
        );
        freeze_journaled(&items, &log, &mut frozen);
    }
    let before = emu.stats().requests;
    let last = run(&emu, &argv).await;
    assert_eq!(last.code, 0, "{last:?}");
    let journal = Journal::read(&out).unwrap();
    assert!(!journal.torn && journal.ends_with_newline);
    let items = journal.items();
    assert_one_record_per_key(&items);
    assert_all_results(&out, &inputs);
    assert_none_sent_again(&log, &frozen);
    // The final run sends at most one request per image not yet journaled.
    let not_yet = DISTINCT - frozen.len() as u64;
    assert!(
        emu.stats().requests - before <= not_yet,
        "final run: {} requests for {not_yet} images without a result",
        emu.stats().requests - before
    );
    let stats = emu.stats();
    eprintln!(
        "dedupe kill -9 x{KILLS}: {} requests for {DISTINCT} distinct images in {} files \
         (credits used {})",
        stats.requests,
        inputs.len(),
        stats.credits_used
    );
    assert!(stats.requests <= DISTINCT + CONCURRENCY * KILLS as u64);
}

/// A run stopped while its requests are in flight and time out (an unknown outcome: the API may
/// have processed and billed them) does not retry them; their records say so, and the rerun
/// that sends them again counts the possible double charges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_after_an_unknown_outcome_keeps_the_possible_double_charge() {
    const N: u64 = 4;
    let (_tmp, src, out, _, inputs) = batch(N, 140_000);
    let stalling = stalling_emulator().await;
    // A long backoff: after the timeout a worker would wait; the stop must cut that short.
    let child = spawn(
        &stalling,
        &[
            args(&src, &out, &["--timeout", "1", "--concurrency", "4"]),
            vec!["--backoff-ms".into(), "60000".into()],
        ]
        .concat(),
    );
    common::wait_until("4 requests in flight", || stalling.stats().requests >= N).await;
    send_signal(&child, libc::SIGINT);
    let stopped = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    assert_eq!(
        stalling.stats().requests,
        N,
        "nothing is retried after the stop"
    );
    let items = common::journal_items(&out);
    assert_eq!(items.len() as u64, N, "each request sent has a record");
    for i in &items {
        assert_eq!(i["attempts"], 1, "{i}");
        assert_eq!(i["action"], "rerun", "{i}");
        assert_ne!(i["class"], "result", "{i}");
    }

    let healthy = common::emulator(|_| {}).await;
    let again = run(&healthy, &args(&src, &out, &["--retry-failed"])).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(healthy.stats().requests, N);
    assert_all_results(&out, &inputs);
    let s = common::summary(&out);
    assert_eq!(
        s["requests"]["possible_double_charges"], N,
        "each image was sent again after a timeout with its body sent: {}",
        s["requests"]
    );
}

/// Interrupt (Ctrl-C or SIGTERM) a run once requests are flowing; check the exit code, the
/// journal, the summary; then rerun and check only the rest is sent.
async fn stop_mid_run_then_resume(sig: libc::c_int, code: i32, outcome: &str, extra: &[&str]) {
    const N: u64 = 60;
    let (tmp, src, out, _, inputs) = batch(N, 20_000 + sig as u64 * 100);
    let log = tmp.path().join("emulator.jsonl");
    let emu = logging_emulator(&log, 100, 50).await;

    let mut flags = vec!["--concurrency", "4"];
    flags.extend_from_slice(extra);
    let child = spawn(&emu, &loud_args(&src, &out, &flags));
    common::wait_until("requests to flow", || emu.stats().requests >= 8).await;
    send_signal(&child, sig);
    let stopped = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains("stopping: no new requests"), "{stderr}");
    assert!(stderr.contains("rerun the same command"), "{stderr}");

    let journal = Journal::read(&out).unwrap();
    assert!(!journal.torn && journal.ends_with_newline);
    let items = journal.items();
    assert_one_record_per_key(&items);
    let done = items.len() as u64;
    assert!(
        (1..N).contains(&done),
        "the signal should land mid-run: {done} of {N} done"
    );
    for it in &items {
        assert_eq!(it["class"], "result", "requests in flight finish: {it}");
    }
    // Every request sent was answered and recorded: nothing paid for is lost.
    assert_eq!(
        emu.stats().requests,
        done,
        "requests sent vs records written"
    );
    let end = journal.lines.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["outcome"], outcome);
    assert_eq!(end["exit_code"], code);
    assert_eq!(end["recorded"], done);
    assert_eq!(end["inputs"], N, "{end}");
    assert_eq!(end["not_processed"], N - done, "{end}");
    let s = common::summary(&out);
    assert_eq!(s["interrupted"], true, "{s}");
    assert_eq!(s["outcome"], outcome);
    assert!(
        s["stop_reason"]
            .as_str()
            .is_some_and(|r| r.contains("rerun")),
        "{s}"
    );
    assert_eq!(csv_keys(&out).len() as u64, done);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains(outcome), "summary.md says {outcome}: {md}");
    let first_run: HashMap<String, u64> = log_counts(&log);

    // The rerun sends exactly the items not done yet.
    let before = emu.stats().requests;
    let again = run(&emu, &args(&src, &out, &flags)).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(emu.stats().requests - before, N - done);
    let counts = log_counts(&log);
    for it in &items {
        let sha = it["sha256"].as_str().unwrap();
        assert_eq!(
            counts.get(sha),
            first_run.get(sha),
            "{} was sent again",
            it["key"]
        );
    }
    assert_all_results(&out, &inputs);
    let s = common::summary(&out);
    assert_eq!(s["outcome"], "completed", "{s}");
    assert_eq!(s["interrupted"], false, "{s}");
    // The report's money figures agree with what the API counted, across both runs.
    let stats = emu.stats();
    assert_eq!(s["requests"]["sent"], stats.requests, "{}", s["requests"]);
    assert_eq!(s["credits"]["used"], stats.credits_used, "{}", s["credits"]);
    let journal = Journal::read(&out).unwrap();
    assert_one_record_per_key(&journal.items());
    assert_eq!(journal.lines.last().unwrap()["outcome"], "completed");
}

/// Acceptance 2: Ctrl-C mid-run exits 130, the summary says interrupted, the journal parses and
/// ends with an `end` line; the rerun sends only what was not done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_exits_130_and_the_rerun_sends_only_the_rest() {
    stop_mid_run_then_resume(libc::SIGINT, 130, "interrupted", &[]).await;
}

/// The same without deduplication (the dispatcher then tracks no leaders): in-flight requests
/// still finish and are recorded, and the counts still add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_without_dedupe_still_records_every_request_in_flight() {
    stop_mid_run_then_resume(libc::SIGINT, 130, "interrupted", &["--no-dedupe"]).await;
}

/// SIGTERM (cron, systemd, Kubernetes) behaves like the first Ctrl-C and exits 143.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_behaves_like_the_first_ctrl_c_and_exits_143() {
    stop_mid_run_then_resume(libc::SIGTERM, 143, "terminated", &[]).await;
}

/// A second Ctrl-C exits at once without waiting for requests in flight, leaving a journal of
/// whole lines; the next run completes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_and_the_next_run_completes() {
    const N: u64 = 12;
    let (_tmp, src, out, _, inputs) = batch(N, 30_000);
    // Answers take 60 s: a run that waited for them would record them (it is given 15 s).
    let slow = common::emulator(|c| c.latency = Duration::from_secs(60)).await;

    let mut child = spawn(&slow, &loud_args(&src, &out, &["--concurrency", "4"]));
    let (stderr, read_all) = tap(child.stderr.take().unwrap());
    common::wait_until("4 requests in flight", || slow.stats().requests >= 4).await;
    send_signal(&child, libc::SIGINT);
    // The second signal only once the first was seen: two signals close together may reach
    // the watcher as one.
    common::wait_until("the first signal seen", || {
        stderr.lock().unwrap().contains("stopping:")
    })
    .await;
    send_signal(&child, libc::SIGINT);
    let status = exit_code_after_signal(&mut child, "the second Ctrl-C").await;
    read_all.await.unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(status, Some(130), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");

    let journal = Journal::read(&out).expect("a journal");
    assert_eq!(journal.lines[0]["type"], "run");
    assert!(
        journal.items().is_empty(),
        "it exited before any answer came back, so nothing is recorded"
    );
    assert!(
        journal.lines.iter().all(|l| l["type"] != "end"),
        "no end line: the process exited at once"
    );

    let fast = common::emulator(|_| {}).await;
    let again = run(&fast, &loud_args(&src, &out, &[])).await;
    assert_eq!(again.code, 0, "{again:?}");
    if journal.torn {
        assert!(again.stderr.contains("cut short"), "{}", again.stderr);
    }
    assert_eq!(fast.stats().requests, N);
    let journal = Journal::read(&out).unwrap();
    assert!(!journal.torn && journal.ends_with_newline);
    assert_one_record_per_key(&journal.items());
    assert_all_results(&out, &inputs);
}

/// Everything read from `pipe` so far, gathered in the background by a task that ends at the
/// end of the pipe.
type Tap = (Arc<Mutex<String>>, tokio::task::JoinHandle<()>);

fn tap(mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Tap {
    use tokio::io::AsyncReadExt;
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (text, task)
}

/// Spawn `scan` reading its manifest from a standard input the test keeps open; its output
/// goes to `out`.
fn spawn_stdin(emu: &Emulator, argv: &[String], out: fn() -> Stdio) -> Child {
    launch(emu, argv, Stdio::piped(), out)
}

/// A `path` manifest of the images in `src` (keys of `shas`), in key order.
fn path_manifest(src: &Path, shas: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = shas.keys().collect();
    keys.sort();
    let mut manifest = String::from("path\n");
    for k in keys {
        manifest.push_str(&format!("{}\n", src.join(k).display()));
    }
    manifest
}

/// Wait up to 15 s for `child` to exit after a signal; fail (and kill it) if it does not.
async fn exit_code_after_signal(child: &mut Child, what: &str) -> Option<i32> {
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(status) => status.unwrap().code(),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            panic!("{what}: the first Ctrl-C did not stop the run (still running 15 s later)");
        }
    }
}

/// `find ... | liveness-batch scan -`: the producer may still be writing when Ctrl-C comes.
/// The first Ctrl-C must stop the run and write the outputs without waiting for the end of the
/// input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_scan_whose_stdin_manifest_is_still_open() {
    use tokio::io::AsyncWriteExt;
    let emu = common::emulator(|c| c.latency = Duration::from_millis(100)).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let shas = images(&src, 20, 150_000);
    let out = tmp.path().join("out");
    let argv = args(Path::new("-"), &out, &["--concurrency", "2"]);
    let mut child = spawn_stdin(&emu, &argv, Stdio::null);
    let mut stdin = child.stdin.take().unwrap();
    let manifest = path_manifest(&src, &shas);
    stdin.write_all(manifest.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    common::wait_until("requests to flow", || emu.stats().requests >= 4).await;
    send_signal(&child, libc::SIGINT);
    let code = exit_code_after_signal(&mut child, "scan -").await;
    drop(stdin);
    assert_eq!(code, Some(130));
    let end = common::journal_lines(&out).pop().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["outcome"], "interrupted", "{end}");
    assert_eq!(
        end["input_unread"], true,
        "the open pipe was not waited for: {end}"
    );
    assert_eq!(common::summary(&out)["interrupted"], true);
    assert_eq!(common::summary(&out)["inputs"]["input_unread"], true);
}

/// A dry run over a large backlog reads and hashes every file, which takes a while: the first
/// Ctrl-C must stop it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_dry_run() {
    use tokio::io::AsyncWriteExt;
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut argv = args(Path::new("-"), &out, &[]);
    argv.push("--dry-run".into());
    let mut child = spawn_stdin(&emu, &argv, Stdio::null);
    let mut stdin = child.stdin.take().unwrap();
    let mut manifest = String::from("path\n");
    for i in 0..6000 {
        manifest.push_str(&format!("{}/missing/{i:05}.jpg\n", tmp.path().display()));
    }
    // More than a pipe holds: once written, the run is well under way.
    stdin.write_all(manifest.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_signal(&child, libc::SIGINT);
    let code = exit_code_after_signal(&mut child, "scan --dry-run -").await;
    drop(stdin);
    assert_eq!(code, Some(130));
    assert_eq!(emu.stats().requests, 0);
    assert!(
        !out.join("journal.jsonl").exists(),
        "a dry run writes nothing"
    );
}

/// Acceptance 4: a rerun with another threshold is refused (exit 2) naming both values;
/// `--force` runs it; `--fresh` keeps the old journal under a new name and starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_threshold_is_refused_unless_forced_and_fresh_keeps_the_old_journal() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 5, 40_000);
    let out = tmp.path().join("out");

    let first = run(&emu, &args(&src, &out, &["--threshold", "40"])).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(emu.stats().requests, 5);
    let journal_before = std::fs::read(out.join("journal.jsonl")).unwrap();

    let refused = run(&emu, &args(&src, &out, &["--threshold", "55.5"])).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("threshold")
            && refused.stderr.contains("40")
            && refused.stderr.contains("55.5"),
        "the message names the setting and both values: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(emu.stats().requests, 5, "nothing was sent");
    assert_eq!(
        std::fs::read(out.join("journal.jsonl")).unwrap(),
        journal_before,
        "a refused run leaves the journal untouched"
    );
    // The default threshold differs from an explicit one too, and is named as such.
    let refused = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("threshold"), "{}", refused.stderr);

    let refused = run(
        &emu,
        &args(&src, &out, &["--threshold", "40", "--rotate-image"]),
    )
    .await;
    refused.exited_saying(2, "rotate_image");
    // Another API host (not loopback): refused before anything is sent. 0.0.0.0 is not a
    // loopback name but connects locally, so even a bug here sends nothing off this machine.
    let other_host = loud_args(&src, &out, &["--threshold", "40"]);
    let refs: Vec<&str> = other_host.iter().map(String::as_str).collect();
    let refused = common::run_bin(&refs, Some("https://0.0.0.0:9"), Some(KEY)).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("API host") && refused.stderr.contains("0.0.0.0:9"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read(out.join("journal.jsonl")).unwrap(),
        journal_before
    );

    // --force: accepted, with a warning; done items stay done, new ones are screened.
    images(&src.join("more"), 2, 41_000);
    let forced = run(&emu, &args(&src, &out, &["--threshold", "55.5", "--force"])).await;
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.stderr.contains("--force"), "{}", forced.stderr);
    assert_eq!(emu.stats().requests, 7, "only the 2 new images were sent");
    let runs: Vec<Value> = common::journal_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "run")
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["settings"]["threshold"], 55.5);
    assert_eq!(runs[1]["resumed"], true);
    let s = common::summary(&out);
    assert!(
        s["warnings"].to_string().contains("mix settings"),
        "the summary warns that results mix settings: {}",
        s["warnings"]
    );

    // --fresh: the old journal is kept aside, byte for byte; the new one starts over.
    let journal_forced = std::fs::read(out.join("journal.jsonl")).unwrap();
    let fresh = run(&emu, &args(&src, &out, &["--threshold", "60", "--fresh"])).await;
    assert_eq!(fresh.code, 0, "{fresh:?}");
    assert_eq!(
        emu.stats().requests,
        14,
        "a fresh journal screens everything"
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("journal-") && n.ends_with(".jsonl")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), journal_forced);
    let name = kept[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(fresh.stderr.contains(&name), "{}", fresh.stderr);
    let lines = common::journal_lines(&out);
    assert_eq!(lines[0]["type"], "run");
    assert_eq!(lines[0]["resumed"], false);
    assert_eq!(lines[0]["settings"]["threshold"], 60.0);
    assert_eq!(lines.iter().filter(|l| l["type"] == "run").count(), 1);
    assert_eq!(csv_keys(&out).len(), 7);

    // --fresh and --force together make no sense.
    let both = run(&emu, &args(&src, &out, &["--fresh", "--force"])).await;
    assert_eq!(both.code, 2, "{both:?}");
}

/// Acceptance 5: a second run on the same out dir exits 2 naming the lock; once the first is
/// gone (killed with SIGKILL, or finished) nothing blocks the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_run_is_refused_and_a_killed_runs_lock_never_blocks() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out, _, inputs) = batch(20, 50_000);

    // A slow first run: 2 requests per second.
    let mut first = spawn(
        &emu,
        &[
            "scan".to_string(),
            src.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--rate".into(),
            "2/s".into(),
            "--quiet".into(),
        ],
    );
    common::wait_until("the first run to send", || emu.stats().requests >= 1).await;
    let second = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(second.code, 2, "{second:?}");
    assert!(
        second.stderr.contains(".liveness-batch.lock"),
        "the message names the lock: {}",
        second.stderr
    );
    let pid = first.id().unwrap().to_string();
    assert!(
        second.stderr.contains(&pid),
        "and the process holding it ({pid}): {}",
        second.stderr
    );
    let runs = common::journal_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "run")
        .count();
    assert_eq!(runs, 1, "the refused run wrote nothing to the journal");
    // Not even --fresh may move the running journal away.
    let fresh = run(&emu, &args(&src, &out, &["--fresh"])).await;
    fresh.exited_saying(2, ".liveness-batch.lock");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("journal"))
        .collect();
    assert_eq!(names, vec!["journal.jsonl".to_string()]);

    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let third = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(
        third.code, 0,
        "a killed run's lock does not block: {third:?}"
    );
    assert_all_results(&out, &inputs);
    // And after a run that finished normally.
    let before = emu.stats().requests;
    let fourth = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(fourth.code, 0, "{fourth:?}");
    assert_eq!(emu.stats().requests, before, "a finished run is not redone");
}

/// Acceptance 6, first half: identical images are sent once; the copies get the same result,
/// marked as duplicates, and the summary shows the credits saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_images_are_sent_once_per_run() {
    let emu = common::emulator(|c| c.latency = Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let shas = images(&src, 10, 60_000);
    for (key, _) in shas.iter() {
        let bytes = std::fs::read(src.join(key)).unwrap();
        for copy in 0..3 {
            common::write(&src, &format!("copy{copy}/{key}"), &bytes);
        }
    }
    let out = tmp.path().join("out");
    let r = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(emu.stats().requests, 10, "10 distinct images, 40 files");
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 40);
    let dups: Vec<&Value> = items
        .iter()
        .filter(|i| !i["duplicate_of"].is_null())
        .collect();
    assert_eq!(dups.len(), 30);
    for d in &dups {
        let leader = items
            .iter()
            .find(|i| i["key"] == d["duplicate_of"])
            .expect("the leader is recorded");
        assert_eq!(leader["sha256"], d["sha256"]);
        assert_eq!(leader["status"], d["status"]);
        assert_eq!(leader["score"], d["score"]);
    }
    let s = common::summary(&out);
    assert_eq!(
        s["credits"]["saved_by_deduplication"], 30,
        "{}",
        s["credits"]
    );
    assert_eq!(s["credits"]["used"], 10, "{}", s["credits"]);

    // Another run with a new copy: reused from the journal, still nothing sent.
    common::write(
        &src,
        "late/copy.jpg",
        &std::fs::read(src.join("img000.jpg")).unwrap(),
    );
    let r = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(emu.stats().requests, 10);
    assert_eq!(csv_keys(&out).len(), 41);
}

/// Acceptance 6, second half: `--max-requests 50` on 200 items sends exactly 50 billable calls
/// and exits 4 asking for a rerun; the rerun without it sends exactly the other 150.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_is_a_hard_budget_and_the_rerun_finishes_the_rest() {
    let emu = common::emulator(|c| {
        c.latency = Duration::from_millis(5);
        c.jitter = Duration::from_millis(10);
    })
    .await;
    let (_tmp, src, out, _, inputs) = batch(200, 70_000);

    let capped = run(&emu, &loud_args(&src, &out, &["--max-requests", "50"])).await;
    assert_eq!(capped.code, 4, "{capped:?}");
    assert!(
        capped.stderr.contains("--max-requests") && capped.stderr.contains("rerun"),
        "{}",
        capped.stderr
    );
    let stats = emu.stats();
    assert_eq!(stats.requests, 50, "{stats:?}");
    assert_eq!(stats.credits_used, 50, "{stats:?}");
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 50, "every paid call is recorded, nothing else");
    assert!(items.iter().all(|i| i["class"] == "result"));
    let end = common::journal_lines(&out).pop().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["exit_code"], 4);
    assert_eq!(end["not_processed"], 150, "{end}");

    let rest = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(rest.code, 0, "{rest:?}");
    assert_eq!(emu.stats().requests, 200, "exactly the other 150 were sent");
    let end = common::journal_lines(&out).pop().unwrap();
    assert_eq!(end["skipped_done"], 50, "{end}");
    assert_eq!(emu.stats().credits_used, 200);
    assert_all_results(&out, &inputs);
}

/// A budget exactly as large as the work is not "reached": every item gets its result, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_covers_the_work_ends_normally() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out, _, inputs) = batch(5, 75_000);
    let r = run(&emu, &args(&src, &out, &["--max-requests", "5"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(emu.stats().requests, 5);
    assert_all_results(&out, &inputs);
    assert_eq!(common::summary(&out)["outcome"], "completed");
}

/// A torn last line (a crash mid-write) is reported as a warning and that item is redone; the
/// journal is repaired to whole lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_reported_and_its_item_redone() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out, _, inputs) = batch(6, 80_000);
    let first = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(emu.stats().requests, 6);

    // Drop the end line and the last item line; append half of that item line, no newline:
    // a first run that died writing that line. It wrote no resume index, no outputs'
    // checkpoint and no summary (a run writes them after its end line): remove those of the
    // finished run.
    for cache in [
        ".liveness-batch-index",
        ".liveness-batch-outputs.json",
        "summary.json",
    ] {
        std::fs::remove_file(out.join(cache)).unwrap();
    }
    let path = out.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.pop().unwrap().contains("\"type\":\"end\""));
    let last_item = lines.pop().unwrap();
    let torn_key = serde_json::from_str::<Value>(last_item).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cut = lines.join("\n");
    cut.push('\n');
    cut.push_str(&last_item[..last_item.len() / 2]);
    std::fs::write(&path, cut).unwrap();

    let again = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stderr.contains("warning") && again.stderr.contains("cut short"),
        "the torn line is reported: {}",
        again.stderr
    );
    assert_eq!(emu.stats().requests, 7, "only the torn item was redone");
    let journal = Journal::read(&out).unwrap();
    assert!(!journal.torn && journal.ends_with_newline, "repaired");
    let items = journal.items();
    assert_one_record_per_key(&items);
    assert_eq!(items.last().unwrap()["key"], torn_key.as_str());
    assert_all_results(&out, &inputs);
    let s = common::summary(&out);
    assert!(
        !s["warnings"].to_string().contains("cut short"),
        "the repaired journal has no torn tail left to warn about: {}",
        s["warnings"]
    );

    // A torn end line: reported, nothing to redo. (The run died writing it, before its
    // caches and outputs: those of the run before it are gone with it here.)
    for cache in [
        ".liveness-batch-index",
        ".liveness-batch-outputs.json",
        "summary.json",
    ] {
        std::fs::remove_file(out.join(cache)).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let end_start = text.trim_end().rfind('\n').unwrap() + 1;
    assert!(text[end_start..].contains("\"type\":\"end\""));
    std::fs::write(&path, &text[..end_start + 20]).unwrap();
    let again = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("cut short"), "{}", again.stderr);
    assert_eq!(
        emu.stats().requests,
        7,
        "no item was lost with the end line"
    );
    let journal = Journal::read(&out).unwrap();
    assert!(!journal.torn && journal.ends_with_newline);
    assert_eq!(journal.items().len(), 6);
}

/// Damage in the middle of the journal (not a torn tail) is refused with a message naming the
/// line, as broken evidence (exit 8), before anything is sent; the journal is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_damaged_in_the_middle_is_refused_before_anything_is_sent() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 4, 85_000);
    let out = tmp.path().join("out");
    let first = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(first.code, 0, "{first:?}");
    let path = out.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2] = lines[2][..lines[2].len() / 2].to_string();
    let damaged = lines.join("\n") + "\n";
    std::fs::write(&path, &damaged).unwrap();
    // Another image, so a run that ignored the damage would send something.
    images(&src.join("new"), 1, 86_000);

    let r = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        r.stderr.contains("line 3") && r.stderr.contains("journal"),
        "the message names the damaged line: {}",
        r.stderr
    );
    assert_eq!(emu.stats().requests, 4, "nothing was sent");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
}

/// An item refused locally (a missing file) is skipped while it stays missing, and screened once
/// the file is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_screened_once_it_appears() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 2, 87_000);
    let manifest = tmp.path().join("m.csv");
    std::fs::write(
        &manifest,
        format!(
            "id,path\na,{}\nb,{}\nc,{}\n",
            src.join("img000.jpg").display(),
            src.join("img001.jpg").display(),
            src.join("late.jpg").display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let first = run(&emu, &args(&manifest, &out, &[])).await;
    assert_eq!(first.code, 1, "{first:?}");
    assert_eq!(emu.stats().requests, 2);
    let again = run(&emu, &args(&manifest, &out, &[])).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(emu.stats().requests, 2, "still missing: nothing to send");
    common::write(&src, "late.jpg", &common::jpeg(88_000));
    let last = run(&emu, &args(&manifest, &out, &[])).await;
    assert_eq!(last.code, 0, "{last:?}");
    assert_eq!(emu.stats().requests, 3, "only the file that appeared");
    let keys: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_all_results(&out, &keys);
}

/// A file that passes the local checks (JPEG magic bytes) but that the API refuses to decode.
fn fake_jpeg(seed: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
    ];
    b.extend((0..600u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

/// `--retry-failed`: items that ended rejected or out of retries are skipped by a plain rerun
/// and redone with the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_redoes_rejected_and_exhausted_items_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 4, 90_000);
    common::write(&src, "fake1.jpg", &fake_jpeg(1));
    common::write(&src, "fake2.jpg", &fake_jpeg(2));
    let out = tmp.path().join("out");

    let emu = common::emulator(|_| {}).await;
    let first = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(first.code, 1, "two items were rejected: {first:?}");
    assert_eq!(emu.stats().requests, 6);
    let items = common::journal_items(&out);
    let rejected: Vec<&Value> = items.iter().filter(|i| i["class"] == "rejected").collect();
    assert_eq!(rejected.len(), 2, "{items:#?}");
    assert!(rejected.iter().all(|r| r["action"] == "fix_input"));

    let plain = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(plain.code, 1, "{plain:?}");
    assert_eq!(
        emu.stats().requests,
        6,
        "a plain rerun skips rejected items"
    );

    let dry = run(&emu, &args(&src, &out, &["--retry-failed", "--dry-run"])).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(would_send(&dry.stdout), 2, "{}", dry.stdout);
    let retried = run(&emu, &args(&src, &out, &["--retry-failed"])).await;
    assert_eq!(retried.code, 1, "{retried:?}");
    assert_eq!(
        emu.stats().requests,
        8,
        "--retry-failed sends the 2 rejected items again, and only them"
    );
    let latest = common::journal_items(&out);
    assert_eq!(
        latest.len(),
        8,
        "two more records, for the two rejected items"
    );
    assert!(
        latest[6..]
            .iter()
            .all(|i| i["class"] == "rejected" && i["key"].as_str().unwrap().starts_with("fake"))
    );
    assert_eq!(csv_keys(&out).len(), 6);

    // Retries exhausted (the API kept failing): skipped by a plain rerun, redone with the flag.
    let out2 = tmp.path().join("out2");
    let failing = common::emulator(|c| c.faults.p503 = 1.0).await;
    let r = run(&failing, &args(&src, &out2, &["--max-retries", "1"])).await;
    assert_eq!(r.code, 1, "{r:?}");
    let transient = common::journal_items(&out2)
        .into_iter()
        .filter(|i| i["class"] == "transient")
        .count();
    assert_eq!(transient, 6, "every item ran out of retries");
    let healthy = common::emulator(|_| {}).await;
    let plain = run(&healthy, &args(&src, &out2, &[])).await;
    assert_eq!(plain.code, 1, "{plain:?}");
    assert_eq!(healthy.stats().requests, 0, "a plain rerun skips them");
    let retried = run(&healthy, &args(&src, &out2, &["--retry-failed"])).await;
    assert_eq!(retried.code, 1, "{retried:?}");
    assert_eq!(healthy.stats().requests, 6, "--retry-failed redoes all six");
    let rows = common::csv_rows(&out2.join("results.csv"));
    assert_eq!(rows.len(), 6);
    assert_eq!(rows.iter().filter(|r| r["class"] == "result").count(), 4);
    assert_eq!(rows.iter().filter(|r| r["class"] == "rejected").count(), 2);
}

/// The "would send N" figure of a dry run.
fn would_send(stdout: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("would send"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'would send' line: {stdout}"))
}

/// An image that changed on disk since the last run is screened again; unchanged ones are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_image_is_screened_again_and_unchanged_ones_are_not() {
    let (tmp, src, out, shas, inputs) = batch(5, 100_000);
    let log = tmp.path().join("emulator.jsonl");
    let emu = common::emulator(|c| c.log = Some(log.clone())).await;
    let first = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(emu.stats().requests, 5);

    let new_bytes = common::jpeg(424_242);
    let new_sha = sha_hex(&new_bytes);
    common::write(&src, "img002.jpg", &new_bytes);
    let again = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(emu.stats().requests, 6, "only the changed image was sent");
    let posts = logged_posts(&log);
    assert_eq!(posts.last().unwrap()["sha256"], new_sha.as_str());
    assert_all_results(&out, &inputs);
    let rows = common::csv_rows(&out.join("results.csv"));
    let row = rows.iter().find(|r| r["key"] == "img002.jpg").unwrap();
    assert_eq!(
        row["sha256"], new_sha,
        "the outputs show the new content's result"
    );

    // Changing it back is a change too (the journal's latest record has the other content).
    common::write(
        &src,
        "img002.jpg",
        &common::encode(&common::photo(100_002, 64, 64), ImageFormat::Jpeg),
    );
    let back = run(&emu, &args(&src, &out, &[])).await;
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(
        emu.stats().requests,
        6,
        "identical to an image already screened: its result is reused, nothing is sent"
    );
    let rows = common::csv_rows(&out.join("results.csv"));
    let row = rows.iter().find(|r| r["key"] == "img002.jpg").unwrap();
    assert_eq!(row["sha256"], shas["img002.jpg"]);
}

/// A timeout after the body was sent has an unknown outcome: `--no-retry-unknown` records it as
/// `unknown` (skipped by a plain rerun, redone with `--retry-failed`); by default it is retried
/// and every retry is counted as a possible double charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcomes_are_recorded_or_retried_and_counted() {
    let (tmp, src, out, _, inputs) = batch(3, 110_000);
    let stalling = stalling_emulator().await;

    let r = run(
        &stalling,
        &args(&src, &out, &["--timeout", "0.4", "--no-retry-unknown"]),
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(stalling.stats().requests, 3, "not retried");
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 3);
    for i in &items {
        assert_eq!(i["class"], "unknown", "{i}");
        assert_eq!(i["action"], "rerun", "{i}");
        assert_eq!(i["possible_double_charges"], 0, "{i}");
    }
    let s = common::summary(&out);
    assert_eq!(s["by_class"]["unknown"], 3, "{}", s["by_class"]);
    assert_eq!(s["requests"]["possible_double_charges"], 0);
    assert_eq!(
        s["requests"]["unknown_outcomes"], 3,
        "unknown, not yet sent again"
    );

    let healthy = common::emulator(|_| {}).await;
    let plain = run(&healthy, &args(&src, &out, &[])).await;
    assert_eq!(plain.code, 1, "{plain:?}");
    assert_eq!(
        healthy.stats().requests,
        0,
        "unknown items wait for the user to reconcile"
    );
    let retried = run(&healthy, &args(&src, &out, &["--retry-failed"])).await;
    assert_eq!(retried.code, 0, "{retried:?}");
    assert_eq!(healthy.stats().requests, 3);
    assert_all_results(&out, &inputs);
    let s = common::summary(&out);
    assert_eq!(
        (
            &s["requests"]["unknown_outcomes"],
            &s["requests"]["possible_double_charges"]
        ),
        (&Value::from(3), &Value::from(3)),
        "each unknown outcome was sent again by the rerun"
    );

    // Default: retried; each retry after a sent body may be billed twice, and is counted.
    let out2 = tmp.path().join("out2");
    let before = stalling.stats().requests;
    let r = run(
        &stalling,
        &args(&src, &out2, &["--timeout", "0.4", "--max-retries", "2"]),
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(stalling.stats().requests - before, 9, "3 attempts per item");
    let items = common::journal_items(&out2);
    assert_eq!(items.len(), 3);
    for i in &items {
        assert_eq!(i["class"], "transient", "{i}");
        assert_eq!(i["attempts"], 3, "{i}");
        assert_eq!(i["possible_double_charges"], 2, "{i}");
        assert_eq!(i["unknown_outcomes"], 3, "{i}");
    }
    let s = common::summary(&out2);
    assert_eq!(s["requests"]["unknown_outcomes"], 9);
    assert_eq!(
        s["requests"]["possible_double_charges"], 6,
        "{}",
        s["requests"]
    );
}

/// The process's open files that are `path` (through `/proc/<pid>/fd`).
fn holds_open(pid: u32, path: &Path) -> bool {
    let Ok(want) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == want))
}

/// A resume looks keys up in the saved resume index as it goes, reading the file each time. A
/// read that fails (the file cut short under the run, as a failing disk or another process
/// could do) stops the run with an I/O error naming the index, before anything decided from
/// that lookup is acted on: nothing is sent or recorded again, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_index_that_cannot_be_read_stops_the_run_with_an_io_error() {
    index_cut_short_under_a_rerun(&[]).await;
}

/// The same for a dry run: its estimate would rest on lookups that answered wrongly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_index_that_cannot_be_read_stops_a_dry_run_with_an_io_error() {
    index_cut_short_under_a_rerun(&["--dry-run"]).await;
}

/// A first run over six images from standard input, then a rerun with `extra` whose saved
/// index is cut short once it has opened it and before it reads its rows.
async fn index_cut_short_under_a_rerun(extra: &[&str]) {
    use tokio::io::AsyncWriteExt;
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let shas = images(&src, 6, 170_000);
    let out = tmp.path().join("out");
    let manifest = path_manifest(&src, &shas);
    let argv = loud_args(Path::new("-"), &out, &[]);
    let start = |argv: &[String]| spawn_stdin(&emu, argv, Stdio::piped);

    // A first run screens every item and saves the index.
    let mut first = start(&argv);
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(manifest.as_bytes()).await.unwrap();
    drop(stdin);
    let done = first.wait_with_output().await.unwrap();
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let index = out.join(".liveness-batch-index");
    assert!(index.is_file());
    let sent = emu.stats().requests;
    assert_eq!(sent, 6);
    let items_before = Journal::read(&out).unwrap().items().len();

    // The rerun has the index open before it reads its first row (after the header): cut the
    // file short then.
    let mut argv = argv.clone();
    argv.extend(extra.iter().map(|s| s.to_string()));
    let mut rerun = start(&argv);
    let pid = rerun.id().unwrap();
    let mut stdin = rerun.stdin.take().unwrap();
    let (header, rows) = manifest.split_at(manifest.find('\n').unwrap() + 1);
    stdin.write_all(header.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    common::wait_until("the rerun to open the resume index", || {
        holds_open(pid, &index)
    })
    .await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(0)
        .unwrap();
    stdin.write_all(rows.as_bytes()).await.unwrap();
    drop(stdin);
    let done = tokio::time::timeout(Duration::from_secs(30), rerun.wait_with_output())
        .await
        .expect("the rerun ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(
        done.status.code(),
        Some(liveness_batch::exit::Exit::Io.code()),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "cannot read the resume index in {}",
            out.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(emu.stats().requests, sent, "nothing was sent again");
    assert_eq!(
        Journal::read(&out).unwrap().items().len(),
        items_before,
        "nothing was recorded from a lookup that failed"
    );
}

/// A scan of `n` items of `src` with `check` (a check and its flags) at 400/s, 8 in flight,
/// killed with SIGKILL after 0.7 s and run again. Asserts that the kill came mid-run, that each
/// run left one record per key, that nothing whose record was journaled was sent again, and
/// that the kill wasted at most the requests in flight; returns the final records.
async fn killed_and_resumed(
    log: &Path,
    src: &Path,
    out: &Path,
    n: u64,
    check: &[&str],
) -> Vec<Value> {
    let emu = logging_emulator(log, 100, 200).await;
    let mut extra = check.to_vec();
    extra.extend(["--rate", "400/s", "--concurrency", "8", "--no-dedupe"]);
    let argv = args(src, out, &extra);
    let (_, finished_first) = kill_9_after(&emu, &argv, 700).await;
    assert!(
        !finished_first,
        "{n} items at 100-300 ms, 8 at a time, take over 0.7 s"
    );
    let journal = Journal::read(out).expect("the killed run wrote a journal");
    let items = journal.items();
    assert_one_record_per_key(&items);
    let mut frozen = HashMap::new();
    freeze_journaled(&items, log, &mut frozen);
    let sent_before = emu.stats().requests;
    assert!(
        sent_before <= items.len() as u64 + 8,
        "{sent_before} sent for {} records",
        items.len()
    );

    let last = run(&emu, &argv).await;
    assert_eq!(last.code, 0, "{last:?}");
    assert_none_sent_again(log, &frozen);
    let journal = Journal::read(out).unwrap();
    let items = journal.items();
    assert_one_record_per_key(&items);
    assert_eq!(items.len() as u64, n);
    // Every item paid once, plus at most what was in flight at the kill.
    assert!(emu.stats().credits_used <= n + 8, "{:?}", emu.stats());
    items.into_iter().cloned().collect()
}

/// An age estimation scan killed with SIGKILL mid-run and run again: every image ends with one
/// record holding its estimated age (or `AGE_NOT_DETECTED`), no image whose record was in the
/// journal is sent again, and the kill wasted at most the requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_scan_killed_with_sigkill_resumes_without_paying_twice() {
    const N: u64 = 60;
    let (tmp, src, out, _shas, _inputs) = batch(N, 17_000);
    let log = tmp.path().join("emulator.jsonl");
    let items = killed_and_resumed(&log, &src, &out, N, &["--check", "age"]).await;
    for it in &items {
        assert!(
            it["estimated_age"].is_number() || it.to_string().contains("AGE_NOT_DETECTED"),
            "{it}"
        );
    }
}

/// A face-match scan of pairs killed with SIGKILL mid-run and run again: every pair ends with
/// one record holding both keys, no pair whose record was in the journal is sent again, and
/// the kill wasted at most the requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_match_scan_killed_with_sigkill_resumes_without_paying_twice() {
    const N: u64 = 60;
    let (tmp, src, out, shas, _inputs) = batch(N, 19_000);
    // Each selfie's reference: the same picture as a PNG, in another folder.
    let refs = tmp.path().join("refs");
    for name in shas.keys() {
        let picture = image::load_from_memory(&std::fs::read(src.join(name)).unwrap()).unwrap();
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let png = common::encode(&picture.to_rgb8(), ImageFormat::Png);
        common::write(&refs, &format!("{stem}.png"), &png);
    }
    let log = tmp.path().join("emulator.jsonl");
    let refs_arg = refs.display().to_string();
    let check = ["--check", "face-match", "--ref-dir", &refs_arg];
    let items = killed_and_resumed(&log, &src, &out, N, &check).await;
    for it in &items {
        let key = it["key"].as_str().unwrap();
        let stem = key.rsplit_once('.').unwrap().0;
        assert_eq!(it["reference"], format!("{refs_arg}/{stem}.png"), "{it}");
        let png = std::fs::read(refs.join(format!("{stem}.png"))).unwrap();
        assert_eq!(it["ref_sha256"], sha_hex(&png), "{it}");
    }
}
