//! `GET /api/openapi.json`: an OpenAPI 3.1 document of every JSON route, and real answers that
//! fit it (each status documented, with its content type and headers, each body valid against
//! its schema).

use std::collections::BTreeSet;

use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, content_type, json_body, spawn_app, text_body, unknown_id, within};

/// Every JSON route, as the contract lists them: (method, path as the document spells it).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/events"),
    ("get", "/api/openapi.json"),
    ("post", "/api/claims"),
    ("post", "/api/claims/{token}/fail"),
    ("post", "/api/claims/{token}/progress"),
    ("post", "/api/claims/{token}/renew"),
    ("post", "/api/deliveries/{id}/redeliver"),
    ("get", "/api/tasks"),
    ("post", "/api/tasks"),
    ("get", "/api/tasks/{id}"),
    ("post", "/api/tasks/{id}/attempts"),
    ("post", "/api/tasks/{id}/cancel"),
    ("post", "/api/tasks/{id}/deadline"),
    ("post", "/api/tasks/{id}/feedback"),
    ("get", "/api/tasks/{id}/deliveries"),
    ("get", "/api/tasks/{id}/history"),
    ("post", "/api/tasks/{id}/retry"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// What the API's fallback says of a path it does not route.
const UNROUTED: &str = "There is no such API route";

/// The served document, and checks of real answers against it.
struct Spec {
    doc: Value,
}

impl Spec {
    async fn fetch(app: &TestApp) -> Self {
        let response = app.get("/api/openapi.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(&response), "application/json");
        Self {
            doc: json_body(response).await,
        }
    }

    /// Every (method, path) the document has an operation for.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("a path item").keys();
                methods.map(move |method| (method.clone(), path.clone()))
            })
            .collect()
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        let operation = &self.doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        operation
    }

    /// Checks an answer to `method path` against the document: its status is documented,
    /// with the content type and headers it has, and its body fits the schema. Returns its
    /// status, headers and (JSON) body; an event stream's body is left unread.
    async fn check(
        &self,
        method: &str,
        path: &str,
        response: Response,
    ) -> (StatusCode, header::HeaderMap, Value) {
        let status = response.status();
        let what = format!("{method} {path} -> {status}");
        let documented = &self.operation(method, path)["responses"][status.as_str()];
        assert!(documented.is_object(), "{what} is not documented");
        let headers = response.headers().clone();
        for (name, header) in documented["headers"].as_object().into_iter().flatten() {
            if let Some(value) = headers.get(name.as_str()) {
                let value = value.to_str().expect("a visible header");
                let fits = match header["schema"]["type"].as_str() {
                    Some("integer") => value.parse::<u64>().is_ok(),
                    _ => true,
                };
                assert!(
                    fits,
                    "{what}: header {name}: {value:?} does not fit {header}"
                );
            }
        }
        let Some(content) = documented["content"].as_object() else {
            let body = text_body(response).await;
            assert!(body.is_empty(), "{what}: an undocumented body {body:?}");
            return (status, headers, Value::Null);
        };
        let media_type = content_type(&response);
        let schema = &content
            .get(&media_type)
            .unwrap_or_else(|| panic!("{what}: {media_type} is not documented"))["schema"];
        let body = match media_type.as_str() {
            "text/event-stream" => return (status, headers, Value::Null),
            "application/jsonl" => {
                let lines = text_body(response).await;
                let entry = json!({ "$ref": "#/components/schemas/AuditEntry" });
                let entries: Vec<Value> = lines
                    .lines()
                    .map(|line| serde_json::from_str(line).expect("a JSON line"))
                    .collect();
                for entry_json in &entries {
                    self.validate(&entry, entry_json, &what);
                }
                Value::Array(entries)
            }
            _ => {
                let body: Value = json_body(response).await;
                self.validate(schema, &body, &what);
                body
            }
        };
        (status, headers, body)
    }

    /// `instance` is valid against `schema`, a schema of the document (its `$ref`s resolved
    /// within the document).
    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let errors = self.errors(schema, instance);
        assert!(errors.is_empty(), "{what}: {errors:#?}\nin {instance}");
    }

    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("the schema {schema} does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                match (name.as_str(), field) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => refs(field, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_of_every_json_route() {
    let app = spawn_app().await;

    let spec = Spec::fetch(&app).await;

    let doc = &spec.doc;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(spec.operations(), expected);
    let mut ids = BTreeSet::new();
    for (method, path) in &expected {
        let operation = spec.operation(method, path);
        let id = operation["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "{id} is used twice");
        let answers = operation["responses"].as_object().expect("responses");
        assert!(
            answers.keys().any(|status| status.starts_with('2')),
            "{path}"
        );
        let public = matches!(path.as_str(), "/healthz" | "/readyz");
        assert_eq!(answers.contains_key("401"), !public, "{method} {path}: 401");
        if method == "post" {
            for status in ["400", "403", "413"] {
                let problem = &answers
                    .get(status)
                    .map(|a| &a["content"]["application/json"]);
                let has_body = problem.is_some_and(|c| c["schema"]["$ref"].is_string());
                assert!(
                    has_body
                        || (status == "400" && path.ends_with("/cancel"))
                        || (status == "400" && path.ends_with("/retry"))
                        || (status == "400" && path.ends_with("/redeliver")),
                    "{method} {path}: {status}"
                );
            }
        }
    }
    // The schemas have teeth: a task missing most of its fields is not one.
    let task = json!({ "$ref": "#/components/schemas/Task" });
    assert!(
        !spec
            .errors(&task, &json!({ "id": unknown_id() }))
            .is_empty()
    );
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["scheme"], "bearer");
    let mut targets = Vec::new();
    refs(doc, &mut targets);
    for target in targets {
        let pointer = target.strip_prefix('#').expect("a local $ref");
        assert!(
            doc.pointer(pointer).is_some(),
            "{target} resolves to nothing"
        );
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app().await;
    let spec = Spec::fetch(&app).await;

    for (method, path) in spec.operations() {
        let url = app.url(
            &path
                .replace("{id}", &unknown_id())
                .replace("{token}", "no-such-claim"),
        );
        let request = match method.as_str() {
            "get" => app.client.get(url),
            "post" => app.client.post(url).json(&json!({ "wait_secs": 0 })),
            other => panic!("{other} {path}: an unexpected method"),
        };
        // An unknown task: the stream is refused rather than opened.
        let request = match path.as_str() {
            "/api/events" => request.query(&[("task", unknown_id())]),
            _ => request,
        };
        let response = within("an answer", request.send()).await.expect("sent");
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body = text_body(response).await;
        assert!(
            !body.contains(UNROUTED),
            "{method} {path} is not routed: {body}"
        );
    }
}

#[tokio::test]
async fn real_answers_fit_the_documented_schemas() {
    let app = spawn_app().await;
    let spec = Spec::fetch(&app).await;
    let post = |path: &str, body: Value| app.client.post(app.url(path)).json(&body).send();
    let bare_post = |path: &str| app.client.post(app.url(path)).send();
    let sent = |response: reqwest::Result<Response>| response.expect("sent");

    for path in ["/healthz", "/readyz", "/api/openapi.json"] {
        let (status, _, _) = spec.check("get", path, app.get(path).await).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }

    // A task made by hitl's processor, sent back once and approved.
    let body = json!({ "input": "Draft a haiku", "max_attempts": 2, "metadata": { "a": 1 } });
    let (status, headers, task) = spec
        .check("post", "/api/tasks", app.submit_keyed("key-1", &body).await)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = task["id"].as_str().expect("an id").to_owned();
    assert_eq!(headers[header::LOCATION], format!("/api/tasks/{id}"));
    let (_, headers, _) = spec
        .check("post", "/api/tasks", app.submit_keyed("key-1", &body).await)
        .await;
    assert_eq!(headers["idempotent-replayed"], "true");
    app.wait_for_review(&id, 1).await;
    let (status, _, page) = spec
        .check("get", "/api/tasks", app.get("/api/tasks?per_page=1").await)
        .await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(1)));
    let task_path = format!("/api/tasks/{id}");
    let (status, headers, _) = spec
        .check(
            "get",
            "/api/tasks/{id}",
            app.get(&format!("{task_path}?wait=0")).await,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["hitl-wait"], "timeout");
    let feedback = format!("{task_path}/feedback");
    let sent_back = json!({ "decision": "rejected", "comment": "Shorter", "attempt": 1 });
    let (status, _, _) = spec
        .check(
            "post",
            "/api/tasks/{id}/feedback",
            sent(post(&feedback, sent_back).await),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.wait_for_review(&id, 2).await;
    let approval = json!({ "decision": "approved", "comment": "Good", "output": "Edited" });
    let (status, _, task) = spec
        .check(
            "post",
            "/api/tasks/{id}/feedback",
            sent(post(&feedback, approval).await),
        )
        .await;
    assert_eq!(
        (status, &task["outcome"]),
        (StatusCode::OK, &json!("approved"))
    );
    let (status, _, entries) = spec
        .check(
            "get",
            "/api/tasks/{id}/history",
            app.get(&format!("{task_path}/history")).await,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(entries.as_array().is_some_and(|e| e.len() > 4), "{entries}");

    // Refusals.
    let refusals = [
        (
            "post",
            "/api/tasks/{id}/cancel",
            sent(bare_post(&format!("{task_path}/cancel")).await),
        ),
        (
            "post",
            "/api/tasks/{id}/retry",
            sent(bare_post(&format!("{task_path}/retry")).await),
        ),
        (
            "post",
            "/api/tasks/{id}/deadline",
            sent(
                post(
                    &format!("{task_path}/deadline"),
                    json!({ "extend_secs": 60 }),
                )
                .await,
            ),
        ),
        (
            "get",
            "/api/tasks/{id}",
            app.get(&format!("/api/tasks/{}", unknown_id())).await,
        ),
        ("post", "/api/tasks", app.submit_json(&json!({})).await),
        (
            "post",
            "/api/tasks",
            app.post_raw("/api/tasks", "application/json", b"{".to_vec())
                .await,
        ),
        ("get", "/api/tasks", app.get("/api/tasks?status=nope").await),
        (
            "get",
            "/api/events",
            app.get(&format!("/api/events?task={}", unknown_id())).await,
        ),
    ];
    for (method, path, response) in refusals {
        let (status, _, body) = spec.check(method, path, response).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }

    // An attempt made outside: claimed, renewed, reported on, handed in.
    let body = json!({ "input": "Outside", "processor": "external" });
    let (_, _, task) = spec
        .check("post", "/api/tasks", app.submit_json(&body).await)
        .await;
    let task_path = format!("/api/tasks/{}", task["id"].as_str().expect("an id"));
    let (status, _, claim) = spec
        .check(
            "post",
            "/api/claims",
            sent(post("/api/claims", json!({ "wait_secs": 0 })).await),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = claim["claim"].as_str().expect("a token").to_owned();
    let claim_path = format!("/api/claims/{token}");
    let (status, _, _) = spec
        .check(
            "post",
            "/api/claims/{token}/renew",
            sent(post(&format!("{claim_path}/renew"), json!({ "lease_secs": 30 })).await),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = spec
        .check(
            "post",
            "/api/claims/{token}/progress",
            sent(post(&format!("{claim_path}/progress"), json!({ "text": "Half" })).await),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let attempt = json!({ "attempt": 1, "output": "Done", "claim": token });
    let (status, _, task) = spec
        .check(
            "post",
            "/api/tasks/{id}/attempts",
            sent(post(&format!("{task_path}/attempts"), attempt).await),
        )
        .await;
    assert_eq!(
        (status, &task["status"]),
        (StatusCode::OK, &json!("waiting_for_review"))
    );
    let (status, _, body) = spec
        .check(
            "post",
            "/api/claims/{token}/fail",
            sent(post(&format!("{claim_path}/fail"), json!({ "error": "Gave up" })).await),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("claim_lost"))
    );
    let (status, _, _) = spec
        .check(
            "post",
            "/api/claims",
            sent(post("/api/claims", json!({ "wait_secs": 0 })).await),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = spec
        .check(
            "get",
            "/api/events",
            app.get(&format!(
                "/api/events?task={}",
                task["id"].as_str().unwrap()
            ))
            .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
