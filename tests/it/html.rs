//! The browser routes without JavaScript (plain form posts, 303s followed by hand) and with htmx
//! (`HX-Request` answers are fragments).

use hitl::task::TaskStatus;
use reqwest::StatusCode;
use scraper::Html;
use serde_json::json;

use crate::helpers::{
    TestApp, attr_of, content_type, location, select, slow_config, spawn_app, spawn_app_with,
    text_body, text_of, unknown_id,
};

/// A page that must load, parsed.
async fn page(app: &TestApp, path: &str) -> Html {
    let (status, body) = app.get_page(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}");
    Html::parse_document(&body)
}

/// An htmx answer: this status and a fragment, not a page.
async fn fragment(response: reqwest::Response, status: StatusCode) -> Html {
    assert_eq!(response.status(), status);
    let body = text_body(response).await;
    assert!(
        !body.contains("<html") && !body.contains("<!DOCTYPE"),
        "{body}"
    );
    assert!(body.contains("hx-swap-oob"), "{body}");
    Html::parse_fragment(&body)
}

/// The status badge of a task page.
fn badge(doc: &Html) -> String {
    text_of(doc, "#task-status-text .badge")
}

/// The attempt the review form is for, from its hidden field.
fn form_attempt(doc: &Html) -> String {
    attr_of(
        doc,
        "form.review-form input[type=hidden][name=attempt]",
        "value",
    )
}

/// The text of the one alert on a page or fragment.
fn alert(doc: &Html) -> String {
    let text = text_of(doc, "[role=alert]");
    assert!(!text.trim().is_empty(), "an empty alert");
    text
}

/// Posts a decision as the page's form would and returns where it redirects.
async fn decide_by_form(
    app: &TestApp,
    id: &str,
    decision: &str,
    attempt: &str,
    comment: &str,
) -> String {
    let fields = [
        ("decision", decision),
        ("attempt", attempt),
        ("comment", comment),
    ];
    let response = app.feedback_form(id, &fields, false).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{decision} on {attempt}"
    );
    location(&response)
}

/// Submits a task through the home page's form and returns its page's path and its id.
async fn submit(app: &TestApp, input: &str, max_attempts: &str) -> (String, String) {
    let fields = [("input", input), ("max_attempts", max_attempts)];
    let response = app.submit_form(&fields, false).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let path = location(&response);
    let id = path
        .strip_prefix("/tasks/")
        .expect("a task page")
        .to_owned();
    (path, id)
}

#[tokio::test]
async fn a_task_goes_through_its_lifecycle_with_plain_forms() {
    // Arrange
    let app = spawn_app().await;

    // Act: submit, and open the task page once the draft is ready
    let (path, id) = submit(&app, "Plan the offsite", "2").await;
    app.wait_for_review(&id, 1).await;
    let doc = page(&app, &path).await;

    // Assert: the review form is there, for attempt 1
    assert_eq!(badge(&doc), "Waiting for review");
    assert_eq!(
        text_of(&doc, "title"),
        "Waiting for review: Plan the offsite · hitl",
        "the tab says where the task stands"
    );
    assert_eq!(
        attr_of(&doc, "form.review-form", "action"),
        format!("{path}/feedback")
    );
    assert_eq!(attr_of(&doc, "form.review-form", "method"), "post");
    let decisions: Vec<_> = select(&doc, "#task-review button[name=decision]")
        .iter()
        .filter_map(|b| b.value().attr("value"))
        .collect();
    assert_eq!(decisions, ["approved", "rejected", "rejected_final"]);
    assert_eq!(
        attr_of(&doc, "form.approve-form", "action"),
        format!("{path}/feedback"),
        "approving is a form of its own, with the output to edit"
    );
    assert!(text_of(&doc, "#task-output pre:not(.diff)").contains("Draft 1 of 2"));

    // Act: request changes
    let attempt = form_attempt(&doc);
    assert_eq!(attempt, "1");
    let redirect = decide_by_form(&app, &id, "rejected", &attempt, "Add a budget").await;
    assert_eq!(redirect, path);
    app.wait_for_review(&id, 2).await;
    let doc = page(&app, &redirect).await;

    // Assert: the second draft has the comment, the history the first
    assert_eq!(form_attempt(&doc), "2");
    assert!(text_of(&doc, "#task-output pre:not(.diff)").contains("- on draft 1: Add a budget"));
    assert!(text_of(&doc, "#comment-help").contains("last allowed attempt"));
    let history = text_of(&doc, "#task-history ol");
    assert!(history.contains("Changes requested") && history.contains("Add a budget"));

    // Act: approve
    let redirect = decide_by_form(&app, &id, "approved", "2", "").await;
    let doc = page(&app, &redirect).await;

    // Assert
    assert_eq!(badge(&doc), "Completed");
    assert_eq!(text_of(&doc, "title"), "Completed: Plan the offsite · hitl");
    assert!(
        select(&doc, "form.review-form").is_empty(),
        "no review form once finished"
    );
    assert!(
        select(&doc, "form.cancel-form").is_empty(),
        "nothing left to cancel"
    );
    assert_eq!(text_of(&doc, "#output-heading"), "Final result");
    assert!(text_of(&doc, "#task-output pre:not(.diff)").contains("Draft 2 of 2"));
    assert_eq!(select(&doc, "#task-history li.attempt").len(), 2);
    assert_eq!(app.get_task(&id).await.status, TaskStatus::Completed);
}

