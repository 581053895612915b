//! Integration tests for the input stage: folder walks and manifests streamed through preflight,
//! on generated images and on the repository's sample_data.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use liveness_batch::input::preflight::{self, Format, MAX_BYTES};
use liveness_batch::input::{self, Event, Item, SourceOptions};

use crate::common::{ScanRun, jpeg, png, write};

fn sample_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data")
}

struct Scan {
    items: Vec<Item>,
    ignored: Vec<(String, String)>,
    warnings: Vec<String>,
}

fn scan(sources: &[PathBuf], opts: &SourceOptions) -> Scan {
    let mut s = Scan {
        items: Vec::new(),
        ignored: Vec::new(),
        warnings: Vec::new(),
    };
    for event in input::open(sources, opts).expect("sources open") {
        match event {
            Event::Item(i) => s.items.push(i),
            Event::Ignored { path, reason } => s.ignored.push((path, reason)),
            Event::Warning(w) => s.warnings.push(w),
            Event::Incomplete { reason, .. } => s.warnings.push(reason),
        }
    }
    s
}

#[test]
fn sample_data_folder_scan_accounts_for_every_file() {
    let root = sample_data();
    let s = scan(std::slice::from_ref(&root), &SourceOptions::default());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.items.len(), 38);
    let ignored: Vec<&str> = s
        .ignored
        .iter()
        .map(|(p, _)| p.strip_prefix(&format!("{}/", root.display())).unwrap())
        .collect();
    assert_eq!(
        ignored,
        [
            "README.md",
            "manifest.csv",
            "pairs.csv",
            "selfies/2026-q2/upload_log.json"
        ]
    );
    assert!(
        s.ignored.iter().all(|(_, r)| r == "not an image (text)"),
        "{:?}",
        s.ignored
    );

    // Every file under the folder is either an item or ignored: nothing is lost.
    let on_disk = count_files(&root);
    assert_eq!(on_disk, s.items.len() + s.ignored.len());

    let mut sent = 0;
    let mut refused = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for item in &s.items {
        assert_eq!(item.problem, None);
        match preflight::preflight(&item.path) {
            Ok(p) => {
                sent += 1;
                hashes.insert(item.key.clone(), preflight::hex(&p.sha256));
            }
            Err(r) => {
                assert!(
                    r.sha256.is_some(),
                    "readable files are hashed: {}",
                    item.key
                );
                refused.insert(item.key.clone(), r.reason);
            }
        }
    }
    assert_eq!(sent, 35);
    assert_eq!(
        refused,
        BTreeMap::from([
            (
                "bad/animation.gif".to_string(),
                "content is GIF, not JPEG, PNG, WebP or TIFF; convert it to JPEG or PNG first"
                    .to_string()
            ),
            (
                "bad/empty.png".to_string(),
                "empty file (0 bytes)".to_string()
            ),
            (
                "bad/not_a_photo.jpg".to_string(),
                "content is text, not JPEG, PNG, WebP or TIFF".to_string()
            ),
        ])
    );
    assert_eq!(
        hashes["selfies/2026-q2/duplicate_a.jpg"],
        hashes["selfies/2026-q2/duplicate_b.jpg"]
    );
    let distinct: std::collections::HashSet<&String> = hashes.values().collect();
    assert_eq!(distinct.len(), 34, "only the duplicate pair shares content");
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn sample_data_has_every_accepted_format_and_the_variants() {
    let root = sample_data();
    let s = scan(std::slice::from_ref(&root), &SourceOptions::default());
    let mut formats = BTreeMap::new();
    for item in &s.items {
        if let Ok(p) = preflight::preflight(&item.path) {
            *formats.entry(p.format.name()).or_insert(0) += 1;
            assert!(p.size < 300 * 1024, "{} is small", item.key);
        }
    }
    assert_eq!(
        formats.keys().copied().collect::<Vec<_>>(),
        ["JPEG", "PNG", "TIFF", "WebP"]
    );
    let keys: Vec<&str> = s.items.iter().map(|i| i.key.as_str()).collect();
    for want in [
        "selfies/2026-q2/dark_320_q85.jpg",
        "selfies/2026-q2/tiny_24.png",
        "selfies/2026-q1/upload_7781",
        "selfies/2026-q1/IMG_0042.JPG",
    ] {
        assert!(keys.contains(&want), "{want} in {keys:?}");
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "walk order is sorted and deterministic");
}

