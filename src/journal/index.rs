//! The compact indexes a resume and the outputs need, built by streaming the journal once:
//! the latest record per key (with its version, so a resume can skip an unchanged item without
//! reading it; kept on disk, see [`super::keys`]), reusable answers by content, and requests
//! that a run which died may have sent without recording their answer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::keys::{KeyBuilder, KeyIndex, KeyState, UNKNOWN_PENDING, class_code, short};
use super::{JournalError, Line, LineKind, Reader, Settings, item_content_digest, key_digest};
use crate::compact::CompactMap;
use crate::record::Class;

/// The digest of a version's text as the index keeps it (56 bits, never 0).
pub fn version_digest(version: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d: [u8; 32] = Sha256::digest(version.as_bytes()).into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(first) & !0xff).max(0x100)
}

/// The compact index of a journal a resume needs: each key's latest record (its class, version
/// and content digests: 24 bytes a key, on disk, up to a byte a key in memory), and the first
/// reusable answer per content (24 bytes a distinct image, in memory). Keys and versions are
/// compared as 64-bit digests: two keys whose digests collide would also need the same version
/// or content to be mistaken for each other.
#[derive(Debug, Default)]
pub struct Index {
    pub(super) by_key: KeyIndex,
    /// Content digest -> offset (upper 56 bits) and class code of a result (or rejection) that
    /// identical images can reuse; a result is preferred over a rejection. See [`Index::reusable`].
    pub(super) by_content: CompactMap<u128, u64>,
    /// The settings of the latest run header.
    pub settings: Option<Settings>,
    /// The shard of the latest run header (`None`: not sharded).
    pub shard: Option<crate::shard::ShardHeader>,
    /// True when the run headers do not all name the same shard and split (or some none).
    pub shard_changed: bool,
    pub runs: u64,
    pub records: u64,
    /// Uploads a run announced (a `sending` line) but never recorded because that run died
    /// (no end line): each may have been processed and billed. A key appears once per dead run
    /// that announced it.
    pub orphans: Vec<Orphan>,
}

/// An item a dead run may have sent without recording the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub key: String,
    /// Byte offset of the `sending` line.
    pub offset: u64,
}

/// The fields of a journal line that the index needs, borrowed from the line where they can
/// be (a text with an escape is copied); the rest is skipped without allocating.
#[derive(Deserialize)]
struct LightLine<'a> {
    #[serde(rename = "type")]
    kind: LineKind,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ref_sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    class: Option<Class>,
    #[serde(borrow)]
    error_field: Option<Cow<'a, str>>,
    #[serde(borrow)]
    duplicate_of: Option<Cow<'a, str>>,
    settings: Option<Settings>,
    shard: Option<crate::shard::ShardHeader>,
    #[serde(default)]
    unknown_pending: bool,
}

impl<'a> LightLine<'a> {
    /// The fields of `line` the index needs, as the journal's parse would give them.
    fn of(line: &'a Line) -> Self {
        let mut light = LightLine {
            kind: line.kind(),
            key: None,
            sha256: None,
            ref_sha256: None,
            version: None,
            class: None,
            error_field: None,
            duplicate_of: None,
            settings: None,
            shard: None,
            unknown_pending: false,
        };
        match line {
            Line::Run(run) => {
                light.settings = Some(run.settings.clone());
                light.shard = run.shard.clone();
            }
            Line::Item(r) => {
                light.key = Some(Cow::Borrowed(&r.key));
                light.sha256 = r.sha256.as_deref().map(Cow::Borrowed);
                light.ref_sha256 = r.ref_sha256.as_deref().map(Cow::Borrowed);
                light.version = r.version.as_deref().map(Cow::Borrowed);
                light.class = r.class;
                light.error_field = r.error_field.as_deref().map(Cow::Borrowed);
                light.duplicate_of = r.duplicate_of.as_deref().map(Cow::Borrowed);
                light.unknown_pending = r.unknown_pending;
            }
            Line::Sending(s) => light.key = Some(Cow::Borrowed(&s.key)),
            Line::Unchanged(u) => {
                light.key = Some(Cow::Borrowed(&u.key));
                light.version = Some(Cow::Borrowed(&u.version));
                light.sha256 = Some(Cow::Borrowed(&u.sha256));
                light.ref_sha256 = u.ref_sha256.as_deref().map(Cow::Borrowed);
            }
            Line::Gone(g) => light.key = Some(Cow::Borrowed(&g.key)),
            Line::End(_) | Line::Seal(_) => {}
        }
        light
    }

