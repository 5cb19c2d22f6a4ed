//! The key-value operations the todo logic needs, as a small trait.
//!
//! In the component this is backed by the host's `wasi:keyvalue` bucket; in native tests and in
//! the native baseline server by [`MemoryKv`] or any other implementation. The operations mirror
//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) one for one, so the adapter stays thin.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// A key-value store failure, with the store's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

/// The most keys one batch call ([`Kv::get_many`], [`Kv::delete_many`]) names: the guest's own
/// unit, the largest page (1,000 todos) in one call, not a copy of any host's limit. A batch is
/// one round trip to the store, so a page's todos cost one trip however many there are; a host
/// with a lower limit splits the batch itself.
pub const BATCH: usize = 1000;

/// The answer of a batch get: per key asked for, the key and its value, or `None`.
pub type Values = Vec<Option<(String, Vec<u8>)>>;

/// One page of `list_keys`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// Keys on this page.
    pub keys: Vec<String>,
    /// Where the next page starts, opaque (a number in one draft of `wasi:keyvalue`, a string in
    /// the other); `None` when this was the last page.
    pub cursor: Option<String>,
}

/// One bucket of a key-value store.
pub trait Kv {
    /// The value of `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key` to `value`.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Deletes `key`; deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), KvError>;
    /// Atomically adds `delta` to the counter at `key` (missing counts as 0) and returns the sum.
    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError>;
    /// One page of keys, starting at `cursor` (`None`: the first page).
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError>;
    /// The values of `keys`, in order; `None` where a key has no value.
    ///
    /// Callers name at most [`BATCH`] keys; a host with a lower limit splits.
    fn get_many(&self, keys: &[String]) -> Result<Values, KvError>;
    /// Sets every key of `entries` to its value, in one call; the same bound as
    /// [`Kv::get_many`]. Not atomic: a failure may leave some set.
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError>;
    /// Deletes all of `keys`; the same bound as [`Kv::get_many`].
    fn delete_many(&self, keys: &[String]) -> Result<(), KvError>;
    /// The most bytes this store keeps under one key, when its host says (`None`: no limit
    /// known). Only values the logic may leave out consult it (an index page); a todo is stored
    /// or refused by the host as it is.
    fn value_limit(&self) -> Option<usize> {
        None
    }
}

/// A bucket seen through a key prefix: every key the logic names is `prefix` + key. A signed-in
/// user's list is the public list's layout under `user/<name>/`, so the todo logic needs no
/// notion of users, and no key it can name reaches outside the prefix.
pub struct PrefixedKv<'a> {
    inner: &'a dyn Kv,
    prefix: String,
}

impl<'a> PrefixedKv<'a> {
    /// `inner` with every key under `prefix`.
    pub fn new(inner: &'a dyn Kv, prefix: String) -> Self {
        Self { inner, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn keys(&self, keys: &[String]) -> Vec<String> {
        keys.iter().map(|key| self.key(key)).collect()
    }
}

impl Kv for PrefixedKv<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(&self.key(key))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.set(&self.key(key), value)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.inner.delete(&self.key(key))
    }

    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        self.inner.increment(&self.key(key), delta)
    }

    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        // The whole bucket's pages, filtered: a page may come back empty with a cursor.
        let page = self.inner.list_keys(cursor)?;
        Ok(KeyPage {
            keys: page
                .keys
                .into_iter()
                .filter_map(|key| key.strip_prefix(&self.prefix).map(str::to_string))
                .collect(),
            cursor: page.cursor,
        })
    }

    fn get_many(&self, keys: &[String]) -> Result<Values, KvError> {
        let values = self.inner.get_many(&self.keys(keys))?;
        Ok(values
            .into_iter()
            .zip(keys)
            .map(|(value, key)| value.map(|(_, value)| (key.clone(), value)))
            .collect())
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let entries: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(key, value)| (self.key(key), value.clone()))
            .collect();
        self.inner.set_many(&entries)
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        self.inner.delete_many(&self.keys(keys))
    }

    fn value_limit(&self) -> Option<usize> {
        self.inner.value_limit()
    }
}

/// An in-memory bucket: for tests, and for native callers of the logic.
///
/// Pages are deliberately small so that code using it follows cursors for real, and a batch call
/// naming more than [`BATCH`] keys fails, so the tests prove the logic keeps to its own bound.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: RefCell<BTreeMap<String, Vec<u8>>>,
    /// The most bytes a value may hold, as a host's `--kv-max-value`; `None`: any.
    max_value: Option<usize>,
}

/// Keys per `list_keys` page of [`MemoryKv`].
pub const MEMORY_PAGE_SIZE: usize = 3;