#[test]
fn sample_manifest_rows_resolve_against_its_folder() {
    let manifest = sample_data().join("manifest.csv");
    let s = scan(std::slice::from_ref(&manifest), &SourceOptions::default());
    assert!(s.warnings.is_empty() && s.ignored.is_empty());
    assert_eq!(s.items.len(), 32);
    let first = &s.items[0];
    assert_eq!(first.key, "cust-0001");
    assert_eq!(first.row, Some(1));
    assert_eq!(first.vendor_data.as_deref(), Some("user-1001"));
    assert_eq!(
        first.path,
        sample_data().join("selfies/2026-q1/portrait_512_q90.jpg")
    );
    assert_eq!(first.source, manifest.display().to_string());
    assert!(
        s.items
            .iter()
            .any(|i| i.columns.get("branch").map(String::as_str) == Some("Madrid, Centro"))
    );
    assert!(
        s.items
            .iter()
            .all(|i| i.problem.is_none() && i.columns.len() == 1)
    );

    let missing: Vec<(String, String)> = s
        .items
        .iter()
        .filter_map(|i| match preflight::preflight(&i.path) {
            Err(r) if r.sha256.is_none() => Some((i.key.clone(), r.reason)),
            _ => None,
        })
        .collect();
    let gone = sample_data().join("selfies/2026-q2/deleted_upload.jpg");
    assert_eq!(
        missing,
        [(
            "cust-0032".to_string(),
            format!("file not found: {}", gone.display())
        )]
    );
}

/// key, row, vendor_data, problem
type Row<'a> = (&'a str, Option<u64>, Option<&'a str>, Option<&'a str>);

/// DESIGN acceptance 6's manifest: BOM, CRLF, quoted commas/quotes/newlines, missing files, blank
/// lines, duplicate ids and a formula in vendor_data: one item per data row, each right.
#[test]
fn awkward_manifest_gives_one_item_per_data_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "img/a, b.jpg", &jpeg(1));
    write(d, "img/c.png", &png(2));
    write(d, "img/d.jpg", &jpeg(3));
    let csv = "\u{feff}id,path,vendor_data,metadata,note\r\n\
        1,\"img/a, b.jpg\",=HYPERLINK(\"http://evil.example\"),\"{\"\"k\"\": \"\"v\"\"}\",\"said \"\"hi\"\"\"\r\n\
        \r\n\
        2,img/c.png,+1234,,\"two\r\nlines\"\r\n\
        3,img/missing.jpg,@user,,\r\n\
        2,img/d.jpg,-dup,,\r\n\
        \r\n\
        4,,,,no path\r\n\
        5,img/d.jpg,u5,[1],\r\n";
    let manifest = write(d, "m.csv", csv.as_bytes());
    let s = scan(&[manifest], &SourceOptions::default());
    let rows: Vec<Row> = s
        .items
        .iter()
        .map(|i| {
            (
                i.key.as_str(),
                i.row,
                i.vendor_data.as_deref(),
                i.problem.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "1",
                Some(1),
                Some("=HYPERLINK(\"http://evil.example\")"),
                None
            ),
            ("2", Some(2), Some("+1234"), None),
            ("3", Some(3), Some("@user"), None),
            (
                "2#row4",
                Some(4),
                Some("-dup"),
                Some("duplicate id 2 (first on row 2)")
            ),
            ("4", Some(5), None, Some("row 5: the path cell is empty")),
            (
                "5",
                Some(6),
                Some("u5"),
                Some("row 6: metadata is not a JSON object (it is an array)")
            ),
        ]
    );
    assert_eq!(s.items[0].columns["note"], "said \"hi\"");
    assert_eq!(s.items[1].columns["note"], "two\r\nlines");
    assert_eq!(s.items[0].metadata.as_ref().unwrap()["k"], "v");
    assert_eq!(
        preflight::preflight(&s.items[0].path).unwrap().format,
        Format::Jpeg
    );
    assert_eq!(
        preflight::preflight(&s.items[1].path).unwrap().format,
        Format::Png
    );
    let r = preflight::preflight(&s.items[2].path).unwrap_err();
    assert_eq!(
        r.reason,
        format!("file not found: {}", d.join("img/missing.jpg").display())
    );
}

