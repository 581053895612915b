//! Who ran what, on which inputs, with which key: the run identity written in each run header
//! (run id, tool version and commit, operator, purpose, the command line with secrets removed,
//! the API key's fingerprint), the SHA-256 of each manifest, and the account balance read at
//! the start and end of a run. Pure helpers; the scan writes them, the report shows them.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::ApiKey;

/// The commit this binary was built from (`LIVENESS_BATCH_COMMIT` at build time, else what
/// `git` said then, with `-dirty` when the tree had uncommitted changes; "unknown" without git).
pub const TOOL_COMMIT: &str = env!("LIVENESS_BATCH_COMMIT");

/// What replaces a secret on the recorded command line.
pub const REDACTED_ARG: &str = "<redacted>";

/// Who ran a run, with what, and why: `identity` in the run header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// A new random id for every run (first run and each resume).
    pub run_id: String,
    /// The commit the tool was built from.
    pub tool_commit: String,
    /// `--operator`, else the OS user and host (`user@host`).
    pub operator: String,
    /// `--purpose`: a free-text reason or ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The command line, anything secret replaced by [`REDACTED_ARG`].
    pub command_line: Vec<String>,
    /// First 8 hex digits of the SHA-256 of the API key: shows two runs used the same key,
    /// never the key. None when the run had no key (a dry run without one).
    pub key_fingerprint: Option<String>,
}

/// Settings that shape cost and pace but not the answers (those are in `Settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Tuning {
    pub max_retries: u32,
    pub backoff_ms: u64,
    pub timeout_secs: f64,
    pub price_per_call_usd: f64,
    pub retry_failed: bool,
    pub checksum: bool,
    pub retry_unknown: bool,
}

/// A manifest given as a source, and the SHA-256 of its bytes when the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestHash {
    pub path: String,
    /// None for standard input (read as a stream, never twice) or an unreadable file.
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The balance the emulator serves for unlimited credits (no organisation holds it).
pub const UNLIMITED_USD: &str = "999999999.0000";

/// The account balance as read from `GET /v3/billing/balance/`, or why it is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    /// When it was read (RFC 3339).
    pub at: String,
    /// US dollars as Didit gives them (a decimal string), or None when unknown.
    pub usd: Option<String>,
    /// Why it is unknown (the key may not read billing, no answer, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_because: Option<String>,
}

impl Balance {
    pub fn known(at: String, usd: String) -> Self {
        Self {
            at,
            usd: Some(usd),
            unknown_because: None,
        }
    }

    pub fn unknown(at: String, why: impl Into<String>) -> Self {
        Self {
            at,
            usd: None,
            unknown_because: Some(why.into()),
        }
    }

    /// The balance in US dollars, when known and a number.
    pub fn amount(&self) -> Option<f64> {
        self.usd
            .as_deref()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
    }

    /// "US$12.3400", "unlimited" (the emulator's balance for unlimited credits) or
    /// "unknown (why)".
    pub fn describe(&self) -> String {
        match (&self.usd, &self.unknown_because) {
            (Some(usd), _) if usd == UNLIMITED_USD => "unlimited".to_string(),
            (Some(usd), _) => format!("US${usd}"),
            (None, Some(why)) => format!("unknown ({why})"),
            (None, None) => "unknown".to_string(),
        }
    }
}

/// Whether a balance covers an estimated cost, in words for the user.
pub fn coverage(balance: &Balance, estimate_usd: f64, calls: u64) -> Coverage {
    match balance.amount() {
        None => Coverage::Unknown,
        Some(b) if b + 1e-6 >= estimate_usd => Coverage::Covers,
        Some(_) => Coverage::Short,
    }
    .check(calls)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    Covers,
    Short,
    Unknown,
}

impl Coverage {
    fn check(self, calls: u64) -> Self {
        if calls == 0 && self == Coverage::Short {
            Coverage::Covers
        } else {
            self
        }
    }
}

/// How many calls at `price` a balance pays for, counted in millionths of a dollar so that
/// US$0.30 at US$0.10 is 3 calls, not 2.9999... (None when calls are free).
pub fn calls_covered(balance: &Balance, price: f64) -> Option<u64> {
    let micros = |x: f64| (x * 1e6).round();
    let p = micros(price);
    if p <= 0.0 {
        return None;
    }
    Some((micros(balance.amount()?.max(0.0)) / p).floor() as u64)
}

