//! The Kubernetes manifests and the AWS Batch job definition held to their APIs' schemas and
//! to the README's "Exit codes and retries" table (`deploy/validate`), and a broken copy of
//! each failing with a message that names the fault.

use std::path::Path;
use std::time::Duration;

use super::{Output, can_run, output, repo, say};

/// Runs `deploy/validate` with `args`; `None` (skipped, or a failure under CI) when its Python
/// environment cannot be made.
async fn validate(args: &[&Path]) -> Option<Output> {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(repo().join("deploy/validate"));
    for pair in args.chunks(2) {
        cmd.arg(pair[0]).arg(pair[1]);
    }
    let out = output(&mut cmd, Duration::from_secs(600)).await;
    let unavailable = (out.code == Some(77)).then(|| {
        format!(
            "deploy/validate could not install kubernetes-validate from PyPI: {}",
            out.stderr
        )
    });
    can_run("manifests", unavailable).then_some(out)
}

/// A copy of `deploy/<what>` in `dir`, with `from` replaced by `to` in `file`.
fn broken_copy(dir: &Path, what: &str, file: &str, from: &str, to: &str) -> std::path::PathBuf {
    let src = repo().join("deploy").join(what);
    let dst = dir.join(what);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    let path = dst.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?} to break");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    dst
}

#[tokio::test]
async fn the_deploy_recipes_hold_to_their_schemas_and_the_exit_code_table() {
    let Some(out) = validate(&[]).await else {
        return;
    };
    assert_eq!(out.code, Some(0), "{}", out.all());
    for expected in [
        "kubernetes-validate --strict -k 1.29",
        "kubernetes-validate --strict -k 1.37",
        "the pod failure policy stops the Job on",
        "evaluateOnExit stops on",
        "valid against register-job-definition.schema.json",
    ] {
        assert!(out.stdout.contains(expected), "{expected}: {}", out.all());
    }
    say(&format!(
        "engines::manifests: {}",
        out.stdout.lines().last().unwrap_or_default()
    ));
}

/// Each deliberate fault makes the check fail, naming it.
#[tokio::test]
async fn a_broken_recipe_fails_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, &str, &[&str]); 4] = [
        (
            "kubernetes",
            "indexed-job.yaml",
            "\n            status: \"True\"",
            "",
            &[
                "kubernetes-validate --strict -k 1.29",
                "onPodConditions.0: 'status' is a required property",
            ],
        ),
        (
            "kubernetes",
            "indexed-job.yaml",
            "/results/shard-$(SHARD)",
            "/results/shard-$(SHARD_INDEX)",
            &["refer to $(SHARD_INDEX), which is not among its env entries (SHARD)"],
        ),
        (
            "kubernetes",
            "indexed-job.yaml",
            "values: [2, 3, 4, 7, 8, 70]",
            "values: [2, 3, 4, 7, 70]",
            &[
                "the pod failure policy stops the Job on [2, 3, 4, 7, 70]",
                "missing [8]",
            ],
        ),
        (
            "aws-batch",
            "job-definition.json",
            "\"onExitCode\": \"8\"",
            "\"onExitCode\": \"9\"",
            &["evaluateOnExit stops on [2, 3, 4, 7, 9, 70]"],
        ),
    ];
    for (i, (what, file, from, to, messages)) in cases.into_iter().enumerate() {
        let dir = broken_copy(&tmp.path().join(i.to_string()), what, file, from, to);
        let flag = Path::new(if what == "kubernetes" {
            "--kubernetes"
        } else {
            "--aws-batch"
        });
        let Some(out) = validate(&[flag, &dir]).await else {
            return;
        };
        assert_eq!(out.code, Some(1), "{file} with {to:?}: {}", out.all());
        for m in messages {
            assert!(
                out.stderr.contains("FAILED: ") && out.stderr.contains(m),
                "{file} with {to:?} must fail saying {m:?}: {}",
                out.all()
            );
        }
    }
}
