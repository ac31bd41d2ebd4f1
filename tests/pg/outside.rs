//! Work done outside hitl, with several instances on one database: each attempt is handed
//! out once whichever instance a worker asks, a worker may hand in on any instance, and a
//! lease that runs out gives the attempt to another worker.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, json_body},
    instances::Db,
};

async fn claim(app: &TestApp, body: Value) -> Option<Value> {
    let response = app.post_json("/api/claims", &body).await;
    match response.status() {
        StatusCode::OK => Some(json_body(response).await),
        StatusCode::NO_CONTENT => None,
        other => panic!("a claim answered {other}"),
    }
}

pub async fn each_outside_attempt_is_handed_out_once_across_instances(db: Db) {
    // Arrange: work submitted on one instance, workers on all three
    let [a, b, c] = db.three().await;
    let mut ids = HashSet::new();
    for n in 0..20 {
        let response = a
            .submit_json(&json!({ "input": format!("job {n}"), "processor": "external" }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        ids.insert(
            json_body::<Value>(response).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let apps = [&a, &b, &c];

    // Act: twelve workers, four on each instance, claim until nothing is left, and hand each
    // attempt in on the next instance
    let workers = (0..12).map(|w| {
        let app = TestApp::at(apps[w % 3].base_url.clone());
        let other = TestApp::at(apps[(w + 1) % 3].base_url.clone());
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(claimed) = claim(&app, json!({ "wait_secs": 0 })).await {
                let id = claimed["task"]["id"].as_str().unwrap().to_owned();
                let body = json!({ "attempt": 1, "output": format!("done by {w}"),
                                   "claim": claimed["claim"] });
                let handed = other
                    .post_json(&format!("/api/tasks/{id}/attempts"), &body)
                    .await;
                assert_eq!(
                    handed.status(),
                    StatusCode::OK,
                    "handed in on another instance"
                );
                got.push(id);
            }
            got
        })
    });
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap());
    }

    // Assert: every attempt exactly once
    assert_eq!(claimed.len(), 20, "no attempt handed out twice");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
    for id in &ids {
        let task: Value = json_body(c.get(&format!("/api/tasks/{id}")).await).await;
        assert_eq!(task["status"], "waiting_for_review", "{task}");
    }
}

pub async fn a_revision_and_a_lapsed_lease_cross_instances(db: Db) {
    // Arrange: an agent's draft on A, changes requested on B
    let [a, b, c] = db.three().await;
    let task: Value = json_body(
        a.submit_json(&json!({ "input": "note", "output": "v1" }))
            .await,
    )
    .await;
    let id = task["id"].as_str().unwrap().to_owned();
    b.decide(&id, json!({ "decision": "rejected", "comment": "shorter" }))
        .await;

    // Act: a worker on C claims attempt 2 with a short lease and goes silent; one on A waits
    let lapsed = claim(&c, json!({ "wait_secs": 10, "lease_secs": 5 }))
        .await
        .expect("attempt 2 is claimable");
    let taken = claim(&a, json!({ "wait_secs": 60 }))
        .await
        .expect("the lapsed attempt is handed out again");
    // Progress reported on every instance reaches the stream, whichever runs the workflow.
    let mut events = c.events(&format!("?task={id}"), None).await;
    for (n, app) in [&a, &b, &c].into_iter().enumerate() {
        let progress = app
            .post_json(
                &format!("/api/claims/{}/progress", taken["claim"].as_str().unwrap()),
                &json!({ "text": format!("step {n}") }),
            )
            .await;
        assert_eq!(progress.status(), StatusCode::ACCEPTED);
    }
    let mut reported = Vec::new();
    while reported.len() < 3 {
        let event = events.next().await;
        if event.name == "progress" {
            reported.push(event.data);
        }
    }
    for n in 0..3 {
        assert!(
            reported.iter().any(|d| d.contains(&format!("step {n}"))),
            "{reported:?}"
        );
    }
    let late = b
        .post_json(
            &format!("/api/tasks/{id}/attempts"),
            &json!({ "attempt": 2, "output": "late", "claim": lapsed["claim"] }),
        )
        .await;
    let handed = b
        .post_json(
            &format!("/api/tasks/{id}/attempts"),
            &json!({ "attempt": 2, "output": "v2", "claim": taken["claim"] }),
        )
        .await;
    let done = c
        .decide(&id, json!({ "decision": "approved", "attempt": 2 }))
        .await;

    // Assert
    assert_eq!(
        lapsed["history"],
        json!([{ "attempt": 1, "output": "v1", "comment": "shorter" }])
    );
    assert_eq!(taken["task"]["id"], id.as_str());
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert_eq!(
        json_body::<Value>(late).await["error"]["code"],
        "claim_lost"
    );
    assert_eq!(handed.status(), StatusCode::OK);
    assert_eq!(done.final_result.as_deref(), Some("v2"));
    let raw: Value = json_body(a.get(&format!("/api/tasks/{id}")).await).await;
    assert_eq!(raw["outcome"], "approved");
}
