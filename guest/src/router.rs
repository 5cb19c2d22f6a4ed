//! Method + path → handler. Also the parts every response shares: CORS headers, preflight,
//! `HEAD`, and the single-page-app fallback.
//!
//! # Two components, one app
//!
//! The app is two components: the todo component ([`handle`]) answers the API, [`API_ROUTES`],
//! and the files component (`guest/files/`, [`handle_files`]) every other path, from the public
//! folder the host mounts. The host routes between them (`host/src/app.rs`, `deploy/spin.toml`);
//! [`handle_with_files`] is the same app in one call, for native tests and servers. The todo
//! component alone still answers every path: a non-API path gets what the files component would
//! give it with an empty folder (the page, a JSON 404 for a missing asset, a 400 for a way out).
//!
//! # Single-page-app fallback
//!
//! `/todos...` and `/api/...` are the APIs: a path there with no route is a JSON 404, whatever
//! the public folder holds. Any other `GET` (or `HEAD`) is answered, in this order, by:
//!
//! 1. the folder's file at that path (a directory, and `/`, mean its `index.html`);
//! 2. if `/` or `/index.html` has no file: the component's own todo page;
//! 3. if the last segment holds a `.` (`/foo.js`, `/assets/app.css`, `/docs/index.html`): a JSON
//!    404. A missing script or stylesheet must fail as one: HTML served in its place would be
//!    parsed as code and fail far from the cause;
//! 4. any other path is a client-side route (`/list`, `/deep/link`): the folder's `index.html`,
//!    with the same `ETag` and cache headers as any file, so the app's own router takes over;
//! 5. with no folder, or one without `index.html`: the component's own todo page.
//!
//! "Holds a `.`" is the "dot rule" of `connect-history-api-fallback`, webpack-dev-server's history
//! fallback: cheap, and right for every asset a bundler writes. Its cost is that a client-side
//! route whose last segment holds a dot (`/user/jane.doe`) is a 404 when reloaded. A path that
//! tries to leave the folder is a 400 before any of this. Other methods on these paths are a 405
//! listing [`PAGE_ALLOW`].
//!
//! `/openapi.json` is the API's contract ([`OPENAPI_JSON`]), one of [`API_ROUTES`]: a file of
//! that name in the public folder cannot shadow it.

use crate::accounts::{self, Caller, Mode};
use crate::context::Context;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::kv::{Kv, PrefixedKv};
use crate::layout::user_prefix;
use crate::public::{self, NoFiles, PublicFiles};
use crate::session;
use crate::time::Timestamp;
use crate::{legacy, page, todos};

/// Methods a browser may use cross-origin, as the preflight answer lists them.
pub const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// Methods of the page and of every other non-API path.
pub const PAGE_ALLOW: &str = "GET, HEAD, OPTIONS";
/// The OpenAPI 3 document of both APIs, served at `GET /openapi.json`. `guest/tests/openapi.rs`
/// keeps it in step with the routes and limits; `tests/contract.sh` fuzzes a live host against it.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The todo component's routes, as Spin writes them (`/prefix/...`: the prefix and every path
/// under it): what a host routes to it when the files component serves the rest. The host
/// (`host/src/app.rs`) and `deploy/spin.toml` use these; [`is_api_path`] is the same test.
pub const API_ROUTES: [&str; 3] = ["/openapi.json", "/todos/...", "/api/..."];

/// Whether `path` (no query) is on one of [`API_ROUTES`], matched as a host matches routes:
/// trailing slashes aside, the exact path, or a prefix followed by `/`.
pub fn is_api_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    API_ROUTES
        .iter()
        .any(|route| match route.strip_suffix("/...") {
            Some(prefix) => path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            None => path == *route,
        })
}

/// Request headers a cross-origin caller may send, as the preflight answer lists them.
const ALLOW_HEADERS: &str = "Content-Type";
/// The same with accounts on: API clients send `Authorization: Bearer` (never cookies: CORS
/// never allows credentials, so another site's page cannot act as a signed-in user).
const ALLOW_HEADERS_WITH_ACCOUNTS: &str = "Content-Type, Authorization";

