//! The inbox at 100,000 tasks: counts per status, status filters, search and pages, through the
//! home page and the JSON API; and what its event stream pushes.
//!
//! The tasks are put straight into the registry (as a restart would) from a generator that is a
//! pure function of the task's number, so every expectation is computed from the same generator
//! rather than written down (`inbox/tasks.rs`).

mod tasks;

use hitl::task::TaskStatus;
use reqwest::StatusCode;
use scraper::Html;
use serde_json::Value;

use tasks::{TASKS, expected, in_input, in_output, quarterly, spawn_full_app, status};

use crate::helpers::{TestApp, assert_error, attr_of, json_body, select, spawn_app, text_of};

/// `GET /api/tasks{query}`, which must answer 200: its ids in order, and the whole body.
async fn api(app: &TestApp, query: &str) -> (Vec<String>, Value) {
    let response = app.list_tasks(query).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /api/tasks{query}");
    let body: Value = json_body(response).await;
    let ids = body["tasks"].as_array().expect("a tasks array");
    let ids = ids.iter().map(|t| t["id"].as_str().unwrap().to_owned());
    (ids.collect(), body)
}

/// A home page: its status, the ids of its rows in order, and the document.
async fn home(app: &TestApp, query: &str) -> (StatusCode, Vec<String>, Html) {
    let (status, body) = app.get_page(&format!("/{query}")).await;
    let doc = Html::parse_document(&body);
    let rows = select(&doc, "#inbox-list > li.task-row")
        .iter()
        .map(|row| row.value().id().unwrap()["task-row-".len()..].to_owned())
        .collect();
    (status, rows, doc)
}

