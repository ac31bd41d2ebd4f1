//! Work done outside hitl: attempts handed in by the agent, claims by workers (with leases),
//! a retry after processing failed, and a bounded wait on a task.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tokio::time::Instant;

use super::{Backing, Hitl};
use crate::{
    auth::{Actor, Role},
    input::AttemptPost,
    model::{
        audit::{AuditEvent, Digest},
        changes::{self, Refused},
        task::{Task, TaskId, TaskStatus, now},
    },
    registry::{Denied, TransitionError},
};

/// A claim handed to a worker: the token (only the worker has it), the task and the attempt
/// to make, with the earlier attempts and their reviewers' comments.
pub struct Claimed {
    pub token: String,
    pub task: Arc<Task>,
}

/// A claim token as a worker sends it back: `TASK.ATTEMPT.SECRET`. The task is named in it so
/// no index of tokens is needed (with a shared database, every instance can check any claim);
/// the task keeps only the token's SHA-256.
struct Token {
    task: TaskId,
}

impl Token {
    fn issue(task: TaskId, attempt: u32) -> String {
        format!(
            "{}.{attempt}.{}",
            task.0.simple(),
            uuid::Uuid::new_v4().simple()
        )
    }

    /// `None` for anything that cannot be a token.
    fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (task, attempt, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || secret.len() != 32 || attempt.parse::<u32>().is_err() {
            return None;
        }
        Some(Self {
            task: task.parse().ok()?,
        })
    }
}

impl Hitl {
    /// An attempt handed in from outside: by the task's submitter (anyone, without sign-in),
    /// or by the worker holding the attempt's claim.
    pub async fn post_attempt(
        &self,
        id: TaskId,
        post: AttemptPost,
        by: &Actor,
    ) -> Result<Arc<Task>, TransitionError> {
        let task = match (self.live(id).await, &post.claim) {
            (Ok(task), _) => task,
            // Finished and gone from memory: a claim on it is lost.
            (Err(TransitionError::Conflict { task, .. }), Some(_)) => {
                return Err(TransitionError::Conflict {
                    refused: Refused::ClaimLost,
                    task,
                });
            }
            (Err(error), _) => return Err(error),
        };
        let claim = match &post.claim {
            // A claim this task was never given is refused as a conflict, like a wrong
            // attempt: the route's subject is the task, which exists.
            Some(token) => match self.check_claim(task.clone(), token).await {
                Ok((_, sha256)) => Some(sha256),
                Err(TransitionError::NoSuchClaim) => {
                    return Err(TransitionError::Conflict {
                        refused: Refused::NotTheClaim,
                        task,
                    });
                }
                Err(error) => return Err(error),
            },
            None => {
                let own = by.anonymous || task.submitted_by.as_deref() == Some(&*by.name);
                if !own && task.processor.is_outside() {
                    return Err(TransitionError::Forbidden(Denied::ReviseOthers));
                }
                None
            }
        };
        let (attempt, output) = (post.attempt, post.output);
        let task = self
            .registry
            .apply(id, by.recorded(), false, move |task| {
                changes::post_attempt(task, attempt, output, claim.as_ref())
            })
            .await?;
        self.saved(task).await
    }

