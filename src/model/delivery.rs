//! Deliveries to the world outside: which receivers an event goes to, what each is sent, and
//! when a delivery that failed is tried again. Pure values: the stores write the deliveries an
//! event makes in the same commit as the event, and the sender (`delivery/`) works through them.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    audit::AuditEvent,
    event::{Event, EventKind},
    status::TaskStatus,
    task::TaskId,
};

/// Where deliveries go, from the flags.
#[derive(Clone, Debug, Default)]
pub struct Receivers {
    /// `--webhook-url`: every status event of every task, in order per task.
    pub webhooks: Vec<Arc<str>>,
    /// Are tasks' own `callback_url`s sent to (`--callback-allow` lists hosts)?
    pub callbacks: bool,
    /// `--notify-slack`: a message when a task starts waiting for review (and before its
    /// deadline), with a link to its page.
    pub slack: Option<Slack>,
}

/// A Slack incoming webhook and what its messages link to.
#[derive(Clone, Debug)]
pub struct Slack {
    pub url: Arc<str>,
    /// `--public-url`, without a trailing `/`.
    pub public_url: Arc<str>,
    /// `--notify-before`: a second message this long before a review's deadline.
    pub before: Option<Duration>,
}

impl Receivers {
    /// Does any event make a delivery (a task's `callback_url` aside)?
    pub fn any(&self) -> bool {
        !self.webhooks.is_empty() || self.callbacks || self.slack.is_some()
    }

    /// The deliveries `event` makes, each given its id now so that every try of it carries the
    /// same `webhook-id`. Only status events are delivered.
    pub fn plan(&self, event: &Event) -> Vec<NewDelivery> {
        if event.kind != EventKind::Status {
            return Vec::new();
        }
        let task = &event.task;
        let at = event.at;
        let mut out = Vec::new();
        let mut urls: Vec<&Arc<str>> = self.webhooks.iter().collect();
        if let Some(callback) = task.callback_url.as_ref().filter(|_| self.callbacks)
            && !urls.iter().any(|url| ***url == **callback)
        {
            urls.push(callback);
        }
        if !urls.is_empty() {
            let body: Arc<str> = webhook_body(event).into();
            for url in urls {
                out.push(NewDelivery {
                    id: Uuid::now_v7(),
                    task_id: task.id,
                    event_seq: event.seq,
                    kind: Kind::Webhook,
                    url: url.clone(),
                    body: body.clone(),
                    created: at,
                    due: at,
                    while_waiting: None,
                    overflow: false,
                });
            }
        }
        // What this event's change was: a review opening (the attempt finished), or its
        // deadline moved; any other event of a task waiting for review tells people nothing.
        let fresh = || task.history.iter().rev().take_while(|e| e.seq == event.seq);
        let opened = fresh().any(|e| matches!(e.event, AuditEvent::AttemptFinished { .. }))
            || (task.history.is_empty() && task.attempts.is_empty());
        let moved = fresh().any(|e| matches!(e.event, AuditEvent::DeadlineExtended { .. }));
        if let Some(slack) = &self.slack
            && task.status == TaskStatus::WaitingForReview
            && (opened || moved)
        {
            let link = format!("{}/tasks/{}", slack.public_url, task.id);
            let title = escape(&first_line(&task.input));
            let link = escape(&link);
            let deadline = task.review_deadline.map(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            });
            let (attempt, of) = (task.attempt, task.max_attempts);
            let text = match &deadline {
                Some(by) => format!(
                    "Waiting for review: <{link}|{title}> (attempt {attempt} of {of}, deadline {by})"
                ),
                None => format!("Waiting for review: <{link}|{title}> (attempt {attempt} of {of})"),
            };
            if opened {
                out.push(slack_message(event, slack, text, at, None));
            }
            // A reminder only when the deadline is further off than `before`: a nearer one is
            // in the first message already.
            if let (Some(before), Some(at_deadline), Some(by)) =
                (slack.before, task.review_deadline, &deadline)
                && at_deadline - before > at
            {
                let text =
                    format!("Review deadline near ({by}): <{link}|{title}> (attempt {attempt})");
                out.push(slack_message(
                    event,
                    slack,
                    text,
                    at_deadline - before,
                    Some(attempt),
                ));
            }
        }
        out
    }
}

