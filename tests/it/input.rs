//! Integration tests for the input stage: folder walks and manifests streamed through preflight,
//! on generated images and on the repository's sample_data.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use liveness_batch::input::preflight::{self, Format, MAX_BYTES};
use liveness_batch::input::{self, Event, Item, SourceOptions};

use crate::common::{jpeg, png, write};

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
        }
    }
    s
}

#[test]
fn sample_data_folder_scan_accounts_for_every_file() {
    let root = sample_data();
    let s = scan(std::slice::from_ref(&root), &SourceOptions::default());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.items.len(), 35);
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
    assert_eq!(sent, 32);
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
    assert_eq!(distinct.len(), 31, "only the duplicate pair shares content");
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
            .contains("is not a folder, a .csv manifest or -")
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

/// A manifest on standard input survives the scan validating its sources before running them:
/// standard input is read once and shared, so no row is lost. Paths resolve against the current
/// folder.
#[test]
fn stdin_manifest_is_read_once_and_fully() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "in/a.jpg", &jpeg(11));
    write(d, "in/b.png", &png(12));
    let mut child = Command::new(crate::common::bin())
        .args(["scan", "-", "--dry-run", "--out", "out"])
        .current_dir(d)
        .env_remove("DIDIT_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = "id,path\r\nr1,in/a.jpg\r\nr2,in/b.png\r\nr3,in/gone.jpg\r\n";
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
    assert!(out.status.success(), "{text}");
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
