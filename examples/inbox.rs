//! How long the home page and the list API take with 100,000 tasks, measured at the server.
//!
//! It fills a service (in memory) with 100,000 tasks of made-up but realistic text: an input of
//! 150–450 bytes, drafts of 200–600 bytes, reviewers' comments, a mix of statuses (78 % completed,
//! 5 % waiting for review, …), words drawn from a vocabulary of 2,000 with Zipf's law as in real
//! prose. Then, for each case, it sends the request R times straight into the router
//! (`tower::ServiceExt::oneshot`, no socket: every layer, the handler, the query, the rendering
//! and collecting the body) and reports the median and p99. The query alone (`Inbox::query`) is
//! timed the same way, apart. One warm-up request per case comes first; the first search's cost
//! (building the text index) is reported on its own line. One case cancels 50 tasks before each
//! request, as a busy server changes tasks between two searches.
//!
//!     cargo run --release --example inbox -- [--tasks N] [--runs R]
//!
//! Defaults: N = 100,000, R = 101. Results are in BENCHMARKS.md.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use axum::{Router, body::Body, http::Request};
use hitl::{
    Hitl,
    config::{Config, StoreKind},
    inbox::{Counts, Inbox, InboxFields, InboxQuery, PER_PAGE},
    task::{AttemptRecord, Decision, Task, TaskId, TaskStatus, now},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// In about 1 task in 4,000: what "a search with few matches" looks for.
const RARE: &str = "PO-7731";
/// In about 1 input in 5: what "a search with many matches" looks for (in any case).
const COMMON: &str = "invoice";

/// A deterministic xorshift generator: the same tasks on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }
}

/// Words with Zipf's law: the word of rank r comes up in proportion to 1/r.
struct Words {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Words {
    fn new(rng: &mut Rng) -> Self {
        const COMMON_WORDS: &str = "the of and to a in is that for it as with was on be by this are \
            at from or an have not we please check report summary customer order team data review \
            draft update figures quarter region contract clause risk budget forecast meeting notes \
            action items release plan support ticket error page login numbers table chart sales";
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mi", "ren", "sta", "tor", "vel", "qui", "dra", "nes", "po", "lim", "ber",
            "gan", "fe", "zu", "tri", "ol", "mar", "sen", "ux", "ca", "del", "ion",
        ];
        let mut words: Vec<String> = COMMON_WORDS.split_whitespace().map(String::from).collect();
        while words.len() < 2000 {
            let n = rng.between(2, 4);
            words.push((0..n).map(|_| SYLLABLES[rng.below(24)]).collect());
        }
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Self { words, cumulative }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let rank = self.cumulative.partition_point(|c| *c < x);
        &self.words[rank.min(self.words.len() - 1)]
    }

    /// Sentences of prose, `low` to `high` bytes long (a sentence more, at most).
    fn text(&self, rng: &mut Rng, low: usize, high: usize) -> String {
        let bytes = rng.between(low, high);
        let mut out = String::with_capacity(bytes + 16);
        while out.len() < bytes {
            let n = rng.between(6, 16);
            for i in 0..n {
                let word = self.word(rng);
                if i == 0 {
                    let mut chars = word.chars();
                    out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                    out.push_str(chars.as_str());
                } else {
                    out.push(' ');
                    out.push_str(word);
                }
            }
            out.push_str(". ");
        }
        out
    }
}

fn status(k: usize) -> TaskStatus {
    match k % 100 {
        0..=4 => TaskStatus::WaitingForReview,
        5 => TaskStatus::Running,
        6 => TaskStatus::Pending,
        7..=16 => TaskStatus::Failed,
        17..=21 => TaskStatus::Cancelled,
        _ => TaskStatus::Completed,
    }
}

