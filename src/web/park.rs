//! Waits parked at the connection. A bounded wait (`GET /api/tasks/{id}?wait=`) can last two
//! minutes; answered from inside the router, it would hold every layer's future for all that
//! time (sign-in, metrics, error pages, security headers: 17 KiB a request, measured with
//! `examples/wait_memory.rs`, more than an idle event stream). So the route answers at once,
//! through every layer, with the task as it is, `Hitl-Wait: timeout` and a [`Parked`] wait;
//! [`finish`], at the connection, waits it out holding only the answer's head and the wait,
//! and then puts the task as it is in the body (`Hitl-Wait: changed` if it moved on). Used
//! without [`super::serve`] (the router alone), the route's immediate answer stands: a valid,
//! early `timeout`.

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};

use crate::service::{Hitl, Waiting};

/// The rest of a wait, carried by its answer's extensions from the route to the connection.
#[derive(Clone)]
pub struct Parked(pub Waiting);

/// Waits out the parked wait `response` carries, if it carries one, and answers with the task
/// as it then is; any other answer is returned as it is.
pub async fn finish(hitl: &Hitl, mut response: Response) -> Response {
    let Some(Parked(waiting)) = response.extensions_mut().remove::<Parked>() else {
        return response;
    };
    let (task, changed) = hitl.finish_wait(waiting).await;
    let body = match serde_json::to_vec(&*task) {
        Ok(body) => body,
        // A task always serialises; if it ever did not, the immediate answer stands.
        Err(_) => return response,
    };
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        "hitl-wait",
        HeaderValue::from_static(if changed { "changed" } else { "timeout" }),
    );
    *response.body_mut() = Body::from(body);
    response
}
