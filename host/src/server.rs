//! The HTTP front: accept connections on a bound listener, hand each request to the
//! [`Runtime`], and shut down gracefully.
//!
//! [`run`] takes an already-bound listener and a shutdown future, so tests can run a server
//! in-process on port 0 and stop it when they like.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::manifest::Route;
use crate::runtime::{Runtime, json_error};

/// Which runtime answers which path: one for the whole server, or one per route of an app.
pub struct Routes {
    /// Most specific route first.
    table: Vec<(Route, Arc<Runtime>)>,
}

impl Routes {
    /// Every path to `runtime`.
    pub fn single(runtime: Arc<Runtime>) -> Self {
        Self {
            table: vec![(Route::Prefix(String::new()), runtime)],
        }
    }

    /// Each route to its runtime; a path goes to the most specific route that matches it.
    pub fn new(mut table: Vec<(Route, Arc<Runtime>)>) -> Self {
        table.sort_by_key(|(route, _)| std::cmp::Reverse(route.specificity()));
        Self { table }
    }

    fn pick(&self, path: &str) -> Option<&Arc<Runtime>> {
        self.table
            .iter()
            .find(|(route, _)| route.matches(path))
            .map(|(_, runtime)| runtime)
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting, lets in-flight requests
/// finish for up to `grace`, and returns.
pub async fn run(
    listener: TcpListener,
    routes: Arc<Routes>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
            () = &mut shutdown => break,
        };
        // Small JSON answers go out at once instead of waiting for Nagle's algorithm to batch them.
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service(routes.clone(), peer));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period of {grace:?} over; closing the rest");
        }
    }
    Ok(())
}

fn service(
    routes: Arc<Routes>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let routes = routes.clone();
        async move {
            tracing::debug!(%peer, method = %request.method(), uri = %request.uri(), "request");
            let response = match routes.pick(request.uri().path()) {
                Some(runtime) => runtime.handle(request).await,
                None => json_error(
                    404,
                    &format!("no component serves {}", request.uri().path()),
                ),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
