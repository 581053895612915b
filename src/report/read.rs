//! Reading journal lines for the outputs, with [`Line::parse`] (an item line straight into its
//! record, without the buffering serde needs for an internally tagged enum), records without
//! Didit's answer.

use std::path::Path;

use crate::journal::{JournalError, Line};

/// One journal line (without its line break), an item's record without Didit's answer
/// (`response`), which no output shows ([`crate::record::without_response`]).
pub fn parse_line(raw: &[u8]) -> serde_json::Result<Line> {
    crate::record::without_response(|| Line::parse(raw))
}

/// Reads the lines that start at given offsets, nearly in order: the journal's
/// [`crate::journal::LinesAt`], each line parsed with [`parse_line`].
pub struct LinesAt(crate::journal::LinesAt);

impl LinesAt {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        crate::journal::LinesAt::open(path).map(Self)
    }

    /// The line that starts at `offset`.
    pub fn read(&mut self, offset: u64) -> Result<Line, JournalError> {
        self.0.read_with(offset, parse_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::fixtures::{SHA_A, item, run_line};
    use crate::record::{Class, Record};

    #[test]
    fn both_parses_agree_and_the_outputs_parse_leaves_the_answer_out() {
        let mut rec = match item("k", SHA_A, Class::Result) {
            Line::Item(r) => *r,
            _ => unreachable!(),
        };
        rec.score = Some(0.1 + 0.2);
        rec.columns.insert("type".into(), "run".into());
        rec.response =
            Some(serde_json::json!({"type": "x", "n": 1e300, "a": [{"b": null}]}).into());
        let without = Line::Item(Box::new(Record {
            response: None,
            ..rec.clone()
        }));
        for (line, for_outputs) in [
            (Line::Item(Box::new(rec)), without),
            (run_line(), run_line()),
        ] {
            let text = serde_json::to_vec(&line).unwrap();
            assert_eq!(parse_line(&text).unwrap(), for_outputs);
            // The generic parse (buffered for the tag) leaves it out the same way.
            assert_eq!(
                crate::record::without_response(|| serde_json::from_slice::<Line>(&text)).unwrap(),
                for_outputs
            );
            // Every other parse keeps the answer, before and after.
            assert_eq!(Line::parse(&text).unwrap(), line);
            assert_eq!(serde_json::from_slice::<Line>(&text).unwrap(), line);
        }
        assert!(parse_line(br#"{"type":"item","key":1}"#).is_err());
        // The answer left out is still checked.
        let head = r#"{"type":"item","key":"k","path":"p","sha256":null,"size_bytes":null,"format":null,"vendor_data":null,"metadata":null,"class":"result","action":null,"status":null,"score":null,"face_quality":null,"face_luminance":null,"face":null,"request_id":null,"created_at":null,"http_status":null,"latency_ms":null,"error":null,"error_field":null,"duplicate_of":null,"finished_at":null,"response":"#;
        assert!(parse_line([head, r#"{"a":1}}"#].concat().as_bytes()).is_ok());
        assert!(parse_line([head, r#"{"a":]}"#].concat().as_bytes()).is_err());
    }
}
