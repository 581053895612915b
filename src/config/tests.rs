use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn parse(extra: &[&str]) -> Result<ScanConfig, ConfigError> {
    let mut argv = vec!["photos"];
    argv.extend_from_slice(extra);
    scan_config(&argv)
}

#[test]
fn defaults_protect_the_user() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.rate, Rate::per_minute(240));
    assert!(!c.params.save_api_request);
    assert!(c.dedupe && c.retry_unknown && !c.dry_run);
    assert_eq!(c.concurrency, 8);
    assert_eq!(c.retry.max_retries, 4);
    assert_eq!(c.out, PathBuf::from("liveness-results"));
}

#[test]
fn bad_values_get_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--rate", "fast"], "invalid rate"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--concurrency", "1000"], "--concurrency"),
        (&["--max-retries", "99"], "--max-retries"),
        (&["--timeout", "0"], "--timeout"),
        (&["--threshold", "101"], "--threshold"),
        (&["--threshold", "-1"], "--threshold"),
        (&["--price-per-call", "-0.1"], "--price-per-call"),
        (&["--max-requests", "0"], "--max-requests"),
    ];
    for (args, needle) in cases {
        let e = parse(args).unwrap_err().to_string();
        assert!(e.contains(needle), "{args:?}: {e}");
    }
}

#[test]
fn operator_and_purpose_are_checked_text() {
    let c = scan_config(&["photos", "--operator", " Ana Ops ", "--purpose", "KYC-42"]).unwrap();
    assert_eq!(c.operator, "Ana Ops");
    assert_eq!(c.purpose.as_deref(), Some("KYC-42"));
    let c = scan_config(&["photos"]).unwrap();
    assert!(c.operator.contains('@'), "{}", c.operator);
    assert_eq!(c.purpose, None);
    let long = "x".repeat(MAX_LABEL_CHARS + 1);
    for (flag, bad) in [
        ("--operator", "  "),
        ("--purpose", "line\nbreak"),
        ("--purpose", long.as_str()),
    ] {
        let e = scan_config(&["photos", flag, bad]).unwrap_err().to_string();
        assert!(e.contains(flag) && e.contains("control characters"), "{e}");
    }
}

#[test]
fn key_is_required_unless_emulator_or_dry_run() {
    let Command::Scan(args) = Cli::try_parse_from(["liveness-batch", "scan", "x"])
        .unwrap()
        .command
    else {
        unreachable!()
    };
    let e = ScanConfig::from_args(*args, None).unwrap_err().to_string();
    assert!(
        e.contains("DIDIT_API_KEY") && e.contains("--api-key-file"),
        "{e}"
    );
    for flag in ["--emulator", "--dry-run"] {
        let Command::Scan(args) = Cli::try_parse_from(["liveness-batch", "scan", "x", flag])
            .unwrap()
            .command
        else {
            unreachable!()
        };
        assert!(ScanConfig::from_args(*args, None).is_ok(), "{flag}");
    }
}

#[test]
fn save_api_request_must_be_explicit_true() {
    assert!(
        parse(&["--save-api-request", "true"])
            .unwrap()
            .params
            .save_api_request
    );
    assert!(
        !parse(&["--save-api-request", "false"])
            .unwrap()
            .params
            .save_api_request
    );
}

#[test]
fn out_must_be_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, "x").unwrap();
    let e = parse(&["--out", f.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");
}
