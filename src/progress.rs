//! Progress on stderr: an indicatif bar on a terminal, a plain line every few seconds
//! otherwise, nothing with `--quiet`; and a log writer that never garbles the bar.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::record::{Class, Decision, Record};

/// How often the plain (non-terminal) progress line is printed.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// A `tracing` writer for stderr that hides the progress bar while a log line is printed.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = active_bar()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Print a line on stderr without garbling the progress bar.
pub fn eprint_line(line: &str) {
    let _ = LogWriter.write_all(format!("{line}\n").as_bytes());
}

#[derive(Debug, Default)]
struct Counters {
    done: AtomicU64,
    approved: AtomicU64,
    declined: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
}

/// Live counters of a scan and their display.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    counters: Counters,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    plain: bool,
    started: Instant,
    /// Requests per second the pacer currently allows, for the ETA.
    rate_per_sec: Mutex<Option<f64>>,
}

impl Progress {
    /// `total` when known (not for a manifest on standard input).
    pub fn new(total: Option<u64>, quiet: bool) -> Self {
        let terminal = io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        *active_bar().lock().unwrap_or_else(|p| p.into_inner()) = bar.clone();
        Self {
            inner: Arc::new(Inner {
                counters: Counters::default(),
                total,
                bar,
                plain: !quiet && !terminal,
                started: Instant::now(),
                rate_per_sec: Mutex::new(None),
            }),
        }
    }

    pub fn set_rate(&self, per_sec: Option<f64>) {
        *self
            .inner
            .rate_per_sec
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = per_sec;
    }

    pub fn record(&self, rec: &Record) {
        let c = &self.inner.counters;
        c.done.fetch_add(1, Ordering::Relaxed);
        match (rec.class, rec.status) {
            (Some(Class::Result), Some(Decision::Approved)) => {
                c.approved.fetch_add(1, Ordering::Relaxed)
            }
            (Some(Class::Result), _) => c.declined.fetch_add(1, Ordering::Relaxed),
            _ => c.errors.fetch_add(1, Ordering::Relaxed),
        };
        self.refresh();
    }

    pub fn skipped(&self) {
        self.inner.counters.skipped.fetch_add(1, Ordering::Relaxed);
        self.inner.counters.done.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    fn refresh(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.set_position(self.inner.counters.done.load(Ordering::Relaxed));
            bar.set_message(self.message());
        }
    }

    /// "approved 10 · declined 2 · errors 1 · 3.9/s · ETA 1m20s"
    pub fn message(&self) -> String {
        let c = &self.inner.counters;
        let done = c.done.load(Ordering::Relaxed);
        let elapsed = self.inner.started.elapsed().as_secs_f64().max(0.001);
        let sent = done - c.skipped.load(Ordering::Relaxed);
        let mut msg = format!(
            "approved {} · declined {} · errors {} · {:.1}/s",
            c.approved.load(Ordering::Relaxed),
            c.declined.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
            sent as f64 / elapsed
        );
        let skipped = c.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            msg.push_str(&format!(" · {skipped} already done"));
        }
        let rate = *self
            .inner
            .rate_per_sec
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let (Some(total), Some(rate)) = (self.inner.total, rate)
            && rate > 0.0
        {
            let left = total.saturating_sub(done) as f64 / rate;
            msg.push_str(&format!(
                " · ETA {}",
                human_duration(Duration::from_secs_f64(left))
            ));
        }
        msg
    }

    /// Print the plain progress line (when stderr is not a terminal).
    pub fn tick_plain(&self) {
        if self.inner.plain {
            let done = self.inner.counters.done.load(Ordering::Relaxed);
            let total = self.inner.total.map_or("?".to_string(), |t| t.to_string());
            eprint_line(&format!("progress: {done}/{total} · {}", self.message()));
        }
    }

    pub fn is_plain(&self) -> bool {
        self.inner.plain
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
        *active_bar().lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A duration as people read it, the one way every message and output writes it: "12.3s"
/// under a minute, then "4m05s", then "2h03m05s".
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let s = s.round() as u64;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs_f64(12.34)), "12.3s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_duration(Duration::from_secs(7383)), "2h03m03s");
    }

    #[test]
    fn counts_records_by_outcome() {
        let p = Progress::new(Some(4), true);
        p.set_rate(Some(2.0));
        p.record(&Record {
            class: Some(Class::Result),
            status: Some(Decision::Approved),
            ..Default::default()
        });
        p.record(&Record {
            class: Some(Class::Result),
            status: Some(Decision::Declined),
            ..Default::default()
        });
        p.record(&Record {
            class: Some(Class::InvalidInput),
            ..Default::default()
        });
        p.skipped();
        let m = p.message();
        assert!(
            m.contains("approved 1") && m.contains("declined 1") && m.contains("errors 1"),
            "{m}"
        );
        assert!(
            m.contains("1 already done") && m.contains("ETA 0.0s"),
            "{m}"
        );
        p.finish();
    }
}
