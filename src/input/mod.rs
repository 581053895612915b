//! Input sources: folders walked, CSV manifests and bucket prefixes read as one stream of items,
//! validated up front, never collected. `preflight` checks each item's file before anything is
//! sent.

pub mod bucket;
mod duplicates;
pub mod filter;
mod manifest;
pub mod preflight;
pub mod version;
mod walk;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use walk::IMAGE_EXTENSIONS;

/// One image to screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Stable key: the manifest id if given, else the path relative to the folder root
    /// ('/' separators), or for manifests without an id column the path cell as written.
    pub key: String,
    /// The path to read (manifest-relative paths resolved against the manifest's folder).
    pub path: PathBuf,
    /// The path as given or found, for outputs.
    pub display_path: String,
    /// The SOURCE argument this came from ("-" for standard input).
    pub source: String,
    /// Manifest data row number (1-based, header excluded).
    pub row: Option<u64>,
    pub vendor_data: Option<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Every other manifest column, carried through to the outputs.
    pub columns: BTreeMap<String, String>,
    /// Set when the row itself is bad: the item becomes an invalid_input result, never an abort.
    pub problem: Option<String>,
    /// Position among all the items of the sources, in input order (0-based; set by [`Sources`]).
    /// Outputs list items in this order.
    pub seq: u64,
    /// The item's version when known: set by the scan from the file's metadata (the opened
    /// file's, once it is read).
    pub version: Option<version::Version>,
    /// The folder walk found a regular file at `path` (its directory entry said so): the
    /// preflight opens it without looking it up first.
    pub regular: bool,
}

/// Where a folder item's `vendor_data` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorDataFrom {
    /// The file name without its extension.
    Stem,
    /// The name of the folder holding the file.
    Parent,
}

/// How sources are read (from the scan options).
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub hidden: bool,
    pub follow_links: bool,
    pub vendor_data_from: Option<VendorDataFrom>,
    pub path_column: String,
    pub id_column: Option<String>,
    pub vendor_data_column: Option<String>,
    pub metadata_column: Option<String>,
    /// Report duplicate manifest ids (a compact map grows with the rows). Off only for a pass
    /// that merely counts items.
    pub track_duplicates: bool,
    /// Where a manifest file's pass for duplicate keys spills its sorted runs (the out dir);
    /// the system's temporary folder when unset or missing.
    pub spill_dir: Option<PathBuf>,
    /// How bucket sources and URIs in manifests are reached.
    pub storage: bucket::StorageOptions,
    /// `--include` / `--exclude`, for folders and bucket prefixes.
    pub filters: filter::Filters,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            hidden: false,
            follow_links: false,
            vendor_data_from: None,
            path_column: "path".to_string(),
            id_column: None,
            vendor_data_column: None,
            metadata_column: None,
            track_duplicates: true,
            spill_dir: None,
            storage: bucket::StorageOptions::default(),
            filters: filter::Filters::default(),
        }
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq)]
// Items are by far the most common event, so boxing them would only add an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Item(Item),
    /// A file that is not an image (or hidden, or a link not followed): skipped and counted.
    Ignored {
        path: String,
        reason: String,
    },
    /// Something the user should know that is not an item: a symlink loop, an unreadable folder,
    /// a manifest that stopped reading midway.
    Warning(String),
    /// A source that could not be read to its end (a bucket listing that stopped after its
    /// retries): the population the run saw is incomplete. Nothing of that source follows.
    Incomplete {
        /// The SOURCE argument.
        source: String,
        /// The last key listed before it stopped (relative to the prefix), if any.
        last_key: Option<String>,
        reason: String,
    },
}

