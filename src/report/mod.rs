//! Every output derived from the journal (results.csv, results.json and/or results.jsonl,
//! summary.json, summary.md, report.html), built from the whole journal in a few streaming
//! passes with bounded memory, or, when a scan added no item record since they were built,
//! left exactly as they are (or all but the summary files, when one of those was changed);
//! plus the `report` command that rebuilds them in place or merges shards.

mod action;
pub mod baseline;
mod build;
pub mod csv;
mod evidence;
mod feed;
mod fold;
pub mod gone;
pub mod html;
pub mod json;
mod latest;
mod out;
mod read;
pub mod shards;
mod small;
pub mod state;
pub mod summary;
pub mod sums;

use crate::exit::Exit;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::{self, DirLock, Index, JOURNAL_FILE, JournalError, Reader};

pub use feed::Feed;
pub use summary::{SIMULATED_NOTICE, Summary};

/// Marks an out dir whose journal was written by [`merge`], so a later merge may replace it.
pub const MERGE_MARKER: &str = ".liveness-batch-merge.json";

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReportOptions {
    /// Price of one billed call in US dollars, for the cost estimate; `None` prices each call
    /// at the list price of the journal's check (its latest run's).
    pub price_per_call: Option<f64>,
    /// Which JSON form of the results to write; `None` keeps the one the out dir has
    /// (results.json for a new one).
    pub results_format: Option<ResultsFormat>,
    /// Keep Didit's estimated age, gender and face box in results.csv, results.json and
    /// results.jsonl (`--include-face-attributes`); left out by default.
    pub include_face_attributes: bool,
    /// The journal's SHA-256 as it stands, when the caller knows it already (a scan hashed
    /// the lines it found while it ran): SHA256SUMS does not read the journal again.
    pub journal_sha256: Option<[u8; 32]>,
}

/// Everything `report` needs, validated.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Output folders holding journal.jsonl; several are merged into `out`.
    pub dirs: Vec<PathBuf>,
    /// Where to write the outputs; None rebuilds the only folder in place.
    pub out: Option<PathBuf>,
    /// `--price-per-call`: the price of one billed call in US dollars, for the cost estimate;
    /// `None` takes the list price of the journal's check.
    pub price_per_call: Option<f64>,
    /// `--results-format`; `None` keeps the out dir's.
    pub results_format: Option<ResultsFormat>,
    /// `--baseline`: an earlier audit's out dir to compare with.
    pub baseline: Option<PathBuf>,
    /// `--score-margin`.
    pub score_margin: f64,
    /// `--include-face-attributes`.
    pub include_face_attributes: bool,
    /// `--sign-key`: signs SHA256SUMS.
    pub signer: Option<std::sync::Arc<crate::journal::Signer>>,
    /// `--public-key`: verifies the seals and SHA256SUMS.minisig.
    pub public_key: Option<crate::journal::seal::Verifier>,
}

/// The JSON form of the results, beside results.csv (which is always written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultsFormat {
    /// results.json: one JSON array, easy to load whole; for runs up to about 100,000 rows.
    #[default]
    Json,
    /// results.jsonl: one JSON object a line, to stream; for large runs.
    Jsonl,
    /// Both files.
    Both,
}

impl ResultsFormat {
    pub fn json(self) -> bool {
        matches!(self, ResultsFormat::Json | ResultsFormat::Both)
    }

    pub fn jsonl(self) -> bool {
        matches!(self, ResultsFormat::Jsonl | ResultsFormat::Both)
    }

    /// Every output file written with this format, in the order they are listed.
    pub fn files(self) -> Vec<&'static str> {
        let mut files = vec!["results.csv"];
        if self.json() {
            files.push("results.json");
        }
        if self.jsonl() {
            files.push("results.jsonl");
        }
        files.extend(["summary.json", "summary.md", "report.html"]);
        files
    }
}

