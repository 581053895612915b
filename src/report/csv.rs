//! `results.csv`: one row per item (its latest record), our columns then the manifest's carried
//! columns, every text cell escaped so a spreadsheet never runs it as a formula.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, Write};

use crate::record::{Class, Record};

use super::action::record_action;

/// Our columns, in order. Carried manifest columns follow (and `simulated` before them when
/// the journal is simulated).
pub const COLUMNS: [&str; 35] = [
    "key",
    "reference",
    "action",
    "class",
    "status",
    "score",
    "estimated_age",
    "face_quality",
    "face_luminance",
    "risks",
    "risk_levels",
    "age",
    "gender",
    "face_confidence",
    "bbox",
    "vendor_data",
    "metadata",
    "path",
    "source",
    "sha256",
    "ref_sha256",
    "size_bytes",
    "format",
    "request_id",
    "created_at",
    "http_status",
    "attempts",
    "rate_limited",
    "possible_double_charges",
    "billed",
    "latency_ms",
    "error",
    "error_field",
    "duplicate_of",
    "finished_at",
];

/// Didit's estimated age, gender and face box: left out of the results unless asked for.
pub const FACE_ATTRIBUTES: [&str; 3] = ["age", "gender", "bbox"];

/// The pair's second image (face match runs only): the reference as given or found (the
/// pair's second key), and its SHA-256.
pub const REFERENCE_COLUMNS: [&str; 2] = ["reference", "ref_sha256"];

/// Written first so spreadsheets open the file as UTF-8.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The extra column present when results came from the emulator.
pub const SIMULATED_COLUMN: &str = "simulated";

