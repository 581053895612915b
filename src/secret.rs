//! The API key: read from the environment or a file, never printed (Debug and Display redact it).

use std::fmt;
use std::path::Path;

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
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
                path: path.display().to_string(),
                source,
            })?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
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
    fn header_unsafe_keys_are_refused() {
        assert!(matches!(ApiKey::new("a b"), Err(KeyError::NotAHeaderValue)));
        assert!(matches!(
            ApiKey::new("ключ"),
            Err(KeyError::NotAHeaderValue)
        ));
    }
}