fn slack_message(
    event: &Event,
    slack: &Slack,
    text: String,
    due: OffsetDateTime,
    while_waiting: Option<u32>,
) -> NewDelivery {
    NewDelivery {
        id: Uuid::now_v7(),
        task_id: event.task.id,
        event_seq: event.seq,
        kind: Kind::Slack,
        url: slack.url.clone(),
        body: serde_json::json!({ "text": text }).to_string().into(),
        created: due,
        due,
        while_waiting,
        overflow: false,
    }
}

/// The first line of `text`, cut at 80 characters.
fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut out: String = line.trim().chars().take(80).collect();
    if line.trim().chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Slack's own escaping of message text: `&`, `<` and `>`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A webhook's body: `{"type": "task.status", "timestamp", "data": {event fields, "task"}}`.
pub fn webhook_body(event: &Event) -> String {
    let mut data = event.data();
    if let Some(fields) = data.as_object_mut() {
        fields.insert(
            "task".into(),
            serde_json::to_value(&*event.task).unwrap_or_default(),
        );
    }
    serde_json::json!({
        "type": "task.status",
        "timestamp": event.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "data": data,
    })
    .to_string()
}

/// What a delivery goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A signed Standard Webhook (`--webhook-url`, or a task's `callback_url`).
    Webhook,
    /// A Slack incoming webhook's message (`--notify-slack`), unsigned.
    Slack,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Self::Webhook),
            "slack" => Some(Self::Slack),
            _ => None,
        }
    }

    /// Are this kind's deliveries to one receiver accepted in event order, per task?
    pub fn ordered(self) -> bool {
        self == Self::Webhook
    }
}

/// A delivery an event makes, written with it.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: Uuid,
    pub task_id: TaskId,
    pub event_seq: u64,
    pub kind: Kind,
    pub url: Arc<str>,
    pub body: Arc<str>,
    /// When it was made; for a reminder, when it comes due (its age counts from then).
    pub created: OffsetDateTime,
    /// Its first try.
    pub due: OffsetDateTime,
    /// A reminder sent only while the task still waits for review of this attempt.
    pub while_waiting: Option<u32>,
    /// The outbox had no room for it: written as failed, never sent unless redelivered.
    pub overflow: bool,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet accepted; `next_try_at` says when it is tried.
    Pending,
    /// A 2xx came back.
    Delivered,
    /// Given up: its age passed `--webhook-max-age` (or the outbox was full).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A delivery as stored, and as `GET /api/tasks/{id}/deliveries` shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// Its id, also its `webhook-id` on every try.
    #[schema(value_type = String)]
    pub id: Uuid,
    pub task_id: TaskId,
    /// Where it goes.
    #[serde(skip)]
    pub url: Arc<str>,
    /// Where it goes, as far as it can be shown: credentials in the URL, its query and a Slack
    /// webhook's path (its secret) are left out.
    #[serde(rename = "url")]
    pub shown_url: String,
    pub kind: Kind,
    /// The event it tells of.
    pub event_seq: u64,
    pub status: DeliveryStatus,
    /// Tries made so far.
    pub attempts: u32,
    /// The receiver's status code at the last try (`null`: none yet, or no answer).
    #[schema(required = true)]
    pub last_status_code: Option<u16>,
    /// What went wrong at the last try (`null` if it worked or none was made).
    #[schema(required = true)]
    pub last_error: Option<Arc<str>>,
    /// When it is tried next (`null` unless pending).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub next_try_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was delivered or given up.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(skip)]
    pub body: Arc<str>,
    #[serde(skip)]
    pub while_waiting: Option<u32>,
    /// How many times it was redelivered: a try's result applies only to its own round, so a
    /// Redeliver asked for while a try is open is not taken back by that try's answer.
    #[serde(skip)]
    pub round: u32,
}

