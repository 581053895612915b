//! Integration tests: face match in bulk. Each item is a pair (a selfie and its reference,
//! from a manifest's ref_path column, a local path or an object URI, or from `--ref-dir` by key
//! and stem); every decision of the emulator; a missing or refused reference costs nothing;
//! the same pair is sent once; a changed reference is screened again and nothing else is; the
//! dry run prices each check at its own price; shards merge whole; the outputs name both keys
//! and price each call at face match's list price, `report` too.

use std::collections::BTreeMap;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};
use serde_json::Value;
use sha2::Digest;

use crate::common::{self, ScanRun};

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The emulator's POSTs from its request log.
fn posts(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["method"] == "POST")
        .collect()
}

fn by_key(items: &[Value]) -> BTreeMap<String, Value> {
    items
        .iter()
        .map(|i| (i["key"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

fn blank() -> Vec<u8> {
    common::encode(
        &RgbImage::from_pixel(160, 160, Rgb([90, 90, 90])),
        ImageFormat::Png,
    )
}

/// 40 pairs in a manifest: 14 of the same person (the reference a smaller, brighter PNG of the
/// selfie), 14 of two people, 4 with no face in the reference, 2 with an empty ref_path cell, 2
/// whose reference is not there, 2 whose reference is not an image, and 2 that repeat an
/// earlier pair's two contents under another id. Returns the manifest and each id's selfie and
/// reference SHA-256 (None where no reference could be read).
fn forty_pairs(
    dir: &Path,
) -> (
    std::path::PathBuf,
    BTreeMap<String, (String, Option<String>)>,
) {
    let mut rows = vec!["id,path,ref_path,branch".to_string()];
    let mut shas = BTreeMap::new();
    let mut add = |id: String, selfie: &[u8], reference: Option<(&str, &[u8])>, cell: &str| {
        let path = format!("selfies/{id}.jpg");
        common::write(dir, &path, selfie);
        if let Some((name, bytes)) = reference {
            common::write(dir, name, bytes);
        }
        rows.push(format!("{id},{path},{cell},Lisbon"));
        shas.insert(id, (sha(selfie), reference.map(|(_, b)| sha(b))));
    };
    for i in 0..14u64 {
        let face = common::person(100 + i, 200);
        let (selfie, reference) = (
            common::encode(&face, ImageFormat::Jpeg),
            common::derived(&face),
        );
        let name = format!("refs/same-{i}.png");
        add(
            format!("same-{i:02}"),
            &selfie,
            Some((&name, &reference)),
            &name,
        );
    }
    for i in 0..14u64 {
        let selfie = common::encode(&common::person(300 + i, 200), ImageFormat::Jpeg);
        let other = common::encode(&common::person(500 + i, 200), ImageFormat::Jpeg);
        let name = format!("refs/other-{i}.jpg");
        add(
            format!("other-{i:02}"),
            &selfie,
            Some((&name, &other)),
            &name,
        );
    }
    for i in 0..4u64 {
        let selfie = common::encode(&common::person(700 + i, 200), ImageFormat::Jpeg);
        let name = format!("refs/blank-{i}.png");
        let mut grey = blank();
        grey.extend_from_slice(&i.to_le_bytes()); // another content each, still a PNG
        add(format!("noface-{i}"), &selfie, Some((&name, &grey)), &name);
    }
    for i in 0..2u64 {
        let selfie = common::encode(&common::person(800 + i, 200), ImageFormat::Jpeg);
        add(format!("empty-{i}"), &selfie, None, "");
        let selfie = common::encode(&common::person(810 + i, 200), ImageFormat::Jpeg);
        add(
            format!("gone-{i}"),
            &selfie,
            None,
            &format!("refs/not-here-{i}.jpg"),
        );
        let selfie = common::encode(&common::person(820 + i, 200), ImageFormat::Jpeg);
        let name = format!("refs/notes-{i}.jpg");
        add(
            format!("notimg-{i}"),
            &selfie,
            Some((&name, b"just text, not a picture")),
            &name,
        );
    }
    // The same two contents as same-00 and other-00, under other ids and paths.
    let alike = [
        (
            "again-a",
            common::person(100, 200),
            common::derived(&common::person(100, 200)),
        ),
        (
            "again-b",
            common::person(300, 200),
            common::encode(&common::person(500, 200), ImageFormat::Jpeg),
        ),
    ];
    for (id, face, reference) in alike {
        let selfie = common::encode(&face, ImageFormat::Jpeg);
        let name = format!("refs/{id}.bin.png");
        add(id.to_string(), &selfie, Some((&name, &reference)), &name);
    }
    assert_eq!(rows.len(), 41);
    let manifest = dir.join("pairs.csv");
    std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();
    (manifest, shas)
}

/// `scan --check face-match` over 40 pairs: every decision face match has (proceed, review,
/// retake, fix_input), the pair's two images and the threshold in every request, both keys and
/// both hashes in every record, a missing or refused reference that costs nothing, identical
/// pairs sent once, the check's price; a rerun sends nothing, another threshold is refused,
/// and a changed reference (its content, or another file) is the one pair sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_match_scan_of_40_pairs_gives_every_decision_and_pays_once_per_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (manifest, shas) = forty_pairs(&data);
    let log = tmp.path().join("requests.jsonl");
    let emu = common::emulator(|c| c.log = Some(log.clone())).await;
    let out = tmp.path().join("out");
    let scan = ScanRun::new(&emu, &manifest, &out).args(&["--check", "face-match"]);
    let first = scan.clone().loud().bin().await;
    assert_eq!(first.code, 1, "some pairs have no result: {first:?}");
    assert!(
        first.stderr.contains(
            "Check: face match (/v3/face-match/, US$0.05 a call): each selfie against the \
             reference in the manifest's ref_path column; declined at a similarity of 30 or below"
        ),
        "{}",
        first.stderr
    );

    let said = first.all();
    assert!(
        said.contains("40 pairs: ") && said.contains("What to do with each pair:"),
        "{said}"
    );
    let items = by_key(&scan.items());
    assert_eq!(items.len(), 40);
    let action = |k: &str| items[k]["action"].as_str().unwrap().to_string();
    // The emulator finds no face in a few pictures, by their content (as it does for
    // liveness): such a pair is not scored (retake), whoever is in it.
    let no_pair = |k: &str| items[k].to_string().contains("NO_REFERENCE_IMAGE");
    for i in 0..14 {
        let (same, other) = (format!("same-{i:02}"), format!("other-{i:02}"));
        if no_pair(&same) {
            assert_eq!(action(&same), "retake", "{}", items[&same]);
        } else {
            assert_eq!(action(&same), "proceed", "{}", items[&same]);
        }
        // Two people: declined at or below the threshold (30, which Didit calls permissive:
        // two unrelated pictures can score above it, and do here).
        let it = &items[&other];
        if no_pair(&other) {
            assert_eq!(action(&other), "retake", "{it}");
        } else {
            let low = it["score"].as_f64().unwrap() <= 30.0;
            assert_eq!(it["action"], if low { "review" } else { "proceed" }, "{it}");
            assert_eq!(
                it.to_string().contains("LOW_FACE_MATCH_SIMILARITY"),
                low,
                "{it}"
            );
            assert!(it["score"].as_f64().unwrap() < 60.0, "{it}");
        }
    }
    let count = |a: &str| items.values().filter(|i| i["action"] == a).count();
    assert!(count("proceed") >= 10 && count("review") >= 10, "{items:?}");
    for i in 0..4 {
        let it = &items[&format!("noface-{i}")];
        assert_eq!(it["action"], "retake", "{it}");
        assert!(it.to_string().contains("NO_REFERENCE_IMAGE"), "{it}");
    }
    for (key, says) in [
        ("empty-0", "no reference image: the ref_path cell is empty"),
        ("gone-1", "the reference image refs/not-here-1.jpg: "),
        ("notimg-0", "the reference image refs/notes-0.jpg: "),
    ] {
        let it = &items[key];
        assert_eq!(it["action"], "fix_input", "{it}");
        assert_eq!(it["class"], "invalid_input", "{it}");
        assert!(it["error"].as_str().unwrap().contains(says), "{it}");
        assert_eq!(
            (it["attempts"].as_u64(), it["billed"].as_bool()),
            (Some(0), Some(false))
        );
    }
    for (key, like) in [("again-a", "same-00"), ("again-b", "other-00")] {
        assert_eq!(items[key]["duplicate_of"], like, "{}", items[key]);
        assert_eq!(items[key]["score"], items[like]["score"]);
        assert_eq!(items[key]["reference"], format!("refs/{key}.bin.png"));
    }
    // Both keys and both hashes, as read (a row without a reference is not read at all).
    for (key, (selfie, reference)) in &shas {
        let it = &items[key];
        if key.starts_with("empty") {
            assert!(
                it["sha256"].is_null() && it.get("reference").is_none(),
                "{it}"
            );
            continue;
        }
        assert_eq!(it["sha256"].as_str(), Some(selfie.as_str()), "{it}");
        if key.starts_with("notimg") || key.starts_with("gone") {
            assert!(it.get("ref_sha256").is_none(), "{it}");
        } else {
            assert_eq!(it["ref_sha256"].as_str(), reference.as_deref(), "{it}");
        }
    }
    assert_eq!(items["same-03"]["reference"], "refs/same-3.png");

    // Every request: the face-match path, the threshold, the selfie then the reference.
    let sent = posts(&log);
    assert_eq!(
        sent.len(),
        14 + 14 + 4,
        "each pair once, nothing for the six without one"
    );
    for p in &sent {
        assert_eq!(p["path"], "/v3/face-match/");
        assert_eq!(p["fields"]["face_match_score_decline_threshold"], "30");
        assert_eq!(p["fields"]["save_api_request"], "false");
        let pair = shas
            .values()
            .find(|(s, _)| p["sha256"] == s.as_str())
            .unwrap();
        assert_eq!(p["ref_sha256"].as_str(), pair.1.as_deref(), "{p}");
    }
    let summary = scan.summary();
    assert_eq!(summary["settings"]["check"], "face-match", "{summary}");
    // The input fingerprint covers both images of each pair, as documented: recomputed from
    // results.csv alone.
    let mut digests: Vec<Vec<u8>> = common::csv_rows(&out.join("results.csv"))
        .iter()
        .filter(|r| !r["status"].is_empty())
        .map(|r| {
            let line = format!("{}\t{}\t{}", r["key"], r["sha256"], r["ref_sha256"]);
            sha2::Sha256::digest(line.as_bytes()).to_vec()
        })
        .collect();
    digests.sort();
    assert_eq!(
        summary["audit"]["input_fingerprint"]["sha256"],
        sha(&digests.concat()),
        "{summary}"
    );
    assert_eq!(summary["credits"]["price_per_call_usd"], 0.05, "{summary}");
    assert_eq!(emu.stats().credits_used, 32);

    // A rerun sends nothing; another threshold is a settings change, refused.
    assert_eq!(scan.run().await, 1);
    assert_eq!(posts(&log).len(), 32);
    // Nor opens any pair whose two versions were recorded: only the six without a usable
    // reference are looked at again (a missing one may have appeared), and stand.
    let end = common::journal_lines(&out).pop().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(
        (end["skipped_done"].as_u64(), end["skipped_unread"].as_u64()),
        (Some(40), Some(34)),
        "{end}"
    );
    let stricter = scan
        .clone()
        .args(&["--face-match-threshold", "60"])
        .bin()
        .await;
    stricter.exited_saying(
        2,
        "face match threshold (--face-match-threshold): journal has 30, this run has 60",
    );
    assert_eq!(posts(&log).len(), 32);

    // One reference changed in place, another pair given another reference file: those two
    // pairs, and only they, are sent again.
    let other_face = common::encode(&common::person(900, 200), ImageFormat::Jpeg);
    std::fs::write(data.join("refs/same-5.png"), &other_face).unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("refs/other-7.jpg", "refs/same-7.png"),
    )
    .unwrap();
    assert_eq!(scan.run().await, 1);
    let again: Vec<Value> = posts(&log).split_off(32);
    assert_eq!(again.len(), 2, "{again:?}");
    let items = by_key(&scan.items());
    assert_eq!(items["same-05"]["action"], "review", "{}", items["same-05"]);
    assert_eq!(items["other-07"]["reference"], "refs/same-7.png");
}

/// `--ref-dir`: pairs by the same relative path, else by stem across extensions; an ambiguous
/// or missing reference is a fix_input naming what was looked for. A folder without
/// `--ref-dir`, and the face-match flags with another check, are usage errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_dir_pairs_by_path_then_stem_and_says_what_it_could_not_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, refs) = (tmp.path().join("selfies"), tmp.path().join("refs"));
    let face = |seed| common::person(seed, 200);
    common::write(
        &src,
        "q3/a.jpg",
        &common::encode(&face(1), ImageFormat::Jpeg),
    );
    common::write(&refs, "q3/a.jpg", &common::derived(&face(1)));
    common::write(
        &src,
        "q3/b.png",
        &common::encode(&face(2), ImageFormat::Png),
    );
    common::write(
        &refs,
        "q3/b.JPG",
        &common::encode(&face(2), ImageFormat::Jpeg),
    );
    common::write(&src, "c.jpg", &common::encode(&face(3), ImageFormat::Jpeg));
    common::write(&refs, "c.png", &common::derived(&face(3)));
    common::write(&refs, "c.webp", &common::derived(&face(3)));
    common::write(&src, "d.jpg", &common::encode(&face(4), ImageFormat::Jpeg));
    // The selfie itself as its reference: nothing to learn from comparing them.
    let itself = common::encode(&face(5), ImageFormat::Jpeg);
    common::write(&src, "e.jpg", &itself);
    common::write(&refs, "e.jpg", &itself);
    let emu = common::emulator(|_| {}).await;
    let out = tmp.path().join("out");
    let refs_arg = refs.display().to_string();
    let scan =
        ScanRun::new(&emu, &src, &out).args(&["--check", "face-match", "--ref-dir", &refs_arg]);
    assert_eq!(scan.run().await, 1);
    let items = by_key(&scan.items());
    assert_eq!(
        items["q3/a.jpg"]["reference"],
        format!("{refs_arg}/q3/a.jpg")
    );
    assert_eq!(items["q3/a.jpg"]["action"], "proceed");
    assert_eq!(
        items["q3/b.png"]["reference"],
        format!("{refs_arg}/q3/b.JPG")
    );
    assert_eq!(items["q3/b.png"]["action"], "proceed");
    let c = items["c.jpg"]["error"].as_str().unwrap();
    assert!(
        c.starts_with("ambiguous reference image: c.png, c.webp all match \"c\""),
        "{c}"
    );
    let d = items["d.jpg"]["error"].as_str().unwrap();
    assert!(d.starts_with("no reference image: neither"), "{d}");
    let e = items["e.jpg"]["error"].as_str().unwrap();
    assert!(
        e.ends_with(
            "has the same content as the selfie: an image matched with itself proves nothing"
        ),
        "{e}"
    );
    for k in ["c.jpg", "d.jpg", "e.jpg"] {
        assert_eq!(items[k]["action"], "fix_input");
        assert_eq!(items[k]["attempts"], 0);
    }
    assert_eq!(emu.stats().credits_used, 2);

    // A selfie deleted since: gone.csv names the pair by both keys.
    std::fs::remove_file(src.join("q3/a.jpg")).unwrap();
    assert_eq!(scan.run().await, 1);
    let gone = common::csv_rows(&out.join("gone.csv"));
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0]["key"], "q3/a.jpg");
    assert_eq!(gone[0]["reference"], format!("{refs_arg}/q3/a.jpg"));
    assert_eq!(emu.stats().credits_used, 2);

    let other = tmp.path().join("other");
    let inner = src.join("q3").display().to_string();
    for (extra, says) in [
        (
            vec!["--check", "face-match"],
            "face match compares each selfie with a reference image, and a folder or bucket \
             prefix names none; give --ref-dir DIR",
        ),
        (
            vec!["--ref-dir", refs_arg.as_str()],
            "--ref-dir is for --check face-match",
        ),
        (
            vec!["--check", "age", "--ref-column", "portrait"],
            "--ref-column is for --check face-match",
        ),
        (
            vec!["--check", "face-match", "--ref-dir", "/no/such/folder"],
            "--ref-dir /no/such/folder: no such folder",
        ),
        (
            vec!["--check", "face-match", "--threshold", "50"],
            "--threshold",
        ),
        (
            vec!["--check", "face-match", "--ref-dir", &inner],
            "is inside the source",
        ),
    ] {
        let run = ScanRun::new(&emu, &src, &other).args(&extra).bin().await;
        run.exited_saying(2, says);
    }
    // A manifest without the reference column, named or not.
    let manifest = tmp.path().join("m.csv");
    std::fs::write(&manifest, "path\nselfies/c.jpg\n").unwrap();
    let run = ScanRun::new(&emu, &manifest, &other)
        .args(&["--check", "face-match"])
        .bin()
        .await;
    run.exited_saying(
        2,
        "has no \"ref_path\" column (face match needs each selfie's reference image",
    );
    assert!(!other.join("journal.jsonl").exists());
    assert_eq!(
        emu.stats().credits_used,
        2,
        "nothing sent for a usage error"
    );
}