    /// The digest of the line's content: its image's, or its pair's.
    fn content(&self) -> Option<u128> {
        item_content_digest(self.sha256.as_deref()?, self.ref_sha256.as_deref())
    }

    /// What makes this line unusable for an index, if anything.
    fn defect(&self) -> Option<&'static str> {
        match self.kind {
            LineKind::Item if self.key.is_none() || self.class.is_none() => {
                Some("an item line without key or class")
            }
            LineKind::Sending if self.key.is_none() => Some("a sending line without key"),
            LineKind::Gone if self.key.is_none() => Some("a gone line without key"),
            LineKind::Unchanged
                if self.key.is_none() || self.version.is_none() || self.sha256.is_none() =>
            {
                Some("an unchanged line without key, version or sha256")
            }
            LineKind::Run
            | LineKind::End
            | LineKind::Seal
            | LineKind::Item
            | LineKind::Sending
            | LineKind::Unchanged
            | LineKind::Gone => None,
        }
    }
}

/// Stream a journal's lines as the light fields indexes need, checking that it is a journal
/// (its first line a run header; `from_start` is false for a reader opened past the header).
fn for_each_light(
    reader: &mut Reader,
    from_start: bool,
    mut f: impl FnMut(u64, LightLine) -> Result<(), &'static str>,
) -> Result<(), JournalError> {
    let mut first = from_start;
    while let Some(next) = reader.next_raw() {
        let (offset, raw) = next?;
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let light: LightLine = match serde_json::from_slice(raw) {
            Ok(l) => l,
            Err(e) => return Err(reader.corrupt(e.to_string())),
        };
        if first && light.kind != LineKind::Run {
            return Err(JournalError::NotAJournal {
                path: reader.path().to_path_buf(),
            });
        }
        first = false;
        if let Some(defect) = light.defect() {
            return Err(reader.corrupt(defect));
        }
        f(offset, light).map_err(|m| reader.corrupt(m))?;
    }
    Ok(())
}

/// An [`Index`] being built line by line, with what the build needs besides it: uploads the
/// current run segment announced and has not recorded yet, and those of runs that died.
pub(super) struct Builder {
    pub(super) index: Index,
    /// The latest record per key, on top of the index's (taken from it).
    keys: KeyBuilder,
    /// Where the key index's sort spills (the journal's folder).
    dir: PathBuf,
    /// A failure of that sort, which stopped the read.
    failed: Option<std::io::Error>,
    announced: HashMap<u128, Orphan>,
    dead: Vec<Orphan>,
    /// The offset of the last line read.
    pub(super) last: Option<u64>,
}

impl Builder {
    /// A new index; its key index's temporary files go to `dir`.
    pub(super) fn new(dir: &Path) -> Self {
        Self::resume(Index::default(), dir)
    }

    /// A new index built while its journal is written: its key index's sort holds at most
    /// `budget` bytes before it spills to `dir`.
    pub(super) fn with_budget(dir: &Path, budget: usize) -> Self {
        let mut builder = Self::new(dir);
        builder.keys = KeyBuilder::with_budget(KeyIndex::default(), dir, budget);
        builder
    }

    /// Take one line in (`first`: the journal's first); `false` when it cannot be (the line
    /// is not what a journal's index can be built from, or the sort failed).
    pub(super) fn take(&mut self, offset: u64, line: &Line, first: bool) -> bool {
        let light = LightLine::of(line);
        if light.defect().is_some() || (first && light.kind != LineKind::Run) {
            return false;
        }
        self.line(offset, light).is_ok() && self.failed.is_none()
    }

