//! Shared by the end-to-end tests: start the real `todo-host` binary on a free loopback port,
//! speak HTTP to it over real sockets, stop it; build fixture components once.
//!
//! The tools the tests start (`redis-server`, `nats-server`, `chromedriver`, `wash`, `wasmtime`,
//! the Node host) and the `wasm32-wasip2` target the fixtures build for are all installed by one
//! command, `cargo xtask setup`; an error for a missing one names it ([`tools`]).

#![allow(dead_code)] // Each test file uses a different part of this module.

pub mod account_cases;
pub mod activation;
pub mod api_cases;
pub mod browser;
pub mod draft2;
pub mod nats;
pub mod platforms;
pub mod redis;
// Declared in `nats.rs`, which `host/tests/kv_conformance.rs` also compiles on its own.
pub use nats::tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// The binary under test, built by cargo for this test run.
pub const HOST_BIN: &str = env!("CARGO_BIN_EXE_todo-host");

/// A running `todo-host` process, killed when dropped.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base: String,
    /// The whole start-up line.
    pub banner: String,
}

impl Host {
    /// Starts `todo-host` on `127.0.0.1:0` with `args`, and waits for its start-up line.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts `todo-host` listening on `listen` with `args`, and waits for its start-up line.
    pub fn start_on(listen: &str, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(listen, args, &[])
    }

    /// Like [`Host::start_on`], with extra environment variables for the host process.
    pub fn start_with_env(
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(HOST_BIN);
        command
            .envs(env.iter().copied())
            .args(["--listen", listen])
            .args(args);
        Self::launch(command)
    }

    /// Starts `todo-host` through `wrapper` (`ip netns exec NAME`, say, which execs it: the
    /// process id is the host's) listening on `listen` with `args`, and waits for its start-up
    /// line.
    pub fn start_wrapped(wrapper: &[&str], listen: &str, args: &[&str]) -> anyhow::Result<Self> {
        let (program, wrapper_args) = wrapper.split_first().context("an empty wrapper")?;
        let mut command = Command::new(program);
        command
            .args(wrapper_args)
            .arg(HOST_BIN)
            .args(["--listen", listen])
            .args(args);
        Self::launch(command)
    }

    /// Like [`Host::start`], with `dir` as the working directory: relative paths in `args` (a
    /// manifest, a store) are resolved there, as they are for someone running the command in it.
    pub fn start_in(dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(HOST_BIN);
        command
            .current_dir(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        Self::launch(command)
    }

    /// Spawns `command` and waits for the start-up line. Lines printed before it (a build run
    /// by `up --build`, say) are skipped, and shown if the line never comes.
    fn launch(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {HOST_BIN}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut before = Vec::new();
        loop {
            let mut line = String::new();
            let read = stdout
                .read_line(&mut line)
                .context("cannot read the start-up line")?;
            let line = line.trim().to_string();
            if let Some(address) = line
                .strip_prefix("Serving HTTP on http://")
                .and_then(|rest| rest.split('/').next())
            {
                return Ok(Self {
                    base: format!("http://{address}"),
                    banner: line,
                    child,
                });
            }
            if read == 0 {
                let status = child.wait()?;
                bail!("todo-host did not start (exit {status}); its output: {before:?}");
            }
            before.push(line);
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The process id, to send signals to.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.child.id(), "TERM")?;
        let status = self.child.wait()?;
        Ok(status)
    }

    /// Waits for the process to exit (after a signal sent elsewhere).
    pub fn wait(mut self) -> anyhow::Result<std::process::ExitStatus> {
        Ok(self.child.wait()?)
    }

    /// Sends SIGKILL and waits.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends a request and returns the status and the body parsed as JSON (`Null` if empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self.request(method, path, body.map(|b| ("application/json", b)))?;
        Ok((response.status, response.json()))
    }

    /// Sends a request with an optional `(content-type, body)`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> anyhow::Result<HttpResponse> {
        self.request_with(method, path, &[], body)
    }

    /// Sends a request with `headers` (a credential, an `Origin`...) and an optional
    /// `(content-type, body)`. The client keeps no cookies of its own: a request presents
    /// exactly what it is given.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> anyhow::Result<HttpResponse> {
        let url = format!("{}{}", self.base, path);
        let mut request = agent().request(method, &url);
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some((content_type, body)) => {
                request.set("content-type", content_type).send_string(body)
            }
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(err) => return Err(err).with_context(|| format!("{method} {url}")),
        };
        HttpResponse::read(response)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build()
    })
}

