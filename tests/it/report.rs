//! Integration tests: outputs rebuilt from journals (files, permissions, agreement between
//! them, spreadsheet safety), shard merging, and the `report` command through the binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use clap::Parser;

use liveness_batch::cli::{Cli, Command as Cmd, ReportArgs};
use liveness_batch::config::{ConfigError, ReportConfig};
use liveness_batch::journal::{
    self, DirLock, JOURNAL_FILE, Line, RunEnd, RunInfo, Sending, Settings, Writer,
};
use liveness_batch::record::{Class, Decision, FaceRecord, Record, WarningRecord};
use liveness_batch::report::{self, ReportError, ReportOptions, SIMULATED_NOTICE, Summary};
use serde_json::Value;

use crate::common::bin;

const OUTPUTS: [&str; 5] = [
    "results.csv",
    "results.json",
    "summary.json",
    "summary.md",
    "report.html",
];
const HYPERLINK: &str = "=HYPERLINK(\"http://x\")";

pub(crate) fn run_line(resumed: bool, simulated: bool) -> Line {
    Line::Run(RunInfo {
        tool_version: "0.1.0".into(),
        started_at: if resumed {
            "2026-03-02T08:00:00Z"
        } else {
            "2026-03-01T22:00:00Z"
        }
        .into(),
        settings: Settings {
            threshold: Some(40.0),
            rotate_image: false,
            save_api_request: false,
            api_host: if simulated {
                "127.0.0.1:4000"
            } else {
                "verification.didit.me"
            }
            .into(),
            simulated,
            ..Settings::default()
        },
        sources: vec!["manifest.csv".into()],
        rate: "240/min".into(),
        concurrency: 8,
        resumed,
        dedupe: true,
        max_requests: None,
        ..Default::default()
    })
}

fn end_line(outcome: &str, inputs: u64, not_processed: u64) -> Line {
    Line::End(RunEnd {
        finished_at: "2026-03-02T09:00:00Z".into(),
        wall_secs: 90.0,
        outcome: serde_json::from_value(outcome.into()).expect("an outcome"),
        stop_reason: (outcome == "stopped")
            .then(|| "out of credits (403 from Didit): top up credits, then rerun the same command to resume".into()),
        exit_code: 0,
        inputs,
        not_processed,
        requests: inputs,
        achieved_rate_per_min: Some(238.0),
        ..Default::default()
    })
}

fn result(key: &str, score: f64, risks: &[(&str, &str)]) -> Record {
    let declined = risks.iter().any(|(_, l)| *l == "error");
    Record {
        key: key.into(),
        path: format!("photos/{key}.jpg"),
        source: "manifest.csv".into(),
        sha256: Some(format!("{:0>64}", key.len())),
        size_bytes: Some(1234),
        format: Some("jpeg".into()),
        vendor_data: Some(format!("user-{key}")),
        class: Some(Class::Result),
        status: Some(if declined {
            Decision::Declined
        } else {
            Decision::Approved
        }),
        score: Some(score),
        face_quality: Some(80.0),
        face_luminance: Some(55.5),
        warnings: risks
            .iter()
            .map(|(r, l)| WarningRecord::new(r, l))
            .collect(),
        face: Some(FaceRecord {
            age: Some(33.0),
            gender: Some("male".into()),
            bbox: Some(vec![10.0, 20.0, 110.0, 140.0]),
            confidence: Some(0.98),
        }),
        request_id: Some(format!("req-{key}")),
        created_at: Some("2026-03-01T22:01:00Z".into()),
        http_status: Some(200),
        attempts: 1,
        billed: true,
        latency_ms: Some(420),
        finished_at: Some("2026-03-01T22:01:00Z".into()),
        response: Some(serde_json::json!({"raw": "api body", "key": key}).into()),
        ..Default::default()
    }
    .with_action()
}

fn failed(key: &str, class: Class, attempts: u32, error: &str) -> Record {
    Record {
        key: key.into(),
        path: format!("photos/{key}.jpg"),
        source: "manifest.csv".into(),
        class: Some(class),
        attempts,
        error: Some(error.into()),
        ..Default::default()
    }
    .with_action()
}

