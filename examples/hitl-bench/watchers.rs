//! Many streams at once: W watchers on one task that goes through many decisions, and K idle
//! streams whose memory the server must carry and give back.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use eventsource_stream::Eventsource;
use futures_util::{StreamExt, stream};
use tokio::{sync::watch, task::JoinSet, time::timeout};

use crate::{
    check::{StreamCheck, TaskCheck},
    load::{Load, WAIT, connect, parse},
    server::Server,
};

/// Attempts of the busy task: the most a task may have, so 19 requests for changes and an
/// approval.
pub const BUSY_ATTEMPTS: u32 = 20;

/// One watcher of the busy task: checks every event and notes when each decision's event came.
async fn watch_task(
    response: reqwest::Response,
    reviewed: watch::Sender<u32>,
) -> Result<Vec<Instant>> {
    let (mut events, mut ids) = (
        response.bytes_stream().eventsource(),
        StreamCheck::default(),
    );
    let (mut check, mut arrivals) = (TaskCheck::from_review(1), Vec::new());
    loop {
        let event = match timeout(WAIT, events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => bail!("stream error: {e}"),
            Ok(None) => bail!("the stream ended"),
            Err(_) => bail!("no event in {WAIT:?}"),
        };
        let arrived = Instant::now();
        let (id, seq, status) = parse(&event).map_err(|e| anyhow!(e))?;
        ids.see(id, seq).map_err(|e| anyhow!(e))?;
        let Some(s) = status else { continue };
        check.see(&s.status, s.attempt).map_err(|e| anyhow!(e))?;
        match s.status.as_str() {
            "waiting_for_review" => drop(reviewed.send_replace(s.attempt)),
            "running" => arrivals.push(arrived),
            _ => {
                arrivals.push(arrived);
                check.finished(BUSY_ATTEMPTS).map_err(|e| anyhow!(e))?;
                reviewed.send_replace(u32::MAX);
                return Ok(arrivals);
            }
        }
    }
}

/// What the busy watchers saw: each decision-to-event delay at every watcher, and errors.
pub struct Busy {
    pub delays: Vec<Duration>,
    pub errors: Vec<String>,
}

/// Submits one task, opens `w` streams on it once it is up for review, then decides
/// `BUSY_ATTEMPTS` times, waiting after each until every watcher has seen the next review.
pub async fn busy(load: &Load, w: usize) -> Result<Busy> {
    let id = load.submit(usize::MAX, BUSY_ATTEMPTS).await?;
    load.wait(&id, ("waiting_for_review", 1)).await?;
    let stream_client = reqwest::Client::new();
    let url = format!("{}/api/events?task={id}", load.base);
    let opened = stream::iter(0..w)
        .map(|_| connect(&stream_client, url.clone()))
        .buffer_unordered(64);
    let opened: Vec<_> = opened.collect().await;
    let (mut watchers, mut reviews) = (JoinSet::new(), Vec::new());
    for response in opened {
        let (tx, rx) = watch::channel(0);
        watchers.spawn(watch_task(response?, tx));
        reviews.push(rx);
    }
    let all_reviewed = |attempt: u32| {
        let mut reviews = reviews.clone();
        async move {
            for r in &mut reviews {
                let seen = timeout(WAIT, r.wait_for(|&a| a >= attempt)).await;
                seen.map_err(|_| anyhow!("a watcher never saw review {attempt}"))?
                    .map_err(|_| anyhow!("a watcher stopped before review {attempt}"))?;
            }
            anyhow::Ok(())
        }
    };
    let mut decided = Vec::new();
    for attempt in 1..=BUSY_ATTEMPTS {
        all_reviewed(attempt).await?;
        decided.push(load.decide(&id, attempt, attempt == BUSY_ATTEMPTS).await?);
    }
    load.wait(&id, ("completed", BUSY_ATTEMPTS)).await?;
    load.finished(&id, BUSY_ATTEMPTS)?;
    let (mut delays, mut errors) = (Vec::new(), Vec::new());
    while let Some(joined) = watchers.join_next().await {
        match joined.context("a watcher panicked")? {
            Ok(arrivals) if arrivals.len() == decided.len() => delays.extend(
                arrivals
                    .iter()
                    .zip(&decided)
                    .map(|(a, d)| a.duration_since(*d)),
            ),
            Ok(arrivals) => {
                errors.push(format!("a watcher saw {} of the decisions", arrivals.len()))
            }
            Err(e) => errors.push(format!("busy watcher: {e:#}")),
        }
    }
    Ok(Busy { delays, errors })
}

/// Server memory (KiB) and the streams it counts open (`hitl_sse_clients`), before, with K idle
/// streams open, and after closing them.
pub struct Idle {
    pub before: u64,
    pub open: u64,
    pub closed: u64,
    pub clients: [Option<f64>; 3],
}

/// The server's own count of open event streams, from `/metrics`.
async fn sse_clients(base: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("hitl_sse_clients "))?;
    line.trim().parse().ok()
}

/// Opens `k` streams on finished task `id` (each gets one snapshot event, then nothing), reads
/// the server's RSS, closes them all and reads it again once the server has had time to notice
/// (past one keep-alive, when it writes to every socket).
pub async fn idle(server: &Server, base: &str, id: &str, k: usize) -> Result<Idle> {
    let rss = || server.rss_kib().context("the server's RSS (give --pid)");
    let (before, clients_before) = (rss()?, sse_clients(base).await);
    let client = reqwest::Client::new();
    let url = format!("{base}/api/events?task={id}");
    let opened = stream::iter(0..k)
        .map(|_| async {
            let mut events = connect(&client, url.clone())
                .await?
                .bytes_stream()
                .eventsource();
            let first = timeout(WAIT, events.next()).await;
            let first = first.map_err(|_| anyhow!("no snapshot in {WAIT:?}"))?;
            ensure!(
                matches!(first, Some(Ok(ref e)) if e.event == "status"),
                "{first:?}"
            );
            anyhow::Ok(events)
        })
        .buffer_unordered(256);
    let streams: Vec<_> = opened.collect().await;
    let streams = streams.into_iter().collect::<Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (open, clients_open) = (rss()?, sse_clients(base).await);
    drop(streams);
    drop(client);
    tokio::time::sleep(Duration::from_secs(11)).await;
    Ok(Idle {
        before,
        open,
        closed: rss()?,
        clients: [clients_before, clients_open, sse_clients(base).await],
    })
}

/// Holds `k` bounded waits (`GET /api/tasks/{id}?wait=120`) on finished task `id` open at once
/// (raw sockets: each request sent, its answer never read), reads the server's RSS, closes
/// them and reads it again. A wait must cost no more than an idle stream.
pub async fn waiting(server: &Server, base: &str, id: &str, k: usize) -> Result<Idle> {
    use tokio::io::AsyncWriteExt;
    let rss = || server.rss_kib().context("the server's RSS (give --pid)");
    let before = rss()?;
    let addr = base.trim_start_matches("http://").to_owned();
    let request = format!("GET /api/tasks/{id}?wait=120 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let opened = stream::iter(0..k)
        .map(|_| async {
            let mut socket = tokio::net::TcpStream::connect(&addr).await?;
            socket.write_all(request.as_bytes()).await?;
            anyhow::Ok(socket)
        })
        .buffer_unordered(256);
    let sockets: Vec<_> = opened.collect().await;
    let sockets = sockets.into_iter().collect::<Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = rss()?;
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(11)).await;
    Ok(Idle {
        before,
        open,
        closed: rss()?,
        clients: [None; 3],
    })
}
