//! What `report` checks before it rebuilds anything: the whole journal (chain, grammar and,
//! with a public key, every seal), and with a public key, that seals close each journal and
//! that each folder's SHA256SUMS is signed by the key and matches the files it lists.

use std::path::{Path, PathBuf};

use super::summary::audit::SignatureSummary;
use super::{ReportError, sums};
use crate::journal::{self, JOURNAL_FILE, Problem, seal::Verifier};

/// What the checks found, to put in the summary.
#[derive(Debug, Default)]
pub struct Evidence {
    /// The first line of the journal that breaks its chain, grammar or a seal.
    pub problem: Option<Problem>,
    /// The seals and signatures (`None` for an unsigned journal checked without a key).
    pub signature: Option<SignatureSummary>,
    /// What the caches and summary.json beside the journal recorded of it and it no longer
    /// holds.
    pub disagreements: Vec<String>,
}

/// Check the journal at `journal` and, with `key`, the signatures of the folders `dirs` (the
/// folder itself, or the shards a merge reads).
pub fn check(
    journal: &Path,
    dirs: &[PathBuf],
    key: Option<&Verifier>,
) -> Result<Evidence, ReportError> {
    let verified = journal::verify(journal, key, &std::env::temp_dir())?;
    let signature = match key {
        None => (verified.seals > 0).then(|| SignatureSummary {
            key_id: verified.seal_key.clone(),
            seals: verified.seals,
            checked: false,
            problems: Vec::new(),
        }),
        Some(key) => {
            let mut problems = Vec::new();
            if let Some(p) = &verified.problem {
                problems.push(format!("the journal does not verify at line {}", p.line));
            } else if verified.seals == 0 {
                problems.push(
                    "the journal carries no seal: it was written without a signing key, or its \
                     seals were removed"
                        .into(),
                );
            } else if verified.unsealed_lines > 0 {
                problems.push(format!(
                    "the journal's last {} line(s) come after its last seal: a run that did \
                     not finish (resume it with the same --sign-key to seal them), or lines \
                     added afterwards",
                    verified.unsealed_lines
                ));
            }
            for dir in dirs {
                problems.extend(signed_sums(dir, key));
            }
            Some(SignatureSummary {
                key_id: verified.seal_key.clone().or_else(|| Some(key.key_id())),
                seals: verified.seals,
                checked: true,
                problems,
            })
        }
    };
    // Files built from the journal that recorded more of it than it holds now (the folder
    // rebuilt in place only: a merge writes a new journal).
    let mut disagreements = Vec::new();
    if let [dir] = dirs
        && dir.join(JOURNAL_FILE) == journal
    {
        let checks = [
            journal::check_index(journal, None),
            super::state::check(dir, None),
            super::state::check_outputs(dir),
        ];
        for check in checks {
            if let journal::CacheCheck::Foreign(why) = check {
                disagreements.push(why);
            }
        }
    }
    Ok(Evidence {
        problem: verified.problem,
        signature,
        disagreements,
    })
}

/// `minisign -Vm SHA256SUMS` and `sha256sum -c SHA256SUMS` in `dir`: what fails.
fn signed_sums(dir: &Path, key: &Verifier) -> Vec<String> {
    let sums_path = dir.join(sums::SUMS_FILE);
    let text = match std::fs::read(&sums_path) {
        Ok(t) => t,
        Err(e) => return vec![format!("{} cannot be read: {e}", sums_path.display())],
    };
    let mut problems = Vec::new();
    if let Err(e) = key.check_file(&sums_path, &text) {
        problems.push(format!(
            "{} is not signed by key {}: {e}",
            sums_path.display(),
            key.key_id()
        ));
    }
    let mut journal_listed = false;
    for line in String::from_utf8_lossy(&text).lines() {
        let Some((sha, name)) = line.split_once("  ") else {
            problems.push(format!(
                "{} holds a line that is not a checksum",
                sums_path.display()
            ));
            continue;
        };
        journal_listed |= name == JOURNAL_FILE;
        if name.contains('/') || name.starts_with('.') {
            problems.push(format!(
                "{} lists a file outside the folder: {name}",
                sums_path.display()
            ));
            continue;
        }
        if crate::kit::hashing::file_sha256(&dir.join(name))
            .ok()
            .as_deref()
            != Some(sha)
        {
            problems.push(format!(
                "{name} in {} does not match SHA256SUMS (edited, replaced or removed since it \
                 was signed)",
                dir.display()
            ));
        }
    }
    if !journal_listed {
        problems.push(format!("{} does not list the journal", sums_path.display()));
    }
    problems
}
