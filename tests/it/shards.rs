//! Integration tests: shards (`--shard K/N`, `--shard-from-env`) run as separate processes
//! against one emulator, and `report` proving that their folders cover the input once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use liveness_batch::emulator::Emulator;
use liveness_batch::shard::Shard;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::{self, KEY, Run, ScanRun};

/// The scheduler variables a test's children must not inherit from wherever the tests run.
const SCHEDULER_VARS: &[&str] = &[
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
];

/// Environment variables set for a child.
type Env<'a> = &'a [(&'a str, &'a str)];

fn command(emu: Option<&Emulator>, args: &[String], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .env_remove("DIDIT_API_KEY")
        .env_remove("DIDIT_BASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for v in SCHEDULER_VARS {
        cmd.env_remove(v);
    }
    if let Some(emu) = emu {
        cmd.env("DIDIT_API_KEY", KEY)
            .env("DIDIT_BASE_URL", emu.base_url());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn run(emu: Option<&Emulator>, args: &[String], env: &[(&str, &str)]) -> Run {
    let out = command(emu, args, env)
        .output()
        .await
        .expect("run liveness-batch");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn spawn(emu: &Emulator, args: &[String]) -> Child {
    command(Some(emu), args, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn liveness-batch")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `scan SRC --out OUT --backoff-ms 5` and `extra`: the rate is the test's own.
fn scan_args(src: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let run = ScanRun::against(None, out).source(src).plain().loud();
    run.args(&["--backoff-ms", "5"]).args(extra).argv()
}

/// `scan SRC --out OUT` with the fast settings and `extra`, printing.
fn fast_args(src: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    ScanRun::against(None, out)
        .source(src)
        .loud()
        .args(extra)
        .argv()
}

/// `n` distinct JPEGs named `img/NNN.jpg`, and a text file the walk ignores.
fn images(dir: &Path, n: u64) {
    common::jpegs(dir, n, 1000, |i| format!("img/{i:03}.jpg"));
    common::write(dir, "notes.txt", b"not an image");
}

/// A copy of `img/NNN.jpg` under a name whose key falls in another of `total` shards than the
/// original's, so one unsharded run would answer it from the original.
fn cross_shard_copy(dir: &Path, i: u64, total: u32) -> String {
    let original = format!("img/{i:03}.jpg");
    let home = Shard::of_key(&original, total);
    let name = (0..)
        .map(|n| format!("copies/{i:03}-{n}.jpg"))
        .find(|k| Shard::of_key(k, total) != home)
        .unwrap();
    std::fs::create_dir_all(dir.join("copies")).unwrap();
    std::fs::copy(dir.join(&original), dir.join(&name)).unwrap();
    name
}

fn items(out: &Path) -> Vec<Value> {
    common::journal_items(out)
}

/// The counts of a summary that one unsharded run and a merge of its shards must share.
fn counts(s: &Value) -> Value {
    serde_json::json!({
        "items": s["items"],
        "by_class": s["by_class"],
        "by_decision": s["by_decision"],
        "by_action": s["by_action"],
        "risk_codes": s["risk_codes"],
        "scores": s["scores"],
    })
}

/// Acceptance 1: four shard processes started at once against one emulator whose key allows
/// 24 requests per 2 s, each told `--rate 20/2s --shard k/4`: together no 429, every item in
/// exactly one shard (shard 2 killed with SIGKILL mid-run and rerun, re-billing nothing it had
/// journaled), and `report` over the four folders gives the counts of one unsharded run, with
/// the identical images of different shards counted as cross-shard duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_share_one_key_budget_and_merge_like_one_run() {
    const N: u32 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    images(&src, 30);
    let copies = [cross_shard_copy(&src, 3, N), cross_shard_copy(&src, 7, N)];
    let emu = common::emulator(|c| {
        c.rate_limit = Some((24, std::time::Duration::from_secs(2)));
        c.latency = std::time::Duration::from_millis(40);
    })
    .await;
    let out = |k: u32| tmp.path().join(format!("shard-{k}"));
    let shard_args = |k: u32| {
        scan_args(
            &src,
            &out(k),
            &[
                "--rate",
                "20/2s",
                "--shard",
                &format!("{k}/{N}"),
                "--concurrency",
                "2",
                "--quiet",
            ],
        )
    };

    let mut children: Vec<(u32, Child)> =
        (1..=N).map(|k| (k, spawn(&emu, &shard_args(k)))).collect();
    // SIGKILL shard 2 once it has journaled two items.
    let journal2 = out(2).join("journal.jsonl");
    let recorded = || {
        std::fs::read_to_string(&journal2)
            .map(|j| j.lines().filter(|l| l.contains(r#""type":"item""#)).count())
            .unwrap_or(0)
    };
    common::wait_until("shard 2 to journal two items", || recorded() >= 2).await;
    children[1].1.start_kill().unwrap();
    let mut codes = BTreeMap::new();
    for (k, child) in children {
        let out = child.wait_with_output().await.unwrap();
        codes.insert(k, out.status.code());
        if k == 1 {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("Shard 1/4")
                    && err.contains("--rate 20/2s is the key's budget, shared by 4 shards"),
                "the quiet banner says which shard and its share: {err}"
            );
        }
    }
    assert_eq!(codes[&2], None, "shard 2 was killed by a signal");
    let killed: BTreeSet<String> = common::journal_items_after_kill(&out(2))
        .iter()
        .filter(|r| r["billed"] == true)
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    assert!(!killed.is_empty());
    for k in [1, 3, 4] {
        assert_eq!(codes[&k], Some(0), "shard {k}");
    }
    // The same command again completes shard 2.
    let rerun = run(Some(&emu), &shard_args(2), &[]).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);

    let stats = emu.stats();
    assert_eq!(
        stats.rate_limited, 0,
        "no 429 from the key's limit: {stats:?}"
    );
    assert_eq!(stats.by_status.get(&429), None, "{stats:?}");

    // Every item in exactly one shard, the one its key hashes to; nothing journaled was billed
    // twice (the rerun re-sent only what the killed run had not recorded).
    let mut all: BTreeMap<String, u32> = BTreeMap::new();
    let mut billed_records = 0u64;
    for k in 1..=N {
        let mut billed_here: BTreeMap<String, u32> = BTreeMap::new();
        for r in items(&out(k)) {
            let key = r["key"].as_str().unwrap().to_string();
            assert_eq!(Shard::of_key(&key, N), k, "{key} is in shard {k}'s folder");
            if r["billed"] == true {
                billed_records += 1;
                *billed_here.entry(key.clone()).or_default() += 1;
            }
            if let Some(other) = all.insert(key.clone(), k) {
                assert_eq!(other, k, "{key} in shards {other} and {k}");
            }
        }
        assert!(
            billed_here.values().all(|n| *n == 1),
            "shard {k}: {billed_here:?}"
        );
        if k == 2 {
            for key in &killed {
                assert_eq!(
                    billed_here.get(key),
                    Some(&1),
                    "{key} was journaled before the kill"
                );
            }
        }
    }
    assert_eq!(all.len(), 32, "30 images and 2 copies: {all:?}");
    // At most the requests in flight at the kill (2) were billed without being recorded.
    assert!(
        stats.credits_used >= billed_records && stats.credits_used <= billed_records + 2,
        "credits {} for {billed_records} billed records",
        stats.credits_used
    );

    // The same input as one unsharded run (its own key, no limit to speak of).
    let single_emu = common::emulator(|_| {}).await;
    let single = tmp.path().join("single");
    let one = run(
        Some(&single_emu),
        &ScanRun::against(None, &single).source(&src).argv(),
        &[],
    )
    .await;
    assert_eq!(one.code, 0, "{}", one.stderr);

    let merged = tmp.path().join("merged");
    let mut argv = strings(&["report"]);
    argv.extend((1..=N).map(|k| path(&out(k))));
    argv.extend(strings(&["--out", &path(&merged)]));
    let report = run(None, &argv, &[]).await;
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(
        report.stderr.contains("4 of 4 shards merged") && report.stderr.contains("(verified)"),
        "{}",
        report.stderr
    );
    let (m, s) = (common::summary(&merged), common::summary(&single));
    assert_eq!(counts(&m), counts(&s), "merged shards = one run");
    assert_eq!(m["items"]["total"], 32);
    let shards = &m["shards"];
    assert_eq!(shards["verified"], true, "{shards}");
    assert_eq!(shards["missing"], serde_json::json!([]));
    assert_eq!(shards["cross_shard_duplicates"], 2, "{copies:?}: {shards}");
    assert_eq!(shards["credits_a_single_run_would_have_saved"], 2);
    assert_eq!(
        m["credits"]["used"].as_u64().unwrap(),
        s["credits"]["used"].as_u64().unwrap() + 2,
        "the shards paid once more for each cross-shard copy"
    );
    assert_eq!(s["credits"]["saved_by_deduplication"], 2);
    let ignored: usize = (1..=N)
        .map(|k| {
            std::fs::read_to_string(out(k).join("ignored.csv"))
                .map(|t| t.matches("notes.txt").count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(ignored, 1, "the ignored file is listed by one shard only");
}

fn small_source(tmp: &Path, n: u64) -> PathBuf {
    let src = tmp.join("src");
    images(&src, n);
    src
}

/// Acceptance 4: `--shard-from-env` with Kubernetes', AWS Batch's and Slurm's variables (an
/// array starting at 1 with a step of 2); three tasks that together cover the input.
#[tokio::test]
async fn shard_from_env_resolves_each_schedulers_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_source(tmp.path(), 9);
    let emu = common::emulator(|_| {}).await;
    let fast = ["--shard-from-env"];
    let cases: [(&str, Env, &[&str], &str); 3] = [
        (
            "k8s",
            &[("JOB_COMPLETION_INDEX", "1")],
            &["--shard-total", "3"],
            "Shard 2/3 (from JOB_COMPLETION_INDEX=1)",
        ),
        (
            "aws",
            &[("AWS_BATCH_JOB_ARRAY_INDEX", "2")],
            &["--shard-total", "3"],
            "Shard 3/3 (from AWS_BATCH_JOB_ARRAY_INDEX=2)",
        ),
        (
            // sbatch --array=1-5:2 → ids 1, 3, 5
            "slurm",
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            &[],
            "Shard 1/3 (from SLURM_ARRAY_TASK_ID=1 (min 1, step 2, count 3))",
        ),
    ];
    let mut dirs = Vec::new();
    for (name, env, extra, banner) in cases {
        let out = tmp.path().join(name);
        let mut argv = fast_args(&src, &out, &fast);
        argv.extend(strings(extra));
        let r = run(Some(&emu), &argv, env).await;
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(banner), "{name}: {}", r.stderr);
        let header = &common::journal_lines(&out)[0];
        let want: u32 = banner[6..7].parse().unwrap();
        assert_eq!(header["shard"]["index"], want, "{name}: {header}");
        assert_eq!(header["shard"]["total"], 3);
        assert!(
            header["shard"]["input_fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        dirs.push(path(&out));
    }
    // Three schedulers' numbering, one split: together they cover the input exactly once.
    let merged = tmp.path().join("merged");
    let mut argv = strings(&["report"]);
    argv.extend(dirs);
    argv.extend(strings(&["--out", &path(&merged)]));
    let r = run(None, &argv, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(common::summary(&merged)["items"]["total"], 9);

    // A dry run counts only its own shard's items, and says which shard.
    let mine = (0..9)
        .filter(|i| Shard::of_key(&format!("img/{i:03}.jpg"), 3) == 1)
        .count();
    let r = run(
        None,
        &scan_args(
            &src,
            &tmp.path().join("dry"),
            &["--dry-run", "--shard-from-env", "--shard-total", "3"],
        ),
        &[("JOB_COMPLETION_INDEX", "0")],
    )
    .await;
    let all = r.all();
    assert_eq!(r.code, 0, "{all}");
    assert!(
        all.contains("Shard 1/3 (from JOB_COMPLETION_INDEX=0)"),
        "{all}"
    );
    assert!(
        all.contains(&format!("would send            {mine}\n")),
        "{all}"
    );

    // A Slurm task off the array's regular range is refused before anything is read.
    let r = run(
        Some(&emu),
        &scan_args(&src, &tmp.path().join("off"), &fast),
        &[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("regular range"), "{}", r.stderr);
    assert!(!tmp.path().join("off").exists(), "nothing written");
}

/// Each bad shard option gets a clear error and exit 2 before anything is read or written.
#[tokio::test]
async fn bad_shard_options_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_source(tmp.path(), 1);
    let out = tmp.path().join("out");
    let cases: &[(&[&str], Env, &str)] = &[
        (&["--shard", "0/4"], &[], "shards count from 1"),
        (&["--shard", "5/4"], &[], "K must be at most N (4)"),
        (&["--shard", "1/0"], &[], "must be at least 1"),
        (&["--shard", "half"], &[], "expected K/N"),
        (
            &["--shard", "1/4", "--max-requests", "3"],
            &[],
            "fewer than the 4 shards",
        ),
        (&["--shard-from-env"], &[], "none of JOB_COMPLETION_INDEX"),
        (
            &["--shard-from-env"],
            &[("JOB_COMPLETION_INDEX", "0")],
            "add --shard-total N",
        ),
        (
            &["--shard-from-env", "--shard-total", "2"],
            &[("JOB_COMPLETION_INDEX", "2")],
            "only 2 tasks",
        ),
        (&["--shard-total", "2"], &[], "--shard-from-env"),
        (
            &["--shard", "1/2", "--shard-from-env"],
            &[],
            "cannot be used with",
        ),
    ];
    for (extra, env, needle) in cases {
        let r = run(
            None,
            &scan_args(&src, &out, &[&["--emulator"], *extra].concat()),
            env,
        )
        .await;
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{extra:?}: {}", r.stderr);
        assert!(!out.exists(), "{extra:?}: nothing written");
    }
}

/// Acceptance 3: `report` names a missing shard (exit 8, outputs written), and refuses a shard
/// run with another threshold or two folders of the same K (exit 8, nothing merged); a shard's
/// folder is resumed only by that shard.
#[tokio::test]
async fn report_names_missing_shards_and_refuses_mismatched_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_source(tmp.path(), 8);
    let emu = common::emulator(|_| {}).await;
    let scan = |name: &str, shard: &str, extra: &[&str]| {
        let run = ScanRun::against(None, &tmp.path().join(name)).source(&src);
        run.args(&["--shard", shard]).args(extra).argv()
    };
    for (name, shard, extra) in [
        ("s1", "1/3", &[][..]),
        ("s2", "2/3", &[][..]),
        ("s3", "3/3", &[][..]),
        ("s2-threshold", "2/3", &["--threshold", "50"][..]),
        ("s1-again", "1/3", &[][..]),
    ] {
        let r = run(Some(&emu), &scan(name, shard, extra), &[]).await;
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    }
    let report = |dirs: &[&str], out: &str| {
        let mut a = strings(&["report"]);
        a.extend(dirs.iter().map(|d| path(&tmp.path().join(d))));
        a.extend(strings(&["--out", &path(&tmp.path().join(out))]));
        a
    };

    let r = run(None, &report(&["s1", "s3"], "m-missing"), &[]).await;
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("shard 2 of 3 is missing"), "{}", r.stderr);
    let s = common::summary(&tmp.path().join("m-missing"));
    assert_eq!(s["shards"]["verified"], false);
    assert_eq!(s["shards"]["missing"], serde_json::json!([2]));
    let md = std::fs::read_to_string(tmp.path().join("m-missing/summary.md")).unwrap();
    assert!(
        md.contains("NOT VERIFIED") && md.contains("shard 2 of 3 is missing"),
        "{md}"
    );
    let html = std::fs::read_to_string(tmp.path().join("m-missing/report.html")).unwrap();
    assert!(html.contains("shard 2 of 3 is missing"));

    let r = run(
        None,
        &report(&["s1", "s2-threshold", "s3"], "m-threshold"),
        &[],
    )
    .await;
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(
        r.stderr.contains("other settings") && r.stderr.contains("threshold"),
        "{}",
        r.stderr
    );
    assert!(
        !tmp.path().join("m-threshold/journal.jsonl").exists(),
        "nothing merged"
    );

    let r = run(
        None,
        &report(&["s1", "s1-again", "s2", "s3"], "m-twice"),
        &[],
    )
    .await;
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("are both shard 1 of 3"), "{}", r.stderr);
    assert!(
        !tmp.path().join("m-twice/journal.jsonl").exists(),
        "nothing merged"
    );

    let r = run(None, &report(&["s3", "s1", "s2"], "m-ok"), &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        common::summary(&tmp.path().join("m-ok"))["items"]["total"],
        8
    );

    // s1 holds shard 1's journal: another shard (or the whole input) is refused there.
    for other in [&["--shard", "2/3"][..], &[][..]] {
        let mut a = fast_args(&src, &tmp.path().join("s1"), &[]);
        a.extend(strings(other));
        let r = run(Some(&emu), &a, &[]).await;
        assert_eq!(r.code, 2, "{other:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("holds the journal of --shard 1/3"),
            "{}",
            r.stderr
        );
    }
}

/// The Slurm array script, run as Slurm would run its tasks (an array 1-5:2: ids 1, 3 and 5),
/// with the built binary on PATH: three shard folders that merge into a verified report.
#[tokio::test]
async fn the_slurm_script_runs_each_array_task_as_its_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_source(tmp.path(), 7);
    let results = tmp.path().join("results");
    let key_file = tmp.path().join("didit.key");
    std::fs::write(&key_file, KEY).unwrap();
    let emu = common::emulator(|_| {}).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/slurm/liveness-batch.sbatch");
    let bin_dir = common::bin().parent().unwrap().to_path_buf();
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for id in ["1", "3", "5"] {
        let env = [
            ("PATH", path_var.as_str()),
            ("INPUT", src.to_str().unwrap()),
            ("RESULTS", results.to_str().unwrap()),
            ("DIDIT_API_KEY_FILE", key_file.to_str().unwrap()),
            ("RATE", common::FAST[1]),
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let out = Command::new("bash")
            .arg(&script)
            .env_clear()
            .envs(env)
            .env("DIDIT_BASE_URL", emu.base_url())
            .env("HOME", tmp.path())
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "task {id}: {stderr}");
        let k = (id.parse::<u32>().unwrap() - 1) / 2 + 1;
        assert!(
            stderr.contains(&format!("Shard {k}/3 (from SLURM_ARRAY_TASK_ID={id}")),
            "task {id}: {stderr}"
        );
        assert!(
            results
                .join(format!("shard-{}", k - 1))
                .join("journal.jsonl")
                .is_file()
        );
    }
    let mut argv = strings(&["report"]);
    argv.extend((0..3).map(|i| path(&results.join(format!("shard-{i}")))));
    argv.extend(strings(&["--out", &path(&results.join("merged"))]));
    let r = run(None, &argv, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("3 of 3 shards merged"), "{}", r.stderr);
    assert_eq!(
        common::summary(&results.join("merged"))["items"]["total"],
        7
    );
}
