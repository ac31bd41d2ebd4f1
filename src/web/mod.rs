//! The HTTP surface: [`app`] builds the router (a pure function of the service state); [`serve`]
//! runs it on a bound listener until the shutdown token is cancelled.

mod api;
mod assets;
pub mod error;
mod extract;
mod html;
mod inbox_stream;
pub mod openapi;
mod park;
pub mod protect;
mod session;
pub mod sse;
pub mod stream;

use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, header},
    middleware,
    routing::{get, post},
};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;

use axum::http::StatusCode;
use tower_http::{
    csrf::CsrfLayer, set_header::SetResponseHeaderLayer, timeout::TimeoutLayer, trace::TraceLayer,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{inbox::Inbox, service::Hitl};

/// The Content-Security-Policy of every answer: our own scripts and styles only, no inline code
/// (htmx is configured not to need it), no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Every route, with its layers.
pub fn app(hitl: Hitl) -> Router {
    let timeout = TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(hitl.limits.request_timeout_secs),
    );
    let body_limit = usize::try_from(hitl.limits.max_body_bytes).unwrap_or(usize::MAX);
    let (api, api_doc) = api_routes(timeout).split_for_parts();
    let api = api
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed);

    let site = OpenApiRouter::default()
        .route("/", get(html::home))
        .route("/about", get(html::about))
        .route("/next", get(html::next))
        .route("/tasks", post(html::submit).get(html::to_home))
        .route("/tasks/{id}", get(html::task_page))
        .route("/tasks/{id}/feedback", post(html::feedback))
        .route("/tasks/{id}/cancel", post(html::cancel))
        .route("/tasks/{id}/retry", post(html::retry))
        .route(
            "/tasks/{id}/deliveries/{delivery}/redeliver",
            post(html::redeliver),
        )
        .route("/tasks/{id}/deadline", post(html::extend_deadline))
        .route("/assets/{*path}", get(assets::asset))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .routes(routes!(api::healthz))
        .routes(routes!(api::readyz))
        .route("/metrics", get(api::metrics));
    // Routes above each `timed` get the request timeout; the event streams, added after it,
    // never end on a timer.
    let (site, site_doc) = openapi::timed(site, timeout).split_for_parts();
    site.route("/stream", get(stream::html_events))
        .nest(openapi::API_PREFIX, api)
        .fallback(html::not_found)
        .method_not_allowed_fallback(html::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            hitl.clone(),
            session::authenticate,
        ))
        .layer(Extension(protect::StreamGate::new(
            hitl.limits.max_streams,
            hitl.limits.max_streams_per_client,
        )))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            hitl.limits.max_body_bytes,
            protect::check_request,
        ))
        .layer(middleware::from_fn(protect::explain_errors))
        .layer(CsrfLayer::new())
        .layer(middleware::from_fn(protect::explain_csrf))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        // Pages and answers are about private tasks: no shared cache keeps them. Assets set
        // their own caching.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
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
        // The inbox's text index lives as long as the router: built on the first search.
        .layer(Extension(Arc::new(Inbox::default())))
        .layer(Extension(openapi::Document::new(site_doc, api_doc)))
        // Outermost: a bounded wait is waited out here, once every layer inside has answered
        // and let go of its room (see `park`).
        .layer(middleware::from_fn_with_state(hitl.clone(), park::finish))
        .with_state(hitl)
}

/// The JSON API (nested under [`openapi::API_PREFIX`]): each route registered with its
/// documentation, one path per `routes!`.
fn api_routes(timeout: TimeoutLayer) -> OpenApiRouter<Hitl> {
    let bounded = OpenApiRouter::default()
        .routes(routes!(api::submit::submit, api::list::list))
        .routes(routes!(api::history))
        .routes(routes!(api::extend_deadline))
        .routes(routes!(api::feedback))
        .routes(routes!(api::cancel))
        .routes(routes!(api::outside::post_attempt))
        .routes(routes!(api::outside::retry))
        .routes(routes!(api::claims::renew))
        .routes(routes!(api::claims::progress))
        .routes(routes!(api::claims::fail))
        .routes(routes!(api::deliveries::list))
        .routes(routes!(api::deliveries::redeliver))
        .routes(routes!(openapi::document));
    // These wait as long as asked (up to two minutes), so the request timeout is not theirs; a
    // plain read of a task is bounded by it inside the handler.
    let waits = OpenApiRouter::default()
        .routes(routes!(api::outside::get))
        .routes(routes!(api::claims::claim))
        .routes(routes!(stream::json_events));
    openapi::timed(bounded, timeout).merge(waits)
}

/// Serves until `hitl.shutdown` is cancelled; open event streams end then too, so shutdown is
/// prompt, and requests in flight finish.
///
/// This is `axum::serve` spelled out with hyper's HTTP/1 connection builder, without the
/// protocol sniffing of hyper-util's `auto` builder (browsers reach us over HTTP/1.1; HTTP/2
/// needs TLS, which a proxy in front ends). With it an idle event stream held less memory
/// (BENCHMARKS.md, "Memory per idle stream").
pub async fn serve(listener: TcpListener, hitl: Hitl) -> std::io::Result<()> {
    use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
    use tower::Service as _;

    let shutdown = hitl.shutdown.clone();
    let app = app(hitl);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning,
                    // as axum::serve does.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Event streams are many small writes to a client that never writes back; with Nagle's
        // algorithm on they wait for delayed ACKs (about 40 ms on Linux).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                app.clone().call(request)
            },
        );
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
