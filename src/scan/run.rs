//! The pipeline on one screen: open, dispatch, drain, finish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::dispatch::{Decision, Dispatcher, Released};
use super::gone;
use super::ignored;
use super::open::{self, Api, JournalWriter, Opened};
use super::source::{self, Checked, Ev, QuickCheck, Ready};
use super::worker::{self, Job, WorkerCtx};
use super::writer::{self, Completion, ToWriter, WriterCtx};
use super::{RunCounts, ScanError, Stop, StopCause, dry_run, now_rfc3339, spawn_stage};
use crate::config::ScanConfig;
use crate::exit::Exit;
use crate::input::{self, Item};
use crate::journal::{
    self, DirLock, Index, Line, LinesAt, RunEnd, RunOutcome, Settings, Unchanged,
};
use crate::messages;
use crate::pace::Pacer;
use crate::progress::{self, Progress};
use crate::record::{Class, Record};
use crate::report::{self, ReportOptions};
use crate::submit::{Budget, Submitter};

/// Items that may wait for an identical image in flight before the dispatcher stops reading.
const MAX_WAITING: usize = 1024;

/// Run `scan` to the end (or until stopped) and return the exit code.
pub async fn run(cfg: ScanConfig, stop: Stop) -> Result<Exit, ScanError> {
    // Every source checked, and counted, before the out dir is touched.
    let plan = plan(&cfg).await?;
    // A store that refuses the credentials or a bucket stops here, before any API call.
    let empty = check_sources(&cfg, plan.empty).await?;
    if cfg.dry_run {
        empty?;
        return dry_run::run(&cfg, plan, &stop).await;
    }
    // The client (no request yet), so a bad base URL is named first.
    let api = open::connect(&cfg).await?;
    // A source with nothing to screen, once the API settings are known to be usable; nothing
    // is written for it.
    empty?;
    // What a resume may trust is decided before any request.
    let evidence = open::verify_evidence(&cfg)?;
    let settings = Settings {
        check: (cfg.call.check != crate::didit::LIVENESS.check).then(|| cfg.call.check.into()),
        min_age: cfg.params.min_age,
        threshold: cfg.params.threshold,
        rotate_image: cfg.params.rotate_image,
        save_api_request: cfg.params.save_api_request,
        api_host: api.client.host(),
        simulated: cfg.api.emulator,
        include: cfg.source_options.filters.include().to_vec(),
        exclude: cfg.source_options.filters.exclude().to_vec(),
    };
    // A read on its own budget, before the first call: what the account holds.
    let balance = api.client.balance().await;
    let audit = open::RunAudit {
        key_fingerprint: Some(api.key_fingerprint.clone()),
        balance: Some(balance.clone()),
    };
    let opened = open::open(&cfg, &settings, audit, evidence)?;
    // The journal's lines before this run stay as they are: hashed for SHA256SUMS on another
    // thread while the run goes on, so the end reads only what the run appended.
    let prefix = (opened.prefix_len > 0).then(|| {
        let (path, len) = (opened.journal_path.clone(), opened.prefix_len);
        (
            len,
            tokio::task::spawn_blocking(move || journal::hash_prefix(&path, len)),
        )
    });
    open::announce(&cfg, opened.resumed);
    let total = plan.items.filter(|_| !cfg.quiet);
    let done = opened.index.keys() - opened.index.without_result();
    warn_if_short(&cfg, &balance, total.map(|t| t.saturating_sub(done as u64)));
    let mut pipeline = Pipeline::start(&cfg, &api, opened, stop.clone(), total)?;
    let input_unread = pipeline.dispatch(&cfg, plan).await;
    let drained = pipeline.drain().await;
    finish(&cfg, api, drained, &stop, input_unread, prefix).await
}

/// A hash of the journal's first bytes, under way on another thread.
type PrefixHash = (
    u64,
    tokio::task::JoinHandle<Result<sha2::Sha256, journal::JournalError>>,
);

