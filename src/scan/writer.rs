//! The journal writer stage: the only task that appends to the journal (the lines of what is
//! queued at once in one write). It records each finished item, announces uploads (a
//! `sending` line, synced before the upload leaves), keeps the progress and the exit-code count
//! current, syncs at least every second, and tells the dispatcher when a leader of identical
//! images finished. A write that fails (a full disk) stops the whole run at once with that
//! error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::run::RunCounts;
use super::{ScanError, Stop};
use crate::journal::{self, Index, Line, Sending, Unchanged, Writer};
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
    /// Keys dead runs may have sent without recording: their next record counts one more
    /// possible double charge for each such upload.
    pub orphans: HashMap<u128, u32>,
    pub stop: Stop,
}

/// The writer task. Returns the writer for the end line, or the error that stopped the run.
pub async fn write_records(
    mut writer: Writer,
    mut rx: mpsc::Receiver<ToWriter>,
    done_tx: mpsc::UnboundedSender<Completion>,
    mut ctx: WriterCtx,
) -> Result<Writer, ScanError> {
    let mut tick = tokio::time::interval(journal::SYNC_EVERY);
    let mut acks = Vec::new();
    let mut done = Vec::new();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                // Take what else is queued, so its lines share one write and announced
                // uploads one sync.
                ctx.take_queued(&mut writer, msg, &mut rx, &mut done, &mut acks)?;
                if !acks.is_empty() {
                    // An upload waits for the sync: let the other tasks ready now queue their
                    // lines first, so that one sync covers theirs too.
                    tokio::task::yield_now().await;
                    if let Ok(msg) = rx.try_recv() {
                        ctx.take_queued(&mut writer, msg, &mut rx, &mut done, &mut acks)?;
                    }
                }
                // The leaders' records are written before anyone is told where they are.
                writer.flush()?;
                for completion in done.drain(..) {
                    let _ = done_tx.send(completion);
                }
                if !acks.is_empty() {
                    writer.sync()?;
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                }
            }
            _ = tick.tick() => writer.sync()?,
        }
    }
    writer.sync()?;
    Ok(writer)
}

impl WriterCtx {
    /// Handle `msg` and every message queued behind it.
    fn take_queued(
        &mut self,
        writer: &mut Writer,
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
        writer: &mut Writer,
        msg: ToWriter,
        done: &mut Vec<Completion>,
        acks: &mut Vec<oneshot::Sender<()>>,
    ) -> Result<(), ScanError> {
        match msg {
            ToWriter::Record { mut record, leader } => {
                if !self.orphans.is_empty()
                    && let Some(n) = self.orphans.remove(&journal::key_digest(&record.key))
                {
                    record.possible_double_charges += n;
                }
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
        let had_no_result = self
            .index
            .class_of(journal::key_digest(&record.key))
            .is_some_and(|c| c != Class::Result);
        let has_no_result = record.class != Some(Class::Result);
        self.without_result.fetch_add(
            i64::from(has_no_result) - i64::from(had_no_result),
            Ordering::Relaxed,
        );
    }
}
