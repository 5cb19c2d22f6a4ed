//! The host's key-value store: the one stateful part of the system.
//!
//! Every request's instance reaches the same [`KvBackend`], held as `Arc<dyn KvBackend>`, through
//! `wasi:keyvalue` ([`wasi`]). One file per backend:
//! * [`memory`]: a process-local map; fast, gone when the process stops;
//! * [`sqlite`]: one SQLite file (WAL); the durable embedded default;
//! * [`redis`]: a Redis server shared by many host processes; the scale-out store.
//!
//! [`open`] turns a `--store` URL into a backend.

pub mod memory;
pub mod redis;
pub mod sqlite;
pub mod wasi;
pub mod wasi_draft2;

use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;

/// Keys per `list_keys` page: bounded, so one call never carries a whole large bucket.
pub const LIST_PAGE_SIZE: usize = 1000;

/// A backend failure, as the guest hears it (`wasi:keyvalue` `error::other`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

impl KvError {
    /// An error that names what failed and why.
    pub fn new(context: impl std::fmt::Display, cause: impl std::fmt::Display) -> Self {
        KvError(format!("{context}: {cause}"))
    }
}

/// The answer of a batch get: per key asked for, the key and its value, or `None`.
pub type Values = Vec<Option<(String, Vec<u8>)>>;

/// One page of keys; `cursor` is where the next page starts, `None` after the last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<u64>,
}

/// A key-value store with named buckets, shared by every request.
///
/// Object-safe and async so that one `Arc<dyn KvBackend>` serves all requests whatever the
/// backend. The batch operations have default bodies built from the single ones; a backend
/// overrides them where it can do better (one transaction, one round trip).
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// What the start-up line says about this store, e.g. `SQLite at ./todo.db`.
    fn summary(&self) -> String;

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError>;
    /// One page of the bucket's keys starting at `cursor` (`None`: from the start), at most
    /// [`LIST_PAGE_SIZE`] keys.
    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError>;
    /// Atomically adds `delta` (which may be negative) to the decimal counter at `key`
    /// (missing: 0); returns the sum. Concurrent increments, from any number of requests or
    /// processes, never lose one.
    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError>;

    /// Sets `key` to `value` only if its value is still `expected` (`None`: the key is absent);
    /// returns whether it did. Atomic against every other writer.
    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError>;

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(bucket, key).await?.map(|v| (key.clone(), v)));
        }
        Ok(values)
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        for (key, value) in entries {
            self.set(bucket, key, value).await?;
        }
        Ok(())
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        for key in keys {
            self.delete(bucket, key).await?;
        }
        Ok(())
    }
}

/// Parses a counter value as stored by `increment` (decimal ASCII, as Redis `INCRBY` keeps it).
pub fn parse_counter(bucket: &str, key: &str, value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            KvError(format!(
                "cannot increment '{key}' in bucket '{bucket}': its value is not a decimal counter"
            ))
        })
}

/// `current + delta`, or an error that names the counter.
pub fn add_to_counter(bucket: &str, key: &str, current: i64, delta: i64) -> Result<i64, KvError> {
    current.checked_add(delta).ok_or_else(|| {
        KvError(format!(
            "cannot increment '{key}' in bucket '{bucket}' by {delta}: it would overflow 64 bits"
        ))
    })
}

/// Opens the store named by a `--store` URL: `memory://`, `sqlite://PATH` or
/// `redis://HOST:PORT[/DB]`.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn KvBackend>> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("store URL '{url}' has no scheme: use sqlite://PATH, redis://HOST:PORT or memory://");
    };
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryBackend::new())),
        "sqlite" => {
            if rest.is_empty() {
                bail!("store URL '{url}' names no file: use sqlite://PATH, e.g. sqlite://todo.db");
            }
            let backend = sqlite::SqliteBackend::open(rest.as_ref())
                .await
                .with_context(|| format!("cannot open store '{url}'"))?;
            Ok(Arc::new(backend))
        }
        "redis" => Ok(Arc::new(redis::RedisBackend::connect(url).await?)),
        other => bail!(
            "store URL '{url}' has unknown scheme '{other}': use sqlite://PATH, redis://HOST:PORT or memory://"
        ),
    }
}
