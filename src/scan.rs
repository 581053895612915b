//! The `scan` pipeline that joins the stages: sources → preflight → skip done / dedupe →
//! pacer → N workers submitting with retries → one journal writer → outputs. Bounded
//! channels everywhere; only compact indexes grow with the backlog.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ScanConfig;
use crate::didit::{Client, ClientConfig, FatalKind, Outcome, Params, Upload};
use crate::input::preflight::{self, Prepared};
use crate::input::{self, Event, Item, SourceOptions};
use crate::journal::{
    self, DirLock, Index, JournalError, Line, Reader, RunEnd, RunInfo, Settings, Writer,
};
use crate::pace::Pacer;
use crate::progress::{self, Progress};
use crate::record::{Class, Record};
use crate::report::{self, ReportOptions};
use crate::secret::ApiKey;
use crate::submit::{Budget, Final, Submission, Submitter};
use crate::{emulator, exit};

/// Files preflighted (read and hashed) at once, ahead of the dispatcher.
const PREFLIGHT_AHEAD: usize = 4;
/// Items that may wait for an identical image in flight before the dispatcher stops reading.
const MAX_WAITING: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error(transparent)]
    Client(#[from] crate::didit::ClientError),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error("cannot prepare the output folder {path}: {source}")]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScanError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ScanError::Input(_) | ScanError::Client(_) | ScanError::OutDir { .. } => exit::USAGE,
            ScanError::Journal(
                JournalError::Locked { .. }
                | JournalError::SettingsChanged { .. }
                | JournalError::Corrupt { .. }
                | JournalError::NotAJournal { .. },
            ) => exit::USAGE,
            _ => exit::SOME_FAILED,
        }
    }
}

/// Why a run stopped before the end of its input.
#[derive(Debug, Clone)]
pub enum StopCause {
    Fatal { kind: FatalKind, message: String },
    Budget { limit: u64 },
    Interrupted,
    Terminated,
}

impl StopCause {
    pub fn exit_code(&self) -> i32 {
        match self {
            StopCause::Fatal { kind, .. } => kind.exit_code(),
            StopCause::Budget { .. } => exit::CREDITS,
            StopCause::Interrupted => exit::INTERRUPTED,
            StopCause::Terminated => exit::TERMINATED,
        }
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            StopCause::Fatal { .. } | StopCause::Budget { .. } => "stopped",
            StopCause::Interrupted => "interrupted",
            StopCause::Terminated => "terminated",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StopCause::Fatal { kind, message } => {
                format!("{} (the API said: {message})", kind.explain())
            }
            StopCause::Budget { limit } => format!(
                "the --max-requests budget of {limit} billable calls was reached; rerun the same \
                 command (with a new budget) to screen the rest"
            ),
            StopCause::Interrupted => {
                "interrupted (Ctrl-C); rerun the same command to screen the rest".to_string()
            }
            StopCause::Terminated => {
                "terminated (SIGTERM); rerun the same command to screen the rest".to_string()
            }
        }
    }
}

/// The run's stop switch: the first cause wins; cancelling stops new submissions.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
}

