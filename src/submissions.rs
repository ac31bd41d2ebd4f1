//! Submissions made once. A client that sends the same submission twice under one key (a
//! double-clicked form without script, an API client retrying after a lost answer) gets the
//! task the first one made instead of a second task.
//!
//! Written here rather than taken from a cache crate: it is a map of once-cells pruned by age
//! and count, and what it must get right (a repeat that arrives while the first is still being
//! submitted waits for it, and a submission that failed does not count) is tokio's `OnceCell`.
//!
//! With a store, the map is only the fast path: a key is written with the task it made, in the
//! same commit ([`StoredKey`] on the task), and a key the map does not hold is looked up there,
//! so a retry after a crash and a restart, or one sent to another instance, still finds its
//! task. The store forgets keys after [`KEEP`] too.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use tokio::{sync::OnceCell, time::Instant};

pub use crate::model::task::StoredKey;
use crate::{
    input::NewTask,
    model::task::{Task, TaskId},
    registry::TransitionError,
};

/// How long a key is remembered.
pub const KEEP: Duration = StoredKey::KEEP;
/// The most keys remembered; past it the oldest of whoever holds the most are forgotten first.
pub const MOST: usize = 10_000;
/// The longest key taken.
pub const MAX_KEY_LEN: usize = 255;

/// Where a key came from, which decides what a reuse means.
#[derive(Clone, Debug)]
pub enum SubmitKey {
    /// An API client's `Idempotency-Key`: the same key with another submission is a mistake,
    /// refused.
    Header(Box<str>),
    /// The key a submit form carries: the same form sent again with other text (after going
    /// back and editing it) is a new submission.
    Form(Box<str>),
}

impl SubmitKey {
    /// The key, if it is one: 1 to 255 visible ASCII characters.
    pub fn check(key: &str) -> Result<&str, &'static str> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1 to 255 visible ASCII characters (a UUID, say)");
        }
        Ok(key)
    }
}

/// What a keyed submission came to.
#[derive(Debug)]
pub enum Submitted {
    /// This request made the task.
    Fresh(Arc<Task>),
    /// An earlier request with the same key made it.
    Repeated(TaskId),
}

/// (who, key, for a form key the submission's digest)
type Key = (Arc<str>, Box<str>, Option<[u8; 32]>);

struct Slot {
    at: Instant,
    digest: [u8; 32],
    task: OnceCell<TaskId>,
}

pub struct SubmitKeys {
    slots: DashMap<Key, Arc<Slot>>,
    keep: Duration,
    most: usize,
}

impl Default for SubmitKeys {
    fn default() -> Self {
        Self::new(KEEP, MOST)
    }
}

impl SubmitKeys {
    pub fn new(keep: Duration, most: usize) -> Self {
        Self {
            slots: DashMap::new(),
            keep,
            most: most.max(1),
        }
    }

