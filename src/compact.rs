//! A compact map for per-key state at millions of keys, keyed by digests: a sorted vector of
//! fixed-size entries (no per-entry overhead) found through a table of where each range of the
//! digest's top bits starts (so a lookup touches two or three cache lines, not the twenty of a
//! binary search), plus a small hash map of recent inserts that is merged into the vector in
//! place once it fills. A million `(u64, u64)` entries take 16 MB and a table of at most 1 MB, where a
//! `HashMap` of the same entries takes 32 to 36 MB at its usual load.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Recent inserts held in the hash map before they are merged into the sorted vector, at
/// least: large enough that merges are rare, small enough to be cheap.
const RECENT_MAX: usize = 16 * 1024;

/// The recent inserts may grow to this fraction of the sorted entries before a merge, so the
/// merges (each moves the whole vector once) cost a constant number of moves per entry in all,
/// not one per entry per merge.
const RECENT_SHARE: usize = 8;

/// And never beyond this many (about 3 MB of hash map for 16-byte values).
const RECENT_CAP: usize = 64 * 1024;

/// Entries per range of the start table, on average.
const PER_RANGE: usize = 4;

/// A key that is a digest: its top bits are spread evenly, so ranges of them split the sorted
/// entries into ranges of about equal size.
pub trait Digest: Ord + Hash + Copy {
    /// The top 64 bits.
    fn top(self) -> u64;
}

impl Digest for u64 {
    fn top(self) -> u64 {
        self
    }
}

impl Digest for u128 {
    fn top(self) -> u64 {
        (self >> 64) as u64
    }
}

#[derive(Debug, Clone)]
pub struct CompactMap<K, V> {
    sorted: Vec<(K, V)>,
    /// `starts[r]` is the index in `sorted` of the first key whose top `bits` bits are `r`
    /// (one more entry at the end: `sorted.len()`).
    starts: Vec<u32>,
    bits: u32,
    /// Keys never in `sorted`.
    recent: HashMap<K, V, BuildHasherDefault<DigestHasher>>,
}

/// The hash of a digest is its own bits: keys are digests already, so hashing them again (as
/// the default hasher does, to resist chosen keys) would only cost time.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by u64 and u128 keys; folds anything else in.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(b))
                .rotate_left(29)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n >> 64) as u64 ^ n as u64;
    }
}

impl<K, V> Default for CompactMap<K, V> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            starts: vec![0, 0],
            bits: 0,
            recent: HashMap::default(),
        }
    }
}

