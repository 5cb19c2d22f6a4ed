//! A shared store for scale-out: a Redis server, `--store redis://HOST:PORT[/DB]`.
//!
//! Every host process that points at the same Redis sees the same data, so hosts are
//! interchangeable behind any load balancer.
//! * Keys are namespaced by bucket, `{bucket}:{key}`: two buckets never see each other's keys.
//!   (Bucket names cannot contain `:`, see [`crate::wasi_keyvalue`], so the prefix is
//!   unambiguous.)
//! * `increment` is `INCRBY`: atomic in the server, whatever the number of hosts.
//! * `list-keys` is `SCAN` with `MATCH {bucket}:*`: the wasi cursor is Redis's own cursor, pages
//!   are bounded, and `KEYS *` is never used.
//! * Batches are `MGET`, `MSET` and one multi-key `DEL`.
//!
//! One multiplexed connection, managed by redis-rs's `ConnectionManager`, serves all requests.
//! When Redis goes away, requests fail fast with a `wasi:keyvalue` error (the client gets 503),
//! and the manager reconnects by itself on a later request once Redis is back.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd};

use super::{
    BackendConfig, BackendSettings, KeyPage, KvBackend, KvError, LIST_PAGE_SIZE, OpenOptions,
    Registration, Values, url_entry,
};

/// `--store redis://HOST:PORT[/DB]`; runtime config `type = "redis"`, `url = "redis://..."`.
pub const REGISTRATION: Registration = Registration {
    scheme: "redis",
    url_shape: "redis://HOST:PORT[/DB]",
    about: "shared by many hosts",
    runtime_config_types: &["redis"],
    from_url: |url| RedisSettings::checked(url.to_string()).map(BackendConfig::new),
    from_runtime_config: |label, entry, _base| url_entry(label, entry, REGISTRATION.from_url),
};

/// Where the Redis server is: a URL that redis-rs accepts, checked before anything connects.
#[derive(Debug)]
struct RedisSettings {
    url: String,
}

impl RedisSettings {
    fn checked(url: String) -> anyhow::Result<Self> {
        Client::open(url.as_str()).with_context(|| format!("invalid Redis URL '{url}'"))?;
        Ok(Self { url })
    }
}

#[async_trait]
impl BackendSettings for RedisSettings {
    async fn open(&self, _: &OpenOptions) -> anyhow::Result<std::sync::Arc<dyn KvBackend>> {
        Ok(std::sync::Arc::new(RedisBackend::connect(&self.url).await?))
    }
}

/// How long one command may take before the request fails: a stuck Redis must not hold
/// requests (and their instances) for long.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The `COUNT` hint given to `SCAN`. Redis may return somewhat more keys than asked (it returns
/// whole hash buckets), so it asks for half a page: pages stay within [`LIST_PAGE_SIZE`].
const SCAN_COUNT: usize = LIST_PAGE_SIZE / 2;
/// How long one attempt to (re)connect may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection attempts per failed command: few, so that requests fail fast while Redis is
/// down; the next request tries again.
const RECONNECT_RETRIES: usize = 1;

/// Compare-and-swap as one Redis script: `ARGV[1]` the new value, `ARGV[2]` `value` or
/// `absent`, `ARGV[3]` the expected value. Answers 1 when it swapped.
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if ARGV[2] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#;

/// A Redis server shared by every host process.
pub struct RedisBackend {
    connection: ConnectionManager,
    summary: String,
}

impl RedisBackend {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`) and checks the server answers.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = Client::open(url).with_context(|| format!("invalid Redis URL '{url}'"))?;
        let info = client.get_connection_info();
        let db = info.redis_settings().db();
        let summary = match db {
            0 => format!("Redis at {}", info.addr()),
            db => format!("Redis at {} (db {db})", info.addr()),
        };
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .with_context(|| format!("cannot connect to {summary}"))?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .with_context(|| format!("{summary} does not answer PING"))?;
        Ok(Self {
            connection,
            summary,
        })
    }

    /// Runs `cmd`, mapping a failure to a [`KvError`] that says what was being done.
    async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &Cmd,
        op: &'static str,
        key: &str,
    ) -> Result<T, KvError> {
        // Cloning the manager clones a handle to the one multiplexed connection.
        let mut connection = self.connection.clone();
        cmd.query_async(&mut connection)
            .await
            .map_err(|err| match key {
                "" => KvError::new(format!("Redis {op}"), err),
                key => KvError::new(format!("Redis {op} of '{key}'"), err),
            })
    }
}

/// The Redis key of `key` in `bucket`.
fn namespaced(bucket: &str, key: &str) -> String {
    format!("{bucket}:{key}")
}

#[async_trait]
impl KvBackend for RedisBackend {
    fn summary(&self) -> String {
        self.summary.clone()
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let cmd = redis::cmd("GET").arg(namespaced(bucket, key)).clone();
        self.query(&cmd, "GET", key).await
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let cmd = redis::cmd("SET")
            .arg(namespaced(bucket, key))
            .arg(value)
            .clone();
        self.query(&cmd, "SET", key).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let cmd = redis::cmd("DEL").arg(namespaced(bucket, key)).clone();
        self.query::<i64>(&cmd, "DEL", key).await.map(drop)
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let cmd = redis::cmd("EXISTS").arg(namespaced(bucket, key)).clone();
        self.query::<i64>(&cmd, "EXISTS", key).await.map(|n| n > 0)
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        let prefix = namespaced(bucket, "");
        let cmd = redis::cmd("SCAN")
            .arg(cursor.unwrap_or(0))
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .clone();
        let (next, keys): (u64, Vec<String>) = self.query(&cmd, "SCAN", "").await?;
        Ok(KeyPage {
            keys: keys
                .into_iter()
                .filter_map(|key| key.strip_prefix(&prefix).map(str::to_string))
                .collect(),
            // SCAN's cursor 0 means the iteration is complete.
            cursor: (next != 0).then_some(next),
        })
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let cmd = redis::cmd("INCRBY")
            .arg(namespaced(bucket, key))
            .arg(delta)
            .clone();
        self.query(&cmd, "INCRBY", key).await
    }

    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        // A script runs atomically in Redis: nothing else runs between the GET and the SET.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAS_SCRIPT)
            .arg(1)
            .arg(namespaced(bucket, key))
            .arg(value);
        match expected {
            Some(expected) => cmd.arg("value").arg(expected),
            None => cmd.arg("absent"),
        };
        let swapped: i64 = self.query(&cmd, "compare-and-swap", key).await?;
        Ok(swapped == 1)
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(namespaced(bucket, key));
        }
        let values: Vec<Option<Vec<u8>>> = self.query(&cmd, "MGET", "").await?;
        Ok(keys
            .iter()
            .zip(values)
            .map(|(key, value)| value.map(|v| (key.clone(), v)))
            .collect())
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("MSET");
        for (key, value) in entries {
            cmd.arg(namespaced(bucket, key)).arg(value.as_slice());
        }
        self.query(&cmd, "MSET", "").await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("DEL");
        for key in keys {
            cmd.arg(namespaced(bucket, key));
        }
        self.query::<i64>(&cmd, "DEL", "").await.map(drop)
    }
}
