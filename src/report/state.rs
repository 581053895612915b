//! Which journal state the outputs were built from, kept beside them in a small private file,
//! and the cheap check a scan makes before rebuilding: when no item record was added since
//! and every file beside the results (summary.json, summary.md, report.html, SHA256SUMS, the
//! ignored-files list) is still the one last written, no output is written at all; when only
//! those small files differ, the results files are left exactly as they are and the small
//! files are written again, from a checkpoint of the summary's running totals and the lines
//! appended since, never from a pass over the whole journal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kit::hashing::file_sha256;
use crate::kit::open::open_read;

use super::html::{Attention, AttentionSnapshot};
use super::small::write_summaries;
use super::summary::{Accumulator, BuiltFrom};
use super::{Outputs, ReportError, ReportOptions, ResultsFormat, io_err, sums};
use crate::journal::{self, JOURNAL_FILE, Line};

/// The checkpoint next to the outputs (owner-only, like every file of the out dir).
pub const STATE_FILE: &str = ".liveness-batch-outputs.json";

/// Version of the outputs' layout. Raise it whenever the outputs of the same journal change:
/// outputs another version wrote are rebuilt, never patched.
pub const FORMAT: u32 = 7;

/// Largest checkpoint read back; real ones are far smaller (the attention rows are capped).
const MAX_STATE_BYTES: u64 = 32 << 20;

/// What the outputs were built from and the state to bring their summary up to date.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// As written in summary.json.
    pub built_from: BuiltFrom,
    /// The report options they were built with. The price of one call the summary was priced
    /// at: the one asked for, else the list price of the latest run's check (a report without
    /// `--price-per-call` and a scan of the same check at its list price agree).
    pub price_per_call: f64,
    pub results: ResultsFormat,
    /// Whether age, gender and face box were written (`--include-face-attributes`).
    #[serde(default)]
    pub face_attributes: bool,
    /// Name and size of each results file as written: a file deleted, cut or replaced since is
    /// noticed and rebuilt.
    pub sizes: Vec<(String, u64)>,
    /// Name and SHA-256 of each results file as written, for SHA256SUMS.
    #[serde(default)]
    pub hashes: Vec<(String, String)>,
    /// The summary's running totals at `built_from.journal.bytes`.
    pub accumulator: Accumulator,
    /// The rows report.html shows.
    pub attention: AttentionSnapshot,
    /// Name and SHA-256 of every other file as last written or listed: summary.json,
    /// summary.md, report.html, SHA256SUMS and the other files SHA256SUMS lists (ignored.csv,
    /// changes.csv). Empty in a checkpoint of an earlier version: the small files are then
    /// written again once.
    #[serde(default)]
    pub written: Vec<(String, String)>,
}

/// A file of the out dir a scan has just put in place itself (the ignored-files list): its
/// SHA-256, and whether the one already there held the same bytes and was left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub sha256: String,
    pub left: bool,
}

/// Remove the checkpoint: the outputs no longer claim to describe the journal.
pub fn forget(out_dir: &Path) -> Result<(), ReportError> {
    let path = out_dir.join(STATE_FILE);
    super::remove_if_present(&journal::seal::sig_path(&path))?;
    super::remove_if_present(&path)?;
    Ok(())
}

/// The checkpoint as the file holds it: its text, and the SHA-256 of that text, so a damaged
/// or hand-edited checkpoint is noticed and rebuilt from the journal, never believed.
#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    sha256: String,
    #[serde(borrow)]
    checkpoint: &'a serde_json::value::RawValue,
}

pub fn save(out_dir: &Path, checkpoint: &Checkpoint) -> Result<(), ReportError> {
    let path = out_dir.join(STATE_FILE);
    let body = serde_json::value::to_raw_value(checkpoint)
        .map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
    let sealed = Sealed {
        sha256: sums::hex_of(body.get().as_bytes()),
        checkpoint: &body,
    };
    journal::write_private_atomic(&path, |w| {
        serde_json::to_writer(&mut *w, &sealed).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
    .map_err(io_err(&path))
}

/// The checkpoint file's bytes, if there is a readable one of a sane size.
fn read(out_dir: &Path) -> Result<Vec<u8>, String> {
    let f = open_read(&out_dir.join(STATE_FILE)).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err("larger than any checkpoint this tool writes".into());
    }
    Ok(bytes)
}

/// The checkpoint in `bytes`, when its digest matches its content; why not, otherwise.
fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
    let sealed: Sealed = serde_json::from_slice(bytes)
        .map_err(|_| "not a checkpoint of this version".to_string())?;
    if sums::hex_of(sealed.checkpoint.get().as_bytes()) != sealed.sha256 {
        return Err("not the file this tool wrote (its digest does not match its content)".into());
    }
    serde_json::from_str(sealed.checkpoint.get())
        .map_err(|_| "not a checkpoint of this version".to_string())
}

