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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line an operator can act on, whatever RUST_BACKTRACE says.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // Colour codes only for a person at a terminal, not in a log file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("hitl=info,warn")),
        )
        .init();
    let config = match Cli::parse().into_command() {
        Command::Serve(config) => config,
        Command::HashSecret => return hash_secret(),
        Command::Verify { data_dir } => return verify(&data_dir),
    };

    let shutdown = CancellationToken::new();
    // The store first: a locked or damaged data directory stops us before we take the port.
    let hitl = Hitl::start(&config, shutdown.clone())
        .await
        .context("cannot open the store")?;
    let listener = TcpListener::bind(&config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");

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
    println!("{}", hitl::auth::hash_secret(secret));
    Ok(())
}

/// `hitl verify`: checks every task's audit trail and prints each break it finds.
fn verify(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let report = hitl::store::sqlite::verify(data_dir)
        .with_context(|| format!("cannot verify {}", data_dir.display()))?;
    for problem in &report.breaks {
        println!("BROKEN {problem}");
    }
    if report.without_trail > 0 {
        println!(
            "note: {} task(s) were written before audit trails existed and have none to check",
            report.without_trail
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
    println!("{summary}: every chain is intact");
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
