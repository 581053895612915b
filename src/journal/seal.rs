//! Signatures over the evidence, in minisign's format: a `seal` line signs the journal's chain
//! head (so every line before it), and a `.minisig` file beside a file signs its bytes (for
//! SHA256SUMS, the one an auditor checks with the standard `minisign -Vm`, and the caches).
//! Keys are minisign's own (made by `minisign -G`); an encrypted secret key is opened with the
//! password in `LIVENESS_SIGN_PASSWORD`, never asked for interactively.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use serde::{Deserialize, Serialize};

use super::files;

/// The environment variable holding the password of an encrypted secret key.
pub const PASSWORD_ENV: &str = "LIVENESS_SIGN_PASSWORD";

/// What a signature file beside `path` is called.
pub fn sig_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".minisig");
    path.with_file_name(name)
}

/// Key files are small; anything larger is not one.
const MAX_KEY_BYTES: u64 = 16 << 10;
/// Signature files are small too.
const MAX_SIG_BYTES: u64 = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a minisign secret key ({why}); make one with `minisign -G -W -s {path}` \
         (unencrypted) or `minisign -G` (its password then comes from {PASSWORD_ENV})"
    )]
    NotSecret { path: PathBuf, why: String },
    #[error(
        "the secret key {path} is encrypted: set {PASSWORD_ENV} to its password (the password \
         is never asked for interactively)"
    )]
    NeedsPassword { path: PathBuf },
    #[error("the secret key {path} could not be opened with the password in {PASSWORD_ENV}")]
    WrongPassword { path: PathBuf },
    #[error("{path} is not a minisign public key ({why}); it is the .pub file `minisign -G` wrote")]
    NotPublic { path: PathBuf, why: String },
}

/// Read a small key or signature file, never through a link, never blocking on a FIFO.
fn read_small(path: &Path, max: u64) -> std::io::Result<String> {
    let file = files::open_read(path).map_err(|e| match e {
        super::JournalError::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    })?;
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(
            "too large for a key or signature file",
        ));
    }
    Ok(text)
}

/// The secret half, with its public half, that signs seals and files.
pub struct Signer {
    sk: SecretKey,
    pk: PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: only which key it is.
        write!(f, "Signer({})", key_id(&self.pk))
    }
}

impl Signer {
    /// Open the secret key at `path` (`password`: the value of [`PASSWORD_ENV`], if set).
    pub fn open(path: &Path, password: Option<String>) -> Result<Self, KeyError> {
        let text = read_small(path, MAX_KEY_BYTES).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not = |why: String| KeyError::NotSecret {
            path: path.to_path_buf(),
            why,
        };
        if !text.starts_with("untrusted comment:") || text.lines().count() < 2 {
            return Err(not("it does not start with minisign's comment line".into()));
        }
        let sk_box = SecretKeyBox::from_string(&text).map_err(|e| not(e.to_string()))?;
        let sk = match SecretKey::from_unencrypted_box(sk_box.clone()) {
            Ok(sk) => sk,
            // minisign 0.11 writes an unencrypted key (`-W`) with a zero checksum.
            Err(_) if let Some(sk) = unencrypted_without_checksum(&text) => sk,
            Err(e) if e.to_string().contains("encrypted") => {
                let Some(password) = password else {
                    return Err(KeyError::NeedsPassword {
                        path: path.to_path_buf(),
                    });
                };
                SecretKey::from_box(sk_box, Some(password)).map_err(|_| {
                    KeyError::WrongPassword {
                        path: path.to_path_buf(),
                    }
                })?
            }
            Err(e) => return Err(not(e.to_string())),
        };
        let pk = PublicKey::from_secret_key(&sk).map_err(|e| not(e.to_string()))?;
        Ok(Self { sk, pk })
    }

    /// The public half.
    pub fn public(&self) -> Verifier {
        Verifier {
            pk: self.pk.clone(),
        }
    }

    /// minisign's key id of this key (16 hex digits, as `minisign` prints it).
    pub fn key_id(&self) -> String {
        key_id(&self.pk)
    }