/// The checkpoint, if there is a readable one whose digest matches its content.
fn load(out_dir: &Path) -> Option<Checkpoint> {
    parse(&read(out_dir).ok()?).ok()
}

/// Check the outputs' checkpoint against the journal (and with `key`, its signature): see
/// [`journal::CacheCheck`].
pub fn check(out_dir: &Path, key: Option<&journal::seal::Verifier>) -> journal::CacheCheck {
    use journal::CacheCheck;
    let path = out_dir.join(STATE_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return CacheCheck::Absent;
    }
    let damaged = |why: String| {
        CacheCheck::Damaged(format!(
            "the outputs' checkpoint {} is {why}",
            path.display()
        ))
    };
    let bytes = match read(out_dir) {
        Ok(b) => b,
        Err(e) => return damaged(format!("unreadable ({e})")),
    };
    if let Some(key) = key
        && let Err(e) = key.check_file(&path, &bytes)
    {
        return damaged(format!("not signed by key {}: {e}", key.key_id()));
    }
    let cp = match parse(&bytes) {
        Ok(cp) => cp,
        Err(e) => return damaged(e),
    };
    match holds(
        out_dir,
        &cp.built_from.journal,
        "the outputs were built from",
    ) {
        Ok(()) => CacheCheck::Good,
        Err(why) => CacheCheck::Foreign(why),
    }
}

/// Check summary.json's `built_from` against the journal: outputs built from a longer or
/// another journal than the one there now are evidence that it was cut back or rewritten.
/// Anything unreadable is no evidence ([`journal::CacheCheck::Absent`]).
pub fn check_outputs(out_dir: &Path) -> journal::CacheCheck {
    use journal::CacheCheck;
    #[derive(Deserialize)]
    struct Built {
        built_from: Option<BuiltFrom>,
    }
    let built = open_read(&out_dir.join("summary.json"))
        .ok()
        .and_then(|f| serde_json::from_reader::<_, Built>(f.take(MAX_STATE_BYTES)).ok())
        .and_then(|b| b.built_from);
    let Some(built) = built else {
        return CacheCheck::Absent;
    };
    match holds(out_dir, &built.journal, "summary.json was built from") {
        Ok(()) => CacheCheck::Good,
        Err(why) => CacheCheck::Foreign(why),
    }
}

/// Whether the journal in `out_dir` still holds the state `built` (its length, first line and
/// last item record); why not, in words.
fn holds(out_dir: &Path, built: &super::latest::JournalState, what: &str) -> Result<(), String> {
    let journal_path = out_dir.join(JOURNAL_FILE);
    let len = open_read(&journal_path)
        .and_then(|f| f.metadata())
        .map(|m| m.len())
        .unwrap_or(0);
    if len < built.bytes {
        return Err(format!(
            "{what} the journal's first {} bytes ({} item records), but the journal now holds \
             {len} bytes: it was cut back or emptied",
            built.bytes, built.item_records
        ));
    }
    let file = open_read(&journal_path).map_err(|e| format!("the journal cannot be read: {e}"))?;
    let mut r = BufReader::with_capacity(64 << 10, file);
    for (which, mark) in [
        ("first line", &built.first_line),
        ("last item record", &built.last_item),
    ] {
        let Some(mark) = mark else { continue };
        let same = line_at(&mut r, mark.offset)
            .is_some_and(|line| hex::encode(Sha256::digest(&line)) == mark.sha256);
        if !same {
            return Err(format!(
                "the journal's {which} (at byte {}) is not the one {what}: the journal was \
                 edited, zeroed or rewritten",
                mark.offset
            ));
        }
    }
    Ok(())
}