/// The dry run of each check: the count, the time at the rate, and the cost at that check's
/// own list price (face match US$0.05 a pair, liveness and age US$0.10 an image), or at
/// `--price-per-call`.
#[tokio::test]
async fn each_checks_dry_run_counts_and_prices_at_its_own_price() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, ids) = (tmp.path().join("src"), tmp.path().join("ids"));
    common::jpegs(&src, 12, 40, |i| format!("s{i:02}.jpg"));
    common::jpegs(&ids, 12, 80, |i| format!("s{i:02}.png"));
    let refs = ids.display().to_string();
    let emu = common::emulator(|_| {}).await;
    let out = tmp.path().join("out");
    for (extra, cost) in [
        (vec![], "US$1.20 (12 calls at US$0.10)"),
        (vec!["--check", "age"], "US$1.20 (12 calls at US$0.10)"),
        (
            vec!["--check", "face-match", "--ref-dir", refs.as_str()],
            "US$0.60 (12 calls at US$0.05)",
        ),
        (
            vec![
                "--check",
                "face-match",
                "--ref-dir",
                refs.as_str(),
                "--price-per-call",
                "0.04",
            ],
            "US$0.48 (12 calls at US$0.04)",
        ),
    ] {
        let mut args = vec!["--dry-run", "--rate", "60/min"];
        args.extend(extra.iter().copied());
        let run = ScanRun::new(&emu, &src, &out)
            .plain()
            .loud()
            .args(&args)
            .bin()
            .await;
        assert_eq!(run.code, 0, "{run:?}");
        let found = if extra.contains(&"face-match") {
            "pairs found           12"
        } else {
            "images found          12"
        };
        assert!(run.stdout.contains(found), "{}", run.stdout);
        assert!(
            run.stdout.contains("would send            12"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("time at 60/min        about 11.1s"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains(cost), "{extra:?}: {}", run.stdout);
    }
    assert_eq!(emu.stats().requests, 0);
    assert!(!out.exists());
}

/// Pairs whose selfie or reference is an object in a bucket: read from the store, both hashed,
/// the reference's URI kept as the pair's second key; a missing object reference is a
/// fix_input; a rerun reads nothing and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_can_be_an_object_uri() {
    let Some(b) = crate::storage::Bucket::new().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let face = common::person(42, 200);
    let (selfie, reference) = (
        common::encode(&face, ImageFormat::Jpeg),
        common::derived(&face),
    );
    b.put("ids/u1.png", reference.clone()).await;
    b.put(
        "selfies/u2.jpg",
        common::encode(&common::person(43, 200), ImageFormat::Jpeg),
    )
    .await;
    common::write(tmp.path(), "u1.jpg", &selfie);
    common::write(
        tmp.path(),
        "ids/u2.jpg",
        &common::derived(&common::person(43, 200)),
    );
    let manifest = tmp.path().join("pairs.csv");
    std::fs::write(
        &manifest,
        format!(
            "id,path,ref_path\nu1,u1.jpg,{}\nu2,{},ids/u2.jpg\nu3,u1.jpg,{}\n",
            b.uri("ids/u1.png"),
            b.uri("selfies/u2.jpg"),
            b.uri("ids/missing.png")
        ),
    )
    .unwrap();
    let log = tmp.path().join("requests.jsonl");
    let emu = common::emulator(|c| c.log = Some(log.clone())).await;
    let out = tmp.path().join("out");
    let out_arg = out.display().to_string();
    let m = manifest.display().to_string();
    let args = [
        m.as_str(),
        "--out",
        out_arg.as_str(),
        "--check",
        "face-match",
    ];
    let run = crate::storage::scan(&args, &b.endpoint, &emu.base_url()).await;
    assert_eq!(run.code, 1, "{run:?}");
    let items = by_key(&common::journal_items(&out));
    assert_eq!(items["u1"]["action"], "proceed", "{}", items["u1"]);
    assert_eq!(items["u1"]["reference"], b.uri("ids/u1.png"));
    assert_eq!(items["u1"]["ref_sha256"], sha(&reference));
    assert_eq!(items["u2"]["action"], "proceed", "{}", items["u2"]);
    assert_eq!(items["u3"]["action"], "fix_input", "{}", items["u3"]);
    assert!(
        items["u3"]["error"]
            .as_str()
            .unwrap()
            .contains("ids/missing.png")
    );
    assert_eq!(posts(&log).len(), 2);
    let gets = b.gets("");
    let again = crate::storage::scan(&args, &b.endpoint, &emu.base_url()).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(posts(&log).len(), 2, "nothing sent again");
    assert_eq!(
        b.gets(""),
        gets,
        "no object read again: their versions were checked"
    );
}