impl Stop {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            cause: Arc::default(),
        }
    }

    pub fn stop(&self, cause: StopCause) {
        let mut slot = self.cause.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(cause);
        }
        self.token.cancel();
    }

    pub fn cause(&self) -> Option<StopCause> {
        self.cause.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// An item after preflight.
struct Ready {
    item: Item,
    checked: Result<Prepared, preflight::Refusal>,
}

/// What the workers receive.
struct Job {
    item: Item,
    prepared: Prepared,
}

/// What the writer receives.
enum ToWriter {
    /// A finished record; `leader` is the content digest when identical items wait on it.
    Record {
        record: Box<Record>,
        leader: Option<u128>,
    },
    /// A leader that ended without a record (stopped before it was sent).
    Unsent { leader: Option<u128> },
}

/// What the dispatcher learns when a leader finishes.
struct Completion {
    content: u128,
    /// Offset of a result (or rejection) identical items can reuse.
    reusable: Option<u64>,
}

enum Seen {
    InFlight(Vec<Item>),
    Done(u64),
}

/// Counters of this run that are not per record.
#[derive(Default)]
struct RunCounts {
    inputs: AtomicU64,
    ignored: AtomicU64,
    skipped_done: AtomicU64,
    deduplicated: AtomicU64,
    recorded: AtomicU64,
    not_processed: AtomicU64,
    requests: AtomicU64,
}

/// Run `scan` to the end (or until stopped) and return the exit code.
pub async fn run(cfg: ScanConfig, stop: Stop) -> Result<i32, ScanError> {
    // Validate every source before touching the out dir.
    input::open(&cfg.sources, &cfg.source_options)?;
    if cfg.dry_run {
        return dry_run(&cfg, &stop).await;
    }

    let (client, emu) = connect(&cfg).await?;
    let settings = Settings {
        threshold: cfg.params.threshold,
        rotate_image: cfg.params.rotate_image,
        save_api_request: cfg.params.save_api_request,
        api_host: client.host(),
        simulated: cfg.api.emulator,
    };

    let OpenJournal {
        _lock,
        index,
        good_len,
        resumed,
        journal_path,
    } = open_journal(&cfg, &settings)?;
    let index = Arc::new(index);
    // Keys in the journal whose latest record has no result; kept current as records are
    // written, so the exit code needs no extra pass over the journal.
    let without_result = Arc::new(AtomicI64::new(
        index
            .by_key
            .values()
            .filter(|d| d.class != Class::Result)
            .count() as i64,
    ));
    let mut writer = Writer::open(&journal_path, good_len)?;
    let started_at = now_rfc3339();
    writer.append(&Line::Run(RunInfo {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        settings: settings.clone(),
        sources: cfg
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        rate: cfg.rate.to_string(),
        concurrency: cfg.concurrency,
        resumed,
        dedupe: cfg.dedupe,
        max_requests: cfg.max_requests,
    }))?;
    writer.sync()?;

    announce(&cfg, resumed);

    let total = count_inputs(&cfg).await;
    let progress = Progress::new(total, cfg.quiet);
    progress.set_rate(Some(cfg.rate.per_second()));
    let counts = Arc::new(RunCounts::default());
    let started = Instant::now();

    let pacer = Arc::new(Pacer::new(cfg.rate));
    let submitter = Arc::new(Submitter {
        client: client.clone(),
        pacer: pacer.clone(),
        policy: cfg.retry,
        budget: cfg.max_requests.map(|n| Arc::new(Budget::new(n))),
        stop: stop.token().clone(),
        retry_unknown: cfg.retry_unknown,
    });

    // Writer task: the only one that touches the journal.
    let (to_writer, writer_rx) = mpsc::channel::<ToWriter>(cfg.concurrency * 2 + 16);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let writer_task = tokio::spawn(write_records(
        writer,
        writer_rx,
        done_tx,
        WriterCtx {
            progress: progress.clone(),
            counts: counts.clone(),
            retry_failed: cfg.retry_failed,
            pacer: pacer.clone(),
            index: index.clone(),
            without_result: without_result.clone(),
        },
    ));

    // Plain progress lines when stderr is not a terminal.
    let ticker = progress.is_plain().then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(progress::PLAIN_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                progress.tick_plain();
            }
        })
    });

    // Workers.
    let (job_tx, job_rx) = mpsc::channel::<Job>(cfg.concurrency);
    let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
    let mut workers = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        let ctx = WorkerCtx {
            jobs: job_rx.clone(),
            submitter: submitter.clone(),
            params: cfg.params.clone(),
            to_writer: to_writer.clone(),
            stop: stop.clone(),
            counts: counts.clone(),
            dedupe: cfg.dedupe,
        };
        workers.push(tokio::spawn(worker(ctx)));
    }

    // Dispatcher: in input order, skip what is done, hold back duplicates, hand out jobs.
    let mut events = preflighted(&cfg, stop.clone());
    let mut seen: HashMap<u128, Seen> = HashMap::new();
    let mut keys = RunKeys::new(cfg.sources.len());
    let mut waiting = 0usize;
    let mut in_flight_leaders = 0usize;
    let mut input_done = false;
    let mut dispatch = Dispatch {
        cfg: &cfg,
        index: &index,
        leaders: journal::LinesAt::open(&journal_path)?,
        job_tx: &job_tx,
        to_writer: &to_writer,
        counts: &counts,
        progress: &progress,
        stop: &stop,
    };
    loop {
        if (input_done || stop.is_stopped()) && in_flight_leaders == 0 {
            break;
        }
        tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                in_flight_leaders = in_flight_leaders.saturating_sub(1);
                let Some(Seen::InFlight(waiters)) = seen.remove(&done.content) else { continue };
                waiting -= waiters.len();
                match done.reusable {
                    Some(offset) => {
                        seen.insert(done.content, Seen::Done(offset));
                        for item in waiters {
                            dispatch.follower(item, offset).await?;
                        }
                    }
                    None if stop.is_stopped() => {
                        counts.not_processed.fetch_add(waiters.len() as u64, Ordering::Relaxed);
                    }
                    None => {
                        // The first one to try did not get a reusable answer: the next one tries.
                        let mut rest = waiters.into_iter();
                        if let Some(next) = rest.next() {
                            let rest: Vec<Item> = rest.collect();
                            waiting += rest.len();
                            let leader = tokio::task::spawn_blocking(move || {
                                let checked = preflight::preflight(&next.path);
                                Ready { item: next, checked }
                            })
                            .await
                            .map_err(|e| ScanError::Internal(e.to_string()))?;
                            match dispatch.ready(leader, &mut seen, rest).await? {
                                Dispatched::Leader => in_flight_leaders += 1,
                                Dispatched::Waiting | Dispatched::Handled => {}
                            }
                        }
                    }
                }
            }
            next = events.next(), if !input_done && !stop.is_stopped() && waiting < MAX_WAITING => {
                match next {
                    None => input_done = true,
                    Some(Ev::Ignored) => { counts.ignored.fetch_add(1, Ordering::Relaxed); }
                    Some(Ev::Warning(w)) => progress::eprint_line(&format!("warning: {w}")),
                    Some(Ev::Ready(mut ready)) => {
                        counts.inputs.fetch_add(1, Ordering::Relaxed);
                        keys.make_unique(&mut ready.item);
                        match dispatch.ready(*ready, &mut seen, Vec::new()).await? {
                            Dispatched::Leader => in_flight_leaders += 1,
                            Dispatched::Waiting => waiting += 1,
                            Dispatched::Handled => {}
                        }
                    }
                }
            }
            _ = stop.token().cancelled(), if !stop.is_stopped() => {}
            else => break,
        }
    }
    // Whatever the input still holds is not processed in this run: count it, by walking the
    // rest of the sources without reading the files. Standard input is not waited for (its
    // producer may still be writing): the end line then says the input was not read to its end.
    let mut input_unread = false;
    if stop.is_stopped() {
        counts
            .not_processed
            .fetch_add(waiting as u64, Ordering::Relaxed);
        if !input_done {
            if reads_stdin(&cfg) {
                input_unread = true;
            } else {
                while let Some(ev) = events.next().await {
                    match ev {
                        Ev::Ready(_) => {
                            counts.inputs.fetch_add(1, Ordering::Relaxed);
                            counts.not_processed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ev::Ignored => {
                            counts.ignored.fetch_add(1, Ordering::Relaxed);
                        }
                        Ev::Warning(_) => {}
                    }
                }
            }
        }
    }
    drop(events);
    drop(job_tx);
    for w in workers {
        w.await.map_err(|e| ScanError::Internal(e.to_string()))?;
    }
    drop(to_writer);
    let mut writer = writer_task
        .await
        .map_err(|e| ScanError::Internal(e.to_string()))??;
    if let Some(t) = ticker {
        t.abort();
    }
    progress.finish();

    // End line, outputs, summary.
    let cause = stop.cause();
    let wall = started.elapsed();
    let requests = counts.requests.load(Ordering::Relaxed);
    let achieved = pacer.sends().achieved_per_second().map(|r| r * 60.0);
    let mut end = RunEnd {
        finished_at: now_rfc3339(),
        wall_secs: wall.as_secs_f64(),
        outcome: cause
            .as_ref()
            .map_or("completed", |c| c.outcome())
            .to_string(),
        stop_reason: cause.as_ref().map(StopCause::describe),
        exit_code: 0,
        inputs: counts.inputs.load(Ordering::Relaxed),
        ignored: counts.ignored.load(Ordering::Relaxed),
        skipped_done: counts.skipped_done.load(Ordering::Relaxed),
        deduplicated: counts.deduplicated.load(Ordering::Relaxed),
        recorded: counts.recorded.load(Ordering::Relaxed),
        not_processed: counts.not_processed.load(Ordering::Relaxed),
        requests,
        achieved_rate_per_min: achieved,
        input_unread,
    };
    // The exit code covers the whole journal (earlier runs too); the end line records it,
    // then every output is rebuilt once, including that line.
    let provisional = match &cause {
        Some(c) => c.exit_code(),
        None if end.not_processed == 0 && without_result.load(Ordering::Relaxed) == 0 => exit::OK,
        None => exit::SOME_FAILED,
    };
    end.exit_code = provisional;
    writer.append(&Line::End(end))?;
    writer.finish()?;
    let summary = report::write_outputs(
        &cfg.out,
        &ReportOptions {
            price_per_call: cfg.price_per_call,
        },
    )?;
    if let Some(emu) = emu {
        emu.shutdown().await;
    }
    if !cfg.quiet {
        // The summary names the stop reason and what to do next.
        eprintln!("{}", summary.render_text());
    } else if let Some(c) = &cause {
        // Even a quiet run says why it stopped early.
        eprintln!("liveness-batch: {}", c.describe());
    }
    Ok(provisional)
}