/// A text cell made safe for spreadsheets: a value beginning with `=`, `+`, `-`, `@`, tab or
/// carriage return gets a leading `'` so it is shown as text, never evaluated as a formula.
pub fn escape_cell(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

/// The header name for a carried column: its own name unless that collides with one of ours
/// (or with another header), then `manifest.<name>` (repeated until unique).
fn carried_header(name: &str, taken: &BTreeSet<String>) -> String {
    let mut h = name.to_string();
    while taken.contains(&h) {
        h = format!("manifest.{h}");
    }
    h
}

/// The column layout of one results.csv: fixed once the union of carried columns is known.
#[derive(Debug, Clone)]
pub struct Layout {
    simulated: bool,
    /// Whether the age, gender and bbox columns are written (`--include-face-attributes`).
    face: bool,
    /// Whether `estimated_age` is written (age estimation runs).
    ages: bool,
    /// Whether `reference` and `ref_sha256` are written (face match runs).
    references: bool,
    /// (name in the record's `columns`, header written)
    carried: Vec<(String, String)>,
}

impl Layout {
    /// `carried` is the union of manifest column names over the records written.
    pub fn new(simulated: bool, carried: &BTreeSet<String>) -> Self {
        let mut taken: BTreeSet<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
        // `simulated` is reserved whether or not this journal uses it, so headers are stable.
        taken.insert(SIMULATED_COLUMN.to_string());
        // A carried name that is already `manifest.x` keeps priority over a renamed `x`.
        taken.extend(carried.iter().cloned());
        let carried = carried
            .iter()
            .map(|name| {
                let reserved = COLUMNS.contains(&name.as_str()) || name == SIMULATED_COLUMN;
                let header = if reserved {
                    let h = carried_header(name, &taken);
                    taken.insert(h.clone());
                    h
                } else {
                    name.clone()
                };
                (name.clone(), header)
            })
            .collect();
        Self {
            simulated,
            face: false,
            ages: false,
            references: false,
            carried,
        }
    }

    /// Write the `estimated_age` column (age estimation runs).
    pub fn with_estimated_ages(mut self, yes: bool) -> Self {
        self.ages = yes;
        self
    }

    /// Write the `reference` and `ref_sha256` columns (face match runs).
    pub fn with_references(mut self, yes: bool) -> Self {
        self.references = yes;
        self
    }

    /// Write the estimated age, gender and face box columns too.
    pub fn with_face_attributes(mut self, yes: bool) -> Self {
        self.face = yes;
        self
    }

    pub fn face_attributes(&self) -> bool {
        self.face
    }

    /// Whether our column `name` is written.
    fn written(&self, name: &str) -> bool {
        (self.face || !FACE_ATTRIBUTES.contains(&name))
            && (self.ages || name != "estimated_age")
            && (self.references || !REFERENCE_COLUMNS.contains(&name))
    }

    pub fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = COLUMNS
            .iter()
            .filter(|c| self.written(c))
            .map(|c| c.to_string())
            .collect();
        if self.simulated {
            h.push(SIMULATED_COLUMN.to_string());
        }
        h.extend(
            self.carried
                .iter()
                .map(|(_, header)| escape_cell(header).into_owned()),
        );
        h
    }

    /// The cells of one record's row, already escaped.
    pub fn row(&self, r: &Record) -> Vec<String> {
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let int = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        let text = |v: Option<&str>| escape_cell(v.unwrap_or("")).into_owned();
        let face = r.face.as_ref();
        let risks = r.risks().join(";");
        let levels = r
            .warnings
            .iter()
            .map(|w| format!("{}:{}", w.risk, w.log_type))
            .collect::<Vec<_>>()
            .join(";");
        let bbox = face.and_then(|f| f.bbox.as_ref()).map(|b| {
            b.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let metadata = r
            .metadata
            .as_ref()
            .filter(|m| !m.is_null())
            .map(|m| serde_json::to_string(m).unwrap_or_default());
        let mut cells = vec![
            text(Some(&r.key)),
            text(r.reference.as_deref()),
            record_action(r).as_str().to_string(),
            r.class.unwrap_or(Class::Interrupted).as_str().to_string(),
            r.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            num(r.score),
            num(r.estimated_age),
            num(r.face_quality),
            num(r.face_luminance),
            text(Some(&risks)),
            text(Some(&levels)),
            num(face.and_then(|f| f.age)),
            text(face.and_then(|f| f.gender.as_deref())),
            num(face.and_then(|f| f.confidence)),
            text(bbox.as_deref()),
            text(r.vendor_data.as_deref()),
            text(metadata.as_deref()),
            text(Some(&r.path)),
            text(Some(&r.source)),
            text(r.sha256.as_deref()),
            text(r.ref_sha256.as_deref()),
            int(r.size_bytes),
            text(r.format.as_deref()),
            text(r.request_id.as_deref()),
            text(r.created_at.as_deref()),
            int(r.http_status.map(u64::from)),
            r.attempts.to_string(),
            r.rate_limited.to_string(),
            r.possible_double_charges.to_string(),
            r.billed.to_string(),
            int(r.latency_ms),
            text(r.error.as_deref()),
            text(r.error_field.as_deref()),
            text(r.duplicate_of.as_deref()),
            text(r.finished_at.as_deref()),
        ];
        debug_assert_eq!(cells.len(), COLUMNS.len());
        if !(self.face && self.ages && self.references) {
            let mut i = 0;
            cells.retain(|_| {
                let keep = self.written(COLUMNS[i]);
                i += 1;
                keep
            });
        }
        if self.simulated {
            cells.push("true".into());
        }
        for (name, _) in &self.carried {
            cells.push(text(r.columns.get(name).map(String::as_str)));
        }
        cells
    }
}

/// Streams rows into a CSV file: the header on creation, then one row per record.
pub struct CsvOut<W: Write> {
    writer: csv::Writer<W>,
    layout: Layout,
    rows: u64,
}

impl<W: Write> CsvOut<W> {
    /// Starts with a UTF-8 byte-order mark so spreadsheet programs read non-ASCII text (names,
    /// paths) as UTF-8; CSV libraries skip it.
    pub fn new(mut w: W, layout: Layout) -> io::Result<Self> {
        w.write_all(UTF8_BOM)?;
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(w);
        writer.write_record(layout.header())?;
        Ok(Self {
            writer,
            layout,
            rows: 0,
        })
    }

    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        self.writer.write_record(self.layout.row(r))?;
        self.rows += 1;
        Ok(())
    }

    /// Flush; returns the number of rows written (header excluded).
    pub fn finish(mut self) -> io::Result<u64> {
        self.writer.flush()?;
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Decision, FaceRecord, WarningRecord};

    fn read_back(bytes: &[u8]) -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes)
            .records()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn formula_starts_are_escaped() {
        for s in [
            "=1+1",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"http://x\")",
        ] {
            assert_eq!(escape_cell(s), format!("'{s}"), "{s:?}");
        }
        for s in ["", "abc", "1", " =1", "'=1", "a=b", "\nx"] {
            assert_eq!(escape_cell(s), s, "{s:?}");
        }
    }

    #[test]
    fn rows_survive_quotes_commas_newlines_and_formulas() {
        let mut carried = BTreeSet::new();
        carried.insert("note".to_string());
        let layout = Layout::new(false, &carried).with_face_attributes(true);
        let mut rec = Record {
            key: "k,1".into(),
            path: "dir/\"quoted\".jpg".into(),
            vendor_data: Some("=HYPERLINK(\"http://x\")".into()),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            score: Some(91.5),
            error: Some("line one\n=line two".into()),
            metadata: Some(serde_json::json!({"a": "b, \"c\""})),
            face: Some(FaceRecord {
                age: Some(31.0),
                gender: Some("female".into()),
                bbox: Some(vec![-2.0, 4.0, 100.5, 120.0]),
                confidence: Some(0.99),
            }),
            warnings: vec![WarningRecord {
                risk: "LOW_FACE_QUALITY".into(),
                log_type: "warning".into(),
            }],
            ..Default::default()
        };
        rec.columns
            .insert("note".into(), "-danger\r\nmulti \"line\"".into());
        let mut out = CsvOut::new(Vec::new(), layout.clone()).unwrap();
        out.write(&rec).unwrap();
        let bytes = out.writer.into_inner().unwrap();
        assert!(bytes.starts_with(UTF8_BOM));
        assert!(bytes[3..].starts_with(b"key,action,class,"));
        let rows = read_back(&bytes);
        assert_eq!(rows.len(), 2);
        let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
        let row = &rows[1];
        assert_eq!(&row[col("key")], "k,1");
        assert_eq!(&row[col("path")], "dir/\"quoted\".jpg");
        assert_eq!(&row[col("vendor_data")], "'=HYPERLINK(\"http://x\")");
        assert_eq!(
            &row[col("error")],
            "line one\n=line two",
            "only the first character matters"
        );
        assert_eq!(&row[col("metadata")], r#"{"a":"b, \"c\""}"#);
        assert_eq!(
            &row[col("bbox")],
            "'-2 4 100.5 120",
            "a text cell starting with - is escaped"
        );
        assert_eq!(&row[col("note")], "'-danger\r\nmulti \"line\"");
        assert_eq!(&row[col("score")], "91.5");
        assert_eq!(&row[col("risks")], "LOW_FACE_QUALITY");
        assert_eq!(&row[col("risk_levels")], "LOW_FACE_QUALITY:warning");
        assert_eq!(&row[col("action")], "retake");
        assert_eq!(&row[col("age")], "31");
        assert_eq!(&row[col("billed")], "false");
        assert_eq!(&row[col("http_status")], "");
        assert!(rows[0].iter().all(|h| h != SIMULATED_COLUMN));

        // By default age, gender and the face box are left out; the face's confidence stays.
        let mut out = CsvOut::new(Vec::new(), Layout::new(false, &carried)).unwrap();
        out.write(&rec).unwrap();
        let rows = read_back(&out.writer.into_inner().unwrap()[3..]);
        for name in FACE_ATTRIBUTES {
            assert!(rows[0].iter().all(|h| h != name), "{name} left out");
        }
        assert_eq!(rows[0].len(), rows[1].len(), "cells match the header");
        let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
        assert_eq!(&rows[1][col("face_confidence")], "0.99");
        assert_eq!(&rows[1][col("vendor_data")], "'=HYPERLINK(\"http://x\")");
        assert_eq!(&rows[1][col("note")], "'-danger\r\nmulti \"line\"");
    }

    #[test]
    fn header_order_simulated_and_collisions() {
        let carried: BTreeSet<String> = ["score", "manifest.score", "simulated", "zone", "=cmd"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let layout = Layout::new(true, &carried)
            .with_face_attributes(true)
            .with_estimated_ages(true)
            .with_references(true);
        let h = layout.header();
        assert_eq!(&h[..COLUMNS.len()], &COLUMNS.map(String::from)[..]);
        assert_eq!(h[COLUMNS.len()], "simulated");
        let rest: Vec<&str> = h[COLUMNS.len() + 1..].iter().map(String::as_str).collect();
        // BTreeSet order: "=cmd", "manifest.score", "score", "simulated", "zone"
        assert_eq!(
            rest,
            [
                "'=cmd",
                "manifest.score",
                "manifest.manifest.score",
                "manifest.simulated",
                "zone"
            ]
        );
        let unique: BTreeSet<&String> = h.iter().collect();
        assert_eq!(unique.len(), h.len(), "headers are unique: {h:?}");

        let mut rec = Record {
            key: "a".into(),
            class: Some(Class::InvalidInput),
            ..Default::default()
        };
        rec.columns.insert("score".into(), "from manifest".into());
        rec.columns
            .insert("manifest.score".into(), "literal".into());
        let row = layout.row(&rec);
        assert_eq!(row.len(), h.len());
        assert_eq!(row[COLUMNS.len()], "true");
        assert_eq!(
            row[h
                .iter()
                .position(|x| x == "manifest.manifest.score")
                .unwrap()],
            "from manifest"
        );
        assert_eq!(
            row[h.iter().position(|x| x == "manifest.score").unwrap()],
            "literal"
        );
        assert_eq!(
            row[h.iter().position(|x| x == "zone").unwrap()],
            "",
            "missing carried value is empty"
        );
        assert_eq!(row[2], "fix_input", "action derived when absent");
        assert_eq!(row[5], "", "no score");
    }

    #[test]
    fn face_match_rows_name_the_reference_beside_the_key_and_its_sha256_beside_sha256() {
        let pair = Record {
            key: "u1".into(),
            path: "selfies/u1.jpg".into(),
            sha256: Some("aa".repeat(32)),
            reference: Some("=refs/u1.jpg".into()),
            ref_sha256: Some("bb".repeat(32)),
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            score: Some(88.0),
            ..Default::default()
        };
        let layout = Layout::new(false, &BTreeSet::new()).with_references(true);
        let h = layout.header();
        let at = |name: &str| h.iter().position(|c| c == name).unwrap();
        assert_eq!(at("reference"), at("key") + 1);
        assert_eq!(at("ref_sha256"), at("sha256") + 1);
        assert!(h.iter().all(|c| c != "estimated_age"), "not an age run");
        let row = layout.row(&pair);
        assert_eq!(row.len(), h.len());
        assert_eq!(
            row[at("reference")],
            "'=refs/u1.jpg",
            "outside text is escaped"
        );
        assert_eq!(row[at("ref_sha256")], "bb".repeat(32));
        assert_eq!(row[at("score")], "88");
        // A pair whose reference was not found: the cells are there, empty.
        let lone = Record {
            reference: None,
            ref_sha256: None,
            class: Some(Class::InvalidInput),
            ..pair.clone()
        };
        let row = layout.row(&lone);
        assert_eq!((&*row[at("reference")], &*row[at("ref_sha256")]), ("", ""));

        // Other checks have neither column, whatever their records hold.
        let plain = Layout::new(false, &BTreeSet::new()).with_estimated_ages(true);
        let h = plain.header();
        for name in REFERENCE_COLUMNS {
            assert!(h.iter().all(|c| c != name), "{name}");
        }
        assert_eq!(plain.row(&pair).len(), h.len());
        assert_eq!(h[1], "action");
    }
}
