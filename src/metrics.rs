//! Prometheus metrics: what `/metrics` shows and how requests are timed.
//!
//! The `metrics` recorder is process-global, so it is installed once, by whichever service
//! starts first; every service in the process reports to it.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::task::TaskStatus;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Request latency buckets, in seconds: from a cached page to a decision waiting on a slow disk.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the recorder, once per process.
pub fn install() {
    HANDLE.get_or_init(|| {
        let installed = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|builder| builder.install_recorder());
        match installed {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics are not recorded");
                None
            }
        }
    });
}

/// The Prometheus text page, with the task counts (per status, in the order of
/// [`TaskStatus::ALL`]) read now.
pub fn render(counts: [usize; TaskStatus::ALL.len()]) -> String {
    for (status, count) in TaskStatus::ALL.iter().zip(counts) {
        metrics::gauge!("hitl_tasks", "status" => status.as_str()).set(count as f64);
    }
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Middleware: records every request's latency (to its response head; an event stream counts
/// until it starts) by route, method and status.
pub async fn time_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    // Unmatched paths are one series, whatever a client asks for.
    // A fixed set: a client's made-up method must not create a new series each time.
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let response = next.run(request).await;
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}
