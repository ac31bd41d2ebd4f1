//! Other sites cannot act through a visitor's browser, every answer carries the security
//! headers, and greedy clients meet limits that say what to do.

use std::time::Duration;

use hitl::config::Config;
use reqwest::{StatusCode, header};
use serde_json::json;

use crate::helpers::{
    TestApp, assert_error, slow_config, spawn_app, spawn_app_with, text_body, within,
};

/// Posts the submit form as a browser would, with the given fetch-metadata headers.
async fn browser_submit(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/tasks"))
        .form(&[("input", "From somewhere")]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn cross_site_posts_are_refused_in_plain_words_and_change_nothing() {
    let app = spawn_app().await;

    let forged = browser_submit(&app, &[("Sec-Fetch-Site", "cross-site")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(text_body(forged).await.contains("came from another site"));
    let origin = browser_submit(&app, &[("Origin", "http://evil.example")]).await;
    assert_eq!(origin.status(), StatusCode::FORBIDDEN);
    let api = app
        .client
        .post(app.url("/api/tasks"))
        .header("Sec-Fetch-Site", "cross-site")
        .json(&json!({"input": "forged"}))
        .send()
        .await
        .unwrap();
    assert_error(api, StatusCode::FORBIDDEN, "cross_site").await;
    assert!(app.listed_ids("").await.is_empty(), "nothing was submitted");

    let same_site = browser_submit(&app, &[("Sec-Fetch-Site", "same-origin")]).await;
    assert_eq!(same_site.status(), StatusCode::SEE_OTHER);
    let own_origin = app.base_url.clone();
    let same_origin = browser_submit(&app, &[("Origin", &own_origin)]).await;
    assert_eq!(same_origin.status(), StatusCode::SEE_OTHER);
    let script = app.submit_json(&json!({"input": "from curl"})).await;
    assert_eq!(
        script.status(),
        StatusCode::CREATED,
        "no browser headers: an API client"
    );
    assert_eq!(app.listed_ids("").await.len(), 3);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/", "/about", "/api/tasks", "/tasks/not-a-task"] {
        let response = app.get(path).await;
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        for directive in [
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{path}");
    }
    let asset = app.get("/assets/app.css").await;
    assert_ne!(
        asset.headers()[header::CACHE_CONTROL],
        "no-store",
        "assets may be cached"
    );

    let (_, page) = app.get_page("/").await;
    assert!(
        !page.contains("<script>") && !page.contains(" onclick="),
        "no inline script"
    );
}

#[tokio::test]
async fn submissions_beyond_the_live_task_limit_wait_their_turn() {
    let mut config = slow_config();
    config.limits.max_live_tasks = 2;
    let app = spawn_app_with(config).await;
    let first = app.submit("one", 3).await;
    app.submit("two", 3).await;

    let refused = app.submit_json(&json!({"input": "three"})).await;
    assert_eq!(refused.headers()[header::RETRY_AFTER], "30");
    let message = assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "too_many_tasks").await;
    assert!(message.contains("2 unfinished tasks"), "{message}");
    let form = browser_submit(&app, &[("Sec-Fetch-Site", "same-origin")]).await;
    assert_eq!(form.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.listed_ids("").await.len(), 2, "nothing was added");

    // A finished task frees its place.
    assert_eq!(app.cancel_json(&first.id).await.status(), StatusCode::OK);
    app.submit("three", 3).await;
}

#[tokio::test]
async fn event_streams_are_limited_per_client_and_in_all() {
    let app = spawn_app_with(Config {
        limits: hitl::config::Limits {
            max_streams: 3,
            max_streams_per_client: 2,
            ..Default::default()
        },
        ..crate::helpers::test_config()
    })
    .await;
    let first = app.events("", None).await;
    let _second = app.html_stream("", None).await;
    let third = app.get("/api/events").await;
    assert_eq!(third.headers()[header::RETRY_AFTER], "5");
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "too_many_streams").await;
    let html = app.get("/stream").await;
    assert_eq!(html.status(), StatusCode::TOO_MANY_REQUESTS);

    // A closed stream frees its place. Nothing signals a peer's disconnect to this test, so
    // it asks again, within the usual bound.
    drop(first);
    within("a freed stream place", async {
        loop {
            if app.get("/api/events").await.status() == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn past_the_total_stream_limit_the_server_says_it_is_busy() {
    let app = spawn_app_with(Config {
        limits: hitl::config::Limits {
            max_streams: 1,
            max_streams_per_client: 5,
            ..Default::default()
        },
        ..crate::helpers::test_config()
    })
    .await;
    let _only = app.events("", None).await;
    let refused = app.get("/api/events").await;
    assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
    assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "too_many_streams").await;
}

#[tokio::test]
async fn a_lower_text_limit_applies_to_inputs_comments_and_edits() {
    let mut config = crate::helpers::test_config();
    config.limits.max_text_bytes = 100;
    let app = spawn_app_with(config).await;
    let (_, home) = app.get_page("/").await;
    assert!(home.contains("Up to 100 bytes of text"), "the form says so");

    let long = "x".repeat(101);
    let refused = app.submit_json(&json!({ "input": long })).await;
    let message = assert_error(refused, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert!(message.contains("100"), "{message}");
    let task = app.submit_for_review(&"x".repeat(100), 3).await;
    for body in [
        json!({"decision": "rejected", "comment": long}),
        json!({"decision": "approved", "output": long}),
    ] {
        let refused = app.feedback_json(&task.id, &body).await;
        assert_error(refused, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    }
    assert_eq!(
        app.get_task(&task.id).await.attempts.len(),
        0,
        "nothing decided"
    );
}
