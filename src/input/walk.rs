//! Folder sources: a lazy, sorted, recursive walk that turns image files into items and reports
//! everything else as ignored (hidden files, links not followed, non-images) or as a warning.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use walkdir::{DirEntry, WalkDir};

use super::{Event, Item, SourceOptions, VendorDataFrom, escape_bytes, escape_path, preflight};

/// File extensions that make a file an item whatever its content (lowercase). Preflight then
/// refuses the ones Didit does not take, so every selfie gets a result.
pub const IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "png", "webp", "tif", "tiff", "heic", "heif", "gif", "bmp", "avif",
];

/// How many leading bytes are read to tell an image from another file.
const HEAD_LEN: usize = 64;

pub(super) struct Walk {
    root: PathBuf,
    source: String,
    /// The root folder's own name, for `--vendor-data-from parent` on files directly in it.
    root_name: Option<String>,
    hidden: bool,
    vendor_data_from: Option<VendorDataFrom>,
    filters: super::filter::Filters,
    it: walkdir::IntoIter,
}

impl Walk {
    pub(super) fn new(root: &Path, source: &str, opts: &SourceOptions) -> Self {
        let root_name = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| escape_bytes(n.as_encoded_bytes())));
        let it = WalkDir::new(root)
            .follow_links(opts.follow_links)
            // In name order. Siblings' paths are their parent's path plus their names, so
            // comparing the paths' bytes orders them as their names would, without taking
            // each name back out of its path at every comparison (as sorting by file name
            // does: most of the walk's time in a folder of thousands of files).
            .sort_by(|a, b| a.path().as_os_str().cmp(b.path().as_os_str()))
            .into_iter();
        Walk {
            root: root.to_path_buf(),
            source: source.to_string(),
            root_name,
            hidden: opts.hidden,
            vendor_data_from: opts.vendor_data_from,
            filters: opts.filters.clone(),
            it,
        }
    }

    fn entry(&mut self, entry: DirEntry) -> Option<Event> {
        if entry.depth() == 0 {
            return None;
        }
        let ft = entry.file_type();
        let shown = escape_path(entry.path());
        if !self.hidden && is_hidden(entry.file_name()) {
            if ft.is_dir() {
                self.it.skip_current_dir();
                return Some(ignored(shown, "hidden folder (--hidden includes it)"));
            }
            return Some(ignored(shown, "hidden file (--hidden includes it)"));
        }
        if ft.is_dir() {
            return None;
        }
        // Left out by --include / --exclude: never looked at further.
        if !self.filters.is_empty() {
            let rel = entry
                .path()
                .strip_prefix(&self.root)
                .unwrap_or(entry.path());
            if let Some(reason) = self.filters.leaves_out(&slash_key(rel)) {
                return Some(ignored(shown, &reason));
            }
        }
        if ft.is_symlink() {
            // Only seen when links are not followed.
            return Some(ignored(shown, &link_reason(entry.path())));
        }
        if !ft.is_file() {
            let kind = crate::kit::kinds::file_kind(&ft);
            return Some(ignored(
                shown,
                &format!("not a regular file: {kind} (never opened)"),
            ));
        }
        let path = entry.path();
        if !has_image_extension(path) {
            match read_head(path) {
                Ok(head) if preflight::looks_like_image(&head) => {}
                Ok(head) => {
                    let what = match preflight::sniff(&head) {
                        Ok(_) => unreachable!("an accepted format looks like an image"),
                        Err(what) => what,
                    };
                    return Some(ignored(shown, &format!("not an image ({what})")));
                }
                Err(reason) => {
                    return Some(ignored(
                        shown,
                        &format!("cannot read it to check its type: {reason}"),
                    ));
                }
            }
        }
        Some(Event::Item(self.item(entry.path(), entry.depth())))
    }

    fn item(&self, path: &Path, depth: usize) -> Item {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let key = slash_key(rel);
        let vendor_data = match self.vendor_data_from {
            None => None,
            Some(VendorDataFrom::Stem) => {
                path.file_stem().map(|s| escape_bytes(s.as_encoded_bytes()))
            }
            Some(VendorDataFrom::Parent) if depth <= 1 => self.root_name.clone(),
            Some(VendorDataFrom::Parent) => rel
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| escape_bytes(s.as_encoded_bytes())),
        };
        Item {
            key,
            path: path.to_path_buf(),
            display_path: escape_path(path),
            source: self.source.clone(),
            row: None,
            vendor_data,
            metadata: None,
            columns: BTreeMap::new(),
            problem: None,
            seq: 0,
            version: None,
            regular: true,
            reference: None,
        }
    }

    fn error(&mut self, err: walkdir::Error) -> Option<Event> {
        let shown = err
            .path()
            .map(escape_path)
            .unwrap_or_else(|| self.source.clone());
        if let Some(ancestor) = err.loop_ancestor() {
            return Some(Event::Warning(format!(
                "symbolic link loop skipped: {shown} leads back to {}",
                escape_path(ancestor)
            )));
        }
        let io = err.io_error();
        // A broken link named like an image is still a selfie to account for: preflight reports it.
        if let (Some(path), Some(io)) = (err.path(), io)
            && io.kind() == std::io::ErrorKind::NotFound
            && has_image_extension(path)
        {
            let path = path.to_path_buf();
            return Some(Event::Item(self.item(&path, err.depth())));
        }
        // Any other broken link (links are followed here) is listed like an unfollowed one.
        if let (Some(path), Some(io)) = (err.path(), io)
            && io.kind() == std::io::ErrorKind::NotFound
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Some(ignored(shown, BROKEN_LINK));
        }
        let what = io.map(|e| e.to_string()).unwrap_or_else(|| err.to_string());
        Some(Event::Warning(format!("cannot read {shown}: {what}")))
    }
}

