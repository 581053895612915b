//! Integration tests: the audit trail. Run identity, key and input fingerprints and the
//! reconciliation in every summary; a journal whose lines were edited, removed or swapped is
//! named by `report` (exit 8) while a torn last line is not; SHA256SUMS checks with
//! `sha256sum -c`; the balance before and after a run and in a dry run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, KEY, Run, ScanRun};

/// A source folder with `n` distinct images, one exact copy of the first, a text file named
/// like an image (refused locally) and one that is not (ignored);
/// plus a manifest of two more images. Returns (tmp, folder, manifest, out).
fn inputs(n: u64, seed0: u64) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    common::jpegs(&src, n, seed0, |i| format!("img{i:02}.jpg"));
    common::write(&src, "copy/img00.jpg", &common::jpeg(seed0));
    common::write(&src, "notes.jpg", b"not an image, whatever its name");
    common::write(&src, "readme.txt", b"ignored by the walk");
    let m = tmp.path().join("m");
    common::write(&m, "x.jpg", &common::jpeg(seed0 + 100));
    common::write(&m, "y.png", &common::png(seed0 + 101));
    let manifest = common::write(
        &m,
        "manifest.csv",
        b"id,path,vendor_data\ncust-1,x.jpg,u1\ncust-2,y.png,u2\n",
    );
    let out = tmp.path().join("out");
    (tmp, src, manifest, out)
}

/// `scan SOURCES --out OUT` against `url`, printing its summary, with `extra`.
async fn scan(url: &str, sources: &[&Path], out: &Path, extra: &[&str]) -> Run {
    let run = ScanRun::against(Some(url), out).loud().args(extra);
    sources.iter().fold(run, |run, s| run.source(s)).bin().await
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file under `dir`, with its bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_summary_shows_who_ran_what_on_which_inputs_and_a_closing_reconciliation() {
    let emu = common::emulator(|c| c.credits = Some(100)).await;
    let (_tmp, src, manifest, out) = inputs(5, 7100);
    let r = scan(
        &emu.base_url(),
        &[&src, &manifest],
        &out,
        &[
            "--operator",
            "ana@compliance",
            "--purpose",
            // a key pasted by mistake is removed like anywhere else
            &format!("KYC-2026-Q2 re-screen {KEY}"),
        ],
    )
    .await;
    assert_eq!(r.code, 1, "the text file named .jpg has no result: {r:?}");
    let s = common::summary(&out);
    let a = &s["audit"];

    // Who ran what.
    let run = &a["runs"][0];
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(run_id.len(), 32, "{run_id}");
    assert!(run_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!run["tool_commit"].as_str().unwrap().is_empty());
    assert_eq!(run["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(run["operator"], "ana@compliance");
    assert_eq!(run["purpose"], "KYC-2026-Q2 re-screen <redacted>");
    let cmd: Vec<&str> = run["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cmd.contains(&"--purpose") && cmd.contains(&"scan"),
        "{cmd:?}"
    );
    let fingerprint = &sha_hex(KEY.as_bytes())[..8];
    assert_eq!(run["key_fingerprint"], fingerprint);
    assert_eq!(a["key_fingerprints"], serde_json::json!([fingerprint]));

    // Parameters.
    let p = &a["parameters"];
    assert_eq!(p["rate"], common::FAST[1]);
    assert_eq!(p["backoff_ms"], 5);
    assert_eq!(p["max_retries"], 4);
    assert_eq!(p["price_per_call_usd"], 0.1);
    assert_eq!(p["threshold"], Value::Null);
    assert_eq!(p["dedupe"], true);

    // Inputs: the manifest's SHA-256, and the input fingerprint recomputed from results.csv.
    let m = &a["manifests"][0];
    assert_eq!(m["path"], manifest.to_str().unwrap());
    assert_eq!(m["sha256"], sha_hex(&std::fs::read(&manifest).unwrap()));
    let mut digests: Vec<[u8; 32]> = common::csv_rows(&out.join("results.csv"))
        .iter()
        .filter(|row| !row["status"].is_empty())
        .map(|row| {
            let key = row.get("key").or_else(|| row.get("\u{feff}key")).unwrap();
            Sha256::digest(format!("{key}\t{}", row["sha256"])).into()
        })
        .collect();
    digests.sort();
    let mut h = Sha256::new();
    for d in &digests {
        h.update(d);
    }
    let input_fp = hex::encode(h.finalize());
    assert_eq!(digests.len(), 8, "5 images, the copy, 2 from the manifest");
    assert_eq!(a["input_fingerprint"]["sha256"], input_fp.as_str());
    assert_eq!(a["input_fingerprint"]["items"], 8);
    assert_eq!(a["journal_chain"]["state"], "chained");

    // The reconciliation closes, every term named.
    let rec = &a["reconciliation"];
    assert_eq!(rec["closes"], true, "{rec}");
    let run_rec = &rec["run"];
    assert_eq!(run_rec["found"], 10, "8 images and 2 text files: {run_rec}");
    assert_eq!(run_rec["ignored"], 1);
    assert_eq!(run_rec["refused_locally"], 1);
    assert_eq!(run_rec["deduplicated"], 1);
    assert_eq!(run_rec["screened"], 7);
    assert_eq!(rec["money"]["billable_calls"], 7);

    // The balance: 100 credits at US$0.10 before, 7 fewer after.
    assert_eq!(a["balance"]["before"]["usd"], "10.0000");
    assert_eq!(a["balance"]["after"]["usd"], "9.3000");
    assert_eq!(a["balance"]["spent_usd"], 0.7);

    // The same facts in summary.md and report.html.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for page in [&md, &html] {
        for fact in [
            run_id,
            fingerprint,
            input_fp.as_str(),
            "ana@compliance",
            "KYC-2026-Q2 re-screen",
            "The reconciliation closes",
            "files found 10 = ignored 1 + refused locally 1",
            "deduplicated 1 + done earlier 0 + screened 7 + not processed 0",
            "US$10.0000",
            "US$9.3000",
            m["sha256"].as_str().unwrap(),
        ] {
            assert!(page.contains(fact), "{fact} missing");
        }
    }
    // The key itself appears nowhere: not in any file of the out dir, not on the terminal.
    for (path, bytes) in all_files(&out) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "{} holds the key",
            path.display()
        );
    }
    assert!(!r.all().contains(KEY));
    assert!(r.stderr.contains("report.html SHA-256: "), "{}", r.stderr);
    emu.shutdown().await;
}

