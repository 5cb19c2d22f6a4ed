//! The host's key-value backends: the one stateful part of the system.
//!
//! Every request's instance reaches the same [`KvBackend`], held as `Arc<dyn KvBackend>`, through
//! `wasi:keyvalue` ([`crate::wasi_keyvalue`]). One file per backend, each with its own typed
//! settings and a [`Registration`] that says how `--store` URLs and runtime-config entries name
//! it:
//! * [`memory`]: a process-local map; fast, gone when the process stops;
//! * [`sqlite`]: one SQLite file (WAL); the durable embedded default;
//! * [`redis`]: a Redis server shared by many host processes; the scale-out store;
//! * [`nats`]: NATS JetStream key-value, replicated across a cluster; survives losing a server.
//!
//! Adding a backend is its file plus one line in [`BACKENDS`]: `--store`, `todo-host up`'s
//! runtime config, the `--help` text and every error message find it there.
//!
//! A store is named once, as text, and parsed at once into a [`BackendConfig`] (a typed,
//! checked value); opening it ([`BackendConfig::open`]) is a separate, later step.

pub mod memory;
pub mod nats;
pub mod redis;
pub mod sqlite;

use std::sync::Arc;

use std::path::Path;

use anyhow::bail;
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

    /// Finishes with the store when the host stops: every write already queued is committed,
    /// then files and connections are closed. Calls after it may fail. Stores that commit each
    /// write before answering and need no orderly close keep this default.
    async fn close(&self) {}
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

/// Opens the store a `--store` URL names, with the default [`OpenOptions`]:
/// [`BackendConfig::from_url`], then [`BackendConfig::open`].
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn KvBackend>> {
    BackendConfig::from_url(url)?
        .open(&OpenOptions::default())
        .await
}

/// How a backend is named: its `--store` URL scheme, its runtime-config `type`s, and how each
/// becomes a [`BackendConfig`].
#[derive(Debug)]
pub struct Registration {
    /// The scheme of its `--store` URL, e.g. `sqlite`.
    pub scheme: &'static str,
    /// The URL's shape, for help and error messages, e.g. `sqlite://PATH`.
    pub url_shape: &'static str,
    /// What it is for, in a few words, for `--help`: e.g. `durable, the default`.
    pub about: &'static str,
    /// The `type = "..."` values of its `[key_value_store.LABEL]` runtime-config entries.
    pub runtime_config_types: &'static [&'static str],
    /// Parses a whole `--store` URL of this scheme.
    pub from_url: fn(&str) -> anyhow::Result<BackendConfig>,
    /// Parses a runtime-config entry (without its `type`) for store `label`; relative paths are
    /// relative to `base`, the runtime config's folder.
    pub from_runtime_config:
        fn(label: &str, entry: toml::Table, base: &Path) -> anyhow::Result<BackendConfig>,
}

/// Every backend this host has: the one registration point.
pub const BACKENDS: &[Registration] = &[
    sqlite::REGISTRATION,
    redis::REGISTRATION,
    nats::REGISTRATION,
    memory::REGISTRATION,
];

/// A backend's checked settings, before anything is opened or connected.
#[async_trait]
pub trait BackendSettings: std::fmt::Debug + Send + Sync {
    /// Opens (connects to, creates) the store.
    async fn open(&self, options: &OpenOptions) -> anyhow::Result<Arc<dyn KvBackend>>;
}

/// How a process opens every store it opens: the command line's settings that are not part of
/// any one store's URL (a manifest's stores take them too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// SQLite: writes wait for one shared commit (group commit, the default); off, each write
    /// commits alone (`--sqlite-group-commit false`, for comparison).
    pub sqlite_group_commit: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            sqlite_group_commit: true,
        }
    }
}

/// Where a store lives, parsed and checked: what a `--store` URL and a runtime-config entry both
/// become. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    settings: Arc<dyn BackendSettings>,
    /// The backend's URL scheme (`sqlite`, `redis`, ...), for metrics and logs.
    kind: &'static str,
}

impl BackendConfig {
    /// Wraps a backend's typed settings.
    pub fn new(settings: impl BackendSettings + 'static) -> Self {
        Self {
            settings: Arc::new(settings),
            kind: "",
        }
    }

