use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::fixtures::*;
use super::*;
use crate::record::Class;
use sha2::{Digest, Sha256};

#[test]
fn round_trips_lines_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    let lines = vec![
        run_line(),
        item("a", SHA_A, Class::Result),
        item("b", SHA_B, Class::Transient),
    ];
    write_lines(&p, &lines);
    let read: Vec<_> = Reader::open(&p).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(
        read.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
        lines
    );
    // offsets point at the lines
    let mut at = LinesAt::open(&p).unwrap();
    assert_eq!(at.read(read[2].0).unwrap(), lines[2]);
    assert_eq!(at.read(read[0].0).unwrap(), lines[0], "backwards");
    assert_eq!(
        at.read(read[1].0).unwrap(),
        lines[1],
        "forwards within the buffer"
    );
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// The fast paths for the writer's item and `sending` lines read what the generic parse
/// of the tagged line reads, and refuse what it refuses.
#[test]
fn item_and_sending_lines_parse_as_the_generic_parse_does() {
    let sending = Line::Sending(Sending {
        key: "a/b.jpg".into(),
    });
    for line in [sending, item("a", SHA_A, Class::Result), run_line()] {
        let raw = serde_json::to_vec(&line).unwrap();
        let generic: Line = serde_json::from_slice(&raw).unwrap();
        assert_eq!(Line::parse(&raw).unwrap(), generic);
        // Chained as written: the chain field is skipped by both.
        let chained = [&raw[..raw.len() - 1], br#","prev":"00"}"#].concat();
        assert_eq!(Line::parse(&chained).unwrap(), generic);
        assert_eq!(serde_json::from_slice::<Line>(&chained).unwrap(), generic);
    }
    for bad in [
        &br#"{"type":"sending","key":7}"#[..],
        br#"{"type":"sending","key":"a""#,
        br#"{"type":"sending","prev":"00"}"#,
    ] {
        assert!(
            Line::parse(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert!(serde_json::from_slice::<Line>(bad).is_err());
    }
}

/// Lines gathered are written together by the next flush (or sync), at the offsets given
/// when they were gathered, chained like lines appended one by one.
#[test]
fn gathered_lines_are_written_by_the_next_flush_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    let lines = [
        run_line(),
        item("a", SHA_A, Class::Result),
        item("b", SHA_B, Class::Transient),
        item("c", SHA_A, Class::Result),
    ];
    let mut w = Writer::open(&p, None).unwrap();
    let first = w.append(&lines[0]).unwrap();
    let size = std::fs::metadata(&p).unwrap().len();
    let offsets: Vec<u64> = lines[1..3].iter().map(|l| w.gather(l).unwrap()).collect();
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        size,
        "nothing written yet"
    );
    w.flush().unwrap();
    let last = w.gather(&lines[3]).unwrap();
    w.sync().unwrap();
    let read: Vec<_> = Reader::open(&p).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(
        read.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        [vec![first], offsets, vec![last]].concat()
    );
    assert_eq!(
        read.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
        lines
    );
    let mut chain = ChainCheck::new();
    for (offset, _) in &read {
        let text = std::fs::read(&p).unwrap();
        let raw = text[*offset as usize..]
            .split(|b| *b == b'\n')
            .next()
            .unwrap();
        chain.feed(*offset, raw);
    }
    assert!(
        chain.broken.is_none(),
        "the chain holds: {:?}",
        chain.broken
    );
}

/// Lines of every length (longer than a window too), read in order, out of order and
/// from the middle of the window, each exactly as written; a last line without its break
/// is read to the end of the file.
#[test]
fn lines_at_reads_every_line_at_its_offset_whatever_the_order_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    let mut text = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..400usize {
        offsets.push(text.len() as u64);
        // 3 bytes to about 200 KiB: lines shorter than, as long as and longer than a window.
        let len = match i % 7 {
            0 => 3,
            3 => 70_000 + i,
            5 => 200_000 + i,
            _ => 100 + i * 13,
        };
        text.extend(format!("\"{i}:{}\"\n", "x".repeat(len)).bytes());
    }
    offsets.push(text.len() as u64);
    text.extend(b"\"torn\"");
    std::fs::write(&p, &text).unwrap();
    let expect = |i: usize| -> String {
        let (a, b) = (
            offsets[i] as usize,
            offsets.get(i + 1).map_or(text.len(), |&o| o as usize),
        );
        String::from_utf8(text[a..b].trim_ascii_end().to_vec()).unwrap()
    };
    let mut at = LinesAt::open(&p).unwrap();
    let read = |at: &mut LinesAt, i: usize| -> String {
        at.read_with(offsets[i], |raw| {
            Ok(String::from_utf8(raw.to_vec()).unwrap())
        })
        .unwrap()
    };
    for i in 0..offsets.len() {
        assert_eq!(read(&mut at, i), expect(i), "in order, line {i}");
    }
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.reverse();
    order.extend((0..offsets.len()).map(|i| (i * 149) % offsets.len()));
    for i in order {
        assert_eq!(read(&mut at, i), expect(i), "out of order, line {i}");
    }
    // Past the end of the file: nothing to parse, a clear error, and reads go on after it.
    assert!(at.read(text.len() as u64 + 10).is_err());
    assert_eq!(read(&mut at, 1), expect(1));
}

