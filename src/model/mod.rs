//! The ground floor: what a task is and the rules it changes by, as plain values and pure
//! functions. Nothing here knows of storage, streams, HTTP or time passing.
//!
//! - [`status`]: ids, statuses, decisions, deadline policies and the limits on them.
//! - [`task`]: a task as the API shows it and the store keeps it.
//! - [`audit`]: the hash-chained audit trail, and how a chain is verified.
//! - [`event`]: numbered events, the scope a watcher follows, how long events are kept.
//! - [`delivery`]: which receivers an event is delivered to, and when a failed delivery is
//!   tried again.
//! - [`changes`]: the rules of every change, applied under the registry's guard in one process
//!   and inside the database's transaction with several.

pub mod audit;
pub mod changes;
pub mod delivery;
pub mod event;
pub mod status;
pub mod task;
