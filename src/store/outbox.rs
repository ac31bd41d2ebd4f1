//! The outbox: deliveries written in the same commit as the events that made them, read back by
//! the sender (`delivery/`) and updated as it tries them. SQLite and PostgreSQL each implement
//! [`Outbox`]; the rows are inserted by their own event writes.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::model::{
    delivery::{Delivery, NewDelivery, OutboxWrite},
    task::TaskId,
};

/// Deliveries ready to send, and when the next one not yet due comes due.
#[derive(Debug, Default)]
pub struct Due {
    pub ready: Vec<Delivery>,
    pub next: Option<OffsetDateTime>,
}

impl Due {
    /// Gathers the answer from `rows` (pending deliveries in the order they come due): at most
    /// `limit` due by `now` and not in `busy`, then when the next comes due.
    pub(crate) fn gather(
        rows: impl Iterator<Item = Result<Delivery, StoreError>>,
        now: OffsetDateTime,
        limit: usize,
        busy: &HashSet<Uuid>,
    ) -> Result<Self, StoreError> {
        let mut due = Self::default();
        for row in rows {
            let delivery = row?;
            if busy.contains(&delivery.id) {
                continue;
            }
            match delivery.next_try_at {
                Some(at) if at > now => {
                    due.next = Some(at);
                    break;
                }
                _ if due.ready.len() < limit => due.ready.push(delivery),
                _ => {
                    due.next = Some(now);
                    break;
                }
            }
        }
        Ok(due)
    }
}

/// The sender's side of the outbox.
pub trait Outbox: Send + Sync + 'static {
    /// At most `limit` pending deliveries due by `now`, none in `busy` nor to a receiver in
    /// `full` (see [`crate::model::delivery::receiver_of`]), each the earliest not yet accepted
    /// of its receiver and task (for kinds sent in order); and the time the next one comes due.
    fn due(
        self: Arc<Self>,
        now: OffsetDateTime,
        limit: usize,
        busy: Arc<HashSet<Uuid>>,
        full: Arc<Vec<String>>,
    ) -> BoxFuture<'static, Result<Due, StoreError>>;

    /// Takes `ids` for sending, for `lease` (with several instances, one that another holds
    /// is left out); returns the ids taken.
    fn take(
        self: Arc<Self>,
        ids: Vec<Uuid>,
        lease: Duration,
    ) -> BoxFuture<'static, Result<Vec<Uuid>, StoreError>>;

    /// Records what tries left and what people asked, once durable.
    fn write(
        self: Arc<Self>,
        writes: Vec<OutboxWrite>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// A task's deliveries, oldest first.
    fn of_task(
        self: Arc<Self>,
        id: TaskId,
    ) -> BoxFuture<'static, Result<Vec<Delivery>, StoreError>>;

    /// One delivery.
    fn get(self: Arc<Self>, id: Uuid) -> BoxFuture<'static, Result<Option<Delivery>, StoreError>>;

    /// How many deliveries are pending, and when the oldest of them was made.
    fn fill(
        self: Arc<Self>,
    ) -> BoxFuture<'static, Result<(u64, Option<OffsetDateTime>), StoreError>>;
}

/// How full the outbox is: counted up as deliveries are written and down as they finish. With
/// one process writing (SQLite) the count is exact; with several (PostgreSQL) each counts only
/// its own, so the sender sets it from the store now and then (`shared`). Beyond `max`, a new
/// delivery is written as failed ("the outbox was full"): the event is never held up or lost,
/// and the delivery can still be redelivered.
#[derive(Debug)]
pub struct Fill {
    pending: AtomicU64,
    pub max: u64,
    /// Other processes write to the same outbox: read the count back from the store.
    pub shared: bool,
}

impl Fill {
    pub fn new(max: u64, pending: u64, shared: bool) -> Arc<Self> {
        Arc::new(Self {
            pending: AtomicU64::new(pending),
            max,
            shared,
        })
    }

    /// `n` deliveries were delivered, given up or dropped (or, negative, made pending again).
    pub fn finished(&self, n: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// A finished delivery is pending again.
    pub fn reopened(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn set(&self, pending: u64) {
        self.pending.store(pending, Ordering::Relaxed);
    }

    /// Marks the deliveries the outbox has no room for as overflowing, counting the others in.
    pub fn admit(&self, deliveries: &mut [NewDelivery]) {
        for delivery in deliveries {
            if self.pending.load(Ordering::Relaxed) >= self.max {
                delivery.overflow = true;
            } else {
                self.pending.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What `last_error` says of a delivery the outbox had no room for.
pub const OVERFLOW: &str = "not sent: the outbox held --webhook-max-pending deliveries";
