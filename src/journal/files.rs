//! The out dir's own files: created owner-only, never opened through a symbolic link someone
//! planted, written atomically (no `*.tmp` left behind, even when the disk is full), and the
//! one-runner lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{JournalError, LOCK_FILE};
use crate::kit::{self, open::open_no_link};

/// Create `dir` (owner-only) if needed.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A warning when an existing out dir can be written by other users (they could replace or
/// plant files in it), `None` when it is private enough.
pub fn out_dir_warning(dir: &Path) -> Option<String> {
    let mode = std::fs::metadata(dir).ok()?.permissions().mode();
    (mode & 0o022 != 0).then(|| {
        format!(
            "the out dir {} can be written by other users (mode {:o}); they could plant or \
             replace files in it: `chmod go-w` it, or choose a private --out",
            dir.display(),
            mode & 0o7777
        )
    })
}

/// Open (creating) a file readable and writable by its owner only, never through a symbolic
/// link and only if it is a regular file; existing files are narrowed to owner-only too.
pub fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).mode(0o600).append(append);
    let f = open_no_link(path, &mut opts)?;
    if !append {
        f.set_len(0)?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// The SHA-256 state of the first `len` bytes of the file at `path` (a journal's lines that a
/// run leaves as they are), to be finished by [`finish_file_hash`] once the run appended its
/// own: the whole file's SHA-256 without reading that part again at the end.
pub fn hash_prefix(path: &Path, len: u64) -> Result<sha2::Sha256, JournalError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let file = open_read(path)?;
    let n = io::copy(&mut io::Read::take(file, len), &mut hasher)
        .map_err(JournalError::io("read", path))?;
    if n != len {
        return Err(JournalError::io("read", path)(
            io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(hasher)
}

/// The SHA-256 of the file at `path`, from `prefix` (the state [`hash_prefix`] gave for its
/// first `len` bytes) and the bytes after them.
pub fn finish_file_hash(
    path: &Path,
    mut prefix: sha2::Sha256,
    len: u64,
) -> Result<[u8; 32], JournalError> {
    use io::Seek;
    use sha2::Digest;
    let mut file = open_read(path)?;
    file.seek(io::SeekFrom::Start(len))
        .and_then(|_| io::copy(&mut file, &mut prefix))
        .map_err(JournalError::io("read", path))?;
    Ok(prefix.finalize().into())
}

/// Open a file of the out dir for reading, never through a symbolic link.
pub(super) fn open_read(path: &Path) -> Result<File, JournalError> {
    kit::open::open_read(path).map_err(JournalError::io("open", path))
}

/// Write a whole file owner-only, atomically (temporary file + rename), so a crash never
/// leaves a half-written output behind; on any failure (a full disk) the temporary file is
/// removed and the previous version of the file stays as it was.
pub fn write_private_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("out")
    ));
    let written = (|| {
        let f = open_private(&tmp, false)?;
        let mut w = io::BufWriter::new(f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // Never leave a partial temporary file (a planted link is removed, not followed).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The one-runner lock on an out dir: an OS advisory lock, released by the OS if the process dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600);
        let mut file = open_no_link(&path, &mut opts)
            .map_err(JournalError::io("open the lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = Read::by_ref(&mut file).take(64).read_to_string(&mut holder);
                let holder: String = holder.trim().chars().filter(char::is_ascii_digit).collect();
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                    lock: path.clone(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(", held by process {holder}")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(JournalError::io("lock", &path)(e));
            }
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(JournalError::io("write the lock file", &path))?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
