//! Integration tests: possible double charges counted exactly. A send whose outcome was unknown
//! (the upload left, no definitive answer came back) counts as a possible double charge only
//! once the same image is sent again, in the same run or a later one.

use std::path::Path;

use liveness_batch::emulator::Emulator;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{self, ScanRun};

/// `scan SRC --out OUT` one request at a time with `extra`, in this process: the exit code.
async fn scan(emu: &Emulator, src: &Path, out: &Path, extra: &[&str]) -> i32 {
    ScanRun::new(emu, src, out)
        .args(&["--concurrency", "1"])
        .args(extra)
        .run()
        .await
}

/// (sends with an unknown outcome, of them sent again) in summary.json.
fn counted(out: &Path) -> (u64, u64) {
    let r = &common::summary(out)["requests"];
    (
        r["unknown_outcomes"].as_u64().unwrap(),
        r["possible_double_charges"].as_u64().unwrap(),
    )
}

/// An emulator seed whose first `POST` draws a 500 and whose second does not, with a 500 on
/// half the requests (the emulator draws two numbers per `POST`: the fault, then the jitter).
fn seed_500_then_ok() -> u64 {
    (0..10_000)
        .find(|s| {
            let mut rng = StdRng::seed_from_u64(*s);
            let first: f64 = rng.random();
            let _jitter: f64 = rng.random();
            let second: f64 = rng.random();
            first < 0.5 && second >= 0.5
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_500_then_success_counts_one_unknown_outcome_sent_again() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    common::write(&src, "a.jpg", &common::jpeg(230_001));
    let emu = common::emulator(|c| {
        c.faults.p500 = 0.5;
        c.seed = seed_500_then_ok();
    })
    .await;
    let r = scan(&emu, &src, &out, &[]).await;
    assert_eq!(r, 0, "{r:?}");
    let stats = emu.stats();
    assert_eq!(
        (stats.requests, stats.by_status.get(&500).copied()),
        (2, Some(1)),
        "one 500, then the answer: {stats:?}"
    );
    let items = common::journal_items(&out);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["attempts"], 2);
    assert_eq!(items[0]["unknown_outcomes"], 1);
    assert_eq!(items[0]["possible_double_charges"], 1);
    assert!(items[0].get("unknown_pending").is_none(), "{}", items[0]);
    assert_eq!(counted(&out), (1, 1));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains(
            "1 send with an unknown outcome, 1 of them sent again (1 possible double charge)"
        ),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Sends with an unknown outcome"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_never_repeated_is_no_double_charge_until_the_next_run_sends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    common::write(&src, "a.jpg", &common::jpeg(230_002));
    common::write(&src, "b.jpg", &common::jpeg(230_003));
    let failing = common::emulator(|c| c.faults.p500 = 1.0).await;
    let r = scan(&failing, &src, &out, &["--max-retries", "0"]).await;
    assert_eq!(r, 1, "{r:?}");
    assert_eq!(failing.stats().requests, 2);
    for i in common::journal_items(&out) {
        assert_eq!(i["class"], "transient", "{i}");
        assert_eq!(i["unknown_outcomes"], 1, "{i}");
        assert_eq!(i["possible_double_charges"], 0, "{i}");
        assert_eq!(i["unknown_pending"], true, "{i}");
    }
    assert_eq!(
        counted(&out),
        (2, 0),
        "two unknown outcomes, neither sent again"
    );

    // The next run sends both again (images that ran out of retries are redone with
    // --retry-failed): each earlier 500 is now repeated.
    let healthy = common::emulator(|_| {}).await;
    let r = scan(&healthy, &src, &out, &["--retry-failed"]).await;
    assert_eq!(r, 0, "{r:?}");
    assert_eq!(healthy.stats().requests, 2);
    let items = common::journal_items(&out);
    for i in &items[2..] {
        assert_eq!(i["class"], "result", "{i}");
        assert_eq!(i["possible_double_charges"], 1, "{i}");
        assert!(i.get("unknown_outcomes").is_none(), "{i}");
    }
    assert_eq!(counted(&out), (2, 2));
    // And `report` counts the same from the journal alone.
    let report = common::run_bin(&["report", out.to_str().unwrap()], None, None).await;
    assert_eq!(report.code, 0, "{report:?}");
    assert_eq!(counted(&out), (2, 2));
}
