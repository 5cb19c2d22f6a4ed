//! The HTTP front: start an [`App`] ([`Server::bind`], or [`Server::start`] on sockets a parent
//! handed down), accept connections, hand each request to the [`Runtime`], and stop gracefully:
//! on a signal, or after `--idle-exit` with no request in flight.
//!
//! Stopping drains: the listener is closed first (a socket shared with a parent or other hosts
//! stays open there, so connections still queued go to them, not to a reset), every answer from
//! then on says `Connection: close`, connections that are idle get a short while to send their
//! next request, and in-flight requests get the grace period. Then the stores are closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};

use crate::activation::Inherited;
use crate::admin::Control;
use crate::app::{App, DEFAULT_STORE_LABEL};
use crate::config::Config;
use crate::deployment::Loader;
use crate::kv::KvBackend;
use crate::limits::ConnectionLimits;
use crate::metrics::{MeteredBackend, Metrics};
use crate::runtime::Runtime;

/// A server that has validated its configuration and bound its socket, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    admin: Option<TcpListener>,
    control: Arc<Control>,
    runtime: Arc<Runtime>,
    /// What the start-up line says after the address.
    description: String,
    connections: ConnectionLimits,
    shutdown_grace: Duration,
    idle_exit: Option<Duration>,
}

/// Why a server stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM (or the caller's shutdown future).
    Signal,
    /// No request was in flight for this long (`--idle-exit`).
    Idle(Duration),
}

impl Server {
    /// Starts `app`: opens its stores, compiles and links its components, and binds the socket,
    /// in that order, so that a bad flag or a store that cannot open fails before anything
    /// listens.
    pub async fn bind(config: &Config, app: &App) -> anyhow::Result<Self> {
        Self::start(config, app, None).await
    }

    /// [`Server::bind`], on the sockets a parent handed down (socket activation) when there are
    /// any: `--listen` (and `--admin-listen`, when an `admin` socket is inherited) are then not
    /// bound.
    pub async fn start(
        config: &Config,
        app: &App,
        inherited: Option<Inherited>,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(if config.metrics {
            Metrics::new()
        } else {
            Metrics::off()
        });
        // The engine (its pooling allocator reserved, its linker filled: a few ms) is made on a
        // blocking thread while the stores open, so that a cold start waits for the longer of
        // the two, not their sum (a remote store's connection takes a few round trips).
        let engine = {
            let limits = config.limits.clone();
            let cache_dir = config.cache_dir.clone();
            tokio::task::spawn_blocking(move || Loader::start(&limits, true, cache_dir))
        };
        let mut metered = HashMap::new();
        for (label, settings) in &app.backends {
            let backend =
                MeteredBackend::open(label, settings, &config.store_options, metrics.clone())
                    .await?;
            metered.insert(label.clone(), Arc::new(backend));
        }
        let backends: HashMap<String, Arc<dyn KvBackend>> = metered
            .iter()
            .map(|(label, backend)| (label.clone(), backend.clone() as Arc<dyn KvBackend>))
            .collect();
        let loader = engine.await.context("the engine start-up task failed")??;
        let runtime = Runtime::for_app_on(loader, app, &backends, config.limits.clone())?
            .with_metrics(metrics)
            .with_public_url(config.public_url.clone())
            .with_access_log(config.access_log);
        let runtime = Arc::new(runtime);
        let mut description = describe(app, &backends);
        let (listener, inherited_admin) = match inherited {
            Some(Inherited { http, admin }) => {
                description.push_str(", socket from the parent");
                (from_std(http)?, admin.map(from_std).transpose()?)
            }
            None => {
                let listener = listen(config.listen, config.reuse_port)
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                (listener, None)
            }
        };
        let admin = match (inherited_admin, config.admin_listen) {
            (Some(admin), _) => Some(admin),
            (None, Some(addr)) => Some(
                listen(addr, false)
                    .with_context(|| format!("cannot listen on {addr} for the admin routes"))?,
            ),
            (None, None) => None,
        };
        if let Some(admin) = &admin {
            description.push_str(&format!(", admin: http://{}/", admin.local_addr()?));
        }
        let control = Arc::new(Control::new(config.clone(), runtime.clone(), metered));
        // Before the start-up line is printed: a SIGHUP sent once it is out reloads.
        crate::admin::reload_on_sighup(control.clone());
        Ok(Self {
            listener,
            admin,
            control,
            runtime,
            description,
            connections: within_descriptor_limit(config.connections),
            shutdown_grace: config.shutdown_grace,
            idle_exit: config.idle_exit,
        })
    }

    /// The address actually bound (the port is known even when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The one start-up line, e.g. `Serving HTTP on http://127.0.0.1:3001/ (store: SQLite at
    /// todo.db)`; with `--public`, the folder is named too; for an app, its components and
    /// stores.
    pub fn banner(&self) -> std::io::Result<String> {
        Ok(format!(
            "Serving HTTP on http://{}/ ({})",
            self.local_addr()?,
            self.description
        ))
    }

