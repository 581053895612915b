//! Integration tests: outputs rebuilt only when something changed. A scan rerun that adds no
//! record leaves the results files untouched (same bytes, same file) and says so, while its
//! summary still describes the run; anything that changes the outputs (new records, a deleted
//! or altered output, another price, another results format, another journal) rebuilds them;
//! `report` always rebuilds; results.jsonl holds what results.json holds, a record a line.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use liveness_batch::emulator::Emulator;
use liveness_batch::journal::{JOURNAL_FILE, Line, RunEnd, RunOutcome, Writer};
use liveness_batch::record::{Class, Decision, Record};
use liveness_batch::report::{self, ReportOptions, ResultsFormat, state::STATE_FILE};

use crate::common::{self, Run, ScanRun};

const LEFT: &str = "Nothing new since the outputs were built";

/// `n` distinct JPEGs in `dir`, named from `first` on.
fn images(dir: &Path, first: u64, n: u64) {
    common::jpegs(dir, n, 7000 + first, |i| format!("img{:03}.jpg", first + i));
}

/// A folder with `n` images and the out dir path beside it.
fn setup(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 0, n);
    let out = tmp.path().join("out");
    (tmp, src, out)
}

/// `scan SRC --out OUT` against `emu`, printing its summary, with `extra`.
async fn scan(emu: &Emulator, src: &Path, out: &Path, extra: &[&str]) -> Run {
    ScanRun::new(emu, src, out).loud().args(extra).bin().await
}

