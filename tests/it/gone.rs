//! Integration tests: results describe today's population. A file deleted, renamed or replaced
//! by a link between two scans moves to gone.csv (out of results.csv, the counts and the input
//! fingerprint), `report` rebuilds the same outputs from the journal alone, a file restored
//! comes back without a request, and a run that did not read its whole input marks nothing gone.

use std::collections::BTreeSet;
use std::path::Path;

use liveness_batch::emulator::Emulator;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, ScanRun};

/// `scan SRC --out OUT` with the fast settings and `extra`, in this process: the exit code.
async fn scan(emu: &Emulator, src: &Path, out: &Path, extra: &[&str]) -> i32 {
    ScanRun::new(emu, src, out).args(extra).run().await
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn keys_of(path: &Path) -> BTreeSet<String> {
    common::csv_rows(path)
        .into_iter()
        .map(|r| r["key"].clone())
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// The input fingerprint as the README tells an auditor to compute it from results.csv.
fn fingerprint_of_results(out: &Path) -> String {
    let mut digests: Vec<[u8; 32]> = common::csv_rows(&out.join("results.csv"))
        .into_iter()
        .filter(|r| !r["status"].is_empty())
        .map(|r| Sha256::digest(format!("{}\t{}", r["key"], r["sha256"])).into())
        .collect();
    digests.sort();
    hex::encode(Sha256::digest(digests.concat()))
}

fn fingerprint(out: &Path) -> String {
    common::summary(out)["audit"]["input_fingerprint"]["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every output but the journal, by name, with its bytes.
fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && name != "journal.jsonl"
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_renamed_and_linked_files_move_to_gone_csv_and_come_back_when_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    let bytes: Vec<Vec<u8>> = (0..5).map(|i| common::jpeg(210_000 + i)).collect();
    for (i, b) in bytes.iter().enumerate() {
        common::write(&src, &format!("img{i}.jpg"), b);
    }
    let emu = common::emulator(|_| {}).await;
    let first = scan(&emu, &src, &out, &[]).await;
    assert_eq!(first, 0, "{first:?}");
    assert_eq!(emu.stats().requests, 5);
    let all = set(&["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "img4.jpg"]);
    assert_eq!(keys_of(&out.join("results.csv")), all);
    assert!(!out.join("gone.csv").exists());
    let whole = fingerprint(&out);

    // img0 deleted, img1 renamed, img2 replaced by a link to a copy outside the source.
    std::fs::remove_file(src.join("img0.jpg")).unwrap();
    std::fs::rename(src.join("img1.jpg"), src.join("moved1.jpg")).unwrap();
    let outside = common::write(tmp.path(), "elsewhere/img2.jpg", &bytes[2]);
    std::fs::remove_file(src.join("img2.jpg")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("img2.jpg")).unwrap();

    let second = scan(&emu, &src, &out, &[]).await;
    assert_eq!(second, 0, "{second:?}");
    assert_eq!(
        emu.stats().requests,
        5,
        "the renamed file reuses its result: nothing is sent"
    );
    let gone_lines: Vec<Value> = common::journal_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "gone")
        .collect();
    assert_eq!(gone_lines.len(), 3, "{gone_lines:?}");
    assert_eq!(
        keys_of(&out.join("results.csv")),
        set(&["img3.jpg", "img4.jpg", "moved1.jpg"])
    );
    let gone = common::csv_rows(&out.join("gone.csv"));
    assert_eq!(
        gone.iter()
            .map(|r| r["key"].clone())
            .collect::<BTreeSet<_>>(),
        set(&["img0.jpg", "img1.jpg", "img2.jpg"])
    );
    let first_items = common::journal_items(&out);
    for row in &gone {
        let record = first_items
            .iter()
            .find(|i| i["key"] == row["key"].as_str())
            .unwrap();
        assert_eq!(row["status"], record["status"].as_str().unwrap(), "{row:?}");
        assert_eq!(row["class"], "result");
        assert_eq!(
            row["last_recorded_at"],
            record["finished_at"].as_str().unwrap()
        );
        assert!(!row["missing_since"].is_empty() && !row["missing_since_run"].is_empty());
        assert!(!row["action"].is_empty());
    }
    // The link is listed as such in ignored.csv, and only in gone.csv.
    let ignored = std::fs::read_to_string(out.join("ignored.csv")).unwrap();
    assert!(
        ignored.contains("img2.jpg") && ignored.contains("symbolic link"),
        "{ignored}"
    );
    // Counted apart: out of the items and the fingerprint.
    let s = common::summary(&out);
    assert_eq!(s["items"]["total"], 3, "{}", s["items"]);
    assert_eq!(s["items"]["gone"], 3, "{}", s["items"]);
    assert_eq!(s["audit"]["input_fingerprint"]["items"], 3);
    assert_ne!(fingerprint(&out), whole);
    assert_eq!(fingerprint(&out), fingerprint_of_results(&out));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("3 more no longer in the sources"), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("No longer in the sources (gone.csv)"),
        "{html}"
    );
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  gone.csv"), "{sums}");
    let mode = std::fs::metadata(out.join("gone.csv")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0
    );

    // The journal alone rebuilds the same outputs.
    let before = outputs(&out);
    let report = common::run_bin(&["report", p(&out)], None, None).await;
    assert_eq!(report.code, 0, "{report:?}");
    assert_eq!(
        outputs(&out),
        before,
        "report rebuilds byte-identical outputs"
    );

    // A third scan with nothing changed marks nothing again and leaves the outputs.
    let third = scan(&emu, &src, &out, &[]).await;
    assert_eq!(third, 0, "{third:?}");
    let gone_now = common::journal_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "gone")
        .count();
    assert_eq!(gone_now, 3, "a key already gone is not marked again");

    // Restored (same content, new times; the rename undone; the link replaced by the file):
    // back in the results with no request.
    common::write(&src, "img0.jpg", &bytes[0]);
    std::fs::rename(src.join("moved1.jpg"), src.join("img1.jpg")).unwrap();
    std::fs::remove_file(src.join("img2.jpg")).unwrap();
    common::write(&src, "img2.jpg", &bytes[2]);
    let fourth = scan(&emu, &src, &out, &[]).await;
    assert_eq!(fourth, 0, "{fourth:?}");
    assert_eq!(emu.stats().requests, 5, "nothing is sent again");
    assert_eq!(keys_of(&out.join("results.csv")), all);
    assert_eq!(fingerprint(&out), whole, "the same population again");
    assert_eq!(
        keys_of(&out.join("gone.csv")),
        set(&["moved1.jpg"]),
        "the renamed key is the one gone now"
    );
    let s = common::summary(&out);
    assert_eq!(
        (s["items"]["total"].as_u64(), s["items"]["gone"].as_u64()),
        (Some(5), Some(1))
    );

    // Everything gone comes back: gone.csv is removed, and SHA256SUMS no longer lists it.
    common::write(&src, "moved1.jpg", &bytes[1]);
    let fifth = scan(&emu, &src, &out, &[]).await;
    assert_eq!(fifth, 0, "{fifth:?}");
    assert!(!out.join("gone.csv").exists());
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(!sums.contains("gone.csv"), "{sums}");
    assert_eq!(common::summary(&out)["items"]["gone"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_before_the_end_of_its_input_marks_nothing_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    for i in 0..3 {
        common::write(&src, &format!("img{i}.jpg"), &common::jpeg(220_000 + i));
    }
    let emu = common::emulator(|_| {}).await;
    let first = scan(&emu, &src, &out, &[]).await;
    assert_eq!(first, 0, "{first:?}");
    std::fs::remove_file(src.join("img0.jpg")).unwrap();
    for i in 3..6 {
        common::write(&src, &format!("img{i}.jpg"), &common::jpeg(220_000 + i));
    }
    // The budget stops the run before its input is done: what it did not reach may be there.
    let stopped = scan(&emu, &src, &out, &["--max-requests", "1"]).await;
    assert_eq!(stopped, 4, "{stopped:?}");
    let lines = common::journal_lines(&out);
    assert!(
        lines.iter().all(|l| l["type"] != "gone"),
        "nothing marked gone"
    );
    assert!(keys_of(&out.join("results.csv")).contains("img0.jpg"));
    assert!(!out.join("gone.csv").exists());
    assert_eq!(common::summary(&out)["items"]["gone"], 0);

    // The run that reads everything does.
    let whole = scan(&emu, &src, &out, &[]).await;
    assert_eq!(whole, 0, "{whole:?}");
    assert_eq!(keys_of(&out.join("gone.csv")), set(&["img0.jpg"]));
    assert!(!keys_of(&out.join("results.csv")).contains("img0.jpg"));
}

/// A deletion alone (no record added): the outputs built before are not left as they were, they
/// are rebuilt with the key in gone.csv, as `report` builds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_alone_rebuilds_the_outputs_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    for i in 0..2 {
        common::write(&src, &format!("img{i}.jpg"), &common::jpeg(240_000 + i));
    }
    let emu = common::emulator(|_| {}).await;
    assert_eq!(scan(&emu, &src, &out, &[]).await, 0);
    std::fs::remove_file(src.join("img1.jpg")).unwrap();
    let r = scan(&emu, &src, &out, &[]).await;
    assert_eq!(r, 0, "{r:?}");
    assert!(
        common::journal_items(&out).len() == 2,
        "no record added: only the gone line"
    );
    assert_eq!(keys_of(&out.join("results.csv")), set(&["img0.jpg"]));
    assert_eq!(keys_of(&out.join("gone.csv")), set(&["img1.jpg"]));
    let built = outputs(&out);
    let report = common::run_bin(&["report", p(&out)], None, None).await;
    assert_eq!(report.code, 0, "{report:?}");
    assert_eq!(outputs(&out), built);
}

/// An image without a result leaves the exit code's count when its file is gone, and is back in
/// it when the file is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_image_without_a_result_no_longer_sets_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    common::write(&src, "a.jpg", &common::jpeg(250_000));
    common::write(&src, "empty.jpg", b"");
    let emu = common::emulator(|_| {}).await;
    let first = scan(&emu, &src, &out, &[]).await;
    assert_eq!(first, 1, "the empty file has no result: {first:?}");
    std::fs::remove_file(src.join("empty.jpg")).unwrap();
    let second = scan(&emu, &src, &out, &[]).await;
    assert_eq!(
        second, 0,
        "every image listed today has a result: {second:?}"
    );
    let gone = common::csv_rows(&out.join("gone.csv"));
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0]["key"].as_str(), gone[0]["action"].as_str()),
        ("empty.jpg", "fix_input")
    );
    let s = common::summary(&out);
    assert_eq!(s["items"]["without_result"], 0, "{}", s["items"]);
    common::write(&src, "empty.jpg", b"");
    let third = scan(&emu, &src, &out, &[]).await;
    assert_eq!(third, 1, "back, still without a result: {third:?}");
    assert!(!out.join("gone.csv").exists());
    assert_eq!(emu.stats().requests, 1);
}