/// Two shards of a face-match manifest, merged by `report`: every pair once, the check and
/// the threshold the same in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_of_pairs_merge_into_every_pair_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (manifest, _) = forty_pairs(&data);
    let emu = common::emulator(|_| {}).await;
    let mut dirs = Vec::new();
    for k in 1..=2 {
        let out = tmp.path().join(format!("shard-{k}"));
        let shard = format!("{k}/2");
        let scan = ScanRun::new(&emu, &manifest, &out).args(&[
            "--check",
            "face-match",
            "--face-match-threshold",
            "55",
            "--shard",
            &shard,
        ]);
        assert_eq!(scan.run().await, 1);
        dirs.push(out.display().to_string());
    }
    let merged = tmp.path().join("merged");
    let merged_arg = merged.display().to_string();
    let mut args: Vec<&str> = dirs.iter().map(String::as_str).collect();
    args.extend(["--out", merged_arg.as_str()]);
    let run = common::run_bin(&[&["report"][..], &args].concat(), None, None).await;
    assert_eq!(run.code, 1, "{run:?}");
    let items = by_key(&common::journal_items(&merged));
    assert_eq!(items.len(), 40);
    assert!(
        items
            .values()
            .all(|i| i.get("reference").is_some() || i["action"] == "fix_input")
    );
    let summary = common::summary(&merged);
    assert_eq!(summary["settings"]["check"], "face-match", "{summary}");
    assert_eq!(summary["settings"]["threshold"], 55.0, "{summary}");
}

