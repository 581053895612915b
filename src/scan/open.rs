//! Opening a run: the API (real, or the emulator in-process), the out dir (created private,
//! locked, checked), and the journal (indexed for a resume, settings compared, a run header
//! appended).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{ScanError, now_rfc3339};
use crate::config::ScanConfig;
use crate::didit::{Client, ClientConfig};
use crate::journal::{self, DirLock, Index, JournalError, Line, RunInfo, Settings, Writer};
use crate::secret::ApiKey;
use crate::shard::{self, ShardHeader};
use crate::{emulator, messages, report};

/// The API this run talks to.
pub struct Api {
    pub client: Arc<Client>,
    /// First 8 hex digits of the key's SHA-256 (the emulator's random key for `--emulator`).
    pub key_fingerprint: String,
    /// The emulator started in this process, if any (shut down at the end).
    pub emulator: Option<emulator::Emulator>,
}

/// The API: the real one, or an emulator started in this process (with a random key and a
/// realistic latency).
pub async fn connect(cfg: &ScanConfig) -> Result<Api, ScanError> {
    let (api_key, base_url, emu) = if cfg.api.emulator {
        let key = format!("emulator-{}", uuid::Uuid::new_v4().simple());
        let mut ec = emulator::EmulatorConfig::new(key.clone());
        ec.latency = Duration::from_millis(150);
        ec.jitter = Duration::from_millis(120);
        let emu = emulator::start(ec, 0).await?;
        let url = emu.base_url();
        let key = ApiKey::new(key).map_err(|e| ScanError::Internal(e.to_string()))?;
        (key, url, Some(emu))
    } else {
        let key = cfg
            .api
            .key
            .clone()
            .ok_or_else(|| ScanError::Internal("no API key".into()))?;
        (key, cfg.api.base_url.clone(), None)
    };
    let key_fingerprint = crate::audit::key_fingerprint(&api_key);
    let client = Arc::new(Client::for_endpoint(
        ClientConfig {
            base_url,
            api_key,
            timeout: cfg.api.timeout,
        },
        cfg.call,
    )?);
    Ok(Api {
        client,
        key_fingerprint,
        emulator: emu,
    })
}

/// The out dir, locked, with its journal verified (when there is one to resume) and its caches
/// checked against it: what a resume may trust, decided before any request.
pub struct Evidence {
    lock: DirLock,
    journal_path: PathBuf,
    /// The verification of the journal this run resumes; `None` for a new journal.
    verified: Option<journal::Verified>,
}

/// Create and lock the out dir; set an old journal aside with `--fresh`; verify an existing
/// journal (chain, grammar, seals) and check the caches beside it against it. Anything that
/// does not hold stops the run here (exit 8), before any request.
pub fn verify_evidence(cfg: &ScanConfig) -> Result<Evidence, ScanError> {
    journal::create_private_dir(&cfg.out).map_err(|source| ScanError::OutDir {
        op: "create the out dir",
        path: cfg.out.clone(),
        source,
    })?;
    if let Some(w) = journal::out_dir_warning(&cfg.out) {
        messages::warn(&w);
    }
    let lock = DirLock::acquire(&cfg.out)?;
    let journal_path = cfg.out.join(journal::JOURNAL_FILE);
    let present = journal_state(&journal_path)?;
    if cfg.fresh && present.is_some() {
        let kept = set_aside(&journal_path)?;
        // Its summary goes with it: it describes that journal, not the new one (and must not
        // be taken for evidence that the new one lost lines).
        let summary = cfg.out.join("summary.json");
        if summary.exists() {
            let aside = kept.with_file_name(
                kept.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .replacen("journal-", "summary-", 1)
                    .replace(".jsonl", ".json"),
            );
            std::fs::rename(&summary, &aside).map_err(|source| ScanError::OutDir {
                op: "set the previous summary aside as",
                path: aside.clone(),
                source,
            })?;
        }
        messages::note(&format!(
            "--fresh: the previous journal was kept as {}",
            kept.display()
        ));
    } else if !cfg.fresh {
        refuse_lost_journal(&cfg.out, &journal_path, present)?;
    }
    let verified = if !cfg.fresh && present == Some(true) {
        Some(verify_journal(cfg, &journal_path, false)?)
    } else {
        // A new journal: caches of another journal must not be taken for its own.
        discard_caches(&cfg.out, &journal_path)?;
        None
    };
    Ok(Evidence {
        lock,
        journal_path,
        verified,
    })
}

