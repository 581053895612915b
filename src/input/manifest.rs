//! CSV manifest sources: a file read once up front (header, structure, duplicate keys, row
//! count), then its rows one at a time. A bad row becomes an item with a `problem` (an
//! invalid_input result), never an abort.

use crate::kit::kinds::json_kind;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::duplicates::Duplicates;
use super::{Event, InputError, Item, SourceOptions, escape_bytes};
use crate::compact::CompactMap;
use crate::messages::cut;

type Input = Box<dyn Read + Send>;

/// The longest manifest row read, header included (1 MiB): a longer one is no real row, and
/// reading it whole could exhaust memory.
pub const MAX_ROW_BYTES: u64 = 1024 * 1024;

/// How many line breaks one quoted field may hold before it is taken for a quote never closed.
pub const MAX_BREAKS_IN_FIELD: u32 = 10;

/// The longest path or id cell taken as a key (PATH_MAX on Linux).
const MAX_KEY_BYTES: usize = 4096;

pub(super) struct Manifest {
    /// The SOURCE argument ("-" for standard input).
    source: String,
    /// The name used in messages.
    name: String,
    /// Folder that relative paths resolve against; None resolves against the current folder.
    base: Option<PathBuf>,
    rdr: csv::Reader<Input>,
    cols: Columns,
    record: ByteRecord,
    row: u64,
    /// Hash of each key seen so far -> the row it was first on. 16 bytes a row (16 MB for a
    /// million rows); a 64-bit hash collision is not a practical concern. Only for standard
    /// input, which cannot be read twice (or when the pass over a file failed).
    /// None when duplicates are not tracked or found by the pass.
    seen: Option<CompactMap<u64, u64>>,
    /// A file's keys on several rows, found by its pass before the first row is handed out.
    dups: Option<Duplicates>,
    done: bool,
    /// A warning to give before the first row.
    pending: Option<String>,
}

struct Columns {
    names: Vec<String>,
    path: usize,
    id: Option<usize>,
    vendor_data: Option<usize>,
    metadata: Option<usize>,
    /// Face match: the reference image's column.
    reference: Option<usize>,
}

