//! The regions of the pages that change live: the task page's status, output, review form and
//! history; the home page's task rows and live line; the alert that reports what just happened.

use maud::{Markup, html};

use super::{excerpt, oob, task_url, time};
use crate::{
    auth::{Actor, Role},
    model::audit::Digest,
    model::task::{Outcome, Task, TaskStatus, TimeoutPolicy},
};
use time::OffsetDateTime;

/// The sentence the status region reads out.
pub fn status_sentence(task: &Task) -> String {
    let (n, max) = (task.attempt, task.max_attempts);
    match task.status {
        TaskStatus::Pending if task.processor.is_outside() && n > 1 => {
            format!("Waiting for the revision from outside: attempt {n} of {max}.")
        }
        TaskStatus::Pending if task.processor.is_outside() => {
            format!("Waiting for attempt {n} of {max} from outside.")
        }
        TaskStatus::Running if task.processor.is_outside() => match &task.claim {
            Some(claim) => format!(
                "Attempt {n} of {max} is being made outside, by a worker{} (lease until {}).",
                claim
                    .by
                    .as_deref()
                    .map(|by| format!(" of {by}"))
                    .unwrap_or_default(),
                claim
                    .lease_expires_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
            None => format!("Attempt {n} of {max} is being made outside."),
        },
        TaskStatus::Pending => format!("Attempt {n} of {max} will start shortly."),
        TaskStatus::Running => format!("Attempt {n} of {max} is being processed."),
        TaskStatus::WaitingForReview => format!("Attempt {n} of {max} is ready for your review."),
        TaskStatus::Completed if task.outcome == Some(Outcome::TimedOut) => format!(
            "Approved by the review deadline's policy, not a person, after {n} attempt{}.",
            if n == 1 { "" } else { "s" }
        ),
        TaskStatus::Completed => format!(
            "Approved after {n} attempt{}.",
            if n == 1 { "" } else { "s" }
        ),
        TaskStatus::Failed => {
            let how = task.outcome.map_or("Ended", Outcome::label);
            match &task.error {
                Some(error) => format!("{how} at attempt {n}: {error}"),
                None => format!("{how} at attempt {n}."),
            }
        }
        TaskStatus::Cancelled => match &task.cancelled_by {
            Some(by) => format!("Cancelled by {by} at attempt {n}."),
            None => format!("Cancelled at attempt {n}."),
        },
    }
}

/// A status as text with a matching style; the text carries the meaning, colour only repeats it.
pub fn badge(status: TaskStatus) -> Markup {
    html! { span class={ "badge status-" (status.as_str()) } { (status.label()) } }
}

/// The task page's status line. It sits inside the page's `role="status"` region, which stays
/// in place so screen readers announce each new line.
pub fn status_text(task: &Task, swap: bool) -> Markup {
    html! {
        p #task-status-text data-seq=(task.seq) tabindex="-1" hx-swap-oob=[oob(swap)] {
            (badge(task.status)) " " (status_sentence(task))
        }
    }
}

/// The current output: the draft under review, the final result, or what is happening instead.
pub fn output(task: &Task, swap: bool) -> Markup {
    html! {
        section #task-output data-seq=(task.seq) aria-labelledby="output-heading" hx-swap-oob=[oob(swap)] {
            @match (task.status, &task.final_result, &task.output) {
                (TaskStatus::Completed, Some(result), _) => {
                    h2 #output-heading { "Final result" }
                    pre.text { (result) }
                }
                (_, _, Some(output)) => {
                    h2 #output-heading { "Output of attempt " (task.attempt) }
                    pre.text { (output) }
                    @if let Some(previous) = task.attempts.iter().find(|a| a.attempt + 1 == task.attempt) {
                        (super::trail::changes_since(previous, output, false))
                    }
                }
                (TaskStatus::Pending | TaskStatus::Running, _, None) if task.processor.is_outside() => {
                    h2 #output-heading { "Output of attempt " (task.attempt) }
                    p.muted { "Made outside hitl: it appears here as soon as the agent or a worker hands it in." }
                }
                (TaskStatus::Pending | TaskStatus::Running, _, None) => {
                    h2 #output-heading { "Output of attempt " (task.attempt) }
                    p.muted { "Not ready yet: it appears here as soon as processing ends." }
                }
                _ => {
                    h2 #output-heading { "Output" }
                    p.muted { "There is no output." }
                }
            }
        }
    }
}

/// Partial output of a running attempt, pushed while it is produced.
pub fn progress(task: &Task, seq: u64, attempt: u32, text: &str) -> Markup {
    html! {
        section #task-output data-seq=(seq) aria-labelledby="output-heading" hx-swap-oob="true" {
            h2 #output-heading { "Output of attempt " (attempt) " (in progress)" }
            pre.text aria-busy="true" { (text) }
            @if task.attempt != attempt {
                p.muted { "This is an earlier attempt." }
            }
        }
    }
}