/// What a dry run may trust of an out dir it resumes: the same checks as a scan's, writing
/// nothing (no outputs marked, no cache discarded).
pub fn verify_for_dry_run(cfg: &ScanConfig) -> Result<(), ScanError> {
    let journal_path = cfg.out.join(journal::JOURNAL_FILE);
    if cfg.fresh || journal_state(&journal_path)? != Some(true) {
        return Ok(());
    }
    verify_journal(cfg, &journal_path, true).map(|_| ())
}

/// The whole journal checked (chain, grammar, seals with the key's public half), then the
/// caches against it. `dry`: write nothing.
fn verify_journal(
    cfg: &ScanConfig,
    journal_path: &Path,
    dry: bool,
) -> Result<journal::Verified, ScanError> {
    let refuse = |what: String| ScanError::Evidence {
        dir: cfg.out.clone(),
        what,
    };
    let public = cfg.signer.as_ref().map(|s| s.public());
    let tmp = std::env::temp_dir();
    let verified = journal::verify(journal_path, public.as_ref(), &tmp)?;
    if verified.problem.is_some() && !dry {
        // The outputs say so too (as `report` would write them): none of them goes on
        // claiming an intact journal.
        let opts = report::ReportOptions {
            price_per_call: Some(cfg.price_per_call),
            results_format: cfg.results_format,
            include_face_attributes: cfg.include_face_attributes,
            journal_sha256: None,
        };
        if let Err(e) = report::mark_broken(&cfg.out, &opts, public.as_ref()) {
            messages::warn(&format!(
                "the outputs could not be rebuilt to show the failure ({e}); they describe the \
                 journal as it was when they were built"
            ));
        }
    }
    if let Some(p) = &verified.problem {
        return Err(refuse(format!(
            "the journal is broken at line {} (byte {}): {}",
            p.line, p.offset, p.reason
        )));
    }
    match (&cfg.signer, &verified.seal_key) {
        (None, Some(key_id)) => {
            return Err(ScanError::SignedJournal {
                dir: cfg.out.clone(),
                seals: verified.seals,
                key_id: key_id.clone(),
            });
        }
        (Some(_), None) if verified.records > 0 && !cfg.rebuild_from_journal => {
            return Err(refuse(
                "the journal carries no seal although a signing key is given: it was written \
                 without one, or its seals were removed. Check it with `liveness-batch report` \
                 first; to start signing it from now on, rerun with --rebuild-from-journal"
                    .into(),
            ));
        }
        (Some(_), Some(_)) if verified.unsealed_run_or_end && verified.unsealed_lines > 1 => {
            return Err(refuse(format!(
                "the last {} line(s) of the journal come after its last seal and hold a run \
                 header or an end line: a run seals its header and its end, so these lines \
                 were added afterwards",
                verified.unsealed_lines
            )));
        }
        _ => {}
    }
    let caches = [
        (
            "resume index",
            journal::check_index(journal_path, public.as_ref()),
        ),
        (
            "outputs' checkpoint",
            report::state::check(&cfg.out, public.as_ref()),
        ),
        (
            "outputs' summary.json",
            report::state::check_outputs(&cfg.out),
        ),
    ];
    let mut stale = Vec::new();
    for (name, check) in caches {
        match check {
            journal::CacheCheck::Absent | journal::CacheCheck::Good => {}
            journal::CacheCheck::Damaged(why) => {
                messages::warn(&format!(
                    "{why}; it is discarded and rebuilt from the verified journal"
                ));
                stale.push(name);
            }
            journal::CacheCheck::Foreign(why) if cfg.rebuild_from_journal => {
                messages::warn(&format!(
                    "--rebuild-from-journal: the {name} disagrees with the journal ({why}); it \
                     is rebuilt from the journal, which passed every check"
                ));
                stale.push(name);
            }
            journal::CacheCheck::Foreign(why) => {
                return Err(refuse(format!(
                    "the {name} disagrees with the journal: {why}"
                )));
            }
        }
    }
    if !dry && (cfg.rebuild_from_journal || !stale.is_empty()) {
        discard_caches(&cfg.out, journal_path)?;
    }
    Ok(verified)
}

