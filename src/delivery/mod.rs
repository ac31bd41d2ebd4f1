//! The sender: works through the outbox (deliveries written with their events), at least once.
//!
//! Each delivery is tried until a 2xx or until its age passes `--webhook-max-age`, waiting
//! longer after each failure ([`retry_after`]); every try carries the delivery's own id as its
//! `webhook-id`. Per receiver, one task's deliveries go in event order: the outbox only offers
//! the earliest pending one of each. A receiver that hangs is cut at the timeout and holds at
//! most [`PER_RECEIVER`] sends, so it slows neither decisions (they never wait on a send) nor
//! other receivers. With several instances each delivery is taken by one of them for a lease;
//! if that instance dies, another takes it when the lease runs out.

mod send;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use time::OffsetDateTime;
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use send::{CheckedResolver, is_public};

use crate::{
    config::WebhookConfig,
    model::{
        delivery::{Delivery, DeliveryStatus, OutboxWrite, Receivers, receiver_of, retry_after},
        task::TaskId,
    },
    store::{
        StoreError,
        outbox::{Fill, Outbox},
    },
};

/// Sends in flight at once, over every receiver.
const MAX_IN_FLIGHT: usize = 256;
/// Sends in flight at once to one receiver (scheme, host and port: paths on one host share it).
pub const PER_RECEIVER: usize = 16;
/// How often the outbox's fill is read for the metrics.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// What the service keeps of the sender: the outbox to show and redeliver, and how to wake it.
pub struct Deliveries {
    pub outbox: Arc<dyn Outbox>,
    pub wake: Arc<Notify>,
    pub fill: Arc<Fill>,
}

impl Deliveries {
    pub fn new(outbox: Arc<dyn Outbox>, fill: Arc<Fill>) -> Arc<Self> {
        Arc::new(Self {
            outbox,
            wake: Arc::new(Notify::new()),
            fill,
        })
    }

    /// A task's deliveries, oldest first.
    pub async fn of_task(&self, id: TaskId) -> Result<Vec<Delivery>, StoreError> {
        self.outbox.clone().of_task(id).await
    }

    /// Sends a delivery again now, with its id; `None` if there is no such delivery.
    pub async fn redeliver(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        let Some(before) = self.outbox.clone().get(id).await? else {
            return Ok(None);
        };
        let at = OffsetDateTime::now_utc();
        self.outbox
            .clone()
            .write(vec![OutboxWrite::Redeliver { id, at }])
            .await?;
        if before.status != DeliveryStatus::Pending {
            self.fill.reopened();
        }
        self.wake.notify_one();
        self.outbox.clone().get(id).await
    }
}

/// How the sender behaves, from the flags.
pub struct Settings {
    pub retry_min: Duration,
    pub max_age: Duration,
    pub timeout: Duration,
    /// How often to look for deliveries nobody woke this sender for (another instance's, or
    /// one whose lease ran out).
    pub poll: Duration,
}

/// Is a task still waiting for review of this attempt? (A reminder is sent only then.)
pub type StillWaiting = Box<dyn Fn(TaskId, u32) -> bool + Send + Sync>;

pub struct Sender {
    deliveries: Arc<Deliveries>,
    settings: Settings,
    signer: Option<standardwebhooks::Webhook>,
    /// For the operator's own receivers (`--webhook-url`, `--notify-slack`).
    client: reqwest::Client,
    /// For tasks' `callback_url`s: resolves only to allowed addresses.
    callbacks: reqwest::Client,
    operator: HashSet<Arc<str>>,
    still_waiting: StillWaiting,
}

impl Sender {
    pub fn new(
        deliveries: Arc<Deliveries>,
        config: &WebhookConfig,
        receivers: &Receivers,
        poll: Duration,
        still_waiting: StillWaiting,
    ) -> Self {
        let timeout = Duration::from_secs(config.timeout_secs);
        let allowed: Vec<IpAddr> = config
            .callback_allow
            .iter()
            .filter_map(|entry| crate::config::allowed_host(entry).ok())
            .filter_map(|(host, _)| host.parse().ok())
            .collect();
        let mut operator: HashSet<Arc<str>> = receivers.webhooks.iter().cloned().collect();
        if let Some(slack) = &receivers.slack {
            operator.insert(slack.url.clone());
        }
        Self {
            deliveries,
            settings: Settings {
                retry_min: Duration::from_millis(config.retry_min_ms),
                max_age: config.max_age,
                timeout,
                poll,
            },
            signer: config
                .secret
                .as_ref()
                .and_then(|secret| standardwebhooks::Webhook::new(&secret.0).ok()),
            client: send::client(timeout, None),
            callbacks: send::client(timeout, Some(CheckedResolver { allowed })),
            operator,
            still_waiting,
        }
    }

