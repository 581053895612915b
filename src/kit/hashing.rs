//! SHA-256 of what passes through a reader or a writer, and of a whole file.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// A reader or writer that hashes what passes through it.
pub struct Hashing<T> {
    pub inner: T,
    pub hasher: Sha256,
    /// Bytes passed through it.
    pub pos: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            pos: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 (hex) of the regular file at `path`, never read through a link.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = super::open::open_read(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_hash_and_count_what_passed() {
        let mut w = Hashing::new(Vec::new());
        w.write_all(b"abc").unwrap();
        assert_eq!(w.pos, 3);
        let mut r = Hashing::new(&b"abc"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.hasher.finalize(), w.hasher.clone().finalize());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        assert_eq!(
            file_sha256(&dir.path().join("f")).unwrap(),
            hex::encode(w.hasher.finalize())
        );
    }
}
