//! Sharding: which part of the input this process screens (`--shard K/N`, or K/N resolved from
//! an array job's variables by `--shard-from-env`), the stable split by a hash of each item's
//! key, the key's budget shared between shards, and the input fingerprint shards compare.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pace::Rate;

/// The split, as journals record it: the first 8 bytes of the SHA-256 of the item key's UTF-8
/// bytes, read as a little-endian integer, modulo N (plus one: shards count from 1). A fixed
/// algorithm, so every task of an array job, on any machine and any version, agrees.
pub const ALGORITHM: &str = "sha256(key)[0..8] little-endian mod N";

/// More shards than this is refused (and would be far past the point where a key's budget,
/// not reading, is the limit).
pub const MAX_SHARDS: u32 = 10_000;

/// One shard of an array job: the `index`-th (1-based) of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {0:?}: expected K/N, this task's number K of N tasks (e.g. --shard 2/8)")]
    Format(String),
    #[error(
        "--shard {0}/{1}: shards count from 1 (1/{1} is the first). A scheduler's 0-based index \
         (JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX) is taken as it is with --shard-from-env"
    )]
    ZeroIndex(u32, u32),
    #[error("--shard {0}/{1}: K must be at most N ({1})")]
    IndexAboveTotal(u32, u32),
    #[error("--shard K/0: N, the number of shards, must be at least 1")]
    ZeroTotal,
    #[error("--shard K/{0}: at most {MAX_SHARDS} shards")]
    TooMany(u32),
    #[error(
        "--shard-from-env: none of JOB_COMPLETION_INDEX (Kubernetes Indexed Job), \
         AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job) or SLURM_ARRAY_TASK_ID (Slurm array) is \
         set; run inside an array job, or give --shard K/N"
    )]
    NoScheduler,
    #[error(
        "--shard-from-env: both {0} and {1} are set; which scheduler runs this task is ambiguous, \
         so give --shard K/N explicitly"
    )]
    Ambiguous(&'static str, &'static str),
    #[error("--shard-from-env: {name}={value:?} is not a whole number")]
    NotANumber { name: &'static str, value: String },
    #[error(
        "--shard-from-env: {0} gives this task's index but not how many tasks there are; add \
         --shard-total N (the Job's completions, or the array size)"
    )]
    NeedTotal(&'static str),
    #[error("--shard-total must be at least 1")]
    ZeroShardTotal,
    #[error(
        "--shard-from-env: {name}={value} is task {index} (counting from 0) but there are only \
         {total} tasks (--shard-total or SLURM_ARRAY_TASK_COUNT)"
    )]
    OutOfRange {
        name: &'static str,
        value: u64,
        index: u64,
        total: u32,
    },
    #[error("--shard-from-env: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN is not")]
    SlurmNoMin,
    #[error(
        "--shard-from-env: SLURM_ARRAY_TASK_ID={id} is not on the array's regular range (min \
         {min}, step {step}); use a range such as --array=0-7 or --array=1-15:2, not a list"
    )]
    SlurmIrregular { id: u64, min: u64, step: u64 },
    #[error(
        "--shard-from-env: --shard-total {given} but SLURM_ARRAY_TASK_COUNT={count}; the array \
         size is the number of shards"
    )]
    TotalMismatch { given: u32, count: u32 },
    #[error(
        "--max-requests {0} is fewer than the {1} shards it is split between; give at least {1}"
    )]
    BudgetTooSmall(u64, u32),
}

impl Shard {
    pub fn new(index: u32, total: u32) -> Result<Self, ShardError> {
        if total == 0 {
            return Err(ShardError::ZeroTotal);
        }
        if total > MAX_SHARDS {
            return Err(ShardError::TooMany(total));
        }
        if index == 0 {
            return Err(ShardError::ZeroIndex(index, total));
        }
        if index > total {
            return Err(ShardError::IndexAboveTotal(index, total));
        }
        Ok(Self { index, total })
    }

    /// The shard (1-based) of a key whose [`crate::kit::digest::key_digest`] is `digest` (the
    /// first 16 bytes of the key's SHA-256, little-endian), among `total` shards.
    pub fn of_digest(digest: u128, total: u32) -> u32 {
        ((digest as u64) % u64::from(total.max(1))) as u32 + 1
    }

    /// The shard (1-based) of `key` among `total` shards.
    pub fn of_key(key: &str, total: u32) -> u32 {
        Self::of_digest(crate::kit::digest::key_digest(key), total)
    }