/// The API: the real one, or an emulator started in this process (with a random key and a
/// realistic latency).
async fn connect(cfg: &ScanConfig) -> Result<(Arc<Client>, Option<emulator::Emulator>), ScanError> {
    let (api_key, base_url, emu) = if cfg.api.emulator {
        let key = format!("emulator-{}", uuid::Uuid::new_v4().simple());
        let mut ec = emulator::EmulatorConfig::new(key.clone());
        ec.latency = Duration::from_millis(150);
        ec.jitter = Duration::from_millis(120);
        let emu = emulator::start(ec, 0).await?;
        let url = emu.base_url();
        let key = ApiKey::new(key).map_err(|e| ScanError::Internal(e.to_string()))?;
        (key, url, Some(emu))
    } else {
        let key = cfg
            .api
            .key
            .clone()
            .ok_or_else(|| ScanError::Internal("no API key".into()))?;
        (key, cfg.api.base_url.clone(), None)
    };
    let client = Arc::new(Client::new(ClientConfig {
        base_url,
        api_key,
        timeout: cfg.api.timeout,
    })?);
    Ok((client, emu))
}

/// The out dir, locked, with its journal indexed (a resume) or absent (a new run).
struct OpenJournal {
    _lock: DirLock,
    index: Index,
    /// Where the complete lines end (a torn tail past it is cut when the writer opens).
    good_len: Option<u64>,
    resumed: bool,
    journal_path: PathBuf,
}

