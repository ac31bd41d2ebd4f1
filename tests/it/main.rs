//! hitl's integration tests: one binary, a real server on a free port per test.

mod api;
mod audit;
mod auth;
mod binary;
mod command;
mod deadlines;
mod durability;
mod heartbeat;
mod helpers;
mod hostile;
mod html;
mod inbox;
mod openai;
mod openapi;
mod outside;
mod props;
mod protect;
mod retention;
mod streams;
mod views;
mod webhooks;
