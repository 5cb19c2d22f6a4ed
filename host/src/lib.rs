//! `todo-host`: a wasmtime host that serves HTTP with a fresh WebAssembly component instance for
//! every request and keeps the data in a key-value store that lives in the host.
//!
//! # Layout
//! * [`config`]: the command line and the plain [`Config`] it becomes.
//! * [`engine`]: engine settings, the epoch ticker, precompiled artifacts and their cache.
//! * [`runtime`]: linker and `ProxyPre`, built once; the per-request instance.
//! * [`state`]: what one request's `Store` holds (WASI, `wasi:http`, the KV view).
//! * [`limits`]: every per-request limit, its default and why.
//! * [`kv`]: the [`kv::KvBackend`] seam, one file per backend, and the `wasi:keyvalue` host side.
//! * [`manifest`]: Spin-style app manifests: several components on several routes.
//! * [`server`]: routing, the accept loop and graceful shutdown.
//!
//! # Embedding
//! The runtime is a library: run the todo component (or any component of the same world) inside
//! your own program, with or without sockets. [`Runtime::builder`] takes the component, the store,
//! the [`limits::Limits`] and a public folder; [`Runtime::handle`] takes an `http::Request` with
//! any body and gives back the response.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//!
//! let runtime = todo_host::Runtime::builder()
//!     .store(Arc::new(todo_host::kv::memory::MemoryBackend::new()))
//!     .build()?;
//! let request = http::Request::builder()
//!     .method("POST")
//!     .uri("/todos")
//!     .header("host", "example.local")
//!     .body(Full::new(Bytes::from(r#"{"title":"embedded"}"#)))?;
//! let response = runtime.handle(request).await;
//! assert_eq!(response.status(), 201);
//! # Ok(())
//! # }
//! ```
//!
//! `host/examples/embed.rs` is a runnable program that does this and then serves the same
//! runtime behind a plain hyper server.
//!
//! # Request lifecycle
//! 1. hyper parses a request on a connection task ([`server`]).
//! 2. [`runtime::Runtime::handle`] takes a concurrency slot, checks the request's size
//!    [`limits`] and reads its body, then makes a new `Store` with fresh [`state::RequestState`]
//!    (resource table, WASI context with no files, no network, no environment), instantiates the
//!    component from the pre-resolved `ProxyPre` (the pooling allocator makes this microseconds),
//!    and calls `wasi:http/incoming-handler.handle`.
//! 3. The guest reads the request and calls `wasi:keyvalue`, which [`kv::wasi`] forwards to the
//!    one shared `Arc<dyn KvBackend>`.
//! 4. The guest sets the response and writes its body; the host reads it whole (bounded), so a
//!    guest that traps, overruns its deadline or its memory still yields a well-formed 5xx.
//! 5. The store is dropped: the instance, its memory and its resources are gone.

pub mod config;
pub mod engine;
pub mod kv;
pub mod limits;
pub mod manifest;
pub mod runtime;
pub mod server;
pub mod state;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};

pub use config::Config;
pub use runtime::{Runtime, RuntimeBuilder};

/// A server that has validated its configuration and bound its socket, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    routes: Arc<server::Routes>,
    /// What the start-up line says after the address.
    description: String,
    shutdown_grace: std::time::Duration,
}

impl Server {
    /// Checks everything (component, store) and binds the socket, in that order, so that a bad
    /// flag fails before anything listens.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let mut builder = Runtime::builder()
            .limits(config.limits.clone())
            .cache_dir(config.cache_dir.clone());
        if let Some(path) = &config.component {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read component {}", path.display()))?;
            builder = builder.component(bytes);
        }
        if let Some(dir) = &config.public {
            let canonical = dir
                .canonicalize()
                .with_context(|| format!("cannot use public folder {}", dir.display()))?;
            anyhow::ensure!(
                canonical.is_dir(),
                "public folder {} is not a directory",
                dir.display()
            );
            builder = builder.public_dir(Some(canonical));
        }
        let kv = kv::open(&config.store).await?;
        let runtime = builder
            .store(kv)
            .build()
            .with_context(|| match &config.component {
                Some(path) => format!("cannot load component {}", path.display()),
                None => "cannot load the embedded todo component".to_string(),
            })?;
        let public = match runtime.mounted_dir() {
            Some(dir) => format!(", public: {}", dir.display()),
            None => String::new(),
        };
        let description = format!("store: {}{public}", runtime.stores_summary());
        let routes = server::Routes::single(Arc::new(runtime));
        Self::listen_with(config, routes, description)
    }

    /// Like [`Server::bind`], for the app of a Spin-style manifest: one runtime per component,
    /// each on its routes, each with the stores and files the manifest grants it.
    pub async fn bind_app(config: &Config, app: &manifest::App) -> anyhow::Result<Self> {
        let mut backends = std::collections::HashMap::new();
        for (label, url) in &app.stores {
            let backend = kv::open(url)
                .await
                .with_context(|| format!("key-value store '{label}'"))?;
            backends.insert(label.clone(), backend);
        }
        let mut table = Vec::new();
        let mut served = Vec::new();
        for component in &app.components {
            let bytes = std::fs::read(&component.source).with_context(|| {
                format!(
                    "component '{}': cannot read {}",
                    component.id,
                    component.source.display()
                )
            })?;
            let granted = component
                .key_value_stores
                .iter()
                .map(|label| (label.clone(), backends[label].clone()))
                .collect();
            let mut builder = Runtime::builder()
                .component(bytes)
                .granted_stores(granted)
                .limits(config.limits.clone())
                .cache_dir(config.cache_dir.clone());
            if let Some((dir, guest_path)) = &component.files {
                builder = builder.mount(dir.clone(), guest_path.clone());
            }
            let runtime = Arc::new(
                builder
                    .build()
                    .with_context(|| format!("cannot load component '{}'", component.id))?,
            );
            for route in &component.routes {
                table.push((route.clone(), runtime.clone()));
                served.push(format!("{} on {}", component.id, route));
            }
        }
        let mut stores: Vec<String> = backends
            .iter()
            .map(|(label, backend)| format!("{label}: {}", backend.summary()))
            .collect();
        stores.sort();
        let description = format!(
            "app {}: {}; stores: {}",
            app.name,
            served.join(", "),
            if stores.is_empty() {
                "none".to_string()
            } else {
                stores.join("; ")
            }
        );
        Self::listen_with(config, server::Routes::new(table), description)
    }

    fn listen_with(
        config: &Config,
        routes: server::Routes,
        description: String,
    ) -> anyhow::Result<Self> {
        let listener = listen(config.listen, config.reuse_port)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            routes: Arc::new(routes),
            description,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address actually bound (the port is known even when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The one start-up line, e.g. `Serving HTTP on http://127.0.0.1:3001/ (store: SQLite at todo.db)`;
    /// with `--public`, the folder is named too.
    pub fn banner(&self) -> std::io::Result<String> {
        Ok(format!(
            "Serving HTTP on http://{}/ ({})",
            self.local_addr()?,
            self.description
        ))
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        server::run(self.listener, self.routes, shutdown, self.shutdown_grace).await
    }
}

/// How many connections may wait to be accepted: enough for a burst of 200 clients at once.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr`; with `reuse_port`, other processes may bind it too.
fn listen(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted host can bind at once although the old one's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