#[test]
fn folders_and_manifests_mix_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "photos/b/2.jpg", &jpeg(2));
    write(d, "photos/a.png", &png(1));
    write(d, "photos/.thumbs/a.jpg", &jpeg(9));
    write(d, "photos/export.json", b"{}");
    let manifest = write(d, "list.csv", b"path,user\nphotos/a.png,u1\n");
    let opts = SourceOptions {
        vendor_data_from: Some(input::VendorDataFrom::Stem),
        ..Default::default()
    };
    let s = scan(&[d.join("photos"), manifest], &opts);
    let got: Vec<(&str, Option<&str>)> = s
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.vendor_data.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("a.png", Some("a")),
            ("b/2.jpg", Some("2")),
            ("photos/a.png", None)
        ]
    );
    assert_eq!(s.items[2].columns["user"], "u1");
    assert_eq!(s.ignored.len(), 2, "{:?}", s.ignored);

    let with_hidden = scan(
        &[d.join("photos")],
        &SourceOptions {
            hidden: true,
            ..Default::default()
        },
    );
    assert_eq!(with_hidden.items.len(), 3);
}

#[test]
fn bad_sources_fail_before_streaming_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let open_err = |sources: &[PathBuf], opts: &SourceOptions| match input::open(sources, opts) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    let m = write(d, "m.csv", b"id,file\n1,a.jpg\n");
    assert_eq!(
        open_err(&[d.to_path_buf(), m.clone()], &SourceOptions::default()),
        format!(
            "{} has no \"path\" column (choose one with --path-column); its columns are: id, file",
            m.display()
        )
    );
    let opts = SourceOptions {
        path_column: "file".into(),
        id_column: Some("uid".into()),
        ..Default::default()
    };
    assert_eq!(
        open_err(std::slice::from_ref(&m), &opts),
        format!(
            "{} has no \"uid\" column (given with --id-column); its columns are: id, file",
            m.display()
        )
    );
    let tsv = write(d, "m.tsv", b"path\n");
    assert!(
        open_err(&[tsv], &SourceOptions::default())
            .contains("is not a folder, a .csv manifest, a bucket URI (s3://BUCKET/PREFIX/) or -")
    );
    let empty = write(d, "empty.csv", b"");
    assert!(
        open_err(&[empty], &SourceOptions::default())
            .ends_with("is empty: a manifest needs a header row naming its columns")
    );
}

#[test]
fn oversized_file_is_refused_with_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = jpeg(4);
    big.resize(MAX_BYTES as usize + 1, 0);
    let p = write(dir.path(), "big.jpg", &big);
    let r = preflight::preflight(&p).unwrap_err();
    assert_eq!(
        r.reason,
        "5.0 MB (5242881 bytes) is over Didit's 5 MB limit"
    );
    let mut content = Vec::new();
    std::fs::File::open(&p)
        .unwrap()
        .read_to_end(&mut content)
        .unwrap();
    use sha2::Digest;
    let want: [u8; 32] = sha2::Sha256::digest(&content).into();
    assert_eq!(r.sha256, Some(want));
}

/// `scan - --dry-run --out out` in `dir` with `manifest` on standard input: how it exited and
/// what it printed (stdout then stderr).
fn dry_run_on_stdin(dir: &std::path::Path, manifest: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::common::bin())
        .args(["scan", "-", "--dry-run", "--out", "out"])
        .current_dir(dir)
        .env_remove("DIDIT_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// A manifest on standard input survives the scan validating its sources before running them:
/// standard input is read once and shared, so no row is lost. Paths resolve against the current
/// folder.
#[test]
fn stdin_manifest_is_read_once_and_fully() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "in/a.jpg", &jpeg(11));
    write(d, "in/b.png", &png(12));
    let manifest = "id,path\r\nr1,in/a.jpg\r\nr2,in/b.png\r\nr3,in/gone.jpg\r\n";
    let (status, text) = dry_run_on_stdin(d, manifest);
    assert!(status.success(), "{text}");
    let found = text
        .lines()
        .find(|l| l.contains("images found"))
        .unwrap_or_default();
    assert!(
        found.trim_end().ends_with(" 3"),
        "all three rows are items: {text}"
    );
    assert!(text.contains("file not found"), "{text}");
}

