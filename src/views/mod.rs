//! HTML views: one page shell, one function per fragment.
//!
//! The same fragment function renders a region in the full page, in an htmx response and in an
//! SSE push, so what a browser shows never depends on how it got it. Fragments that can be
//! swapped carry `data-seq`, the event they reflect; `assets/app.js` refuses to swap an older
//! fragment over a newer one.

pub mod deliveries;
pub mod diff;
pub mod fragments;
pub mod inbox;
pub mod pages;
pub mod trail;

use maud::{DOCTYPE, Markup, html};
use time::{OffsetDateTime, macros::format_description};

use crate::model::task::TaskId;
pub use crate::model::task::excerpt;

/// htmx settings: swap error responses too (they carry the message to show), and never evaluate
/// code from attributes or responses.
const HTMX_CONFIG: &str = r#"{"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"[45]..","swap":true,"error":true}],"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false}"#;

tokio::task_local! {
    /// Who the page is for, set around each request by the sign-in middleware, so the shell can
    /// show it without every handler passing it down. `None`: nobody is signed in.
    pub static VIEWER: Option<crate::auth::Actor>;
}

/// The header's account area: who is signed in and a sign-out button, or the warning that
/// nobody needs to.
fn account() -> Markup {
    let viewer = VIEWER.try_with(Clone::clone).ok().flatten();
    html! {
        @match viewer {
            Some(actor) if actor.anonymous => {
                p.account.warning { strong { "No sign-in: anyone can review." } }
            }
            Some(actor) => {
                form.account method="post" action="/sign-out" {
                    span { "Signed in as " strong { (actor.name) } " (" (actor.role.as_str()) ")" }
                    button.secondary type="submit" { "Sign out" }
                }
            }
            None => {}
        }
    }
}

/// The shell every page uses. `stream` is the URL of the page's one SSE connection.
pub fn page(title: &str, stream: Option<&str>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · hitl" }
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/vendor/htmx-2.0.11.min.js" defer {}
                script src="/assets/vendor/htmx-ext-sse-2.2.4.min.js" defer {}
                script src="/assets/app.js" defer {}
            }
            body hx-ext="sse" {
                @if let Some(url) = stream {
                    div #live-sink hidden sse-connect=(url) sse-swap="status,progress,resync" hx-swap="none" {}
                }
                a.skip-link href="#main" { "Skip to content" }
                header.site-header {
                    a.brand href="/" { "hitl" }
                    nav aria-label="Main" {
                        a href="/" { "Tasks" }
                        a href="/about" { "How it works" }
                    }
                    (account())
                }
                main #main tabindex="-1" {
                    @if stream.is_some() {
                        // Filled by app.js while the live connection is down.
                        p #live-state role="status" {}
                    }
                    (main)
                }
            }
        }
    }
}

/// A time as people read it, inside a machine-readable `<time>`.
pub fn time(at: OffsetDateTime) -> Markup {
    let iso = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let shown = at
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    html! { time datetime=(iso) { (shown) } }
}

/// `hx-swap-oob="true"` when the fragment is pushed out of band, nothing in a full page.
pub(crate) fn oob(on: bool) -> Option<&'static str> {
    on.then_some("true")
}

pub fn task_url(id: TaskId) -> String {
    format!("/tasks/{id}")
}
