//! Building every output from the journal in three streaming passes: [`latest::scan`] finds
//! each key's latest record, a second pass sums the summary and picks the rows needing
//! attention, a third writes the results files in input order, reading each latest record back
//! by its offset. Memory stays bounded whatever the journal's length.

use std::io;
use std::path::Path;

use super::evidence::Evidence;
use super::feed::Feed;
use super::fold::{Walked, walk_latest};
use super::json::{self, JsonOut, Shape};
use super::latest::Scanned;
use super::out::{AtomicOut, sort_err, torn_warning};
use super::read::LinesAt;
use super::shards::Coverage;
use super::small::{write_small, write_summaries};
use super::state::{self, Checkpoint};
use super::summary::{Accumulator, BuiltFrom, Summary};
use super::{Outputs, ReportError, ReportOptions, ResultsFormat, csv, html, io_err, latest, sums};
use crate::journal::{self, JOURNAL_FILE, Line};
use crate::kit::sort::{self, Sorted};

/// What a build takes besides the out dir and the options; the default is what `report` of
/// one out dir takes.
#[derive(Default)]
pub(super) struct Inputs<'a> {
    /// Warnings from outside the journal (a merge's): they go in the summary first.
    pub extra_warnings: Vec<String>,
    /// A merge of shards: their coverage.
    pub shards: Option<super::shards::Coverage>,
    /// An out dir to compare with, and the score margin.
    pub baseline: Option<(&'a Path, f64)>,
    /// What a scan that started the journal gathered as it wrote it.
    pub fed: Option<Feed>,
    /// What `report` found checking the journal and the signatures before the build.
    pub evidence: Option<super::evidence::Evidence>,
    /// Leave SHA256SUMS (and its signature) as they are: a scan that refuses a broken journal
    /// rebuilds the outputs to say so, but SHA256SUMS keeps proving what was signed before.
    pub keep_sums: bool,
}

/// Rebuild every output in `out_dir` from its journal.
pub(super) fn build(
    out_dir: &Path,
    opts: &ReportOptions,
    inputs: Inputs,
) -> Result<Outputs, ReportError> {
    build_with(out_dir, opts, inputs, sort::BUDGET)
}

/// [`build`] with each sorter holding at most `budget` bytes in memory.
fn build_with(
    out_dir: &Path,
    opts: &ReportOptions,
    inputs: Inputs,
    budget: usize,
) -> Result<Outputs, ReportError> {
    let journal_path = out_dir.join(JOURNAL_FILE);
    if !journal_path.is_file() {
        return Err(ReportError::NoJournal {
            dir: out_dir.to_path_buf(),
        });
    }
    let format = state::results_format(out_dir, opts.results_format);
    // Until every output is written, nothing claims they describe the journal.
    state::forget(out_dir)?;
    let failed_checks = inputs.evidence.as_ref().is_some_and(|e| {
        e.problem.is_some()
            || !e.disagreements.is_empty()
            || e.signature.as_ref().is_some_and(|s| !s.problems.is_empty())
    });
    // A summary with warnings from outside the journal cannot be brought up to date from the
    // journal alone, so it gets no checkpoint (the next scan rebuilds). A comparison is not
    // brought up to date by a later scan either: the next one rebuilds, and drops changes.csv.
    let resumable = inputs.extra_warnings.is_empty() && inputs.baseline.is_none() && !failed_checks;
    let Inputs {
        extra_warnings,
        shards,
        baseline,
        fed,
        evidence,
        keep_sums,
    } = inputs;
    let (scanned, mut acc, walked) =
        first_passes(&journal_path, out_dir, fed, extra_warnings, budget)?;
    let resumable = resumable && scanned.torn.is_none();
    let Scanned {
        order,
        state: journal_state,
        gone,
        gone_count,
        ..
    } = scanned;
    acc.set_gone(gone_count);
    let simulated = acc.simulated();
    let ages = acc.estimates_ages();
    let pairs = acc.compares_pairs();
    // The price the summary is priced at, as the checkpoint records it.
    let price_per_call = acc.price_per_call(opts.price_per_call);
    let checkpoint = resumable.then(|| acc.clone());
    let mut summary = acc.finish(opts.price_per_call, &out_dir.display().to_string());
    with_evidence(&mut summary, shards, evidence);

    // Pass 3: the results files, then the summary in its three forms.
    let layout = csv::Layout::new(simulated, &walked.carried)
        .with_face_attributes(opts.include_face_attributes)
        .with_estimated_ages(ages)
        .with_references(pairs);
    let (mut sizes, mut hashes) =
        write_results(out_dir, &journal_path, order, layout, simulated, format)?;
    summary.built_from = Some(BuiltFrom {
        format: state::FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        journal: journal_state,
        files: format.files().iter().map(|f| f.to_string()).collect(),
    });
    let mut removed = remove_other_results(out_dir, format)?;
    let mut files = (&mut sizes, &mut hashes, &mut removed);
    let gone = (gone_count > 0).then_some(gone);
    gone_and_changes(out_dir, gone, baseline, budget, &mut summary, &mut files)?;
    let (report_sha256, written) = if keep_sums {
        let html = html::render(&summary, &walked.attention);
        write_small(out_dir, &summary, html.as_bytes())?;
        (sums::hex_of(html.as_bytes()), Vec::new())
    } else {
        let attention = &walked.attention;
        write_summaries(out_dir, &summary, attention, &hashes, opts.journal_sha256)?
    };
    if let Some(accumulator) = checkpoint {
        state::save(
            out_dir,
            &Checkpoint {
                built_from: summary.built_from.clone().expect("set above"),
                price_per_call,
                results: format,
                face_attributes: opts.include_face_attributes,
                sizes,
                hashes,
                accumulator,
                attention: walked.attention.snapshot(),
                written,
            },
        )?;
    }
    Ok(Outputs {
        summary,
        left: Vec::new(),
        all_left: false,
        rewritten_because: None,
        removed,
        report_sha256,
    })
}

