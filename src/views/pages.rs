//! Whole pages: home, task, about, and the error page.

use maud::{Markup, html};

use super::{
    excerpt,
    fragments::{self, FlashKind},
    page,
};
use crate::{
    inbox::InboxPage,
    model::delivery::Delivery,
    model::status::MAX_ATTEMPTS_LIMIT,
    model::task::{Task, TaskStatus},
};

/// A byte count as people read it.
fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// What the submit form shows again after a refused submission.
#[derive(Default)]
pub struct SubmitForm<'a> {
    pub input: &'a str,
    pub max_attempts: Option<&'a str>,
    pub review_timeout_minutes: Option<&'a str>,
    pub review_timeout_policy: Option<&'a str>,
    pub error: Option<String>,
}

/// The home page: the submit form and one page of the inbox, kept live by its event stream.
/// `head` is the event the page reflects; `memory_only` warns that nothing is kept when the
/// server stops.
pub fn home(
    inbox: &InboxPage,
    head: u64,
    default_attempts: u32,
    max_text_bytes: usize,
    form: SubmitForm,
    memory_only: bool,
) -> Markup {
    let main = html! {
        h1 { "Human review of automated work" }
        @if memory_only {
            p #storage-note.note {
                strong { "Kept in memory only: " }
                "tasks and reviews are lost when the server stops. Start it without "
                code { "--store memory" } " to keep them."
            }
        }
        section.card aria-labelledby="submit-heading" {
            h2 #submit-heading { "Submit a task" }
            @match form.error {
                Some(error) => (fragments::flash(FlashKind::Error, html! { (error) }, false)),
                None => (fragments::flash_slot()),
            }
            form.submit-form method="post" action="/tasks" hx-post="/tasks" hx-swap="none" data-reset-on-success {
                (fragments::submit_key(false))
                label for="input" { "What should the task work on?" }
                textarea #input name="input" rows="5" required aria-describedby="input-help" { (form.input) }
                p #input-help.help {
                    "Up to " (size(max_text_bytes)) " of text. It is processed, then waits here for your review."
                }
                label for="max_attempts" { "Attempts allowed" }
                input #max_attempts name="max_attempts" type="number" min="1" max=(MAX_ATTEMPTS_LIMIT)
                    inputmode="numeric" value=(form.max_attempts.unwrap_or(&default_attempts.to_string()));
                details #deadline-fields open[form.review_timeout_minutes.is_some_and(|m| !m.is_empty())] {
                    summary { "Review deadline (optional)" }
                    label for="review_timeout_minutes" { "Minutes the review may take" }
                    input #review_timeout_minutes name="review_timeout_minutes" type="number" min="0"
                        inputmode="numeric" aria-describedby="deadline-help"
                        value=(form.review_timeout_minutes.unwrap_or_default());
                    p #deadline-help.help { "Blank: the service's default. 0: no deadline." }
                    label for="review_timeout_policy" { "When it passes" }
                    select #review_timeout_policy name="review_timeout_policy" {
                        @for (value, label) in [
                            ("", "The service's default"),
                            ("none", "Nothing: mark it overdue"),
                            ("fail", "The task fails"),
                            ("approve", "Approve the output as it is"),
                            ("reject", "Request changes automatically"),
                        ] {
                            option value=(value) selected[form.review_timeout_policy == Some(value)] { (label) }
                        }
                    }
                }
                div.actions { button type="submit" { "Submit task" } }
            }
        }
        (super::inbox::section(inbox, head))
    };
    page(
        "Tasks",
        Some(&super::inbox::stream_url(&inbox.query, head)),
        main,
    )
}

