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
            div.table-scroll role="region" aria-label="Delivery entries" tabindex="0" {
            table.audit {
                caption.visually-hidden { "Deliveries, oldest first" }
                thead { tr {
                    th scope="col" { "Event" } th scope="col" { "To" } th scope="col" { "Status" } th scope="col" { "Tries" }
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
                            td { (status_words(delivery, deliveries)) }
                            td { (delivery.attempts) }
                            td {
                                // The error says the code too; alone, the code is the answer.
                                @match (&delivery.last_error, delivery.last_status_code) {
                                    (Some(error), _) => span.muted { (error) },
                                    (None, Some(code)) => (code),
                                    (None, None) => "—",
                                }
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

/// Where it stands, in words; a delivery held back by an earlier one to the same receiver says
/// which.
fn status_words(delivery: &Delivery, all: &[Delivery]) -> String {
    let earlier = all.iter().find(|other| {
        other.status == DeliveryStatus::Pending
            && other.url == delivery.url
            && other.kind.ordered()
            && other.event_seq < delivery.event_seq
    });
    match delivery.status {
        DeliveryStatus::Delivered => "delivered".into(),
        DeliveryStatus::Failed => "failed".into(),
        DeliveryStatus::Pending if delivery.kind.ordered() && earlier.is_some() => {
            format!("waits for event {}", earlier.map_or(0, |e| e.event_seq))
        }
        DeliveryStatus::Pending if delivery.attempts == 0 => "waiting to be sent".into(),
        DeliveryStatus::Pending => "retrying".into(),
    }
}
