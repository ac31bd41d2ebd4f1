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

use super::{Retention, Store, outbox::Fill};
use crate::model::{
    delivery::{NewDelivery, OutboxWrite, Receivers},
    event::Event,
};

/// Told the sequence number of the newest event each commit made durable (the event log, which
/// then lets streams and answers go that far). A callback, so the journal stands below the log.
pub type OnDurable = Box<dyn Fn(u64) + Send>;

/// The deliveries events make: to whom (a task's `callback_url` always), how full the outbox
/// may get, and who to wake when new ones are written (the sender).
pub struct Outgoing {
    pub receivers: Receivers,
    pub fill: Arc<Fill>,
    pub wake: Box<dyn Fn() + Send>,
}

impl Outgoing {
    /// Only callbacks, nobody woken (a store nobody sends from, as in tests).
    pub fn none() -> Self {
        Self {
            receivers: Receivers::default(),
            fill: Fill::new(u64::MAX, 0, false),
            wake: Box::new(|| {}),
        }
    }
}

/// The most events one transaction carries.
const MAX_BATCH: usize = 4096;
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// Attempts to write a batch once shutdown has begun, before its events are given up.
const TRIES_WHILE_STOPPING: u32 = 5;

pub(crate) enum Message {
    Event(Arc<Event>),
    /// The outbox's writes, committed with the next batch; answered once durable.
    Outbox(Vec<OutboxWrite>, oneshot::Sender<()>),
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

    /// Queues the outbox's writes for the next commit; the answer comes once they are durable
    /// (`None` if the writer has stopped).
    pub fn outbox(&self, writes: Vec<OutboxWrite>) -> Option<oneshot::Receiver<()>> {
        let (done, durable) = oneshot::channel();
        self.0.send(Message::Outbox(writes, done)).ok()?;
        Some(durable)
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
        outgoing: Outgoing,
    ) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let stopping = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            store,
            durable,
            retention,
            outgoing,
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
    outgoing: Outgoing,
    healthy: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

/// What one commit carries.
#[derive(Default)]
struct Batch {
    events: Vec<Arc<Event>>,
    writes: Vec<OutboxWrite>,
    acks: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, message: Message) -> Option<oneshot::Sender<()>> {
        match message {
            Message::Event(event) => self.events.push(event),
            Message::Outbox(writes, ack) => {
                self.writes.extend(writes);
                self.acks.push(ack);
            }
            Message::Stop(ack) => return Some(ack),
        }
        None
    }

    fn len(&self) -> usize {
        self.events.len() + self.writes.len()
    }
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Message>) {
        let mut last_prune = Instant::now();
        loop {
            let mut batch = Batch::default();
            let mut stop = match rx.recv() {
                Ok(message) => batch.add(message),
                Err(_) => return,
            };
            while stop.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(message) => stop = batch.add(message),
                    Err(_) => break,
                }
            }
            if batch.len() > 0 {
                self.commit(batch);
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
    fn commit(&self, batch: Batch) {
        let started = Instant::now();
        // Planned once, so a retried commit writes the same deliveries with the same ids.
        let mut deliveries: Vec<NewDelivery> = batch
            .events
            .iter()
            .flat_map(|event| self.outgoing.receivers.plan(event))
            .collect();
        self.outgoing.fill.admit(&mut deliveries);
        let mut wait = Duration::from_millis(10);
        let mut tries = 0;
        while let Err(error) = self.store.append(&batch.events, &deliveries, &batch.writes) {
            self.healthy.store(false, Ordering::Relaxed);
            tries += 1;
            if self.stopping.load(Ordering::Relaxed) && tries >= TRIES_WHILE_STOPPING {
                tracing::error!(%error, events = batch.events.len(), "giving up writing the journal at shutdown");
                return;
            }
            tracing::error!(%error, events = batch.events.len(), "cannot write the journal; retrying");
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        self.healthy.store(true, Ordering::Relaxed);
        for ack in batch.acks {
            let _ = ack.send(());
        }
        if !deliveries.is_empty() {
            (self.outgoing.wake)();
        }
        if let Some(last) = batch.events.last() {
            metrics::counter!("hitl_journal_events_written_total")
                .increment(batch.events.len() as u64);
            metrics::histogram!("hitl_journal_batch_events").record(batch.events.len() as f64);
            metrics::histogram!("hitl_journal_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            (self.durable)(last.seq);
        }
    }
}
