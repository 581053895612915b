//! The journal writer stage: the only task that appends to the journal (the lines of what is
//! queued at once in one write). It records each finished item, announces uploads (a
//! `sending` line, synced before the upload leaves: the syncs run on a blocking thread, one
//! at a time and at most one every [`SYNC_GAP`], each releasing every upload announced before
//! it started), keeps the progress and the exit-code count current, syncs at least every
//! second, and tells the dispatcher when a leader of identical images finished. A write that fails (a full disk) stops the whole run at once with that
//! error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::RunCounts;
use super::open::JournalWriter;
use super::{ScanError, Stop};
use crate::journal::{self, Index, Line, Sending, Unchanged};
use crate::pace::Pacer;
use crate::progress::Progress;
use crate::record::{Class, Record};

/// What the writer receives.
pub enum ToWriter {
    /// A finished record; `leader` is the content digest when identical items wait on it.
    Record {
        record: Box<Record>,
        leader: Option<u128>,
    },
    /// A leader that ended without a record (stopped before it was sent).
    Unsent { leader: Option<u128> },
    /// An item read again whose content is the one recorded, at a new version.
    Unchanged(Unchanged),
    /// An upload is about to leave: journal it (synced) and answer on `ack`.
    Sending {
        key: String,
        ack: oneshot::Sender<()>,
    },
}

/// What the dispatcher learns when a leader finishes.
pub struct Completion {
    pub content: u128,
    /// Offset of a record identical items can reuse.
    pub reusable: Option<u64>,
}

/// What the writer task shares with the run.
pub struct WriterCtx {
    pub progress: Progress,
    pub counts: Arc<RunCounts>,
    pub retry_failed: bool,
    pub pacer: Arc<Pacer>,
    pub index: Arc<Index>,
    /// Keys whose latest record has no result; the exit code needs no extra pass.
    pub without_result: Arc<AtomicI64>,
    /// Keys dead runs may have sent without recording (sends of unknown outcome), with how
    /// many times: see [`carry_unknown`].
    pub orphans: HashMap<u128, u32>,
    pub stop: Stop,
}

/// The writer task. Returns the writer for the end line, or the error that stopped the run.
pub async fn write_records(
    mut writer: JournalWriter,
    mut rx: mpsc::Receiver<ToWriter>,
    done_tx: mpsc::UnboundedSender<Completion>,
    mut ctx: WriterCtx,
) -> Result<JournalWriter, ScanError> {
    let mut tick = tokio::time::interval(journal::SYNC_EVERY);
    let mut acks = Vec::new();
    let mut done = Vec::new();
    // The sync under way on a blocking thread and the uploads waiting for it. While the disk
    // catches up, this task goes on writing lines; the uploads announced meanwhile wait for
    // the next sync, which starts when this one ends, and never sooner than `SYNC_GAP` after
    // it started (one sync then covers every upload announced in that time).
    let mut syncing = Syncing::default();
    loop {
        let mut due = syncing.due(!acks.is_empty());
        if due == Some(Due::Now) {
            syncing.start(&mut writer, &mut acks)?;
            due = None;
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                // Take what else is queued, so its lines share one write and announced
                // uploads one sync.
                ctx.take_queued(&mut writer, msg, &mut rx, &mut done, &mut acks)?;
                // The leaders' records are written before anyone is told where they are.
                writer.flush()?;
                for completion in done.drain(..) {
                    let _ = done_tx.send(completion);
                }
            }
            synced = syncing.wait(), if syncing.busy() => {
                synced?;
            }
            _ = sleep_until(due), if matches!(due, Some(Due::At(_))) => {
                syncing.start(&mut writer, &mut acks)?;
            }
            _ = tick.tick() => {
                if !syncing.busy() {
                    writer.sync()?;
                }
            }
        }
    }
    syncing.wait().await?;
    writer.sync()?;
    syncing.release();
    Ok(writer)
}

/// The shortest time from the start of one journal sync to the start of the next while
/// uploads wait for them: at most this many syncs a second however fast answers come (each
/// costs the disk a flush), and no wait at all for an upload when the last sync is older.
pub const SYNC_GAP: Duration = Duration::from_millis(5);

async fn sleep_until(due: Option<Due>) {
    if let Some(Due::At(at)) = due {
        tokio::time::sleep_until(at).await;
    }
}

