//! `todo-host`: a wasmtime host that serves HTTP with a fresh WebAssembly component instance for
//! every request and keeps the data in a key-value store that lives in the host.
//!
//! # Layout
//! Start-up, in the order it happens:
//! * [`config`]: the command line and the plain [`Config`] it becomes (every flag parsed and
//!   checked there, `--store` into a typed [`kv::BackendConfig`]).
//! * [`app`]: what to run, as an [`App`]: the command line's one component, or the app of a
//!   Spin-style manifest ([`manifest`] reads and checks it, and runs `up --build`'s build
//!   commands; it knows nothing of [`App`]).
//! * [`activation`]: listening sockets handed down by a parent (systemd's socket activation),
//!   checked before anything serves; readiness told back to systemd.
//! * [`server`]: [`Server::bind`] opens the app's stores, builds its [`Runtime`] and binds the
//!   socket (or takes the inherited one); then the accept loop, the idle exit and graceful
//!   shutdown.
//! * [`engine`]: one engine and epoch ticker per process, the embedded todo component, and
//!   compiling (or loading from the artifact cache).
//! * [`deployment`]: one linker per engine; each component pre-instantiated and granted its
//!   stores, on its routes ([`routes`]: which component answers which path).
//! * [`runtime`]: the [`Runtime`] and all its methods: made by [`RuntimeBuilder`] (one
//!   component) or [`Runtime::for_app`], with one admission limit; [`Runtime::reload`] loads a
//!   new [`deployment::Deployment`] and swaps it in without dropping a request.
//! * [`admin`]: the admin listener (metrics, health, readiness) and the reload triggers
//!   (`SIGHUP`, `POST /admin/reload`), which re-read the app, open any new store and call
//!   [`Runtime::reload`]; [`metrics`]: what is counted; [`logging`]: where log lines go (the
//!   access log in batches).
//!
//! Imports run one way, down this list: `server` → `activation`, `admin` → `runtime` → `deployment` → `app` →
//! `manifest`, `config` → `engine` → the rest (routes, limits, metrics, logging, the request
//! path and the data below); no module imports through this file's re-exports, which are for
//! outside users.
//!
//! The request path, in the order a request meets it ([`runtime`] reads top to bottom):
//! * [`admission`]: one concurrency limit for the whole host;
//! * [`incoming`]: head and body checked and read within the [`limits`] before any guest runs;
//! * [`state`]: what one request's wasmtime `Store` holds (WASI, `wasi:http`, the KV view, the
//!   memory limiter);
//! * [`exchange`]: the running guest and the reading of its answer, side by side;
//! * [`refusal`]: every answer the host gives itself, as JSON.
//!
//! The data:
//! * [`kv`]: the [`kv::KvBackend`] seam and one file per backend (memory, SQLite, Redis; NATS,
//!   the largest, a folder), each registered once in [`kv::BACKENDS`];
//! * [`wasi_keyvalue`]: the WIT face of the store, `wasi:keyvalue` in both drafts, on a backend.
//! * [`wasi_config`]: `wasi:config/store` in both versions: each component's configuration.
//!
//! Words: a *backend* is where key-value data lives (`--store` names one); a *store label* is
//! the name a component opens (`default`); a *bucket* is an open label or name; a wasmtime
//! `Store` is one instance's host state, and nothing else is called a store in code.
//!
//! # Embedding
//! The runtime is a library: run the todo component (or any component of the same world) inside
//! your own program, with or without sockets. [`Runtime::builder`] takes the component, the store,
//! the [`limits::Limits`] and a folder to mount read-only (for a component that reads files; the
//! todo component reads none, and `todo-host --public` serves a folder with the files
//! component); [`Runtime::handle`] takes an `http::Request` with any body and gives back the
//! response.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//!
//! let runtime = todo_host::Runtime::builder()
//!     .backend(Arc::new(todo_host::kv::memory::MemoryBackend::new()))
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
//! 2. [`runtime::Runtime::handle`] picks the component of the path's route, takes a concurrency
//!    slot, checks the request's size [`limits`] and reads its body, then makes a new `Store`
//!    with fresh [`state::RequestState`] (resource table, WASI context with no files, no network,
//!    no environment), instantiates the component from the pre-resolved `ProxyPre` (the pooling
//!    allocator makes this microseconds), and calls `wasi:http/incoming-handler.handle`.
//! 3. The guest reads the request and calls `wasi:keyvalue`, which [`wasi_keyvalue`] forwards to
//!    the shared `Arc<dyn KvBackend>`.
//! 4. The guest sets the response and writes its body; the host reads it whole (bounded), so a
//!    guest that traps, overruns its deadline or its memory still yields a well-formed 5xx.
//! 5. The store is dropped: the instance, its memory and its resources are gone.

pub mod activation;
pub mod admin;
pub mod admission;
pub mod app;
pub mod config;
pub mod deployment;
pub mod engine;
pub mod exchange;
pub mod incoming;
pub mod kv;
pub mod limits;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod refusal;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod state;
pub mod wasi_config;
pub mod wasi_keyvalue;

pub use app::App;
pub use config::Config;
pub use runtime::{Runtime, RuntimeBuilder};
pub use server::Server;
