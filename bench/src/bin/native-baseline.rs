//! The native baseline: the same todo logic as the component, compiled as a normal Rust library
//! and called directly by a hyper server, on the same `KvBackend`. No wasm, no instance: the limit
//! `todo-host` is measured against.
//!
//! `native-baseline [--listen ADDR] [--store URL]` (`--help` says more); prints the same start-up
//! line as `todo-host`.

// The allocator `todo-host` runs with: the two differ in wasm, not in malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use todo_bench::{NativeKv, now};
use todo_host::kv::KvBackend;
use todo_host::limits::DEFAULT_MAX_BODY;
use tokio::net::TcpListener;

/// Where it listens unless told otherwise: loopback, on the port after `todo-host`'s 3001, so
/// the two can run side by side.
const DEFAULT_LISTEN: &str = "127.0.0.1:3002";
/// The store unless told otherwise: memory, which needs nothing set up.
const DEFAULT_STORE: &str = "memory://";

/// The todo logic compiled natively and called directly by a hyper server, on the same key-value
/// stores as `todo-host`: the baseline `bench/run.sh` measures `todo-host` against.
#[derive(Debug, Parser)]
#[command(name = "native-baseline")]
struct Cli {
    /// Address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Key-value store, as `todo-host --store` takes it: `memory://`, `sqlite://PATH`,
    /// `redis://HOST:PORT[/DB]` or `nats://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, value_name = "URL", default_value = DEFAULT_STORE)]
    store: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let backend = todo_host::kv::open(&cli.store)
        .await
        .with_context(|| format!("cannot open the store {}", cli.store))?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    println!(
        "Serving HTTP on http://{}/ (store: {}, native baseline)",
        listener.local_addr()?,
        backend.summary()
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, backend.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    backend: Arc<dyn KvBackend>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut guest_request = todo_guest::Request::new(
        parts.method.as_str(),
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
    );
    guest_request.authority = header("host").unwrap_or_else(|| "localhost".to_string());
    guest_request.content_type = header("content-type");
    guest_request.if_none_match = header("if-none-match");
    let response = match Limited::new(body, DEFAULT_MAX_BODY).collect().await {
        Ok(body) => {
            guest_request.body = Vec::from(body.to_bytes());
            // The logic is synchronous, like the guest's, and runs right here on the worker:
            // `NativeKv` blocks the thread only for a store call that is not ready at once (see
            // its doc), so the memory store never pays for a thread hand-off.
            let kv = NativeKv::new(backend, tokio::runtime::Handle::current());
            todo_guest::handle(&guest_request, &kv, now())
        }
        // The host's default body limit, answered as the host answers it.
        Err(_) => todo_guest::Response::json(
            413,
            &serde_json::json!({
                "error": format!("request body is larger than {DEFAULT_MAX_BODY} bytes")
            }),
        ),
    };
    let mut answer = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *answer.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = answer.headers_mut();
    headers.reserve(response.headers.len());
    for (name, value) in response.headers {
        // The logic writes only valid names and values; an invalid one is left out rather than
        // failing the whole answer.
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    Ok(answer)
}
