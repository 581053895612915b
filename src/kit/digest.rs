//! Compact digests of keys and contents: the first 16 bytes of a SHA-256 as a number.

use sha2::{Digest, Sha256};

/// A compact, fixed-size digest of an item key, for indexes that must stay small.
pub fn key_digest(key: &str) -> u128 {
    content_digest_of(&Sha256::digest(key.as_bytes()).into())
}

/// The first 16 bytes of a SHA-256 as a number, for compact content indexes.
pub fn content_digest_of(sha256: &[u8; 32]) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&sha256[..16]);
    u128::from_le_bytes(first)
}

/// The first 16 bytes of a hex SHA-256 as a number, for compact content indexes.
pub fn content_digest(sha256_hex: &str) -> Option<u128> {
    let mut first = [0u8; 16];
    hex::decode_to_slice(sha256_hex.get(..32)?, &mut first).ok()?;
    Some(u128::from_le_bytes(first))
}
