//! Command-line flags and their environment variables, as the contract names them.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

mod webhooks;
pub use webhooks::{WebhookConfig, WebhookSecret, allowed_host, new_secret};

use crate::{
    model::event::Retention,
    model::status::{MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT_SECS, TimeoutPolicy},
};

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
    Serve(Box<Config>),
    /// Read a secret from standard input and print its Argon2 hash, for HITL_USERS.
    HashSecret,
    /// Print a new random webhook signing secret, for --webhook-secret.
    WebhookSecret,
    /// Check every task's audit trail in the data directory; exits 1 if any chain is broken.
    Verify {
        /// The directory the durable store lives in.
        #[arg(long, env = "HITL_DATA_DIR", default_value = "hitl-data")]
        data_dir: PathBuf,
    },
}

impl Cli {
    /// What to do: serve with a configuration (given with or without `serve`), or another
    /// subcommand.
    pub fn into_command(self) -> Command {
        match self.command {
            Some(command) => command,
            None => Command::Serve(Box::new(self.serve)),
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

    /// Events kept for clients that reconnect with Last-Event-ID: a count (100000) or an age
    /// (90s, 30m, 24h, 7d).
    #[arg(long, env = "HITL_RETAIN_EVENTS", default_value_t = Retention::default())]
    pub retain_events: Retention,

    /// Finished tasks kept in memory: a count (10000) or an age (24h, 7d). Older ones leave
    /// memory (and the home page); with the durable store they are still served by id, read
    /// back from disk. Unset: every task stays in memory.
    #[arg(long, env = "HITL_KEEP_FINISHED")]
    pub keep_finished: Option<Retention>,

    /// Where tasks are kept: `sqlite` (durable, in --data-dir), `postgres` (durable and shared
    /// by every instance on --database-url) or `memory` (lost on exit).
    #[arg(long, env = "HITL_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,

    /// The PostgreSQL database of `--store postgres`, as a URL:
    /// `postgres://user@host:5432/db` (`?options=-csearch_path%3Dname` picks a schema).
    #[arg(long, env = "HITL_DATABASE_URL")]
    pub database_url: Option<String>,

    /// With `--store postgres`: the most connections this instance opens to the database (one
    /// more listens for changes).
    #[arg(long, env = "HITL_DATABASE_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_connections: u32,

    /// With `--store postgres`: how long an instance's claim on a task's work lasts unless it
    /// renews it (it does, every third of this). Another instance takes over work whose claim
    /// ran out, so this is how long a dead instance's tasks wait.
    #[arg(long, env = "HITL_CLAIM_LEASE_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(300..=3_600_000))]
    pub claim_lease_ms: u64,

    /// The directory the durable store lives in; created if missing.
    #[arg(long, env = "HITL_DATA_DIR", default_value = "hitl-data")]
    pub data_dir: PathBuf,

    /// How long a review may stay open before its policy applies (90s, 30m, 24h, 7d; a bare
    /// number is seconds); no deadline if not given. A submission may set its own.
    #[arg(long, env = "HITL_REVIEW_TIMEOUT", value_parser = parse_timeout)]
    pub review_timeout: Option<Duration>,

    /// What happens when a review deadline passes: `none` (marked overdue), `fail`, `approve`
    /// or `reject` (changes requested, saying the deadline passed).
    #[arg(long, env = "HITL_REVIEW_TIMEOUT_POLICY", value_enum, default_value_t = TimeoutPolicy::None)]
    pub review_timeout_policy: TimeoutPolicy,

    #[command(flatten)]
    pub processing: ProcessorConfig,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

/// What does each attempt's work, and how failures and load are handled.
#[derive(Args, Debug, Clone)]
pub struct ProcessorConfig {
    /// `simulated` (a stand-in that shows the loop), `command` (runs --command per attempt) or
    /// `openai` (an OpenAI-compatible chat-completions server).
    #[arg(long, env = "HITL_PROCESSOR", value_enum, default_value_t = ProcessorKind::Simulated)]
    pub processor: ProcessorKind,

    /// The program `--processor command` runs per attempt, split into words like a shell does
    /// (no shell runs it unless --command-shell).
    #[arg(long, env = "HITL_COMMAND")]
    pub command: Option<String>,

    /// Run --command through `sh -c`, for pipes and other shell syntax.
    #[arg(long, env = "HITL_COMMAND_SHELL")]
    pub command_shell: bool,

    /// Seconds one try of an attempt may take before it is stopped (and retried).
    #[arg(long, env = "HITL_PROCESS_TIMEOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub process_timeout_secs: u64,

    /// Retries of a try that failed in a way another may not (timeout, connection, HTTP 429 or
    /// 5xx, a command's non-zero exit), before the task fails.
    #[arg(long, env = "HITL_MAX_RETRIES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    pub max_retries: u32,

    /// Wait before the first retry, in milliseconds; it doubles with each retry, up to 30 s.
    #[arg(long, env = "HITL_RETRY_WAIT_MS", default_value_t = 1000)]
    pub retry_wait_ms: u64,

    /// Attempts processed at once; the others wait, `pending`, in the order they came.
    #[arg(long, env = "HITL_MAX_CONCURRENT_PROCESSING", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_processing: u32,

    /// The OpenAI-compatible server's base URL (the part before `/chat/completions`).
    #[arg(
        long,
        env = "HITL_LLM_BASE_URL",
        default_value = "http://127.0.0.1:8080/v1"
    )]
    pub llm_base_url: String,

    /// The model to ask for.
    #[arg(long, env = "HITL_LLM_MODEL")]
    pub llm_model: Option<String>,

    /// The API key, sent as a bearer token; from the environment only, so it is not seen in
    /// the process list.
    #[arg(long, env = "HITL_LLM_API_KEY", hide = true, hide_env_values = true)]
    pub llm_api_key: Option<String>,

    /// A file with the prompt template (see the README); the built-in one if not given.
    #[arg(long, env = "HITL_LLM_PROMPT_FILE")]
    pub llm_prompt_file: Option<PathBuf>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            processor: ProcessorKind::Simulated,
            command: None,
            command_shell: false,
            process_timeout_secs: 300,
            max_retries: 2,
            retry_wait_ms: 1000,
            max_concurrent_processing: 8,
            llm_base_url: "http://127.0.0.1:8080/v1".into(),
            llm_model: None,
            llm_api_key: None,
            llm_prompt_file: None,
        }
    }
}

