//! Input sources: folders walked, CSV manifests and bucket prefixes checked once up front (a
//! [`Plan`]), then read as one stream of items, never collected. `preflight` checks each item's
//! file before anything is sent.

pub mod bucket;
mod duplicates;
pub mod filter;
mod manifest;
pub mod pair;
pub mod preflight;
pub mod version;
mod walk;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

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
    /// Face match: the reference image the selfie is compared with (boxed: most runs have
    /// none, and an item stays small).
    pub reference: Option<Box<Reference>>,
}

impl Item {
    /// The text a resume compares to tell whether the item changed: its image's version, and
    /// for a pair the reference's name and version too (another reference, or the same one
    /// changed, is another item to screen). `None` when either is unknown.
    pub fn version_text(&self) -> Option<String> {
        let own = self.version.as_ref()?;
        match &self.reference {
            None => Some(own.to_string()),
            Some(r) => Some(format!("{own} ref={} {}", r.display, r.version.as_ref()?)),
        }
    }
}

#[cfg(test)]
impl Item {
    /// An item of the folder `in` at `key`, for the crate's unit tests.
    pub(crate) fn for_test(key: &str) -> Item {
        Item {
            key: key.into(),
            path: PathBuf::from(key),
            display_path: key.into(),
            source: "in".into(),
            row: None,
            vendor_data: None,
            metadata: None,
            columns: BTreeMap::new(),
            problem: None,
            seq: 0,
            version: None,
            regular: true,
            reference: None,
        }
    }
}

/// Face match's second image: where it is, and what it was when looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// As written in the manifest's reference cell, or as found under `--ref-dir` (the folder
    /// as given, then the file's path in it): the pair's second key in every output.
    pub display: String,
    /// The path to read (a manifest-relative path resolved against the manifest's folder), or
    /// an object URI.
    pub path: PathBuf,
    /// Its version, once looked at (as an item's).
    pub version: Option<version::Version>,
}

/// Where face match finds each selfie's reference image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum References {
    /// A manifest column (`ref_path` unless `--ref-column` says otherwise): a path, relative
    /// to the manifest's folder or absolute, or an object URI. Folder and bucket sources have
    /// no such column and are refused.
    Column(String),
    /// `--ref-dir DIR`: each item's reference is found under DIR by the item's key
    /// ([`pair::RefDir`]).
    Dir(PathBuf),
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
    /// Find and rename repeated manifest keys (a file's by its plan pass, standard input's in a
    /// compact map that grows with the rows). Off, repeated keys are left as they are.
    pub track_duplicates: bool,
    /// Where a manifest file's pass for duplicate keys spills its sorted runs (the out dir);
    /// the system's temporary folder when unset or missing.
    pub spill_dir: Option<PathBuf>,
    /// How bucket sources and URIs in manifests are reached.
    pub storage: bucket::StorageOptions,
    /// `--include` / `--exclude`, for folders and bucket prefixes.
    pub filters: filter::Filters,
    /// Face match: where each item's reference image is; `None` for single-image checks.
    pub references: Option<References>,
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
            references: None,
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
    /// Face match without a way to pair a folder's or prefix's selfies with references.
    #[error(
        "{0}: face match compares each selfie with a reference image, and a folder or bucket \
         prefix names none; give --ref-dir DIR (each reference found there by the selfie's \
         key) or a manifest with a ref_path column"
    )]
    NoReferences(String),
    /// `--ref-dir` that cannot be used.
    #[error("--ref-dir {dir}: {why}")]
    RefDir { dir: String, why: String },
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

/// What a [`Plan`] counts while it checks the sources.
#[derive(Default, Clone, Copy)]
pub struct Tally<'a> {
    /// Count the items of every folder (walked whole for it; a manifest's rows are counted by
    /// its one pass anyway).
    pub count: bool,
    /// Find the first folder or manifest with no item (a folder walked up to its first item).
    pub empty: bool,
    /// Count only the items whose key (as listed) this keeps: a shard's share.
    pub keep: Option<&'a dyn Fn(&str) -> bool>,
}

impl Tally<'_> {
    fn keeps(&self, key: &str) -> bool {
        self.keep.is_none_or(|k| k(key))
    }
}

/// Every source checked once, before anything is sent: a typo, a manifest with a broken
/// structure or a missing column fails here; each manifest file is read in one pass that
/// checks its structure, finds its duplicate keys and counts its rows. The run then streams
/// from the plan ([`Plan::stream`]) without checking anything again.
pub struct Plan {
    queue: VecDeque<Box<dyn Iterator<Item = Event> + Send>>,
    /// The items the sources hold (those the tally keeps), when they could be counted (no
    /// standard input, no bucket prefix, and folders only when asked).
    pub items: Option<u64>,
    /// The position among the sources of the first folder or manifest with no item, when
    /// asked.
    pub empty: Option<usize>,
    /// A single source that is not a folder: its items' keys are unique already (a manifest
    /// renames its repeated ids, a listing's keys differ).
    pub unique_keys: bool,
    /// `--ref-dir`, checked: the stream's items come unpaired, for the caller to pair those it
    /// keeps ([`Plan::take_pairing`]).
    ref_dir: Option<pair::RefDir>,
}

