//! Per-request limits: what one request, and the instance serving it, may use. Each has a flag
//! (see [`crate::config::Cli`]) and a default here with the reason for its size.
//!
//! | limit | when hit, the client sees |
//! |---|---|
//! | linear memory per instance | the guest's allocation fails, it traps: 500 JSON |
//! | wall-clock deadline per request (epoch interruption) | 504 JSON, within the deadline plus one tick |
//! | request body size | 413 JSON before the guest runs (`Content-Length` or a chunked body) |
//! | response body size | 500 JSON: the guest's answer is dropped |
//! | concurrent requests | a short wait, then 503 JSON with `Retry-After` |
//! | URI and header size | 414 / 431 JSON before the guest runs |
//! | time to send the request head, and idle time between requests on a connection | the connection is closed (no answer: there is no request yet) |
//! | time to send the request body | 408 JSON; a body still arriving holds no instance and no concurrency slot |
//! | open connections | new connections wait in the listen backlog until one closes |
//! | KV value size | the instance is stopped: 413 JSON, logged as the component's fault |
//! | KV bytes read per request | the instance is stopped: 500 JSON, logged as the component's fault |
//! | KV keys per backend round trip | nothing: a larger batch is split into several round trips |

use std::time::Duration;

/// Linear memory one instance may grow to. The todo component runs in about 2 MiB; 64 MiB leaves
/// room for large pages of todos while a thousand instances stay within a small machine.
pub const DEFAULT_MAX_MEMORY: usize = 64 << 20;
/// How long one request may run, guest and host calls together. Generous for a todo API (which
/// answers in well under a millisecond) so that only a broken guest ever meets it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body. Todos are small; the legacy bulk delete is the largest honest body.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// The largest response body. The whole answer is held before it is sent, so that a guest that
/// fails half-way still gets its client a well-formed 5xx; 16 MiB is some 40,000 todos.
pub const DEFAULT_MAX_RESPONSE: usize = 16 << 20;
/// Requests served at once. Each holds one pooled instance; beyond this, requests wait briefly
/// and are then refused, so overload costs a 503 rather than memory.
pub const DEFAULT_MAX_CONCURRENCY: usize = 512;
/// How long a request waits for a free slot before it is refused with 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a client may take to send a request body. It is read before the request takes a
/// concurrency slot, so a client that stalls holds only its own connection; 10 s lets a slow
/// mobile link send a megabyte.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to send a request head, counted from the moment it waits for
/// one: so it is also how long a keep-alive connection may sit idle between requests. Browsers
/// reopen idle connections freely; 10 s keeps a flood of half-sent heads from holding
/// descriptors for long.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once. Each costs a file descriptor and a few KiB; past the cap, new
/// connections wait in the kernel's listen backlog instead of failing. The process's
/// descriptor limit (`ulimit -n`) lowers it at start-up if it is smaller.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The longest request target (path and query). Browsers and proxies commonly stop at 8 KiB.
pub const DEFAULT_MAX_URI: usize = 8 << 10;
/// The most header bytes (names and values) a request may carry.
pub const DEFAULT_MAX_HEADERS: usize = 32 << 10;
/// The largest value a guest may store under one key.
pub const DEFAULT_KV_MAX_VALUE: usize = 1 << 20;
/// The most keys the host sends its backend in one round trip: a guest's larger `get-many`,
/// `set-many` or `delete-many` is split, so no one call holds the backend long. A page of
/// `list-keys`.
pub const DEFAULT_KV_MAX_BATCH_KEYS: usize = 1000;
/// The most value bytes one request may read from the store, all calls together: a guest cannot
/// make the host hold more for it than its own memory could take.
pub const DEFAULT_KV_MAX_READ_PER_REQUEST: usize = 64 << 20;

/// How often the epoch ticker advances. The deadline is checked, and a long-running guest yields
/// its thread to other requests, once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Every per-request limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_memory: usize,
    pub request_timeout: Duration,
    pub max_body: usize,
    pub max_response: usize,
    pub max_concurrency: usize,
    pub queue_timeout: Duration,
    pub max_uri: usize,
    pub max_headers: usize,
    pub body_timeout: Duration,
    pub kv: KvLimits,
}

/// What a connection may hold, before any request exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What one request may do with the key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    pub max_value: usize,
    pub max_batch_keys: usize,
    pub max_read_per_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory: DEFAULT_MAX_MEMORY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            max_response: DEFAULT_MAX_RESPONSE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_uri: DEFAULT_MAX_URI,
            max_headers: DEFAULT_MAX_HEADERS,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            kv: KvLimits::default(),
        }
    }
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_value: DEFAULT_KV_MAX_VALUE,
            max_batch_keys: DEFAULT_KV_MAX_BATCH_KEYS,
            max_read_per_request: DEFAULT_KV_MAX_READ_PER_REQUEST,
        }
    }
}

/// Parses a size such as `64MiB`, `512KiB`, `1048576` or `1.5GiB` (the `bytesize` crate:
/// `KiB`/`MiB`/`GiB` are binary, `KB`/`MB`/`GB` and `K`/`M`/`G` decimal).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.trim().parse().map_err(|err| {
        format!("'{text}' is not a size ({err}): use e.g. 1048576, 512KiB or 64MiB")
    })?;
    usize::try_from(size.as_u64()).map_err(|_| format!("'{text}' is too large"))
}

/// Parses a duration such as `10s`, `250ms` or `2m` (the `humantime` crate: units are required,
/// and may be combined, as in `1m 30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("'{text}' is not a duration ({err}): use e.g. 10s, 250ms or 2m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("512k"), Ok(512_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").unwrap_err().contains("'lots'"));
        assert!(parse_size("5parsecs").unwrap_err().contains("'5parsecs'"));
    }

    #[test]
    fn durations_take_ms_s_and_m() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").unwrap_err().contains("'soon'"));
    }
}
