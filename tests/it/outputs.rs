//! Integration tests: outputs rebuilt only when something changed. A scan rerun that adds no
//! record leaves the results files untouched (same bytes, same file) and says so, while its
//! summary still describes the run; anything that changes the outputs (new records, a deleted
//! or altered output, another price, another results format, another journal) rebuilds them;
//! `report` always rebuilds; results.jsonl holds what results.json holds, a record a line.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use liveness_batch::emulator::Emulator;
use liveness_batch::journal::{JOURNAL_FILE, Line, RunEnd, RunInfo, RunOutcome, Settings, Writer};
use liveness_batch::record::{Class, Decision, Record};
use liveness_batch::report::{self, ReportOptions, ResultsFormat, state::STATE_FILE};

use crate::common::{self, KEY, Run};

const LEFT: &str = "Nothing new since the outputs were built";

/// `n` distinct JPEGs in `dir`, named from `first` on.
fn images(dir: &Path, first: u64, n: u64) {
    for i in first..first + n {
        common::write(dir, &format!("img{i:03}.jpg"), &common::jpeg(7000 + i));
    }
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
    let mut argv = vec![
        "scan",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rate",
        "2000/s",
        "--backoff-ms",
        "5",
    ];
    argv.extend_from_slice(extra);
    common::run_bin(&argv, Some(&emu.base_url()), Some(KEY)).await
}

