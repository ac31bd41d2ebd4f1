//! hitl: a human-in-the-loop review service.
//!
//! People submit a task, a workflow processes it, a person approves the output or requests
//! changes (the next attempt gets the comment), and every change reaches every open browser over
//! Server-Sent Events.
//!
//! # Layout, from the ground up (each module imports only from those above it in this list)
//! - [`model`]: what a task is and the rules it changes by, as values and pure functions: ids
//!   and statuses, the task, its hash-chained audit trail, event values, `changes`. `task` and
//!   `audit` are re-exported at the crate's root.
//! - [`engine`]: a small PocketFlow-style workflow engine (nodes with prep / exec / post, flows
//!   linked by typed actions, validated when built). Knows nothing of tasks.
//! - [`auth`]: users, roles, sessions and bearer tokens for `--auth token`.
//! - [`store`]: where tasks are kept: `History` (what is read back) and `Store` (the journal
//!   side), the group-commit journal, the SQLite store, the PostgreSQL store.
//! - [`metrics`]: Prometheus metrics and request timing.
//! - [`events`]: the numbered event log every stream reads from, with replay and snapshots.
//! - [`registry`]: the live tasks in a `DashMap`, the guarded transition that changes them, and
//!   the `Authority` seam through which a shared database decides instead.
//! - [`input`], [`config`]: what people send and the flags, parsed into values to trust.
//! - [`review`]: the review flow on the engine (`Process -> Review -> Result`) and the processor
//!   that does an attempt's work.
//! - [`processors`], [`inbox`], [`submissions`]: the processors `--processor` chooses; the home
//!   page's list at scale; submissions made once under a key.
//! - [`delivery`]: the sender that works through the outbox (deliveries written with their
//!   events): signed webhooks, callbacks and Slack notifications, at least once.
//! - [`cluster`]: several instances on one PostgreSQL database (`--store postgres`): the
//!   database decides, every instance replicates its journal, work is claimed with leases.
//! - [`service`]: [`Hitl`], the cheap-clone state every route shares, and its `Backing` (memory,
//!   a journal, or a shared database).
//! - [`views`]: maud pages and the fragments pushed to browsers.
//! - [`web`]: the router, browser routes, JSON API, event streams, errors and embedded assets.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod events;
pub mod inbox;
pub mod input;
pub mod metrics;
pub mod model;
pub mod processors;
pub mod registry;
pub mod review;
pub mod service;
pub mod store;
pub mod submissions;
pub mod views;
pub mod web;

pub use model::{audit, task};
pub use service::Hitl;
