//! The `hitl` binary: parse flags, bind, serve until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use hitl::{
    Hitl,
    config::{Cli, Command},
    web,
};

/// jemalloc, not glibc's malloc: with glibc the memory of 10,000 closed event streams stayed
/// with the process (BENCHMARKS.md); jemalloc gives freed pages back after a short decay.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start: a background thread returns pages that stayed free
/// for a second, so an idle server shrinks without waiting for its next allocation.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

fn main() -> std::process::ExitCode {
    // Log lines go to standard output through a thread of their own that drops what it cannot
    // write, so a log reader that died (EPIPE) or stopped reading (a full pipe) never blocks a
    // request or the shutdown, and a failed write is never reported by a panic (tracing's own
    // fallback is `eprintln!`, which panics on a broken pipe: that is how SIGTERM once hung).
    let (log_writer, log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("hitl-log")
        .finish(std::io::stdout());
    tracing_subscriber::fmt()
        // Colour codes only for a person at a terminal, not in a log file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(log_writer)
        .log_internal_errors(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("hitl=info,warn")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            say(
                std::io::stderr(),
                format_args!("error: cannot start: {error}"),
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line an operator can act on, whatever RUST_BACKTRACE says.
            say(std::io::stderr(), format_args!("error: {error:#}"));
            std::process::ExitCode::FAILURE
        }
    };
    // Tasks still parked on a dead peer must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Writes out the log lines still queued, waiting a second at most.
    drop(log_guard);
    code
}

/// Writes one line where `println!` would, but a closed or failing output is ignored instead of
/// panicking: what hitl has to say is never worth stopping for.
fn say(mut to: impl std::io::Write, line: std::fmt::Arguments<'_>) {
    let _ = writeln!(to, "{line}").and_then(|()| to.flush());
}

async fn run() -> anyhow::Result<()> {
    let config = match Cli::parse().into_command() {
        Command::Serve(config) => config,
        Command::HashSecret => return hash_secret(),
        Command::WebhookSecret => {
            say(
                std::io::stdout(),
                format_args!("{}", hitl::config::new_secret()),
            );
            return Ok(());
        }
        Command::Verify { data_dir } => return verify(&data_dir),
    };

    // Flags that cannot work together stop the start before anything is opened.
    config.receivers().map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    // The store first: a locked or damaged data directory stops us before we take the port.
    let hitl = Hitl::start(&config, shutdown.clone())
        .await
        .context("cannot open the store")?;
    let listener = TcpListener::bind(&config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let addr = listener.local_addr()?;
    say(
        std::io::stdout(),
        format_args!("listening on http://{addr}"),
    );

    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let served = web::serve(listener, hitl.clone()).await;
    // Whatever the server's end, every change it accepted is written before we exit; work in
    // progress resumes at the next start.
    shutdown.cancel();
    hitl.close().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// `hitl hash-secret`: reads one line (the secret) from standard input and prints its hash.
fn hash_secret() -> anyhow::Result<()> {
    let mut secret = String::new();
    std::io::stdin()
        .read_line(&mut secret)
        .context("cannot read the secret from standard input")?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!secret.is_empty(), "give the secret on standard input");
    say(
        std::io::stdout(),
        format_args!("{}", hitl::auth::hash_secret(secret)),
    );
    Ok(())
}

/// `hitl verify`: checks every task's audit trail and prints each break it finds.
fn verify(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let report = hitl::store::sqlite::verify(data_dir)
        .with_context(|| format!("cannot verify {}", data_dir.display()))?;
    for problem in &report.breaks {
        say(std::io::stdout(), format_args!("BROKEN {problem}"));
    }
    if report.without_trail > 0 {
        say(
            std::io::stdout(),
            format_args!(
                "note: {} task(s) were written before audit trails existed and have none to check",
                report.without_trail
            ),
        );
    }
    let summary = format!(
        "{} task(s), {} audit entries checked",
        report.tasks, report.entries
    );
    anyhow::ensure!(
        report.breaks.is_empty(),
        "{summary}: {} break(s) found; the stored history was changed outside hitl",
        report.breaks.len()
    );
    say(
        std::io::stdout(),
        format_args!("{summary}: every chain is intact"),
    );
    Ok(())
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