/// The running stages and what the dispatcher needs to feed them.
struct Pipeline {
    machine: Dispatcher<Item>,
    quick: QuickCheck,
    leaders: LinesAt,
    ignored: ignored::List,
    job_tx: mpsc::Sender<Job>,
    to_writer: mpsc::Sender<ToWriter>,
    done_rx: mpsc::UnboundedReceiver<Completion>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    writer_task: tokio::task::JoinHandle<Option<JournalWriter>>,
    /// Held until the outputs are written.
    lock: DirLock,
    ticker: Option<tokio::task::JoinHandle<()>>,
    counts: Arc<RunCounts>,
    progress: Progress,
    pacer: Arc<Pacer>,
    without_result: Arc<AtomicI64>,
    stop: Stop,
    started: Instant,
    /// The out dir, which holds the resume index (named when it cannot be read).
    out_dir: PathBuf,
    /// The keys the sources listed, for the keys recorded earlier that they no longer list.
    seen: gone::Seen,
    /// This run's start and id.
    run: (String, Option<String>),
    journal_path: PathBuf,
    /// The first source that could not be read to its end.
    incomplete: Option<journal::IncompleteSource>,
}

/// The index the run started from, the keys the sources listed, this run's start and id.
struct GoneCheck {
    index: Arc<Index>,
    seen: gone::Seen,
    run: (String, Option<String>),
}

/// What the drained pipeline hands to the end of the run.
struct Drained {
    _lock: DirLock,
    writer: Option<JournalWriter>,
    counts: Arc<RunCounts>,
    pacer: Arc<Pacer>,
    without_result: i64,
    started: Instant,
    /// The ignored-files list as put in place (or left, when it was the same).
    listed: Vec<report::state::Listed>,
    /// What the end of the run needs to find the keys no longer listed.
    gone: Option<GoneCheck>,
    journal_path: PathBuf,
    incomplete: Option<journal::IncompleteSource>,
}

impl Pipeline {
    fn start(
        cfg: &ScanConfig,
        api: &Api,
        opened: Opened,
        stop: Stop,
        total: Option<u64>,
    ) -> Result<Self, ScanError> {
        let Opened {
            _lock,
            index,
            writer,
            journal_path,
            run,
            ..
        } = opened;
        let (machine, quick) = source::gate(cfg, index);
        let index = quick.index.clone();
        let without_result = Arc::new(AtomicI64::new(index.without_result() as i64));
        let progress = Progress::new(total, cfg.quiet);
        progress.set_rate(Some(cfg.rate.per_second()));
        let counts = Arc::new(RunCounts::default());
        let pacer = Arc::new(Pacer::new(cfg.rate));

        let (to_writer, writer_rx) = mpsc::channel::<ToWriter>(cfg.concurrency * 2 + 16);
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
        let ctx = WriterCtx {
            progress: progress.clone(),
            counts: counts.clone(),
            retry_failed: cfg.retry_failed,
            pacer: pacer.clone(),
            index: index.clone(),
            without_result: without_result.clone(),
            orphans: orphan_keys(&index),
            stop: stop.clone(),
        };
        let writer_task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                match writer::write_records(writer, writer_rx, done_tx, ctx).await {
                    Ok(w) => Some(w),
                    Err(e) => {
                        // Everyone learns at once: no new upload leaves after this.
                        stop.fail(e);
                        None
                    }
                }
            })
        };
        let (job_tx, workers) = spawn_workers(cfg, api, &pacer, &to_writer, &stop, &counts);
        Ok(Self {
            machine,
            quick,
            leaders: LinesAt::open(&journal_path)?,
            seen: gone::Seen::new(&cfg.out),
            run,
            journal_path: journal_path.clone(),
            ignored: ignored::List::create(&cfg.out)?,
            job_tx,
            to_writer,
            done_rx,
            workers,
            writer_task,
            lock: _lock,
            ticker: progress.is_plain().then(|| spawn_ticker(progress.clone())),
            counts,
            progress,
            pacer,
            without_result,
            stop,
            started: Instant::now(),
            out_dir: cfg.out.clone(),
            incomplete: None,
        })
    }
}

