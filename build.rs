//! Stamps the binary with the commit it was built from (`LIVENESS_BATCH_COMMIT`), so every run
//! header and report can name it. A value set in the environment at build time wins (for
//! builds outside a git checkout); otherwise `git` is asked, and "unknown" is used without it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIVENESS_BATCH_COMMIT");
    let commit = match std::env::var("LIVENESS_BATCH_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
                println!("cargo:rerun-if-changed={dir}/HEAD");
                println!("cargo:rerun-if-changed={dir}/logs/HEAD");
                println!("cargo:rerun-if-changed={dir}/index");
                // Edits not yet staged make the build "-dirty" too.
                println!("cargo:rerun-if-changed=src");
            }
            match git(&["rev-parse", "HEAD"]) {
                Some(head) => {
                    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                        .is_some_and(|s| !s.is_empty());
                    if dirty { format!("{head}-dirty") } else { head }
                }
                None => "unknown".to_string(),
            }
        }
    };
    println!("cargo:rustc-env=LIVENESS_BATCH_COMMIT={commit}");
}
