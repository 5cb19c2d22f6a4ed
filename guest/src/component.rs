//! The thin adapter between WIT and the pure logic: read the `wasi:http` request, call
//! [`crate::handle`] with the host's `wasi:keyvalue` bucket, write the response.
//!
//! This is the only module that touches bindings, and it keeps nothing between calls: there is
//! no "between", since the host makes a fresh instance for every request.

// Generated bindings are the one place unsafe code lives: the ABI glue wit-bindgen writes.
#[allow(unsafe_code)]
mod bindings {
    #[cfg(not(feature = "draft2"))]
    wit_bindgen::generate!({
        path: "../wit",
        world: "todo:app/app",
        generate_all,
        pub_export_macro: true,
    });
    #[cfg(feature = "draft2")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "todo:app/app-draft2",
        generate_all,
        pub_export_macro: true,
    });
}

use std::cell::OnceCell;
use std::time::Duration;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::clocks::{monotonic_clock, wall_clock};
use bindings::wasi::filesystem::{preopens, types as fs};
use bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme,
};
use bindings::wasi::io::streams::StreamError;
#[cfg(not(feature = "draft2"))]
use bindings::wasi::keyvalue0_2_0_draft::{atomics, batch, store as wasi_store};
#[cfg(feature = "draft2")]
use bindings::wasi::keyvalue0_2_0_draft2::{atomics, batch, store as wasi_store};

use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::kv::{KeyPage, Kv, KvError, Values};
use crate::layout::BUCKET;
use crate::public::{MAX_FILE_BYTES, PublicFiles};
use crate::retry::with_race_retries;
use crate::time::Timestamp;

/// A `wasi:io` output stream accepts at most this many bytes per write.
const WRITE_CHUNK: usize = 4096;

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        crate::retry::new_request();
        let response = match read_request(&request) {
            Ok(request) => {
                let kv = WasiKv::default();
                let now = wall_clock::now();
                crate::handle_with_files(
                    &request,
                    &kv,
                    &PublicDir::default(),
                    Timestamp {
                        seconds: now.seconds,
                        nanoseconds: now.nanoseconds,
                    },
                )
            }
            Err(err) => err.into_response(),
        };
        write_response(response, response_out);
    }
}

// The export glue is generated unsafe code too; it only forwards to `Component::handle`.
#[allow(unsafe_code)]
mod export {
    use super::{Component, bindings};
    bindings::export!(Component with_types_in bindings);
}

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
    let headers = request.headers();
    if let Some(authority) = request
        .authority()
        .filter(|a| !a.is_empty())
        .or_else(|| header(&headers, "host"))
    {
        parsed.authority = authority;
    }
    parsed.content_type = header(&headers, "content-type");
    parsed.if_none_match = header(&headers, "if-none-match");
    // Reading a body, even an empty one, costs several host calls and a wait for its end; the
    // methods that carry none skip it.
    if !matches!(parsed.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        parsed.body = read_body(request)?;
    }
    Ok(parsed)
}

