//! Webhooks with several instances on one database: each delivery is sent by one instance, and
//! one whose sender died is taken over by another when its lease runs out.

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use hitl::config::{WebhookConfig, new_secret};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{
        json_body,
        receiver::{HANG, Receiver},
        within,
    },
    instances::{Binary, Db},
};

fn with_webhook(db: &Db, url: &str, secret: &str) -> hitl::config::Config {
    hitl::config::Config {
        webhooks: WebhookConfig {
            urls: vec![url.to_owned()],
            secret: Some(secret.parse().unwrap()),
            retry_min_ms: 50,
            timeout_secs: 1,
            ..WebhookConfig::default()
        },
        ..db.config()
    }
}

pub async fn two_instances_deliver_each_event_once(db: Db) {
    // Arrange: two instances, one receiver
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    let hook = format!("{}/hook", receiver.url);
    let (a, _) = db.instance_with(with_webhook(&db, &hook, &secret)).await;
    let (b, _) = db.instance_with(with_webhook(&db, &hook, &secret)).await;

    // Act: twenty tasks, submitted on both, each brought to review
    let mut ids = Vec::new();
    for n in 0..20 {
        let app = if n % 2 == 0 { &a } else { &b };
        let response = app
            .submit_json(&json!({ "input": format!("job {n}") }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        ids.push(
            json_body::<Value>(response).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    // Assert: pending, running, waiting_for_review of each, each once, in order per task
    receiver
        .until("three events of each task", |got| got.len() >= 60)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // any duplicate would come now
    let got = receiver.got();
    assert_eq!(got.len(), 60, "each event once: {}", got.len());
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for received in &got {
        *per_id.entry(received.id.clone().unwrap()).or_default() += 1;
    }
    assert!(
        per_id.values().all(|n| *n == 1),
        "one delivery per webhook-id"
    );
    for id in &ids {
        let seqs: Vec<u64> = receiver
            .statuses("/hook", id)
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(seqs.len(), 3, "{id}: {seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{id} in order: {seqs:?}"
        );
    }
    let listed: Value = json_body(b.get(&format!("/api/tasks/{}/deliveries", ids[0])).await).await;
    assert_eq!(listed["deliveries"].as_array().unwrap().len(), 3);
}

pub async fn a_dead_senders_delivery_is_taken_over_with_its_id(db: Db) {
    // Arrange: a receiver that takes the request and never answers; an instance (the binary)
    // that sends to it
    let secret = new_secret();
    let receiver = Receiver::start(&secret).await;
    receiver.answer.store(HANG, Ordering::SeqCst);
    let hook = format!("{}/hook", receiver.url);
    let flags = [
        "--webhook-url",
        &hook,
        "--webhook-secret",
        &secret,
        "--webhook-timeout-secs",
        "1",
        "--webhook-retry-min-ms",
        "50",
    ];
    let mut first = Binary::spawn(&db, &flags);
    let response = first
        .app
        .submit_json(&json!({ "input": "tell them", "processor": "external" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let got = receiver.until("the first try", |got| !got.is_empty()).await;
    let id = got[0].id.clone().unwrap();

    // Act: the sender dies mid-send, holding the delivery's lease; another instance starts
    first.kill();
    receiver.answer.store(200, Ordering::SeqCst);
    let (second, _) = db.instance_with(with_webhook(&db, &hook, &secret)).await;

    // Assert: it is sent again, with the same id, once its lease has run out
    within("the delivery taken over", async {
        loop {
            let tries = receiver
                .got()
                .iter()
                .filter(|r| r.id.as_deref() == Some(&id))
                .count();
            if tries >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let task = got[0].body["data"]["task_id"].as_str().unwrap();
    let listed: Value = json_body(second.get(&format!("/api/tasks/{task}/deliveries")).await).await;
    let delivery = &listed["deliveries"][0];
    assert_eq!(delivery["id"], id.as_str());
    within("recorded as delivered", async {
        loop {
            let listed: Value =
                json_body(second.get(&format!("/api/tasks/{task}/deliveries")).await).await;
            if listed["deliveries"][0]["status"] == "delivered" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