/// The demo's pairs manifest gives what sample_data/README.md says it gives, row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_pairs_give_every_face_match_decision() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/pairs.csv");
    let tmp = tempfile::tempdir().unwrap();
    let emu = common::emulator(|_| {}).await;
    let scan =
        ScanRun::new(&emu, &manifest, &tmp.path().join("out")).args(&["--check", "face-match"]);
    assert_eq!(scan.run().await, 1, "three rows have no result");
    let items = by_key(&scan.items());
    let got: Vec<(&str, &str)> = items
        .iter()
        .map(|(k, i)| (k.as_str(), i["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("pair-01", "proceed"),
            ("pair-02", "proceed"),
            ("pair-03", "proceed"),
            ("pair-04", "review"),
            ("pair-05", "retake"),
            ("pair-06", "fix_input"),
            ("pair-07", "fix_input"),
            ("pair-08", "proceed"),
        ]
    );
    assert_eq!(items["pair-08"]["duplicate_of"], "pair-01");
    assert!(
        items["pair-04"]
            .to_string()
            .contains("LOW_FACE_MATCH_SIMILARITY")
    );
    assert!(items["pair-05"].to_string().contains("NO_REFERENCE_IMAGE"));
    assert_eq!(
        emu.stats().credits_used,
        5,
        "pair-08 is pair-01's two contents again"
    );
}