/// `todo-host` with the access log at its default (`RUST_LOG=info`) and stderr to `log`, on the
/// memory store unless `args` name one; the running process and its base URL.
pub fn host_logging_to(log: &Path, args: &[&str]) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::BufRead;
    // The memory store unless `args` name one.
    let store: &[&str] = if args.contains(&"--store") {
        &[]
    } else {
        &["--store", "memory://"]
    };
    let mut child = std::process::Command::new(HOST_BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(store)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut banner)?;
    let address = banner
        .trim()
        .strip_prefix("Serving HTTP on http://")
        .and_then(|rest| rest.split('/').next())
        .with_context(|| format!("no start-up line: {banner:?}"))?;
    Ok((child, format!("http://{address}")))
}

/// The titles of a `GET /todos` list, in order.
pub fn titles(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["title"].as_str())
        .collect()
}

/// Sends `kill -SIGNAL pid`.
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// A response, fully read.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn read(response: ureq::Response) -> anyhow::Result<Self> {
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| {
                let value = response.header(&name)?.to_string();
                Some((name, value))
            })
            .collect();
        let mut body = Vec::new();
        response.into_reader().read_to_end(&mut body)?;
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// Header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, `Null` when empty or not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response read off the wire by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and the header block, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body as JSON, `Null` when empty or not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The raw client: sends `bytes` exactly as given on a new connection and reads the answer until
/// the server closes it. For requests a well-behaved client library would refuse or rewrite:
/// odd targets, any body bytes, chunked bodies, oversized headers. The bytes should say
/// `Connection: close` (or the read waits for the server's idle timeout).
pub fn raw_request(addr: &str, bytes: &[u8]) -> anyhow::Result<RawResponse> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A server may answer an oversized request and close before reading all of it; its answer is
    // what the test wants, so a write cut short is only an error if no answer follows.
    let written = stream.write_all(bytes);
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    if answer.is_empty() {
        written.context("cannot send the request")?;
        read.context("cannot read the answer")?;
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| {
            format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(&answer)
            )
        })?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {head:?}"))?;
    Ok(RawResponse {
        status,
        head,
        body: answer[split + 4..].to_vec(),
    })
}

/// A [`raw_request`] made of `METHOD TARGET HTTP/1.1` (`target` neither normalized nor
/// re-encoded) and an optional `(content-type, body)` of any bytes.
pub fn raw_call(
    addr: &str,
    method: &str,
    target: &str,
    body: Option<(&str, &[u8])>,
) -> anyhow::Result<RawResponse> {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    if let Some((_, body)) = body {
        bytes.extend_from_slice(body);
    }
    raw_request(addr, &bytes)
}

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace")
}

/// Builds the fixture component `name` (a crate under `tests/fixtures/`, package
/// `NAME-fixture`) for `wasm32-wasip2`, once per test process, and returns its `.wasm` path.
pub fn fixture(name: &str) -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    // All fixtures in one cargo call: they share their dependencies' build.
    BUILT
        .get_or_init(|| build_fixtures().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    let path = fixture_target().join(format!(
        "wasm32-wasip2/release/{}_fixture.wasm",
        name.replace('-', "_")
    ));
    anyhow::ensure!(path.exists(), "no fixture component at {}", path.display());
    Ok(path)
}

