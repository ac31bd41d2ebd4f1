//! `--auth token`: outsiders get nothing, roles decide who may act, every act names its actor,
//! and browser sessions are cookies that signing out ends.

use hitl::config::{AuthConfig, AuthMode};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_error, json_body, location, spawn_app, spawn_app_with, test_config, text_body,
};

/// Argon2 with tiny parameters: the real ones are slow on purpose, and tests need not be.
fn cheap_hash(secret: &str) -> String {
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    hitl::auth::hash_with(&argon2, secret)
}

async fn spawn_with_users() -> TestApp {
    let users = format!(
        "alice:reviewer:{},bob:submitter:{},carol:reviewer:{}",
        cheap_hash("alice-secret"),
        cheap_hash("bob-secret"),
        cheap_hash("carol-secret"),
    );
    spawn_app_with(hitl::config::Config {
        auth: AuthConfig {
            mode: AuthMode::Token,
            users: Some(users),
            session_hours: 1,
            ..AuthConfig::default()
        },
        ..test_config()
    })
    .await
}

fn token(user: &str) -> String {
    format!("Bearer {user}:{user}-secret")
}

impl TestApp {
    async fn post_as(&self, user: &str, path: &str, body: Value) -> reqwest::Response {
        let request = self.client.post(self.url(path)).json(&body);
        request
            .header(header::AUTHORIZATION, token(user))
            .send()
            .await
            .unwrap()
    }

    async fn json_as(&self, user: &str, path: &str, body: Value) -> Value {
        json_body(self.post_as(user, path, body).await).await
    }

    /// `user` submits a task; its id once attempt 1 is ready for review.
    async fn submitted_by(&self, user: &str, input: &str) -> String {
        let task = self
            .json_as(user, "/api/tasks", json!({ "input": input }))
            .await;
        assert_eq!(task["submitted_by"], user);
        let id = task["id"].as_str().unwrap().to_owned();
        let watcher = self.with_authorization(&token("carol"));
        watcher.wait_for_review(&id, 1).await;
        id
    }

    /// `GET path` as a browser holding `cookie`.
    async fn get_with_cookie(&self, path: &str, cookie: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path));
        request.header(header::COOKIE, cookie).send().await.unwrap()
    }

    async fn get_as(&self, user: &str, path: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path));
        request
            .header(header::AUTHORIZATION, token(user))
            .send()
            .await
            .unwrap()
    }

    /// Signs in through the form; the answer, whatever it is.
    async fn sign_in(&self, name: &str, secret: &str, https: bool) -> reqwest::Response {
        self.sign_in_to(name, secret, "/about", https).await
    }

    async fn sign_in_to(
        &self,
        name: &str,
        secret: &str,
        next: &str,
        https: bool,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/sign-in"))
            .header("Sec-Fetch-Site", "same-origin")
            .form(&[("name", name), ("secret", secret), ("next", next)]);
        if https {
            request = request.header("X-Forwarded-Proto", "https");
        }
        request.send().await.unwrap()
    }
}

fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_outsider_can_neither_read_nor_change_anything() {
    let app = spawn_with_users().await;
    let task: Value = json_body(
        app.post_as("bob", "/api/tasks", json!({"input": "secret plans"}))
            .await,
    )
    .await;
    let id = task["id"].as_str().unwrap();

    for path in ["/api/tasks", &format!("/api/tasks/{id}"), "/api/events"] {
        let response = app.get(path).await;
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"hitl\""
        );
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let wrong = app
        .client
        .get(app.url("/api/tasks"))
        .header(header::AUTHORIZATION, "Bearer bob:not-his-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    for (path, body) in [
        ("/api/tasks", json!({"input": "intruder"})),
        (
            &format!("/api/tasks/{id}/feedback"),
            json!({"decision": "approved"}),
        ),
        (&format!("/api/tasks/{id}/cancel"), json!({})),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "POST {path}");
    }
    for path in ["/", &format!("/tasks/{id}"), "/stream"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {path}");
        let to = reqwest::Url::parse(&format!("http://hitl{}", location(&response))).unwrap();
        assert_eq!(to.path(), "/sign-in", "{path}");
        let next: Vec<_> = to.query_pairs().filter(|(k, _)| k == "next").collect();
        assert_eq!(next.len(), 1, "{path}");
        assert_eq!(next[0].1, *path, "back to {path} after signing in");
    }
    let page = text_body(app.get("/tasks/anything").await).await;
    assert!(!page.contains("secret plans"));
    for open in ["/sign-in", "/healthz", "/readyz", "/assets/app.css"] {
        assert_eq!(app.get(open).await.status(), StatusCode::OK, "{open}");
    }
    let tasks: Value = json_body(app.get_as("alice", "/api/tasks").await).await;
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        1,
        "nothing was added"
    );
    assert_eq!(
        tasks["tasks"][0]["status"], "waiting_for_review",
        "nor changed"
    );
}

