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
//! # Reads on the calling thread
//!
//! rusqlite is blocking. A point read (`get`, `exists`, a `get_many` of at most
//! `INLINE_MAX_KEYS` keys) takes a few microseconds, less than handing it to tokio's blocking
//! pool and waking the task again would (that hop was most of the cost of a `GET /todos/1`). So
//! such a read runs right where it is called, on the async worker thread, with an idle read
//! connection from a small pool, provided none of these could make it wait:
//! * another thread: the connection is taken with `try_lock`-like calls (a semaphore's
//!   `try_acquire`, a `std::sync::Mutex` held only to pop or push a `Vec`), never by waiting; when
//!   no connection is idle (other requests are reading: contention), the read goes to the
//!   blocking pool instead and waits there;
//! * a lock: in WAL mode a reader never waits for the writer, and while it runs here its
//!   connection's busy timeout is zero, so in the rare cases SQLite would wait (another process
//!   recovering the WAL) it answers `SQLITE_BUSY` at once and the read is retried on the blocking
//!   pool, which may wait `BUSY_TIMEOUT`;
//! * size: bigger reads (`list_keys` pages of up to [`LIST_PAGE_SIZE`] keys, larger batches)
//!   always go to the blocking pool.
//!
//! What remains is the disk: a page that is in neither SQLite's nor the OS's cache is read
//! while the worker waits, one bounded I/O, like a page fault anywhere else in the process.
//!
//! # Group commit
//!
//! Writes (`set`, `delete`, `increment`, compare-and-swap and the batches) do not each commit.
//! They queue for one writer thread with its own connection, which takes every write waiting,
//! runs them in one `BEGIN IMMEDIATE` transaction (each in a savepoint, so one failing write
//! fails alone), commits once, and only then answers each caller with its own result. Under
//! concurrent load one commit carries many writes; alone, a write waits for no one. The promise is
//! unchanged: a caller hears "done" only after the commit that holds its write.
//! `--sqlite-group-commit false` (`TODO_HOST_SQLITE_GROUP_COMMIT=false`, [`super::OpenOptions`])
//! commits every write on its own (for comparison: the benchmark runs both).

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use super::{
    BackendConfig, BackendSettings, KeyPage, KvBackend, KvError, LIST_PAGE_SIZE, OpenOptions,
    Registration, Values, add_to_counter, parse_counter, settings_from_table,
};

/// `--store sqlite://PATH`; runtime config `type = "spin"` (Spin's name for its SQLite store) or
/// `"sqlite"`, `path = "..."` relative to the runtime config (default `.spin/LABEL.db`).
pub const REGISTRATION: Registration = Registration {
    scheme: "sqlite",
    url_shape: "sqlite://PATH",
    about: "durable, the default",
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
    async fn open(&self, options: &OpenOptions) -> anyhow::Result<Arc<dyn KvBackend>> {
        Ok(Arc::new(
            SqliteBackend::open(&self.path, options.sqlite_group_commit).await?,
        ))
    }
}

/// Connections open at once: SQLite has one writer at a time anyway; a few more serve reads
/// while a write commits.
const POOL_SIZE: usize = 4;
/// How long a write waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `get_many` read on the calling thread: one index node's children, the guest's
/// batch (`todo_guest::kv::BATCH`), a few dozen microseconds of point reads at most.
const INLINE_MAX_KEYS: usize = 64;

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

/// Writes one commit may carry: enough that a burst of concurrent requests shares a commit, few
/// enough that one transaction never holds the write lock for long.
const MAX_GROUP: usize = 256;

/// A pool of connections to one SQLite file, and the writer thread that commits writes in
/// groups.
pub struct SqliteBackend {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
    /// The queue of the group-commit writer; `None` when every write commits on its own.
    writer: Option<std::sync::mpsc::Sender<Job>>,
}

/// A write, run on the writer's connection inside the group's transaction.
type WriteFn = Box<dyn FnOnce(&Connection) -> Result<Done, KvError> + Send>;