#[tokio::test]
async fn counts_filters_and_pages_at_100_000_tasks() {
    // Arrange
    let (app, _hitl) = spawn_full_app().await;
    let waiting = expected(|k| status(k) == TaskStatus::WaitingForReview);
    let pending = expected(|k| status(k) == TaskStatus::Pending);

    // Act
    let (_, body) = api(&app, "?per_page=1").await;
    let (api_page_1, _) = api(&app, "?status=waiting_for_review&per_page=500").await;
    let (api_page_2, _) = api(&app, "?status=waiting_for_review&per_page=500&page=2").await;
    let (api_last, _) = api(&app, "?status=pending&per_page=300&page=4").await;
    let (api_beyond, beyond) = api(&app, "?status=pending&per_page=300&page=5").await;
    let (status_1, html_page_1, doc_1) = home(&app, "?status=waiting_for_review").await;
    let (status_2, html_page_2, doc_2) = home(&app, "?status=waiting_for_review&page=2").await;
    let (status_last, html_last, doc_last) = home(&app, "?status=pending&page=20").await;

    // Assert: the counts are exact, in the API and beside the filters
    for s in TaskStatus::ALL {
        let n = (0..TASKS).filter(|k| status(*k) == s).count();
        assert_eq!(body["counts"][s.as_str()], n, "{s:?}");
        let count = format!("#inbox-filters a[href='/?status={}'] .count", s.as_str());
        assert_eq!(text_of(&doc_1, &count), thousands(n), "{s:?}");
    }
    assert_eq!(body["total"], 100_000);
    assert_eq!(
        text_of(&doc_1, "#inbox-filters a[href='/'] .count"),
        "100,000"
    );
    assert_eq!(
        attr_of(&doc_1, "#inbox-filters [aria-current=page]", "href"),
        "/?status=waiting_for_review"
    );
    // Only that status, newest first, pages that follow on without gap or overlap
    assert_eq!(api_page_1, waiting[..500]);
    assert_eq!(api_page_2, waiting[500..1000]);
    assert_eq!((status_1, status_2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(html_page_1, waiting[..50]);
    assert_eq!(html_page_2, waiting[50..100]);
    assert_eq!(text_of(&doc_2, "#inbox-summary"), "Showing 51–100 of 5,000");
    assert_eq!(
        attr_of(&doc_2, ".pager a[rel=prev]", "href"),
        "/?status=waiting_for_review"
    );
    assert_eq!(
        attr_of(&doc_2, ".pager a[rel=next]", "href"),
        "/?status=waiting_for_review&page=3"
    );
    // The last page is short; past it the API is empty and the page is 404 with a way back
    assert_eq!(api_last, pending[900..]);
    assert_eq!(api_last.len(), 100);
    assert!(api_beyond.is_empty());
    assert_eq!(beyond["total"], 1000);
    assert_eq!(status_last, StatusCode::OK);
    assert_eq!(html_last, pending[950..]);
    assert!(select(&doc_last, ".pager a[rel=next]").is_empty());
    let (status, rows, doc) = home(&app, "?status=pending&page=21").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(rows.is_empty());
    assert!(text_of(&doc, ".empty-note").contains("ends at page 20"));
    assert_eq!(attr_of(&doc, ".empty-note", "role"), "alert");
    assert_eq!(
        attr_of(&doc, ".empty-note a", "href"),
        "/?status=pending&page=20"
    );
}

#[tokio::test]
async fn search_at_100_000_tasks() {
    // Arrange
    let (app, _hitl) = spawn_full_app().await;
    let matches = expected(quarterly);
    let completed = expected(|k| quarterly(k) && status(k) == TaskStatus::Completed);
    assert!(
        (0..TASKS).any(|k| in_input(k) && !in_output(k))
            && (0..TASKS).any(|k| in_output(k) && !in_input(k)),
        "the generator puts the words in inputs only and in outputs only"
    );
    let last = matches.len().div_ceil(50);
    assert!(!matches.len().is_multiple_of(50), "the last page is short");

    // Act
    // Every match, 100 at a time, following `next`.
    let (mut all, body) = api(&app, "?q=quarterly%20report").await;
    let first_page = all.len();
    let mut next = body["next"].clone();
    while let Some(link) = next.as_str() {
        let (more, page) = api(&app, link.trim_start_matches("/api/tasks")).await;
        all.extend(more);
        next = page["next"].clone();
    }
    let (only_completed, _) =
        api(&app, "?q=QUARTERLY%20Report&status=completed&per_page=500").await;
    let (status_1, page_1, doc_1) = home(&app, "?q=Quarterly+REPORT").await;
    let (status_last, page_last, _) = home(&app, &format!("?q=quarterly+report&page={last}")).await;
    let (many, _) = api(&app, "?q=task%2009&per_page=500&page=3").await;
    let (_, many_body) = api(&app, "?q=task%2009&per_page=1").await;

    // Assert: in inputs and in outputs, whatever the case, every match counted
    assert_eq!(first_page, 100, "the first page holds 100");
    assert_eq!(all, matches);
    assert_eq!(body["total"], matches.len());
    assert_eq!(
        body["counts"]["completed"], 78_000,
        "counts are not searched"
    );
    assert_eq!(only_completed, completed);
    assert_eq!((status_1, status_last), (StatusCode::OK, StatusCode::OK));
    assert_eq!(page_1, matches[..50]);
    assert_eq!(page_last, matches[(last - 1) * 50..]);
    assert!(page_last.len() < 50);
    assert_eq!(
        text_of(&doc_1, "#inbox-summary"),
        format!("Showing 1–50 of {}", matches.len())
    );
    assert_eq!(attr_of(&doc_1, "#q", "value"), "Quarterly REPORT");
    assert_eq!(
        attr_of(&doc_1, "#inbox-filters a[aria-current=page]", "href"),
        "/?q=Quarterly+REPORT",
        "the filters keep the search"
    );
    // Many matches: tasks 090000 to 099999
    assert_eq!(many_body["total"], 10_000);
    assert_eq!(many, expected(|k| k >= 90_000)[1000..1500]);
    // No match: a clear empty state
    let (status, rows, doc) = home(&app, "?q=nowhere%20at%20all&status=failed").await;
    assert_eq!((status, rows.len()), (StatusCode::OK, 0));
    let note = text_of(&doc, ".empty-note");
    assert!(
        note.contains("No task matches “nowhere at all” among those failed"),
        "{note}"
    );
}

#[tokio::test]
async fn bad_inbox_queries_are_refused_in_words() {
    // Arrange
    let app = spawn_app().await;
    let long = "x".repeat(1025);

    for (query, field) in [
        ("?status=done".to_owned(), "status"),
        ("?page=0".to_owned(), "page"),
        ("?page=-2".to_owned(), "page"),
        ("?page=two".to_owned(), "page"),
        (format!("?q={long}"), "search"),
    ] {
        // Act
        let page = app.get(&format!("/{query}")).await;
        let api = app.list_tasks(&query).await;

        // Assert
        assert_eq!(page.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let doc = Html::parse_document(&page.text().await.unwrap());
        assert!(text_of(&doc, "[role=alert]").contains(field), "{query}");
        let message = assert_error(api, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert!(message.contains(field), "{query}: {message}");
    }
    for per_page in ["0", "501", "many"] {
        let api = app.list_tasks(&format!("?per_page={per_page}")).await;
        assert_error(api, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    }
    // At the limit, and in any script, a search is fine
    for q in ["x".repeat(1024), "日本語".to_owned(), "CAFÉ".to_owned()] {
        let q = form_encode(&q);
        assert_eq!(app.get(&format!("/?q={q}")).await.status(), StatusCode::OK);
        assert_eq!(
            app.list_tasks(&format!("?q={q}")).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn without_paging_the_api_lists_every_task_as_before() {
    // Arrange
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(app.submit(&format!("Listed {n}"), 3).await.id);
    }
    ids.reverse();

    // Act
    let (listed, body) = api(&app, "").await;
    let (searched, _) = api(&app, "?q=LISTED%201").await;

    // Assert
    assert_eq!(listed, ids);
    assert_eq!(body["total"], 3);
    let counted: u64 = TaskStatus::ALL
        .iter()
        .map(|s| body["counts"][s.as_str()].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 3);
    assert_eq!(searched, [ids[1].clone()]);
    assert_eq!(body["tasks"][0]["input"], "Listed 2");
}

fn thousands(n: usize) -> String {
    hitl::views::inbox::thousands(n)
}

fn form_encode(text: &str) -> String {
    serde_urlencoded::to_string([("q", text)]).unwrap()["q=".len()..].to_owned()
}

/// An event's fragments, parsed.
fn fragment(data: &str) -> Html {
    Html::parse_fragment(data)
}

#[tokio::test]
async fn the_home_pages_stream_updates_counts_and_rows_in_place() {
    // Arrange: a page showing one task waiting, following its own stream
    let app = spawn_app().await;
    let first = app.submit_for_review("First task", 3).await;
    let (_, _, doc) = home(&app, "").await;
    let url = attr_of(&doc, "#live-sink", "sse-connect");
    let mut stream = app.html_stream(&url["/stream".len()..], None).await;

    // Act
    app.decide(&first.id, serde_json::json!({ "decision": "approved" }))
        .await;
    let approved = stream.next().await;
    let second = app.submit_for_review("Second task", 3).await;
    let added = stream.next().await;
    let processed = stream.next().await;

    // Assert: the counts change, and the row changes where it is
    assert_eq!(approved.name, "status");
    let pushed = fragment(&approved.data);
    let filters = "#inbox-filters[hx-swap-oob=true]";
    assert_eq!(
        attr_of(&pushed, filters, "data-seq"),
        approved.id.to_string()
    );
    let count = |doc: &Html, status: &str| {
        text_of(
            doc,
            &format!("{filters} a[href='/?status={status}'] .count"),
        )
    };
    assert_eq!(count(&pushed, "completed"), "1");
    assert_eq!(count(&pushed, "waiting_for_review"), "0");
    let row = format!("li#task-row-{}[hx-swap-oob=true]", first.id);
    assert_eq!(text_of(&pushed, &format!("{row} .badge")), "Completed");
    assert!(text_of(&pushed, "#announce").contains("Completed"));
    // A new task goes in at the top, then changes in place
    let pushed = fragment(&added.data);
    let top = format!("[hx-swap-oob='beforebegin:#task-row-{}']", first.id);
    let inserted = format!("{top} > li#task-row-{}", second.id);
    assert_eq!(text_of(&pushed, &format!("{inserted} a")), "Second task");
    assert_eq!(count(&pushed, "pending"), "1");
    assert!(text_of(&pushed, "#announce").starts_with("New task"));
    let pushed = fragment(&processed.data);
    let row = format!("li#task-row-{}[hx-swap-oob=true]", second.id);
    assert_eq!(text_of(&pushed, &format!("{row} .badge")), "Running");
}

#[tokio::test]
async fn other_pages_hear_of_new_tasks_without_moving() {
    // Arrange: page 2 of everything, and page 1 of the completed tasks
    let app = spawn_app().await;
    let mut later = app.html_stream("?view=inbox&page=2", None).await;
    let mut completed = app.html_stream("?view=inbox&status=completed", None).await;

    // Act
    let task = app.submit("Arrived while reading", 3).await;
    let on_later = later.next().await;
    let on_completed = completed.next().await;

    // Assert
    for event in [&on_later, &on_completed] {
        let pushed = fragment(&event.data);
        assert!(
            select(&pushed, "li")
                .iter()
                .all(|li| li.value().id().is_none_or(|id| !id.contains(&task.id)))
        );
        assert_eq!(select(&pushed, "#inbox-filters").len(), 1);
    }
    let said = text_of(&fragment(&on_later.data), "#announce");
    assert!(said.contains("top of page 1"), "{said}");
    let said = text_of(&fragment(&on_completed.data), "#announce");
    assert!(!said.contains("page 1"), "it is not in that list: {said}");
}

#[tokio::test]
async fn a_home_page_too_far_behind_is_asked_to_reload() {
    // Arrange
    let app = spawn_app().await;

    // Act: an event number this server never issued (as after a restart in memory)
    let mut stream = app.html_stream("?view=inbox&since=999999", None).await;
    let event = stream.next().await;

    // Assert
    assert_eq!(event.name, "resync");
    let pushed = fragment(&event.data);
    assert!(text_of(&pushed, "#announce").contains("Reload the page"));
    assert_eq!(select(&pushed, "#inbox-filters[hx-swap-oob=true]").len(), 1);
}

#[tokio::test]
async fn a_home_pages_stream_with_bad_fields_is_refused() {
    let app = spawn_app().await;
    for query in [
        "?view=table",
        "?view=inbox&page=0",
        "?view=inbox&status=done",
        "?view=inbox&since=yesterday",
        "?view=inbox&task=0192f000-0000-7000-8000-000000000000",
    ] {
        let response = app.get(&format!("/stream{query}")).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
    }
}