/// Run the binary with `args` in `dir` against `base_url`, killed if it takes over 60 s (a hang
/// fails the test instead of stalling the suite).
async fn run_in(dir: &Path, args: &[String], base_url: &str) -> crate::common::Run {
    let mut cmd = tokio::process::Command::new(crate::common::bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DIDIT_API_KEY")
        .env_remove("RUST_LOG")
        .env("DIDIT_BASE_URL", base_url)
        .env("DIDIT_API_KEY", crate::common::KEY)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the run finishes without blocking")
        .expect("run liveness-batch");
    crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `scan SOURCES --out out` with the fast settings, `--quiet` and `extra`.
fn scan_args(sources: &[&str], extra: &[&str]) -> Vec<String> {
    let run = ScanRun::against(None, Path::new("out")).args(extra);
    sources.iter().fold(run, |run, s| run.source(s)).argv()
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Two files whose names differ only in bytes that are not UTF-8 (Latin-1 ü and ä) are two
/// items with two keys and two results, and each is read from its own real path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_keep_distinct_keys_and_results() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let emu = crate::common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join(OsStr::from_bytes(b"M\xfcller.png")), png(31)).unwrap();
    std::fs::write(photos.join(OsStr::from_bytes(b"M\xe4ller.png")), png(32)).unwrap();
    std::fs::write(photos.join("Müller.png"), png(33)).unwrap();

    let s = scan(std::slice::from_ref(&photos), &SourceOptions::default());
    let keys: Vec<&str> = s.items.iter().map(|i| i.key.as_str()).collect();
    // Sorted by the names' bytes: 'ü' is 0xC3 0xBC in UTF-8, below 0xE4 and 0xFC.
    assert_eq!(keys, ["Müller.png", "M\\xe4ller.png", "M\\xfcller.png"]);
    for item in &s.items {
        preflight::preflight(&item.path).expect("readable by its real path");
    }

    let run = run_in(tmp.path(), &scan_args(&["photos"], &[]), &emu.base_url()).await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = crate::common::csv_rows(&tmp.path().join("out/results.csv"));
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["M\\xe4ller.png", "M\\xfcller.png", "Müller.png"]);
    assert_eq!(emu.stats().requests, 3);
}

/// Unusual but valid UTF-8 names keep exactly their names as keys, whether they come from a
/// manifest's path column (written by a CSV writer, so quotes, commas and line breaks are
/// quoted) or from a folder walk.
#[test]
fn unusual_valid_names_round_trip_through_a_manifest_and_a_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let names = [
        "back\\slash.jpg",
        "M\\xfcller.jpg",
        "quote\"d, comma.jpg",
        "emoji 😀.png",
        "tab\there.jpg",
        "line\nbreak.jpg",
        "=formula.jpg",
        "Ærøskøbing ß.png",
    ];
    for (i, name) in names.iter().enumerate() {
        write(&photos, name, &jpeg(40 + i as u64));
    }
    let manifest = tmp.path().join("m.csv");
    let mut w = csv::Writer::from_path(&manifest).unwrap();
    w.write_record(["path"]).unwrap();
    for name in names {
        w.write_record([format!("photos/{name}")]).unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let from_manifest = scan(std::slice::from_ref(&manifest), &SourceOptions::default());
    assert!(
        from_manifest.warnings.is_empty(),
        "{:?}",
        from_manifest.warnings
    );
    let got: Vec<(&str, &str)> = from_manifest
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.display_path.as_str()))
        .collect();
    let want: Vec<String> = names.iter().map(|n| format!("photos/{n}")).collect();
    assert_eq!(
        got,
        want.iter()
            .map(|w| (w.as_str(), w.as_str()))
            .collect::<Vec<_>>()
    );
    for item in &from_manifest.items {
        assert_eq!(item.problem, None, "{}", item.key);
        assert_eq!(item.path, photos.join(&item.key["photos/".len()..]));
        preflight::preflight(&item.path).expect("readable");
    }

    let walked = scan(std::slice::from_ref(&photos), &SourceOptions::default());
    let mut walked_keys: Vec<&str> = walked.items.iter().map(|i| i.key.as_str()).collect();
    let mut names_sorted = names.to_vec();
    walked_keys.sort();
    names_sorted.sort();
    assert_eq!(
        walked_keys, names_sorted,
        "valid names are keys exactly as written"
    );
}

