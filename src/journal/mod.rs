//! The append-only journal (`journal.jsonl`): the run's source of truth. This module owns the
//! line format; `read` streams lines (tolerating a torn last line), `index` builds the compact
//! resume indexes (`keys` keeps their per-key part on disk, `snapshot` saves them beside the
//! journal), `write` appends and syncs, `files` holds the out dir's lock and private files.
//!
//! The format is frozen and versioned: every run header carries `format` ([`JOURNAL_FORMAT`];
//! a header without it is of format 1, the first), every line ends with its `prev` chain hash,
//! and a journal of a format this build does not know is refused, never half-read.

mod files;
mod index;
mod keys;
mod read;
pub mod seal;
mod snapshot;
pub mod verify;
mod write;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::Record;

pub use files::{
    DirLock, create_private_dir, finish_file_hash, hash_prefix, open_private, out_dir_warning,
    write_private_atomic,
};
pub use index::{Index, Latest, Orphan, reusable_record, version_digest};
pub use keys::KeyState;
pub use read::{ChainBreak, ChainCheck, LinesAt, Reader, TornTail};
pub use seal::{Seal, Signer};
pub use snapshot::{
    CacheCheck, INDEX_FILE, IndexFeed, Loaded, check as check_index, discard as discard_index,
    load as load_index, path_for as index_path, refresh as refresh_index,
};
pub use verify::{Head, Problem, Verified, verify};
pub use write::{CHAIN_START, Seen, SyncJob, Tap, Writer};

pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const LOCK_FILE: &str = ".liveness-batch.lock";
/// The journal is synced to disk at least this often while records arrive, and at exit.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Settings that change what the API answers: a resumed run must use the same ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The check every item got when it is not passive liveness (`age`); none for passive
    /// liveness, as in the journals written before there was a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Age estimation's minimum age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<u32>,
    pub threshold: Option<f64>,
    pub rotate_image: bool,
    pub save_api_request: bool,
    /// Host of the API base URL (`verification.didit.me`, or `127.0.0.1:PORT` for an emulator).
    pub api_host: String,
    /// True when results came from the built-in emulator, not Didit.
    pub simulated: bool,
    /// `--include` patterns: which keys of folders and prefixes the run takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// `--exclude` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl Settings {
    /// Human-readable differences from `other` (the journal's), empty when compatible.
    /// The emulator's port changes every run, so for simulated runs only "simulated" counts.
    pub fn differences(&self, journal: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        if self.check != journal.check {
            let show = |c: &Option<String>| c.clone().unwrap_or_else(|| "liveness".into());
            out.push(format!(
                "check (--check): journal has {}, this run has {}",
                show(&journal.check),
                show(&self.check)
            ));
        }
        if self.min_age != journal.min_age {
            let show = |a: Option<u32>| a.map_or("none".to_string(), |a| a.to_string());
            out.push(format!(
                "minimum age (--min-age): journal has {}, this run has {}",
                show(journal.min_age),
                show(self.min_age)
            ));
        }
        let show = |t: Option<f64>| t.map_or("Didit's default (30)".to_string(), |t| t.to_string());
        // Another check's threshold is another threshold: the check's line says it all.
        if self.threshold != journal.threshold && self.check == journal.check {
            let which = match self.check.as_deref() {
                Some("face-match") => "face match threshold (--face-match-threshold)",
                _ => "threshold",
            };
            out.push(format!(
                "{which}: journal has {}, this run has {}",
                show(journal.threshold),
                show(self.threshold)
            ));
        }
        if self.rotate_image != journal.rotate_image {
            out.push(format!(
                "rotate_image: journal has {}, this run has {}",
                journal.rotate_image, self.rotate_image
            ));
        }
        if self.save_api_request != journal.save_api_request {
            out.push(format!(
                "save_api_request: journal has {}, this run has {}",
                journal.save_api_request, self.save_api_request
            ));
        }
        for (flag, this, theirs) in [
            ("--include", &self.include, &journal.include),
            ("--exclude", &self.exclude, &journal.exclude),
        ] {
            if this != theirs {
                let show = |v: &Vec<String>| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.join(" ")
                    }
                };
                out.push(format!(
                    "{flag} (which items the run takes): journal has {}, this run has {}",
                    show(theirs),
                    show(this)
                ));
            }
        }
        if self.simulated != journal.simulated {
            let what = |s: bool| {
                if s {
                    "the built-in emulator"
                } else {
                    "the API"
                }
            };
            out.push(format!(
                "results source: journal has {}, this run uses {}",
                what(journal.simulated),
                what(self.simulated)
            ));
        } else if !self.simulated && !same_api_host(&self.api_host, &journal.api_host) {
            out.push(format!(
                "API host: journal has {}, this run has {}",
                journal.api_host, self.api_host
            ));
        }
        out
    }
}

