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
