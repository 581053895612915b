//! The compact indexes a resume and the outputs need, built by streaming the journal once:
//! the latest record per key, reusable answers by content, and requests that a run which
//! died may have sent without recording their answer.

use std::collections::HashMap;

use serde::Deserialize;

use super::{JournalError, LineKind, Reader, Settings, content_digest, key_digest};
use crate::record::Class;

/// What the resume logic needs to know about a key's latest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub content: Option<u128>,
    pub class: Class,
    pub offset: u64,
}

/// Compact index of a journal: the latest record per key, and the first reusable result per
/// content hash. Memory grows with the number of distinct keys only (about 60 bytes each).
#[derive(Debug, Default)]
pub struct Index {
    pub by_key: HashMap<u128, Done>,
    /// Content digest -> offset and class of a result (or rejection) that identical images can
    /// reuse; a result is preferred over a rejection. See [`Index::reusable`].
    pub by_content: HashMap<u128, (u64, Class)>,
    /// The settings of the latest run header.
    pub settings: Option<Settings>,
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

/// The fields of a journal line that the index needs; the rest is skipped without allocating.
#[derive(Deserialize)]
struct LightLine {
    #[serde(rename = "type")]
    kind: LineKind,
    key: Option<String>,
    sha256: Option<String>,
    class: Option<Class>,
    error_field: Option<String>,
    duplicate_of: Option<String>,
    settings: Option<Settings>,
}

/// Stream a journal's lines as the light fields indexes need, checking that it is a journal.
fn for_each_light(
    reader: &mut Reader,
    mut f: impl FnMut(u64, LightLine) -> Result<(), &'static str>,
) -> Result<(), JournalError> {
    let mut first = true;
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
        match light.kind {
            LineKind::Item if light.key.is_none() || light.class.is_none() => {
                return Err(reader.corrupt("an item line without key or class"));
            }
            LineKind::Sending if light.key.is_none() => {
                return Err(reader.corrupt("a sending line without key"));
            }
            LineKind::Run | LineKind::End | LineKind::Item | LineKind::Sending => {}
        }
        f(offset, light).map_err(|m| reader.corrupt(m))?;
    }
    Ok(())
}

impl Index {
    /// Build the index by streaming the journal once.
    pub fn build(reader: &mut Reader) -> Result<Self, JournalError> {
        let mut index = Index::default();
        // Uploads announced by the current run segment and not recorded yet.
        let mut announced: HashMap<u128, Orphan> = HashMap::new();
        let mut dead: Vec<Orphan> = Vec::new();
        for_each_light(reader, |offset, light| {
            match light.kind {
                LineKind::Run => {
                    // A run header after a segment without an end line: that run died.
                    dead.extend(announced.drain().map(|(_, o)| o));
                    index.runs += 1;
                    index.settings = light.settings;
                }
                LineKind::End => announced.clear(),
                LineKind::Sending => {
                    let key = light.key.unwrap_or_default();
                    announced.insert(key_digest(&key), Orphan { key, offset });
                }
                LineKind::Item => {
                    index.records += 1;
                    let (Some(key), Some(class)) = (light.key, light.class) else {
                        return Err("an item line without key or class");
                    };
                    let digest = key_digest(&key);
                    announced.remove(&digest);
                    // A later record of a dead run's item carries that run's possible charge.
                    dead.retain(|o| o.key != key);
                    let content = light.sha256.as_deref().and_then(content_digest);
                    index.by_key.insert(
                        digest,
                        Done {
                            content,
                            class,
                            offset,
                        },
                    );
                    if let Some(c) = content
                        && light.duplicate_of.is_none()
                        && reusable_record(class, light.error_field.as_deref(), false)
                    {
                        let slot = index.by_content.entry(c).or_insert((offset, class));
                        if slot.1 == Class::Rejected && class == Class::Result {
                            *slot = (offset, class);
                        }
                    }
                }
            }
            Ok(())
        })?;
        dead.extend(announced.into_values());
        dead.sort_by_key(|o| o.offset);
        index.orphans = dead;
        Ok(index)
    }

    /// The offset of an earlier answer for this content that an identical image may reuse: a
    /// result, or a rejection unless `retry_failed` asks for rejected images to be sent again.
    pub fn reusable(&self, content: u128, retry_failed: bool) -> Option<u64> {
        self.by_content
            .get(&content)
            .filter(|(_, class)| *class == Class::Result || !retry_failed)
            .map(|(offset, _)| *offset)
    }

    /// Whether `key` is finished with this content (so a resumed run skips it).
    pub fn is_done(&self, key: &str, content: Option<u128>, retry_failed: bool) -> bool {
        self.is_done_digest(key_digest(key), content, retry_failed)
    }

    /// [`Index::is_done`] for a key's digest.
    pub fn is_done_digest(&self, key: u128, content: Option<u128>, retry_failed: bool) -> bool {
        self.by_key
            .get(&key)
            .is_some_and(|d| d.content == content && d.class.is_done(retry_failed))
    }
}

/// Which record is each key's latest, as a sorted vector of (key digest, offset): 24 bytes a
/// key, all that outputs need. Smaller than [`Index`], whose hash map also holds what resume needs.
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
        for_each_light(reader, |offset, light| {
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
