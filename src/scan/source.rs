//! The source stage: every source walked on a blocking thread, each item keyed uniquely in the
//! run and quick-checked against the journal (an item an earlier run finished at the same
//! version is passed on without being opened), the others preflighted (read, sniffed, hashed)
//! ahead of the dispatcher, in input order: files on the checking thread, within a budget of
//! bytes read ahead; objects on the runtime, a few at a time.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use std::sync::mpsc::SyncSender;

use super::Stop;
use super::dispatch::{Dispatcher, Facts};
use crate::config::ScanConfig;
use crate::input::bucket::StorageOptions;
use crate::input::preflight::{self, Buffers, Prepared, Refusal};
use crate::input::version::Version;
use crate::input::{self, Event, Item};
use crate::journal::{self, Index};
use crate::messages;

/// Files preflighted (read and hashed) at once, ahead of the dispatcher.
const PREFLIGHT_AHEAD: usize = 4;

/// Items sent from the walking thread at once.
const BATCH: usize = 64;

/// Bytes of files read ahead of the dispatcher, at most (plus the file that crosses it).
const READ_AHEAD_BYTES: u64 = 8 << 20;

/// A batch of read files is passed on once it holds this many bytes.
const BATCH_BYTES: u64 = 2 << 20;

/// What the source stage found for one item.
pub enum Checked {
    /// An earlier run finished the item at this version: not opened.
    Current,
    /// Read and checked (or refused without being read).
    Read(Result<Prepared, Refusal>),
}

/// An item after the quick check and preflight.
pub struct Ready {
    pub item: Item,
    /// The digest of the item's key ([`journal::key_digest`]).
    pub key: u128,
    pub checked: Checked,
}

impl Ready {
    /// An item as read: its version becomes that of what was read.
    fn read(mut item: Item, key: u128, checked: Result<Prepared, Refusal>) -> Self {
        item.version = match &checked {
            Ok(p) => p.version.clone(),
            Err(r) => r.version.clone(),
        };
        if let Some(r) = &mut item.reference {
            r.version = match &checked {
                Ok(p) => p.reference.as_ref().and_then(|p| p.version.clone()),
                Err(_) => None,
            };
        }
        Ready {
            item,
            key,
            checked: Checked::Read(checked),
        }
    }

    /// The SHA-256 of what was read, if anything was.
    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match &self.checked {
            Checked::Read(Ok(p)) => Some(&p.sha256),
            Checked::Read(Err(r)) => r.sha256.as_ref(),
            Checked::Current => None,
        }
    }

    /// The SHA-256 of the reference read with it (face match), if it was.
    pub fn ref_sha256(&self) -> Option<&[u8; 32]> {
        match &self.checked {
            Checked::Read(Ok(p)) => p.reference.as_ref().map(|r| &r.sha256),
            _ => None,
        }
    }

    /// The digest of what was read: the image's, or the pair's.
    pub fn content(&self) -> Option<u128> {
        match &self.checked {
            Checked::Read(Ok(p)) => Some(journal::content_digest_of(&p.content_sha256())),
            _ => self.sha256().map(journal::content_digest_of),
        }
    }

    /// What the dispatch state machine is told of this item.
    pub fn facts(&self) -> Facts {
        Facts {
            key: self.key,
            content: self.content(),
            refused: matches!(self.checked, Checked::Read(Err(_))),
            current: matches!(self.checked, Checked::Current),
        }
    }
}

/// What the source stage yields.
pub enum Ev {
    Ready(Box<Ready>),
    Ignored {
        path: String,
        reason: String,
    },
    Warning(String),
    /// A source that could not be read to its end: the run's population is incomplete.
    Incomplete(journal::IncompleteSource),
}

/// How the source stage decides what it needs to read.
#[derive(Clone)]
pub struct QuickCheck {
    pub index: Arc<Index>,
    pub retry_failed: bool,
    /// `--checksum`: read every item, whatever its version.
    pub checksum: bool,
    /// How objects named in manifests are looked up.
    pub storage: input::bucket::StorageOptions,
}

