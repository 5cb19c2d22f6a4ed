//! The command line, and the plain [`Config`] it becomes. Tests build a `Config` directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::kv::{self, BackendConfig, OpenOptions};
use crate::limits::{self, ConnectionLimits, KvLimits, Limits, parse_duration, parse_size};

/// Where the server listens unless told otherwise: loopback, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3001";
/// The store unless told otherwise: a SQLite file in the working directory, durable by default.
pub const DEFAULT_STORE: &str = "sqlite://todo.db";
/// How long in-flight requests may take to finish once shutdown has begun: the request deadline,
/// so that no request that could still succeed is cut off.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = limits::DEFAULT_REQUEST_TIMEOUT;

/// Serve the todo component over HTTP: a fresh WebAssembly instance for every request, the data
/// in a key-value store that lives in the host.
#[derive(Debug, Parser)]
#[command(name = "todo-host", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, global = true, env = "TODO_HOST_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    // The help lists every backend of `kv::BACKENDS`, the one registration.
    #[arg(long, global = true, env = "TODO_HOST_STORE", default_value = DEFAULT_STORE,
          value_parser = parse_store, help = kv::store_help())]
    pub store: BackendConfig,

    /// SQLite stores: writes queued at once share one commit (true, the default); false commits
    /// each write alone (for comparison). Accepts true/false, on/off, 1/0.
    #[arg(long, global = true, env = "TODO_HOST_SQLITE_GROUP_COMMIT", default_value = "true",
          value_name = "BOOL", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub sqlite_group_commit: bool,

    /// Run this component (`.wasm`, of the `todo:app/app` world) instead of the embedded todo
    /// component.
    #[arg(long, global = true, env = "TODO_HOST_COMPONENT")]
    pub component: Option<PathBuf>,

    /// Serve static files from DIR on every path that is not the API's, by the files component
    /// (DIR mounted read-only into its instances at /public); a path with no file and no
    /// extension (a client-side route) gets DIR/index.html, or the todo page when DIR has none.
    #[arg(long, global = true, env = "TODO_HOST_PUBLIC", value_name = "DIR")]
    pub public: Option<PathBuf>,

    /// A configuration value the todo component reads through `wasi:config/store`; repeat for
    /// more. `accounts=off|optional|required` turns accounts on (default off);
    /// `session_ttl=SECONDS` and `signups_per_minute=N` tune them. With `up`, sets the
    /// manifest's `[variables]` (overriding their defaults).
    #[arg(long = "config", global = true, env = "TODO_HOST_CONFIG", value_name = "KEY=VALUE",
          value_delimiter = ',', value_parser = parse_config_pair)]
    pub config: Vec<(String, String)>,

    /// Where compiled components are cached, keyed by engine settings and component bytes, so a
    /// restart loads instead of compiling [default: $XDG_CACHE_HOME/todo-host or
    /// ~/.cache/todo-host].
    #[arg(long, global = true, env = "TODO_HOST_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start; read and write no cache.
    #[arg(
        long,
        global = true,
        env = "TODO_HOST_NO_CACHE",
        conflicts_with = "cache_dir"
    )]
    pub no_cache: bool,

    /// Threads serving requests [default: one per CPU].
    #[arg(long, global = true, env = "TODO_HOST_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Let several processes listen on the same address (`SO_REUSEPORT`); the kernel spreads
    /// connections over them. The one-machine way to scale out.
    #[arg(long, global = true, env = "TODO_HOST_REUSE_PORT")]
    pub reuse_port: bool,

    /// Linear memory one instance may grow to (e.g. 64MiB).
    #[arg(long, global = true, env = "TODO_HOST_MAX_MEMORY", default_value = "64MiB", value_parser = parse_size)]
    pub max_memory: usize,

    /// Wall-clock deadline of one request (e.g. 10s, 500ms); a guest past it is stopped: 504.
    #[arg(long, global = true, env = "TODO_HOST_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Largest request body; larger ones get 413 before the guest runs.
    #[arg(long, global = true, env = "TODO_HOST_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// Largest response body a guest may produce; a larger one becomes a 500.
    #[arg(long, global = true, env = "TODO_HOST_MAX_RESPONSE", default_value = "16MiB", value_parser = parse_size)]
    pub max_response: usize,

    /// Requests served at once by the whole host, all components together; more wait up to
    /// --queue-timeout, then get 503 + Retry-After.
    #[arg(long, global = true, env = "TODO_HOST_MAX_CONCURRENCY", default_value_t = limits::DEFAULT_MAX_CONCURRENCY,
          value_parser = parse_concurrency)]
    pub max_concurrency: usize,

    /// How long a request waits for a free slot when --max-concurrency are in flight.
    #[arg(long, global = true, env = "TODO_HOST_QUEUE_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub queue_timeout: Duration,

    /// How long a client may take to send a request body; past it: 408. The body is read before
    /// the request takes a concurrency slot.
    #[arg(long, global = true, env = "TODO_HOST_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How long a connection may take to send a request head, and may sit idle between
    /// requests; past it the connection is closed.
    #[arg(long, global = true, env = "TODO_HOST_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Connections open at once; more wait in the listen backlog [default: 10000, or less when
    /// the descriptor limit (`ulimit -n`) is lower].
    #[arg(long, global = true, env = "TODO_HOST_MAX_CONNECTIONS", value_parser = parse_connections)]
    pub max_connections: Option<usize>,

    /// Serve /metrics, /healthz, /readyz and POST /admin/reload on this address (off unless
    /// given; keep it on loopback or a private interface: it is not authenticated).
    #[arg(
        long,
        global = true,
        env = "TODO_HOST_ADMIN_LISTEN",
        value_name = "ADDR"
    )]
    pub admin_listen: Option<SocketAddr>,

    /// Log no line per request (the access log is on by default, at `info`, target
    /// `todo_host::access`).
    #[arg(long, global = true, env = "TODO_HOST_NO_ACCESS_LOG")]
    pub no_access_log: bool,

    /// Record no metrics (on by default; served at `/metrics` on `--admin-listen`). Health
    /// checks and reloads keep working.
    #[arg(long, global = true, env = "TODO_HOST_NO_METRICS")]
    pub no_metrics: bool,

    /// The base URL clients reach this host by (`https://todo.example.com`), when it runs behind
    /// a proxy: absolute URLs in answers (`url`, `Location`) use it instead of the request's
    /// `Host`.
    #[arg(long, global = true, env = "TODO_HOST_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<http::uri::Uri>,

    /// Largest value a guest may store under one key; components also read it as the
    /// configuration key `kv_max_value`, unless `--config` sets that key.
    #[arg(long, global = true, env = "TODO_HOST_KV_MAX_VALUE", default_value = "1MiB", value_parser = parse_size)]
    pub kv_max_value: usize,

    /// Most keys the host sends its store in one round trip; a guest's larger wasi:keyvalue
    /// batch is split.
    #[arg(long, global = true, env = "TODO_HOST_KV_MAX_BATCH_KEYS", default_value_t = limits::DEFAULT_KV_MAX_BATCH_KEYS)]
    pub kv_max_batch_keys: usize,

    /// Most value bytes one request may read from the store.
    #[arg(long, global = true, env = "TODO_HOST_KV_MAX_READ", default_value = "64MiB", value_parser = parse_size)]
    pub kv_max_read: usize,

    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[arg(long, global = true, env = "TODO_HOST_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Exit cleanly (status 0, store closed) after DURATION with no request in flight and none
    /// arriving (e.g. 30s, 5m); idle keep-alive connections are closed. Off by default. Under
    /// socket activation the next connection starts the host again: scale to zero.
    #[arg(long, global = true, env = "TODO_HOST_IDLE_EXIT", value_name = "DURATION", value_parser = parse_idle_exit)]
    pub idle_exit: Option<Duration>,
}

/// An `--idle-exit` duration: with a unit, and more than zero (zero would exit at once).
fn parse_idle_exit(text: &str) -> Result<Duration, String> {
    match limits::parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "'{text}' is no time at all: --idle-exit takes a duration above zero, e.g. 30s or 5m"
        )),
        idle => Ok(idle),
    }
}