/// Create and lock the out dir; set an old journal aside with `--fresh`; index an existing one,
/// refusing changed settings unless `--force`.
fn open_journal(cfg: &ScanConfig, settings: &Settings) -> Result<OpenJournal, ScanError> {
    journal::create_private_dir(&cfg.out).map_err(|source| ScanError::OutDir {
        path: cfg.out.clone(),
        source,
    })?;
    let lock = DirLock::acquire(&cfg.out)?;
    let journal_path = cfg.out.join(journal::JOURNAL_FILE);
    if cfg.fresh && journal_path.exists() {
        let kept = set_aside(&journal_path)?;
        progress::eprint_line(&format!(
            "--fresh: the previous journal was kept as {}",
            kept.display()
        ));
    }

    // Resume: index what is done, refuse changed settings, cut a torn tail.
    let (index, good_len, resumed) = if journal_path.exists() {
        let mut reader = Reader::open(&journal_path)?;
        let index = Index::build(&mut reader)?;
        if let Some(torn) = reader.torn_tail() {
            progress::eprint_line(&format!(
                "warning: the journal's last line (line {}, {} bytes) was cut short by a crash; \
                 that item will be screened again",
                torn.line, torn.len
            ));
        }
        if let Some(old) = &index.settings {
            let diff = settings.differences(old);
            if !diff.is_empty() {
                if !cfg.force {
                    return Err(JournalError::SettingsChanged {
                        dir: cfg.out.clone(),
                        differences: diff,
                    }
                    .into());
                }
                progress::eprint_line(&format!(
                    "warning: --force: resuming with different settings ({})",
                    diff.join("; ")
                ));
            }
        }
        (index, Some(reader.good_len()), true)
    } else {
        (Index::default(), None, false)
    };
    Ok(OpenJournal {
        _lock: lock,
        index,
        good_len,
        resumed,
        journal_path,
    })
}

/// The opening lines on stderr: what runs where, and whether it is simulated.
fn announce(cfg: &ScanConfig, resumed: bool) {
    if !cfg.quiet {
        if cfg.api.emulator {
            progress::eprint_line(
                "SIMULATED: screening against the built-in emulator, not Didit. Results are not real.",
            );
        }
        progress::eprint_line(&format!(
            "{} {} at {} with {} in flight into {}{}",
            if resumed { "Resuming" } else { "Screening" },
            cfg.sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            cfg.rate,
            cfg.concurrency,
            cfg.out.display(),
            if cfg.params.save_api_request {
                " (save_api_request=true: every image becomes a stored Didit session)"
            } else {
                ""
            }
        ));
    }
}

/// What the journal writer task shares with the run.
struct WriterCtx {
    progress: Progress,
    counts: Arc<RunCounts>,
    retry_failed: bool,
    pacer: Arc<Pacer>,
    index: Arc<Index>,
    without_result: Arc<AtomicI64>,
}