/// A run over other sources than the runs before it (a daily folder of new uploads into the
/// same out dir, say) says nothing of the items of the other sources: only an item whose record
/// names a source this run read, and that the source no longer holds, is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_other_sources_takes_nothing_for_gone() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let (day1, day2, out) = (
        tmp.path().join("day1"),
        tmp.path().join("day2"),
        tmp.path().join("out"),
    );
    common::write(&day1, "a.jpg", &common::jpeg(71));
    common::write(&day1, "b.jpg", &common::jpeg(72));
    common::write(&day2, "c.jpg", &common::jpeg(73));
    common::write(&day2, "d.jpg", &common::jpeg(74));
    assert_eq!(scan(&emu, &day1, &out, &[]).await, 0);
    assert_eq!(scan(&emu, &day2, &out, &[]).await, 0);
    assert!(!out.join("gone.csv").exists(), "nothing gone");
    assert_eq!(
        keys_of(&out.join("results.csv")),
        set(&["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    );
    // day2 again, its file deleted: it is gone; day1's items are not
    std::fs::remove_file(day2.join("c.jpg")).unwrap();
    assert_eq!(scan(&emu, &day2, &out, &[]).await, 0);
    assert_eq!(keys_of(&out.join("gone.csv")), set(&["c.jpg"]));
    assert_eq!(emu.stats().requests, 4);
}