impl Manifest {
    /// A manifest file, read once before any row is handed out: its structure checked (an
    /// unclosed quote, a row too long stop the run before anything is sent, instead of rows
    /// going missing), its keys on several rows found (sorted in bounded memory), its rows
    /// counted, with those whose key `keep` keeps.
    pub(super) fn file(
        path: &Path,
        opts: &SourceOptions,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(Self, u64, u64), InputError> {
        let name = path.display().to_string();
        let open = || -> Result<Input, InputError> {
            match std::fs::File::open(path) {
                Ok(file) => Ok(Box::new(io::BufReader::new(file))),
                Err(error) => Err(InputError::Io {
                    path: name.clone(),
                    error,
                }),
            }
        };
        let mut pass = match Manifest::new(open()?, name.clone(), name.clone(), None, opts) {
            Ok(pass) => pass,
            // A broken structure further on says more than the header's fault.
            Err(e) => return Err(structure(open()?, &name).err().unwrap_or(e)),
        };
        let (mut rows, mut kept, mut fault) = (0, 0, None);
        let mut keys = std::iter::from_fn(|| match pass.next_key() {
            Ok(Some(key)) => {
                rows += 1;
                kept += u64::from(keep(&key));
                Some((key_hash(&key), pass.row))
            }
            Ok(None) => None,
            Err(e) => {
                fault = Some(e);
                None
            }
        });
        let dir = opts.spill_dir.clone().filter(|d| d.is_dir());
        let dups = opts
            .track_duplicates
            .then(|| Duplicates::find(keys.by_ref(), &dir.unwrap_or_else(std::env::temp_dir)).ok());
        // What the pass did not take (its sort failed) is still checked and counted.
        keys.for_each(drop);
        if let Some(error) = fault {
            return Err(read_error(name, error));
        }
        let base = path.parent().map(Path::to_path_buf);
        let mut m = Manifest::new(open()?, name.clone(), name, base, opts)?;
        // Without the pass's findings, a map of every key finds the duplicates.
        if let Some(Some(dups)) = dups {
            m.seen = None;
            m.dups = Some(dups);
        }
        Ok((m, rows, kept))
    }

    /// The next row's key as [`Manifest::item`] reads it before making it unique; `None` at
    /// the end.
    fn next_key(&mut self) -> Result<Option<String>, csv::Error> {
        loop {
            if !self.rdr.read_byte_record(&mut self.record)? {
                return Ok(None);
            }
            self.row += 1;
            if self.record.iter().all(|f| f.trim_ascii().is_empty()) {
                continue;
            }
            let row = self.row;
            let (path, id) = self.key_cells();
            let mut ignored = Vec::new();
            let usable_path = check_path(&path, "path", row, &mut ignored);
            let (id, usable_id) = check_id(id, row, &mut ignored);
            return Ok(Some(row_key(id, &path, usable_path && usable_id, row).0));
        }
    }

    pub(super) fn stdin(opts: &SourceOptions) -> Result<Self, InputError> {
        let input: Input = Box::new(io::stdin());
        Manifest::new(
            input,
            "-".to_string(),
            "standard input".to_string(),
            None,
            opts,
        )
    }

    fn new(
        input: Input,
        source: String,
        name: String,
        base: Option<PathBuf>,
        opts: &SourceOptions,
    ) -> Result<Self, InputError> {
        let input: Input = Box::new(Guard::new(strip_bom(input, &name)?));
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut header = ByteRecord::new();
        match rdr.read_byte_record(&mut header) {
            Ok(true) => {}
            Ok(false) => return Err(InputError::EmptyManifest(name)),
            Err(error) => return Err(read_error(name, error)),
        }
        let cols = Columns::resolve(&header, &name, opts)?;
        // Pairing by folder: a reference column the manifest holds is not what is used.
        let pending = match &opts.references {
            Some(super::References::Dir(dir)) => find(&cols.names, "ref_path").map(|i| {
                format!(
                    "{name}: its {} column is not used: --ref-dir {} pairs each selfie with \
                     its reference (leave --ref-dir out to take the column's)",
                    cut(&cols.names[i]),
                    cut(&dir.display().to_string())
                )
            }),
            _ => None,
        };
        Ok(Manifest {
            source,
            name,
            base,
            rdr,
            cols,
            record: ByteRecord::new(),
            row: 0,
            seen: opts.track_duplicates.then(CompactMap::new),
            dups: None,
            done: false,
            pending,
        })
    }

    fn item(&mut self) -> Item {
        let row = self.row;
        let mut problems = Vec::new();
        let width = self.cols.names.len();
        if self.record.len() != width {
            problems.push(format!(
                "row {row} has {} fields, the header has {width}",
                self.record.len()
            ));
        }
        let cells = self.cells();
        if !cells.utf8 {
            problems.push(format!(
                "row {row} is not valid UTF-8 text; save the manifest as UTF-8"
            ));
        }
        let usable_path = check_path(&cells.path, "path", row, &mut problems);
        check_uri(&cells.path, row, &mut problems);
        let (id, usable_id) = check_id(cells.id, row, &mut problems);
        let metadata = cells
            .metadata
            .and_then(|m| parse_metadata(&m, row, &mut problems));
        let key = self.unique_key(id, &cells.path, usable_path && usable_id, &mut problems);
        let path = self.locate(&cells.path);
        let reference = cells.reference.and_then(|cell| {
            let name = self
                .cols
                .reference
                .map_or("", |i| self.cols.names[i].as_str());
            if cell.is_empty() {
                problems.push(format!(
                    "row {row}: no reference image: the {name} cell is empty"
                ));
                return None;
            }
            if !check_path(&cell, name, row, &mut problems) || !check_uri(&cell, row, &mut problems)
            {
                return None;
            }
            Some(Box::new(super::Reference {
                path: self.locate(&cell),
                display: cell,
                version: None,
            }))
        });
        Item {
            key,
            path,
            display_path: cells.path,
            source: self.source.clone(),
            row: Some(row),
            vendor_data: cells.vendor_data,
            metadata,
            columns: cells.columns,
            problem: if problems.is_empty() {
                None
            } else {
                Some(problems.join("; "))
            },
            seq: 0,
            version: None,
            regular: false,
            reference,
        }
    }

    /// Where a path cell points: a relative path resolved against the manifest's folder; a
    /// bucket URI kept as written (it is not a path relative to the manifest).
    fn locate(&self, cell: &str) -> PathBuf {
        let path = PathBuf::from(cell);
        match &self.base {
            Some(base)
                if path.is_relative()
                    && !cell.is_empty()
                    && super::bucket::Uri::parse(cell).is_none() =>
            {
                base.join(path)
            }
            _ => path,
        }
    }

    /// Cell `i` of the current row as text: `Err` holds a cell that is not UTF-8, escaped
    /// losslessly (so two different bad cells never look the same).
    fn cell(&self, i: usize) -> Result<String, String> {
        let raw = self.record.get(i).unwrap_or(b"");
        std::str::from_utf8(raw)
            .map(str::to_string)
            .map_err(|_| escape_bytes(raw))
    }

    /// The path and id cells, trimmed (an empty id is none), read through `cell`.
    fn path_and_id(&self, mut cell: impl FnMut(usize) -> String) -> (String, Option<String>) {
        let path = cell(self.cols.path).trim().to_string();
        let id = self
            .cols
            .id
            .map(|i| cell(i).trim().to_string())
            .filter(|s| !s.is_empty());
        (path, id)
    }

    /// The current row's path and id cells, as [`Manifest::cells`] reads them.
    fn key_cells(&self) -> (String, Option<String>) {
        self.path_and_id(|i| self.cell(i).unwrap_or_else(|escaped| escaped))
    }

    /// The current row's cells by role; a cell that is not UTF-8 is escaped losslessly and
    /// noted.
    fn cells(&self) -> Cells {
        let mut utf8 = true;
        let mut cell = |i: usize| -> String {
            self.cell(i).unwrap_or_else(|escaped| {
                utf8 = false;
                escaped
            })
        };
        let (path, id) = self.path_and_id(&mut cell);
        let vendor_data = self
            .cols
            .vendor_data
            .map(&mut cell)
            .filter(|s| !s.is_empty());
        let metadata = self
            .cols
            .metadata
            .map(&mut cell)
            .filter(|s| !s.trim().is_empty());
        let mut columns = BTreeMap::new();
        for (i, name) in self.cols.names.iter().enumerate() {
            if !self.cols.is_used(i) {
                columns.insert(name.clone(), cell(i));
            }
        }
        let reference = self.cols.reference.map(|i| cell(i).trim().to_string());
        Cells {
            path,
            reference,
            id,
            vendor_data,
            metadata,
            columns,
            utf8,
        }
    }

    /// The row's key: its id, else its path, else `#rowN`; a duplicate is noted and made
    /// unique with its row number.
    fn unique_key(
        &mut self,
        id: Option<String>,
        path: &str,
        usable: bool,
        problems: &mut Vec<String>,
    ) -> String {
        let row = self.row;
        let (mut key, kind) = row_key(id, path, usable, row);
        let first = if let Some(dups) = self.dups.as_ref() {
            dups.given_before(key_hash(&key), row)
        } else if let Some(seen) = self.seen.as_mut() {
            seen.insert_new(key_hash(&key), row)
        } else {
            return key;
        };
        let Some(first) = first else {
            return key;
        };
        if !kind.is_empty() {
            problems.push(format!(
                "duplicate {kind} {} (first on row {first})",
                cut(&key)
            ));
        }
        // Every key given out is remembered, renamed ones too, so a later (or earlier) row
        // whose id happens to read `KEY#rowN` never shares it.
        let base = std::mem::take(&mut key);
        key = format!("{base}#row{row}");
        let mut n = 1;
        while !self.claim(key_hash(&key), row) {
            n += 1;
            key = format!("{base}#row{row}.{n}");
        }
        key
    }

    /// Give a renamed key (its hash) to `row` unless an earlier row has it. A failed read of the
    /// duplicate pass's file (its own temporary file) takes the name for free.
    fn claim(&mut self, hash: u64, row: u64) -> bool {
        match (self.dups.as_mut(), self.seen.as_mut()) {
            (Some(dups), _) => dups.give_renamed(hash, row).unwrap_or(true),
            (None, Some(seen)) => seen.insert_new(hash, row).is_none(),
            (None, None) => true,
        }
    }
}

/// A row's key before it is made unique: its id, else its path when usable, else `#rowN`;
/// with what it is.
fn row_key(id: Option<String>, path: &str, usable: bool, row: u64) -> (String, &'static str) {
    match (id, usable) {
        (Some(id), _) => (id, "id"),
        (None, true) => (path.to_string(), "path"),
        (None, false) => (format!("#row{row}"), ""),
    }
}

/// The hash of a key that duplicates are found by.
fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// One row's cells by role.
struct Cells {
    path: String,
    /// Face match: the reference cell, trimmed.
    reference: Option<String>,
    id: Option<String>,
    vendor_data: Option<String>,
    metadata: Option<String>,
    columns: BTreeMap<String, String>,
    utf8: bool,
}

/// Whether a path cell (`what`: "path", or the reference column's name) can name a file
/// (empty, a NUL, or too long cannot); notes why not.
fn check_path(path: &str, what: &str, row: u64, problems: &mut Vec<String>) -> bool {
    if path.is_empty() {
        problems.push(format!("row {row}: the {what} cell is empty"));
        return false;
    }
    if path.contains('\0') {
        problems.push(format!(
            "row {row}: the {what} holds a NUL character: {}",
            cut(path)
        ));
        return false;
    }
    if path.len() > MAX_KEY_BYTES {
        problems.push(format!(
            "row {row}: the {what} is {} bytes long, over the {MAX_KEY_BYTES}-byte limit: {}",
            path.len(),
            cut(path)
        ));
        return false;
    }
    true
}

/// A bucket URI is used exactly as written, or the row says why it cannot be (false then).
fn check_uri(cell: &str, row: u64, problems: &mut Vec<String>) -> bool {
    let problem = match super::bucket::Uri::parse(cell) {
        Some(Err(e)) => format!("row {row}: {e}"),
        Some(Ok(uri)) if uri.key.is_empty() => format!(
            "row {row}: {} names a bucket, not an object: write it as {}KEY",
            cut(cell),
            uri.bucket_uri()
        ),
        Some(Ok(uri)) => match uri.scheme.not_built() {
            Some(e) => format!("row {row}: {e}"),
            None => return true,
        },
        None => return true,
    };
    problems.push(problem);
    false
}

/// The id if it can be a key (not over the limit), and whether it could.
fn check_id(id: Option<String>, row: u64, problems: &mut Vec<String>) -> (Option<String>, bool) {
    match id {
        Some(id) if id.len() > MAX_KEY_BYTES => {
            problems.push(format!(
                "row {row}: the id is {} bytes long, over the {MAX_KEY_BYTES}-byte limit: {}",
                id.len(),
                cut(&id)
            ));
            (None, false)
        }
        other => (other, true),
    }
}

/// The metadata cell as a JSON object; anything else is noted.
fn parse_metadata(
    cell: &str,
    row: u64,
    problems: &mut Vec<String>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(cell) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        Ok(other) => {
            problems.push(format!(
                "row {row}: metadata is not a JSON object (it is {})",
                json_kind(&other)
            ));
            None
        }
        Err(e) => {
            problems.push(format!("row {row}: metadata is not valid JSON: {e}"));
            None
        }
    }
}