/// What tells a file left alone from one written again: its bytes, its inode (outputs are
/// replaced by a rename, so a rewrite is a new file) and its modification time.
#[derive(Debug, PartialEq)]
struct Stamp {
    bytes: Vec<u8>,
    ino: u64,
    mtime_ns: i128,
}

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Stamp {
        bytes: std::fs::read(p).unwrap(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

fn csv_keys(out: &Path) -> Vec<String> {
    common::csv_rows(&out.join("results.csv"))
        .into_iter()
        .map(|r| r["key"].clone())
        .collect()
}

/// Every output a scan leaves in the out dir.
const ALL: [&str; 7] = [
    "results.csv",
    "results.json",
    "summary.json",
    "summary.md",
    "report.html",
    "SHA256SUMS",
    "ignored.csv",
];
const RESULTS: [&str; 2] = ["results.csv", "results.json"];
const SMALL: [&str; 4] = ["summary.json", "summary.md", "report.html", "SHA256SUMS"];

fn stamps(out: &Path, files: &[&str]) -> Vec<(String, Stamp)> {
    files
        .iter()
        .map(|f| (f.to_string(), stamp(&out.join(f))))
        .collect()
}

/// The files of `before` whose inode, time or bytes differ now.
fn rewritten(out: &Path, before: &[(String, Stamp)]) -> Vec<String> {
    before
        .iter()
        .filter(|(f, s)| stamp(&out.join(f)) != *s)
        .map(|(f, _)| f.clone())
        .collect()
}

/// What `sha256sum -c SHA256SUMS` checks: every line's file has that SHA-256; returns the
/// names listed.
fn check_sums(out: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let text = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    text.lines()
        .map(|l| {
            let (sha, name) = l.split_once("  ").unwrap_or_else(|| panic!("{l}"));
            let bytes = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hex::encode(Sha256::digest(&bytes)), sha, "{name}");
            name.to_string()
        })
        .collect()
}

/// The SHA-256 the run's last line gives for report.html.
fn printed_report_sha(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("report.html SHA-256: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    line["report.html SHA-256: ".len()..][..64].to_string()
}

fn sha_of(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_that_adds_nothing_writes_no_output_and_says_so() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(6);
    common::write(&src, "notes.txt", b"not an image");
    let first = scan(&emu, &src, &out, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(!first.stderr.contains(LEFT), "{}", first.stderr);
    let before = stamps(&out, &ALL);
    let summary_before = common::summary(&out);
    assert_eq!(summary_before["runs"], 1);

    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(
        rewritten(&out, &before),
        ["SHA256SUMS"],
        "no output written but SHA256SUMS, which lists the journal"
    );
    assert!(check_sums(&out).contains(&"journal.jsonl".to_string()));
    assert!(!out.join("ignored.csv.tmp").exists());
    // one clear line, after the summary of this run
    let left: Vec<&str> = rerun.stderr.lines().filter(|l| l.contains(LEFT)).collect();
    assert_eq!(left.len(), 1, "{}", rerun.stderr);
    assert!(
        left[0].contains(
            "every output (results.csv, results.json, summary.json, summary.md, report.html \
             and ignored.csv) was left exactly as it was, but for SHA256SUMS"
        ) && left[0].contains("summary.json's built_from")
            && left[0].contains(&format!(
                "`liveness-batch report {}` rebuilds",
                out.display()
            )),
        "{}",
        left[0]
    );
    assert!(
        !rerun.stderr.contains("updated") && !rerun.stderr.contains("written again"),
        "{}",
        rerun.stderr
    );
    // the terminal still describes this run
    assert!(
        rerun.stderr.contains("6 images: ")
            && rerun.stderr.contains("Run completed")
            && rerun
                .stderr
                .contains("Inputs     6 found, 1 ignored (not images), 6 already done"),
        "the summary is printed as usual: {}",
        rerun.stderr
    );
    let at = |needle: &str| rerun.stderr.find(needle).unwrap();
    assert!(at("6 images: ") < at(LEFT), "{}", rerun.stderr);
    // the hash printed is the one of the report.html on disk
    assert_eq!(
        printed_report_sha(&rerun.stderr),
        sha_of(&out.join("report.html"))
    );
    assert_eq!(
        printed_report_sha(&rerun.stderr),
        printed_report_sha(&first.stderr)
    );
    assert_eq!(common::summary(&out)["runs"], 1, "the summary as built");
    check_sums(&out);

    // A summary file edited by hand: the small files and SHA256SUMS are written again from
    // the checkpoint (describing both reruns too); the results and ignored.csv are left.
    let mut md = std::fs::read(out.join("summary.md")).unwrap();
    md.extend_from_slice(b"\nedited\n");
    std::fs::write(out.join("summary.md"), md).unwrap();
    let before = stamps(&out, &ALL);
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(rewritten(&out, &before), SMALL, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains(
            "results.csv and results.json left as they are; summary.json, summary.md, \
             report.html and SHA256SUMS written again with this run, because summary.md is not \
             the file last written"
        ),
        "{}",
        rerun.stderr
    );
    let listed = check_sums(&out);
    assert_eq!(listed.len(), 7, "the outputs and the journal: {listed:?}");
    assert_eq!(
        printed_report_sha(&rerun.stderr),
        sha_of(&out.join("report.html"))
    );
    let after = common::summary(&out);
    assert_eq!(after["runs"], 3);
    assert_eq!(
        after["inputs"]["skipped_done"], 6,
        "this run's own counters"
    );
    assert_eq!(after["items"], summary_before["items"]);
    assert_eq!(after["credits"], summary_before["credits"]);
    let journal_len = std::fs::metadata(out.join(JOURNAL_FILE)).unwrap().len();
    assert_eq!(after["built_from"]["journal"]["bytes"], journal_len);
    assert_eq!(
        after["built_from"]["journal"]["item_records"],
        summary_before["built_from"]["journal"]["item_records"]
    );

    // A full rebuild gives exactly the summary files the rerun wrote: nothing was stale.
    let kept: Vec<Vec<u8>> = SMALL[..3]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    let before = stamps(&out, &ALL);
    let report = common::report(&out, &[]).await;
    assert_eq!(report.code, 0, "{report:?}");
    assert!(!report.stderr.contains(LEFT), "report always rebuilds");
    for (f, before) in SMALL.iter().zip(kept) {
        assert_eq!(
            String::from_utf8(std::fs::read(out.join(f)).unwrap()).unwrap(),
            String::from_utf8(before).unwrap(),
            "{f}"
        );
    }
    let mut every: Vec<&str> = RESULTS.to_vec();
    every.extend(SMALL);
    // SHA256SUMS came out the same, so it is left as it was (a signature of it stays valid).
    every.retain(|f| *f != "SHA256SUMS");
    assert_eq!(
        rewritten(&out, &before),
        every,
        "report writes every output (ignored.csv is the scan's)"
    );
    check_sums(&out);

    // ...and after a report, a rerun again leaves them all alone (but SHA256SUMS).
    let before = stamps(&out, &ALL);
    let again = scan(&emu, &src, &out, &["--quiet"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.is_empty(), "quiet: {}", again.stderr);
    assert_eq!(rewritten(&out, &before), ["SHA256SUMS"]);
    check_sums(&out);
    assert_eq!(common::summary(&out)["runs"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_skipped_file_rewrites_the_ignored_list_and_sums_but_not_the_results() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(3);
    assert_eq!(scan(&emu, &src, &out, &["--quiet"]).await.code, 0);
    let before = stamps(&out, &ALL);
    common::write(&src, "readme.txt", b"not an image");
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    let mut changed = SMALL.to_vec();
    changed.push("ignored.csv");
    assert_eq!(rewritten(&out, &before), changed, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains(
            "results.csv and results.json left as they are; summary.json, summary.md, \
             report.html and SHA256SUMS written again with this run, because ignored.csv changed"
        ),
        "{}",
        rerun.stderr
    );
    let ignored = std::fs::read_to_string(out.join("ignored.csv")).unwrap();
    assert!(ignored.contains("readme.txt,not an image"), "{ignored}");
    assert!(check_sums(&out).contains(&"ignored.csv".to_string()));
    assert_eq!(common::summary(&out)["inputs"]["ignored"], 1);
    // the same again: nothing written
    let before = stamps(&out, &ALL);
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rewritten(&out, &before), ["SHA256SUMS"]);
    assert!(
        rerun.stderr.contains("was left exactly as it was"),
        "{}",
        rerun.stderr
    );
    // the file gone again: the list shrinks, and is rewritten
    std::fs::remove_file(src.join("readme.txt")).unwrap();
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert!(
        rerun.stderr.contains("because ignored.csv changed"),
        "{}",
        rerun.stderr
    );
    assert_eq!(
        std::fs::read_to_string(out.join("ignored.csv")).unwrap(),
        "path,reason\n"
    );
    check_sums(&out);
}

/// Edit the checkpoint inside its envelope and seal it again with a digest that matches, as an
/// earlier version (or a careful hand) would leave it.
fn edit_checkpoint(state: &Path, edit: impl FnOnce(&mut Value)) {
    use sha2::{Digest, Sha256};
    let sealed: Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let mut cp = sealed["checkpoint"].clone();
    edit(&mut cp);
    let body = serde_json::to_string(&cp).unwrap();
    let text = format!(
        r#"{{"sha256":"{}","checkpoint":{body}}}"#,
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    std::fs::write(state, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_an_earlier_version_writes_the_summary_files_once() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(2);
    assert_eq!(scan(&emu, &src, &out, &["--quiet"]).await.code, 0);
    // what an earlier version wrote: no `written` field
    let state = out.join(STATE_FILE);
    edit_checkpoint(&state, |cp| {
        assert!(cp["written"].is_array(), "{cp}");
        cp.as_object_mut().unwrap().remove("written");
    });
    let before = stamps(&out, &ALL);
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rewritten(&out, &before), SMALL, "{}", rerun.stderr);
    assert!(
        rerun
            .stderr
            .contains("because the outputs were built by an earlier version"),
        "{}",
        rerun.stderr
    );
    check_sums(&out);
    let before = stamps(&out, &ALL);
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rewritten(&out, &before), ["SHA256SUMS"], "{}", rerun.stderr);
}

/// A checkpoint edited by hand (its digest no longer matches), or written before checkpoints
/// carried one, is discarded before anything is trusted, and every output is rebuilt from the
/// journal: the counts typed into it never reach an output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_checkpoint_is_discarded_and_the_outputs_rebuilt_from_the_journal() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(3);
    assert_eq!(scan(&emu, &src, &out, &["--quiet"]).await.code, 0);
    let state = out.join(STATE_FILE);
    let text = std::fs::read_to_string(&state).unwrap();
    let approved = common::summary(&out)["by_decision"]["approved"]
        .as_u64()
        .unwrap();
    // the counts changed, the digest left as it was
    let forged = text.replacen(
        &format!("\"approved\":{approved}"),
        &format!("\"approved\":{}", approved + 40),
        1,
    );
    assert_ne!(forged, text, "{text}");
    std::fs::write(&state, forged).unwrap();
    std::fs::write(out.join("summary.md"), "touched").unwrap();
    let before = stamps(&out, &ALL);
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(
        rerun
            .stderr
            .contains("its digest does not match its content")
            && rerun.stderr.contains("rebuilt from the verified journal"),
        "{}",
        rerun.stderr
    );
    assert_eq!(emu.stats().requests, 3, "nothing sent again");
    assert_eq!(common::summary(&out)["by_decision"]["approved"], approved);
    assert!(rewritten(&out, &before).contains(&"results.csv".to_string()));
    check_sums(&out);
    // a checkpoint of the format before the digest: the same
    let sealed: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    std::fs::write(&state, sealed["checkpoint"].to_string()).unwrap();
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert!(
        rerun.stderr.contains("not a checkpoint of this version"),
        "{}",
        rerun.stderr
    );
    assert_eq!(common::summary(&out)["by_decision"]["approved"], approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_that_adds_records_rebuilds() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(3);
    assert_eq!(scan(&emu, &src, &out, &["--quiet"]).await.code, 0);
    let csv = stamp(&out.join("results.csv"));
    images(&src, 3, 2);
    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(!rerun.stderr.contains(LEFT), "{}", rerun.stderr);
    assert_ne!(stamp(&out.join("results.csv")).bytes, csv.bytes);
    assert_eq!(csv_keys(&out).len(), 5);
    let s = common::summary(&out);
    assert_eq!(s["items"]["total"], 5);
    assert_eq!(s["built_from"]["journal"]["item_records"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_or_altered_outputs_and_another_price_are_rebuilt() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(3);
    assert_eq!(scan(&emu, &src, &out, &["--quiet"]).await.code, 0);
    let csv = std::fs::read(out.join("results.csv")).unwrap();

    std::fs::remove_file(out.join("results.csv")).unwrap();
    let run = scan(&emu, &src, &out, &[]).await;
    assert!(!run.stderr.contains(LEFT), "{}", run.stderr);
    assert_eq!(
        std::fs::read(out.join("results.csv")).unwrap(),
        csv,
        "rebuilt"
    );

    // cut short (or replaced by something else)
    std::fs::write(out.join("results.json"), "[\n").unwrap();
    let run = scan(&emu, &src, &out, &[]).await;
    assert!(!run.stderr.contains(LEFT), "{}", run.stderr);
    let json: Vec<Value> =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json.len(), 3);

    // a small file removed: the small files are written again, the results left
    let csv = stamp(&out.join("results.csv"));
    std::fs::remove_file(out.join("report.html")).unwrap();
    let run = scan(&emu, &src, &out, &[]).await;
    assert!(
        run.stderr.contains(
            "written again with this run, because report.html is not the file last written"
        ),
        "{}",
        run.stderr
    );
    assert!(out.join("report.html").is_file());
    assert_eq!(stamp(&out.join("results.csv")), csv);
    check_sums(&out);

    // another price changes the cost estimate: rebuilt
    let csv = stamp(&out.join("results.csv"));
    let run = scan(&emu, &src, &out, &["--price-per-call", "0.5"]).await;
    assert!(!run.stderr.contains(LEFT), "{}", run.stderr);
    assert_ne!(stamp(&out.join("results.csv")).ino, csv.ino);
    assert_eq!(common::summary(&out)["credits"]["price_per_call_usd"], 0.5);
    assert_eq!(common::summary(&out)["credits"]["estimated_cost_usd"], 1.5);
    let run = scan(&emu, &src, &out, &["--price-per-call", "0.5"]).await;
    assert!(
        run.stderr.contains(LEFT),
        "same price again: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_jsonl_holds_the_records_of_results_json_one_a_line() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(5);
    common::write(&src, "broken.jpg", b"not an image at all");
    let run = scan(&emu, &src, &out, &["--results-format", "both"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let array: Vec<Value> =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines, array, "the same records, in the same order");
    assert_eq!(
        lines
            .iter()
            .map(|o| o["key"].as_str().unwrap())
            .collect::<Vec<_>>(),
        csv_keys(&out)
    );
    assert!(
        lines
            .iter()
            .all(|o| o["simulated"].is_null() && o.get("response").is_none())
    );
    assert!(lines.iter().any(|o| o["action"] == "fix_input"));
    let mode = std::fs::metadata(out.join("results.jsonl")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        run.stderr.contains("results.jsonl"),
        "listed: {}",
        run.stderr
    );

    // jsonl only: results.json goes (it would be stale), and says so
    let run = scan(&emu, &src, &out, &["--results-format", "jsonl"]).await;
    assert!(!run.stderr.contains(LEFT), "another format rebuilds");
    assert!(
        run.stderr
            .contains("Removed results.json (it would describe an older journal state)"),
        "{}",
        run.stderr
    );
    assert!(!out.join("results.json").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
        text
    );
    let files = common::summary(&out)["built_from"]["files"].clone();
    assert_eq!(
        files,
        serde_json::json!([
            "results.csv",
            "results.jsonl",
            "summary.json",
            "summary.md",
            "report.html"
        ])
    );

    // the out dir keeps its format without the flag, on a rerun and in `report`
    let run = scan(&emu, &src, &out, &[]).await;
    assert!(
        run.stderr.contains(
            "every output (results.csv, results.jsonl, summary.json, summary.md, report.html \
             and ignored.csv) was left exactly as it was"
        ),
        "{}",
        run.stderr
    );
    let report = common::report(&out, &[]).await;
    assert_eq!(report.code, 1, "{report:?}");
    assert!(!out.join("results.json").exists());
    assert!(out.join("results.jsonl").is_file());
    let report = common::report(&out, &["--results-format", "json"]).await;
    assert!(
        report.stderr.contains("Removed results.jsonl"),
        "{report:?}"
    );
    assert!(out.join("results.json").is_file() && !out.join("results.jsonl").exists());
}

// Journal-level cases, through the library.

/// The run header of `report`'s journals, without a threshold, over `m.csv`.
fn run_line(resumed: bool) -> Line {
    let Line::Run(mut info) = crate::report::run_line(resumed, false) else {
        unreachable!("a run header")
    };
    info.started_at = format!("2026-04-0{}T08:00:00Z", 1 + u8::from(resumed));
    info.settings.threshold = None;
    info.sources = vec!["m.csv".into()];
    Line::Run(info)
}

fn end_line(outcome: RunOutcome, skipped: u64) -> Line {
    Line::End(RunEnd {
        finished_at: "2026-04-02T09:00:00Z".into(),
        wall_secs: 30.0,
        outcome,
        stop_reason: (outcome == RunOutcome::Interrupted)
            .then(|| "interrupted (Ctrl-C): rerun the same command to resume".into()),
        inputs: 3,
        skipped_done: skipped,
        ..Default::default()
    })
}

fn item(key: &str, seq: u64) -> Line {
    Line::Item(Box::new(
        Record {
            key: key.into(),
            path: format!("{key}.jpg"),
            seq: Some(seq),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            score: Some(90.0),
            attempts: 1,
            billed: true,
            ..Default::default()
        }
        .with_action(),
    ))
}

fn append(dir: &Path, lines: &[Line]) {
    let mut w = Writer::open(&dir.join(JOURNAL_FILE), None).unwrap();
    for l in lines {
        w.append(l).unwrap();
    }
    w.finish().unwrap();
}

fn first_run(dir: &Path) {
    append(
        dir,
        &[
            run_line(false),
            item("c", 2),
            item("a", 0),
            item("b", 1),
            end_line(RunOutcome::Completed, 0),
        ],
    );
}

#[test]
fn an_interrupted_rerun_is_summarised_without_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    let opts = ReportOptions::default();
    report::write_outputs(dir.path(), &opts).unwrap();
    let csv = stamp(&dir.path().join("results.csv"));
    let summary_json = stamp(&dir.path().join("summary.json"));
    append(
        dir.path(),
        &[
            run_line(true),
            Line::Sending(liveness_batch::journal::Sending { key: "x".into() }),
            end_line(RunOutcome::Interrupted, 2),
        ],
    );
    let out = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(out.all_left, "the small files are as last written");
    assert_eq!(
        out.left,
        [
            "results.csv",
            "results.json",
            "summary.json",
            "summary.md",
            "report.html",
        ]
    );
    assert_eq!(stamp(&dir.path().join("results.csv")), csv);
    assert_eq!(stamp(&dir.path().join("summary.json")), summary_json);
    let s = &out.summary;
    assert_eq!(s.outcome, "interrupted");
    assert!(s.interrupted);
    assert!(s.stop_reason.as_deref().unwrap().contains("Ctrl-C"));
    assert_eq!(s.inputs.as_ref().unwrap().skipped_done, 2);
    assert_eq!((s.runs, s.wall_secs, s.items.total), (2, 60.0, 3));
    assert_eq!(csv_keys(dir.path()), ["a", "b", "c"], "input order");
    // The same again once summary.json was replaced: the small files are written again,
    // describing the interrupted run.
    std::fs::write(dir.path().join("summary.json"), "{}").unwrap();
    let again = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(!again.all_left);
    assert_eq!(again.left, ["results.csv", "results.json"]);
    assert!(
        again
            .rewritten_because
            .as_deref()
            .unwrap()
            .contains("summary.json is not the file last written")
    );
    assert_eq!(common::summary(dir.path())["outcome"], "interrupted");
    assert_eq!(&again.summary, s);
    // exactly what a rebuild says
    let rebuilt = report::rebuild(dir.path(), &opts).unwrap();
    assert!(rebuilt.left.is_empty());
    assert_eq!(&rebuilt.summary, s);
}

#[test]
fn anything_but_run_lines_since_or_another_journal_rebuilds() {
    let opts = ReportOptions::default();
    // a journal that gained a record
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    report::write_outputs(dir.path(), &opts).unwrap();
    append(dir.path(), &[run_line(true), item("d", 3)]);
    let out = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(out.left.is_empty());
    assert_eq!(out.summary.items.total, 4);
    assert_eq!(out.summary.outcome, "incomplete");

    // a last line cut short: rebuilt, so the warning is there
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    report::write_outputs(dir.path(), &opts).unwrap();
    let mut text = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    text.extend_from_slice(b"{\"type\":\"run\",\"tool_ver");
    std::fs::write(dir.path().join(JOURNAL_FILE), &text).unwrap();
    let out = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(out.left.is_empty());
    assert!(out.summary.warnings.iter().any(|w| w.contains("cut short")));
    assert!(
        !dir.path().join(STATE_FILE).exists(),
        "a summary with a warning from the cut line is never patched later"
    );

    // another journal of the same length in its place
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    report::write_outputs(dir.path(), &opts).unwrap();
    let other = std::fs::read_to_string(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .replace("\"b.jpg\"", "\"z.jpg\"");
    std::fs::write(dir.path().join(JOURNAL_FILE), other).unwrap();
    let out = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(out.left.is_empty(), "the last item line changed");

    // outputs written by another version of the outputs' format
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    report::write_outputs(dir.path(), &opts).unwrap();
    let state = dir.path().join(STATE_FILE);
    edit_checkpoint(&state, |cp| cp["built_from"]["format"] = 1.into());
    append(
        dir.path(),
        &[run_line(true), end_line(RunOutcome::Completed, 3)],
    );
    let out = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(out.left.is_empty());
    // and the same for a damaged checkpoint
    std::fs::write(&state, "{").unwrap();
    assert!(
        report::refresh_outputs(dir.path(), &opts, &[], None)
            .unwrap()
            .left
            .is_empty()
    );
    // while an intact one is used
    let out = report::refresh_outputs(dir.path(), &opts, &[], None).unwrap();
    assert!(out.all_left && out.left.len() == 5, "{:?}", out.left);
    let jsonl = ReportOptions {
        results_format: Some(ResultsFormat::Jsonl),
        ..opts
    };
    let out = report::refresh_outputs(dir.path(), &jsonl, &[], None).unwrap();
    assert!(out.left.is_empty(), "another results format");
    assert_eq!(out.removed, ["results.json"]);
}

#[test]
fn outputs_never_follow_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("victim");
    std::fs::write(&target, "keep me").unwrap();
    first_run(dir.path());
    for name in ["results.jsonl", "results.jsonl.tmp"] {
        let link = dir.path().join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let opts = ReportOptions {
            results_format: Some(ResultsFormat::Jsonl),
            ..Default::default()
        };
        let built = report::rebuild(dir.path(), &opts);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "keep me",
            "{name}"
        );
        if built.is_ok() {
            let m = std::fs::symlink_metadata(dir.path().join("results.jsonl")).unwrap();
            assert!(m.file_type().is_file(), "the link was replaced: {name}");
        }
        assert!(!dir.path().join("results.jsonl.tmp").exists(), "{name}");
    }
}

/// Every output file, by name.
fn output_bytes(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != JOURNAL_FILE && !n.starts_with(".liveness-batch.lock"))
        .map(|n| {
            let bytes = std::fs::read(out.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    files.sort();
    files
}

/// The outputs a scan builds from what it gathered as it wrote a new journal are, byte for
/// byte, what `report` builds from the journal: on a run with every kind of outcome (results,
/// duplicates, refused files, retries, errors left), and on a manifest with carried columns,
/// face attributes and both JSON forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_gathered_during_a_scan_are_those_report_builds() {
    const GATHERED: &str = "outputs from what the scan gathered as it wrote the journal";
    let emu = common::emulator(|cfg| {
        cfg.faults.p500 = 0.2;
        cfg.faults.reset = 0.05;
    })
    .await;
    let (tmp, src, _) = setup(40);
    common::write(&src, "copy-of-3.jpg", &common::jpeg(7003));
    common::write(&src, "notes.jpg", b"not an image at all");
    common::write(&src, "empty.png", b"");
    let manifest = src.join("people.csv");
    let mut text = String::from("id,path,vendor_data,branch,team\n");
    for i in 0..12 {
        text.push_str(&format!(
            "u{i},img{i:03}.jpg,user-{i},\"North, {i}\",t{}\n",
            i % 3
        ));
    }
    text.push_str("u99,missing.jpg,user-99,South,t0\n");
    std::fs::write(&manifest, text).unwrap();

    // (name, input, scan's options, report's options)
    let cases: [(&str, &Path, &[&str], &[&str]); 2] = [
        ("folder", &src, &["--max-retries", "1"], &[]),
        (
            "manifest",
            &manifest,
            &[
                "--include-face-attributes",
                "--results-format",
                "both",
                "--max-retries",
                "1",
            ],
            &["--include-face-attributes"],
        ),
    ];
    for (name, input, extra, report_extra) in cases {
        let out = tmp.path().join(format!("out-{name}"));
        let mut argv = extra.to_vec();
        argv.push("-vv");
        let run = scan(&emu, input, &out, &argv).await;
        assert!(matches!(run.code, 0 | 1), "{name}: {run:?}");
        assert!(
            run.stderr.contains(GATHERED),
            "{name}: the scan built its outputs from what it gathered: {}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("resume index from what the run gathered as it wrote the journal"),
            "{name}: and saved its resume index from it: {}",
            run.stderr
        );
        let items = common::journal_items(&out);
        let classes: std::collections::BTreeSet<String> = items
            .iter()
            .map(|i| i["class"].as_str().unwrap().to_string())
            .collect();
        assert!(classes.len() >= 2, "{name}: a mix of outcomes: {classes:?}");
        let scanned = output_bytes(&out);
        assert!(
            scanned.iter().any(|(n, _)| n == "results.csv"),
            "{scanned:?}"
        );
        let report = common::report(&out, report_extra).await;
        assert_eq!(report.code, run.code, "{name}: {report:?}");
        let rebuilt = output_bytes(&out);
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&scanned), names(&rebuilt), "{name}");
        for ((file, got), (_, want)) in scanned.iter().zip(&rebuilt) {
            assert!(
                got == want,
                "{name}: {file} differs between the scan and report:\n{}\n---\n{}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(want)
            );
        }
    }
}
