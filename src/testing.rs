//! Helpers shared by the unit tests of several modules.

/// `count` short byte strings over `alphabet`, each shorter than `lengths` bytes: pseudo-random
/// (xorshift from a fixed seed), the same on every run. For properties that must hold on any
/// bytes (escaping, parsing), with an alphabet of the bytes that matter.
pub fn byte_strings(alphabet: &[u8], lengths: usize, count: usize) -> Vec<Vec<u8>> {
    // Byte i takes 5 bits from bit 8 + 5i: 11 bytes fit in the 64 bits of one step.
    assert!(lengths <= 12 && alphabet.len() <= 32);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % lengths as u64) as usize;
            (0..len)
                .map(|i| alphabet[((state >> (8 + 5 * i)) % alphabet.len() as u64) as usize])
                .collect()
        })
        .collect()
}