/// First 8 hex digits of the key's SHA-256.
pub fn key_fingerprint(key: &ApiKey) -> String {
    hex::encode(&Sha256::digest(key.expose().as_bytes())[..4])
}

/// A new run id: 32 random hex digits.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The default operator: the OS user and host, `user@host`.
pub fn default_operator() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| format!("uid{}", uid_from_proc()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{}@{host}", user.trim())
}

/// The real user id, from /proc (no unsafe call needed).
fn uid_from_proc() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "?".to_string())
}

/// Flags whose value is a secret wherever they appear (none of this tool's take one, but a
/// wrapper script or a mistyped flag might).
fn secret_flag(flag: &str) -> bool {
    let f = flag.trim_start_matches('-').to_ascii_lowercase();
    if f.ends_with("-file") || f.ends_with("_file") {
        return false;
    }
    ["key", "token", "secret", "password", "passwd", "credential"]
        .iter()
        .any(|s| f.contains(s))
}

/// The command line with anything secret removed: values of flags named like a secret, the
/// key itself wherever it appears, and credentials or queries in URLs.
pub fn redact_command_line(args: &[String], key: Option<&ApiKey>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push(REDACTED_ARG.to_string());
            hide_next = false;
            continue;
        }
        if arg.starts_with('-') && secret_flag(arg.split('=').next().unwrap_or(arg)) {
            match arg.split_once('=') {
                Some((flag, _)) => out.push(format!("{flag}={REDACTED_ARG}")),
                None => {
                    out.push(arg.clone());
                    hide_next = true;
                }
            }
            continue;
        }
        let mut a = arg.clone();
        if let Some(k) = key {
            let k = k.expose();
            if !k.is_empty() && a.contains(k) {
                a = a.replace(k, REDACTED_ARG);
            }
        }
        out.push(redact_url(&a));
    }
    out
}

/// Remove user info and query from anything that looks like a URL inside `arg`.
fn redact_url(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_string();
    };
    let (head, rest) = arg.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("{REDACTED_ARG}@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => format!("{}?{REDACTED_ARG}", &tail[..q]),
        None => tail.to_string(),
    };
    format!("{head}{authority}{tail}")
}

/// SHA-256 (hex) of a file's bytes, read in blocks.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The manifests among `sources` (files and standard input; folders are walked, not hashed),
/// with their SHA-256.
pub fn manifest_hashes(sources: &[std::path::PathBuf]) -> Vec<ManifestHash> {
    sources
        .iter()
        .filter(|s| s.as_os_str() == "-" || !s.is_dir())
        .map(|s| {
            let path = s.display().to_string();
            if s.as_os_str() == "-" {
                return ManifestHash {
                    path,
                    sha256: None,
                    note: Some("standard input: streamed once, not hashed".into()),
                };
            }
            match file_sha256(s) {
                Ok(sha) => ManifestHash {
                    path,
                    sha256: Some(sha),
                    note: None,
                },
                Err(e) => ManifestHash {
                    path,
                    sha256: None,
                    note: Some(format!("not hashed: {e}")),
                },
            }
        })
        .collect()
}

/// A short category for a local refusal reason ("over 5 MB", "not an image", ...), for counts.
pub fn category(reason: &str) -> String {
    // A manifest row's number is where, not why: "row 7: the path cell is empty" is counted
    // with every other row whose path cell is empty.
    let reason = match reason.strip_prefix("row ") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches(':')
            .trim_start(),
        _ => reason,
    };
    // A reference's refusal names the reference, then why: counted by why.
    if let Some((_, why)) = reason
        .strip_prefix("the reference image ")
        .and_then(|rest| rest.split_once(": "))
    {
        return format!("reference image: {}", category(why));
    }
    let r = reason.split([':', ';']).next().unwrap_or(reason).trim();
    r.chars().take(60).collect()
}

/// The per-item digest the input fingerprint sorts: SHA-256 of `key TAB sha256-hex`.
pub fn item_digest(key: &str, sha256_hex: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(b"\t");
    h.update(sha256_hex.as_bytes());
    h.finalize().into()
}

/// Builds the input fingerprint: the SHA-256 over the sorted per-item digests
/// ([`item_digest`]) of every item with a result, fed in ascending order.
#[derive(Default)]
pub struct Fingerprint {
    hash: Sha256,
    items: u64,
    last: Option<[u8; 32]>,
}

