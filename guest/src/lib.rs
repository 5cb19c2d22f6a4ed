//! The todo application as a stateless WebAssembly component.
//!
//! Everything a request needs is in this crate; everything a request must remember is in the
//! host's key-value store. The crate builds twice:
//!
//! * for wasm it is the component: `component.rs` adapts `wasi:http` and `wasi:keyvalue` to the
//!   pure logic below (only that module touches WIT bindings). The host embeds a
//!   `wasm32-unknown-unknown` build made a component by `host/build.rs`, with the allocator of `arena.rs`;
//!   `wasm32-wasip2` builds (Spin, `wash dev`) run the same code on wasi-libc's;
//! * natively it is a plain library, so the routing, validation and JSON logic is unit-tested with
//!   `cargo test -p todo-guest` against [`kv::MemoryKv`], and a native server can call it directly.
//!
//! # Layout
//! * [`http`]: the plain request and response types the logic speaks.
//! * [`router`]: method + path → handler, CORS, preflight, the single-page-app fallback.
//! * [`todos`]: the canonical `/todos` API (Todo-Backend compatible).
//! * [`legacy`]: the `/api/rule` and `/api/currentUser` API of the classic Express app.
//! * [`records`]: the todo records in the KV bucket: the crash invariant, create, find, update,
//!   delete.
//! * [`index`]: counts per range of ids, so that pages, offsets and totals cost the page.
//! * [`layout`]: every key of the bucket (`todo/<id>`, `meta/next-id`, the index's keys) and the
//!   JSON of a todo, in one file.
//! * [`body`]: JSON and form body parsing, and query strings, with errors that say what was wrong.
//! * [`percent`]: strict percent-decoding of paths, queries and form bodies.
//! * [`error`]: [`error::ApiError`], mapped to a status and a JSON body in one place.
//! * [`kv`]: the small KV trait the logic is written against, its batch bound, and an in-memory
//!   implementation.
//! * [`page`]: the embedded web page.
//! * [`public`]: static files from a read-only `/public` folder: the logic of the files
//!   component (`guest/files/`), which serves `todo-host --public`; the todo component mounts none.
//! * [`accounts`]: the modes (off, optional, required, from the host's configuration), who a
//!   request is, and the sign-up, sign-in and sign-out routes; [`session`] the tokens and
//!   cookies, [`password`] Argon2id, [`encoding`] hex and base64url.
//! * [`context`]: what a request may ask of its host: store, time, configuration, randomness.
//! * [`time`]: RFC 3339 formatting of wall-clock time.
//! * [`trips`]: the most round trips to the store each route makes, which the tests hold it to.
//!
//! The storage layers stack one way, each importing only from those below it: [`kv`], then
//! [`layout`], [`index`], [`records`], and on top [`todos`] and [`legacy`]; [`error`] imports
//! nothing of them but [`kv::KvError`], so every layer may use it. [`accounts`] and [`session`]
//! sit beside [`records`], on [`kv`] and [`layout`]; the router above them all gives a signed-in
//! caller the todo layers on a [`kv::PrefixedKv`].

pub mod accounts;
pub mod body;
pub mod context;
pub mod encoding;
pub mod error;
pub mod http;
pub mod index;
pub mod kv;
pub mod layout;
pub mod legacy;
pub mod page;
pub mod password;
pub mod percent;
pub mod public;
pub mod records;
pub mod retry;
pub mod router;
pub mod session;
pub mod time;
pub mod todos;
pub mod trips;

#[cfg(target_arch = "wasm32")]
mod component;

// The allocator is the arena only where no C library brings its own (`wasm32-unknown-unknown`,
// the build the host embeds): on `wasm32-wasip2`, wasi-libc's malloc claims the same free memory.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[allow(unsafe_code)]
mod arena;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[global_allocator]
static ALLOCATOR: arena::Arena = arena::Arena::new();

pub use context::Context;
pub use http::{Request, Response};
pub use router::{handle, handle_in, handle_with_files};
