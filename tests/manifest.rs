//! `todo-host up --manifest spin.toml`: several components on several routes in one host, each
//! with only the key-value stores and files its manifest grants, one concurrency limit for them
//! all; `up --build` runs the manifest's build commands, so the README's Spin commands work from
//! a clean checkout.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use support::{Host, fixture, temp_dir, workspace};

/// The todo component as `build.rs` built it (`wasi:keyvalue@0.2.0-draft`).
const TODO_WASM: &str = env!("TODO_COMPONENT_WASM");
/// The files component as `build.rs` built it: the one that reads a mounted folder.
const FILES_WASM: &str = env!("FILES_COMPONENT_WASM");

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

/// Runs `todo-host --listen 127.0.0.1:0 ARGS`, which must fail at start-up, and returns what it
/// wrote to stderr. A host that starts instead is stopped, and the test fails.
fn start_failure(args: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new(support::HOST_BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", support::HOST_BIN))?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("todo-host {args:?} is still running after 30 s: it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
    anyhow::ensure!(!status.success(), "todo-host {args:?} exited 0: {stderr}");
    Ok(stderr)
}

/// A copy of the repository as a fresh clone would have it, plus files not yet committed: what
/// `git ls-files -co --exclude-standard` lists, so no `target/`, no `.spin/`, no built component.
fn copy_of_the_repository() -> anyhow::Result<tempfile::TempDir> {
    let listed = Command::new("git")
        .current_dir(workspace())
        .args(["ls-files", "-z", "-co", "--exclude-standard"])
        .output()
        .context("cannot run git ls-files")?;
    anyhow::ensure!(
        listed.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let copy = temp_dir()?;
    for name in listed.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let relative = Path::new(std::str::from_utf8(name)?);
        let from = workspace().join(relative);
        if !from.is_file() {
            continue; // Deleted in the work tree but still in the index.
        }
        let to = copy.path().join(relative);
        std::fs::create_dir_all(to.parent().context("a listed file has a folder")?)?;
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(copy)
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
            "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"files\"\n[component.files]\nsource = \"{FILES_WASM}\"\nfiles = [{{ source = \"static\", destination = \"/public\" }}]\n"
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
        let stderr = start_failure(&["up", "--manifest", &manifest])
            .with_context(|| format!("with the manifest {text}"))?;
        assert!(
            stderr.contains(named),
            "stderr does not name {named}: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn the_shipped_spin_manifest_runs_the_draft2_todo_component() -> anyhow::Result<()> {
    // deploy/spin.toml points at the draft2 build, as Spin needs it, and at the files component.
    support::todo_component_draft2()?;
    support::platforms::files_component_wasip2()?;
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
    // Every other path is the files component's: deploy/public/, and the page at `/`.
    assert!(
        host.request("GET", "/", None)?
            .text()
            .contains("<title>Todos</title>")
    );
    let readme = host.request("GET", "/README.md", None)?;
    assert_eq!(readme.status, 200);
    assert!(readme.text().contains("deploy/public"), "{}", readme.text());
    Ok(())
}

#[test]
fn the_readme_spin_commands_build_and_serve_the_app_from_a_clean_copy() -> anyhow::Result<()> {
    let copy = copy_of_the_repository()?;
    let root = copy.path();
    let component = root.join("target/wasm-draft2/wasm32-wasip2/component/todo_guest.wasm");
    assert!(!component.exists() && !root.join(".spin").exists());

    // From the root of the checkout, as the README has it. The build is a cold cargo build of
    // the guest (serde, serde_json, wit-bindgen), from the local registry cache when offline.
    let host = Host::start_in(
        root,
        &[
            "up",
            "--build",
            "--manifest",
            "deploy/spin.toml",
            "--runtime-config-file",
            "deploy/runtime-config.toml",
        ],
    )?;
    assert!(component.exists(), "the build command did not run");
    let (status, todo) = host.call("POST", "/todos", Some(r#"{"title":"from a clean copy"}"#))?;
    assert_eq!(status, 201, "{todo}");
    let id = todo["id"].as_u64().context("no id")?;
    let (status, again) = host.call("GET", &format!("/todos/{id}"), None)?;
    assert_eq!(
        (status, again["title"].as_str()),
        (200, Some("from a clean copy"))
    );
    // The runtime config puts the store in .spin/ beside deploy/, a folder no checkout has.
    assert!(
        root.join(".spin").is_dir(),
        "no .spin/ in {}",
        root.display()
    );
    Ok(())
}

/// A manifest running the todo component with the `default` store.
fn todo_manifest(dir: &Path) -> anyhow::Result<String> {
    write(
        dir,
        "spin.toml",
        &format!(
            "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n[component.todo]\nsource = \"{TODO_WASM}\"\nkey_value_stores = [\"default\"]\n"
        ),
    )
}

#[test]
fn a_sqlite_store_in_a_missing_folder_gets_its_folder_at_start() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let manifest = todo_manifest(dir.path())?;
    let config = write(
        dir.path(),
        "runtime-config.toml",
        "[key_value_store.default]\ntype = \"spin\"\npath = \"state/nested/todo.db\"\n",
    )?;
    assert!(!dir.path().join("state").exists());
    let host = up(&manifest, Some(&config))?;
    assert!(dir.path().join("state/nested").is_dir());
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?.0,
        201
    );
    assert!(dir.path().join("state/nested/todo.db").is_file());
    Ok(())
}

#[test]
fn a_sqlite_path_that_cannot_be_made_fails_at_start_and_names_it() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let manifest = todo_manifest(dir.path())?;
    // A folder cannot be made inside a regular file.
    std::fs::write(dir.path().join("blocker"), "a file, not a folder")?;
    let impossible = dir.path().join("blocker/sub/todo.db");
    let config = write(
        dir.path(),
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
            impossible.display()
        ),
    )?;
    let stderr = start_failure(&[
        "up",
        "--manifest",
        &manifest,
        "--runtime-config-file",
        &config,
    ])?;
    // The message may name the file or the folder it could not make; either way, the path.
    let named = dir.path().join("blocker").display().to_string();
    assert!(
        stderr.contains(&named),
        "stderr does not name {named}: {stderr}"
    );
    Ok(())
}

#[test]
fn max_concurrency_is_one_limit_for_the_whole_host_not_one_per_component() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let faults = fixture("faults")?;
    let mut text = "spin_manifest_version = 2\n[application]\nname = \"three\"\n".to_string();
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[[trigger.http]]\nroute = \"/{name}/...\"\ncomponent = \"{name}\"\n"
        ));
    }
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[component.{name}]\nsource = \"{}\"\n",
            faults.display()
        ));
    }
    let manifest = write(dir.path(), "spin.toml", &text)?;
    let host = Host::start(&[
        "up",
        "--manifest",
        &manifest,
        "--max-concurrency",
        "2",
        "--queue-timeout",
        "200ms",
        "--store",
        "memory://",
    ])?;
    // Every component is served at all.
    for name in ["a", "b", "c"] {
        let ok = host.request("GET", &format!("/{name}/ok"), None)?;
        assert_eq!(
            (ok.status, ok.text()),
            (200, "ok".to_string()),
            "/{name}/ok"
        );
    }
    let host = &host;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let slow: Vec<_> = ["/a/slow?ms=3000", "/b/slow?ms=3000"]
            .into_iter()
            .map(|path| scope.spawn(move || host.request("GET", path, None)))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        // Components a and b hold the host's two slots; c has run nothing, and still waits.
        let refused = host.request("GET", "/c/ok", None)?;
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(refused.header("retry-after").is_some(), "no Retry-After");
        assert!(refused.json()["error"].is_string(), "{}", refused.text());
        for slow in slow {
            let slow = slow
                .join()
                .map_err(|_| anyhow::anyhow!("client panicked"))??;
            assert_eq!((slow.status, slow.text()), (200, "slept 3000".to_string()));
        }
        Ok(())
    })?;
    let ok = host.request("GET", "/c/ok", None)?;
    assert_eq!(
        (ok.status, ok.text()),
        (200, "ok".to_string()),
        "the slots were given back"
    );
    Ok(())
}