#[tokio::test]
async fn a_stale_decision_shows_the_error_and_the_task_as_it_is_now() {
    // Arrange: attempt 2 is under review, the reviewer still has attempt 1's page
    let app = spawn_app().await;
    let (path, id) = submit(&app, "Stale page", "3").await;
    app.wait_for_review(&id, 1).await;
    decide_by_form(&app, &id, "rejected", "1", "again").await;
    app.wait_for_review(&id, 2).await;

    // Act
    let fields = [("decision", "approved"), ("attempt", "1")];
    let response = app.feedback_form(&id, &fields, false).await;

    // Assert
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let doc = Html::parse_document(&text_body(response).await);
    assert!(alert(&doc).contains("attempt 2"));
    assert_eq!(badge(&doc), "Waiting for review");
    assert_eq!(
        form_attempt(&doc),
        "2",
        "the page offers the attempt under review"
    );
    let task = app.get_task(&id).await;
    assert_eq!(
        (task.status, task.attempt),
        (TaskStatus::WaitingForReview, 2)
    );
    assert_eq!(task.attempts.len(), 1);
    let fresh = page(&app, &path).await;
    assert!(
        select(&fresh, "[role=alert]").is_empty(),
        "the error is not kept"
    );
}

#[tokio::test]
async fn an_invalid_decision_shows_the_error_above_the_task_as_it_is() {
    // Arrange
    let app = spawn_app().await;
    let (_, id) = submit(&app, "Careful reviewer", "3").await;
    app.wait_for_review(&id, 1).await;
    let long_comment = "a".repeat(65_537);
    let cases = [
        (vec![("attempt", "1")], StatusCode::UNPROCESSABLE_ENTITY),
        (
            vec![("decision", "maybe"), ("attempt", "1")],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            vec![
                ("decision", "rejected"),
                ("attempt", "1"),
                ("comment", &long_comment),
            ],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];

    for (fields, status) in cases {
        // Act
        let response = app.feedback_form(&id, &fields, false).await;

        // Assert: the message, and the task page with the form still there
        assert_eq!(response.status(), status, "{fields:?}");
        let doc = Html::parse_document(&text_body(response).await);
        alert(&doc);
        assert_eq!(badge(&doc), "Waiting for review", "{fields:?}");
        assert_eq!(form_attempt(&doc), "1", "{fields:?}");
    }
    let task = app.get_task(&id).await;
    assert_eq!(
        (task.status, task.attempts.len()),
        (TaskStatus::WaitingForReview, 0)
    );
}

#[tokio::test]
async fn a_decision_with_a_malformed_attempt_shows_the_task_as_it_is() {
    // Arrange
    let app = spawn_app().await;
    let (_, id) = submit(&app, "Typo in the attempt", "3").await;
    app.wait_for_review(&id, 1).await;

    // Act
    let fields = [("decision", "approved"), ("attempt", "first")];
    let response = app.feedback_form(&id, &fields, false).await;

    // Assert: like every refused decision, the message above the task's state now
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let doc = Html::parse_document(&text_body(response).await);
    assert!(alert(&doc).contains("whole number"));
    assert_eq!(badge(&doc), "Waiting for review");
    assert_eq!(form_attempt(&doc), "1");
}

#[tokio::test]
async fn a_cancel_button_cancels_and_a_second_cancel_is_refused() {
    // Arrange
    let app = spawn_app_with(slow_config()).await;
    let (path, id) = submit(&app, "Long job", "3").await;
    app.wait_for_status(&id, TaskStatus::Running).await;
    assert_eq!(
        select(&page(&app, &path).await, "form.cancel-form").len(),
        1
    );

    // Act
    let response = app.cancel_form(&id).await;

    // Assert
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), path);
    let doc = page(&app, &path).await;
    assert_eq!(badge(&doc), "Cancelled");
    assert!(select(&doc, "form.review-form, form.cancel-form").is_empty());
    let again = app.cancel_form(&id).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let doc = Html::parse_document(&text_body(again).await);
    assert!(alert(&doc).contains("cancelled"));
    assert_eq!(badge(&doc), "Cancelled");
}

