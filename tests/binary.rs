//! The `todo-host` binary as a user runs it: the start-up line, a request, SIGTERM, exit 0; and
//! bad flags that fail before anything listens.

mod support;

use std::process::Command;

use support::{HOST_BIN, Host};

#[test]
fn starts_prints_its_line_answers_and_exits_0_on_sigterm() -> anyhow::Result<()> {
    let dir = support::temp_dir()?;
    let db = dir.path().join("smoke.db");
    let host = Host::start(&["--store", &format!("sqlite://{}", db.display())])?;
    assert!(
        host.banner.starts_with("Serving HTTP on http://127.0.0.1:"),
        "{}",
        host.banner
    );
    assert!(
        host.banner
            .ends_with(&format!("(store: SQLite at {})", db.display())),
        "{}",
        host.banner
    );
    let (status, _) = host.call("GET", "/todos", None)?;
    assert_eq!(status, 200);
    let exit = host.terminate()?;
    assert!(exit.success(), "exit status {exit}");
    assert!(db.exists());
    Ok(())
}

#[test]
fn sigint_also_exits_0() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://"])?;
    support::signal(host.pid(), "INT")?;
    let exit = host.wait()?;
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}

#[test]
fn bad_flags_fail_before_binding_and_name_the_bad_value() -> anyhow::Result<()> {
    let missing = std::env::temp_dir().join("no-such-dir-for-todo-host/x.wasm");
    let cases: [(&[&str], &str); 4] = [
        (&["--listen", "not-an-address"], "not-an-address"),
        (&["--store", "postgres://db"], "postgres"),
        (&["--store", "nothing"], "nothing"),
        (
            &["--component", missing.to_str().unwrap_or_default()],
            "x.wasm",
        ),
    ];
    for (args, named) in cases {
        let mut command = Command::new(HOST_BIN);
        if args[0] != "--listen" {
            // Should the check be missing, the host binds a free port instead of hanging on 3001.
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let output = command.args(args).output()?;
        assert!(!output.status.success(), "{args:?} succeeded");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("Serving HTTP"), "{args:?} started serving");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(named),
            "{args:?}: stderr does not name {named:?}: {stderr}"
        );
    }
    Ok(())
}
