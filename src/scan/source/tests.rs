use super::*;

fn item(key: &str, source: &str) -> Item {
    Item {
        source: source.into(),
        regular: false,
        ..Item::for_test(key)
    }
}

fn quick() -> QuickCheck {
    QuickCheck {
        index: Default::default(),
        retry_failed: false,
        checksum: false,
        storage: Default::default(),
    }
}

fn found(item: Item) -> Box<Found> {
    let key = journal::key_digest(&item.key);
    Box::new(Found {
        item,
        key,
        current: false,
        read: None,
    })
}

#[test]
fn the_walker_pairs_its_shards_items_by_the_key_their_source_gave() {
    let tmp = tempfile::tempdir().unwrap();
    let refs = tmp.path().join("refs");
    let keys: Vec<String> = (0..40).map(|i| format!("{i}.jpg")).collect();
    for k in &keys {
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join(k.replace(".jpg", ".png")), b"x").unwrap();
    }
    let shard = crate::shard::Shard::new(2, 2).unwrap();
    let walker = Walker {
        keys: RunKeys::default(),
        shard: Some(shard),
        pairing: Some(input::pair::RefDir::open(&refs).unwrap()),
        batch_len: 64,
    };
    // The same key from a second source is renamed, and still paired by its listed key.
    let events = keys
        .iter()
        .map(|k| Event::Item(item(k, "one")))
        .chain(keys.iter().map(|k| Event::Item(item(k, "two"))));
    let (tx, rx) = std::sync::mpsc::sync_channel(100);
    walker.run(events, &tx);
    drop(tx);
    let mut paired = 0;
    for w in rx.iter().flatten() {
        let Walked::Item(f) = w else { continue };
        assert!(shard.holds(journal::key_digest(&f.item.key)));
        let listed = f
            .item
            .key
            .split(' ')
            .next()
            .unwrap()
            .replace(".jpg", ".png");
        let r = f.item.reference.as_ref().expect("paired");
        assert_eq!(r.path, refs.join(&listed), "{}", f.item.key);
        paired += 1;
    }
    assert!(paired > 10 && paired < 70, "{paired}");
}

#[test]
fn the_walker_keys_items_uniquely_leaves_out_another_shards_and_batches() {
    let shard = crate::shard::Shard::new(1, 2).unwrap();
    let walker = Walker {
        keys: RunKeys::default(),
        shard: Some(shard),
        pairing: None,
        batch_len: 2,
    };
    let keys: Vec<String> = (0..40).map(|i| format!("{i}.jpg")).collect();
    let mine = |k: &str| shard.holds(journal::key_digest(k));
    let events = keys
        .iter()
        .map(|k| Event::Item(item(k, "one")))
        .chain([Event::Item(item(&keys[0], "two"))])
        .chain([Event::Warning("w".into())]);
    let (tx, rx) = std::sync::mpsc::sync_channel(100);
    walker.run(events, &tx);
    drop(tx);
    let batches: Vec<Vec<Walked>> = rx.iter().collect();
    assert!(
        batches.iter().all(|b| b.len() <= 2),
        "in batches of 2 at most"
    );
    let walked: Vec<String> = batches
        .into_iter()
        .flatten()
        .map(|w| match w {
            Walked::Item(f) => {
                assert_eq!(f.key, journal::key_digest(&f.item.key));
                f.item.key
            }
            Walked::Warning(w) => w,
            _ => panic!("nothing else was walked"),
        })
        .collect();
    let mut expected: Vec<String> = keys.iter().filter(|k| mine(k)).cloned().collect();
    // The second `0.jpg` is renamed, and belongs to the shard of its new key.
    let renamed = "0.jpg [two]".to_string();
    if mine(&renamed) {
        expected.push(renamed);
    }
    expected.push("w".into());
    assert_eq!(walked, expected);
    assert!(
        expected.len() > 5 && expected.len() < 36,
        "{}",
        expected.len()
    );
}

#[test]
fn the_checker_reads_files_within_the_budget_and_nothing_once_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("a.jpg");
    std::fs::write(&photo, [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap();
    let stop = Stop::default();
    let checker = Checker::new(quick(), &stop, 64);
    let mut file = item("a.jpg", "one");
    file.path = photo.clone();
    let mut file = found(file);
    assert_eq!(
        checker.check(&mut file),
        6,
        "a file is read here, its bytes held"
    );
    assert!(!file.current && matches!(file.read, Some(Ok(_))));
    assert_eq!(
        checker
            .ahead
            .held
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    let mut bad = item("b.jpg", "one");
    bad.problem = Some("row 2: the path cell is empty".into());
    let mut bad = found(bad);
    assert_eq!(checker.check(&mut bad), 0);
    assert!(bad.read.is_none(), "a bad row is not read here");
    let mut object = item("c.jpg", "one");
    object.path = "s3://bucket/c.jpg".into();
    let mut object = found(object);
    checker.check(&mut object);
    assert!(object.read.is_none(), "an object is read on the runtime");

    stop.stop(super::super::StopCause::Interrupted);
    let mut late = item("a.jpg", "one");
    late.path = photo;
    let mut late = found(late);
    assert_eq!(checker.check(&mut late), 0);
    assert!(
        late.read.is_none() && !late.current,
        "nothing is read once stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stages_stream_the_plan_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for name in ["b.jpg", "a.jpg"] {
        std::fs::write(photos.join(name), [0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
    }
    std::fs::write(photos.join("notes.txt"), "not an image").unwrap();
    let cfg = crate::config::scan_config(&[photos.to_str().unwrap(), "--emulator"]).unwrap();
    let plan = input::Plan::new(&cfg.sources, &cfg.source_options, Default::default()).unwrap();
    let events: Vec<Ev> = preflighted(&cfg, plan, Stop::default(), quick())
        .collect()
        .await;
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            Ev::Ready(r) => format!("{} refused: {}", r.item.key, r.facts().refused),
            Ev::Ignored { reason, .. } => format!("ignored: {reason}"),
            _ => "other".into(),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "a.jpg refused: false",
            "b.jpg refused: false",
            "ignored: not an image (text)"
        ]
    );
}

#[test]
fn the_reader_waits_while_over_the_read_ahead_budget() {
    let ahead = Arc::new(ReadAhead::default());
    ahead.add(READ_AHEAD_BYTES);
    assert!(ahead.wait_under(|| panic!("not over the budget: no wait")));
    ahead.add(5 << 20);
    let waiting = {
        let ahead = ahead.clone();
        std::thread::spawn(move || ahead.wait_under(|| false))
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!waiting.is_finished(), "it waits while over the budget");
    ahead.take(5 << 20);
    assert!(waiting.join().unwrap(), "taking bytes wakes it");
    // Nobody left to take anything: the reader gives up instead of waiting for ever.
    ahead.add(1);
    assert!(!ahead.wait_under(|| true));
}

#[test]
fn no_two_items_share_a_key() {
    let mut keys = RunKeys::default();
    let mut a = item("x.jpg", "one");
    let mut b = item("x.jpg", "two");
    let mut c = item("x.jpg", "two");
    let mut d = item("x.jpg [two]", "three");
    for i in [&mut a, &mut b, &mut c, &mut d] {
        keys.make_unique(i);
    }
    assert_eq!(a.key, "x.jpg");
    assert_eq!(b.key, "x.jpg [two]");
    assert_eq!(c.key, "x.jpg [two #2]");
    assert_eq!(d.key, "x.jpg [two] [three]");
}