fn header(headers: &Fields, name: &str) -> Option<String> {
    let values = headers.get(name);
    values
        .first()
        .and_then(|value| String::from_utf8(value.clone()).ok())
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

/// The host's bucket [`BUCKET`], opened on first use (the page needs no bucket at all).
#[derive(Default)]
struct WasiKv {
    bucket: OnceCell<Result<wasi_store::Bucket, KvError>>,
}

impl WasiKv {
    fn bucket(&self) -> Result<&wasi_store::Bucket, KvError> {
        self.bucket
            .get_or_init(|| {
                match wasi_store::open(BUCKET) {
                    // Some hosts have one anonymous store and no named ones (wasmtime's
                    // in-memory store answers only to ""): use it rather than fail.
                    Err(wasi_store::Error::NoSuchStore) => wasi_store::open(""),
                    opened => opened,
                }
                .map_err(kv_error)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn kv_error(err: wasi_store::Error) -> KvError {
    KvError(match err {
        wasi_store::Error::NoSuchStore => format!("the host has no store '{BUCKET}'"),
        wasi_store::Error::AccessDenied => format!("access to store '{BUCKET}' was denied"),
        wasi_store::Error::Other(message) => message,
    })
}

impl Kv for WasiKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket()?.get(key).map_err(kv_error)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket()?.set(key, value).map_err(kv_error)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.bucket()?.delete(key).map_err(kv_error)
    }

    #[cfg(not(feature = "draft2"))]
    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        let bucket = self.bucket()?;
        with_race_retries(
            || atomics::increment(bucket, key, delta).map_err(kv_error),
            monotonic_now,
            pause,
            jitter,
        )
    }

    #[cfg(feature = "draft2")]
    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        let delta =
            i64::try_from(delta).map_err(|_| KvError(format!("delta {delta} too large")))?;
        let bucket = self.bucket()?;
        let sum = with_race_retries(
            || atomics::increment(bucket, key, delta).map_err(kv_error),
            monotonic_now,
            pause,
            jitter,
        )?;
        u64::try_from(sum).map_err(|_| KvError(format!("counter '{key}' is negative: {sum}")))
    }

    #[cfg(not(feature = "draft2"))]
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        // This draft's cursors are numbers; ours came from the same host.
        let cursor = cursor
            .map(|text| {
                text.parse::<u64>()
                    .map_err(|_| KvError(format!("'{text}' is not a cursor of this host")))
            })
            .transpose()?;
        let page = self.bucket()?.list_keys(cursor).map_err(kv_error)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor.map(|c| c.to_string()),
        })
    }

    #[cfg(feature = "draft2")]
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        let page = self.bucket()?.list_keys(cursor).map_err(kv_error)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    #[cfg(not(feature = "draft2"))]
    fn get_many(&self, keys: &[String]) -> Result<Values, KvError> {
        batch::get_many(self.bucket()?, keys).map_err(kv_error)
    }

    #[cfg(feature = "draft2")]
    fn get_many(&self, keys: &[String]) -> Result<Values, KvError> {
        let pairs = batch::get_many(self.bucket()?, keys).map_err(kv_error)?;
        Ok(pairs
            .into_iter()
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect())
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        batch::set_many(self.bucket()?, entries).map_err(kv_error)
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        batch::delete_many(self.bucket()?, keys).map_err(kv_error)
    }
}

/// The folder the host mounts read-only at `/public` (`--public DIR`); absent, every read misses.
#[derive(Default)]
struct PublicDir {
    /// The preopened folder, looked up on first use: a request reads its path's status and then
    /// the file, and each lookup hands over every preopen as a resource.
    root: OnceCell<Option<fs::Descriptor>>,
}

/// Where the host mounts the public folder in the guest's file system.
const PUBLIC_ROOT: &str = "/public";

impl PublicDir {
    /// The preopened public folder, if the host mounted one.
    fn root(&self) -> Option<&fs::Descriptor> {
        self.root
            .get_or_init(|| {
                preopens::get_directories()
                    .into_iter()
                    .find(|(_, path)| path.trim_end_matches('/') == PUBLIC_ROOT)
                    .map(|(dir, _)| dir)
            })
            .as_ref()
    }
}

impl PublicFiles for PublicDir {
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(root) = self.root() else {
            return Ok(None);
        };
        let stat = match root.stat_at(fs::PathFlags::SYMLINK_FOLLOW, relative) {
            Ok(stat) => stat,
            Err(fs::ErrorCode::NoEntry | fs::ErrorCode::NotDirectory) => return Ok(None),
            Err(code) => return Err(code.to_string()),
        };
        if stat.type_ != fs::DescriptorType::RegularFile {
            return Ok(None);
        }
        if stat.size > MAX_FILE_BYTES {
            return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
        }
        let file = root
            .open_at(
                fs::PathFlags::SYMLINK_FOLLOW,
                relative,
                fs::OpenFlags::empty(),
                fs::DescriptorFlags::READ,
            )
            .map_err(|code| code.to_string())?;
        let mut bytes = Vec::with_capacity(usize::try_from(stat.size).unwrap_or(0));
        loop {
            let (chunk, end) = file
                .read(MAX_FILE_BYTES + 1 - bytes.len() as u64, bytes.len() as u64)
                .map_err(|code| code.to_string())?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
            }
            if end || chunk.is_empty() {
                return Ok(Some(bytes));
            }
        }
    }

    fn is_dir(&self, relative: &str) -> bool {
        self.root().is_some_and(|root| {
            root.stat_at(fs::PathFlags::SYMLINK_FOLLOW, relative)
                .is_ok_and(|stat| stat.type_ == fs::DescriptorType::Directory)
        })
    }
}

/// The host's monotonic clock, as time since its (arbitrary) origin.
fn monotonic_now() -> Duration {
    Duration::from_nanos(monotonic_clock::now())
}

/// Waits `duration` on the host's clock; the host runs other requests meanwhile.
fn pause(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    monotonic_clock::subscribe_duration(nanos).block();
}

/// A random fraction in `0.0..1.0` for retry jitter, from the host's randomness.
fn jitter() -> f64 {
    let random = bindings::wasi::random::random::get_random_u64();
    (random >> 11) as f64 / (1u64 << 53) as f64
}