#[tokio::test]
async fn unknown_tasks_and_pages_are_not_found() {
    // Arrange
    let app = spawn_app().await;
    let unknown = unknown_id();
    let approve = [("decision", "approved")];

    // Act
    let responses = [
        app.get(&format!("/tasks/{unknown}")).await,
        app.get("/tasks/not-a-uuid").await,
        app.get("/no/such/page").await,
        app.feedback_form(&unknown, &approve, false).await,
        app.cancel_form(&unknown).await,
    ];

    // Assert
    for response in responses {
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{}",
            response.url()
        );
        assert_eq!(content_type(&response), "text/html");
        let doc = Html::parse_document(&text_body(response).await);
        assert_eq!(select(&doc, "h1").len(), 1);
        alert(&doc);
    }
}

#[tokio::test]
async fn an_invalid_submission_shows_the_form_again_with_what_was_typed() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let empty = app
        .submit_form(&[("input", "  "), ("max_attempts", "3")], false)
        .await;
    let too_many = app
        .submit_form(
            &[("input", "Keep what I typed"), ("max_attempts", "99")],
            false,
        )
        .await;

    // Assert
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let doc = Html::parse_document(&text_body(empty).await);
    assert!(alert(&doc).contains("empty"));
    assert_eq!(too_many.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let doc = Html::parse_document(&text_body(too_many).await);
    assert!(alert(&doc).contains("1 to 20"));
    assert_eq!(
        text_of(&doc, "form.submit-form textarea#input"),
        "Keep what I typed"
    );
    assert_eq!(
        attr_of(&doc, "form.submit-form input#max_attempts", "value"),
        "99"
    );
    assert!(app.listed_ids("").await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn an_input_over_64_kib_is_too_large() {
    // Arrange
    let app = spawn_app().await;
    let input = "a".repeat(65_537);

    // Act
    let response = app.submit_form(&[("input", &input)], false).await;

    // Assert
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let doc = Html::parse_document(&text_body(response).await);
    assert!(alert(&doc).contains("65536"));
    assert!(app.listed_ids("").await.is_empty());
}

#[tokio::test]
async fn htmx_requests_get_fragments_to_swap_out_of_band() {
    // Arrange
    let app = spawn_app().await;

    // Act: submit with htmx
    let submitted = app.submit_form(&[("input", "From htmx")], true).await;

    // Assert
    let doc = fragment(submitted, StatusCode::OK).await;
    let ids = app.listed_ids("").await;
    assert_eq!(ids.len(), 1);
    assert_eq!(attr_of(&doc, "[role=status]", "hx-swap-oob"), "true");
    assert_eq!(
        attr_of(&doc, "[role=status] a", "href"),
        format!("/tasks/{}", ids[0])
    );

    // Act: decide with htmx, then decide the same attempt again
    let id = &ids[0];
    app.wait_for_review(id, 1).await;
    let fields = [("decision", "approved"), ("attempt", "1")];
    let approved = app.feedback_form(id, &fields, true).await;
    let stale = app.feedback_form(id, &fields, true).await;

    // Assert
    let doc = fragment(approved, StatusCode::OK).await;
    assert_eq!(attr_of(&doc, "#task-status-text", "hx-swap-oob"), "true");
    assert_eq!(text_of(&doc, "#task-status-text .badge"), "Completed");
    let doc = fragment(stale, StatusCode::CONFLICT).await;
    assert_eq!(attr_of(&doc, "[role=alert]", "hx-swap-oob"), "true");
    assert!(alert(&doc).contains("completed"));

    // An invalid submission with htmx is an alert fragment too.
    let empty = app.submit_form(&[("input", "")], true).await;
    alert(&fragment(empty, StatusCode::UNPROCESSABLE_ENTITY).await);
}

#[tokio::test]
async fn the_home_page_lists_tasks_newest_first_with_counts_to_filter_by() {
    // Arrange
    let app = spawn_app().await;
    let waiting = app.submit_for_review("Waiting one", 3).await;
    let done = app.submit_for_review("Done one", 3).await;
    app.decide(&done.id, json!({ "decision": "approved" }))
        .await;

    // Act
    let doc = page(&app, "/").await;
    let filtered = page(&app, "/?status=waiting_for_review").await;

    // Assert: one list, newest first, each row a link to its task
    let rows = select(&doc, "#inbox-list > li.task-row");
    let link = |id: &str| format!("#inbox-list #task-row-{id} a[href='/tasks/{id}']");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].value().id(),
        Some(&*format!("task-row-{}", done.id))
    );
    assert_eq!(text_of(&doc, &link(&waiting.id)), "Waiting one");
    assert_eq!(text_of(&doc, &link(&done.id)), "Done one");
    assert_eq!(text_of(&doc, "#inbox-summary"), "Showing 1–2 of 2");
    // The statuses are filters that say how many tasks they hold, the current one marked
    let count =
        |doc: &Html, href: &str| text_of(doc, &format!("#inbox-filters a[href='{href}'] .count"));
    assert_eq!(count(&doc, "/"), "2");
    assert_eq!(count(&doc, "/?status=waiting_for_review"), "1");
    assert_eq!(count(&doc, "/?status=completed"), "1");
    assert_eq!(count(&doc, "/?status=running"), "0");
    assert_eq!(
        attr_of(&doc, "#inbox-filters [aria-current=page]", "href"),
        "/"
    );
    let rows = select(&filtered, "#inbox-list > li.task-row");
    assert_eq!(rows.len(), 1);
    assert_eq!(text_of(&filtered, &link(&waiting.id)), "Waiting one");
    assert_eq!(
        attr_of(&filtered, "#inbox-filters [aria-current=page]", "href"),
        "/?status=waiting_for_review"
    );
    // The search keeps the filter; the submit form is still there
    assert_eq!(
        attr_of(
            &filtered,
            "form#search input[type=hidden][name=status]",
            "value"
        ),
        "waiting_for_review"
    );
    assert_eq!(attr_of(&filtered, "form#search", "method"), "get");
    assert_eq!(attr_of(&doc, "form.submit-form", "action"), "/tasks");
}

