//! The embedding API: a runtime inside another program, called in-process without sockets.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use todo_host::Runtime;
use todo_host::kv::KvBackend;
use todo_host::kv::memory::MemoryBackend;

async fn call(
    runtime: &Runtime,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "embedded.local")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = runtime.handle(request).await;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_answers_in_process_and_writes_to_the_store_it_was_given() -> anyhow::Result<()> {
    let store: Arc<dyn KvBackend> = Arc::new(MemoryBackend::new());
    let runtime = Runtime::builder().backend(store.clone()).build()?;
    let (status, todo) = call(&runtime, "POST", "/todos", r#"{"title":"in process"}"#).await?;
    assert_eq!(status, 201);
    assert_eq!(todo["url"], "http://embedded.local/todos/1");
    let (status, list) = call(&runtime, "GET", "/todos", "").await?;
    assert_eq!(
        (status, list[0]["title"].clone()),
        (200, "in process".into())
    );
    // The data is in the store the embedder handed over, not in the runtime.
    assert!(store.get("default", "todo/1").await?.is_some());
    let again = Runtime::builder().backend(store).build()?;
    assert_eq!(call(&again, "GET", "/todos/1", "").await?.0, 200);
    Ok(())
}
