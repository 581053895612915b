//! The source stage: every source walked on a blocking thread and preflighted (read, sniffed,
//! hashed) a few items ahead of the dispatcher, in input order; keys made unique in the run.

use futures::StreamExt;
use tokio::sync::mpsc;

use super::Stop;
use crate::config::ScanConfig;
use crate::input::preflight::{self, Prepared, Refusal};
use crate::input::{self, Event, Item};
use crate::journal;
use crate::messages;

/// Files preflighted (read and hashed) at once, ahead of the dispatcher.
const PREFLIGHT_AHEAD: usize = 4;

/// An item after preflight.
pub struct Ready {
    pub item: Item,
    pub checked: Result<Prepared, Refusal>,
}

impl Ready {
    /// The SHA-256 of what was read, if anything was.
    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match &self.checked {
            Ok(p) => Some(&p.sha256),
            Err(r) => r.sha256.as_ref(),
        }
    }
}

/// What the source stage yields.
pub enum Ev {
    Ready(Box<Ready>),
    Ignored { path: String, reason: String },
    Warning(String),
}

fn refusal(reason: impl Into<String>) -> Refusal {
    Refusal {
        reason: reason.into(),
        sha256: None,
        size: None,
        detected: None,
    }
}

/// Read one item's file on a blocking thread (a bad manifest row is not read at all).
pub async fn read(item: Item) -> Ready {
    if item.problem.is_some() {
        return Ready {
            item,
            checked: Err(refusal(String::new())),
        };
    }
    let path = item.path.clone();
    let checked = tokio::task::spawn_blocking(move || preflight::preflight(&path))
        .await
        .unwrap_or_else(|e| Err(refusal(format!("reading the file failed: {e}"))));
    Ready { item, checked }
}

/// The sources' events, items preflighted a few at a time, in input order. Once the run is
/// stopped, items pass through unread (to be counted as not processed).
pub fn preflighted(
    cfg: &ScanConfig,
    stop: Stop,
) -> impl futures::Stream<Item = Ev> + Unpin + use<> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    let sources = cfg.sources.clone();
    let opts = cfg.source_options.clone();
    let source_stop = stop.clone();
    std::thread::spawn(move || {
        let iter = match input::open(&sources, &opts) {
            Ok(it) => it,
            Err(e) => {
                // The sources changed since they were checked: the run cannot go on as asked.
                source_stop.fail(e.into());
                return;
            }
        };
        for ev in iter {
            if tx.blocking_send(ev).is_err() {
                return;
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Box::pin(
        stream
            .map(move |ev| {
                let stop = stop.clone();
                async move {
                    match ev {
                        Event::Ignored { path, reason } => Ev::Ignored { path, reason },
                        Event::Warning(w) => Ev::Warning(w),
                        Event::Item(item) if stop.is_stopped() => Ev::Ready(Box::new(Ready {
                            item,
                            checked: Err(refusal("not read: the run stopped")),
                        })),
                        Event::Item(item) => Ev::Ready(Box::new(read(item).await)),
                    }
                }
            })
            .buffered(PREFLIGHT_AHEAD),
    )
}

/// Keys seen in this run, as compact digests, so no two items of one run share a key: a
/// second item with a key already used (the same relative path in two sources, or a lossless
/// escape that happens to spell another file's name) is keyed `KEY [SOURCE]`, then `KEY [SOURCE
/// #n]`, and a warning names both.
#[derive(Default)]
pub struct RunKeys {
    // 8 bytes of the key digest each: a false match (about 1 in 10^13 per pair) only renames a
    // key, never merges two items.
    seen: std::collections::HashSet<u64>,
}

impl RunKeys {
    pub fn make_unique(&mut self, item: &mut Item) {
        if self.seen.insert(journal::key_digest(&item.key) as u64) {
            return;
        }
        let mut n = 1;
        let renamed = loop {
            let candidate = if n == 1 {
                format!("{} [{}]", item.key, item.source)
            } else {
                format!("{} [{} #{n}]", item.key, item.source)
            };
            if self.seen.insert(journal::key_digest(&candidate) as u64) {
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
mod tests {
    use super::*;

    fn item(key: &str, source: &str) -> Item {
        Item {
            key: key.into(),
            path: key.into(),
            display_path: key.into(),
            source: source.into(),
            row: None,
            vendor_data: None,
            metadata: None,
            columns: Default::default(),
            problem: None,
            seq: 0,
        }
    }

    #[tokio::test]
    async fn a_source_that_fails_once_the_run_started_stops_it_with_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("selfies");
        let cfg = crate::config::scan_config(&[gone.to_str().unwrap(), "--emulator"]).unwrap();
        let stop = Stop::default();
        let events: Vec<Ev> = preflighted(&cfg, stop.clone()).collect().await;
        assert!(events.is_empty());
        assert!(stop.is_stopped());
        let err = stop.take_failure().expect("the source's error");
        assert!(
            matches!(err, super::super::ScanError::Input(_))
                && err.to_string().contains("not found"),
            "{err}"
        );
    }

    #[test]
    fn no_two_items_share_a_key() {
        let mut keys = RunKeys::default();
        let mut a = item("x.jpg", "one");
        let mut b = item("x.jpg", "two");
        let mut c = item("x.jpg", "two");
        let mut d = item("x.jpg [two]", "three");
        for i in [&mut a, &mut b, &mut c, &mut d] {
            keys.make_unique(i);
        }
        assert_eq!(a.key, "x.jpg");
        assert_eq!(b.key, "x.jpg [two]");
        assert_eq!(c.key, "x.jpg [two #2]");
        assert_eq!(d.key, "x.jpg [two] [three]");
    }
}