#[test]
fn torn_last_line_is_reported_and_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    write_lines(&p, &[run_line(), item("a", SHA_A, Class::Result)]);
    let good = std::fs::metadata(&p).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(br#"{"type":"item","key":"b","pa"#).unwrap();
    drop(f);

    let mut reader = Reader::open(&p).unwrap();
    let index = Index::build(&mut reader).unwrap();
    assert_eq!(index.records, 1);
    let torn = reader.torn_tail().expect("torn tail detected");
    assert_eq!(torn.offset, good);
    assert_eq!(torn.line, 3);

    let mut w = Writer::open(&p, Some(reader.good_len())).unwrap();
    w.append(&item("b", SHA_B, Class::Result)).unwrap();
    w.finish().unwrap();
    let all: Vec<_> = Reader::open(&p).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 3);
}

#[test]
fn complete_last_line_without_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    let mut text = serde_json::to_string(&run_line()).unwrap();
    text.push('\n');
    text.push_str(&serde_json::to_string(&item("a", SHA_A, Class::Result)).unwrap());
    std::fs::write(&p, text).unwrap();
    let mut reader = Reader::open(&p).unwrap();
    let index = Index::build(&mut reader).unwrap();
    assert_eq!(index.records, 1);
    assert!(reader.torn_tail().is_none());
}

#[test]
fn damage_in_the_middle_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    let mut text = serde_json::to_string(&run_line()).unwrap();
    text.push_str("\n{not json\n");
    text.push_str(&serde_json::to_string(&item("a", SHA_A, Class::Result)).unwrap());
    text.push('\n');
    std::fs::write(&p, text).unwrap();
    let e = Index::build(&mut Reader::open(&p).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    let e = Reader::open(&p)
        .unwrap()
        .find_map(Result::err)
        .unwrap()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn a_file_that_is_not_a_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    std::fs::write(
        &p,
        format!(
            "{}\n",
            serde_json::to_string(&item("a", SHA_A, Class::Result)).unwrap()
        ),
    )
    .unwrap();
    let e = Index::build(&mut Reader::open(&p).unwrap()).unwrap_err();
    assert!(matches!(e, JournalError::NotAJournal { .. }), "{e}");
}

#[test]
fn a_rejection_of_a_rows_own_fields_is_never_reused_by_content() {
    assert!(reusable_record(Class::Result, None, true));
    assert!(reusable_record(Class::Rejected, Some("user_image"), false));
    assert!(reusable_record(Class::Rejected, None, false));
    assert!(!reusable_record(Class::Rejected, Some("user_image"), true));
    for field in ["metadata", "vendor_data", "something_new"] {
        assert!(
            !reusable_record(Class::Rejected, Some(field), false),
            "{field}"
        );
    }
    // The index of an earlier run agrees: a metadata rejection stands for no other row.
    let Line::Item(mut by_row) = item("row", SHA_A, Class::Rejected) else {
        unreachable!()
    };
    by_row.error_field = Some("metadata".into());
    let Line::Item(mut by_image) = item("img", SHA_B, Class::Rejected) else {
        unreachable!()
    };
    by_image.error_field = Some("user_image".into());
    let index = index_of(&[run_line(), Line::Item(by_row), Line::Item(by_image)]);
    assert_eq!(index.reusable(content_digest(SHA_A).unwrap(), false), None);
    assert!(
        index
            .reusable(content_digest(SHA_B).unwrap(), false)
            .is_some()
    );
}