#[tokio::test]
async fn the_about_page_shows_the_flow_as_mermaid() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let doc = page(&app, "/about").await;

    // Assert
    let diagram = text_of(&doc, "pre.diagram");
    assert!(diagram.starts_with("flowchart TD"), "{diagram}");
    assert!(diagram.contains("Review -->|approved| Result"), "{diagram}");
    assert!(
        diagram.contains("Review -->|rejected| Process"),
        "{diagram}"
    );
}

#[tokio::test]
async fn vendored_scripts_are_served_as_javascript() {
    // Arrange
    let app = spawn_app().await;

    for path in [
        "/assets/vendor/htmx-2.0.11.min.js",
        "/assets/vendor/htmx-ext-sse-2.2.4.min.js",
    ] {
        // Act
        let response = app.get(path).await;

        // Assert
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(content_type(&response).ends_with("javascript"), "{path}");
        assert!(text_body(response).await.len() > 1000, "{path}");
    }
    let css = app.get("/assets/app.css").await;
    assert_eq!(content_type(&css), "text/css");
    assert_eq!(
        app.get("/assets/nope.js").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Every visible control and button has a name, one h1, and the page's landmarks.
fn assert_accessible(name: &str, doc: &Html) {
    for control in select(doc, "input:not([type=hidden]), textarea, select") {
        let by_label = control
            .value()
            .id()
            .is_some_and(|id| !select(doc, &format!("label[for='{id}']")).is_empty());
        let labelled = by_label || control.value().attr("aria-label").is_some();
        assert!(
            labelled,
            "{name}: control without a label: {}",
            control.html()
        );
    }
    for button in select(doc, "button") {
        let text: String = button.text().collect();
        let named = !text.trim().is_empty() || button.value().attr("aria-label").is_some();
        assert!(named, "{name}: button without a name: {}", button.html());
    }
    assert_eq!(select(doc, "h1").len(), 1, "{name}: one h1");
    assert_eq!(select(doc, "main").len(), 1, "{name}: a main");
    assert!(!select(doc, "header").is_empty(), "{name}: a header");
}

#[tokio::test]
async fn the_pages_label_their_controls_and_announce_changes() {
    // Arrange
    let app = spawn_app().await;
    let task = app.submit_for_review("Accessible", 3).await;

    // Act
    let home = page(&app, "/").await;
    let task_page = page(&app, &format!("/tasks/{}", task.id)).await;

    // Assert
    assert_accessible("home", &home);
    assert_accessible("task", &task_page);
    assert!(!select(&task_page, "form.review-form textarea").is_empty());
    let live = select(&task_page, "[role=status][aria-live=polite]");
    assert_eq!(live.len(), 1, "a polite live region for the status");
    assert!(!select(&home, "[role=status][aria-live=polite]").is_empty());
}

#[tokio::test]
async fn the_home_page_warns_when_nothing_is_kept() {
    let memory = spawn_app().await;
    let doc = page(&memory, "/").await;
    assert!(text_of(&doc, "#storage-note").contains("lost when the server stops"));

    let dir = tempfile::tempdir().unwrap();
    let durable = spawn_app_with(hitl::config::Config {
        store: hitl::config::StoreKind::Sqlite,
        data_dir: dir.path().to_owned(),
        ..crate::helpers::test_config()
    })
    .await;
    let doc = page(&durable, "/").await;
    assert!(select(&doc, "#storage-note").is_empty());
}

#[tokio::test]
async fn the_task_page_shows_what_changed_since_the_last_attempt_and_why() {
    let app = spawn_app().await;
    let task = app.submit_for_review("Write a limerick", 3).await;
    app.decide(
        &task.id,
        json!({"decision": "rejected", "attempt": 1, "comment": "mention the sea"}),
    )
    .await;
    app.wait_for_review(&task.id, 2).await;

    let doc = page(&app, &format!("/tasks/{}", task.id)).await;
    let output = select(&doc, "#task-output")[0];
    let text: String = output.text().collect();
    assert!(text.contains("Changes from attempt 1"), "{text}");
    assert!(text.contains("Asked for: mention the sea"), "{text}");
    let added: String = select(&doc, "#task-output .diff ins")
        .iter()
        .flat_map(|ins| ins.text())
        .collect();
    assert!(
        added.contains("[added: ") && added.contains("mention the sea"),
        "{added}"
    );
    assert!(
        !select(&doc, "#task-output .diff del").is_empty(),
        "the old draft's words go"
    );
}

/// The approve form's fields as a browser sends them: hidden inputs, the button's decision and
/// the textarea's text (`edit` replaces it), with newlines as CRLF.
fn approve_fields(doc: &Html, edit: Option<&str>) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = select(doc, "form.approve-form input[type=hidden]")
        .iter()
        .map(|input| {
            let attr = |name| input.value().attr(name).unwrap_or_default().to_owned();
            (attr("name"), attr("value"))
        })
        .collect();
    let shown = text_of(doc, "form.approve-form textarea[name=output]");
    let text = edit.map_or(shown, str::to_owned);
    fields.push(("output".into(), text.replace('\n', "\r\n")));
    fields.push(("decision".into(), "approved".into()));
    fields
}

async fn post_fields(app: &TestApp, id: &str, fields: &[(String, String)]) -> reqwest::Response {
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.feedback_form(id, &fields, false).await
}

#[tokio::test]
async fn approving_as_a_browser_sends_the_form_keeps_the_output_unedited() {
    // Arrange: an output of several lines, under review
    let app = spawn_app().await;
    let (path, id) = submit(&app, "Write\nthree\nlines", "2").await;
    let task = app.wait_for_review(&id, 1).await;
    let doc = page(&app, &path).await;
    let fields = approve_fields(&doc, None);
    assert!(
        fields
            .iter()
            .any(|(k, v)| k == "output_sha256" && v.len() == 64),
        "the form names the exact output on screen: {fields:?}"
    );

    // Act: approve without touching the edit box
    let response = post_fields(&app, &id, &fields).await;

    // Assert: the processed output, byte for byte, is the result, and no edit is recorded
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let done = app.get_task(&id).await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.final_result, task.output);
    assert_eq!(done.attempts[0].edited_output, None);
}

