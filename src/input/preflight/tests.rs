use super::*;

#[test]
fn a_file_rewritten_after_it_was_opened_is_seen_to_have_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jpg");
    std::fs::write(&path, b"12345").unwrap();
    let file = File::open(&path).unwrap();
    let before = Version::of_file(&file.metadata().unwrap());
    assert!(!changed_while_read(before.as_ref(), &file), "untouched");
    // Another writer appends while this one holds the file open.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"678")
        .unwrap();
    assert!(changed_while_read(before.as_ref(), &file), "grown");
    assert!(
        !changed_while_read(None, &file),
        "no version, no comparison"
    );
}

fn ftyp_box(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
    let len = 16 + 4 * compatible.len();
    let mut v = (len as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b"ftyp");
    v.extend_from_slice(major);
    v.extend_from_slice(&[0, 0, 0, 0]);
    for c in compatible {
        v.extend_from_slice(*c);
    }
    v.extend_from_slice(b"\0\0\0\x08meta");
    v
}

fn bmp_header() -> Vec<u8> {
    let mut v = b"BM".to_vec();
    v.extend_from_slice(&70u32.to_le_bytes()); // file size
    v.extend_from_slice(&[0, 0, 0, 0]); // reserved
    v.extend_from_slice(&54u32.to_le_bytes()); // pixel offset
    v.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    v.extend_from_slice(&[0; 16]);
    v
}

#[test]
fn accepted_formats_by_magic_bytes() {
    assert_eq!(
        sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F']),
        Ok(Format::Jpeg)
    );
    assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Ok(Format::Png));
    assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8L\x18\0\0\0"), Ok(Format::Webp));
    assert_eq!(sniff(b"II*\0\x08\0\0\0\x10\0"), Ok(Format::Tiff));
    assert_eq!(sniff(b"MM\0*\0\0\0\x08\0\x10"), Ok(Format::Tiff));
}

#[test]
fn real_encodings_are_recognised() {
    use image::{ImageFormat, RgbImage};
    let img = RgbImage::from_pixel(8, 8, image::Rgb([120, 100, 90]));
    for (fmt, want) in [
        (ImageFormat::Jpeg, Format::Jpeg),
        (ImageFormat::Png, Format::Png),
        (ImageFormat::WebP, Format::Webp),
        (ImageFormat::Tiff, Format::Tiff),
    ] {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        assert_eq!(sniff(out.get_ref()), Ok(want), "{fmt:?}");
    }
}

