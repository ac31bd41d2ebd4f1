//! Every instance's replica of the shared journal: read in order from where it is, on every
//! notification and every second, after a reconnect with back-off; a gap the journal no longer
//! holds is reported, not papered over.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// The longest a change may take in the database before the request is answered 503.
use super::*;

/// Keeps this instance's replica up to date with the shared journal until `shutdown`.
pub async fn replicate(shared: Arc<Shared>, registry: Registry, shutdown: CancellationToken) {
    replicate_until(&shared, &registry, &shutdown).await;
    shared.replicating.store(false, Ordering::Relaxed);
    shared.listening.store(false, Ordering::Relaxed);
}

/// After the listener failed to start: waits `wait` (doubled for next time, up to 2 s), then
/// catches up from the pool all the same, since the listener may be all that fails. False if
/// shutdown came first.
async fn back_off(
    shared: &Arc<Shared>,
    registry: &Registry,
    shutdown: &CancellationToken,
    wait: &mut Duration,
) -> bool {
    shared.listening.store(false, Ordering::Relaxed);
    tokio::select! {
        () = shutdown.cancelled() => return false,
        () = tokio::time::sleep(*wait) => {}
    }
    *wait = (*wait * 2).min(Duration::from_secs(2));
    catch_up(shared, registry, shutdown).await;
    true
}

async fn replicate_until(shared: &Arc<Shared>, registry: &Registry, shutdown: &CancellationToken) {
    let mut wait = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let (client, connection) = match shared.store.listener().await {
            Ok(listener) => listener,
            Err(error) => {
                shared.failed(&error);
                if back_off(shared, registry, shutdown, &mut wait).await {
                    continue;
                }
                return;
            }
        };
        let notified = Arc::new(Notify::new());
        let closed = CancellationToken::new();
        let driver = {
            let (notified, closed) = (notified.clone(), closed.clone());
            let mut connection = connection;
            tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => notified.notify_one(),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "the listener's connection failed");
                            break;
                        }
                    }
                }
                closed.cancel();
            })
        };
        let listen = format!("LISTEN \"{}\"", shared.store.channel);
        if let Err(error) = client.batch_execute(&listen).await {
            tracing::warn!(%error, "cannot listen for changes; retrying");
            driver.abort();
            if back_off(shared, registry, shutdown, &mut wait).await {
                continue;
            }
            return;
        }
        shared.listening.store(true, Ordering::Relaxed);
        wait = Duration::from_millis(100);
        tracing::debug!(channel = %shared.store.channel, "listening for changes");
        // Whatever happened while not listening is read now.
        catch_up(shared, registry, shutdown).await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = closed.cancelled() => break,
                () = notified.notified() => {}
                () = shared.kick.notified() => {}
                () = tokio::time::sleep(CATCH_UP_EVERY) => {}
            }
            catch_up(shared, registry, shutdown).await;
        }
        shared.listening.store(false, Ordering::Relaxed);
        driver.abort();
    }
}

/// Reads every journal row after the replica's head into the replica, in order.
async fn catch_up(shared: &Shared, registry: &Registry, shutdown: &CancellationToken) {
    loop {
        let head = registry.events.issued();
        let read = shared.store.events_after(head, BATCH);
        let rows = match tokio::time::timeout(WRITE_PATIENCE, read).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                shared.failed(&error);
                return;
            }
            Err(_) => {
                shared.failed(&"reading the journal took longer than 10 s");
                return;
            }
        };
        shared.worked();
        let full = rows.len() as i64 == BATCH;
        for row in rows {
            let seq = row.event.seq;
            if seq <= registry.events.issued() {
                continue;
            }
            if seq > registry.events.issued() + 1 {
                // The journal no longer holds what this instance missed (pruned by
                // --retain-events while it was cut off): its replica cannot be brought up to date.
                if !shared.behind.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        seq,
                        head = registry.events.issued(),
                        "this instance missed events the journal no longer keeps; restart it"
                    );
                }
                return;
            }
            if !registry.replicate(row.event, row.fresh, shutdown) {
                // A gap: the rows after it are read again next time.
                tracing::warn!(
                    seq,
                    head = registry.events.issued(),
                    "the journal skipped ahead; reading it again"
                );
                return;
            }
        }
        if !full {
            return;
        }
    }
}