/// What writing the outputs did.
#[derive(Debug)]
pub struct Outputs {
    pub summary: Summary,
    /// The files left exactly as they were because no item record was added since they were
    /// built: the results files, and with [`Outputs::all_left`] every other output too;
    /// empty after a rebuild.
    pub left: Vec<String>,
    /// Whether no output at all was written: they describe the journal up to the state
    /// recorded in summary.json's `built_from`, not the lines appended since (this run's own).
    pub all_left: bool,
    /// Why the summary files were written again although no item record was added (one of
    /// them edited or removed, the ignored-files list changed).
    pub rewritten_because: Option<String>,
    /// Results files of a JSON form no longer written, removed so they cannot be taken for
    /// current ones.
    pub removed: Vec<String>,
    /// SHA-256 of report.html as written, to paste into a ticket.
    pub report_sha256: String,
}

impl Outputs {
    /// The lines to tell the user after the summary: outputs left as they were, files removed.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.all_left {
            notes.push(format!(
                "Nothing new since the outputs were built (no item record added to the journal): \
                 every output ({}) was left exactly as it was, but for SHA256SUMS, brought up to \
                 date because it lists the journal, which this run extended. They describe the \
                 journal up to the state recorded in summary.json's built_from; this run's own \
                 start and end lines are in the journal but not in them. `liveness-batch report \
                 {}` rebuilds them.",
                and_list(&self.left),
                crate::messages::cut(&self.summary.out_dir)
            ));
        } else if !self.left.is_empty() {
            let mut small: Vec<&str> = self
                .summary
                .output_files()
                .into_iter()
                .filter(|f| !self.left.iter().any(|l| l == f))
                .collect();
            small.push(sums::SUMS_FILE);
            let because = self
                .rewritten_because
                .as_ref()
                .map(|b| format!(", because {b}"))
                .unwrap_or_default();
            notes.push(format!(
                "Nothing new since the outputs were built (no item record added to the journal): \
                 {} left as they are; {} written again with this run{because}.",
                and_list(&self.left),
                and_list(&small)
            ));
        }
        if !self.removed.is_empty() {
            let now: Vec<&str> = self.summary.results_files();
            notes.push(format!(
                "Removed {} (it would describe an older journal state): the results are now in {}.",
                and_list(&self.removed),
                and_list(&now)
            ));
        }
        notes
    }
}

/// "a", "a and b", "a, b and c".
fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => format!(
            "{} and {}",
            rest.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{dir} holds no journal.jsonl: is it a liveness-batch output folder (scan --out DIR)?")]
    NoJournal { dir: PathBuf },
    #[error(
        "report: these folders are not the shards of one sharded run, so nothing was merged:\n  \
         {}\nMerge the N folders of one run: the same --shard N, settings and input",
        .0.join("\n  ")
    )]
    ShardsRefused(Vec<String>),
    #[error(
        "{out} already holds a journal ({journal}) that is not the output of an earlier merge; \
         merging would replace it. Choose an empty --out folder, or move that journal away first"
    )]
    OutHoldsJournal { out: PathBuf, journal: PathBuf },
}

impl ReportError {
    /// The process exit code for this error: all are usage or configuration problems.
    pub fn exit_code(&self) -> Exit {
        if self.is_io() {
            Exit::Io
        } else if matches!(self, ReportError::ShardsRefused(_)) {
            Exit::Verify
        } else {
            Exit::Usage
        }
    }

    /// Whether this is a local I/O failure (a full disk, an unwritable out dir).
    pub fn is_io(&self) -> bool {
        matches!(self, ReportError::Io { .. })
            || matches!(self, ReportError::Journal(e) if e.is_io())
    }
}

/// Remove the file at `path` if there is one; returns whether one was removed.
fn remove_if_present(path: &Path) -> Result<bool, ReportError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Rebuild every output in `out_dir` from `out_dir/journal.jsonl`; returns the summary.
/// The caller holds the directory lock (a scan has appended its end line already).
pub fn write_outputs(out_dir: &Path, opts: &ReportOptions) -> Result<Summary, ReportError> {
    Ok(rebuild(out_dir, opts)?.summary)
}