/// A `--store` URL, parsed and checked at once (see [`BackendConfig::from_url`]).
fn parse_store(url: &str) -> Result<BackendConfig, String> {
    BackendConfig::from_url(url).map_err(|err| format!("{err:#}"))
}

/// A connection cap: at least 1.
fn parse_connections(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{text}' is not a connection count of 1 or more")),
    }
}

/// A base URL: `http` or `https`, an authority, no path, query or user info.
/// `KEY=VALUE` of `--config`. Keys are as Spin names variables (a lower-case letter, then
/// lower-case letters, digits and `_`), so one name works in a manifest, here and on Spin.
fn parse_config_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))?;
    crate::manifest::check_variable_name(key)?;
    Ok((key.to_string(), value.to_string()))
}

fn parse_public_url(text: &str) -> Result<http::uri::Uri, String> {
    let uri: http::uri::Uri = text
        .trim_end_matches('/')
        .parse()
        .map_err(|err| format!("'{text}' is not a URL: {err}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let authority_ok = uri
        .authority()
        .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty());
    let bare = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/");
    if scheme_ok && authority_ok && bare {
        Ok(uri)
    } else {
        Err(format!(
            "'{text}' is not a base URL: use http(s)://HOST[:PORT], with no path, query or user"
        ))
    }
}

/// A concurrency limit: at least 1, and few enough that the instance pool fits in memory maps.
fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err(format!("'{text}' is not a request count from 1 to 100000")),
    }
}