/// The dispatch state machine and the quick check over one index, as the run and the dry run
/// both build them.
pub fn gate<T>(cfg: &ScanConfig, index: Index) -> (Dispatcher<T>, QuickCheck) {
    let index = Arc::new(index);
    let quick = QuickCheck {
        index: index.clone(),
        retry_failed: cfg.retry_failed,
        checksum: cfg.checksum,
        storage: cfg.source_options.storage.clone(),
    };
    (Dispatcher::new(index, cfg.dedupe, cfg.retry_failed), quick)
}

impl QuickCheck {
    /// Look `item` up in the journal: a key an earlier run finished is stat'ed (never opened),
    /// and passed on as current when its version is the one recorded.
    fn look(&self, item: &mut Item, key: u128) -> bool {
        if item.problem.is_some() {
            return false;
        }
        let Some(recorded) = self.index.latest(key) else {
            return false;
        };
        item.version = self.version(&item.path, item.version.take());
        if let Some(r) = &mut item.reference {
            r.version = self.version(&r.path, r.version.take());
        }
        !self.checksum
            && item.version_text().is_some_and(|v| {
                recorded.is_current(journal::version_digest(&v), self.retry_failed)
            })
    }

    /// The version of the file or object at `path`, without reading it: a listed object's
    /// came with the listing (`listed`); another object's costs a HEAD; a file's, a `stat`.
    fn version(&self, path: &std::path::Path, listed: Option<Version>) -> Option<Version> {
        match input::bucket::uri_of(path) {
            Some(uri) => listed.or_else(|| {
                tokio::runtime::Handle::try_current()
                    .ok()
                    .and_then(|h| h.block_on(input::bucket::head_version(&uri, &self.storage)))
            }),
            None => std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| Version::of_file(&m)),
        }
    }
}

/// An item on its way from the walking thread.
struct Found {
    item: Item,
    key: u128,
    current: bool,
    /// A file read on the checking thread (objects and bad rows are read on the runtime).
    read: Option<Result<Prepared, Refusal>>,
}

impl Found {
    /// Bytes held for the item's content.
    fn held(&self) -> u64 {
        match &self.read {
            Some(Ok(p)) => p.held(),
            _ => 0,
        }
    }
}

/// The bytes of files read ahead and not yet taken by the dispatcher: the checking thread
/// waits while they exceed [`READ_AHEAD_BYTES`], so memory stays bounded whatever the sizes.
#[derive(Default)]
struct ReadAhead {
    held: std::sync::atomic::AtomicU64,
    lock: std::sync::Mutex<()>,
    taken: std::sync::Condvar,
}

impl ReadAhead {
    fn add(&self, n: u64) {
        self.held.fetch_add(n, std::sync::atomic::Ordering::AcqRel);
    }

    /// The dispatcher took `n` bytes: wake the reader if that brings it under the budget.
    fn take(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.held.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
        if before > READ_AHEAD_BYTES && before - n <= READ_AHEAD_BYTES {
            // Under the lock, so the wake cannot fall between the reader's check and its wait.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.taken.notify_one();
        }
    }

