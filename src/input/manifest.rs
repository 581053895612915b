//! CSV manifest sources: header checked up front, then rows read one at a time. A bad row becomes
//! an item with a `problem` (an invalid_input result), never an abort.

use crate::kit::kinds::json_kind;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::duplicates::Duplicates;
use super::{Event, InputError, Item, SourceOptions, escape_bytes};
use crate::messages::cut;
use crate::compact::CompactMap;

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
    /// None when duplicates are not tracked (a counting pass) or found by a pass.
    seen: Option<CompactMap<u64, u64>>,
    /// A file's keys on several rows, found by a pass over it before the first row is handed
    /// out (the pass is `pending` until then, so opening a manifest to check it costs nothing).
    dups: Option<Duplicates>,
    pending: Option<(PathBuf, SourceOptions)>,
    done: bool,
}

struct Columns {
    names: Vec<String>,
    path: usize,
    id: Option<usize>,
    vendor_data: Option<usize>,
    metadata: Option<usize>,
}

impl Manifest {
    pub(super) fn file(path: &Path, opts: &SourceOptions) -> Result<Self, InputError> {
        let name = path.display().to_string();
        let open = || {
            std::fs::File::open(path).map_err(|error| InputError::Io {
                path: name.clone(),
                error,
            })
        };
        // One pass over the raw bytes first, so a broken structure (an unclosed quote, a row
        // too long) stops the run before anything is sent, instead of rows going missing.
        let mut check = Guard::new(io::BufReader::new(open()?));
        if let Err(error) = io::copy(&mut check, &mut io::sink()) {
            return Err(match Guard::<Input>::problem(&error) {
                Some(problem) => InputError::Malformed {
                    manifest: name,
                    problem: problem.to_string(),
                },
                None => InputError::Io { path: name, error },
            });
        }
        let file = open()?;
        let base = path.parent().map(Path::to_path_buf);
        let mut m = Manifest::new(
            Box::new(io::BufReader::new(file)),
            name.clone(),
            name,
            base,
            opts,
        )?;
        if m.seen.take().is_some() {
            m.pending = Some((path.to_path_buf(), opts.clone()));
        }
        Ok(m)
    }

    /// Find the keys on several rows by a pass over the file, sorting in bounded memory; when
    /// that fails, fall back to a map of every key.
    fn find_duplicates(&mut self, path: &Path, opts: &SourceOptions) {
        let dir = opts
            .spill_dir
            .clone()
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let plain = SourceOptions {
            track_duplicates: false,
            ..opts.clone()
        };
        let found = std::fs::File::open(path)
            .map_err(|_| ())
            .and_then(|file| {
                let input: Input = Box::new(io::BufReader::new(file));
                let name = self.name.clone();
                Manifest::new(input, name.clone(), name, None, &plain).map_err(|_| ())
            })
            .and_then(|mut pass| {
                Duplicates::find(std::iter::from_fn(|| pass.next_key()), &dir).map_err(|_| ())
            });
        match found {
            Ok(d) => self.dups = Some(d),
            Err(()) => self.seen = Some(CompactMap::new()),
        }
    }