    /// A signature of `data` in minisign's text format (what a `.minisig` file holds).
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let untrusted = format!("signature from liveness-batch key {}", self.key_id());
        minisign::sign(
            Some(&self.pk),
            &self.sk,
            Cursor::new(data),
            Some(trusted_comment),
            Some(&untrusted),
        )
        .map(|b| b.into_string())
        // The key was checked when it was opened; signing in memory cannot fail otherwise.
        .expect("a decrypted minisign key signs")
    }

    /// Sign the seal statement for a journal of `bytes` bytes and `lines` lines whose last line
    /// hashes to `head`.
    pub fn seal(&self, bytes: u64, lines: u64, head: &[u8; 32]) -> Seal {
        let head = hex::encode(head);
        let statement = statement(bytes, lines, &head);
        let signature = self.sign(
            statement.as_bytes(),
            &format!("liveness-batch seal: {lines} lines, {bytes} bytes, head {head}"),
        );
        Seal {
            bytes,
            lines,
            head,
            key_id: self.key_id(),
            signature,
        }
    }

    /// Sign the file at `path` as it is now (`path.minisig`); nothing when it does not exist.
    pub fn sign_existing(&self, path: &Path) -> std::io::Result<()> {
        match std::fs::read(path) {
            Ok(bytes) => self.sign_file(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Write `path.minisig`, the signature of `data` (the bytes just written to `path`),
    /// owner-only and atomically.
    pub fn sign_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sig = self.sign(data, &format!("file: {name}"));
        files::write_private_atomic(&sig_path(path), |w| w.write_all(sig.as_bytes()))
    }
}

/// A secret key as `minisign -G -W` (0.11) writes it: unencrypted, with the checksum left at
/// zero, which the minisign crate takes for a corrupted key.
fn unencrypted_without_checksum(text: &str) -> Option<SecretKey> {
    use ct_codecs::{Base64, Decoder};
    // sig_alg (2), kdf_alg (2), chk_alg (2), salt (32), opslimit (8), memlimit (8), then the
    // key number (8), the secret key (64) and its checksum (32).
    const LEN: usize = 158;
    let encoded = text.lines().nth(1)?.trim();
    let bytes = Base64::decode_to_vec(encoded, None).ok()?;
    let unencrypted = bytes.len() == LEN && bytes[2..4] == [0, 0];
    if !unencrypted || bytes[LEN - 32..].iter().any(|b| *b != 0) {
        return None;
    }
    SecretKey::from_bytes(&bytes).ok()
}

/// The public half: checks seals and signature files.
#[derive(Clone)]
pub struct Verifier {
    pk: PublicKey,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({})", key_id(&self.pk))
    }
}

impl Verifier {
    /// Open the public key file at `path` (as `minisign -G` writes it).
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let text = read_small(path, MAX_KEY_BYTES).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not = |why: String| KeyError::NotPublic {
            path: path.to_path_buf(),
            why,
        };
        let secret = SecretKeyBox::from_string(&text).is_ok_and(|b| {
            match SecretKey::from_unencrypted_box(b) {
                Ok(_) => true,
                Err(e) => e.to_string().contains("encrypted"),
            }
        });
        if secret {
            return Err(not("this is the secret key; give its .pub file".into()));
        }
        let pk = PublicKeyBox::from_string(&text)
            .and_then(|b| b.into_public_key())
            .or_else(|_| PublicKey::from_base64(text.trim()))
            .map_err(|e| not(e.to_string()))?;
        Ok(Self { pk })
    }

    pub fn key_id(&self) -> String {
        key_id(&self.pk)
    }

    /// Whether `sig` (minisign's text format) is this key's signature of `data`.
    pub fn check(&self, data: &[u8], sig: &str) -> Result<(), String> {
        let sig_box =
            SignatureBox::from_string(sig).map_err(|e| format!("not a signature: {e}"))?;
        minisign::verify(&self.pk, &sig_box, Cursor::new(data), true, false, false)
            .map_err(|e| e.to_string())
    }

    /// Whether `seal` is this key's signature of its own statement.
    pub fn check_seal(&self, seal: &Seal) -> Result<(), String> {
        if seal.key_id != self.key_id() {
            return Err(format!(
                "it was signed with key {}, not with the key given ({})",
                seal.key_id,
                self.key_id()
            ));
        }
        let statement = statement(seal.bytes, seal.lines, &seal.head);
        self.check(statement.as_bytes(), &seal.signature)
    }

    /// Check `path.minisig` against `data` (the bytes of `path`).
    pub fn check_file(&self, path: &Path, data: &[u8]) -> Result<(), String> {
        let sig_file = sig_path(path);
        let sig = read_small(&sig_file, MAX_SIG_BYTES)
            .map_err(|e| format!("{} cannot be read: {e}", sig_file.display()))?;
        self.check(data, &sig)
    }
}

