//! Webhooks from the outbox, against a receiver in the test: signed, in order per task, retried
//! with the same id, redelivered; callbacks only to allowed hosts; Slack notifications with a
//! link, and a deadline reminder dropped once the review it was about has ended. (The Python
//! suite in tests/webhooks checks every signature with the official package.)

use std::{sync::atomic::Ordering, time::Duration};

use hitl::{
    config::{Config, StoreKind, WebhookConfig, new_secret},
    task::TaskStatus,
};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{TestApp, receiver::Receiver, spawn_app_with, test_config, within};

fn webhook_config(dir: &TempDir, webhooks: WebhookConfig) -> Config {
    Config {
        store: StoreKind::Sqlite,
        data_dir: dir.path().to_owned(),
        webhooks: WebhookConfig {
            retry_min_ms: 20,
            timeout_secs: 2,
            ..webhooks
        },
        ..test_config()
    }
}

/// Every event to `receiver`'s `/hook`, signed with `secret`.
fn hook_to(receiver: &Receiver, secret: &str) -> WebhookConfig {
    WebhookConfig {
        urls: vec![format!("{}/hook", receiver.url)],
        secret: Some(secret.parse().unwrap()),
        ..WebhookConfig::default()
    }
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let answer = app.get(&format!("/api/tasks/{id}/deliveries")).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    body["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_loops_events_arrive_signed_and_in_order_and_a_failing_one_is_retried_with_its_id() {
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(webhook_config(&dir, hook_to(&receiver, &secret))).await;
    // The first tries fail: the receiver is "down".
    receiver.answer.store(503, Ordering::SeqCst);
    let task = app.submit("write a haiku", 3).await;
    receiver
        .until("a few failed tries", |got| got.len() >= 3)
        .await;
    // Only the first event is tried while it fails: the later ones wait behind it.
    let ids: Vec<_> = receiver.got().iter().map(|r| r.id.clone()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one delivery retried: {ids:?}"
    );
    assert_eq!(receiver.statuses("/hook", &task.id)[0].1, "pending");
    receiver.answer.store(200, Ordering::SeqCst);
    app.wait_for_status(&task.id, TaskStatus::WaitingForReview)
        .await;
    app.decide(
        &task.id,
        json!({"decision": "rejected", "comment": "shorter", "attempt": 1}),
    )
    .await;
    app.wait_for_status(&task.id, TaskStatus::WaitingForReview)
        .await;
    app.decide(
        &task.id,
        json!({"decision": "approved", "comment": "good", "attempt": 2}),
    )
    .await;
    let got = receiver
        .until("the completed event", |got| {
            got.iter().any(|r| r.body["data"]["status"] == "completed")
        })
        .await;
    let mut seqs: Vec<u64> = receiver
        .statuses("/hook", &task.id)
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    seqs.dedup(); // the retries of the first
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in event order: {seqs:?}"
    );
    let statuses: Vec<String> = receiver
        .statuses("/hook", &task.id)
        .into_iter()
        .map(|(_, status)| status)
        .collect();
    assert_eq!(statuses.last().map(String::as_str), Some("completed"));
    assert!(
        statuses
            .iter()
            .filter(|s| *s == "waiting_for_review")
            .count()
            == 2
    );
    // The decisions' events say what was decided; the last one how it ended.
    let rejected = got
        .iter()
        .find(|r| r.body["data"]["decision"] == "rejected")
        .expect("the rejection's event");
    assert_eq!(rejected.body["data"]["comment"], "shorter");
    assert_eq!(rejected.body["type"], "task.status");
    let completed = got.last().unwrap();
    assert_eq!(completed.body["data"]["outcome"], "approved");
    assert_eq!(
        completed.body["data"]["task"]["final_result"],
        completed.body["data"]["final_result"]
    );
    // The first delivery shows its tries: failed ones, then the one that worked. (The last
    // try's result is written just after its answer came.)
    let listed = within("every delivery recorded", async {
        loop {
            let listed = deliveries(&app, &task.id).await;
            if listed.iter().all(|d| d["status"] == "delivered") {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let first = &listed[0];
    assert_eq!(first["status"], "delivered");
    assert!(first["attempts"].as_u64().unwrap() >= 3, "{first}");
    assert_eq!(first["last_status_code"], 200);
    assert_eq!(first["id"].as_str(), ids[0].as_deref());
    assert!(
        listed.iter().all(|d| d["status"] == "delivered"),
        "{listed:?}"
    );
}

#[tokio::test]
async fn redeliver_sends_it_again_with_the_same_id_and_the_page_shows_deliveries() {
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(webhook_config(&dir, hook_to(&receiver, &secret))).await;
    let task = app.submit("redeliver me", 3).await;
    receiver
        .until("the first event", |got| !got.is_empty())
        .await;
    let listed = within("the delivery recorded", async {
        loop {
            let listed = deliveries(&app, &task.id).await;
            if listed.first().is_some_and(|d| d["status"] == "delivered") {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let answer = app
        .post_json(&format!("/api/deliveries/{id}/redeliver"), &json!({}))
        .await;
    assert_eq!(answer.status(), 200);
    let twice = receiver
        .until("the redelivery", |got| {
            got.iter().filter(|r| r.id.as_deref() == Some(&id)).count() == 2
        })
        .await;
    let copies: Vec<_> = twice
        .iter()
        .filter(|r| r.id.as_deref() == Some(&id))
        .collect();
    assert_eq!(
        copies[0].body, copies[1].body,
        "the same delivery, sent again"
    );
    // An unknown delivery is 404.
    let unknown = app
        .post_json(
            &format!("/api/deliveries/{}/redeliver", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let garbage = app
        .post_json("/api/deliveries/nope/redeliver", &json!({}))
        .await;
    assert_eq!(garbage.status(), 404);
    // The task page lists them, with a Redeliver button that works without JavaScript.
    let page = app
        .get(&format!("/tasks/{}", task.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Deliveries"), "the page has the section");
    assert!(page.contains(&format!("/deliveries/{id}/redeliver")));
    let form = app
        .post_raw(
            &format!("/tasks/{}/deliveries/{id}/redeliver", task.id),
            "application/x-www-form-urlencoded",
            Vec::new(),
        )
        .await;
    assert_eq!(form.status(), 303);
    receiver
        .until("the second redelivery", |got| {
            got.iter().filter(|r| r.id.as_deref() == Some(&id)).count() == 3
        })
        .await;
}

#[tokio::test]
async fn a_callback_goes_only_to_an_allowed_host_and_gets_only_its_tasks_events() {
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let dir = tempfile::tempdir().unwrap();
    let host = receiver.url.trim_start_matches("http://").to_owned();
    let app = spawn_app_with(webhook_config(
        &dir,
        WebhookConfig {
            callback_allow: vec![host.clone()],
            secret: Some(secret.parse().unwrap()),
            ..WebhookConfig::default()
        },
    ))
    .await;
    for refused in [
        "http://10.0.0.1/cb".to_owned(),
        "http://127.0.0.1:1/cb".to_owned(),
        format!("ftp://{host}/cb"),
        "not a url".to_owned(),
    ] {
        let answer = app
            .submit_json(&json!({"input": "x", "callback_url": refused}))
            .await;
        assert_eq!(answer.status(), 422, "{refused}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("callback_url"),
            "{body}"
        );
    }
    let with = app
        .submit_json(&json!({"input": "call me", "callback_url": format!("{}/cb", receiver.url)}))
        .await;
    assert_eq!(with.status(), 201);
    let with: Value = with.json().await.unwrap();
    assert_eq!(with["callback_url"], format!("{}/cb", receiver.url));
    let without = app.submit("not me", 3).await;
    let id = with["id"].as_str().unwrap();
    app.wait_for_status(id, TaskStatus::WaitingForReview).await;
    app.wait_for_status(&without.id, TaskStatus::WaitingForReview)
        .await;
    receiver
        .until("the callback's three events", |got| got.len() >= 3)
        .await;
    assert!(
        receiver
            .got()
            .iter()
            .all(|r| r.body["data"]["task_id"] == id)
    );
    assert!(deliveries(&app, &without.id).await.is_empty());
}

#[tokio::test]
async fn slack_is_told_with_a_link_and_a_reminder_is_dropped_once_the_review_ended() {
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(webhook_config(
        &dir,
        WebhookConfig {
            notify_slack: Some(format!("{}/slack", receiver.url)),
            public_url: Some("https://hitl.example.com/".into()),
            notify_before: Some(Duration::from_secs(2)),
            ..WebhookConfig::default()
        },
    ))
    .await;
    // Decided before its reminder comes due: the reminder is never sent.
    let decided = app
        .submit_json(&json!({"input": "decide me", "review_timeout_secs": 3}))
        .await;
    let decided: Value = decided.json().await.unwrap();
    let decided = decided["id"].as_str().unwrap().to_owned();
    // Left waiting: its reminder comes a second later.
    let waiting = app
        .submit_json(&json!({"input": "leave me <waiting> & see", "review_timeout_secs": 3}))
        .await;
    let waiting: Value = waiting.json().await.unwrap();
    let waiting = waiting["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&decided, TaskStatus::WaitingForReview)
        .await;
    app.decide(&decided, json!({"decision": "approved", "attempt": 1}))
        .await;
    let got = receiver
        .until("the reminder of the waiting task", |got| {
            got.iter().any(|r| {
                r.body["text"]
                    .as_str()
                    .unwrap()
                    .starts_with("Review deadline near")
            })
        })
        .await;
    let texts: Vec<&str> = got
        .iter()
        .map(|r| r.body["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(
            |t| t.starts_with("Waiting for review: <https://hitl.example.com/tasks/")
                && t.contains(&decided)
        ),
        "{texts:?}"
    );
    let reminder = texts
        .iter()
        .find(|t| t.starts_with("Review deadline near"))
        .unwrap();
    assert!(reminder.contains(&waiting), "{reminder}");
    assert!(
        reminder.contains("leave me &lt;waiting&gt; &amp; see"),
        "escaped: {reminder}"
    );
    // The decided task's reminder was due by now too; it was dropped, not sent.
    let listed = within("the decided task's reminder dropped", async {
        loop {
            let listed = deliveries(&app, &decided).await;
            if listed.len() == 1 {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(listed[0]["kind"], "slack");
    assert!(
        !texts
            .iter()
            .any(|t| t.starts_with("Review deadline near") && t.contains(&decided))
    );
    assert!(
        got.iter().all(|r| r.id.is_none()),
        "Slack messages are not signed"
    );
}

#[tokio::test]
async fn a_full_outbox_records_the_delivery_as_failed_and_loses_no_event() {
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    receiver.answer.store(500, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(webhook_config(
        &dir,
        WebhookConfig {
            max_pending: 2,
            ..hook_to(&receiver, &secret)
        },
    ))
    .await;
    let task = app.submit("overflow", 3).await;
    app.wait_for_status(&task.id, TaskStatus::WaitingForReview)
        .await;
    let listed = deliveries(&app, &task.id).await;
    assert_eq!(listed.len(), 3, "one per event: {listed:?}");
    assert_eq!(listed[2]["status"], "failed");
    assert!(
        listed[2]["last_error"]
            .as_str()
            .unwrap()
            .contains("--webhook-max-pending")
    );
    assert_eq!(listed[0]["status"], "pending");
    // The first is tried (and fails) meanwhile; the tries are counted.
    receiver.until("a try", |got| !got.is_empty()).await;
    within("the try counted", async {
        loop {
            let answer = app.get("/metrics").await.text().await.unwrap();
            if answer.contains("hitl_webhook_deliveries_total{outcome=\"retried\"}") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn webhooks_are_refused_without_a_durable_store_or_a_secret() {
    let memory = Config {
        webhooks: WebhookConfig {
            urls: vec!["http://127.0.0.1:9/hook".into()],
            secret: Some(new_secret().parse().unwrap()),
            ..WebhookConfig::default()
        },
        ..test_config()
    };
    let refused = hitl::Hitl::open(&memory, Default::default())
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("durable store"), "{refused}");
    let dir = tempfile::tempdir().unwrap();
    let unsigned = webhook_config(
        &dir,
        WebhookConfig {
            urls: vec!["http://127.0.0.1:9/hook".into()],
            ..WebhookConfig::default()
        },
    );
    let refused = hitl::Hitl::open(&unsigned, Default::default())
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("--webhook-secret"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_hanging_receiver_with_a_backlog_holds_up_no_other_receiver() {
    // A receiver that takes every connection and never answers, beside one that answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let secret = new_secret();
    let good = Receiver::start(&secret).await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Config {
        webhooks: WebhookConfig {
            urls: vec![hanging_url, format!("{}/hook", good.url)],
            secret: Some(secret.parse().unwrap()),
            timeout_secs: 30,
            ..WebhookConfig::default()
        },
        ..webhook_config(&dir, WebhookConfig::default())
    })
    .await;
    // More deliveries to the hanging receiver than the sender has room for in flight.
    for n in 0..400 {
        let made = app
            .submit_json(&json!({"input": format!("t{n}"), "output": "o"}))
            .await;
        assert_eq!(made.status(), 201);
    }
    good.until("every event at the answering receiver", |got| {
        got.len() >= 400
    })
    .await;
}