/// Write `lines` as a journal. Each end line gets the counts a scan writes from its own run's
/// records (records written, deduplicated ones), so the reconciliation closes as it does for a
/// real run; `inputs` and `not_processed` stay as the test gave them. A record of requests sent
/// follows the `sending` line that announced them, as a scan writes it.
fn write_journal(dir: &Path, lines: &[Line]) {
    let mut w = Writer::open(&dir.join(JOURNAL_FILE), None).unwrap();
    let (mut recorded, mut dedup) = (0, 0);
    for l in lines {
        match l {
            Line::Run(_) => (recorded, dedup) = (0, 0),
            Line::Item(r) => {
                recorded += 1;
                dedup += u64::from(r.duplicate_of.is_some());
                if r.attempts > 0 && r.duplicate_of.is_none() {
                    let key = r.key.clone();
                    w.append(&Line::Sending(Sending { key })).unwrap();
                }
            }
            Line::End(end) => {
                let mut end = end.clone();
                end.recorded = recorded;
                end.deduplicated = dedup;
                w.append(&Line::End(end)).unwrap();
                continue;
            }
            _ => {}
        }
        w.append(l).unwrap();
    }
    w.finish().unwrap();
}

/// A journal of a first run (`simulated` or not) with one result, `key` scored `score`, then
/// `end`.
fn one_result_journal(dir: &Path, simulated: bool, key: &str, score: f64, end: Line) {
    write_journal(
        dir,
        &[
            run_line(false, simulated),
            item(result(key, score, &[])),
            end,
        ],
    );
}

fn item(r: Record) -> Line {
    Line::Item(Box::new(r))
}

