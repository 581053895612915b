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