#[tokio::test]
async fn an_edited_approval_finalises_the_edit_and_the_history_shows_it_as_a_diff() {
    // Arrange
    let app = spawn_app().await;
    let (path, id) = submit(&app, "Name the boat", "2").await;
    let task = app.wait_for_review(&id, 1).await;
    let doc = page(&app, &path).await;
    let edit = format!("{}\nSigned off: the crew", task.output.as_deref().unwrap());

    // Act
    let response = post_fields(&app, &id, &approve_fields(&doc, Some(&edit))).await;

    // Assert: the edit (with plain newlines) is the final result; the page shows the change
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let done = app.get_task(&id).await;
    assert_eq!(done.final_result.as_deref(), Some(edit.as_str()));
    assert_eq!(
        done.attempts[0].edited_output.as_deref(),
        Some(edit.as_str())
    );
    let doc = page(&app, &path).await;
    assert_eq!(text_of(&doc, "#task-output pre"), edit);
    let inserted: String = select(&doc, "#task-history ins")
        .iter()
        .map(|e| e.text().collect::<String>())
        .collect();
    assert!(inserted.contains("Signed off: the crew"), "{inserted}");
}

#[tokio::test]
async fn requesting_changes_without_a_comment_is_refused_and_the_review_stays_open() {
    // Arrange
    let app = spawn_app().await;
    let (_, id) = submit(&app, "Plan the week", "3").await;
    app.wait_for_review(&id, 1).await;

    for htmx in [false, true] {
        // Act
        let fields = [
            ("decision", "rejected"),
            ("attempt", "1"),
            ("comment", "  "),
        ];
        let response = app.feedback_form(&id, &fields, htmx).await;

        // Assert: 422, in words, with the form still there
        let doc = if htmx {
            fragment(response, StatusCode::UNPROCESSABLE_ENTITY).await
        } else {
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
            Html::parse_document(&text_body(response).await)
        };
        assert!(alert(&doc).contains("needs a comment"), "{}", alert(&doc));
        assert_eq!(form_attempt(&doc), "1");
    }
    assert_eq!(app.get_task(&id).await.status, TaskStatus::WaitingForReview);
}

