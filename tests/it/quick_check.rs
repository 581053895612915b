//! Integration tests: a resume skips what an earlier run finished by the quick check (each
//! record keeps the item's size and modification time), reads an item again only when that
//! changed, sends it again only when its content changed, and `--checksum` reads everything.
//! Journals written before records had versions still resume.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use liveness_batch::emulator::Emulator;

use crate::common::{self, ScanRun};

/// `scan SRC --out OUT` against `emu` with fast settings, and `extra`.
async fn scan(emu: &Emulator, src: &Path, out: &Path, extra: &[&str]) -> common::Run {
    ScanRun::new(emu, src, out).args(extra).bin().await
}

/// The last run's end line.
fn end_line(out: &Path) -> Value {
    common::journal_lines(out)
        .into_iter()
        .rev()
        .find(|l| l["type"] == "end")
        .expect("an end line")
}

fn lines_of_type(out: &Path, kind: &str) -> Vec<Value> {
    common::journal_lines(out)
        .into_iter()
        .filter(|l| l["type"] == kind)
        .collect()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

/// Replace a file's bytes with others of the same length, then put its modification time
/// back: its version (size and time) is the one recorded, its content is not.
fn swap_content_keep_version(path: &Path, other: &[u8]) {
    let before = mtime(path);
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let mut bytes = other.to_vec();
    bytes.resize(len, 0);
    std::fs::write(path, &bytes).unwrap();
    set_mtime(path, before);
    assert_eq!(std::fs::metadata(path).unwrap().len() as usize, len);
}

fn three_images(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("selfies");
    for (i, name) in ["a.jpg", "b.jpg", "c.jpg"].iter().enumerate() {
        common::write(&src, name, &common::jpeg(100 + i as u64));
    }
    src
}

/// An emulator, three images in a temporary folder, and a first run over them that finished.
async fn finished_run() -> (Emulator, tempfile::TempDir, PathBuf, PathBuf) {
    let emu = common::emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let src = three_images(dir.path());
    let out = dir.path().join("out");
    assert_eq!(scan(&emu, &src, &out, &[]).await.code, 0);
    (emu, dir, src, out)
}

#[tokio::test]
async fn a_finished_run_resumes_without_reading_its_files_and_records_their_versions() {
    let (emu, _dir, src, out) = finished_run().await;
    assert_eq!(emu.stats().requests, 3);
    for item in common::journal_items(&out) {
        let v = item["version"].as_str().expect("a version on every record");
        assert!(v.starts_with("size=") && v.contains(" mtime="), "{v}");
    }

    // Same size and time, other bytes: the quick check trusts the version, so the file is not
    // even opened (had it been read, its new content would have been sent).
    swap_content_keep_version(&src.join("a.jpg"), &common::jpeg(999));
    let run = scan(&emu, &src, &out, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(emu.stats().requests, 3, "nothing sent");
    let end = end_line(&out);
    assert_eq!(end["skipped_done"], 3);
    assert_eq!(end["skipped_unread"], 3, "none was read: {end}");
    assert_eq!(common::journal_items(&out).len(), 3, "nothing recorded");

    // --checksum reads every file and sends only the changed one.
    let run = scan(&emu, &src, &out, &["--checksum"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(emu.stats().requests, 4, "only a.jpg was sent again");
    let end = end_line(&out);
    assert_eq!(
        (end["skipped_done"].as_u64(), end["skipped_unread"].as_u64()),
        (Some(2), Some(0))
    );
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 4);
    assert_eq!(items[3]["key"], "a.jpg");
}

#[tokio::test]
async fn a_changed_file_is_screened_again_and_a_touched_one_is_read_but_not_sent() {
    let (emu, _dir, src, out) = finished_run().await;
    assert_eq!(emu.stats().requests, 3);

    // b.jpg gets new content (and so a new time); c.jpg is only touched.
    std::fs::write(src.join("b.jpg"), common::jpeg(555)).unwrap();
    set_mtime(
        &src.join("b.jpg"),
        SystemTime::now() + Duration::from_secs(60),
    );
    set_mtime(
        &src.join("c.jpg"),
        SystemTime::now() + Duration::from_secs(3600),
    );
    let run = scan(&emu, &src, &out, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(emu.stats().requests, 4, "only the changed content is sent");
    let end = end_line(&out);
    assert_eq!(end["skipped_done"], 2, "{end}");
    assert_eq!(
        end["skipped_unread"], 1,
        "a.jpg is not read; c.jpg is: {end}"
    );
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 4);
    assert_eq!(items[3]["key"], "b.jpg");
    // The touched file's new version is journalled with the content it still has.
    let unchanged = lines_of_type(&out, "unchanged");
    assert_eq!(unchanged.len(), 1, "{unchanged:?}");
    assert_eq!(unchanged[0]["key"], "c.jpg");
    let first_c = items.iter().find(|i| i["key"] == "c.jpg").unwrap();
    assert_eq!(unchanged[0]["sha256"], first_c["sha256"]);
    assert_ne!(unchanged[0]["version"], first_c["version"]);

    // So the next resume skips all three without reading any.
    let run = scan(&emu, &src, &out, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(emu.stats().requests, 4);
    let end = end_line(&out);
    assert_eq!(end["skipped_unread"], 3, "{end}");
    assert_eq!(
        lines_of_type(&out, "unchanged").len(),
        1,
        "nothing new to journal"
    );

    // The outputs show one result per key, the changed file's latest.
    let rows = common::csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 3);
}

#[tokio::test]
async fn a_copy_with_new_times_is_read_once_then_trusted() {
    // Restoring a backup (or copying a folder) gives every file a new time: the first resume
    // reads and compares them all, sends none, and the one after reads none.
    let (emu, _dir, src, out) = finished_run().await;
    let later = SystemTime::now() + Duration::from_secs(7200);
    for name in ["a.jpg", "b.jpg", "c.jpg"] {
        set_mtime(&src.join(name), later);
    }
    assert_eq!(scan(&emu, &src, &out, &[]).await.code, 0);
    let end = end_line(&out);
    assert_eq!(
        (end["skipped_done"].as_u64(), end["skipped_unread"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(lines_of_type(&out, "unchanged").len(), 3);
    assert_eq!(scan(&emu, &src, &out, &[]).await.code, 0);
    assert_eq!(end_line(&out)["skipped_unread"], 3);
    assert_eq!(emu.stats().requests, 3);
}

#[tokio::test]
async fn a_dry_run_of_a_finished_run_reads_nothing_and_would_send_nothing() {
    let (emu, _dir, src, out) = finished_run().await;
    // Other bytes, same version: a dry run that read it would count it as one to send.
    swap_content_keep_version(&src.join("b.jpg"), &common::jpeg(77));
    let run = scan(&emu, &src, &out, &["--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("already done (skip)   3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("would send            0"),
        "{}",
        run.stdout
    );
    let run = scan(&emu, &src, &out, &["--dry-run", "--checksum"]).await;
    assert!(
        run.stdout.contains("would send            1"),
        "{}",
        run.stdout
    );
}

/// A journal written by a build whose records had no version (checked in, with its images).
const OLD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-without-versions"
);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn a_journal_without_versions_resumes_by_content_then_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("selfies");
    copy_dir(&Path::new(OLD).join("selfies"), &src);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::copy(
        Path::new(OLD).join("journal.jsonl"),
        out.join("journal.jsonl"),
    )
    .unwrap();
    assert!(
        common::journal_items(&out)
            .iter()
            .all(|i| i.get("version").is_none()),
        "the fixture predates versions"
    );
    common::write(&src, "new.jpg", &common::jpeg(4242));
    let (s, o) = (src.display().to_string(), out.display().to_string());
    let args = ["scan", &s, "--out", &o, "--emulator", "--quiet"];

    // Records without a version fall back to the content check: every old file is read and
    // skipped, only the new one is sent, and each old file's version is journalled.
    let run = common::run_bin(&args, None, None).await;
    assert_eq!(
        run.code, 1,
        "the fixture holds a refused file: {}",
        run.stderr
    );
    let end = end_line(&out);
    assert_eq!(end["requests"], 1, "{end}");
    assert_eq!(end["skipped_done"], 5, "{end}");
    assert_eq!(end["skipped_unread"], 0, "{end}");
    let unchanged: Vec<String> = lines_of_type(&out, "unchanged")
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        unchanged,
        ["a.jpg", "b.jpg", "bad.jpg", "dup.jpg", "tiny.png"]
    );
    let new = common::journal_items(&out).pop().unwrap();
    assert_eq!(new["key"], "new.jpg");
    assert!(new["version"].is_string());

    // From then on the quick check applies: nothing is read, nothing is sent.
    let run = common::run_bin(&args, None, None).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let end = end_line(&out);
    assert_eq!(
        (end["requests"].as_u64(), end["skipped_unread"].as_u64()),
        (Some(0), Some(6))
    );
    let rows = common::csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 6);
    let tiny = rows.iter().find(|r| r["key"] == "tiny.png").unwrap();
    assert_eq!(tiny["action"], "retake", "the old record still stands");
}

#[tokio::test]
async fn the_saved_index_is_private_and_a_missing_or_damaged_one_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let (emu, _dir, src, out) = finished_run().await;
    let saved = out.join(".liveness-batch-index");
    let meta = std::fs::metadata(&saved).expect("the index is saved at the end of a run");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // b.jpg changes; the index saved by the first run knows nothing of the second's lines,
    // which are read from the journal's tail.
    std::fs::write(src.join("b.jpg"), common::jpeg(31337)).unwrap();
    set_mtime(
        &src.join("b.jpg"),
        SystemTime::now() + Duration::from_secs(60),
    );
    assert_eq!(scan(&emu, &src, &out, &[]).await.code, 0);
    assert_eq!(emu.stats().requests, 4);

    // Damaged, then missing: the journal is read in full, with the same decisions.
    let mut bytes = std::fs::read(&saved).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&saved, &bytes).unwrap();
    let run = scan(&emu, &src, &out, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(end_line(&out)["skipped_unread"], 3);
    std::fs::remove_file(&saved).unwrap();
    let run = scan(&emu, &src, &out, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(end_line(&out)["skipped_unread"], 3);
    assert_eq!(emu.stats().requests, 4, "nothing sent again");
    assert!(saved.exists(), "saved again");
}
