//! What the generator checks on every stream it reads, kept pure so tests can feed it broken
//! sequences: a fast answer that drops, repeats or reorders events must not pass.

/// Ids on one stream: strictly growing, the data's `seq` equal to the `id:`, and, once `contiguous`
/// is armed (after the connect-time snapshot, on a stream without a filter), exactly one more
/// each time: on an unfiltered stream every event of every task passes, so a gap is a lost event.
#[derive(Debug, Default)]
pub struct StreamCheck {
    last: Option<u64>,
    contiguous: bool,
}

impl StreamCheck {
    /// From now on every id must follow the last one without a gap.
    pub fn arm_contiguous(&mut self) {
        self.contiguous = true;
    }

    pub fn see(&mut self, id: u64, seq: u64) -> Result<(), String> {
        if id != seq {
            return Err(format!("event id {id} carries seq {seq}"));
        }
        let last = self.last.replace(id);
        match last {
            Some(last) if id <= last => Err(format!("id {id} after {last}: not increasing")),
            Some(last) if self.contiguous && id != last + 1 => Err(format!(
                "id {id} after {last}: {} events missing",
                id - last - 1
            )),
            _ => Ok(()),
        }
    }
}

/// One task's status events against its lifecycle: `pending`, then `running` and
/// `waiting_for_review` for each attempt, each review followed by the next attempt's `running` or
/// by `completed`. Anything else (a gap, a repeat, an event out of order) is a violation.
/// Which lifecycle the tasks go through.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flow {
    /// hitl's own processor makes each attempt: `pending`, then `running` and
    /// `waiting_for_review` for each attempt.
    #[default]
    Simulated,
    /// The agent hands in each attempt: `waiting_for_review` at once, `pending` for the next
    /// attempt after changes are requested, `waiting_for_review` when it is handed in.
    Outside,
    /// Workers claim each attempt: `pending`, `running` (claimed), `waiting_for_review` (handed
    /// in), and `pending` again for the next attempt.
    Workers,
}

#[derive(Debug, Default)]
pub struct TaskCheck {
    pub flow: Flow,
    /// The last event seen, or what the first one must be.
    last: Option<(&'static str, u32)>,
    first: Option<(&'static str, u32)>,
    /// The first thing that went wrong, kept: later events cannot make it right.
    pub violation: Option<String>,
}

impl TaskCheck {
    /// A watcher that connects while the task waits for review of `attempt`: the connect-time
    /// snapshot must say so.
    pub fn from_review(attempt: u32) -> Self {
        Self {
            first: Some(("waiting_for_review", attempt)),
            ..Self::default()
        }
    }

    /// A check of `flow`'s lifecycle.
    #[cfg(test)]
    pub fn of(flow: Flow) -> Self {
        Self {
            flow,
            ..Self::default()
        }
    }

    fn allowed(&self, status: &str, attempt: u32) -> bool {
        let next = (status, attempt);
        match (self.flow, self.last) {
            (Flow::Outside, None) => next == self.first.unwrap_or(("waiting_for_review", 1)),
            (Flow::Outside, Some(("waiting_for_review", a))) => {
                next == ("pending", a + 1) || next == ("completed", a)
            }
            (Flow::Outside, Some(("pending", a))) => next == ("waiting_for_review", a),
            (Flow::Workers, Some(("pending", a))) => next == ("running", a),
            (Flow::Workers, Some(("waiting_for_review", a))) => {
                next == ("pending", a + 1) || next == ("completed", a)
            }
            (Flow::Outside, _) => false,
            (_, last) => self.allowed_simulated(last, next),
        }
    }

    fn allowed_simulated(&self, last: Option<(&str, u32)>, next: (&str, u32)) -> bool {
        match last {
            None => next == self.first.unwrap_or(("pending", 1)),
            Some(("pending", 1)) => next == ("running", 1),
            Some(("running", a)) => next == ("waiting_for_review", a),
            Some(("waiting_for_review", a)) => {
                next == ("running", a + 1) || next == ("completed", a)
            }
            Some(_) => false,
        }
    }

    /// Checks the next status event.
    pub fn see(&mut self, status: &str, attempt: u32) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        if !self.allowed(status, attempt) {
            let after = self
                .last
                .map_or("the start".into(), |(s, a)| format!("{s}({a})"));
            let v = format!("{status}({attempt}) after {after}");
            self.violation = Some(v.clone());
            return Err(v);
        }
        let known = ["pending", "running", "waiting_for_review", "completed"];
        let status = known.into_iter().find(|&k| k == status).expect("allowed");
        self.last = Some((status, attempt));
        Ok(())
    }

    /// Ended `completed` after `attempts` attempts, nothing wrong on the way.
    pub fn finished(&self, attempts: u32) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        match self.last {
            Some(("completed", a)) if a == attempts => Ok(()),
            last => Err(format!("ended at {last:?}, not completed({attempts})")),
        }
    }