/// A two-run journal: the first run stopped out of credits, the second resumed and finished.
/// 8 distinct keys; "k2" was redone (billed twice), "net" failed then succeeded.
fn realistic_journal(dir: &Path, simulated: bool) {
    let mut hyper = result("k1", 91.0, &[]);
    hyper.vendor_data = Some(HYPERLINK.into());
    hyper.columns.insert("region".into(), "EU".into());
    hyper
        .columns
        .insert("note".into(), "line one\nline \"two\", with comma".into());
    hyper
        .columns
        .insert("key".into(), "manifest's own key column".into());
    let mut k2_old = result("k2", 15.0, &[("LOW_LIVENESS_SCORE", "error")]);
    k2_old.columns.insert("region".into(), "US".into());
    let mut k2 = result("k2", 65.0, &[("LOW_FACE_QUALITY", "warning")]);
    k2.columns.insert("region".into(), "US".into());
    k2.request_id = Some("req-k2-again".into());
    let mut dup = result("k1-copy", 91.0, &[]);
    dup.duplicate_of = Some("k1".into());
    // The same image as k1: its answer is k1's.
    dup.sha256 = result("k1", 91.0, &[]).sha256;
    dup.request_id = Some("req-k1".into());
    dup.billed = false;
    dup.attempts = 0;
    let mut net_retry = result("net", 100.0, &[]);
    net_retry.attempts = 3;
    net_retry.rate_limited = 1;
    net_retry.possible_double_charges = 1;
    let mut rejected = failed("bad-ext", Class::Rejected, 1, "File extension not allowed");
    rejected.error_field = Some("user_image".into());
    rejected.http_status = Some(400);
    write_journal(
        dir,
        &[
            run_line(false, simulated),
            item(hyper),
            item(k2_old),
            item(result("fraud1", 5.0, &[("LIVENESS_FACE_ATTACK", "error")])),
            item(failed(
                "net",
                Class::Transient,
                5,
                "connection reset by peer",
            )),
            item(failed(
                "text.jpg",
                Class::InvalidInput,
                0,
                "not an image: it is plain text",
            )),
            end_line("stopped", 9, 3),
            run_line(true, simulated),
            item(k2),
            item(dup),
            item(net_retry),
            item(rejected),
            item(failed(
                "late",
                Class::Interrupted,
                1,
                "interrupted while in flight",
            )),
            // 8 keys: 5 recorded by this run, 3 done by the first (k1, fraud1, text.jpg)
            {
                let Line::End(mut end) = end_line("completed", 8, 0) else {
                    unreachable!()
                };
                end.skipped_done = 3;
                Line::End(end)
            },
        ],
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read_csv(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(dir.join("results.csv")).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn read_json(dir: &Path) -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

fn read_summary(dir: &Path) -> Summary {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn cell<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    &row[i]
}

#[test]
fn every_output_is_written_owner_only_and_they_agree() {
    let dir = tempfile::tempdir().unwrap();
    realistic_journal(dir.path(), false);
    let s = report::write_outputs(
        dir.path(),
        &ReportOptions {
            price_per_call: Some(0.25),
            ..Default::default()
        },
    )
    .unwrap();
    for f in OUTPUTS {
        let p = dir.path().join(f);
        assert!(p.is_file(), "{f} written");
        assert_eq!(mode(&p), 0o600, "{f} is owner-only");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );

    // one row/object per distinct key, everywhere
    let (header, rows) = read_csv(dir.path());
    let json = read_json(dir.path());
    let on_disk = read_summary(dir.path());
    assert_eq!(on_disk, s, "summary.json is the returned summary");
    assert_eq!(s.items.total, 8);
    assert_eq!(rows.len(), 8);
    assert_eq!(json.len(), 8);
    assert_eq!(s.by_class.values().sum::<u64>(), 8);
    assert_eq!(s.by_action.values().sum::<u64>(), 8);
    let keys: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        keys,
        [
            "k1", "fraud1", "text.jpg", "k2", "k1-copy", "net", "bad-ext", "late"
        ]
    );
    for (row, obj) in rows.iter().zip(&json) {
        assert_eq!(row[0], obj["key"].as_str().unwrap());
        assert_eq!(
            cell(&header, row, "action"),
            obj["action"].as_str().unwrap()
        );
        assert_eq!(cell(&header, row, "class"), obj["class"].as_str().unwrap());
        assert!(
            obj.get("response").is_none(),
            "raw API responses stay in the journal"
        );
    }
    // the latest record is the outcome; class and action counts agree with the rows
    for (class, n) in &s.by_class {
        let in_csv = rows
            .iter()
            .filter(|r| cell(&header, r, "class") == class.as_str())
            .count() as u64;
        assert_eq!(in_csv, *n, "{class:?}");
    }
    for (action, n) in &s.by_action {
        let in_json = json
            .iter()
            .filter(|o| o["action"] == action.as_str())
            .count() as u64;
        assert_eq!(in_json, *n, "{action:?}");
    }
    let k2 = rows.iter().find(|r| r[0] == "k2").unwrap();
    assert_eq!(cell(&header, k2, "score"), "65");
    assert_eq!(cell(&header, k2, "action"), "retake");
    assert_eq!(cell(&header, k2, "risk_levels"), "LOW_FACE_QUALITY:warning");

    // money counts every record, superseded ones included
    assert_eq!(s.credits.used, 5, "k1, k2 twice, fraud1, net");
    assert!((s.credits.estimated_cost_usd - 1.25).abs() < 1e-9);
    assert_eq!(s.credits.saved_by_deduplication, 1);
    // k1 1, k2 1 + 1, fraud1 1, net 5 + 3, text.jpg 0, k1-copy 0, bad-ext 1, late 1
    assert_eq!(s.requests.sent, 14);
    assert_eq!(s.requests.retries, 4 + 2);
    assert_eq!(s.requests.rate_limited_429, 1);
    assert_eq!(s.requests.possible_double_charges, 1);
    assert_eq!(s.by_decision.approved, 4);
    assert_eq!(s.by_decision.declined, 1);
    assert_eq!(s.class_count(Class::Interrupted), 1);
    assert_eq!(s.outcome, "completed");
    assert_eq!(s.runs, 2);
    assert_eq!(s.wall_secs, 180.0);
    assert_eq!(s.started_at.as_deref(), Some("2026-03-01T22:00:00Z"));
    assert!(!s.all_have_results());

    // the formula is defused in the CSV and kept as is in JSON
    let k1 = &rows[0];
    assert_eq!(cell(&header, k1, "vendor_data"), format!("'{HYPERLINK}"));
    assert_eq!(json[0]["vendor_data"], HYPERLINK);
    // carried columns: union over records, a colliding name prefixed, multi-line values intact
    assert_eq!(&header[..3], ["key", "action", "class"]);
    // 29 columns of ours: age, gender and bbox are left out by default
    assert_eq!(header[28], "finished_at");
    assert!(
        !header
            .iter()
            .any(|h| h == "age" || h == "gender" || h == "bbox")
    );
    assert_eq!(&header[29..], ["manifest.key", "note", "region"]);
    assert_eq!(
        cell(&header, k1, "manifest.key"),
        "manifest's own key column"
    );
    assert_eq!(
        cell(&header, k1, "note"),
        "line one\nline \"two\", with comma"
    );
    assert_eq!(cell(&header, k2, "region"), "US");
    assert_eq!(
        cell(&header, &rows[1], "region"),
        "",
        "a row without the column"
    );
    assert!(!header.iter().any(|h| h == "simulated"));

    // the human forms tell the same story
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let headline = s.headline();
    assert_eq!(
        headline,
        "8 images: 4 approved, 1 declined, 3 without a result (see 2 fix_input, 1 rerun)."
    );
    assert!(md.contains("8 images: 4 approved, 1 declined"), "{md}");
    assert!(html.contains("8 images: 4 approved, 1 declined"));
    assert!(html.contains("Items needing attention (5)"));
    assert!(html.contains("US$1.25"));
    assert!(!html.contains(SIMULATED_NOTICE) && !md.contains(SIMULATED_NOTICE));
    assert!(!html.contains("<script"));
    assert!(
        s.render_text()
            .contains("Credits    5 used, estimated cost US$1.25 at US$0.25/call")
    );
}

#[test]
fn rebuilding_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    realistic_journal(dir.path(), false);
    report::write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    let first: Vec<Vec<u8>> = OUTPUTS
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    report::write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    for (f, before) in OUTPUTS.iter().zip(first) {
        assert_eq!(std::fs::read(dir.path().join(f)).unwrap(), before, "{f}");
    }
}

#[test]
fn simulated_journals_are_stamped_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    realistic_journal(dir.path(), true);
    let s = report::write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    assert!(s.simulated);
    let (header, rows) = read_csv(dir.path());
    let i = header
        .iter()
        .position(|h| h == "simulated")
        .expect("simulated column");
    assert_eq!(i, 29, "after our columns, before the carried ones");
    assert!(rows.iter().all(|r| r[i] == "true"));
    assert!(read_json(dir.path()).iter().all(|o| o["simulated"] == true));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["simulated"], true);
    assert_eq!(summary["notice"], SIMULATED_NOTICE);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.lines().take(4).any(|l| l.contains(SIMULATED_NOTICE)),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<title>SIMULATED"));
    assert!(html.contains(SIMULATED_NOTICE));
    assert!(s.render_text().starts_with("*** SIMULATED"));
}

