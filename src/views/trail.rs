//! A task's record on its page: every decided attempt with what changed from the one before,
//! and the audit trail, entry by entry.

use maud::{Markup, html};

use super::{oob, task_url, time};
use crate::{
    model::audit::AuditEvent,
    model::task::{AttemptRecord, Task},
};

/// Every decided attempt, oldest first, with its output and the reviewer's comment.
pub fn history(task: &Task, swap: bool) -> Markup {
    html! {
        section #task-history data-seq=(task.seq) aria-labelledby="history-heading" hx-swap-oob=[oob(swap)] {
            h2 #history-heading { "History" }
            @if task.attempts.is_empty() {
                p.muted { "No attempt has been decided yet." }
            } @else {
                ol.history {
                    @for (i, record) in task.attempts.iter().enumerate() {
                        (attempt_record(record, i.checked_sub(1).map(|p| &task.attempts[p])))
                    }
                }
            }
        }
    }
}

/// What changed from an earlier attempt to `output`, and the comment that asked for it; under
/// an `h2` (the output section) or an `h3` (an attempt in the history).
pub(super) fn changes_since(previous: &AttemptRecord, output: &str, under_h3: bool) -> Markup {
    let heading = html! { "Changes from attempt " (previous.attempt) };
    html! {
        @if under_h3 { h4 { (heading) } } @else { h3 { (heading) } }
        @if let Some(comment) = &previous.comment {
            p.meta { "Asked for: " q { (comment) } }
        }
        (super::diff::diff(&previous.output, output))
    }
}

fn attempt_record(record: &AttemptRecord, previous: Option<&AttemptRecord>) -> Markup {
    html! {
        li.attempt {
            h3 {
                "Attempt " (record.attempt) ": "
                @if let Some(decision) = record.decision { (decision.label()) } @else { "Not decided" }
            }
            @if let Some(at) = record.decided_at {
                p.meta {
                    "Decided " (time(at))
                    @if let Some(by) = &record.decided_by { " by " (by) }
                    @if record.timed_out { " by the review deadline's policy, as no one decided in time" }
                }
            }
            h4 { "Output" }
            pre.text { (record.output) }
            @if let Some(previous) = previous {
                (changes_since(previous, &record.output, true))
            }
            @if let Some(comment) = &record.comment {
                h4 { "Reviewer's comment" }
                blockquote { p { (comment) } }
            }
            @if let Some(edit) = &record.edited_output {
                h4 { "Approved with edits" }
                pre.text { (edit) }
                h4 { "The edits, against the processed output" }
                (super::diff::diff(&record.output, edit))
            }
        }
    }
}

/// The task's audit trail: every change, who made it and when, with each entry's hash.
pub fn audit(task: &Task, swap: bool) -> Markup {
    let url = task_url(task.id);
    html! {
        section #task-audit data-seq=(task.seq) aria-labelledby="audit-heading" hx-swap-oob=[oob(swap)] {
            h2 #audit-heading { "Audit trail" }
            p.help {
                "Every change to this task. Each entry holds the hash of the one before, so "
                code { "hitl verify" } " finds any later edit of the stored history. "
                a href={ "/api" (url) "/history" } { "Download it as JSON Lines" }
            }
            // On a narrow screen the table scrolls within its box, not the page; the box takes
            // focus so a keyboard can scroll it.
            div.table-scroll role="region" aria-label="Audit trail entries" tabindex="0" {
            table.audit {
                caption.visually-hidden { "Every change to this task, oldest first" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "What" }
                    th scope="col" { "Who" } th scope="col" { "Hash" }
                } }
                tbody {
                    @for entry in &task.history {
                        tr {
                            td { (entry.n) }
                            td { (time(entry.at)) }
                            td { (audit_what(&entry.event)) }
                            td { @match &entry.by { Some(by) => (by), None => (audit_actor(&entry.event)) } }
                            td { code title=(entry.hash) { (entry.hash.to_string()[..12]) "…" } }
                        }
                    }
                }
            }
            }
        }
    }
}

/// Who did it, when no signed-in person did.
fn audit_actor(event: &AuditEvent) -> &'static str {
    match event {
        AuditEvent::Decided {
            timed_out: true, ..
        }
        | AuditEvent::DeadlinePassed { .. } => "the deadline",
        AuditEvent::AttemptFinished { outside: true, .. }
        | AuditEvent::Failed { outside: true, .. }
        | AuditEvent::Claimed { .. } => "outside (no sign-in)",
        AuditEvent::ClaimReleased { expired: true, .. } => "the lease",
        AuditEvent::AttemptStarted { .. }
        | AuditEvent::AttemptFinished { .. }
        | AuditEvent::Failed { .. } => "hitl",
        _ => "anyone (no sign-in)",
    }
}

/// An audit entry in words.
fn audit_what(event: &AuditEvent) -> Markup {
    html! {
        @match event {
            AuditEvent::Submitted { max_attempts, .. } => { "Submitted, " (max_attempts) " attempts allowed" }
            AuditEvent::AttemptStarted { attempt } => { "Attempt " (attempt) " started" }
            AuditEvent::AttemptFinished { attempt, output_bytes, outside, .. } => {
                "Attempt " (attempt) " finished: " (output_bytes) " bytes of output"
                @if *outside { ", handed in from outside" }
            }
            AuditEvent::Claimed { attempt, lease_expires_at, .. } => {
                "Attempt " (attempt) " claimed by a worker, lease until " (time(*lease_expires_at))
            }
            AuditEvent::ClaimRenewed { attempt, lease_expires_at } => {
                "Lease on attempt " (attempt) " renewed until " (time(*lease_expires_at))
            }
            AuditEvent::ClaimReleased { attempt, expired, error, .. } => {
                @if *expired { "The lease on attempt " (attempt) " ran out; the attempt is pending for another worker" }
                @else { "The worker gave attempt " (attempt) " up for another try" }
                @if let Some(error) = error { ": " (error) }
            }
            AuditEvent::Retried { attempt } => { "Attempt " (attempt) " started again after processing failed" }
            AuditEvent::Decided { attempt, decision, comment, edited, timed_out, .. } => {
                (decision.label()) " (attempt " (attempt) ")"
                @if *edited { ", with edits" }
                @if *timed_out { ", by the deadline's policy" }
                @if let Some(comment) = comment { ": " q { (comment) } }
            }
            AuditEvent::DeadlinePassed { attempt } => {
                "The review deadline of attempt " (attempt) " passed; nothing was decided"
            }
            AuditEvent::DeadlineExtended { attempt, deadline } => {
                "Deadline of attempt " (attempt) " extended to " (time(*deadline))
            }
            AuditEvent::Failed { attempt, error, outside } => {
                "Failed at attempt " (attempt) ": " (error)
                @if *outside { " (given up by a worker)" }
            }
            AuditEvent::Cancelled { attempt } => { "Cancelled at attempt " (attempt) }
        }
    }
}
