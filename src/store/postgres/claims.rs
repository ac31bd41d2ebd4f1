//! The claims on tasks' work: leases renewed, expired ones taken, and claims let go.

use super::*;

impl PgStore {
    /// Renews `owner`'s claims on `ids`; returns those it still holds.
    pub async fn renew(
        &self,
        owner: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<Vec<TaskId>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                // Rows locked in id order, as a batch of changes locks them: no deadlock.
                "UPDATE hitl_tasks SET lease_until = now() + make_interval(secs => $3)
                 WHERE id IN (SELECT id FROM hitl_tasks WHERE owner = $1 AND id = ANY($2)
                              ORDER BY id FOR UPDATE)
                 RETURNING id",
                &[&owner, &ids, &lease.as_secs_f64()],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| row.get::<_, &str>(0).parse().ok())
            .collect())
    }
    /// Claims up to `limit` unfinished tasks whose claim has run out (or that have none) for
    /// `owner`. Rows another instance is claiming at this moment are skipped, not waited for.
    pub async fn claim_expired(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<TaskId>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE hitl_tasks SET owner = $1, lease_until = now() + make_interval(secs => $2)
                     WHERE id IN (
                         SELECT id FROM hitl_tasks
                         WHERE status IN {LIVE} AND (lease_until IS NULL OR lease_until < now())
                         ORDER BY lease_until NULLS FIRST
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING id"
                ),
                &[&owner, &lease.as_secs_f64(), &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| row.get::<_, &str>(0).parse().ok())
            .collect())
    }
    /// Lets go of every claim `owner` holds, so other instances take the work over at once.
    pub async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE hitl_tasks SET owner = NULL, lease_until = NULL
                 WHERE id IN (SELECT id FROM hitl_tasks WHERE owner = $1 ORDER BY id FOR UPDATE)",
                &[&owner],
            )
            .await?)
    }
    /// Lets `owner`'s claim on task `id` go (if it still holds it).
    pub async fn release_one(&self, owner: &str, id: TaskId) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE hitl_tasks SET owner = NULL, lease_until = NULL
                 WHERE id = $1 AND owner = $2",
                &[&id.to_string(), &owner],
            )
            .await?)
    }
}