impl Iterator for Manifest {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if let Some(warning) = self.pending.take() {
            return Some(Event::Warning(warning));
        }
        while !self.done {
            match self.rdr.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Event::Warning(match csv_problem(&e) {
                        Some(problem) => format!(
                            "{}: reading stopped: {problem}; the rows from there on were not read",
                            self.name
                        ),
                        None => {
                            format!("{}: reading stopped after row {}: {e}", self.name, self.row)
                        }
                    }));
                }
            }
            self.row += 1;
            // A row of only separators or spaces is a blank line too.
            if self.record.iter().all(|f| f.trim_ascii().is_empty()) {
                continue;
            }
            return Some(Event::Item(self.item()));
        }
        None
    }
}

impl Columns {
    fn resolve(
        header: &ByteRecord,
        manifest: &str,
        opts: &SourceOptions,
    ) -> Result<Self, InputError> {
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| InputError::NotUtf8 {
                manifest: manifest.to_string(),
                what: "the header row is not UTF-8 text".to_string(),
            })?;
            let name = name.trim();
            let name = if name.is_empty() {
                format!("column_{}", i + 1)
            } else {
                name.to_string()
            };
            if names.contains(&name) {
                return Err(InputError::DuplicateColumn {
                    manifest: manifest.to_string(),
                    column: cut(&name),
                });
            }
            names.push(name);
        }
        let missing = |column: &str, hint: String| InputError::MissingColumn {
            manifest: manifest.to_string(),
            column: cut(column),
            hint,
            available: cut(&names.join(", ")),
        };
        let path = match find(&names, &opts.path_column) {
            Some(i) => i,
            None if opts.path_column == "path" => {
                return Err(missing(
                    "path",
                    " (choose one with --path-column)".to_string(),
                ));
            }
            None => {
                return Err(missing(
                    &opts.path_column,
                    " (given with --path-column)".to_string(),
                ));
            }
        };
        let pick = |given: &Option<String>, conventional: &str, option: &str| match given {
            Some(c) => find(&names, c)
                .map(Some)
                .ok_or_else(|| missing(c, format!(" (given with {option})"))),
            None => Ok(find(&names, conventional)),
        };
        let id = pick(&opts.id_column, "id", "--id-column")?;
        let vendor_data = pick(
            &opts.vendor_data_column,
            "vendor_data",
            "--vendor-data-column",
        )?;
        let metadata = pick(&opts.metadata_column, "metadata", "--metadata-column")?;
        let reference = match &opts.references {
            Some(super::References::Column(c)) => Some(find(&names, c).ok_or_else(|| {
                missing(
                    c,
                    " (face match needs each selfie's reference image: add the column, name \
                     another with --ref-column, or pair by folder with --ref-dir)"
                        .to_string(),
                )
            })?),
            _ => None,
        };
        Ok(Columns {
            names,
            path,
            id,
            vendor_data,
            metadata,
            reference,
        })
    }

    fn is_used(&self, i: usize) -> bool {
        i == self.path
            || [self.id, self.vendor_data, self.metadata, self.reference].contains(&Some(i))
    }
}

