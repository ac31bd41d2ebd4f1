//! The event streams: order, snapshots, replay after a reconnect, resyncs, scopes, HTML
//! fragments and shutdown.

use std::time::Duration;

use futures_util::future::join_all;
use hitl::{config::Config, task::TaskStatus};
use reqwest::StatusCode;
use scraper::Html;
use serde_json::json;

use crate::helpers::{
    EventData, SseEvent, TestApp, assert_error, spawn_app, spawn_app_with, test_config, text_of,
    unknown_id,
};

use TaskStatus::{Cancelled, Completed, Pending, Running, WaitingForReview};

fn completed(event: &EventData) -> bool {
    event.status == Completed
}

/// (status, attempt) of each event.
fn steps(events: &[(u64, EventData)]) -> Vec<(TaskStatus, u32)> {
    events.iter().map(|(_, e)| (e.status, e.attempt)).collect()
}

fn assert_ids_grow(events: &[(u64, EventData)]) {
    for (id, data) in events {
        assert_eq!(*id, data.seq, "the id is the event's sequence number");
    }
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "ids grow: {events:?}"
    );
}

/// Rejects attempt 1, then approves attempt 2.
async fn reject_then_approve(app: &TestApp, id: &str) {
    app.wait_for_review(id, 1).await;
    app.decide(
        id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "more" }),
    )
    .await;
    app.wait_for_review(id, 2).await;
    app.decide(id, json!({ "decision": "approved", "attempt": 2 }))
        .await;
}

const LIFECYCLE: [(TaskStatus, u32); 6] = [
    (Pending, 1),
    (Running, 1),
    (WaitingForReview, 1),
    (Running, 2),
    (WaitingForReview, 2),
    (Completed, 2),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watchers_receive_every_status_event_in_the_same_order() {
    // Arrange
    let app = spawn_app().await;
    let mut first = app.events("", None).await;
    let mut second = app.events("", None).await;

    // Act
    let task = app.submit("Watched twice", 3).await;
    reject_then_approve(&app, &task.id).await;

    // Assert
    let seen_first = first.statuses_until(completed).await;
    let seen_second = second.statuses_until(completed).await;
    assert_eq!(seen_first, seen_second);
    assert_eq!(steps(&seen_first), LIFECYCLE);
    assert_ids_grow(&seen_first);
    assert!(seen_first.iter().all(|(_, e)| e.task_id == task.id));
    let (_, under_review) = &seen_first[2];
    assert!(
        under_review
            .output
            .as_deref()
            .is_some_and(|o| o.contains("Draft 1 of 3"))
    );
}

#[tokio::test]
async fn a_new_watcher_first_gets_the_current_state_of_every_task() {
    // Arrange
    let app = spawn_app().await;
    let waiting = app.submit_for_review("Still waiting", 3).await;
    let cancelled = app.submit_for_review("Called off", 3).await;
    assert_eq!(
        app.cancel_json(&cancelled.id).await.status(),
        StatusCode::OK
    );

    // Act
    let mut events = app.events("", None).await;
    let snapshot = vec![events.next_status().await, events.next_status().await];
    let later = app.submit("Arrives later", 3).await;
    let live = events.next_status().await;

    // Assert
    let got: Vec<_> = snapshot
        .iter()
        .map(|(_, e)| (e.task_id.clone(), e.status))
        .collect();
    assert_eq!(
        got,
        [(waiting.id, WaitingForReview), (cancelled.id, Cancelled)]
    );
    assert_eq!(snapshot[0].1.output, waiting.output);
    assert_ids_grow(&snapshot);
    assert_eq!((live.1.task_id, live.1.status), (later.id, Pending));
    assert!(live.0 > snapshot[1].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    // Arrange: one watcher stays, one leaves once the first draft is ready
    let app = spawn_app().await;
    let mut staying = app.events("", None).await;
    let mut leaving = app.events("", None).await;
    let task = app.submit("Reconnect", 3).await;
    let before = leaving
        .statuses_until(|e| e.status == WaitingForReview)
        .await;
    let last_seen = before.last().expect("events").0;
    drop(leaving);
    reject_then_approve(&app, &task.id).await;

    // Act
    let mut resumed = app.events("", Some(last_seen)).await;
    let replayed = resumed.statuses_until(completed).await;

    // Assert: the missed events, in order, as the watcher that stayed saw them
    let everything = staying.statuses_until(completed).await;
    let missed: Vec<_> = everything
        .into_iter()
        .filter(|(id, _)| *id > last_seen)
        .collect();
    assert_eq!(replayed, missed);
    assert_eq!(steps(&replayed), LIFECYCLE[3..]);
    assert_ids_grow(&replayed);

    // ...and then live events, with no duplicates in between.
    let next = app.submit("Next one", 3).await;
    let (id, data) = resumed.next_status().await;
    assert_eq!((data.task_id, data.status), (next.id, Pending));
    assert_eq!(id, replayed.last().expect("events").0 + 1);
}

#[tokio::test]
async fn a_last_event_id_no_longer_kept_gets_a_resync_and_the_current_state() {
    // Arrange: only the two newest events are kept; five have happened
    let config = Config {
        retain_events: hitl::store::Retention::Count(2),
        ..test_config()
    };
    let app = spawn_app_with(config).await;
    let task = app.submit_for_review("Forgetful", 3).await;
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "again" }),
    )
    .await;
    app.wait_for_review(&task.id, 2).await;

    // Act
    let mut events = app.events("", Some(1)).await;
    let resync = events.next().await;
    let current = events.next_status().await;

    // Assert
    assert_eq!(resync.name, "resync");
    assert_eq!((current.1.status, current.1.attempt), (WaitingForReview, 2));
    assert_eq!(current.1.task_id, task.id);
    assert!(resync.id < current.0);

    // The events after 3 (4 and 5) are still kept: they are replayed, with no resync.
    let mut kept = app.events("", Some(3)).await;
    let replayed = vec![kept.next_status().await, kept.next_status().await];
    assert_eq!(steps(&replayed), [(Running, 2), (WaitingForReview, 2)]);
    assert_eq!(replayed[1].0, current.0);
}

