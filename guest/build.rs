//! Link settings for the embedded build (`wasm32-unknown-unknown`, made a component in
//! `host/build.rs`): a larger initial memory, so that the arena (`src/arena.rs`) serves a
//! request without `memory.grow`.
//!
//! The linker's default initial memory ends a few KiB past the data and the 1 MiB stack, so a
//! request that allocates more than that (a page of todos) grew memory, and every `memory.grow`
//! costs the host two `mprotect` calls for that instance (the grow, then the slot's reset).
//! Memory that a request does not touch costs nothing: the host's pooled slots are copy-on-write
//! images reset page by page, only where an instance wrote.

/// The initial memory of the embedded build: 4 MiB, about 2.8 MiB of it heap.
const INITIAL_MEMORY_BYTES: u64 = 4 << 20;

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "wasm32" && os == "unknown" {
        println!("cargo:rustc-link-arg-cdylib=--initial-memory={INITIAL_MEMORY_BYTES}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
