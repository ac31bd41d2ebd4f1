//! A real server on a free port per test, and [`TestApp`]: a client with one method per route,
//! and waits that follow a task's event stream until it reaches a state.

use hitl::{Hitl, config::Config, task::TaskStatus};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{EventData, Events, Task, content_type, json_body, text_body, within};

/// The configuration tests run with: no processing delay.
pub fn test_config() -> Config {
    Config {
        process_delay_ms: 0,
        ..Config::default()
    }
}

/// Attempts stay `running` for a minute: long enough to act on a task while it processes.
pub fn slow_config() -> Config {
    Config {
        process_delay_ms: 60_000,
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    spawn_app_and_service(config).await.0
}

/// A server and the service behind it, for tests that arrange state directly (such as filling
/// the registry with 100,000 tasks) rather than through requests.
pub async fn spawn_app_and_service(config: Config) -> (TestApp, Hitl) {
    let hitl = Hitl::open(&config, CancellationToken::new()).expect("the service opens");
    (TestApp::serve(hitl.clone()).await, hitl)
}

impl TestApp {
    /// Serves `hitl` on a free port; stopping the app stops the service.
    pub async fn serve(hitl: Hitl) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("the bound address");
        let shutdown = hitl.shutdown.clone();
        let server = tokio::spawn(hitl::web::serve(listener, hitl));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client");
        TestApp {
            base_url: format!("http://{addr}"),
            client,
            shutdown,
            server,
        }
    }

    /// A client for a server that runs elsewhere (the real binary), at `base_url`.
    pub fn at(base_url: String) -> Self {
        Self {
            base_url,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a reqwest client"),
            shutdown: CancellationToken::new(),
            server: tokio::spawn(async { Ok(()) }),
        }
    }

    /// A client of the same server that sends `authorization` with every request.
    pub fn with_authorization(&self, authorization: &str) -> Self {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .expect("a reqwest client"),
            base_url: self.base_url.clone(),
            // Its own token: dropping this client does not stop the server.
            shutdown: CancellationToken::new(),
            server: tokio::spawn(async { Ok(()) }),
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    /// Follows no redirects, so a 303 can be asserted.
    pub client: reqwest::Client,
    /// Cancelling it shuts the server down.
    pub shutdown: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        within("a response", request.send())
            .await
            .expect("the request is sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// A POST with a raw body, for malformed and oversized requests.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        let request = self.client.post(self.url(path));
        self.send(
            request
                .header(header::CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    // The JSON API.

    pub async fn submit_json(&self, body: &Value) -> Response {
        self.post_json("/api/tasks", body).await
    }

    /// Submits with an `Idempotency-Key`.
    pub async fn submit_keyed(&self, key: &str, body: &Value) -> Response {
        let request = self.client.post(self.url("/api/tasks"));
        self.send(request.header("Idempotency-Key", key).json(body))
            .await
    }

    /// Submits a task and returns it, asserting it was created.
    pub async fn submit(&self, input: &str, max_attempts: u32) -> Task {
        let response = self
            .submit_json(&json!({ "input": input, "max_attempts": max_attempts }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_body(response).await
    }

    pub async fn get_task(&self, id: &str) -> Task {
        let response = self.get(&format!("/api/tasks/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK, "GET task {id}");
        json_body(response).await
    }

    /// `GET /api/tasks` with a query string such as `?status=running` (or `""`).
    pub async fn list_tasks(&self, query: &str) -> Response {
        self.get(&format!("/api/tasks{query}")).await
    }

    /// The ids `GET /api/tasks{query}` lists, in its order.
    pub async fn listed_ids(&self, query: &str) -> Vec<String> {
        let response = self.list_tasks(query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = json_body(response).await;
        body["tasks"]
            .as_array()
            .expect("a tasks array")
            .iter()
            .map(|t| t["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    pub async fn feedback_json(&self, id: &str, body: &Value) -> Response {
        self.post_json(&format!("/api/tasks/{id}/feedback"), body)
            .await
    }

    /// Sends a decision and returns the task, asserting it was accepted.
    pub async fn decide(&self, id: &str, body: Value) -> Task {
        let response = self.feedback_json(id, &body).await;
        assert_eq!(response.status(), StatusCode::OK, "decision {body}");
        json_body(response).await
    }

    pub async fn cancel_json(&self, id: &str) -> Response {
        self.send(
            self.client
                .post(self.url(&format!("/api/tasks/{id}/cancel"))),
        )
        .await
    }

    // The browser routes.

    fn form(&self, path: &str, fields: &[(&str, &str)], htmx: bool) -> reqwest::RequestBuilder {
        let request = self.client.post(self.url(path)).form(fields);
        if htmx {
            request.header("HX-Request", "true")
        } else {
            request
        }
    }

    pub async fn submit_form(&self, fields: &[(&str, &str)], htmx: bool) -> Response {
        self.send(self.form("/tasks", fields, htmx)).await
    }

    pub async fn feedback_form(&self, id: &str, fields: &[(&str, &str)], htmx: bool) -> Response {
        let path = format!("/tasks/{id}/feedback");
        self.send(self.form(&path, fields, htmx)).await
    }

    pub async fn cancel_form(&self, id: &str) -> Response {
        self.send(self.form(&format!("/tasks/{id}/cancel"), &[], false))
            .await
    }

    /// A page: its status and its HTML.
    pub async fn get_page(&self, path: &str) -> (StatusCode, String) {
        let response = self.get(path).await;
        let status = response.status();
        (status, text_body(response).await)
    }

    // The event streams.

    /// `GET /api/events{query}`, from `last_event_id` when given.
    pub async fn events(&self, query: &str, last_event_id: Option<u64>) -> Events {
        self.stream(&format!("/api/events{query}"), last_event_id)
            .await
    }

    /// `GET /stream{query}`: HTML fragments.
    pub async fn html_stream(&self, query: &str, last_event_id: Option<u64>) -> Events {
        self.stream(&format!("/stream{query}"), last_event_id).await
    }

    async fn stream(&self, path: &str, last_event_id: Option<u64>) -> Events {
        let mut request = self.client.get(self.url(path));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = self.send(request).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        assert_eq!(content_type(&response), "text/event-stream", "GET {path}");
        Events::read(response)
    }

    /// Follows the task's event stream until a status event matches, then returns the task.
    pub async fn wait_for(&self, id: &str, matches: impl Fn(&EventData) -> bool) -> Task {
        let mut events = self.events(&format!("?task={id}"), None).await;
        loop {
            let event = events.next().await;
            if event.name == "status" && matches(&event.data()) {
                return self.get_task(id).await;
            }
        }
    }

    pub async fn wait_for_status(&self, id: &str, status: TaskStatus) -> Task {
        self.wait_for(id, |e| e.status == status).await
    }

    /// Waits until `attempt` is ready for review.
    pub async fn wait_for_review(&self, id: &str, attempt: u32) -> Task {
        self.wait_for(id, |e| {
            e.status == TaskStatus::WaitingForReview && e.attempt == attempt
        })
        .await
    }

    /// Submits a task and waits until its first attempt is ready for review.
    pub async fn submit_for_review(&self, input: &str, max_attempts: u32) -> Task {
        let task = self.submit(input, max_attempts).await;
        self.wait_for_review(&task.id, 1).await
    }
}
