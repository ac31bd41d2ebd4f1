//! hitl: a human-in-the-loop review service.
//!
//! People submit a task, a workflow processes it, a person approves the output or requests
//! changes (the next attempt gets the comment), and every change reaches every open browser over
//! Server-Sent Events.
//!
//! # Layout
//! - [`engine`]: a small PocketFlow-style workflow engine (nodes with prep / exec / post, flows
//!   linked by typed actions, validated when built). Knows nothing of tasks.
//! - [`review`]: the review flow on that engine (`Process -> Review -> Result`), its shared store
//!   and the processor that does an attempt's work.
//! - [`processors`]: the processors `--processor` chooses: simulated, a command, an LLM.
//! - [`model`]: the ground floor: ids and statuses, the task, its audit trail, event values and
//!   the pure rules of every change (`task` and `audit` are re-exported at the crate's root).
//! - [`registry`]: the live tasks in a `DashMap`, and the guarded transitions that change them.
//! - [`events`]: the numbered event log every stream reads from, with replay and snapshots.
//! - [`store`]: the durable stores (SQLite, PostgreSQL) tasks are rebuilt from, and the group-commit journal
//!   that writes every event to it before anyone is told of it.
//! - [`cluster`]: several instances on one PostgreSQL database (`--store postgres`): the
//!   database decides, every instance replicates its journal, work is claimed with leases.
//! - [`inbox`]: the home page's list at scale: status counts, filter, search, pages, and the
//!   task to review next.
//! - [`input`]: parsing what people send into values the service can trust.
//! - [`service`]: [`Hitl`], the cheap-clone state every route shares.
//! - [`web`]: the router, browser routes, JSON API, event streams, errors and embedded assets.
//! - [`views`]: maud pages and the fragments pushed to browsers.
//! - [`metrics`]: Prometheus metrics and request timing.
//! - [`auth`]: users, roles, sessions and bearer tokens for `--auth token`.
//! - [`config`]: command-line flags.

pub mod auth;
pub mod cluster;
pub mod config;
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
