//! The inbox: which tasks match a status filter and a text search, one page of them (newest
//! first), how many are in each status, and which waiting task a reviewer should take next.
//!
//! It must stay fast with 100,000 tasks (see `BENCHMARKS.md`), so a query never sorts every
//! match: it collects the ids that match (unfiltered, without even reading a task), finds the
//! page's edges with two `select_nth_unstable` passes, sorts only the page, and only then looks
//! the page's tasks up. Counts per status come from counters the registry keeps, not a scan.
//! Text is searched in a folded copy of every task's texts ([`TextIndex`]) that [`Inbox`] keeps
//! and brings up to date before each search, outside the registry's locks, so a search never
//! holds up a transition.

mod screen;
mod search;

use std::{
    cmp::Reverse,
    sync::{Arc, Mutex},
};

pub use screen::{Placement, Screen, is_new};
pub use search::{Search, TextIndex};

use crate::{
    input::InvalidField,
    model::task::{Task, TaskId, TaskStatus},
    registry::Registry,
};

/// Tasks on a page of the home page.
pub const PER_PAGE: usize = 50;
/// The most tasks the API returns on one page when asked for pages.
pub const MAX_PER_PAGE: usize = 500;
/// The longest search accepted, in bytes: longer is surely a mistake, and costs every task a
/// longer scan.
pub const MAX_SEARCH_BYTES: usize = 1024;

/// What the inbox is asked to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxQuery {
    /// Only tasks in this status; `None`: every status.
    pub status: Option<TaskStatus>,
    /// Only tasks whose texts contain this (see [`Search`]); never empty or blank.
    pub q: Option<String>,
    /// Which page, from 1.
    pub page: usize,
    /// Tasks per page; `usize::MAX` puts every match on page 1.
    pub per_page: usize,
}

impl Default for InboxQuery {
    fn default() -> Self {
        Self {
            status: None,
            q: None,
            page: 1,
            per_page: PER_PAGE,
        }
    }
}

/// The query's fields as a query string sends them: all text, any of them missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct InboxFields<'a> {
    pub status: Option<&'a str>,
    pub q: Option<&'a str>,
    pub page: Option<&'a str>,
    pub per_page: Option<&'a str>,
}

impl InboxQuery {
    /// Reads the fields; a field left out (or sent empty) takes its default, and `per_page`
    /// defaults to `per_page`. A bad value is refused with words that say what to send.
    pub fn parse(fields: InboxFields<'_>, per_page: usize) -> Result<Self, InvalidField> {
        let status = match fields.status.map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<TaskStatus>()
                    .map_err(|message| InvalidField::invalid("status", message))?,
            ),
        };
        let q = match fields.q {
            Some(q) if q.len() > MAX_SEARCH_BYTES => {
                return Err(InvalidField::invalid(
                    "q",
                    format!(
                        "The search is {} bytes long; searches are limited to {MAX_SEARCH_BYTES} bytes.",
                        q.len()
                    ),
                ));
            }
            Some(q) if !q.trim().is_empty() => Some(q.trim().to_owned()),
            _ => None,
        };
        let page = whole("page", fields.page, 1, usize::MAX)?.unwrap_or(1);
        let per_page = whole("per_page", fields.per_page, 1, MAX_PER_PAGE)?.unwrap_or(per_page);
        Ok(Self {
            status,
            q,
            page,
            per_page,
        })
    }

    /// How many matches come before this page.
    pub fn offset(&self) -> usize {
        self.page.saturating_sub(1).saturating_mul(self.per_page)
    }

    /// The search this query makes, if any.
    pub fn search(&self) -> Option<Search> {
        self.q.as_deref().and_then(Search::new)
    }
}

/// A whole number from `min` to `max`, or absent.
fn whole(
    field: &'static str,
    text: Option<&str>,
    min: usize,
    max: usize,
) -> Result<Option<usize>, InvalidField> {
    let text = match text.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(text) => text,
    };
    let range = if max == usize::MAX {
        format!("{min} or more")
    } else {
        format!("from {min} to {max}")
    };
    // A number too big for a usize is still a number: past any end, not a typing mistake.
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let n = text.parse::<usize>().ok().or(digits.then_some(usize::MAX));
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(InvalidField::invalid(
            field,
            format!("The {field} must be a whole number {range}, not {text:?}."),
        )),
    }
}