/// What the reader can do now: review the attempt, cancel the task, or nothing (it is over).
pub fn review(task: &Task, swap: bool) -> Markup {
    let url = task_url(task.id);
    html! {
        section #task-review data-seq=(task.seq) aria-labelledby="review-heading" hx-swap-oob=[oob(swap)] {
            @if task.status == TaskStatus::WaitingForReview && !may_decide() {
                h2 #review-heading { "Review of attempt " (task.attempt) }
                p.muted { "Attempt " (task.attempt) " is waiting for a reviewer. You are signed in as a submitter, so you can watch it here but not decide." }
            } @else if task.status == TaskStatus::WaitingForReview {
                @let output = task.output.as_deref().unwrap_or_default();
                h2 #review-heading { "Your review of attempt " (task.attempt) }
                @if let (Some(deadline), Some(timeout)) = (task.review_deadline, task.review_timeout) {
                    (deadline_note(task, deadline, timeout.policy))
                }
                p #shortcuts.help hidden {
                    "Keys: " kbd { "a" } " approve, " kbd { "e" } " edit before approving, "
                    kbd { "r" } " write the comment to request changes, " kbd { "n" } " next task waiting. They do nothing while you type in a field."
                }
                // One form: a comment typed before pressing Approve is the approval's note,
                // not lost; an unedited output sent with a request for changes is ignored.
                form.review-form.approve-form method="post" action={ (url) "/feedback" }
                    hx-post={ (url) "/feedback" } hx-swap="none" aria-labelledby="review-heading" {
                    input type="hidden" name="attempt" value=(task.attempt);
                    input type="hidden" name="output_sha256" value=(Digest::of_text(output));
                    details #edit-output {
                        summary { "Edit the output before approving" }
                        label for="edited-output" { "Output to approve" }
                        // A textarea drops one newline right after its start tag: give it one,
                        // so an output that starts with a blank line comes back unchanged.
                        textarea #edited-output name="output" rows="8" aria-describedby="edit-help" { "\n" (output) }
                        p #edit-help.help { "Your edit becomes the final result; the history shows it as a diff against the processed output." }
                    }
                    label for="comment" { "Comment" }
                    textarea #comment name="comment" rows="3" aria-describedby="comment-help" {}
                    p #comment-help.help {
                        "Kept as the approval's note when you approve. "
                        "Required to request changes: the next attempt receives it. "
                        "With “Reject” it is recorded as the reason the task failed."
                        @if task.attempt >= task.max_attempts {
                            " This is the last allowed attempt: requesting changes ends the task as failed."
                        }
                    }
                    div.actions {
                        button #approve.approve type="submit" name="decision" value="approved" { "Approve" }
                        button #request-changes type="submit" name="decision" value="rejected" { "Request changes" }
                        button.danger type="submit" name="decision" value="rejected_final" { "Reject" }
                    }
                }
            } @else {
                h2 #review-heading { "Review" }
                p.muted {
                    @match task.status {
                        TaskStatus::Pending | TaskStatus::Running if task.processor.is_outside() =>
                            "The review form appears here when the revision from outside is handed in.",
                        TaskStatus::Pending | TaskStatus::Running =>
                            "The review form appears here when the attempt is ready.",
                        _ => "This task is finished; it takes no more decisions.",
                    }
                }
                @if task.outcome == Some(Outcome::ProcessingFailed) && may_decide() {
                    form.retry-form method="post" action={ (url) "/retry" } hx-post={ (url) "/retry" } hx-swap="none" {
                        p.help { "Processing failed, so nobody has reviewed an output yet. Retry starts attempt " (task.attempt) " again." }
                        button #retry type="submit" { "Retry" }
                    }
                }
            }
            @if !task.status.is_terminal() && may_cancel(task) {
                form.cancel-form method="post" action={ (url) "/cancel" } hx-post={ (url) "/cancel" } hx-swap="none" {
                    button.secondary type="submit" { "Cancel task" }
                }
            }
        }
    }
}

/// Who the fragment is rendered for (set per request, and per stream connection).
fn viewer() -> Option<Actor> {
    super::VIEWER.try_with(Clone::clone).ok().flatten()
}

/// May the viewer decide? Everyone without sign-in; reviewers with it. (The service checks
/// again: this only spares a submitter buttons that would answer 403.)
fn may_decide() -> bool {
    viewer().is_none_or(|v| v.role == Role::Reviewer)
}

/// May the viewer cancel this task? Reviewers any task, submitters their own.
fn may_cancel(task: &Task) -> bool {
    viewer().is_none_or(|v| {
        v.role == Role::Reviewer || v.anonymous || task.submitted_by.as_deref() == Some(&*v.name)
    })
}