/// The results format to write: the one asked for, else the one the out dir already has (its
/// checkpoint's, else the results files present), else results.json.
pub fn results_format(out_dir: &Path, asked: Option<ResultsFormat>) -> ResultsFormat {
    if let Some(f) = asked {
        return f;
    }
    if let Some(cp) = load(out_dir) {
        return cp.results;
    }
    let present = |name: &str| {
        std::fs::symlink_metadata(out_dir.join(name)).is_ok_and(|m| m.file_type().is_file())
    };
    match (present("results.json"), present("results.jsonl")) {
        (false, true) => ResultsFormat::Jsonl,
        (true, true) => ResultsFormat::Both,
        _ => ResultsFormat::Json,
    }
}

/// Bring the outputs up to date without a pass over the journal when no item record was added
/// since they were built: when every small file is still the one last written (and `listed`,
/// the files the scan put in place itself, were left as they were), no output is written at
/// all; otherwise the results files are left as they are and the summary files are written
/// again with the runs appended since. `None` when the outputs must be rebuilt.
pub fn refresh(
    out_dir: &Path,
    opts: &ReportOptions,
    listed: &[Listed],
) -> Result<Option<Outputs>, ReportError> {
    let Some(cp) = load(out_dir) else {
        return Ok(None);
    };
    let Some((accumulator, bytes)) = unchanged(out_dir, opts, &cp) else {
        return Ok(None);
    };
    let left: Vec<String> = cp.sizes.iter().map(|(name, _)| name.clone()).collect();
    let mut built_from = cp.built_from.clone();
    let changed = as_written(out_dir, &cp.written, listed);
    if changed.is_none() {
        // Every output stays as it is, describing the journal up to the recorded state, and so
        // does the checkpoint (the lines appended since are read again next time). The summary
        // of the journal as it is now is for the terminal only: written nowhere.
        built_from.journal.bytes = bytes;
        let mut summary = accumulator.finish(opts.price_per_call, &out_dir.display().to_string());
        summary.built_from = Some(built_from);
        let report_sha256 = cp
            .written
            .iter()
            .find(|(name, _)| name == "report.html")
            .map(|(_, sha)| sha.clone())
            .unwrap_or_default();
        let mut untouched = left.clone();
        untouched.extend(SMALL_FILES.map(String::from));
        for (name, _) in &cp.written {
            if !untouched.contains(name) {
                untouched.push(name.clone());
            }
        }
        // SHA256SUMS lists the journal, which this run extended: it alone is written again
        // (and the checkpoint, to know it as written).
        untouched.retain(|n| n != sums::SUMS_FILE);
        let hashed: Vec<(String, String)> = cp
            .hashes
            .iter()
            .chain(cp.written.iter().filter(|(n, _)| n != sums::SUMS_FILE))
            .cloned()
            .collect();
        let listed = sums::write(out_dir, &hashed, opts.journal_sha256)?;
        let mut written = cp.written.clone();
        if let (Some(new), Some(old)) = (
            listed.last(),
            written.iter_mut().find(|(n, _)| n == sums::SUMS_FILE),
        ) {
            old.1 = new.1.clone();
        }
        save(
            out_dir,
            &Checkpoint {
                built_from: cp.built_from.clone(),
                price_per_call: cp.price_per_call,
                results: cp.results,
                face_attributes: cp.face_attributes,
                sizes: cp.sizes.clone(),
                hashes: cp.hashes.clone(),
                accumulator: cp.accumulator.clone(),
                attention: cp.attention.clone(),
                written,
            },
        )?;
        return Ok(Some(Outputs {
            summary,
            left: untouched,
            all_left: true,
            rewritten_because: None,
            removed: Vec::new(),
            report_sha256,
        }));
    }
    built_from.journal.bytes = bytes;
    let mut summary = accumulator
        .clone()
        .finish(opts.price_per_call, &out_dir.display().to_string());
    summary.built_from = Some(built_from.clone());
    let attention = Attention::from_snapshot(cp.attention);
    let (report_sha256, written) = write_summaries(
        out_dir,
        &summary,
        &attention,
        &cp.hashes,
        opts.journal_sha256,
    )?;
    save(
        out_dir,
        &Checkpoint {
            built_from,
            accumulator,
            attention: attention.snapshot(),
            written,
            ..cp
        },
    )?;
    Ok(Some(Outputs {
        summary,
        left,
        all_left: false,
        rewritten_because: changed,
        removed: Vec::new(),
        report_sha256,
    }))
}