    /// Wait while over the budget; `false` when `gone` says nobody will take anything more.
    fn wait_under(&self, gone: impl Fn() -> bool) -> bool {
        let over = || self.held.load(std::sync::atomic::Ordering::Acquire) > READ_AHEAD_BYTES;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while over() {
            if gone() {
                return false;
            }
            guard = self
                .taken
                .wait_timeout(guard, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

enum Walked {
    Item(Box<Found>),
    Ignored { path: String, reason: String },
    Warning(String),
    Incomplete(journal::IncompleteSource),
}

/// Read one item's file on a blocking thread, or its object from its store (a bad manifest row
/// is not read at all). The item's version becomes that of what was read.
/// `sniff_only` (a dry run): an object is read only as far as its format check needs.
pub async fn read(
    item: Item,
    key: u128,
    storage: &input::bucket::StorageOptions,
    sniff_only: bool,
) -> Ready {
    if item.problem.is_some() {
        return Ready {
            item,
            key,
            checked: Checked::Read(Err(Refusal::unread(String::new()))),
        };
    }
    let mut checked = read_one(&item.path, item.version.as_ref(), storage, sniff_only).await;
    if let Some(r) = &item.reference
        && checked.is_ok()
    {
        let reference = read_one(&r.path, r.version.as_ref(), storage, sniff_only).await;
        checked = preflight::pair(checked, reference, &r.display);
    }
    Ready::read(item, key, checked)
}

/// Read and check one image: a file on a blocking thread, an object from its store (`listed`:
/// its version as listed, which what is read must match).
async fn read_one(
    path: &std::path::Path,
    listed: Option<&Version>,
    storage: &input::bucket::StorageOptions,
    sniff_only: bool,
) -> Result<Prepared, Refusal> {
    match input::bucket::uri_of(path) {
        Some(uri) => input::bucket::read(&uri, listed, storage, sniff_only).await,
        None => {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || preflight::preflight(&path))
                .await
                .unwrap_or_else(|e| Err(Refusal::unread(format!("reading the file failed: {e}"))))
        }
    }
}

/// The plan's events, items quick-checked and preflighted a few at a time, in input order.
/// Once the run is stopped, items pass through unread (to be counted as not processed).
/// Two threads in a pipeline: one walks and keys the items ([`Walker`]), the other
/// quick-checks them (a journal lookup and a `stat` each) and reads files ([`Checker`]), so a
/// resume's pass over a million finished rows takes the longer of the two, not their sum.
pub fn preflighted(
    cfg: &ScanConfig,
    mut plan: input::Plan,
    stop: Stop,
    quick: QuickCheck,
) -> impl futures::Stream<Item = Ev> + Unpin + use<> {
    let (tx, rx) = mpsc::channel::<Vec<Walked>>(8);
    let (walked_tx, walked_rx) = std::sync::mpsc::sync_channel::<Vec<Walked>>(8);
    let walker = Walker::new(cfg, &mut plan);
    let checker = Checker::new(quick, &stop, walker.batch_len);
    let taker = checker.ahead.clone();
    // Bucket listings block on this runtime, page by page, from the walking thread; a
    // manifest's object URIs are looked up (HEAD) on it from the checking thread.
    let runtime = tokio::runtime::Handle::current();
    let (walker_stop, checker_stop) = (stop.clone(), stop.clone());
    std::thread::spawn(move || {
        let _runtime = runtime.enter();
        // Owned here, not by the stage: it closes only once a panic is recorded.
        let walked_tx = walked_tx;
        super::guarded("walker", &walker_stop, || {
            walker.run(plan.stream(), &walked_tx)
        });
    });
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _runtime = runtime.enter();
        let tx = tx;
        super::guarded("checking thread", &checker_stop, || {
            checker.run(walked_rx, &tx)
        });
    });
    let (storage, sniff_only) = (cfg.source_options.storage.clone(), cfg.dry_run);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .flat_map(futures::stream::iter);
    Box::pin(
        stream
            .map(move |ev| {
                if let Walked::Item(found) = &ev {
                    taker.take(found.held());
                }
                settle(ev, stop.clone(), storage.clone(), sniff_only)
            })
            .buffered(PREFLIGHT_AHEAD),
    )
}

/// A walked event as the dispatcher takes it: an item not yet read (an object, a bad row, or
/// any item once the run stopped) is read here, on the runtime.
async fn settle(ev: Walked, stop: Stop, storage: StorageOptions, sniff_only: bool) -> Ev {
    let found = match ev {
        Walked::Ignored { path, reason } => return Ev::Ignored { path, reason },
        Walked::Warning(w) => return Ev::Warning(w),
        Walked::Incomplete(i) => return Ev::Incomplete(i),
        Walked::Item(found) => *found,
    };
    let Found {
        item,
        key,
        current,
        read: was_read,
    } = found;
    let ready = if current {
        Ready {
            item,
            key,
            checked: Checked::Current,
        }
    } else if let Some(checked) = was_read {
        Ready::read(item, key, checked)
    } else if stop.is_stopped() {
        let unread = Refusal::unread("not read: the run stopped".into());
        Ready::read(item, key, Err(unread))
    } else {
        let ready = read(item, key, &storage, sniff_only).await;
        refused_by_storage(&ready, &stop);
        ready
    };
    Ev::Ready(Box::new(ready))
}

/// The walking stage: the plan's events in order, each item keyed uniquely in the run and
/// another shard's left out, passed on in batches.
struct Walker {
    keys: RunKeys,
    shard: Option<crate::shard::Shard>,
    /// `--ref-dir`: this shard's items paired with their references (another shard's never
    /// looked up).
    pairing: Option<input::pair::RefDir>,
    /// Items cross to the pipeline in batches (one wake-up each, not one per item), except
    /// from standard input, whose rows may trickle in and must not wait for a batch to fill.
    batch_len: usize,
}

impl Walker {
    fn new(cfg: &ScanConfig, plan: &mut input::Plan) -> Self {
        let stdin = cfg.sources.iter().any(|s| s.as_os_str() == "-");
        Walker {
            keys: RunKeys {
                off: plan.unique_keys,
                ..RunKeys::default()
            },
            shard: cfg.shard.as_ref().map(|p| p.shard),
            pairing: plan.take_pairing(),
            batch_len: if stdin { 1 } else { BATCH },
        }
    }