/// A source that cannot be used; the run stops before anything is sent (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("source not found: {0}")]
    NotFound(String),
    #[error(
        "{0} is not a folder, a .csv manifest, a bucket URI (s3://BUCKET/PREFIX/) or - (standard \
         input); use `check` for one image"
    )]
    NotASource(String),
    #[error("- (a manifest on standard input) is given more than once")]
    StdinTwice,
    /// Standard input's manifest was refused by an earlier `open` in this process.
    #[error("{0}")]
    StdinFailed(String),
    #[error("{0} is given more than once")]
    GivenTwice(String),
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{0} is empty: a manifest needs a header row naming its columns")]
    EmptyManifest(String),
    #[error("{manifest} has no \"{column}\" column{hint}; its columns are: {available}")]
    MissingColumn {
        manifest: String,
        column: String,
        hint: String,
        available: String,
    },
    #[error("{manifest}: column \"{column}\" appears more than once in the header")]
    DuplicateColumn { manifest: String, column: String },
    #[error("{manifest}: {what}; save the manifest as UTF-8 CSV")]
    NotUtf8 { manifest: String, what: String },
    #[error("{manifest}: {error}")]
    Csv { manifest: String, error: csv::Error },
    /// The manifest's structure is broken (an unclosed quote, a row too long to be real): it is
    /// refused whole, before anything is sent, rather than read wrong.
    #[error("{manifest}: {problem}")]
    Malformed { manifest: String, problem: String },
    /// A bucket source that cannot be used (a refusal of the store stops with exit 7).
    #[error(transparent)]
    Storage(#[from] bucket::StorageError),
    /// A source with nothing to screen: most often a mistyped folder or prefix.
    #[error(
        "{0} holds no image to screen (check the folder, manifest or prefix; --allow-empty \
         accepts a source with none)"
    )]
    Empty(String),
}

/// A path's bytes as text, losslessly: a valid UTF-8 path is returned unchanged; in a path that
/// is not valid UTF-8 each invalid byte is written `\xHH` and each literal backslash `\\`, so
/// two different such paths never give the same text and the bytes can be told back from it.
/// (A valid UTF-8 name that itself reads like an escape, such as a literal `M\xfcller.png`, is
/// kept as written: old keys must stay the same.)
pub fn escape_path(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_encoded_bytes())
}

/// [`escape_path`] for raw bytes.
pub fn escape_bytes(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The stream of every source's events, in the order the sources were given.
pub struct Sources {
    queue: VecDeque<Box<dyn Iterator<Item = Event> + Send>>,
    next_seq: u64,
}

impl Iterator for Sources {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            match self.queue.front_mut()?.next() {
                Some(Event::Item(mut item)) => {
                    item.seq = self.next_seq;
                    self.next_seq += 1;
                    return Some(Event::Item(item));
                }
                Some(event) => return Some(event),
                None => {
                    self.queue.pop_front();
                }
            }
        }
    }
}

/// Validate every source up front (so a typo fails before anything is sent), then stream them.
/// Folders and manifest files are read afresh by each call; standard input ("-") is read once
/// per process and shared between calls.
pub fn open(sources: &[PathBuf], opts: &SourceOptions) -> Result<Sources, InputError> {
    let mut queue: VecDeque<Box<dyn Iterator<Item = Event> + Send>> = VecDeque::new();
    let mut seen = Vec::new();
    if sources.iter().filter(|s| s.as_os_str() == "-").count() > 1 {
        return Err(InputError::StdinTwice);
    }
    for src in sources {
        let shown = src.display().to_string();
        if let Some(uri) = src.to_str().and_then(bucket::Uri::parse) {
            let uri = uri?;
            // The prefix as listed: `s3://b/q3` and `s3://b/q3/` are the same source.
            let canonical = PathBuf::from(format!("{}{}", uri.bucket_uri(), uri.list_prefix()));
            if seen.contains(&canonical) {
                return Err(InputError::GivenTwice(shown));
            }
            seen.push(canonical);
            let listing = bucket::Listing::open(uri, &shown, opts)?;
            queue.push_back(Box::new(listing));
            continue;
        }
        if src.as_os_str() == "-" {
            queue.push_back(Box::new(stdin_manifest(opts)?));
            continue;
        }
        let meta = std::fs::metadata(src).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => InputError::NotFound(shown.clone()),
            _ => InputError::Io {
                path: shown.clone(),
                error: e,
            },
        })?;
        let canonical = src.canonicalize().unwrap_or_else(|_| src.clone());
        if seen.contains(&canonical) {
            return Err(InputError::GivenTwice(shown));
        }
        seen.push(canonical);
        if meta.is_dir() {
            queue.push_back(Box::new(walk::Walk::new(src, &shown, opts)));
        } else if meta.is_file() && is_csv(src) {
            let m = manifest::Manifest::file(src, opts)?;
            queue.push_back(Box::new(m));
        } else {
            return Err(InputError::NotASource(shown));
        }
    }
    Ok(Sources { queue, next_seq: 0 })
}

