//! Integration tests: `scan` end to end against an emulator on loopback: in this process, and
//! as the binary where its exit code, signals or printed messages are the point.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{self, KEY, ScanRun};

/// `n` distinct images under `dir`, alternating JPEG and PNG, spread over two subfolders.
fn images(dir: &Path, n: u64, seed0: u64) {
    for i in 0..n {
        let seed = seed0 + i;
        let (name, bytes) = if i % 2 == 0 {
            (format!("a/img{i:03}.jpg"), common::jpeg(seed))
        } else {
            (format!("b/img{i:03}.png"), common::png(seed))
        };
        common::write(dir, &name, &bytes);
    }
}

/// A temporary folder with `n` images from `seed0` on (see [`images`]) in `src`, and the path
/// of `out` next to it.
fn source(n: u64, seed0: u64) -> common::Dirs {
    common::dirs(|src| images(src, n, seed0))
}

fn classes(items: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i["class"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    m
}

fn assert_private(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if entry.file_type().unwrap().is_file() {
            assert_eq!(
                mode & 0o077,
                0,
                "{} is readable by others: {mode:o}",
                entry.path().display()
            );
        }
    }
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "out dir mode {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_scan_accounts_for_every_input_exactly_once() {
    let emu = common::emulator(|_| {}).await;
    let common::Dirs { src, out, .. } = &source(10, 100);
    common::write(
        src,
        "a/copy_of_img000.jpg",
        &std::fs::read(src.join("a/img000.jpg")).unwrap(),
    );
    common::write(
        src,
        "bad/not_a_photo.jpg",
        b"this is a text file, not a selfie\n",
    );
    common::write(src, "bad/empty.png", b"");
    common::write(src, "notes.json", b"{}");

    let run = ScanRun::new(&emu, src, out);
    assert_eq!(run.run().await, 1, "some inputs are bad, so exit 1");

    let items = run.items();
    assert_eq!(
        items.len(),
        13,
        "10 images + 1 copy + 2 bad files: {:#?}",
        classes(&items)
    );
    let keys: BTreeSet<_> = items
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 13, "every key once");
    assert!(
        keys.contains("a/img000.jpg") && keys.contains("bad/empty.png"),
        "{keys:?}"
    );
    let c = classes(&items);
    assert_eq!(c.get("result"), Some(&11));
    assert_eq!(c.get("invalid_input"), Some(&2));

    let text = items
        .iter()
        .find(|i| i["key"] == "bad/not_a_photo.jpg")
        .unwrap();
    assert!(
        text["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("text"),
        "{text}"
    );
    assert_eq!(text["action"], "fix_input");
    let copy = items
        .iter()
        .find(|i| i["key"] == "a/copy_of_img000.jpg")
        .unwrap();
    let original = items.iter().find(|i| i["key"] == "a/img000.jpg").unwrap();
    assert!(
        copy["duplicate_of"] == "a/img000.jpg"
            || original["duplicate_of"] == "a/copy_of_img000.jpg",
        "identical images share one request"
    );
    // Only the 10 distinct images were sent.
    assert_eq!(emu.stats().requests, 10);

    // Every output agrees with the journal.
    let rows = common::csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 13);
    let csv_keys: Vec<String> = rows.iter().map(|r| r["key"].clone()).collect();
    // Rows come in input order (the walk is sorted by name), whatever order requests finished in.
    assert_eq!(csv_keys, keys.iter().cloned().collect::<Vec<_>>());
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json.len(), 13);
    let summary = run.summary();
    assert!(
        summary.to_string().contains("13"),
        "summary mentions the total: {summary}"
    );
    for f in ["summary.md", "report.html"] {
        assert!(out.join(f).exists(), "{f}");
    }
    assert_private(out);
    // The run header and the end line frame the records.
    let lines = common::journal_lines(out);
    assert_eq!(lines[0]["type"], "run");
    assert_eq!(lines.last().unwrap()["type"], "end");
    assert_eq!(lines.last().unwrap()["ignored"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_edge_cases_give_one_row_per_data_row() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    common::write(&dir, "img/one.jpg", &common::jpeg(1));
    common::write(&dir, "img/two, with comma.png", &common::png(2));
    common::write(&dir, "img/three.jpg", &common::jpeg(3));
    let manifest = "\u{feff}id,path,vendor_data,branch\r\n\
                    u1,img/one.jpg,user-1,\"North, East\"\r\n\
                    \r\n\
                    u2,\"img/two, with comma.png\",\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",\"multi\nline\"\r\n\
                    u3,img/missing.jpg,user-3,South\r\n\
                    u1,img/three.jpg,user-dup,West\r\n\
                    u4,img/three.jpg,+cmd,\"say \"\"hi\"\"\"\r\n";
    common::write(&dir, "manifest.csv", manifest.as_bytes());
    let out = tmp.path().join("out");
    let code = ScanRun::new(&emu, dir.join("manifest.csv"), &out)
        .run()
        .await;
    assert_eq!(code, 1);

    let rows = common::csv_rows(&out.join("results.csv"));
    assert_eq!(
        rows.len(),
        5,
        "five data rows, blank line skipped: {rows:#?}"
    );
    let order: Vec<&str> = rows.iter().map(|r| r["branch"].as_str()).collect();
    assert_eq!(
        order,
        ["North, East", "multi\nline", "South", "West", "say \"hi\""],
        "rows in manifest order"
    );
    let by_vendor = |v: &str| {
        rows.iter()
            .find(|r| r["vendor_data"] == v)
            .unwrap_or_else(|| panic!("{v}: {rows:#?}"))
    };
    // Formula-looking cells are neutralised in the CSV.
    let evil = by_vendor("'=HYPERLINK(\"http://evil\",\"x\")");
    assert_eq!(evil["class"], "result");
    assert_eq!(evil["branch"], "multi\nline");
    assert_eq!(by_vendor("'+cmd")["branch"], "say \"hi\"");
    assert_eq!(by_vendor("user-1")["branch"], "North, East");
    let missing = by_vendor("user-3");
    assert_eq!(missing["class"], "invalid_input");
    assert!(missing["error"].contains("not found"), "{missing:?}");
    let dup = by_vendor("user-dup");
    assert_eq!(dup["class"], "invalid_input");
    assert!(dup["error"].contains("duplicate id"), "{dup:?}");
    // The JSON keeps the exact value.
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(
        json.contains(r#""=HYPERLINK(\"http://evil\",\"x\")""#),
        "{json}"
    );
    // Three distinct readable images: one.jpg, two.png, three.jpg (u4).
    assert_eq!(emu.stats().requests, 3);
}

// Paused time, in this process: the stalls, timeouts and backoffs run on tokio's clock, so the
// outcome does not depend on how busy the machine is, and the test takes no real waiting.
#[tokio::test(start_paused = true)]
async fn five_hundred_items_survive_faults_and_none_fails_for_a_429() {
    let emu = common::emulator(|c| {
        c.rate_limit = Some((100_000, std::time::Duration::from_secs(1)));
        c.faults.p500 = 0.10;
        c.faults.p429 = 0.05;
        c.faults.reset = 0.02;
        c.faults.stall = 0.005;
        c.stall = std::time::Duration::from_secs(5);
        c.seed = 7;
        // Spurious 429s ask for no wait: the client still backs off (and slows its pace).
        c.spurious_retry_after = 0;
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    common::jpegs(&dir, 20, 500, |i| format!("img/{i}.jpg"));
    let mut manifest = String::from("id,path\n");
    for r in 0..500 {
        manifest.push_str(&format!("row{r},img/{}.jpg\n", r % 20));
    }
    common::write(&dir, "manifest.csv", manifest.as_bytes());
    let out = tmp.path().join("out");
    let code = ScanRun::new(&emu, dir.join("manifest.csv"), &out)
        .args(&[
            "--no-dedupe",
            "--concurrency",
            "16",
            "--max-retries",
            "10",
            "--timeout",
            "1",
        ])
        .run()
        .await;
    let items = common::journal_items(&out);
    let keys: BTreeSet<_> = items
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(items.len(), 500, "{:?}", classes(&items));
    assert_eq!(keys.len(), 500);
    let c = classes(&items);
    assert_eq!(
        c.get("rate_limited"),
        None,
        "no item may fail for a 429: {c:?}"
    );
    assert_eq!(c.get("result"), Some(&500), "{c:?}");
    assert_eq!(code, 0);
    let stats = emu.stats();
    assert!(
        stats.by_status.get(&429).copied().unwrap_or(0) > 0
            && stats.by_status.get(&500).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    let retried_429: u64 = items
        .iter()
        .map(|i| i["rate_limited"].as_u64().unwrap())
        .sum();
    assert!(retried_429 > 0, "429s were met and retried");
    let double: u64 = items
        .iter()
        .map(|i| i["possible_double_charges"].as_u64().unwrap())
        .sum();
    assert!(
        double > 0,
        "retries after the body was sent are counted as possible double charges"
    );
    // Every credit the emulator took is either a billed record or one of the possible double
    // charges the journal owns up to (a timeout on a slow answer that was in fact billed).
    let billed = items.iter().filter(|i| i["billed"] == true).count() as u64;
    assert_eq!(billed, 500);
    assert!(
        stats.credits_used >= billed && stats.credits_used <= billed + double,
        "credits used {} vs billed {billed} + possible double charges {double}",
        stats.credits_used
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_stops_the_run_at_once_with_exit_3() {
    let emu = common::emulator(|_| {}).await;
    let common::Dirs { src, out, .. } = &source(40, 900);
    let wrong = "wrong-key-ABCDEF-123456";
    let flags = ["--concurrency", "4", "--rate", "20/s"];
    let run = ScanRun::new(&emu, src, out)
        .args(&flags)
        .key(Some(wrong))
        .bin()
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    let requests = emu.stats().requests;
    assert!(
        requests <= 5,
        "at most concurrency + 1 requests, got {requests}"
    );
    assert!(!run.all().contains(wrong), "the key must never be printed");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(!summary.contains(wrong));
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    assert!(!journal.contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_credits_stops_with_exit_4_and_resumes() {
    let emu = common::emulator(|c| c.credits = Some(12)).await;
    let common::Dirs { src, out, .. } = &source(30, 300);
    let flags = ["--concurrency", "3", "--rate", "50/s"];
    assert_eq!(ScanRun::new(&emu, src, out).args(&flags).run().await, 4);
    let results = common::journal_items(out)
        .into_iter()
        .filter(|i| i["class"] == "result")
        .count();
    assert_eq!(results, 12);
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.to_lowercase().contains("credit"), "{summary}");

    // Top up (a new emulator with credits) and rerun the same command: the rest is screened.
    let emu2 = common::emulator(|_| {}).await;
    assert_eq!(ScanRun::new(&emu2, src, out).args(&flags).run().await, 0);
    assert_eq!(
        emu2.stats().requests,
        18,
        "only the 18 unscreened images are sent"
    );
    let rows = common::csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| r["class"] == "result"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_checks_everything_and_sends_nothing() {
    let emu = common::emulator(|_| {}).await;
    let common::Dirs { src, out, .. } = &source(6, 40);
    common::write(src, "x/not_a_photo.jpg", b"hello");
    common::write(
        src,
        "x/copy.jpg",
        &std::fs::read(src.join("a/img000.jpg")).unwrap(),
    );
    let run = ScanRun::new(&emu, src, out)
        .plain()
        .loud()
        .key(None)
        .args(&["--dry-run", "--rate", "60/min"])
        .bin()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(emu.stats().requests, 0);
    assert!(!out.exists(), "a dry run writes nothing");
    assert!(
        run.stdout.contains("would send            6"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("refused locally       1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("US$0.60"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_flag_screens_and_stamps_everything_simulated() {
    let common::Dirs { src, out, .. } = &source(4, 70);
    let run = ScanRun::against(None, out)
        .source(src)
        .plain()
        .loud()
        .key(None)
        .args(&["--emulator", "--rate", "50/s"])
        .bin()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("SIMULATED"), "{}", run.stderr);
    assert_eq!(common::journal_lines(out)[0]["settings"]["simulated"], true);
    for f in ["summary.json", "summary.md", "report.html"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(
            text.contains("SIMULATED")
                || text.contains("\"simulated\": true")
                || text.contains("\"simulated\":true"),
            "{f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_invocations_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("out");
    let out_s = out.to_str().unwrap();
    common::write(t, "nopath.csv", b"id,file\n1,a.jpg\n");
    let nopath = t.join("nopath.csv");
    let missing = t.join("does-not-exist");
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec!["scan", missing.to_str().unwrap(), "--out", out_s],
            Some(KEY),
            "does-not-exist",
        ),
        (
            vec!["scan", nopath.to_str().unwrap(), "--out", out_s],
            Some(KEY),
            "path",
        ),
        (
            vec![
                "scan",
                t.to_str().unwrap(),
                "--out",
                out_s,
                "--rate",
                "lots",
            ],
            Some(KEY),
            "invalid rate",
        ),
        (
            vec!["scan", t.to_str().unwrap(), "--out", out_s],
            None,
            "DIDIT_API_KEY",
        ),
        (
            vec![
                "scan",
                t.to_str().unwrap(),
                "--out",
                out_s,
                "--base-url",
                "http://example.com",
            ],
            Some(KEY),
            "http",
        ),
        (
            vec![
                "scan",
                t.to_str().unwrap(),
                "--out",
                out_s,
                "--concurrency",
                "0",
            ],
            Some(KEY),
            "--concurrency",
        ),
    ];
    for (argv, key, needle) in cases {
        let run = common::run_bin(&argv, None, key).await;
        assert_eq!(run.code, 2, "{argv:?}: {run:?}");
        assert!(run.stderr.contains(needle), "{argv:?}: {}", run.stderr);
    }
    assert!(!out.join("journal.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_relative_path_in_two_sources_keeps_both_results() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    common::write(&one, "x/selfie.jpg", &common::jpeg(1));
    common::write(&two, "x/selfie.jpg", &common::jpeg(2));
    let out = tmp.path().join("out");
    assert_eq!(ScanRun::new(&emu, one, &out).source(two).run().await, 0);
    let keys: BTreeSet<String> = common::csv_rows(&out.join("results.csv"))
        .into_iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains("x/selfie.jpg"));
    assert!(
        keys.iter()
            .any(|k| k.starts_with("x/selfie.jpg [") && k.contains("two")),
        "{keys:?}"
    );
    assert_eq!(emu.stats().requests, 2);
}

/// The command-line definition is consistent: clap's own checks on every argument and
/// subcommand (names, conflicts, defaults) pass.
#[test]
fn the_command_line_definition_is_consistent() {
    use clap::CommandFactory;
    liveness_batch::cli::Cli::command().debug_assert();
}
