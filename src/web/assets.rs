//! Static files, embedded in the binary so `hitl` runs from anywhere with nothing beside it.

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// (path under /assets, content type, cache-control, bytes). Vendored files carry their version
/// in the name, so they can be cached for good; our own are revalidated.
const ASSETS: &[(&str, &str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        REVALIDATE,
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        REVALIDATE,
        include_bytes!("../../assets/app.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        REVALIDATE,
        include_bytes!("../../assets/favicon.svg"),
    ),
    (
        "vendor/htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        IMMUTABLE,
        include_bytes!("../../assets/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "vendor/htmx-ext-sse-2.2.4.min.js",
        "text/javascript; charset=utf-8",
        IMMUTABLE,
        include_bytes!("../../assets/vendor/htmx-ext-sse-2.2.4.min.js"),
    ),
];

const REVALIDATE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == path) {
        Some((_, content_type, cache, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, *cache),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
