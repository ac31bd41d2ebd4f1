//! Waits parked outside the middleware. A bounded wait (`GET /api/tasks/{id}?wait=`) can last
//! two minutes; answered from inside the router, it would hold every layer's future for all
//! that time (sign-in, metrics, error pages, security headers: more than an idle event stream;
//! `examples/wait_memory.rs` counts it). So the route answers at once, through every layer,
//! with an empty body and a [`Parked`] wait; [`finish`], the outermost layer, waits it out
//! holding only the answer's head and the wait, then puts the task as it is in the body with
//! `Hitl-Wait: changed` or `timeout`.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};

use crate::service::{Hitl, Waiting};

/// The rest of a wait, carried by its answer's extensions from the route to the connection.
#[derive(Clone)]
pub struct Parked(pub Waiting);

/// Waits out the parked wait the answer carries, if it carries one, and answers with the task
/// as it then is; any other answer is returned as it is.
pub async fn finish(State(hitl): State<Hitl>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let Some(Parked(waiting)) = response.extensions_mut().remove::<Parked>() else {
        return response;
    };
    let (task, changed) = hitl.finish_wait(waiting).await;
    let body = serde_json::to_vec(&*task).expect("a task always serialises");
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        "hitl-wait",
        HeaderValue::from_static(if changed { "changed" } else { "timeout" }),
    );
    *response.body_mut() = Body::from(body);
    response
}