    /// What an operator can do to this server: readiness, reloads.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Serves until `shutdown` completes (or `--idle-exit` passes with no request in flight),
    /// drains, and closes the stores. The admin listener, if any, serves beside it; `SIGHUP`
    /// reloads.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<Stopped> {
        let admin = self
            .admin
            .map(|admin| tokio::spawn(crate::admin::serve(admin, self.control.clone())));
        let stopped = run(
            self.listener,
            self.runtime,
            Serving {
                connections: self.connections,
                grace: self.shutdown_grace,
                idle_exit: self.idle_exit,
            },
            shutdown,
        )
        .await?;
        if let Some(admin) = admin {
            admin.abort();
        }
        self.control.close_stores().await;
        Ok(stopped)
    }
}

/// What the start-up line says of `app`: the store (and public folder) of the command line's
/// single component, or an app's components, routes and stores.
fn describe(app: &App, backends: &HashMap<String, Arc<dyn KvBackend>>) -> String {
    let summary = |label: &str| {
        backends
            .get(label)
            .map_or_else(String::new, |b| b.summary())
    };
    let Some(name) = &app.name else {
        let public = app
            .components
            .iter()
            .find_map(|component| component.files.as_ref())
            .map(|(dir, _)| format!(", public: {}", dir.display()))
            .unwrap_or_default();
        return format!("store: {}{public}", summary(DEFAULT_STORE_LABEL));
    };
    let served: Vec<String> = app
        .components
        .iter()
        .flat_map(|component| {
            component
                .routes
                .iter()
                .map(move |route| format!("{} on {route}", component.id))
        })
        .collect();
    let stores: Vec<String> = app
        .backends
        .keys()
        .map(|label| format!("{label}: {}", summary(label)))
        .collect();
    format!(
        "app {name}: {}; stores: {}",
        served.join(", "),
        if stores.is_empty() {
            "none".to_string()
        } else {
            stores.join("; ")
        }
    )
}

/// Descriptors kept free for what is not a connection: the store's files and sockets, the
/// artifact cache, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// `limits` with `max_connections` lowered to what the process's descriptor limit allows, so
/// that the cap, not `accept` failing with "too many open files", is what holds connections back.
fn within_descriptor_limit(mut limits: ConnectionLimits) -> ConnectionLimits {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    if let Some(soft) = soft {
        let allowed = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
        let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
        if allowed < limits.max_connections {
            tracing::warn!(
                max_connections = allowed,
                asked = limits.max_connections,
                "the descriptor limit (ulimit -n {soft}) lowers --max-connections"
            );
            limits.max_connections = allowed;
        }
    }
    limits
}

/// How many connections may wait to be accepted: enough for a burst of 200 clients at once.
const LISTEN_BACKLOG: u32 = 1024;

/// An inherited listener, made non-blocking for tokio.
fn from_std(listener: std::net::TcpListener) -> anyhow::Result<TcpListener> {
    listener
        .set_nonblocking(true)
        .context("cannot make the inherited socket non-blocking")?;
    TcpListener::from_std(listener).context("cannot serve on the inherited socket")
}

/// Binds `addr`; with `reuse_port`, other processes may bind it too.
fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted host can bind at once although the old one's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
        warn_unless_requests_migrate();
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How [`run`] serves and stops.
#[derive(Debug, Clone, Copy)]
pub struct Serving {
    pub connections: ConnectionLimits,
    /// How long in-flight requests may take to finish once stopping has begun.
    pub grace: Duration,
    /// Stop after this long with no request in flight; `None`: never.
    pub idle_exit: Option<Duration>,
}

/// How long a connection that is open but idle when stopping begins may take to send its next
/// request (answered with `Connection: close`) before it is closed: a keep-alive client whose
/// request crossed the close would otherwise see its connection reset.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Where Linux says whether a closing `SO_REUSEPORT` listener hands its queued connections to the
/// others in its group (1) or resets them (0, the default).
const TCP_MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Warns when processes sharing a port through `--reuse-port` would reset the connections queued
/// for one that stops (measured: `bench/scale.py`).
fn warn_unless_requests_migrate() {
    if std::fs::read_to_string(TCP_MIGRATE_REQ).is_ok_and(|value| value.trim() == "0") {
        tracing::warn!(
            "--reuse-port: net.ipv4.tcp_migrate_req is 0, so connections still queued for this \
             process are reset when it stops; set it to 1, or share one socket through socket \
             activation (README: Scaling to zero and back)"
        );
    }
}