#[test]
fn uploads_of_a_dead_run_are_orphans_until_recorded() {
    let sending = |k: &str| Line::Sending(Sending { key: k.into() });
    let end = Line::End(RunEnd::default());
    let index = index_of(&[
        // A clean run: its announced-and-recorded upload is no orphan.
        run_line(),
        sending("a"),
        item("a", SHA_A, Class::Result),
        end.clone(),
        // A run killed with "b" and "c" in flight.
        run_line(),
        sending("b"),
        sending("c"),
        // The next run records "b" (its record carried the charge), then dies with "c"
        // announced again.
        run_line(),
        item("b", SHA_B, Class::Result),
        sending("c"),
    ]);
    let keys: Vec<&str> = index.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["c", "c"], "each dead upload of c counts");
}

/// Keys the journal writes with escapes (quotes, backslashes, line breaks) are read back
/// whole by the index's light parse, as are plain ones it borrows from the line.
#[test]
fn keys_with_escapes_are_indexed_and_orphaned_whole() {
    let odd = "a \"quoted\" \\ key\nwith a break";
    let index = index_of(&[
        run_line(),
        item(odd, SHA_A, Class::Result),
        item("plain", SHA_B, Class::Transient),
        Line::End(RunEnd::default()),
        run_line(),
        Line::Sending(Sending { key: odd.into() }),
    ]);
    assert_eq!(index.class_of(key_digest(odd)), Some(Class::Result));
    assert_eq!(index.class_of(key_digest("plain")), Some(Class::Transient));
    let keys: Vec<&str> = index.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, [odd]);
}

#[test]
fn index_keeps_the_latest_record_per_key_and_checks_content() {
    let index = index_of(&[
        run_line(),
        item("a", SHA_A, Class::Transient),
        item("b", SHA_B, Class::Rejected),
        item("a", SHA_A, Class::Result),
    ]);
    let a = content_digest(SHA_A);
    let b = content_digest(SHA_B);
    assert!(index.is_done("a", a, false));
    assert!(index.is_done("a", a, true));
    assert!(
        !index.is_done("a", b, false),
        "changed content is screened again"
    );
    assert!(index.is_done("b", b, false));
    assert!(
        !index.is_done("b", b, true),
        "--retry-failed redoes rejected items"
    );
    assert!(!index.is_done("c", a, false));
    assert!(index.reusable(a.unwrap(), false).is_some());
    assert!(
        index.reusable(b.unwrap(), false).is_some(),
        "a rejection is reused..."
    );
    assert!(
        index.reusable(b.unwrap(), true).is_none(),
        "...unless --retry-failed"
    );
    assert_eq!(index.settings, Some(settings()));
    assert_eq!(index.runs, 1);
}

#[test]
fn latest_picks_each_keys_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    write_lines(
        &p,
        &[
            run_line(),
            item("a", SHA_A, Class::Transient),
            item("b", SHA_B, Class::Result),
            item("a", SHA_A, Class::Result),
        ],
    );
    let offsets: Vec<u64> = Reader::open(&p).unwrap().map(|l| l.unwrap().0).collect();
    let latest = Latest::build(&mut Reader::open(&p).unwrap()).unwrap();
    assert_eq!(latest.len(), 2);
    assert!(!latest.is_latest("a", offsets[1]));
    assert!(latest.is_latest("b", offsets[2]));
    assert!(latest.is_latest("a", offsets[3]));
    assert!(!latest.is_latest("c", offsets[3]));
}