/// The processors hitl ships.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProcessorKind {
    #[default]
    Simulated,
    Command,
    Openai,
}

/// A review timeout: an age such as 90s, 30m, 24h or 7d, or a number of seconds, up to a year.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let duration = match s.parse::<Retention>() {
        Ok(Retention::Age(age)) => age,
        Ok(Retention::Count(secs)) => Duration::from_secs(secs),
        Err(_) => {
            return Err(format!(
                "{s:?} is not a duration such as 90s, 30m, 24h or 7d (more than 0)"
            ));
        }
    };
    if duration.as_secs() > MAX_TIMEOUT_SECS {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(duration)
}

/// Who may act.
#[derive(Args, Debug, Clone, Default)]
pub struct AuthConfig {
    /// `none`: no sign-in, anyone can review (a local demo); `token`: users sign in.
    #[arg(long = "auth", env = "HITL_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub mode: AuthMode,

    /// Users as `name:role:hash` separated by commas (role `reviewer` or `submitter`; the hash
    /// from `hitl hash-secret`).
    #[arg(long, env = "HITL_USERS", hide_env_values = true)]
    pub users: Option<String>,

    /// A file of users, one `name:role:hash` a line.
    #[arg(long, env = "HITL_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Let a reviewer decide on a task they submitted themselves.
    #[arg(long, env = "HITL_ALLOW_SELF_REVIEW")]
    pub allow_self_review: bool,

    /// Key that signs session cookies (any string); random at each start if not given.
    #[arg(long, env = "HITL_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,

    /// Hours a browser session lasts.
    #[arg(long, env = "HITL_SESSION_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub session_hours: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No sign-in: anyone who reaches the port can do anything.
    #[default]
    None,
    /// Users sign in with a name and secret; the API takes `Authorization: Bearer name:secret`.
    Token,
}

/// What one client, or all of them, may ask of the service at once.
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes (room for a 64 KiB input, comment and edit, form-encoded).
    #[arg(long, env = "HITL_MAX_BODY_BYTES", default_value_t = 512 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_body_bytes: u64,

    /// Largest input, comment or edit, in bytes; at most the contract's 64 KiB.
    #[arg(long, env = "HITL_MAX_TEXT_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_text_bytes: u64,

    /// Tasks not yet finished that may exist at once; a submission beyond it gets 503.
    #[arg(long, env = "HITL_MAX_LIVE_TASKS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_live_tasks: u64,

    /// Event streams open at once, from everyone; one beyond it gets 503.
    #[arg(long, env = "HITL_MAX_STREAMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams: u64,

    /// Event streams open at once from one IP address; one beyond it gets 429.
    #[arg(long, env = "HITL_MAX_STREAMS_PER_CLIENT", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams_per_client: u64,

    /// Seconds any request but an event stream may take before it is answered 503.
    #[arg(long, env = "HITL_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 512 * 1024,
            max_text_bytes: 65_536,
            max_live_tasks: 10_000,
            max_streams: 10_000,
            max_streams_per_client: 100,
            request_timeout_secs: 30,
        }
    }
}

/// The kinds of store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// One SQLite file in the data directory: survives restarts and crashes.
    Sqlite,
    /// Nothing written anywhere: for demos and tests.
    Memory,
    /// A PostgreSQL database (`--database-url`) that several instances share, behaving as one
    /// service.
    Postgres,
}

impl Config {
    /// The receivers of webhooks and notifications, or why the flags cannot be used (said at
    /// start, before any store is opened).
    pub fn receivers(&self) -> Result<crate::model::delivery::Receivers, String> {
        let receivers = self.webhooks.receivers()?;
        if self.store == StoreKind::Memory && self.webhooks.enabled() {
            return Err(
                "webhooks and notifications need a durable store (--store sqlite or \
                        postgres): each delivery is written with its event"
                    .into(),
            );
        }
        Ok(receivers)
    }
}

/// The command line's defaults, except the store: a `Config` built in code (tests, benchmarks,
/// embedding) keeps everything in memory unless it asks for a data directory.
impl Default for Config {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:3000".into(),
            process_delay_ms: 1500,
            max_attempts: 3,
            retain_events: Retention::default(),
            keep_finished: None,
            store: StoreKind::Memory,
            data_dir: "hitl-data".into(),
            database_url: None,
            database_connections: 16,
            claim_lease_ms: 10_000,
            review_timeout: None,
            review_timeout_policy: TimeoutPolicy::None,
            processing: ProcessorConfig::default(),
            limits: Limits::default(),
            auth: AuthConfig {
                session_hours: 12,
                ..AuthConfig::default()
            },
            webhooks: WebhookConfig::default(),
        }
    }
}