/// The writer task: the only one that touches the journal. It appends each record, keeps the
/// progress and the exit-code count current, syncs at least every second, and tells the
/// dispatcher when a leader of identical images finished.
async fn write_records(
    mut writer: Writer,
    mut rx: mpsc::Receiver<ToWriter>,
    done_tx: mpsc::UnboundedSender<Completion>,
    ctx: WriterCtx,
) -> Result<Writer, JournalError> {
    let mut tick = tokio::time::interval(journal::SYNC_EVERY);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                match msg {
                    ToWriter::Record { record, leader } => {
                        ctx.counts.recorded.fetch_add(1, Ordering::Relaxed);
                        ctx.progress.set_rate(ctx.pacer.current_rate());
                        ctx.progress.record(&record);
                        let class = record.class;
                        let had_no_result = ctx
                            .index
                            .by_key
                            .get(&journal::key_digest(&record.key))
                            .is_some_and(|d| d.class != Class::Result);
                        let has_no_result = class != Some(Class::Result);
                        ctx.without_result.fetch_add(
                            i64::from(has_no_result) - i64::from(had_no_result),
                            Ordering::Relaxed,
                        );
                        let offset = writer.append(&Line::Item(record))?;
                        if let Some(content) = leader {
                            let reusable = class
                                .is_some_and(|c| journal::reusable_class(c, ctx.retry_failed))
                                .then_some(offset);
                            let _ = done_tx.send(Completion { content, reusable });
                        }
                    }
                    ToWriter::Unsent { leader } => {
                        if let Some(content) = leader {
                            let _ = done_tx.send(Completion { content, reusable: None });
                        }
                    }
                }
            }
            _ = tick.tick() => writer.sync()?,
        }
    }
    writer.sync()?;
    Ok(writer)
}

/// Keys seen in this run, as compact digests. Two sources can hold the same relative path
/// (`a/x.jpg` in two folders): the later one is keyed `a/x.jpg [SOURCE]` so both are screened
/// and neither overwrites the other's result.
struct RunKeys {
    /// None with a single source: a folder's paths and a manifest's ids are unique already.
    seen: Option<std::collections::HashSet<u128>>,
}

impl RunKeys {
    fn new(sources: usize) -> Self {
        Self {
            seen: (sources > 1).then(Default::default),
        }
    }

    fn make_unique(&mut self, item: &mut Item) {
        let Some(seen) = self.seen.as_mut() else {
            return;
        };
        if seen.insert(journal::key_digest(&item.key)) {
            return;
        }
        let renamed = format!("{} [{}]", item.key, item.source);
        progress::eprint_line(&format!(
            "warning: the key {:?} appears in more than one source; this one is keyed {:?}",
            item.key, renamed
        ));
        seen.insert(journal::key_digest(&renamed));
        item.key = renamed;
    }
}

/// Preflight stream items.
enum Ev {
    Ready(Box<Ready>),
    Ignored,
    Warning(String),
}

/// Sources walked on a blocking thread, preflighted a few at a time, in input order.
/// Once the run is stopped, items are passed through without reading them (to be counted).
fn preflighted(cfg: &ScanConfig, stop: Stop) -> impl futures::Stream<Item = Ev> + Unpin + use<> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    let sources = cfg.sources.clone();
    let opts = cfg.source_options.clone();
    std::thread::spawn(move || {
        let iter = match input::open(&sources, &opts) {
            Ok(it) => it,
            Err(e) => {
                let _ = tx.blocking_send(Event::Warning(e.to_string()));
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
                        Event::Ignored { .. } => Ev::Ignored,
                        Event::Warning(w) => Ev::Warning(w),
                        Event::Item(item) => {
                            if stop.is_stopped() {
                                let refusal = preflight::Refusal {
                                    reason: "not read: the run stopped".into(),
                                    sha256: None,
                                    size: None,
                                    detected: None,
                                };
                                return Ev::Ready(Box::new(Ready {
                                    item,
                                    checked: Err(refusal),
                                }));
                            }
                            let path = item.path.clone();
                            let skip = item.problem.is_some();
                            let checked = tokio::task::spawn_blocking(move || {
                                if skip {
                                    Err(preflight::Refusal {
                                        reason: String::new(),
                                        sha256: None,
                                        size: None,
                                        detected: None,
                                    })
                                } else {
                                    preflight::preflight(&path)
                                }
                            })
                            .await
                            .unwrap_or_else(|e| {
                                Err(preflight::Refusal {
                                    reason: format!("preflight failed: {e}"),
                                    sha256: None,
                                    size: None,
                                    detected: None,
                                })
                            });
                            Ev::Ready(Box::new(Ready { item, checked }))
                        }
                    }
                }
            })
            .buffered(PREFLIGHT_AHEAD),
    )
}

enum Dispatched {
    /// Sent to the workers; identical items will wait for it.
    Leader,
    /// Waiting for an identical image in flight.
    Waiting,
    /// Recorded, skipped, or sent without dedupe tracking.
    Handled,
}

struct Dispatch<'a> {
    cfg: &'a ScanConfig,
    index: &'a Index,
    /// Reads back the records that identical images reuse.
    leaders: journal::LinesAt,
    job_tx: &'a mpsc::Sender<Job>,
    to_writer: &'a mpsc::Sender<ToWriter>,
    counts: &'a RunCounts,
    progress: &'a Progress,
    stop: &'a Stop,
}