/// The files written beside the results whatever the results format.
const SMALL_FILES: [&str; 4] = ["summary.json", "summary.md", "report.html", sums::SUMS_FILE];

/// Why the small files are not all as last written (`written`: their names and SHA-256 from
/// the checkpoint; `listed`: files the caller has just put in place or left), or `None` when
/// they are. Each is read once, never through a link; they are small.
fn as_written(out_dir: &Path, written: &[(String, String)], listed: &[Listed]) -> Option<String> {
    if written.is_empty() {
        return Some(
            "the outputs were built by an earlier version, which did not record their SHA-256"
                .into(),
        );
    }
    for name in SMALL_FILES {
        if !written.iter().any(|(n, _)| n == name) {
            return Some(format!(
                "{name} was not recorded when the outputs were built"
            ));
        }
    }
    for (name, sha) in written {
        let now = match listed.iter().find(|l| &l.name == name) {
            Some(l) if l.left => Some(l.sha256.clone()),
            Some(_) => return Some(format!("{name} changed (another set of files was skipped)")),
            None => file_sha256(&out_dir.join(name)).ok(),
        };
        if now.as_ref() != Some(sha) {
            return Some(format!(
                "{name} is not the file last written (edited, replaced or removed)"
            ));
        }
    }
    // A file SHA256SUMS would list now but did not.
    for name in sums::ALSO_LISTED {
        if written.iter().any(|(n, _)| n == name) {
            continue;
        }
        let present = listed.iter().any(|l| l.name == name)
            || std::fs::symlink_metadata(out_dir.join(name)).is_ok();
        if present {
            return Some(format!("{name} is new"));
        }
    }
    None
}

/// When the checkpoint still describes the outputs and the journal holds no item record past
/// it: the summary's totals with the lines appended since, and where the complete lines end.
fn unchanged(out_dir: &Path, opts: &ReportOptions, cp: &Checkpoint) -> Option<(Accumulator, u64)> {
    let built = &cp.built_from;
    let same_build = built.format == FORMAT && built.tool_version == env!("CARGO_PKG_VERSION");
    let same_options = cp.face_attributes == opts.include_face_attributes
        && opts.results_format.is_none_or(|f| f == cp.results);
    if !same_build || !same_options {
        return None;
    }
    for (name, size) in &cp.sizes {
        let m = std::fs::symlink_metadata(out_dir.join(name)).ok()?;
        if !m.file_type().is_file() || m.len() != *size {
            return None;
        }
    }
    let file = open_read(&out_dir.join(JOURNAL_FILE)).ok()?;
    if file.metadata().ok()?.len() < built.journal.bytes {
        return None;
    }
    let mut r = BufReader::with_capacity(64 << 10, file);
    // The same journal: its first line and its last item record are where they were.
    let marks = [&built.journal.first_line, &built.journal.last_item];
    for mark in marks.into_iter().flatten() {
        let line = line_at(&mut r, mark.offset)?;
        if hex::encode(Sha256::digest(&line)) != mark.sha256 {
            return None;
        }
    }
    // Only run, end and sending lines since: they change the summary, not the results.
    let mut accumulator = cp.accumulator.clone();
    let mut pos = built.journal.bytes;
    r.seek(SeekFrom::Start(pos)).ok()?;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).ok()?;
        if n == 0 {
            break;
        }
        let line = trim_line(&buf);
        if buf.ends_with(b"\n") && line.iter().all(u8::is_ascii_whitespace) {
            accumulator.on_raw_line(pos, line);
            pos += n as u64;
            continue;
        }
        // A damaged or cut-short line: the rebuild reports it.
        let parsed = serde_json::from_slice::<Line>(line).ok()?;
        accumulator.on_raw_line(pos, line);
        match parsed {
            // A key leaving the results is a change of the results.
            Line::Item(_) | Line::Gone(_) => return None,
            // So is a gone key listed again.
            Line::Unchanged(_) if cp.accumulator.gone() > 0 => return None,
            Line::Run(run) => accumulator.on_run(&run),
            Line::End(end) => accumulator.on_end(&end),
            Line::Sending(s) => accumulator.on_sending(&s.key),
            Line::Unchanged(_) | Line::Seal(_) => {}
        }
        pos += n as u64;
    }
    // A run on the emulator after real ones (or the reverse, with --force) stamps the results.
    if accumulator.simulated() != cp.accumulator.simulated() {
        return None;
    }
    // Another price: asked for, or the list price of another check run since (with --force).
    let price = accumulator.price_per_call(opts.price_per_call);
    if price.to_bits() != cp.price_per_call.to_bits() {
        return None;
    }
    Some((accumulator, pos))
}

