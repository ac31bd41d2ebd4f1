//! The home page's list of tasks: a search, the statuses with their counts as filters, one page
//! of rows, the links to other pages; and what its event stream pushes as tasks change.
//!
//! Everything is a plain link or a `GET` form, so it all works without JavaScript. The pushes
//! follow the rules of [`crate::inbox::Screen`]: rows on screen change in place, page 1 takes in
//! tasks that come to match, other pages only hear about them in the live region.

use maud::{Markup, html};

use super::fragments;
use crate::{
    inbox::{Counts, InboxPage, InboxQuery, MAX_SEARCH_BYTES, Placement, Screen},
    model::task::{Task, TaskStatus},
};

/// The statuses in the order a reviewer looks for them: what needs them first.
const FILTERS: [TaskStatus; 6] = [
    TaskStatus::WaitingForReview,
    TaskStatus::Pending,
    TaskStatus::Running,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Cancelled,
];

/// The home page's address for a filter, search and page (defaults left out).
pub fn url(status: Option<TaskStatus>, q: Option<&str>, page: usize) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(status) = status {
        pairs.push(("status", status.as_str().to_owned()));
    }
    if let Some(q) = q {
        pairs.push(("q", q.to_owned()));
    }
    if page > 1 {
        pairs.push(("page", page.to_string()));
    }
    match serde_urlencoded::to_string(&pairs) {
        Ok(query) if !query.is_empty() => format!("/?{query}"),
        _ => "/".to_owned(),
    }
}

/// The event stream of a home page showing `view`, rendered when the log was at `head`.
pub fn stream_url(view: &InboxQuery, head: u64) -> String {
    let mut pairs = vec![("view", "inbox".to_owned()), ("since", head.to_string())];
    if let Some(status) = view.status {
        pairs.push(("status", status.as_str().to_owned()));
    }
    if let Some(q) = &view.q {
        pairs.push(("q", q.clone()));
    }
    pairs.push(("page", view.page.to_string()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("/stream?{query}")
}

/// A count as people read it: `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The whole list section of the home page; `head` is the event the page reflects.
pub fn section(page: &InboxPage, head: u64) -> Markup {
    let view = &page.query;
    html! {
        section aria-labelledby="tasks-heading" {
            h2 #tasks-heading { "Tasks" }
            (search_form(view))
            (filters(&page.counts, view, head, false))
            div.visually-hidden role="status" aria-live="polite" { p #announce data-seq=(head) {} }
            h3 #results-heading { (results_heading(view)) }
            (summary(view, page.tasks.len(), page.total))
            ul #inbox-list.task-list aria-labelledby="results-heading" aria-describedby="inbox-summary" {
                @for task in &page.tasks { (fragments::task_row(task, false)) }
            }
            // Past the end the page is a 404, and the note is its error message.
            p.empty-note role=[page.past_end().then_some("alert")] { (empty_note(page)) }
            (pager(page))
        }
    }
}

fn search_form(view: &InboxQuery) -> Markup {
    html! {
        form #search.search-form role="search" method="get" action="/" {
            label for="q" { "Search inputs, outputs and comments" }
            div.search-row {
                input #q type="search" name="q" value=[view.q.as_deref()] maxlength=(MAX_SEARCH_BYTES)
                    autocomplete="off" aria-describedby="q-help";
                @if let Some(status) = view.status {
                    input type="hidden" name="status" value=(status.as_str());
                }
                button type="submit" { "Search" }
            }
            p #q-help.help {
                "Upper and lower case match each other (A to Z only). "
                @if view.status.is_some() { "The search keeps the status filter. " }
                span #search-shortcut hidden { "Press " kbd { "/" } " to come back to this box." }
            }
            @if view.q.is_some() {
                p { a href=(url(view.status, None, 1)) { "Clear the search" } }
            }
        }
    }
}

/// The statuses with their counts, each a link that filters the list (keeping the search).
pub fn filters(counts: &Counts, view: &InboxQuery, seq: u64, swap: bool) -> Markup {
    let q = view.q.as_deref();
    let current = |status| (view.status == status).then_some("page");
    html! {
        nav #inbox-filters.filters aria-label="Filter by status" data-seq=(seq)
            hx-swap-oob=[swap.then_some("true")] {
            ul {
                li { a href=(url(None, q, 1)) aria-current=[current(None)] {
                    "All " span.count { (thousands(counts.total())) }
                } }
                @for status in FILTERS {
                    li { a href=(url(Some(status), q, 1)) aria-current=[current(Some(status))] {
                        (status.label()) " " span.count { (thousands(counts.get(status))) }
                    } }
                }
            }
        }
    }
}