#[tokio::test]
async fn roles_decide_who_may_act_and_every_act_names_its_actor() {
    let app = spawn_with_users().await;
    let bobs = app.submitted_by("bob", "bob's").await;
    let feedback = format!("/api/tasks/{bobs}/feedback");

    let refused = app
        .post_as("bob", &feedback, json!({"decision": "approved"}))
        .await;
    let message = assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(message.contains("Only reviewers"), "{message}");
    let approved = app
        .json_as("alice", &feedback, json!({"decision": "approved"}))
        .await;
    assert_eq!(approved["status"], "completed");
    assert_eq!(approved["attempts"][0]["decided_by"], "alice");

    let alices = app.submitted_by("alice", "alice's").await;
    let feedback = format!("/api/tasks/{alices}/feedback");
    let own = app
        .post_as("alice", &feedback, json!({"decision": "approved"}))
        .await;
    let message = assert_error(own, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        message.contains("submitted this task yourself"),
        "{message}"
    );
    let cancel = format!("/api/tasks/{alices}/cancel");
    let not_his = app.post_as("bob", &cancel, json!({})).await;
    assert_error(not_his, StatusCode::FORBIDDEN, "forbidden").await;
    let still: Value = json_body(app.get_as("carol", &format!("/api/tasks/{alices}")).await).await;
    assert_eq!(
        still["status"], "waiting_for_review",
        "refusals change nothing"
    );
    let rejected: Value = json_body(
        app.post_as(
            "carol",
            &feedback,
            json!({"decision": "rejected_final", "comment": "no"}),
        )
        .await,
    )
    .await;
    assert_eq!(rejected["attempts"][0]["decided_by"], "carol");

    let task: Value = json_body(
        app.post_as("bob", "/api/tasks", json!({"input": "oops"}))
            .await,
    )
    .await;
    let cancelled: Value = json_body(
        app.post_as(
            "bob",
            &format!("/api/tasks/{}/cancel", task["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["cancelled_by"].as_str()
        ),
        (Some("cancelled"), Some("bob"))
    );
}

#[tokio::test]
async fn browsers_sign_in_with_a_strict_cookie_and_signing_out_ends_the_session() {
    let app = spawn_with_users().await;
    let wrong = app.sign_in("alice", "bob-secret", false).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert!(text_body(wrong).await.contains("do not match"));

    let signed_in = app.sign_in("alice", "alice-secret", false).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/about", "back where they were going");
    let set = signed_in.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let over_https = app.sign_in("alice", "alice-secret", true).await;
    assert!(
        over_https.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    let cookie = session_cookie(&signed_in);
    let home = app.get_with_cookie("/", &cookie).await;
    assert_eq!(home.status(), StatusCode::OK);
    let page = text_body(home).await;
    assert!(
        page.contains("Signed in as") && page.contains("alice"),
        "{page}"
    );

    let signed_out = app
        .client
        .post(app.url("/sign-out"))
        .header(header::COOKIE, &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert!(
        signed_out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = app.get_with_cookie("/", &cookie).await;
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "the old cookie is worthless"
    );
    let forged = app.get_with_cookie("/", "hitl_session=abc.def").await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn without_sign_in_the_pages_say_anyone_can_review() {
    let app = spawn_app().await;
    let page = text_body(app.get("/").await).await;
    assert!(page.contains("No sign-in: anyone can review."));
    let task = app.submit_for_review("open to all", 3).await;
    let approved = app
        .decide(&task.id, json!({"decision": "approved", "attempt": 1}))
        .await;
    assert_eq!(approved.attempts.len(), 1, "anyone may decide");
    let raw: Value = json_body(app.get(&format!("/api/tasks/{}", task.id)).await).await;
    assert_eq!(raw["submitted_by"], Value::Null);
    assert_eq!(raw["attempts"][0]["decided_by"], Value::Null);
}

#[tokio::test]
async fn signing_in_only_ever_leads_back_to_this_site() {
    let app = spawn_with_users().await;
    for next in [
        "//evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "/\u{1}",
    ] {
        let response = app.sign_in_to("alice", "alice-secret", next, false).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(location(&response), "/", "{next:?}");
    }
    let fine = app
        .sign_in_to("alice", "alice-secret", "/tasks/x?y=1", false)
        .await;
    assert_eq!(location(&fine), "/tasks/x?y=1");
}

#[tokio::test]
async fn a_stale_session_cookie_does_not_hide_a_good_bearer_token() {
    let app = spawn_with_users().await;
    let response = app
        .client
        .get(app.url("/api/tasks"))
        .header(header::COOKIE, "hitl_session=gone.0000")
        .header(header::AUTHORIZATION, token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn users_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let lines = format!(
        "# the review team\nalice:reviewer:{}\n\nbob:submitter:{}\n",
        cheap_hash("alice-secret"),
        cheap_hash("bob-secret")
    );
    std::fs::write(&file, lines).unwrap();
    let app = spawn_app_with(hitl::config::Config {
        auth: AuthConfig {
            mode: AuthMode::Token,
            users_file: Some(file),
            session_hours: 1,
            ..AuthConfig::default()
        },
        ..test_config()
    })
    .await;
    assert_eq!(
        app.get_as("bob", "/api/tasks").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/tasks").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_start_without_usable_users_is_refused_with_a_reason() {
    let config = hitl::config::Config {
        auth: AuthConfig {
            mode: AuthMode::Token,
            users: Some("alice:reviewer:not-a-hash".into()),
            ..AuthConfig::default()
        },
        ..test_config()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let error = hitl::Hitl::open(&config, tokio_util::sync::CancellationToken::new())
        .err()
        .expect("refused");
    assert!(error.to_string().contains("hitl hash-secret"), "{error}");
}

#[tokio::test]
async fn the_audit_trail_names_who_did_what_and_only_reviewers_extend_deadlines() {
    // Arrange: bob submits with a deadline, carol asks for changes, alice extends and approves
    let app = spawn_with_users().await;
    let task = app
        .json_as(
            "bob",
            "/api/tasks",
            json!({ "input": "Name names", "review_timeout_secs": 3600 }),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let carol = app.with_authorization(&token("carol"));
    carol.wait_for_review(&id, 1).await;
    let deadline = format!("/api/tasks/{id}/deadline");

    // Act + Assert: a submitter may not extend
    let response = app
        .post_as("bob", &deadline, json!({ "extend_secs": 60 }))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let response = app
        .post_as(
            "carol",
            &format!("/api/tasks/{id}/feedback"),
            json!({ "decision": "rejected", "attempt": 1, "comment": "Which names?" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    carol.wait_for_review(&id, 2).await;
    let response = app
        .post_as("alice", &deadline, json!({ "extend_secs": 60 }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .post_as(
            "alice",
            &format!("/api/tasks/{id}/feedback"),
            json!({ "decision": "approved", "attempt": 2 }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Assert: each entry names its actor
    let body = text_body(app.get_as("bob", &format!("/api/tasks/{id}/history")).await).await;
    let entries: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let who: Vec<(&str, Option<&str>)> = entries
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["by"].as_str()))
        .collect();
    assert_eq!(
        who,
        [
            ("submitted", Some("bob")),
            ("attempt_started", None),
            ("attempt_finished", None),
            ("decided", Some("carol")),
            ("attempt_started", Some("carol")),
            ("attempt_finished", None),
            ("deadline_extended", Some("alice")),
            ("decided", Some("alice")),
        ]
    );
}

#[tokio::test]
async fn submitters_are_not_shown_forms_only_reviewers_may_use() {
    // Arrange: bob's task, waiting for review
    let app = spawn_with_users().await;
    let id = app.submitted_by("bob", "Shown to whom?").await;
    let path = format!("/tasks/{id}");

    // Act + Assert: bob's page and bob's stream have no review form, but his cancel button
    let bob_page = text_body(app.get_as("bob", &path).await).await;
    assert!(!bob_page.contains(r#"id="approve""#), "{bob_page}");
    assert!(bob_page.contains("you can watch it here but not decide"));
    assert!(
        bob_page.contains("cancel-form"),
        "bob may cancel his own task"
    );
    let bob = app.with_authorization(&token("bob"));
    let mut stream = bob.html_stream(&format!("?task={id}"), None).await;
    let first = stream.next().await;
    assert!(first.data.contains("task-review"), "{}", first.data);
    assert!(!first.data.contains("approve-form"), "{}", first.data);

    // Carol, a reviewer, gets the forms on both
    let carol_page = text_body(app.get_as("carol", &path).await).await;
    assert!(carol_page.contains(r#"id="approve""#));
    let carol = app.with_authorization(&token("carol"));
    let mut stream = carol.html_stream(&format!("?task={id}"), None).await;
    assert!(stream.next().await.data.contains("approve-form"));
}

#[tokio::test]
async fn outside_work_names_its_actors_and_keeps_others_out() {
    // Arrange: bob (a submitter) hands in a draft; alice reviews
    let app = spawn_with_users().await;
    let task = app
        .json_as(
            "bob",
            "/api/tasks",
            json!({ "input": "Bob's draft", "output": "v1" }),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["status"], "waiting_for_review");
    let rejected = app
        .post_as(
            "alice",
            &format!("/api/tasks/{id}/feedback"),
            json!({ "decision": "rejected", "comment": "More" }),
        )
        .await;
    assert_eq!(rejected.status(), StatusCode::OK);
    let attempt = json!({ "attempt": 2, "output": "v2" });

    // Act and assert: nobody without a token, nor another user without the claim, hands in
    let anonymous = app
        .post_json(&format!("/api/tasks/{id}/attempts"), &attempt)
        .await;
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let claims = app
        .post_json("/api/claims", &json!({ "wait_secs": 0 }))
        .await;
    assert_error(claims, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let carol = app
        .post_as(
            "carol",
            &format!("/api/tasks/{id}/attempts"),
            attempt.clone(),
        )
        .await;
    assert_error(carol, StatusCode::FORBIDDEN, "forbidden").await;
    let bob = app
        .post_as("bob", &format!("/api/tasks/{id}/attempts"), attempt)
        .await;
    assert_eq!(bob.status(), StatusCode::OK);
    let retry = app
        .post_as("bob", &format!("/api/tasks/{id}/retry"), json!({}))
        .await;
    assert_error(retry, StatusCode::FORBIDDEN, "forbidden").await;
    // The trail names who handed the attempt in.
    let trail = app
        .get_as("alice", &format!("/api/tasks/{id}/history"))
        .await;
    let trail = text_body(trail).await;
    let handed = trail
        .lines()
        .filter(|l| l.contains("\"outside\":true") && l.contains("\"by\":\"bob\""))
        .count();
    assert_eq!(handed, 2, "{trail}");
}
