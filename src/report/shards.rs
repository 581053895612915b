//! Proving that merged shard folders cover one input exactly once: the same N, split,
//! settings and input in every shard's journal, every K from 1 to N present once, no key in
//! two shards; and identical images that were screened in more than one shard.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::journal::Settings;
use crate::shard::ShardHeader;

/// What one merged folder's journal says about its shard.
#[derive(Debug, Clone)]
pub struct ShardDir {
    pub dir: PathBuf,
    /// The latest run header's shard; `None` when the journal was not written by a shard.
    pub header: Option<ShardHeader>,
    /// True when the journal's run headers name different shards.
    pub changed: bool,
    /// The latest run header's settings.
    pub settings: Option<Settings>,
}

/// The coverage of a merge of shards, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Coverage {
    /// N.
    pub total: u32,
    pub algorithm: String,
    pub input_fingerprint: String,
    /// The K of each merged folder, in order.
    pub present: Vec<u32>,
    /// The K from 1 to N no folder holds.
    pub missing: Vec<u32>,
    /// Item keys recorded by more than one shard.
    pub keys_in_several_shards: u64,
    /// Identical images (same SHA-256) screened with a result in more than one shard: every
    /// copy after the first, which one unsharded run would have answered from the first.
    pub cross_shard_duplicates: u64,
    /// Credits those copies cost that one run would have saved.
    pub credits_a_single_run_would_have_saved: u64,
    /// What keeps the coverage from being proven (empty when verified).
    pub problems: Vec<String>,
    /// Every K present once, none missing, no key in two shards.
    pub verified: bool,
}

impl Coverage {
    /// Add the keys found in several shards and the cross-shard duplicates, and conclude.
    pub fn conclude(&mut self, keys_in_several: u64, cross_duplicates: u64) {
        self.keys_in_several_shards = keys_in_several;
        self.cross_shard_duplicates = cross_duplicates;
        self.credits_a_single_run_would_have_saved = cross_duplicates;
        if keys_in_several > 0 {
            self.problems.push(format!(
                "{keys_in_several} item key(s) were recorded by more than one shard: the shards \
                 did not split one input (each item's latest record is its result, and every \
                 billed record is counted)"
            ));
        }
        self.verified = self.problems.is_empty();
    }

    /// One line for the summary's facts: "4 of 4 shards, every item in exactly one (verified)".
    pub fn line(&self) -> String {
        let head = format!(
            "{} of {} shards merged (split {})",
            self.present.len(),
            self.total,
            self.algorithm
        );
        let dups = if self.cross_shard_duplicates > 0 {
            format!(
                "; {} identical image(s) were screened in more than one shard: {} credit(s) one \
                 unsharded run would have saved",
                self.cross_shard_duplicates, self.credits_a_single_run_would_have_saved
            )
        } else {
            String::new()
        };
        if self.verified {
            format!("{head}: every shard present once, no item in two shards (verified){dups}")
        } else {
            format!("{head}: NOT VERIFIED: {}{dups}", self.problems.join("; "))
        }
    }
}

/// What the shards' headers allow.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No folder was written by a shard: a plain merge of journals.
    NotSharded,
    /// The folders are not the shards of one run: nothing is merged.
    Refused(Vec<String>),
    /// The shards of one run; `Coverage::problems` names what is missing.
    Checked(Coverage),
}

fn shown(d: &ShardDir) -> String {
    d.dir.display().to_string()
}

/// Why shard folder `d` (header `h`) cannot be merged with the first one found, beyond its N.
fn mismatches(
    d: &ShardDir,
    h: &ShardHeader,
    first_dir: &ShardDir,
    first: &ShardHeader,
) -> Vec<String> {
    let mut refused = Vec::new();
    if d.changed {
        refused.push(format!(
            "{}'s journal was written by runs of different shards (or with and without \
             --shard)",
            shown(d)
        ));
    }
    if h.algorithm != first.algorithm {
        refused.push(format!(
            "{} split the input with {:?}, {} with {:?}",
            shown(d),
            h.algorithm,
            shown(first_dir),
            first.algorithm
        ));
    }
    if h.input_fingerprint != first.input_fingerprint {
        refused.push(format!(
            "{} screened another input than {} (input fingerprint {} vs {}): the sources or \
             the manifest's contents differ",
            shown(d),
            shown(first_dir),
            h.input_fingerprint,
            first.input_fingerprint
        ));
    }
    if let (Some(a), Some(b)) = (&d.settings, &first_dir.settings) {
        let diff = a.differences(b);
        if !diff.is_empty() {
            refused.push(format!(
                "{} was run with other settings than {}: {}",
                shown(d),
                shown(first_dir),
                diff.join("; ")
                    .replace("journal has", &format!("{} has", shown(first_dir)))
                    .replace("this run has", &format!("{} has", shown(d)))
            ));
        }
    }
    refused
}

