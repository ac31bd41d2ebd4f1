//! The HTTP surface: [`app`] builds the router (a pure function of the service state); [`serve`]
//! runs it on a bound listener until the shutdown token is cancelled.

mod api;
mod assets;
pub mod error;
mod extract;
mod html;
pub mod stream;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, header},
    middleware,
    routing::{get, post},
    serve::ListenerExt,
};
use tokio::net::TcpListener;
use tower_http::{set_header::SetResponseHeaderLayer, trace::TraceLayer};

use crate::service::Hitl;

/// Bodies larger than this are refused with 413 before they are read in full: room for a
/// 64 KiB input, comment and edit, form-encoded.
pub const BODY_LIMIT: usize = 512 * 1024;

/// Every route, with its layers.
pub fn app(hitl: Hitl) -> Router {
    let api = Router::new()
        .route("/tasks", post(api::submit).get(api::list))
        .route("/tasks/{id}", get(api::get))
        .route("/tasks/{id}/feedback", post(api::feedback))
        .route("/tasks/{id}/cancel", post(api::cancel))
        .route("/events", get(stream::json_events))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed);

    Router::new()
        .route("/", get(html::home))
        .route("/about", get(html::about))
        .route("/tasks", post(html::submit).get(html::to_home))
        .route("/tasks/{id}", get(html::task_page))
        .route("/tasks/{id}/feedback", post(html::feedback))
        .route("/tasks/{id}/cancel", post(html::cancel))
        .route("/stream", get(stream::html_events))
        .route("/assets/{*path}", get(assets::asset))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .nest("/api", api)
        .fallback(html::not_found)
        .method_not_allowed_fallback(html::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::VARY,
            HeaderValue::from_static("HX-Request"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        .layer(middleware::from_fn(crate::metrics::time_requests))
        .layer(TraceLayer::new_for_http())
        .with_state(hitl)
}

/// Serves until `hitl.shutdown` is cancelled; open event streams end then too, so shutdown is
/// prompt, and requests in flight finish.
pub async fn serve(listener: TcpListener, hitl: Hitl) -> std::io::Result<()> {
    let shutdown = hitl.shutdown.clone();
    // Event streams are many small writes to a client that never writes back; with Nagle's
    // algorithm on they wait for delayed ACKs (about 40 ms on Linux). BENCHMARKS.md has the
    // before and after.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app(hitl))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