/// Standard input can be read only once, yet callers may `open` the same sources twice (once to
/// validate, once to run). So the stdin manifest is opened once per process and shared: a later
/// `open` continues where the earlier stream stopped (after the header if it only validated).
enum StdinSlot {
    Unread,
    Open(Arc<Mutex<manifest::Manifest>>),
    Failed(String),
}

static STDIN: Mutex<StdinSlot> = Mutex::new(StdinSlot::Unread);

struct SharedStdin(Arc<Mutex<manifest::Manifest>>);

impl Iterator for SharedStdin {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).next()
    }
}

fn stdin_manifest(opts: &SourceOptions) -> Result<SharedStdin, InputError> {
    let mut slot = STDIN.lock().unwrap_or_else(|p| p.into_inner());
    match &*slot {
        StdinSlot::Open(m) => Ok(SharedStdin(m.clone())),
        StdinSlot::Failed(msg) => Err(InputError::StdinFailed(msg.clone())),
        StdinSlot::Unread => match manifest::Manifest::stdin(opts) {
            Ok(m) => {
                let m = Arc::new(Mutex::new(m));
                *slot = StdinSlot::Open(m.clone());
                Ok(SharedStdin(m))
            }
            Err(e) => {
                *slot = StdinSlot::Failed(e.to_string());
                Err(e)
            }
        },
    }
}