/// Passes 1 and 2: each key's latest record, the order of the results and where the lines end;
/// then the summary, the union of carried columns and the attention rows. A scan that started
/// this journal gathered both as it wrote it (used when the journal is still the one it wrote).
fn first_passes(
    journal_path: &Path,
    out_dir: &Path,
    fed: Option<Feed>,
    extra_warnings: Vec<String>,
    budget: usize,
) -> Result<(Scanned, Accumulator, Walked), ReportError> {
    let fed = match fed.filter(|_| extra_warnings.is_empty()) {
        Some(feed) => feed
            .finish(journal_path, budget)
            .map_err(sort_err(out_dir))?,
        None => None,
    };
    let (mut scanned, summed) = match fed {
        Some(fed) => {
            tracing::debug!(
                summary = fed.summary.is_some(),
                "outputs from what the scan gathered as it wrote the journal"
            );
            (fed.scanned, fed.summary)
        }
        None => (latest::scan(journal_path, out_dir, budget)?, None),
    };
    let (acc, walked) = match summed {
        Some(summed) => summed,
        None => {
            let mut acc = Accumulator::new();
            for w in extra_warnings {
                acc.warn(w);
            }
            if let Some(t) = scanned.torn {
                acc.warn(torn_warning("the journal", t));
            }
            let (limit, latest) = (scanned.limit, &mut scanned.latest);
            walk_latest(journal_path, limit, latest, acc, out_dir, budget)?
        }
    };
    Ok((scanned, acc, walked))
}

/// A merge's shard coverage, and what `report` found checking the journal and the signatures,
/// into the summary.
fn with_evidence(summary: &mut Summary, shards: Option<Coverage>, evidence: Option<Evidence>) {
    if shards.is_some() {
        // A merge of shards: its coverage replaces any one shard's header.
        summary.shard = None;
        summary.shards = shards;
    }
    if let (Some(ev), Some(audit)) = (evidence, summary.audit.as_mut()) {
        // The whole journal's check finds what a chain check alone cannot (a record outside
        // any run, a request id twice, a seal that does not verify).
        if let Some(p) = ev.problem
            && audit.journal_chain.broken.is_none()
        {
            audit.journal_chain.state = "broken".into();
            audit.journal_chain.broken = Some(journal::ChainBreak {
                line: p.line,
                offset: p.offset,
                reason: p.reason,
            });
        }
        audit.signature = ev.signature;
        audit.disagreements = ev.disagreements;
    }
}