impl MemoryKv {
    /// An empty bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bucket that refuses values over `max_value` bytes, as a host with that
    /// `--kv-max-value` does, and says so through [`Kv::value_limit`].
    pub fn with_value_limit(max_value: usize) -> Self {
        Self {
            max_value: Some(max_value),
            ..Self::default()
        }
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        match self.max_value {
            Some(max) if value.len() > max => Err(KvError(format!(
                "the value for '{key}' is {} bytes; this bucket stores at most {max} bytes",
                value.len()
            ))),
            _ => Ok(()),
        }
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// A copy of every entry, to compare the bucket before and after a request.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.entries.borrow().clone()
    }
}

impl Kv for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.check_value(key, value)?;
        self.entries
            .borrow_mut()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.entries.borrow_mut().remove(key);
        Ok(())
    }

    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        let mut entries = self.entries.borrow_mut();
        let current = match entries.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| KvError(format!("value of '{key}' is not a counter")))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError(format!("counter '{key}' would overflow")))?;
        entries.insert(key.to_string(), next.to_string().into_bytes());
        Ok(next)
    }

    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        let entries = self.entries.borrow();
        let start = match cursor {
            None => 0,
            Some(text) => text
                .parse::<usize>()
                .map_err(|_| KvError(format!("'{text}' is not a cursor of this bucket")))?,
        };
        let keys: Vec<String> = entries
            .keys()
            .skip(start)
            .take(MEMORY_PAGE_SIZE)
            .cloned()
            .collect();
        let end = start.saturating_add(keys.len());
        let cursor = (end < entries.len()).then(|| end.to_string());
        Ok(KeyPage { keys, cursor })
    }

    fn get_many(&self, keys: &[String]) -> Result<Values, KvError> {
        check_batch(keys)?;
        let entries = self.entries.borrow();
        Ok(keys
            .iter()
            .map(|key| entries.get(key).map(|value| (key.clone(), value.clone())))
            .collect())
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        check_batch(entries)?;
        for (key, value) in entries {
            self.check_value(key, value)?;
        }
        let mut stored = self.entries.borrow_mut();
        for (key, value) in entries {
            stored.insert(key.clone(), value.clone());
        }
        Ok(())
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        check_batch(keys)?;
        let mut entries = self.entries.borrow_mut();
        for key in keys {
            entries.remove(key);
        }
        Ok(())
    }

    fn value_limit(&self) -> Option<usize> {
        self.max_value
    }
}

/// Refuses a batch larger than the logic's own bound.
fn check_batch<T>(items: &[T]) -> Result<(), KvError> {
    if items.len() > BATCH {
        return Err(KvError(format!(
            "a batch of {} keys; the logic names at most {}",
            items.len(),
            BATCH
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_starts_at_zero_and_rejects_non_counters() -> Result<(), KvError> {
        let kv = MemoryKv::new();
        assert_eq!(kv.increment("n", 1)?, 1);
        assert_eq!(kv.increment("n", 5)?, 6);
        kv.set("text", b"abc")?;
        assert!(kv.increment("text", 1).is_err());
        Ok(())
    }

    #[test]
    fn batches_larger_than_the_bound_are_refused() -> Result<(), KvError> {
        let kv = MemoryKv::new();
        let bound = BATCH;
        let keys: Vec<String> = (0..=bound).map(|i| i.to_string()).collect();
        assert!(kv.get_many(&keys).is_err());
        assert!(kv.delete_many(&keys).is_err());
        assert_eq!(kv.get_many(&keys[..bound])?.len(), bound);
        kv.delete_many(&keys[..bound])?;
        Ok(())
    }

    #[test]
    fn a_prefixed_bucket_reads_and_writes_only_under_its_prefix() -> Result<(), KvError> {
        let kv = MemoryKv::new();
        kv.set("todo/1", b"public")?;
        let ann = PrefixedKv::new(&kv, "user/ann/".to_string());
        assert_eq!(ann.get("todo/1")?, None);
        ann.set("todo/1", b"ann's")?;
        assert_eq!(ann.increment("meta/next-id", 1)?, 1);
        ann.set_many(&[("todo/2".to_string(), b"two".to_vec())])?;
        let values = ann.get_many(&["todo/1".to_string(), "todo/9".to_string()])?;
        assert_eq!(
            values,
            vec![Some(("todo/1".to_string(), b"ann's".to_vec())), None]
        );
        assert_eq!(kv.get("todo/1")?, Some(b"public".to_vec()));
        assert_eq!(kv.get("user/ann/todo/1")?, Some(b"ann's".to_vec()));
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = ann.list_keys(cursor.as_deref())?;
            listed.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, ["meta/next-id", "todo/1", "todo/2"]);
        ann.delete_many(&["todo/1".to_string(), "todo/2".to_string()])?;
        ann.delete("meta/next-id")?;
        assert_eq!(kv.len(), 1);
        Ok(())
    }

    #[test]
    fn list_keys_cursor_past_end_returns_empty() -> Result<(), KvError> {
        let kv = MemoryKv::new();
        kv.set("a", b"1")?;
        assert_eq!(kv.list_keys(Some("1000"))?, KeyPage::default());
        Ok(())
    }
}
