use super::*;
use crate::journal::{Line, RunEnd, Writer};
use crate::record::{Class, Decision, Record};

fn run(resumed: bool, simulated: bool) -> Line {
    Line::Run(crate::journal::fixtures::run_info(resumed, simulated))
}

fn item(key: &str, class: Class, billed: bool, score: Option<f64>) -> Line {
    Line::Item(Box::new(
        Record {
            key: key.into(),
            path: format!("{key}.jpg"),
            class: Some(class),
            status: (class == Class::Result).then_some(Decision::Approved),
            score,
            billed,
            attempts: u32::from(class != Class::InvalidInput),
            ..Default::default()
        }
        .with_action(),
    ))
}

fn end() -> Line {
    Line::End(RunEnd {
        outcome: crate::journal::RunOutcome::Completed,
        wall_secs: 1.0,
        ..Default::default()
    })
}

fn journal(dir: &Path, lines: &[Line]) {
    let mut w = Writer::open(&dir.join(JOURNAL_FILE), None).unwrap();
    for l in lines {
        w.append(l).unwrap();
    }
    w.finish().unwrap();
}

fn csv_keys(dir: &Path) -> Vec<String> {
    let mut r = ::csv::Reader::from_path(dir.join("results.csv")).unwrap();
    r.records().map(|x| x.unwrap()[0].to_string()).collect()
}

#[test]
fn latest_record_wins_across_resumed_runs() {
    let dir = tempfile::tempdir().unwrap();
    journal(
        dir.path(),
        &[
            run(false, false),
            item("a", Class::Transient, false, None),
            item("b", Class::Result, true, Some(10.0)),
            end(),
            run(true, false),
            item("a", Class::Result, true, Some(95.0)),
            // b's image changed on disk and was screened again: billed twice
            item("b", Class::Result, true, Some(50.0)),
            end(),
        ],
    );
    let s = write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    assert_eq!(s.items.total, 2);
    assert_eq!(s.class_count(Class::Result), 2);
    assert_eq!(s.class_count(Class::Transient), 0);
    assert_eq!(
        s.credits.used, 3,
        "the superseded billed record still counts"
    );
    assert_eq!(s.scores.buckets[9].count, 1);
    assert_eq!(s.scores.buckets[5].count, 1);
    assert_eq!(s.scores.buckets[1].count, 0);
    assert_eq!(s.runs, 2);
    assert!(s.all_have_results());
    assert_eq!(
        csv_keys(dir.path()),
        ["a", "b"],
        "journal order of latest records"
    );
}

#[test]
fn torn_tail_is_a_warning_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    journal(
        dir.path(),
        &[run(false, true), item("a", Class::Result, true, Some(70.0))],
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_FILE))
        .unwrap();
    f.write_all(br#"{"type":"item","key":"b","pa"#).unwrap();
    drop(f);
    let s = write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    assert_eq!(s.items.total, 1);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("line 3") && s.warnings[0].contains("cut short"));
    assert_eq!(s.outcome, "incomplete");
    let text = s.render_text();
    assert!(
        text.contains("Warning: the journal's last line (line 3"),
        "{text}"
    );
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("cut short"));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("cut short"));
    assert!(html.contains(SIMULATED_NOTICE));
}

#[test]
fn missing_and_foreign_journals_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = write_outputs(dir.path(), &ReportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("holds no journal.jsonl"), "{e}");
    std::fs::write(
        dir.path().join(JOURNAL_FILE),
        "{\"type\":\"item\",\"key\":\"a\",\"class\":\"result\"}\n",
    )
    .unwrap();
    let e = write_outputs(dir.path(), &ReportOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not look like a liveness-batch journal"),
        "{e}"
    );
}

#[test]
fn merge_concatenates_complete_lines_only() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("merged");
    journal(
        a.path(),
        &[
            run(false, false),
            item("a1", Class::Result, true, Some(80.0)),
            end(),
        ],
    );
    journal(
        b.path(),
        &[
            run(false, false),
            item("b1", Class::Result, true, Some(80.0)),
        ],
    );
    // shard b's last line was torn
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(b.path().join(JOURNAL_FILE))
        .unwrap();
    f.write_all(b"{\"type\":\"end\",\"fin").unwrap();
    drop(f);
    let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
    let s = merge(&dirs, &out, &ReportOptions::default()).unwrap();
    assert_eq!(s.items.total, 2);
    assert_eq!(s.journals, 2);
    assert!(
        s.warnings.iter().any(|w| w.contains("cut short")),
        "{:?}",
        s.warnings
    );
    let lines: Vec<_> = Reader::open(&out.join(JOURNAL_FILE))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines.len(), 5);
    // a second merge replaces the merge's own journal
    merge(&dirs, &out, &ReportOptions::default()).unwrap();
    // but not once something was appended to it
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join(JOURNAL_FILE))
        .unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    let e = merge(&dirs, &out, &ReportOptions::default()).unwrap_err();
    assert!(matches!(e, ReportError::OutHoldsJournal { .. }), "{e}");
}