    /// Sends until `shutdown`; what is in flight then is sent again at the next start.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let outbox = self.deliveries.outbox.clone();
        let lease = self.settings.timeout * 2 + Duration::from_secs(5);
        let mut in_flight: JoinSet<OutboxWrite> = JoinSet::new();
        // What each send in flight holds: its delivery and its receiver's slot.
        let mut holding: HashMap<tokio::task::Id, (Uuid, String)> = HashMap::new();
        let mut busy: HashSet<Uuid> = HashSet::new();
        let mut per_receiver: HashMap<String, usize> = HashMap::new();
        let mut finished: Vec<OutboxWrite> = Vec::new();
        let mut recording: JoinSet<(Vec<Uuid>, u64, Result<(), StoreError>)> = JoinSet::new();
        let mut gauges = tokio::time::interval(GAUGE_EVERY);
        let mut failing = false;
        // Reading the outbox is paced by what it costs: after a read that took `d`, the next
        // waits at least 4d, so a large backlog of held-back deliveries costs at most a fifth
        // of a core, and an idle one nothing.
        let mut read_again = tokio::time::Instant::now();
        loop {
            // Results are recorded one batch at a time, beside the sends: while one batch is
            // written, others are sent (a delivery stays busy until its result is written).
            if recording.is_empty() && !finished.is_empty() {
                let writes = std::mem::take(&mut finished);
                let outbox = outbox.clone();
                recording.spawn(async move {
                    let ids: Vec<Uuid> = writes.iter().map(OutboxWrite::id).collect();
                    let ended = writes.iter().filter(|w| w.ends()).count() as u64;
                    (ids, ended, outbox.write(writes).await)
                });
            }
            // Read no more than one receiver can take at once: what is read beyond that is
            // mostly dropped for want of room, and reading it was most of the sender's cost.
            let room = (MAX_IN_FLIGHT - in_flight.len()).min(PER_RECEIVER);
            let mut next = OffsetDateTime::now_utc() + self.settings.poll;
            if room > 0 && tokio::time::Instant::now() >= read_again {
                let full: Vec<String> = per_receiver
                    .iter()
                    .filter(|(_, n)| **n >= PER_RECEIVER)
                    .map(|(receiver, _)| receiver.clone())
                    .collect();
                let started = tokio::time::Instant::now();
                let due = outbox
                    .clone()
                    .due(
                        OffsetDateTime::now_utc(),
                        room,
                        Arc::new(busy.clone()),
                        Arc::new(full),
                    )
                    .await;
                read_again = tokio::time::Instant::now() + started.elapsed() * 4;
                match due {
                    Ok(due) => {
                        failing = false;
                        let chosen: Vec<Delivery> = due
                            .ready
                            .into_iter()
                            .filter(|d| {
                                let count = per_receiver
                                    .entry(receiver_of(&d.url).to_owned())
                                    .or_default();
                                if *count >= PER_RECEIVER {
                                    return false;
                                }
                                *count += 1;
                                true
                            })
                            .collect();
                        let ids = chosen.iter().map(|d| d.id).collect();
                        let taken: HashSet<Uuid> = match outbox.clone().take(ids, lease).await {
                            Ok(taken) => taken.into_iter().collect(),
                            Err(error) => {
                                tracing::warn!(%error, "cannot take webhook deliveries");
                                HashSet::new()
                            }
                        };
                        let mut spawned = false;
                        for delivery in chosen {
                            let receiver = receiver_of(&delivery.url).to_owned();
                            if !taken.contains(&delivery.id) {
                                release(&mut per_receiver, &receiver);
                                continue;
                            }
                            busy.insert(delivery.id);
                            let id = delivery.id;
                            let sender = self.clone();
                            let handle =
                                in_flight.spawn(async move { sender.try_once(&delivery).await });
                            holding.insert(handle.id(), (id, receiver));
                            spawned = true;
                        }
                        // More are due than were read: read again at once, unless nothing
                        // could be sent (every one due goes to a receiver with no room).
                        match due.next {
                            Some(at) if spawned || at > OffsetDateTime::now_utc() => {
                                next = next.min(at)
                            }
                            _ => {}
                        }
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "cannot read the webhook outbox");
                        }
                        failing = true;
                    }
                }
            } else if room > 0 {
                next = next
                    .min(OffsetDateTime::now_utc() + (read_again - tokio::time::Instant::now()));
            }
            let wait = (next - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                Some(done) = in_flight.join_next_with_id() => {
                    let mut done = Some(done);
                    while let Some(result) = done {
                        let id = match &result {
                            Ok((id, _)) => *id,
                            Err(error) => error.id(),
                        };
                        if let Some((delivery, receiver)) = holding.remove(&id) {
                            release(&mut per_receiver, &receiver);
                            match result {
                                Ok((_, write)) => finished.push(write),
                                // A send that panicked is tried again.
                                Err(_) => drop(busy.remove(&delivery)),
                            }
                        }
                        done = in_flight.try_join_next_with_id();
                    }
                }
                Some(recorded) = recording.join_next() => {
                    if let Ok((ids, ended, written)) = recorded {
                        match written {
                            Ok(()) => self.deliveries.fill.finished(ended),
                            // Left pending: tried again (same id) once the store is back.
                            Err(error) => {
                                tracing::warn!(%error, "cannot record webhook deliveries")
                            }
                        }
                        for id in ids {
                            busy.remove(&id);
                        }
                    }
                }
                () = self.deliveries.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = gauges.tick() => self.read_fill().await,
                () = shutdown.cancelled() => break,
            }
        }
        in_flight.abort_all();
    }

    /// Sets the outbox's gauges from the store.
    async fn read_fill(&self) {
        if let Ok((pending, oldest)) = self.deliveries.outbox.clone().fill().await {
            if self.deliveries.fill.shared {
                self.deliveries.fill.set(pending);
            }
            metrics::gauge!("hitl_webhook_pending").set(pending as f64);
            let age = oldest
                .map(|at| (OffsetDateTime::now_utc() - at).as_seconds_f64().max(0.0))
                .unwrap_or(0.0);
            metrics::gauge!("hitl_webhook_oldest_seconds").set(age);
        }
    }

    /// Tries `delivery` once and says what it left.
    async fn try_once(&self, delivery: &Delivery) -> OutboxWrite {
        if let Some(attempt) = delivery.while_waiting
            && !(self.still_waiting)(delivery.task_id, attempt)
        {
            metrics::counter!("hitl_webhook_deliveries_total", "outcome" => "dropped").increment(1);
            return OutboxWrite::Drop { id: delivery.id };
        }
        let client = if self.operator.contains(&delivery.url) {
            &self.client
        } else {
            &self.callbacks
        };
        let tried = send::send(client, self.signer.as_ref(), delivery).await;
        let at = OffsetDateTime::now_utc();
        let attempts = delivery.attempts.saturating_add(1);
        let (status, next, error) = if tried.accepted {
            (DeliveryStatus::Delivered, None, None)
        } else if at - delivery.created_at >= self.settings.max_age {
            let why = tried.error.as_deref().unwrap_or("no answer");
            let error = format!("{why}; given up after {attempts} tries (--webhook-max-age)");
            (DeliveryStatus::Failed, None, Some(error.into()))
        } else {
            let wait = retry_after(attempts, self.settings.retry_min, jitter(delivery.id));
            (DeliveryStatus::Pending, Some(at + wait), tried.error)
        };
        let outcome = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Pending => "retried",
        };
        metrics::counter!("hitl_webhook_deliveries_total", "outcome" => outcome).increment(1);
        if status == DeliveryStatus::Failed {
            tracing::warn!(delivery = %delivery.id, task = %delivery.task_id, error = ?error, "webhook delivery given up");
        }
        OutboxWrite::Tried {
            id: delivery.id,
            round: delivery.round,
            status,
            attempts,
            code: tried.code,
            error,
            next,
            at,
        }
    }
}

fn release(per_receiver: &mut HashMap<String, usize>, receiver: &str) {
    if let Some(count) = per_receiver.get_mut(receiver) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            per_receiver.remove(receiver);
        }
    }
}

/// A number in 0..1 that differs between deliveries and between tries (the time's nanoseconds
/// mixed with the id), so retries spread out.
fn jitter(id: Uuid) -> f64 {
    let nanos = OffsetDateTime::now_utc().nanosecond() as u64;
    let mixed = (id.as_u64_pair().1 ^ nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}