fn results_heading(view: &InboxQuery) -> String {
    let what = view.status.map_or("All tasks", |s| s.label());
    match &view.q {
        Some(q) => format!("{what} matching “{q}”"),
        None => what.to_owned(),
    }
}

/// "Showing 51–100 of 12,345": which matches the page shows.
fn summary(view: &InboxQuery, shown: usize, total: usize) -> Markup {
    let first = view.offset().saturating_add(1);
    html! {
        p #inbox-summary.summary {
            @if shown > 0 {
                "Showing " (thousands(first)) "–" (thousands(first + shown - 1)) " of " (thousands(total))
            } @else if total > 0 {
                "Nothing on page " (thousands(view.page)) "; " (thousands(total)) " match."
            } @else {
                "Nothing to show."
            }
        }
    }
}

/// What the empty list says instead; hidden by the stylesheet while the list has rows.
fn empty_note(page: &InboxPage) -> Markup {
    let view = &page.query;
    let last = page.last_page();
    html! {
        @if page.past_end() {
            "There is no page " (thousands(view.page)) " of this list: it ends at page " (thousands(last)) ". "
            a href=(url(view.status, view.q.as_deref(), last)) { "Go to page " (thousands(last)) }
        } @else if let Some(q) = &view.q {
            "No task matches “" (q) "”"
            @if let Some(status) = view.status { " among those " (status.label().to_lowercase()) }
            ". "
            @if view.status.is_some() {
                a href=(url(None, Some(q), 1)) { "Search every status" }
            } @else {
                a href="/" { "Clear the search" }
            }
        } @else if let Some(status) = view.status {
            "No task is " (status.label().to_lowercase()) " now. "
            a href="/" { "Show all tasks" }
        } @else {
            "No task has been submitted yet."
        }
    }
}

/// Links to the previous and next pages (newer and older tasks).
fn pager(page: &InboxPage) -> Markup {
    let view = &page.query;
    let link = |n| url(view.status, view.q.as_deref(), n);
    html! {
        @if !page.past_end() && (page.has_previous() || page.has_next()) {
            nav.pager aria-label="Pages" {
                @if page.has_previous() {
                    a href=(link(view.page - 1)) rel="prev" { "← Previous page (newer)" }
                }
                span { "Page " (thousands(view.page)) " of " (thousands(page.last_page())) }
                @if page.has_next() {
                    a href=(link(view.page + 1)) rel="next" { "Next page (older) →" }
                }
            }
        }
    }
}

/// What the stream pushes to a home page when `task` changed at event `seq`: the counts, the
/// row where it goes, and the live line. The summary ("Showing 1–50 of …") stays as loaded: rows
/// stay on screen when their task leaves the filter, so a live total would contradict them; the
/// counts beside the filters are the live totals.
pub fn live_update(
    task: &Task,
    seq: u64,
    placement: Placement,
    screen: &Screen,
    counts: &Counts,
) -> Markup {
    let more = match placement {
        Placement::Elsewhere { new: true } => Some("It is at the top of page 1 of this list."),
        Placement::Elsewhere { new: false } => Some("It is on another page of this list."),
        _ => None,
    };
    html! {
        (filters(counts, screen.view(), seq, true))
        @match placement {
            Placement::InPlace => (fragments::task_row(task, true)),
            Placement::Insert { before, drop } => {
                @match before {
                    Some(id) => div hx-swap-oob={ "beforebegin:#task-row-" (id) } { (fragments::task_row(task, false)) },
                    None => div hx-swap-oob="beforeend:#inbox-list" { (fragments::task_row(task, false)) },
                }
                @if let Some(id) = drop {
                    li id={ "task-row-" (id) } hx-swap-oob="delete" {}
                }
            },
            Placement::Elsewhere { .. } | Placement::Unseen => {},
        }
        (fragments::announce(task, seq, more))
    }
}

/// What a home page gets when its stream missed events it can no longer replay.
pub fn resync(screen: &Screen, counts: &Counts, seq: u64) -> Markup {
    html! {
        (filters(counts, screen.view(), seq, true))
        p #announce data-seq=(seq) hx-swap-oob="true" {
            "Live updates missed some changes. Reload the page to see the list as it is now."
        }
    }
}