/// How many tasks are in each status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts([usize; TaskStatus::ALL.len()]);

impl Counts {
    /// The counts now: constant time, whatever the number of tasks.
    pub fn of(registry: &Registry) -> Self {
        Self(registry.count_by_status())
    }

    pub fn get(&self, status: TaskStatus) -> usize {
        self.0[status.index()]
    }

    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// Tasks in `status`, or in all, when `None`.
    pub fn of_filter(&self, status: Option<TaskStatus>) -> usize {
        status.map_or_else(|| self.total(), |s| self.get(s))
    }

    /// Each status with its count, in the order of [`TaskStatus::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (TaskStatus, usize)> + '_ {
        TaskStatus::ALL.into_iter().zip(self.0)
    }
}

/// One page of the inbox.
#[derive(Clone, Debug)]
pub struct InboxPage {
    /// What was asked.
    pub query: InboxQuery,
    /// The page's tasks, newest first.
    pub tasks: Vec<Arc<Task>>,
    /// How many tasks match, on every page.
    pub total: usize,
    /// Tasks per status, over all tasks (neither filtered nor searched).
    pub counts: Counts,
}

impl InboxPage {
    /// The number of the last page (1 when nothing matches).
    pub fn last_page(&self) -> usize {
        self.total.div_ceil(self.query.per_page).max(1)
    }

    /// Is the page asked for beyond the last one?
    pub fn past_end(&self) -> bool {
        self.query.page > self.last_page()
    }

    pub fn has_next(&self) -> bool {
        self.query.page < self.last_page()
    }

    pub fn has_previous(&self) -> bool {
        self.query.page > 1
    }
}

/// The inbox of one service: runs queries, and keeps the text index searches use.
#[derive(Default)]
pub struct Inbox {
    /// Locked for the length of one search; queries without a search never touch it.
    texts: Mutex<TextIndex>,
}

impl Inbox {
    /// Runs the query: the page's tasks, the number of matches and the counts.
    pub fn query(&self, registry: &Registry, query: &InboxQuery) -> InboxPage {
        let counts = Counts::of(registry);
        let mut ids = self.matching_ids(registry, query);
        let total = ids.len();
        let tasks = page_of(&mut ids, query.offset(), query.per_page)
            .iter()
            .filter_map(|id| registry.get(*id))
            .collect();
        InboxPage {
            query: query.clone(),
            tasks,
            total,
            counts,
        }
    }

    /// The ids of every task that matches, in no order.
    fn matching_ids(&self, registry: &Registry, query: &InboxQuery) -> Vec<TaskId> {
        if let Some(search) = query.search() {
            let mut texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
            return texts.search(registry, &search, query.status);
        }
        let mut ids = Vec::with_capacity(registry.len());
        match query.status {
            None => registry.for_each(|id, _| ids.push(id)),
            Some(status) => registry.for_each(|id, task| {
                if task.status == status {
                    ids.push(id);
                }
            }),
        }
        ids
    }
}

/// The ids on the page that starts at `start` and holds `len`, newest first. Ids are UUID v7s,
/// which sort by creation time. Reorders `ids`.
fn page_of(ids: &mut [TaskId], start: usize, len: usize) -> &[TaskId] {
    let end = start.saturating_add(len).min(ids.len());
    if start >= end {
        return &[];
    }
    // Newest first is descending order: sort by `Reverse(id)`.
    let mut ids = &mut ids[..];
    if end < ids.len() {
        ids.select_nth_unstable_by_key(end, |id| Reverse(*id));
        ids = &mut ids[..end];
    }
    if start > 0 {
        ids.select_nth_unstable_by_key(start, |id| Reverse(*id));
        ids = &mut ids[start..];
    }
    ids.sort_unstable_by_key(|id| Reverse(*id));
    ids
}

/// The task a reviewer should take next: of the tasks waiting for review, the oldest (by when it
/// was submitted: the last row of the inbox's "Waiting for review" list), other than `after`.
pub fn next_waiting(registry: &Registry, after: TaskId) -> Option<Arc<Task>> {
    let mut oldest: Option<TaskId> = None;
    registry.for_each(|id, task| {
        if id != after
            && task.status == TaskStatus::WaitingForReview
            && oldest.is_none_or(|o| id < o)
        {
            oldest = Some(id);
        }
    });
    oldest.and_then(|id| registry.get(id))
}

#[cfg(test)]
mod tests;