impl Iterator for Walk {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let event = match self.it.next()? {
                Ok(entry) => self.entry(entry),
                Err(err) => self.error(err),
            };
            if event.is_some() {
                return event;
            }
        }
    }
}

fn ignored(path: String, reason: &str) -> Event {
    Event::Ignored {
        path,
        reason: reason.to_string(),
    }
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

const BROKEN_LINK: &str = "broken symbolic link";

/// Why a symbolic link that is not followed is listed as ignored: what it points to. Only the
/// link's target is looked up (stat), never opened.
fn link_reason(link: &Path) -> String {
    const HINT: &str = "not followed; --follow-links follows it";
    match std::fs::metadata(link) {
        Ok(m) if m.is_dir() => format!("symbolic link to a folder ({HINT})"),
        Ok(m) if m.is_file() => format!("symbolic link to a file ({HINT})"),
        Ok(m) => format!(
            "symbolic link to a {} (not followed; never opened)",
            crate::kit::kinds::file_kind(&m.file_type())
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BROKEN_LINK.to_string(),
        Err(e) if is_link_loop(&e) => "symbolic link loop (it leads back to itself)".to_string(),
        Err(e) => format!("symbolic link whose target cannot be looked up: {e}"),
    }
}

#[cfg(unix)]
fn is_link_loop(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(not(unix))]
fn is_link_loop(_: &std::io::Error) -> bool {
    false
}

/// The first bytes of a regular file, opened the way preflight opens it (never blocking).
fn read_head(path: &Path) -> Result<Vec<u8>, String> {
    let (file, _) = preflight::open_regular(path).map_err(|u| u.describe())?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    file.take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    Ok(head)
}

/// The relative path with '/' separators, whatever the platform; lossless (see
/// [`escape_bytes`]).
fn slash_key(rel: &Path) -> String {
    let mut bytes = Vec::new();
    for c in rel.components() {
        if let Component::Normal(s) = c {
            if !bytes.is_empty() {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(s.as_encoded_bytes());
        }
    }
    escape_bytes(&bytes)
}

#[cfg(test)]
mod tests;