#[tokio::test]
async fn a_last_event_id_from_the_future_gets_a_resync_and_the_current_state() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Time traveller", 3).await;

    // Act
    let mut events = app.events("", Some(1_000)).await;
    let resync = events.next().await;
    let current = events.next_status().await;
    let later = app.submit("Live after the resync", 3).await;
    let live = events.next_status().await;

    // Assert
    assert_eq!(resync.name, "resync");
    assert_eq!(
        (current.1.task_id, current.1.status),
        (task.id, WaitingForReview)
    );
    assert!(resync.id < current.0);
    assert_eq!((live.1.task_id, live.1.status), (later.id, Pending));
    assert!(live.0 > current.0);
}

#[tokio::test]
async fn progress_events_report_partial_output_while_an_attempt_runs() {
    // Arrange: attempts take a tenth of a second, long enough to report progress
    let config = Config {
        process_delay_ms: 100,
        ..test_config()
    };
    let app = spawn_app_with(config).await;
    let mut json = app.events("", None).await;
    let mut html = app.html_stream("", None).await;

    // Act
    let task = app.submit("Slow and steady", 3).await;
    // From the start of the log, so the progress event cannot be missed.
    let mut page = app
        .html_stream(&format!("?task={}", task.id), Some(0))
        .await;

    // Assert: a progress event between running and waiting for review
    let is_progress = |seen: &[SseEvent]| seen.last().is_some_and(|e| e.name == "progress");
    let read = json.read_until(is_progress).await;
    let names: Vec<&str> = read.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["status", "status", "progress"]);
    let progress = read[2].data();
    assert_eq!(
        (progress.task_id.as_str(), progress.status),
        (task.id.as_str(), Running)
    );
    let partial = progress.output.expect("partial output");
    assert!(partial.starts_with("Draft 1 of 3"), "{partial}");
    let (_, done) = json.next_status().await;
    assert_eq!(done.status, WaitingForReview);

    // The task page is sent the partial output; the list, only statuses.
    let fragment = page.read_until(is_progress).await.pop().expect("read").data;
    assert!(
        fragment.contains("aria-busy") && fragment.contains("Draft 1 of 3"),
        "{fragment}"
    );
    let listed = html
        .read_until(|seen| {
            seen.last()
                .is_some_and(|e| e.data.contains("Waiting for review"))
        })
        .await;
    assert!(listed.iter().all(|e| e.name == "status"), "{listed:?}");
}

