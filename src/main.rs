//! The `liveness-batch` binary: parse the command line, run the library, map the outcome to
//! an exit code (documented in the README and in `liveness_batch::exit`).

use clap::Parser;
use liveness_batch::cli::Cli;

/// jemalloc: less CPU per request than the system allocator for the scan's many small
/// allocations (see the README's benchmark section); not built for MSVC.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    let runtime = match liveness_batch::Runtime::for_command(&cli.command).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("liveness-batch: cannot start the async runtime: {e}");
            std::process::exit(liveness_batch::exit::Exit::Usage.code());
        }
    };
    let code = match runtime.block_on(liveness_batch::run(cli)) {
        Ok(exit) => exit.code(),
        Err(err) => {
            let code = err.exit_code().code();
            // Library errors carry their causes in their own message.
            eprintln!("liveness-batch: {}", anyhow::Error::from(err));
            code
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
