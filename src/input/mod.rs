//! Input sources: folders walked and CSV manifests read as one stream of items, validated up front,
//! never collected. `preflight` checks each item's file before anything is sent.

mod manifest;
pub mod preflight;
mod walk;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cli::VendorDataFrom;

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
}

/// A source that cannot be used; the run stops before anything is sent (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("source not found: {0}")]
    NotFound(String),
    #[error(
        "{0} is not a folder, a .csv manifest or - (standard input); use `check` for one image"
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

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "{} is not a folder, a .csv manifest or - (standard input); use `check` for one image",
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
