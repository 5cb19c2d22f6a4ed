//! Shared by the benchmark binaries: the todo logic called natively (no wasm) on the host's
//! `KvBackend`, for the native baseline that measures what WebAssembly costs.
//!
//! * `native-baseline`: a hyper server answering like `todo-host`, with the same todo logic
//!   compiled as a normal Rust library and the same stores.
//! * `microbench`: in-process costs (instantiate only, whole requests, scaling with store size).
//! * `bench/run.sh`: drives both and `todo-host` with wrk and writes `bench/RESULTS.md`.

use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use todo_guest::kv::{KeyPage, Kv, KvError, Values};
use todo_guest::records::BUCKET;
use todo_guest::time::Timestamp;
use todo_host::kv::KvBackend;
use tokio::runtime::Handle;
use tokio::task::block_in_place;

/// The guest's KV trait on the host's async backend, for the synchronous todo logic.
///
/// Each call first polls the backend's future once: the memory store (and any call that needs no
/// I/O) is ready at once and costs no more than the call itself. Only a future that is still
/// pending (SQLite's `spawn_blocking`, a network round trip) blocks the thread until it is done,
/// through `tokio::task::block_in_place`, which hands this worker's other tasks to another thread
/// first. Blocking on every call, ready or not, cost the native baseline a thread hand-off per
/// request (`block_in_place`) and a runtime enter/park per call (`Handle::block_on`): a third of
/// its throughput on the memory store, none of it the todo logic's.
///
/// Runs on a worker thread of a multi-threaded runtime, or inside `block_in_place` already; not
/// on a current-thread runtime, where a pending call cannot block.
pub struct NativeKv {
    backend: Arc<dyn KvBackend>,
    runtime: Handle,
}

impl NativeKv {
    pub fn new(backend: Arc<dyn KvBackend>, runtime: Handle) -> Self {
        Self { backend, runtime }
    }

    fn block<T>(
        &self,
        future: impl Future<Output = Result<T, todo_host::kv::KvError>>,
    ) -> Result<T, KvError> {
        let mut future = pin!(future);
        let ready = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        let result = match ready {
            Poll::Ready(result) => result,
            // Polled again with a real waker by `block_on`: the no-op one was only for the try.
            Poll::Pending => block_in_place(|| self.runtime.block_on(future)),
        };
        result.map_err(|err| KvError(err.0))
    }
}

impl Kv for NativeKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.block(self.backend.get(BUCKET, key))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.block(self.backend.set(BUCKET, key, value))
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.block(self.backend.delete(BUCKET, key))
    }

    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        let delta =
            i64::try_from(delta).map_err(|_| KvError(format!("delta {delta} too large")))?;
        let sum = self.block(self.backend.increment(BUCKET, key, delta))?;
        u64::try_from(sum).map_err(|_| KvError(format!("counter '{key}' is negative")))
    }

    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        let cursor = cursor
            .map(|text| {
                text.parse::<u64>()
                    .map_err(|_| KvError(format!("bad cursor '{text}'")))
            })
            .transpose()?;
        let page = self.block(self.backend.list_keys(BUCKET, cursor))?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor.map(|c| c.to_string()),
        })
    }

    fn get_many(&self, keys: &[String]) -> Result<Values, KvError> {
        self.block(self.backend.get_many(BUCKET, keys))
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.block(self.backend.set_many(BUCKET, entries))
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        self.block(self.backend.delete_many(BUCKET, keys))
    }
}

/// Wall-clock now, as the guest's clock import gives it.
pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs(),
        nanoseconds: since.subsec_nanos(),
    }
}

/// Todo record `id` as the guest stores it (every third one completed), for filling a store
/// directly.
pub fn todo_record(id: u64) -> (String, Vec<u8>) {
    let record = todo_guest::records::TodoRecord {
        id,
        title: format!("todo number {id}"),
        completed: id.is_multiple_of(3),
        order: id as i64,
        description: String::new(),
        created_at: "2026-01-01T00:00:00.000Z".to_string(),
        updated_at: "2026-01-01T00:00:00.000Z".to_string(),
    };
    let bytes = serde_json::to_vec(&record).expect("a todo record serializes");
    (todo_guest::records::todo_key(id), bytes)
}

/// Fills `backend` with todos `1..=count` as the component leaves them: the todo keys, the id
/// index and the id counter, in batches of 1,000.
pub async fn fill(backend: &dyn KvBackend, count: u64) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(1000);
    for id in 1..=count {
        batch.push(todo_record(id));
        if batch.len() == 1000 || id == count {
            backend.set_many(BUCKET, &batch).await?;
            batch.clear();
        }
    }
    for chunk in todo_guest::index::dense_entries(count, |id| id.is_multiple_of(3)).chunks(1000) {
        backend.set_many(BUCKET, chunk).await?;
    }
    Ok(())
}
