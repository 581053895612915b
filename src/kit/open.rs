//! Opening a file safely: never through a symbolic link someone planted, never blocking on a
//! FIFO or a device swapped in, and only ever a regular file behind the handle.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open `path` with `opts` plus `O_NOFOLLOW | O_NONBLOCK`, and refuse anything but a regular
/// file behind the opened handle (a folder, a FIFO, a device); a planted link is named as such.
pub fn open_no_link(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    let file = opts
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // `O_NOFOLLOW` answers ELOOP for a link.
            Some(libc::ELOOP) => io::Error::other(format!(
                "{} is a symbolic link; the out dir's files are never opened through links \
                 (someone may have planted it): remove it, or choose another --out",
                path.display()
            )),
            _ => e,
        })?;
    let ft = file.metadata()?.file_type();
    if ft.is_file() {
        return Ok(file);
    }
    Err(io::Error::other(format!(
        "{} is not a regular file ({}): remove it, or choose another --out",
        path.display(),
        super::kinds::file_kind(&ft)
    )))
}

/// [`open_no_link`] for reading.
pub fn open_read(path: &Path) -> io::Result<File> {
    open_no_link(path, OpenOptions::new().read(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_folders_and_fifos_are_refused_regular_files_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, "x").unwrap();
        assert!(open_read(&file).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = open_read(&link).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        let e = open_read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_read(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert_eq!(
            open_read(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
