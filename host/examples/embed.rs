//! Embedding the todo runtime in your own program, without the `todo-host` CLI.
//!
//! It makes a [`Runtime`] (the embedded todo component, an in-memory store), calls it
//! in-process with plain `http::Request`s (no sockets), prints what it answered, and then, with
//! `--serve`, puts the same runtime behind a plain hyper server:
//!
//! ```sh
//! cargo run --release -p todo-host --example embed            # in-process calls only
//! cargo run --release -p todo-host --example embed -- --serve # then serve on 127.0.0.1:3005
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use todo_host::Runtime;
use todo_host::kv::memory::MemoryBackend;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = Arc::new(
        Runtime::builder()
            .backend(Arc::new(MemoryBackend::new()))
            .build()?,
    );

    // In process: a request in, a response out, a fresh instance in between.
    for (method, path, body) in [
        ("POST", "/todos", r#"{"title":"embedded"}"#),
        ("PATCH", "/todos/1", r#"{"completed":true}"#),
        ("GET", "/todos", ""),
    ] {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "embedded.local")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = runtime.handle(request).await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|err| anyhow::anyhow!("{err:?}"))?
            .to_bytes();
        println!(
            "{method} {path} -> {status} {}",
            String::from_utf8_lossy(&bytes)
        );
    }

    if std::env::args().any(|arg| arg == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3005").await?;
        println!(
            "Serving HTTP on http://{}/ (embedded runtime)",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = listener.accept().await?;
            let runtime = runtime.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let runtime = runtime.clone();
                    async move { Ok::<_, std::convert::Infallible>(runtime.handle(request).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
    Ok(())
}