/// The open review's deadline, the time left, what happens then, and a form to extend it.
fn deadline_note(task: &Task, deadline: OffsetDateTime, policy: TimeoutPolicy) -> Markup {
    let url = task_url(task.id);
    let left = deadline - crate::model::task::now();
    html! {
        div #deadline.deadline {
            p {
                strong { "Deadline: " } (time(deadline))
                @if left.is_positive() {
                    " (" span.time-left data-deadline=(deadline.unix_timestamp()) { (duration_words(left)) " left" } "). "
                    "If no one decides by then, " (policy.describe()) "."
                } @else {
                    " (passed " (duration_words(-left)) " ago). "
                    @if policy == TimeoutPolicy::None { "Nothing was decided: the review is overdue." }
                }
            }
            form.extend-form method="post" action={ (url) "/deadline" } hx-post={ (url) "/deadline" } hx-swap="none" {
                input type="hidden" name="attempt" value=(task.attempt);
                label for="extend_minutes" { "Give the review more time" }
                select #extend_minutes name="extend_minutes" {
                    option value="15" { "15 minutes" }
                    option value="60" selected { "1 hour" }
                    option value="240" { "4 hours" }
                    option value="1440" { "1 day" }
                }
                " "
                button.secondary type="submit" { "Extend the deadline" }
            }
        }
    }
}

/// A span of time in words, to the minute (seconds under a minute).
fn duration_words(span: time::Duration) -> String {
    let secs = span.whole_seconds().max(0);
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0..60 => plural(secs, "second"),
        60..3600 => plural(secs / 60, "minute"),
        3600..86_400 => match (secs % 3600) / 60 {
            0 => plural(secs / 3600, "hour"),
            m => format!("{} {}", plural(secs / 3600, "hour"), plural(m, "minute")),
        },
        _ => match (secs % 86_400) / 3600 {
            0 => plural(secs / 86_400, "day"),
            h => format!("{} {}", plural(secs / 86_400, "day"), plural(h, "hour")),
        },
    }
}

/// The task-page regions, out of band: what a push or an htmx response carries. A task read
/// back from the journal has no audit trail, so its (unchanged) trail is not sent.
pub fn task_regions(task: &Task) -> Markup {
    html! {
        (status_text(task, true))
        (output(task, true))
        (review(task, true))
        (super::trail::history(task, true))
        @if !task.history.is_empty() {
            (super::trail::audit(task, true))
        }
    }
}

/// One task in the home page's list; `swap` replaces the row already on the page.
pub fn task_row(task: &Task, swap: bool) -> Markup {
    html! {
        li.task-row id={ "task-row-" (task.id) } data-seq=(task.seq) hx-swap-oob=[oob(swap)] {
            a href=(task_url(task.id)) { (excerpt(&task.input, 80)) }
            " " (badge(task.status))
            @if let Some(note) = row_note(task) { " " span.outcome { (note) } }
            span.meta {
                " attempt " (task.attempt) " of " (task.max_attempts) ", updated " (time(task.updated_at))
            }
        }
    }
}

/// What a row adds to its status: how a finished task ended (a rejection, exhausted changes,
/// a processing failure, a deadline), or that its work is done outside.
fn row_note(task: &Task) -> Option<&'static str> {
    match (task.status, task.outcome) {
        (TaskStatus::Failed, Some(outcome)) => Some(outcome.label()),
        (TaskStatus::Completed, Some(Outcome::TimedOut)) => Some("Approved by the deadline"),
        (TaskStatus::Pending, _) if task.processor.is_outside() && task.attempt > 1 => {
            Some("waiting for the revision from outside")
        }
        (TaskStatus::Pending | TaskStatus::Running, _) if task.processor.is_outside() => {
            Some("made outside")
        }
        _ => None,
    }
}

/// The line the home page's live region reads out about a change, with `more` after it.
pub fn announce(task: &Task, seq: u64, more: Option<&str>) -> Markup {
    html! {
        p #announce data-seq=(seq) hx-swap-oob="true" {
            @if crate::inbox::is_new(task) { "New task “" } @else { "Task “" }
            (excerpt(&task.input, 40)) "”: " (task.status.label()) "."
            @if let Some(more) = more { " " (more) }
        }
    }
}

/// A task's row changed in place, wherever a page shows it, and the line for the live region:
/// what `/stream` sends for every task (the home page asks for more, see `views::inbox`).
pub fn row_update(task: &Task) -> Markup {
    html! {
        (task_row(task, true))
        (announce(task, task.seq, None))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Error,
    Success,
}

/// The message about what just happened: an alert for errors, a status line for success.
pub fn flash(kind: FlashKind, message: Markup, swap: bool) -> Markup {
    let (class, role) = match kind {
        FlashKind::Error => ("flash flash-error", "alert"),
        FlashKind::Success => ("flash flash-success", "status"),
    };
    html! { div #flash class=(class) role=(role) hx-swap-oob=[oob(swap)] { (message) } }
}

/// The empty place a flash message goes.
pub fn flash_slot() -> Markup {
    html! { div #flash {} }
}

/// The submit form's key, new for each form: sent twice (a double click without script, the
/// form posted again after going back), the form makes one task. `swap`: pushed out of band
/// after a submission, so the next one is a new task.
pub fn submit_key(swap: bool) -> Markup {
    let key = uuid::Uuid::now_v7();
    html! { input #submit-key type="hidden" name="submit_key" value=(key) hx-swap-oob=[oob(swap)]; }
}