/// Serves `listener` until `shutdown` completes, or until no request has been in flight for
/// `serving.idle_exit`; then stops accepting, drains (see the module doc) for up to
/// `serving.grace`, and says why it stopped.
///
/// At most `connections.max_connections` are open at once: the loop takes a slot before it
/// accepts, so past the cap new connections wait in the kernel's backlog. Each connection must
/// send a request head within `connections.header_timeout` of waiting for one (which also
/// closes idle keep-alive connections), or it is closed.
pub async fn run(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stopped> {
    let Serving {
        connections,
        grace,
        idle_exit,
    } = serving;
    let graceful = GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(connections.max_connections));
    // Connections open (stopping waits for them to close) and requests in flight (the idle
    // exit waits for none to be for `idle_exit`).
    let (count, counted) = tokio::sync::watch::channel(0usize);
    let count = Arc::new(count);
    // Requests are counted only for an idle exit: without one, the request path pays nothing.
    let (requests, in_flight) = tokio::sync::watch::channel(0usize);
    let requests = idle_exit.map(|_| Arc::new(requests));
    let draining = Arc::new(AtomicBool::new(false));
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(connections.header_timeout);
    tokio::pin!(shutdown);
    let idle = idle_for(in_flight, idle_exit);
    tokio::pin!(idle);
    let stopped = loop {
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => slot?,
            () = &mut shutdown => break Stopped::Signal,
            idle = &mut idle => break Stopped::Idle(idle),
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of file descriptors and the like: wait, don't spin or die.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break Stopped::Signal,
            idle = &mut idle => break Stopped::Idle(idle),
        };
        // Small JSON answers go out at once instead of waiting for Nagle's algorithm to batch them.
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            service(runtime.clone(), peer, draining.clone(), requests.clone()),
        );
        let connection = graceful.watch(connection);
        let opened = Counted::new(count.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _opened = opened;
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    };
    drop(listener);
    draining.store(true, Ordering::SeqCst);
    match stopped {
        Stopped::Signal => tracing::info!("shutting down: waiting for in-flight requests"),
        Stopped::Idle(idle) => tracing::info!(
            "no request for {}: exiting (--idle-exit); with socket activation the next \
             connection starts the host again",
            humantime::format_duration(idle)
        ),
    }
    crate::activation::notify_stopping(match stopped {
        Stopped::Signal => "stopping on a signal",
        Stopped::Idle(_) => "stopping: idle",
    });
    // On a signal, connections that send a request within DRAIN_IDLE get its answer with
    // `Connection: close`; then the idle rest are closed. After an idle exit, every connection
    // has been idle for the whole idle time already.
    let drain_idle = match stopped {
        Stopped::Signal => DRAIN_IDLE.min(grace),
        Stopped::Idle(_) => Duration::ZERO,
    };
    let drained = async {
        let mut counted = counted;
        let _ = tokio::time::timeout(drain_idle, counted.wait_for(|&n| n == 0)).await;
        graceful.shutdown().await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period of {grace:?} over; closing the rest");
        }
    }
    Ok(stopped)
}

/// Completes once no request has been in flight for `idle` (never when `idle` is `None`), with
/// `idle`. It sleeps in between: an idle host wakes only when its deadline comes. Idle
/// keep-alive connections do not keep the host up: stopping closes them.
async fn idle_for(
    mut in_flight: tokio::sync::watch::Receiver<usize>,
    idle: Option<Duration>,
) -> Duration {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        if in_flight.wait_for(|&n| n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(idle) => return idle,
            // A request started (and maybe finished): the idle time starts over.
            _ = in_flight.changed() => {}
        }
    }
}

/// One open connection, or one request in flight, counted while it lives.
struct Counted {
    count: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Counted {
    fn new(count: Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Self { count }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n -= 1);
    }
}

/// Hands each request to `runtime`, counted in `requests` (if given) while in flight; once `draining`,
/// every answer also closes its connection.
fn service(
    runtime: Arc<Runtime>,
    peer: SocketAddr,
    draining: Arc<AtomicBool>,
    requests: Option<Arc<tokio::sync::watch::Sender<usize>>>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let runtime = runtime.clone();
        let draining = draining.clone();
        let in_flight = requests.clone().map(Counted::new);
        async move {
            let _in_flight = in_flight;
            tracing::debug!(%peer, method = %request.method(), uri = %request.uri(), "request");
            let mut response = runtime.handle(request).await;
            if draining.load(Ordering::SeqCst) {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Both handlers are installed here, when this is called, not when the future is first
    // polled: a signal sent the moment the start-up line is out must not meet the default
    // action (the process killed by SIGINT).
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            },
            (Ok(mut interrupt), Err(err)) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                interrupt.recv().await;
            }
            (Err(err), Ok(mut terminate)) => {
                tracing::warn!(error = %err, "cannot listen for SIGINT; only SIGTERM stops the server");
                terminate.recv().await;
            }
            (Err(interrupt), Err(terminate)) => {
                tracing::warn!(%interrupt, %terminate, "cannot listen for SIGINT or SIGTERM; only SIGKILL stops the server");
                std::future::pending::<()>().await;
            }
        }
    }
}
