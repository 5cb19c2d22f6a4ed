//! Builds the todo component from `guest/` and the files component from `guest/files/`, and
//! hands their paths to the host crate (`TODO_COMPONENT_WASM`, `FILES_COMPONENT_WASM`), which
//! embeds them: `cargo run -p todo-host` needs no other step.
//!
//! Each is compiled for `wasm32-unknown-unknown` and made a component here (wit-component,
//! as `wasm32-wasip2`'s linker would): without a C library, the todo component imports only what
//! the todo logic calls (48 functions, against 75 for a `wasm32-wasip2` build, whose std brings
//! `wasi:cli` and `wasi:filesystem` imports for stdio, environment and files), and the guest's
//! own arena allocator starts in the initial memory instead of growing it. Every instance pays
//! for each import and for each `memory.grow` (see bench/steps.md). The same crate still builds
//! for `wasm32-wasip2` (Spin's draft2 build, `wash dev`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ is inside the workspace");
    for watched in [
        "guest/src",
        "guest/build.rs",
        "guest/Cargo.toml",
        "guest/files/src",
        "guest/files/Cargo.toml",
        "wit",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    // Target directories of their own: the outer cargo holds the lock on the main one while this
    // script runs, so sharing it would deadlock.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    ensure_wasm_target();
    // One cargo command per component, each in its own target directory. In one command, cargo
    // would unify `todo-guest`'s features and link the todo component's export into the files
    // component too; in one directory, the files build would put its dependency's cdylib (the
    // todo crate without its component) where the todo component's build leaves the todo
    // component.
    for (package, target_dir, env) in [
        ("todo-guest", target.join("wasm"), "TODO_COMPONENT_WASM"),
        (
            "todo-files",
            target.join("wasm-files"),
            "FILES_COMPONENT_WASM",
        ),
    ] {
        let wasm = build_component(workspace, package, &target_dir);
        println!("cargo:rustc-env={env}={}", wasm.display());
    }
}

/// Builds `package` of `workspace` for [`GUEST_TARGET`] in `target_dir` and makes a component
/// of it; returns where the component is.
fn build_component(workspace: &Path, package: &str, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            // The component's own profile (LTO, one codegen unit): see the workspace Cargo.toml.
            "--profile",
            "component",
            "--package",
            package,
            "--target",
            GUEST_TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // The host's flags are for the host's target, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // Under `cargo clippy` the wrapper would lint the guest here, as a build failure of the
        // host; the guests are linted as workspace members in their own right.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build {package}: {err}"));
    assert!(
        status.success(),
        "building {package} failed (is the target installed? `rustup target add {GUEST_TARGET}`)"
    );
    let name = package.replace('-', "_");
    let module = target_dir.join(format!("{GUEST_TARGET}/component/{name}.wasm"));
    let core = std::fs::read(&module)
        .unwrap_or_else(|err| panic!("the build of {package} left no {}: {err}", module.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|err| panic!("cannot make a component of {}: {err:#}", module.display()));
    let wasm = target_dir.join(format!("{name}.wasm"));
    std::fs::write(&wasm, component)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", wasm.display()));
    wasm
}

/// What the guest compiles to before it becomes a component.
const GUEST_TARGET: &str = "wasm32-unknown-unknown";

/// Installs the guest target's standard library with rustup when it is missing, so that a fresh
/// clone builds with `cargo run` alone. Without rustup, the build fails below with a hint.
fn ensure_wasm_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed =
        sysroot.is_some_and(|root| root.join("lib/rustlib").join(GUEST_TARGET).exists());
    if !installed {
        println!("cargo:warning=installing the {GUEST_TARGET} target with rustup (once)");
        let _ = Command::new("rustup")
            .args(["target", "add", GUEST_TARGET])
            .status();
    }
}
