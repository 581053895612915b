//! The API key: read from the environment or a file, never printed (Debug and Display redact it).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// A key file larger than this is not a key file (Didit's keys are a few dozen characters).
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

/// An API key whose value can only be read through [`ApiKey::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no API key: set the DIDIT_API_KEY environment variable or pass --api-key-file PATH \
         (or use --emulator to run against the built-in emulator)"
    )]
    Missing,
    #[error("cannot read the API key file {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {path} is empty")]
    EmptyFile { path: String },
    #[error(
        "the API key file {path} is not a regular file ({kind}): give the path of a file \
         holding the key on its first line"
    )]
    NotAFile { path: String, kind: &'static str },
    #[error(
        "the API key file {path} is larger than {max} bytes: it should hold only the key on its \
         first line"
    )]
    TooLarge { path: String, max: u64 },
    #[error("the API key file {path} is not UTF-8 text")]
    NotText { path: String },
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    NotAHeaderValue,
}

impl ApiKey {
    pub fn new(value: impl Into<String>) -> Result<Self, KeyError> {
        let value = value.into();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(KeyError::Missing);
        }
        if !trimmed.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(KeyError::NotAHeaderValue);
        }
        Ok(Self(trimmed.to_string()))
    }

    /// From `--api-key-file` when given, else from the `DIDIT_API_KEY` value passed in.
    pub fn resolve(file: Option<&Path>, env_value: Option<String>) -> Result<Self, KeyError> {
        if let Some(path) = file {
            let first = read_first_line(path)?;
            if first.is_empty() {
                return Err(KeyError::EmptyFile {
                    path: path.display().to_string(),
                });
            }
            return Self::new(first);
        }
        match env_value {
            Some(v) if !v.trim().is_empty() => Self::new(v),
            _ => Err(KeyError::Missing),
        }
    }

    /// The raw value, for the `x-api-key` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The first line of a key file, trimmed. Only a regular file is read (a FIFO, a device such
/// as `/dev/zero`, a directory or a socket is refused without reading), and at most
/// [`MAX_KEY_FILE_BYTES`] of it. The file is opened non-blocking so that opening a FIFO cannot
/// hang, then checked on the open handle (no race with a swap of the path). No error carries
/// any of the file's content.
fn read_first_line(path: &Path) -> Result<String, KeyError> {
    let shown = || path.display().to_string();
    let unreadable = |source| KeyError::Unreadable {
        path: shown(),
        source,
    };
    let file = open_nonblocking(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: shown(),
            kind: crate::kit::kinds::file_kind(&meta.file_type()),
        });
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: shown(),
            max: MAX_KEY_FILE_BYTES,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    // The file grew between the check and the read.
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: shown(),
            max: MAX_KEY_FILE_BYTES,
        });
    }
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = std::str::from_utf8(first).map_err(|_| KeyError::NotText { path: shown() })?;
    Ok(text.trim().to_string())
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let k = ApiKey::new("sk_live_very_secret_value").unwrap();
        assert!(!format!("{k:?}").contains("secret"));
        assert!(!format!("{k}").contains("secret"));
        assert_eq!(k.expose(), "sk_live_very_secret_value");
    }

    #[test]
    fn missing_key_names_both_ways() {
        let e = ApiKey::resolve(None, None).unwrap_err().to_string();
        assert!(
            e.contains("DIDIT_API_KEY") && e.contains("--api-key-file"),
            "{e}"
        );
        assert!(matches!(
            ApiKey::resolve(None, Some("  ".into())),
            Err(KeyError::Missing)
        ));
    }

    #[test]
    fn file_first_line_is_used_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "abc123\nsecond line\n").unwrap();
        assert_eq!(
            ApiKey::resolve(Some(&p), Some("env".into()))
                .unwrap()
                .expose(),
            "abc123"
        );
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            ApiKey::resolve(Some(&p), None),
            Err(KeyError::EmptyFile { .. })
        ));
        let missing = dir.path().join("nope");
        let e = ApiKey::resolve(Some(&missing), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn devices_fifos_and_folders_are_refused_without_reading() {
        let e = ApiKey::resolve(Some(Path::new("/dev/zero")), None).unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::NotAFile {
                    kind: "character device",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/dev/zero"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = ApiKey::resolve(Some(dir.path()), None).unwrap_err();
        assert!(
            matches!(e, KeyError::NotAFile { kind: "folder", .. }),
            "{e}"
        );
        // A FIFO with no writer: refused at once (opening it must not block).
        let fifo = dir.path().join("key.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = ApiKey::resolve(Some(&fifo), None).unwrap_err();
        assert!(matches!(e, KeyError::NotAFile { kind: "FIFO", .. }), "{e}");
        assert!(e.to_string().contains("key.fifo"), "{e}");
    }

    #[test]
    fn large_or_binary_key_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let content = "secretline\n".repeat(1000);
        std::fs::write(&p, &content).unwrap();
        let e = ApiKey::resolve(Some(&p), None).unwrap_err();
        assert!(matches!(e, KeyError::TooLarge { max: 4096, .. }), "{e}");
        assert!(!e.to_string().contains("secretline"), "{e}");
        // Exactly at the limit is fine; only the first line is used.
        let mut at_limit = b"k123\n".to_vec();
        at_limit.resize(MAX_KEY_FILE_BYTES as usize, b'x');
        std::fs::write(&p, &at_limit).unwrap();
        assert_eq!(ApiKey::resolve(Some(&p), None).unwrap().expose(), "k123");
        std::fs::write(&p, b"\xff\xfesecret\n").unwrap();
        let e = ApiKey::resolve(Some(&p), None).unwrap_err();
        assert!(matches!(e, KeyError::NotText { .. }), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        // CRLF files work.
        std::fs::write(&p, b"abc\r\nrest").unwrap();
        assert_eq!(ApiKey::resolve(Some(&p), None).unwrap().expose(), "abc");
    }

    #[test]
    fn header_unsafe_keys_are_refused() {
        assert!(matches!(ApiKey::new("a b"), Err(KeyError::NotAHeaderValue)));
        assert!(matches!(
            ApiKey::new("ключ"),
            Err(KeyError::NotAHeaderValue)
        ));
    }
}