/// Hosts name the same API when equal, or when both are on loopback (a local emulator gets a
/// new port each time it starts).
fn same_api_host(a: &str, b: &str) -> bool {
    use crate::kit::loopback::host_is_loopback as is_loopback_host;
    a == b || (is_loopback_host(a) && is_loopback_host(b))
}

/// The journal format this build writes and reads (see the module's doc).
pub const JOURNAL_FORMAT: u32 = 1;

/// A run header's journal format: one this build knows (1 to [`JOURNAL_FORMAT`]) or the
/// header does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Format(pub u32);

impl Default for Format {
    fn default() -> Self {
        Format(JOURNAL_FORMAT)
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if (1..=JOURNAL_FORMAT).contains(&v) {
            return Ok(Format(v));
        }
        Err(serde::de::Error::custom(format!(
            "the journal is of format {v}, and this build of liveness-batch reads format 1 to \
             {JOURNAL_FORMAT} only: use the build that wrote it, or a newer one"
        )))
    }
}

/// The first line of a journal, and one more line each time a run resumes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The journal's format ([`JOURNAL_FORMAT`] when written; 1 when absent).
    #[serde(default)]
    pub format: Format,
    pub tool_version: String,
    pub started_at: String,
    pub settings: Settings,
    pub sources: Vec<String>,
    /// The configured pace, e.g. "240/min".
    pub rate: String,
    pub concurrency: usize,
    /// False for the run that created the journal.
    pub resumed: bool,
    #[serde(default)]
    pub dedupe: bool,
    #[serde(default)]
    pub max_requests: Option<u64>,
    /// With `--shard K/N`: which shard, the split, the input's fingerprint and the key's
    /// budget (`rate` and `max_requests` above are this shard's share). Absent when not sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardHeader>,
    /// Who ran this run, with what key, and why. Absent in journals written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Box<crate::audit::RunIdentity>>,
    /// Retries, backoff, timeout, assumed price and the other settings of cost and pace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Box<crate::audit::Tuning>>,
    /// The SHA-256 of each manifest given as a source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<crate::audit::ManifestHash>,
    /// The account balance read before the first call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<crate::audit::Balance>,
}