#[tokio::test]
async fn a_task_scoped_stream_carries_only_that_task() {
    // Arrange
    let app = spawn_app().await;
    let watched = app.submit_for_review("Watched", 3).await;
    let other = app.submit("Other", 3).await;
    let mut events = app.events(&format!("?task={}", watched.id), None).await;

    // Act: the other task runs its whole course first
    reject_then_approve(&app, &other.id).await;
    app.decide(&watched.id, json!({ "decision": "approved" }))
        .await;

    // Assert
    let seen = events.statuses_until(completed).await;
    assert!(
        seen.iter().all(|(_, e)| e.task_id == watched.id),
        "{seen:?}"
    );
    assert_eq!(steps(&seen), [(WaitingForReview, 1), (Completed, 1)]);
    assert_ids_grow(&seen);
}

#[tokio::test]
async fn a_stream_for_an_unknown_task_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    for id in [unknown_id(), "not-a-uuid".to_owned()] {
        // Act
        let json = app.get(&format!("/api/events?task={id}")).await;
        let html = app.get(&format!("/stream?task={id}")).await;

        // Assert
        assert_error(json, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(html.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn the_html_stream_sends_fragments_to_swap_out_of_band() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Shown live", 3).await;
    let mut list = app.html_stream("", None).await;
    let mut page = app.html_stream(&format!("?task={}", task.id), None).await;

    // Act
    let row = list.next().await;
    let regions = page.next().await;
    app.decide(&task.id, json!({ "decision": "approved" }))
        .await;
    let row_done = list.next().await;
    let regions_done = page.next().await;

    // Assert: the row changes in place, the task page's regions change
    for event in [&row, &regions, &row_done, &regions_done] {
        assert_eq!(event.name, "status");
        assert!(event.data.contains("hx-swap-oob"), "{}", event.data);
        assert!(!event.data.contains("<html"), "{}", event.data);
    }
    assert_eq!((row.id, row_done.id), (regions.id, regions_done.id));
    assert!(row_done.id > row.id);
    let row = Html::parse_fragment(&row.data);
    let badge = text_of(&row, &format!("#task-row-{} .badge", task.id));
    assert_eq!(badge, "Waiting for review");
    let done = Html::parse_fragment(&row_done.data);
    assert!(text_of(&done, "#announce").contains("Completed"));
    let regions = Html::parse_fragment(&regions.data);
    assert_eq!(
        text_of(&regions, "#task-status-text .badge"),
        "Waiting for review"
    );
    assert_eq!(
        text_of(&regions, "#review-heading"),
        "Your review of attempt 1"
    );
    let done = Html::parse_fragment(&regions_done.data);
    assert_eq!(text_of(&done, "#task-status-text .badge"), "Completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_open_stream_and_the_server() {
    // Arrange: five streams of every kind, each past its first event
    let mut app = spawn_app().await;
    let task = app.submit_for_review("Until shutdown", 3).await;
    let one = format!("?task={}", task.id);
    let mut streams = vec![
        app.events("", None).await,
        app.events(&one, None).await,
        app.events("", Some(1)).await,
        app.html_stream("", None).await,
        app.html_stream(&one, None).await,
    ];
    for stream in &mut streams {
        stream.next().await;
    }

    // Act
    app.shutdown.cancel();

    // Assert
    let bound = Duration::from_secs(5);
    let ended = join_all(streams.iter_mut().map(|s| s.assert_ends()));
    tokio::time::timeout(bound, ended)
        .await
        .expect("every stream ends within 5 s");
    let served = tokio::time::timeout(bound, &mut app.server)
        .await
        .expect("the server stops within 5 s");
    served
        .expect("the server task did not panic")
        .expect("serve returns Ok");
}