/// A column by exact name, else by a unique case-insensitive match.
fn find(names: &[String], wanted: &str) -> Option<usize> {
    let wanted = wanted.trim();
    if let Some(i) = names.iter().position(|n| n == wanted) {
        return Some(i);
    }
    let mut matches = names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.eq_ignore_ascii_case(wanted));
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// A manifest that cannot be read: its structure is broken, or reading it failed.
fn read_error(manifest: String, error: csv::Error) -> InputError {
    match csv_problem(&error) {
        Some(problem) => InputError::Malformed { manifest, problem },
        None => InputError::Csv { manifest, error },
    }
}

/// Follow the structure of a manifest's raw bytes to their end: its first fault, if any.
fn structure(input: Input, name: &str) -> Result<(), InputError> {
    let mut check = Guard::new(input);
    match io::copy(&mut check, &mut io::sink()) {
        Ok(_) => Ok(()),
        Err(error) => Err(match Guard::<Input>::problem(&error) {
            Some(problem) => InputError::Malformed {
                manifest: name.to_string(),
                problem: problem.to_string(),
            },
            None => InputError::Io {
                path: name.to_string(),
                error,
            },
        }),
    }
}

/// The structural problem behind a CSV read error, if that is what stopped it.
fn csv_problem(e: &csv::Error) -> Option<String> {
    match e.kind() {
        csv::ErrorKind::Io(io) => Guard::<Input>::problem(io).map(|p| p.to_string()),
        _ => None,
    }
}

