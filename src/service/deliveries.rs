//! What a task's deliveries came to, and a reviewer's Redeliver.

use uuid::Uuid;

use super::Hitl;
use crate::{
    auth::{Actor, Role},
    model::{delivery::Delivery, task::TaskId},
    registry::{Denied, TransitionError},
};

impl Hitl {
    /// A task's deliveries, oldest first (none when nothing is delivered).
    pub async fn deliveries(&self, id: TaskId) -> Result<Vec<Delivery>, TransitionError> {
        self.settled(id)
            .await
            .ok_or(TransitionError::NotFound(id))?;
        let Some(deliveries) = &self.deliveries else {
            return Ok(Vec::new());
        };
        deliveries.of_task(id).await.map_err(|error| {
            tracing::warn!(%error, task_id = %id, "cannot read a task's deliveries");
            TransitionError::Unavailable
        })
    }

    /// Sends a delivery again now, keeping its id (reviewers only); `None` if there is no such
    /// delivery.
    pub async fn redeliver(
        &self,
        id: Uuid,
        by: &Actor,
    ) -> Result<Option<Delivery>, TransitionError> {
        if by.role != Role::Reviewer {
            return Err(TransitionError::Forbidden(Denied::RedeliverAsSubmitter));
        }
        let Some(deliveries) = &self.deliveries else {
            return Ok(None);
        };
        let delivery = deliveries.redeliver(id).await.map_err(|error| {
            tracing::warn!(%error, delivery = %id, "cannot redeliver");
            TransitionError::Unavailable
        })?;
        if let Some(delivery) = &delivery {
            tracing::info!(delivery = %id, task_id = %delivery.task_id, by = %by.name, "redelivery asked for");
        }
        Ok(delivery)
    }
}