    /// Whether the key with this digest belongs to this shard.
    pub fn holds(&self, digest: u128) -> bool {
        Self::of_digest(digest, self.total) == self.index
    }

    /// This shard's share of the key's rate: the same count over N times the period, so the
    /// N shards together pace at the rate the user gave.
    pub fn rate(&self, key_rate: Rate) -> Rate {
        Rate {
            count: key_rate.count,
            per: key_rate.per * self.total,
        }
    }

    /// This shard's share of a request budget: N shares that add up to exactly `budget` (the
    /// first `budget % N` shards take one more). Refused when a shard would get nothing.
    pub fn budget(&self, budget: u64) -> Result<u64, ShardError> {
        let n = u64::from(self.total);
        if budget < n {
            return Err(ShardError::BudgetTooSmall(budget, self.total));
        }
        Ok(budget / n + u64::from(u64::from(self.index) <= budget % n))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ShardError::Format(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n)
    }
}

/// A scan's sharding, validated: this shard, and the key's budget it takes 1/N of.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub shard: Shard,
    /// `--rate` as given: the key's budget, shared by every shard.
    pub key_rate: Rate,
    /// `--max-requests` as given, for the whole key.
    pub key_max_requests: Option<u64>,
    /// Where K/N came from with `--shard-from-env` (e.g. "JOB_COMPLETION_INDEX=2").
    pub from_env: Option<String>,
}

impl Plan {
    /// From `--shard`, or `--shard-from-env` (+ `--shard-total`) with `env` looking variables
    /// up. `None` when not sharded, or when N is 1 (no sharding).
    pub fn resolve(
        shard: Option<&str>,
        shard_from_env: bool,
        shard_total: Option<u32>,
        key_rate: Rate,
        key_max_requests: Option<u64>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ShardError> {
        let (shard, from_env) = match (shard, shard_from_env) {
            (Some(s), _) => (s.parse::<Shard>()?, None),
            (None, true) => {
                let r = from_env(env, shard_total)?;
                (r.shard, Some(r.source))
            }
            (None, false) => return Ok(None),
        };
        if shard.total == 1 {
            return Ok(None);
        }
        if let Some(m) = key_max_requests {
            shard.budget(m)?;
        }
        Ok(Some(Self {
            shard,
            key_rate,
            key_max_requests,
            from_env,
        }))
    }

    /// The pace this shard keeps.
    pub fn rate(&self) -> Rate {
        self.shard.rate(self.key_rate)
    }

    /// This shard's share of `--max-requests`.
    pub fn max_requests(&self) -> Option<u64> {
        self.key_max_requests
            .map(|m| self.shard.budget(m).unwrap_or(m))
    }

    /// The banner's words: which shard, from where, and its share of the key's budget.
    pub fn describe(&self) -> String {
        let mut s = format!("Shard {}", self.shard);
        if let Some(src) = &self.from_env {
            s.push_str(&format!(" (from {src})"));
        }
        s.push_str(&format!(
            ": screening only the items whose key hashes to this shard; --rate {} is the key's \
             budget, shared by {} shards, so this shard paces at {:.1}/min",
            self.key_rate,
            self.shard.total,
            self.rate().per_minute_f64()
        ));
        if let (Some(all), Some(mine)) = (self.key_max_requests, self.max_requests()) {
            s.push_str(&format!(
                "; --max-requests {all} is split too: {mine} for this shard"
            ));
        }
        s
    }
}

/// A shard resolved from a scheduler's variables, with the words saying where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEnv {
    pub shard: Shard,
    /// E.g. "SLURM_ARRAY_TASK_ID=5 (min 1, step 2, count 8)".
    pub source: String,
}

/// The scheduler variables `--shard-from-env` reads, in the order they are looked for.
pub const SCHEDULER_VARS: [&str; 3] = [
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
    "SLURM_ARRAY_TASK_ID",
];

