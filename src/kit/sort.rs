//! Sorting fixed-size entries whatever their number: in memory up to a budget, beyond it as
//! sorted runs spilled to unnamed temporary files in the out dir and merged back, so building
//! the outputs keeps a bounded memory footprint for journals of any length.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Memory one sorter may hold before it spills a sorted run to disk.
pub const BUDGET: usize = 2 << 20;

/// Buffer of each run read back during the merge, at most.
const RUN_BUFFER: usize = 64 << 10;

/// Buffer of each run read back during the merge, at least.
const MIN_RUN_BUFFER: usize = 4 << 10;

/// An entry with a fixed-size byte form, so runs on disk need no framing.
pub trait Entry: Copy + Ord {
    const SIZE: usize;
    fn put(&self, out: &mut [u8]);
    fn get(bytes: &[u8]) -> Self;
}

impl Entry for u64 {
    const SIZE: usize = 8;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    }
}

impl Entry for (u64, u64) {
    const SIZE: usize = 16;
    fn put(&self, out: &mut [u8]) {
        self.0.put(&mut out[..8]);
        self.1.put(&mut out[8..]);
    }
    fn get(bytes: &[u8]) -> Self {
        (u64::get(&bytes[..8]), u64::get(&bytes[8..]))
    }
}

impl Entry for (u64, u64, u64, u64) {
    const SIZE: usize = 32;
    fn put(&self, out: &mut [u8]) {
        self.0.put(&mut out[..8]);
        self.1.put(&mut out[8..16]);
        self.2.put(&mut out[16..24]);
        self.3.put(&mut out[24..]);
    }
    fn get(bytes: &[u8]) -> Self {
        (
            u64::get(&bytes[..8]),
            u64::get(&bytes[8..16]),
            u64::get(&bytes[16..24]),
            u64::get(&bytes[24..]),
        )
    }
}

impl Entry for (u128, u64, u64) {
    const SIZE: usize = 32;
    fn put(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.0.to_le_bytes());
        self.1.put(&mut out[16..24]);
        self.2.put(&mut out[24..]);
    }
    fn get(bytes: &[u8]) -> Self {
        (
            u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes")),
            u64::get(&bytes[16..24]),
            u64::get(&bytes[24..]),
        )
    }
}

impl Entry for [u8; 32] {
    const SIZE: usize = 32;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    fn get(bytes: &[u8]) -> Self {
        bytes.try_into().expect("32 bytes")
    }
}

/// Collects entries and hands them back in ascending order.
pub struct Sorter<T: Entry> {
    dir: PathBuf,
    buf: Vec<T>,
    cap: usize,
    runs: Vec<File>,
}

impl<T: Entry> Sorter<T> {
    /// A sorter holding at most `budget` bytes of entries in memory; runs beyond that go to
    /// unnamed temporary files in `dir`.
    pub fn new(dir: &Path, budget: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            buf: Vec::new(),
            cap: (budget / std::mem::size_of::<T>().max(1)).max(16),
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, entry: T) -> io::Result<()> {
        if self.buf.len() == self.buf.capacity() {
            // Grow without ever holding more than the budget (doubling would overshoot it)
            // (the buffer is below the budget here: it spills as soon as it reaches it).
            let room = self.cap - self.buf.len();
            self.buf.reserve_exact(self.buf.len().max(1024).min(room));
        }
        self.buf.push(entry);
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        Ok(())
    }

