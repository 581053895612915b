//! The project's Slurm array script on a real single-node Slurm cluster
//! (`deploy/slurm/local-cluster`): four tasks over 200 images against one rate-limited
//! emulator, one task terminated mid-run with `scancel --signal=TERM --batch` and resubmitted
//! alone, then the four shard folders merged by `report`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::{Output, can_run, output, path_with_bin, repo, say};
use crate::common::{self, KEY};

const IMAGES: u64 = 200;
const TASKS: u32 = 4;
/// The emulator's key allows 40 requests per 2 s; the tasks are told 32/2s, 80 % of it, as
/// `--rate` is meant (each of the 4 paces at 8 per 2 s).
const KEY_LIMIT: (u32, Duration) = (40, Duration::from_secs(2));
const RATE: &str = "32/2s";

/// A cluster started by `local-cluster serve`, up until its standard input closes.
struct Cluster {
    child: Child,
    stdin: Option<ChildStdin>,
    conf: PathBuf,
    jobcomp: PathBuf,
}

impl Cluster {
    /// Starts one (installing Slurm and munge when missing), at most 5 minutes.
    async fn start() -> Cluster {
        let script = repo().join("deploy/slurm/local-cluster");
        let mut child = Command::new("bash")
            .arg(&script)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start deploy/slurm/local-cluster serve");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut conf, mut jobcomp) = (None, None);
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(v) = line.strip_prefix("SLURM_CONF=") {
                    conf = Some(PathBuf::from(v));
                } else if let Some(v) = line.strip_prefix("SLURM_JOBCOMP=") {
                    jobcomp = Some(PathBuf::from(v));
                }
                if conf.is_some() && jobcomp.is_some() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(300), read)
            .await
            .expect("the Slurm cluster did not start within 5 minutes");
        let (Some(conf), Some(jobcomp)) = (conf, jobcomp) else {
            let status = child.wait().await;
            panic!("the Slurm cluster could not start ({status:?}); its messages are above");
        };
        Cluster {
            child,
            stdin,
            conf,
            jobcomp,
        }
    }

    /// A Slurm command (sbatch, scancel, ...) pointed at this cluster.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// Slurm's completion records of the tasks of array job `job`, by task id.
    fn completions(&self, job: &str) -> BTreeMap<u32, Completion> {
        let text = std::fs::read_to_string(&self.jobcomp).unwrap_or_default();
        text.lines()
            .filter_map(Completion::parse)
            .filter(|c| c.array_job == job)
            .map(|c| (c.task, c))
            .collect()
    }

    /// Waits until `count` tasks of `job` have completed, at most `limit`.
    async fn wait_for(
        &self,
        job: &str,
        count: usize,
        limit: Duration,
    ) -> BTreeMap<u32, Completion> {
        let deadline = Instant::now() + limit;
        loop {
            let done = self.completions(job);
            if done.len() >= count {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "job {job}: {} of {count} tasks completed within {limit:?}: {done:?}",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the cluster; it checks that no daemon or job step is left behind.
    async fn stop(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("the Slurm cluster did not stop within 2 minutes")
            .unwrap();
        assert!(
            status.success(),
            "stopping the Slurm cluster failed ({status}): something was left behind (above)"
        );
    }
}

/// One line of Slurm's job completion log (`jobcomp/filetxt`).
#[derive(Debug)]
struct Completion {
    array_job: String,
    task: u32,
    state: String,
    exit_code: String,
    start: chrono::NaiveDateTime,
    end: chrono::NaiveDateTime,
}

impl Completion {
    /// `None` for a line of another kind of job (no array fields) or one still being written.
    fn parse(line: &str) -> Option<Completion> {
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        let get = |k: &str| fields.get(k).copied();
        let time =
            |k: &str| chrono::NaiveDateTime::parse_from_str(get(k)?, "%Y-%m-%dT%H:%M:%S").ok();
        Some(Completion {
            array_job: get("ArrayJobId")?.to_string(),
            task: get("ArrayTaskId")?.parse().ok()?,
            state: get("JobState")?.to_string(),
            exit_code: get("ExitCode")?.to_string(),
            start: time("StartTime")?,
            end: time("EndTime")?,
        })
    }
}

/// The job id `sbatch --parsable` printed.
fn job_id(out: &Output) -> String {
    assert_eq!(out.code, Some(0), "sbatch: {}", out.all());
    let id = out.stdout.trim().split(';').next().unwrap().to_string();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "sbatch printed {:?}",
        out.stdout
    );
    id
}

fn item_lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join("journal.jsonl"))
        .map(|j| j.lines().filter(|l| l.contains(r#""type":"item""#)).count())
        .unwrap_or(0)
}

fn log(dir: &Path, job: &str, task: u32) -> String {
    let p = dir.join(format!("liveness-batch-{job}_{task}.log"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_array_script_runs_on_a_real_slurm_cluster() {
    if !can_run(
        "slurm::the_array_script_runs_on_a_real_slurm_cluster",
        super::needs_root(),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("selfies");
    for i in 0..IMAGES {
        common::write(&src, &format!("img/{i:03}.jpg"), &common::jpeg(5000 + i));
    }
    let results = tmp.path().join("results");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let emulator_log = tmp.path().join("emulator.jsonl");
    let emu = common::emulator(|c| {
        c.rate_limit = Some(KEY_LIMIT);
        c.latency = Duration::from_millis(30);
        c.log = Some(emulator_log.clone());
    })
    .await;

    let cluster = Cluster::start().await;
    let script = repo().join("deploy/slurm/liveness-batch.sbatch");
    // The script unchanged; only its documented variables and sbatch's own options. The key
    // comes from DIDIT_API_KEY alone (no key file anywhere: HOME is empty).
    let sbatch = |array: &str, extra_env: &[(&str, &str)]| {
        let mut cmd = cluster.command("sbatch");
        cmd.args(["--parsable", &format!("--array={array}")])
            .arg(format!("--chdir={}", logs.display()))
            .arg(&script)
            .env("PATH", path_with_bin())
            .env("HOME", tmp.path())
            .env("INPUT", &src)
            .env("RESULTS", &results)
            .env("RATE", RATE)
            .env("DIDIT_API_KEY", KEY)
            .env("DIDIT_BASE_URL", emu.base_url())
            .env_remove("DIDIT_API_KEY_FILE")
            .env_remove("RUST_LOG");
        for v in ["SHARD_TOTAL", "ARRAY_FIRST", "ARRAY_STEP"] {
            cmd.env_remove(v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    };

    // The array, as a user submits it (with the key's budget and the test's input).
    let array = job_id(&output(&mut sbatch("0-3", &[]), Duration::from_secs(30)).await);
    // Task 2 (shard 3/4, folder shard-2) is terminated once it has journaled 10 images.
    let shard2 = results.join("shard-2");
    let deadline = Instant::now() + Duration::from_secs(180);
    while item_lines(&shard2) < 10 {
        assert!(
            Instant::now() < deadline,
            "task 2 never journaled 10 images; its log: {:?}",
            std::fs::read_to_string(logs.join(format!("liveness-batch-{array}_2.log")))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scancel = output(
        cluster
            .command("scancel")
            .args(["--signal=TERM", "--batch", &format!("{array}_2")]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(scancel.code, Some(0), "scancel: {}", scancel.all());
    let first = cluster
        .wait_for(&array, TASKS as usize, Duration::from_secs(300))
        .await;

    for (task, c) in &first {
        let expected = if *task == 2 { "143:0" } else { "0:0" };
        assert_eq!(
            c.exit_code,
            expected,
            "task {task} ({}): {}",
            c.state,
            log(&logs, &array, *task)
        );
    }
    let started = first.values().map(|c| c.start).min().unwrap();
    let ended = first.values().map(|c| c.end).max().unwrap();
    let others = first
        .iter()
        .filter(|(t, _)| **t != 2)
        .map(|(_, c)| (c.end - c.start).num_seconds())
        .collect::<Vec<_>>();
    for task in 0..TASKS {
        let text = log(&logs, &array, task);
        assert!(
            text.contains(&format!(
                "Shard {}/{TASKS} (from SLURM_ARRAY_TASK_ID={task} (min 0, step 1, count 4))",
                task + 1
            )),
            "task {task}: {text}"
        );
    }

    // Terminated with its journal intact: it ends with the run's end line (exit 143), every
    // line before it whole, and some images left for the resubmission.
    let journal = common::journal_lines(&shard2);
    let end = journal.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["exit_code"], 143, "{end}");
    let billed_before: BTreeSet<String> = journal
        .iter()
        .filter(|l| l["type"] == "item" && l["billed"] == true)
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    assert!(!billed_before.is_empty());

    // Task 2 alone, resubmitted: SHARD_TOTAL keeps it shard 3 of 4 (Slurm calls a one-task
    // array min = max = 2, count 1).
    let again = job_id(
        &output(
            &mut sbatch("2", &[("SHARD_TOTAL", "4")]),
            Duration::from_secs(30),
        )
        .await,
    );
    let second = cluster.wait_for(&again, 1, Duration::from_secs(300)).await;
    let rerun = &second[&2];
    let rerun_log = log(&logs, &again, 2);
    assert_eq!(rerun.exit_code, "0:0", "{rerun:?}: {rerun_log}");
    assert!(
        rerun_log.contains("Shard 3/4: "),
        "the resubmitted task is shard 3/4: {rerun_log}"
    );

    // No 429: the four tasks together kept to the key's budget.
    let stats = emu.stats();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert_eq!(stats.by_status.get(&429), None, "{stats:?}");

    // Nothing billed twice: every image was answered (200) exactly once by the emulator, and
    // the resubmitted task billed none of the images its first run had journaled.
    let mut answered: BTreeMap<String, u32> = BTreeMap::new();
    for line in std::fs::read_to_string(&emulator_log).unwrap().lines() {
        let l: Value = serde_json::from_str(line).unwrap();
        if l["path"] == "/v3/passive-liveness/" && l["status"] == 200 {
            *answered
                .entry(l["sha256"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(answered.len() as u64, IMAGES, "every image answered once");
    assert!(
        answered.values().all(|n| *n == 1),
        "images billed twice: {:?}",
        answered.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let mut billed_in_shard2: BTreeMap<String, u32> = BTreeMap::new();
    for l in common::journal_items(&shard2) {
        if l["billed"] == true {
            *billed_in_shard2
                .entry(l["key"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for key in &billed_before {
        assert_eq!(
            billed_in_shard2.get(key),
            Some(&1),
            "{key} was journaled before the SIGTERM and billed again"
        );
    }

    // The four shard folders merge into one verified report: every image exactly once.
    let merged = tmp.path().join("merged");
    let mut report = Command::new(common::bin());
    report.arg("report");
    report.args((0..TASKS).map(|k| results.join(format!("shard-{k}"))));
    report.arg("--out").arg(&merged).env_remove("DIDIT_API_KEY");
    let r = output(&mut report, Duration::from_secs(60)).await;
    assert_eq!(r.code, Some(0), "report: {}", r.all());
    assert!(
        r.stderr.contains("4 of 4 shards merged") && r.stderr.contains("(verified)"),
        "{}",
        r.stderr
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(merged.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["items"]["total"], IMAGES, "{}", summary["items"]);
    assert_eq!(summary["shards"]["verified"], true, "{}", summary["shards"]);
    assert_eq!(
        summary["requests"]["rate_limited_429"], 0,
        "{}",
        summary["requests"]
    );

    say(&format!(
        "engines::slurm: a {TASKS}-task array over {IMAGES} images at --rate {RATE} (emulator \
         limit {}/{}s): {} s from the first task's start to the last one's end by Slurm's \
         clock (the 3 tasks that ran to the end took {others:?} s; task 2 was terminated \
         with {} images journaled); task 2 resubmitted alone: {} s",
        KEY_LIMIT.0,
        KEY_LIMIT.1.as_secs(),
        (ended - started).num_seconds(),
        billed_before.len(),
        (rerun.end - rerun.start).num_seconds(),
    ));
    cluster.stop().await;
}

/// The script's own refusals, before the binary runs (no cluster needed): a task off the
/// array that SHARD_TOTAL, ARRAY_FIRST and ARRAY_STEP describe, and no key anywhere.
#[tokio::test]
async fn the_array_script_refuses_a_task_off_its_array_and_a_missing_key() {
    let tmp = tempfile::tempdir().unwrap();
    let script = repo().join("deploy/slurm/liveness-batch.sbatch");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .env_clear()
            .env("PATH", path_with_bin())
            .env("HOME", tmp.path())
            .env("INPUT", tmp.path())
            .env("RESULTS", tmp.path().join("results"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "4"),
        ("SLURM_ARRAY_TASK_MIN", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "1"),
    ];
    let mut cases: Vec<(Vec<(&str, &str)>, &str)> = Vec::new();
    // Task 4 of an original --array=1-7:2 (4 tasks: 1, 3, 5, 7) is not one of them.
    let mut off = slurm.to_vec();
    off.extend([
        ("DIDIT_API_KEY", KEY),
        ("SHARD_TOTAL", "4"),
        ("ARRAY_FIRST", "1"),
        ("ARRAY_STEP", "2"),
    ]);
    cases.push((
        off,
        "task 4 is not one of the 4 tasks of an array starting at 1 with step 2",
    ));
    // Task 4 of an original --array=0-3 is past its end.
    let mut past = slurm.to_vec();
    past.extend([("DIDIT_API_KEY", KEY), ("SHARD_TOTAL", "4")]);
    cases.push((past, "task 4 is not one of the 4 tasks"));
    cases.push((
        slurm.to_vec(),
        "no API key: set DIDIT_API_KEY_FILE or DIDIT_API_KEY",
    ));
    for (env, message) in cases {
        let out = output(&mut run(&env), Duration::from_secs(30)).await;
        assert_eq!(out.code, Some(2), "{env:?}: {}", out.all());
        assert!(out.stderr.contains(message), "{env:?}: {}", out.all());
        assert!(!tmp.path().join("results").exists(), "nothing ran: {env:?}");
    }
}