/// gone.csv (the keys whose source is gone, listed in SHA256SUMS and kept with the results
/// files) and changes.csv (the comparison with a baseline), written or removed; `files`: the
/// sizes and hashes of the files written, and the names of those removed.
fn gone_and_changes(
    out_dir: &Path,
    gone: Option<Sorted<(u64, u64, u64, u64)>>,
    baseline: Option<(&Path, f64)>,
    budget: usize,
    summary: &mut Summary,
    files: &mut (&mut Sizes, &mut Hashes, &mut Vec<String>),
) -> Result<(), ReportError> {
    let (sizes, hashes, removed) = files;
    if let Some(gone) = gone {
        let journal_path = out_dir.join(JOURNAL_FILE);
        let pairs = summary.is_face_match();
        let (len, sha) = super::gone::write(out_dir, &journal_path, gone, pairs)?;
        sizes.push((super::gone::GONE_FILE.to_string(), len));
        hashes.push((super::gone::GONE_FILE.to_string(), sha));
    } else if super::gone::remove_stale(out_dir)? {
        removed.push(super::gone::GONE_FILE.to_string());
    }
    let Some((dir, margin)) = baseline else {
        if super::baseline::remove_stale(out_dir)? {
            removed.push(super::baseline::CHANGES_FILE.to_string());
        }
        return Ok(());
    };
    let (changes, sha) = super::baseline::compare(out_dir, dir, margin, budget)?;
    for u in changes.unfair.iter().rev() {
        let warning = format!("the comparison with the baseline is not like for like: {u}");
        summary.warnings.insert(0, warning);
    }
    hashes.push((super::baseline::CHANGES_FILE.to_string(), sha));
    summary.changes = Some(changes);
    Ok(())
}

/// Name and size of each results file written.
type Sizes = Vec<(String, u64)>;
/// Name and SHA-256 (hex) of each results file written.
type Hashes = Vec<(String, String)>;

/// The results files side by side, one latest record at a time, read back by offset in input
/// order (`order`); returns each file's name and size.
fn write_results(
    out_dir: &Path,
    journal_path: &Path,
    order: Sorted<(u64, u64)>,
    layout: csv::Layout,
    simulated: bool,
    format: ResultsFormat,
) -> Result<(Sizes, Hashes), ReportError> {
    let csv_path = out_dir.join("results.csv");
    let json_path = out_dir.join("results.json");
    let jsonl_path = out_dir.join("results.jsonl");
    let create = |path: &Path, wanted: bool| {
        wanted
            .then(|| AtomicOut::create(path))
            .transpose()
            .map_err(io_err(path))
    };
    let layout_face = layout.face_attributes();
    let mut csv_file = create(&csv_path, true)?.expect("always written");
    let mut json_file = create(&json_path, format.json())?;
    let mut jsonl_file = create(&jsonl_path, format.jsonl())?;
    {
        let mut csv_out = csv::CsvOut::new(&mut csv_file, layout).map_err(io_err(&csv_path))?;
        let mut json_out = json_file
            .as_mut()
            .map(|f| JsonOut::with_shape(f, Shape::Array, simulated))
            .transpose()
            .map_err(io_err(&json_path))?;
        let mut jsonl_out = jsonl_file
            .as_mut()
            .map(|f| JsonOut::with_shape(f, Shape::Lines, simulated))
            .transpose()
            .map_err(io_err(&jsonl_path))?;
        let sort_err = sort_err(out_dir);
        let mut lines = LinesAt::open(journal_path)?;
        let mut object = Vec::with_capacity(4096);
        for next in order {
            let (_, offset) = next.map_err(&sort_err)?;
            let Line::Item(r) = lines.read(offset)? else {
                continue;
            };
            let mut r = *r;
            r.response = None;
            if !layout_face {
                // Data minimisation: a compliance report does not need them (the journal keeps
                // Didit's answer as received).
                if let Some(face) = r.face.as_mut() {
                    face.age = None;
                    face.gender = None;
                    face.bbox = None;
                }
            }
            r.action = Some(super::action::record_action(&r));
            csv_out.write(&r).map_err(io_err(&csv_path))?;
            if json_out.is_none() && jsonl_out.is_none() {
                continue;
            }
            json::encode(&r, simulated, &mut object).map_err(io_err(&json_path))?;
            if let Some(out) = json_out.as_mut() {
                out.write_encoded(&object).map_err(io_err(&json_path))?;
            }
            if let Some(out) = jsonl_out.as_mut() {
                out.write_encoded(&object).map_err(io_err(&jsonl_path))?;
            }
        }
        csv_out.finish().map_err(io_err(&csv_path))?;
        if let Some(out) = json_out {
            out.finish().map_err(io_err(&json_path))?;
        }
        if let Some(out) = jsonl_out {
            out.finish().map_err(io_err(&jsonl_path))?;
        }
    }
    let mut sizes = Vec::new();
    let mut hashes = Vec::new();
    for (name, path, file) in [
        ("results.json", &json_path, json_file),
        ("results.jsonl", &jsonl_path, jsonl_file),
        ("results.csv", &csv_path, Some(csv_file)),
    ] {
        if let Some(f) = file {
            let (len, sha) = f.commit().map_err(io_err(path))?;
            sizes.push((name.to_string(), len));
            hashes.push((name.to_string(), sha));
        }
    }
    sizes.sort();
    hashes.sort();
    Ok((sizes, hashes))
}

