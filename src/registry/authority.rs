//! Where a change is decided when it is not decided here: the seam between the registry and a
//! shared database (`cluster::Shared` implements it), so the registry never names the cluster.
//!
//! In one process the registry decides every change itself, under the task's shard lock. With
//! several instances on one PostgreSQL database, the database decides (the same rules, in its
//! transaction) and the registry is a replica of its journal: [`Authority::transition`] sends a
//! change there and returns once this instance's replica shows it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::Result;
use crate::model::{
    audit::Digest,
    changes::BoxedChange,
    task::{Task, TaskId},
};

pub trait Authority: Send + Sync + 'static {
    /// Applies `change` to task `id`, as done `by` someone; a change `claimed` for the task's
    /// workflow is refused unless this instance holds the task's claim.
    fn transition(
        &self,
        id: TaskId,
        by: Option<Arc<str>>,
        claimed: bool,
        change: BoxedChange,
    ) -> BoxFuture<'_, Result<Arc<Task>>>;

    /// Passes on an intermediate result of a running attempt (nobody waits on it): this
    /// instance's workflow's, or (`claim`) a worker's under that claim, wherever it asked.
    fn progress(&self, id: TaskId, attempt: u32, text: Arc<str>, claim: Option<Digest>);

    /// This instance's workflow of `id` has ended: its own `token` is cancelled, and, if it was
    /// `suspended` rather than finished, its claim is let go so the work is resumed at once.
    fn ended(&self, id: TaskId, token: CancellationToken, suspended: bool) -> BoxFuture<'_, ()>;
}
