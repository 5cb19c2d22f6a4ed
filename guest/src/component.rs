//! The todo component's thin adapter between WIT and the pure logic: read the `wasi:http`
//! request ([`wasi_http`], shared with the files component), call [`crate::handle`] with the
//! host's `wasi:keyvalue` bucket, write the response.
//!
//! This is the only module that touches bindings, and it keeps nothing between calls: there is
//! no "between", since the host makes a fresh instance for every request. It has no file
//! system: the public folder is the files component's (`guest/files/`). Without the `component`
//! feature (this crate as a library inside the files component) there is nothing here.
#![cfg(feature = "component")]

mod wasi_http;

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
#[cfg(feature = "draft2")]
use bindings::wasi::config0_2_0_draft_2024_09_27::store as wasi_config;
#[cfg(not(feature = "draft2"))]
use bindings::wasi::config0_2_0_rc_1::store as wasi_config;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
#[cfg(not(feature = "draft2"))]
use bindings::wasi::keyvalue0_2_0_draft::{atomics, batch, store as wasi_store};
#[cfg(feature = "draft2")]
use bindings::wasi::keyvalue0_2_0_draft2::{atomics, batch, store as wasi_store};

use crate::context::{Config, Context, Entropy};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::kv::{KeyPage, Kv, KvError, Values};
use crate::layout::BUCKET;
use crate::retry::with_race_retries;
use crate::time::Timestamp;

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        crate::retry::new_request();
        wasi_http::serve(&request, response_out, |request| {
            let now = wall_clock::now();
            let now = Timestamp {
                seconds: now.seconds,
                nanoseconds: now.nanoseconds,
            };
            let ctx = Context {
                kv: &WasiKv::default(),
                now,
                config: &WasiConfig,
                entropy: &WasiRandom,
            };
            crate::handle_in(request, &ctx)
        });
    }
}

// The export glue is generated unsafe code too; it only forwards to `Component::handle`.
#[allow(unsafe_code)]
mod export {
    use super::{Component, bindings};
    bindings::export!(Component with_types_in bindings);
}

/// The host's bucket [`BUCKET`], opened on first use (the page needs no bucket at all).
#[derive(Default)]
struct WasiKv {
    bucket: OnceCell<Result<wasi_store::Bucket, KvError>>,
    value_limit: OnceCell<Option<usize>>,
}

/// The configuration key under which a host may say the most bytes it stores under one key
/// (`todo-host` sets it from `--kv-max-value`); read only when a value may be left out.
pub const VALUE_LIMIT_KEY: &str = "kv_max_value";

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

    fn value_limit(&self) -> Option<usize> {
        *self.value_limit.get_or_init(|| {
            wasi_config::get(VALUE_LIMIT_KEY)
                .ok()
                .flatten()
                .and_then(|text| text.trim().parse().ok())
        })
    }
}

/// The operator's settings, as the host's `wasi:config/store` serves them.
struct WasiConfig;

impl Config for WasiConfig {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        wasi_config::get(key).map_err(|err| match err {
            wasi_config::Error::Upstream(message) | wasi_config::Error::Io(message) => message,
        })
    }
}

/// The host's `wasi:random/random`: cryptographically secure, as tokens and salts need.
struct WasiRandom;

impl Entropy for WasiRandom {
    fn fill(&self, bytes: &mut [u8]) {
        let random = bindings::wasi::random::random::get_random_bytes(bytes.len() as u64);
        bytes.copy_from_slice(&random[..bytes.len()]);
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