impl<K: Digest, V: Copy> CompactMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if let Some(v) = self.recent.get(key) {
            return Some(*v);
        }
        self.find(key).ok().map(|i| self.sorted[i].1)
    }

    /// Where `key` is in `sorted` (or would be).
    fn find(&self, key: &K) -> Result<usize, usize> {
        let range = self.range_of(*key);
        let (lo, hi) = (self.starts[range] as usize, self.starts[range + 1] as usize);
        self.sorted[lo..hi]
            .binary_search_by(|e| e.0.cmp(key))
            .map(|i| lo + i)
            .map_err(|i| lo + i)
    }

    fn range_of(&self, key: K) -> usize {
        if self.bits == 0 {
            0
        } else {
            (key.top() >> (64 - self.bits)) as usize
        }
    }

    /// Rebuild the start table for the current entries.
    fn index_ranges(&mut self) {
        let wanted = (self.sorted.len() / PER_RANGE).max(1);
        self.bits = (usize::BITS - wanted.leading_zeros() - 1).min(30);
        let ranges = 1usize << self.bits;
        self.starts.clear();
        self.starts.reserve_exact(ranges + 1);
        let mut i = 0usize;
        for range in 0..ranges {
            while i < self.sorted.len() && self.range_of(self.sorted[i].0) < range {
                i += 1;
            }
            self.starts.push(i as u32);
        }
        self.starts.push(self.sorted.len() as u32);
    }

    /// Insert unless present; returns the value already there (left unchanged).
    pub fn insert_new(&mut self, key: K, value: V) -> Option<V> {
        if let Some(v) = self.get(&key) {
            return Some(v);
        }
        self.recent.insert(key, value);
        self.merge_if_full();
        None
    }

    /// Insert or replace; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Ok(i) = self.find(&key) {
            return Some(std::mem::replace(&mut self.sorted[i].1, value));
        }
        let old = self.recent.insert(key, value);
        self.merge_if_full();
        old
    }

    /// Distinct keys.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.sorted
            .iter()
            .copied()
            .chain(self.recent.iter().map(|(k, v)| (*k, *v)))
    }

    fn merge_if_full(&mut self) {
        let limit = (self.sorted.len() / RECENT_SHARE).clamp(RECENT_MAX, RECENT_CAP);
        if self.recent.len() >= limit {
            self.merge();
        }
    }

    /// Every entry in key order (recent inserts merged first).
    pub fn sorted(&mut self) -> &[(K, V)] {
        if !self.recent.is_empty() {
            self.merge();
        }
        &self.sorted
    }

    /// A map of entries already sorted by key with no key twice; `None` when they are not.
    pub fn from_sorted(sorted: Vec<(K, V)>) -> Option<Self> {
        if !sorted.windows(2).all(|w| w[0].0 < w[1].0) || sorted.len() > u32::MAX as usize {
            return None;
        }
        let mut map = Self {
            sorted,
            ..Self::default()
        };
        map.index_ranges();
        Some(map)
    }

    /// Move the recent inserts into the sorted vector, merging from the back so no second
    /// copy of the vector is ever made.
    fn merge(&mut self) {
        let mut fresh: Vec<(K, V)> = self.recent.drain().collect();
        fresh.sort_unstable_by_key(|e| e.0);
        let (n, m) = (self.sorted.len(), fresh.len());
        // Placeholders, overwritten below. The vector's spare capacity is never written, so it
        // costs address space, not memory.
        self.sorted.extend_from_slice(&fresh);
        let (mut i, mut j, mut w) = (n, m, n + m);
        while j > 0 {
            w -= 1;
            if i > 0 && self.sorted[i - 1].0 > fresh[j - 1].0 {
                self.sorted[w] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[w] = fresh[j - 1];
                j -= 1;
            }
        }
        self.index_ranges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_hash_map_across_merges() {
        let mut map = CompactMap::new();
        let mut model = HashMap::new();
        // A fixed pseudo-random sequence with repeats, long enough for several merges.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..(RECENT_MAX as u64 * 5 + 17) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % (RECENT_MAX as u64 * 3);
            assert_eq!(
                map.insert(key, step),
                model.insert(key, step),
                "step {step}"
            );
        }
        assert_eq!(map.len(), model.len());
        for (k, v) in &model {
            assert_eq!(map.get(k), Some(*v));
        }
        assert_eq!(map.get(&u64::MAX), None);
        let mut all: Vec<_> = map.iter().collect();
        all.sort_unstable();
        let mut expected: Vec<_> = model.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
        assert!(map.sorted.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn keys_spread_over_the_whole_range_are_all_found() {
        // Keys with their top bits set and clear, as digests have, through several merges.
        let mut map = CompactMap::new();
        // (Counting from 1: the multiple of 0 is 0, listed below.)
        let keys: Vec<u64> = (1..RECENT_MAX as u64 * 3)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .chain([0, u64::MAX, 1 << 63, (1 << 63) - 1])
            .collect();
        for (i, k) in keys.iter().enumerate() {
            map.insert(*k, i);
        }
        assert!(map.bits > 0);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(k), Some(i), "key {k:#x}");
        }
        assert_eq!(map.get(&12345), None);
        // insert_new keeps what is there.
        assert_eq!(map.insert_new(u64::MAX, 7), map.get(&u64::MAX));
        assert_eq!(map.insert_new(12345, 7), None);
        assert_eq!(map.get(&12345), Some(7));
    }

    #[test]
    fn sorted_entries_rebuild_the_same_map_and_unsorted_ones_are_refused() {
        let mut map = CompactMap::new();
        for k in 0..(RECENT_MAX as u64 + 500) {
            map.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), k);
        }
        let sorted = map.sorted().to_vec();
        assert_eq!(sorted.len(), RECENT_MAX + 500);
        let copy = CompactMap::from_sorted(sorted.clone()).unwrap();
        for (k, v) in &sorted {
            assert_eq!(copy.get(k), Some(*v));
        }
        assert_eq!(copy.len(), sorted.len());
        let mut swapped = sorted.clone();
        swapped.swap(3, 4);
        assert!(CompactMap::from_sorted(swapped).is_none());
        let mut twice = sorted;
        twice[5].0 = twice[4].0;
        assert!(CompactMap::from_sorted(twice).is_none());
        assert!(
            CompactMap::<u64, u64>::from_sorted(Vec::new())
                .unwrap()
                .len()
                == 0
        );
    }

    #[test]
    fn a_replaced_value_stays_replaced_after_a_merge() {
        let mut map = CompactMap::new();
        map.insert(7u128, 1u64);
        map.insert(7, 2);
        for k in 100..100 + RECENT_MAX as u128 - 1 {
            map.insert(k, 0);
        }
        assert!(map.recent.is_empty(), "merged");
        assert_eq!(map.insert(7, 3), Some(2));
        assert_eq!(map.get(&7), Some(3));
        assert_eq!(map.len(), RECENT_MAX);
        assert!(map.get(&8).is_none());
    }
}