/// The todo component with accounts off: answers one request, the API's or, on any other path,
/// the page. Never fails: every error becomes its JSON response.
pub fn handle(request: &Request, kv: &dyn Kv, now: Timestamp) -> Response {
    respond(request, ALLOW_HEADERS, |request| {
        route(request, &segments(&request.path), kv, now)
    })
}

/// The todo component as its host runs it: accounts as `ctx.config` sets them
/// (`accounts.rs`); with them off, exactly [`handle`].
pub fn handle_in(request: &Request, ctx: &Context) -> Response {
    // Only the API's paths depend on the mode: the page and its files need no configuration.
    if !is_api_path(&request.path) {
        return handle(request, ctx.kv, ctx.now);
    }
    match Mode::from_config(ctx.config) {
        Ok(Mode::Off) => handle(request, ctx.kv, ctx.now),
        Ok(mode) => respond(request, ALLOW_HEADERS_WITH_ACCOUNTS, |request| {
            route_with_accounts(request, ctx, mode)
        }),
        Err(err) => respond(request, ALLOW_HEADERS, |_| Err(err)),
    }
}

/// The files component: answers a request for a path that is not the API's from `files`, by
/// the single-page-app fallback of the module doc.
pub fn handle_files(request: &Request, files: &dyn PublicFiles) -> Response {
    respond(request, ALLOW_HEADERS, |request| {
        page_or_file(request, files)
    })
}

/// The whole app in one call: an API path as the todo component answers it, any other as the
/// files component serving `files` does; what a host with both components answers.
pub fn handle_with_files(
    request: &Request,
    kv: &dyn Kv,
    files: &dyn PublicFiles,
    now: Timestamp,
) -> Response {
    if is_api_path(&request.path) {
        handle(request, kv, now)
    } else {
        handle_files(request, files)
    }
}

/// What every answer shares: `OPTIONS` is a preflight, `HEAD` the `GET` answer without its body,
/// errors their JSON responses, and CORS allowed.
fn respond(
    request: &Request,
    allow_headers: &'static str,
    answer: impl FnOnce(&Request) -> Result<Response, ApiError>,
) -> Response {
    let head = request.method == "HEAD";
    let response = if request.method == "OPTIONS" {
        preflight(allow_headers)
    } else if head {
        let as_get = Request {
            method: "GET".to_string(),
            ..request.clone()
        };
        answer(&as_get).unwrap_or_else(ApiError::into_response)
    } else {
        answer(request).unwrap_or_else(ApiError::into_response)
    };
    let mut response = response.with_header("access-control-allow-origin", "*");
    if head {
        // A HEAD answer carries the GET answer's status and headers but no body. It names no
        // length: wasi:http holds a body to its declared `Content-Length`.
        response.body.clear();
    }
    response
}

fn preflight(allow_headers: &'static str) -> Response {
    Response::empty(204)
        .with_header("access-control-allow-methods", CORS_METHODS)
        .with_header("access-control-allow-headers", allow_headers)
        .with_header("access-control-max-age", "86400")
}

/// The segments of `path`. One trailing slash is forgiven (`/todos/`); anything else must match
/// exactly.
fn segments(path: &str) -> Vec<&str> {
    let trimmed = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    trimmed.trim_start_matches('/').split('/').collect()
}