/// Remove the results file of the JSON form no longer written (after `--results-format`
/// changed), so it cannot be taken for a current one; returns the names removed.
fn remove_other_results(out_dir: &Path, format: ResultsFormat) -> Result<Vec<String>, ReportError> {
    let mut removed = Vec::new();
    for name in ["results.json", "results.jsonl"] {
        if format.files().contains(&name) {
            continue;
        }
        let path = out_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(name.to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::fixtures::{run_info, write_lines};
    use crate::journal::{Line, RunEnd};
    use crate::record::{Class, Decision, Record};

    /// A journal of 600 keys over two runs, records finishing out of input order, a third of
    /// the keys redone by the second run.
    fn journal(dir: &Path) {
        write_lines(&dir.join(JOURNAL_FILE), &journal_lines(true));
    }

    /// The lines of [`journal`]; without `second_run`, only the first run (every key once).
    fn journal_lines(second_run: bool) -> Vec<Line> {
        let mut lines = vec![Line::Run(run_info(false, false))];
        let record = |i: u64, class: Class, score: f64| {
            let mut r = Record {
                key: format!("key-{i:04}"),
                path: format!("{i}.jpg"),
                seq: Some(i),
                class: Some(class),
                status: (class == Class::Result).then_some(Decision::Approved),
                score: (class == Class::Result).then_some(score),
                attempts: 1,
                billed: class == Class::Result,
                ..Default::default()
            };
            r.columns.insert(format!("col{}", i % 3), i.to_string());
            Line::Item(Box::new(r.with_action()))
        };
        for i in 0..600u64 {
            let i = (i * 7919) % 600;
            let class = if i % 3 == 0 {
                Class::Transient
            } else {
                Class::Result
            };
            lines.push(record(i, class, (i % 100) as f64));
        }
        lines.push(Line::End(RunEnd::default()));
        if second_run {
            lines.push(Line::Run(run_info(true, false)));
            for i in (0..600u64).rev().filter(|i| i % 3 == 0) {
                lines.push(record(i, Class::Result, 50.0));
            }
            lines.push(Line::End(RunEnd::default()));
        }
        lines
    }

    /// Write `lines` as a new journal in `dir` with a [`Feed`] on the writer; returns the feed.
    fn fed_journal(dir: &Path, lines: &[Line]) -> Feed {
        let path = dir.join(JOURNAL_FILE);
        let w = crate::journal::Writer::open(&path, None).unwrap();
        let mut w = w.tapped(Some(Feed::new(dir)));
        for l in lines {
            w.append(l).unwrap();
        }
        let feed = w.take_tap().unwrap();
        w.finish().unwrap();
        feed
    }

    fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
        [
            "results.csv",
            "results.json",
            "results.jsonl",
            "summary.json",
            "summary.md",
            "report.html",
        ]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
    }

    #[test]
    fn spilling_to_disk_changes_nothing_in_the_outputs() {
        let opts = ReportOptions {
            results_format: Some(ResultsFormat::Both),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path());
        let in_memory = build(dir.path(), &opts, Inputs::default()).unwrap();
        let expected = outputs(dir.path());
        // 64 entries a run: every sort spills about ten runs
        let spilled = build_with(dir.path(), &opts, Inputs::default(), 64 * 16).unwrap();
        assert_eq!(spilled.summary, in_memory.summary);
        for ((f, got), (_, want)) in outputs(dir.path()).iter().zip(&expected) {
            assert!(got == want, "{f} differs");
        }
        assert_eq!(in_memory.summary.items.total, 600);
        assert_eq!(in_memory.summary.class_count(Class::Transient), 0);
        assert_eq!(in_memory.summary.credits.used, 600);
        let mut r = ::csv::Reader::from_path(dir.path().join("results.csv")).unwrap();
        let keys: Vec<String> = r.records().map(|x| x.unwrap()[0].to_string()).collect();
        let sorted: Vec<String> = (0..600).map(|i| format!("key-{i:04}")).collect();
        assert_eq!(keys, sorted, "input order whatever the finishing order");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("tmp") || n.contains("sort"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn gone_keys_leave_the_results_for_gone_csv_until_listed_again() {
        let opts = ReportOptions {
            results_format: Some(ResultsFormat::Both),
            ..Default::default()
        };
        let mut lines = journal_lines(true);
        lines.push(Line::Run(run_info(true, false)));
        for i in 0..30u64 {
            lines.push(Line::Gone(crate::journal::Gone {
                key: format!("key-{i:04}"),
                since: "2026-03-01T00:00:00Z".into(),
                run_id: Some("r3".into()),
            }));
        }
        // key-0001 is listed again.
        lines.push(Line::Unchanged(crate::journal::Unchanged {
            key: "key-0001".into(),
            version: "size=1 mtime=2026-03-02T00:00:00Z".into(),
            sha256: "ab".repeat(32),
            ref_sha256: None,
        }));
        lines.push(Line::End(RunEnd::default()));
        let mut built = Vec::new();
        for budget in [sort::BUDGET, 64 * 16] {
            let dir = tempfile::tempdir().unwrap();
            write_lines(&dir.path().join(JOURNAL_FILE), &lines);
            let out = build_with(dir.path(), &opts, Inputs::default(), budget).unwrap();
            let s = &out.summary;
            assert_eq!((s.items.total, s.items.gone), (571, 29));
            let keys = |name: &str| -> Vec<String> {
                let mut r = ::csv::Reader::from_path(dir.path().join(name)).unwrap();
                r.records().map(|x| x.unwrap()[0].to_string()).collect()
            };
            let gone = keys("gone.csv");
            let want: Vec<String> = (0..30)
                .filter(|i| *i != 1)
                .map(|i| format!("key-{i:04}"))
                .collect();
            assert_eq!(gone, want, "in input order");
            let results = keys("results.csv");
            assert_eq!(results.len(), 571);
            assert!(results.contains(&"key-0001".to_string()));
            assert!(!results.contains(&"key-0002".to_string()));
            let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
            assert!(sums.contains("  gone.csv"), "{sums}");
            // The rows (the summaries name their folder, a temporary one here).
            let mut files: Vec<_> = outputs(dir.path())
                .into_iter()
                .filter(|(name, _)| name.starts_with("results."))
                .collect();
            files.push((
                "gone.csv".into(),
                std::fs::read(dir.path().join("gone.csv")).unwrap(),
            ));
            built.push(files);
            // The same journal without its last run: gone.csv is removed.
            write_lines(&dir.path().join(JOURNAL_FILE), &journal_lines(true));
            let out = build_with(dir.path(), &opts, Inputs::default(), budget).unwrap();
            assert_eq!(out.summary.items.gone, 0);
            assert!(
                out.removed.contains(&"gone.csv".to_string()),
                "{:?}",
                out.removed
            );
            assert!(!dir.path().join("gone.csv").exists());
        }
        assert!(built[0] == built[1], "spilled sorts change nothing");
    }

    /// What a feed gathered as the journal was written builds exactly the outputs the journal
    /// builds: one run (every key once: passes 1 and 2 from the feed), two runs (keys redone:
    /// pass 2 reads the journal), with sorts in memory and spilled.
    #[test]
    fn outputs_from_a_feed_are_those_of_the_journal() {
        let opts = ReportOptions {
            results_format: Some(ResultsFormat::Both),
            ..Default::default()
        };
        for second_run in [false, true] {
            for budget in [sort::BUDGET, 64 * 16] {
                let dir = tempfile::tempdir().unwrap();
                let lines = journal_lines(second_run);
                write_lines(&dir.path().join(JOURNAL_FILE), &lines);
                let rebuilt = build_with(dir.path(), &opts, Inputs::default(), budget).unwrap();
                let expected = outputs(dir.path());

                let dir = tempfile::tempdir().unwrap();
                let feed = fed_journal(dir.path(), &lines);
                let fed = feed
                    .finish(&dir.path().join(JOURNAL_FILE), budget)
                    .unwrap()
                    .expect("the journal is the one fed");
                assert_eq!(
                    fed.summary.is_some(),
                    !second_run,
                    "a key redone needs pass 2"
                );

                let dir = tempfile::tempdir().unwrap();
                let feed = fed_journal(dir.path(), &lines);
                let fed = Inputs {
                    fed: Some(feed),
                    ..Default::default()
                };
                let built = build_with(dir.path(), &opts, fed, budget).unwrap();
                assert_eq!(built.summary.items, rebuilt.summary.items);
                let mut out_dir_free = built.summary.clone();
                out_dir_free.out_dir = rebuilt.summary.out_dir.clone();
                assert_eq!(out_dir_free, rebuilt.summary);
                for ((f, got), (_, want)) in outputs(dir.path()).iter().zip(&expected) {
                    if f.starts_with("summary") || f == "report.html" {
                        // They name the out dir, which differs here.
                        continue;
                    }
                    assert!(got == want, "{f} differs (second run: {second_run})");
                }
            }
        }
    }

    /// A feed vouches only for the journal it saw: one with a line appended since, a line
    /// changed in place or cut short, or a feed that could not take a line in, gives nothing,
    /// and the outputs are built from the journal.
    #[test]
    fn a_feed_is_not_trusted_with_another_journal() {
        use std::io::Write as _;
        let lines = journal_lines(false);
        let path_in = |dir: &tempfile::TempDir| dir.path().join(JOURNAL_FILE);
        let usable = |dir: &tempfile::TempDir, feed: Feed| {
            feed.finish(&path_in(dir), sort::BUDGET).unwrap().is_some()
        };

        let dir = tempfile::tempdir().unwrap();
        assert!(usable(&dir, fed_journal(dir.path(), &lines)));
        let dir = tempfile::tempdir().unwrap();
        let feed = fed_journal(dir.path(), &lines);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path_in(&dir))
            .unwrap();
        f.write_all(b"{\"type\":\"end\"}\n").unwrap();
        assert!(!usable(&dir, feed), "a line appended since");

        // The last item line, then the end line, changed in place (same length).
        for kind in [&b"\"type\":\"item\""[..], b"\"type\":\"end\""] {
            let dir = tempfile::tempdir().unwrap();
            let feed = fed_journal(dir.path(), &lines);
            let bytes = std::fs::read(path_in(&dir)).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let at = text
                .lines()
                .rev()
                .find(|l| l.as_bytes().windows(kind.len()).any(|w| w == kind))
                .map(|l| l.as_ptr() as usize - text.as_ptr() as usize)
                .unwrap();
            let mut bytes = text.into_bytes();
            let pos = at + bytes[at..].iter().position(|&b| b == b'}').unwrap() - 1;
            bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
            std::fs::write(path_in(&dir), &bytes).unwrap();
            assert!(!usable(&dir, feed), "a line changed in place");
        }

        let dir = tempfile::tempdir().unwrap();
        let feed = fed_journal(dir.path(), &lines);
        let len = std::fs::metadata(path_in(&dir)).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(path_in(&dir))
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(!usable(&dir, feed), "cut short");

        let dir = tempfile::tempdir().unwrap();
        let mut odd = lines.clone();
        if let Line::Item(r) = &mut odd[3] {
            r.class = None;
        }
        let feed = fed_journal(dir.path(), &odd);
        assert!(!usable(&dir, feed), "a record without a class");
        let fed = Inputs {
            fed: Some(fed_journal(tempfile::tempdir().unwrap().path(), &odd)),
            ..Default::default()
        };
        let err = build(dir.path(), &ReportOptions::default(), fed).unwrap_err();
        assert!(
            err.to_string().contains("without key or class"),
            "the journal's own pass refuses it: {err}"
        );
    }
}
