//! `wasi:http` to the plain [`Request`] and [`Response`] and back: the half of a component's
//! adapter that both components share. The todo component includes it as `component::wasi_http`;
//! the files component (`guest/files/`) compiles this same file against its own bindings, so it
//! is written once and each component keeps the bindings of its own world.
//!
//! It expects its parent module to hold `bindings` (wit-bindgen's, for a world that exports
//! `wasi:http/incoming-handler`) and to have [`ApiError`], [`Request`] and [`Response`] in scope.

use super::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme,
};
use super::bindings::wasi::io::streams::StreamError;
use super::{ApiError, Request, Response};

/// A `wasi:io` output stream accepts at most this many bytes per write.
const WRITE_CHUNK: usize = 4096;

/// One request, the whole way: read it, `answer` it, write the answer (a request that cannot be
/// read gets its error's JSON response).
pub fn serve(
    request: &IncomingRequest,
    out: ResponseOutparam,
    answer: impl FnOnce(&Request) -> Response,
) {
    let response = match read_request(request) {
        Ok(request) => answer(&request),
        Err(err) => err.into_response(),
    };
    write_response(response, out);
}

/// The request as the pure logic takes it: method, target, authority, the headers it reads,
/// and the body of a method that carries one.
fn read_request(request: &IncomingRequest) -> Result<Request, ApiError> {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Other(other) => other.to_ascii_uppercase(),
    };
    let path_and_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let mut parsed = Request::new(&method, &path_and_query);
    parsed.method = method;
    parsed.scheme = match request.scheme() {
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(other)) => other,
        Some(Scheme::Http) | None => "http".to_string(),
    };
    // Every header in one host call: a call per name would cost more than the few bytes copied.
    let mut host = None;
    for (name, value) in request.headers().entries() {
        let Ok(value) = String::from_utf8(value) else {
            continue;
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "host" => &mut host,
            "content-type" => &mut parsed.content_type,
            "if-none-match" => &mut parsed.if_none_match,
            "authorization" => &mut parsed.authorization,
            "origin" => &mut parsed.origin,
            "sec-fetch-site" => &mut parsed.fetch_site,
            "cookie" => {
                // HTTP/2 may split cookies over several fields; they are one list (RFC 9113).
                parsed.cookie = Some(match parsed.cookie.take() {
                    Some(earlier) => format!("{earlier}; {value}"),
                    None => value,
                });
                continue;
            }
            _ => continue,
        };
        // The first of a repeated field counts, as `Fields::get(..).first()` gave before.
        slot.get_or_insert(value);
    }
    if let Some(authority) = request.authority().filter(|a| !a.is_empty()).or(host) {
        parsed.authority = authority;
    }
    // Reading a body, even an empty one, costs several host calls and a wait for its end; the
    // methods that carry none skip it.
    if !matches!(parsed.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        parsed.body = read_body(request)?;
    }
    Ok(parsed)
}

/// The whole body. Its size is the host's to bound (`--max-body`): the host answers 413 before
/// the component runs, so a second, guest-side limit could only disagree with it.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let body = request
        .consume()
        .map_err(|()| ApiError::BadRequest("the request body was already taken".into()))?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| ApiError::BadRequest("the request body cannot be read".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(err)) => {
                    return Err(ApiError::BadRequest(format!(
                        "the request body broke off: {}",
                        err.to_debug_string()
                    )));
                }
            }
        }
    }
    Ok(bytes)
}

/// Sends `response`: status and headers, then the body in [`WRITE_CHUNK`]s.
fn write_response(response: Response, out: ResponseOutparam) {
    let fields: Vec<(String, Vec<u8>)> = response
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    // Our own header names and values are valid; an empty header set is the fallback.
    let headers = Fields::from_list(&fields).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    {
        let Ok(stream) = body.write() else {
            return;
        };
        for chunk in response.body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The client went away; nothing more can be said to it.
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}