impl Dispatch<'_> {
    async fn write(&self, record: Record, leader: Option<u128>) -> Result<(), ScanError> {
        self.to_writer
            .send(ToWriter::Record {
                record: Box::new(record),
                leader,
            })
            .await
            .map_err(|_| ScanError::Internal("the journal writer stopped".into()))
    }

    /// Decide what happens to one preflighted item. `waiters` are identical items that were
    /// waiting on a previous leader and now wait on this one.
    async fn ready(
        &mut self,
        ready: Ready,
        seen: &mut HashMap<u128, Seen>,
        waiters: Vec<Item>,
    ) -> Result<Dispatched, ScanError> {
        let Ready { item, checked } = ready;
        let sha = match &checked {
            Ok(p) => Some(preflight::hex(&p.sha256)),
            Err(r) => r.sha256.as_ref().map(preflight::hex),
        };
        let content = sha.as_deref().and_then(journal::content_digest);
        if self
            .index
            .is_done(&item.key, content, self.cfg.retry_failed)
        {
            self.counts.skipped_done.fetch_add(1, Ordering::Relaxed);
            self.progress.skipped();
            return Ok(Dispatched::Handled);
        }
        let prepared = match checked {
            Err(refusal) => {
                let mut rec = base_record(&item);
                rec.sha256 = sha;
                rec.size_bytes = refusal.size;
                rec.format = refusal.detected.clone();
                rec.class = Some(Class::InvalidInput);
                rec.error = Some(item.problem.clone().unwrap_or(refusal.reason));
                self.write(rec.with_action(), None).await?;
                return Ok(Dispatched::Handled);
            }
            Ok(p) => p,
        };
        let content = content.expect("a prepared item has a hash");
        if self.cfg.dedupe {
            let reusable = match seen.get_mut(&content) {
                Some(Seen::InFlight(list)) => {
                    list.push(item);
                    list.extend(waiters);
                    return Ok(Dispatched::Waiting);
                }
                Some(Seen::Done(offset)) => Some(*offset),
                None => self.index.reusable(content, self.cfg.retry_failed),
            };
            if let Some(offset) = reusable {
                self.follower(item, offset).await?;
                for w in waiters {
                    self.follower(w, offset).await?;
                }
                return Ok(Dispatched::Handled);
            }
            seen.insert(content, Seen::InFlight(waiters));
        }
        let job = Job { item, prepared };
        tokio::select! {
            sent = self.job_tx.send(job) => sent.map_err(|_| ScanError::Internal("the workers stopped".into()))?,
            _ = self.stop.token().cancelled() => {
                self.counts.not_processed.fetch_add(1, Ordering::Relaxed);
                if self.cfg.dedupe {
                    // Nobody will complete this leader; release its waiters as not processed.
                    if let Some(Seen::InFlight(w)) = seen.remove(&content) {
                        self.counts.not_processed.fetch_add(w.len() as u64, Ordering::Relaxed);
                    }
                }
                return Ok(Dispatched::Handled);
            }
        }
        Ok(if self.cfg.dedupe {
            Dispatched::Leader
        } else {
            Dispatched::Handled
        })
    }

    /// Record `item` with the result of the identical image recorded at `offset`.
    async fn follower(&mut self, item: Item, offset: u64) -> Result<(), ScanError> {
        let Line::Item(leader) = self.leaders.read(offset)? else {
            return Err(ScanError::Internal(format!(
                "journal offset {offset} is not an item"
            )));
        };
        let mut rec = base_record(&item);
        rec.sha256 = leader.sha256.clone();
        rec.size_bytes = leader.size_bytes;
        rec.format = leader.format.clone();
        rec.class = leader.class;
        rec.status = leader.status;
        rec.score = leader.score;
        rec.face_quality = leader.face_quality;
        rec.face_luminance = leader.face_luminance;
        rec.warnings = leader.warnings.clone();
        rec.face = leader.face.clone();
        rec.request_id = leader.request_id.clone();
        rec.created_at = leader.created_at.clone();
        rec.http_status = leader.http_status;
        rec.error = leader.error.clone();
        rec.error_field = leader.error_field.clone();
        rec.duplicate_of = Some(leader.duplicate_of.clone().unwrap_or(leader.key.clone()));
        self.counts.deduplicated.fetch_add(1, Ordering::Relaxed);
        self.write(rec.with_action(), None).await
    }
}

struct WorkerCtx {
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    submitter: Arc<Submitter>,
    params: Params,
    to_writer: mpsc::Sender<ToWriter>,
    stop: Stop,
    counts: Arc<RunCounts>,
    dedupe: bool,
}