/// Builds the todo component for `wasi:keyvalue@0.2.0-draft2` (`todo-guest --features draft2`),
/// once per test process, and returns its `.wasm` path.
pub fn todo_component_draft2() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workspace().join("target/wasm-draft2");
            let status = Command::new(env!("CARGO"))
                .current_dir(workspace())
                .args(["build", "--profile", "component", "--quiet"])
                .args(["--target", "wasm32-wasip2"])
                .args([
                    "--package",
                    "todo-guest",
                    "--features",
                    "draft2",
                    "--target-dir",
                ])
                .arg(&target)
                .status()
                .map_err(|err| format!("cannot run cargo ({}): {err}", env!("CARGO")))?;
            if !status.success() {
                return Err(format!(
                    "building the draft2 todo component (todo-guest --features draft2) for \
                     wasm32-wasip2 failed ({status}; {})",
                    wasm_target_hint()
                ));
            }
            Ok(target.join("wasm32-wasip2/component/todo_guest.wasm"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Why a build of components for `wasm32-wasip2` (the fixtures, the draft2 todo component) may
/// fail on a machine where the rest of the workspace builds: the target is not installed.
fn wasm_target_hint() -> String {
    format!(
        "cargo's errors are above; if it says the wasm32-wasip2 target may not be installed: \
         `rustup target add wasm32-wasip2`, or {}",
        tools::SETUP
    )
}

fn fixture_target() -> PathBuf {
    workspace().join("target/wasm-fixtures")
}

fn build_fixtures() -> anyhow::Result<()> {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(workspace())
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .arg("--target-dir")
        .arg(fixture_target());
    for entry in std::fs::read_dir(workspace().join("tests/fixtures"))? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").exists() {
            command.args([
                "--package",
                &format!("{}-fixture", entry.file_name().to_string_lossy()),
            ]);
        }
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run cargo ({}) to build the fixtures", env!("CARGO")))?;
    anyhow::ensure!(
        status.success(),
        "building the fixture components (tests/fixtures/*) for wasm32-wasip2 failed ({status}; \
         {})",
        wasm_target_hint()
    );
    Ok(())
}

/// A fresh temporary directory for a test's files.
pub fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::tempdir()?)
}

/// `sqlite://DIR/todo.db` for a temporary `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("todo.db").display())
}

/// Sends `count` POSTs from `count` threads released at once, spread round-robin over `hosts`,
/// and returns the ids given back. Fails if any create is not answered 201.
pub fn create_concurrently(hosts: &[&Host], count: usize) -> anyhow::Result<Vec<u64>> {
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let barrier = &barrier;
                let host = hosts[i % hosts.len()];
                scope.spawn(move || -> anyhow::Result<u64> {
                    barrier.wait();
                    let (status, todo) =
                        host.call("POST", "/todos", Some(&format!(r#"{{"title":"t{i}"}}"#)))?;
                    anyhow::ensure!(status == 201, "create {i} answered {status}: {todo}");
                    todo["id"].as_u64().context("no id in the answer")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
            })
            .collect()
    })
}

/// The ids of every todo `host` lists, following `Link: <...>; rel="next"` page by page.
pub fn listed_ids(host: &Host) -> anyhow::Result<Vec<u64>> {
    let mut target = "/todos".to_string();
    let mut ids = Vec::new();
    loop {
        let response = host.request("GET", &target, None)?;
        let list = response.json();
        anyhow::ensure!(
            response.status == 200,
            "GET {target} answered {}: {list}",
            response.status
        );
        ids.extend(
            list.as_array()
                .context("GET /todos is not an array")?
                .iter()
                .filter_map(|t| t["id"].as_u64()),
        );
        let Some(link) = response.header("link") else {
            return Ok(ids);
        };
        target = link
            .strip_prefix(&format!("<{}", host.base))
            .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
            .with_context(|| format!("not a next link to this host: {link}"))?
            .to_string();
    }
}

/// Whether seeded todo `id` is completed: every third one.
pub fn seeded_completed(id: u64) -> bool {
    id.is_multiple_of(3)
}

/// Fills the store at `url` with todos `1..=count`, as the todo component would have left them
/// (todo keys, the id index, the id counter), through the real KV backend in batches of 1,000:
/// a large store in seconds instead of a request per todo. Start the host after it. Use a store
/// another process can open (`sqlite://` or `redis://`), not `memory://`.
pub fn seed_todos(url: &str, count: u64) -> anyhow::Result<()> {
    use todo_guest::records::{BUCKET, TodoRecord, todo_key};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let backend = todo_host::kv::open(url).await?;
        let mut batch = Vec::with_capacity(1000);
        for id in 1..=count {
            let record = TodoRecord {
                id,
                title: format!("seeded todo {id}"),
                completed: seeded_completed(id),
                order: i64::try_from(id)?,
                description: String::new(),
                created_at: "2026-01-01T00:00:00.000Z".to_string(),
                updated_at: "2026-01-01T00:00:00.000Z".to_string(),
            };
            batch.push((todo_key(id), serde_json::to_vec(&record)?));
            if batch.len() == 1000 || id == count {
                backend.set_many(BUCKET, &batch).await?;
                batch.clear();
            }
        }
        for chunk in todo_guest::index::dense_entries(count, seeded_completed).chunks(1000) {
            backend.set_many(BUCKET, chunk).await?;
        }
        anyhow::Ok(())
    })
}
