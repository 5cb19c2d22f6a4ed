//! The embedded durable default: one SQLite file, `--store sqlite://PATH`.
//!
//! One table, `kv(bucket, key, value)` with `PRIMARY KEY (bucket, key)`; writes are upserts.
//! Settings, and what they promise:
//! * `journal_mode = WAL`: readers never block the writer, and several host processes can share
//!   one file;
//! * `synchronous = NORMAL`: a commit has reached the WAL file in the OS before the write is
//!   acknowledged, so an acknowledged write survives the process being killed (`kill -9`). After
//!   a power loss the last commits may be gone, but the file is never corrupt; `FULL` would add an
//!   fsync to every commit for that case;
//! * `busy_timeout`: a writer waits for another process's write instead of failing with
//!   `database is locked`;
//! * `increment` runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock before
//!   reading, so concurrent increments, even from other processes, never lose one.
//!
//! rusqlite is blocking: every call runs on tokio's blocking pool with a connection from a small
//! pool, so the async threads that serve HTTP never wait on the disk.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use super::{
    BackendConfig, BackendSettings, KeyPage, KvBackend, KvError, LIST_PAGE_SIZE, Registration,
    Values, add_to_counter, parse_counter, settings_from_table,
};

/// `--store sqlite://PATH`; runtime config `type = "spin"` (Spin's name for its SQLite store) or
/// `"sqlite"`, `path = "..."` relative to the runtime config (default `.spin/LABEL.db`).
pub const REGISTRATION: Registration = Registration {
    scheme: "sqlite",
    url_shape: "sqlite://PATH",
    runtime_config_types: &["spin", "sqlite"],
    from_url: |url| {
        let path = url.strip_prefix("sqlite://").unwrap_or_default();
        anyhow::ensure!(
            !path.is_empty(),
            "store URL '{url}' names no file: use sqlite://PATH, e.g. sqlite://todo.db"
        );
        Ok(BackendConfig::new(SqliteSettings { path: path.into() }))
    },
    from_runtime_config: |label, entry, base| {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            path: Option<PathBuf>,
        }
        let entry: Entry = settings_from_table(label, entry)?;
        let path = entry
            .path
            .unwrap_or_else(|| PathBuf::from(format!(".spin/{label}.db")));
        Ok(BackendConfig::new(SqliteSettings {
            path: base.join(path),
        }))
    },
};

/// The SQLite file of a store.
#[derive(Debug)]
pub struct SqliteSettings {
    pub path: PathBuf,
}

#[async_trait]
impl BackendSettings for SqliteSettings {
    async fn open(&self) -> anyhow::Result<Arc<dyn KvBackend>> {
        Ok(Arc::new(SqliteBackend::open(&self.path).await?))
    }
}

/// Connections open at once: SQLite has one writer at a time anyway; a few more serve reads
/// while a write commits.
const POOL_SIZE: usize = 4;
/// How long a write waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        bucket TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  BLOB NOT NULL,
        PRIMARY KEY (bucket, key)
    );
    -- Orders each bucket's keys by rowid: the list-keys cursor is the last rowid returned.
    CREATE INDEX IF NOT EXISTS kv_bucket ON kv (bucket);
";

