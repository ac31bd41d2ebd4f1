//! What one open home page shows, as its event stream follows it: which rows are on screen, in
//! which order, so each change can be placed without re-running the query.
//!
//! The rules, chosen so that nothing moves under a reader's eyes except on page 1:
//! - A task whose row is on screen is updated in place, even when it no longer matches the
//!   filter (a task approved from the "Waiting for review" list stays, marked completed).
//! - On page 1, a task that comes to match (a new task, or one that reaches the filtered status)
//!   is inserted where its id puts it, if that is within the page; the last row then drops off so
//!   the page keeps its size.
//! - On any other page, or past page 1's end, nothing moves: the page is told in words.

use crate::model::task::{Task, TaskId, TaskStatus};

use super::{InboxPage, InboxQuery, Search};

/// Where a change to a task goes on the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Its row is on screen: update it where it is.
    InPlace,
    /// Insert its row before `before` (at the end of the list when `None`), and remove the row
    /// of `drop`, which no longer fits on the page.
    Insert {
        before: Option<TaskId>,
        drop: Option<TaskId>,
    },
    /// It matches what the page lists but belongs on another page; `new` when it was just
    /// submitted (so it is at the top of page 1).
    Elsewhere { new: bool },
    /// It does not match what the page lists.
    Unseen,
}

/// The rows one page shows, newest first, and what it filters by.
#[derive(Clone, Debug)]
pub struct Screen {
    view: InboxQuery,
    search: Option<Search>,
    rows: Vec<TaskId>,
}

impl Screen {
    /// The screen of a page as the query answered it.
    pub fn new(page: &InboxPage) -> Self {
        Self {
            search: page.query.search(),
            view: page.query.clone(),
            rows: page.tasks.iter().map(|task| task.id).collect(),
        }
    }

    /// What the page lists.
    pub fn view(&self) -> &InboxQuery {
        &self.view
    }

    /// How many rows are on screen.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Does `task` belong in what the page lists?
    pub fn matches(&self, task: &Task) -> bool {
        self.view.status.is_none_or(|s| s == task.status)
            && self.search.as_ref().is_none_or(|s| s.matches(task))
    }

    /// Where the change to `task` goes, and the screen after it.
    ///
    /// A screen is read when the page's stream starts, a moment after the page was rendered,
    /// and the stream replays from the page's own event. So a task's first event may find its
    /// row already on the screen: the page cannot have that row, so it is inserted (a page that
    /// does have it ignores the insert, since the row carries the same `data-seq`).
    pub fn place(&mut self, task: &Task) -> Placement {
        let new = is_new(task);
        if let Some(at) = self.rows.iter().position(|id| *id == task.id) {
            if new {
                let before = self.rows.get(at + 1).copied();
                return Placement::Insert { before, drop: None };
            }
            return Placement::InPlace;
        }
        if !self.matches(task) {
            return Placement::Unseen;
        }
        // Rows are newest first: the new row goes before the first older one.
        let index = self.rows.partition_point(|id| *id > task.id);
        if self.view.page != 1 || index >= self.view.per_page {
            return Placement::Elsewhere { new };
        }
        let before = self.rows.get(index).copied();
        self.rows.insert(index, task.id);
        let drop = if self.rows.len() > self.view.per_page {
            self.rows.pop()
        } else {
            None
        };
        Placement::Insert { before, drop }
    }
}

/// Is this the first event of a task just submitted?
pub fn is_new(task: &Task) -> bool {
    task.status == TaskStatus::Pending && task.attempt == 1 && task.attempts.is_empty()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::{inbox::Counts, model::task::now};

    fn task(n: u128, status: TaskStatus) -> Task {
        let mut task = Task::new(
            TaskId(Uuid::from_u128(n)),
            format!("task {n}").into(),
            3,
            now(),
        );
        task.status = status;
        task
    }

    /// A screen over tasks `ids` (newest first), `per_page` to a page.
    fn screen(page: usize, per_page: usize, status: Option<TaskStatus>, ids: &[u128]) -> Screen {
        let waiting = TaskStatus::WaitingForReview;
        Screen::new(&InboxPage {
            query: InboxQuery {
                status,
                page,
                per_page,
                ..InboxQuery::default()
            },
            tasks: ids.iter().map(|n| Arc::new(task(*n, waiting))).collect(),
            total: ids.len(),
            counts: Counts([0; TaskStatus::ALL.len()]),
        })
    }

    fn id(n: u128) -> TaskId {
        TaskId(Uuid::from_u128(n))
    }

    #[test]
    fn a_row_on_screen_changes_in_place_even_when_it_leaves_the_filter() {
        let mut screen = screen(1, 3, Some(TaskStatus::WaitingForReview), &[9, 5]);
        let done = task(5, TaskStatus::Completed);
        assert_eq!(screen.place(&done), Placement::InPlace);
        assert_eq!(screen.rows(), 2);
    }

    #[test]
    fn page_one_takes_a_matching_task_where_its_id_puts_it_and_keeps_its_size() {
        let mut screen = screen(1, 3, None, &[9, 7, 5]);
        assert_eq!(
            screen.place(&task(10, TaskStatus::Pending)),
            Placement::Insert {
                before: Some(id(9)),
                drop: Some(id(5))
            }
        );
        assert_eq!(
            screen.place(&task(8, TaskStatus::WaitingForReview)),
            Placement::Insert {
                before: Some(id(7)),
                drop: Some(id(7))
            },
            "inserted, then the oldest of four falls off"
        );
        assert_eq!(screen.rows, [id(10), id(9), id(8)]);
        assert_eq!(
            screen.place(&task(2, TaskStatus::Running)),
            Placement::Elsewhere { new: false },
            "older than the whole page"
        );
    }

    #[test]
    fn a_short_page_one_grows_at_its_end() {
        let mut screen = screen(1, 3, None, &[9]);
        assert_eq!(
            screen.place(&task(4, TaskStatus::Failed)),
            Placement::Insert {
                before: None,
                drop: None
            }
        );
    }

    #[test]
    fn a_task_submitted_before_the_screen_was_read_is_still_inserted() {
        let mut screen = screen(1, 3, None, &[9, 7, 5]);
        assert_eq!(
            screen.place(&task(7, TaskStatus::Pending)),
            Placement::Insert {
                before: Some(id(5)),
                drop: None
            }
        );
        assert_eq!(
            screen.place(&task(7, TaskStatus::Running)),
            Placement::InPlace
        );
    }

    #[test]
    fn other_pages_never_move() {
        let mut screen = screen(3, 3, None, &[9, 7, 5]);
        assert_eq!(
            screen.place(&task(10, TaskStatus::Pending)),
            Placement::Elsewhere { new: true }
        );
        assert_eq!(screen.rows(), 3);
    }

    #[test]
    fn tasks_outside_the_filter_are_unseen() {
        let mut screen = screen(1, 3, Some(TaskStatus::WaitingForReview), &[9]);
        assert_eq!(
            screen.place(&task(10, TaskStatus::Pending)),
            Placement::Unseen
        );
    }
}
