//! The files component: the public folder the host mounts read-only at `/public`, served as a
//! small `wasi:http` component of its own beside the todo component (world `todo:app/files`), the
//! way Spin serves files with a file-server component beside an app. The host routes the API
//! (`todo_guest::router::API_ROUTES`) to the todo component and every other path here, so the
//! todo component imports no file system.
//!
//! What is served, and how (path cleaning, `ETag`s, content types, the single-page-app fallback
//! to the folder's `index.html` or to the todo page), is [`todo_guest::router::handle_files`] and
//! [`todo_guest::public`], written once and unit-tested natively there. This crate is only the
//! component's adapter: `wasi:filesystem` reads of the folder, and the `wasi:http` adapter the
//! todo component uses too (`guest/src/component/wasi_http.rs`). It imports no key-value store.
//!
//! Build it in a cargo command and a target directory of its own (`cargo build -p todo-files
//! --target wasm32-wasip2 --target-dir target/wasm-files`): in one command with `todo-guest`,
//! cargo would unify the todo crate's features and link its export here too (see
//! `guest/Cargo.toml`); in the todo component's target directory, it would leave the todo crate's
//! cdylib, built without its component, where the todo component was.

#[cfg(target_arch = "wasm32")]
mod component;
