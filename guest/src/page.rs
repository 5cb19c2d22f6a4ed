//! The web page, embedded in the component: plain HTML, CSS and JS, no CDN, no build step.
//! It talks to the `/todos` API and, when the operator turns accounts on (it asks
//! `GET /api/session` first), to the account routes. The files component (`guest/files/`) embeds the same bytes,
//! through this crate, for a public folder with no start page.

use crate::http::Response;

/// The page's source.
pub const INDEX_HTML: &str = include_str!("page/index.html");

/// The page as a response.
pub fn index() -> Response {
    Response::empty(200)
        .with_header("content-type", "text/html; charset=utf-8")
        // The page is part of the component: a new deployment must show its own page at once.
        .with_header("cache-control", "no-cache")
        .with_body(INDEX_HTML.as_bytes().to_vec())
}
