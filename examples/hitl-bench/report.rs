//! One run's figures, the table of runs with their medians, and the same as JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::watchers::Idle;

/// p50, p99 and max of a set of delays, in milliseconds (nearest rank).
#[derive(Clone, Copy, Default)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(delays: &[Duration]) -> Self {
        let mut ms: Vec<f64> = delays.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        match ms.is_empty() {
            true => Self::default(),
            false => Self {
                p50: rank(0.5),
                p99: rank(0.99),
                max: rank(1.0),
            },
        }
    }

    fn json(&self) -> Value {
        json!({ "p50_ms": self.p50, "p99_ms": self.p99, "max_ms": self.max })
    }
}

/// What the webhook receiver (`--webhook`) saw of one run.
pub struct Hook {
    /// From each event of the timed lifecycles (its `data.at`) to its delivery's arrival.
    pub delay: Spread,
    /// From the end of the timed lifecycles until their last delivery arrived.
    pub drain: Duration,
    /// Distinct deliveries received over the whole run, and status events the shared stream
    /// showed (one delivery each).
    pub received: usize,
    pub expected: usize,
    /// Deliveries whose `webhook-id` had come before.
    pub duplicates: usize,
}

pub struct Run {
    pub lifecycles: usize,
    pub rate: f64,
    /// Decision to the event that reflects it, on the shared stream.
    pub decision: Spread,
    /// Server CPU milliseconds per lifecycle, when its pid is known.
    pub cpu_ms: Option<f64>,
    /// This generator's own CPU milliseconds per lifecycle (all its threads), over the same time.
    pub own_cpu_ms: Option<f64>,
    pub rss_kib: Option<u64>,
    /// Watchers on the busy task, and the delay from each decision to each of them.
    pub busy: Option<(usize, usize, Spread)>,
    pub idle: Option<(usize, Idle)>,
    /// Requests waiting on a task, and the server's memory with them open.
    pub waiting: Option<(usize, Idle)>,
    pub hook: Option<Hook>,
    pub errors: Vec<String>,
}

impl Run {
    /// `cpu`: the server's CPU seconds over the timed lifecycles, and this process's.
    pub fn new(
        n: usize,
        wall: f64,
        cpu: [Option<f64>; 2],
        rss: Option<u64>,
        delays: &[Duration],
    ) -> Self {
        let per_lifecycle = |s: Option<f64>| s.map(|s| s * 1e3 / n as f64);
        Self {
            lifecycles: n,
            rate: n as f64 / wall,
            decision: Spread::of(delays),
            cpu_ms: per_lifecycle(cpu[0]),
            own_cpu_ms: per_lifecycle(cpu[1]),
            rss_kib: rss,
            busy: None,
            idle: None,
            waiting: None,
            hook: None,
            errors: Vec::new(),
        }
    }

    pub fn busy(&mut self, w: usize, delays: Vec<Duration>) {
        self.busy = Some((w, delays.len(), Spread::of(&delays)));
    }

    pub fn idle(&mut self, k: usize, idle: Idle) {
        self.idle = Some((k, idle));
    }

    fn idle_kib_each(&self) -> Option<f64> {
        let (k, i) = self.idle.as_ref()?;
        Some((i.open as f64 - i.before as f64) / *k as f64)
    }

    fn wait_kib_each(&self) -> Option<f64> {
        let (k, i) = self.waiting.as_ref()?;
        Some((i.open as f64 - i.before as f64) / *k as f64)
    }

    /// RSS after closing the idle streams, as a percentage of the RSS before opening them.
    fn idle_back(&self) -> Option<f64> {
        let (_, i) = self.idle.as_ref()?;
        Some(i.closed as f64 * 100.0 / i.before as f64)
    }

    pub fn json(&self) -> Value {
        json!({
            "lifecycles": self.lifecycles,
            "lifecycles_per_s": self.rate,
            "decision_to_event": self.decision.json(),
            "server_cpu_ms_per_lifecycle": self.cpu_ms,
            "generator_cpu_ms_per_lifecycle": self.own_cpu_ms,
            "server_rss_kib": self.rss_kib,
            "busy": self.busy.as_ref().map(|(w, n, s)| json!({ "watchers": w, "deliveries": n, "decision_to_event": s.json() })),
            "idle": self.idle.as_ref().map(|(k, i)| json!({
                "streams": k, "server_streams_before_open_closed": i.clients, "rss_before_kib": i.before, "rss_open_kib": i.open,
                "rss_closed_kib": i.closed, "kib_per_stream": self.idle_kib_each(),
            })),
            "waiting": self.waiting.as_ref().map(|(k, i)| json!({
                "requests": k, "rss_before_kib": i.before, "rss_open_kib": i.open,
                "rss_closed_kib": i.closed, "kib_per_wait": self.wait_kib_each(),
            })),
            "webhook": self.hook.as_ref().map(|h| json!({
                "event_to_delivery": h.delay.json(), "drain_ms": h.drain.as_secs_f64() * 1e3,
                "received": h.received, "expected": h.expected, "duplicates": h.duplicates,
            })),
            "errors": self.errors,
        })
    }

    /// The table's cells for this run.
    fn cells(&self) -> Vec<Option<f64>> {
        let busy = self.busy.as_ref().map(|b| b.2);
        let hook = self.hook.as_ref();
        vec![
            Some(self.rate),
            Some(self.decision.p50),
            Some(self.decision.p99),
            Some(self.decision.max),
            self.cpu_ms,
            self.own_cpu_ms,
            self.rss_kib.map(|k| k as f64 / 1024.0),
            busy.map(|s| s.p50),
            busy.map(|s| s.p99),
            busy.map(|s| s.max),
            self.idle_kib_each(),
            self.idle_back(),
            self.wait_kib_each(),
            hook.map(|h| h.delay.p50),
            hook.map(|h| h.delay.p99),
            hook.map(|h| h.delay.max),
            hook.map(|h| h.drain.as_secs_f64() * 1e3),
            hook.map(|h| h.duplicates as f64),
            Some(self.errors.len() as f64),
        ]
    }
}