async fn report_bin(out: &Path, extra: &[&str]) -> Run {
    let mut argv = vec!["report", out.to_str().unwrap()];
    argv.extend_from_slice(extra);
    common::run_bin(&argv, None, None).await
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

fn summary(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

fn csv_keys(out: &Path) -> Vec<String> {
    common::csv_rows(&out.join("results.csv"))
        .into_iter()
        .map(|r| r["key"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_that_adds_nothing_leaves_the_results_and_says_so() {
    let emu = common::emulator(|_| {}).await;
    let (_tmp, src, out) = setup(6);
    let first = scan(&emu, &src, &out, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(!first.stderr.contains(LEFT), "{}", first.stderr);
    let csv = stamp(&out.join("results.csv"));
    let json = stamp(&out.join("results.json"));
    let before = summary(&out);
    assert_eq!(before["runs"], 1);

    let rerun = scan(&emu, &src, &out, &[]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(
        stamp(&out.join("results.csv")),
        csv,
        "results.csv untouched"
    );
    assert_eq!(
        stamp(&out.join("results.json")),
        json,
        "results.json untouched"
    );
    // one clear line, after the summary of this run
    let left: Vec<&str> = rerun.stderr.lines().filter(|l| l.contains(LEFT)).collect();
    assert_eq!(left.len(), 1, "{}", rerun.stderr);
    assert!(
        left[0].contains("results.csv and results.json left as they are")
            && left[0].contains("summary.json, summary.md and report.html updated"),
        "{}",
        left[0]
    );
    assert!(
        rerun.stderr.contains("6 images: ") && rerun.stderr.contains("Run completed"),
        "the summary is printed as usual: {}",
        rerun.stderr
    );
    let at = |needle: &str| rerun.stderr.find(needle).unwrap();
    assert!(at("6 images: ") < at(LEFT), "{}", rerun.stderr);
    // the summary describes this run too
    let after = summary(&out);
    assert_eq!(after["runs"], 2);
    assert_eq!(
        after["inputs"]["skipped_done"], 6,
        "this run's own counters"
    );
    assert_eq!(after["items"], before["items"]);
    assert_eq!(after["credits"], before["credits"]);
    let journal_len = std::fs::metadata(out.join(JOURNAL_FILE)).unwrap().len();
    assert_eq!(after["built_from"]["journal"]["bytes"], journal_len);
    assert_eq!(
        after["built_from"]["journal"]["item_records"],
        before["built_from"]["journal"]["item_records"]
    );
    assert!(
        rerun
            .stderr
            .contains("Inputs     6 found, 0 ignored (not images), 6 already done"),
        "{}",
        rerun.stderr
    );

    // A full rebuild gives exactly the summary files the rerun wrote: nothing was stale.
    let small = ["summary.json", "summary.md", "report.html"];
    let kept: Vec<Vec<u8>> = small
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    let report = report_bin(&out, &[]).await;
    assert_eq!(report.code, 0, "{report:?}");
    assert!(!report.stderr.contains(LEFT), "report always rebuilds");
    for (f, before) in small.iter().zip(kept) {
        assert_eq!(
            String::from_utf8(std::fs::read(out.join(f)).unwrap()).unwrap(),
            String::from_utf8(before).unwrap(),
            "{f}"
        );
    }
    let rebuilt = stamp(&out.join("results.csv"));
    assert_eq!(rebuilt.bytes, csv.bytes, "same content");
    assert_ne!(rebuilt.ino, csv.ino, "report wrote results.csv again");
    assert_ne!(stamp(&out.join("results.json")).ino, json.ino);

    // ...and after a report, a rerun again leaves them alone.
    let csv = stamp(&out.join("results.csv"));
    let again = scan(&emu, &src, &out, &["--quiet"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.is_empty(), "quiet: {}", again.stderr);
    assert_eq!(stamp(&out.join("results.csv")), csv);
    assert_eq!(summary(&out)["runs"], 3);
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
    let s = summary(&out);
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

    // the small files are written again whatever happens
    std::fs::remove_file(out.join("report.html")).unwrap();
    let run = scan(&emu, &src, &out, &[]).await;
    assert!(run.stderr.contains(LEFT), "{}", run.stderr);
    assert!(out.join("report.html").is_file());

    // another price changes the cost estimate: rebuilt
    let csv = stamp(&out.join("results.csv"));
    let run = scan(&emu, &src, &out, &["--price-per-call", "0.5"]).await;
    assert!(!run.stderr.contains(LEFT), "{}", run.stderr);
    assert_ne!(stamp(&out.join("results.csv")).ino, csv.ino);
    assert_eq!(summary(&out)["credits"]["price_per_call_usd"], 0.5);
    assert_eq!(summary(&out)["credits"]["estimated_cost_usd"], 1.5);
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
    let files = summary(&out)["built_from"]["files"].clone();
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
        run.stderr
            .contains("results.csv and results.jsonl left as they are"),
        "{}",
        run.stderr
    );
    let report = report_bin(&out, &[]).await;
    assert_eq!(report.code, 1, "{report:?}");
    assert!(!out.join("results.json").exists());
    assert!(out.join("results.jsonl").is_file());
    let report = report_bin(&out, &["--results-format", "json"]).await;
    assert!(
        report.stderr.contains("Removed results.jsonl"),
        "{report:?}"
    );
    assert!(out.join("results.json").is_file() && !out.join("results.jsonl").exists());
}

// Journal-level cases, through the library.

fn run_line(resumed: bool) -> Line {
    Line::Run(RunInfo {
        tool_version: "0.1.0".into(),
        started_at: format!("2026-04-0{}T08:00:00Z", 1 + u8::from(resumed)),
        settings: Settings {
            threshold: None,
            rotate_image: false,
            save_api_request: false,
            api_host: "verification.didit.me".into(),
            simulated: false,
        },
        sources: vec!["m.csv".into()],
        rate: "240/min".into(),
        concurrency: 8,
        resumed,
        dedupe: true,
        max_requests: None,
        ..Default::default()
    })
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
    append(
        dir.path(),
        &[
            run_line(true),
            Line::Sending(liveness_batch::journal::Sending { key: "x".into() }),
            end_line(RunOutcome::Interrupted, 2),
        ],
    );
    let out = report::refresh_outputs(dir.path(), &opts).unwrap();
    assert_eq!(out.left, ["results.csv", "results.json"]);
    assert_eq!(stamp(&dir.path().join("results.csv")), csv);
    let s = &out.summary;
    assert_eq!(s.outcome, "interrupted");
    assert!(s.interrupted);
    assert!(s.stop_reason.as_deref().unwrap().contains("Ctrl-C"));
    assert_eq!(s.inputs.as_ref().unwrap().skipped_done, 2);
    assert_eq!((s.runs, s.wall_secs, s.items.total), (2, 60.0, 3));
    assert_eq!(csv_keys(dir.path()), ["a", "b", "c"], "input order");
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
    let out = report::refresh_outputs(dir.path(), &opts).unwrap();
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
    let out = report::refresh_outputs(dir.path(), &opts).unwrap();
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
    let out = report::refresh_outputs(dir.path(), &opts).unwrap();
    assert!(out.left.is_empty(), "the last item line changed");

    // outputs written by another version of the outputs' format
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    report::write_outputs(dir.path(), &opts).unwrap();
    let state = dir.path().join(STATE_FILE);
    let mut cp: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    cp["built_from"]["format"] = 1.into();
    std::fs::write(&state, serde_json::to_vec(&cp).unwrap()).unwrap();
    append(
        dir.path(),
        &[run_line(true), end_line(RunOutcome::Completed, 3)],
    );
    let out = report::refresh_outputs(dir.path(), &opts).unwrap();
    assert!(out.left.is_empty());
    // and the same for a damaged checkpoint
    std::fs::write(&state, "{").unwrap();
    assert!(
        report::refresh_outputs(dir.path(), &opts)
            .unwrap()
            .left
            .is_empty()
    );
    // while an intact one is used
    assert_eq!(
        report::refresh_outputs(dir.path(), &opts)
            .unwrap()
            .left
            .len(),
        2
    );
    let jsonl = ReportOptions {
        results_format: Some(ResultsFormat::Jsonl),
        ..opts
    };
    let out = report::refresh_outputs(dir.path(), &jsonl).unwrap();
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
