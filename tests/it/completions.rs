//! Integration tests: the shell completions and the manual pages generated from the command
//! line, printed by the binary on stdout.

use std::process::{Command as Process, Output};

use crate::common;

const COMMANDS: [&str; 6] = ["scan", "check", "report", "emulator", "completions", "man"];

fn run(args: &[&str]) -> Output {
    Process::new(common::bin())
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The stdout of a run that must succeed with nothing on stderr.
fn stdout(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn every_shell_gets_a_completion_script_naming_every_command_and_flag() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        for name in COMMANDS
            .iter()
            .chain(&["max-requests", "rate-limit", "baseline"])
        {
            assert!(script.contains(name), "{shell}: {name} missing");
        }
    }
    let unknown = run(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}

#[test]
fn the_manual_page_lists_the_commands_and_each_command_has_its_own() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH liveness-batch 1"), "{page}");
    for name in COMMANDS {
        assert!(
            page.contains(&format!("liveness\\-batch\\-{name}(1)")),
            "{name}: {page}"
        );
    }
    for name in COMMANDS {
        let page = stdout(&["man", name]);
        assert!(
            page.contains(&format!(".TH liveness-batch-{name} 1")),
            "{page}"
        );
        assert!(page.contains(&format!("liveness\\-batch {name}")), "{page}");
    }
    let scan = stdout(&["man", "scan"]);
    for part in [
        "\\-\\-max\\-requests",
        "[default: 240/min]",
        "Exit codes: 0 every image",
    ] {
        assert!(scan.contains(part), "{part} missing from the scan page");
    }
    let unknown = run(&["man", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not a command; one of: scan"));
}
