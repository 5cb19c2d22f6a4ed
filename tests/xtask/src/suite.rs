//! Running the whole suite after the set-up, and its one closing line.
//!
//! Three parts, each counted: every cargo test of the workspace; the check that the README's run
//! command (`cargo run --release -p todo-host`) finds everything the test build compiled and
//! compiles no dependency again; and the published contract fuzzed by schemathesis
//! (tests/contract.sh).

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::setup;

/// Passed and failed tests, summed over test binaries and checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Adds a libtest summary line (`test result: ok. 12 passed; 0 failed; ...`); other lines
    /// add nothing.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let count = |word: &str| {
            rest.split(';')
                .find_map(|part| {
                    part.trim()
                        .strip_suffix(word)?
                        .trim()
                        .rsplit(' ')
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        self.passed += count(" passed");
        self.failed += count(" failed");
    }

    fn add_check(&mut self, passed: bool) {
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// `cargo xtask test [--no-contract] [ARGS...]`.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let no_contract = args.iter().any(|arg| arg == "--no-contract");
    let cargo_args: Vec<&String> = args.iter().filter(|arg| *arg != "--no-contract").collect();
    let scripts = setup::run()?;
    let path = path_with(&scripts)?;

    let mut tally = Tally::default();
    println!(
        "xtask: cargo test --release --workspace --no-fail-fast {}",
        join(&cargo_args)
    );
    let mut child = cargo(&path)
        .args(["test", "--release", "--workspace", "--no-fail-fast"])
        .args(&cargo_args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run cargo test: {err}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|err| format!("cannot read cargo test's output: {err}"))?;
        println!("{line}");
        tally.add_line(&line);
    }
    let cargo_ok = child
        .wait()
        .map_err(|err| format!("cargo test: {err}"))?
        .success();
    if !cargo_ok && tally.failed == 0 {
        // It failed before any test could: a build error. Count it, so the line is not green.
        tally.failed += 1;
    }
    println!(
        "xtask: cargo test: {} passed, {} failed",
        tally.passed, tally.failed
    );

    tally.add_check(run_build_reuses_test_build(&path));
    if cargo_args.is_empty() && !no_contract {
        let contract = Command::new("bash")
            .arg(setup::workspace().join("tests/contract.sh"))
            .env("PATH", &path)
            .status()
            .is_ok_and(|status| status.success());
        tally.add_check(contract);
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 && cargo_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// After the test build, the README's run command must compile none of the dependencies again
/// (only the workspace's own crates may): the two builds ask the same features of every shared
/// crate. A dependency that turns up here means a workspace member's dev-dependency or a test
/// crate adds a feature the run build lacks; align it in `host/Cargo.toml` (see its notes).
fn run_build_reuses_test_build(path: &OsString) -> bool {
    println!(
        "xtask: cargo build --release -p todo-host (after the test build: nothing to compile)"
    );
    let out = match cargo(path)
        .args(["build", "--release", "-p", "todo-host"])
        .output()
    {
        Ok(out) => out,
        Err(err) => {
            eprintln!("xtask: cannot run cargo build: {err}");
            return false;
        }
    };
    let log = String::from_utf8_lossy(&out.stderr);
    let rebuilt = rebuilt_dependencies(&log);
    if out.status.success() && rebuilt.is_empty() {
        println!("xtask: the run build reused the test build");
        true
    } else {
        eprintln!("{log}");
        eprintln!(
            "xtask: the run build compiled again what the test build had built: {}",
            rebuilt.join(", ")
        );
        false
    }
}

/// The crates a cargo log says it compiled, less the workspace's own (whose paths are local).
fn rebuilt_dependencies(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.trim().strip_prefix("Compiling "))
        .filter(|crate_and_version| !crate_and_version.contains(" ("))
        .map(str::to_string)
        .collect()
}

/// `cargo` as the one that runs us (rustup's proxy picks the same toolchain), with `path`, and
/// without what `cargo run` set for this process: a build script that watches one of those
/// variables (ring's watches `CARGO_MANIFEST_DIR`) would see it change between our builds and the
/// user's own `cargo run -p todo-host`, and that would compile ring, rustls, async-nats and
/// todo-host again.
fn cargo(path: &OsString) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(setup::workspace()).env("PATH", path);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_") {
            command.env_remove(&*name);
        }
    }
    match library_path_without_cargo_run(std::env::var_os("LD_LIBRARY_PATH")) {
        Some(kept) => command.env("LD_LIBRARY_PATH", kept),
        None => command.env_remove("LD_LIBRARY_PATH"),
    };
    command
}

/// `LD_LIBRARY_PATH` less the folders `cargo run` put in front (the target folder's and the
/// toolchain's libraries); `None` when nothing else is left.
fn library_path_without_cargo_run(value: Option<OsString>) -> Option<OsString> {
    let target = setup::workspace().join("target");
    let kept: Vec<PathBuf> = std::env::split_paths(&value?)
        .filter(|dir| !dir.starts_with(&target) && !dir.to_string_lossy().contains("/toolchains/"))
        .collect();
    if kept.is_empty() {
        return None;
    }
    std::env::join_paths(kept).ok()
}

/// `PATH` with pip's scripts folder first, where the PyPI tools are.
fn path_with(scripts: &Path) -> Result<OsString, String> {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![scripts.to_path_buf()];
    dirs.extend(std::env::split_paths(&current).filter(|dir| dir != scripts));
    std::env::join_paths(dirs).map_err(|err| format!("cannot make PATH: {err}"))
}

fn join(args: &[&String]) -> String {
    args.iter()
        .map(|arg| arg.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_summed_and_other_lines_ignored() {
        let mut tally = Tally::default();
        tally.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        tally.add_line(
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        tally.add_line("test api::creates ... ok");
        tally.add_line("running 5 tests");
        assert_eq!(
            tally,
            Tally {
                passed: 15,
                failed: 2
            }
        );
        tally.add_check(false);
        tally.add_check(true);
        assert_eq!(
            tally,
            Tally {
                passed: 16,
                failed: 3
            }
        );
    }

    #[test]
    fn nested_cargo_gets_none_of_what_cargo_run_set() {
        // Test binaries run with the same variables `cargo run` sets.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let command = cargo(&OsString::from("/bin"));
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|name| name == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(
            removed.iter().any(|name| name == "CARGO_PKG_NAME"),
            "{removed:?}"
        );
        let target = setup::workspace().join("target/debug/deps");
        let mixed = std::env::join_paths([target.as_path(), Path::new("/opt/lib")]).unwrap();
        assert_eq!(
            library_path_without_cargo_run(Some(mixed)),
            Some(OsString::from("/opt/lib"))
        );
        let only_cargo = std::env::join_paths([target]).unwrap();
        assert_eq!(library_path_without_cargo_run(Some(only_cargo)), None);
    }

    #[test]
    fn only_dependencies_compiled_again_are_reported() {
        let log = "   Compiling semver v1.0.28\n   Compiling todo-host v0.1.0 (/work/main/host)\n\
                   Finished `release` profile [optimized] target(s) in 3.2s\n   Compiling wasmtime v48.0.8\n";
        assert_eq!(
            rebuilt_dependencies(log),
            ["semver v1.0.28", "wasmtime v48.0.8"]
        );
        assert!(rebuilt_dependencies("    Finished `release` profile\n").is_empty());
    }
}