/// Whether a folder or manifest source yields at least one item (read only up to the first).
/// Standard input and bucket prefixes are not looked at here (standard input cannot be read
/// twice; a prefix is judged by its first listing page, [`bucket::check_listing`]).
pub fn yields_items(src: &Path, opts: &SourceOptions) -> Result<bool, InputError> {
    if src.as_os_str() == "-" || bucket::is_uri(src) {
        return Ok(true);
    }
    let opts = SourceOptions {
        track_duplicates: false,
        ..opts.clone()
    };
    let mut events = open(std::slice::from_ref(&src.to_path_buf()), &opts)?;
    Ok(events.any(|e| matches!(e, Event::Item(_))))
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::ffi::OsStrExt;

    fn assert_send<T: Send>() {}

    #[test]
    fn sources_can_move_to_a_blocking_thread() {
        assert_send::<Sources>();
        assert_send::<Item>();
    }

    fn err(sources: &[&str]) -> String {
        let paths: Vec<PathBuf> = sources.iter().map(PathBuf::from).collect();
        match open(&paths, &SourceOptions::default()) {
            Ok(_) => panic!("expected an error for {sources:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The inverse of [`escape_bytes`] for names that are not UTF-8 (test only: it shows that
    /// the escaping loses nothing).
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                if b[i + 1] == b'\\' {
                    out.push(b'\\');
                    i += 2;
                } else {
                    assert_eq!(b[i + 1], b'x', "{s}");
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                }
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn utf8_names_are_unchanged() {
        for name in [
            "a/b.jpg",
            "Müller.png",
            "back\\slash \\xfc.jpg",
            "😀 \"q\",x.jpg",
            "",
        ] {
            assert_eq!(escape_bytes(name.as_bytes()), name);
        }
    }

    #[cfg(unix)]
    #[test]
    fn invalid_bytes_are_escaped_and_distinct() {
        assert_eq!(escape_bytes(b"M\xfcller.png"), "M\\xfcller.png");
        assert_eq!(escape_bytes(b"M\xe4ller.png"), "M\\xe4ller.png");
        assert_eq!(escape_bytes(b"a\\b\xff"), "a\\\\b\\xff");
        assert_eq!(escape_bytes(b"\xc3\xa9\xff"), "é\\xff");
        // A cut multi-byte character: each stray byte is escaped, valid ones around it kept.
        assert_eq!(escape_bytes(b"\xc3(\xe2\x82"), "\\xc3(\\xe2\\x82");
        assert_eq!(
            escape_path(Path::new(std::ffi::OsStr::from_bytes(b"d\xe9/x.jpg"))),
            "d\\xe9/x.jpg"
        );
    }

    #[test]
    fn escaping_round_trips_for_every_name_that_is_not_utf8() {
        // Generated byte strings over an alphabet rich in the awkward bytes ('\\', 'x', hex
        // digits, UTF-8 lead and continuation bytes): every one that is not UTF-8 escapes to a
        // text that decodes back to it, so no two give the same key.
        let alphabet = [
            b'\\', b'x', b'f', b'c', b'a', b'/', 0xfc, 0xc3, 0xa9, 0x80, 0xff, b'0',
        ];
        let mut seen = std::collections::HashMap::new();
        for bytes in crate::testing::byte_strings(&alphabet, 9, 20_000) {
            if std::str::from_utf8(&bytes).is_ok() {
                continue;
            }
            let text = escape_bytes(&bytes);
            assert_eq!(unescape(&text), bytes, "{text}");
            if let Some(other) = seen.insert(text.clone(), bytes.clone()) {
                assert_eq!(other, bytes, "two names gave {text}");
            }
        }
        assert!(seen.len() > 1000, "{}", seen.len());
    }

    /// The input stage stands alone: it takes its options from its own types, not from the
    /// command line's.
    #[test]
    fn input_does_not_depend_on_the_command_line() {
        let needle = concat!("crate::", "cli");
        for (file, text) in [
            ("mod.rs", include_str!("mod.rs")),
            ("walk.rs", include_str!("walk.rs")),
            ("manifest.rs", include_str!("manifest.rs")),
            ("preflight.rs", include_str!("preflight.rs")),
            ("bucket/mod.rs", include_str!("bucket/mod.rs")),
            ("bucket/direct.rs", include_str!("bucket/direct.rs")),
        ] {
            assert!(!text.contains(needle), "src/input/{file} uses {needle}");
        }
    }

    #[test]
    fn bad_sources_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let missing = d.join("nope");
        assert_eq!(
            err(&[missing.to_str().unwrap()]),
            format!("source not found: {}", missing.display())
        );

        let img = d.join("face.jpg");
        std::fs::write(&img, b"x").unwrap();
        assert_eq!(
            err(&[img.to_str().unwrap()]),
            format!(
                "{} is not a folder, a .csv manifest, a bucket URI (s3://BUCKET/PREFIX/) or - \
                 (standard input); use `check` for one image",
                img.display()
            )
        );

        assert_eq!(
            err(&["-", "-"]),
            "- (a manifest on standard input) is given more than once"
        );

        let ds = d.to_str().unwrap();
        assert_eq!(err(&[ds, ds]), format!("{ds} is given more than once"));
    }

    #[test]
    fn a_prefix_spelt_with_and_without_its_slash_is_one_source() {
        // Set up only: no request is made before the listing is read.
        assert_eq!(
            err(&["s3://b/q3", "s3://b/q3/"]),
            "s3://b/q3/ is given more than once"
        );
    }

    #[test]
    fn a_later_bad_source_fails_before_anything_streams() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.csv");
        std::fs::write(&m, "file,user\na.jpg,u1\n").unwrap();
        let msg = err(&[dir.path().to_str().unwrap(), m.to_str().unwrap()]);
        assert_eq!(
            msg,
            format!(
                "{} has no \"path\" column (choose one with --path-column); its columns are: file, user",
                m.display()
            )
        );
    }

    #[test]
    fn folders_and_manifests_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos).unwrap();
        std::fs::write(photos.join("b.jpg"), [0xFF, 0xD8, 0xFF]).unwrap();
        let m = dir.path().join("list.CSV");
        std::fs::write(&m, "path\nphotos/b.jpg\n").unwrap();
        let events: Vec<Event> = open(&[m.clone(), photos.clone()], &SourceOptions::default())
            .unwrap()
            .collect();
        let keys: Vec<(String, String)> = events
            .iter()
            .map(|e| match e {
                Event::Item(i) => (i.source.clone(), i.key.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                (m.display().to_string(), "photos/b.jpg".to_string()),
                (photos.display().to_string(), "b.jpg".to_string())
            ]
        );
    }
}
