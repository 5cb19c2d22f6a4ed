//! A store whose increment can lose a race (as wasmCloud's NATS store's does: one
//! compare-and-set, no retry) must not cost a create: the component tries again. Here the host
//! runs the todo component in process on a backend that fails every third increment with NATS'
//! own message, before it changes anything, and 20 clients create 200 todos at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use todo_host::Runtime;
use todo_host::kv::memory::MemoryBackend;
use todo_host::kv::{KeyPage, KvBackend, KvError, Values};

/// Memory, except that every `every`-th increment fails as a lost compare-and-set would: with
/// nothing written.
struct LosesRaces {
    inner: MemoryBackend,
    every: u64,
    increments: AtomicU64,
    lost: AtomicU64,
}

#[async_trait]
impl KvBackend for LosesRaces {
    fn summary(&self) -> String {
        "memory that loses increment races".to_string()
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(bucket, key).await
    }
    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.set(bucket, key, value).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.inner.delete(bucket, key).await
    }
    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        self.inner.list_keys(bucket, cursor).await
    }
    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let n = self.increments.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every) {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err(KvError(format!(
                "nats: wrong last sequence: {n} (increment of '{key}')"
            )));
        }
        self.inner.increment(bucket, key, delta).await
    }
    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        self.inner
            .compare_and_swap(bucket, key, expected, value)
            .await
    }
    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        self.inner.get_many(bucket, keys).await
    }
}

async fn create(runtime: &Runtime, n: usize) -> anyhow::Result<(u16, Option<u64>)> {
    let request = http::Request::post("/todos")
        .header("host", "races.local")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(r#"{{"title":"todo {n}"}}"#))))?;
    let response = runtime.handle(request).await;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok((status, json["id"].as_u64()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_survive_increments_that_lose_races() -> anyhow::Result<()> {
    let backend = Arc::new(LosesRaces {
        inner: MemoryBackend::new(),
        every: 3,
        increments: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    let runtime = Arc::new(Runtime::builder().backend(backend.clone()).build()?);
    // One first create, then 20 clients × 10 creates at once.
    assert_eq!(create(&runtime, 0).await?.0, 201);
    let mut clients = Vec::new();
    for client in 0..20 {
        let runtime = runtime.clone();
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..10 {
                answers.push(create(&runtime, client * 10 + i + 1).await?);
            }
            anyhow::Ok(answers)
        }));
    }
    let mut ids = HashSet::new();
    for client in clients {
        for (status, id) in client.await?? {
            assert_eq!(status, 201, "a create failed");
            ids.insert(id.ok_or_else(|| anyhow::anyhow!("a todo without an id"))?);
        }
    }
    let lost = backend.lost.load(Ordering::SeqCst);
    println!(
        "200 concurrent creates: {} distinct ids; {lost} of {} increments lost a race and were tried again",
        ids.len(),
        backend.increments.load(Ordering::SeqCst)
    );
    assert_eq!(ids.len(), 200, "ids handed out twice");
    assert!(
        lost >= 200,
        "the fault was not exercised: {lost} lost races"
    );
    Ok(())
}
