//! Watching a child from outside: which image files it opens and reads (inotify on the image
//! folders, so journal and manifest reads are not counted), and which output files it rewrites
//! (modification time, size and inode of each, before and after).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use serde_json::{Value, json};

/// What a child did to the files of the watched folders.
#[derive(Clone, Copy, Default)]
pub struct OpenCounts {
    /// Files opened (`IN_OPEN`, folders excluded).
    pub opened: u64,
    /// Reads that returned data (`IN_ACCESS`).
    pub read: u64,
    /// The kernel's event queue overflowed: the counts are lower bounds.
    pub overflowed: bool,
}

impl OpenCounts {
    /// `opened` as a figure, marked when it is only a lower bound.
    pub fn opened_text(&self) -> String {
        if self.overflowed {
            format!("at least {} (event queue overflowed)", self.opened)
        } else {
            self.opened.to_string()
        }
    }

    pub fn json(&self) -> Value {
        json!({ "opened": self.opened, "read": self.read, "overflowed": self.overflowed })
    }
}

/// An inotify watch on some folders, read by its own thread until [`OpenWatch::finish`].
pub struct OpenWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<OpenCounts>,
}

impl OpenWatch {
    /// Count opens and reads of the files directly inside `dirs` (not recursive).
    pub fn start(dirs: &[&Path]) -> Result<Self, String> {
        // SAFETY: no pointers; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(format!(
                "inotify_init1: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for dir in dirs {
            let c = CString::new(dir.as_os_str().as_bytes())
                .map_err(|_| format!("{} holds a NUL byte", dir.display()))?;
            // SAFETY: a valid descriptor and a NUL-terminated path.
            let wd = unsafe {
                libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS)
            };
            if wd < 0 {
                return Err(format!(
                    "inotify_add_watch {}: {}",
                    dir.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || count_events(&fd, &flag));
        Ok(Self { stop, thread })
    }

    /// Stop watching once every queued event is read; the counts.
    pub fn finish(self) -> OpenCounts {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or(OpenCounts {
            overflowed: true,
            ..OpenCounts::default()
        })
    }
}

/// Read events until `stop` is set and the queue is empty.
fn count_events(fd: &OwnedFd, stop: &AtomicBool) -> OpenCounts {
    let mut counts = OpenCounts::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // Read `stop` before draining, so events queued before it was set are all counted.
        let stopping = stop.load(Ordering::SeqCst);
        loop {
            // SAFETY: a valid descriptor and a buffer of the given length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            tally(&buf[..n as usize], &mut counts);
        }
        if stopping {
            return counts;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
    }
}

/// Count the events of one `read` of an inotify descriptor.
fn tally(mut bytes: &[u8], counts: &mut OpenCounts) {
    // struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[]; }
    const HEADER: usize = 16;
    while bytes.len() >= HEADER {
        let word =
            |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (mask, len) = (word(4), word(12) as usize);
        if mask & libc::IN_Q_OVERFLOW != 0 {
            counts.overflowed = true;
        }
        if mask & libc::IN_ISDIR == 0 {
            if mask & libc::IN_OPEN != 0 {
                counts.opened += 1;
            }
            if mask & libc::IN_ACCESS != 0 {
                counts.read += 1;
            }
        }
        bytes = bytes.get(HEADER + len..).unwrap_or(&[]);
    }
}

/// Modification time (ns), size and inode of each output file of an out dir: every regular file
/// but the journal and hidden files (the lock).
pub struct Outputs(BTreeMap<String, (i128, u64, u64)>);

impl Outputs {
    pub fn snapshot(out: &Path) -> Result<Self, String> {
        let mut files = BTreeMap::new();
        let entries = std::fs::read_dir(out).map_err(|e| format!("read {}: {e}", out.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read {}: {e}", out.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with("journal") {
                continue;
            }
            let m = entry.metadata().map_err(|e| format!("stat {name}: {e}"))?;
            if !m.is_file() {
                continue;
            }
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            files.insert(name, (mtime, m.len(), m.ino()));
        }
        Ok(Self(files))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Files written, replaced, added or removed since `before`.
    pub fn changed_since(&self, before: &Outputs) -> Vec<String> {
        let mut names: Vec<String> = before
            .0
            .iter()
            .filter(|(name, was)| self.0.get(*name) != Some(*was))
            .map(|(name, _)| name.clone())
            .collect();
        names.extend(
            self.0
                .keys()
                .filter(|name| !before.0.contains_key(*name))
                .map(|name| format!("{name} (new)")),
        );
        names
    }
}