const HEADS: [&str; 19] = [
    "lc/s",
    "dec p50",
    "dec p99",
    "dec max",
    "cpu ms/lc",
    "gen ms/lc",
    "rss MiB",
    "busy p50",
    "busy p99",
    "busy max",
    "KiB/idle",
    "rss back%",
    "KiB/wait",
    "hook p50",
    "hook p99",
    "hook max",
    "drain ms",
    "hook dups",
    "errors",
];

/// Columns with a figure in any of `rows`: the others (a phase not run) are left out.
fn shown(rows: &[Vec<Option<f64>>]) -> Vec<bool> {
    (0..HEADS.len())
        .map(|c| rows.iter().any(|r| r[c].is_some()))
        .collect()
}

fn row(name: &str, cells: &[Option<f64>], shown: &[bool]) {
    let cells: Vec<String> = cells
        .iter()
        .zip(shown)
        .filter(|&(_, &shown)| shown)
        .map(|(c, _)| c.map_or("-".into(), |v| format!("{v:.2}")))
        .map(|c| format!("{c:>10}"))
        .collect();
    println!("{name:<7}{}", cells.join(""));
}

fn heads(shown: &[bool]) {
    let heads = HEADS.iter().zip(shown).filter(|&(_, &shown)| shown);
    let heads: Vec<String> = heads.map(|(h, _)| format!("{h:>10}")).collect();
    println!("{:<7}{}", "", heads.join(""));
}

/// Each column's median over the runs.
fn medians(runs: &[Run]) -> Vec<Option<f64>> {
    let all: Vec<Vec<Option<f64>>> = runs.iter().map(Run::cells).collect();
    (0..HEADS.len())
        .map(|c| {
            let mut v: Vec<f64> = all.iter().filter_map(|r| r[c]).collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| match v.len() % 2 {
                1 => v[v.len() / 2],
                _ => (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0,
            })
        })
        .collect()
}

/// One row: each median of `a` over the same median of `b`.
pub fn ratios(a: &[Run], b: &[Run]) {
    let cells: Vec<Option<f64>> = medians(a)
        .into_iter()
        .zip(medians(b))
        .map(|(a, b)| a.zip(b).filter(|&(_, b)| b != 0.0).map(|(a, b)| a / b))
        .collect();
    let shown = shown(std::slice::from_ref(&cells));
    heads(&shown);
    row("ratio", &cells, &shown);
}

/// One row per run and a row of medians. Delays in milliseconds.
pub fn print(runs: &[Run]) {
    let rows: Vec<Vec<Option<f64>>> = runs.iter().map(Run::cells).collect();
    let shown = shown(&rows);
    heads(&shown);
    for (i, cells) in rows.iter().enumerate() {
        row(&format!("run {}", i + 1), cells, &shown);
    }
    row("median", &medians(runs), &shown);
    if let Some((w, n, _)) = runs.first().and_then(|r| r.busy.as_ref()) {
        println!("busy: {w} watchers on one task, {n} deliveries of 20 decisions per run");
    }
    if let Some((k, i)) = runs.last().and_then(|r| r.idle.as_ref()) {
        println!(
            "idle (last run): {k} streams; server RSS {} KiB before, {} open, {} 11 s after closing; \
             streams the server counts (hitl_sse_clients): {:?}",
            i.before, i.open, i.closed, i.clients
        );
    }
    if let Some((k, i)) = runs.last().and_then(|r| r.waiting.as_ref()) {
        println!(
            "waiting (last run): {k} requests waiting on a task; server RSS {} KiB before, {} open, {} 11 s after closing",
            i.before, i.open, i.closed
        );
    }
    let hooks: Vec<String> = runs
        .iter()
        .filter_map(|r| r.hook.as_ref())
        .map(|h| format!("{} of {}", h.received, h.expected))
        .collect();
    if !hooks.is_empty() {
        println!(
            "webhook: distinct deliveries received of status events shown, each run: {}",
            hooks.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let s = Spread::of(&ms(&hundred));
        assert_eq!((s.p50, s.p99, s.max), (50.0, 99.0, 100.0));
        let s = Spread::of(&ms(&[7, 3, 5]));
        assert_eq!((s.p50, s.p99, s.max), (5.0, 7.0, 7.0));
        let s = Spread::of(&ms(&[4]));
        assert_eq!((s.p50, s.p99, s.max), (4.0, 4.0, 4.0));
        let s = Spread::of(&[]);
        assert_eq!((s.p50, s.p99, s.max), (0.0, 0.0, 0.0));
    }

    #[test]
    fn medians_of_odd_and_even_runs_and_columns_without_figures() {
        let run = |rate: f64| Run::new(1000, 1000.0 / rate, [Some(0.5), None], None, &[]);
        let runs = [run(125.0), run(500.0), run(250.0)];
        assert_eq!(medians(&runs)[0], Some(250.0));
        assert_eq!(medians(&runs[..2])[0], Some(312.5));
        let own_cpu = HEADS.iter().position(|&h| h == "gen ms/lc").unwrap();
        assert_eq!(medians(&runs)[own_cpu], None);
        let rows: Vec<_> = runs.iter().map(Run::cells).collect();
        let shown = shown(&rows);
        assert!(shown[0] && !shown[own_cpu]);
        let hook = HEADS.iter().position(|&h| h == "hook p50").unwrap();
        assert!(!shown[hook], "no receiver, no column");
    }
}