async fn worker(ctx: WorkerCtx) {
    loop {
        let job = { ctx.jobs.lock().await.recv().await };
        let Some(Job { item, prepared }) = job else {
            return;
        };
        let content = journal::content_digest_of(&prepared.sha256);
        let leader = ctx.dedupe.then_some(content);
        if ctx.stop.is_stopped() {
            ctx.counts.not_processed.fetch_add(1, Ordering::Relaxed);
            let _ = ctx.to_writer.send(ToWriter::Unsent { leader }).await;
            continue;
        }
        let mut params = ctx.params.clone();
        params.vendor_data = item.vendor_data.clone();
        params.metadata = item.metadata.clone();
        let upload = Upload {
            bytes: prepared.bytes.clone(),
            file_name: format!("image.{}", prepared.format.ext()),
            mime: prepared.format.mime(),
        };
        let submission = ctx.submitter.submit(&upload, &params).await;
        ctx.counts
            .requests
            .fetch_add(submission.attempts as u64, Ordering::Relaxed);
        match &submission.outcome {
            Final::Done(Outcome::Fatal { kind, message, .. }) => ctx.stop.stop(StopCause::Fatal {
                kind: *kind,
                message: message.clone(),
            }),
            Final::BudgetReached => {
                if let Some(b) = &ctx.submitter.budget {
                    ctx.stop.stop(StopCause::Budget { limit: b.limit() });
                }
            }
            _ => {}
        }
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
            return;
        }
    }
}

/// The record fields every item has, from its source.
fn base_record(item: &Item) -> Record {
    Record {
        key: item.key.clone(),
        path: item.display_path.clone(),
        source: item.source.clone(),
        seq: Some(item.seq),
        vendor_data: item.vendor_data.clone(),
        metadata: item.metadata.clone().map(serde_json::Value::Object),
        columns: item.columns.clone(),
        finished_at: Some(now_rfc3339()),
        ..Default::default()
    }
}

/// Turn a submission into a record; `None` when nothing was sent (stopped first).
fn record_for(item: &Item, prepared: &Prepared, sub: Submission) -> Option<Record> {
    let mut rec = base_record(item);
    rec.sha256 = Some(preflight::hex(&prepared.sha256));
    rec.size_bytes = Some(prepared.size);
    rec.format = Some(prepared.format.name().to_string());
    rec.attempts = sub.attempts;
    rec.rate_limited = sub.rate_limited;
    rec.possible_double_charges = sub.possible_double_charges;
    rec.http_status = sub.http_status;
    rec.latency_ms = sub.latency_ms;
    match sub.outcome {
        Final::Done(outcome) => match outcome {
            Outcome::Result { response, raw } => {
                rec.class = Some(Class::Result);
                response.fill_record(raw, &mut rec);
            }
            Outcome::BadAnswer { message, raw } => {
                rec.class = Some(Class::BadAnswer);
                rec.error = Some(message);
                rec.response = Some(raw);
                rec.billed = true;
            }
            Outcome::Rejected { field, message, .. } => {
                rec.class = Some(Class::Rejected);
                rec.error = Some(message);
                rec.error_field = field;
            }
            Outcome::RateLimited { .. } => {
                rec.class = Some(Class::RateLimited);
                rec.error = Some(format!(
                    "still rate limited (429) after {} attempts; rerun later or lower --rate",
                    sub.attempts
                ));
            }
            Outcome::Transient { message, .. } => {
                rec.class = Some(Class::Transient);
                rec.error = Some(format!(
                    "{message} (gave up after {} attempts)",
                    sub.attempts
                ));
            }
            Outcome::Fatal { message, .. } => {
                rec.class = Some(Class::Fatal);
                rec.error = Some(message);
            }
        },
        Final::Unknown { message } => {
            rec.class = Some(Class::Unknown);
            rec.error = Some(format!(
                "{message}: the request may have been processed and billed; not retried \
                 (--no-retry-unknown)"
            ));
        }
        Final::Stopped { last } => {
            if sub.attempts == 0 {
                return None;
            }
            rec.class = Some(Class::Interrupted);
            rec.error = Some(match last {
                Some(o) => format!("the run stopped before a retry; last answer: {o}"),
                None => "the run stopped before a retry".to_string(),
            });
        }
        Final::BudgetReached => {
            if sub.attempts == 0 {
                return None;
            }
            rec.class = Some(Class::Interrupted);
            rec.error = Some("the --max-requests budget was reached before a retry".to_string());
        }
    }
    Some(rec.with_action())
}

/// Whether a source is a manifest on standard input.
fn reads_stdin(cfg: &ScanConfig) -> bool {
    cfg.sources.iter().any(|s| s.as_os_str() == "-")
}

