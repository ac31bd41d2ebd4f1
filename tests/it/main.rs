//! hitl's integration tests: one binary, a real server on a free port per test.

mod api;
mod binary;
mod durability;
mod heartbeat;
mod helpers;
mod html;
mod protect;
mod streams;
mod views;