/// Rebuild every output in `out_dir` from its journal.
pub fn rebuild(out_dir: &Path, opts: &ReportOptions) -> Result<Outputs, ReportError> {
    build::build(out_dir, opts, build::Inputs::default())
}

/// What `report DIR` does: check the journal whole (and with `key`, its seals and the signed
/// SHA256SUMS), then rebuild every output from it, the checks' findings in the summary.
pub fn rebuild_checked(
    out_dir: &Path,
    opts: &ReportOptions,
    key: Option<&journal::seal::Verifier>,
    baseline: Option<(&Path, f64)>,
) -> Result<Outputs, ReportError> {
    rebuild_with_evidence(out_dir, opts, key, baseline, false)
}

/// What a scan that refuses a broken journal does: the outputs rebuilt as `report` would
/// write them (the failure named in each), SHA256SUMS and its signature left as they were.
pub fn mark_broken(
    out_dir: &Path,
    opts: &ReportOptions,
    key: Option<&journal::seal::Verifier>,
) -> Result<Outputs, ReportError> {
    rebuild_with_evidence(out_dir, opts, key, None, true)
}

fn rebuild_with_evidence(
    out_dir: &Path,
    opts: &ReportOptions,
    key: Option<&journal::seal::Verifier>,
    baseline: Option<(&Path, f64)>,
    keep_sums: bool,
) -> Result<Outputs, ReportError> {
    if let Some((b, _)) = baseline {
        baseline::check_baseline(b, out_dir)?;
    }
    let evidence = evidence::check(&out_dir.join(JOURNAL_FILE), &[out_dir.to_path_buf()], key)?;
    build::build(
        out_dir,
        opts,
        build::Inputs {
            baseline,
            evidence: Some(evidence),
            keep_sums,
            ..Default::default()
        },
    )
}

/// What the end of a scan does: when the outputs were built from this journal with the same
/// options and no item record was added since (only run, end and sending lines), the results
/// files are left exactly as they are, and so is every other output when it is still the file
/// last written (`listed`: the files the scan put in place itself, the ignored-files list,
/// and whether it left the one already there); when one of those changed, summary.json,
/// summary.md, report.html and SHA256SUMS are written again, without reading the journal but
/// for the lines appended since; otherwise every output is rebuilt.
/// `fed`: what the scan gathered as it wrote the journal, when it started it.
pub fn refresh_outputs(
    out_dir: &Path,
    opts: &ReportOptions,
    listed: &[state::Listed],
    fed: Option<Feed>,
) -> Result<Outputs, ReportError> {
    match state::refresh(out_dir, opts, listed)? {
        Some(outputs) => Ok(outputs),
        None => build::build(
            out_dir,
            opts,
            build::Inputs {
                fed,
                ..Default::default()
            },
        ),
    }
}