    /// One event as the checking stage takes it; `None` for another shard's.
    fn walked(&mut self, ev: Event) -> Option<Walked> {
        let mine = |key: u128| self.shard.is_none_or(|s| s.holds(key));
        Some(match ev {
            Event::Item(mut item) => {
                // Paired by the key its source gave it, not the one a clash renames it to.
                let listed = self.pairing.is_some().then(|| item.key.clone());
                self.keys.make_unique(&mut item);
                let key = journal::key_digest(&item.key);
                if !mine(key) {
                    return None; // another shard's item: not statted, not read
                }
                if let (Some(refs), Some(listed)) = (&mut self.pairing, listed) {
                    refs.pair(&mut item, &listed);
                }
                Walked::Item(Box::new(Found {
                    item,
                    key,
                    current: false,
                    read: None,
                }))
            }
            // Listed by the shard its path hashes to.
            Event::Ignored { path, .. } if !mine(journal::key_digest(&path)) => return None,
            Event::Ignored { path, reason } => Walked::Ignored { path, reason },
            Event::Warning(w) => Walked::Warning(w),
            Event::Incomplete {
                source,
                last_key,
                reason,
            } => Walked::Incomplete(journal::IncompleteSource {
                source,
                last_key,
                reason,
            }),
        })
    }

    fn run(mut self, events: impl Iterator<Item = Event>, tx: &SyncSender<Vec<Walked>>) {
        let mut batch = Vec::with_capacity(self.batch_len);
        for ev in events {
            batch.extend(self.walked(ev));
            if batch.len() >= self.batch_len
                && tx
                    .send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(self.batch_len),
                    ))
                    .is_err()
            {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
    }
}

/// The checking stage: each walked item looked up in the journal (passed on unread when
/// current) and, when it is a file, read here within the read-ahead budget.
struct Checker {
    quick: QuickCheck,
    stop: Stop,
    ahead: Arc<ReadAhead>,
    /// The files' buffers, used again once their content is uploaded or dropped.
    buffers: Arc<Buffers>,
    batch_len: usize,
}

impl Checker {
    fn new(quick: QuickCheck, stop: &Stop, batch_len: usize) -> Self {
        Checker {
            quick,
            stop: stop.clone(),
            ahead: Arc::default(),
            buffers: Arc::default(),
            batch_len,
        }
    }

