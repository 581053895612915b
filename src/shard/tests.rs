use std::collections::HashMap;
use std::time::Duration;

use super::*;

#[test]
fn parses_k_of_n_and_refuses_the_rest_clearly() {
    assert_eq!(
        "2/8".parse::<Shard>().unwrap(),
        Shard { index: 2, total: 8 }
    );
    assert_eq!(" 1 / 1 ".parse::<Shard>().unwrap().to_string(), "1/1");
    let cases = [
        ("0/4", "count from 1"),
        ("5/4", "at most N (4)"),
        ("1/0", "at least 1"),
        ("0/0", "at least 1"),
        ("2", "expected K/N"),
        ("a/4", "expected K/N"),
        ("-1/4", "expected K/N"),
        ("1/20000", "at most 10000"),
    ];
    for (input, needle) in cases {
        let e = input.parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains(needle), "{input}: {e}");
    }
}

#[test]
fn the_split_is_pinned_to_sha256_of_the_key() {
    // SHA-256("a") = ca978112ca1bbdca...; its first 8 bytes little-endian are
    // 0xcabd1bca1281 97ca = 14607384022101826762.
    let first8 = u64::from_le_bytes([0xca, 0x97, 0x81, 0x12, 0xca, 0x1b, 0xbd, 0xca]);
    for n in [1u32, 2, 3, 4, 7, 1000] {
        assert_eq!(Shard::of_key("a", n), (first8 % u64::from(n)) as u32 + 1);
    }
    assert_eq!(Shard::of_key("anything", 1), 1);
}

#[test]
fn adding_inputs_moves_no_item_between_shards() {
    let keys: Vec<String> = (0..2000).map(|i| format!("selfies/{i:05}.jpg")).collect();
    let before: HashMap<&str, u32> = keys
        .iter()
        .map(|k| (k.as_str(), Shard::of_key(k, 4)))
        .collect();
    // A bigger input, listed in another order: every old key keeps its shard.
    let mut more: Vec<String> = (0..5000)
        .rev()
        .map(|i| format!("selfies/{i:05}.jpg"))
        .collect();
    more.push("new/other.png".into());
    for k in &more {
        if let Some(s) = before.get(k.as_str()) {
            assert_eq!(Shard::of_key(k, 4), *s, "{k}");
        }
    }
    // And every key is in exactly one shard, the shards about even.
    let mut sizes = [0u32; 4];
    for k in &keys {
        let holders: Vec<u32> = (1..=4)
            .filter(|i| {
                Shard::new(*i, 4)
                    .unwrap()
                    .holds(crate::kit::digest::key_digest(k))
            })
            .collect();
        assert_eq!(holders.len(), 1, "{k}");
        sizes[holders[0] as usize - 1] += 1;
    }
    assert!(sizes.iter().all(|s| (400..600).contains(s)), "{sizes:?}");
}

