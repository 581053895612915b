//! Integration tests: local failures and a hostile out dir. A full disk, planted links, a
//! journal that is a folder, an emptied journal: each stops with its own message and exit code,
//! keeps what was journaled, and never bills silently.

use std::collections::HashMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use liveness_batch::emulator::Emulator;

use crate::common::{self, KEY, Run, ScanRun};

/// `scan SRC --out OUT` with the fast settings, `--quiet` and `extra`, as the binary.
async fn scan(emu: &Emulator, src: &str, out: impl AsRef<Path>, extra: &[&str]) -> Run {
    ScanRun::new(emu, src, out.as_ref()).args(extra).bin().await
}

fn images(dir: &Path, n: u64, seed0: u64) {
    common::jpegs(dir, n, seed0, |i| format!("img{i:04}.jpg"));
}

fn leftover_tmp(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// Run a shell script in a private mount namespace (so it can mount a small tmpfs that
/// disappears with it). Needs root; outside CI a non-root developer sees the test skip with
/// the reason, in CI it must run.
fn in_mount_namespace(script: &str) -> Option<std::process::Output> {
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", script])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(o),
        Ok(o) if std::env::var_os("CI").is_none() && !is_root() => {
            eprintln!(
                "SKIPPED: a full disk is simulated with a tmpfs in a private mount namespace, \
                 which needs root: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Ok(o) => panic!(
            "the mount-namespace script failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run unshare (util-linux): {e}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A full disk while journaling: the run stops at once (no hang) with exit 6 naming the
/// write and the file, keeps every record written before, leaves no temporary file; the rerun
/// (after space is freed) counts the requests that were in flight as possible double charges
/// and bills nothing that was journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_run_at_once_and_the_rerun_counts_what_was_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("emulator.jsonl");
    let emu = common::emulator(|c| {
        c.latency = std::time::Duration::from_millis(5);
        c.log = Some(log.clone());
    })
    .await;
    let src = tmp.path().join("src");
    images(&src, 400, 31_000);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let first = tmp.path().join("after-first");
    let script = format!(
        r#"
        mount -t tmpfs -o size=160k,mode=0700 tmpfs '{out}'
        set +e
        timeout 60 '{bin}' scan '{src}' --out '{out}' {fast} --concurrency 8 --quiet \
            >'{tmp}/1.out' 2>'{tmp}/1.err'
        echo $? >'{tmp}/1.code'
        cp -a '{out}' '{first}'
        mount -o remount,size=64m '{out}'
        timeout 60 '{bin}' scan '{src}' --out '{out}' {fast} --concurrency 8 \
            >'{tmp}/2.out' 2>'{tmp}/2.err'
        echo $? >'{tmp}/2.code'
        cp -a '{out}' '{tmp}/after-second'
        "#,
        out = out.display(),
        bin = common::bin().display(),
        fast = common::FAST.join(" "),
        src = src.display(),
        tmp = tmp.path().display(),
        first = first.display(),
    );
    let base = emu.base_url();
    let script = format!("export DIDIT_API_KEY={KEY} DIDIT_BASE_URL={base}\n{script}");
    let script_owned = script.clone();
    let Some(_) = tokio::task::spawn_blocking(move || in_mount_namespace(&script_owned))
        .await
        .unwrap()
    else {
        return;
    };
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    let code1: i32 = read("1.code").trim().parse().unwrap();
    let err1 = read("1.err");
    assert_eq!(
        code1, 6,
        "a full disk exits 6 (124 would be a hang): {err1}"
    );
    assert!(
        err1.contains("cannot write") && err1.contains("journal.jsonl"),
        "names the operation and the file: {err1}"
    );
    assert!(
        err1.contains("No space left"),
        "names the device's error: {err1}"
    );
    assert!(
        leftover_tmp(&first).is_empty(),
        "{:?}",
        leftover_tmp(&first)
    );
    let journaled = std::fs::read_to_string(first.join("journal.jsonl")).unwrap();
    let kept: Vec<&str> = journaled
        .lines()
        .filter(|l| l.contains(r#""type":"item""#) && l.ends_with('}'))
        .collect();
    assert!(
        !kept.is_empty(),
        "records written before the disk filled are kept"
    );

    let code2: i32 = read("2.code").trim().parse().unwrap();
    let err2 = read("2.err");
    assert_eq!(code2, 0, "the rerun completes: {err2}");
    let after = tmp.path().join("after-second");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(after.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["items"]["with_result"], 400);
    // What Didit saw more than once, against what the summary admits.
    let mut seen: HashMap<String, u64> = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(sha) = v["sha256"].as_str() {
            *seen.entry(sha.to_string()).or_default() += 1;
        }
    }
    let repeats: u64 = seen.values().map(|n| n - 1).sum();
    let counted = summary["requests"]["possible_double_charges"]
        .as_u64()
        .unwrap();
    assert!(
        counted >= repeats,
        "Didit saw {repeats} repeated images; the summary counts {counted}"
    );
    if repeats > 0 {
        assert!(err2.contains("possible double charge"), "{err2}");
    }
}

/// A full disk while writing the outputs (`report`, and a scan whose header cannot be
/// written): exit 6, the file named, no `*.tmp` left, the previous outputs untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_writing_outputs_exits_6_and_leaves_no_temporary_files() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 30, 32_000);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let script = format!(
        r#"
        export DIDIT_API_KEY={KEY} DIDIT_BASE_URL={base}
        mount -t tmpfs -o size=2m,mode=0700 tmpfs '{out}'
        set +e
        '{bin}' scan '{src}' --out '{out}' {fast} --quiet; echo $? >'{tmp}/1.code'
        cp '{out}/results.csv' '{tmp}/results.before'
        dd if=/dev/zero of='{out}/filler' bs=4k 2>/dev/null
        '{bin}' report '{out}' >'{tmp}/2.out' 2>'{tmp}/2.err'; echo $? >'{tmp}/2.code'
        '{bin}' scan '{src}' --out '{out}' {fast} --quiet 2>'{tmp}/3.err'
        echo $? >'{tmp}/3.code'
        ls -a '{out}' >'{tmp}/listing'
        cp '{out}/results.csv' '{tmp}/results.after'
        "#,
        base = emu.base_url(),
        out = out.display(),
        bin = common::bin().display(),
        fast = common::FAST.join(" "),
        src = src.display(),
        tmp = tmp.path().display(),
    );
    let Some(_) = tokio::task::spawn_blocking(move || in_mount_namespace(&script))
        .await
        .unwrap()
    else {
        return;
    };
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    assert_eq!(read("1.code").trim(), "0");
    assert_eq!(
        read("2.code").trim(),
        "6",
        "report on a full disk: {}",
        read("2.err")
    );
    assert!(read("2.err").contains("No space left"), "{}", read("2.err"));
    assert_eq!(
        read("3.code").trim(),
        "6",
        "scan on a full disk: {}",
        read("3.err")
    );
    assert!(read("3.err").contains("No space left"), "{}", read("3.err"));
    let listing = read("listing");
    assert!(!listing.contains(".tmp"), "temporary files left: {listing}");
    assert_eq!(read("results.before"), read("results.after"));
}

/// Links planted in the out dir are refused, never followed: the lock file and the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_links_in_the_out_dir_are_refused_and_their_targets_untouched() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 3, 33_000);
    let victim = tmp.path().join("victim.txt");
    for planted in [".liveness-batch.lock", "journal.jsonl"] {
        std::fs::write(&victim, "precious\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = tmp
            .path()
            .join(format!("out-{}", planted.trim_start_matches('.')));
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
        symlink(&victim, out.join(planted)).unwrap();
        let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
        let run = scan(&emu, s, o, &[]).await;
        assert_eq!(run.code, 6, "{planted}: {run:?}");
        assert!(
            run.stderr.contains("symbolic link") && run.stderr.contains(planted),
            "{planted}: {}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{planted}: the target's mode was changed");
    }
    assert_eq!(emu.stats().requests, 0, "nothing was sent");
}

/// An out dir that others can write is used, with a warning that says why it matters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_dir_writable_by_others_gets_a_warning() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 2, 34_000);
    let out = tmp.path().join("shared");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    let run = scan(&emu, s, o, &[]).await;
    run.exited_saying(0, "can be written by other users");
}

/// Local I/O failures exit 6 with the operation and the file named (never "read the journal"
/// for the lock file, never exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_io_failures_exit_6_naming_the_operation_and_the_file() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 2, 35_000);
    let s = src.to_str().unwrap();

    // The journal is a folder.
    let out = tmp.path().join("out-folder");
    std::fs::create_dir_all(out.join("journal.jsonl")).unwrap();
    let o = out.to_str().unwrap();
    let run = scan(&emu, s, o, &[]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("cannot open") && run.stderr.contains("journal.jsonl"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("folder"), "{}", run.stderr);

    // The out dir cannot be created (a file stands in the way).
    common::write(tmp.path(), "plain-file", b"x");
    let o = tmp.path().join("plain-file/out");
    let run = scan(&emu, s, o.to_str().unwrap(), &[]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("cannot create the out dir") && run.stderr.contains("plain-file"),
        "{}",
        run.stderr
    );

    // The lock file is a folder: named as the lock file, not as the journal.
    let out = tmp.path().join("out-lock");
    std::fs::create_dir_all(out.join(".liveness-batch.lock")).unwrap();
    let run = scan(&emu, s, out.to_str().unwrap(), &[]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("lock file") && !run.stderr.contains("read the journal"),
        "{}",
        run.stderr
    );
    assert_eq!(emu.stats().requests, 0);
}

/// A deleted or emptied journal beside an earlier run's results is refused (exit 2, the
/// evidence named) instead of screening and billing everything again; `--fresh` proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_journal_beside_earlier_results_is_refused_unless_fresh() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 4, 36_000);
    let out = tmp.path().join("out");
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    let first = scan(&emu, s, o, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let sent = emu.stats().requests;

    for how in ["emptied", "deleted"] {
        let journal = out.join("journal.jsonl");
        if how == "emptied" {
            std::fs::write(&journal, b"").unwrap();
        } else {
            std::fs::remove_file(&journal).unwrap();
        }
        let run = scan(&emu, s, o, &[]).await;
        assert_eq!(run.code, 8, "{how}: {run:?}");
        let state = if how == "emptied" { "empty" } else { "missing" };
        assert!(
            run.stderr.contains(state)
                && run.stderr.contains("summary.json")
                && run.stderr.contains("--fresh"),
            "{how}: {}",
            run.stderr
        );
        assert_eq!(emu.stats().requests, sent, "{how}: nothing was sent");
    }
    let fresh = scan(&emu, s, o, &["--fresh"]).await;
    assert_eq!(fresh.code, 0, "{fresh:?}");
    assert_eq!(emu.stats().requests, sent + 4);
}

/// Identical images in several manifest rows: a rejection caused by one row's own metadata is
/// never reused for the others, which are sent (once) and get their own result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_of_one_rows_fields_is_not_reused_for_identical_images() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let img = common::jpeg(37_000);
    common::write(tmp.path(), "same.jpg", &img);
    common::write(tmp.path(), "copy.jpg", &img);
    common::write(tmp.path(), "third.jpg", &img);
    let manifest = "id,path,metadata\n\
                    bad,same.jpg,not json\n\
                    good,copy.jpg,\"{\"\"team\"\": 1}\"\n\
                    plain,third.jpg,\n";
    common::write(tmp.path(), "m.csv", manifest.as_bytes());
    let out = tmp.path().join("out");
    let m = tmp.path().join("m.csv");
    let run = scan(&emu, m.to_str().unwrap(), out.to_str().unwrap(), &[]).await;
    let items: HashMap<String, serde_json::Value> = common::journal_items(&out)
        .into_iter()
        .map(|i| (i["key"].as_str().unwrap().to_string(), i))
        .collect();
    // The bad row is either refused locally or rejected by the API for its metadata...
    assert_ne!(items["bad"]["class"], "result", "{run:?}");
    // ...and the others are not dragged along.
    assert_eq!(items["good"]["class"], "result", "{:?}", items["good"]);
    assert_eq!(items["plain"]["class"], "result", "{:?}", items["plain"]);
}

/// Files the walk skips are listed with their reason in ignored.csv (symlinks as symlinks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_files_are_listed_with_their_reason() {
    let emu = common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 2, 38_000);
    common::write(&src, "notes.txt", b"hello");
    symlink(src.join("img0000.jpg"), src.join("linked.jpg")).unwrap();
    let out = tmp.path().join("out");
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    let run = scan(&emu, s, o, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = common::csv_rows(&out.join("ignored.csv"));
    let by_path: HashMap<&str, &str> = rows
        .iter()
        .map(|r| {
            let name = Path::new(&r["path"]).file_name().unwrap().to_str().unwrap();
            (name, r["reason"].as_str())
        })
        .collect();
    assert_eq!(by_path.len(), 2, "{rows:?}");
    assert!(
        by_path["linked.jpg"].contains("symbolic link")
            && by_path["linked.jpg"].contains("--follow-links"),
        "{rows:?}"
    );
    assert!(by_path.contains_key("notes.txt"), "{rows:?}");
    let mode = std::fs::metadata(out.join("ignored.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "ignored.csv is owner-only");
}