/// How a run ended, as written in the journal's end line (`outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    #[default]
    Completed,
    Stopped,
    Interrupted,
    Terminated,
    Failed,
    /// The run went through what it saw, but a source could not be read to its end (a bucket
    /// listing that stopped): the population is incomplete.
    Incomplete,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Stopped => "stopped",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Terminated => "terminated",
            RunOutcome::Failed => "failed",
            RunOutcome::Incomplete => "incomplete",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last line a run writes: what this run did (counts that are not per item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunEnd {
    pub finished_at: String,
    pub wall_secs: f64,
    pub outcome: RunOutcome,
    /// Why the run stopped early, in words, with what to do next.
    pub stop_reason: Option<String>,
    pub exit_code: i32,
    /// Items found in this run's sources (images and would-be images, not ignored files).
    pub inputs: u64,
    /// Non-image files skipped by the folder walk.
    pub ignored: u64,
    /// Items already done by an earlier run with the same content, skipped.
    pub skipped_done: u64,
    /// Of those, the items skipped without being read: their version (a file's size and
    /// modification time) was the one recorded.
    #[serde(default)]
    pub skipped_unread: u64,
    /// Items that reused the result of an identical image (credits saved).
    pub deduplicated: u64,
    /// Records written by this run.
    pub recorded: u64,
    /// Items left without a record because the run stopped before submitting them.
    pub not_processed: u64,
    /// HTTP requests sent by this run.
    pub requests: u64,
    /// Requests per minute over the time this run was sending.
    pub achieved_rate_per_min: Option<f64>,
    /// True when the run stopped before reading a manifest on standard input to its end, so
    /// `inputs` and `not_processed` cover only what was read.
    #[serde(default)]
    pub input_unread: bool,
    /// Waits a server asked for (`Retry-After`) that were longer than the cap and were cut.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_after_capped: u64,
    /// The account balance read after the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<crate::audit::Balance>,
    /// The source that could not be read to its end, when one could not (the run's population
    /// is then incomplete, whatever its outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<IncompleteSource>,
}

/// A source whose listing stopped before its end, as the end line records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteSource {
    /// The SOURCE argument.
    pub source: String,
    /// The last key listed (relative to the prefix), if any was.
    pub last_key: Option<String>,
    /// Why the listing stopped.
    pub reason: String,
}

impl IncompleteSource {
    /// The warning the outputs carry.
    pub fn warning(&self) -> String {
        let reached = match &self.last_key {
            Some(k) => format!("after the key {k:?}"),
            None => "before its first object".to_string(),
        };
        format!(
            "INCOMPLETE POPULATION: the listing of {} stopped {reached} ({}); objects after \
             that point were never seen, so these results do not cover the whole source. Rerun \
             the same command to continue",
            self.source, self.reason
        )
    }
}

/// Written (and synced) before an item's first upload: if the run dies before the item's
/// record is written, the next run knows the request may have been processed and billed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sending {
    pub key: String,
}

/// Written when a resumed run read an item again because its version changed (a file touched
/// or copied with new times) and found the same content it screened before: nothing is sent, and
/// the next resume trusts the new version without reading the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unchanged {
    pub key: String,
    pub version: String,
    pub sha256: String,
    /// Face match: the reference's SHA-256 (the pair's content is both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_sha256: Option<String>,
}

/// Written by a scan that read its whole input, before its end line, for each key whose latest
/// line was a record and that the sources no longer yield (the file deleted, renamed or
/// replaced by a link): the key's last record leaves the current results for `gone.csv`. A
/// later record or `unchanged` line of the key brings it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gone {
    pub key: String,
    /// When the run that found it missing started.
    pub since: String,
    /// That run's id, when its header has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Run(RunInfo),
    Item(Box<Record>),
    Sending(Sending),
    Unchanged(Unchanged),
    End(RunEnd),
    Gone(Gone),
    /// A signature of every line before it (written with `--sign-key`).
    Seal(Seal),
}

/// How every item line the journal writer writes begins.
const ITEM_PREFIX: &[u8] = br#"{"type":"item","#;
/// How every `sending` line the journal writer writes begins.
const SENDING_PREFIX: &[u8] = br#"{"type":"sending","#;

impl Line {
    /// Parse one journal line (without its line break). An item line as the writer writes it
    /// (`{"type":"item",` first) is parsed straight into its [`Record`], without the buffering
    /// serde needs for an internally tagged enum (about a fifth of the time of a large build);
    /// so is a `sending` line (one per upload) into its [`Sending`]. Any other line takes the
    /// generic parse.
    pub fn parse(raw: &[u8]) -> serde_json::Result<Line> {
        // The tag is a field the record does not know: skipped like any other.
        if raw.starts_with(ITEM_PREFIX) {
            return serde_json::from_slice::<Record>(raw).map(|r| Line::Item(Box::new(r)));
        }
        if raw.starts_with(SENDING_PREFIX) {
            return serde_json::from_slice::<Sending>(raw).map(Line::Sending);
        }
        serde_json::from_slice(raw)
    }

