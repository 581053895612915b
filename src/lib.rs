//! liveness-batch: re-screen stored selfies in bulk with Didit's Passive Liveness API.
//!
//! The binary is a thin shell around [`run`]; integration tests call the same entry points.

// Where to start reading: the commands, their validated settings and what they return.
pub mod check;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod exit;
pub mod record;
pub mod report;
pub mod scan;

// Stages reached by the integration tests and the fuzz targets beside the commands (the Didit
// answer classifier, the journal's parser, the manifest reader, backoff and pacing); not an
// interface for other programs.
#[doc(hidden)]
pub mod didit;
#[doc(hidden)]
pub mod input;
#[doc(hidden)]
pub mod journal;
#[doc(hidden)]
pub mod pace;
#[doc(hidden)]
pub mod retry;
#[doc(hidden)]
pub mod secret;
#[doc(hidden)]
pub mod shard;
#[doc(hidden)]
pub mod submit;

// The rest is this crate's own.
pub(crate) mod audit;
pub(crate) mod compact;
pub(crate) mod kit;
pub(crate) mod messages;
pub(crate) mod progress;
#[cfg(test)]
mod testing;

use cli::{Cli, Command};
use exit::Exit;

/// Everything that can end a command before it produced an exit code of its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error(transparent)]
    Check(#[from] check::CheckError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    /// The completions or the manual page could not be written to stdout.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

impl Error {
    /// The exit code this error ends the process with (see [`exit`]).
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Config(_) | Error::Emulator(_) => Exit::Usage,
            Error::Stdout(_) => Exit::Io,
            Error::Scan(e) => e.exit_code(),
            Error::Check(e) => e.exit_code(),
            Error::Report(e) => e.exit_code(),
        }
    }
}

/// Log to stderr through the progress-aware writer. Only this crate logs at debug level, so
/// no dependency's request dump can ever show a header.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("liveness_batch", level);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .finish()
        .with(filter)
        .try_init();
}

/// The async runtime a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Every task on the thread that runs the command. A scan's work per item on the runtime
    /// (the HTTP exchange, the journal line, the dispatch) is small next to reading and
    /// hashing the files, which have threads of their own; one thread spares the wake-ups of
    /// handing each item between threads.
    OneThread,
    /// A thread per core: the emulator serves many connections at once.
    PerCore,
}

impl Runtime {
    /// The runtime `command` runs on.
    pub fn for_command(command: &Command) -> Self {
        match command {
            Command::Emulator(_) => Runtime::PerCore,
            Command::Scan(_)
            | Command::Check(_)
            | Command::Report(_)
            | Command::Completions { .. }
            | Command::Man { .. } => Runtime::OneThread,
        }
    }

    /// Build it (timers and I/O enabled).
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self {
            Runtime::OneThread => tokio::runtime::Builder::new_current_thread(),
            Runtime::PerCore => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }
}

/// Run one command; returns the process exit code. `DIDIT_API_KEY` is read here, once.
pub async fn run(cli: Cli) -> Result<Exit, Error> {
    match cli.command {
        Command::Scan(args) => {
            init_logging(args.verbose);
            let mut cfg =
                config::ScanConfig::from_args(*args, std::env::var("DIDIT_API_KEY").ok())?;
            let argv: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            cfg.command_line = audit::redact_command_line(&argv, cfg.api.key.as_ref());
            if let Some(key) = &cfg.api.key {
                // The key pasted into a label is no more recorded than anywhere else.
                let k = key.expose();
                cfg.operator = cfg.operator.replace(k, audit::REDACTED_ARG);
                cfg.purpose = cfg.purpose.map(|p| p.replace(k, audit::REDACTED_ARG));
            }
            let stop = scan::Stop::default();
            let signals = SignalWatch::start(stop.clone());
            let code = scan::run(cfg, stop).await;
            drop(signals);
            Ok(code?)
        }
        Command::Check(args) => {
            init_logging(args.verbose);
            let cfg = config::CheckConfig::from_args(args, std::env::var("DIDIT_API_KEY").ok())?;
            Ok(check::run(cfg).await?)
        }
        Command::Report(args) => {
            init_logging(0);
            Ok(report::run_command(config::ReportConfig::from_args(args)?).await?)
        }
        Command::Emulator(args) => {
            init_logging(1);
            let cmd = config::EmulatorCommand::from_args(args)?;
            emulator::run_command(cmd.config, cmd.port).await?;
            Ok(Exit::Ok)
        }
        Command::Completions { shell } => print(&cli::completions(shell)),
        Command::Man { command } => {
            print(&cli::man_page(command.as_deref()).map_err(Error::Stdout)?)
        }
    }
}

/// `bytes` on stdout, for the commands that print what is generated from the command line.
fn print(bytes: &[u8]) -> Result<Exit, Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(Error::Stdout)?;
    Ok(Exit::Ok)
}

/// [`watch_signals`] on a thread of its own, with its own small runtime: the scan's runtime is
/// one thread, busy for seconds at a time on a large journal (loading it, building the outputs
/// from it), and a second signal must exit at once whatever that thread is doing. Dropped, it
/// stops watching.
struct SignalWatch {
    end: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalWatch {
    fn start(stop: scan::Stop) -> Self {
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        // The handlers are in place before `start` returns: a signal that comes at once takes
        // the two-stage stop, never the default action.
        let (ready, handlers_in_place) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let handlers = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    );
                    let _ = ready.send(());
                    let (Ok(int), Ok(term)) = handlers else {
                        return;
                    };
                    tokio::select! {
                        _ = watch_signals(stop, int, term) => {}
                        _ = ended => {}
                    }
                });
            })
            .ok();
        // An error only means the thread could not watch; the default actions stay.
        let _ = handlers_in_place.recv();
        Self {
            end: Some(end),
            thread,
        }
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            let _ = end.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// First Ctrl-C or SIGTERM: stop new submissions, let requests in flight finish, write every
/// output. A second Ctrl-C exits at once; the journal stays consistent (whole lines only).
async fn watch_signals(
    stop: scan::Stop,
    mut int: tokio::signal::unix::Signal,
    mut term: tokio::signal::unix::Signal,
) {
    let mut seen = 0;
    loop {
        let cause = tokio::select! {
            _ = int.recv() => scan::StopCause::Interrupted,
            _ = term.recv() => scan::StopCause::Terminated,
        };
        seen += 1;
        if seen > 1 {
            messages::note("second signal: exiting now; rerun the same command to resume");
            std::process::exit(cause.exit_code().code());
        }
        messages::note(
            "stopping: no new requests; waiting for those in flight (Ctrl-C again to exit at once)",
        );
        stop.stop(cause);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn runtime_of(args: &[&str]) -> Runtime {
        let cli = Cli::try_parse_from(args).expect("valid command line");
        Runtime::for_command(&cli.command)
    }

    #[test]
    fn only_the_emulator_runs_a_thread_per_core() {
        assert_eq!(
            runtime_of(&["liveness-batch", "emulator", "--api-key", "k"]),
            Runtime::PerCore
        );
        assert_eq!(
            runtime_of(&["liveness-batch", "scan", "photos"]),
            Runtime::OneThread
        );
        assert_eq!(
            runtime_of(&["liveness-batch", "check", "a.jpg"]),
            Runtime::OneThread
        );
        assert_eq!(
            runtime_of(&["liveness-batch", "report", "out"]),
            Runtime::OneThread
        );
    }
}