    /// The next row's key as [`Manifest::item`] reads it before making it unique, hashed, with
    /// its row; `None` at the end (or where reading stops).
    fn next_key(&mut self) -> Option<(u64, u64)> {
        loop {
            match self.rdr.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) | Err(_) => return None,
            }
            self.row += 1;
            if self.record.iter().all(|f| f.trim_ascii().is_empty()) {
                continue;
            }
            let row = self.row;
            let (path, id) = self.key_cells();
            let mut ignored = Vec::new();
            let usable_path = check_path(&path, row, &mut ignored);
            let (id, usable_id) = check_id(id, row, &mut ignored);
            let key = match (id, usable_path && usable_id) {
                (Some(id), _) => id,
                (None, true) => path,
                (None, false) => format!("#row{row}"),
            };
            return Some((key_hash(&key), row));
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
            Err(error) => {
                return Err(match csv_problem(&error) {
                    Some(problem) => InputError::Malformed {
                        manifest: name,
                        problem,
                    },
                    None => InputError::Csv {
                        manifest: name,
                        error,
                    },
                });
            }
        }
        let cols = Columns::resolve(&header, &name, opts)?;
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
            pending: None,
            done: false,
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
        let usable_path = check_path(&cells.path, row, &mut problems);
        // A bucket URI is used exactly as written, or the row says why it cannot be.
        match super::bucket::Uri::parse(&cells.path) {
            Some(Err(e)) => problems.push(format!("row {row}: {e}")),
            Some(Ok(uri)) if uri.key.is_empty() => problems.push(format!(
                "row {row}: {} names a bucket, not an object: write it as {}KEY",
                crate::messages::cut(&cells.path),
                uri.bucket_uri()
            )),
            Some(Ok(uri)) => {
                if let Some(e) = uri.scheme.not_built() {
                    problems.push(format!("row {row}: {e}"));
                }
            }
            None => {}
        }
        let (id, usable_id) = check_id(cells.id, row, &mut problems);
        let metadata = cells
            .metadata
            .and_then(|m| parse_metadata(&m, row, &mut problems));
        let key = self.unique_key(id, &cells.path, usable_path && usable_id, &mut problems);
        let path = PathBuf::from(&cells.path);
        let path = match &self.base {
            // A bucket URI is kept as written: it is not a path relative to the manifest.
            Some(base)
                if path.is_relative()
                    && !cells.path.is_empty()
                    && super::bucket::Uri::parse(&cells.path).is_none() =>
            {
                base.join(path)
            }
            _ => path,
        };
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
        Cells {
            path,
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
        let (mut key, kind) = match (id, usable) {
            (Some(id), _) => (id, "id"),
            (None, true) => (path.to_string(), "path"),
            (None, false) => (format!("#row{row}"), ""),
        };
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

/// The hash of a key that duplicates are found by.
fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// One row's cells by role.
struct Cells {
    path: String,
    id: Option<String>,
    vendor_data: Option<String>,
    metadata: Option<String>,
    columns: BTreeMap<String, String>,
    utf8: bool,
}

/// Whether the path cell can name a file (empty, a NUL, or too long cannot); notes why not.
fn check_path(path: &str, row: u64, problems: &mut Vec<String>) -> bool {
    if path.is_empty() {
        problems.push(format!("row {row}: the path cell is empty"));
        return false;
    }
    if path.contains('\0') {
        problems.push(format!(
            "row {row}: the path holds a NUL character: {}",
            cut(path)
        ));
        return false;
    }
    if path.len() > MAX_KEY_BYTES {
        problems.push(format!(
            "row {row}: the path is {} bytes long, over the {MAX_KEY_BYTES}-byte limit: {}",
            path.len(),
            cut(path)
        ));
        return false;
    }
    true
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
        if let Some((path, opts)) = self.pending.take() {
            self.find_duplicates(&path, &opts);
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
        Ok(Columns {
            names,
            path,
            id,
            vendor_data,
            metadata,
        })
    }

    fn is_used(&self, i: usize) -> bool {
        i == self.path || [self.id, self.vendor_data, self.metadata].contains(&Some(i))
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
mod tests {
    use super::*;

    fn manifest_at(
        dir: &Path,
        content: &[u8],
        opts: &SourceOptions,
    ) -> Result<Vec<Item>, InputError> {
        let p = dir.join("manifest.csv");
        std::fs::write(&p, content).unwrap();
        let m = Manifest::file(&p, opts)?;
        Ok(m.map(|e| match e {
            Event::Item(i) => i,
            other => panic!("unexpected {other:?}"),
        })
        .collect())
    }

    #[test]
    fn renamed_duplicates_never_take_another_rows_key() {
        for manifest in [
            "id,path\nx,a.jpg\nx,b.jpg\nx#row2,c.jpg\n",
            "id,path,other\nx,a.jpg,\n,,y\n#row2,c.jpg,\n",
            "id,path\nx#row2,c.jpg\nx,a.jpg\nx,b.jpg\n",
        ] {
            let keys: Vec<String> = items(manifest.as_bytes())
                .into_iter()
                .map(|i| i.key)
                .collect();
            let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
            assert_eq!(distinct.len(), 3, "{manifest:?} gave {keys:?}");
        }
    }

    #[test]
    fn a_file_found_by_its_pass_and_a_stream_by_its_map_name_duplicates_alike() {
        let manifests = [
            "id,path\nx,a.jpg\nx,b.jpg\nx#row2,c.jpg\nx,d.jpg\nx#row2,e.jpg\n",
            "id,path\nx#row3,c.jpg\nx,a.jpg\nx,b.jpg\nx#row3.2,f.jpg\n",
            "id,path,other\nx,a.jpg,\n,,y\n#row2,c.jpg,\n,,z\n,a.jpg,\n,a.jpg,\n",
            "path\na.jpg\n\nb.jpg\na.jpg\n,\n a.jpg \nb.jpg#row4\nb.jpg\n",
        ];
        for manifest in manifests {
            let from_file = items(manifest.as_bytes());
            let input: Input = Box::new(io::Cursor::new(manifest.as_bytes().to_vec()));
            let name = "m".to_string();
            let streamed =
                Manifest::new(input, name.clone(), name, None, &SourceOptions::default())
                    .unwrap()
                    .filter_map(|e| match e {
                        Event::Item(i) => Some(i),
                        _ => None,
                    });
            let a: Vec<_> = from_file.iter().map(|i| (&i.key, &i.problem)).collect();
            let b: Vec<_> = streamed.map(|i| (i.key, i.problem)).collect();
            let b: Vec<_> = b.iter().map(|(k, p)| (k, p)).collect();
            assert_eq!(a, b, "{manifest:?}");
            let distinct: std::collections::BTreeSet<_> = a.iter().map(|e| e.0).collect();
            assert_eq!(distinct.len(), a.len(), "{manifest:?}");
        }
    }

    fn items(content: &[u8]) -> Vec<Item> {
        let dir = tempfile::tempdir().unwrap();
        manifest_at(dir.path(), content, &SourceOptions::default()).unwrap()
    }

    fn error(content: &[u8], opts: &SourceOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        match manifest_at(dir.path(), content, opts) {
            Ok(items) => panic!("expected an error, got {items:?}"),
            Err(e) => e
                .to_string()
                .replace(&dir.path().join("manifest.csv").display().to_string(), "M"),
        }
    }

    #[test]
    fn conventional_columns_and_carried_columns() {
        let dir = tempfile::tempdir().unwrap();
        let got = manifest_at(
            dir.path(),
            b"id,path,vendor_data,metadata,branch\nu1,a/1.jpg,user-1,\"{\"\"k\"\": 1}\",north\n",
            &SourceOptions::default(),
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        let i = &got[0];
        assert_eq!(i.key, "u1");
        assert_eq!(i.path, dir.path().join("a/1.jpg"));
        assert_eq!(i.display_path, "a/1.jpg");
        assert_eq!(
            i.source,
            dir.path().join("manifest.csv").display().to_string()
        );
        assert_eq!(i.row, Some(1));
        assert_eq!(i.vendor_data.as_deref(), Some("user-1"));
        assert_eq!(
            serde_json::Value::Object(i.metadata.clone().unwrap()),
            serde_json::json!({"k": 1})
        );
        assert_eq!(
            i.columns,
            BTreeMap::from([("branch".to_string(), "north".to_string())])
        );
        assert_eq!(i.problem, None);
    }

    #[test]
    fn absolute_paths_stay_and_key_is_the_path_without_id() {
        let got = items(b"path\n/data/x.jpg\nb.png\n");
        assert_eq!(got[0].path, PathBuf::from("/data/x.jpg"));
        assert_eq!(got[0].key, "/data/x.jpg");
        assert_eq!(got[1].key, "b.png");
    }

    #[test]
    fn bom_crlf_quotes_and_blank_lines() {
        let content = "\u{feff}id,path,vendor_data,note\r\n\
            \r\n\
            u1,\"dir, with comma/a.jpg\",\"say \"\"hi\"\"\",\"line one\r\nline two\"\r\n\
            \r\n\
            ,,,\r\n\
            u2,b.jpg,=HYPERLINK(\"http://x\"),plain\r\n\
            \r\n";
        let got = items(content.as_bytes());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].key, "u1");
        assert_eq!(got[0].display_path, "dir, with comma/a.jpg");
        assert_eq!(got[0].vendor_data.as_deref(), Some("say \"hi\""));
        assert_eq!(got[0].columns["note"], "line one\r\nline two");
        assert_eq!(got[0].row, Some(1));
        assert_eq!(got[1].key, "u2");
        assert_eq!(
            got[1].vendor_data.as_deref(),
            Some("=HYPERLINK(\"http://x\")"),
            "passed through unchanged"
        );
        assert_eq!(
            got[1].row,
            Some(3),
            "the all-empty row counts as a row but is skipped"
        );
        assert!(got.iter().all(|i| i.problem.is_none()));
    }

    #[test]
    fn duplicate_ids_and_paths() {
        let got = items(b"id,path\nu1,a.jpg\nu2,b.jpg\nu1,c.jpg\nu1,d.jpg\n");
        let keys: Vec<&str> = got.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["u1", "u2", "u1#row3", "u1#row4"]);
        assert_eq!(
            got[2].problem.as_deref(),
            Some("duplicate id u1 (first on row 1)")
        );
        assert_eq!(
            got[3].problem.as_deref(),
            Some("duplicate id u1 (first on row 1)")
        );

        let got = items(b"path,user\na.jpg,1\na.jpg,2\n");
        assert_eq!(got[1].key, "a.jpg#row2");
        assert_eq!(
            got[1].problem.as_deref(),
            Some("duplicate path a.jpg (first on row 1)")
        );
    }

    #[test]
    fn bad_rows_become_problems_not_aborts() {
        let got = items(
            b"id,path,metadata\n\
              r1,,\n\
              r2,a.jpg,[1]\n\
              r3,b.jpg,{oops\n\
              r4,c.jpg\n\
              r5,d.jpg,{},extra\n\
              ,,{}\n\
              r7,e.jpg,\"{\"\"ok\"\": true}\"\n",
        );
        let probs: Vec<(&str, Option<&str>)> = got
            .iter()
            .map(|i| (i.key.as_str(), i.problem.as_deref()))
            .collect();
        assert_eq!(
            probs,
            [
                ("r1", Some("row 1: the path cell is empty")),
                (
                    "r2",
                    Some("row 2: metadata is not a JSON object (it is an array)")
                ),
                (
                    "r3",
                    Some(
                        "row 3: metadata is not valid JSON: key must be a string at line 1 column 2"
                    )
                ),
                ("r4", Some("row 4 has 2 fields, the header has 3")),
                ("r5", Some("row 5 has 4 fields, the header has 3")),
                ("#row6", Some("row 6: the path cell is empty")),
                ("r7", None),
            ]
        );
    }

    #[test]
    fn non_utf8_row_is_a_problem_and_header_an_error() {
        let got = items(b"id,path\nu1,caf\xE9.jpg\nu2,ok.jpg\n");
        assert_eq!(
            got[0].problem.as_deref(),
            Some("row 1 is not valid UTF-8 text; save the manifest as UTF-8")
        );
        assert_eq!(
            got[0].display_path, "caf\\xe9.jpg",
            "lossless, not a replacement mark"
        );
        assert_eq!(got[1].problem, None);
        // Two rows that differ only in their bad bytes stay two keys, not one "duplicate".
        let got = items(b"path\nM\xfcller.jpg\nM\xe4ller.jpg\n");
        let keys: Vec<&str> = got.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["M\\xfcller.jpg", "M\\xe4ller.jpg"]);
        assert!(
            got.iter()
                .all(|i| !i.problem.as_ref().unwrap().contains("duplicate"))
        );

        let opts = SourceOptions::default();
        assert_eq!(
            error(b"id,p\xE4th\nu1,a.jpg\n", &opts),
            "M: the header row is not UTF-8 text; save the manifest as UTF-8 CSV"
        );
        assert_eq!(
            error(b"\xFF\xFEp\0a\0t\0h\0", &opts),
            "M: the file is UTF-16 text; save the manifest as UTF-8 CSV"
        );
    }

    #[test]
    fn header_errors_name_the_columns() {
        let opts = SourceOptions::default();
        assert_eq!(
            error(b"file,user\na.jpg,u\n", &opts),
            "M has no \"path\" column (choose one with --path-column); its columns are: file, user"
        );
        let o = SourceOptions {
            path_column: "image".into(),
            ..Default::default()
        };
        assert_eq!(
            error(b"file,user\n", &o),
            "M has no \"image\" column (given with --path-column); its columns are: file, user"
        );
        let o = SourceOptions {
            id_column: Some("uid".into()),
            ..Default::default()
        };
        assert_eq!(
            error(b"path,user\n", &o),
            "M has no \"uid\" column (given with --id-column); its columns are: path, user"
        );
        let o = SourceOptions {
            vendor_data_column: Some("who".into()),
            ..Default::default()
        };
        assert!(error(b"path\n", &o).contains("(given with --vendor-data-column)"));
        let o = SourceOptions {
            metadata_column: Some("meta".into()),
            ..Default::default()
        };
        assert!(error(b"path\n", &o).contains("(given with --metadata-column)"));
        assert_eq!(
            error(b"path,id,path\n", &opts),
            "M: column \"path\" appears more than once in the header"
        );
        assert_eq!(
            error(b"", &opts),
            "M is empty: a manifest needs a header row naming its columns"
        );
        assert_eq!(
            error(b"\xEF\xBB\xBF\r\n\r\n", &opts),
            "M is empty: a manifest needs a header row naming its columns"
        );
    }

    #[test]
    fn chosen_columns_and_loose_header_names() {
        let opts = SourceOptions {
            path_column: "file".into(),
            id_column: Some("customer".into()),
            vendor_data_column: Some("user".into()),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let got = manifest_at(
            dir.path(),
            b" Customer , FILE ,user,,id\nc1,x.jpg,u1,v,i1\n",
            &opts,
        )
        .unwrap();
        assert_eq!(got[0].key, "c1");
        assert_eq!(got[0].display_path, "x.jpg");
        assert_eq!(got[0].vendor_data.as_deref(), Some("u1"));
        assert_eq!(
            got[0].columns,
            BTreeMap::from([
                ("column_4".to_string(), "v".to_string()),
                ("id".to_string(), "i1".to_string())
            ])
        );
    }

    /// Follow `bytes` through a guard, in chunks of `chunk` bytes: the bytes passed on before
    /// the fault (if any) and the fault.
    fn guard(bytes: &[u8], chunk: usize) -> (usize, Option<Structure>) {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut g = Guard::new(Chunks(bytes, chunk));
        let mut passed = 0;
        let mut buf = [0u8; 4096];
        loop {
            match g.read(&mut buf) {
                Ok(0) => return (passed, None),
                Ok(n) => passed += n,
                Err(e) => return (passed, Guard::<Input>::problem(&e).cloned()),
            }
        }
    }

    #[test]
    fn guard_follows_quotes_the_way_the_parser_does() {
        for chunk in [1, 3, 4096] {
            // Quotes inside an unquoted field are plain characters; "" inside a quoted field is
            // a quote; two line breaks in a quoted field are fine; CR, LF and CRLF end rows.
            let ok = b"id,path\r\na\"b,\"x \"\"y\"\" \nz\n\",c\rd,\"1\"2\n\n\n,,\n";
            assert_eq!(guard(ok, chunk), (ok.len(), None), "chunk {chunk}");
        }
        // The fault is found where the quote began, and the bytes before it are passed on.
        let mut text = b"path,note\na.jpg,fine\nb.jpg,\"never closed\n".to_vec();
        for i in 0..20 {
            text.extend_from_slice(format!("c{i}.jpg,x\n").as_bytes());
        }
        let (passed, fault) = guard(&text, 7);
        assert_eq!(fault, Some(Structure::RunawayQuote { row: 2, line: 3 }));
        assert!(passed > 30 && passed < text.len(), "{passed}");
        assert_eq!(
            guard(b"path\na.jpg\n\"b.jpg\n", 4096),
            (18, Some(Structure::UnclosedQuote { row: 2, line: 3 }))
        );
        // Exactly ten line breaks inside one field is still a field.
        let ten = format!("path,note\na.jpg,\"{}\"\n", "l\n".repeat(10));
        assert_eq!(guard(ten.as_bytes(), 4096).1, None);
        let eleven = format!("path,note\na.jpg,\"{}\"\n", "l\n".repeat(11));
        assert_eq!(
            guard(eleven.as_bytes(), 4096).1,
            Some(Structure::RunawayQuote { row: 1, line: 2 })
        );
    }

    #[test]
    fn guard_bounds_one_row() {
        let mut text = b"path\n\n".to_vec();
        text.resize(text.len() + MAX_ROW_BYTES as usize, b'a');
        text.push(b'\n');
        assert_eq!(
            guard(&text, 65536).1,
            None,
            "exactly the limit, terminator aside"
        );
        text.pop();
        text.extend_from_slice(b"a\n");
        assert_eq!(
            guard(&text, 65536),
            (
                6 + MAX_ROW_BYTES as usize,
                Some(Structure::RowTooLong { row: 1, line: 3 })
            )
        );
        let header = vec![b'h'; MAX_ROW_BYTES as usize + 1];
        assert_eq!(
            Structure::RowTooLong { row: 0, line: 1 }.to_string(),
            "the header row (line 1) is longer than 1 MB, the limit for one manifest row"
        );
        assert_eq!(
            guard(&header, 4096).1,
            Some(Structure::RowTooLong { row: 0, line: 1 })
        );
    }

    #[test]
    fn an_unclosed_quote_refuses_the_manifest_naming_its_line() {
        let mut text =
            "id,path,note\n1,a.jpg,ok\n2,b.jpg,\"two\nlines\"\n3,c.jpg,\"oops\n".to_string();
        for i in 4..40 {
            text.push_str(&format!("{i},{i}.jpg,\n"));
        }
        assert_eq!(
            error(text.as_bytes(), &SourceOptions::default()),
            "M: the quoted field that begins on line 5 (row 3) runs over more than 10 lines: \
             is its closing quote (\") missing?"
        );
        assert_eq!(
            error(
                b"id,path\n1,a.jpg\n2,\"b.jpg\n3,c.jpg\n",
                &SourceOptions::default()
            ),
            "M: the quoted field that begins on line 3 (row 2) is never closed: \
             is its closing quote (\") missing?"
        );
    }

    #[test]
    fn a_huge_line_refuses_the_manifest_with_a_short_message() {
        let mut text = b"path\na.jpg\n".to_vec();
        text.resize(text.len() + 10_000_000, 0);
        text.extend_from_slice(b"\nb.jpg\n");
        let msg = error(&text, &SourceOptions::default());
        assert_eq!(
            msg,
            "M: row 2 (line 3) is longer than 1 MB, the limit for one manifest row"
        );
    }

    #[test]
    fn a_huge_line_on_a_stream_stops_reading_with_memory_bounded() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        // Standard input cannot be checked up front: a header, a good row, then one line of
        // NULs without end. Reading stops once the row passes the limit, having pulled little
        // more than the limit from the stream.
        struct Endless(Arc<AtomicU64>);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let at = self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
                let head = b"path\na.jpg\n";
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = head.get(at as usize + i).copied().unwrap_or(0);
                }
                Ok(buf.len())
            }
        }
        let pulled = Arc::new(AtomicU64::new(0));
        let m = Manifest::new(
            Box::new(Endless(pulled.clone())),
            "-".into(),
            "standard input".into(),
            None,
            &SourceOptions::default(),
        )
        .unwrap();
        let events: Vec<Event> = m.collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], Event::Item(i) if i.key == "a.jpg"));
        assert_eq!(
            events[1],
            Event::Warning(
                "standard input: reading stopped: row 2 (line 3) is longer than 1 MB, the limit \
                 for one manifest row; the rows from there on were not read"
                    .into()
            )
        );
        assert!(
            pulled.load(Ordering::Relaxed) < MAX_ROW_BYTES + 256 * 1024,
            "{}",
            pulled.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn odd_path_and_id_cells_are_row_problems_with_short_messages() {
        let long_id = "i".repeat(5000);
        let long_path = "p".repeat(5000);
        let text = format!(
            "id,path\nr1,a\0b.jpg\n{long_id},x.jpg\n,{long_path}\n,{long_path}\nr5,ok.jpg\n"
        );
        let got = items(text.as_bytes());
        let probs: Vec<(&str, &str)> = got
            .iter()
            .map(|i| (i.key.as_str(), i.problem.as_deref().unwrap_or("")))
            .collect();
        let cut = |c: &str| format!("{}… (5000 bytes in all)", c.repeat(crate::messages::ECHO_MAX));
        assert_eq!(
            probs,
            [
                ("r1", "row 1: the path holds a NUL character: a\\u{0}b.jpg"),
                (
                    "#row2",
                    &*format!(
                        "row 2: the id is 5000 bytes long, over the 4096-byte limit: {}",
                        cut("i")
                    )
                ),
                (
                    "#row3",
                    &*format!(
                        "row 3: the path is 5000 bytes long, over the 4096-byte limit: {}",
                        cut("p")
                    )
                ),
                (
                    "#row4",
                    &*format!(
                        "row 4: the path is 5000 bytes long, over the 4096-byte limit: {}",
                        cut("p")
                    )
                ),
                ("r5", ""),
            ]
        );
    }

    #[test]
    fn long_names_in_header_errors_are_cut() {
        let long = "c".repeat(3000);
        let msg = error(
            format!("{long},{long}\n").as_bytes(),
            &SourceOptions::default(),
        );
        assert_eq!(
            msg,
            format!(
                "M: column \"{}… (3000 bytes in all)\" appears more than once in the header",
                "c".repeat(crate::messages::ECHO_MAX)
            )
        );
        let msg = error(format!("{long},x\n").as_bytes(), &SourceOptions::default());
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.ends_with("… (3003 bytes in all)"), "{msg}");
    }

    #[test]
    fn header_only_manifest_has_no_items() {
        assert!(items(b"id,path\r\n").is_empty());
    }

    #[test]
    fn rows_stream_one_at_a_time() {
        // A reader that fails after the first rows: the items before it still come out, then a warning.
        struct Flaky(io::Cursor<Vec<u8>>);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("disk went away")),
                    n => Ok(n),
                }
            }
        }
        let input: Input = Box::new(Flaky(io::Cursor::new(b"path\na.jpg\nb.jpg\n".to_vec())));
        let m = Manifest::new(
            input,
            "m.csv".into(),
            "m.csv".into(),
            None,
            &SourceOptions::default(),
        )
        .unwrap();
        let events: Vec<Event> = m.collect();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(
            matches!(&events[1], Event::Item(i) if i.key == "b.jpg" && i.path == Path::new("b.jpg"))
        );
        assert!(
            matches!(&events[2], Event::Warning(w) if w.starts_with("m.csv: reading stopped after row 2: "))
        );
    }

    #[test]
    fn an_endless_manifest_still_yields_items() {
        // Rows generated forever: items come out one by one, so nothing is collected up front.
        struct Endless(u64, Vec<u8>);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1.is_empty() {
                    self.0 += 1;
                    self.1 = if self.0 == 1 {
                        b"path\n".to_vec()
                    } else {
                        format!("{}.jpg\n", self.0).into_bytes()
                    };
                }
                let n = buf.len().min(self.1.len());
                buf[..n].copy_from_slice(&self.1[..n]);
                self.1.drain(..n);
                Ok(n)
            }
        }
        let input: Input = Box::new(Endless(0, Vec::new()));
        let m = Manifest::new(
            input,
            "-".into(),
            "standard input".into(),
            None,
            &SourceOptions::default(),
        )
        .unwrap();
        let keys: Vec<String> = m
            .take(3)
            .map(|e| match e {
                Event::Item(i) => i.key,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, ["2.jpg", "3.jpg", "4.jpg"]);
    }
}