fn spawn_workers(
    cfg: &ScanConfig,
    api: &Api,
    pacer: &Arc<Pacer>,
    to_writer: &mpsc::Sender<ToWriter>,
    stop: &Stop,
    counts: &Arc<RunCounts>,
) -> (mpsc::Sender<Job>, Vec<tokio::task::JoinHandle<()>>) {
    let submitter = Arc::new(Submitter {
        client: api.client.clone(),
        pacer: pacer.clone(),
        policy: cfg.retry,
        budget: cfg.max_requests.map(|n| Arc::new(Budget::new(n))),
        stop: stop.token().clone(),
        retry_unknown: cfg.retry_unknown,
    });
    let (job_tx, job_rx) = mpsc::channel::<Job>(cfg.concurrency);
    let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
    let workers = (0..cfg.concurrency)
        .map(|_| {
            let ctx = WorkerCtx {
                jobs: job_rx.clone(),
                submitter: submitter.clone(),
                params: cfg.params.clone(),
                to_writer: to_writer.clone(),
                stop: stop.clone(),
                counts: counts.clone(),
                dedupe: cfg.dedupe,
            };
            spawn_stage("worker", stop.clone(), worker::worker(ctx))
        })
        .collect();
    (job_tx, workers)
}

/// Plain progress lines when stderr is not a terminal.
fn spawn_ticker(progress: Progress) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(progress::PLAIN_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            progress.tick_plain();
        }
    })
}

/// Keys dead runs may have sent without recording (a handful at most), with how many times.
fn orphan_keys(index: &Index) -> HashMap<u128, u32> {
    let mut keys = HashMap::new();
    for o in &index.orphans {
        *keys.entry(journal::key_digest(&o.key)).or_default() += 1;
    }
    keys
}

impl Pipeline {
    /// Feed every item through the dispatch state machine until the input ends or the run
    /// stops, then wait for the leaders in flight. Returns whether standard input was left
    /// unread.
    async fn dispatch(&mut self, cfg: &ScanConfig, plan: input::Plan) -> bool {
        let mut events = source::preflighted(cfg, plan, self.stop.clone(), self.quick.clone());
        let mut input_done = false;
        loop {
            if (input_done || self.stop.is_stopped()) && self.machine.leading() == 0 {
                break;
            }
            let reading = !input_done && !self.stop.is_stopped();
            let room = self.machine.waiting() < MAX_WAITING;
            let stopped = self.stop.is_stopped();
            tokio::select! {
                biased;
                Some(done) = self.done_rx.recv() => {
                    let released = self.machine.complete(done.content, done.reusable, stopped);
                    self.release(done.content, released).await;
                }
                next = events.next(), if reading && room => match next {
                    None => input_done = true,
                    Some(ev) => self.event(ev).await,
                },
                _ = self.stop.token().cancelled(), if !stopped => {}
                else => break,
            }
        }
        // A lookup after the last decision (the writer's) that could not read the index.
        self.stop_on_index_error();
        // Items still held behind a leader that will never answer (the writer failed).
        RunCounts::add(&self.counts.not_processed, self.machine.waiting());
        if !self.stop.is_stopped() || input_done {
            return false;
        }
        self.count_rest(cfg, events).await
    }

