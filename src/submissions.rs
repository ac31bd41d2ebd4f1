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
    let what = format!(
        "{:?}",
        (
            &new.input,
            new.max_attempts,
            new.review_timeout_secs,
            new.review_timeout_policy
        )
    );
    Sha256::digest(what.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn header(key: &str) -> SubmitKey {
        SubmitKey::Header(key.into())
    }

    fn new(input: &str) -> NewTask {
        NewTask::parse(Some(input), None).expect("valid")
    }

    fn task(input: &str) -> Arc<Task> {
        Arc::new(Task::new(
            TaskId::new(),
            input.into(),
            3,
            time::OffsetDateTime::now_utc(),
        ))
    }

    /// Submits `input` under `key`, counting the submissions actually made.
    async fn submit(
        keys: &SubmitKeys,
        who: &str,
        key: SubmitKey,
        input: &str,
        made: &AtomicUsize,
    ) -> Result<Submitted, TransitionError> {
        keys.once(
            &Arc::from(who),
            key,
            &new(input),
            nothing_stored,
            |_| async {
                made.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(task(input))
            },
        )
        .await
    }

    async fn nothing_stored(
        _: Arc<StoredKey>,
    ) -> Result<Option<(TaskId, Box<str>)>, TransitionError> {
        Ok(None)
    }

    fn id(submitted: &Submitted) -> TaskId {
        match submitted {
            Submitted::Fresh(task) => task.id,
            Submitted::Repeated(id) => *id,
        }
    }

    #[tokio::test]
    async fn a_repeat_gets_the_first_task_even_while_the_first_is_under_way() {
        let keys = SubmitKeys::default();
        let made = AtomicUsize::new(0);
        let key = header("k-1");
        let (a, b) = tokio::join!(
            submit(&keys, "ann", key.clone(), "hello", &made),
            submit(&keys, "ann", key.clone(), "hello", &made)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(id(&a), id(&b));
        assert!(matches!(a, Submitted::Fresh(_)) != matches!(b, Submitted::Fresh(_)));
        let later = submit(&keys, "ann", key.clone(), "hello", &made)
            .await
            .unwrap();
        assert!(matches!(later, Submitted::Repeated(i) if i == id(&a)));
    }

    #[tokio::test]
    async fn keys_are_per_person_and_a_header_key_reused_for_other_text_is_refused() {
        let keys = SubmitKeys::default();
        let made = AtomicUsize::new(0);
        let key = header("k-2");
        submit(&keys, "ann", key.clone(), "hello", &made)
            .await
            .unwrap();
        submit(&keys, "bob", key.clone(), "hello", &made)
            .await
            .unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 2, "bob's key is his own");
        let reused = submit(&keys, "ann", key.clone(), "other text", &made).await;
        assert!(
            matches!(reused, Err(TransitionError::KeyReused)),
            "{reused:?}"
        );
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_form_key_sent_again_with_other_text_is_a_new_submission() {
        let keys = SubmitKeys::default();
        let made = AtomicUsize::new(0);
        let key = SubmitKey::Form("page-1".into());
        let a = submit(&keys, "ann", key.clone(), "hello", &made)
            .await
            .unwrap();
        let b = submit(&keys, "ann", key.clone(), "hello, edited", &made)
            .await
            .unwrap();
        assert_ne!(id(&a), id(&b));
        let again = submit(&keys, "ann", key.clone(), "hello", &made)
            .await
            .unwrap();
        assert_eq!(id(&again), id(&a));
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_submission_leaves_the_key_free() {
        let keys = SubmitKeys::default();
        let who: Arc<str> = "ann".into();
        let key = header("k-3");
        let refused = keys
            .once(
                &who,
                key.clone(),
                &new("hello"),
                nothing_stored,
                |_| async { Err(TransitionError::Full { max: 1 }) },
            )
            .await;
        assert!(matches!(refused, Err(TransitionError::Full { .. })));
        assert!(keys.is_empty(), "a failed submission holds no key");
        // The retry may even be corrected: the key was never used for a task.
        let made = AtomicUsize::new(0);
        let retried = submit(&keys, "ann", key.clone(), "hello, corrected", &made)
            .await
            .unwrap();
        assert!(matches!(retried, Submitted::Fresh(_)));
    }

    #[tokio::test]
    async fn a_repeat_waiting_on_a_submission_that_fails_takes_its_turn() {
        let keys = SubmitKeys::default();
        let who: Arc<str> = "ann".into();
        let key = header("k-4");
        let (gate, opened) = tokio::sync::oneshot::channel::<()>();
        let hello = new("hello");
        let first = keys.once(&who, key.clone(), &hello, nothing_stored, |_| async {
            opened.await.ok();
            Err(TransitionError::Full { max: 1 })
        });
        let made = AtomicUsize::new(0);
        let second = async {
            tokio::task::yield_now().await; // the first holds the key by now
            gate.send(()).ok();
            submit(&keys, "ann", key.clone(), "hello", &made).await
        };
        let (first, second) = tokio::join!(first, second);
        assert!(matches!(first, Err(TransitionError::Full { .. })));
        assert!(matches!(second, Ok(Submitted::Fresh(_))), "{second:?}");
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(keys.len(), 1, "the key is bound to the second's task");
    }

    #[tokio::test]
    async fn a_key_the_store_holds_gets_its_task_and_another_submission_under_it_is_refused() {
        let keys = SubmitKeys::default();
        let who: Arc<str> = "ann".into();
        let earlier = TaskId::new();
        let digest_of = |input: &str| hex::encode(super::digest(&new(input)));
        let stored = |record: Arc<StoredKey>| async move {
            assert_eq!(
                (&*record.owner, &*record.key, &*record.scope),
                ("ann", "k-s", "")
            );
            Ok(Some((earlier, digest_of("hello").into())))
        };
        let made = AtomicUsize::new(0);
        let count = || async {
            made.fetch_add(1, Ordering::SeqCst);
            Ok(task("hello"))
        };
        let again = keys
            .once(&who, header("k-s"), &new("hello"), stored, |_| count())
            .await
            .unwrap();
        assert!(matches!(again, Submitted::Repeated(id) if id == earlier));
        assert_eq!(made.load(Ordering::SeqCst), 0, "no second task");

        let other = keys
            .once(
                &who,
                header("k-t"),
                &new("other"),
                |_| async { Ok(Some((earlier, digest_of("hello").into()))) },
                |_| count(),
            )
            .await;
        assert!(
            matches!(other, Err(TransitionError::KeyReused)),
            "{other:?}"
        );

        // Another instance bound the key between the look-up and the commit.
        let raced = keys
            .once(&who, header("k-u"), &new("hello"), nothing_stored, |record| async move {
                Err(TransitionError::KeyBound(earlier, record.digest.clone()))
            })
            .await
            .unwrap();
        assert!(matches!(raced, Submitted::Repeated(id) if id == earlier));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_forgotten_after_a_while_and_past_the_most() {
        let keys = SubmitKeys::new(Duration::from_secs(60), 3);
        let made = AtomicUsize::new(0);
        for n in 0..3 {
            let key = format!("k-{n}");
            submit(&keys, "ann", header(&key), "x", &made)
                .await
                .unwrap();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(keys.len(), 3);
        // A fourth key: the oldest is forgotten to make room.
        submit(&keys, "ann", header("k-3"), "x", &made)
            .await
            .unwrap();
        assert_eq!(keys.len(), 3);
        let again = submit(&keys, "ann", header("k-0"), "x", &made)
            .await
            .unwrap();
        assert!(matches!(again, Submitted::Fresh(_)), "k-0 was forgotten");
        let kept = submit(&keys, "ann", header("k-3"), "x", &made)
            .await
            .unwrap();
        assert!(matches!(kept, Submitted::Repeated(_)), "k-3 is remembered");

        tokio::time::advance(Duration::from_secs(60)).await;
        let expired = submit(&keys, "ann", header("k-3"), "x", &made)
            .await
            .unwrap();
        assert!(matches!(expired, Submitted::Fresh(_)), "k-3 has expired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_client_pushes_out_its_own_keys_not_other_peoples() {
        let keys = SubmitKeys::new(Duration::from_secs(3600), 3);
        let made = AtomicUsize::new(0);
        submit(&keys, "bob", header("b-0"), "x", &made)
            .await
            .unwrap();
        for n in 0..4 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let key = format!("a-{n}");
            submit(&keys, "ann", header(&key), "x", &made)
                .await
                .unwrap();
        }
        assert_eq!(keys.len(), 3);
        let bob = submit(&keys, "bob", header("b-0"), "x", &made)
            .await
            .unwrap();
        assert!(
            matches!(bob, Submitted::Repeated(_)),
            "bob's older key is kept"
        );
        let ann = submit(&keys, "ann", header("a-0"), "x", &made)
            .await
            .unwrap();
        assert!(
            matches!(ann, Submitted::Fresh(_)),
            "ann's oldest went first"
        );
    }

    #[test]
    fn a_key_is_visible_ascii_of_a_sane_length() {
        assert!(SubmitKey::check("0192f000-0000-7000-8000-000000000000").is_ok());
        for bad in ["", "has space", "tab\t", "é", &"k".repeat(256)] {
            assert!(SubmitKey::check(bad).is_err(), "{bad:?}");
        }
    }
}
