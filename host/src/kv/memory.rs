//! A process-local backend: every request of this process shares it, nothing survives the process.
//! For tests, demos and benchmarks; `--store memory://`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    BackendConfig, BackendSettings, KeyPage, KvBackend, KvError, LIST_PAGE_SIZE, OpenOptions,
    Registration, add_to_counter, parse_counter, settings_from_table,
};

/// `--store memory://`; runtime config `type = "memory"`.
pub const REGISTRATION: Registration = Registration {
    scheme: "memory",
    url_shape: "memory://",
    about: "lost on exit",
    runtime_config_types: &["memory"],
    from_url: |url| {
        anyhow::ensure!(
            url == "memory://",
            "store URL '{url}' has more than memory://: an in-memory store takes no settings"
        );
        Ok(BackendConfig::new(MemorySettings {}))
    },
    from_runtime_config: |label, entry, _base| {
        Ok(BackendConfig::new(settings_from_table::<MemorySettings>(
            label, entry,
        )?))
    },
};

/// An in-memory store has no settings; each one opened is a new, empty map.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MemorySettings {}

#[async_trait]
impl BackendSettings for MemorySettings {
    async fn open(&self, _: &OpenOptions) -> anyhow::Result<std::sync::Arc<dyn KvBackend>> {
        Ok(std::sync::Arc::new(MemoryBackend::new()))
    }
}

/// Buckets of sorted keys behind one lock.
///
/// A `std::sync::Mutex` rather than an async one: every critical section is a few map operations
/// that never await, so holding it is shorter than any task switch would be.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    buckets: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, BTreeMap<String, Vec<u8>>>) -> R) -> R {
        // A panic while holding the lock cannot leave a map half-changed (each operation is a
        // single map call), so a poisoned lock is still safe to use.
        let mut guard = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[async_trait]
impl KvBackend for MemoryBackend {
    fn summary(&self) -> String {
        "in memory (not durable)".to_string()
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.with(|b| b.get(bucket).and_then(|m| m.get(key)).cloned()))
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.with(|b| {
            b.entry(bucket.to_string())
                .or_default()
                .insert(key.to_string(), value.to_vec())
        });
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.with(|b| b.get_mut(bucket).and_then(|m| m.remove(key)));
        Ok(())
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        // The cursor is an offset into the sorted keys: simple and enough for a local map.
        let start = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        Ok(self.with(|b| {
            let Some(map) = b.get(bucket) else {
                return KeyPage::default();
            };
            let keys: Vec<String> = map
                .keys()
                .skip(start)
                .take(LIST_PAGE_SIZE)
                .cloned()
                .collect();
            let end = start.saturating_add(keys.len());
            let cursor = (keys.len() == LIST_PAGE_SIZE && end < map.len()).then_some(end as u64);
            KeyPage { keys, cursor }
        }))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        self.with(|b| {
            let map = b.entry(bucket.to_string()).or_default();
            let current = match map.get(key) {
                Some(value) => parse_counter(bucket, key, value)?,
                None => 0,
            };
            let next = add_to_counter(bucket, key, current, delta)?;
            map.insert(key.to_string(), next.to_string().into_bytes());
            Ok(next)
        })
    }

    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        Ok(self.with(|b| {
            let map = b.entry(bucket.to_string()).or_default();
            if map.get(key).map(Vec::as_slice) != expected {
                return false;
            }
            map.insert(key.to_string(), value.to_vec());
            true
        }))
    }
}