/// The receiver a URL names, for limits on sends at once: scheme, host and port (paths on one
/// host are one receiver).
pub fn receiver_of(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    &url[..end]
}

/// A receiver's URL without what may be secret in it: credentials, the query, a fragment, and
/// for Slack the path (its token).
pub fn shown(url: &str, kind: Kind) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let cut = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..cut];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = match kind {
        Kind::Slack if path.len() > 1 => "/…",
        _ => path,
    };
    format!("{scheme}://{host}{path}")
}

/// What one try of a delivery left, or what a person asked of it.
#[derive(Clone, Debug)]
pub enum OutboxWrite {
    /// A try was made: the delivery's new state.
    Tried {
        id: Uuid,
        /// The round the try was made in ([`Delivery::round`]).
        round: u32,
        status: DeliveryStatus,
        attempts: u32,
        code: Option<u16>,
        error: Option<Arc<str>>,
        next: Option<OffsetDateTime>,
        at: OffsetDateTime,
    },
    /// A reminder no longer needed (the review it was about has ended): it is dropped.
    Drop { id: Uuid },
    /// Send it again now (a reviewer's Redeliver), keeping its id.
    Redeliver { id: Uuid, at: OffsetDateTime },
}

impl OutboxWrite {
    /// The delivery it is about.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Tried { id, .. } | Self::Drop { id } | Self::Redeliver { id, .. } => *id,
        }
    }

    /// Does it take a delivery out of the pending ones (delivered, given up, dropped)?
    pub fn ends(&self) -> bool {
        match self {
            Self::Tried { status, .. } => *status != DeliveryStatus::Pending,
            Self::Drop { .. } => true,
            Self::Redeliver { .. } => false,
        }
    }
}

/// When a delivery that failed `attempts` times is tried next: `min` after the first failure,
/// doubling each time up to an hour, each wait drawn between 100 % and 120 % of itself (never
/// sooner than the contract's step; at most an hour)
/// (`jitter` in 0..1) so that receivers coming back are not hit by every sender at once.
pub fn retry_after(attempts: u32, min: Duration, jitter: f64) -> Duration {
    const MAX: Duration = Duration::from_secs(3600);
    let doublings = attempts.saturating_sub(1).min(20);
    let wait = min.saturating_mul(1u32 << doublings).min(MAX);
    wait.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0)).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_an_hour() {
        let min = Duration::from_secs(5);
        assert_eq!(retry_after(1, min, 0.0), Duration::from_secs(5));
        assert_eq!(retry_after(2, min, 0.0), Duration::from_secs(10));
        assert_eq!(retry_after(3, min, 0.0), Duration::from_secs(20));
        assert_eq!(retry_after(12, min, 1.0), Duration::from_secs(3600));
        assert_eq!(retry_after(u32::MAX, min, 1.0), Duration::from_secs(3600));
        assert_eq!(retry_after(1, min, 1.0), Duration::from_secs(6));
    }

    #[test]
    fn paths_on_one_host_are_one_receiver() {
        assert_eq!(
            receiver_of("https://a.example.com:8443/cb/1?x=y"),
            "https://a.example.com:8443"
        );
        assert_eq!(receiver_of("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(receiver_of("http://h"), "http://h");
    }

    #[test]
    fn shown_urls_leave_secrets_out() {
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/secret", Kind::Slack),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            shown(
                "https://user:pw@hooks.example.com:8443/in?token=x#f",
                Kind::Webhook
            ),
            "https://hooks.example.com:8443/in"
        );
        assert_eq!(
            shown("http://127.0.0.1:9/hook", Kind::Webhook),
            "http://127.0.0.1:9/hook"
        );
    }

    #[test]
    fn slack_text_is_escaped_and_cut() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(first_line("\n  hello\nworld"), "hello");
        assert_eq!(first_line(&"x".repeat(100)).chars().count(), 81);
    }
}