    /// Go on from a finished index (its orphans are the dead runs' uploads so far).
    pub(super) fn resume(mut index: Index, dir: &Path) -> Self {
        let dead = std::mem::take(&mut index.orphans);
        let keys = KeyBuilder::new(std::mem::take(&mut index.by_key), dir);
        Self {
            index,
            keys,
            dir: dir.to_path_buf(),
            failed: None,
            announced: HashMap::new(),
            dead,
            last: None,
        }
    }

    /// The folder the temporary files of a journal's index go to: the journal's own (the out
    /// dir), else (a folder this process cannot write, such as a shard's mounted read-only)
    /// the system's temporary folder.
    pub(super) fn dir_of(journal: &Path) -> PathBuf {
        let dir = match journal.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        match crate::kit::sort::temp_file(dir) {
            Ok(_) => dir.to_path_buf(),
            Err(_) => std::env::temp_dir(),
        }
    }

    fn sort_failed(&self, e: std::io::Error) -> JournalError {
        JournalError::io("sort the resume index in", &self.dir)(e)
    }

    /// Whether no upload is announced and unrecorded: the index is complete as it stands
    /// (true after a run's end line).
    pub(super) fn settled(&self) -> bool {
        self.announced.is_empty()
    }

    /// Stream `reader`'s lines into the index.
    pub(super) fn read(
        &mut self,
        reader: &mut Reader,
        from_start: bool,
    ) -> Result<(), JournalError> {
        let read = for_each_light(reader, from_start, |offset, light| self.line(offset, light));
        match self.failed.take() {
            Some(e) => Err(self.sort_failed(e)),
            None => read,
        }
    }

