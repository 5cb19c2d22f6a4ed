//! `todo-host up --manifest spin.toml`: several components on several routes in one host, each
//! with only the key-value stores and files its manifest grants.

mod support;

use std::path::Path;

use support::{Host, fixture, temp_dir, workspace};

/// The todo component as `build.rs` built it (`wasi:keyvalue@0.2.0-draft`).
const TODO_WASM: &str = env!("TODO_COMPONENT_WASM");

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn up(manifest: &str, runtime_config: Option<&str>) -> anyhow::Result<Host> {
    let mut args = vec!["up", "--manifest", manifest];
    if let Some(config) = runtime_config {
        args.extend(["--runtime-config-file", config]);
    }
    Host::start(&args)
}

#[test]
fn two_components_on_two_routes_with_a_granted_store_that_persists() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let counter = fixture("counter")?;
    let manifest = write(
        dir.path(),
        "spin.toml",
        &format!(
            r#"
spin_manifest_version = 2
[application]
name = "two"
[[trigger.http]]
route = "/..."
component = "todo"
[[trigger.http]]
route = "/count"
component = "counter"
[component.todo]
source = "{TODO_WASM}"
key_value_stores = ["default"]
[component.counter]
source = "{}"
"#,
            counter.display()
        ),
    )?;
    let config = write(
        dir.path(),
        "runtime-config.toml",
        "[key_value_store.default]\ntype = \"spin\"\npath = \"data/todo.db\"\n",
    )?;
    std::fs::create_dir_all(dir.path().join("data"))?;

    let host = up(&manifest, Some(&config))?;
    assert!(host.banner.contains("app two: "), "{}", host.banner);
    assert!(
        host.banner.contains("counter on /count") && host.banner.contains("todo on /..."),
        "{}",
        host.banner
    );
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"from the app"}"#))?
            .0,
        201
    );
    for _ in 0..3 {
        assert_eq!(
            host.request("GET", "/count", None)?.text(),
            "1",
            "the counter component, fresh each time"
        );
    }
    assert!(
        host.request("GET", "/count/more", None)?
            .text()
            .contains("<title>Todos</title>"),
        "an exact route is exact"
    );
    assert!(host.terminate()?.success());

    // The granted store is the SQLite file the runtime config named.
    assert!(dir.path().join("data/todo.db").exists());
    let again = up(&manifest, Some(&config))?;
    let (_, todos) = again.call("GET", "/todos", None)?;
    assert_eq!(todos[0]["title"], "from the app");
    Ok(())
}

#[test]
fn a_store_the_manifest_does_not_grant_is_access_denied() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let manifest = write(
        dir.path(),
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n[component.todo]\nsource = \"{TODO_WASM}\"\n"
        ),
    )?;
    let host = up(&manifest, None)?;
    let (status, body) = host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?;
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("access to store 'default' was denied")),
        "{body}"
    );
    // Routes no component serves are 404 JSON from the host.
    Ok(())
}

#[test]
fn files_are_mounted_read_only_where_the_manifest_says() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    std::fs::create_dir_all(dir.path().join("static"))?;
    std::fs::write(
        dir.path().join("static/index.html"),
        "<title>from the manifest's files</title>",
    )?;
    let manifest = write(
        dir.path(),
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n[component.todo]\nsource = \"{TODO_WASM}\"\nfiles = [{{ source = \"static\", destination = \"/public\" }}]\n"
        ),
    )?;
    let host = up(&manifest, None)?;
    assert!(
        host.request("GET", "/", None)?
            .text()
            .contains("from the manifest's files")
    );
    Ok(())
}

#[test]
fn mistakes_in_the_manifest_fail_at_start_and_name_the_culprit() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let cases = [
        (format!("spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n[component.todo]\nsource = \"{TODO_WASM}\"\nkey_value_stores = [\"elsewhere\"]\n"), "'elsewhere'"),
        (format!("spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"nobody\"\n[component.todo]\nsource = \"{TODO_WASM}\"\n"), "'nobody'"),
        ("spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n[component.todo]\nsource = \"missing.wasm\"\n".to_string(), "missing.wasm"),
        ("spin_manifest_version = 1\n".to_string(), "version 2"),
    ];
    for (text, named) in cases {
        let manifest = write(dir.path(), "spin.toml", &text)?;
        let output = std::process::Command::new(support::HOST_BIN)
            .args(["--listen", "127.0.0.1:0", "up", "--manifest", &manifest])
            .output()?;
        assert!(!output.status.success(), "{text} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(named),
            "stderr does not name {named}: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn the_shipped_spin_manifest_runs_the_draft2_todo_component() -> anyhow::Result<()> {
    // deploy/spin.toml points at the draft2 build, as Spin needs it.
    support::todo_component_draft2()?;
    let dir = temp_dir()?;
    let config = write(
        dir.path(),
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
            dir.path().join("todo.db").display()
        ),
    )?;
    let manifest = workspace().join("deploy/spin.toml").display().to_string();
    let host = up(&manifest, Some(&config))?;
    assert_eq!(
        host.call(
            "POST",
            "/todos",
            Some(r#"{"title":"on the shipped manifest"}"#)
        )?
        .0,
        201
    );
    assert_eq!(
        host.call("GET", "/todos/1", None)?.1["title"],
        "on the shipped manifest"
    );
    Ok(())
}
