//! The OpenAPI 3.1 document of the JSON API, served at `GET /api/openapi.json`.
//!
//! It is generated from the code, so it cannot drift from it: every JSON route is registered
//! with `utoipa_axum::routes!`, which takes the handler's `#[utoipa::path]` (parameters, body,
//! answers) along with the handler; bodies and answers are the very types the handlers read and
//! write, deriving `ToSchema`. What a layer answers on any route it wraps (sign-in, a
//! cross-site refusal, an oversized body, the request timeout) is documented here, by the code
//! that applies the layer.

use axum::{
    Extension,
    body::Bytes,
    http::{Method, StatusCode, header},
    response::IntoResponse,
};
use tower_http::timeout::TimeoutLayer;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Schema, Type,
        path::{Operation, ParameterIn},
        schema::{ObjectBuilder, SchemaType},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};
use utoipa_axum::router::OpenApiRouter;

use super::{error::ErrorBody, session};
use crate::{model::audit::AuditEntry, service::Hitl};

/// Where the JSON API lives; the document's paths are under it, as the router nests them.
pub const API_PREFIX: &str = "/api";

/// The name of the bearer-token security scheme.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hitl",
        description = "Human-in-the-loop review: submit a task, a processor (hitl's own, an \
            agent or workers) makes attempts, a person approves or requests changes.\n\n\
            Every body is JSON; every refusal is `{\"error\": {\"code\", \"message\"}}` with its \
            status. Routes answer 401 `unauthenticated` only under `--auth token`; every \
            state-changing request from another site is 403 `cross_site`.",
    ),
    components(schemas(AuditEntry, ErrorBody)),
    modifiers(&BearerToken),
    tags(
        (name = "tasks", description = "Submit, read, decide on and cancel tasks."),
        (name = "workers", description = "Work done outside hitl: claims, leases, attempts."),
        (name = "events", description = "Server-Sent Events of every change."),
        (name = "webhooks", description = "Signed webhook deliveries of every change, and \
            their redelivery."),
        (name = "service", description = "Health, readiness and this document."),
    )
)]
struct Base;

/// Adds the bearer token of `--auth token` (`Authorization: Bearer name:secret`).
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("name:secret")
            .description(Some(
                "Under `--auth token`: `Authorization: Bearer name:secret`, a user configured \
                 with `--users`. Under `--auth none` (the default) no credentials are needed. A \
                 browser's session cookie is accepted too.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The finished document, serialized once and answered by [`document`].
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    /// The document of `site` (routes at the top) and `api` (the routes under [`API_PREFIX`]),
    /// with what the layers of [`super::app`] answer on every route.
    pub fn new(site: openapi::OpenApi, api: openapi::OpenApi) -> Self {
        Self::from(describe(site, api))
    }
}

impl From<openapi::OpenApi> for Document {
    fn from(doc: openapi::OpenApi) -> Self {
        Self(Bytes::from(
            serde_json::to_vec(&doc).expect("an OpenAPI document serializes"),
        ))
    }
}

/// The whole document, with the layers' answers: what [`Document`] serves.
pub fn describe(site: openapi::OpenApi, api: openapi::OpenApi) -> openapi::OpenApi {
    let mut doc = Base::openapi().merge_from(site).nest(API_PREFIX, api);
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                layers(path, &method, operation);
            }
        }
    }
    doc
}

/// What `session::authenticate`, `CsrfLayer` and `protect::check_request` answer on a route.
fn layers(path: &str, method: &Method, operation: &mut Operation) {
    headers_are_never_null(operation);
    if session::is_public(path) {
        operation.security = Some(Vec::new());
    } else {
        operation.security = Some(vec![
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
        refusal(
            operation,
            StatusCode::UNAUTHORIZED,
            "`unauthenticated`: under `--auth token`, no valid credentials were sent.",
            Some(("WWW-Authenticate", "`Bearer realm=\"hitl\"`")),
        );
    }
    if method == Method::POST {
        refusal(
            operation,
            StatusCode::FORBIDDEN,
            "`cross_site`: the request came from another site (its `Sec-Fetch-Site` or \
             `Origin` says so); nothing changed.",
            None,
        );
        refusal(
            operation,
            StatusCode::PAYLOAD_TOO_LARGE,
            "`too_large`: the body is over `--max-body-bytes`.",
            None,
        );
    }
}

/// utoipa reads an optional header parameter (`Option<T>`) as one that may be `null`; a header
/// is left out instead, which `required: false` already says.
fn headers_are_never_null(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.parameter_in != ParameterIn::Header {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema
            && let SchemaType::Array(types) = &schema.schema_type
        {
            let types: Vec<Type> = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect();
            schema.schema_type = match &types[..] {
                [one] => SchemaType::Type(one.clone()),
                _ => SchemaType::Array(types),
            };
        }
    }
}

/// `router`'s routes, each bounded by the request timeout (503 `unavailable` when it passes),
/// and documented so.
pub fn timed(router: OpenApiRouter<Hitl>, timeout: TimeoutLayer) -> OpenApiRouter<Hitl> {
    let mut router = router.route_layer(timeout);
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            refusal(
                operation,
                StatusCode::SERVICE_UNAVAILABLE,
                "`unavailable`: the request took longer than `--request-timeout-secs`.",
                None,
            );
        }
    }
    router
}

/// Documents that `operation` may answer `status` with an error body, for the reason given:
/// added to what the handler documents for that status, or a new answer.
fn refusal(
    operation: &mut Operation,
    status: StatusCode,
    reason: &str,
    header: Option<(&str, &str)>,
) {
    let answers = &mut operation.responses.responses;
    let key = status.as_u16().to_string();
    match answers.get_mut(&key) {
        Some(RefOr::T(answer)) => {
            if !answer.description.contains(reason) {
                answer.description = format!("{}\n\n{reason}", answer.description);
            }
            if let Some((name, text)) = header {
                answer
                    .headers
                    .entry(name.to_owned())
                    .or_insert_with(|| RefOr::T(string_header(text)));
            }
        }
        // Shared answers are documented where they are defined.
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut answer = ResponseBuilder::new().description(reason).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(
                        <ErrorBody as utoipa::ToSchema>::name(),
                    )))
                    .build(),
            );
            if let Some((name, text)) = header {
                answer = answer.header(name, string_header(text));
            }
            answers.insert(key, RefOr::T(answer.build()));
        }
    }
}

fn string_header(description: &str) -> openapi::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

/// This document
///
/// The OpenAPI 3.1 document of every JSON route, its bodies, answers and errors, generated from
/// the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI document.", content_type = "application/json",
            body = Object),
    )
)]
pub async fn document(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}

#[cfg(test)]
mod tests;