/// Task `k`: ids in the order of `k`, so the last is the newest.
fn task(k: usize, words: &Words, rng: &mut Rng) -> Task {
    const KINDS: [&str; 5] = [
        "Summarise",
        "Translate",
        "Classify",
        "Check",
        "Draft a reply to",
    ];
    let topic = if rng.below(5) == 0 {
        "the attached Invoice"
    } else {
        "this message"
    };
    let mut input = format!("{} {topic}: ", KINDS[rng.below(5)]);
    input += &words.text(rng, 150, 450);
    if rng.below(4000) == 0 {
        input += &format!("Reference {RARE}.");
    }
    let id = TaskId(uuid::Uuid::from_u128(
        0x0192_0000_0000_7000_8000_0000_0000_0000 + k as u128,
    ));
    let mut task = Task::new(id, input.into(), 3, now());
    task.status = status(k);
    let attempts = match task.status {
        TaskStatus::Pending | TaskStatus::Running => 0,
        TaskStatus::Cancelled => rng.below(2),
        _ => rng.between(1, 3),
    };
    for n in 1..=attempts {
        let output: Arc<str> = format!("Draft {n}: {}", words.text(rng, 200, 600)).into();
        let last = n == attempts;
        task.attempt = n as u32;
        if last && task.status == TaskStatus::WaitingForReview {
            task.output = Some(output);
            break;
        }
        let approved = last && task.status == TaskStatus::Completed;
        let edited = (approved && rng.below(10) == 0).then(|| words.text(rng, 60, 200).into());
        task.attempts.push(AttemptRecord {
            attempt: n as u32,
            output: output.clone(),
            decision: Some(if approved {
                Decision::Approved
            } else {
                Decision::Rejected
            }),
            comment: (!approved).then(|| words.text(rng, 30, 120).into()),
            edited_output: edited.clone(),
            decided_at: Some(now()),
            decided_by: None,
            timed_out: false,
            seq: 0,
        });
        task.output = Some(output.clone());
        if approved {
            task.final_result = Some(edited.unwrap_or(output));
        }
    }
    task
}

/// The bytes of distinct text in a task (a text that is also the output or the final result is
/// counted once, as the search keeps it once).
fn text_bytes(task: &Task) -> usize {
    let attempts = task.attempts.iter().flat_map(|a| {
        [
            Some(&a.output),
            a.comment.as_ref(),
            a.edited_output.as_ref(),
        ]
    });
    let mut seen: Vec<&Arc<str>> = Vec::new();
    let texts = [
        Some(&task.input),
        task.output.as_ref(),
        task.final_result.as_ref(),
    ];
    for text in texts.into_iter().chain(attempts).flatten() {
        if !seen.iter().any(|other| Arc::ptr_eq(other, text)) {
            seen.push(text);
        }
    }
    seen.iter().map(|text| text.len()).sum()
}

/// The median and p99 of `times`, in milliseconds.
fn quantiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.99))
}

/// One GET into the router, body read to the end; fails unless it answers 200.
async fn get(app: &Router, uri: &str) -> Result<Duration> {
    let request = Request::get(uri).body(Body::empty())?;
    let started = Instant::now();
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    let took = started.elapsed();
    ensure!(status == 200, "GET {uri}: {status}");
    ensure!(
        body.len() > 1000,
        "GET {uri}: a body of {} bytes",
        body.len()
    );
    Ok(took)
}

/// The query a home page or API address asks for, for timing the query alone.
fn query_of(uri: &str) -> Result<InboxQuery> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)?;
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.as_str())
    };
    let fields = InboxFields {
        status: field("status"),
        q: field("q"),
        page: field("page"),
        per_page: field("per_page"),
    };
    ensure!(
        path == "/" || path == "/api/tasks",
        "not an inbox address: {uri}"
    );
    Ok(InboxQuery::parse(fields, PER_PAGE)?)
}

/// The process's resident memory in MB (Linux), or 0 where it cannot be read.
fn resident_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1e3
}