/// What is wrong with a manifest's structure, found while its bytes stream past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Structure {
    #[error("{} (line {line}) is longer than {} MB, the limit for one manifest row", row_name(*.row), MAX_ROW_BYTES / (1024 * 1024))]
    RowTooLong { row: u64, line: u64 },
    #[error("the quoted field that begins on line {line} ({}) runs over more than {MAX_BREAKS_IN_FIELD} lines: is its closing quote (\") missing?", row_name(*.row))]
    RunawayQuote { row: u64, line: u64 },
    #[error("the quoted field that begins on line {line} ({}) is never closed: is its closing quote (\") missing?", row_name(*.row))]
    UnclosedQuote { row: u64, line: u64 },
}

/// Data rows count from 1 after the header, like the rows of items.
fn row_name(row: u64) -> String {
    if row == 0 {
        "the header row".to_string()
    } else {
        format!("row {row}")
    }
}

/// A reader that follows the CSV structure of the bytes passing through it (the way the CSV
/// parser reads them: a quote opens a quoted field only at the start of a field, `""` inside
/// one is a quote, a line break outside quotes ends the row, blank lines are no rows) and fails
/// with a [`Structure`] error as soon as a row grows too long or a quoted field runs on too far,
/// so memory stays bounded and nothing is silently swallowed. Bytes before the fault are passed
/// on first.
pub(super) struct Guard<R> {
    inner: R,
    state: State,
    line: u64,
    /// Rows begun so far, the header included.
    rows: u64,
    row_bytes: u64,
    row_line: u64,
    quote_line: u64,
    quote_breaks: u32,
    failed: Option<Structure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    RowStart,
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first of `""`.
    QuoteInQuoted,
}

