//! Preflight: the local checks every file passes before any credit is spent: readable, not empty,
//! at most 5 MB, and a JPEG, PNG, WebP or TIFF by its magic bytes (never by its name). It also
//! hashes the full content (SHA-256), so every readable item has a content hash, refused or not.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::version::Version;

/// Didit's size limit for one image.
pub const MAX_BYTES: u64 = 5 * 1024 * 1024;

/// How many leading bytes the sniffer looks at.
pub const SNIFF_LEN: usize = 1024;

/// The formats Didit accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Tiff,
}

impl Format {
    /// The usual file extension, used to name the multipart upload.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
        }
    }

    /// The MIME type sent with the upload.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Tiff => "image/tiff",
        }
    }

    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Webp => "WebP",
            Format::Tiff => "TIFF",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A file that passed preflight: its content, ready to upload.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub bytes: Bytes,
    pub sha256: [u8; 32],
    pub format: Format,
    pub size: u64,
    /// The version of what was read (from the opened file's own metadata).
    pub version: Option<Version>,
    /// Face match: the reference image, read and checked the same way.
    pub reference: Option<Box<Prepared>>,
}

impl Prepared {
    /// What deduplicates this item: its image's SHA-256, or its pair's.
    pub fn content_sha256(&self) -> [u8; 32] {
        match &self.reference {
            Some(r) => crate::kit::digest::pair_sha256(&self.sha256, &r.sha256),
            None => self.sha256,
        }
    }

    /// Bytes held in memory for this item (both images of a pair).
    pub fn held(&self) -> u64 {
        (self.bytes.len() + self.reference.as_ref().map_or(0, |r| r.bytes.len())) as u64
    }
}

/// A selfie and its reference, each as read: the pair, or the refusal of the first that
/// failed. A reference's refusal names it (`the reference image NAME: ...`) and keeps what was
/// learnt of the selfie, so the record still holds the selfie's hash and size.
pub fn pair(
    user: Result<Prepared, Refusal>,
    reference: Result<Prepared, Refusal>,
    name: &str,
) -> Result<Prepared, Refusal> {
    let mut user = user?;
    let name = crate::messages::cut(name);
    // What was learnt of the selfie stays in the record; the reason names the reference.
    let refuse = |user: Prepared, reason: String, storage| Refusal {
        reason,
        sha256: Some(user.sha256),
        size: Some(user.size),
        detected: None,
        version: user.version,
        storage,
    };
    match reference {
        Ok(r) if r.sha256 == user.sha256 => {
            let why = format!(
                "the reference image {name} has the same content as the selfie: an image \
                 matched with itself proves nothing"
            );
            Err(refuse(user, why, None))
        }
        Ok(r) => {
            user.reference = Some(Box::new(r));
            Ok(user)
        }
        Err(r) => {
            let why = format!("the reference image {name}: {}", r.reason);
            Err(refuse(user, why, r.storage))
        }
    }
}

/// Why an object could not be read: the item is a `source_error` to rerun, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// The store kept failing (after its own retries), or the object changed while read.
    Failed,
    /// The store refused the credentials or the bucket: the run stops.
    Refused,
}

/// Why a file is not sent. `sha256` and `size` are set whenever the file could be read;
/// `detected` names what the content really is when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub sha256: Option<[u8; 32]>,
    pub size: Option<u64>,
    pub detected: Option<Box<str>>,
    /// Set whenever the file could be opened.
    pub version: Option<Version>,
    /// Set when object storage failed: not the input's fault.
    pub storage: Option<StorageFault>,
}