/// Remove the resume index and the outputs' checkpoint (and their signatures): what is built
/// next comes from the journal alone.
fn discard_caches(out: &Path, journal_path: &Path) -> Result<(), ScanError> {
    journal::discard_index(journal_path)?;
    report::state::forget(out)?;
    Ok(())
}

/// The journal's writer during a scan: a new journal's lines are shown to the outputs' feed
/// and the resume index's as they are written.
pub type JournalWriter = Writer<Option<(report::Feed, journal::IndexFeed)>>;

/// The out dir, locked, with its journal indexed and a run header appended.
pub struct Opened {
    pub _lock: DirLock,
    pub index: Index,
    pub writer: JournalWriter,
    pub resumed: bool,
    pub journal_path: PathBuf,
    /// This run's start and id, as its header records them.
    pub run: (String, Option<String>),
    /// The length of the journal's complete lines before this run (0 for a new journal):
    /// left as they are, they are hashed for SHA256SUMS while the run goes on.
    pub prefix_len: u64,
}

/// Index the verified journal for a resume, refusing changed settings unless `--force`;
/// append this run's header (sealed when signing).
pub fn open(
    cfg: &ScanConfig,
    settings: &Settings,
    audit: RunAudit,
    evidence: Evidence,
) -> Result<Opened, ScanError> {
    let Evidence {
        lock,
        journal_path,
        verified,
    } = evidence;
    let shard = shard_header(cfg)?;
    let (index, good_len) = if verified.is_some() {
        resume_index(cfg, &journal_path, settings)?
    } else {
        (Index::default(), None)
    };
    if good_len.is_some() {
        same_shard(cfg, &index, shard.as_ref())?;
    }
    let resumed = good_len.is_some();
    let writer = Writer::open(&journal_path, good_len)?;
    // A new journal: the outputs' summary and the resume index are gathered as it is written.
    let taps = writer.is_empty().then(|| {
        let index = journal::IndexFeed::new(&journal_path);
        (report::Feed::new(&cfg.out), index)
    });
    let mut writer = writer.tapped(taps);
    if let Some(signer) = &cfg.signer {
        let lines = verified.as_ref().map_or(0, |v| v.head.lines);
        writer.seal_with(signer.clone(), lines);
    }
    let mut run = header(cfg, settings, resumed, audit);
    run.shard = shard;
    let this_run = (
        run.started_at.clone(),
        run.identity.as_ref().map(|i| i.run_id.clone()),
    );
    // The header and the seal after it go to disk in one write.
    writer.gather(&Line::Run(run))?;
    writer.seal()?;
    writer.sync()?;
    Ok(Opened {
        _lock: lock,
        index,
        writer,
        resumed,
        journal_path,
        prefix_len: verified.as_ref().map_or(0, |v| v.head.bytes),
        run: this_run,
    })
}

/// `None` when there is no journal, `Some(false)` when it is empty, `Some(true)` otherwise.
fn journal_state(path: &Path) -> Result<Option<bool>, ScanError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.len() > 0 || !m.is_file())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JournalError::Io {
            op: "inspect",
            path: path.to_path_buf(),
            source,
        }
        .into()),
    }
}

/// Outputs of an earlier run without a journal to go with them: a deleted or emptied journal
/// would silently screen (and bill) everything again.
fn refuse_lost_journal(
    dir: &Path,
    journal_path: &Path,
    present: Option<bool>,
) -> Result<(), ScanError> {
    if present == Some(true) {
        return Ok(());
    }
    let mut evidence: Vec<String> = ["summary.json", "results.csv", "results.json", "report.html"]
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let kept = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("journal-") && n.ends_with(".jsonl")
            })
            .count();
        if kept > 0 {
            evidence.push(format!("{kept} earlier journal(s) set aside"));
        }
    }
    if evidence.is_empty() {
        return Ok(());
    }
    Err(ScanError::JournalMissing {
        dir: dir.to_path_buf(),
        journal: journal_path.to_path_buf(),
        state: if present.is_some() {
            "empty"
        } else {
            "missing"
        },
        evidence: evidence.join(", "),
    })
}