impl Plan {
    pub fn new(
        sources: &[PathBuf],
        opts: &SourceOptions,
        tally: Tally,
    ) -> Result<Plan, InputError> {
        let mut plan = Plan {
            queue: VecDeque::new(),
            items: Some(0),
            empty: None,
            unique_keys: sources.len() == 1,
            ref_dir: match &opts.references {
                Some(References::Dir(dir)) => Some(pair::RefDir::open(dir)?),
                _ => None,
            },
        };
        // Face match by a manifest column: a folder or prefix has no such column.
        let no_references = |shown: &str| match &opts.references {
            Some(References::Column(_)) => Err(InputError::NoReferences(shown.to_string())),
            _ => Ok(()),
        };
        let mut seen = Vec::new();
        if sources.iter().filter(|s| s.as_os_str() == "-").count() > 1 {
            return Err(InputError::StdinTwice);
        }
        for (at, src) in sources.iter().enumerate() {
            let shown = src.display().to_string();
            let mut given = |canonical: PathBuf| {
                if seen.contains(&canonical) {
                    return Err(InputError::GivenTwice(shown.clone()));
                }
                seen.push(canonical);
                Ok(())
            };
            if let Some(uri) = src.to_str().and_then(bucket::Uri::parse) {
                let uri = uri?;
                no_references(&shown)?;
                // The prefix as listed: `s3://b/q3` and `s3://b/q3/` are the same source.
                given(PathBuf::from(format!(
                    "{}{}",
                    uri.bucket_uri(),
                    uri.list_prefix()
                )))?;
                plan.queue
                    .push_back(Box::new(bucket::Listing::open(uri, &shown, opts)?));
                plan.items = None;
                continue;
            }
            if src.as_os_str() == "-" {
                plan.queue
                    .push_back(Box::new(manifest::Manifest::stdin(opts)?));
                plan.items = None;
                continue;
            }
            let meta = std::fs::metadata(src).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => InputError::NotFound(shown.clone()),
                _ => InputError::Io {
                    path: shown.clone(),
                    error: e,
                },
            })?;
            given(src.canonicalize().unwrap_or_else(|_| src.clone()))?;
            let (rows, kept) = if meta.is_dir() {
                no_references(&shown)?;
                if let Some(refs) = &plan.ref_dir {
                    refs.outside(src, &shown)?;
                }
                plan.queue
                    .push_back(Box::new(walk::Walk::new(src, &shown, opts)));
                plan.unique_keys = false;
                count_folder(src, &shown, opts, tally)
            } else if meta.is_file() && is_csv(src) {
                let (m, rows, kept) = manifest::Manifest::file(src, opts, &|k| tally.keeps(k))?;
                plan.queue.push_back(Box::new(m));
                (Some(rows), Some(kept))
            } else {
                return Err(InputError::NotASource(shown));
            };
            if tally.empty && rows == Some(0) {
                plan.empty = plan.empty.or(Some(at));
            }
            plan.items = plan.items.zip(kept).map(|(a, b)| a + b);
        }
        Ok(plan)
    }

    /// `--ref-dir`'s pairing, for the caller that pairs the items it keeps (a shard only its
    /// own share).
    pub fn take_pairing(&mut self) -> Option<pair::RefDir> {
        self.ref_dir.take()
    }

    /// The stream of every source's events, in the order the sources were given.
    pub fn stream(self) -> Sources {
        Sources {
            queue: self.queue,
            next_seq: 0,
        }
    }
}

/// A folder's items and those the tally keeps: walked whole when counted, up to its first item
/// when only its emptiness is asked, not at all otherwise.
fn count_folder(
    src: &Path,
    shown: &str,
    opts: &SourceOptions,
    tally: Tally,
) -> (Option<u64>, Option<u64>) {
    let mut items = walk::Walk::new(src, shown, opts).filter_map(|e| match e {
        Event::Item(i) => Some(i),
        _ => None,
    });
    if tally.count {
        let (mut rows, mut kept) = (0, 0);
        for item in items {
            rows += 1;
            kept += u64::from(tally.keeps(&item.key));
        }
        (Some(rows), Some(kept))
    } else if tally.empty {
        (Some(u64::from(items.next().is_some())), None)
    } else {
        (None, None)
    }
}

/// Check every source up front (so a typo fails before anything is sent), then stream them.
pub fn open(sources: &[PathBuf], opts: &SourceOptions) -> Result<Sources, InputError> {
    Ok(Plan::new(sources, opts, Tally::default())?.stream())
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

#[cfg(test)]
mod tests;