/// When the next sync may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Now,
    At(Instant),
}

/// The journal sync running on a blocking thread, and the uploads it releases when it ends.
#[derive(Default)]
struct Syncing {
    job: Option<tokio::task::JoinHandle<Result<(), journal::JournalError>>>,
    /// The uploads the sync under way covers.
    acks: Vec<oneshot::Sender<()>>,
    started: Option<Instant>,
}

impl Syncing {
    fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// When the next sync may start, given whether uploads wait for one: `None` while one is
    /// under way or none waits.
    fn due(&self, waiting: bool) -> Option<Due> {
        next_sync(self.busy(), waiting, self.started, Instant::now(), SYNC_GAP)
    }

    /// Start syncing what `writer` wrote, for the uploads in `acks`.
    fn start(
        &mut self,
        writer: &mut JournalWriter,
        acks: &mut Vec<oneshot::Sender<()>>,
    ) -> Result<(), ScanError> {
        std::mem::swap(&mut self.acks, acks);
        self.started = Some(Instant::now());
        match writer.sync_job()? {
            Some(job) => self.job = Some(tokio::task::spawn_blocking(move || job.run())),
            // Nothing written since the last sync: the lines are on disk already.
            None => self.release(),
        }
        Ok(())
    }

    /// Wait for the sync under way (if any), then let its uploads leave.
    async fn wait(&mut self) -> Result<(), ScanError> {
        let Some(job) = self.job.as_mut() else {
            return Ok(());
        };
        let result = job.await;
        self.job = None;
        match result {
            Ok(Ok(())) => {
                self.release();
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(ScanError::Internal(format!(
                "the journal sync's thread: {e}"
            ))),
        }
    }

    fn release(&mut self) {
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// The sync decision: none while one runs or no upload waits; otherwise now, or `gap` after
/// the last one started when that is still to come.
fn next_sync(
    busy: bool,
    waiting: bool,
    last_start: Option<Instant>,
    now: Instant,
    gap: Duration,
) -> Option<Due> {
    if busy || !waiting {
        return None;
    }
    match last_start.map(|t| t + gap) {
        Some(at) if at > now => Some(Due::At(at)),
        _ => Some(Due::Now),
    }
}

impl WriterCtx {
    /// Handle `msg` and every message queued behind it.
    fn take_queued(
        &mut self,
        writer: &mut JournalWriter,
        msg: ToWriter,
        rx: &mut mpsc::Receiver<ToWriter>,
        done: &mut Vec<Completion>,
        acks: &mut Vec<oneshot::Sender<()>>,
    ) -> Result<(), ScanError> {
        let mut next = Some(msg);
        while let Some(msg) = next {
            if let Err(e) = self.handle(writer, msg, done, acks) {
                // What was gathered before the failure is still kept.
                let _ = writer.flush();
                return Err(e);
            }
            next = rx.try_recv().ok();
        }
        Ok(())
    }

    fn handle(
        &mut self,
        writer: &mut JournalWriter,
        msg: ToWriter,
        done: &mut Vec<Completion>,
        acks: &mut Vec<oneshot::Sender<()>>,
    ) -> Result<(), ScanError> {
        match msg {
            ToWriter::Record { mut record, leader } => {
                let digest = journal::key_digest(&record.key);
                let orphans = match self.orphans.is_empty() {
                    true => 0,
                    false => self.orphans.remove(&digest).unwrap_or(0),
                };
                let content = record.sha256.as_deref().and_then(journal::content_digest);
                let pending = u32::from(self.index.unknown_pending(digest, content));
                carry_unknown(&mut record, orphans + pending);
                self.counts.recorded.fetch_add(1, Ordering::Relaxed);
                self.progress.set_rate(self.pacer.current_rate());
                self.progress.record(&record);
                self.track_result(&record);
                let class = record.class;
                let field = record.error_field.clone();
                let offset = writer.gather(&Line::Item(record))?;
                if let Some(content) = leader {
                    let reusable = class
                        .is_some_and(|c| {
                            journal::reusable_record(c, field.as_deref(), self.retry_failed)
                        })
                        .then_some(offset);
                    done.push(Completion { content, reusable });
                }
            }
            ToWriter::Unsent { leader } => {
                if let Some(content) = leader {
                    done.push(Completion {
                        content,
                        reusable: None,
                    });
                }
            }
            ToWriter::Unchanged(line) => {
                writer.gather(&Line::Unchanged(line))?;
            }
            ToWriter::Sending { key, ack } => {
                if self.stop.has_failed() {
                    return Ok(());
                }
                writer.gather(&Line::Sending(Sending { key }))?;
                acks.push(ack);
            }
        }
        Ok(())
    }

    /// Keep the count of keys without a result current as records replace earlier ones.
    fn track_result(&self, record: &Record) {
        // A key whose source was gone was not counted.
        let had_no_result = self
            .index
            .latest(journal::key_digest(&record.key))
            .is_some_and(|s| !s.is_gone() && s.class() != Class::Result);
        let has_no_result = record.class != Some(Class::Result);
        self.without_result.fetch_add(
            i64::from(has_no_result) - i64::from(had_no_result),
            Ordering::Relaxed,
        );
    }
}

/// The image's earlier sends of unknown outcome that no send has repeated yet (`prior`: the
/// uploads of dead runs that never recorded them, and the previous record's last send), each
/// followed by the next: all but the last are repeated by the one after them, and the last by
/// this record's first send, if it sent. A record that sent nothing keeps the last one pending
/// for the next.
pub fn carry_unknown(record: &mut Record, prior: u32) {
    if prior == 0 {
        return;
    }
    if record.attempts > 0 {
        record.possible_double_charges += prior;
    } else {
        record.possible_double_charges += prior - 1;
        record.unknown_pending = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_millis(5);

    fn sent(attempts: u32, within: u32) -> Record {
        Record {
            key: "a.jpg".into(),
            attempts,
            possible_double_charges: within,
            ..Default::default()
        }
    }

    #[test]
    fn earlier_unknown_outcomes_count_once_the_image_is_sent_again() {
        // Nothing unknown before: the record's own count stands.
        let mut r = sent(2, 1);
        carry_unknown(&mut r, 0);
        assert_eq!((r.possible_double_charges, r.unknown_pending), (1, false));
        // The previous record's unknown send, and a dead run's upload: this send repeats the
        // last one, which repeated the one before.
        let mut r = sent(1, 0);
        carry_unknown(&mut r, 2);
        assert_eq!((r.possible_double_charges, r.unknown_pending), (2, false));
        // A record that sent nothing (a duplicate, a refusal) repeats nothing: the last unknown
        // send stays pending, those before it were repeated by it.
        let mut r = sent(0, 0);
        carry_unknown(&mut r, 1);
        assert_eq!((r.possible_double_charges, r.unknown_pending), (0, true));
        let mut r = sent(0, 0);
        carry_unknown(&mut r, 3);
        assert_eq!((r.possible_double_charges, r.unknown_pending), (2, true));
    }

    #[test]
    fn no_sync_while_one_runs_or_when_no_upload_waits() {
        let now = Instant::now();
        assert_eq!(next_sync(true, true, Some(now), now, GAP), None);
        assert_eq!(next_sync(false, false, Some(now), now, GAP), None);
        assert_eq!(next_sync(false, false, None, now, GAP), None);
    }

    #[test]
    fn the_first_sync_and_one_after_a_quiet_gap_start_at_once() {
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(next_sync(false, true, None, now, GAP), Some(Due::Now));
        assert_eq!(
            next_sync(false, true, Some(now - GAP), now, GAP),
            Some(Due::Now)
        );
        assert_eq!(
            next_sync(false, true, Some(now - Duration::from_secs(1)), now, GAP),
            Some(Due::Now)
        );
    }

    #[test]
    fn a_sync_soon_after_the_last_one_waits_for_the_gap() {
        let start = Instant::now();
        let now = start + Duration::from_millis(2);
        assert_eq!(
            next_sync(false, true, Some(start), now, GAP),
            Some(Due::At(start + GAP))
        );
        // Once the sync under way ends, what waits is due at the same moment, not later.
        assert_eq!(next_sync(true, true, Some(start), now, GAP), None);
        assert_eq!(
            next_sync(
                false,
                true,
                Some(start),
                start + Duration::from_millis(4),
                GAP
            ),
            Some(Due::At(start + GAP))
        );
    }
}