    /// One event of the source stage.
    async fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Ignored { path, reason } => self.ignore(path, reason),
            Ev::Warning(w) => {
                messages::warn(&w);
                self.seen.incomplete(w);
            }
            Ev::Incomplete(i) => {
                // A listing that stopped early: what it did not reach is not gone.
                self.seen
                    .incomplete("a source could not be listed to its end".into());
                self.incomplete(i)
            }
            Ev::Ready(ready) => {
                RunCounts::add(&self.counts.inputs, 1);
                self.seen.push(ready.key);
                self.decide(*ready).await;
            }
        }
    }

    /// A source that stopped before its end: said now, and recorded in the end line.
    fn incomplete(&mut self, i: journal::IncompleteSource) {
        messages::warn(&i.warning());
        self.incomplete.get_or_insert(i);
    }

    fn ignore(&mut self, path: String, reason: String) {
        RunCounts::add(&self.counts.ignored, 1);
        tracing::info!("ignored {}: {reason}", messages::cut(&path));
        if let Err(e) = self.ignored.push(&path, &reason) {
            self.stop.fail(e);
        }
    }

    /// Ask the state machine about one read item and act on its decision.
    async fn decide(&mut self, ready: Ready) {
        let facts = ready.facts();
        let content = facts.content;
        let sha256 = ready.sha256().map(crate::input::preflight::hex);
        let ref_sha256 = ready.ref_sha256().map(crate::input::preflight::hex);
        let Ready { item, key, checked } = ready;
        let decision = self.machine.admit(item, facts);
        if self.stop_on_index_error() {
            // The decision may rest on a lookup that answered "not recorded" wrongly: act on
            // none of it, so nothing is sent or recorded again. (A waiter is counted with the
            // others still waiting when the dispatch ends.)
            if !matches!(decision, Decision::Wait) {
                RunCounts::add(&self.counts.not_processed, 1);
            }
            if let (Decision::Lead(_), Some(c)) = (&decision, content) {
                let released = self.machine.complete(c, None, true);
                Box::pin(self.release(c, released)).await;
            }
            return;
        }
        match decision {
            Decision::Skip(item) => {
                RunCounts::add(&self.counts.skipped_done, 1);
                if facts.current {
                    RunCounts::add(&self.counts.skipped_unread, 1);
                } else {
                    self.note_version(&item, key, sha256, ref_sha256).await;
                }
                self.progress.skipped();
            }
            Decision::Refuse(item) => {
                let mut rec = worker::base_record(&item);
                rec.class = Some(Class::InvalidInput);
                if let Checked::Read(Err(refusal)) = checked {
                    if refusal.storage.is_some() {
                        rec.class = Some(Class::SourceError);
                    }
                    rec.sha256 = refusal.sha256.as_ref().map(crate::input::preflight::hex);
                    rec.size_bytes = refusal.size;
                    rec.format = refusal.detected.as_deref().map(str::to_string);
                    rec.error = Some(item.problem.clone().unwrap_or(refusal.reason));
                }
                self.write(rec.with_action()).await;
            }
            Decision::Lead(item) => match checked {
                Checked::Read(Ok(prepared)) => self.send(Job { item, prepared }, content).await,
                _ => unreachable!("the state machine leads only items it read and accepted"),
            },
            Decision::Follow(item, offset) => self.follow(item, offset).await,
            Decision::Wait => {}
        }
    }

    /// Stop the run when a lookup could not read the resume index (true then).
    fn stop_on_index_error(&self) -> bool {
        match self.quick.index.readable(&self.out_dir) {
            Ok(()) => false,
            Err(e) => {
                self.stop.fail(e.into());
                true
            }
        }
    }

    /// An item read again and skipped (same content as recorded): when its version is not the
    /// one recorded (a touched file, a copy with new times), or its source was gone, journal
    /// the new version so the next resume skips it without reading it (and lists it again).
    async fn note_version(
        &self,
        item: &Item,
        key: u128,
        sha256: Option<String>,
        ref_sha256: Option<String>,
    ) {
        let (Some(version), Some(sha256)) = (item.version_text(), sha256) else {
            return;
        };
        // A key whose source was gone and is listed again is journaled as back, whatever its
        // version.
        let latest = self.quick.index.latest(key);
        let gone = latest.is_some_and(|s| s.is_gone());
        if !gone && self.quick.index.version_of(key) == Some(journal::version_digest(&version)) {
            return;
        }
        if latest.is_some_and(|s| s.is_gone() && s.class() != Class::Result) {
            // Back without a result: counted again.
            self.without_result.fetch_add(1, Ordering::Relaxed);
        }
        let line = Unchanged {
            key: item.key.clone(),
            version,
            sha256,
            ref_sha256,
        };
        if self
            .to_writer
            .send(ToWriter::Unchanged(line))
            .await
            .is_err()
        {
            self.stop
                .fail(ScanError::Internal("the journal writer stopped".into()));
        }
    }

    /// Hand a leader to the workers (or count it as not processed if the run stops first).
    async fn send(&mut self, job: Job, content: Option<u128>) {
        tokio::select! {
            sent = self.job_tx.send(job) => {
                if sent.is_err() {
                    self.stop.fail(ScanError::Internal("every worker stopped".into()));
                }
            }
            _ = self.stop.token().cancelled() => {
                RunCounts::add(&self.counts.not_processed, 1);
                if let Some(c) = content {
                    let released = self.machine.complete(c, None, true);
                    Box::pin(self.release(c, released)).await;
                }
            }
        }
    }

    /// Act on what a finished leader released.
    async fn release(&mut self, content: u128, released: Released<Item>) {
        let Released {
            follow,
            offset,
            lead,
            dropped,
        } = released;
        RunCounts::add(&self.counts.not_processed, dropped.len());
        if let Some(offset) = offset {
            for item in follow {
                self.follow(item, offset).await;
            }
        }
        let Some(next) = lead else { return };
        // The next waiter leads: read it again (only leaders keep their bytes).
        let key = journal::key_digest(&next.key);
        let ready = source::read(next, key, &self.quick.storage, false).await;
        let same = ready.content() == Some(content);
        match ready.checked {
            Checked::Read(Ok(prepared)) if same => {
                let item = ready.item;
                self.send(Job { item, prepared }, Some(content)).await
            }
            _ => {
                // It changed or became unreadable meanwhile: the next waiter leads, and this
                // item is decided afresh.
                let stopped = self.stop.is_stopped();
                let released = self.machine.lead_failed(content, stopped);
                Box::pin(self.release(content, released)).await;
                Box::pin(self.decide(ready)).await;
            }
        }
    }

    /// Record `item` with the answer of the identical image recorded at `offset`.
    async fn follow(&mut self, item: Item, offset: u64) {
        match self.leaders.read(offset) {
            Ok(Line::Item(leader)) => {
                RunCounts::add(&self.counts.deduplicated, 1);
                self.write(worker::follower_record(&item, *leader)).await;
            }
            Ok(_) => self.stop.fail(ScanError::Internal(format!(
                "journal offset {offset} is not an item"
            ))),
            Err(e) => self.stop.fail(e.into()),
        }
    }

    async fn write(&self, record: Record) {
        let msg = ToWriter::Record {
            record: Box::new(record),
            leader: None,
        };
        if self.to_writer.send(msg).await.is_err() {
            // The writer ended; it has stopped the run with its own error.
            self.stop
                .fail(ScanError::Internal("the journal writer stopped".into()));
        }
    }

    /// After a stop, count what the input still holds as not processed, walking the rest of
    /// the sources without reading the files. Standard input is not waited for (its producer
    /// may still be writing): returns true when it was left unread.
    async fn count_rest(
        &mut self,
        cfg: &ScanConfig,
        mut events: impl futures::Stream<Item = Ev> + Unpin,
    ) -> bool {
        if cfg.sources.iter().any(|s| s.as_os_str() == "-") {
            return true;
        }
        while let Some(ev) = events.next().await {
            match ev {
                Ev::Ready(_) => {
                    RunCounts::add(&self.counts.inputs, 1);
                    RunCounts::add(&self.counts.not_processed, 1);
                }
                Ev::Ignored { path, reason } => self.ignore(path, reason),
                Ev::Incomplete(i) => self.incomplete(i),
                Ev::Warning(_) => {}
            }
        }
        false
    }

    /// Close the channels and wait for every stage to end.
    async fn drain(self) -> Drained {
        let Pipeline {
            job_tx,
            workers,
            to_writer,
            writer_task,
            lock,
            ticker,
            ignored,
            counts,
            progress,
            pacer,
            without_result,
            stop,
            started,
            quick,
            seen,
            run,
            journal_path,
            incomplete,
            ..
        } = self;
        drop(job_tx);
        for w in workers {
            let _ = w.await;
        }
        drop(to_writer);
        let writer = match writer_task.await {
            Ok(w) => w,
            Err(e) => {
                stop.fail(ScanError::Panicked {
                    stage: "journal writer",
                    message: e.to_string(),
                });
                None
            }
        };
        if let Some(t) = ticker {
            t.abort();
        }
        let listed = match ignored.finish() {
            Ok(l) => l.into_iter().collect(),
            Err(e) => {
                stop.fail(e);
                Vec::new()
            }
        };
        progress.finish();
        Drained {
            _lock: lock,
            writer,
            counts,
            pacer,
            without_result: without_result.load(Ordering::Relaxed),
            started,
            listed,
            gone: Some(GoneCheck {
                index: quick.index,
                seen,
                run,
            }),
            journal_path,
            incomplete,
        }
    }
}