/// What to run; without a subcommand, the todo component (or `--component`) on every path.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the app of a Spin-style manifest: several components on several routes, each with
    /// the key-value stores and files it is granted.
    Up {
        /// The manifest (`spin.toml`, `spin_manifest_version = 2`).
        #[arg(long, short = 'f', value_name = "FILE")]
        manifest: PathBuf,
        // The help lists every runtime-config type of `kv::BACKENDS`.
        #[arg(long, value_name = "FILE", help = format!(
            "Where each key-value store label lives (`[key_value_store.LABEL]`, type {}); \
             `default` needs none", kv::runtime_config_types()))]
        runtime_config_file: Option<PathBuf>,
        /// Run each component's `[component.NAME.build]` command first, as `spin up --build`.
        #[arg(long)]
        build: bool,
    },
}

/// An app manifest to run (`todo-host up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSource {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    /// Run the components' build commands before starting.
    pub build: bool,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: BackendConfig,
    /// How every store of the process is opened (`--sqlite-group-commit`).
    pub store_options: OpenOptions,
    pub component: Option<PathBuf>,
    pub public: Option<PathBuf>,
    /// `--config` values: the single component's configuration, or a manifest's variables.
    pub variables: BTreeMap<String, String>,
    /// `None`: no artifact cache.
    pub cache_dir: Option<PathBuf>,
    pub reuse_port: bool,
    pub limits: Limits,
    pub connections: ConnectionLimits,
    /// Absolute URLs in answers use this base instead of the request's `Host`.
    pub public_url: Option<http::uri::Uri>,
    /// Where the admin listener listens; `None`: it does not.
    pub admin_listen: Option<SocketAddr>,
    /// One log line per request.
    pub access_log: bool,
    /// Metrics recorded (and served at `/metrics`).
    pub metrics: bool,
    pub shutdown_grace: Duration,
    /// Exit after this long with no request in flight; `None`: never.
    pub idle_exit: Option<Duration>,
    /// An app manifest, for `todo-host up`; `None`: the single component of the command line.
    pub app: Option<AppSource>,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        Self {
            listen: cli.listen,
            store: cli.store,
            store_options: OpenOptions {
                sqlite_group_commit: cli.sqlite_group_commit,
            },
            component: cli.component,
            public: cli.public,
            variables: cli.config.into_iter().collect(),
            cache_dir: match (cli.no_cache, cli.cache_dir) {
                (true, _) => None,
                (false, Some(dir)) => Some(dir),
                (false, None) => crate::engine::default_cache_dir(),
            },
            reuse_port: cli.reuse_port,
            limits: Limits {
                max_memory: cli.max_memory,
                request_timeout: cli.request_timeout,
                max_body: cli.max_body,
                max_response: cli.max_response,
                max_concurrency: cli.max_concurrency,
                queue_timeout: cli.queue_timeout,
                body_timeout: cli.body_timeout,
                kv: KvLimits {
                    max_value: cli.kv_max_value,
                    max_batch_keys: cli.kv_max_batch_keys,
                    max_read_per_request: cli.kv_max_read,
                },
                ..Limits::default()
            },
            connections: ConnectionLimits {
                header_timeout: cli.header_timeout,
                max_connections: cli
                    .max_connections
                    .unwrap_or(limits::DEFAULT_MAX_CONNECTIONS),
            },
            public_url: cli.public_url,
            admin_listen: cli.admin_listen,
            access_log: !cli.no_access_log,
            metrics: !cli.no_metrics,
            shutdown_grace: cli.shutdown_grace,
            idle_exit: cli.idle_exit,
            app: cli.command.map(
                |Command::Up {
                     manifest,
                     runtime_config_file,
                     build,
                 }| AppSource {
                    manifest,
                    runtime_config: runtime_config_file,
                    build,
                },
            ),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default address is valid"),
            store: BackendConfig::from_url(DEFAULT_STORE).expect("the default store URL is valid"),
            store_options: OpenOptions::default(),
            component: None,
            public: None,
            variables: BTreeMap::new(),
            cache_dir: None,
            reuse_port: false,
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            public_url: None,
            admin_listen: None,
            access_log: true,
            metrics: true,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            idle_exit: None,
            app: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_cli_defaults_are_the_documented_limits() {
        let config = Config::from(Cli::parse_from(["todo-host"]));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.store_options, OpenOptions::default());
    }

    #[test]
    fn the_store_help_names_every_backend() {
        let help = Cli::command().render_help().to_string();
        for backend in kv::BACKENDS {
            assert!(help.contains(backend.url_shape), "{help}");
        }
        let up = Cli::command()
            .find_subcommand_mut("up")
            .expect("up is a subcommand")
            .render_help()
            .to_string();
        for backend in kv::BACKENDS {
            for kind in backend.runtime_config_types {
                assert!(up.contains(&format!("\"{kind}\"")), "{up}");
            }
        }
    }

    #[test]
    fn sqlite_group_commit_is_a_flag_and_on_by_default() {
        let off = Config::from(Cli::parse_from([
            "todo-host",
            "--sqlite-group-commit",
            "false",
        ]));
        assert!(!off.store_options.sqlite_group_commit);
        let zero = Config::from(Cli::parse_from(["todo-host", "--sqlite-group-commit", "0"]));
        assert!(!zero.store_options.sqlite_group_commit);
        let err = Cli::try_parse_from(["todo-host", "--sqlite-group-commit", "maybe"]).unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn idle_exit_is_off_by_default_and_needs_a_unit_and_more_than_zero() {
        assert_eq!(Config::from(Cli::parse_from(["todo-host"])).idle_exit, None);
        let on = Config::from(Cli::parse_from(["todo-host", "--idle-exit", "30s"]));
        assert_eq!(on.idle_exit, Some(Duration::from_secs(30)));
        let unitless = Cli::try_parse_from(["todo-host", "--idle-exit", "30"]).unwrap_err();
        assert!(unitless.to_string().contains("'30'"), "{unitless}");
        let zero = Cli::try_parse_from(["todo-host", "--idle-exit", "0s"]).unwrap_err();
        assert!(zero.to_string().contains("above zero"), "{zero}");
    }

    #[test]
    fn a_bad_limit_names_the_value() {
        let err = Cli::try_parse_from(["todo-host", "--max-memory", "lots"]).unwrap_err();
        assert!(err.to_string().contains("'lots'"), "{err}");
        let err = Cli::try_parse_from(["todo-host", "--store", "mongo://x"]).unwrap_err();
        assert!(err.to_string().contains("'mongo'"), "{err}");
        for bad in ["ftp://x", "https://x/path", "https://u@x", "x"] {
            let err = Cli::try_parse_from(["todo-host", "--public-url", bad]).unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
        let ok = Config::from(Cli::parse_from([
            "todo-host",
            "--public-url",
            "https://t.example/",
        ]));
        assert_eq!(
            ok.public_url.map(|u| u.to_string()),
            Some("https://t.example/".to_string())
        );
    }
}