impl Refusal {
    pub fn unread(reason: String) -> Self {
        Refusal {
            reason,
            sha256: None,
            size: None,
            detected: None,
            version: None,
            storage: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

/// Lowercase hex of a SHA-256 digest.
pub fn hex(sha: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    hex::encode_to_slice(sha, &mut out).expect("64 digits for 32 bytes");
    String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
}

/// Read, hash and check one file. Blocking: call it from a blocking context, but it never
/// waits on anything but the disk: a FIFO, socket or device is refused without being read (and
/// without being opened when it is one before the open), and so are /proc and /sys files.
/// At most 5 MB + 1 byte is ever held in memory.
pub fn preflight(path: &Path) -> Result<Prepared, Refusal> {
    read_checked(path, false, None)
}

/// [`preflight`], the file read into a buffer of `buffers` (given back to it once the content
/// is dropped); `regular`: a folder walk found a regular file at `path` (see [`open_found`]).
pub fn preflight_with(
    path: &Path,
    regular: bool,
    buffers: &Arc<Buffers>,
) -> Result<Prepared, Refusal> {
    read_checked(path, regular, Some(buffers))
}

fn read_checked(
    path: &Path,
    regular: bool,
    buffers: Option<&Arc<Buffers>>,
) -> Result<Prepared, Refusal> {
    // Named only in a refusal: not worked out for every file read.
    let shown = || shown(path);
    let opened = if regular {
        open_found(path)
    } else {
        open_regular(path)
    };
    let (mut file, meta) = opened.map_err(|u| Refusal::unread(u.describe()))?;
    let declared = meta.len();
    let version = Version::of_file(&meta);

    // One byte more than declared: a file read whole ends with a read that finds nothing.
    let first = declared.saturating_add(1).min(MAX_BYTES + 1) as usize;
    let mut buf = match buffers {
        Some(b) => b.take(first),
        None => Vec::with_capacity(first),
    };
    let read_err = |e: io::Error| Refusal::unread(format!("cannot read {}: {e}", shown()));
    read_capped(&mut file, &mut buf, first, MAX_BYTES as usize + 1).map_err(read_err)?;
    if declared == 0 && !buf.is_empty() {
        // A real file that says it is empty has nothing to read; pseudo-files (procfs and the
        // like) say 0 and then produce data, possibly without end.
        return Err(Refusal::unread(format!(
            "not a regular file: it reports 0 bytes yet has content, like a /proc or /sys file: \
             {}",
            shown()
        )));
    }
    let mut hasher = Sha256::new();
    hasher.update(&buf);
    let mut size = buf.len() as u64;
    if size > MAX_BYTES {
        // Too big to send, but the hash is still recorded: stream the rest through the hasher
        // (a few KB at a time), never past the size the file had when it was opened.
        buf.truncate(SNIFF_LEN);
        let rest = declared.saturating_sub(size);
        size += io::copy(&mut (&mut file).take(rest), &mut hasher).map_err(read_err)?;
    }
    let sha256: [u8; 32] = hasher.finalize().into();
    // The file's version again, on the same open file: a file rewritten while it was read
    // would be a torn snapshot, never sent.
    if changed_while_read(version.as_ref(), &file) {
        return Err(Refusal {
            storage: Some(StorageFault::Failed),
            version,
            ..Refusal::unread(format!(
                "{} changed while it was read (its size or modification time moved); not \
                 sent: rerun to screen it as it is then",
                shown()
            ))
        });
    }
    let bytes = match buffers {
        Some(b) if size <= MAX_BYTES => b.hold(buf),
        _ => Bytes::from(buf),
    };
    verdict(bytes, sha256, size, version, "file")
}

/// Whether `file`'s version now differs from `before` (taken when it was opened). A file
/// without a version (no modification time) is compared by nothing.
fn changed_while_read(before: Option<&Version>, file: &File) -> bool {
    let Some(before) = before else { return false };
    match file.metadata() {
        Ok(now) => Version::of_file(&now).as_ref() != Some(before),
        Err(_) => true,
    }
}

/// Read `file` from where it is to its end, at most `limit` bytes, into `buf` (its content
/// replaced): first into room for `first` bytes, growing only when the file holds more. A file
/// of the size it declared takes two reads (its bytes, then its end), not one per doubling of a
/// buffer. The bytes go straight into the buffer's spare capacity: nothing is zeroed first.
fn read_capped(file: &mut File, buf: &mut Vec<u8>, first: usize, limit: usize) -> io::Result<()> {
    buf.clear();
    buf.reserve(first.min(limit));
    while buf.len() < limit {
        if buf.len() == buf.capacity() {
            let grown = (buf.len() * 2).clamp(8 << 10, limit);
            buf.reserve_exact(grown - buf.len());
        }
        let room = buf.capacity().min(limit) - buf.len();
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is valid for writes of `room` bytes (room <= spare.len()), and read(2)
        // writes at most that many.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
        match n {
            0 => break,
            n if n > 0 => {
                // SAFETY: read(2) initialized the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n as usize) };
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Image buffers used again: a file's buffer comes back here once every handle on its content
/// is dropped (uploaded, refused, reused by a duplicate), and the next file is read into it.
/// Reading into memory already mapped spares a page fault every 4 KiB of every image, and the
/// allocator a block of 100 KB or more per image. At most [`Buffers::KEEP`] bytes of buffers
/// wait here; the reader's own budget bounds those in use.
#[derive(Debug, Default)]
pub struct Buffers {
    free: Mutex<Free>,
}

#[derive(Debug, Default)]
struct Free {
    bufs: Vec<Vec<u8>>,
    /// Their capacities summed.
    bytes: usize,
}

impl Buffers {
    /// Bytes of free buffers kept, at most.
    pub const KEEP: usize = 8 << 20;

    /// A buffer of at least `capacity` bytes: the smallest free one that is large enough
    /// (holding what it held before, to be overwritten), else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let best = free
            .bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let buf = free.bufs.swap_remove(i);
                free.bytes -= buf.capacity();
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// `buf`'s content as [`Bytes`]; the buffer comes back here when the last handle drops.
    pub fn hold(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Held {
            buf,
            home: self.clone(),
        })
    }

    /// Keep `buf` for a later file, making room by letting the smallest free buffers go;
    /// one larger than [`Buffers::KEEP`] is let go itself.
    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() > Self::KEEP {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while free.bytes + buf.capacity() > Self::KEEP {
            let smallest = (0..free.bufs.len()).min_by_key(|&i| free.bufs[i].capacity());
            let Some(i) = smallest else { break };
            let gone = free.bufs.swap_remove(i);
            free.bytes -= gone.capacity();
        }
        free.bytes += buf.capacity();
        free.bufs.push(buf);
    }

    /// Bytes of free buffers kept.
    pub fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

/// A buffer lent out as [`Bytes`], given back to its [`Buffers`] when dropped.
struct Held {
    buf: Vec<u8>,
    home: Arc<Buffers>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.home.give(std::mem::take(&mut self.buf));
    }
}

/// Accept or refuse content by its size and magic bytes. `bytes` holds the content (or, when
/// `size` is over the limit, its first bytes); `what` names it in messages ("file", "object").
fn verdict(
    bytes: Bytes,
    sha256: [u8; 32],
    size: u64,
    version: Option<Version>,
    what: &str,
) -> Result<Prepared, Refusal> {
    let sniffed = classify(&bytes);
    let refuse = |reason: String| Refusal {
        reason,
        sha256: Some(sha256),
        size: Some(size),
        detected: (size > 0).then(|| sniffed.name().into()),
        version: version.clone(),
        storage: None,
    };
    if size == 0 {
        return Err(refuse(format!("empty {what} (0 bytes)")));
    }
    if size > MAX_BYTES {
        return Err(refuse(format!(
            "{} ({size} bytes) is over Didit's 5 MB limit",
            megabytes(size)
        )));
    }
    match sniffed {
        Sniffed::Accepted(format) => Ok(Prepared {
            bytes,
            sha256,
            format,
            size,
            version,
            reference: None,
        }),
        ref other => Err(refuse(unsupported_reason(other))),
    }
}

/// The checks of [`preflight`] on content already in memory (an object downloaded whole, at
/// most 5 MB): not empty, within the limit, and an accepted format by its magic bytes.
pub fn check_bytes(bytes: Bytes, version: Option<Version>) -> Result<Prepared, Refusal> {
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let size = bytes.len() as u64;
    verdict(bytes, sha256, size, version, "object")
}

/// The checks of [`check_bytes`] on an object's first bytes only (`head`, from a ranged GET
/// for a dry run), its `size` known from its listing or HEAD. Nothing is read to hash: the
/// `stand_in` digest takes the content's place (the dry run's estimate of identical objects).
pub fn check_head(
    head: Bytes,
    size: u64,
    stand_in: [u8; 32],
    version: Option<Version>,
) -> Result<Prepared, Refusal> {
    verdict(head, stand_in, size, version, "object")
}

/// A path as shown in messages: lossless for names that are not UTF-8, and cut when very long.
fn shown(path: &Path) -> String {
    crate::messages::cut(&super::escape_path(path))
}

/// Why a path cannot be read as a regular file.
#[derive(Debug)]
pub(crate) enum Unreadable {
    Open(String, io::Error),
    Folder(String),
    /// A FIFO, socket, device, ...: its kind.
    Special(String, &'static str),
    /// A file of a kernel pseudo-filesystem: which one.
    Pseudo(String, &'static str),
}

impl Unreadable {
    pub(crate) fn describe(&self) -> String {
        match self {
            Unreadable::Open(shown, e) => match e.kind() {
                io::ErrorKind::NotFound => format!("file not found: {shown}"),
                io::ErrorKind::PermissionDenied => format!("permission denied: {shown}"),
                _ => format!("cannot read {shown}: {e}"),
            },
            Unreadable::Folder(shown) => format!("is a folder, not a file: {shown}"),
            Unreadable::Special(shown, kind) => {
                format!("not a regular file: {kind}, never read: {shown}")
            }
            Unreadable::Pseudo(shown, fs) => {
                format!("not a regular file: a {fs} file, never read: {shown}")
            }
        }
    }
}

/// Open a regular file for reading, never blocking: the path is looked up first (a FIFO or
/// device found there is never opened), then opened with O_NONBLOCK (so one swapped in meanwhile
/// cannot hang the open) and the opened handle itself is checked (fstat, fstatfs), so what is
/// read is what was checked.
pub(crate) fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), Unreadable> {
    let before = std::fs::metadata(path).map_err(|e| Unreadable::Open(shown(path), e))?;
    check_kind(&before, path)?;
    open_found(path)
}

/// [`open_regular`] for a path a folder walk has just found to be a regular file (its
/// directory entry said so): it is opened without being looked up again; the opened handle is
/// checked all the same.
fn open_found(path: &Path) -> Result<(File, std::fs::Metadata), Unreadable> {
    let shown = || shown(path);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options
        .open(path)
        .map_err(|e| Unreadable::Open(shown(), e))?;
    let meta = file.metadata().map_err(|e| Unreadable::Open(shown(), e))?;
    check_kind(&meta, path)?;
    if !on_checked_device(&meta) {
        if let Some(fs) = pseudo_filesystem(&file) {
            return Err(Unreadable::Pseudo(shown(), fs));
        }
        remember_device(&meta);
    }
    Ok((file, meta))
}

thread_local! {
    /// The device of the last file found on an ordinary filesystem: files on the same device
    /// are on that filesystem too (/proc and /sys, bind-mounted or not, keep their own device
    /// numbers), so they need no statfs of their own.
    static CHECKED_DEVICE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

fn on_checked_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    CHECKED_DEVICE.with(|d| d.get() == Some(meta.dev()))
}

fn remember_device(meta: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    CHECKED_DEVICE.with(|d| d.set(Some(meta.dev())));
}

fn check_kind(meta: &std::fs::Metadata, path: &Path) -> Result<(), Unreadable> {
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(Unreadable::Folder(shown(path)));
    }
    if !ft.is_file() {
        return Err(Unreadable::Special(
            shown(path),
            crate::kit::kinds::file_kind(&ft),
        ));
    }
    Ok(())
}

/// The kernel pseudo-filesystem an opened file lives on (/proc, /sys), if any: their files
/// report odd sizes and some block or never end when read.
#[cfg(target_os = "linux")]
fn pseudo_filesystem(file: &File) -> Option<&'static str> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the descriptor is open for the duration of the call and `st` is a valid,
    // writable statfs buffer.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstatfs succeeded, so it filled the buffer.
    // The field's integer type differs between platforms.
    #[allow(clippy::unnecessary_cast)]
    let magic = unsafe { st.assume_init() }.f_type as i64;
    #[allow(clippy::unnecessary_cast)]
    match magic {
        m if m == libc::PROC_SUPER_MAGIC as i64 => Some("/proc"),
        m if m == libc::SYSFS_MAGIC as i64 => Some("/sys"),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn pseudo_filesystem(_: &File) -> Option<&'static str> {
    None
}

/// What the bytes are: `Ok` for a format Didit accepts, else `Err` naming what it really is
/// ("HEIC/HEIF", "PDF", "GIF", "text", "unknown binary", ...).
pub fn sniff(bytes: &[u8]) -> Result<Format, String> {
    match classify(bytes) {
        Sniffed::Accepted(format) => Ok(format),
        other => Err(other.name().to_string()),
    }
}

/// Whether a file's first bytes say "image" of any kind (accepted or not): used by the folder
/// walk to pick up images whatever their names. A text file never looks like an image.
pub fn looks_like_image(head: &[u8]) -> bool {
    matches!(
        classify(head),
        Sniffed::Accepted(_) | Sniffed::OtherImage(_)
    )
}

/// Sizes in the same unit as Didit's "5 MB" limit (MiB), one decimal.
pub fn megabytes(size: u64) -> String {
    format!("{:.1} MB", size as f64 / (1024.0 * 1024.0))
}

fn unsupported_reason(sniffed: &Sniffed) -> String {
    let what = sniffed.name();
    let hint = match sniffed {
        Sniffed::OtherImage(_) => "; convert it to JPEG or PNG first",
        _ => "",
    };
    format!("content is {what}, not JPEG, PNG, WebP or TIFF{hint}")
}

/// The sniffer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sniffed {
    Empty,
    Accepted(Format),
    /// An image format Didit does not take (HEIC, AVIF, GIF, BMP, ...).
    OtherImage(&'static str),
    /// Anything else, named.
    Other(String),
}

impl Sniffed {
    fn name(&self) -> &str {
        match self {
            Sniffed::Empty => "empty",
            Sniffed::Accepted(f) => f.name(),
            Sniffed::OtherImage(name) => name,
            Sniffed::Other(name) => name,
        }
    }
}

fn classify(bytes: &[u8]) -> Sniffed {
    let b = &bytes[..bytes.len().min(SNIFF_LEN)];
    if b.is_empty() {
        return Sniffed::Empty;
    }
    if let Some(format) = accepted(b) {
        return Sniffed::Accepted(format);
    }
    if let Some(name) = other_image(b) {
        return Sniffed::OtherImage(name);
    }
    if let Some(name) = known_binary(b) {
        return Sniffed::Other(name.to_string());
    }
    if let Some(name) = text(b) {
        return Sniffed::Other(name.to_string());
    }
    if let Some(kind) = infer::get(b) {
        let name = format!("{} ({})", kind.extension().to_uppercase(), kind.mime_type());
        return match kind.matcher_type() {
            // infer's looser image matchers (e.g. ICO's four bytes) still name an image.
            infer::MatcherType::Image => Sniffed::Other(format!("{name} image")),
            _ => Sniffed::Other(name),
        };
    }
    Sniffed::Other("unknown binary".to_string())
}

fn accepted(b: &[u8]) -> Option<Format> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Format::Jpeg);
    }
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        return Some(Format::Webp);
    }
    let tiff = b.starts_with(b"II*\0") || b.starts_with(b"MM\0*");
    if tiff && !is_cr2(b) {
        return Some(Format::Tiff);
    }
    None
}

fn is_cr2(b: &[u8]) -> bool {
    b.len() >= 10 && &b[8..10] == b"CR"
}

/// The ISO base media "ftyp" box: major brand and compatible brands.
fn ftyp(b: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    if b.len() < 12 || &b[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let end = box_len.clamp(12, b.len());
    let major = &b[8..12];
    let compatible = if end > 16 {
        b[16..end].chunks_exact(4).collect()
    } else {
        Vec::new()
    };
    Some((major, compatible))
}

fn other_image(b: &[u8]) -> Option<&'static str> {
    if let Some((major, compatible)) = ftyp(b) {
        let brands = || std::iter::once(major).chain(compatible.iter().copied());
        if brands().any(|x| x == b"avif" || x == b"avis") {
            return Some("AVIF");
        }
        const HEIF: [&[u8]; 11] = [
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
            b"msf1", b"mif2",
        ];
        if brands().any(|x| HEIF.contains(&x)) {
            return Some("HEIC/HEIF");
        }
        return None;
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some("GIF");
    }
    if is_bmp(b) {
        return Some("BMP");
    }
    if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        return Some("Canon raw (CR2)");
    }
    if b.starts_with(b"II+\0") || b.starts_with(b"MM\0+") {
        return Some("BigTIFF");
    }
    if b.starts_with(b"\0\0\0\x0CjP  \r\n\x87\n") || b.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Some("JPEG 2000");
    }
    if b.starts_with(&[0xFF, 0x0A]) || b.starts_with(b"\0\0\0\x0CJXL \r\n\x87\n") {
        return Some("JPEG XL");
    }
    if b.starts_with(b"8BPS") {
        return Some("Photoshop PSD");
    }
    None
}