#[test]
fn merge_of_two_shards() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let top = tempfile::tempdir().unwrap();
    let out = top.path().join("merged");
    realistic_journal(a.path(), false);
    write_journal(
        b.path(),
        &[
            run_line(false, false),
            item(result("b1", 88.0, &[])),
            item(result(
                "b2",
                45.0,
                &[("POSSIBLE_FACE_IN_BLOCKLIST", "warning")],
            )),
            end_line("completed", 2, 0),
        ],
    );
    let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
    let s = report::merge(&dirs, &out, &ReportOptions::default()).unwrap();
    assert_eq!(s.journals, 2);
    assert_eq!(s.items.total, 10);
    assert_eq!(s.credits.used, 7);
    assert_eq!(
        s.inputs.as_ref().unwrap().inputs,
        10,
        "each journal's last end, summed"
    );
    assert_eq!(s.action_count(liveness_batch::record::Action::Fraud), 2);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(mode(&out.join(JOURNAL_FILE)), 0o600);
    for f in OUTPUTS {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    assert_eq!(read_csv(&out).1.len(), 10);
    assert_eq!(read_json(&out).len(), 10);
    // the shards are untouched
    assert!(!b.path().join("results.csv").exists());
    // the merged journal is the concatenation
    let len = |p: &Path| std::fs::metadata(p.join(JOURNAL_FILE)).unwrap().len();
    assert_eq!(len(&out), len(a.path()) + len(b.path()));
}

