//! A real `redis-server`, started by a test on a free loopback port and stopped when dropped.
//! No mock: the Redis backend is tested against the server users run.
//!
//! The binary is `redis-server` on `PATH` (Debian's `redis-server` package; `cargo xtask setup`
//! installs it with every other tool the tests need).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running `redis-server` with no persistence, in a temporary directory.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`. A server that exits at
    /// once is started again on another port, up to [`START_ATTEMPTS`] times in all: the port
    /// picked free can be taken before the server binds it (a connection of a test running in
    /// parallel may get the same number from the kernel).
    pub fn start() -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut server = Self {
                child: None,
                port,
                dir: tempfile::tempdir()?,
            };
            match server.restart() {
                Ok(()) => return Ok(server),
                Err(err) if attempt < START_ATTEMPTS && format!("{err:#}").contains("exited") => {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as a crash would: no save).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            // The wording of `tools::install_hint`, written out: `host/tests/kv_conformance.rs`
            // compiles this file on its own, beside `nats.rs`, which declares `tools`.
            .context(
                "cannot start redis-server: the Redis tests need it on PATH \
                 (apt-get install redis-server, or `cargo xtask setup`, which installs every \
                 tool the tests need)",
            )?;
        self.child = Some(child);
        self.wait_for_pong()
    }

    /// Waits until the server answers `PING`; fails at once if it exits first.
    fn wait_for_pong(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port).unwrap_or(false) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "redis-server on port {} exited ({status}) before it answered PING",
                    self.port
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} (dir {}) did not answer PING within 10 s",
                    self.port,
                    self.dir.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How many times [`RedisServer::start`] tries, each on a port picked afresh.
const START_ATTEMPTS: usize = 3;

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// How long a `PING` may take to connect, and then to be answered: short, so that a server that
/// accepts but does not answer yet is asked again rather than waited on.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Does the server on `port` answer `PING` with `PONG`? Asked with the `redis` crate's blocking
/// client, which no cargo feature gates: the tests must not enable features of `todo-host`'s
/// dependencies that its normal build does not have.
fn ping(port: u16) -> anyhow::Result<bool> {
    let url = format!("redis://127.0.0.1:{port}");
    let client = ::redis::Client::open(url.as_str()).with_context(|| format!("bad URL {url}"))?;
    let mut connection = client
        .get_connection_with_timeout(PING_TIMEOUT)
        .with_context(|| format!("cannot connect to {url}"))?;
    connection.set_read_timeout(Some(PING_TIMEOUT))?;
    connection.set_write_timeout(Some(PING_TIMEOUT))?;
    let answer: String = ::redis::cmd("PING")
        .query(&mut connection)
        .with_context(|| format!("PING {url}"))?;
    Ok(answer == "PONG")
}
