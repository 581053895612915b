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
            let kind = preflight::file_kind(&ft);
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
            preflight::file_kind(&m.file_type())
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
mod tests {
    use super::*;

    /// The reasons of the ignored entries, in order.
    fn ignored_reasons(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Ignored { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

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
                Event::Incomplete { .. } => unreachable!("a folder walk is never incomplete"),
            })
            .collect()
    }

    #[test]
    fn sorted_recursive_walk_with_relative_keys() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "b.jpg", JPEG);
        put(r, "a.jpg", JPEG);
        put(r, "a b.jpg", JPEG);
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
                "a b.jpg",
                "a.jpg",
                "b.jpg",
                "ignored:c/.DS_Store",
                "ignored:c/data.json",
                "ignored:c/notes.txt",
            ]
        );
        let reasons = ignored_reasons(&events);
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
        let reasons = ignored_reasons(&events);
        assert_eq!(
            reasons,
            [
                "broken symbolic link",
                "symbolic link to a file (not followed; --follow-links follows it)",
                "symbolic link to a folder (not followed; --follow-links follows it)",
            ]
        );

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

    /// Run `f` on another thread and fail (instead of hanging) if it takes more than 10 s.
    fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("finished without blocking")
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_ignored_by_kind_never_opened() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().to_path_buf();
        let fifo = std::ffi::CString::new(r.join("pipe.jpg").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let _socket = std::os::unix::net::UnixListener::bind(r.join("sock.png")).unwrap();
        symlink("/dev/null", r.join("tty.jpg")).unwrap();
        symlink(r.join("pipe.jpg"), r.join("to_pipe.jpg")).unwrap();
        put(&r, "z.jpg", JPEG);

        let reasons = |follow_links: bool| {
            let r = r.clone();
            within(move || {
                let opts = SourceOptions {
                    follow_links,
                    ..Default::default()
                };
                walk(&r, &opts)
                    .into_iter()
                    .map(|e| match e {
                        Event::Ignored { path, reason } => {
                            let name = Path::new(&path).file_name().unwrap();
                            format!("{}: {reason}", name.to_str().unwrap())
                        }
                        Event::Item(i) => format!("item {}", i.key),
                        Event::Warning(w) => format!("warning {w}"),
                        Event::Incomplete { .. } => unreachable!("a walk is never incomplete"),
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            reasons(false),
            [
                "pipe.jpg: not a regular file: FIFO (never opened)",
                "sock.png: not a regular file: socket (never opened)",
                "to_pipe.jpg: symbolic link to a FIFO (not followed; never opened)",
                "tty.jpg: symbolic link to a character device (not followed; never opened)",
                "item z.jpg",
            ]
        );
        assert_eq!(
            reasons(true),
            [
                "pipe.jpg: not a regular file: FIFO (never opened)",
                "sock.png: not a regular file: socket (never opened)",
                "to_pipe.jpg: not a regular file: FIFO (never opened)",
                "tty.jpg: not a regular file: character device (never opened)",
                "item z.jpg",
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn broken_links_are_labelled_when_followed_too() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        symlink(r.join("gone"), r.join("notes")).unwrap();
        let opts = SourceOptions {
            follow_links: true,
            ..Default::default()
        };
        let events = walk(r, &opts);
        assert_eq!(
            events,
            [Event::Ignored {
                path: r.join("notes").display().to_string(),
                reason: "broken symbolic link".to_string()
            }]
        );
    }

    #[cfg(unix)]
    #[test]
    fn names_that_are_not_utf8_keep_distinct_lossless_keys() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let raw = |b: &[u8]| r.join(OsStr::from_bytes(b));
        std::fs::write(raw(b"M\xfcller.png"), b"\x89PNG\r\n\x1a\n1").unwrap();
        std::fs::write(raw(b"M\xe4ller.png"), b"\x89PNG\r\n\x1a\n2").unwrap();
        std::fs::create_dir(raw(b"caf\xe9")).unwrap();
        std::fs::write(raw(b"caf\xe9/a\\b\xff.jpg"), JPEG).unwrap();
        std::fs::write(raw(b"back\\slash.jpg"), JPEG).unwrap();
        std::fs::write(raw(b"notes\xff.txt"), b"text").unwrap();
        let opts = SourceOptions {
            vendor_data_from: Some(VendorDataFrom::Stem),
            ..Default::default()
        };
        let events = walk(r, &opts);
        let items: Vec<&Item> = events
            .iter()
            .filter_map(|e| match e {
                Event::Item(i) => Some(i),
                _ => None,
            })
            .collect();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "M\\xe4ller.png",
                "M\\xfcller.png",
                "back\\slash.jpg",
                "caf\\xe9/a\\\\b\\xff.jpg"
            ]
        );
        assert_eq!(
            items[0].display_path,
            format!("{}/M\\xe4ller.png", r.display())
        );
        assert_eq!(items[0].vendor_data.as_deref(), Some("M\\xe4ller"));
        // The real bytes are kept: each file can still be read, and each is its own.
        assert_eq!(items[0].path, raw(b"M\xe4ller.png"));
        assert_eq!(preflight::preflight(&items[0].path).unwrap().size, 9);
        assert_ne!(
            preflight::preflight(&items[0].path).unwrap().sha256,
            preflight::preflight(&items[1].path).unwrap().sha256
        );
        assert!(preflight::preflight(&items[3].path).is_ok());
        assert!(events.contains(&Event::Ignored {
            path: format!("{}/notes\\xff.txt", r.display()),
            reason: "not an image (text)".to_string()
        }));
    }

    #[test]
    fn slash_keys() {
        assert_eq!(slash_key(Path::new("a/b/c.jpg")), "a/b/c.jpg");
        assert_eq!(slash_key(Path::new("./c.jpg")), "c.jpg");
    }
}