/// Cancels `n` unfinished tasks: a busy server's changes between two searches, which the text
/// index catches up with.
async fn change(hitl: &Hitl, unfinished: &mut Vec<TaskId>, n: usize) {
    for id in unfinished.drain(unfinished.len().saturating_sub(n)..) {
        let _ = hitl.registry.cancel(id, None).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let (mut n, mut runs) = (100_000, 101);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every flag takes a value")?;
        match flag.as_str() {
            "--tasks" => n = value.parse()?,
            "--runs" => runs = value.parse()?,
            _ => bail!("usage: inbox [--tasks N] [--runs R]"),
        }
    }
    ensure!(
        n >= 1000 && runs >= 50,
        "N must be at least 1,000 and R at least 50"
    );

    let config = Config {
        process_delay_ms: 0,
        store: StoreKind::Memory,
        ..Default::default()
    };
    let hitl = Hitl::open(&config, CancellationToken::new())?;
    let (mut rng, started) = (Rng(0x9e37_79b9_7f4a_7c15), Instant::now());
    let words = Words::new(&mut rng);
    let (mut bytes, mut unfinished) = (0, Vec::new());
    for k in 0..n {
        let task = task(k, &words, &mut rng);
        bytes += text_bytes(&task);
        if !task.status.is_terminal() {
            unfinished.push(task.id);
        }
        hitl.registry.restore(Arc::new(task), &hitl.shutdown);
    }
    println!(
        "{n} tasks, {:.1} MB of searchable text ({} bytes a task on average), filled in {:.1} s; {runs} runs per case",
        bytes as f64 / 1e6,
        bytes / n,
        started.elapsed().as_secs_f64()
    );
    let app = hitl::web::app(hitl.clone());
    let inbox = Inbox::default();

    let before = resident_mb();
    let first = get(&app, &format!("/?q={RARE}")).await?;
    let index = resident_mb() - before;
    let started = Instant::now();
    inbox.query(&hitl.registry, &query_of(&format!("/?q={RARE}"))?);
    println!(
        "first search (builds the text index, +{index:.0} MB resident): request {:.1} ms, query alone {:.1} ms",
        first.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );

    let deep = n / PER_PAGE / 2;
    let cases = [
        ("unfiltered, page 1", "/".to_owned()),
        ("unfiltered, deep page", format!("/?page={deep}")),
        (
            "status filter (waiting)",
            "/?status=waiting_for_review".to_owned(),
        ),
        (
            "status filter, deep page",
            "/?status=completed&page=500".to_owned(),
        ),
        ("search, few matches", format!("/?q={RARE}")),
        ("search, many matches", format!("/?q={COMMON}")),
        (
            "search and status",
            format!("/?q={COMMON}&status=waiting_for_review"),
        ),
        (
            "API, status, 50",
            "/api/tasks?status=waiting_for_review&per_page=50".to_owned(),
        ),
        (
            "API, search, 50",
            format!("/api/tasks?q={COMMON}&per_page=50"),
        ),
        ("search, few, 50 changes before", format!("/?q={RARE}")),
    ];
    println!(
        "{:34} {:>10} {:>8} | {:>10} {:>8} | matches",
        "case", "median ms", "p99 ms", "query med", "p99"
    );
    for (name, uri) in cases {
        let churn = name.contains("changes");
        let query = query_of(&uri)?;
        get(&app, &uri).await?;
        let (mut requests, mut queries, mut total) = (Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            if churn {
                change(&hitl, &mut unfinished, 50).await;
            }
            requests.push(get(&app, &uri).await?);
            let started = Instant::now();
            total = inbox.query(&hitl.registry, &query).total;
            queries.push(started.elapsed());
        }
        let ((median, p99), (q_median, q_p99)) = (quantiles(requests), quantiles(queries));
        println!("{name:34} {median:10.2} {p99:8.2} | {q_median:10.2} {q_p99:8.2} | {total}");
    }

    let mut counts = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        std::hint::black_box(Counts::of(&hitl.registry));
        counts.push(started.elapsed());
    }
    let (median, p99) = quantiles(counts);
    println!(
        "{:34} {:10} {:8} | (counts per status alone, in nanoseconds)",
        "counts",
        (median * 1e6).round(),
        (p99 * 1e6).round()
    );
    Ok(())
}