/// Index an existing journal for a resume, refusing changed settings unless `--force`.
/// Returns the index and where the complete lines end (a torn tail past it is cut).
fn resume_index(
    cfg: &ScanConfig,
    journal_path: &Path,
    settings: &Settings,
) -> Result<(Index, Option<u64>), ScanError> {
    let (index, reader, loaded) = journal::load_index(journal_path)?;
    if let journal::Loaded::Snapshot { tail } = loaded {
        tracing::debug!(
            tail,
            "resume index from its snapshot and the journal's tail"
        );
    }
    if let Some(torn) = reader.torn_tail() {
        messages::warn(&format!(
            "the journal's last line (line {}, {} bytes) was cut short by a crash; that item \
             will be screened again",
            torn.line, torn.len
        ));
    }
    if let Some(old) = &index.settings {
        let diff = settings.differences(old);
        if !diff.is_empty() {
            if !cfg.force {
                return Err(JournalError::SettingsChanged {
                    dir: cfg.out.clone(),
                    differences: diff,
                }
                .into());
            }
            messages::warn(&format!(
                "--force: resuming with different settings ({})",
                diff.join("; ")
            ));
        }
    }
    if !index.orphans.is_empty() {
        let shown: Vec<String> = index
            .orphans
            .iter()
            .take(10)
            .map(|o| messages::cut(&o.key))
            .collect();
        messages::warn(&format!(
            "{} upload(s) were in flight when an earlier run died (killed, crashed, or its disk \
             filled): Didit may have processed and billed them without their answer being \
             recorded. They are screened again and each counts one possible double charge: {}{}",
            index.orphans.len(),
            shown.join(", "),
            if index.orphans.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    Ok((index, Some(reader.good_len())))
}

/// What the journal header records about this run's shard, with the input's fingerprint.
fn shard_header(cfg: &ScanConfig) -> Result<Option<ShardHeader>, ScanError> {
    let Some(plan) = &cfg.shard else {
        return Ok(None);
    };
    let sources: Vec<shard::Source> = cfg
        .sources
        .iter()
        .map(|s| match s.to_str() {
            Some("-") => shard::Source::Stdin,
            Some(uri) if crate::input::bucket::is_uri(s) => shard::Source::Bucket(uri),
            _ => shard::Source::Path(s),
        })
        .collect();
    let filters = &cfg.source_options.filters;
    let input_fingerprint = shard::fingerprint(&sources, filters.include(), filters.exclude())
        .map_err(|source| ScanError::OutDir {
            op: "fingerprint the sources of",
            path: cfg.sources.first().cloned().unwrap_or_default(),
            source,
        })?;
    Ok(Some(ShardHeader {
        index: plan.shard.index,
        total: plan.shard.total,
        algorithm: shard::ALGORITHM.to_string(),
        input_fingerprint,
        key_rate: plan.key_rate.to_string(),
        key_max_requests: plan.key_max_requests,
    }))
}

/// A journal is resumed only by the shard that wrote it: another K or N (or sharding switched
/// on or off) would leave items of the old split in this folder and break the coverage proof.
fn same_shard(
    cfg: &ScanConfig,
    index: &Index,
    shard: Option<&ShardHeader>,
) -> Result<(), ScanError> {
    let split = |h: Option<&ShardHeader>| h.map(|h| (h.shard(), h.algorithm.clone()));
    if split(index.shard.as_ref()) == split(shard) {
        return Ok(());
    }
    let words = |h: Option<&ShardHeader>| {
        h.map_or("no --shard (the whole input)".to_string(), |h| {
            format!("--shard {}", h.shard())
        })
    };
    Err(ScanError::ShardChanged {
        dir: cfg.out.clone(),
        journal: words(index.shard.as_ref()),
        this: words(shard),
    })
}

/// What the run header records for the audit trail besides the settings.
pub struct RunAudit {
    pub key_fingerprint: Option<String>,
    /// The balance read before the first call.
    pub balance: Option<crate::audit::Balance>,
}

fn header(cfg: &ScanConfig, settings: &Settings, resumed: bool, audit: RunAudit) -> RunInfo {
    use crate::audit::{self, RunIdentity, Tuning};
    RunInfo {
        format: journal::Format::default(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: now_rfc3339(),
        settings: settings.clone(),
        sources: cfg
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        rate: cfg.rate.to_string(),
        concurrency: cfg.concurrency,
        resumed,
        dedupe: cfg.dedupe,
        max_requests: cfg.max_requests,
        shard: None,
        identity: Some(Box::new(RunIdentity {
            run_id: audit::new_run_id(),
            tool_commit: audit::TOOL_COMMIT.to_string(),
            operator: cfg.operator.clone(),
            purpose: cfg.purpose.clone(),
            command_line: cfg.command_line.clone(),
            key_fingerprint: audit.key_fingerprint,
        })),
        tuning: Some(Box::new(Tuning {
            max_retries: cfg.retry.max_retries,
            backoff_ms: cfg.backoff_ms,
            timeout_secs: cfg.api.timeout.as_secs_f64(),
            price_per_call_usd: cfg.price_per_call,
            retry_failed: cfg.retry_failed,
            checksum: cfg.checksum,
            retry_unknown: cfg.retry_unknown,
        })),
        manifests: audit::manifest_hashes(&cfg.sources),
        balance: audit.balance,
    }
}

/// The opening lines on stderr: what runs where, and whether it is simulated.
pub fn announce(cfg: &ScanConfig, resumed: bool) {
    if cfg.quiet {
        // Even a quiet shard says which part it screens.
        if let Some(plan) = &cfg.shard {
            messages::note(&plan.describe());
        }
        return;
    }
    if cfg.api.emulator {
        messages::note(
            "SIMULATED: screening against the built-in emulator, not Didit. Results are not real.",
        );
    }
    messages::note(&format!(
        "{} {} at {} with {} in flight into {}{}",
        if resumed { "Resuming" } else { "Screening" },
        cfg.sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.rate,
        cfg.concurrency,
        cfg.out.display(),
        if cfg.params.save_api_request {
            " (save_api_request=true: every image becomes a stored Didit session)"
        } else {
            ""
        }
    ));
    if let Some(plan) = &cfg.shard {
        messages::note(&plan.describe());
    }
    if let Some(note) = check_note(cfg) {
        messages::note(&note);
    }
}

/// The banner's line about the check, when it is not passive liveness.
pub fn check_note(cfg: &ScanConfig) -> Option<String> {
    let from = cfg.source_options.references.as_ref().map(|r| match r {
        crate::input::References::Dir(dir) => format!(
            "its reference found in {} by its key",
            messages::cut(&dir.display().to_string())
        ),
        crate::input::References::Column(c) => {
            format!(
                "the reference in the manifest's {} column",
                messages::cut(c)
            )
        }
    });
    let pairs = from
        .as_deref()
        .map(|f| (cfg.params.threshold.unwrap_or(30.0), f));
    messages::check_note(
        cfg.call.check,
        cfg.call.path,
        cfg.price_per_call,
        cfg.params.min_age,
        pairs,
    )
}

/// Move an existing journal aside (`journal-YYYYmmddTHHMMSS.jsonl`), never overwriting.
fn set_aside(journal_path: &Path) -> Result<PathBuf, ScanError> {
    let dir = journal_path.parent().unwrap_or(Path::new("."));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    for n in 0.. {
        let name = if n == 0 {
            format!("journal-{stamp}.jsonl")
        } else {
            format!("journal-{stamp}-{n}.jsonl")
        };
        let target = dir.join(name);
        if !target.exists() {
            std::fs::rename(journal_path, &target).map_err(|source| ScanError::OutDir {
                op: "set the previous journal aside as",
                path: target.clone(),
                source,
            })?;
            return Ok(target);
        }
    }
    unreachable!("some name is free")
}
