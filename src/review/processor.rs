//! What does the work of an attempt. Today: a simulated processor that takes its time and
//! writes a deterministic draft showing every piece of feedback it was given.

use std::{fmt::Write as _, future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{
    engine::NodeError,
    model::task::{TaskId, excerpt},
};

/// An earlier attempt and what the reviewer said of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorAttempt {
    pub attempt: u32,
    pub output: Arc<str>,
    pub comment: Option<Arc<str>>,
}

/// Everything a processor is given for one attempt.
#[derive(Clone, Debug)]
pub struct ProcessRequest {
    pub task_id: TaskId,
    pub input: Arc<str>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub history: Vec<PriorAttempt>,
}

pub type ProcessFuture<'a> = Pin<Box<dyn Future<Output = Result<String, NodeError>> + Send + 'a>>;

/// Turns a request into an output. It may report partial text through `progress` as it goes.
pub trait Processor: Send + Sync + 'static {
    fn process<'a>(
        &'a self,
        request: &'a ProcessRequest,
        progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a>;
}

/// Waits `delay` (without holding a thread), then writes a draft derived from the input, the
/// attempt number and every earlier comment.
pub struct SimulatedProcessor {
    pub delay: Duration,
}

impl Processor for SimulatedProcessor {
    fn process<'a>(
        &'a self,
        request: &'a ProcessRequest,
        progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move {
            let output = simulate(request);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay / 2).await;
                let first_line = output.lines().next().unwrap_or_default();
                progress(format!("{first_line}\n…").into());
                tokio::time::sleep(self.delay - self.delay / 2).await;
            }
            Ok(output)
        })
    }
}

/// The simulated output: plain, deterministic, and visibly shaped by the feedback.
pub fn simulate(request: &ProcessRequest) -> String {
    let input = request.input.trim();
    let words = input.split_whitespace().count();
    let mut out = format!(
        "Draft {} of {} for: {}\n",
        request.attempt,
        request.max_attempts,
        excerpt(input, 160)
    );
    let _ = writeln!(
        out,
        "Summary: {words} word{} and {} characters; it begins \"{}\".",
        if words == 1 { "" } else { "s" },
        input.chars().count(),
        excerpt(input, 40),
    );
    if request.history.is_empty() {
        out.push_str("No reviewer feedback yet.");
    } else {
        out.push_str("Revised to address the reviewer's feedback:");
        for prior in &request.history {
            let comment = prior
                .comment
                .as_deref()
                .unwrap_or("(changes requested, no comment)");
            let _ = write!(out, "\n- on draft {}: {comment}", prior.attempt);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attempt: u32, comments: &[&str]) -> ProcessRequest {
        ProcessRequest {
            task_id: TaskId::new(),
            input: "Write a haiku about rust".into(),
            attempt,
            max_attempts: 3,
            history: comments
                .iter()
                .enumerate()
                .map(|(i, c)| PriorAttempt {
                    attempt: i as u32 + 1,
                    output: "earlier".into(),
                    comment: Some((*c).into()),
                })
                .collect(),
        }
    }

    #[test]
    fn output_shows_input_attempt_and_every_comment() {
        let first = simulate(&request(1, &[]));
        assert!(first.starts_with("Draft 1 of 3 for: Write a haiku about rust\n"));
        assert!(first.contains("No reviewer feedback yet."));

        let third = simulate(&request(3, &["shorter please", "mention ferris"]));
        assert!(third.starts_with("Draft 3 of 3"));
        assert!(third.contains("- on draft 1: shorter please"));
        assert!(third.contains("- on draft 2: mention ferris"));
        assert_eq!(
            third,
            simulate(&request(3, &["shorter please", "mention ferris"]))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waits_its_delay_and_reports_progress_halfway() {
        let processor = SimulatedProcessor {
            delay: Duration::from_millis(1500),
        };
        let seen = std::sync::Mutex::new(Vec::new());
        let report = |text: Arc<str>| seen.lock().unwrap().push(text);
        let started = tokio::time::Instant::now();
        let out = processor.process(&request(1, &[]), &report).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("Draft 1 of 3"));
        assert!(out.starts_with(&*seen[0].trim_end_matches('…').to_owned()));
    }
}