/// An API path with accounts on: the account routes, then the caller's own list (or the
/// public one, for an anonymous caller where the mode allows).
fn route_with_accounts(request: &Request, ctx: &Context, mode: Mode) -> Result<Response, ApiError> {
    let segments = segments(&request.path);
    if let Some(answer) = accounts::route(request, &segments, ctx, mode) {
        return answer;
    }
    if segments == ["openapi.json"] {
        return route(request, &segments, ctx.kv, ctx.now);
    }
    let caller = match accounts::caller(request, ctx) {
        Ok(caller) => caller,
        Err(err) => {
            let mut response = err.into_response();
            if response.status == 401 && request.authorization.is_none() {
                // The browser's cookie is bad or stale: drop it, so the page is anonymous next.
                response = response.with_header("set-cookie", session::expire_cookie(request));
            }
            return Ok(response);
        }
    };
    accounts::check_same_site(request, &caller)?;
    let name = match caller {
        Caller::User { name, .. } => name,
        Caller::Anonymous if mode == Mode::Required => {
            return Err(ApiError::Unauthorized(format!(
                "{} needs a signed-in user: sign in with POST /api/login/account or send a \
                 bearer token from POST /api/tokens",
                request.path
            )));
        }
        Caller::Anonymous => {
            // The same URL answers differently with a credential: no cache may mix them up.
            return Ok(route(request, &segments, ctx.kv, ctx.now)
                .unwrap_or_else(ApiError::into_response)
                .with_header("vary", "Cookie, Authorization"));
        }
    };
    let answer = if segments == ["api", "currentUser"] && request.method == "GET" {
        Ok(accounts::current_user(&name))
    } else {
        let own = PrefixedKv::new(ctx.kv, user_prefix(&name));
        route(request, &segments, &own, ctx.now)
    };
    // One user's answer must never be served to another from a cache.
    Ok(answer
        .unwrap_or_else(ApiError::into_response)
        .with_header("cache-control", "no-store")
        .with_header("vary", "Cookie, Authorization"))
}

/// The API's routes, on `segments`, the request path's ([`segments`]).
fn route(
    request: &Request,
    segments: &[&str],
    kv: &dyn Kv,
    now: Timestamp,
) -> Result<Response, ApiError> {
    let path = request.path.as_str();
    match segments {
        ["todos"] => todos::collection(request, kv, now),
        ["todos", id] => todos::item(request, id, kv, now),
        ["api", "rule"] => legacy::rule(request, kv, now),
        ["api", "currentUser"] => legacy::current_user(request),
        ["todos", ..] | ["api", ..] => Err(ApiError::NotFound(format!("no route for {path}"))),
        ["openapi.json"] if request.method == "GET" => Ok(Response::empty(200)
            .with_header("content-type", "application/json")
            .with_body(OPENAPI_JSON.as_bytes().to_vec())),
        _ => page_or_file(request, &NoFiles),
    }
}

/// A path that is not the API's: `GET` by the fallback rule, other methods a 405.
fn page_or_file(request: &Request, files: &dyn PublicFiles) -> Result<Response, ApiError> {
    match request.method.as_str() {
        "GET" => static_or_page(request, files),
        method => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: request.path.clone(),
            allow: PAGE_ALLOW,
        }),
    }
}

/// A non-API `GET`: a file, a 404, or an app shell, by the rule in the module doc.
fn static_or_page(request: &Request, files: &dyn PublicFiles) -> Result<Response, ApiError> {
    let relative = public::clean_path(&request.path)?;
    if let Some(file) = public::serve(request, files, &relative)? {
        return Ok(file);
    }
    if relative.is_empty() || relative == public::INDEX {
        // The folder's start page was asked for and is not there: the page stands in for it.
        return Ok(page::index());
    }
    if public::names_a_file(&relative) {
        return Err(ApiError::NotFound(format!("no file at '{}'", request.path)));
    }
    Ok(public::serve(request, files, "")?.unwrap_or_else(page::index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_the_api_routes_and_nothing_beside_them() {
        for api in [
            "/todos",
            "/todos/",
            "/todos/7",
            "/todos/7/more",
            "/api",
            "/api/rule",
            "/api/currentUser",
            "/openapi.json",
            "/openapi.json/",
        ] {
            assert!(is_api_path(api), "{api}");
        }
        for other in [
            "/",
            "/index.html",
            "/todosx",
            "/apis",
            "/app.js",
            "/openapi.json/x",
            "/deep/todos",
        ] {
            assert!(!is_api_path(other), "{other}");
        }
    }
}