#[test]
fn impostors_are_named() {
    assert_eq!(
        sniff(&ftyp_box(b"heic", &[b"mif1", b"heic"])),
        Err("HEIC/HEIF".into())
    );
    assert_eq!(
        sniff(&ftyp_box(b"mif1", &[b"mif1", b"heic"])),
        Err("HEIC/HEIF".into())
    );
    assert_eq!(
        sniff(&ftyp_box(b"avif", &[b"avif", b"mif1"])),
        Err("AVIF".into())
    );
    assert_eq!(sniff(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"), Err("PDF".into()));
    assert_eq!(sniff(b"GIF89a\x01\0\x01\0\x80\0\0"), Err("GIF".into()));
    assert_eq!(sniff(&bmp_header()), Err("BMP".into()));
    assert_eq!(sniff(b"PK\x03\x04\x14\0\0\0\x08\0"), Err("ZIP".into()));
    assert_eq!(sniff(b"this is not a photo\n"), Err("text".into()));
    assert_eq!(sniff("\u{feff}name,é\r\n".as_bytes()), Err("text".into()));
    assert_eq!(
        sniff(b"<?xml version=\"1.0\"?><svg/>"),
        Err("SVG/XML".into())
    );
    assert_eq!(
        sniff(b"  <svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
        Err("SVG/XML".into())
    );
    assert_eq!(sniff(b"<!DOCTYPE html><html></html>"), Err("HTML".into()));
    assert_eq!(sniff(b"\xFF\xFEh\0i\0"), Err("text (UTF-16)".into()));
    assert_eq!(sniff(b""), Err("empty".into()));
    assert_eq!(
        sniff(&[0x00, 0x13, 0x37, 0xC0, 0xDE, 0x99, 0x01]),
        Err("unknown binary".into())
    );
    assert_eq!(
        sniff(b"II*\0\x10\0\0\0CR\x02\0"),
        Err("Canon raw (CR2)".into())
    );
    let mut elf = b"\x7FELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    assert_eq!(sniff(&elf), Err("ELF (application/x-executable)".into()));
    assert_eq!(
        sniff(&ftyp_box(b"isom", &[b"mp41"])),
        Err("MP4 (video/mp4)".into())
    );
}

#[test]
fn text_starting_like_a_bmp_is_text() {
    assert_eq!(sniff(b"BMW service notes\n"), Err("text".into()));
    assert!(!looks_like_image(b"BMW service notes\n"));
}

#[test]
fn text_cut_mid_character_is_still_text() {
    let mut s = "a".repeat(SNIFF_LEN - 1).into_bytes();
    s.extend_from_slice("é and more".as_bytes());
    assert_eq!(sniff(&s), Err("text".into()));
}

#[test]
fn image_like_heads() {
    assert!(looks_like_image(&[0xFF, 0xD8, 0xFF, 0xDB]));
    assert!(looks_like_image(&ftyp_box(b"heic", &[b"mif1"])));
    assert!(looks_like_image(b"GIF87a\x01\0"));
    assert!(looks_like_image(&bmp_header()));
    assert!(!looks_like_image(&ftyp_box(b"isom", &[b"mp41"])));
    assert!(!looks_like_image(b"{\"json\": true}"));
    assert!(!looks_like_image(b"%PDF-1.4"));
    assert!(!looks_like_image(b""));
}

#[test]
fn format_names() {
    assert_eq!(
        [Format::Jpeg, Format::Png, Format::Webp, Format::Tiff].map(|f| (
            f.ext(),
            f.mime(),
            f.name()
        )),
        [
            ("jpg", "image/jpeg", "JPEG"),
            ("png", "image/png", "PNG"),
            ("webp", "image/webp", "WebP"),
            ("tiff", "image/tiff", "TIFF")
        ]
    );
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[test]
fn preflight_accepts_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("face.bin");
    let content = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRrest".to_vec();
    std::fs::write(&p, &content).unwrap();
    let ok = preflight(&p).unwrap();
    assert_eq!(ok.format, Format::Png);
    assert_eq!(ok.size, content.len() as u64);
    assert_eq!(&ok.bytes[..], &content[..]);
    assert_eq!(ok.sha256, sha(&content));
    assert_eq!(hex(&ok.sha256).len(), 64);
}

#[test]
fn hex_is_lowercase_sha256() {
    assert_eq!(
        hex(&sha(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn preflight_refuses_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gone.jpg");
    let r = preflight(&p).unwrap_err();
    assert_eq!(r.reason, format!("file not found: {}", p.display()));
    assert_eq!((r.sha256, r.size, r.detected), (None, None, None));
}

#[test]
fn preflight_refuses_folder() {
    let dir = tempfile::tempdir().unwrap();
    let r = preflight(dir.path()).unwrap_err();
    assert!(r.reason.starts_with("is a folder, not a file: "), "{r}");
}

#[test]
fn preflight_refuses_empty_file_with_hash() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.png");
    std::fs::write(&p, b"").unwrap();
    let r = preflight(&p).unwrap_err();
    assert_eq!(r.reason, "empty file (0 bytes)");
    assert_eq!(r.size, Some(0));
    assert_eq!(r.sha256, Some(sha(b"")));
}

#[test]
fn preflight_names_impostor() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not_a_photo.jpg");
    std::fs::write(&p, b"hello, I am text\n").unwrap();
    let r = preflight(&p).unwrap_err();
    assert_eq!(r.reason, "content is text, not JPEG, PNG, WebP or TIFF");
    assert_eq!(r.detected.as_deref(), Some("text"));
    assert_eq!(r.sha256, Some(sha(b"hello, I am text\n")));

    let p = dir.path().join("IMG_0001.jpg");
    std::fs::write(&p, ftyp_box(b"heic", &[b"mif1", b"heic"])).unwrap();
    let r = preflight(&p).unwrap_err();
    assert_eq!(
        r.reason,
        "content is HEIC/HEIF, not JPEG, PNG, WebP or TIFF; convert it to JPEG or PNG first"
    );
}

#[test]
fn preflight_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = vec![0u8; MAX_BYTES as usize];
    content[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let at_limit = dir.path().join("at_limit.jpg");
    std::fs::write(&at_limit, &content).unwrap();
    assert_eq!(preflight(&at_limit).unwrap().size, MAX_BYTES);

    content.push(0);
    let over = dir.path().join("over.jpg");
    std::fs::write(&over, &content).unwrap();
    let r = preflight(&over).unwrap_err();
    assert_eq!(
        r.reason,
        "5.0 MB (5242881 bytes) is over Didit's 5 MB limit"
    );
    assert_eq!(r.size, Some(MAX_BYTES + 1));
    assert_eq!(r.sha256, Some(sha(&content)), "the full content is hashed");
    assert_eq!(r.detected.as_deref(), Some("JPEG"));

    content.resize(6_500_000, 7);
    std::fs::write(&over, &content).unwrap();
    let r = preflight(&over).unwrap_err();
    assert_eq!(
        r.reason,
        "6.2 MB (6500000 bytes) is over Didit's 5 MB limit"
    );
    assert_eq!(r.sha256, Some(sha(&content)));
}

#[cfg(unix)]
#[test]
fn preflight_refuses_unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("locked.jpg");
    std::fs::write(&p, [0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let result = preflight(&p);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    match result {
        // Running as root: file permissions do not apply, nothing to check here.
        Ok(_) => {}
        Err(r) => assert_eq!(r.reason, format!("permission denied: {}", p.display())),
    }
}

/// A FIFO named `pipe.jpg` in `dir`.
#[cfg(unix)]
fn fifo_in(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("pipe.jpg");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    p
}

#[cfg(unix)]
#[test]
fn preflight_refuses_fifo_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = fifo_in(dir.path());
    let started = std::time::Instant::now();
    let r = preflight(&p).unwrap_err();
    assert_eq!(
        r.reason,
        format!("not a regular file: FIFO, never read: {}", p.display())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The opened handle is what is checked: a FIFO reached by the open itself (after the path
/// was looked up) is refused by its fstat, without blocking.
#[cfg(unix)]
#[test]
fn the_opened_handle_is_checked_not_only_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = fifo_in(dir.path());
    let meta = std::fs::symlink_metadata(&p).unwrap();
    let u = check_kind(&meta, &p).unwrap_err();
    assert_eq!(
        u.describe(),
        format!("not a regular file: FIFO, never read: {}", p.display())
    );
}

/// A path the walk found to be a regular file is opened without a lookup: a FIFO or a
/// device swapped in since is still refused, by the opened handle's own kind, without
/// blocking.
#[cfg(unix)]
#[test]
fn a_walked_file_swapped_for_a_fifo_or_device_is_refused_by_its_handle() {
    let dir = tempfile::tempdir().unwrap();
    let p = fifo_in(dir.path());
    let buffers = Arc::new(Buffers::default());
    let started = std::time::Instant::now();
    let r = preflight_with(&p, true, &buffers).unwrap_err();
    assert_eq!(
        r.reason,
        format!("not a regular file: FIFO, never read: {}", p.display())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let r = preflight_with(Path::new("/dev/null"), true, &buffers).unwrap_err();
    assert_eq!(
        r.reason,
        "not a regular file: character device, never read: /dev/null"
    );
    let gone = dir.path().join("gone.jpg");
    let r = preflight_with(&gone, true, &buffers).unwrap_err();
    assert!(r.reason.contains("gone.jpg"), "{}", r.reason);
}

#[cfg(unix)]
#[test]
fn devices_are_refused_by_kind() {
    let r = preflight(Path::new("/dev/null")).unwrap_err();
    assert_eq!(
        r.reason,
        "not a regular file: character device, never read: /dev/null"
    );
    assert_eq!((r.sha256, r.size), (None, None));
}

#[cfg(target_os = "linux")]
#[test]
fn proc_and_sys_files_are_refused_unread() {
    // /proc/self/status reports 0 bytes yet reads data; /proc/kmsg would block a read.
    for (path, fs) in [
        ("/proc/self/status", "/proc"),
        ("/proc/kmsg", "/proc"),
        ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys"),
    ] {
        let p = Path::new(path);
        if std::fs::File::open(p).is_err() {
            continue; // not on this system, or not ours to open
        }
        // A file on an ordinary filesystem read first on this thread (its device is then
        // remembered) changes nothing for the next one.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap();
        preflight(&dir.path().join("a.jpg")).unwrap();
        let r = preflight(p).unwrap_err();
        assert_eq!(
            r.reason,
            format!("not a regular file: a {fs} file, never read: {path}")
        );
    }
}

#[test]
fn a_very_long_path_is_cut_in_the_message() {
    let long = format!("/no/such/{}.jpg", "x".repeat(10_000));
    let r = preflight(Path::new(&long)).unwrap_err();
    assert!(r.reason.len() < 200, "{}", r.reason);
    assert!(
        r.reason.contains("x… (10013 bytes in all): "),
        "{}",
        r.reason
    );
}

#[test]
fn a_free_buffer_is_used_again_the_smallest_that_fits() {
    let buffers = Arc::new(Buffers::default());
    for cap in [300, 100, 200] {
        buffers.give(Vec::with_capacity(cap));
    }
    assert_eq!(buffers.kept(), 600);
    let b = buffers.take(150);
    assert_eq!(b.capacity(), 200, "the smallest large enough");
    assert_eq!(buffers.kept(), 400);
    // None large enough: a new one, the free ones stay.
    assert!(buffers.take(1000).capacity() >= 1000);
    assert_eq!(buffers.kept(), 400);
}

#[test]
fn free_buffers_are_kept_within_their_budget() {
    let buffers = Buffers::default();
    let quarter = Buffers::KEEP / 4;
    for _ in 0..4 {
        buffers.give(Vec::with_capacity(quarter));
    }
    assert_eq!(buffers.kept(), Buffers::KEEP);
    // One more: the smallest ones go to make room.
    buffers.give(Vec::with_capacity(quarter + 1));
    assert!(buffers.kept() <= Buffers::KEEP, "{}", buffers.kept());
    assert_eq!(buffers.take(quarter + 1).capacity(), quarter + 1);
    // Larger than the whole budget: not kept.
    let before = buffers.kept();
    buffers.give(Vec::with_capacity(Buffers::KEEP + 1));
    assert_eq!(buffers.kept(), before);
}

#[test]
fn a_file_read_into_a_kept_buffer_gives_it_back_when_its_content_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = |n: usize| {
        let mut c = vec![0xFF, 0xD8, 0xFF, 0xE0];
        c.resize(n, 7);
        c
    };
    let (a, b) = (dir.path().join("a.jpg"), dir.path().join("b.jpg"));
    std::fs::write(&a, jpeg(5000)).unwrap();
    std::fs::write(&b, jpeg(4000)).unwrap();
    let buffers = Arc::new(Buffers::default());
    let first = preflight_with(&a, false, &buffers).unwrap();
    let plain = preflight(&a).unwrap();
    assert_eq!(first.bytes, plain.bytes);
    assert_eq!(
        (first.sha256, first.format, first.size),
        (plain.sha256, plain.format, plain.size)
    );
    let upload = first.bytes.clone();
    drop(first);
    assert_eq!(buffers.kept(), 0, "still held by the upload");
    let at = upload.as_ptr();
    drop(upload);
    assert!(buffers.kept() >= 5000);
    // The next file is read into it, with its own content.
    let second = preflight_with(&b, false, &buffers).unwrap();
    assert_eq!(second.bytes.as_ptr(), at);
    assert_eq!(&second.bytes[..], &jpeg(4000)[..]);
    assert_eq!(second.sha256, sha(&jpeg(4000)));
    assert_eq!(buffers.kept(), 0);
}

#[test]
fn a_read_replaces_what_the_buffer_held_grows_past_the_declared_size_and_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let content: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, &content).unwrap();
    let read = |first: usize, limit: usize, stale: usize| {
        let mut buf = vec![0xEE; stale];
        read_capped(&mut File::open(&p).unwrap(), &mut buf, first, limit).unwrap();
        buf
    };
    // As declared, declared too small (the file grew), a buffer holding more than the file.
    for (first, stale) in [(20_001, 0), (100, 0), (1, 30_000), (20_001, 50_000)] {
        assert!(
            read(first, 1 << 20, stale) == content,
            "first {first}, stale {stale}"
        );
    }
    assert!(
        read(100, 12_345, 0) == content[..12_345],
        "never past the limit"
    );
    assert!(read(20_001, 20_000, 0) == content, "exactly the limit");
    std::fs::write(&p, b"").unwrap();
    assert!(read(1, 1 << 20, 64).is_empty());
}
