//! The inbox's text search: a case-insensitive substring over everything a reviewer may remember
//! of a task (its input, current output, final result, and every attempt's output, edited output
//! and comment).
//!
//! Case is folded by hand, ASCII only, because that is what keeps the search fast: folding a byte
//! is one table-free instruction, folded text can be searched with `memchr::memmem` (vectorised),
//! and a folded copy of every task can be kept in one buffer. The limit: `report` finds `REPORT`,
//! `café` finds `CAFé`, but `café` does not find `CAFÉ`. Other text matches byte for byte, so a
//! search in any script finds exactly what was typed, and nothing can panic on a character
//! boundary (a UTF-8 needle only ever matches whole characters).
//!
//! Why an index at all: reading 100,000 tasks' texts where they lie in the heap costs a cache
//! miss per text, about 100 ms in all; the same bytes in one buffer take a few milliseconds (see
//! `BENCHMARKS.md`). [`TextIndex`] is that buffer, brought up to date before each search.

use std::sync::Arc;

use memchr::memmem::Finder;

use crate::{
    model::task::{Task, TaskId, TaskStatus},
    registry::Registry,
};

/// Ends every field in the index. Never part of UTF-8, so never part of a needle: no match can
/// run from one field into the next.
const SEPARATOR: u8 = 0xFF;

/// The texts of a task that a search looks in, each once: the output under review is also the
/// last attempt's output and, once approved, usually the final result, so a text equal to one
/// already given is left out (a third less to search in a typical inbox).
fn texts(task: &Task) -> impl Iterator<Item = &str> {
    let attempts = task.attempts.iter().flat_map(|attempt| {
        [
            Some(&attempt.output),
            attempt.edited_output.as_ref(),
            attempt.comment.as_ref(),
        ]
    });
    let mut seen: Vec<&Arc<str>> = Vec::new();
    [
        Some(&task.input),
        task.output.as_ref(),
        task.final_result.as_ref(),
    ]
    .into_iter()
    .chain(attempts)
    .flatten()
    .filter(move |text| {
        let repeat = seen
            .iter()
            .any(|other| Arc::ptr_eq(other, text) || other == text);
        seen.push(text);
        !repeat
    })
    .map(|text| &**text)
}

/// Appends `text` with ASCII letters in lower case.
fn fold_into(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
}

/// A compiled search for one text.
#[derive(Clone, Debug)]
pub struct Search {
    finder: Finder<'static>,
}

impl Search {
    /// A search for `needle`; `None` for an empty one (which is no search).
    pub fn new(needle: &str) -> Option<Self> {
        if needle.is_empty() {
            return None;
        }
        let mut folded = Vec::with_capacity(needle.len());
        fold_into(&mut folded, needle);
        Some(Self {
            finder: Finder::new(&folded).into_owned(),
        })
    }

    /// Is the text somewhere in `haystack`?
    pub fn finds(&self, haystack: &str) -> bool {
        let mut folded = Vec::with_capacity(haystack.len());
        fold_into(&mut folded, haystack);
        self.finder.find(&folded).is_some()
    }

    /// Is the text in any of the task's texts? For one task at a time (a live update); many
    /// tasks are searched through a [`TextIndex`].
    pub fn matches(&self, task: &Task) -> bool {
        texts(task).any(|text| self.finds(text))
    }
}

/// One indexed version of a task: where its folded texts lie in the buffer.
#[derive(Clone, Copy)]
struct Segment {
    start: usize,
    end: usize,
    id: TaskId,
    status: TaskStatus,
    /// False once a newer version of the task is indexed.
    live: bool,
}

/// Where a task's live segment is, and the version it was made from (held, so that pointer
/// equality with the registry's version proves the segment is current).
struct Indexed {
    segment: usize,
    version: Arc<Task>,
}

/// A folded copy of every task's texts in one buffer, segment after segment. A changed task is
/// appended again and its old segment left dead; once dead bytes outweigh live ones the buffer
/// is rebuilt, so it stays under twice the live text.
#[derive(Default)]
pub struct TextIndex {
    text: Vec<u8>,
    /// In buffer order, so a match's segment is found by binary search.
    segments: Vec<Segment>,
    /// `foldhash`: the map is looked up once per task before each search, and SipHash made
    /// that lookup most of a search's time.
    tasks: foldhash::HashMap<TaskId, Indexed>,
    dead_bytes: usize,
    /// Every change numbered up to this was indexed; `None` before the first search.
    watermark: Option<u64>,
}

impl TextIndex {
    /// The ids of the tasks (in `status`, if given) whose texts contain the search, in no order.
    pub fn search(
        &mut self,
        registry: &Registry,
        search: &Search,
        status: Option<TaskStatus>,
    ) -> Vec<TaskId> {
        self.catch_up(registry);
        let mut found = Vec::new();
        let (mut from, mut segment) = (0, 0);
        while let Some(at) = search.finder.find(&self.text[from..]) {
            segment = self.segment_at(segment, from + at);
            let Segment {
                end,
                id,
                status: s,
                live,
                ..
            } = self.segments[segment];
            if live && status.is_none_or(|status| status == s) {
                found.push(id);
            }
            // One match is enough: go on from the next task's texts.
            from = end;
        }
        found
    }

    /// The segment that holds byte `at`, looking forward from segment `from` (which starts at or
    /// before `at`): galloping, since the next match is most often a few segments on.
    fn segment_at(&self, from: usize, at: usize) -> usize {
        let (mut low, mut step) = (from, 1);
        while self.segments.get(low + step).is_some_and(|s| s.start <= at) {
            low += step;
            step *= 2;
        }
        let high = (low + step).min(self.segments.len());
        low + self.segments[low..high].partition_point(|s| s.start <= at) - 1
    }