    /// The last event seen: what the task is now, as far as this stream knows.
    pub fn latest(&self) -> Option<(&'static str, u32)> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: [(&str, u32); 6] = [
        ("pending", 1),
        ("running", 1),
        ("waiting_for_review", 1),
        ("running", 2),
        ("waiting_for_review", 2),
        ("completed", 2),
    ];

    fn feed(check: &mut TaskCheck, events: &[(&str, u32)]) -> Result<(), String> {
        events.iter().try_for_each(|&(s, a)| check.see(s, a))?;
        check.finished(2)
    }

    #[test]
    fn the_whole_lifecycle_in_order_passes() {
        assert_eq!(feed(&mut TaskCheck::default(), &GOOD), Ok(()));
    }

    #[test]
    fn a_missing_event_is_reported() {
        let mut gapped = GOOD.to_vec();
        gapped.remove(3); // running(2)
        let error = feed(&mut TaskCheck::default(), &gapped).unwrap_err();
        assert_eq!(error, "waiting_for_review(2) after waiting_for_review(1)");
    }

    #[test]
    fn a_missing_last_event_is_reported() {
        let error = feed(&mut TaskCheck::default(), &GOOD[..5]).unwrap_err();
        assert!(error.starts_with("ended at"), "{error}");
    }

    #[test]
    fn reordered_events_are_reported_and_stay_reported() {
        let mut reordered = GOOD.to_vec();
        reordered.swap(1, 2);
        let mut check = TaskCheck::default();
        assert!(feed(&mut check, &reordered).is_err());
        assert!(check.finished(2).is_err());
    }

    #[test]
    fn a_task_that_ends_early_is_reported() {
        let early = [GOOD[0], GOOD[1], GOOD[2], ("completed", 1)];
        assert!(feed(&mut TaskCheck::default(), &early).is_err());
    }

    #[test]
    fn a_repeated_event_is_reported() {
        let mut repeated = GOOD.to_vec();
        repeated.push(("completed", 2));
        assert!(feed(&mut TaskCheck::default(), &repeated).is_err());
    }

    #[test]
    fn a_watcher_from_a_review_expects_the_rest() {
        let mut check = TaskCheck::from_review(1);
        assert_eq!(feed(&mut check, &GOOD[2..]), Ok(()));
        assert_eq!(check.latest(), Some(("completed", 2)));
    }

    #[test]
    fn stream_ids_must_grow() {
        let mut ids = StreamCheck::default();
        assert_eq!(ids.see(3, 3), Ok(()));
        assert!(ids.see(3, 3).is_err(), "a repeat");
        assert!(ids.see(2, 2).is_err(), "going back");
        assert!(ids.see(9, 8).is_err(), "the data disagrees with the id");
    }

    #[test]
    fn once_armed_a_gap_in_ids_is_a_lost_event() {
        let mut ids = StreamCheck::default();
        assert_eq!(ids.see(1, 1), Ok(()));
        assert_eq!(ids.see(5, 5), Ok(()), "a snapshot may skip");
        ids.arm_contiguous();
        assert_eq!(ids.see(6, 6), Ok(()));
        assert_eq!(ids.see(8, 8), Err("id 8 after 6: 1 events missing".into()));
    }

    #[test]
    fn the_outside_and_worker_lifecycles_pass_and_the_simulated_one_does_not_fit_them() {
        let outside = [
            ("waiting_for_review", 1),
            ("pending", 2),
            ("waiting_for_review", 2),
            ("completed", 2),
        ];
        let workers = [
            ("pending", 1),
            ("running", 1),
            ("waiting_for_review", 1),
            ("pending", 2),
            ("running", 2),
            ("waiting_for_review", 2),
            ("completed", 2),
        ];
        let mut check = TaskCheck::of(Flow::Outside);
        assert_eq!(feed(&mut check, &outside), Ok(()));
        assert_eq!(check.finished(2), Ok(()));
        let mut check = TaskCheck::of(Flow::Workers);
        assert_eq!(feed(&mut check, &workers), Ok(()));
        assert_eq!(check.finished(2), Ok(()));
        // A worker's attempt handed in twice, or skipped, is caught.
        let mut check = TaskCheck::of(Flow::Workers);
        for &(status, attempt) in &workers[..3] {
            check.see(status, attempt).unwrap();
        }
        assert!(check.see("waiting_for_review", 1).is_err());
        let mut check = TaskCheck::of(Flow::Outside);
        assert!(feed(&mut check, &GOOD).is_err());
    }
}
