//! The server under load: one this process started (hitl, or the floor of `examples/floor.rs`),
//! or one it was pointed at, and what `/proc/<pid>` says about it (CPU seconds and resident
//! memory).

use std::{process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::timeout,
};

/// A running hitl (or the floor): its URL, its pid when known, and the child and data directory
/// when this process started it (both cleaned up on `stop`).
pub struct Server {
    pub base: String,
    pub pid: Option<u32>,
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    pub fn given(url: &str, pid: Option<u32>) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            pid,
            child: None,
            _data: None,
        }
    }

    /// Starts `binary` on a free port and waits for its `listening on` line. A hitl (`hitl`
    /// gives its store and extra flags) gets processing delay 0, no stream limits and a fresh
    /// data directory; the floor (`examples/floor.rs`) only `--addr`.
    pub async fn spawn(binary: &str, hitl: Option<(&str, &[String])>) -> Result<Self> {
        let mut command = Command::new(binary);
        command.args(["--addr", "127.0.0.1:0"]);
        let data = match hitl {
            Some((store, extra)) => {
                let data = tempfile::tempdir()?;
                command
                    .args(["--store", store, "--process-delay-ms", "0"])
                    .args([
                        "--max-streams-per-client",
                        "100000",
                        "--max-streams",
                        "100000",
                    ])
                    .arg("--data-dir")
                    .arg(data.path().join("data"))
                    .args(extra);
                Some(data)
            }
            None => None,
        };
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let base = timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("{binary} exited before it was listening")
        })
        .await
        .context("no `listening on` line in 30 s")??;
        // Keep reading so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            base,
            pid: child.id(),
            child: Some(child),
            _data: data,
        })
    }

    /// Stops a server this process started, with SIGTERM as an operator would.
    pub async fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on our own child's pid, with a valid signal.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        match timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => status.map(drop).context("waiting for the server"),
            Err(_) => {
                child.kill().await?;
                bail!("the server took over 30 s to stop after SIGTERM")
            }
        }
    }

    /// User plus system CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&self.pid?.to_string())
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
        line.trim().trim_end_matches("kB").trim().parse().ok()
    }
}

/// User plus system CPU seconds process `pid` (a number, or `self`) has used so far.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / per_second)
}

/// The machine's one-minute load average: how busy the shared cores were.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split(' ').next().unwrap_or("?").to_owned()
}

/// "2 × AMD EPYC …": the cores this process may use and the CPU's name.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} × {model}")
}

/// Lets this process hold `needed` open sockets, as far as the hard limit allows. A server it
/// spawns afterwards inherits the limit.
pub fn raise_open_files(needed: u64) -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid resource and a pointer to a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        let wanted = needed.max(limit.rlim_cur).min(limit.rlim_max);
        if wanted > limit.rlim_cur {
            limit.rlim_cur = wanted;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                bail!("setrlimit: {}", std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}