/// A FIFO named like an image, in a folder and in a manifest: the folder lists it as ignored
/// (never opened), the manifest row becomes invalid_input with its kind named, and neither
/// blocks the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_a_folder_or_a_manifest_never_blocks_the_run() {
    let emu = crate::common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "photos/ok.jpg", &jpeg(50));
    mkfifo(&d.join("photos/pipe.jpg"));
    write(
        d,
        "m.csv",
        b"id,path\nr1,photos/pipe.jpg\nr2,photos/ok.jpg\n",
    );

    let s = scan(&[d.join("photos")], &SourceOptions::default());
    assert_eq!(
        s.ignored,
        [(
            d.join("photos/pipe.jpg").display().to_string(),
            "not a regular file: FIFO (never opened)".to_string()
        )]
    );
    let fifo = d.join("photos/pipe.jpg");
    let started = std::time::Instant::now();
    let r = preflight::preflight(&fifo).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        r.reason,
        format!("not a regular file: FIFO, never read: {}", fifo.display())
    );

    let run = run_in(d, &scan_args(&["m.csv"], &[]), &emu.base_url()).await;
    assert_eq!(run.code, 1, "{run:?}");
    let rows = crate::common::csv_rows(&d.join("out/results.csv"));
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let pipe = rows.iter().find(|r| r["key"] == "r1").unwrap();
    assert_eq!(pipe["class"], "invalid_input");
    assert!(
        pipe["error"].contains("not a regular file: FIFO"),
        "{pipe:?}"
    );
    assert_eq!(
        rows.iter().find(|r| r["key"] == "r2").unwrap()["class"],
        "result"
    );

    let run = run_in(d, &scan_args(&["photos"], &["--fresh"]), &emu.base_url()).await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = crate::common::csv_rows(&d.join("out/results.csv"));
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, ["ok.jpg"], "the FIFO is no item");
    assert_eq!(emu.stats().requests, 2);
}

/// A quote never closed would swallow every later row into one cell: the manifest is refused
/// before anything is sent (exit 2), naming the line where the quote began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_an_unclosed_quote_stops_before_anything_is_sent() {
    let emu = crate::common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut csv = "id,path,note\nr1,a.jpg,\"two\nlines\"\nr2,b.jpg,\"oops\n".to_string();
    for i in 3..30 {
        write(d, &format!("{i}.jpg"), &jpeg(60 + i));
        csv.push_str(&format!("r{i},{i}.jpg,\n"));
    }
    write(d, "a.jpg", &jpeg(58));
    write(d, "b.jpg", &jpeg(59));
    write(d, "m.csv", csv.as_bytes());
    let run = run_in(d, &scan_args(&["m.csv"], &[]), &emu.base_url()).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "m.csv: the quoted field that begins on line 4 (row 2) runs over more than 10 lines"
        ),
        "{run:?}"
    );
    assert_eq!(emu.stats().requests, 0);
    assert!(!d.join("out/journal.jsonl").exists());
}

/// A 10 MB line (of NULs) is refused with a short message naming its row and the limit, not
/// echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_manifest_line_is_refused_with_a_short_message() {
    let emu = crate::common::emulator(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "a.jpg", &jpeg(70));
    let mut csv = b"path\na.jpg\n".to_vec();
    csv.resize(csv.len() + 10_000_000, 0);
    csv.push(b'\n');
    write(d, "m.csv", &csv);
    let run = run_in(d, &scan_args(&["m.csv"], &[]), &emu.base_url()).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.all().len() < 1000,
        "{} bytes of output",
        run.all().len()
    );
    assert!(
        run.stderr
            .contains("m.csv: row 2 (line 3) is longer than 1 MB, the limit for one manifest row"),
        "{run:?}"
    );
    assert_eq!(emu.stats().requests, 0);
}

/// Standard input cannot be checked before it is read: a quote that runs on stops the reading
/// there with a warning naming the line, and the rows before it are still counted.
#[test]
fn an_unclosed_quote_on_standard_input_stops_reading_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "in/a.jpg", &jpeg(81));
    let mut manifest = "id,path,note\nr1,in/a.jpg,\nr2,in/b.jpg,\"oops\n".to_string();
    for i in 3..40 {
        manifest.push_str(&format!("r{i},in/{i}.jpg,\n"));
    }
    let (_, text) = dry_run_on_stdin(d, &manifest);
    assert!(
        text.contains(
            "warning: standard input: reading stopped: the quoted field that begins on line 3 \
             (row 2) runs over more than 10 lines"
        ),
        "{text}"
    );
    let found = text
        .lines()
        .find(|l| l.contains("images found"))
        .unwrap_or_default();
    assert!(
        found.trim_end().ends_with(" 1"),
        "only r1 is an item: {text}"
    );
}