/// The coverage's problem when shards are missing (`missing`: their numbers, of `total`).
fn missing_problem(missing: &[u32], total: u32) -> Option<String> {
    let which = match missing {
        [] => return None,
        [one] => format!("shard {one} of {total} is"),
        many => {
            let many: Vec<String> = many.iter().map(u32::to_string).collect();
            format!("shards {} of {total} are", many.join(", "))
        }
    };
    Some(format!(
        "{which} missing: {} of {total} shards merged, so the items of the missing shard(s) are \
         in no result",
        total as usize - missing.len(),
    ))
}

/// Check the folders' shard headers against each other.
pub fn verify(dirs: &[ShardDir]) -> Verdict {
    let Some(first) = dirs.iter().find_map(|d| d.header.as_ref().map(|h| (d, h))) else {
        return Verdict::NotSharded;
    };
    let (first_dir, first) = first;
    let mut refused = Vec::new();
    let mut by_k: Vec<Option<&ShardDir>> = vec![None; first.total as usize];
    for d in dirs {
        let Some(h) = &d.header else {
            refused.push(format!(
                "{} was not run with --shard (it holds a whole input, not shard K of {})",
                shown(d),
                first.total
            ));
            continue;
        };
        if h.total != first.total {
            refused.push(format!(
                "{} is shard {} of {}, but {} is of {} shards: every shard of one run has the \
                 same N",
                shown(d),
                h.index,
                h.total,
                shown(first_dir),
                first.total
            ));
            continue;
        }
        refused.extend(mismatches(d, h, first_dir, first));
        match by_k.get_mut(h.index as usize - 1) {
            Some(slot @ None) => *slot = Some(d),
            Some(Some(other)) => refused.push(format!(
                "{} and {} are both shard {} of {}: each shard may be merged once",
                shown(other),
                shown(d),
                h.index,
                h.total
            )),
            None => refused.push(format!(
                "{} claims shard {} of {}",
                shown(d),
                h.index,
                h.total
            )),
        }
    }
    if !refused.is_empty() {
        return Verdict::Refused(refused);
    }
    let missing: Vec<u32> = by_k
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| i as u32 + 1)
        .collect();
    let problems = missing_problem(&missing, first.total).into_iter().collect();
    Verdict::Checked(Coverage {
        total: first.total,
        algorithm: first.algorithm.clone(),
        input_fingerprint: first.input_fingerprint.clone(),
        present: dirs
            .iter()
            .filter_map(|d| d.header.as_ref().map(|h| h.index))
            .collect(),
        missing,
        problems,
        ..Coverage::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::fixtures::settings;

    fn dir(name: &str, k: u32, n: u32) -> ShardDir {
        ShardDir {
            dir: PathBuf::from(name),
            header: Some(ShardHeader {
                index: k,
                total: n,
                algorithm: crate::shard::ALGORITHM.into(),
                input_fingerprint: "sha256:aa".into(),
                key_rate: "240/min".into(),
                key_max_requests: None,
            }),
            changed: false,
            settings: Some(settings()),
        }
    }

    fn checked(v: Verdict) -> Coverage {
        match v {
            Verdict::Checked(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn refused(v: Verdict) -> String {
        match v {
            Verdict::Refused(p) => p.join("\n"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_shard_once_is_verified_in_any_order() {
        let mut c = checked(verify(&[dir("s3", 3, 3), dir("s1", 1, 3), dir("s2", 2, 3)]));
        c.conclude(0, 2);
        assert!(c.verified, "{c:?}");
        assert_eq!(c.present, [3, 1, 2]);
        assert_eq!(c.credits_a_single_run_would_have_saved, 2);
        assert!(c.line().contains("3 of 3 shards") && c.line().contains("(verified)"));
        assert!(c.line().contains("2 identical image(s)"), "{}", c.line());
    }

    #[test]
    fn a_missing_shard_is_named() {
        let mut c = checked(verify(&[dir("s1", 1, 4), dir("s2", 2, 4), dir("s4", 4, 4)]));
        c.conclude(0, 0);
        assert!(!c.verified);
        assert_eq!(c.missing, [3]);
        assert!(c.line().contains("shard 3 of 4 is missing"), "{}", c.line());
        let mut c = checked(verify(&[dir("s2", 2, 4)]));
        c.conclude(0, 0);
        assert!(
            c.problems[0].starts_with("shards 1, 3, 4 of 4 are missing"),
            "{c:?}"
        );
    }

    #[test]
    fn keys_in_two_shards_break_the_proof() {
        let mut c = checked(verify(&[dir("s1", 1, 2), dir("s2", 2, 2)]));
        c.conclude(3, 0);
        assert!(!c.verified);
        assert!(
            c.line()
                .contains("3 item key(s) were recorded by more than one shard")
        );
    }

    #[test]
    fn mismatched_shards_are_refused_with_the_reason() {
        let mut other = dir("b", 2, 2);
        other.settings.as_mut().unwrap().threshold = Some(50.0);
        let e = refused(verify(&[dir("a", 1, 2), other]));
        assert!(
            e.contains("b was run with other settings than a") && e.contains("threshold"),
            "{e}"
        );

        let e = refused(verify(&[dir("a", 1, 2), dir("b", 1, 2)]));
        assert!(e.contains("a and b are both shard 1 of 2"), "{e}");

        let e = refused(verify(&[dir("a", 1, 2), dir("b", 2, 3)]));
        assert!(e.contains("same N"), "{e}");

        let mut other = dir("b", 2, 2);
        other.header.as_mut().unwrap().input_fingerprint = "sha256:bb".into();
        let e = refused(verify(&[dir("a", 1, 2), other]));
        assert!(e.contains("another input"), "{e}");

        let mut other = dir("b", 2, 2);
        other.header.as_mut().unwrap().algorithm = "crc32".into();
        assert!(refused(verify(&[dir("a", 1, 2), other])).contains("crc32"));

        let mut whole = dir("b", 2, 2);
        whole.header = None;
        let e = refused(verify(&[dir("a", 1, 2), whole]));
        assert!(e.contains("b was not run with --shard"), "{e}");

        let mut mixed = dir("b", 2, 2);
        mixed.changed = true;
        assert!(refused(verify(&[dir("a", 1, 2), mixed])).contains("different shards"));
    }

    #[test]
    fn the_index_reads_a_journals_shard_and_notices_another_split() {
        use crate::journal::Line;
        use crate::journal::fixtures::{index_of, run_info};
        let header = |k: u32, fingerprint: &str, resumed: bool| {
            let mut r = run_info(resumed, false);
            r.shard = dir("x", k, 2).header.map(|mut h| {
                h.input_fingerprint = fingerprint.into();
                h
            });
            Line::Run(r)
        };
        // Resumed with a grown input: the same shard, the latest fingerprint.
        let index = index_of(&[header(1, "sha256:aa", false), header(1, "sha256:bb", true)]);
        assert!(!index.shard_changed);
        assert_eq!(index.shard.unwrap().input_fingerprint, "sha256:bb");
        // Resumed as another shard (with --force or by hand): the split changed.
        let index = index_of(&[header(1, "sha256:aa", false), header(2, "sha256:aa", true)]);
        assert!(index.shard_changed);
        let index = index_of(&[Line::Run(run_info(false, false))]);
        assert_eq!((index.shard, index.shard_changed), (None, false));
    }

    #[test]
    fn journals_without_shards_merge_as_before() {
        let mut a = dir("a", 1, 2);
        a.header = None;
        assert_eq!(verify(&[a.clone(), a]), Verdict::NotSharded);
    }
}
