//! Command-line flags and their environment variables, as the contract names them.

use clap::{Args, Parser, Subcommand};

use crate::input::MAX_ATTEMPTS_LIMIT;

#[derive(Parser, Debug)]
#[command(name = "hitl", version, about = "Human-in-the-loop review service")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the service (the default).
    Serve(Config),
}

impl Cli {
    /// The service's configuration, whether given with or without `serve`.
    pub fn into_config(self) -> Config {
        match self.command {
            Some(Command::Serve(config)) => config,
            None => self.serve,
        }
    }
}

/// How the service runs.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "HITL_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: String,

    /// How long the simulated processor works on each attempt, in milliseconds.
    #[arg(long, env = "HITL_PROCESS_DELAY_MS", default_value_t = 1500)]
    pub process_delay_ms: u64,

    /// Attempts allowed for a task whose submission names no number.
    #[arg(long, env = "HITL_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=MAX_ATTEMPTS_LIMIT as i64))]
    pub max_attempts: u32,

    /// How many of the newest events are kept for clients that reconnect with Last-Event-ID.
    #[arg(long, env = "HITL_RETAIN_EVENTS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_events: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:3000".into(),
            process_delay_ms: 1500,
            max_attempts: 3,
            retain_events: 100_000,
        }
    }
}