/// A pool of connections to one SQLite file.
pub struct SqliteBackend {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`, its folder and its table.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        // Like Spin's `.spin/`: a state folder that does not exist yet is made, not an error.
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).with_context(|| {
                format!(
                    "cannot create folder {} for SQLite file {}",
                    folder.display(),
                    path.display()
                )
            })?;
        }
        let owned = path.to_path_buf();
        let first = tokio::task::spawn_blocking(move || connect(&owned, true))
            .await
            .context("the SQLite set-up task failed")??;
        Ok(Self {
            path: path.to_path_buf(),
            idle: Arc::new(Mutex::new(vec![first])),
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
        })
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, KvError> + Send + 'static,
    ) -> Result<R, KvError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|err| KvError::new("the SQLite pool is closed", err))?;
        let idle = self.idle.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => connect(&path, false)
                    .map_err(|err| KvError::new(format!("cannot open {}", path.display()), err))?,
            };
            let result = f(&mut conn);
            idle.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            result
        })
        .await
        .map_err(|err| KvError::new("a SQLite task failed", err))?
    }
}

/// Opens one connection with the settings above; `create` also creates the schema.
fn connect(path: &Path, create: bool) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open SQLite file {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .with_context(|| format!("cannot switch {} to WAL", path.display()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    if create {
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("cannot create the kv table in {}", path.display()))?;
    }
    Ok(conn)
}

/// Maps a SQLite error to a [`KvError`] that says what was being done.
fn sql(what: impl Display) -> impl FnOnce(rusqlite::Error) -> KvError {
    move |err| KvError::new(format!("SQLite {what}"), err)
}

/// The value of `key` in `bucket`, read on `conn` (inside the caller's transaction, if any).
fn select_value(conn: &Connection, bucket: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM kv WHERE bucket = ?1 AND key = ?2")?
        .query_row(params![bucket, key], |row| row.get(0))
        .optional()
}

/// Sets `key` in `bucket` to `value` on `conn`.
fn upsert(conn: &Connection, bucket: &str, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached(UPSERT)?
        .execute(params![bucket, key, value])
        .map(drop)
}

const UPSERT: &str = "INSERT INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)
                      ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value";

#[async_trait]
impl KvBackend for SqliteBackend {
    fn summary(&self) -> String {
        format!("SQLite at {}", self.path.display())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |conn| {
            select_value(conn, &bucket, &key).map_err(sql(format_args!("get of '{key}'")))
        })
        .await
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let (bucket, key, value) = (bucket.to_string(), key.to_string(), value.to_vec());
        self.run(move |conn| {
            upsert(conn, &bucket, &key, &value).map_err(sql(format_args!("set of '{key}'")))
        })
        .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute(params![bucket, key]))
                .map(drop)
                .map_err(sql(format_args!("delete of '{key}'")))
        })
        .await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |conn| {
            conn.prepare_cached("SELECT 1 FROM kv WHERE bucket = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.exists(params![bucket, key]))
                .map_err(sql(format_args!("exists of '{key}'")))
        })
        .await
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        let bucket = bucket.to_string();
        // Rowids start at 1, so 0 means "from the start"; a cursor beyond i64 is past the end.
        let after = i64::try_from(cursor.unwrap_or(0)).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT rowid, key FROM kv WHERE bucket = ?1 AND rowid > ?2
                     ORDER BY rowid LIMIT ?3",
                )
                .map_err(sql("list-keys"))?;
            let rows = stmt
                .query_map(params![bucket, after, LIST_PAGE_SIZE as i64], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(sql("list-keys"))?;
            let cursor = match rows.last() {
                Some((rowid, _)) if rows.len() == LIST_PAGE_SIZE => Some(*rowid as u64),
                _ => None,
            };
            Ok(KeyPage {
                keys: rows.into_iter().map(|(_, key)| key).collect(),
                cursor,
            })
        })
        .await
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |conn| {
            let err = |e| KvError::new(format_args!("SQLite increment of '{key}'"), e);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let current: Option<Vec<u8>> = select_value(&tx, &bucket, &key).map_err(err)?;
            let current = match current {
                Some(value) => parse_counter(&bucket, &key, &value)?,
                None => 0,
            };
            let next = add_to_counter(&bucket, &key, current, delta)?;
            upsert(&tx, &bucket, &key, next.to_string().as_bytes()).map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(next)
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let (expected, value) = (expected.map(<[u8]>::to_vec), value.to_vec());
        self.run(move |conn| {
            let err = |e| KvError::new(format_args!("SQLite compare-and-swap of '{key}'"), e);
            // The write lock first, so nothing changes between the comparison and the write.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let current: Option<Vec<u8>> = select_value(&tx, &bucket, &key).map_err(err)?;
            if current != expected {
                return Ok(false);
            }
            upsert(&tx, &bucket, &key, &value).map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        let (bucket, keys) = (bucket.to_string(), keys.to_vec());
        self.run(move |conn| {
            // One read transaction: every value comes from the same snapshot.
            let tx = conn.transaction().map_err(sql("get-many"))?;
            let mut values = Vec::with_capacity(keys.len());
            {
                let mut stmt = tx
                    .prepare_cached("SELECT value FROM kv WHERE bucket = ?1 AND key = ?2")
                    .map_err(sql("get-many"))?;
                for key in keys {
                    let value: Option<Vec<u8>> = stmt
                        .query_row(params![bucket, key], |row| row.get(0))
                        .optional()
                        .map_err(sql(format_args!("get-many of '{key}'")))?;
                    values.push(value.map(|v| (key, v)));
                }
            }
            tx.commit().map_err(sql("get-many"))?;
            Ok(values)
        })
        .await
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let (bucket, entries) = (bucket.to_string(), entries.to_vec());
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("set-many"))?;
            {
                let mut stmt = tx.prepare_cached(UPSERT).map_err(sql("set-many"))?;
                for (key, value) in &entries {
                    stmt.execute(params![bucket, key, value])
                        .map_err(sql(format_args!("set-many of '{key}'")))?;
                }
            }
            tx.commit().map_err(sql("set-many"))
        })
        .await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        let (bucket, keys) = (bucket.to_string(), keys.to_vec());
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("delete-many"))?;
            {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")
                    .map_err(sql("delete-many"))?;
                for key in &keys {
                    stmt.execute(params![bucket, key])
                        .map_err(sql(format_args!("delete-many of '{key}'")))?;
                }
            }
            tx.commit().map_err(sql("delete-many"))
        })
        .await
    }
}
