//! The worker stage: each worker takes a prepared image, announces the upload to the journal,
//! submits it (pacing, retries, budget), and hands the finished record to the writer. A fatal
//! answer or the budget stops the run; a stopped run sends nothing new.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use super::RunCounts;
use super::writer::ToWriter;
use super::{Stop, StopCause, now_rfc3339};
use crate::didit::{Outcome, Params, Upload};
use crate::input::Item;
use crate::input::preflight::{self, Prepared};
use crate::journal;
use crate::record::Record;
use crate::submit::{Final, Submission, Submitter};

/// What the workers receive.
pub struct Job {
    pub item: Item,
    pub prepared: Prepared,
}

pub struct WorkerCtx {
    pub jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    pub submitter: Arc<Submitter>,
    pub params: Params,
    pub to_writer: mpsc::Sender<ToWriter>,
    pub stop: Stop,
    pub counts: Arc<RunCounts>,
    pub dedupe: bool,
}

pub async fn worker(ctx: WorkerCtx) -> Result<(), super::ScanError> {
    loop {
        let job = { ctx.jobs.lock().await.recv().await };
        let Some(Job { item, prepared }) = job else {
            return Ok(());
        };
        let content = journal::content_digest_of(&prepared.content_sha256());
        let leader = ctx.dedupe.then_some(content);
        if ctx.stop.is_stopped() || !ctx.announce(&item.key).await {
            ctx.counts.not_processed.fetch_add(1, Ordering::Relaxed);
            let _ = ctx.to_writer.send(ToWriter::Unsent { leader }).await;
            continue;
        }
        let mut params = ctx.params.clone();
        params.vendor_data = item.vendor_data.clone();
        params.metadata = item.metadata.clone();
        let (ext, mime) = (prepared.format.ext(), prepared.format.mime());
        let upload = Upload::new(prepared.bytes.clone(), ext, mime);
        params.reference = prepared
            .reference
            .as_ref()
            .map(|r| Upload::new(r.bytes.clone(), r.format.ext(), r.format.mime()));
        let submission = ctx.submitter.submit(&upload, &params).await;
        ctx.counts
            .requests
            .fetch_add(submission.attempts as u64, Ordering::Relaxed);
        ctx.counts
            .retry_after_capped
            .fetch_add(u64::from(submission.retry_after_capped), Ordering::Relaxed);
        ctx.stop_on(&submission.outcome);
        let attempts = submission.attempts;
        let msg = match record_for(&item, &prepared, submission) {
            Some(record) => ToWriter::Record {
                record: Box::new(record),
                leader,
            },
            None => {
                ctx.counts.not_processed.fetch_add(1, Ordering::Relaxed);
                ToWriter::Unsent { leader }
            }
        };
        if ctx.to_writer.send(msg).await.is_err() {
            // The writer failed: this answer cannot be journaled. If a request left, it may
            // have been billed; its `sending` line lets the next run count it.
            if attempts > 0 {
                ctx.counts.unrecorded.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
    }
}

impl WorkerCtx {
    /// Journal the upload before it leaves; false when the writer cannot (it failed).
    async fn announce(&self, key: &str) -> bool {
        let (ack, acked) = oneshot::channel();
        let msg = ToWriter::Sending {
            key: key.to_string(),
            ack,
        };
        self.to_writer.send(msg).await.is_ok() && acked.await.is_ok()
    }

    /// A fatal answer or a spent budget stops the whole run.
    fn stop_on(&self, outcome: &Final) {
        match outcome {
            Final::Done(Outcome::Fatal { kind, message, .. }) => self.stop.stop(StopCause::Fatal {
                kind: *kind,
                message: message.clone(),
            }),
            Final::BudgetReached => {
                if let Some(b) = &self.submitter.budget {
                    self.stop.stop(StopCause::Budget { limit: b.limit() });
                }
            }
            _ => {}
        }
    }
}

/// The record fields every item has, from its source.
pub fn base_record(item: &Item) -> Record {
    Record {
        key: item.key.clone(),
        path: item.display_path.clone(),
        source: item.source.clone(),
        seq: Some(item.seq),
        vendor_data: item.vendor_data.clone(),
        metadata: item.metadata.clone().map(serde_json::Value::Object),
        columns: item.columns.clone(),
        version: item.version_text(),
        reference: item.reference.as_ref().map(|r| r.display.clone()),
        finished_at: Some(now_rfc3339()),
        ..Default::default()
    }
}

/// The record of an item that reuses `leader`'s answer (identical content): every field of
/// the answer comes from the leader, every field of the item from the item itself, so a new
/// record field cannot silently miss duplicates.
pub fn follower_record(item: &Item, leader: Record) -> Record {
    let own = base_record(item);
    let duplicate_of = Some(leader.duplicate_of.clone().unwrap_or(leader.key.clone()));
    Record {
        key: own.key,
        path: own.path,
        source: own.source,
        seq: own.seq,
        vendor_data: own.vendor_data,
        metadata: own.metadata,
        columns: own.columns,
        version: own.version,
        reference: own.reference,
        finished_at: own.finished_at,
        duplicate_of,
        // Nothing was sent for this item.
        attempts: 0,
        rate_limited: 0,
        possible_double_charges: 0,
        unknown_outcomes: 0,
        unknown_pending: false,
        billed: false,
        latency_ms: None,
        response: None,
        ..leader
    }
    .with_action()
}

/// Turn a submission into a record; `None` when nothing was sent (stopped first).
pub fn record_for(item: &Item, prepared: &Prepared, sub: Submission) -> Option<Record> {
    let mut rec = base_record(item);
    rec.sha256 = Some(preflight::hex(&prepared.sha256));
    rec.ref_sha256 = prepared
        .reference
        .as_ref()
        .map(|r| preflight::hex(&r.sha256));
    rec.size_bytes = Some(prepared.size);
    rec.format = Some(prepared.format.name().to_string());
    rec.attempts = sub.attempts;
    rec.rate_limited = sub.rate_limited;
    rec.possible_double_charges = sub.possible_double_charges;
    rec.unknown_outcomes = sub.unknown_outcomes;
    rec.unknown_pending = sub.unknown_pending;
    rec.http_status = sub.http_status;
    rec.latency_ms = sub.latency_ms;
    let (class, error) = sub.outcome.ending(sub.attempts)?;
    match sub.outcome {
        Final::Done(Outcome::Result { response, raw }) => response.fill_record(raw, &mut rec),
        Final::Done(Outcome::BadAnswer { raw, .. }) => {
            // A 200 is billed even when its answer cannot be used.
            rec.response = Some(raw.into());
            rec.billed = true;
        }
        Final::Done(Outcome::Rejected { field, .. }) => rec.error_field = field,
        _ => {}
    }
    rec.class = Some(class);
    rec.error = error;
    Some(rec.with_action())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Class, Decision, FaceRecord, WarningRecord};

    fn item(key: &str) -> Item {
        Item {
            key: key.into(),
            path: format!("/in/{key}").into(),
            display_path: format!("in/{key}"),
            source: "in".into(),
            row: Some(3),
            vendor_data: Some(format!("user-{key}")),
            metadata: None,
            columns: [("team".to_string(), format!("t-{key}"))].into(),
            problem: None,
            seq: 9,
            version: None,
            regular: false,
            reference: None,
        }
    }

    #[test]
    fn a_follower_takes_the_answer_from_the_leader_and_the_rest_from_its_item() {
        let leader = Record {
            key: "lead".into(),
            path: "in/lead".into(),
            source: "in".into(),
            seq: Some(1),
            sha256: Some("ab".repeat(32)),
            size_bytes: Some(1234),
            format: Some("JPEG".into()),
            vendor_data: Some("user-lead".into()),
            class: Some(Class::Result),
            status: Some(Decision::Declined),
            score: Some(12.5),
            face_quality: Some(80.0),
            face_luminance: Some(50.0),
            warnings: vec![WarningRecord {
                risk: "FACE_IN_BLOCKLIST".into(),
                log_type: "error".into(),
            }],
            face: Some(FaceRecord::default()),
            request_id: Some("req-1".into()),
            created_at: Some("2026-11-30T00:00:00Z".into()),
            http_status: Some(200),
            attempts: 2,
            rate_limited: 1,
            possible_double_charges: 1,
            unknown_outcomes: 1,
            unknown_pending: true,
            billed: true,
            latency_ms: Some(300),
            response: Some(serde_json::json!({"request_id": "req-1"}).into()),
            ..Default::default()
        }
        .with_action();
        let rec = follower_record(&item("twin"), leader.clone());
        assert_eq!(rec.key, "twin");
        assert_eq!(rec.path, "in/twin");
        assert_eq!(rec.seq, Some(9));
        assert_eq!(rec.vendor_data.as_deref(), Some("user-twin"));
        assert_eq!(rec.columns["team"], "t-twin");
        assert_eq!(rec.duplicate_of.as_deref(), Some("lead"));
        // The answer is the leader's.
        assert_eq!(rec.class, leader.class);
        assert_eq!(rec.status, leader.status);
        assert_eq!(rec.score, leader.score);
        assert_eq!(rec.warnings, leader.warnings);
        assert_eq!(rec.sha256, leader.sha256);
        assert_eq!(rec.request_id, leader.request_id);
        assert_eq!(rec.action, leader.action);
        // Nothing was sent or billed for the follower.
        assert_eq!((rec.attempts, rec.possible_double_charges), (0, 0));
        assert_eq!((rec.unknown_outcomes, rec.unknown_pending), (0, false));
        assert!(!rec.billed);
        assert!(rec.response.is_none());
        // A follower of a follower names the first leader.
        let again = follower_record(&item("third"), rec);
        assert_eq!(again.duplicate_of.as_deref(), Some("lead"));
    }
}
