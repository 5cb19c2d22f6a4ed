//! The command line, and the plain [`Config`] it becomes. Tests build a `Config` directly.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Where the server listens unless told otherwise: loopback, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3001";
/// The store unless told otherwise: a SQLite file in the working directory, durable by default.
pub const DEFAULT_STORE: &str = "sqlite://todo.db";

/// Serve the todo component over HTTP: a fresh WebAssembly instance for every request, the data
/// in a key-value store that lives in the host.
#[derive(Debug, Parser)]
#[command(name = "todo-host", version)]
pub struct Cli {
    /// Address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, env = "TODO_HOST_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Key-value store: `sqlite://PATH` (durable, the default) or `memory://` (lost on exit).
    #[arg(long, env = "TODO_HOST_STORE", default_value = DEFAULT_STORE)]
    pub store: String,

    /// Run this component (`.wasm`, of the `todo:app/app` world) instead of the embedded todo
    /// component.
    #[arg(long, env = "TODO_HOST_COMPONENT")]
    pub component: Option<PathBuf>,

    /// Let several processes listen on the same address (`SO_REUSEPORT`); the kernel spreads
    /// connections over them. The one-machine way to scale out.
    #[arg(long, env = "TODO_HOST_REUSE_PORT")]
    pub reuse_port: bool,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: String,
    pub component: Option<PathBuf>,
    pub reuse_port: bool,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        Self {
            listen: cli.listen,
            store: cli.store,
            component: cli.component,
            reuse_port: cli.reuse_port,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default address is valid"),
            store: DEFAULT_STORE.to_string(),
            component: None,
            reuse_port: false,
        }
    }
}
