//! What each fuzz target does with one input, as plain functions over bytes: the fuzz targets
//! call them, and so does the regression test (`tests/it/fuzz_regressions.rs`) for every input
//! kept under `tests/fuzz_regressions/<target>/`. Each function drives the library's public API
//! the way the tool does and panics only when the library panics or breaks a stated invariant.
//!
//! Uses only `liveness_batch`, `axum`, `futures`, `rand` and the standard library, so that the
//! main crate's tests can include this file as a module.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use liveness_batch::didit::{Outcome, classify as classify_answer};
use liveness_batch::emulator::form;
use liveness_batch::input::{self, Event, SourceOptions};
use liveness_batch::journal::{Index, Latest, Line, LinesAt, Reader};
use liveness_batch::record::Record;
use liveness_batch::retry::{MAX_RATE_LIMIT_WAIT, RATE_LIMIT_JITTER, RetryPolicy};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A file holding one input, removed when dropped. Kept in a tmpfs when there is one, as the
/// manifest and journal readers only read files.
struct TempInput(PathBuf);

impl TempInput {
    fn new(extension: &str, bytes: &[u8]) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!(
            "liveness-batch-fuzz-{}-{}.{extension}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).expect("write the fuzz input to a temporary file");
        TempInput(path)
    }
}

impl Drop for TempInput {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `manifest`: the first byte chooses the column options, the rest is the CSV file. The manifest
/// is opened as `scan` opens it ([`input::open`]) and every event is read.
pub fn manifest(data: &[u8]) {
    let (flags, csv) = data.split_first().unwrap_or((&0, &[]));
    let opts = SourceOptions {
        track_duplicates: flags & 1 == 0,
        path_column: if flags & 2 == 0 { "path" } else { "file" }.to_string(),
        id_column: (flags & 4 != 0).then(|| "key".to_string()),
        vendor_data_column: (flags & 8 != 0).then(|| "user".to_string()),
        metadata_column: (flags & 16 != 0).then(|| "meta".to_string()),
        ..SourceOptions::default()
    };
    let file = TempInput::new("csv", csv);
    let Ok(sources) = input::open(std::slice::from_ref(&file.0), &opts) else {
        return;
    };
    let mut seq = 0;
    for event in sources {
        match event {
            Event::Item(item) => {
                assert_eq!(item.seq, seq, "items are numbered in input order");
                seq += 1;
                assert!(!item.key.is_empty(), "an item without a key: {item:?}");
                assert!(item.row.is_some(), "a manifest item without a row");
            }
            Event::Ignored { .. } | Event::Warning(_) => {}
            Event::Incomplete { .. } => panic!("a manifest file is read to its end or warns"),
        }
    }
}

/// `journal`: the bytes are a journal file. Every line is read ([`Reader`]), read again by its
/// offset ([`LinesAt`], as reports do) and written back to JSON and parsed again; then the
/// resume index ([`Index::build`]) and the latest-record map ([`Latest::build`]) are built.
pub fn journal(data: &[u8]) {
    let file = TempInput::new("jsonl", data);
    let mut lines = Vec::new();
    let mut reader = Reader::open(&file.0).expect("open the journal");
    let mut complete = true;
    for next in reader.by_ref() {
        match next {
            Ok(line) => lines.push(line),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    assert!(reader.good_len() <= data.len() as u64);
    if let Some(torn) = reader.torn_tail() {
        assert_eq!(
            torn.offset + torn.len,
            data.len() as u64,
            "a torn tail ends the file"
        );
    }

    let mut at = LinesAt::open(&file.0).expect("open the journal for reading by offset");
    for (offset, line) in &lines {
        let again = at
            .read(*offset)
            .expect("a line the reader parsed reads by offset");
        assert_eq!(
            &again, line,
            "the line at byte {offset} reads differently by offset"
        );
        let text = serde_json::to_vec(line).expect("a journal line serializes");
        let back: Line = serde_json::from_slice(&text).expect("a written line parses");
        let (back, line) = (json_of(&back), json_of(line));
        assert!(
            back == line,
            "a line changes when written and read back: {line} became {back}"
        );
    }

    let index = Reader::open(&file.0).and_then(|mut r| Index::build(&mut r));
    let latest = Reader::open(&file.0).and_then(|mut r| Latest::build(&mut r));
    if let (true, Ok(index), Ok(latest)) = (complete, index, latest) {
        let items: Vec<(u64, &Record)> = lines
            .iter()
            .filter_map(|(offset, line)| match line {
                Line::Item(rec) => Some((*offset, &**rec)),
                _ => None,
            })
            .collect();
        assert_eq!(index.records, items.len() as u64);
        for (offset, rec) in &items {
            let last = items.iter().rev().find(|(_, r)| r.key == rec.key);
            assert_eq!(
                latest.is_latest(&rec.key, *offset),
                last.map(|(o, _)| o) == Some(offset),
                "Latest disagrees about the record at byte {offset}"
            );
        }
    }
}

fn json_of(line: &Line) -> serde_json::Value {
    serde_json::to_value(line).expect("a journal line serializes")
}

/// `classify`: two bytes choose the HTTP status (100..=999, as a client can receive), then up to
/// five `\n`-separated header values (`Retry-After`, `X-RateLimit-Reset`, `X-RateLimit-Limit`,
/// `X-RateLimit-Remaining`, `Location`; empty = absent) and the body. The outcome is used as a
/// worker uses it: described, the 429 wait computed, a result turned into a journal record.
pub fn classify(data: &[u8]) {
    let (status, rest) = match data {
        [a, b, rest @ ..] => (100 + u16::from_le_bytes([*a, *b]) % 900, rest),
        _ => (200, data),
    };
    let mut pieces = rest.splitn(6, |b| *b == b'\n');
    let mut headers = HeaderMap::new();
    for name in [
        "retry-after",
        "x-ratelimit-reset",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "location",
    ] {
        let Some(value) = pieces.next() else { break };
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let body = pieces.next().unwrap_or_default();
    let outcome = classify_answer(status, &headers, body);

    let _ = outcome.to_string();
    let _ = (outcome.class(), outcome.billed_nothing(), outcome.field());
    match outcome {
        Outcome::RateLimited {
            retry_after,
            reset_at,
            ..
        } => {
            let policy = RetryPolicy::default();
            let mut rng = StdRng::seed_from_u64(u64::from(status));
            for retry in 0..=policy.max_retries {
                let wait = policy
                    .rate_limit_pause(retry, retry_after, reset_at, 1.78e9, &mut rng)
                    .wait;
                let most = MAX_RATE_LIMIT_WAIT.mul_f64(1.0 + RATE_LIMIT_JITTER);
                assert!(
                    wait <= most + Duration::from_millis(1),
                    "a 429 wait of {wait:?}"
                );
            }
        }
        Outcome::Result { response, raw } => {
            let mut rec = Record {
                key: "k".into(),
                ..Record::default()
            };
            response.fill_record(raw, &mut rec);
            let rec = rec.with_action();
            let line = Line::Item(Box::new(rec));
            let text = serde_json::to_vec(&line).expect("a record serializes");
            let back: Line = serde_json::from_slice(&text).expect("a written record parses");
            let (back, line) = (json_of(&back), json_of(&line));
            assert!(
                back == line,
                "a record changes when written and read back: {line} became {back}"
            );
        }
        _ => {}
    }
}

/// `form`: the first byte's length (0..=63) cuts the `Content-Type` header value off the front,
/// the rest is the request body. It is read as the emulator reads a `POST`
/// ([`form::read_form`]) and, when it parses, validated ([`form::validate`]).
pub fn form(data: &[u8]) {
    let (len, rest) = data.split_first().unwrap_or((&0, &[]));
    let cut = usize::from(len & 63).min(rest.len());
    let (content_type, body) = rest.split_at(cut);
    let mut request = axum::http::Request::builder();
    // A short fixed prefix lets the fuzzer reach the multipart parser without guessing it.
    let content_type = if len & 64 != 0 {
        [b"multipart/form-data; boundary=".as_slice(), content_type].concat()
    } else {
        content_type.to_vec()
    };
    if let Ok(value) = HeaderValue::from_bytes(&content_type) {
        request = request.header(CONTENT_TYPE, value);
    }
    let (parts, ()) = request.body(()).expect("a request head").into_parts();
    let raw = futures::executor::block_on(form::read_form(&parts, Bytes::copy_from_slice(body)));
    let Ok(raw) = raw else { return };
    let _ = serde_json::to_string(&raw.log_fields).expect("the log fields serialize");
    match form::validate(&raw) {
        Ok(valid) => {
            assert!(!valid.image.is_empty() && valid.image.len() <= form::MAX_IMAGE_BYTES);
            assert!((0.0..=100.0).contains(&valid.threshold));
        }
        Err(errors) => assert!(
            errors.as_object().is_some_and(|m| !m.is_empty()),
            "a refusal names its fields: {errors}"
        ),
    }
}