#[test]
fn merge_warns_about_keys_in_several_shards_and_refuses_bad_outs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let top = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        one_result_journal(d, false, "same", 80.0, end_line("completed", 1, 0));
    }
    let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
    let out = top.path().join("m");
    let s = report::merge(&dirs, &out, &ReportOptions::default()).unwrap();
    assert_eq!(s.items.total, 1);
    assert_eq!(s.credits.used, 2, "both shards billed it");
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("1 item keys appear in more than one merged journal"))
    );

    // out is one of the shards
    let e = report::merge(&dirs, a.path(), &ReportOptions::default()).unwrap_err();
    assert!(
        matches!(e, ReportError::Usage(_))
            && e.to_string().contains("one of the folders being merged"),
        "{e}"
    );
    // the same shard twice
    let twice = [a.path().to_path_buf(), a.path().to_path_buf()];
    let e = report::merge(&twice, &top.path().join("x"), &ReportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");
    // out holds a scan's journal
    let scan_out = top.path().join("scan-out");
    std::fs::create_dir(&scan_out).unwrap();
    write_journal(&scan_out, &[run_line(false, false)]);
    let before = std::fs::read(scan_out.join(JOURNAL_FILE)).unwrap();
    let e = report::merge(&dirs, &scan_out, &ReportOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ReportError::OutHoldsJournal { .. }), "{msg}");
    assert!(
        msg.contains("not the output of an earlier merge") && msg.contains("empty --out"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(scan_out.join(JOURNAL_FILE)).unwrap(),
        before,
        "left untouched"
    );
    // a shard without a journal
    let empty = tempfile::tempdir().unwrap();
    let e = report::merge(
        &[a.path().to_path_buf(), empty.path().to_path_buf()],
        &top.path().join("y"),
        &ReportOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("holds no journal.jsonl"), "{e}");
}

