//! Tests of submissions made once under a key.

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

async fn nothing_stored(_: Arc<StoredKey>) -> Result<Option<(TaskId, Box<str>)>, TransitionError> {
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
        .once(
            &who,
            header("k-u"),
            &new("hello"),
            nothing_stored,
            |record| async move { Err(TransitionError::KeyBound(earlier, record.digest.clone())) },
        )
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