#[tokio::test]
async fn next_leads_to_the_oldest_other_task_waiting_for_review() {
    let app = spawn_app().await;
    let (_, first) = submit(&app, "First in line", "3").await;
    app.wait_for_review(&first, 1).await;
    let (_, second) = submit(&app, "Second in line", "3").await;
    app.wait_for_review(&second, 1).await;

    // From the first, the next is the second; from the second, the first (the oldest)
    let next = |after: String| {
        let app = &app;
        async move { location(&app.get(&format!("/next?after={after}")).await) }
    };
    assert_eq!(next(first.clone()).await, format!("/tasks/{second}"));
    assert_eq!(next(second.clone()).await, format!("/tasks/{first}"));
    let doc = page(&app, &format!("/tasks/{first}")).await;
    assert_eq!(
        attr_of(&doc, "#next-task", "href"),
        format!("/next?after={first}")
    );

    // None left waiting: the inbox's waiting list
    app.decide(&first, json!({ "decision": "approved", "attempt": 1 }))
        .await;
    app.decide(&second, json!({ "decision": "approved", "attempt": 1 }))
        .await;
    assert_eq!(next(first).await, "/?status=waiting_for_review");
}

#[tokio::test]
async fn the_submit_form_sets_a_review_deadline_and_keeps_it_when_refused() {
    let app = spawn_app().await;
    let fields = [
        ("input", "With a deadline"),
        ("review_timeout_minutes", "90"),
        ("review_timeout_policy", "approve"),
    ];
    let response = app.submit_form(&fields, false).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let id = location(&response).rsplit('/').next().unwrap().to_owned();
    app.wait_for_review(&id, 1).await;
    let doc = page(&app, &format!("/tasks/{id}")).await;
    let deadline = text_of(&doc, "#deadline");
    assert!(
        deadline.contains("1 hour 30 minutes left") || deadline.contains("1 hour 29 minutes left"),
        "{deadline}"
    );
    assert!(
        deadline.contains("the output is approved as it is"),
        "{deadline}"
    );

    let fields = [
        ("input", "Bad deadline"),
        ("review_timeout_minutes", "-5"),
        ("review_timeout_policy", "fail"),
    ];
    let response = app.submit_form(&fields, false).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let doc = Html::parse_document(&text_body(response).await);
    assert_eq!(attr_of(&doc, "#review_timeout_minutes", "value"), "-5");
    assert_eq!(
        attr_of(&doc, "#review_timeout_policy option[selected]", "value"),
        "fail"
    );
    assert!(alert(&doc).contains("deadline"), "{}", alert(&doc));
}

