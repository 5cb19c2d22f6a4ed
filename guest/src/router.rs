//! Method + path → handler. Also the parts every response shares: CORS headers, preflight,
//! `HEAD`, and the single-page-app fallback.
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
//! `/openapi.json` is the API's contract ([`OPENAPI_JSON`]), answered before the public folder is
//! asked: a file of that name there cannot shadow it.

use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::kv::Kv;
use crate::public::{self, NoFiles, PublicFiles};
use crate::time::Timestamp;
use crate::{legacy, page, todos};

/// Methods a browser may use cross-origin, as the preflight answer lists them.
pub const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// Methods of the page and of every other non-API path.
pub const PAGE_ALLOW: &str = "GET, HEAD, OPTIONS";
/// The OpenAPI 3 document of both APIs, served at `GET /openapi.json`. `guest/tests/openapi.rs`
/// keeps it in step with the routes and limits; `tests/contract.sh` fuzzes a live host against it.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Answers one request with no public folder. Never fails: every error becomes its JSON response.
pub fn handle(request: &Request, kv: &dyn Kv, now: Timestamp) -> Response {
    handle_with_files(request, kv, &NoFiles, now)
}

/// Answers one request, serving non-API `GET`s from `files` first.
pub fn handle_with_files(
    request: &Request,
    kv: &dyn Kv,
    files: &dyn PublicFiles,
    now: Timestamp,
) -> Response {
    let head = request.method == "HEAD";
    let response = if request.method == "OPTIONS" {
        preflight()
    } else if head {
        let as_get = Request {
            method: "GET".to_string(),
            ..request.clone()
        };
        route(&as_get, kv, files, now).unwrap_or_else(ApiError::into_response)
    } else {
        route(request, kv, files, now).unwrap_or_else(ApiError::into_response)
    };
    let mut response = response.with_header("access-control-allow-origin", "*");
    if head {
        // A HEAD answer carries the GET answer's status and headers but no body. It names no
        // length: wasi:http holds a body to its declared `Content-Length`.
        response.body.clear();
    }
    response
}

fn preflight() -> Response {
    Response::empty(204)
        .with_header("access-control-allow-methods", CORS_METHODS)
        .with_header("access-control-allow-headers", "Content-Type")
        .with_header("access-control-max-age", "86400")
}

fn route(
    request: &Request,
    kv: &dyn Kv,
    files: &dyn PublicFiles,
    now: Timestamp,
) -> Result<Response, ApiError> {
    let path = request.path.as_str();
    // One trailing slash is forgiven (`/todos/`); anything else must match exactly.
    let trimmed = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let segments: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["todos"] => todos::collection(request, kv, now),
        ["todos", id] => todos::item(request, id, kv, now),
        ["api", "rule"] => legacy::rule(request, kv, now),
        ["api", "currentUser"] => legacy::current_user(request),
        ["todos", ..] | ["api", ..] => Err(ApiError::NotFound(format!("no route for {path}"))),
        ["openapi.json"] if request.method == "GET" => Ok(Response::empty(200)
            .with_header("content-type", "application/json")
            .with_body(OPENAPI_JSON.as_bytes().to_vec())),
        _ => match request.method.as_str() {
            "GET" => static_or_page(request, files),
            method => Err(ApiError::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_string(),
                allow: PAGE_ALLOW,
            }),
        },
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