/// Count the items the sources hold (for the progress bar); `None` for standard input.
async fn count_inputs(cfg: &ScanConfig) -> Option<u64> {
    if cfg.quiet || reads_stdin(cfg) {
        return None;
    }
    let sources = cfg.sources.clone();
    let opts = SourceOptions {
        track_duplicates: false,
        ..cfg.source_options.clone()
    };
    tokio::task::spawn_blocking(move || {
        let iter = input::open(&sources, &opts).ok()?;
        Some(iter.filter(|e| matches!(e, Event::Item(_))).count() as u64)
    })
    .await
    .ok()
    .flatten()
}

/// `--dry-run`: check every item, count what would be sent, estimate time and cost.
async fn dry_run(cfg: &ScanConfig, stop: &Stop) -> Result<i32, ScanError> {
    let journal_path = cfg.out.join(journal::JOURNAL_FILE);
    let index = if journal_path.exists() && !cfg.fresh {
        Index::build(&mut Reader::open(&journal_path)?)?
    } else {
        Index::default()
    };
    let mut events = preflighted(cfg, stop.clone());
    let (mut items, mut ignored, mut invalid, mut done, mut dupes, mut send) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
    loop {
        let ev = tokio::select! {
            biased;
            _ = stop.token().cancelled() => break,
            ev = events.next() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        match ev {
            Ev::Ignored => ignored += 1,
            Ev::Warning(w) => progress::eprint_line(&format!("warning: {w}")),
            Ev::Ready(ready) => {
                items += 1;
                let Ready { item, checked } = *ready;
                let sha = match &checked {
                    Ok(p) => Some(preflight::hex(&p.sha256)),
                    Err(r) => r.sha256.as_ref().map(preflight::hex),
                };
                let content = sha.as_deref().and_then(journal::content_digest);
                if index.is_done(&item.key, content, cfg.retry_failed) {
                    done += 1;
                    continue;
                }
                match checked {
                    Err(r) => {
                        invalid += 1;
                        let reason = item.problem.unwrap_or(r.reason);
                        *reasons.entry(category(&reason)).or_default() += 1;
                    }
                    Ok(_) => {
                        let c = content.expect("hash");
                        if cfg.dedupe
                            && (!seen.insert(c) || index.reusable(c, cfg.retry_failed).is_some())
                        {
                            dupes += 1;
                        } else {
                            send += 1;
                        }
                    }
                }
            }
        }
    }
    let secs = if send == 0 {
        0.0
    } else {
        (send - 1) as f64 / cfg.rate.per_second() * (1.0 + crate::pace::SAFETY_MARGIN)
    };
    let mut out = String::new();
    out.push_str("DRY RUN: nothing was sent and nothing was written.\n");
    let cause = stop.cause();
    if cause.is_some() {
        out.push_str("INTERRUPTED: the counts cover only the items checked so far.\n");
    }
    out.push_str(&format!("  images found          {items}\n"));
    if ignored > 0 {
        out.push_str(&format!("  other files ignored   {ignored}\n"));
    }
    out.push_str(&format!("  already done (skip)   {done}\n"));
    out.push_str(&format!("  refused locally       {invalid}\n"));
    for (reason, n) in &reasons {
        out.push_str(&format!("      {n:>6}  {reason}\n"));
    }
    if cfg.dedupe {
        out.push_str(&format!("  identical (reused)    {dupes}\n"));
    }
    out.push_str(&format!("  would send            {send}\n"));
    out.push_str(&format!(
        "  time at {}       about {}\n",
        cfg.rate,
        progress::human_duration(Duration::from_secs_f64(secs))
    ));
    out.push_str(&format!(
        "  estimated cost        US${:.2} ({send} calls at US${:.2})\n",
        send as f64 * cfg.price_per_call,
        cfg.price_per_call
    ));
    if let Some(max) = cfg.max_requests {
        out.push_str(&format!(
            "  --max-requests        {max} (the run stops there, resumable)\n"
        ));
    }
    print!("{out}");
    Ok(cause.map_or(exit::OK, |c| c.exit_code()))
}

/// A short category for a refusal reason ("over 5 MB", "not an image: PDF", ...), for counts.
fn category(reason: &str) -> String {
    let r = reason.split(':').next().unwrap_or(reason).trim();
    r.chars().take(60).collect()
}

/// Move an existing journal aside (`journal-YYYYmmddTHHMMSS.jsonl`), never overwriting.
fn set_aside(journal_path: &Path) -> Result<PathBuf, ScanError> {
    let dir = journal_path.parent().unwrap_or(Path::new("."));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let mut n = 0;
    loop {
        let name = if n == 0 {
            format!("journal-{stamp}.jsonl")
        } else {
            format!("journal-{stamp}-{n}.jsonl")
        };
        let target = dir.join(name);
        if !target.exists() {
            std::fs::rename(journal_path, &target).map_err(|source| ScanError::OutDir {
                path: target.clone(),
                source,
            })?;
            return Ok(target);
        }
        n += 1;
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