#[test]
fn rate_and_budget_are_split_between_shards() {
    let key: Rate = "60/6s".parse().unwrap();
    let s = Shard::new(3, 4).unwrap();
    assert_eq!(s.rate(key).per_second() * 4.0, key.per_second());
    assert_eq!(s.rate(key).per, Duration::from_secs(24));
    let shares: Vec<u64> = (1..=4)
        .map(|k| Shard::new(k, 4).unwrap().budget(10).unwrap())
        .collect();
    assert_eq!(shares, [3, 3, 2, 2]);
    assert_eq!(shares.iter().sum::<u64>(), 10);
    let e = s.budget(3).unwrap_err().to_string();
    assert!(e.contains("fewer than the 4 shards"), "{e}");
    let plan = Plan::resolve(Some("3/4"), false, None, key, Some(10), |_| None)
        .unwrap()
        .unwrap();
    assert_eq!(plan.max_requests(), Some(2));
    let words = plan.describe();
    assert!(
        words.contains("Shard 3/4") && words.contains("150.0/min") && words.contains("60/6s"),
        "{words}"
    );
    assert_eq!(
        Plan::resolve(Some("1/1"), false, None, key, None, |_| None).unwrap(),
        None,
        "N = 1 means no sharding"
    );
    let e = Plan::resolve(Some("1/4"), false, None, key, Some(3), |_| None).unwrap_err();
    assert_eq!(e, ShardError::BudgetTooSmall(3, 4));
}

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn kubernetes_and_aws_batch_count_from_zero_and_need_the_total() {
    let k = from_env(env(&[("JOB_COMPLETION_INDEX", "0")]), Some(4)).unwrap();
    assert_eq!(k.shard, Shard { index: 1, total: 4 });
    assert_eq!(k.source, "JOB_COMPLETION_INDEX=0");
    let a = from_env(env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "3")]), Some(4)).unwrap();
    assert_eq!(a.shard, Shard { index: 4, total: 4 });
    let e = from_env(env(&[("JOB_COMPLETION_INDEX", "4")]), Some(4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("only 4 tasks"), "{e}");
    let e = from_env(env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "1")]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--shard-total"), "{e}");
    let e = from_env(env(&[("JOB_COMPLETION_INDEX", "x1")]), Some(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a whole number"), "{e}");
    let e = from_env(env(&[]), Some(2)).unwrap_err().to_string();
    assert!(e.contains("none of JOB_COMPLETION_INDEX"), "{e}");
    let e = from_env(
        env(&[("JOB_COMPLETION_INDEX", "1"), ("SLURM_ARRAY_TASK_ID", "1")]),
        Some(2),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ambiguous"), "{e}");
    assert_eq!(
        from_env(env(&[("JOB_COMPLETION_INDEX", "0")]), Some(0)).unwrap_err(),
        ShardError::ZeroShardTotal
    );
}

#[test]
fn slurm_arrays_are_normalised_with_min_step_and_count() {
    // --array=1-15:2 → ids 1,3,...,15: 8 tasks; id 5 is the third.
    let vars = [
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "8"),
    ];
    let s = from_env(env(&vars), None).unwrap();
    assert_eq!(s.shard, Shard { index: 3, total: 8 });
    assert_eq!(s.source, "SLURM_ARRAY_TASK_ID=5 (min 1, step 2, count 8)");
    // The same with --shard-total agreeing; disagreeing is refused.
    assert_eq!(from_env(env(&vars), Some(8)).unwrap().shard.index, 3);
    let e = from_env(env(&vars), Some(4)).unwrap_err().to_string();
    assert!(e.contains("SLURM_ARRAY_TASK_COUNT=8"), "{e}");
    // The last task of the array.
    let last = [
        ("SLURM_ARRAY_TASK_ID", "15"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "8"),
    ];
    assert_eq!(
        from_env(env(&last), None).unwrap().shard,
        Shard { index: 8, total: 8 }
    );
    // --array=0-3 without a step variable: step 1.
    let plain = [
        ("SLURM_ARRAY_TASK_ID", "0"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    assert_eq!(
        from_env(env(&plain), None).unwrap().shard,
        Shard { index: 1, total: 4 }
    );
    // An id off the regular range, a missing min, no count and no total.
    let off = [
        ("SLURM_ARRAY_TASK_ID", "4"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "8"),
    ];
    let e = from_env(env(&off), None).unwrap_err().to_string();
    assert!(e.contains("regular range"), "{e}");
    let e = from_env(env(&[("SLURM_ARRAY_TASK_ID", "4")]), Some(8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SLURM_ARRAY_TASK_MIN"), "{e}");
    let e = from_env(
        env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "0")]),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--shard-total"), "{e}");
}

#[test]
fn the_fingerprint_follows_the_manifest_bytes_and_the_folders_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.csv");
    std::fs::write(&m, "path\na.jpg\n").unwrap();
    let sources = [Source::Path(&m), Source::Path(dir.path())];
    let a = fingerprint(&sources, &[], &[]).unwrap();
    assert_eq!(a, fingerprint(&sources, &[], &[]).unwrap());
    assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
    std::fs::write(&m, "path\na.jpg\nb.jpg\n").unwrap();
    assert_ne!(a, fingerprint(&sources, &[], &[]).unwrap());
    let gone = dir.path().join("gone");
    assert!(fingerprint(&[Source::Path(&gone)], &[], &[]).is_err());
}

#[test]
fn a_bucket_prefix_is_fingerprinted_by_its_uri_as_given_on_every_machine() {
    // Nothing local is looked at: no such file exists here, and none needs to.
    let one = |uri: &str| fingerprint(&[Source::Bucket(uri)], &[], &[]).unwrap();
    let a = one("s3://aud1/selfies/");
    assert_eq!(a, one("s3://aud1/selfies/"));
    for other in [
        "s3://aud1/selfies",
        "s3://aud1/selfies//",
        "gs://aud1/selfies/",
    ] {
        assert_ne!(a, one(other), "{other}");
    }
    // The patterns choose the population too, and which flag holds a pattern matters.
    let src = [Source::Bucket("s3://aud1/selfies/")];
    let jpgs = fingerprint(&src, &["*.jpg".into()], &[]).unwrap();
    let no_jpgs = fingerprint(&src, &[], &["*.jpg".into()]).unwrap();
    assert!(a != jpgs && a != no_jpgs && jpgs != no_jpgs);
}