    /// Indexes every task that is new or changed since the last search. A task's version carries
    /// the sequence number of its latest change; versions no newer than the last catch-up's
    /// watermark were indexed then, so only newer ones are looked up. A task put back without an
    /// event ([`Registry::restore`], at start-up) shows up as a count that does not add up, and
    /// then every task is looked at.
    fn catch_up(&mut self, registry: &Registry) {
        // Read before the scan: a change numbered up to here is in the map by the time the scan
        // reaches its shard (publishing and storing happen under the same shard lock).
        let watermark = registry.events.issued();
        if self.watermark == Some(watermark) && registry.len() == self.tasks.len() {
            return;
        }
        let mut seen = self.index_changed(registry, self.watermark);
        if seen != self.tasks.len() {
            seen = self.index_changed(registry, None);
        }
        if seen < self.tasks.len() {
            self.forget_gone(registry);
        }
        self.watermark = (seen == self.tasks.len()).then_some(watermark);
        if self.dead_bytes > self.text.len() / 2 {
            self.compact();
        }
    }

    /// Indexes the tasks changed after `since` (every task not indexed as it is, if `None`);
    /// returns how many tasks the registry has.
    fn index_changed(&mut self, registry: &Registry, since: Option<u64>) -> usize {
        let (mut changed, mut seen) = (Vec::new(), 0);
        registry.for_each(|id, task| {
            seen += 1;
            if since.is_some_and(|since| task.seq <= since) {
                return;
            }
            match self.tasks.get(&id) {
                Some(indexed) if Arc::ptr_eq(&indexed.version, task) => {}
                _ => changed.push(task.clone()),
            }
        });
        for task in changed {
            self.add(task);
        }
        seen
    }

    /// Drops the tasks that have left the registry (`--keep-finished`): their text becomes dead
    /// bytes, which compaction reclaims.
    fn forget_gone(&mut self, registry: &Registry) {
        let (segments, dead_bytes) = (&mut self.segments, &mut self.dead_bytes);
        self.tasks.retain(|id, indexed| {
            let kept = registry.get(*id).is_some();
            if !kept {
                let gone = &mut segments[indexed.segment];
                gone.live = false;
                *dead_bytes += gone.end - gone.start;
            }
            kept
        });
    }

    fn add(&mut self, task: Arc<Task>) {
        let start = self.text.len();
        for text in texts(&task) {
            fold_into(&mut self.text, text);
            self.text.push(SEPARATOR);
        }
        let segment = self.segments.len();
        self.segments.push(Segment {
            start,
            end: self.text.len(),
            id: task.id,
            status: task.status,
            live: true,
        });
        let indexed = Indexed {
            segment,
            version: task,
        };
        if let Some(old) = self.tasks.insert(indexed.version.id, indexed) {
            let old = &mut self.segments[old.segment];
            old.live = false;
            self.dead_bytes += old.end - old.start;
        }
    }

    /// How much of the buffer is dead text.
    #[cfg(test)]
    pub fn dead_fraction(&self) -> f64 {
        self.dead_bytes as f64 / self.text.len().max(1) as f64
    }

    /// Copies the live segments into a new buffer, dropping the dead ones.
    fn compact(&mut self) {
        let live = self.text.len() - self.dead_bytes;
        let mut text = Vec::with_capacity(live + live / 4);
        let mut segments = Vec::with_capacity(self.tasks.len());
        for segment in self.segments.iter().filter(|s| s.live) {
            let start = text.len();
            text.extend_from_slice(&self.text[segment.start..segment.end]);
            if let Some(indexed) = self.tasks.get_mut(&segment.id) {
                indexed.segment = segments.len();
            }
            segments.push(Segment {
                start,
                end: text.len(),
                ..*segment
            });
        }
        self.text = text;
        self.segments = segments;
        self.dead_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::{AttemptRecord, Decision, now};

    fn search(needle: &str) -> Search {
        Search::new(needle).expect("a search")
    }

    #[test]
    fn ascii_letters_match_in_any_case() {
        assert!(search("report").finds("The Quarterly REPORT"));
        assert!(search("QUARTERLY rep").finds("the quarterly report"));
        assert!(!search("reports").finds("one report"));
        assert!(Search::new("").is_none());
    }

    #[test]
    fn other_text_matches_byte_for_byte_and_never_panics() {
        assert!(search("café").finds("Un CAFé noir"));
        assert!(
            !search("café").finds("UN CAFÉ NOIR"),
            "only ASCII is folded"
        );
        assert!(search("日本").finds("日本語のテキスト"));
        assert!(search("🦀").finds("a 🦀 crab"));
    }

    #[test]
    fn every_text_of_a_task_is_searched() {
        let mut task = Task::new(TaskId::new(), "Input words".into(), 3, now());
        task.output = Some("Current output".into());
        task.final_result = Some("Final result".into());
        task.attempts.push(AttemptRecord {
            attempt: 1,
            output: "Old draft".into(),
            decision: Some(Decision::Rejected),
            comment: Some("Mention ferris".into()),
            edited_output: Some("Edited draft".into()),
            decided_at: None,
            decided_by: None,
            timed_out: false,
            seq: 0,
        });
        for needle in ["input", "current", "final", "old draft", "FERRIS", "edited"] {
            assert!(search(needle).matches(&task), "{needle}");
        }
        assert!(!search("nowhere").matches(&task));
        assert!(
            !search("words current").matches(&task),
            "no match across two texts"
        );
    }
}
