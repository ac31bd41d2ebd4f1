//! What keeps the service safe from other sites and greedy clients: CSRF refusal in our own
//! words, the stream gate (how many event streams are open, in all and per client), and the
//! client's address.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use dashmap::DashMap;
use tower_http::csrf::ProtectionError;

use super::error::{ApiError, Problem};

/// Turns tower-http's bare 403 for a cross-site request into an answer a person understands:
/// JSON on the API, a page or an alert fragment in the browser.
pub async fn explain_csrf(request: Request, next: Next) -> Response {
    let audience = Audience::of(&request);
    let response = next.run(request).await;
    if response.extensions().get::<ProtectionError>().is_none() {
        return response;
    }
    let problem = Problem::new(
        StatusCode::FORBIDDEN,
        "cross_site",
        "This request came from another site, so it was refused and nothing changed. \
         Use the forms on this site, or call the API without browser headers.",
    );
    audience.answer(problem)
}

/// Refuses at once a body whose declared `Content-Length` is over `--max-body-bytes`: 413
/// before a byte of it is waited for (a client that declares a huge body and sends none once
/// waited for the request timeout).
pub async fn check_request(
    axum::extract::State(max_body): axum::extract::State<u64>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return Audience::of(&request).answer(Problem::body_too_large());
    }
    next.run(request).await
}

/// Who an error is for: a script on the API, or a browser (through htmx or not).
#[derive(Clone, Copy)]
struct Audience {
    api: bool,
    htmx: bool,
}

impl Audience {
    fn of(request: &Request) -> Self {
        Self {
            api: request.uri().path().starts_with("/api/"),
            htmx: request
                .headers()
                .get("hx-request")
                .is_some_and(|v| v == "true"),
        }
    }

    /// The problem as JSON, a page or an alert fragment.
    fn answer(self, problem: Problem) -> Response {
        if self.api {
            ApiError(problem).into_response()
        } else {
            super::error::refused(self.htmx, problem)
        }
    }
}

/// The address of the client (the peer of the connection), when the server knows it.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// Who asks to open an event stream: the gate that counts streams (installed by
/// [`super::app`]) and the client's address. Admitted when the stream starts.
#[derive(Clone)]
pub struct Opener {
    gate: StreamGate,
    client: Option<IpAddr>,
}

impl Opener {
    /// A place for the stream, or why there is none.
    pub fn admit(&self) -> Result<StreamPass, Problem> {
        self.gate.admit(self.client)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Opener {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = parts
            .extensions
            .get::<StreamGate>()
            .cloned()
            .expect("app() installs the stream gate");
        let Ok(ClientIp(client)) = ClientIp::from_request_parts(parts, state).await;
        Ok(Self { gate, client })
    }
}

/// Counts open event streams, in all and per client address.
#[derive(Clone)]
pub struct StreamGate {
    total: Arc<AtomicUsize>,
    per_client: Arc<DashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_client: usize,
}

/// One admitted stream, counted in the `hitl_sse_clients` gauge; dropping it frees its place.
pub struct StreamPass {
    gate: StreamGate,
    client: Option<IpAddr>,
}

impl StreamGate {
    pub fn new(max_total: u64, max_per_client: u64) -> Self {
        Self {
            total: Arc::default(),
            per_client: Arc::default(),
            max_total: usize::try_from(max_total).unwrap_or(usize::MAX),
            max_per_client: usize::try_from(max_per_client).unwrap_or(usize::MAX),
        }
    }

    /// A place for one more stream from `client`, or why there is none.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<StreamPass, Problem> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(busy(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "The server has as many live-update connections open as it allows. \
                 Try again shortly; the page still works without live updates.",
            ));
        }
        if let Some(ip) = client {
            let mut open = self.per_client.entry(ip).or_insert(0);
            if *open >= self.max_per_client {
                drop(open);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(busy(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_streams",
                    "You have as many live-update connections open as one client may. \
                     Close some tabs of this site and try again.",
                ));
            }
            *open += 1;
        }
        metrics::gauge!("hitl_sse_clients").increment(1.0);
        Ok(StreamPass {
            gate: self.clone(),
            client,
        })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for StreamPass {
    fn drop(&mut self) {
        if let Some(ip) = self.client {
            // Remove the entry with its last stream, so the map does not grow with every address.
            self.gate.per_client.remove_if_mut(&ip, |_, open| {
                *open -= 1;
                *open == 0
            });
        }
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("hitl_sse_clients").decrement(1.0);
    }
}

/// A refusal for load: how long to wait is in `Retry-After`.
fn busy(status: StatusCode, code: &'static str, message: &str) -> Problem {
    Problem {
        retry_after: Some(5),
        ..Problem::new(status, code, message)
    }
}

/// Gives every refusal that left a handler or extractor as bare text (axum's own rejections of
/// a path or query, an unknown asset, a stream that cannot start) the shape of our other errors:
/// JSON on the API, a page or an alert fragment in the browser, the message kept.
pub async fn explain_errors(request: Request, next: Next) -> Response {
    let audience = Audience::of(&request);
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("The request was refused.")
            .to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_field",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let mut explained = audience.answer(Problem::new(status, code, message));
    for name in [
        axum::http::header::RETRY_AFTER,
        axum::http::header::WWW_AUTHENTICATE,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            explained.headers_mut().insert(name, value.clone());
        }
    }
    explained
}
