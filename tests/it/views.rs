//! Snapshots of every fragment, with fixed ids and times, and semantic checks of the pages:
//! every form control has a label, every button a name.

use std::sync::Arc;

use hitl::{
    events::EventLog,
    inbox::{Counts, Inbox, InboxPage, InboxQuery, Screen},
    registry::Registry,
    task::{AttemptRecord, Decision, Task, TaskId, TaskStatus},
    views::{
        self,
        fragments::{self, FlashKind},
        pages, trail,
    },
};
use maud::{Markup, html};
use scraper::{Html, Selector};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Maud writes no newlines; one tag per line makes snapshots readable and diffs small.
fn pretty(markup: Markup) -> String {
    markup.into_string().replace("><", ">\n<")
}

fn task(status: TaskStatus) -> Task {
    let mut task = Task::new(
        TaskId(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001)),
        "Summarise the quarterly report\nin three bullet points".into(),
        3,
        datetime!(2026-11-24 11:59:58 UTC),
    );
    task.status = status;
    task.seq = 7;
    task.updated_at = datetime!(2026-11-24 12:00:00 UTC);
    task.attempt = 2;
    task.attempts = vec![AttemptRecord {
        attempt: 1,
        output: "Draft 1 of 3".into(),
        decision: Some(Decision::Rejected),
        comment: Some("Shorter, & <mention> the risks".into()),
        edited_output: None,
        decided_at: Some(datetime!(2026-11-24 11:59:59 UTC)),
        decided_by: None,
        timed_out: false,
        seq: 0,
    }];
    match status {
        TaskStatus::WaitingForReview => task.output = Some("Draft 2 of 3".into()),
        TaskStatus::Completed => {
            task.output = Some("Draft 2 of 3".into());
            task.final_result = Some("Draft 2 of 3, edited".into());
            task.attempts.push(AttemptRecord {
                attempt: 2,
                output: "Draft 2 of 3".into(),
                decision: Some(Decision::Approved),
                comment: None,
                edited_output: Some("Draft 2 of 3, edited".into()),
                decided_at: Some(datetime!(2026-11-24 12:00:00 UTC)),
                decided_by: Some("alice".into()),
                timed_out: false,
                seq: 0,
            });
        }
        TaskStatus::Failed => task.error = Some("Rejected by the reviewer.".into()),
        _ => {}
    }
    task
}

#[test]
fn status_text_in_every_status() {
    for status in TaskStatus::ALL {
        let name = format!("status_text_{}", status.as_str());
        insta::assert_snapshot!(name, pretty(fragments::status_text(&task(status), true)));
    }
}

#[test]
fn output_in_every_status() {
    for status in TaskStatus::ALL {
        let name = format!("output_{}", status.as_str());
        insta::assert_snapshot!(name, pretty(fragments::output(&task(status), false)));
    }
}

#[test]
fn progress_output() {
    let task = task(TaskStatus::Running);
    insta::assert_snapshot!(pretty(fragments::progress(&task, 9, 2, "Draft 2 of 3\n…")));
}

#[test]
fn review_form_while_waiting_and_after() {
    insta::assert_snapshot!(
        "review_waiting",
        pretty(fragments::review(&task(TaskStatus::WaitingForReview), true))
    );
    insta::assert_snapshot!(
        "review_running",
        pretty(fragments::review(&task(TaskStatus::Running), false))
    );
    insta::assert_snapshot!(
        "review_completed",
        pretty(fragments::review(&task(TaskStatus::Completed), false))
    );
}

#[test]
fn attempt_history() {
    insta::assert_snapshot!(
        "history_completed",
        pretty(trail::history(&task(TaskStatus::Completed), true))
    );
    let mut fresh = task(TaskStatus::Running);
    fresh.attempts.clear();
    insta::assert_snapshot!("history_empty", pretty(trail::history(&fresh, false)));
}