/// The key id minisign prints: the 8-byte key number as 16 upper-case hex digits.
fn key_id(pk: &PublicKey) -> String {
    let mut n = [0u8; 8];
    let keynum = pk.keynum();
    n.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// The text a seal signs: which journal state it vouches for.
fn statement(bytes: u64, lines: u64, head: &str) -> String {
    format!("liveness-batch journal seal\nbytes: {bytes}\nlines: {lines}\nhead: {head}\n")
}

/// A journal line `{"type":"seal",...}`: the signature of the journal state before it, which
/// the line's `prev` also names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seal {
    /// Length of the journal before this line.
    pub bytes: u64,
    /// Lines before this one.
    pub lines: u64,
    /// SHA-256 (hex) of the line before this one: the chain head it vouches for.
    pub head: String,
    /// The signing key's id, as minisign prints it.
    pub key_id: String,
    /// minisign's signature of the statement (text format).
    pub signature: String,
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A fresh unencrypted key pair written as `minisign -G -W` writes it: (secret, public).
    pub fn key_files(dir: &Path) -> (PathBuf, PathBuf) {
        let minisign::KeyPair { pk, sk } =
            minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let sk_path = dir.join("test.key");
        let pk_path = dir.join("test.pub");
        std::fs::write(&sk_path, sk.to_box(None).unwrap().to_string()).unwrap();
        std::fs::write(&pk_path, pk.to_box().unwrap().to_string()).unwrap();
        (sk_path, pk_path)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::key_files;
    use super::*;

    #[test]
    fn a_seal_verifies_with_its_key_and_fails_when_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = key_files(dir.path());
        let signer = Signer::open(&sk, None).unwrap();
        let verifier = Verifier::open(&pk).unwrap();
        assert_eq!(signer.key_id(), verifier.key_id());
        let seal = signer.seal(100, 3, &[7; 32]);
        verifier.check_seal(&seal).unwrap();
        for tamper in [
            |s: &mut Seal| s.bytes += 1,
            |s: &mut Seal| s.lines -= 1,
            |s: &mut Seal| s.head = hex::encode([8u8; 32]),
        ] {
            let mut bad = seal.clone();
            tamper(&mut bad);
            assert!(verifier.check_seal(&bad).is_err());
        }
        let other = tempfile::tempdir().unwrap();
        let (_, other_pk) = key_files(other.path());
        let err = Verifier::open(&other_pk).unwrap().check_seal(&seal);
        assert!(err.unwrap_err().contains("not with the key given"));
    }

    #[test]
    fn a_file_signature_covers_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = key_files(dir.path());
        let signer = Signer::open(&sk, None).unwrap();
        let verifier = Verifier::open(&pk).unwrap();
        let file = dir.path().join("SHA256SUMS");
        signer.sign_file(&file, b"abc  x\n").unwrap();
        assert!(sig_path(&file).ends_with("SHA256SUMS.minisig"));
        verifier.check_file(&file, b"abc  x\n").unwrap();
        assert!(verifier.check_file(&file, b"abd  x\n").is_err());
        std::fs::remove_file(sig_path(&file)).unwrap();
        assert!(
            verifier
                .check_file(&file, b"abc  x\n")
                .unwrap_err()
                .contains("cannot be read")
        );
    }

    #[test]
    fn an_encrypted_key_needs_its_password_from_the_environment_variable() {
        let dir = tempfile::tempdir().unwrap();
        let minisign::KeyPair { sk, .. } =
            minisign::KeyPair::generate_encrypted_keypair(Some("pw".into())).unwrap();
        let path = dir.path().join("enc.key");
        std::fs::write(&path, sk.to_box(None).unwrap().to_string()).unwrap();
        assert!(matches!(
            Signer::open(&path, None),
            Err(KeyError::NeedsPassword { .. })
        ));
        assert!(matches!(
            Signer::open(&path, Some("wrong".into())),
            Err(KeyError::WrongPassword { .. })
        ));
        Signer::open(&path, Some("pw".into())).unwrap();
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused_with_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = key_files(dir.path());
        let e = Signer::open(&pk, None).unwrap_err().to_string();
        assert!(e.contains("is not a minisign secret key"), "{e}");
        let e = Verifier::open(&sk).unwrap_err().to_string();
        assert!(e.contains("give its .pub file"), "{e}");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hello\n").unwrap();
        assert!(Signer::open(&junk, None).is_err());
        assert!(Verifier::open(&junk).is_err());
        let e = Signer::open(&dir.path().join("none"), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read the key file"), "{e}");
        let e = format!("{:?}", Signer::open(&sk, None).unwrap());
        assert!(e.starts_with("Signer(") && e.len() < 30, "{e}");
    }
}
