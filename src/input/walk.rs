//! Folder sources: a lazy, sorted, recursive walk that turns image files into items and reports
//! everything else as ignored (hidden files, links not followed, non-images) or as a warning.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use walkdir::{DirEntry, WalkDir};

use super::{Event, Item, SourceOptions, preflight};
use crate::cli::VendorDataFrom;

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
    it: walkdir::IntoIter,
}

impl Walk {
    pub(super) fn new(root: &Path, source: &str, opts: &SourceOptions) -> Self {
        let root_name = root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let it = WalkDir::new(root)
            .follow_links(opts.follow_links)
            .sort_by_file_name()
            .into_iter();
        Walk {
            root: root.to_path_buf(),
            source: source.to_string(),
            root_name,
            hidden: opts.hidden,
            vendor_data_from: opts.vendor_data_from,
            it,
        }
    }

    fn entry(&mut self, entry: DirEntry) -> Option<Event> {
        if entry.depth() == 0 {
            return None;
        }
        let ft = entry.file_type();
        let shown = entry.path().display().to_string();
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
        if ft.is_symlink() {
            // Only seen when links are not followed.
            return Some(ignored(shown, "symbolic link (--follow-links follows it)"));
        }
        if !ft.is_file() {
            return Some(ignored(shown, "not a regular file"));
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
                Err(e) => {
                    return Some(ignored(
                        shown,
                        &format!("cannot read it to check its type: {e}"),
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
                path.file_stem().map(|s| s.to_string_lossy().into_owned())
            }
            Some(VendorDataFrom::Parent) if depth <= 1 => self.root_name.clone(),
            Some(VendorDataFrom::Parent) => rel
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().into_owned()),
        };
        Item {
            key,
            path: path.to_path_buf(),
            display_path: path.display().to_string(),
            source: self.source.clone(),
            row: None,
            vendor_data,
            metadata: None,
            columns: BTreeMap::new(),
            problem: None,
            seq: 0,
        }
    }

    fn error(&mut self, err: walkdir::Error) -> Option<Event> {
        let shown = err
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| self.source.clone());
        if let Some(ancestor) = err.loop_ancestor() {
            return Some(Event::Warning(format!(
                "symbolic link loop skipped: {shown} leads back to {}",
                ancestor.display()
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

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_LEN);
    std::fs::File::open(path)?
        .take(HEAD_LEN as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// The relative path with '/' separators, whatever the platform.
fn slash_key(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10];

    fn put(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn walk(root: &Path, opts: &SourceOptions) -> Vec<Event> {
        Walk::new(root, "src", opts).collect()
    }

    /// Items as keys, ignored files as "ignored:<rel>", warnings as "warning".
    fn summary(root: &Path, events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Item(i) => i.key.clone(),
                Event::Ignored { path, .. } => {
                    format!(
                        "ignored:{}",
                        slash_key(Path::new(path).strip_prefix(root).unwrap())
                    )
                }
                Event::Warning(_) => "warning".to_string(),
            })
            .collect()
    }

    #[test]
    fn sorted_recursive_walk_with_relative_keys() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "b.jpg", JPEG);
        put(r, "a/z.png", b"\x89PNG\r\n\x1a\n");
        put(r, "a/y/x.JPEG", JPEG);
        put(r, "A.webp", b"RIFF\0\0\0\0WEBPVP8 ");
        put(r, "c/notes.txt", b"hello");
        put(r, "c/data.json", b"{\"a\": 1}");
        put(r, "c/.DS_Store", b"\0\0\0\x01Bud1");
        put(r, ".cache/hidden.jpg", JPEG);
        let events = walk(r, &SourceOptions::default());
        assert_eq!(
            summary(r, &events),
            [
                "ignored:.cache",
                "A.webp",
                "a/y/x.JPEG",
                "a/z.png",
                "b.jpg",
                "ignored:c/.DS_Store",
                "ignored:c/data.json",
                "ignored:c/notes.txt",
            ]
        );
        let reasons: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Ignored { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "hidden folder (--hidden includes it)",
                "hidden file (--hidden includes it)",
                "not an image (text)",
                "not an image (text)",
            ]
        );
        let Event::Item(item) = &events[2] else {
            panic!()
        };
        assert_eq!(item.path, r.join("a/y/x.JPEG"));
        assert_eq!(
            item.display_path,
            r.join("a/y/x.JPEG").display().to_string()
        );
        assert_eq!(item.source, "src");
        assert_eq!(
            (
                item.row,
                item.problem.as_deref(),
                item.vendor_data.as_deref()
            ),
            (None, None, None)
        );
    }

    #[test]
    fn hidden_included_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, ".cache/hidden.jpg", JPEG);
        put(r, ".face.png", b"\x89PNG\r\n\x1a\n");
        let opts = SourceOptions {
            hidden: true,
            ..Default::default()
        };
        assert_eq!(
            summary(r, &walk(r, &opts)),
            [".cache/hidden.jpg", ".face.png"]
        );
    }

    #[test]
    fn image_by_name_or_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "not_a_photo.jpg", b"just text"); // by name: an item that preflight refuses
        put(r, "IMG_0001.HEIC", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic");
        put(r, "upload_123", JPEG); // no extension, JPEG bytes
        put(r, "upload_124.bin", b"GIF89a\x01\0\x01\0"); // GIF bytes: an item, refused later
        put(r, "upload_125.dat", b"%PDF-1.4\n");
        put(r, "empty.png", b"");
        put(r, "empty.txt", b"");
        assert_eq!(
            summary(r, &walk(r, &SourceOptions::default())),
            [
                "IMG_0001.HEIC",
                "empty.png",
                "ignored:empty.txt",
                "not_a_photo.jpg",
                "upload_123",
                "upload_124.bin",
                "ignored:upload_125.dat",
            ]
        );
    }

    #[test]
    fn vendor_data_from_stem_or_parent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("selfies");
        put(&root, "user-1.jpg", JPEG);
        put(&root, "2026-q1/user-2.png", b"\x89PNG\r\n\x1a\n");
        let vd = |from| {
            let opts = SourceOptions {
                vendor_data_from: Some(from),
                ..Default::default()
            };
            walk(&root, &opts)
                .into_iter()
                .map(|e| match e {
                    Event::Item(i) => (i.key, i.vendor_data.unwrap()),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            vd(VendorDataFrom::Stem),
            [
                pair("2026-q1/user-2.png", "user-2"),
                pair("user-1.jpg", "user-1")
            ]
        );
        assert_eq!(
            vd(VendorDataFrom::Parent),
            [
                pair("2026-q1/user-2.png", "2026-q1"),
                pair("user-1.jpg", "selfies")
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_skipped_unless_followed_and_loops_reported() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "real/a.jpg", JPEG);
        symlink(r.join("real/a.jpg"), r.join("link.jpg")).unwrap();
        symlink(r.join("real"), r.join("real/loop")).unwrap();
        symlink(r.join("gone.jpg"), r.join("broken.jpg")).unwrap();

        let events = walk(r, &SourceOptions::default());
        assert_eq!(
            summary(r, &events),
            [
                "ignored:broken.jpg",
                "ignored:link.jpg",
                "real/a.jpg",
                "ignored:real/loop"
            ]
        );
        assert!(matches!(&events[1], Event::Ignored { reason, .. }
            if reason == "symbolic link (--follow-links follows it)"));

        let opts = SourceOptions {
            follow_links: true,
            ..Default::default()
        };
        let events = walk(r, &opts);
        assert_eq!(
            summary(r, &events),
            ["broken.jpg", "link.jpg", "real/a.jpg", "warning"]
        );
        let Event::Warning(w) = &events[3] else {
            panic!()
        };
        assert_eq!(
            w,
            &format!(
                "symbolic link loop skipped: {} leads back to {}",
                r.join("real/loop").display(),
                r.join("real").display()
            )
        );
    }

    #[test]
    fn slash_keys() {
        assert_eq!(slash_key(Path::new("a/b/c.jpg")), "a/b/c.jpg");
        assert_eq!(slash_key(Path::new("./c.jpg")), "c.jpg");
    }
}
