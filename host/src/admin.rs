//! Operating the host: the admin listener (`--admin-listen`, off unless asked for, and meant
//! for loopback or a private interface) and what it serves, and reloads.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | every metric ([`crate::metrics`]), OpenMetrics text; each store is probed first |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when a component is loaded and every store answers a probe; 503 with the reason |
//! | `POST /admin/reload` | re-reads `--component` or the manifest and swaps it in ([`Control::reload`]); 200, or 422 with why it was refused |
//!
//! `SIGHUP` reloads too ([`reload_on_sighup`]). The public port never serves any of this: its
//! paths all go to the components.
//!
//! Both triggers call [`Control::reload`], which holds what only the host knows (its config, its
//! open stores): it re-reads the app, opens any store not open yet, and hands the rest to
//! [`Runtime::reload`], which loads, smoke-tests and swaps in the new deployment.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;
use crate::kv::KvBackend;
use crate::metrics::MeteredBackend;
use crate::runtime::Runtime;

/// How long a store may take to answer a readiness or scrape probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an admin client may take to send a request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an operator can do to a running host: check it and reload it.
pub struct Control {
    config: Config,
    runtime: Arc<Runtime>,
    /// Store label → its open backend (metered); a reload opens only labels not open yet.
    backends: tokio::sync::Mutex<HashMap<String, Arc<MeteredBackend>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl Control {
    pub fn new(
        config: Config,
        runtime: Arc<Runtime>,
        backends: HashMap<String, Arc<MeteredBackend>>,
    ) -> Self {
        Self {
            config,
            runtime,
            backends: tokio::sync::Mutex::new(backends),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The runtime under control.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Re-reads what the host was started with (the `--component` file, or the manifest and its
    /// runtime config; nothing is built) and swaps it in with [`Runtime::reload`]. On failure the
    /// running components keep serving; the error says why.
    pub async fn reload(&self) -> anyhow::Result<Vec<(String, String)>> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.load_and_swap().await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(_) => "refused",
        };
        self.runtime
            .metrics()
            .reloads
            .get_or_create(&crate::metrics::ReloadLabels { outcome })
            .inc();
        match &result {
            Ok(components) => tracing::info!(?components, "reloaded"),
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                "reload refused; the running components keep serving"
            ),
        }
        result
    }

    async fn load_and_swap(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut config = self.config.clone();
        if let Some(app) = &mut config.app {
            app.build = false;
        }
        let app = App::from_config(&config).await?;
        let mut open = self.backends.lock().await;
        for (label, settings) in &app.backends {
            if !open.contains_key(label) {
                let metrics = self.runtime.metrics().clone();
                let backend =
                    MeteredBackend::open(label, settings, &config.store_options, metrics).await?;
                open.insert(label.clone(), Arc::new(backend));
            }
        }
        let backends: HashMap<String, Arc<dyn KvBackend>> = open
            .iter()
            .map(|(label, backend)| (label.clone(), backend.clone() as Arc<dyn KvBackend>))
            .collect();
        drop(open);
        self.runtime.reload(&app, &backends).await?;
        Ok(self.runtime.deployment().identities())
    }

    /// Whether the host is ready for traffic: a component loaded and every store answering.
    pub async fn ready(&self) -> Result<(), String> {
        if self.runtime.deployment().identities().is_empty() {
            return Err("no component is loaded".to_string());
        }
        self.probe_stores().await
    }

    /// Closes every open store, once the server has stopped serving: queued writes committed,
    /// files and connections closed.
    pub async fn close_stores(&self) {
        let backends: Vec<(String, Arc<MeteredBackend>)> =
            self.backends.lock().await.drain().collect();
        for (label, backend) in backends {
            backend.close().await;
            tracing::info!(store = %label, "store closed");
        }
    }

    /// Probes every store (which also sets the `store_up` metric).
    async fn probe_stores(&self) -> Result<(), String> {
        let backends: Vec<Arc<MeteredBackend>> =
            self.backends.lock().await.values().cloned().collect();
        let mut failures = Vec::new();
        for backend in backends {
            if let Err(err) = backend.probe(PROBE_TIMEOUT).await {
                failures.push(format!(
                    "store '{}' does not answer: {err}",
                    backend.store()
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

/// Serves the admin routes on `listener` until the process ends.
pub async fn serve(listener: TcpListener, control: Arc<Control>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_TIMEOUT);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let control = control.clone();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| {
                let control = control.clone();
                async move { Ok::<_, Infallible>(answer(&control, request).await) }
            }),
        );
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

type AdminResponse = hyper::Response<Full<Bytes>>;

async fn answer(
    control: &Control,
    request: hyper::Request<hyper::body::Incoming>,
) -> AdminResponse {
    let method = request.method().clone();
    match (method.as_str(), request.uri().path()) {
        ("GET", "/metrics") if !control.runtime.metrics().on() => json(
            404,
            serde_json::json!({ "error": "metrics are off (--no-metrics)" }),
        ),
        ("GET", "/metrics") => {
            // Scrapes see whether each store answers now, not at the last readiness check.
            let _ = control.probe_stores().await;
            hyper::Response::builder()
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(control.runtime.metrics().encode())))
                .unwrap_or_default()
        }
        ("GET", "/healthz") => json(200, serde_json::json!({ "status": "serving" })),
        ("GET", "/readyz") => match control.ready().await {
            Ok(()) => json(200, serde_json::json!({ "status": "ready" })),
            Err(reason) => json(503, serde_json::json!({ "error": reason })),
        },
        ("POST", "/admin/reload") => {
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(err) => {
                    return json(
                        400,
                        serde_json::json!({ "error": format!("cannot read the request: {err}") }),
                    );
                }
            };
            if !body.iter().all(u8::is_ascii_whitespace) {
                return json(
                    400,
                    serde_json::json!({ "error": "POST /admin/reload takes no body: it reloads what the host was started with" }),
                );
            }
            match control.reload().await {
                Ok(components) => json(
                    200,
                    serde_json::json!({
                        "status": "reloaded",
                        "components": components
                            .into_iter()
                            .map(|(id, hash)| serde_json::json!({ "id": id, "hash": hash }))
                            .collect::<Vec<_>>(),
                    }),
                ),
                Err(err) => json(422, serde_json::json!({ "error": format!("{err:#}") })),
            }
        }
        (_, "/metrics" | "/healthz" | "/readyz" | "/admin/reload") => json(
            405,
            serde_json::json!({ "error": format!("{method} is not allowed here") }),
        ),
        (_, path) => json(
            404,
            serde_json::json!({ "error": format!("no admin route {path}: try /metrics, /healthz, /readyz or POST /admin/reload") }),
        ),
    }
}

fn json(status: u16, value: serde_json::Value) -> AdminResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap_or_default()
}

/// Reloads on every `SIGHUP`, for as long as the process runs.
pub fn reload_on_sighup(control: Arc<Control>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload through the admin listener");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading");
            let _ = control.reload().await;
        }
    });
}
