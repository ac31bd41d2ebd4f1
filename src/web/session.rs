//! Signing in and out, and the middleware that says who is asking: every request gets an
//! [`Actor`] (an anonymous one under `--auth none`); under `--auth token` a request from nobody
//! is sent to sign in (browsers) or answered 401 (the API).

use axum::{
    Form,
    extract::{Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use maud::Markup;
use serde::Deserialize;

use super::error::{ApiError, Problem};
use crate::{
    auth::{Actor, SESSION_COOKIE},
    service::Hitl,
    views::{self, pages},
};

/// Paths anyone may reach: signing in, the files the sign-in page needs, and health checks.
pub(super) fn is_public(path: &str) -> bool {
    matches!(path, "/sign-in" | "/healthz" | "/readyz" | "/metrics") || path.starts_with("/assets/")
}

/// Finds who is asking and puts them in the request's extensions (and in the views' reach,
/// for the page header); refuses nobody where somebody is needed.
pub async fn authenticate(State(hitl): State<Hitl>, mut request: Request, next: Next) -> Response {
    let public = is_public(request.uri().path());
    let actor = match &hitl.auth {
        None => Some(Actor::anyone()),
        // Public paths never pay for a secret check, so they cannot be used to make us hash.
        Some(_) if public && request.uri().path() != "/sign-in" => None,
        Some(auth) => {
            let from_cookie = session_cookie(request.headers()).and_then(|c| auth.session(c));
            match (from_cookie, bearer(request.headers())) {
                (Some(actor), _) => Some(actor),
                (None, Some(token)) => {
                    let (auth, token) = (auth.clone(), token.to_owned());
                    auth.bearer_checked(token).await
                }
                (None, None) => None,
            }
        }
    };
    let Some(actor) = actor else {
        if public {
            return views::VIEWER.scope(None, next.run(request)).await;
        }
        return unauthenticated(&request);
    };
    request.extensions_mut().insert(actor.clone());
    views::VIEWER.scope(Some(actor), next.run(request)).await
}

fn unauthenticated(request: &Request) -> Response {
    let path = request.uri().path();
    if path.starts_with("/api/") {
        let mut response = ApiError(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign in first: send `Authorization: Bearer name:secret`.",
        ))
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hitl\""),
        );
        return response;
    }
    if request.headers().contains_key("hx-request") {
        let problem = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Your session has ended. Sign in again, then try once more.",
        );
        return super::error::refused(true, problem);
    }
    // Back to this page after signing in (a GET), or to the page a form was posted from.
    let next = match *request.method() {
        axum::http::Method::GET => request
            .uri()
            .path_and_query()
            .map_or("/".to_owned(), |p| p.to_string()),
        _ => "/".to_owned(),
    };
    let query = serde_urlencoded::to_string([("next", &next)]).unwrap_or_default();
    Redirect::to(&format!("/sign-in?{query}")).into_response()
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Only a path on this site is a place to go back to: never `//elsewhere`, a full URL, or
/// anything with control characters (browsers drop tabs and new lines, so `/\t/evil` would
/// become `//evil`).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/",
    }
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

/// `GET /sign-in`.
pub async fn sign_in_page(State(hitl): State<Hitl>, Query(query): Query<SignInQuery>) -> Response {
    if hitl.auth.is_none() {
        return Redirect::to("/").into_response();
    }
    pages::sign_in(local_path(query.next.as_deref()), None, "").into_response()
}

#[derive(Deserialize)]
pub struct SignInFields {
    name: Option<String>,
    secret: Option<String>,
    next: Option<String>,
}

/// `POST /sign-in`: a session cookie and back where the person was going, or the form again.
pub async fn sign_in(
    State(hitl): State<Hitl>,
    headers: HeaderMap,
    Form(fields): Form<SignInFields>,
) -> Response {
    let Some(auth) = hitl.auth.clone() else {
        return Redirect::to("/").into_response();
    };
    let next = local_path(fields.next.as_deref()).to_owned();
    let name = fields.name.unwrap_or_default();
    let secret = fields.secret.unwrap_or_default();
    let checked = auth.check_off_thread(name.trim().to_owned(), secret).await;
    let Some(actor) = checked else {
        let page: Markup = pages::sign_in(
            &next,
            Some("That name and secret do not match a user. Check both and try again."),
            &name,
        );
        return (StatusCode::UNAUTHORIZED, page).into_response();
    };
    tracing::info!(user = %actor.name, "signed in");
    let cookie = auth.start_session(actor);
    // Secure when the browser reached us over https, directly or through a proxy that says so.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// `POST /sign-out`: the session ends on the server, and the cookie is cleared.
pub async fn sign_out(State(hitl): State<Hitl>, headers: HeaderMap) -> Response {
    if let (Some(auth), Some(cookie)) = (&hitl.auth, session_cookie(&headers)) {
        auth.end_session(cookie);
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        [(header::SET_COOKIE, clear)],
        Redirect::to(if hitl.auth.is_some() { "/sign-in" } else { "/" }),
    )
        .into_response()
}