    /// The backend's kind: its URL scheme, e.g. `sqlite`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn of(mut self, backend: &Registration) -> Self {
        self.kind = backend.scheme;
        self
    }

    /// Parses a `--store` URL, e.g. `sqlite://todo.db` or `redis://127.0.0.1:6379`.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let Some((scheme, _)) = url.split_once("://") else {
            bail!("store URL '{url}' has no scheme: use {}", url_shapes());
        };
        match BACKENDS.iter().find(|backend| backend.scheme == scheme) {
            Some(backend) => Ok((backend.from_url)(url)?.of(backend)),
            None => bail!(
                "store URL '{url}' has unknown scheme '{scheme}': use {}",
                url_shapes()
            ),
        }
    }

    /// Parses the runtime-config entry `[key_value_store.LABEL]` (its `type` picks the backend);
    /// relative paths in it are relative to `base`.
    pub fn from_runtime_config(
        label: &str,
        mut entry: toml::Table,
        base: &Path,
    ) -> anyhow::Result<Self> {
        let kind = match entry.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            _ => bail!(
                "key-value store '{label}' needs type = one of {}",
                runtime_config_types()
            ),
        };
        match BACKENDS
            .iter()
            .find(|backend| backend.runtime_config_types.contains(&kind.as_str()))
        {
            Some(backend) => Ok((backend.from_runtime_config)(label, entry, base)?.of(backend)),
            None => bail!(
                "key-value store '{label}' has unknown type \"{kind}\": use one of {}",
                runtime_config_types()
            ),
        }
    }

    /// Opens (connects to, creates) the store.
    pub async fn open(&self, options: &OpenOptions) -> anyhow::Result<Arc<dyn KvBackend>> {
        self.settings.open(options).await
    }
}

impl std::str::FromStr for BackendConfig {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> anyhow::Result<Self> {
        Self::from_url(url)
    }
}

/// `sqlite://PATH, redis://HOST:PORT[/DB] or memory://`, from [`BACKENDS`].
pub fn url_shapes() -> String {
    or_list(BACKENDS.iter().map(|backend| backend.url_shape.to_string()))
}

/// `"spin", "sqlite", "redis", "nats" or "memory"`: every runtime-config `type`, from
/// [`BACKENDS`].
pub fn runtime_config_types() -> String {
    or_list(
        BACKENDS
            .iter()
            .flat_map(|backend| backend.runtime_config_types)
            .map(|kind| format!("\"{kind}\"")),
    )
}

/// The `--store` help: every backend's URL and what it is for, from [`BACKENDS`].
pub fn store_help() -> String {
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|backend| format!("`{}` ({})", backend.url_shape, backend.about))
        .collect();
    format!("Key-value store: {}", or_list(backends.into_iter()))
}

/// `a, b or c`.
fn or_list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A runtime-config entry that is only a URL (`url = "redis://..."`), parsed as `--store` parses
/// the same URL.
pub fn url_entry(
    label: &str,
    entry: toml::Table,
    from_url: fn(&str) -> anyhow::Result<BackendConfig>,
) -> anyhow::Result<BackendConfig> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct UrlEntry {
        url: String,
    }
    let entry: UrlEntry = settings_from_table(label, entry)?;
    from_url(&entry.url).map_err(|err| err.context(format!("key-value store '{label}'")))
}

/// Reads a runtime-config entry into a backend's own settings type, refusing unknown fields.
pub fn settings_from_table<T: serde::de::DeserializeOwned>(
    label: &str,
    entry: toml::Table,
) -> anyhow::Result<T> {
    toml::Value::Table(entry)
        .try_into()
        .map_err(|err| anyhow::anyhow!("key-value store '{label}': {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_parsed_once_by_their_scheme() {
        assert!(BackendConfig::from_url("memory://").is_ok());
        assert!(BackendConfig::from_url("sqlite://todo.db").is_ok());
        assert!(BackendConfig::from_url("redis://127.0.0.1:6379/2").is_ok());
        let unknown = BackendConfig::from_url("mongo://x")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("'mongo'") && unknown.contains("sqlite://PATH"),
            "{unknown}"
        );
        let bare = BackendConfig::from_url("todo.db").unwrap_err().to_string();
        assert!(bare.contains("no scheme"), "{bare}");
        let empty = format!("{:#}", BackendConfig::from_url("sqlite://").unwrap_err());
        assert!(empty.contains("names no file"), "{empty}");
    }

    #[test]
    fn runtime_config_entries_pick_their_backend_by_type() -> anyhow::Result<()> {
        let entry = |text: &str| -> anyhow::Result<toml::Table> { Ok(toml::from_str(text)?) };
        let base = Path::new("/srv/app");
        BackendConfig::from_runtime_config("a", entry("type = \"spin\"\npath = \"a.db\"")?, base)?;
        BackendConfig::from_runtime_config("b", entry("type = \"memory\"")?, base)?;
        let unknown = BackendConfig::from_runtime_config("c", entry("type = \"etcd\"")?, base)
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("\"etcd\"") && unknown.contains("\"redis\""),
            "{unknown}"
        );
        let extra = format!(
            "{:#}",
            BackendConfig::from_runtime_config(
                "d",
                entry("type = \"redis\"\nurl = \"redis://x:1\"\nport = 2")?,
                base
            )
            .unwrap_err()
        );
        assert!(extra.contains("port"), "{extra}");
        Ok(())
    }
}
