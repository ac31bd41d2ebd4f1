//! The task page's "Deliveries" section: each webhook, callback and notification its events
//! made, where it stands, and a Redeliver button.

use maud::{Markup, html};

use super::time;
use crate::model::delivery::{Delivery, DeliveryStatus, Kind};

/// The section; nothing when the task made no deliveries.
pub fn section(task_id: crate::model::task::TaskId, deliveries: &[Delivery]) -> Markup {
    if deliveries.is_empty() {
        return html! {};
    }
    html! {
        section #deliveries aria-labelledby="deliveries-heading" {
            h2 #deliveries-heading { "Deliveries" }
            p.help {
                "Webhooks and notifications this task's changes made, each tried until its "
                "receiver accepts it. "
                a href={ "/api/tasks/" (task_id) "/deliveries" } { "As JSON" }
            }
            div.table-scroll role="region" aria-label="Deliveries" tabindex="0" {
            table.audit {
                caption.visually-hidden { "Deliveries, oldest first" }
                thead { tr {
                    th scope="col" { "Event" } th scope="col" { "To" } th scope="col" { "Made" }
                    th scope="col" { "Status" } th scope="col" { "Tries" }
                    th scope="col" { "Last answer" } th scope="col" { "Next try" }
                    th scope="col" { span.visually-hidden { "Act" } }
                } }
                tbody {
                    @for delivery in deliveries {
                        tr {
                            td { (delivery.event_seq) }
                            td {
                                @if delivery.kind == Kind::Slack { "Slack: " }
                                code { (delivery.shown_url) }
                            }
                            td { (time(delivery.created_at)) }
                            td { (status_words(delivery)) }
                            td { (delivery.attempts) }
                            td {
                                @if let Some(code) = delivery.last_status_code { (code) " " }
                                @if let Some(error) = &delivery.last_error { span.muted { (error) } }
                                @if delivery.last_status_code.is_none() && delivery.last_error.is_none() { "—" }
                            }
                            td {
                                @match delivery.next_try_at {
                                    Some(at) => (time(at)),
                                    None => "—",
                                }
                            }
                            td {
                                form method="post" action={ "/tasks/" (delivery.task_id) "/deliveries/" (delivery.id) "/redeliver" } {
                                    button type="submit" class="secondary"
                                        aria-label={ "Redeliver event " (delivery.event_seq) " to " (delivery.shown_url) } {
                                        "Redeliver"
                                    }
                                }
                            }
                        }
                    }
                }
            }
            }
        }
    }
}

fn status_words(delivery: &Delivery) -> &'static str {
    match delivery.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Pending if delivery.attempts == 0 => "waiting to be sent",
        DeliveryStatus::Pending => "retrying",
    }
}