/// The end line, the outputs, the summary; or, when a stage failed, its error.
async fn finish(
    cfg: &ScanConfig,
    api: Api,
    mut drained: Drained,
    stop: &Stop,
    input_unread: bool,
    prefix: Option<PrefixHash>,
) -> Result<Exit, ScanError> {
    // The balance after the last answer (a read, on its own budget).
    let balance = api.client.balance().await;
    if let Some(emu) = api.emulator {
        emu.shutdown().await;
    }
    let Some(mut writer) = drained.writer.take().filter(|_| !stop.has_failed()) else {
        return Err(failed(stop, &drained.counts));
    };
    let cause = stop.cause();
    // A run that read its whole input says which keys recorded earlier it no longer found.
    if cause.is_none() && !input_unread {
        let gone = journal_gone(cfg, &mut drained, &mut writer)?;
        drained.without_result -= gone;
    }
    let (mut end, exit) = end_line(&drained, cause.as_ref(), input_unread);
    end.balance = Some(balance);
    writer.gather(&Line::End(end.clone()))?;
    // The end line and the seal after it go to disk in one write.
    writer.seal()?;
    writer.flush()?;
    let (fed, fed_index) = writer.take_tap().unzip();
    writer.finish()?;
    // What the pipeline freed goes back to the system before the index and the outputs are
    // built, so the run's peak is the larger of the two phases, not their sum.
    release_free_memory();
    // The next resume reads the saved index and only the lines after it.
    let journal_path = cfg.out.join(journal::JOURNAL_FILE);
    if let Err(e) = journal::refresh_index(&journal_path, fed_index) {
        messages::warn(&format!(
            "could not save the resume index ({e}); the next run reads the whole journal instead"
        ));
    } else if let Some(signer) = &cfg.signer {
        let index = journal::index_path(&journal_path);
        signer
            .sign_existing(&index)
            .map_err(|source| ScanError::OutDir {
                op: "sign",
                path: index.clone(),
                source,
            })?;
    }
    release_free_memory();
    // Outputs built from this journal with nothing new since are left as they are (all of
    // them when the small files are still the ones last written and the ignored-files list is
    // the same; else the summary files are written again, describing this run too).
    let outputs = report::refresh_outputs(
        &cfg.out,
        &ReportOptions {
            price_per_call: Some(cfg.price_per_call),
            results_format: cfg.results_format,
            include_face_attributes: cfg.include_face_attributes,
            journal_sha256: journal_hash(&drained.journal_path, prefix).await,
        },
        &drained.listed,
        fed,
    )?;
    if let Some(signer) = &cfg.signer {
        report::sign_outputs(&cfg.out, signer)?;
    }
    if !cfg.quiet {
        // The summary names the stop reason and what to do next.
        messages::note(&outputs.summary.render_text());
        for note in outputs.notes() {
            messages::note(&note);
        }
        if end.ignored > 0 {
            messages::note(&format!(
                "{} file(s) were ignored (not images, links not followed, special files): each \
                 is listed with its reason in {}",
                end.ignored,
                cfg.out.join(ignored::FILE).display()
            ));
        }
        messages::note(&report::report_hash_line(&outputs));
    } else if let Some(c) = &cause {
        // Even a quiet run says why it stopped early.
        messages::note(&format!("{}: {}", messages::PREFIX, c.describe()));
    }
    Ok(exit)
}