impl<R: Read> Guard<R> {
    pub(super) fn new(inner: R) -> Self {
        Guard {
            inner,
            state: State::RowStart,
            line: 1,
            rows: 0,
            row_bytes: 0,
            row_line: 1,
            quote_line: 1,
            quote_breaks: 0,
            failed: None,
        }
    }

    /// The structural problem an I/O error from a guard carries.
    pub(super) fn problem(e: &io::Error) -> Option<&Structure> {
        e.get_ref()?.downcast_ref::<Structure>()
    }

    fn row(&self) -> u64 {
        self.rows.saturating_sub(1)
    }

    fn field_start(&mut self, b: u8) -> State {
        match b {
            b'"' => {
                self.quote_line = self.line;
                self.quote_breaks = 0;
                State::Quoted
            }
            b',' => State::FieldStart,
            b'\r' | b'\n' => State::RowStart,
            _ => State::Unquoted,
        }
    }

    /// Follow `chunk`; on a fault, how many of its bytes come before it.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), (usize, Structure)> {
        for (i, &b) in chunk.iter().enumerate() {
            if self.state == State::RowStart {
                if b == b'\r' || b == b'\n' {
                    self.line += u64::from(b == b'\n');
                    continue;
                }
                self.rows += 1;
                self.row_bytes = 0;
                self.row_line = self.line;
            }
            self.state = match (self.state, b) {
                (State::RowStart | State::FieldStart, _) => self.field_start(b),
                (State::Unquoted, b',') => State::FieldStart,
                (State::Unquoted, b'\r' | b'\n') => State::RowStart,
                (State::Unquoted, _) => State::Unquoted,
                (State::Quoted, b'"') => State::QuoteInQuoted,
                (State::Quoted, b'\n') => {
                    self.quote_breaks += 1;
                    if self.quote_breaks > MAX_BREAKS_IN_FIELD {
                        let (row, line) = (self.row(), self.quote_line);
                        return Err((i, Structure::RunawayQuote { row, line }));
                    }
                    State::Quoted
                }
                (State::Quoted, _) => State::Quoted,
                (State::QuoteInQuoted, b'"') => State::Quoted,
                (State::QuoteInQuoted, b',') => State::FieldStart,
                (State::QuoteInQuoted, b'\r' | b'\n') => State::RowStart,
                (State::QuoteInQuoted, _) => State::Unquoted,
            };
            // The row's bytes, its terminator aside.
            if self.state != State::RowStart {
                self.row_bytes += 1;
                if self.row_bytes > MAX_ROW_BYTES {
                    let (row, line) = (self.row(), self.row_line);
                    return Err((i, Structure::RowTooLong { row, line }));
                }
            }
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(())
    }

    fn fail(&mut self, problem: Structure) -> io::Error {
        self.failed = Some(problem.clone());
        io::Error::new(io::ErrorKind::InvalidData, problem)
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(problem) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, problem.clone()));
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.state == State::Quoted {
                let (row, line) = (self.row(), self.quote_line);
                return Err(self.fail(Structure::UnclosedQuote { row, line }));
            }
            return Ok(0);
        }
        match self.feed(&buf[..n]) {
            Ok(()) => Ok(n),
            Err((0, problem)) => Err(self.fail(problem)),
            Err((before, problem)) => {
                self.failed = Some(problem);
                Ok(before)
            }
        }
    }
}

/// Drop a UTF-8 byte-order mark so the first column's name is right; refuse UTF-16.
fn strip_bom(mut input: Input, name: &str) -> Result<Input, InputError> {
    let mut head = [0u8; 3];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(InputError::Io {
                    path: name.to_string(),
                    error,
                });
            }
        }
    }
    let head = &head[..n];
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(InputError::NotUtf8 {
            manifest: name.to_string(),
            what: "the file is UTF-16 text".to_string(),
        });
    }
    let rest = if head == b"\xEF\xBB\xBF" {
        &[][..]
    } else {
        head
    };
    Ok(Box::new(io::Cursor::new(rest.to_vec()).chain(input)))
}

#[cfg(test)]
mod tests;