fn report_cmd(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("report")
        .args(args)
        .env_remove("DIDIT_API_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_command_rebuilds_in_place_with_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    realistic_journal(dir.path(), false);
    let (code, stderr) = report_cmd(&[dir.path().as_os_str()]);
    assert_eq!(code, 1, "some items have no result: {stderr}");
    assert!(
        stderr.contains("8 images: 4 approved, 1 declined, 3 without a result"),
        "{stderr}"
    );
    assert!(stderr.contains("fraud"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "says where the files are: {stderr}"
    );
    for f in OUTPUTS {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }

    let clean = tempfile::tempdir().unwrap();
    one_result_journal(clean.path(), false, "a", 90.0, end_line("completed", 1, 0));
    let (code, stderr) = report_cmd(&[
        clean.path().as_os_str(),
        "--price-per-call".as_ref(),
        "0.5".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 image: 1 approved, 0 declined."),
        "{stderr}"
    );
    assert!(stderr.contains("US$0.50"), "{stderr}");
}

#[test]
fn report_command_merges_into_out() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let top = tempfile::tempdir().unwrap();
    for (d, k) in [(a.path(), "a"), (b.path(), "b")] {
        one_result_journal(d, true, k, 70.0, end_line("completed", 1, 0));
    }
    let out = top.path().join("merged");
    let merge = [
        a.path().as_os_str(),
        b.path().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    let (code, stderr) = report_cmd(&merge);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Merged 2 journals into"), "{stderr}");
    assert!(stderr.contains(SIMULATED_NOTICE), "{stderr}");
    assert_eq!(read_summary(&out).items.total, 2);
    // rerunning the merge replaces its own output
    let (code, stderr) = report_cmd(&merge);
    assert_eq!(code, 0, "{stderr}");

    // one DIR with --out elsewhere: outputs go there, the source folder is left alone
    let single = top.path().join("single");
    let (code, stderr) = report_cmd(&[a.path().as_os_str(), "--out".as_ref(), single.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_summary(&single).items.total, 1);
    assert!(!a.path().join("results.csv").exists());
}

#[test]
fn report_command_usage_errors_are_clear() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        write_journal(d, &[run_line(false, false), end_line("completed", 0, 0)]);
    }
    let (code, stderr) = report_cmd(&[a.path().as_os_str(), b.path().as_os_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs --out DIR"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = report_cmd(&[empty.path().as_os_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("holds no journal.jsonl"), "{stderr}");

    let (code, stderr) = report_cmd(&[a.path().as_os_str(), "--price-per-call=-1".as_ref()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--price-per-call"), "{stderr}");

    // a damaged journal names the line
    let bad = tempfile::tempdir().unwrap();
    let mut text = serde_json::to_string(&run_line(false, false)).unwrap();
    text.push_str("\n{oops\n");
    text.push_str(&serde_json::to_string(&end_line("completed", 0, 0)).unwrap());
    text.push('\n');
    std::fs::write(bad.path().join(JOURNAL_FILE), text).unwrap();
    let (code, stderr) = report_cmd(&[bad.path().as_os_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("damaged at line 2"), "{stderr}");
}

#[test]
fn report_refuses_a_folder_a_scan_is_using() {
    let dir = tempfile::tempdir().unwrap();
    realistic_journal(dir.path(), false);
    let _lock = DirLock::acquire(dir.path()).unwrap();
    let (code, stderr) = report_cmd(&[dir.path().as_os_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(journal::LOCK_FILE),
        "names the lock: {stderr}"
    );
    assert!(!dir.path().join("results.csv").exists());
}

#[tokio::test]
async fn run_command_in_process() {
    let dir = tempfile::tempdir().unwrap();
    one_result_journal(dir.path(), false, "a", 90.0, end_line("stopped", 3, 2));
    let cfg = ReportConfig::from_args(report_args(&[dir.path().to_str().unwrap()])).unwrap();
    let code = report::run_command(cfg).await.unwrap();
    assert_eq!(code.code(), 1, "2 items were not processed");
    let s = read_summary(dir.path());
    assert_eq!(s.outcome, "stopped");
    assert!(s.stop_reason.unwrap().contains("rerun the same command"));
    assert_eq!(s.inputs.unwrap().not_processed, 2);
}

#[test]
fn large_journal_streams_with_bounded_attention_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join(JOURNAL_FILE), None).unwrap();
    w.append(&run_line(false, false)).unwrap();
    for i in 0..3000 {
        let r = if i % 2 == 0 {
            result(
                &format!("r{i}"),
                (i % 101) as f64,
                &[("LOW_LIVENESS_SCORE", "error")],
            )
        } else {
            result(&format!("r{i}"), 99.0, &[])
        };
        w.append(&item(r)).unwrap();
    }
    w.append(&end_line("completed", 3000, 0)).unwrap();
    w.finish().unwrap();
    let s = report::write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    assert_eq!(s.items.total, 3000);
    assert_eq!(s.items.needing_attention, 1500);
    assert_eq!(s.scores.buckets.iter().map(|b| b.count).sum::<u64>(), 3000);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("Items needing attention (1500)"));
    assert!(
        !html.contains("Showing the first"),
        "1500 rows fit under the cap"
    );
    assert_eq!(read_csv(dir.path()).1.len(), 3000);
}

/// `report` arguments as the command line gives them.
fn report_args(args: &[&str]) -> ReportArgs {
    let mut argv = vec!["liveness-batch", "report"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Cmd::Report(args) => args,
        _ => unreachable!("a report command"),
    }
}

#[test]
fn report_config_carries_the_arguments_and_checks_the_price() {
    let cfg = ReportConfig::from_args(report_args(&["a", "b", "--out", "m"])).unwrap();
    assert_eq!(cfg.dirs, [Path::new("a"), Path::new("b")]);
    assert_eq!(cfg.out.as_deref(), Some(Path::new("m")));
    assert_eq!(
        cfg.price_per_call, None,
        "the default price: the journal's check's list price"
    );
    let free = ReportConfig::from_args(report_args(&["a", "--price-per-call", "0"])).unwrap();
    assert_eq!(free.price_per_call, Some(0.0));
    assert_eq!(free.out, None);
    for bad in ["-0.01", "NaN", "inf"] {
        let e = ReportConfig::from_args(report_args(&["a", "--price-per-call", bad])).unwrap_err();
        assert!(matches!(e, ConfigError::Price(_)), "{bad}: {e}");
        assert!(e.to_string().contains("--price-per-call"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn run_command_merges_into_out_without_touching_the_shards() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, key) in [(&a, "a"), (&b, "b")] {
        one_result_journal(dir.path(), false, key, 90.0, end_line("completed", 1, 0));
    }
    let top = tempfile::tempdir().unwrap();
    let out = top.path().join("merged");
    let cfg = ReportConfig {
        dirs: vec![a.path().to_path_buf(), b.path().to_path_buf()],
        out: Some(out.clone()),
        price_per_call: Some(0.25),
        results_format: None,
        baseline: None,
        score_margin: 10.0,
        include_face_attributes: false,
        signer: None,
        public_key: None,
    };
    assert_eq!(report::run_command(cfg).await.unwrap().code(), 0);
    let s = read_summary(&out);
    assert_eq!((s.journals, s.items.total), (2, 2));
    assert_eq!(s.credits.price_per_call_usd, 0.25);
    for dir in [&a, &b] {
        assert!(
            !dir.path().join("summary.json").exists(),
            "shards untouched"
        );
    }
}