/// Journal a `gone` line for each key recorded earlier (by this shard) whose latest line is a
/// record and that this run's sources no longer listed, when the listing was whole; returns
/// how many of them had no result (they leave that count too).
fn journal_gone(
    cfg: &ScanConfig,
    drained: &mut Drained,
    writer: &mut JournalWriter,
) -> Result<i64, ScanError> {
    let Some(GoneCheck {
        index,
        seen,
        run: (since, run_id),
    }) = drained.gone.take()
    else {
        return Ok(0);
    };
    // A key is taken for gone only when the source its record names is one this run read: a
    // run over other sources (a daily folder of new uploads, say) says nothing of the others.
    let sources: Vec<String> = cfg
        .sources
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let seen = match seen.finish() {
        Ok(seen) => seen,
        Err(why) => {
            tracing::info!("no key is taken for gone: {why}");
            return Ok(0);
        }
    };
    // Another split of the keys: what this shard does not list may be another's.
    if index.keys() == 0 || index.shard_changed {
        return Ok(0);
    }
    let (digests, without_result) = gone::missing(&index, seen).map_err(
        journal::JournalError::io("read the resume index in", &cfg.out),
    )?;
    if digests.is_empty() {
        return Ok(0);
    }
    // The pass reads the lines on disk: every one this run wrote so far is complete there.
    writer.flush()?;
    let mut left_without_result = 0i64;
    let marked = gone::each_key_of(&drained.journal_path, &digests, |key, source, at| {
        if !source.is_some_and(|s| sources.iter().any(|x| x == s)) {
            return Ok(false);
        }
        left_without_result += i64::from(without_result[at]);
        writer
            .gather(&Line::Gone(journal::Gone {
                key,
                since: since.clone(),
                run_id: run_id.clone(),
            }))
            .map(|_| true)
    })?;
    if !cfg.quiet && marked > 0 {
        messages::note(&format!(
            "{marked} item(s) recorded earlier are no longer in the sources (deleted, renamed \
             or replaced by a link): their last result moves from the results to {}",
            cfg.out.join(report::gone::GONE_FILE).display()
        ));
    }
    Ok(left_without_result)
}

