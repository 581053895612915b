//! Reading journal lines for the outputs, faster than the generic [`Line`] parse: an item line
//! as the journal writer writes it (`{"type":"item",` first) is parsed straight into its
//! [`Record`], without the buffering serde needs for an internally tagged enum (about a fifth
//! of the time of a large build); any other line takes the generic parse.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::journal::{JournalError, Line};
use crate::record::Record;

/// How every item line the journal writer writes begins.
const ITEM_PREFIX: &[u8] = br#"{"type":"item","#;

/// One journal line (without its line break).
pub fn parse_line(raw: &[u8]) -> serde_json::Result<Line> {
    if raw.starts_with(ITEM_PREFIX) {
        // The tag is a field the record does not know: skipped like any other.
        return serde_json::from_slice::<Record>(raw).map(|r| Line::Item(Box::new(r)));
    }
    serde_json::from_slice(raw)
}

/// Reads the lines that start at given offsets, nearly in order: offsets close ahead are read
/// from the buffer without seeking (what [`crate::journal::LinesAt`] does, with [`parse_line`]).
pub struct LinesAt {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    buf: Vec<u8>,
}

impl LinesAt {
    const BUFFER: usize = 64 * 1024;

    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let file = super::state::open_read(path).map_err(JournalError::io("open", path))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(Self::BUFFER, file),
            pos: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The line that starts at `offset`.
    pub fn read(&mut self, offset: u64) -> Result<Line, JournalError> {
        let io_err = |source| JournalError::Io {
            op: "read",
            path: self.path.clone(),
            source,
        };
        let ahead = offset.wrapping_sub(self.pos) as i64;
        if (0..Self::BUFFER as i64).contains(&ahead) {
            self.reader.seek_relative(ahead).map_err(io_err)?;
        } else {
            self.reader.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        }
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(io_err)?;
        self.pos = offset + n as u64;
        parse_line(self.buf.trim_ascii_end()).map_err(|e| JournalError::Corrupt {
            path: self.path.clone(),
            line: 0,
            message: format!("record at byte {offset}: {e}"),
        })
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