/// BMP by its file header: "BM", zero reserved words, and a known DIB header size. Two bytes
/// alone would call any text starting with "BM" an image.
fn is_bmp(b: &[u8]) -> bool {
    if b.len() < 18 || !b.starts_with(b"BM") || b[6..10] != [0, 0, 0, 0] {
        return false;
    }
    let dib = u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
    matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

fn known_binary(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"%PDF-") {
        return Some("PDF");
    }
    if b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") || b.starts_with(b"PK\x07\x08")
    {
        return Some("ZIP");
    }
    None
}

/// Text: valid UTF-8 (or UTF-16 with a byte-order mark) without control characters.
/// SVG, XML and HTML are named as such.
fn text(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xFF, 0xFE]) || b.starts_with(&[0xFE, 0xFF]) {
        return Some("text (UTF-16)");
    }
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let s = match std::str::from_utf8(b) {
        Ok(s) => s,
        // A multi-byte character cut at the end of the sniffed prefix is still text.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
            std::str::from_utf8(&b[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0C'))
    {
        return None;
    }
    let start = s.trim_start().to_ascii_lowercase();
    if start.contains("<svg") || start.starts_with("<?xml") {
        return Some("SVG/XML");
    }
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        return Some("HTML");
    }
    Some("text")
}

#[cfg(test)]
mod tests;
