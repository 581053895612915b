//! An item's version: what a resume compares, without reading the content, to tell whether an
//! item changed since it was screened. For a file, its size and modification time (to the
//! nanosecond), the quick check rsync makes; for an object in a bucket, its size and ETag.

use std::fmt;
use std::fs::Metadata;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// Size in bytes and modification time in nanoseconds since 1970 (UTC).
    File { size: u64, mtime_ns: i64 },
    /// An object's size and ETag (boxed: an item's version stays as small as a file's).
    Object(Box<ObjectVersion>),
}

/// An object's size in bytes and ETag (in quotes, without a weak `W/` mark, whatever form the
/// store gives it in: a listing and a HEAD of the same object may differ only there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub size: u64,
    pub etag: String,
}

impl Version {
    /// A file's version from its metadata; `None` where the filesystem keeps no modification
    /// time, or one outside the years 1678 to 2261 (the content is then always read and
    /// compared).
    pub fn of_file(meta: &Metadata) -> Option<Version> {
        Some(Version::File {
            size: meta.len(),
            mtime_ns: nanos_since_epoch(meta.modified().ok()?)?,
        })
    }
}

impl Version {
    /// An object's version from its listing or HEAD; `None` without an ETag (the content is
    /// then always read and compared).
    pub fn of_object(size: u64, etag: Option<&str>) -> Option<Version> {
        etag.map(normalise_etag)
            .filter(|e| e != "\"\"")
            .map(|etag| Version::Object(Box::new(ObjectVersion { size, etag })))
    }

    /// An object's ETag.
    pub fn etag(&self) -> Option<&str> {
        match self {
            Version::Object(o) => Some(&o.etag),
            Version::File { .. } => None,
        }
    }
}

/// An ETag as compared and recorded: without a weak `W/` mark, always in quotes.
fn normalise_etag(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    let e = e.strip_prefix('"').unwrap_or(e);
    let e = e.strip_suffix('"').unwrap_or(e);
    format!("\"{e}\"")
}

fn nanos_since_epoch(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos()).ok().map(|n| -n),
    }
}

/// The journal's form, e.g. `size=3134 mtime=2026-11-30T09:12:44.123456789Z`: readable in an
/// audit, and exactly the same text for the same version, so the text itself is compared.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::File { size, mtime_ns } => {
                let at = DateTime::from_timestamp_nanos(*mtime_ns);
                write!(
                    f,
                    "size={size} mtime={}",
                    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
                )
            }
            Version::Object(o) => write!(f, "size={} etag={}", o.size, o.etag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t: SystemTime) -> i64 {
        nanos_since_epoch(t).unwrap()
    }

    #[test]
    fn a_files_version_is_its_size_and_time_to_the_nanosecond() {
        let v = Version::File {
            size: 3134,
            mtime_ns: at(UNIX_EPOCH + Duration::new(1_764_493_964, 123_456_789)),
        };
        assert_eq!(
            v.to_string(),
            "size=3134 mtime=2025-11-30T09:12:44.123456789Z"
        );
        let w = Version::File {
            size: 3134,
            mtime_ns: at(UNIX_EPOCH + Duration::new(1_764_493_964, 123_456_790)),
        };
        assert_ne!(v.to_string(), w.to_string(), "one nanosecond apart");
        let old = Version::File {
            size: 1,
            mtime_ns: at(UNIX_EPOCH - Duration::from_secs(86_400)),
        };
        assert_eq!(
            old.to_string(),
            "size=1 mtime=1969-12-31T00:00:00.000000000Z"
        );
    }

    #[test]
    fn an_objects_version_is_its_size_and_etag() {
        let v = Version::of_object(3134, Some("\"9b2cf535f27731c974343645a3985328\"")).unwrap();
        assert_eq!(
            v.to_string(),
            "size=3134 etag=\"9b2cf535f27731c974343645a3985328\""
        );
        assert_eq!(v.etag(), Some("\"9b2cf535f27731c974343645a3985328\""));
        assert_ne!(
            v.to_string(),
            Version::of_object(3134, Some("\"other\""))
                .unwrap()
                .to_string()
        );
        assert_eq!(Version::of_object(1, None), None);
        assert_eq!(Version::of_object(1, Some("")), None);
        assert_eq!(Version::of_object(1, Some("\"\"")), None);
    }

    #[test]
    fn etags_compare_without_quotes_or_a_weak_mark() {
        // A listing may give the ETag bare (Azure) where a HEAD or GET quotes it.
        let quoted = Version::of_object(7, Some("\"0x8DC1\"")).unwrap();
        for same in ["0x8DC1", "W/\"0x8DC1\"", " \"0x8DC1\" "] {
            assert_eq!(Version::of_object(7, Some(same)).unwrap(), quoted, "{same}");
        }
        assert_eq!(quoted.to_string(), "size=7 etag=\"0x8DC1\"");
        assert_ne!(Version::of_object(7, Some("0x8DC2")).unwrap(), quoted);
    }

    #[test]
    fn read_from_a_files_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jpg");
        std::fs::write(&path, b"12345").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let v = Version::of_file(&meta).unwrap();
        assert!(v.to_string().starts_with("size=5 mtime="), "{v}");
    }
}
