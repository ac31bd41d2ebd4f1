//! A fresh schema per test, and hitl instances on it: in this process, or the real binary
//! (which a test can kill).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use hitl::{
    Hitl,
    config::{Config, StoreKind},
};
use libtest_mimic::Failed;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;

/// Claims run out this fast in tests, so a takeover happens within a second or two.
pub const LEASE_MS: u64 = 1_000;

/// Can the database be reached? Says why not.
pub fn probe(base: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let connect = tokio_postgres::connect(base, tokio_postgres::NoTls);
        match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                client
                    .simple_query("SELECT 1")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Ok(Err(e)) => Err(match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            }),
            Err(_) => Err("no answer in 3 s".into()),
        }
    })
}

/// One test's schema in the test database.
pub struct Db {
    pub schema: String,
    /// The database URL that selects the schema.
    pub url: String,
    /// The URL without a schema, and its host and port (for the proxy).
    pub base: String,
}

impl Db {
    pub async fn create(base: &str) -> Result<Self, Failed> {
        let schema = format!("hitl_test_{}", uuid::Uuid::now_v7().simple());
        execute(base, &format!("CREATE SCHEMA {schema}"))
            .await
            .map_err(|e| Failed::from(format!("cannot create a schema: {e}")))?;
        Ok(Self {
            url: with_schema(base, &schema),
            schema,
            base: base.to_owned(),
        })
    }

    /// The database's address, as `host:port`.
    pub fn address(&self) -> String {
        let config: tokio_postgres::Config = self.base.parse().expect("a PostgreSQL URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// This test's URL, pointed at `address` instead (a proxy).
    pub fn url_via(&self, address: &str) -> String {
        let url = self.url.replacen(&self.address(), address, 1);
        assert_ne!(
            url, self.url,
            "the URL names the database's address as host:port"
        );
        url
    }

    /// The configuration of an instance on this schema.
    pub fn config(&self) -> Config {
        Config {
            store: StoreKind::Postgres,
            database_url: Some(self.url.clone()),
            claim_lease_ms: LEASE_MS,
            // Tests run side by side on one server's 100 connections.
            database_connections: 6,
            process_delay_ms: 0,
            ..Config::default()
        }
    }

    /// An instance in this process, served on a free port.
    pub async fn instance(&self) -> (TestApp, Hitl) {
        self.instance_with(self.config()).await
    }

    pub async fn instance_with(&self, config: Config) -> (TestApp, Hitl) {
        let hitl = Hitl::start(&config, CancellationToken::new())
            .await
            .expect("the instance starts");
        (TestApp::serve(hitl.clone()).await, hitl)
    }

    /// Three instances in this process.
    pub async fn three(&self) -> [TestApp; 3] {
        let (a, _) = self.instance().await;
        let (b, _) = self.instance().await;
        let (c, _) = self.instance().await;
        [a, b, c]
    }

    /// Runs one statement on this schema.
    pub async fn execute(&self, sql: &str) -> Result<u64, String> {
        execute(&self.url, sql).await
    }
}

/// The real binary on this schema, killed when dropped.
pub struct Binary {
    pub child: Child,
    pub app: TestApp,
}

impl Binary {
    pub fn spawn(db: &Db, args: &[&str]) -> Self {
        Self::spawn_with_lease(db, LEASE_MS, args)
    }

    /// With claims that last `lease_ms` unless renewed.
    pub fn spawn_with_lease(db: &Db, lease_ms: u64, args: &[&str]) -> Self {
        Self::spawn_at(&db.url, lease_ms, args)
    }

    /// On the database `url` (this test's, with options of its own).
    pub fn spawn_url(url: &str, args: &[&str]) -> Self {
        Self::spawn_at(url, LEASE_MS, args)
    }

    fn spawn_at(url: &str, lease_ms: u64, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hitl"))
            .args(["--store", "postgres", "--addr", "127.0.0.1:0"])
            .args(["--claim-lease-ms", &lease_ms.to_string()])
            .args(["--database-connections", "6"])
            .args(args)
            .env("HITL_DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the hitl binary starts");
        let stdout = child.stdout.take().expect("its stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).expect("its first line");
        // Its logs follow on stdout: keep reading, so it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the binary says where it listens, not {line:?}"))
            .to_owned();
        Self {
            child,
            app: TestApp::at(url),
        }
    }

    /// SIGTERM: a graceful shutdown; waits for the process to exit.
    pub fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
        let status = self.child.wait().expect("reap it");
        assert!(status.success(), "a graceful stop exits 0: {status}");
    }

    /// SIGKILL: no graceful shutdown, no claims let go.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the instance");
        self.child.wait().expect("reap it");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_schema(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

async fn execute(url: &str, sql: &str) -> Result<u64, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    client.execute(sql, &[]).await.map_err(|e| e.to_string())
}

/// Drops a test's schema, from outside any runtime.
pub fn drop_schema(base: &str, schema: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    if let Err(error) = runtime.block_on(execute(base, &sql)) {
        eprintln!("could not drop the test schema {schema}: {error}");
    }
}