#[test]
fn task_row_and_its_live_update() {
    let waiting = task(TaskStatus::WaitingForReview);
    insta::assert_snapshot!("task_row", pretty(fragments::task_row(&waiting, false)));
    insta::assert_snapshot!("row_update", pretty(fragments::row_update(&waiting)));
}

/// Tasks 1..=n, newest last, in the statuses of `TaskStatus::ALL` by turns, each like
/// [`task`] otherwise.
fn registry_of(n: u128) -> Registry {
    let registry = Registry::new(EventLog::new(16));
    for k in 1..=n {
        let mut task = task(TaskStatus::ALL[(k % 6) as usize]);
        task.id = TaskId(Uuid::from_u128(k));
        task.input = format!("Task number {k}").into();
        registry.restore(Arc::new(task), &CancellationToken::new());
    }
    registry
}

/// The inbox page `query` asks for, of [`registry_of`]`(n)`.
fn inbox_page(n: u128, query: &InboxQuery) -> InboxPage {
    Inbox::default().query(&registry_of(n), query)
}

#[test]
fn the_inbox_counts_filters_and_pages() {
    let query = InboxQuery {
        status: Some(TaskStatus::Completed),
        q: Some("number".into()),
        page: 2,
        per_page: 2,
    };
    let page = inbox_page(30, &query);
    insta::assert_snapshot!("inbox_section", pretty(views::inbox::section(&page, 7)));
}

#[test]
fn the_inbox_live_updates() {
    let registry = registry_of(3);
    let page = Inbox::default().query(&registry, &InboxQuery::default());
    let mut screen = Screen::new(&page);
    let mut new = Task::new(
        TaskId(Uuid::from_u128(4)),
        "Another number".into(),
        3,
        datetime!(2026-11-24 12:00:00 UTC),
    );
    new.seq = 8;
    registry.restore(Arc::new(new.clone()), &CancellationToken::new());
    let counts = Counts::of(&registry);
    let live = |task: &Task, placement, screen: &Screen| {
        pretty(views::inbox::live_update(
            task, 8, placement, screen, &counts,
        ))
    };
    let placement = screen.place(&new);
    insta::assert_snapshot!("inbox_live_insert", live(&new, placement, &screen));
    let mut changed = (*page.tasks[1]).clone();
    changed.status = TaskStatus::Completed;
    changed.seq = 8;
    let placement = screen.place(&changed);
    insta::assert_snapshot!("inbox_live_in_place", live(&changed, placement, &screen));

    let later = InboxQuery {
        q: Some("number".into()),
        page: 2,
        per_page: 2,
        ..InboxQuery::default()
    };
    let mut screen = Screen::new(&Inbox::default().query(&registry, &later));
    let placement = screen.place(&new);
    insta::assert_snapshot!("inbox_live_elsewhere", live(&new, placement, &screen));
}

#[test]
fn flash_messages() {
    let error = fragments::flash(
        FlashKind::Error,
        html! { "Attempt 1 is not under review." },
        true,
    );
    let success = fragments::flash(FlashKind::Success, html! { "Approved." }, false);
    insta::assert_snapshot!("flash_error", pretty(error));
    insta::assert_snapshot!("flash_success", pretty(success));
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

/// Every visible control has a label (or an aria-label), every button a name, one h1, landmarks.
fn assert_accessible(name: &str, markup: Markup) {
    let doc = Html::parse_document(&markup.into_string());
    for control in select(&doc, "input:not([type=hidden]), textarea, select") {
        let id = control.value().id();
        let labelled = id.is_some_and(|id| !select(&doc, &format!("label[for='{id}']")).is_empty())
            || control.value().attr("aria-label").is_some();
        assert!(
            labelled,
            "{name}: control without a label: {}",
            control.html()
        );
    }
    for button in select(&doc, "button") {
        let text: String = button.text().collect();
        assert!(
            !text.trim().is_empty() || button.value().attr("aria-label").is_some(),
            "{name}: button without a name: {}",
            button.html()
        );
    }
    assert_eq!(select(&doc, "h1").len(), 1, "{name}: one h1");
    assert_eq!(select(&doc, "main").len(), 1, "{name}: one main");
    assert_eq!(select(&doc, "header").len(), 1, "{name}: one header");
    assert!(
        select(&doc, "html[lang]").len() == 1,
        "{name}: page language"
    );
    let ids: Vec<_> = select(&doc, "[id]")
        .iter()
        .filter_map(|e| e.value().id())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "{name}: ids are unique");
}

