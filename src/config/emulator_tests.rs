use std::time::Duration;

use clap::Parser;

use super::*;
use crate::emulator::EmulatorError;

fn emulator_config(args: crate::cli::EmulatorArgs) -> Result<EmulatorConfig, ConfigError> {
    EmulatorCommand::from_args(args).map(|c| c.config)
}

fn args(extra: &[&str]) -> crate::cli::EmulatorArgs {
    let mut argv = vec!["liveness-batch", "emulator", "--api-key", "k"];
    argv.extend_from_slice(extra);
    match crate::cli::Cli::try_parse_from(argv).unwrap().command {
        crate::cli::Command::Emulator(a) => a,
        _ => unreachable!(),
    }
}

#[test]
fn from_args_defaults() {
    let c = emulator_config(args(&[])).unwrap();
    assert_eq!(c.rate_limit, Some((300, Duration::from_secs(60))));
    assert_eq!(c.credits, None);
    assert_eq!(c.faults, Faults::default());
    assert_eq!(c.stall, Duration::from_secs(600));
    assert_eq!(c.spurious_retry_after, 1, "Retry-After: 1 as before");
    assert!(
        !format!("{c:?}").contains("\"k\""),
        "Debug must not show the key"
    );
}

#[test]
fn from_args_options() {
    let c = emulator_config(args(&[
        "--rate-limit",
        "10/2s",
        "--credits",
        "5",
        "--fault-500",
        "0.25",
        "--fault-reset",
        "0.5",
        "--latency-ms",
        "20",
        "--seed",
        "9",
    ]))
    .unwrap();
    assert_eq!(c.rate_limit, Some((10, Duration::from_secs(2))));
    assert_eq!(c.credits, Some(5));
    assert_eq!(c.faults.p500, 0.25);
    assert_eq!(c.faults.reset, 0.5);
    assert_eq!(c.latency, Duration::from_millis(20));
    assert_eq!(c.seed, 9);
    assert_eq!(c.spurious_retry_after, 1);
    let c = emulator_config(args(&["--fault-429-retry-after", "0"])).unwrap();
    assert_eq!(c.spurious_retry_after, 0);
    let c = emulator_config(args(&["--fault-429-retry-after", "30"])).unwrap();
    assert_eq!(c.spurious_retry_after, 30);
    let off = emulator_config(args(&["--rate-limit", "0/60s"])).unwrap();
    assert_eq!(off.rate_limit, None);
}

#[test]
fn from_args_refuses_bad_options() {
    let err = emulator_config(args(&["--rate-limit", "lots"])).unwrap_err();
    assert!(err.to_string().contains("expected N/Ws"), "{err}");
    let err = emulator_config(args(&["--fault-502", "1.5"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--fault-502 must be a probability between 0 and 1, got 1.5"
    );
    let err = emulator_config(args(&["--fault-stall=-0.1"])).unwrap_err();
    assert!(err.to_string().contains("--fault-stall"), "{err}");
    let err = emulator_config(args(&["--fault-500", "0.7", "--fault-503", "0.7"])).unwrap_err();
    assert!(err.to_string().contains("add up to 1.4"), "{err}");
    let err = emulator_config(args(&["--fault-429-retry-after", "86401"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--fault-429-retry-after must be at most 86400 seconds, got 86401"
    );
    let negative = [
        "liveness-batch",
        "emulator",
        "--api-key",
        "k",
        "--fault-429-retry-after=-1",
    ];
    assert!(crate::cli::Cli::try_parse_from(negative).is_err());
    let mut a = args(&[]);
    a.api_key = "  ".into();
    assert!(matches!(
        emulator_config(a).unwrap_err(),
        ConfigError::Emulator(EmulatorError::EmptyApiKey)
    ));
}
