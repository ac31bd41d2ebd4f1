//! Idle streams get keep-alive comments and no request timeout, checked in paused time through
//! the router itself.

use std::time::Duration;

use axum::{body::Body, http::Request};
use futures_util::StreamExt;
use hitl::{Hitl, config::Config};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_a_comment_within_15_seconds_and_ends_on_shutdown() {
    let shutdown = CancellationToken::new();
    // A one-second request timeout: the streams outlive it, since their comments come at 10 s.
    let mut config = Config::default();
    config.limits.request_timeout_secs = 1;
    let hitl = Hitl::open(&config, shutdown.clone()).expect("the service opens");
    let app = hitl::web::app(hitl);

    for path in ["/api/events", "/stream"] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body().into_data_stream();

        let started = tokio::time::Instant::now();
        let chunk = tokio::time::timeout(Duration::from_secs(15), body.next())
            .await
            .expect("a keep-alive within 15 s")
            .expect("the stream is open")
            .unwrap();
        assert!(chunk.starts_with(b":"), "a comment line, got {chunk:?}");
        assert!(started.elapsed() <= Duration::from_secs(15));
    }

    let response = app
        .oneshot(Request::get("/api/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body().into_data_stream();
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends when the server shuts down");
}