/// The journal's SHA-256 from the hash of its first bytes and what follows them; `None` (the
/// outputs then read it whole) when that hash was not made or failed.
async fn journal_hash(path: &std::path::Path, prefix: Option<PrefixHash>) -> Option<[u8; 32]> {
    let (len, job) = prefix?;
    let state = job.await.ok()?.ok()?;
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || journal::finish_file_hash(&path, state, len))
        .await
        .ok()?
        .ok()
}

/// Return the allocator's free memory to the system (glibc keeps freed memory of every
/// thread's arena otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Before the first call: the balance, and a warning naming `--max-requests` when the
/// estimate for the items left (`calls`: at most that many) exceeds it.
fn warn_if_short(cfg: &ScanConfig, balance: &crate::audit::Balance, calls: Option<u64>) {
    use crate::audit::{Coverage, coverage};
    let Some(calls) = calls.map(|c| cfg.max_requests.map_or(c, |m| c.min(m))) else {
        if !cfg.quiet {
            messages::note(&format!("Balance before the run: {}", balance.describe()));
        }
        return;
    };
    let estimate = calls as f64 * cfg.price_per_call;
    let line = format!(
        "Balance before the run: {}; this run makes at most {calls} billable call(s), about \
         US${estimate:.2} at US${:.2}",
        balance.describe(),
        cfg.price_per_call
    );
    match coverage(balance, estimate, calls) {
        Coverage::Short => messages::warn(&format!(
            "{line}: the balance does not cover it. Didit stops answering when the credits run \
             out (the run then stops, resumable); to spend no more than the balance, cap the calls \
             with --max-requests {}",
            crate::audit::calls_covered(balance, cfg.price_per_call).unwrap_or(0)
        )),
        Coverage::Covers if !cfg.quiet => {
            messages::note(&format!("{line}: the balance covers it."))
        }
        Coverage::Unknown if !cfg.quiet => messages::note(&format!(
            "{line}; whether the balance covers it is unknown."
        )),
        _ => {}
    }
}

/// The error a failed run ends with, after saying what happened to the requests in flight.
fn failed(stop: &Stop, counts: &RunCounts) -> ScanError {
    let unrecorded = counts.unrecorded.load(Ordering::Relaxed);
    if unrecorded > 0 {
        messages::warn(&format!(
            "{unrecorded} answer(s) arrived after the journal could no longer be written: those \
             requests may have been billed. Their `sending` lines are in the journal, so the \
             next run screens them again and counts each as a possible double charge"
        ));
    }
    stop.take_failure()
        .unwrap_or_else(|| ScanError::Internal("the journal writer stopped".into()))
}