/// A manifest of the draft2 todo component alone, with `variables` as its `[variables]` table
/// and `component_variables` as its `[component.todo.variables]`.
fn manifest_with_variables(
    dir: &Path,
    variables: &str,
    component_variables: &str,
) -> anyhow::Result<String> {
    let wasm = support::todo_component_draft2()?;
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"vars\"\n\
         [variables]\n{variables}\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n\
         [component.todo]\nsource = \"{}\"\nkey_value_stores = [\"default\"]\n\
         [component.todo.variables]\n{component_variables}\n",
        wasm.display()
    );
    write(dir, "spin.toml", &text)
}

#[test]
fn manifest_variables_reach_the_component_and_config_overrides_their_defaults() -> anyhow::Result<()>
{
    let dir = temp_dir()?;
    let manifest = manifest_with_variables(
        dir.path(),
        "mode = { default = \"off\" }",
        "accounts = \"{{ mode }}\"",
    )?;
    let runtime = write(
        dir.path(),
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
            dir.path().join("b.db").display()
        ),
    )?;
    // The default: accounts off, so the account routes are not there.
    let off = up(&manifest, Some(&runtime))?;
    assert_eq!(off.call("GET", "/api/session", None)?.0, 404);
    drop(off);
    // The operator's value wins over the default.
    let host = Host::start(&[
        "up",
        "--manifest",
        &manifest,
        "--runtime-config-file",
        &runtime,
        "--config",
        "mode=required",
    ])?;
    let (status, session) = host.call("GET", "/api/session", None)?;
    assert_eq!(status, 200);
    assert_eq!(session["mode"], "required");
    assert_eq!(host.call("GET", "/todos", None)?.0, 401);
    Ok(())
}

#[test]
fn a_required_variable_without_a_value_or_an_undeclared_one_stops_the_start() -> anyhow::Result<()>
{
    let dir = temp_dir()?;
    let required = manifest_with_variables(
        dir.path(),
        "mode = { required = true }",
        "accounts = \"{{ mode }}\"",
    )?;
    let stderr = start_failure(&["up", "--manifest", &required])?;
    assert!(
        stderr.contains("'mode' is required") && stderr.contains("--config mode="),
        "{stderr}"
    );

    let undeclared = manifest_with_variables(dir.path(), "", "accounts = \"{{ nowhere }}\"")?;
    let stderr = start_failure(&["up", "--manifest", &undeclared])?;
    assert!(stderr.contains("'nowhere'"), "{stderr}");

    let stderr = start_failure(&["--config", "Accounts=on"])?;
    assert!(
        stderr.contains("'Accounts' is not a variable name"),
        "{stderr}"
    );
    let stderr = start_failure(&["--config", "accounts"])?;
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
    Ok(())
}