    /// Check one item: current, or read here (a file); the bytes it now holds.
    fn check(&self, found: &mut Found) -> u64 {
        found.current = !self.stop.is_stopped() && self.quick.look(&mut found.item, found.key);
        if found.current || self.stop.is_stopped() {
            return 0;
        }
        // Objects and bad rows are left to the runtime, and so is a pair with an object in it.
        let item = &found.item;
        let object = |p: &std::path::Path| input::bucket::uri_of(p).is_some();
        if item.problem.is_some()
            || object(&item.path)
            || item.reference.as_ref().is_some_and(|r| object(&r.path))
        {
            return 0;
        }
        let mut read = preflight::preflight_with(&item.path, item.regular, &self.buffers);
        if let Some(r) = &item.reference
            && read.is_ok()
        {
            let reference = preflight::preflight_with(&r.path, false, &self.buffers);
            read = preflight::pair(read, reference, &r.display);
        }
        found.read = Some(read);
        let held = found.held();
        self.ahead.add(held);
        held
    }

    fn run(self, walked: std::sync::mpsc::Receiver<Vec<Walked>>, tx: &mpsc::Sender<Vec<Walked>>) {
        let mut out = Vec::with_capacity(self.batch_len);
        let mut out_bytes = 0;
        // Pass on what is ready, then wait for room in the read-ahead budget.
        let flush = |out: &mut Vec<Walked>, out_bytes: &mut u64| {
            if !out.is_empty() && tx.blocking_send(std::mem::take(out)).is_err() {
                return false;
            }
            *out_bytes = 0;
            self.ahead.wait_under(|| tx.is_closed())
        };
        for batch in walked {
            for mut walked in batch {
                if let Walked::Item(found) = &mut walked {
                    out_bytes += self.check(found);
                }
                out.push(walked);
                if (out.len() >= self.batch_len || out_bytes >= BATCH_BYTES)
                    && !flush(&mut out, &mut out_bytes)
                {
                    return;
                }
            }
            // The end of what the walker had ready: pass it on rather than wait for more.
            if !flush(&mut out, &mut out_bytes) {
                return;
            }
        }
    }
}

/// A store that refused the credentials or the bucket while reading an object stops the run
/// (exit 7): nothing more is sent.
fn refused_by_storage(ready: &Ready, stop: &Stop) {
    if let Checked::Read(Err(r)) = &ready.checked
        && r.storage == Some(preflight::StorageFault::Refused)
        && !stop.is_stopped()
    {
        stop.fail(super::ScanError::StorageRefused(r.reason.clone()));
    }
}

/// Keys seen in this run, as compact digests, so no two items of one run share a key: a
/// second item with a key already used (the same relative path in two sources, or a lossless
/// escape that happens to spell another file's name) is keyed `KEY [SOURCE]`, then `KEY [SOURCE
/// #n]`, and a warning names both.
#[derive(Default)]
pub struct RunKeys {
    // 8 bytes of the key digest each: a false match (about 1 in 10^13 per pair) only renames a
    // key, never merges two items.
    seen: crate::compact::CompactMap<u64, ()>,
    /// Off for a single manifest, which renames its repeated ids itself. A single folder
    /// keys its items uniquely too, except for one case: a name that is not UTF-8, written
    /// losslessly, can spell another file's valid name.
    off: bool,
}

impl RunKeys {
    pub fn make_unique(&mut self, item: &mut Item) {
        if self.off {
            return;
        }
        if self
            .seen
            .insert(journal::key_digest(&item.key) as u64, ())
            .is_none()
        {
            return;
        }
        let mut n = 1;
        let renamed = loop {
            let candidate = if n == 1 {
                format!("{} [{}]", item.key, item.source)
            } else {
                format!("{} [{} #{n}]", item.key, item.source)
            };
            if self
                .seen
                .insert(journal::key_digest(&candidate) as u64, ())
                .is_none()
            {
                break candidate;
            }
            n += 1;
        };
        messages::warn(&format!(
            "the key {:?} is used by more than one item; this one ({}) is keyed {:?}",
            messages::cut(&item.key),
            messages::cut(&item.display_path),
            messages::cut(&renamed)
        ));
        item.key = renamed;
    }
}

#[cfg(test)]
mod tests;