    /// Runs `submit` unless a submission by `who` under `key` has run, or is running (then it
    /// waits for it); a submission that failed leaves the key free, for this submission or
    /// another. A key this map does not hold is first looked up with `stored` (the store's
    /// keys); `submit` is given the key to write with its task.
    pub async fn once<S, SFut, F, Fut>(
        &self,
        who: &Arc<str>,
        key: SubmitKey,
        new: &NewTask,
        stored: S,
        submit: F,
    ) -> Result<Submitted, TransitionError>
    where
        S: FnOnce(Arc<StoredKey>) -> SFut,
        SFut: Future<Output = Result<Option<(TaskId, Box<str>)>, TransitionError>>,
        F: FnOnce(Arc<StoredKey>) -> Fut,
        Fut: Future<Output = Result<Arc<Task>, TransitionError>>,
    {
        let digest = digest(new);
        let hex = hex::encode(digest);
        let (key, scope) = match key {
            SubmitKey::Header(key) => ((who.clone(), key, None), ""),
            SubmitKey::Form(key) => ((who.clone(), key, Some(digest)), hex.as_str()),
        };
        let record = Arc::new(StoredKey {
            owner: who.clone(),
            key: key.1.clone(),
            scope: scope.into(),
            digest: hex.as_str().into(),
        });
        let slot = self.slot(&key, digest)?;
        let mut fresh = None;
        let made_here = &mut fresh;
        let bound = slot
            .task
            .get_or_try_init(|| async move {
                // The same key with another submission (header keys only: a form key's scope
                // is its digest) is refused, wherever the first one was made.
                let bound = |id: TaskId, made: &str| {
                    if made == &*record.digest {
                        Ok(id)
                    } else {
                        Err(TransitionError::KeyReused)
                    }
                };
                if let Some((id, made)) = stored(record.clone()).await? {
                    return bound(id, &made);
                }
                match submit(record.clone()).await {
                    Ok(task) => {
                        let id = task.id;
                        *made_here = Some(task);
                        Ok(id)
                    }
                    Err(TransitionError::KeyBound(id, made)) => bound(id, &made),
                    Err(error) => Err(error),
                }
            })
            .await;
        let id = match bound {
            Ok(id) => *id,
            Err(error) => {
                // Unless a repeat is waiting on it (it takes its turn), the slot goes.
                self.slots.remove_if(&key, |_, held| {
                    Arc::ptr_eq(held, &slot) && Arc::strong_count(held) == 2
                });
                return Err(error);
            }
        };
        Ok(match fresh {
            Some(task) => Submitted::Fresh(task),
            None => Submitted::Repeated(id),
        })
    }

    fn slot(&self, key: &Key, digest: [u8; 32]) -> Result<Arc<Slot>, TransitionError> {
        let now = Instant::now();
        if self.slots.len() >= self.most && !self.slots.contains_key(key) {
            self.prune(now);
        }
        let fresh = || {
            Arc::new(Slot {
                at: now,
                digest,
                task: OnceCell::new(),
            })
        };
        let mut entry = self.slots.entry(key.clone()).or_insert_with(fresh);
        if now.duration_since(entry.at) >= self.keep {
            *entry = fresh();
        }
        let slot = entry.clone();
        drop(entry);
        if slot.digest != digest {
            return Err(TransitionError::KeyReused);
        }
        Ok(slot)
    }

    /// Forgets keys older than `keep`; then, until there is room for one more, the oldest key
    /// of whoever holds the most, so one busy client cannot push out everyone else's.
    fn prune(&self, now: Instant) {
        self.slots
            .retain(|_, slot| now.duration_since(slot.at) < self.keep);
        while self.slots.len() >= self.most {
            // Per person: how many keys, and the oldest of them.
            let mut held: HashMap<Arc<str>, (usize, Instant, Key)> = HashMap::new();
            for slot in self.slots.iter() {
                let (count, at, key) = held
                    .entry(slot.key().0.clone())
                    .or_insert_with(|| (0, slot.at, slot.key().clone()));
                *count += 1;
                if slot.at < *at {
                    (*at, *key) = (slot.at, slot.key().clone());
                }
            }
            let most = held
                .into_values()
                .max_by_key(|(count, at, _)| (*count, std::cmp::Reverse(*at)));
            match most {
                Some((_, _, key)) => self.slots.remove(&key),
                None => break,
            };
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// What makes two submissions the same one.
fn digest(new: &NewTask) -> [u8; 32] {
    let mut what = format!(
        "{:?}",
        (
            &new.input,
            new.max_attempts,
            new.review_timeout_secs,
            new.review_timeout_policy
        )
    );
    // What an outside task adds counts too, written only when given, so the digest of a
    // submission without them is what it was before they existed (keys stored then still
    // match their submissions).
    if new.outside || new.output.is_some() || new.metadata.is_some() {
        what.push_str(&format!(
            "{:?}",
            (
                new.outside,
                &new.output,
                new.metadata.as_ref().map(|m| m.0.clone())
            )
        ));
    }
    Sha256::digest(what.as_bytes()).into()
}

#[cfg(test)]
mod tests;