#[test]
fn settings_differences_are_named() {
    let a = settings();
    let mut b = settings();
    assert!(b.differences(&a).is_empty());
    b.threshold = Some(50.0);
    b.save_api_request = true;
    let d = b.differences(&a);
    assert_eq!(d.len(), 2);
    assert!(d[0].contains("threshold") && d[0].contains("50"), "{d:?}");
    // emulator ports differ run to run; that is not a difference
    let mut s1 = settings();
    s1.simulated = true;
    s1.api_host = "127.0.0.1:1".into();
    let mut s2 = s1.clone();
    s2.api_host = "127.0.0.1:2".into();
    assert!(s2.differences(&s1).is_empty());
    // a local emulator restarted on another port is the same API; another host is not
    let mut l1 = settings();
    l1.api_host = "127.0.0.1:4000".into();
    let mut l2 = settings();
    l2.api_host = "localhost:5000".into();
    assert!(l2.differences(&l1).is_empty());
    let mut l3 = settings();
    l3.api_host = "[::1]:6000".into();
    assert!(l3.differences(&l1).is_empty());
    assert_eq!(settings().differences(&l1).len(), 1);
}

#[test]
fn lock_is_exclusive_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let first = DirLock::acquire(dir.path()).unwrap();
    let e = DirLock::acquire(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains(LOCK_FILE) && e.contains(&std::process::id().to_string()),
        "{e}"
    );
    drop(first);
    DirLock::acquire(dir.path()).unwrap();
}

/// The chain check of the journal at `p`, over its complete lines.
fn chain_of(p: &Path) -> ChainCheck {
    let mut check = ChainCheck::new();
    let mut reader = Reader::open(p).unwrap();
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next.unwrap();
        check.feed(offset, raw);
    }
    check
}

fn chained_journal(dir: &Path) -> (PathBuf, Vec<String>) {
    let p = dir.join(JOURNAL_FILE);
    write_lines(
        &p,
        &[
            run_line(),
            item("a", SHA_A, Class::Result),
            item("b", SHA_B, Class::Result),
            item("c", SHA_A, Class::Result),
            Line::End(RunEnd::default()),
        ],
    );
    let text = std::fs::read_to_string(&p).unwrap();
    (p, text.lines().map(str::to_string).collect())
}

fn write_text(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_chain_fed_the_writers_hashes_is_the_chain_fed_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = chained_journal(dir.path());
    let (mut hashed, mut wrong) = (ChainCheck::new(), ChainCheck::new());
    let mut reader = Reader::open(&p).unwrap();
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next.unwrap();
        let hash: [u8; 32] = Sha256::digest(raw).into();
        hashed.feed_hashed(offset, raw, &hash);
        // A hash that is not the line's: the next line no longer follows.
        let mut bad = hash;
        bad[0] ^= 1;
        wrong.feed_hashed(offset, raw, if offset == 0 { &bad } else { &hash });
    }
    let plain = chain_of(&p);
    assert_eq!(hashed.state(), plain.state());
    assert_eq!(hashed.head(), plain.head());
    assert_eq!(hashed.chained, plain.chained);
    assert_eq!(wrong.broken.map(|b| b.line), Some(2));
}