    /// Claims the oldest outside attempt nobody holds, waiting up to `wait` for one to come;
    /// `None` if none came (or the server is stopping).
    pub async fn claim_work(
        &self,
        wait: Duration,
        lease: Duration,
        by: &Actor,
    ) -> Result<Option<Claimed>, TransitionError> {
        let until = Instant::now() + wait;
        let mut head = self.registry.events.watch_head();
        loop {
            head.borrow_and_update();
            if let Some(claimed) = self.claim_one(lease, by).await? {
                return Ok(Some(claimed));
            }
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        return Ok(None);
                    }
                }
                () = tokio::time::sleep_until(until) => return Ok(None),
                () = self.shutdown.cancelled() => return Ok(None),
            }
        }
    }

    /// Claims the oldest claimable attempt, if any: another worker (or instance) may take one
    /// first, so the next oldest is tried then.
    async fn claim_one(
        &self,
        lease: Duration,
        by: &Actor,
    ) -> Result<Option<Claimed>, TransitionError> {
        if self.registry.claimable() == 0 {
            return Ok(None);
        }
        let mut candidates: Vec<(OffsetDateTime, TaskId, u32)> = Vec::new();
        self.registry.for_each(|id, task| {
            if changes::claimable(task) {
                candidates.push((task.updated_at, id, task.attempt));
            }
        });
        candidates.sort_unstable();
        for (_, id, attempt) in candidates {
            let token = Token::issue(id, attempt);
            let sha256 = Digest::of_text(&token);
            let expires = now() + lease;
            let who = by.recorded();
            let claimed = self
                .registry
                .apply(id, by.recorded(), false, move |task| {
                    changes::claim(task, attempt, sha256, who, expires)
                })
                .await;
            match claimed {
                Ok(task) => {
                    let task = self.saved(task).await?;
                    return Ok(Some(Claimed { token, task }));
                }
                // Taken (or cancelled) meanwhile: the next one.
                Err(TransitionError::Conflict { .. } | TransitionError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }

    /// The task a claim token names, and the token's hash if the claim is one this task was
    /// ever given (else the claim is unknown: 404).
    async fn claimed_task(&self, token: &str) -> Result<(Arc<Task>, Digest), TransitionError> {
        let token_id = Token::parse(token).ok_or(TransitionError::NoSuchClaim)?;
        let task = match self.live(token_id.task).await {
            Ok(task) => task,
            Err(TransitionError::NotFound(_)) => return Err(TransitionError::NoSuchClaim),
            Err(TransitionError::Conflict { task, .. }) => {
                // Finished and gone from memory: whatever claim it was is lost.
                self.known_claim(&task, token)?;
                return Err(TransitionError::Conflict {
                    refused: Refused::ClaimLost,
                    task,
                });
            }
            Err(error) => return Err(error),
        };
        self.check_claim(task, token).await
    }

    /// `task` (as it is now) and the token's hash, if the task was ever given this claim. With a
    /// shared database, a claim made on another instance a moment ago may not have reached this
    /// replica yet: it is looked for again once the replica has caught up.
    async fn check_claim(
        &self,
        task: Arc<Task>,
        token: &str,
    ) -> Result<(Arc<Task>, Digest), TransitionError> {
        match (self.known_claim(&task, token), &self.backing) {
            (Ok(sha256), _) => Ok((task, sha256)),
            (Err(_), Backing::Shared(shared)) => {
                shared.catch_up().await;
                let task = self.registry.get(task.id).unwrap_or(task);
                let sha256 = self.known_claim(&task, token)?;
                Ok((task, sha256))
            }
            (Err(error), _) => Err(error),
        }
    }

    /// The hash of `token` if `task` was ever given that claim.
    fn known_claim(&self, task: &Task, token: &str) -> Result<Digest, TransitionError> {
        let sha256 = Digest::of_text(token);
        let current = task
            .claim
            .as_ref()
            .is_some_and(|c| c.token_sha256 == sha256);
        let earlier = || {
            task.history.iter().any(|entry| {
                matches!(&entry.event, AuditEvent::Claimed { token_sha256, .. } if *token_sha256 == sha256)
            })
        };
        if current || earlier() {
            Ok(sha256)
        } else {
            Err(TransitionError::NoSuchClaim)
        }
    }

    /// The claim's lease runs `lease` from now.
    pub async fn renew_claim(
        &self,
        token: &str,
        lease: Duration,
    ) -> Result<Arc<Task>, TransitionError> {
        let (task, sha256) = self.claimed_task(token).await?;
        let expires = now() + lease;
        let task = self
            .registry
            .apply(task.id, None, false, move |task| {
                changes::renew(task, &sha256, expires)
            })
            .await?;
        self.saved(task).await
    }

    /// A progress report of the claimed attempt, sent as a `progress` event.
    pub async fn claim_progress(&self, token: &str, text: Arc<str>) -> Result<(), TransitionError> {
        let (task, sha256) = self.claimed_task(token).await?;
        if let Err(refused) = changes::holds(&task, &sha256) {
            return Err(TransitionError::Conflict { refused, task });
        }
        self.registry
            .progress(task.id, task.attempt, text, Some(sha256))
    }

    /// The worker gives its claimed attempt up: for another worker (`retry`, while
    /// `--max-retries` allows), or for good (the task fails: processing failed).
    pub async fn give_up(
        &self,
        token: &str,
        error: Arc<str>,
        retry: bool,
        by: &Actor,
    ) -> Result<Arc<Task>, TransitionError> {
        let (task, sha256) = self.claimed_task(token).await?;
        let max_retries = self.max_retries;
        let task = self
            .registry
            .apply(task.id, by.recorded(), false, move |task| {
                changes::give_up(task, &sha256, error, retry, max_retries)
            })
            .await?;
        self.saved(task).await
    }

    /// Starts again a task whose processing failed (reviewers only, with sign-in).
    pub async fn retry(&self, id: TaskId, by: &Actor) -> Result<Arc<Task>, TransitionError> {
        self.live(id).await?;
        if by.role != Role::Reviewer {
            return Err(TransitionError::Forbidden(Denied::RetryAsSubmitter));
        }
        let task = self
            .registry
            .apply(id, by.recorded(), false, changes::retry)
            .await?;
        if !matches!(self.backing, Backing::Shared(_))
            && let Some(handle) = self.registry.handle(id)
        {
            // Its workflow ended with the failure; it runs again from the attempt. (With a
            // shared database, whichever instance takes the task's work over runs it.)
            self.flow.resume(handle);
        }
        self.saved(task).await
    }

    /// The start of a bounded wait: the task, and whether it is already out of `during`
    /// (`Ok`), or what is left to wait for (`Err`), which [`Self::finish_wait`] waits out. Split
    /// so the web layer can park the rest of a wait outside its middleware, which would
    /// otherwise hold its room for the whole wait (BENCHMARKS.md, memory per wait).
    pub async fn begin_wait(
        &self,
        id: TaskId,
        wait: Duration,
        during: Option<Vec<TaskStatus>>,
    ) -> Result<Result<(Arc<Task>, bool), Waiting>, TransitionError> {
        // Boxed: its future is large (2 KiB) and the caller's would carry its room.
        let task = Box::pin(self.settled(id))
            .await
            .ok_or(TransitionError::NotFound(id))?;
        let during = during.unwrap_or_else(|| vec![task.status]);
        if !during.contains(&task.status) {
            return Ok(Ok((task, true)));
        }
        if wait.is_zero() || self.registry.get(id).is_none() {
            // Nothing to wait for, or a finished task gone from memory: it changes no more.
            return Ok(Ok((task, false)));
        }
        Ok(Err(Waiting {
            task,
            during,
            until: Instant::now() + wait,
        }))
    }

    /// Waits out a wait [`Self::begin_wait`] started: the task once its status leaves
    /// `during`, or as it is when the time is up or the server stops; true if it changed.
    pub async fn finish_wait(&self, waiting: Waiting) -> (Arc<Task>, bool) {
        let Waiting {
            task: mut last,
            during,
            until,
        } = waiting;
        let id = last.id;
        let Some(mut changes) = self.registry.watch(id) else {
            return (last, false);
        };
        loop {
            // Looked at after subscribing, so a change in between is not missed.
            let Some(task) = self.registry.get(id) else {
                return (last, false);
            };
            if !during.contains(&task.status) {
                Box::pin(self.settle(Some(task.seq))).await;
                return (task, true);
            }
            last = task;
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return (last, false);
                    }
                }
                () = tokio::time::sleep_until(until) => return (last, false),
                () = self.shutdown.cancelled() => return (last, false),
            }
        }
    }
}

/// A wait under way: the task as it was when it began, the statuses it waits through, and
/// when its time is up.
#[derive(Clone, Debug)]
pub struct Waiting {
    pub task: Arc<Task>,
    pub during: Vec<TaskStatus>,
    pub until: Instant,
}