/// The task page; `error` explains a refused action, above the task's state now.
pub fn task(task: &Task, error: Option<&str>, deliveries: &[Delivery]) -> Markup {
    let stream = format!("/stream?task={}", task.id);
    let main = html! {
        p.back { a href="/" { "← All tasks" } }
        h1 { "Task: " (excerpt(&task.input, 60)) }
        @match error {
            Some(error) => (fragments::flash(FlashKind::Error, html! { (error) }, false)),
            None => (fragments::flash_slot()),
        }
        div #task-status.status-line role="status" aria-live="polite" { (fragments::status_text(task, false)) }
        dl.facts {
            dt { "Task id" } dd { code { (task.id) } }
            dt { "Submitted" } dd {
                (super::time(task.created_at))
                @if let Some(by) = &task.submitted_by { " by " (by) }
            }
            dt { "Made by" } dd {
                @if task.processor.is_outside() { "outside hitl (the agent, or workers that claim attempts)" }
                @else { "hitl's " (task.processor.as_str()) " processor" }
            }
        }
        section aria-labelledby="input-heading" {
            h2 #input-heading { "Input" }
            pre.text { (task.input) }
        }
        @if let Some(metadata) = &task.metadata {
            section aria-labelledby="metadata-heading" {
                h2 #metadata-heading { "Metadata" }
                pre.text { (indented(&metadata.0)) }
            }
        }
        (fragments::output(task, false))
        (fragments::review(task, false))
        (super::trail::history(task, false))
        (super::trail::audit(task, false))
        (super::deliveries::section(task.id, deliveries))
        p.next-task {
            a #next-task href={ "/next?after=" (task.id) } { "Next task waiting for review →" }
        }
    };
    // The status first, so a tab says where its task stands (app.js keeps it current).
    let title = format!("{}: {}", task.status.label(), excerpt(&task.input, 40));
    page(&title, Some(&stream), main)
}

/// What hitl does, with the review flow's own description of itself.
pub fn about(mermaid: &str) -> Markup {
    let statuses = TaskStatus::ALL.map(|s| s.as_str()).join(", ");
    let main = html! {
        h1 { "How hitl works" }
        p {
            "You submit a task. A processor drafts an output. A person reviews it: approve it, "
            "request changes with a comment (the next attempt is given every earlier output and comment), "
            "or reject it for good. Every change reaches every open page at once."
        }
        h2 { "The review flow" }
        p { "The workflow engine describes the flow it runs as this Mermaid flowchart:" }
        pre.text.diagram aria-label="Review flow as a Mermaid flowchart" { (mermaid) }
        h2 { "Statuses" }
        p { code { (statuses) } }
        h2 { "For scripts" }
        p { "Everything here also works through the JSON API under " code { "/api" } " and the event stream at " code { "/api/events" } "; see the README." }
    };
    page("How it works", None, main)
}

/// A page for a request that went wrong and has no better page to show.
/// The sign-in form; `error` after a failed try, with the name given kept.
pub fn sign_in(next: &str, error: Option<&str>, name: &str) -> Markup {
    let main = html! {
        h1 { "Sign in" }
        section.card aria-labelledby="sign-in-heading" {
            h2 #sign-in-heading.visually-hidden { "Your name and secret" }
            @match error {
                Some(error) => (fragments::flash(FlashKind::Error, html! { (error) }, false)),
                None => (fragments::flash_slot()),
            }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="name" { "Name" }
                input #name name="name" type="text" autocomplete="username" required value=(name);
                label for="secret" { "Secret" }
                input #secret name="secret" type="password" autocomplete="current-password" required;
                div.actions { button type="submit" { "Sign in" } }
            }
        }
    };
    page("Sign in", None, main)
}

pub fn error(title: &str, message: &str) -> Markup {
    let main = html! {
        h1 { (title) }
        (fragments::flash(FlashKind::Error, html! { (message) }, false))
        p { a href="/" { "Go to the task list" } }
    };
    page(title, None, main)
}

/// Compact JSON laid out two spaces to a level, its keys in the order given (what a
/// `serde_json::Value` would not keep).
fn indented(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on its line.
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap_or(c));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}
