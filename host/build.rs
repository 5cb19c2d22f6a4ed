//! Builds the todo component from `guest/` for `wasm32-wasip2` and hands its path to the host
//! crate (`TODO_COMPONENT_WASM`), which embeds it: `cargo run -p todo-host` needs no other step.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ is inside the workspace");
    for watched in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    // A target directory of its own: the outer cargo holds the lock on the main one while this
    // script runs, so sharing it would deadlock.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_wasm_target();
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            // The component's own profile (LTO, one codegen unit): see the workspace Cargo.toml.
            "--profile",
            "component",
            "--package",
            "todo-guest",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // The host's flags are for the host's target, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // Under `cargo clippy` the wrapper would lint the guest here, as a build failure of the
        // host; the guest is linted as a workspace member in its own right.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("cannot run cargo to build the guest component");
    assert!(
        status.success(),
        "building the guest component failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );
    let wasm = target_dir.join("wasm32-wasip2/component/todo_guest.wasm");
    assert!(wasm.exists(), "the guest build left no {}", wasm.display());
    println!("cargo:rustc-env=TODO_COMPONENT_WASM={}", wasm.display());
}

/// Installs the `wasm32-wasip2` standard library with rustup when it is missing, so that a fresh
/// clone builds with `cargo run` alone. Without rustup, the build fails below with a hint.
fn ensure_wasm_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = sysroot.is_some_and(|root| root.join("lib/rustlib/wasm32-wasip2").exists());
    if !installed {
        println!("cargo:warning=installing the wasm32-wasip2 target with rustup (once)");
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
    }
}