fn end_line(drained: &Drained, cause: Option<&StopCause>, input_unread: bool) -> (RunEnd, Exit) {
    let counts = &drained.counts;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let not_processed = load(&counts.not_processed);
    // The exit code covers the whole journal (earlier runs too).
    // A population that is not whole is never "completed": its own outcome and exit code
    // (unless the run stopped for a cause of its own, which says more).
    let exit_code = match cause {
        Some(c) => c.exit_code(),
        None if drained.incomplete.is_some() => Exit::Incomplete,
        None if not_processed == 0 && drained.without_result == 0 => Exit::Ok,
        None => Exit::SomeFailed,
    };
    let end = RunEnd {
        finished_at: now_rfc3339(),
        wall_secs: drained.started.elapsed().as_secs_f64(),
        outcome: match cause {
            Some(c) => c.outcome(),
            None if drained.incomplete.is_some() => RunOutcome::Incomplete,
            None => RunOutcome::Completed,
        },
        stop_reason: cause
            .map(StopCause::describe)
            .or_else(|| drained.incomplete.as_ref().map(|i| i.warning())),
        exit_code: exit_code.code(),
        inputs: load(&counts.inputs),
        ignored: load(&counts.ignored),
        skipped_done: load(&counts.skipped_done),
        skipped_unread: load(&counts.skipped_unread),
        deduplicated: load(&counts.deduplicated),
        recorded: load(&counts.recorded),
        not_processed,
        requests: load(&counts.requests),
        achieved_rate_per_min: drained
            .pacer
            .sends()
            .achieved_per_second()
            .map(|r| r * 60.0),
        input_unread,
        retry_after_capped: load(&counts.retry_after_capped),
        balance: None,
        incomplete: drained.incomplete.clone(),
    };
    (end, exit_code)
}

/// Every source checked once ([`input::Plan`]), on a blocking thread: the items counted for
/// the progress bar (a shard's share, by the key as listed: a rare renamed duplicate key may
/// land elsewhere) unless quiet, and the first folder or manifest with no item found.
async fn plan(cfg: &ScanConfig) -> Result<input::Plan, ScanError> {
    let (sources, opts) = (cfg.sources.clone(), cfg.source_options.clone());
    let shard = cfg.shard.as_ref().map(|p| p.shard);
    let (count, empty) = (!cfg.quiet && !cfg.dry_run, !cfg.allow_empty);
    tokio::task::spawn_blocking(move || {
        let keep = |key: &str| shard.is_none_or(|s| s.holds(journal::key_digest(key)));
        let tally = input::Tally {
            count,
            empty,
            keep: Some(&keep),
        };
        input::Plan::new(&sources, &opts, tally)
    })
    .await
    .map_err(|e| ScanError::Internal(e.to_string()))?
    .map_err(ScanError::from)
}

/// The first listing page of every bucket source: a refusal of the credentials or the bucket
/// stops the run at once (exit 7). The inner result: a source with no image (the first, in the
/// order given; `empty` is the plan's) is a usage error (exit 2), unless `--allow-empty`.
async fn check_sources(
    cfg: &ScanConfig,
    mut empty: Option<usize>,
) -> Result<Result<(), ScanError>, ScanError> {
    for (at, src) in cfg.sources.iter().enumerate() {
        if let Some(uri) = input::bucket::uri_of(src) {
            let shown = src.display().to_string();
            let first = input::bucket::check_listing(&uri, &shown, &cfg.source_options)
                .await
                .map_err(input::InputError::from)?;
            if first == input::bucket::FirstPage::NoImages && empty.is_none_or(|e| at < e) {
                empty = Some(at);
            }
        }
    }
    Ok(match empty.filter(|_| !cfg.allow_empty) {
        Some(at) => Err(input::InputError::Empty(cfg.sources[at].display().to_string()).into()),
        None => Ok(()),
    })
}