impl Fingerprint {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next digest; digests must come in ascending order.
    pub fn push(&mut self, digest: [u8; 32]) {
        debug_assert!(self.last.is_none_or(|l| l <= digest), "ascending order");
        self.last = Some(digest);
        self.hash.update(digest);
        self.items += 1;
    }

    /// The fingerprint (hex) and how many items it covers.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hash.finalize()), self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_number_is_not_its_category() {
        assert_eq!(
            category("row 7: the path cell is empty"),
            "the path cell is empty"
        );
        assert_eq!(
            category("row 1234567: the path cell is empty"),
            "the path cell is empty"
        );
        assert_eq!(
            category("row 9 is not valid UTF-8 text; save the manifest as UTF-8"),
            "is not valid UTF-8 text"
        );
        assert_eq!(category("rowdy: name"), "rowdy");
        assert_eq!(category("row of seats: x"), "row of seats");
    }

    #[test]
    fn a_refused_reference_is_counted_by_why_not_by_its_name() {
        for name in ["refs/a.jpg", "s3://bucket/refs/b.png", "/abs/c d.jpg"] {
            assert_eq!(
                category(&format!(
                    "the reference image {name}: not an image: PDF document"
                )),
                "reference image: not an image"
            );
        }
        assert_eq!(
            category("row 4: no reference image: the ref_path cell is empty"),
            "no reference image"
        );
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines_lose_their_secrets() {
        let key = ApiKey::new("sk_live_abcdef").unwrap();
        let got = redact_command_line(
            &args(&[
                "liveness-batch",
                "scan",
                "photos",
                "--api-key-file",
                "/run/key",
                "--token",
                "t0p",
                "--password=hunter2",
                "--base-url",
                "https://user:pw@api.example.com/v3?sig=abc",
                "--purpose",
                "ticket sk_live_abcdef",
            ]),
            Some(&key),
        );
        let joined = got.join(" ");
        for secret in ["t0p", "hunter2", "user:pw", "sig=abc", "sk_live_abcdef"] {
            assert!(!joined.contains(secret), "{secret} in {joined}");
        }
        assert!(joined.contains("--api-key-file /run/key"), "{joined}");
        assert!(joined.contains("https://<redacted>@api.example.com/v3?<redacted>"));
        assert!(joined.contains("--password=<redacted>"));
        assert!(joined.contains("ticket <redacted>"));
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        let k = ApiKey::new("abc").unwrap();
        // SHA-256("abc") = ba7816bf...
        assert_eq!(key_fingerprint(&k), "ba7816bf");
        let mut a = Fingerprint::new();
        let mut d = [item_digest("a", "00"), item_digest("b", "11")];
        d.sort();
        for x in d {
            a.push(x);
        }
        let (fp, n) = a.finish();
        assert_eq!(n, 2);
        let mut h = Sha256::new();
        h.update(d[0]);
        h.update(d[1]);
        assert_eq!(fp, hex::encode(h.finalize()));
    }

    #[test]
    fn balances_cover_or_not() {
        let b = Balance::known("t".into(), "1.0000".into());
        assert_eq!(coverage(&b, 0.9, 9), Coverage::Covers);
        assert_eq!(coverage(&b, 1.0, 10), Coverage::Covers);
        assert_eq!(coverage(&b, 1.1, 11), Coverage::Short);
        let u = Balance::unknown("t".into(), "HTTP 403");
        assert_eq!(coverage(&u, 1.0, 10), Coverage::Unknown);
        let thirty = Balance::known("t".into(), "0.3000".into());
        assert_eq!(calls_covered(&thirty, 0.1), Some(3), "not 2.999...");
        assert_eq!(coverage(&thirty, 3.0 * 0.1, 3), Coverage::Covers);
        assert_eq!(calls_covered(&thirty, 0.0), None);
        assert_eq!(calls_covered(&u, 0.1), None);
        assert_eq!(u.describe(), "unknown (HTTP 403)");
        assert_eq!(b.describe(), "US$1.0000");
        let unlimited = Balance::known("t".into(), UNLIMITED_USD.into());
        assert_eq!(unlimited.describe(), "unlimited");
        assert!(default_operator().contains('@'));
    }
}
