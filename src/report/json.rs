//! `results.json`: a JSON array of every item's latest record (without the raw API response),
//! streamed one record per line so memory never holds more than one.

use std::io::{self, Write};

use serde_json::Value;

use crate::record::Record;

use super::summary::record_action;

/// Streams records into a JSON array.
pub struct JsonOut<W: Write> {
    w: W,
    simulated: bool,
    rows: u64,
    buf: Vec<u8>,
}

impl<W: Write> JsonOut<W> {
    /// `simulated` adds `"simulated": true` to every object, so no result can be mistaken for Didit's.
    pub fn new(mut w: W, simulated: bool) -> io::Result<Self> {
        w.write_all(b"[")?;
        Ok(Self {
            w,
            simulated,
            rows: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Write one record. Callers that own the record should clear `response` and fill in
    /// `action` first (the fast path); otherwise a fixed-up copy is written.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        if r.response.is_some() || r.action.is_none() {
            let mut copy = Record {
                response: None,
                ..r.clone()
            };
            copy.action = Some(record_action(r));
            return self.write(&copy);
        }
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, r).map_err(io::Error::other)?;
        // Fields keep the record's order; the absent response is dropped from the end.
        const TAIL: &[u8] = b",\"response\":null}";
        if self.buf.ends_with(TAIL) {
            self.buf.truncate(self.buf.len() - TAIL.len());
        } else {
            // The record's field order changed: fall back to editing a JSON value.
            let mut v: Value = serde_json::from_slice(&self.buf).map_err(io::Error::other)?;
            if let Value::Object(map) = &mut v {
                map.remove("response");
            }
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, &v).map_err(io::Error::other)?;
            self.buf.pop();
        }
        if self.simulated {
            self.buf.extend_from_slice(b",\"simulated\":true");
        }
        self.buf.push(b'}');
        self.w
            .write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
        self.w.write_all(&self.buf)?;
        self.rows += 1;
        Ok(())
    }

    /// Close the array; returns the number of records written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.w.write_all(b"\n]\n")?;
        self.w.flush()?;
        Ok(self.rows)
    }
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
            response: Some(serde_json::json!({"big": "raw"})),
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
}