/// Resolve K/N from an array job's variables (`env` looks one up): Kubernetes'
/// `JOB_COMPLETION_INDEX` and AWS Batch's `AWS_BATCH_JOB_ARRAY_INDEX` count from 0 and need
/// `total` (`--shard-total`); Slurm's `SLURM_ARRAY_TASK_ID` is normalised with
/// `SLURM_ARRAY_TASK_MIN` and `_STEP`, and `SLURM_ARRAY_TASK_COUNT` gives N.
pub fn from_env(
    env: impl Fn(&str) -> Option<String>,
    total: Option<u32>,
) -> Result<FromEnv, ShardError> {
    if total == Some(0) {
        return Err(ShardError::ZeroShardTotal);
    }
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let present: Vec<&'static str> = SCHEDULER_VARS
        .into_iter()
        .filter(|n| get(n).is_some())
        .collect();
    let name = match present.as_slice() {
        [] => return Err(ShardError::NoScheduler),
        [one] => *one,
        [a, b, ..] => return Err(ShardError::Ambiguous(a, b)),
    };
    let number = |name: &'static str| -> Result<Option<u64>, ShardError> {
        get(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| ShardError::NotANumber {
                    name,
                    value: v.clone(),
                })
            })
            .transpose()
    };
    let value = number(name)?.expect("present");
    let (index0, total, source) = if name == "SLURM_ARRAY_TASK_ID" {
        let min = number("SLURM_ARRAY_TASK_MIN")?.ok_or(ShardError::SlurmNoMin)?;
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let count = number("SLURM_ARRAY_TASK_COUNT")?
            .map(|c| {
                u32::try_from(c).map_err(|_| ShardError::TooMany(u32::MAX))
                // A count too large for u32 is far past MAX_SHARDS anyway.
            })
            .transpose()?;
        if value < min || (value - min) % step != 0 {
            return Err(ShardError::SlurmIrregular {
                id: value,
                min,
                step,
            });
        }
        let total = match (total, count) {
            (Some(given), Some(count)) if given != count => {
                return Err(ShardError::TotalMismatch { given, count });
            }
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => return Err(ShardError::NeedTotal(name)),
        };
        let source = format!(
            "SLURM_ARRAY_TASK_ID={value} (min {min}, step {step}{})",
            count.map_or(String::new(), |c| format!(", count {c}"))
        );
        ((value - min) / step, total, source)
    } else {
        let total = total.ok_or(ShardError::NeedTotal(name))?;
        (value, total, format!("{name}={value}"))
    };
    if index0 >= u64::from(total) {
        return Err(ShardError::OutOfRange {
            name,
            value,
            index: index0,
            total,
        });
    }
    Ok(FromEnv {
        shard: Shard::new(index0 as u32 + 1, total)?,
        source,
    })
}

/// What a shard's journal header records about the split, so `report` can prove that a set of
/// shard folders covers one input exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHeader {
    /// 1-based.
    pub index: u32,
    pub total: u32,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// [`fingerprint`] of the sources.
    pub input_fingerprint: String,
    /// The key's rate the user gave (`--rate`); this shard paced at rate / N.
    pub key_rate: String,
    /// `--max-requests` as given, for the whole key; this shard's share is in the run header.
    #[serde(default)]
    pub key_max_requests: Option<u64>,
}

impl ShardHeader {
    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            total: self.total,
        }
    }
}

/// One source as the fingerprint sees it (the caller tells a bucket URI from a path).
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// `-`: a manifest on standard input.
    Stdin,
    /// A bucket prefix URI, as given.
    Bucket(&'a str),
    /// A folder or a manifest file.
    Path(&'a std::path::Path),
}

/// A fingerprint of the input as given: `sha256:` of one line per source, in order: a manifest
/// by the SHA-256 of its bytes, a folder by its path as given and a bucket prefix by its URI as
/// given (their listings may change between tasks; the split does not depend on them; a
/// bucket's is the same from every machine), standard input as `stdin` (it cannot be read
/// twice); then one line per `--include` and `--exclude` pattern (none: the sources alone).
pub fn fingerprint(
    sources: &[Source],
    include: &[String],
    exclude: &[String],
) -> io::Result<String> {
    let mut all = Sha256::new();
    for s in sources {
        let line = match s {
            Source::Stdin => "stdin".to_string(),
            Source::Bucket(uri) => format!("bucket {uri}"),
            Source::Path(p) if std::fs::metadata(p)?.is_dir() => {
                format!("folder {}", p.display())
            }
            Source::Path(p) => format!("manifest sha256:{}", crate::audit::file_sha256(p)?),
        };
        all.update(line.as_bytes());
        all.update(b"\n");
    }
    // The patterns choose the population too.
    for p in include {
        all.update(format!("include {p}\n").as_bytes());
    }
    for p in exclude {
        all.update(format!("exclude {p}\n").as_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(all.finalize())))
}

#[cfg(test)]
mod tests;