#[tokio::test]
async fn a_submit_form_sent_twice_makes_one_task_and_htmx_gets_a_fresh_key() {
    // Arrange
    let app = spawn_app().await;
    let home = page(&app, "/").await;
    let key = attr_of(&home, "form.submit-form input[name=submit_key]", "value");
    assert!(!key.is_empty());

    // Act: the same form posted twice without script (a double click)
    let fields = [("input", "Posted twice"), ("submit_key", key.as_str())];
    let first = app.submit_form(&fields, false).await;
    let second = app.submit_form(&fields, false).await;

    // Assert: both land on the one task
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&first), location(&second));
    assert_eq!(app.listed_ids("").await.len(), 1);

    // The form sent again after going back and editing the text is a new task
    let edited = [
        ("input", "Posted twice, edited"),
        ("submit_key", key.as_str()),
    ];
    let third = app.submit_form(&edited, false).await;
    assert_ne!(location(&third), location(&first));
    assert_eq!(app.listed_ids("").await.len(), 2);

    // With htmx the answer carries a new key for the form's next task
    let htmx_key = "0192f000-0000-7000-8000-00000000beef";
    let answer = app
        .submit_form(&[("input", "By htmx"), ("submit_key", htmx_key)], true)
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let doc = Html::parse_fragment(&text_body(answer).await);
    let next = attr_of(&doc, "input#submit-key[hx-swap-oob]", "value");
    assert!(!next.is_empty() && next != htmx_key, "{next}");

    // A malformed key is refused in plain words
    let bad = app
        .submit_form(&[("input", "Bad key"), ("submit_key", "has space")], false)
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_body(bad).await.contains("submit_key"));
}