/// A finished out dir with a few results, for the tampering cases.
async fn finished(seed0: u64) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let emu = common::emulator(|_| {}).await;
    let (tmp, src, _manifest, out) = inputs(4, seed0);
    let r = scan(&emu.base_url(), &[&src], &out, &["--quiet"]).await;
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    emu.shutdown().await;
    let text = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let lines = text.lines().map(str::to_string).collect();
    (tmp, out, lines)
}

fn write_journal(out: &Path, lines: &[String]) {
    std::fs::write(out.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// The index of the first item line whose score can be edited.
fn scored_item(lines: &[String]) -> usize {
    lines
        .iter()
        .position(|l| {
            l.contains(r#""type":"item""#)
                && l.contains(r#""score":"#)
                && !l.contains(r#""score":null"#)
        })
        .expect("an item with a score")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_removed_or_swapped_journal_line_is_named_and_fails_report() {
    let (_tmp, out, lines) = finished(7200).await;
    let ok = common::report(&out, &[]).await;
    assert!(ok.code == 0 || ok.code == 1, "{ok:?}");
    let i = scored_item(&lines);
    assert!(i + 2 < lines.len());

    // One field of one record.
    let mut edited = lines.clone();
    let before = edited[i].clone();
    let at = before.find(r#""score":"#).unwrap() + 8;
    edited[i] = format!("{}1{}", &before[..at], &before[at..]);
    assert_ne!(edited[i], before);
    serde_json::from_str::<Value>(&edited[i]).expect("still a valid record");
    let mut removed = lines.clone();
    removed.remove(i);
    let mut swapped = lines.clone();
    swapped.swap(i, i + 1);
    for (what, journal, line) in [
        ("edited", edited, i + 2),
        ("removed", removed, i + 1),
        ("swapped", swapped, i + 1),
    ] {
        write_journal(&out, &journal);
        let r = common::report(&out, &[]).await;
        assert_eq!(r.code, 8, "{what}: {r:?}");
        let named = format!("chain is broken at line {line} ");
        assert!(
            r.stderr.contains(&named),
            "{what}: wants {named:?} in {}",
            r.stderr
        );
        let s = common::summary(&out);
        assert_eq!(s["audit"]["journal_chain"]["state"], "broken", "{what}");
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("VERIFICATION FAILED"), "{what}");
    }

    // A torn last line (a crash mid-write) is tolerated as before.
    let mut torn = lines.join("\n") + "\n";
    torn.push_str(r#"{"type":"item","key":"half"#);
    std::fs::write(out.join("journal.jsonl"), torn).unwrap();
    let r = common::report(&out, &[]).await;
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    assert!(r.stderr.contains("cut short"), "{}", r.stderr);
    assert_eq!(
        common::summary(&out)["audit"]["journal_chain"]["state"],
        "chained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_that_does_not_close_fails_report_in_red() {
    let (_tmp, out, mut lines) = finished(7300).await;
    // The end line is the last line: its counts can be changed without breaking the chain.
    let last = lines.len() - 1;
    assert!(lines[last].starts_with(r#"{"type":"end""#));
    let mut end: Value = serde_json::from_str(&lines[last]).unwrap();
    let inputs = end["inputs"].as_u64().unwrap();
    end["inputs"] = (inputs + 1).into();
    lines[last] = serde_json::to_string(&end).unwrap();
    write_journal(&out, &lines);
    let r = common::report(&out, &[]).await;
    r.exited_saying(8, "the reconciliation does not close: files found");
    let s = common::summary(&out);
    assert_eq!(s["audit"]["reconciliation"]["closes"], false);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("class=\"card fail\""), "shown in red");
    assert!(html.contains("THE RECONCILIATION DOES NOT CLOSE"));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("THE RECONCILIATION DOES NOT CLOSE"));
}

fn sha256sum_check(dir: &Path) -> (bool, String) {
    let out = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum (coreutils) runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256sums_pass_in_a_finished_out_dir_and_fail_after_any_edit() {
    let (_tmp, out, _) = finished(7400).await;
    let (ok, listing) = sha256sum_check(&out);
    assert!(ok, "{listing}");
    for f in [
        "results.csv",
        "results.json",
        "summary.json",
        "summary.md",
        "report.html",
    ] {
        assert!(
            listing.contains(&format!("{f}: OK")),
            "{f} listed: {listing}"
        );
    }
    // A rerun that adds nothing leaves the results files and still checks.
    let emu = common::emulator(|_| {}).await;
    let src = out.parent().unwrap().join("src");
    let r = scan(&emu.base_url(), &[&src], &out, &[]).await;
    assert!(
        r.stderr.contains("was left exactly as it was"),
        "{}",
        r.stderr
    );
    emu.shutdown().await;
    let (ok, listing) = sha256sum_check(&out);
    assert!(ok, "after a rerun: {listing}");
    // Any edit fails the check, naming the file.
    for f in ["results.csv", "report.html", "summary.json"] {
        let p = out.join(f);
        let original = std::fs::read(&p).unwrap();
        let mut edited = original.clone();
        edited.extend_from_slice(b" ");
        std::fs::write(&p, &edited).unwrap();
        let (ok, listing) = sha256sum_check(&out);
        assert!(!ok, "{f} edited");
        assert!(listing.contains(&format!("{f}: FAILED")), "{listing}");
        std::fs::write(&p, original).unwrap();
    }
    assert!(sha256sum_check(&out).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_run_show_the_balance_and_whether_it_covers_the_estimate() {
    // 3 credits (US$0.30) for 6 images to send (US$0.60): not enough.
    let emu = common::emulator(|c| c.credits = Some(3)).await;
    let (_tmp, src, _manifest, out) = inputs(6, 7500);
    let dry = scan(&emu.base_url(), &[&src], &out, &["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("balance               US$0.3000"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("balance sufficient    NO: the balance does not cover the estimated cost; cap the calls with --max-requests 3"),
        "{}",
        dry.stdout
    );
    // Capped at the balance, it covers.
    let capped = scan(
        &emu.base_url(),
        &[&src],
        &out,
        &["--dry-run", "--max-requests", "3"],
    )
    .await;
    assert!(
        capped.stdout.contains("balance sufficient    yes"),
        "{}",
        capped.stdout
    );
    // A real run warns before the first call and names --max-requests.
    let run = scan(&emu.base_url(), &[&src], &out, &[]).await;
    assert_eq!(run.code, 4, "out of credits: {run:?}");
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("Balance before the run: US$0.3000"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        warning.contains("does not cover it") && warning.contains("--max-requests 3"),
        "{warning}"
    );
    let s = common::summary(&out);
    assert_eq!(s["audit"]["balance"]["before"]["usd"], "0.3000");
    assert_eq!(s["audit"]["balance"]["after"]["usd"], "0.0000");
    emu.shutdown().await;

    // A key that may not read billing: "unknown", not an error.
    let emu = common::emulator(|c| c.billing_forbidden = true).await;
    let (_tmp2, src, _manifest, out) = inputs(2, 7600);
    let dry = scan(&emu.base_url(), &[&src], &out, &["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains(
            "balance               unknown (HTTP 403: this key may not read the billing balance)"
        ),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("balance sufficient    unknown"));
    let run = scan(&emu.base_url(), &[&src], &out, &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let s = common::summary(&out);
    assert_eq!(s["audit"]["balance"]["before"]["usd"], Value::Null);
    assert!(
        s["audit"]["balance"]["before"]["unknown_because"]
            .as_str()
            .unwrap()
            .contains("HTTP 403")
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_with_a_baseline_lists_who_passed_before_and_fails_now() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    let mut manifest = String::from("id,path,vendor_data\n");
    for i in 0..16u64 {
        common::write(&m, &format!("{i}.jpg"), &common::jpeg(7700 + i));
        let vendor = if i == 0 {
            "=HYPERLINK(\"http://x\")".to_string()
        } else {
            format!("u{i}")
        };
        manifest.push_str(&format!(
            "cust-{i},{i}.jpg,\"{}\"\n",
            vendor.replace('"', "\"\"")
        ));
    }
    let manifest = common::write(&m, "manifest.csv", manifest.as_bytes());
    let (old, new) = (tmp.path().join("q1"), tmp.path().join("q2"));
    let r = scan(
        &emu.base_url(),
        &[&manifest],
        &old,
        &["--quiet", "--threshold", "30"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    // The next quarter: a stricter threshold, one customer gone, one new.
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text = text.replace("cust-15,15.jpg,\"u15\"\n", "");
    common::write(&m, "16.jpg", &common::jpeg(7716));
    text.push_str("cust-16,16.jpg,u16\n");
    std::fs::write(&manifest, text).unwrap();
    let r = scan(
        &emu.base_url(),
        &[&manifest],
        &new,
        &["--quiet", "--threshold", "70"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    emu.shutdown().await;

    let r = common::report(&new, &["--baseline", old.to_str().unwrap()]).await;
    // The unfair setting is named.
    r.exited_saying(
        0,
        "not like for like: threshold: baseline has 30, this run has 70",
    );
    let s = common::summary(&new);
    let c = &s["changes"];
    assert_eq!(c["counts"]["new"], 1);
    assert_eq!(c["counts"]["gone"], 1);
    let declined = c["counts"]["newly_declined"].as_u64().unwrap();
    let rows = common::csv_rows(&new.join("changes.csv"));
    let key_of = |row: &std::collections::BTreeMap<String, String>| {
        row.get("key")
            .or_else(|| row.get("\u{feff}key"))
            .unwrap()
            .clone()
    };
    assert_eq!(
        rows.len() as u64,
        c["counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    );
    let newly: Vec<_> = rows
        .iter()
        .filter(|r| r["change"] == "newly_declined")
        .collect();
    assert_eq!(newly.len() as u64, declined);
    assert!(declined > 0, "some scores fall between 30 and 70: {rows:?}");
    for row in &newly {
        assert_eq!(
            (row["old_decision"].as_str(), row["new_decision"].as_str()),
            ("Approved", "Declined")
        );
        let score: f64 = row["new_score"].parse().unwrap();
        assert!(score > 30.0 && score <= 70.0, "{row:?}");
    }
    let gone = rows.iter().find(|r| r["change"] == "gone").unwrap();
    assert_eq!(key_of(gone), "cust-15");
    let new_row = rows.iter().find(|r| r["change"] == "new").unwrap();
    assert_eq!(key_of(new_row), "cust-16");
    // Outside text is spreadsheet-safe, as in results.csv.
    if let Some(row) = rows.iter().find(|r| key_of(r) == "cust-0") {
        assert_eq!(row["vendor_data"], "'=HYPERLINK(\"http://x\")");
    }
    // The same changes in the Markdown and the HTML, and changes.csv in SHA256SUMS.
    let md = std::fs::read_to_string(new.join("summary.md")).unwrap();
    let html = std::fs::read_to_string(new.join("report.html")).unwrap();
    let first = key_of(newly[0]);
    for page in [&md, &html] {
        assert!(page.contains("Changes since the baseline"));
        assert!(
            page.contains(&format!("| `newly_declined` | {declined} |"))
                || page.contains(&format!(
                    "<td><code>newly_declined</code></td><td class=\"n\">{declined}</td>"
                ))
        );
        assert!(page.contains(&first), "{first}");
        assert!(page.contains("Not like for like: threshold"));
    }
    let (ok, listing) = sha256sum_check(&new);
    assert!(ok && listing.contains("changes.csv: OK"), "{listing}");

    // A rebuild without --baseline drops the comparison (it would describe an older state).
    let r = common::report(&new, &[]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!new.join("changes.csv").exists());
    assert!(common::summary(&new).get("changes").is_none());

    // Bad baselines and margins are refused clearly.
    let r = common::report(
        &new,
        &["--baseline", tmp.path().join("nope").to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("holds no journal.jsonl"), "{}", r.stderr);
    let r = common::report(&new, &["--baseline", new.to_str().unwrap()]).await;
    r.exited_saying(2, "is the folder being reported");
    let r = common::report(
        &new,
        &["--baseline", old.to_str().unwrap(), "--score-margin", "-1"],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--score-margin must be"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_gender_and_face_box_stay_in_the_journal_unless_asked_for() {
    let (_tmp, out, _) = finished(7900).await;
    let has_age = |out: &Path| {
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let json = std::fs::read_to_string(out.join("results.json")).unwrap();
        (
            csv.lines()
                .next()
                .unwrap()
                .split(',')
                .any(|h| h == "age" || h == "gender" || h == "bbox"),
            json.contains("\"age\"") || json.contains("\"gender\"") || json.contains("\"bbox\""),
        )
    };
    assert_eq!(has_age(&out), (false, false), "left out by default");
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains("\"age\"") && journal.contains("\"gender\""),
        "the journal keeps Didit's answer as received"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("gender"));
    let r = common::report(&out, &["--include-face-attributes"]).await;
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    assert_eq!(has_age(&out), (true, true), "kept when asked for");
    let (ok, listing) = sha256sum_check(&out);
    assert!(ok, "{listing}");
}
