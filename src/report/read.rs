//! Reading journal lines for the outputs, with [`Line::parse`] (an item line straight into its
//! record, without the buffering serde needs for an internally tagged enum).

use std::path::Path;

use crate::journal::{JournalError, Line};

/// One journal line (without its line break).
pub fn parse_line(raw: &[u8]) -> serde_json::Result<Line> {
    Line::parse(raw)
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
    use crate::record::Class;

    #[test]
    fn both_parses_agree() {
        let mut rec = match item("k", SHA_A, Class::Result) {
            Line::Item(r) => *r,
            _ => unreachable!(),
        };
        rec.score = Some(0.1 + 0.2);
        rec.columns.insert("type".into(), "run".into());
        rec.response = Some(serde_json::json!({"type": "x", "n": 1e300}));
        for line in [Line::Item(Box::new(rec)), run_line()] {
            let text = serde_json::to_vec(&line).unwrap();
            assert_eq!(parse_line(&text).unwrap(), line);
            assert_eq!(
                parse_line(&text).unwrap(),
                serde_json::from_slice::<Line>(&text).unwrap()
            );
        }
        assert!(parse_line(br#"{"type":"item","key":1}"#).is_err());
    }
}