/// A line without its line break (and a CR before it), as the journal reader gives it.
fn trim_line(buf: &[u8]) -> &[u8] {
    match buf.strip_suffix(b"\n") {
        Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
        None => buf,
    }
}

/// The line starting at `offset`.
fn line_at(r: &mut BufReader<File>, offset: u64) -> Option<Vec<u8>> {
    r.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf).ok()?;
    let len = trim_line(&buf).len();
    buf.truncate(len);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An out dir holding the four small files, and what the checkpoint records of them.
    fn out_dir() -> (tempfile::TempDir, Vec<(String, String)>) {
        let dir = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        for name in SMALL_FILES {
            std::fs::write(dir.path().join(name), name).unwrap();
            written.push((name.to_string(), sums::hex_of(name.as_bytes())));
        }
        (dir, written)
    }

    fn ignored(sha: &str, left: bool) -> Listed {
        Listed {
            name: "ignored.csv".into(),
            sha256: sha.into(),
            left,
        }
    }

    #[test]
    fn the_small_files_as_written_need_no_write() {
        let (dir, mut written) = out_dir();
        assert_eq!(as_written(dir.path(), &written, &[]), None);
        written.push(("ignored.csv".into(), "ab".into()));
        assert_eq!(
            as_written(dir.path(), &written, &[ignored("ab", true)]),
            None,
            "the scan's own list, left as it was"
        );
        let why = as_written(dir.path(), &written, &[ignored("ab", false)]).unwrap();
        assert!(why.starts_with("ignored.csv changed"), "{why}");
        let why = as_written(dir.path(), &written, &[ignored("cd", true)]).unwrap();
        assert!(
            why.contains("ignored.csv is not the file last written"),
            "{why}"
        );
        // without the scan's word, the file on disk is hashed
        let why = as_written(dir.path(), &written, &[]).unwrap();
        assert!(
            why.contains("ignored.csv is not the file last written"),
            "{why}"
        );
        std::fs::write(dir.path().join("ignored.csv"), "x").unwrap();
        written.last_mut().unwrap().1 = sums::hex_of(b"x");
        assert_eq!(as_written(dir.path(), &written, &[]), None);
    }

    #[test]
    fn an_edited_missing_linked_or_unrecorded_file_is_named() {
        let (dir, written) = out_dir();
        assert!(
            as_written(dir.path(), &[], &[])
                .unwrap()
                .contains("earlier version")
        );
        let why = as_written(dir.path(), &written[1..], &[]).unwrap();
        assert!(why.contains("summary.json was not recorded"), "{why}");

        std::fs::write(dir.path().join("summary.md"), "edited").unwrap();
        let why = as_written(dir.path(), &written, &[]).unwrap();
        assert!(
            why.starts_with("summary.md is not the file last written"),
            "{why}"
        );
        std::fs::write(dir.path().join("summary.md"), "summary.md").unwrap();

        // the same bytes behind a link are not the file written
        let html = dir.path().join("report.html");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&html, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &html).unwrap();
        let why = as_written(dir.path(), &written, &[]).unwrap();
        assert!(why.starts_with("report.html is not"), "{why}");
        std::fs::remove_file(&html).unwrap();
        let why = as_written(dir.path(), &written, &[]).unwrap();
        assert!(why.starts_with("report.html is not"), "{why}");
        std::fs::rename(&elsewhere, &html).unwrap();
        assert_eq!(as_written(dir.path(), &written, &[]), None);

        // a file SHA256SUMS would list now but did not
        std::fs::write(dir.path().join("changes.csv"), "x").unwrap();
        assert_eq!(
            as_written(dir.path(), &written, &[]).as_deref(),
            Some("changes.csv is new")
        );
        std::fs::remove_file(dir.path().join("changes.csv")).unwrap();
        assert_eq!(
            as_written(dir.path(), &written, &[ignored("ab", true)]).as_deref(),
            Some("ignored.csv is new")
        );
    }
}