/// A face match scan's outputs name each pair, price its calls at face match's list price,
/// and say the scores are similarities decided by face match's threshold; `report` without
/// `--price-per-call` prices them the same.
#[tokio::test]
async fn a_face_match_scans_outputs_name_each_pair_at_face_matchs_price() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, refs) = (tmp.path().join("src"), tmp.path().join("refs"));
    let face = |seed: u64| common::encode(&common::person(seed, 128), ImageFormat::Jpeg);
    for i in 0..5u64 {
        common::write(&src, &format!("u{i}.jpg"), &face(40 + i));
        // The first three against another picture of the same face, the fourth against
        // someone else; the fifth has no reference.
        match i {
            0..=2 => common::write(
                &refs,
                &format!("u{i}.jpg"),
                &common::derived(&common::person(40 + i, 128)),
            ),
            3 => common::write(&refs, "u3.jpg", &face(90)),
            _ => continue,
        };
    }
    let emu = common::emulator(|_| {}).await;
    let out = tmp.path().join("out");
    let scan = ScanRun::new(&emu, &src, &out).args(&[
        "--check",
        "face-match",
        "--ref-dir",
        refs.to_str().unwrap(),
    ]);
    assert_eq!(scan.run().await, 1, "one pair has no reference");
    emu.shutdown().await;

    let csv = std::fs::read(out.join("results.csv")).unwrap();
    let rows = common::csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 5);
    let by_key = |k: &str| rows.iter().find(|r| r["key"] == k).unwrap();
    assert!(
        by_key("u0.jpg")["reference"].ends_with("refs/u0.jpg"),
        "{:?}",
        by_key("u0.jpg")
    );
    let derived = std::fs::read(refs.join("u0.jpg")).unwrap();
    assert_eq!(by_key("u0.jpg")["ref_sha256"], sha(&derived));
    assert_eq!(by_key("u3.jpg")["action"], "review");
    assert_ne!(by_key("u3.jpg")["ref_sha256"], by_key("u3.jpg")["sha256"]);
    assert_eq!(by_key("u4.jpg")["action"], "fix_input");
    assert_eq!(
        (
            &*by_key("u4.jpg")["reference"],
            &*by_key("u4.jpg")["ref_sha256"]
        ),
        ("", "")
    );

    let s = scan.summary();
    assert_eq!(s["credits"]["used"], 4);
    assert_eq!(s["credits"]["price_per_call_usd"], 0.05);
    assert_eq!(s["credits"]["estimated_cost_usd"], 0.2);
    assert_eq!(s["scores"]["measure"], "face_match_similarity");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("check face-match · face match threshold 30 · "),
        "{md}"
    );
    assert!(md.contains("## Face match similarity scores"), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<th>Selfie key</th><th>Reference</th>"));
    assert!(
        html.contains("u3.jpg</code>"),
        "the reference of the pair to review"
    );

    // `report` rebuilds the same rows, at the same price, without being told it.
    let r = common::report(&out, &[]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(common::summary(&out)["credits"]["price_per_call_usd"], 0.05);
    assert!(
        std::fs::read(out.join("results.csv")).unwrap() == csv,
        "results.csv is the one the scan wrote"
    );
}

/// `--ref-dir` in shards: each shard pairs only its own share, and together they pair every
/// selfie with its reference once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_pair_their_own_share_by_ref_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, refs) = (tmp.path().join("selfies"), tmp.path().join("refs"));
    for i in 0..12u64 {
        let face = common::person(1_000 + i, 96);
        common::write(
            &src,
            &format!("u{i:02}.jpg"),
            &common::encode(&face, ImageFormat::Jpeg),
        );
        common::write(&refs, &format!("u{i:02}.png"), &common::derived(&face));
    }
    let emu = common::emulator(|_| {}).await;
    let refs_arg = refs.display().to_string();
    let mut seen = BTreeMap::new();
    for k in 1..=3 {
        let out = tmp.path().join(format!("shard-{k}"));
        let shard = format!("{k}/3");
        let scan = ScanRun::new(&emu, &src, &out).args(&[
            "--check",
            "face-match",
            "--ref-dir",
            &refs_arg,
            "--shard",
            &shard,
        ]);
        assert_eq!(scan.run().await, 0);
        for it in scan.items() {
            let key = it["key"].as_str().unwrap().to_string();
            let stem = key.trim_end_matches(".jpg");
            assert_eq!(it["reference"], format!("{refs_arg}/{stem}.png"), "{it}");
            assert!(seen.insert(key, k).is_none(), "a key in two shards");
        }
    }
    assert_eq!(seen.len(), 12);
    assert_eq!(emu.stats().credits_used, 12);
}