    /// The line's `type`, as the light readers see it.
    pub fn kind(&self) -> LineKind {
        match self {
            Line::Run(_) => LineKind::Run,
            Line::Item(_) => LineKind::Item,
            Line::Sending(_) => LineKind::Sending,
            Line::Unchanged(_) => LineKind::Unchanged,
            Line::End(_) => LineKind::End,
            Line::Gone(_) => LineKind::Gone,
            Line::Seal(_) => LineKind::Seal,
        }
    }
}

/// The kind of a journal line, as the light readers see it (same wire names as [`Line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Run,
    Item,
    Sending,
    Unchanged,
    End,
    Gone,
    Seal,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A local I/O failure: `op` names the operation ("write", "open", "sync", ...).
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the journal {path} is damaged at line {line}: {message}; repair or remove that line, \
         or rerun with --fresh to start a new journal (the old one is kept)"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{path} does not look like a liveness-batch journal (its first line is not a run header)"
    )]
    NotAJournal { path: PathBuf },
    #[error(
        "another liveness-batch run is using {dir} (lock file {lock}{holder}); wait for it to finish \
         or choose another --out"
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error(
        "this run's settings differ from the journal in {dir}:\n  {}\nRerun with the journal's \
         settings, add --force to resume anyway (results will mix settings), or --fresh to start a \
         new journal (the old one is kept)",
        differences.join("\n  ")
    )]
    SettingsChanged {
        dir: PathBuf,
        differences: Vec<String>,
    },
}

pub use crate::kit::digest::{
    content_digest, content_digest_of, item_content_digest, key_digest, pair_sha256,
};

impl JournalError {
    /// The local I/O failure `op` on `path`.
    pub fn io<'a>(
        op: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| JournalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this is a local I/O failure (its own exit code), not a damaged or foreign file.
    pub fn is_io(&self) -> bool {
        matches!(self, JournalError::Io { .. })
    }
}

/// Builders of run headers and records for the crate's unit tests (journal, report, scan).
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::Path;

    use super::*;
    use crate::record::{Class, Decision};

    pub fn settings() -> Settings {
        settings_of(false)
    }

    /// Didit's defaults against the real API, or the emulator's (`simulated`).
    pub fn settings_of(simulated: bool) -> Settings {
        Settings {
            threshold: None,
            rotate_image: false,
            save_api_request: false,
            api_host: "verification.didit.me".into(),
            simulated,
            ..Settings::default()
        }
    }

    /// A run header: the first run (`resumed` false) or a resumed one.
    pub fn run_info(resumed: bool, simulated: bool) -> RunInfo {
        RunInfo {
            tool_version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            settings: settings_of(simulated),
            sources: vec!["photos".into()],
            rate: "240/min".into(),
            concurrency: 8,
            resumed,
            dedupe: true,
            max_requests: None,
            ..Default::default()
        }
    }

    pub fn run_line() -> Line {
        Line::Run(run_info(false, false))
    }

    pub fn item(key: &str, sha: &str, class: Class) -> Line {
        Line::Item(Box::new(Record {
            key: key.into(),
            path: format!("{key}.jpg"),
            sha256: Some(sha.into()),
            class: Some(class),
            status: (class == Class::Result).then_some(Decision::Approved),
            ..Default::default()
        }))
    }

    pub const SHA_A: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
    pub const SHA_B: &str = "bb00000000000000000000000000000000000000000000000000000000000000";

    /// The index of a journal holding `lines`.
    pub fn index_of(lines: &[Line]) -> Index {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        write_lines(&p, lines);
        Index::build(&mut Reader::open(&p).unwrap()).unwrap()
    }

    pub fn write_lines(path: &Path, lines: &[Line]) {
        let mut w = Writer::open(path, None).unwrap();
        for l in lines {
            w.append(l).unwrap();
        }
        w.finish().unwrap();
    }
}

#[cfg(test)]
mod tests;