/// What the group-commit thread is asked to do.
enum Job {
    /// A write, and where its result goes.
    Write {
        write: WriteFn,
        reply: tokio::sync::oneshot::Sender<Result<Done, KvError>>,
    },
    /// Commit what was queued before, close the connection, answer, and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// What a write answers.
enum Done {
    Unit,
    Int(i64),
    Bool(bool),
}

/// The group-commit thread: waits for a write, takes every other write already queued (up to
/// [`MAX_GROUP`]), runs them in one transaction and answers each after the commit.
/// A [`Job::Close`] stops it once the writes queued before it are committed.
fn group_writer(mut conn: Connection, jobs: std::sync::mpsc::Receiver<Job>) {
    let mut closing = None;
    while let Ok(first) = jobs.recv() {
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write { write, reply } => group.push((write, reply)),
                Job::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if group.len() < MAX_GROUP {
                next = jobs.try_recv().ok();
            }
        }
        let (mut writes, replies): (Vec<WriteFn>, Vec<_>) = group.into_iter().unzip();
        if !writes.is_empty() {
            let results = commit_group(&mut conn, &mut writes);
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away (its request was cancelled) needs no answer.
                let _ = reply.send(result);
            }
        }
        if let Some(done) = closing.take() {
            if let Err((_, err)) = conn.close() {
                tracing::warn!(error = %err, "cannot close the SQLite writer connection");
            }
            let _ = done.send(());
            return;
        }
    }
}

