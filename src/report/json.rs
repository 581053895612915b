//! `results.json` (a JSON array) and `results.jsonl` (one JSON object a line): every item's
//! latest record without the raw API response, the same object in both, streamed one record at
//! a time so memory never holds more than one.

use std::io::{self, Write};

use serde_json::Value;

use crate::record::Record;

use super::action::record_action;

/// How the records are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `results.json`: one JSON array, a record a line between `[` and `]`.
    Array,
    /// `results.jsonl`: one record a line and nothing else, for files too large to load whole.
    Lines,
}

/// Streams records into a JSON array or JSON lines.
pub struct JsonOut<W: Write> {
    w: W,
    shape: Shape,
    simulated: bool,
    rows: u64,
    buf: Vec<u8>,
}

impl<W: Write> JsonOut<W> {
    /// `simulated` adds `"simulated": true` to every object, so no result can be mistaken for Didit's.
    pub fn new(w: W, simulated: bool) -> io::Result<Self> {
        Self::with_shape(w, Shape::Array, simulated)
    }

    pub fn with_shape(mut w: W, shape: Shape, simulated: bool) -> io::Result<Self> {
        if shape == Shape::Array {
            w.write_all(b"[")?;
        }
        Ok(Self {
            w,
            shape,
            simulated,
            rows: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Write one record. Callers that own the record should clear `response` and fill in
    /// `action` first (the fast path); otherwise a fixed-up copy is written.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let written = encode(r, self.simulated, &mut buf).and_then(|()| self.write_encoded(&buf));
        self.buf = buf;
        written
    }

    /// Write one record already encoded by [`encode`] (with the same `simulated`).
    pub fn write_encoded(&mut self, object: &[u8]) -> io::Result<()> {
        match self.shape {
            Shape::Array => {
                self.w
                    .write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
                self.w.write_all(object)?;
            }
            Shape::Lines => {
                self.w.write_all(object)?;
                self.w.write_all(b"\n")?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Close the array; returns the number of records written.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.shape == Shape::Array {
            self.w.write_all(b"\n]\n")?;
        }
        self.w.flush()?;
        Ok(self.rows)
    }
}

/// One record as the JSON object both files hold, into `buf` (cleared first): the record's
/// fields in their order without `response`, then `"simulated": true` when `simulated`.
pub fn encode(r: &Record, simulated: bool, buf: &mut Vec<u8>) -> io::Result<()> {
    if r.response.is_some() || r.action.is_none() {
        let mut copy = Record {
            response: None,
            ..r.clone()
        };
        copy.action = Some(record_action(r));
        return encode(&copy, simulated, buf);
    }
    buf.clear();
    serde_json::to_writer(&mut *buf, r).map_err(io::Error::other)?;
    // Fields keep the record's order; the absent response is dropped from the end.
    const TAIL: &[u8] = b",\"response\":null}";
    if buf.ends_with(TAIL) {
        buf.truncate(buf.len() - TAIL.len());
    } else {
        // The record's field order changed: fall back to editing a JSON value.
        let mut v: Value = serde_json::from_slice(buf).map_err(io::Error::other)?;
        if let Value::Object(map) = &mut v {
            map.remove("response");
        }
        buf.clear();
        serde_json::to_writer(&mut *buf, &v).map_err(io::Error::other)?;
        buf.pop();
    }
    if simulated {
        buf.extend_from_slice(b",\"simulated\":true");
    }
    buf.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Class, Decision};

    #[test]
    fn array_of_records_without_response() {
        let r = Record {
            key: "a".into(),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            vendor_data: Some("=HYPERLINK(\"http://x\")".into()),
            response: Some(serde_json::json!({"big": "raw"}).into()),
            ..Default::default()
        };
        let mut buf = Vec::new();
        let mut out = JsonOut::new(&mut buf, true).unwrap();
        out.write(&r).unwrap();
        out.write(&Record {
            key: "b".into(),
            ..r
        })
        .unwrap();
        assert_eq!(out.finish().unwrap(), 2);
        let v: Vec<Value> = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].get("response").is_none());
        assert_eq!(
            v[0]["vendor_data"], "=HYPERLINK(\"http://x\")",
            "JSON keeps the value as is"
        );
        assert_eq!(v[0]["action"], "proceed");
        assert_eq!(v[0]["simulated"], true);
        assert_eq!(v[1]["key"], "b");
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.starts_with("[\n{\"key\":\"a\",\"path\""),
            "record field order kept: {text}"
        );
        let back: Record = serde_json::from_value(v[0].clone()).unwrap();
        assert_eq!(back.key, "a");
    }

    #[test]
    fn empty_array_and_no_stamp_when_real() {
        let mut buf = Vec::new();
        let out = JsonOut::new(&mut buf, false).unwrap();
        assert_eq!(out.finish().unwrap(), 0);
        let v: Vec<Value> = serde_json::from_slice(&buf).unwrap();
        assert!(v.is_empty());

        let mut buf = Vec::new();
        let mut out = JsonOut::new(&mut buf, false).unwrap();
        out.write(&Record::default()).unwrap();
        out.finish().unwrap();
        let v: Vec<Value> = serde_json::from_slice(&buf).unwrap();
        assert!(v[0].get("simulated").is_none());
    }

    #[test]
    fn lines_hold_the_same_objects_one_a_line() {
        let r = Record {
            key: "a\nb".into(),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            error: Some("two\nlines".into()),
            response: Some(serde_json::json!({"big": "raw"}).into()),
            ..Default::default()
        };
        let mut array = Vec::new();
        let mut lines = Vec::new();
        let mut a = JsonOut::new(&mut array, true).unwrap();
        let mut l = JsonOut::with_shape(&mut lines, Shape::Lines, true).unwrap();
        for key in ["x", "y"] {
            let r = Record {
                key: key.into(),
                ..r.clone()
            };
            a.write(&r).unwrap();
            l.write(&r).unwrap();
        }
        a.finish().unwrap();
        assert_eq!(l.finish().unwrap(), 2);
        let text = String::from_utf8(lines).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        let from_lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let from_array: Vec<Value> = serde_json::from_slice(&array).unwrap();
        assert_eq!(from_lines, from_array);
        assert_eq!(from_lines[1]["key"], "y");
        assert!(from_lines[0].get("response").is_none());
        let empty = JsonOut::with_shape(Vec::new(), Shape::Lines, false).unwrap();
        assert_eq!(empty.finish().unwrap(), 0);
    }

    #[test]
    fn a_pair_carries_its_reference_under_the_csv_columns_names() {
        let pair = Record {
            key: "u1".into(),
            sha256: Some("aa".repeat(32)),
            reference: Some("refs/u1.jpg".into()),
            ref_sha256: Some("bb".repeat(32)),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            ..Default::default()
        };
        let mut buf = Vec::new();
        encode(&pair, false, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        for name in crate::report::csv::REFERENCE_COLUMNS {
            assert!(v.get(name).is_some_and(Value::is_string), "{name}: {v}");
        }
        assert_eq!(v["reference"], "refs/u1.jpg");
        let order: Vec<&String> = v.as_object().unwrap().keys().collect();
        let at = |k: &str| order.iter().position(|o| *o == k).unwrap();
        assert_eq!(at("ref_sha256"), at("reference") + 1);
        assert_eq!(at("reference"), at("sha256") + 1);
        // A single image's record has neither.
        encode(
            &Record {
                reference: None,
                ref_sha256: None,
                ..pair
            },
            false,
            &mut buf,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert!(
            v.get("reference").is_none() && v.get("ref_sha256").is_none(),
            "{v}"
        );
    }
}
