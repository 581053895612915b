//! The evidence holds against someone editing an out dir: forged, edited, deleted or cut
//! journal lines, caches that disagree with the journal, and (with a signing key) a forger who
//! recomputes every hash and SHA256SUMS. Each tampering is refused with exit 8 before any
//! request, and no output goes on calling the journal intact.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use liveness_batch::emulator::Emulator;

use crate::common::{self, KEY, ScanRun};

/// A folder of `n` distinct images and the out dir beside it.
fn setup(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    common::jpegs(&src, n, 9_000, |i| format!("img{i:02}.jpg"));
    let out = tmp.path().join("out");
    (tmp, src, out)
}

/// `scan SRC --out OUT` against `emu`, printing its summary, with `extra`.
async fn scan(emu: &Emulator, src: &Path, out: &Path, extra: &[&str]) -> common::Run {
    ScanRun::new(emu, src, out).loud().args(extra).bin().await
}

/// The journal's lines as written (line breaks excluded).
fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(out: &Path, lines: &[String]) {
    std::fs::write(out.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// `obj` as a journal line chained to `prev` (the previous line's text, `None` for the first).
fn chained(obj: &Value, prev: Option<&str>) -> String {
    let mut obj = obj.clone();
    obj.as_object_mut().unwrap().remove("prev");
    let body = obj.to_string();
    let hash = prev.map_or("0".repeat(64), |p| {
        hex::encode(Sha256::digest(p.as_bytes()))
    });
    format!("{},\"prev\":\"{hash}\"}}", &body[..body.len() - 1])
}

/// Every line's chain hash recomputed, as a careful forger would.
fn rechain(values: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let line = chained(v, out.last().map(String::as_str));
        out.push(line);
    }
    out
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// SHA256SUMS recomputed over the files it lists, as a careful forger would.
fn recompute_sums(out: &Path) {
    let text = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let fixed: String = text
        .lines()
        .map(|l| {
            let (_, name) = l.split_once("  ").unwrap();
            let bytes = std::fs::read(out.join(name)).unwrap();
            format!("{}  {name}\n", hex::encode(Sha256::digest(&bytes)))
        })
        .collect();
    std::fs::write(out.join("SHA256SUMS"), fixed).unwrap();
}

/// What `sha256sum -c SHA256SUMS` would say fails.
fn sums_failing(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    text.lines()
        .filter_map(|l| {
            let (sha, name) = l.split_once("  ").unwrap();
            let now = std::fs::read(out.join(name)).ok()?;
            (hex::encode(Sha256::digest(&now)) != sha).then(|| name.to_string())
        })
        .collect()
}

/// No output claims an intact journal or a closing reconciliation.
fn assert_no_output_vouches(out: &Path) {
    for name in ["summary.md", "report.html", "summary.json"] {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        for claim in ["intact", "closes (every"] {
            assert!(
                !text.contains(claim),
                "{name} says {claim:?} over a broken journal"
            );
        }
    }
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["audit"]["journal_chain"]["state"], "broken", "{s}");
}

/// A finished scan of `n` images and the emulator it used.
async fn finished(n: u64, extra: &[&str]) -> (liveness_batch::emulator::Emulator, Tmp) {
    let emu = common::emulator(|_| {}).await;
    let (tmp, src, out) = setup(n);
    let first = scan(&emu, &src, &out, extra).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(emu.stats().requests, n);
    (
        emu,
        Tmp {
            _tmp: tmp,
            src,
            out,
        },
    )
}

struct Tmp {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    out: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_record_after_the_end_line_is_refused_by_scan_and_report() {
    let (emu, t) = finished(5, &[]).await;
    let mut ls = lines(&t.out);
    let mut forged: Value = parse(&ls)
        .into_iter()
        .find(|v| v["type"] == "item")
        .unwrap();
    forged["key"] = "never-sent.jpg".into();
    forged["request_id"] = "forged-1".into();
    forged["status"] = "Approved".into();
    let last = ls.last().unwrap().clone();
    ls.push(chained(&forged, Some(&last)));
    write_lines(&t.out, &ls);
    // another image, so a run that trusted the journal would send something
    common::write(&t.src, "new.jpg", &common::jpeg(9_999));

    // a dry run does not count from it either, and writes nothing
    let summary_before = std::fs::read(t.out.join("summary.md")).unwrap();
    let dry = scan(&emu, &t.src, &t.out, &["--dry-run"]).await;
    dry.exited_saying(8, "is a record outside any run");
    assert_eq!(
        std::fs::read(t.out.join("summary.md")).unwrap(),
        summary_before
    );

    let r = scan(&emu, &t.src, &t.out, &[]).await;
    r.exited_saying(8, "is a record outside any run");
    assert!(r.stderr.contains("Nothing was sent"), "{}", r.stderr);
    assert_eq!(emu.stats().requests, 5, "no request");
    assert_no_output_vouches(&t.out);
    let rep = common::report(&t.out, &[]).await;
    assert_eq!(rep.code, 8, "{rep:?}");
    assert!(rep.stderr.contains("VERIFICATION FAILED"), "{}", rep.stderr);
    assert_no_output_vouches(&t.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_edited_in_place_is_refused_and_sha256sums_still_shows_it() {
    let (emu, t) = finished(6, &[]).await;
    let mut ls = lines(&t.out);
    let at = ls
        .iter()
        .position(|l| l.contains("\"type\":\"item\"") && l.contains("\"Approved\""))
        .unwrap();
    ls[at] = ls[at].replacen("\"Approved\"", "\"Declined\"", 1);
    write_lines(&t.out, &ls);

    let r = scan(&emu, &t.src, &t.out, &[]).await;
    r.exited_saying(8, &format!("does not carry the hash of line {}", at + 1));
    assert_eq!(emu.stats().requests, 6);
    assert_no_output_vouches(&t.out);
    // SHA256SUMS was left as it was: it shows the journal changed since
    assert!(sums_failing(&t.out).contains(&"journal.jsonl".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_zeroed_or_cut_back_beside_its_results_is_refused_before_any_request() {
    for how in [
        "zeroed",
        "cut to its header",
        "cut, caches removed",
        "zeroed, caches removed",
    ] {
        let (emu, t) = finished(4, &[]).await;
        let path = t.out.join("journal.jsonl");
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        if how.starts_with("zeroed") {
            std::fs::write(&path, vec![0u8; len]).unwrap();
        } else {
            let ls = lines(&t.out);
            write_lines(&t.out, &ls[..1]);
        }
        if how.ends_with("caches removed") {
            for cache in [".liveness-batch-index", ".liveness-batch-outputs.json"] {
                std::fs::remove_file(t.out.join(cache)).unwrap();
            }
        }
        let r = scan(&emu, &t.src, &t.out, &[]).await;
        assert_eq!(r.code, 8, "{how}: {r:?}");
        assert!(
            r.stderr.contains("disagrees with the journal")
                && (r.stderr.contains("cut back or emptied")
                    || r.stderr.contains("zeroed or rewritten")
                    || r.stderr.contains("replaced or rewritten")),
            "{how}: {}",
            r.stderr
        );
        assert_eq!(emu.stats().requests, 4, "{how}: nothing re-billed");
        if how == "cut to its header" {
            // `report` finds it too, and says so in every output
            let rep = common::report(&t.out, &[]).await;
            assert_eq!(rep.code, 8, "{rep:?}");
            assert!(rep.stderr.contains("no longer holds"), "{}", rep.stderr);
            let md = std::fs::read_to_string(t.out.join("summary.md")).unwrap();
            assert!(md.contains("CUT BACK OR REWRITTEN"), "{md}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_record_is_refused_even_with_every_hash_recomputed() {
    let (emu, t) = finished(5, &[]).await;
    let mut values = parse(&lines(&t.out));
    let at = values.iter().position(|v| v["type"] == "item").unwrap();
    values.remove(at);
    write_lines(&t.out, &rechain(&values));
    for cache in [".liveness-batch-index", ".liveness-batch-outputs.json"] {
        std::fs::remove_file(t.out.join(cache)).unwrap();
    }
    let r = scan(&emu, &t.src, &t.out, &[]).await;
    r.exited_saying(8, "records of that run were removed or added");
    assert_eq!(
        emu.stats().requests,
        5,
        "the deleted record's image is not re-billed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_request_id_and_an_orphan_duplicate_are_refused() {
    let (emu, t) = finished(4, &[]).await;
    let values = parse(&lines(&t.out));
    let items: Vec<usize> = (0..values.len())
        .filter(|i| values[*i]["type"] == "item")
        .collect();
    // one record's request id copied into another's
    let mut copied = values.clone();
    copied[items[1]]["request_id"] = copied[items[0]]["request_id"].clone();
    write_lines(&t.out, &rechain(&copied));
    for cache in [
        ".liveness-batch-index",
        ".liveness-batch-outputs.json",
        "summary.json",
    ] {
        let _ = std::fs::remove_file(t.out.join(cache));
    }
    let r = scan(&emu, &t.src, &t.out, &[]).await;
    r.exited_saying(8, "carries the request id of");

    // a record turned into a duplicate of an image no record answered
    let mut orphan = values.clone();
    let i = items[2];
    orphan[i]["duplicate_of"] = "nobody.jpg".into();
    orphan[i]["attempts"] = 0.into();
    orphan[i]["sha256"] = "ab".repeat(32).into();
    // its announcement goes with it, so only the duplicate rule can find it
    let key = orphan[i]["key"].clone();
    orphan.retain(|v| !(v["type"] == "sending" && v["key"] == key));
    write_lines(&t.out, &rechain(&orphan));
    let r = scan(&emu, &t.src, &t.out, &[]).await;
    r.exited_saying(8, "no record before it answered that image");
    assert_eq!(emu.stats().requests, 4);
}

/// Caches that disagree with an intact journal stop a resume, unless --rebuild-from-journal:
/// then they are rebuilt from the journal and nothing finished is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_journal_accepts_a_verified_journal_over_foreign_caches() {
    let (emu, t) = finished(4, &[]).await;
    // the caches of another, longer journal
    let (_emu2, other) = finished(6, &[]).await;
    for cache in [".liveness-batch-index", ".liveness-batch-outputs.json"] {
        std::fs::copy(other.out.join(cache), t.out.join(cache)).unwrap();
    }
    let r = scan(&emu, &t.src, &t.out, &[]).await;
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        r.stderr.contains("--rebuild-from-journal"),
        "names the way on: {}",
        r.stderr
    );
    let r = scan(&emu, &t.src, &t.out, &["--rebuild-from-journal"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(emu.stats().requests, 4, "nothing sent again");
    let again = scan(&emu, &t.src, &t.out, &[]).await;
    assert_eq!(again.code, 0, "the rebuilt caches are trusted: {again:?}");
    // a broken journal is not accepted even so
    let mut ls = lines(&t.out);
    ls.remove(2);
    write_lines(&t.out, &ls);
    let r = scan(&emu, &t.src, &t.out, &["--rebuild-from-journal"]).await;
    assert_eq!(r.code, 8, "{r:?}");
}

/// A minisign key pair made by the standard tool (`minisign -G`, unencrypted).
fn minisign_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let (sk, pk) = (dir.join("key.sec"), dir.join("key.pub"));
    let made = Command::new("minisign")
        .args(["-G", "-W", "-s"])
        .arg(&sk)
        .arg("-p")
        .arg(&pk)
        .output()
        .expect(
            "the minisign tool must be installed (Debian's package `minisign`; the test \
             command installs it)",
        );
    assert!(made.status.success(), "{made:?}");
    (sk, pk)
}

/// `minisign -Vm SHA256SUMS -p pk` in `out`.
fn minisign_verifies(out: &Path, pk: &Path) -> bool {
    Command::new("minisign")
        .current_dir(out)
        .args(["-V", "-q", "-m", "SHA256SUMS", "-p"])
        .arg(pk)
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_run_verifies_with_minisign_and_a_careful_forgery_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (sk, pk) = minisign_keys(keys.path());
    let (sk, pk) = (sk.to_str().unwrap(), pk.to_str().unwrap());
    let (emu, t) = finished(5, &["--sign-key", sk]).await;
    assert!(t.out.join("SHA256SUMS.minisig").exists());
    assert!(minisign_verifies(&t.out, Path::new(pk)));
    assert!(sums_failing(&t.out).is_empty());
    // verifying writes nothing: the signature stays valid
    let rep = common::report(&t.out, &["--public-key", pk]).await;
    rep.exited_saying(0, "Verified with minisign key");
    assert!(minisign_verifies(&t.out, Path::new(pk)));
    // a rebuild without the key would leave the signature behind: refused
    let rep = common::report(&t.out, &[]).await;
    assert_eq!(rep.code, 2, "{rep:?}");
    assert!(rep.stderr.contains("is signed"), "{}", rep.stderr);
    // rebuilt and signed again, the check in the summary
    let rep = common::report(&t.out, &["--public-key", pk, "--sign-key", sk]).await;
    assert_eq!(rep.code, 0, "{rep:?}");
    let md = std::fs::read_to_string(t.out.join("summary.md")).unwrap();
    assert!(
        md.contains("| Signature | verified with minisign key"),
        "{md}"
    );
    assert!(minisign_verifies(&t.out, Path::new(pk)));

    // A forger adds an announced, recorded upload inside the last run, fixes its end line's
    // count, recomputes every hash and SHA256SUMS: only the signatures can tell.
    let mut values = parse(&lines(&t.out));
    let end = values.iter().rposition(|v| v["type"] == "end").unwrap();
    let mut forged = values.iter().find(|v| v["type"] == "item").unwrap().clone();
    forged["key"] = "never-sent.jpg".into();
    forged["request_id"] = "forged-2".into();
    values[end]["recorded"] = (values[end]["recorded"].as_u64().unwrap() + 1).into();
    values.insert(end, forged);
    values.insert(
        end,
        serde_json::json!({"type": "sending", "key": "never-sent.jpg"}),
    );
    write_lines(&t.out, &rechain(&values));
    recompute_sums(&t.out);
    assert!(sums_failing(&t.out).is_empty(), "sha256sum -c passes");
    assert!(
        !minisign_verifies(&t.out, Path::new(pk)),
        "minisign does not"
    );

    let r = scan(&emu, &t.src, &t.out, &["--sign-key", sk]).await;
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        r.stderr.contains("the seal at line") && r.stderr.contains("Nothing was sent"),
        "{}",
        r.stderr
    );
    assert_eq!(emu.stats().requests, 5);
    let rep = common::report(&t.out, &["--public-key", pk]).await;
    assert_eq!(rep.code, 8, "{rep:?}");
    assert!(rep.stderr.contains("VERIFICATION FAILED"), "{}", rep.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_journal_resumes_only_with_its_key_and_an_unsigned_one_is_not_signed_silently() {
    let keys = tempfile::tempdir().unwrap();
    let (sk, _) = minisign_keys(keys.path());
    let other = tempfile::tempdir().unwrap();
    let (other_sk, _) = minisign_keys(other.path());
    let (emu, t) = finished(3, &["--sign-key", sk.to_str().unwrap()]).await;
    let r = scan(&emu, &t.src, &t.out, &[]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("is signed"), "{}", r.stderr);
    let r = scan(
        &emu,
        &t.src,
        &t.out,
        &["--sign-key", other_sk.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 8, "{r:?}");
    assert!(r.stderr.contains("not with the key given"), "{}", r.stderr);
    assert_eq!(emu.stats().requests, 3);

    let (emu, t) = finished(3, &[]).await;
    let r = scan(&emu, &t.src, &t.out, &["--sign-key", sk.to_str().unwrap()]).await;
    assert_eq!(r.code, 8, "{r:?}");
    assert!(r.stderr.contains("carries no seal"), "{}", r.stderr);
    let args = ["--sign-key", sk.to_str().unwrap(), "--rebuild-from-journal"];
    let r = scan(&emu, &t.src, &t.out, &args).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(emu.stats().requests, 3);
}

/// With a key, a checkpoint whose digest a forger recomputed is still not believed: it is not
/// signed by the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_dir_discards_a_checkpoint_the_key_did_not_sign() {
    let keys = tempfile::tempdir().unwrap();
    let (sk, _) = minisign_keys(keys.path());
    let sk = sk.to_str().unwrap();
    let (emu, t) = finished(3, &["--sign-key", sk]).await;
    let state = t.out.join(".liveness-batch-outputs.json");
    let sealed: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let mut cp = sealed["checkpoint"].clone();
    cp["accumulator"]["by_decision"]["approved"] = 40.into();
    let body = cp.to_string();
    let text = format!(
        r#"{{"sha256":"{}","checkpoint":{body}}}"#,
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    std::fs::write(&state, text).unwrap();
    let r = scan(&emu, &t.src, &t.out, &["--sign-key", sk]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("is not signed by key"), "{}", r.stderr);
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(t.out.join("summary.json")).unwrap())
            .unwrap();
    assert_ne!(s["by_decision"]["approved"], 40, "{s}");
    assert_eq!(emu.stats().requests, 3);
}

/// A signing run killed with SIGKILL mid-run resumes from its last seal: nothing recorded is
/// lost or sent again, and the finished journal verifies with the standard tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_run_killed_mid_run_resumes_to_a_valid_signature() {
    let keys = tempfile::tempdir().unwrap();
    let (sk, pk) = minisign_keys(keys.path());
    let emu = common::emulator(|c| {
        c.latency = std::time::Duration::from_millis(150);
    })
    .await;
    let (_tmp, src, out) = setup(40);
    let args = [
        "scan",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rate",
        "100/s",
        "--concurrency",
        "2",
        "--sign-key",
        sk.to_str().unwrap(),
        "--quiet",
    ];
    let mut child = tokio::process::Command::new(common::bin())
        .args(args)
        .env("DIDIT_BASE_URL", emu.base_url())
        .env("DIDIT_API_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for some records, then SIGKILL.
    common::wait_until("8 records", || {
        out.join("journal.jsonl").exists() && common::journal_items_after_kill(&out).len() >= 8
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let recorded = common::journal_items_after_kill(&out).len();
    assert!((8..40).contains(&recorded), "killed mid-run: {recorded}");
    let sent_before = emu.stats().requests;

    let r = common::run_bin(&args[..args.len() - 1], Some(&emu.base_url()), Some(KEY)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let items = common::journal_items(&out);
    let mut keys: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 40, "every image has a record");
    assert!(
        emu.stats().requests - sent_before <= 40 - recorded as u64 + 4,
        "only what was not recorded (and at most the uploads in flight) was sent again"
    );
    assert!(minisign_verifies(&out, &pk));
    let rep = common::report(&out, &["--public-key", pk.to_str().unwrap()]).await;
    assert_eq!(rep.code, 0, "{rep:?}");
}