/// Runs the writes of `group` in one transaction; each gets its own result, or all the commit's
/// error when the commit fails.
fn commit_group(conn: &mut Connection, group: &mut [WriteFn]) -> Vec<Result<Done, KvError>> {
    let size = group.len();
    let failed = |err: rusqlite::Error, what: &str| {
        let err = KvError::new(format!("SQLite {what} of a group of writes"), err);
        (0..size).map(|_| Err(err.clone())).collect::<Vec<_>>()
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(err) => return failed(err, "begin"),
    };
    let mut results = Vec::with_capacity(group.len());
    for write in group.iter_mut() {
        let write = std::mem::replace(write, Box::new(|_| Ok(Done::Unit)));
        let result = match tx.savepoint() {
            Ok(mut savepoint) => {
                let result = write(&savepoint);
                if result.is_err() {
                    // Undo this write only; the others of the group stand.
                    let _ = savepoint.rollback();
                }
                let _ = savepoint.commit();
                result
            }
            Err(err) => Err(KvError::new("SQLite savepoint", err)),
        };
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(err) => failed(err, "commit"),
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`, its folder and its table; with
    /// `group_commit`, writes share commits (see the module doc), else each commits alone.
    pub async fn open(path: &Path, group_commit: bool) -> anyhow::Result<Self> {
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
        let writer = if group_commit {
            let owned = path.to_path_buf();
            let conn = tokio::task::spawn_blocking(move || connect(&owned, false))
                .await
                .context("the SQLite set-up task failed")??;
            let (sender, jobs) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("sqlite-group-commit".into())
                .spawn(move || group_writer(conn, jobs))
                .context("cannot start the SQLite writer thread")?;
            Some(sender)
        } else {
            None
        };
        Ok(Self {
            path: path.to_path_buf(),
            idle: Arc::new(Mutex::new(vec![first])),
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
            writer,
        })
    }

    /// Runs the write `f`: queued for the next group commit, or (group commit off) in its own
    /// transaction on a pooled connection.
    async fn write(
        &self,
        f: impl FnOnce(&Connection) -> Result<Done, KvError> + Send + 'static,
    ) -> Result<Done, KvError> {
        let Some(writer) = &self.writer else {
            return self
                .run(move |conn| {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(sql("begin"))?;
                    let done = f(&tx)?;
                    tx.commit().map_err(sql("commit"))?;
                    Ok(done)
                })
                .await;
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        writer
            .send(Job::Write {
                write: Box::new(f),
                reply,
            })
            .map_err(|_| KvError("the SQLite writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| KvError("the SQLite writer thread dropped a write".into()))?
    }

    /// Runs the read `query` on the calling thread when it can do so without waiting (see
    /// "Reads on the calling thread" above), else on the blocking pool. `what` names the read
    /// for an error message.
    async fn read<R: Send + 'static>(
        &self,
        what: impl FnOnce() -> String,
        query: impl Fn(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, KvError> {
        if let Some(result) = self.read_here(&query) {
            return result.map_err(|err| KvError::new(format!("SQLite {}", what()), err));
        }
        let what = what();
        self.run(move |conn| query(conn).map_err(sql(what))).await
    }

    /// Runs `query` here with an idle pooled connection and no busy timeout; `None` when no
    /// connection is idle or SQLite would have had to wait (`SQLITE_BUSY`): the caller then reads
    /// on the blocking pool.
    fn read_here<R>(
        &self,
        query: &impl Fn(&mut Connection) -> rusqlite::Result<R>,
    ) -> Option<rusqlite::Result<R>> {
        // Declared first, so released last: after the connection is back in `idle`.
        let _permit = self.permits.try_acquire().ok()?;
        let mut conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        let result = conn
            .busy_timeout(Duration::ZERO)
            .and_then(|()| query(&mut conn));
        // A connection whose timeout cannot be restored would make a later write fail at once:
        // dropped instead of pooled (the pool opens another when needed).
        if conn.busy_timeout(BUSY_TIMEOUT).is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
        match result {
            Err(err) if would_wait(&err) => None,
            result => Some(result),
        }
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

/// Whether SQLite gave up on a lock it would have waited for, had it had a busy timeout.
fn would_wait(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
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

    /// Commits the queued writes, stops the writer thread and closes every pooled connection;
    /// the last to close folds the write-ahead log into the database file.
    async fn close(&self) {
        if let Some(writer) = &self.writer {
            let (done, closed) = tokio::sync::oneshot::channel();
            if writer.send(Job::Close(done)).is_ok() {
                let _ = closed.await;
            }
        }
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for conn in idle {
            if let Err((_, err)) = conn.close() {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot close a SQLite connection");
            }
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (owned_bucket, owned_key) = (bucket.to_string(), key.to_string());
        // The description is made only if the read fails or leaves this thread.
        self.read(
            || format!("get of '{key}'"),
            move |conn| select_value(conn, &owned_bucket, &owned_key),
        )
        .await
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let (bucket, key, value) = (bucket.to_string(), key.to_string(), value.to_vec());
        self.write(move |conn| {
            upsert(conn, &bucket, &key, &value).map_err(sql(format_args!("set of '{key}'")))?;
            Ok(Done::Unit)
        })
        .await
        .map(drop)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute(params![bucket, key]))
                .map_err(sql(format_args!("delete of '{key}'")))?;
            Ok(Done::Unit)
        })
        .await
        .map(drop)
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let (owned_bucket, owned_key) = (bucket.to_string(), key.to_string());
        self.read(
            || format!("exists of '{key}'"),
            move |conn| {
                conn.prepare_cached("SELECT 1 FROM kv WHERE bucket = ?1 AND key = ?2")?
                    .exists(params![owned_bucket, owned_key])
            },
        )
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
        // In a write transaction (`BEGIN IMMEDIATE`): the write lock is held before the read.
        let done = self
            .write(move |tx| {
                let err = |e| KvError::new(format_args!("SQLite increment of '{key}'"), e);
                let current: Option<Vec<u8>> = select_value(tx, &bucket, &key).map_err(err)?;
                let current = match current {
                    Some(value) => parse_counter(&bucket, &key, &value)?,
                    None => 0,
                };
                let next = add_to_counter(&bucket, &key, current, delta)?;
                upsert(tx, &bucket, &key, next.to_string().as_bytes()).map_err(err)?;
                Ok(Done::Int(next))
            })
            .await?;
        match done {
            Done::Int(next) => Ok(next),
            _ => Err(KvError("SQLite increment answered no number".into())),
        }
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
        // The write lock first (`BEGIN IMMEDIATE`), so nothing changes between the comparison
        // and the write.
        let done = self
            .write(move |tx| {
                let err = |e| KvError::new(format_args!("SQLite compare-and-swap of '{key}'"), e);
                let current: Option<Vec<u8>> = select_value(tx, &bucket, &key).map_err(err)?;
                if current != expected {
                    return Ok(Done::Bool(false));
                }
                upsert(tx, &bucket, &key, &value).map_err(err)?;
                Ok(Done::Bool(true))
            })
            .await?;
        match done {
            Done::Bool(swapped) => Ok(swapped),
            _ => Err(KvError(
                "SQLite compare-and-swap answered no outcome".into(),
            )),
        }
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        let what = || match keys.first() {
            Some(first) => format!("get-many of {} keys from '{first}'", keys.len()),
            None => "get-many of no keys".to_string(),
        };
        let (bucket, owned) = (bucket.to_string(), keys.to_vec());
        let query = move |conn: &mut Connection| {
            // One read transaction: every value comes from the same snapshot.
            let tx = conn.transaction()?;
            let mut values = Vec::with_capacity(owned.len());
            {
                let mut stmt =
                    tx.prepare_cached("SELECT value FROM kv WHERE bucket = ?1 AND key = ?2")?;
                for key in &owned {
                    let value: Option<Vec<u8>> = stmt
                        .query_row(params![bucket, key], |row| row.get(0))
                        .optional()?;
                    values.push(value.map(|v| (key.clone(), v)));
                }
            }
            tx.commit()?;
            Ok(values)
        };
        if keys.len() <= INLINE_MAX_KEYS {
            self.read(what, query).await
        } else {
            let what = what();
            self.run(move |conn| query(conn).map_err(sql(what))).await
        }
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let (bucket, entries) = (bucket.to_string(), entries.to_vec());
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached(UPSERT).map_err(sql("set-many"))?;
            for (key, value) in &entries {
                stmt.execute(params![bucket, key, value])
                    .map_err(sql(format_args!("set-many of '{key}'")))?;
            }
            Ok(Done::Unit)
        })
        .await
        .map(drop)
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        let (bucket, keys) = (bucket.to_string(), keys.to_vec());
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")
                .map_err(sql("delete-many"))?;
            for key in &keys {
                stmt.execute(params![bucket, key])
                    .map_err(sql(format_args!("delete-many of '{key}'")))?;
            }
            Ok(Done::Unit)
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    async fn open_temp() -> anyhow::Result<(tempfile::TempDir, SqliteBackend)> {
        let dir = tempfile::tempdir()?;
        let backend = SqliteBackend::open(&dir.path().join("kv.db"), true).await?;
        Ok((dir, backend))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_on_the_calling_thread_see_every_acknowledged_write() -> anyhow::Result<()> {
        let (_dir, kv) = open_temp().await?;
        for i in 0..100u32 {
            kv.set("b", &format!("k{i}"), &i.to_le_bytes()).await?;
            assert_eq!(
                kv.get("b", &format!("k{i}")).await?,
                Some(i.to_le_bytes().to_vec())
            );
        }
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let values = kv.get_many("b", &keys).await?;
        assert!(values.iter().flatten().count() == 100, "{values:?}");
        kv.delete("b", "k0").await?;
        assert!(!kv.exists("b", "k0").await?);
        Ok(())
    }

    /// With every pooled connection in use (other requests reading: contention), a read does
    /// not wait on the calling thread: it waits on the blocking pool, and the async thread
    /// (this test's only one) keeps serving other tasks meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_under_contention_wait_off_the_async_thread() -> anyhow::Result<()> {
        let (_dir, kv) = open_temp().await?;
        kv.set("b", "k", b"v").await?;
        let busy = kv
            .permits
            .clone()
            .acquire_many_owned(POOL_SIZE as u32)
            .await?;

        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let started = Instant::now();
        let read = async { kv.get("b", "k").await };
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(busy);
        };
        let (value, ()) = tokio::join!(read, release);
        let waited = started.elapsed();
        ticker.abort();

        assert_eq!(value?, Some(b"v".to_vec()));
        assert!(
            waited >= Duration::from_millis(300),
            "the read took a connection that was in use: answered after {waited:?}"
        );
        let ticks = ticks.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ticks >= 10,
            "the async thread stalled while the read waited: {ticks} ticks of 10 ms in {waited:?}"
        );
        Ok(())
    }

    #[test]
    fn only_lock_errors_send_a_read_to_the_blocking_pool() {
        let failure = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        assert!(would_wait(&failure(rusqlite::ffi::SQLITE_BUSY)));
        assert!(would_wait(&failure(rusqlite::ffi::SQLITE_LOCKED)));
        assert!(!would_wait(&failure(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(!would_wait(&rusqlite::Error::QueryReturnedNoRows));
    }

    /// What this backend's share of a request costs at 1,000 and at 1,000,000 todos (the
    /// layout the component leaves: todo keys, index summaries, id counter): the fastest of
    /// several rounds, so that other load on the machine does not count. Run with
    /// `cargo test --release -p todo-host --lib sqlite_scaling -- --ignored --nocapture`
    /// (`SQLITE_SCALING_SIZES="1000 1000000"`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check: minutes at a million todos"]
    async fn sqlite_scaling() -> anyhow::Result<()> {
        let sizes =
            std::env::var("SQLITE_SCALING_SIZES").unwrap_or_else(|_| "1000 1000000".to_string());
        println!(
            "| todos | get µs | get-many 8 index keys µs | get-many 50 todos µs | create (8 writes) µs |"
        );
        println!("|---|---|---|---|---|");
        for size in sizes.split_whitespace() {
            let size: u64 = size.parse()?;
            let (_dir, kv) = open_temp().await?;
            let mut batch = Vec::with_capacity(1000);
            for id in 1..=size {
                let record = todo_guest::records::TodoRecord {
                    id,
                    title: format!("todo number {id}"),
                    completed: id % 3 == 0,
                    order: id as i64,
                    description: String::new(),
                    created_at: "2026-01-01T00:00:00.000Z".to_string(),
                    updated_at: "2026-01-01T00:00:00.000Z".to_string(),
                };
                batch.push((
                    todo_guest::records::todo_key(id),
                    serde_json::to_vec(&record)?,
                ));
                if batch.len() == 1000 || id == size {
                    kv.set_many("default", &batch).await?;
                    batch.clear();
                }
            }
            let index = todo_guest::index::dense_entries(size, |id| id % 3 == 0);
            for chunk in index.chunks(1000) {
                kv.set_many("default", chunk).await?;
            }
            let index_keys: Vec<String> = (0..4)
                .flat_map(|n| [format!("fence/3/{n}"), format!("index/3/{n}")])
                .collect();
            let page: Vec<String> = (1..=50).map(todo_guest::records::todo_key).collect();
            let mut next = size;
            let mut best = [f64::MAX; 4];
            for _ in 0..7 {
                let mut time = |slot: usize, started: Instant, count: u32| {
                    let us = started.elapsed().as_secs_f64() * 1e6 / f64::from(count);
                    best[slot] = best[slot].min(us);
                };
                let started = Instant::now();
                for _ in 0..2000 {
                    kv.get("default", "todo/1").await?;
                }
                time(0, started, 2000);
                let started = Instant::now();
                for _ in 0..500 {
                    kv.get_many("default", &index_keys).await?;
                }
                time(1, started, 500);
                let started = Instant::now();
                for _ in 0..200 {
                    kv.get_many("default", &page).await?;
                }
                time(2, started, 200);
                let started = Instant::now();
                for _ in 0..200 {
                    next += 1;
                    kv.increment("default", "meta/next-id", 1).await?;
                    let fences = [
                        format!("fence/3/{}", next >> 18),
                        format!("fence/2/{}", next >> 12),
                        format!("fence/1/{}", next >> 6),
                    ];
                    for fence in &fences {
                        kv.increment("default", fence, 1).await?;
                    }
                    kv.set(
                        "default",
                        &todo_guest::records::todo_key(next),
                        &[b'x'; 150],
                    )
                    .await?;
                    for fence in fences.iter().rev() {
                        kv.increment("default", fence, 1 << 32).await?;
                    }
                }
                time(3, started, 200);
            }
            println!(
                "| {size} | {:.1} | {:.1} | {:.1} | {:.1} |",
                best[0], best[1], best[2], best[3]
            );
        }
        Ok(())
    }
}
