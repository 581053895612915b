//! Integration tests: the `check` command against the emulator: readable and JSON output, exit
//! codes by decision and by error class, local refusals that send nothing, and the key never
//! appearing in any output.

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use clap::Parser;
use liveness_batch::check::{CheckError, SIMULATED, run_with};
use liveness_batch::cli::{CheckArgs, Cli, Command};
use liveness_batch::config::CheckConfig;
use liveness_batch::emulator::{self, Emulator, EmulatorConfig};
use liveness_batch::exit::Exit;

use crate::common;

const KEY: &str = "emu_check_key_3c9e1f7a";

fn args(list: &[&str]) -> CheckArgs {
    let mut v = vec!["liveness-batch", "check"];
    v.extend_from_slice(list);
    match Cli::try_parse_from(v).expect("valid arguments").command {
        Command::Check(a) => a,
        other => panic!("{other:?}"),
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Run `check` as the binary does: validate the settings, run, and print an error (with its
/// exit code) the way `main` does.
async fn check(list: &[&str], env_key: Option<&str>) -> Run {
    let (result, out, mut err) = check_result(list, env_key).await;
    let code = match result {
        Ok(exit) => exit,
        Err(e) => {
            err.push_str(&format!("liveness-batch: {e}\n"));
            e.exit_code()
        }
    };
    Run {
        code: code.code(),
        out,
        err,
    }
}

/// The library's own answer: the decision, or the error (config errors as the binary maps them).
async fn check_result(
    list: &[&str],
    env_key: Option<&str>,
) -> (Result<Exit, liveness_batch::Error>, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let result = match CheckConfig::from_args(args(list), env_key.map(str::to_string)) {
        Ok(cfg) => run_with(cfg, &mut out, &mut err).await.map_err(Into::into),
        Err(e) => Err(e.into()),
    };
    (
        result,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// The `CheckError` a run ended with (panics on a decision or a settings error).
async fn check_error(list: &[&str], env_key: Option<&str>) -> (CheckError, String) {
    match check_result(list, env_key).await {
        (Err(liveness_batch::Error::Check(e)), out, _) => (e, out),
        (other, out, err) => panic!("expected a check error, got {other:?}: {out}{err}"),
    }
}

async fn emu(cfg: EmulatorConfig) -> Emulator {
    emulator::start(cfg, 0).await.expect("emulator starts")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn decision_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("decision:"))
        .expect("a decision line")
}

#[tokio::test]
async fn emulator_check_prints_a_readable_result_and_exits_by_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..6 {
        let img = common::write(
            dir.path(),
            &format!("selfie{seed}.jpg"),
            &common::jpeg(seed),
        );
        let r = check(&[p(&img), "--emulator", "--vendor-data", "user-7"], None).await;
        assert!(r.out.starts_with(SIMULATED), "{}", r.out);
        for label in [
            "decision:",
            "score:",
            "face quality:",
            "luminance:",
            "face:",
            "action:",
            "request_id:",
            "warnings",
        ] {
            assert!(r.out.contains(label), "missing {label}: {}", r.out);
        }
        assert!(r.out.contains("vendor_data:    user-7"), "{}", r.out);
        assert!(r.out.contains("save_api_request=false"), "{}", r.out);
        let line = decision_line(&r.out);
        match r.code {
            0 => assert!(line.ends_with("Approved"), "{line}"),
            1 => assert!(line.ends_with("Declined"), "{line}"),
            other => panic!("exit {other}: {}{}", r.out, r.err),
        }
        seen.insert(r.code);
    }
    assert!(seen.contains(&0), "most photo-like images are approved");
}

#[tokio::test]
async fn json_output_is_the_api_answer_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.png", &common::png(3));
    let r = check(
        &[
            p(&img),
            "--emulator",
            "--json",
            "--metadata",
            r#"{"batch":"q3"}"#,
        ],
        None,
    )
    .await;
    assert!(r.code == 0 || r.code == 1, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).expect("stdout is only JSON");
    assert!(v["request_id"].is_string());
    assert!(v["liveness"]["status"] == "Approved" || v["liveness"]["status"] == "Declined");
    assert_eq!(v["liveness"]["method"], "PASSIVE");
    assert!(v["liveness"]["warnings"].is_array());
    assert!(v["liveness"]["user_image"]["entities"].is_array());
    assert_eq!(v["metadata"], serde_json::json!({"batch": "q3"}));
    assert!(v["created_at"].is_string());
    assert_eq!(r.code == 0, v["liveness"]["status"] == "Approved");
    assert!(
        r.err.contains(SIMULATED),
        "the simulated note goes to stderr with --json"
    );
}

#[tokio::test]
async fn no_face_detected_nulls_are_shown_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::encode(&image::RgbImage::new(1, 1), image::ImageFormat::Png);
    let img = common::write(dir.path(), "tiny.png", &tiny);
    let r = check(&[p(&img), "--emulator"], None).await;
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    assert!(r.out.contains("decision:       Declined"), "{}", r.out);
    assert!(
        r.out.contains("score:          n/a (no score)"),
        "{}",
        r.out
    );
    assert!(r.out.contains("face quality:   n/a"), "{}", r.out);
    assert!(r.out.contains("luminance:      n/a"), "{}", r.out);
    assert!(r.out.contains("face:           none detected"), "{}", r.out);
    assert!(r.out.contains("[error] NO_FACE_DETECTED"), "{}", r.out);
    assert!(r.out.contains("action:         retake"), "{}", r.out);
}

#[tokio::test]
async fn a_separate_emulator_gives_the_same_decision_as_the_built_in_one() {
    let server = emu(EmulatorConfig::new(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    for seed in [11, 12, 13] {
        let img = common::write(dir.path(), &format!("{seed}.jpg"), &common::jpeg(seed));
        let a = check(&[p(&img), "--base-url", &server.base_url()], Some(KEY)).await;
        let b = check(&[p(&img), "--emulator"], None).await;
        assert_eq!(a.code, b.code, "{}\n{}", a.out, b.out);
        assert_eq!(decision_line(&a.out), decision_line(&b.out));
        assert!(
            !a.out.contains("SIMULATED"),
            "a real base URL is not stamped by check"
        );
    }
    assert_eq!(server.stats().by_status.get(&200), Some(&3));
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_exits_3_and_is_never_printed() {
    for auth_401 in [false, true] {
        let mut cfg = EmulatorConfig::new(KEY);
        cfg.auth_401 = auth_401;
        let server = emu(cfg).await;
        let dir = tempfile::tempdir().unwrap();
        let img = common::write(dir.path(), "a.jpg", &common::jpeg(1));
        let wrong = "wrong_key_value_d41d8cd98f";
        for extra in [&[][..], &["--json"][..], &["-vv"][..]] {
            let mut list = vec![p(&img), "--base-url", server.base_url().leak()];
            list.extend_from_slice(extra);
            let r = check(&list, Some(wrong)).await;
            assert_eq!(r.code, 3, "{}{}", r.out, r.err);
            assert!(r.err.contains("key was refused"), "{}", r.err);
            assert!(r.out.is_empty(), "{}", r.out);
            assert!(!r.out.contains(wrong) && !r.err.contains(wrong));
            assert!(!r.err.contains(KEY));
        }
        // Refused keys are not retried.
        assert_eq!(server.stats().requests, 3);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_key_file_is_read() {
    let server = emu(EmulatorConfig::new(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(2));
    let key_file = common::write(dir.path(), "key.txt", format!("{KEY}\n").as_bytes());
    let r = check(
        &[
            p(&img),
            "--base-url",
            &server.base_url(),
            "--api-key-file",
            p(&key_file),
        ],
        Some("ignored_env_key"),
    )
    .await;
    assert!(r.code == 0 || r.code == 1, "{}", r.err);
    server.shutdown().await;
}

#[tokio::test]
async fn out_of_credits_exits_4_with_what_to_do() {
    let mut cfg = EmulatorConfig::new(KEY);
    cfg.credits = Some(0);
    let server = emu(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(3));
    let r = check(&[p(&img), "--base-url", &server.base_url()], Some(KEY)).await;
    assert_eq!(r.code, 4, "{}", r.err);
    assert!(
        r.err.contains("out of credits") && r.err.contains("top up"),
        "{}",
        r.err
    );
    assert_eq!(server.stats().requests, 1);
    server.shutdown().await;
}

// Paused time: timeouts, stalls and rate windows on tokio's clock, whatever the load.
#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_retry_after() {
    let mut cfg = EmulatorConfig::new(KEY);
    cfg.rate_limit = Some((1, Duration::from_secs(1)));
    let server = emu(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(4));
    let base = server.base_url();
    let first = check(&[p(&img), "--base-url", &base], Some(KEY)).await;
    let second = check(&[p(&img), "--base-url", &base], Some(KEY)).await;
    assert_eq!(first.code, second.code, "{}", second.err);
    assert!(second.code == 0 || second.code == 1);
    let stats = server.stats();
    assert!(stats.rate_limited >= 1, "{stats:?}");
    assert_eq!(stats.by_status.get(&200), Some(&2), "{stats:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_server_errors_exit_5_after_the_retries() {
    let mut cfg = EmulatorConfig::new(KEY);
    cfg.faults.p503 = 1.0;
    let server = emu(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(5));
    let r = check(
        &[
            p(&img),
            "--base-url",
            &server.base_url(),
            "--max-retries",
            "1",
        ],
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 5, "{}", r.err);
    assert!(
        r.err.contains("kept failing") && r.err.contains("503"),
        "{}",
        r.err
    );
    assert_eq!(server.stats().requests, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn an_undecodable_image_refused_by_the_api_exits_2() {
    let server = emu(EmulatorConfig::new(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    // JPEG magic bytes, then garbage: passes the local sniff, fails to decode at the API.
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend_from_slice(&[0x42; 4000]);
    let img = common::write(dir.path(), "broken.jpg", &bytes);
    let r = check(&[p(&img), "--base-url", &server.base_url()], Some(KEY)).await;
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(
        r.err.contains("Invalid user image format") && r.err.contains("nothing was billed"),
        "{}",
        r.err
    );
    assert_eq!(server.stats().credits_used, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_local_files_exit_2_and_send_nothing() {
    let server = emu(EmulatorConfig::new(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = common::write(dir.path(), "notes.jpg", b"just some text, not a photo\n");
    let empty = common::write(dir.path(), "empty.jpg", b"");
    let mut big = common::jpeg(9);
    big.resize(6 * 1024 * 1024, 0);
    let big = common::write(dir.path(), "big.jpg", &big);
    let missing = dir.path().join("missing.jpg");
    let gif = common::write(
        dir.path(),
        "anim.jpg",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    );
    let cases: [(&Path, &str); 5] = [
        (&text, "text"),
        (&empty, "empty"),
        (&big, "5 MB"),
        (&missing, "not found"),
        (&gif, "GIF"),
    ];
    for (path, want) in cases {
        let r = check(&[p(path), "--base-url", &server.base_url()], Some(KEY)).await;
        assert_eq!(r.code, 2, "{}: {}", path.display(), r.err);
        assert!(r.err.contains(want), "{}: {}", path.display(), r.err);
        assert!(r.err.contains("nothing was sent"), "{}", r.err);
        assert!(r.out.is_empty());
    }
    assert_eq!(server.stats().requests, 0, "nothing reached the API");
    server.shutdown().await;
}

/// `--check face-match`: the same person approved, another person declined for review, a
/// pair with no face to retake; the threshold sent is the one shown.
#[tokio::test]
async fn face_match_compares_the_pair_and_exits_by_decision() {
    let dir = tempfile::tempdir().unwrap();
    let alice = common::person(11, 240);
    let selfie = common::write(
        dir.path(),
        "selfie.jpg",
        &common::encode(&alice, image::ImageFormat::Jpeg),
    );
    let id = common::write(dir.path(), "id-photo.png", &common::derived(&alice));
    let other = common::write(
        dir.path(),
        "someone-else.jpg",
        &common::encode(&common::person(12, 240), image::ImageFormat::Jpeg),
    );
    let blank = common::write(
        dir.path(),
        "blank.png",
        &common::encode(
            &image::RgbImage::from_pixel(120, 120, image::Rgb([90, 90, 90])),
            image::ImageFormat::Png,
        ),
    );
    let run = |reference: &Path, extra: &'static [&'static str]| {
        let (s, r) = (p(&selfie).to_string(), p(reference).to_string());
        async move {
            let mut list = vec![s.as_str(), "--emulator", "--check", "face-match", "--ref"];
            list.push(r.as_str());
            list.extend_from_slice(extra);
            check(&list, None).await
        }
    };
    let same = run(&id, &[]).await;
    assert_eq!(same.code, 0, "{}{}", same.out, same.err);
    for line in [
        "check:          face-match (/v3/face-match/)",
        "reference:      ",
        "decision:       Approved",
        "declined at or below 30, sent as face match's threshold",
        "reference face: ",
        "action:         proceed",
    ] {
        assert!(same.out.contains(line), "missing {line:?}: {}", same.out);
    }
    assert!(
        !same.out.contains("face quality:"),
        "face match has none: {}",
        same.out
    );

    let different = run(&other, &["--face-match-threshold", "55"]).await;
    assert_eq!(different.code, 1, "{}{}", different.out, different.err);
    assert!(
        different.out.contains("LOW_FACE_MATCH_SIMILARITY"),
        "{}",
        different.out
    );
    assert!(
        different.out.contains("declined at or below 55"),
        "{}",
        different.out
    );
    assert!(
        different.out.contains("action:         review"),
        "{}",
        different.out
    );

    let no_face = run(&blank, &[]).await;
    assert_eq!(no_face.code, 1, "{}", no_face.out);
    assert!(
        no_face.out.contains("NO_REFERENCE_IMAGE"),
        "{}",
        no_face.out
    );
    assert!(
        no_face.out.contains("action:         retake"),
        "{}",
        no_face.out
    );

    // The image itself as its reference: refused, nothing sent.
    let r = run(&selfie, &[]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(
        r.err
            .contains("the reference (--ref) has the same content as the image"),
        "{}",
        r.err
    );

    // A missing reference is the input's fault: nothing is sent.
    let missing = dir.path().join("no-such-id.png");
    let r = run(&missing, &[]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(
        r.err.contains("the reference (--ref): ")
            && r.err.contains("no-such-id.png")
            && r.err.contains("nothing was sent"),
        "{}",
        r.err
    );
}

/// `--check age`: the estimated age and the minimum beside it; 0 turns the age check off.
#[tokio::test]
async fn age_estimation_shows_the_age_and_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let (mut young, mut approved) = (None, false);
    for seed in 0..40 {
        let img = common::write(
            dir.path(),
            &format!("s{seed}.jpg"),
            &common::jpeg(500 + seed),
        );
        let r = check(&[p(&img), "--emulator", "--check", "age"], None).await;
        assert!(
            r.out.contains("check:          age (/v3/age-estimation/)"),
            "{}",
            r.out
        );
        assert!(r.out.contains("(declined below 18)"), "{}", r.out);
        approved |= r.code == 0;
        if r.out.contains("AGE_BELOW_MINIMUM") {
            assert_eq!(r.code, 1);
            young.get_or_insert(img);
        }
    }
    assert!(approved, "some adult faces pass");
    let young = young.expect("a face estimated under 18 among 40");
    let r = check(
        &[p(&young), "--emulator", "--check", "age", "--min-age", "0"],
        None,
    )
    .await;
    assert!(
        r.out.contains("(no minimum: the age check is off)"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("AGE_BELOW_MINIMUM"), "{}", r.out);
}

/// Each check's own flags are refused with another check, with a clear message, before
/// anything is read or sent.
#[tokio::test]
async fn flags_of_another_check_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(7));
    for (extra, want) in [
        (
            &["--check", "face-match"][..],
            "--check face-match needs --ref PATH",
        ),
        (
            &["--ref", "a.jpg"][..],
            "--ref is for --check face-match; this is --check liveness",
        ),
        (
            &["--min-age", "21"][..],
            "--min-age is for --check age; this is --check liveness",
        ),
        (
            &["--check", "age", "--face-match-threshold", "50"][..],
            "--face-match-threshold is for --check face-match; this is --check age",
        ),
        (
            &[
                "--check",
                "face-match",
                "--ref",
                "a.jpg",
                "--threshold",
                "50",
            ][..],
            "its decline threshold is --face-match-threshold",
        ),
        (
            &[
                "--check",
                "face-match",
                "--ref",
                "a.jpg",
                "--face-match-threshold",
                "101",
            ][..],
            "--face-match-threshold must be a number from 0 to 100, got 101",
        ),
        (
            &["--check", "age", "--min-age", "101"][..],
            "--min-age must be a whole number",
        ),
        (
            &["--check", "age", "--min-age=-1"][..],
            "--min-age must be a whole number",
        ),
    ] {
        let mut list = vec![p(&img), "--emulator"];
        list.extend_from_slice(extra);
        let r = check(&list, None).await;
        assert_eq!(r.code, 2, "{extra:?}: {}{}", r.out, r.err);
        assert!(r.err.contains(want), "{extra:?}: {}", r.err);
        assert!(r.out.is_empty(), "nothing was sent: {}", r.out);
    }
}

#[tokio::test]
async fn bad_parameters_exit_2_and_send_nothing() {
    let server = emu(EmulatorConfig::new(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(6));
    let base = server.base_url();
    for (extra, want) in [
        (&["--threshold", "150"][..], "0 to 100"),
        (&["--threshold=-1"][..], "0 to 100"),
        (&["--threshold", "NaN"][..], "0 to 100"),
        (&["--metadata", "[1,2]"][..], "must be a JSON object"),
        (&["--metadata", "{oops"][..], "not valid JSON"),
        (&["--timeout", "0"][..], "--timeout"),
    ] {
        let mut list = vec![p(&img), "--base-url", base.as_str()];
        list.extend_from_slice(extra);
        let r = check(&list, Some(KEY)).await;
        assert_eq!(r.code, 2, "{extra:?}: {}", r.err);
        assert!(r.err.contains(want), "{extra:?}: {}", r.err);
    }
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_key_names_both_ways_to_give_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(7));
    let r = check(
        &[p(&img), "--base-url", "https://verification.didit.me"],
        None,
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(
        r.err.contains("DIDIT_API_KEY") && r.err.contains("--api-key-file"),
        "{}",
        r.err
    );
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(8));
    let r = check(
        &[p(&img), "--base-url", "http://verification.didit.me"],
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(
        r.err
            .contains("refusing to send the API key over plain http"),
        "{}",
        r.err
    );
    assert!(!r.err.contains(KEY));
}

// ---------------------------------------------------------------- the binary

fn run_bin(args: &[&str], key: Option<&str>) -> (i32, String, String) {
    let mut cmd = Process::new(common::bin());
    cmd.args(args)
        .env_remove("DIDIT_API_KEY")
        .env_remove("DIDIT_BASE_URL");
    if let Some(k) = key {
        cmd.env("DIDIT_API_KEY", k);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_wrong_key_exits_3_without_printing_it() {
    let server = emu(EmulatorConfig::new(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(1));
    let wrong = "wrong_key_value_0cc175b9c0f1b6a8";
    let base = server.base_url();
    let img_s = p(&img).to_string();
    for verbosity in [None, Some("-v"), Some("-vv")] {
        let mut list = vec!["check", img_s.as_str(), "--base-url", base.as_str()];
        list.extend(verbosity);
        let (code, out, err) = tokio::task::block_in_place(|| run_bin(&list, Some(wrong)));
        assert_eq!(code, 3, "{out}{err}");
        assert!(err.contains("key was refused"), "{err}");
        assert!(!out.contains(wrong) && !err.contains(wrong), "{out}{err}");
    }
    server.shutdown().await;
}

#[test]
fn binary_emulator_check_and_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(2));
    let (code, out, err) = run_bin(&["check", p(&img), "--emulator"], None);
    assert!(code == 0 || code == 1, "{out}{err}");
    assert!(
        out.contains(SIMULATED) && out.contains("decision:"),
        "{out}"
    );
    let (code, out, _) = run_bin(&["check", p(&img), "--emulator", "--json"], None);
    assert!(code == 0 || code == 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("only JSON on stdout");
    assert!(v["liveness"]["status"].is_string());

    let text = common::write(dir.path(), "notes.jpg", b"hello\n");
    let (code, _, err) = run_bin(&["check", p(&text), "--emulator"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("text"), "{err}");
    let (code, _, err) = run_bin(&["check", p(&img)], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("DIDIT_API_KEY") && err.contains("--api-key-file"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_is_honoured_and_never_sees_the_key() {
    use crate::client::{Reply, Scripted};
    // A loopback "proxy" that refuses the tunnel: the CONNECT it receives proves the proxy
    // setting is used for https, and nothing leaves the machine.
    let proxy = Scripted::start(vec![Reply::raw(403, "text/plain", b"no tunnels here"); 4]).await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(3));
    let img_s = p(&img).to_string();
    let proxy_url = proxy.base_url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let o = Process::new(common::bin())
            .args([
                "check",
                &img_s,
                "--max-retries",
                "0",
                "--base-url",
                "https://verification.didit.me",
            ])
            .env("DIDIT_API_KEY", KEY)
            .env_remove("DIDIT_BASE_URL")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("HTTPS_PROXY", &proxy_url)
            .env("https_proxy", &proxy_url)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 5, "{out}{err}");
    let reqs = proxy.captured();
    assert!(!reqs.is_empty(), "the proxy was used: {err}");
    assert!(
        reqs[0]
            .request_line()
            .starts_with("CONNECT verification.didit.me:443"),
        "{}",
        reqs[0].request_line()
    );
    for r in &reqs {
        assert!(
            !r.head.contains(KEY),
            "the key travels only inside the TLS tunnel"
        );
    }
    assert!(!out.contains(KEY) && !err.contains(KEY));
}

/// Acceptance: a separately started `liveness-batch emulator`, reached through DIDIT_API_KEY
/// and DIDIT_BASE_URL, gives the same decision as `check --emulator`; a wrong key exits 3.
#[test]
fn binary_against_a_separate_emulator_process() {
    use std::io::{BufRead, BufReader};
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Process::new(common::bin())
        .args(["emulator", "--port", "0", "--api-key", KEY])
        .env_remove("DIDIT_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no base URL in {line:?}"))
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(21));
    let run = |key: &str, extra: &[&str]| {
        let o = Process::new(common::bin())
            .arg("check")
            .arg(&img)
            .args(extra)
            .env("DIDIT_API_KEY", key)
            .env("DIDIT_BASE_URL", &base)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, out, err) = run(KEY, &[]);
    let (emu_code, emu_out, _) = run("unused", &["--emulator"]);
    let wrong = "a_wrong_key_92eb5ffee6ae2fec";
    let (wrong_code, wrong_out, wrong_err) = run(wrong, &[]);
    drop(child);

    assert!(code == 0 || code == 1, "{out}{err}");
    assert_eq!(code, emu_code);
    assert_eq!(decision_line(&out), decision_line(&emu_out));
    assert_eq!(wrong_code, 3, "{wrong_out}{wrong_err}");
    assert!(wrong_err.contains("key was refused"), "{wrong_err}");
    assert!(!wrong_out.contains(wrong) && !wrong_err.contains(wrong));
}

// ---------------------------------------------------------------- a misbehaving server

use crate::client::{Reply, Scripted};

#[tokio::test]
async fn plain_http_to_names_that_only_look_local_is_refused_before_any_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(30));
    for base in [
        format!("http://api.localhost:{port}"),
        format!("http://localhost.:{port}"),
        "http://10.0.0.1".to_string(),
    ] {
        let r = check(&[p(&img), "--base-url", &base], Some(KEY)).await;
        assert_eq!(r.code, 2, "{base}: {}", r.err);
        assert!(
            r.err
                .contains("refusing to send the API key over plain http"),
            "{base}: {}",
            r.err
        );
        assert!(!r.err.contains(KEY) && !r.out.contains(KEY));
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection was made: {other:?}"),
    }
}

#[tokio::test]
async fn plain_http_to_localhost_reaches_loopback() {
    let server = Scripted::start(vec![Reply::json(
        200,
        serde_json::json!({"liveness": {"status": "Approved", "score": 91, "warnings": []}}),
    )])
    .await;
    let port = server.base_url.rsplit_once(':').unwrap().1;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(31));
    let base = format!("http://localhost:{port}");
    let r = check(&[p(&img), "--base-url", &base], Some(KEY)).await;
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_huge_retry_after_is_capped_with_a_warning() {
    let server = Scripted::start(vec![
        Reply::json(429, serde_json::json!({"detail": "slow down"}))
            .with_header("retry-after", "999999999"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(32));
    let r = check(
        &[
            p(&img),
            "--base-url",
            &server.base_url,
            "--max-retries",
            "0",
        ],
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 5, "{}", r.err);
    assert!(
        r.err.contains(
            "warning: the API asked to wait 999999999 s after a 429 (Retry-After or \
             X-RateLimit-Reset); waiting 120 s instead"
        ),
        "{}",
        r.err
    );
}

#[tokio::test]
async fn key_files_that_are_not_regular_files_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(33));
    let r = check(&[p(&img), "--api-key-file", "/dev/zero"], None).await;
    assert_eq!(r.code, 2);
    assert!(
        r.err.contains("/dev/zero") && r.err.contains("not a regular file (character device)"),
        "{}",
        r.err
    );
    let r = check(&[p(&img), "--api-key-file", p(dir.path())], None).await;
    assert_eq!(r.code, 2);
    assert!(r.err.contains("(folder)"), "{}", r.err);

    let big = dir.path().join("big.key");
    std::fs::write(&big, "sk_not_a_key_line\n".repeat(500)).unwrap();
    let r = check(&[p(&img), "--api-key-file", p(&big)], None).await;
    assert_eq!(r.code, 2);
    assert!(
        r.err.contains("big.key") && r.err.contains("larger than 4096 bytes"),
        "{}",
        r.err
    );
    assert!(!r.err.contains("sk_not_a_key_line"), "{}", r.err);
}

#[test]
fn a_fifo_key_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(34));
    let fifo = dir.path().join("key.fifo");
    let c = std::ffi::CString::new(p(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // The binary, so that a hang is caught by the deadline below instead of hanging the tests.
    let mut child = Process::new(common::bin())
        .args(["check", p(&img), "--api-key-file", p(&fifo)])
        .env_remove("DIDIT_API_KEY")
        .env_remove("DIDIT_BASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check hung on a FIFO key file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("key.fifo") && err.contains("(FIFO)"), "{err}");
}

#[tokio::test]
async fn a_200_without_a_decision_exits_5_and_json_still_shows_the_answer() {
    let body = serde_json::json!({"request_id": "r", "liveness": {"status": "Pending"}});
    let server = Scripted::start(vec![
        Reply::json(200, body.clone()),
        Reply::json(200, body.clone()),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(35));
    let r = check(&[p(&img), "--base-url", &server.base_url], Some(KEY)).await;
    assert_eq!(r.code, 5, "{}{}", r.out, r.err);
    assert!(
        r.err.contains("without a usable result")
            && r.err
                .contains("\"Pending\" is neither Approved nor Declined"),
        "{}",
        r.err
    );
    assert_eq!(server.count(), 1, "not retried");
    let r = check(
        &[p(&img), "--base-url", &server.base_url, "--json"],
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 5);
    let shown: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(shown, body);
}

#[tokio::test]
async fn a_key_echoed_by_the_server_never_reaches_the_output() {
    let echo = r#"{"request_id": "r", "liveness": {"status": "Approved", "score": 92, "warnings": []},
        "vendor_data": "{KEY}", "metadata": {"seen": "{KEY}"}, "extra": "{KEY}"}"#;
    let server = Scripted::start(vec![
        Reply::Echo {
            status: 200,
            body: echo.to_string(),
        },
        Reply::Echo {
            status: 200,
            body: echo.to_string(),
        },
        Reply::Echo {
            status: 400,
            body: r#"{"error": "bad image, key {KEY}"}"#.to_string(),
        },
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(36));
    for extra in [&["--json"][..], &[], &[]] {
        let mut list = vec![p(&img), "--base-url", server.base_url.as_str()];
        list.extend_from_slice(extra);
        let r = check(&list, Some(KEY)).await;
        assert!(
            !r.out.contains(KEY) && !r.err.contains(KEY),
            "{}{}",
            r.out,
            r.err
        );
        assert!(
            r.out.contains("[REDACTED]") || r.err.contains("[REDACTED]"),
            "{}{}",
            r.out,
            r.err
        );
    }
    assert_eq!(server.count(), 3);
}

// ---------------------------------------------------------------- errors as values

/// Arguments, key, the expected variant, its exit code, and what its message must say.
type ErrorCase<'a> = (
    Vec<&'a str>,
    Option<&'a str>,
    fn(&CheckError) -> bool,
    Exit,
    &'a [&'a str],
);

#[tokio::test]
async fn each_failure_is_returned_as_its_error_with_its_exit_code() {
    use liveness_batch::didit::FatalKind;
    let server = emu(EmulatorConfig::new(KEY)).await;
    let mut broke = EmulatorConfig::new(KEY);
    broke.credits = Some(0);
    let broke = emu(broke).await;
    let mut failing = EmulatorConfig::new(KEY);
    failing.faults.p503 = 1.0;
    let failing = emu(failing).await;
    let limited = Scripted::start(vec![
        Reply::json(429, serde_json::json!({"detail": "slow down"}))
            .with_header("retry-after", "0"),
    ])
    .await;
    let pending = Scripted::start(vec![Reply::json(
        200,
        serde_json::json!({"request_id": "r", "liveness": {"status": "Pending"}}),
    )])
    .await;

    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(40));
    let img = p(&img).to_string();
    let mut broken = vec![0xFF, 0xD8, 0xFF, 0xE0];
    broken.extend_from_slice(&[0x42; 4000]);
    let broken = common::write(dir.path(), "broken.jpg", &broken);
    let missing = dir.path().join("missing.jpg");
    let (base, broke_base, failing_base) =
        (server.base_url(), broke.base_url(), failing.base_url());

    let cases: Vec<ErrorCase> = vec![
        (
            vec![p(&missing), "--base-url", &base],
            Some(KEY),
            |e| matches!(e, CheckError::BadFile(_)),
            Exit::Usage,
            &["missing.jpg", "not found", "; nothing was sent"],
        ),
        (
            vec![&img, "--base-url", "http://verification.didit.me"],
            Some(KEY),
            |e| matches!(e, CheckError::Client(_)),
            Exit::Usage,
            &["refusing to send the API key over plain http to verification.didit.me"],
        ),
        (
            vec![p(&broken), "--base-url", &base],
            Some(KEY),
            |e| matches!(e, CheckError::Rejected(_)),
            Exit::Usage,
            &["Invalid user image format", "; nothing was billed"],
        ),
        (
            vec![&img, "--base-url", &base],
            Some("wrong_key_for_the_table"),
            |e| {
                matches!(
                    e,
                    CheckError::Fatal {
                        kind: FatalKind::Permission | FatalKind::InvalidKey,
                        ..
                    }
                )
            },
            Exit::Auth,
            &["key was refused", "; the API said: "],
        ),
        (
            vec![&img, "--base-url", &broke_base],
            Some(KEY),
            |e| {
                matches!(
                    e,
                    CheckError::Fatal {
                        kind: FatalKind::OutOfCredits,
                        ..
                    }
                )
            },
            Exit::Credits,
            &["out of credits (403)", "top up", "; the API said: "],
        ),
        (
            vec![&img, "--base-url", &limited.base_url, "--max-retries", "0"],
            Some(KEY),
            |e| matches!(e, CheckError::RateLimited { .. }),
            Exit::ApiFailed,
            &["after 1 attempt:", "rate limit is used up", "--max-retries"],
        ),
        (
            vec![&img, "--base-url", &failing_base, "--max-retries", "1"],
            Some(KEY),
            |e| matches!(e, CheckError::ApiFailed { .. }),
            Exit::ApiFailed,
            &["the API kept failing (2 attempts)", "503"],
        ),
        (
            vec![&img, "--base-url", &pending.base_url],
            Some(KEY),
            |e| matches!(e, CheckError::BadAnswer(_)),
            Exit::ApiFailed,
            &[
                "without a usable result",
                "\"Pending\" is neither Approved nor Declined",
            ],
        ),
    ];
    for (list, key, is, exit, wants) in cases {
        let (e, out) = check_error(&list, key).await;
        assert!(is(&e), "{list:?}: {e:?}");
        assert_eq!(e.exit_code(), exit, "{list:?}: {e}");
        let msg = e.to_string();
        for want in wants {
            assert!(msg.contains(want), "{list:?}: missing {want:?} in {msg}");
        }
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(out.is_empty(), "{list:?}: {out}");
    }
    assert_eq!(server.stats().credits_used, 0, "only refusals reached it");
    for s in [server, broke, failing] {
        s.shutdown().await;
    }
}

/// A writer that refuses every write, like a closed pipe.
struct Closed;

impl std::io::Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stdout is closed",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unwritable_output_is_an_output_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::write(dir.path(), "a.jpg", &common::jpeg(41));
    let cfg = CheckConfig::from_args(args(&[p(&img), "--emulator"]), None).unwrap();
    let mut err = Vec::new();
    let e = run_with(cfg, &mut Closed, &mut err).await.unwrap_err();
    assert!(matches!(e, CheckError::Output(_)), "{e:?}");
    assert_eq!(e.exit_code(), Exit::Io);
    assert_eq!(e.to_string(), "cannot write the output: stdout is closed");
}

#[tokio::test]
async fn settings_are_validated_before_the_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jpg");
    for (extra, want) in [
        (
            &["--metadata", "{oops"][..],
            "--metadata: metadata is not valid JSON",
        ),
        (
            &["--metadata", "7"][..],
            "--metadata: metadata must be a JSON object",
        ),
        (
            &["--max-retries", "21"][..],
            "--max-retries must be at most 20, got 21",
        ),
        (
            &["--threshold", "100.5"][..],
            "--threshold must be a number from 0 to 100",
        ),
    ] {
        let mut list = vec![p(&missing), "--emulator"];
        list.extend_from_slice(extra);
        match check_result(&list, None).await {
            (Err(e @ liveness_batch::Error::Config(_)), out, err) => {
                assert_eq!(e.exit_code(), Exit::Usage);
                assert!(e.to_string().starts_with(want), "{extra:?}: {e}");
                assert!(out.is_empty() && err.is_empty());
            }
            other => panic!("{extra:?}: {other:?}"),
        }
    }
    let cfg = CheckConfig::from_args(
        args(&[p(&missing), "--max-retries", "20"]),
        Some(KEY.into()),
    )
    .unwrap();
    assert_eq!(cfg.retry.max_retries, 20);
}

#[test]
fn binary_prints_each_error_once_with_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::write(dir.path(), "notes.jpg", b"hello\n");
    let (code, out, err) = run_bin(&["check", p(&text), "--emulator"], None);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("liveness-batch: ") && lines[0].ends_with("; nothing was sent"),
        "{err}"
    );
    let (code, _, err) = run_bin(
        &["check", p(&text), "--emulator", "--max-retries", "99"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim_end(),
        "liveness-batch: --max-retries must be at most 20, got 99"
    );
}