/// Sign what a signing run leaves: SHA256SUMS (SHA256SUMS.minisig, for the auditor) and the
/// outputs' checkpoint (so a resume believes only the one this key wrote).
pub fn sign_outputs(out_dir: &Path, signer: &journal::Signer) -> Result<(), ReportError> {
    for name in [sums::SUMS_FILE, state::STATE_FILE] {
        let path = out_dir.join(name);
        signer.sign_existing(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

/// The last line of a run: the report's SHA-256, and where the others are.
pub fn report_hash_line(outputs: &Outputs) -> String {
    format!(
        "report.html SHA-256: {} (every output's SHA-256 is in {}; check them with \
         `sha256sum -c {}` in {})",
        outputs.report_sha256,
        sums::SUMS_FILE,
        sums::SUMS_FILE,
        outputs.summary.out_dir
    )
}

/// What [`merge`] leaves next to the merged journal, so it can tell its own work from a scan's.
#[derive(Debug, Serialize, Deserialize)]
struct MergeMarker {
    merged_from: Vec<String>,
    journal_bytes: u64,
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Merge shard output folders: `out/journal.jsonl` becomes the concatenation of the shards'
/// journals (complete lines only), then every output is rebuilt from it. A journal already in
/// `out` is replaced only when an earlier merge wrote it and nothing was appended since.
pub fn merge(dirs: &[PathBuf], out: &Path, opts: &ReportOptions) -> Result<Summary, ReportError> {
    Ok(merge_outputs(dirs, out, opts, None, None)?.summary)
}

fn merge_outputs(
    dirs: &[PathBuf],
    out: &Path,
    opts: &ReportOptions,
    baseline: Option<(&Path, f64)>,
    key: Option<&journal::seal::Verifier>,
) -> Result<Outputs, ReportError> {
    check_merge_dirs(dirs, out)?;
    journal::create_private_dir(out).map_err(io_err(out))?;
    let _lock = DirLock::acquire(out)?;
    let out_journal = out.join(JOURNAL_FILE);
    let marker_path = out.join(MERGE_MARKER);
    check_replaceable(out, &out_journal, &marker_path)?;
    let (shards, mut warnings, coverage) = check_shards(dirs)?;
    if let Some(c) = &coverage {
        warnings.extend(c.problems.iter().cloned());
    }
    let total = concatenate(&shards, &out_journal)?;
    let marker = MergeMarker {
        merged_from: dirs.iter().map(|d| d.display().to_string()).collect(),
        journal_bytes: total,
    };
    journal::write_private_atomic(&marker_path, |w| {
        let mut bw = BufWriter::new(w);
        serde_json::to_writer_pretty(&mut bw, &marker).map_err(io::Error::other)?;
        bw.write_all(b"\n")?;
        bw.flush()
    })
    .map_err(io_err(&marker_path))?;
    let evidence = evidence::check(&out_journal, dirs, key)?;
    build::build(
        out,
        opts,
        build::Inputs {
            extra_warnings: warnings,
            shards: coverage,
            baseline,
            fed: None,
            evidence: Some(evidence),
            keep_sums: false,
        },
    )
}

/// At least one folder, each holding a journal, none of them `out`, none given twice.
fn check_merge_dirs(dirs: &[PathBuf], out: &Path) -> Result<(), ReportError> {
    if dirs.is_empty() {
        return Err(ReportError::Usage(
            "report: give at least one DIR to merge".into(),
        ));
    }
    for (i, d) in dirs.iter().enumerate() {
        if !d.join(JOURNAL_FILE).is_file() {
            return Err(ReportError::NoJournal { dir: d.clone() });
        }
        if same_dir(d, out) {
            return Err(ReportError::Usage(format!(
                "report: --out {} is one of the folders being merged; choose a new folder for the merged outputs",
                out.display()
            )));
        }
        if let Some(other) = dirs[..i].iter().find(|o| same_dir(o, d)) {
            return Err(ReportError::Usage(format!(
                "report: {} is given twice (as {} and {}); each shard may be merged once",
                d.display(),
                other.display(),
                d.display()
            )));
        }
    }
    Ok(())
}

/// A journal already in `out` may be replaced only when an earlier merge wrote it, unchanged.
fn check_replaceable(
    out: &Path,
    out_journal: &Path,
    marker_path: &Path,
) -> Result<(), ReportError> {
    if !out_journal.exists() {
        return Ok(());
    }
    let len = std::fs::metadata(out_journal)
        .map_err(io_err(out_journal))?
        .len();
    let ours = std::fs::read(marker_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<MergeMarker>(&b).ok())
        .is_some_and(|m| m.journal_bytes == len);
    if ours {
        Ok(())
    } else {
        Err(ReportError::OutHoldsJournal {
            out: out.to_path_buf(),
            journal: out_journal.to_path_buf(),
        })
    }
}

/// One shard's journal and the length of its complete lines, the part a merge copies.
struct Shard {
    path: PathBuf,
    len: u64,
}

/// The shards to concatenate, the warnings, and (for a sharded run) the coverage.
type Checked = (Vec<Shard>, Vec<String>, Option<shards::Coverage>);

/// Check every shard: its journal, where its complete lines end, keys shared with the shards
/// before it, and (for the shards of a sharded run) that together they cover one input once.
/// Returns the shards, the warnings and the coverage; folders that are not the shards of one
/// run are refused.
fn check_shards(dirs: &[PathBuf]) -> Result<Checked, ReportError> {
    let mut warnings = Vec::new();
    let mut shards = Vec::with_capacity(dirs.len());
    let mut seen: HashSet<u64> = HashSet::new();
    let mut overlapping = 0u64;
    let mut headers = Vec::with_capacity(dirs.len());
    // Images answered with a result, by content: a second shard's answer to the same image
    // is one a single run would have reused.
    let mut contents: HashSet<u64> = HashSet::new();
    let mut cross_duplicates = 0u64;
    for d in dirs {
        let path = d.join(JOURNAL_FILE);
        let mut reader = Reader::open(&path)?;
        let index = Index::build(&mut reader)?;
        if let Some(t) = reader.torn_tail() {
            warnings.push(out::torn_shard_warning(d, t));
        }
        let before = seen.len();
        let keys = index.keys();
        index
            .for_each_key_digest(|k| {
                seen.insert(k);
            })
            .map_err(io_err(&path))?;
        overlapping += (keys - (seen.len() - before)) as u64;
        for c in index.result_contents() {
            if !contents.insert(c as u64) {
                cross_duplicates += 1;
            }
        }
        headers.push(shards::ShardDir {
            dir: d.clone(),
            header: index.shard.clone(),
            changed: index.shard_changed,
            settings: index.settings.clone(),
        });
        shards.push(Shard {
            len: reader.good_len(),
            path,
        });
    }
    let coverage = match shards::verify(&headers) {
        shards::Verdict::NotSharded => None,
        shards::Verdict::Refused(problems) => return Err(ReportError::ShardsRefused(problems)),
        shards::Verdict::Checked(mut c) => {
            c.conclude(overlapping, cross_duplicates);
            Some(c)
        }
    };
    if overlapping > 0 && coverage.is_none() {
        warnings.push(format!(
            "{overlapping} item keys appear in more than one merged journal; each item's latest record \
             (in the order the folders were given) is its result, and every record's billing is counted"
        ));
    }
    Ok((shards, warnings, coverage))
}

/// Write the shards' complete lines one after the other into `out_journal`, each ending with a
/// line break; returns the bytes written.
fn concatenate(shards: &[Shard], out_journal: &Path) -> Result<u64, ReportError> {
    let mut total = 0u64;
    journal::write_private_atomic(out_journal, |w| {
        for Shard { path, len } in shards {
            let mut f = File::open(path)?;
            let copied = io::copy(&mut (&mut f).take(*len), w)?;
            if copied != *len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was being merged", path.display()),
                ));
            }
            total += copied;
            if *len > 0 {
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(len - 1))?;
                f.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    w.write_all(b"\n")?;
                    total += 1;
                }
            }
        }
        Ok(())
    })
    .map_err(io_err(out_journal))?;
    Ok(total)
}