#[test]
fn every_page_labels_its_controls_and_names_its_buttons() {
    let home = |name: &str, query: InboxQuery| {
        let page = inbox_page(60, &query);
        let markup = pages::home(&page, 7, 3, 65_536, pages::SubmitForm::default(), true);
        assert_accessible(name, markup);
    };
    home("home", InboxQuery::default());
    home(
        "home, filtered and searched",
        InboxQuery {
            status: Some(TaskStatus::Failed),
            q: Some("number 1".into()),
            ..InboxQuery::default()
        },
    );
    home(
        "home, past the end",
        InboxQuery {
            page: 9,
            ..InboxQuery::default()
        },
    );
    for status in TaskStatus::ALL {
        assert_accessible(status.as_str(), pages::task(&task(status), None, &[]));
    }
    assert_accessible(
        "task with error",
        pages::task(&task(TaskStatus::Completed), Some("Too late."), &[]),
    );
    assert_accessible("about", pages::about("flowchart TD"));
    assert_accessible("error", pages::error("Not Found", "No such task."));
    assert_accessible("sign in", pages::sign_in("/", None, ""));
    assert_accessible(
        "sign in, refused",
        pages::sign_in("/", Some("That name and secret do not match."), "alice"),
    );
}

#[test]
fn the_task_page_announces_status_changes_politely() {
    let doc =
        Html::parse_document(&pages::task(&task(TaskStatus::Running), None, &[]).into_string());
    let region = select(&doc, "[role=status][aria-live=polite] #task-status-text");
    assert_eq!(
        region.len(),
        1,
        "the status line sits inside a polite live region"
    );
    let text: String = region[0].text().collect();
    assert!(
        text.contains("Attempt 2 of 3 is being processed."),
        "{text}"
    );
    assert_eq!(
        select(&doc, "[sse-connect]").len(),
        1,
        "one SSE connection per page"
    );
}

#[test]
fn audit_trail_table() {
    use hitl::audit::{AuditEntry, AuditEvent, Digest};
    let mut task = task(TaskStatus::Completed);
    let at = datetime!(2026-11-24 12:00:00 UTC);
    let events = [
        (
            AuditEvent::Submitted {
                input_sha256: Digest::of_text(&task.input),
                max_attempts: 3,
            },
            None,
        ),
        (
            AuditEvent::Decided {
                attempt: 1,
                decision: Decision::Rejected,
                comment: Some("Shorter, & <mention> the risks".into()),
                reviewed_sha256: Digest::of_text("Draft 1 of 3"),
                result_sha256: None,
                edited: false,
                timed_out: false,
            },
            Some("alice"),
        ),
        (
            AuditEvent::DeadlineExtended {
                attempt: 2,
                deadline: datetime!(2026-11-24 13:00:00 UTC),
            },
            Some("carol"),
        ),
        (
            AuditEvent::Decided {
                attempt: 2,
                decision: Decision::Approved,
                comment: None,
                reviewed_sha256: Digest::of_text("Draft 2 of 3"),
                result_sha256: Some(Digest::of_text("Draft 2 of 3, edited")),
                edited: true,
                timed_out: true,
            },
            None,
        ),
    ];
    for (i, (event, by)) in events.into_iter().enumerate() {
        let entry = AuditEntry::chain(
            task.history.last().map(|e| &**e),
            task.id,
            i as u64 + 1,
            at,
            event,
            TaskStatus::Completed,
            by.map(Into::into),
        );
        task.history.push(Arc::new(entry));
    }
    insta::assert_snapshot!(pretty(trail::audit(&task, true)));
}
