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

/// The SHA-256 that stands for a pair of images (face match's selfie and reference): what
/// deduplicates pairs, so the same two contents are sent once, and a selfie reused with
/// another reference is another pair.
pub fn pair_sha256(user: &[u8; 32], reference: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"liveness-batch pair\0");
    h.update(user);
    h.update(reference);
    h.finalize().into()
}

/// [`content_digest`] of an item's content: one image's hex SHA-256, or a pair's (the
/// reference's given) through [`pair_sha256`].
pub fn item_content_digest(sha256_hex: &str, ref_sha256_hex: Option<&str>) -> Option<u128> {
    let Some(reference) = ref_sha256_hex else {
        return content_digest(sha256_hex);
    };
    let (mut user, mut refd) = ([0u8; 32], [0u8; 32]);
    hex::decode_to_slice(sha256_hex.get(..64)?, &mut user).ok()?;
    hex::decode_to_slice(reference.get(..64)?, &mut refd).ok()?;
    Some(content_digest_of(&pair_sha256(&user, &refd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_another_content_than_either_image_and_depends_on_the_order() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (ha, hb) = (hex::encode(a), hex::encode(b));
        let pair = item_content_digest(&ha, Some(&hb)).unwrap();
        assert_eq!(pair, content_digest_of(&pair_sha256(&a, &b)));
        assert_ne!(pair, content_digest_of(&a));
        assert_ne!(pair, content_digest_of(&b));
        assert_ne!(pair, item_content_digest(&hb, Some(&ha)).unwrap());
        assert_eq!(item_content_digest(&ha, None), Some(content_digest_of(&a)));
        assert_eq!(item_content_digest(&ha, Some("zz")), None);
        assert_eq!(item_content_digest(&ha[..40], Some(&hb)), None);
    }
}
