//! What the host reads of a request before any guest code runs: the request head is checked
//! (URI and header size: 414/431; `Host`: 400) and the body read up to its limit (413) and its
//! deadline (408). This happens before the request takes a concurrency slot, so a client that
//! sends too much, too slowly or nonsense costs the host no instance and blocks no one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use crate::limits::Limits;
use crate::refusal::Refusal;

/// Checks the request head and reads the body, within the limits.
pub async fn read_request<B>(
    request: hyper::Request<B>,
    limits: &Limits,
) -> Result<hyper::Request<Full<Bytes>>, Refusal>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri {
        return Err(Refusal::new(
            414,
            format!(
                "the request target is {uri_len} bytes; the limit is {}",
                limits.max_uri
            ),
        ));
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > limits.max_headers {
        return Err(Refusal::new(
            431,
            format!(
                "the request headers are {header_bytes} bytes; the limit is {}",
                limits.max_headers
            ),
        ));
    }
    check_host(&request)?;
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    let reading = read_body(body, limits.max_body, declared);
    let Ok(read) = tokio::time::timeout(limits.body_timeout, reading).await else {
        return Err(Refusal::new(
            408,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(limits.body_timeout)
            ),
        ));
    };
    let body = match read {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(Refusal::new(
                413,
                format!("request body is larger than {} bytes", limits.max_body),
            ));
        }
        Err(BodyError::Broken(err)) => {
            return Err(Refusal::new(
                400,
                format!("the request body could not be read: {err}"),
            ));
        }
    };
    Ok(hyper::Request::from_parts(parts, Full::new(body)))
}

/// RFC 9112 §3.2: a request carries exactly one `Host`, and it is a valid authority
/// (`host[:port]`, no user info); otherwise 400. Absolute URLs in answers (`url`, `Location`) are
/// built from it, so a forged one (`a b`, `x/y?z`, `"><script>`) must never reach the guest.
fn check_host<B>(request: &hyper::Request<B>) -> Result<(), Refusal> {
    let mut hosts = request.headers().get_all(hyper::header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(Refusal::new(
            400,
            "the request has more than one Host header".to_string(),
        ));
    }
    let Some(host) = first else {
        // HTTP/1.0 may omit it, but `wasi:http` hands the guest an authority, and answers
        // carry absolute URLs: without one (here or in an absolute-form target) there is none.
        if request.uri().authority().is_none() {
            return Err(Refusal::new(
                400,
                "the request needs a Host header".to_string(),
            ));
        }
        return Ok(());
    };
    let valid = host
        .to_str()
        .ok()
        .and_then(|text| text.parse::<http::uri::Authority>().ok())
        .is_some_and(|authority| !authority.host().is_empty() && !authority.as_str().contains('@'));
    if valid {
        Ok(())
    } else {
        Err(Refusal::new(
            400,
            format!(
                "the Host header {:?} is not a valid host[:port]",
                String::from_utf8_lossy(host.as_bytes())
            ),
        ))
    }
}

/// How much of an oversized body the host reads and discards before it answers 413. A client
/// that is still sending when the answer comes and the connection closes may see a reset instead
/// of the 413; reading on a while (a "lingering close") lets ordinary clients read their answer.
const DRAIN_LIMIT: usize = 16 << 20;
/// How long the host keeps reading an oversized body before it answers 413 anyway.
const DRAIN_TIME: Duration = Duration::from_secs(2);

enum BodyError {
    TooLarge,
    Broken(String),
}

/// Reads `body` up to `limit` bytes. Past the limit (or when `declared` already is), it keeps
/// reading and discarding up to [`DRAIN_LIMIT`] for [`DRAIN_TIME`] so the 413 can be read.
async fn read_body<B>(mut body: B, limit: usize, declared: Option<u64>) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut too_large = declared.is_some_and(|length| length > limit as u64);
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    let drain_deadline = Instant::now() + DRAIN_TIME;
    loop {
        let next = if too_large {
            match tokio::time::timeout_at(drain_deadline, body.frame()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|err| BodyError::Broken(err.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            too_large = true;
            kept.clear();
        }
        if !too_large {
            kept.extend_from_slice(data);
        }
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    if too_large {
        Err(BodyError::TooLarge)
    } else {
        Ok(kept.freeze())
    }
}