/// `liveness-batch report DIR...`: rebuild one folder's outputs in place (or into --out), or
/// merge several into --out. Prints the summary on stderr; returns 0 when every item has a
/// result, 1 otherwise.
pub async fn run_command(cfg: ReportConfig) -> Result<Exit, ReportError> {
    match tokio::task::spawn_blocking(move || run_blocking(&cfg)).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `report DIR --public-key KEY` without a signing key: check the journal, its seals and the
/// signed SHA256SUMS, write nothing, and say what holds.
fn verify_only(dir: &Path, key: &journal::seal::Verifier) -> Result<Exit, ReportError> {
    let found = evidence::check(&dir.join(JOURNAL_FILE), &[dir.to_path_buf()], Some(key))?;
    let mut failures: Vec<String> = Vec::new();
    if let Some(p) = &found.problem {
        failures.push(format!(
            "the journal is broken at line {} (byte {}): {}",
            p.line, p.offset, p.reason
        ));
    }
    failures.extend(found.disagreements.iter().cloned());
    let sig = found.signature.unwrap_or_default();
    failures.extend(sig.problems.iter().cloned());
    for f in &failures {
        crate::messages::error(&format!("VERIFICATION FAILED: {f}"));
    }
    if !failures.is_empty() {
        return Ok(Exit::Verify);
    }
    crate::messages::note(&format!(
        "Verified with minisign key {}: the journal's chain and grammar, its {} seal(s) (the \
         last one closing it), and {} over every file {} lists. Nothing was written.",
        key.key_id(),
        sig.seals,
        sums::SIG_FILE,
        sums::SUMS_FILE
    ));
    Ok(Exit::Ok)
}

/// With `--sign-key`: sign what `report` left in `dir`.
fn sign(dir: &Path, cfg: &ReportConfig) -> Result<(), ReportError> {
    match &cfg.signer {
        Some(signer) => sign_outputs(dir, signer),
        None => Ok(()),
    }
}

fn run_blocking(cfg: &ReportConfig) -> Result<Exit, ReportError> {
    let opts = ReportOptions {
        price_per_call: cfg.price_per_call,
        results_format: cfg.results_format,
        include_face_attributes: cfg.include_face_attributes,
        journal_sha256: None,
    };
    let outputs = match (cfg.dirs.as_slice(), &cfg.out) {
        ([], _) => return Err(ReportError::Usage("report: give at least one DIR".into())),
        ([dir], out) if out.as_ref().is_none_or(|o| same_dir(o, dir)) => {
            if !dir.join(JOURNAL_FILE).is_file() {
                return Err(ReportError::NoJournal { dir: dir.clone() });
            }
            let _lock = DirLock::acquire(dir)?;
            if let (Some(key), None) = (&cfg.public_key, &cfg.signer) {
                // Verifying signed evidence leaves it exactly as it is.
                return verify_only(dir, key);
            }
            if cfg.signer.is_none() && dir.join(sums::SIG_FILE).exists() {
                return Err(ReportError::Usage(format!(
                    "report: {} is signed ({}): rebuilding its outputs would leave that \
                     signature behind. Verify it with --public-key KEY.pub (nothing is \
                     written), or rebuild and sign again with --sign-key KEY",
                    dir.display(),
                    sums::SIG_FILE
                )));
            }
            let baseline = cfg.baseline.as_deref().map(|b| (b, cfg.score_margin));
            let outputs = rebuild_checked(dir, &opts, cfg.public_key.as_ref(), baseline)?;
            sign(dir, cfg)?;
            outputs
        }
        (dirs, Some(out)) => {
            let baseline = cfg.baseline.as_deref().map(|b| (b, cfg.score_margin));
            let outputs = merge_outputs(dirs, out, &opts, baseline, cfg.public_key.as_ref())?;
            sign(out, cfg)?;
            outputs
        }
        (dirs, None) => {
            return Err(ReportError::Usage(format!(
                "report: {} folders were given; merging them needs --out DIR for the merged outputs \
                 (e.g. liveness-batch report {} --out merged)",
                dirs.len(),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
    };
    let summary = &outputs.summary;
    if summary.journals > 1 {
        crate::messages::note(&format!(
            "Merged {} journals into {}.",
            summary.journals, summary.out_dir
        ));
    }
    crate::messages::note(summary.render_text().trim_end());
    for note in outputs.notes() {
        crate::messages::note(&note);
    }
    crate::messages::note(&report_hash_line(&outputs));
    if let Some(signer) = &cfg.signer {
        crate::messages::note(&format!(
            "{} signed with minisign key {}: check it with `minisign -Vm {} -p KEY.pub`",
            sums::SIG_FILE,
            signer.key_id(),
            sums::SUMS_FILE
        ));
    }
    let failures = summary.verification_failures();
    for f in &failures {
        crate::messages::error(&format!("VERIFICATION FAILED: {f}"));
    }
    if !failures.is_empty() || summary.shards.as_ref().is_some_and(|c| !c.verified) {
        return Ok(Exit::Verify);
    }
    Ok(if summary.all_have_results() {
        Exit::Ok
    } else {
        Exit::SomeFailed
    })
}

#[cfg(test)]
mod tests;