#[test]
fn every_line_carries_the_hash_of_the_line_before() {
    let dir = tempfile::tempdir().unwrap();
    let (p, lines) = chained_journal(dir.path());
    assert!(lines[0].ends_with(&format!(r#","prev":"{}"}}"#, "0".repeat(64))));
    let hash1 = hex::encode(Sha256::digest(lines[0].as_bytes()));
    assert!(
        lines[1].ends_with(&format!(r#""prev":"{hash1}"}}"#)),
        "{}",
        lines[1]
    );
    let check = chain_of(&p);
    assert_eq!(check.state(), "chained");
    assert_eq!(check.chained, 5);
    assert_eq!(
        check.head(),
        Some(hex::encode(Sha256::digest(lines[4].as_bytes())))
    );
    // Lines still parse as before.
    let read: Vec<_> = Reader::open(&p).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len(), 5);
}

#[test]
fn an_edit_a_removal_or_a_swap_is_found_at_the_first_line_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (p, lines) = chained_journal(dir.path());
    let broken_at = |lines: &[String]| {
        write_text(&p, lines);
        chain_of(&p).broken.map(|b| b.line)
    };
    let mut edited = lines.clone();
    edited[2] = edited[2].replace(r#""status":"Approved""#, r#""status":"Declined""#);
    assert_ne!(edited[2], lines[2]);
    assert_eq!(
        broken_at(&edited),
        Some(4),
        "an edit of line 3 shows at line 4"
    );
    let mut removed = lines.clone();
    removed.remove(1);
    assert_eq!(broken_at(&removed), Some(2));
    let mut first_removed = lines.clone();
    first_removed.remove(0);
    assert_eq!(broken_at(&first_removed), Some(1));
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_eq!(broken_at(&swapped), Some(3));
    let mut unchained_insert = lines.clone();
    unchained_insert.insert(
        2,
        serde_json::to_string(&item("x", SHA_A, Class::Result)).unwrap(),
    );
    assert_eq!(broken_at(&unchained_insert), Some(3));
    // A torn last line is not part of the chain: the complete lines still verify.
    write_text(&p, &lines);
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(br#"{"type":"item","key":"d","pa"#).unwrap();
    drop(f);
    let check = chain_of(&p);
    assert_eq!(check.state(), "chained", "{:?}", check.broken);
    // ... and a resume cuts it off and chains on from the last complete line.
    let mut reader = Reader::open(&p).unwrap();
    Index::build(&mut reader).unwrap();
    let mut w = Writer::open(&p, Some(reader.good_len())).unwrap();
    w.append(&item("d", SHA_B, Class::Result)).unwrap();
    w.finish().unwrap();
    let check = chain_of(&p);
    assert_eq!((check.state(), check.chained), ("chained", 6));
}

#[test]
fn lines_without_chain_hash_break_the_chain_and_a_later_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(JOURNAL_FILE);
    let plain: Vec<String> = [run_line(), item("a", SHA_A, Class::Result)]
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect();
    std::fs::write(&p, plain.join("\n")).unwrap();
    let check = chain_of(&p);
    assert_eq!((check.state(), check.broken.unwrap().line), ("broken", 1));

    // A chained last line that lost its line break is kept, and given one before appending.
    std::fs::remove_file(&p).unwrap();
    let mut w = Writer::open(&p, None).unwrap();
    w.append(&run_line()).unwrap();
    w.append(&item("a", SHA_A, Class::Result)).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
    let mut reader = Reader::open(&p).unwrap();
    assert_eq!(Index::build(&mut reader).unwrap().records, 1);
    let mut w = Writer::open(&p, Some(reader.good_len())).unwrap();
    w.append(&item("b", SHA_B, Class::Result)).unwrap();
    w.finish().unwrap();
    let check = chain_of(&p);
    assert_eq!((check.state(), check.chained), ("chained", 3));

    // A run header of a later format is refused, naming it; one without is of format 1.
    let mut header = serde_json::to_value(run_line()).unwrap();
    assert_eq!(header["format"], JOURNAL_FORMAT);
    header["format"] = (JOURNAL_FORMAT + 1).into();
    let e = serde_json::from_value::<Line>(header.clone())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("of format {}", JOURNAL_FORMAT + 1)),
        "{e}"
    );
    header.as_object_mut().unwrap().remove("format");
    let line: Line = serde_json::from_value(header).unwrap();
    assert!(matches!(line, Line::Run(r) if r.format == Format(1)));
}

#[test]
fn concatenated_journals_each_start_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (p, lines) = chained_journal(dir.path());
    let mut twice = lines.clone();
    twice.extend(lines.iter().cloned());
    write_text(&p, &twice);
    assert_eq!(chain_of(&p).state(), "chained");
    // but an item cannot start one
    let mut cut = lines.clone();
    cut.extend(lines[1..].iter().cloned());
    write_text(&p, &cut);
    assert_eq!(chain_of(&p).broken.unwrap().line, 6);
}

#[test]
fn digests_are_stable() {
    assert_eq!(key_digest("a"), key_digest("a"));
    assert_ne!(key_digest("a"), key_digest("b"));
    assert!(content_digest(SHA_A).is_some());
    let bytes: [u8; 32] = hex::decode(SHA_A).unwrap().try_into().unwrap();
    assert_eq!(content_digest(SHA_A), Some(content_digest_of(&bytes)));
    assert!(content_digest("zz").is_none());
}
