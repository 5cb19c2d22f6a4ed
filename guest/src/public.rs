//! Static files from the read-only `/public` folder the host mounts (`--public DIR`) into the
//! files component (`guest/files/`), served before the page, like a static folder beside the old
//! Express app. What a path with no file gets (404, the folder's `index.html`, or the page) is the
//! router's single-page-app fallback. Pure logic: the files component reads the folder through
//! [`PublicFiles`], and the todo component, which has no folder, uses [`NoFiles`].
//!
//! A request path is percent-decoded segment by segment and refused (400) if any segment is `.`
//! or `..`, or holds `/`, `\` or NUL once decoded: nothing outside the folder can be named. The
//! host's WASI sandbox also refuses symlinks that lead out of it (403 here).

use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::percent;

/// The largest file served; larger ones would not fit an instance's memory comfortably.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// The folder's start page: what `/` and a directory serve, and the app's client-side routes.
pub const INDEX: &str = "index.html";

/// Read access to the public folder.
pub trait PublicFiles {
    /// The bytes of the regular file at `relative` (a cleaned path, no leading `/`).
    /// `Ok(None)`: there is no such file (or it is a directory). `Err`: the folder refused.
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, String>;
    /// Whether `relative` is a directory.
    fn is_dir(&self, relative: &str) -> bool;
}

/// No public folder: every lookup misses.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFiles;

impl PublicFiles for NoFiles {
    fn read(&self, _relative: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    fn is_dir(&self, _relative: &str) -> bool {
        false
    }
}

/// The file at `relative` (a [`clean_path`]; a directory means its `index.html`), if the folder
/// has one: 200 with its bytes, or 304 when `If-None-Match` already names its `ETag`.
/// `Ok(None)`: no such file.
pub fn serve(
    request: &Request,
    files: &dyn PublicFiles,
    relative: &str,
) -> Result<Option<Response>, ApiError> {
    let relative = if relative.is_empty() {
        INDEX.to_string()
    } else if files.is_dir(relative) {
        format!("{relative}/{INDEX}")
    } else {
        relative.to_string()
    };
    let bytes = match files.read(&relative) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(reason) => {
            return Err(ApiError::Forbidden(format!(
                "'{}' cannot be served: {reason}",
                request.path
            )));
        }
    };
    let etag = format!("\"{:016x}\"", fnv1a(&bytes));
    let cached = request.if_none_match.as_deref().is_some_and(|header| {
        header
            .split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
    });
    let response = if cached {
        Response::empty(304)
    } else {
        Response::empty(200)
            .with_header("content-type", content_type(&relative))
            .with_body(bytes)
    };
    Ok(Some(
        response
            .with_header("etag", etag)
            .with_header("cache-control", "no-cache"),
    ))
}

/// `path` percent-decoded, without empty segments, as a path relative to the folder.
pub fn clean_path(path: &str) -> Result<String, ApiError> {
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let segment = percent::decode(raw)
            .map_err(|err| ApiError::BadRequest(format!("path '{path}': {err}")))?;
        if segment == "." || segment == ".." || segment.contains(['/', '\\', '\0']) {
            return Err(ApiError::BadRequest(format!(
                "path '{path}' is not allowed: it tries to leave the public folder"
            )));
        }
        segments.push(segment);
    }
    Ok(segments.join("/"))
}

/// Whether the last segment of `relative` (a [`clean_path`]) looks like a file name: it holds a
/// `.`, as in `app.js` or `logo.svg`. Client-side routes (`/list`, `/todo/7`) do not.
pub fn names_a_file(relative: &str) -> bool {
    relative
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
}

/// The `Content-Type` for a file name.
pub fn content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, 64 bits: a content hash for `ETag`s, stable across hosts and restarts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_every_way_out() {
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E",
            "/a/%2fetc%2fpasswd",
            "/a%5c..%5cb",
            "/./x",
            "/x%00",
        ] {
            assert!(
                matches!(clean_path(bad), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn clean_path_keeps_ordinary_names() -> Result<(), ApiError> {
        assert_eq!(clean_path("/")?, "");
        assert_eq!(clean_path("//assets//app.js")?, "assets/app.js");
        assert_eq!(clean_path("/caf%C3%A9.txt")?, "café.txt");
        assert_eq!(clean_path("/v1.2/a..b")?, "v1.2/a..b");
        Ok(())
    }

    #[test]
    fn names_a_file_looks_at_the_last_segment_only() {
        for file in [
            "app.js",
            "assets/app.css",
            "v1.2/a..b",
            ".env",
            "index.html",
        ] {
            assert!(names_a_file(file), "{file}");
        }
        for route in ["", "list", "deep/link", "v1.2/todos"] {
            assert!(!names_a_file(route), "{route}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("a.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("x/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("f.woff2"), "font/woff2");
        assert_eq!(content_type("logo.svg"), "image/svg+xml");
        assert_eq!(content_type("README"), "application/octet-stream");
    }
}