    /// Write the buffer as one sorted run.
    fn spill(&mut self) -> io::Result<()> {
        self.buf.sort_unstable();
        let file = temp_file(&self.dir)?;
        let mut w = BufWriter::with_capacity(RUN_BUFFER, file);
        let mut bytes = vec![0u8; T::SIZE];
        for e in &self.buf {
            e.put(&mut bytes);
            w.write_all(&bytes)?;
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        self.buf.clear();
        Ok(())
    }

    /// Every entry pushed, in ascending order.
    pub fn finish(mut self) -> io::Result<Sorted<T>> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return Ok(Sorted::Memory(self.buf.into_iter()));
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        drop(std::mem::take(&mut self.buf));
        // The runs' buffers together hold no more than the budget (a sorter fed a long input
        // on a small budget spills many runs).
        let per_run = (self.cap * T::SIZE / self.runs.len()).clamp(MIN_RUN_BUFFER, RUN_BUFFER);
        let mut merge = Merge {
            runs: self
                .runs
                .into_iter()
                .map(|f| BufReader::with_capacity(per_run, f))
                .collect(),
            heap: BinaryHeap::new(),
            bytes: vec![0u8; T::SIZE],
        };
        for i in 0..merge.runs.len() {
            merge.refill(i)?;
        }
        Ok(Sorted::Merge(merge))
    }
}

/// Sorted entries, from memory or merged from runs on disk.
pub enum Sorted<T: Entry> {
    Memory(std::vec::IntoIter<T>),
    Merge(Merge<T>),
}

/// A k-way merge of sorted runs.
pub struct Merge<T: Entry> {
    runs: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(T, usize)>>,
    bytes: Vec<u8>,
}

impl<T: Entry> Merge<T> {
    /// Put run `i`'s next entry on the heap, if it has one.
    fn refill(&mut self, i: usize) -> io::Result<()> {
        match self.runs[i].read_exact(&mut self.bytes) {
            Ok(()) => {
                self.heap.push(Reverse((T::get(&self.bytes), i)));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl<T: Entry> Iterator for Sorted<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::Memory(it) => it.next().map(Ok),
            Sorted::Merge(m) => {
                let Reverse((entry, i)) = m.heap.pop()?;
                Some(m.refill(i).map(|()| entry))
            }
        }
    }
}

/// A temporary file in `dir` that no one else can open and that disappears when closed (or when
/// the process dies): an unnamed `O_TMPFILE`, or where the file system lacks those, a private
/// file removed at once.
pub(crate) fn temp_file(dir: &Path) -> io::Result<File> {
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    if let Ok(f) = unnamed {
        return Ok(f);
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        ".liveness-batch-sort.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create_new(true).mode(0o600);
    let f = super::open::open_no_link(&path, &mut opts)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<T: Entry + std::fmt::Debug>(s: Sorter<T>) -> Vec<T> {
        s.finish().unwrap().collect::<io::Result<_>>().unwrap()
    }

    #[test]
    fn small_inputs_sort_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::<u64>::new(dir.path(), BUDGET);
        for x in [5u64, 1, 4, 1, 3] {
            s.push(x).unwrap();
        }
        assert!(s.runs.is_empty());
        assert_eq!(sorted(s), [1, 1, 3, 4, 5]);
        assert!(sorted(Sorter::<u64>::new(dir.path(), BUDGET)).is_empty());
    }

    #[test]
    fn large_inputs_spill_and_merge_without_leaving_files() {
        let dir = tempfile::tempdir().unwrap();
        // 32-byte entries, 16 per run at this budget: 1000 entries make 63 runs.
        let mut s = Sorter::<(u128, u64, u64)>::new(dir.path(), 16 * 48);
        let mut expected = Vec::new();
        let mut x = 12345u64;
        for i in 0..1000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let e = (u128::from(x % 97) << 70 | u128::from(x), i, x >> 3);
            expected.push(e);
            s.push(e).unwrap();
        }
        assert!(s.runs.len() > 10, "{} runs", s.runs.len());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        expected.sort();
        assert_eq!(sorted(s), expected);

        let mut s = Sorter::<(u64, u64)>::new(dir.path(), 16 * 16);
        for i in (0..100u64).rev() {
            s.push((i % 7, i)).unwrap();
        }
        let out = sorted(s);
        assert_eq!(out.len(), 100);
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_buffer_never_outgrows_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::<u64>::new(dir.path(), 8 * 5000);
        for i in 0..4999u64 {
            s.push(i).unwrap();
            assert!(s.buf.capacity() <= 5000, "{}", s.buf.capacity());
        }
    }
}