    fn line(&mut self, offset: u64, light: LightLine) -> Result<(), &'static str> {
        self.last = Some(offset);
        let index = &mut self.index;
        match light.kind {
            LineKind::Run => {
                // A run header after a segment without an end line: that run died.
                self.dead.extend(self.announced.drain().map(|(_, o)| o));
                index.runs += 1;
                index.settings = light.settings;
                // Another split, not a resume with a grown input (its fingerprint changes).
                let split = |h: &Option<crate::shard::ShardHeader>| {
                    h.as_ref().map(|h| (h.shard(), h.algorithm.clone()))
                };
                if index.runs > 1 && split(&index.shard) != split(&light.shard) {
                    index.shard_changed = true;
                }
                index.shard = light.shard;
            }
            LineKind::End => self.announced.clear(),
            LineKind::Seal => {}
            LineKind::Sending => {
                let key = light.key.unwrap_or_default().into_owned();
                self.announced
                    .insert(key_digest(&key), Orphan { key, offset });
            }
            LineKind::Unchanged => {
                if let Err(e) = unchanged(&mut self.keys, &light) {
                    self.failed = Some(e);
                    return Err("the index could not be sorted");
                }
            }
            LineKind::Gone => {
                let key = light.key.as_deref().unwrap_or_default();
                if let Err(e) = self.keys.gone(key_digest(key) as u64) {
                    self.failed = Some(e);
                    return Err("the index could not be sorted");
                }
            }
            LineKind::Item => {
                index.records += 1;
                let (Some(key), Some(class)) = (light.key.as_deref(), light.class) else {
                    return Err("an item line without key or class");
                };
                let digest = key_digest(key);
                self.announced.remove(&digest);
                // A later record of a dead run's item carries that run's possible charge.
                if !self.dead.is_empty() {
                    self.dead.retain(|o| o.key != key);
                }
                let content = light.content();
                let mut state = key_state(light.version.as_deref(), content, class);
                if light.unknown_pending {
                    state.version_class |= UNKNOWN_PENDING;
                }
                if let Err(e) = self.keys.record(digest as u64, state) {
                    self.failed = Some(e);
                    return Err("the index could not be sorted");
                }
                if let Some(c) = content
                    && light.duplicate_of.is_none()
                    && reusable_record(class, light.error_field.as_deref(), false)
                {
                    index.offer(c, offset, class);
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Index, JournalError> {
        self.index.by_key = match self.keys.finish() {
            Ok(keys) => keys,
            Err(e) => {
                return Err(JournalError::io("sort the resume index in", &self.dir)(e));
            }
        };
        self.dead.extend(self.announced.into_values());
        self.dead.sort_by_key(|o| o.offset);
        self.index.orphans = self.dead;
        Ok(self.index)
    }
}

/// What the index keeps of a record.
fn key_state(version: Option<&str>, content: Option<u128>, class: Class) -> KeyState {
    KeyState {
        version_class: version.map_or(0, version_digest) | class_code(class),
        content: content.map_or(0, short),
    }
}

/// An `unchanged` line: the key's record stands for its new version, when it is still about the
/// same content (decided when the key index is merged).
fn unchanged(keys: &mut KeyBuilder, light: &LightLine) -> std::io::Result<()> {
    let (Some(key), Some(version), Some(content)) = (
        light.key.as_deref(),
        light.version.as_deref(),
        light.content(),
    ) else {
        return Ok(());
    };
    keys.unchanged(
        key_digest(key) as u64,
        version_digest(version),
        short(content),
    )
}

impl Index {
    /// Build the index by streaming the journal once (the key index's temporary files go to
    /// the journal's folder).
    pub fn build(reader: &mut Reader) -> Result<Self, JournalError> {
        let mut builder = Builder::new(&Builder::dir_of(reader.path()));
        builder.read(reader, true)?;
        builder.finish()
    }

    /// An answer identical images may reuse; a result replaces a rejection.
    fn offer(&mut self, content: u128, offset: u64, class: Class) {
        let packed = (offset << 8) | class_code(class);
        match self.by_content.get(&content) {
            None => {
                self.by_content.insert(content, packed);
            }
            Some(old)
                if Class::ALL[(old & 0xff) as usize] == Class::Rejected
                    && class == Class::Result =>
            {
                self.by_content.insert(content, packed);
            }
            Some(_) => {}
        }
    }

    /// The offset of an earlier answer for this content that an identical image may reuse: a
    /// result, or a rejection unless `retry_failed` asks for rejected images to be sent again.
    pub fn reusable(&self, content: u128, retry_failed: bool) -> Option<u64> {
        self.by_content
            .get(&content)
            .filter(|packed| Class::ALL[(packed & 0xff) as usize] == Class::Result || !retry_failed)
            .map(|packed| packed >> 8)
    }

    /// Whether `key` is finished with this content (so a resumed run skips it).
    pub fn is_done(&self, key: &str, content: Option<u128>, retry_failed: bool) -> bool {
        self.is_done_digest(key_digest(key), content, retry_failed)
    }

    /// [`Index::is_done`] for a key's digest.
    pub fn is_done_digest(&self, key: u128, content: Option<u128>, retry_failed: bool) -> bool {
        self.by_key.get(key as u64).is_some_and(|s| {
            s.content == content.map_or(0, short) && s.class().is_done(retry_failed)
        })
    }

    /// What the journal knows of `key`'s latest record.
    pub fn latest(&self, key: u128) -> Option<KeyState> {
        self.by_key.get(key as u64)
    }

    /// The version digest of `key`'s latest record, when it has one.
    pub fn version_of(&self, key: u128) -> Option<u64> {
        self.by_key
            .get(key as u64)
            .map(KeyState::version)
            .filter(|v| *v != 0)
    }

    /// The class of `key`'s latest record.
    pub fn class_of(&self, key: u128) -> Option<Class> {
        self.by_key.get(key as u64).map(KeyState::class)
    }

    /// Keys whose latest record has no result.
    pub fn without_result(&self) -> usize {
        self.by_key.without_result() as usize
    }

    /// `Err` once a lookup could not read the index file (kept in `dir`, the out dir): since
    /// then a lookup may have answered "not recorded" wrongly, so nothing decided from one may
    /// be acted on.
    pub fn readable(&self, dir: &Path) -> Result<(), JournalError> {
        match self.by_key.read_error() {
            None => Ok(()),
            Some(e) => Err(JournalError::io("read the resume index in", dir)(e)),
        }
    }

    /// Distinct keys recorded.
    pub fn keys(&self) -> usize {
        self.by_key.len() as usize
    }

    /// Each distinct key's 64-bit digest and latest state, in order (read from the key index's
    /// file).
    pub fn for_each_key(&self, f: impl FnMut(u64, KeyState)) -> std::io::Result<()> {
        self.by_key.for_each(f)
    }

    /// Whether `key`'s latest record, about this content, ended with a send of unknown outcome
    /// that nothing has repeated yet.
    pub fn unknown_pending(&self, key: u128, content: Option<u128>) -> bool {
        self.by_key
            .get(key as u64)
            .is_some_and(|s| s.unknown_pending() && s.same_content(content))
    }

    /// Each distinct key's 64-bit digest, in order (read from the key index's file).
    pub fn for_each_key_digest(&self, mut f: impl FnMut(u64)) -> std::io::Result<()> {
        self.by_key.for_each(|k, _| f(k))
    }

    /// The content digest of each distinct image answered with a result (not a follower's
    /// reused answer), for counting identical images screened in more than one shard.
    pub fn result_contents(&self) -> impl Iterator<Item = u128> + '_ {
        let result = class_code(Class::Result);
        self.by_content
            .iter()
            .filter(move |(_, packed)| packed & 0xff == result)
            .map(|(content, _)| content)
    }
}

/// Which record is each key's latest, as a sorted vector of (key digest, offset): 24 bytes a
/// key, in memory (the outputs sort theirs in bounded memory instead, see `report::latest`).
#[derive(Debug, Default)]
pub struct Latest {
    entries: Vec<([u64; 2], u64)>,
}

fn split_digest(d: u128) -> [u64; 2] {
    [(d >> 64) as u64, d as u64]
}

impl Latest {
    pub fn build(reader: &mut Reader) -> Result<Self, JournalError> {
        let mut entries = Vec::new();
        for_each_light(reader, true, |offset, light| {
            if let Some(key) = light
                .key
                .as_deref()
                .filter(|_| light.kind == LineKind::Item)
            {
                entries.push((split_digest(key_digest(key)), offset));
            }
            Ok(())
        })?;
        // Stable sort: a key's records stay in journal order, so its last one is the latest.
        entries.sort_by_key(|e| e.0);
        let mut latest: Vec<([u64; 2], u64)> = Vec::with_capacity(entries.len());
        for e in entries {
            match latest.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => latest.push(e),
            }
        }
        latest.shrink_to_fit();
        Ok(Self { entries: latest })
    }

    /// Whether the record at `offset` is the latest for `key`.
    pub fn is_latest(&self, key: &str, offset: u64) -> bool {
        let d = split_digest(key_digest(key));
        self.entries
            .binary_search_by_key(&d, |e| e.0)
            .is_ok_and(|i| self.entries[i].1 == offset)
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether a record can stand for an identical image: a result always; a rejection of the
/// image itself (the same bytes would be refused again, nothing billed) unless `retry_failed`
/// asks for rejections to be sent again. A rejection of one row's own fields (its
/// `vendor_data` or `metadata`) says nothing about another row with the same image.
pub fn reusable_record(class: Class, error_field: Option<&str>, retry_failed: bool) -> bool {
    match class {
        Class::Result => true,
        Class::Rejected => !retry_failed && matches!(error_field, None | Some("user_image")),
        _ => false,
    }
}

#[cfg(test)]
impl Index {
    /// Add a record as [`Index::build`] would read it.
    pub(crate) fn add_record(
        &mut self,
        key: &str,
        version: Option<&str>,
        content: Option<u128>,
        class: Class,
        offset: u64,
    ) {
        self.by_key
            .insert_in_memory(key_digest(key) as u64, key_state(version, content, class));
        if let Some(c) = content
            && reusable_record(class, None, false)
        {
            self.offer(c, offset, class);
        }
    }
}
