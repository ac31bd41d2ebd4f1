//! The group-commit writer: one thread takes every event from a queue and commits whatever has
//! gathered in one transaction, then tells the event log how far the journal is durable.
//!
//! Under load the queue fills while a commit is in flight, so the next commit carries many events
//! for one fsync; when idle, an event is committed on its own at once. Nobody waits on a timer.
//! The event log makes events visible to streams, and the service answers requests, only once
//! they are durable, so a client never sees an event, or a response, that a crash could undo.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{Retention, Store};
use crate::model::event::Event;

/// Told the sequence number of the newest event each commit made durable (the event log, which
/// then lets streams and answers go that far). A callback, so the journal stands below the log.
pub type OnDurable = Box<dyn Fn(u64) + Send>;

/// The most events one transaction carries.
const MAX_BATCH: usize = 4096;
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// Attempts to write a batch once shutdown has begun, before its events are given up.
const TRIES_WHILE_STOPPING: u32 = 5;

pub(crate) enum Message {
    Event(Arc<Event>),
    /// Commit everything queued before this, then stop and answer.
    Stop(oneshot::Sender<()>),
}

/// The event log's end of the queue.
#[derive(Clone)]
pub struct JournalSender(mpsc::Sender<Message>);

impl JournalSender {
    /// Queues an event for the next commit; false if the writer has stopped.
    pub fn append(&self, event: Arc<Event>) -> bool {
        self.0.send(Message::Event(event)).is_ok()
    }
}

/// The writer thread's end of the queue.
pub struct JournalReceiver(mpsc::Receiver<Message>);

pub fn channel() -> (JournalSender, JournalReceiver) {
    let (tx, rx) = mpsc::channel();
    (JournalSender(tx), JournalReceiver(rx))
}

/// The running writer: whether its last commit worked, and how to stop it.
pub struct Journal {
    tx: mpsc::Sender<Message>,
    healthy: Arc<AtomicBool>,
    /// Set by [`Journal::close`], so a batch that keeps failing stops retrying and shutdown
    /// does not hang on a broken disk.
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the writer over `store`, reading what `sender` queues and telling `durable` how
    /// far each commit reached.
    pub fn spawn(
        store: Arc<dyn Store>,
        durable: OnDurable,
        sender: &JournalSender,
        receiver: JournalReceiver,
        retention: Retention,
    ) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let stopping = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            store,
            durable,
            retention,
            healthy: healthy.clone(),
            stopping: stopping.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("hitl-journal".into())
            .spawn(move || writer.run(receiver.0))?;
        Ok(Self {
            tx: sender.0.clone(),
            healthy,
            stopping,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Did the last commit succeed?
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Commits everything queued so far and stops the writer. Later events are not written.
    pub async fn close(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Stop(ack)).is_ok() {
            let _ = done.await;
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    durable: OnDurable,
    retention: Retention,
    healthy: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Message>) {
        let mut batch = Vec::new();
        let mut last_prune = Instant::now();
        loop {
            let mut stop = None;
            match rx.recv() {
                Ok(Message::Event(event)) => batch.push(event),
                Ok(Message::Stop(ack)) => stop = Some(ack),
                Err(_) => return,
            }
            while stop.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Message::Event(event)) => batch.push(event),
                    Ok(Message::Stop(ack)) => stop = Some(ack),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(&batch);
                batch.clear();
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                match self.store.prune(self.retention) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(events = n, "pruned old events"),
                    Err(error) => tracing::warn!(%error, "cannot prune old events"),
                }
            }
            if let Some(ack) = stop {
                let _ = ack.send(());
                return;
            }
        }
    }

    /// Writes the batch, retrying with a growing wait while the store fails (a full disk can be
    /// freed); requests waiting on it time out meanwhile, and readiness reports the failure.
    fn commit(&self, batch: &[Arc<Event>]) {
        let started = Instant::now();
        let mut wait = Duration::from_millis(10);
        let mut tries = 0;
        while let Err(error) = self.store.append(batch) {
            self.healthy.store(false, Ordering::Relaxed);
            tries += 1;
            if self.stopping.load(Ordering::Relaxed) && tries >= TRIES_WHILE_STOPPING {
                tracing::error!(%error, events = batch.len(), "giving up writing the journal at shutdown");
                return;
            }
            tracing::error!(%error, events = batch.len(), "cannot write the journal; retrying");
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        self.healthy.store(true, Ordering::Relaxed);
        metrics::counter!("hitl_journal_events_written_total").increment(batch.len() as u64);
        metrics::histogram!("hitl_journal_batch_events").record(batch.len() as f64);
        metrics::histogram!("hitl_journal_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Some(last) = batch.last() {
            (self.durable)(last.seq);
        }
    }
}
