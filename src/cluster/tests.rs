//! Tests of the cluster: its write queue and the claims it gives up.

use super::{work::lost_claims, *};

fn id() -> TaskId {
    TaskId(uuid::Uuid::now_v7())
}

#[tokio::test(start_paused = true)]
async fn a_full_write_queue_holds_no_more_and_answers_an_outage() {
    let store = Arc::new(PgStore::unconnected());
    let (shared, mut queued) = Shared::new(store, Duration::from_secs(30), EventLog::new(16));
    // No writer runs: the database hangs.
    for n in 0..QUEUE {
        shared.progress(id(), 1, n.to_string().into(), None);
    }
    shared.progress(id(), 1, "no room".into(), None);
    assert_eq!(
        queued.len(),
        QUEUE,
        "a progress report finding no room is dropped"
    );

    let refused = |_: &mut Task| -> Change { unreachable!("never applied") };
    let waited = shared.transition(id(), None, false, refused).await;
    assert!(
        matches!(waited, Err(TransitionError::Unavailable)),
        "{waited:?}"
    );
    assert_eq!(
        queued.len(),
        QUEUE,
        "a change finding no room in time is not queued"
    );

    // With room again a change is queued, and its requester waits for the writer.
    queued.recv().await.expect("a queued report");
    let change = tokio::spawn({
        let shared = shared.clone();
        async move { shared.transition(id(), None, false, refused).await }
    });
    while queued.len() < QUEUE {
        tokio::task::yield_now().await;
    }
    assert!(!change.is_finished());
    // The writer never answers: its requester hears of an outage after its patience.
    let answer = change.await.expect("no panic");
    assert!(
        matches!(answer, Err(TransitionError::Unavailable)),
        "{answer:?}"
    );
}

#[test]
fn a_claim_taken_during_renewal_is_kept() {
    let claims = DashMap::new();
    let (renewed, lost, during, ended) = (id(), id(), id(), id());
    let tokens: Vec<CancellationToken> = (0..4).map(|_| CancellationToken::new()).collect();
    claims.insert(renewed, tokens[0].clone());
    claims.insert(lost, tokens[1].clone());
    claims.insert(ended, tokens[3].clone());
    tokens[3].cancel();
    let held = vec![renewed, lost];
    // While the renewal is under way, a task is submitted here.
    claims.insert(during, tokens[2].clone());
    lost_claims(&claims, &held, &[renewed]);
    assert!(!tokens[0].is_cancelled() && claims.contains_key(&renewed));
    assert!(tokens[1].is_cancelled() && !claims.contains_key(&lost));
    assert!(!tokens[2].is_cancelled() && claims.contains_key(&during));
    assert!(!claims.contains_key(&ended));
}