/// A face match scan's journal: two pairs with a result, one whose reference was not found.
fn face_match_journal(dir: &Path) {
    use super::summary::fixtures::{pair, run_of};
    let mut missing = pair("u3", "refs/u3.jpg", None, &[]);
    missing.reference = None;
    missing.ref_sha256 = None;
    missing.class = Some(Class::InvalidInput);
    missing.status = None;
    missing.billed = false;
    missing.attempts = 0;
    missing.error = Some("no reference image: refs/u3.jpg is missing".into());
    let low = [("LOW_FACE_MATCH_SIMILARITY", "error")];
    journal(
        dir,
        &[
            Line::Run(run_of("face-match", false)),
            Line::Item(Box::new(pair("u1", "refs/u1.jpg", Some(93.0), &[]))),
            Line::Item(Box::new(pair("u2", "=refs/u2.jpg", Some(14.5), &low))),
            Line::Item(Box::new(missing.with_action())),
            end(),
        ],
    );
}

#[test]
fn face_match_results_name_each_pair_and_calls_cost_face_matchs_price() {
    let dir = tempfile::tempdir().unwrap();
    face_match_journal(dir.path());
    let opts = ReportOptions {
        results_format: Some(ResultsFormat::Both),
        ..Default::default()
    };
    let s = write_outputs(dir.path(), &opts).unwrap();
    assert_eq!(
        s.credits.price_per_call_usd, 0.05,
        "face match's list price"
    );
    assert_eq!(s.credits.estimated_cost_usd, 0.10);

    let mut r = ::csv::Reader::from_path(dir.path().join("results.csv")).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(head[..3], ["key", "reference", "action"]);
    let at = |name: &str| head.iter().position(|h| h == name).unwrap();
    assert_eq!(at("ref_sha256"), at("sha256") + 1);
    let rows: Vec<::csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let cells = |name: &str| -> Vec<&str> { rows.iter().map(|row| &row[at(name)]).collect() };
    assert_eq!(cells("reference"), ["refs/u1.jpg", "'=refs/u2.jpg", ""]);
    assert_eq!(
        cells("ref_sha256"),
        ["bb".repeat(32), "bb".repeat(32), String::new()]
    );
    assert_eq!(cells("score"), ["93", "14.5", ""]);

    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(
        json[1]["reference"], "=refs/u2.jpg",
        "JSON keeps the value as is"
    );
    assert_eq!(json[1]["ref_sha256"], "bb".repeat(32));
    assert!(json[2].get("reference").is_none(), "none was found");
    let lines = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first, json[0], "results.jsonl holds the same objects");

    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<h2>Face match similarity scores</h2>"));
    assert!(
        html.contains(
            "<th>Selfie key</th><th>Reference</th><th>Decision</th><th class=\"n\">Similarity</th>"
        ),
        "the attention table names both keys"
    );
    assert!(html.contains("<code>u2</code></td><td class=\"wrap\"><code>=refs/u2.jpg</code></td><td>Declined</td><td class=\"n\">14.5</td>"));
    assert!(
        html.contains("<code>u3</code></td><td class=\"muted\">—</td>"),
        "no reference found: a dash in its place"
    );
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("face match threshold 30"), "{md}");

    // A liveness journal has no reference columns.
    let plain = tempfile::tempdir().unwrap();
    journal(
        plain.path(),
        &[
            run(false, false),
            item("a", Class::Result, true, Some(80.0)),
            item("b", Class::InvalidInput, false, None),
            end(),
        ],
    );
    write_outputs(plain.path(), &ReportOptions::default()).unwrap();
    let mut r = ::csv::Reader::from_path(plain.path().join("results.csv")).unwrap();
    let head = r.headers().unwrap().clone();
    assert!(
        head.iter().all(|h| h != "reference" && h != "ref_sha256"),
        "{head:?}"
    );
    let html = std::fs::read_to_string(plain.path().join("report.html")).unwrap();
    assert!(html.contains("<th>Key</th><th>Decision</th><th class=\"n\">Score</th>"));
    assert!(!html.contains("Selfie key") && !html.contains("<th>Reference</th>"));
}

/// The checkpoint records the price the summary was priced at, so a scan at the check's list
/// price leaves outputs a `report` without `--price-per-call` built, and another price does not.
#[test]
fn the_checkpoint_compares_the_price_the_summary_was_priced_at() {
    let dir = tempfile::tempdir().unwrap();
    face_match_journal(dir.path());
    write_outputs(dir.path(), &ReportOptions::default()).unwrap();
    let at = |price: Option<f64>| ReportOptions {
        price_per_call: price,
        ..Default::default()
    };
    let other = state::refresh(dir.path(), &at(Some(0.10)), &[]).unwrap();
    assert!(other.is_none(), "liveness's price: rebuilt");
    let same = state::refresh(dir.path(), &at(Some(0.05)), &[]).unwrap();
    let same = same.expect("face match's list price, as the outputs were priced");
    assert!(same.all_left, "{:?}", same.notes());
    assert_eq!(same.summary.credits.price_per_call_usd, 0.05);
    let unasked = state::refresh(dir.path(), &at(None), &[]).unwrap();
    assert!(unasked.is_some_and(|o| o.all_left));
}
