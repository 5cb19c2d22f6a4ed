//! The component runtime: what is made once, and the per-request path.
//!
//! Once ([`crate::RuntimeBuilder`]): one `Engine` for the whole process (pooling allocator sized
//! for `--max-concurrency`, epoch interruption, one epoch ticker thread), one `Linker` with WASI
//! p2, `wasi:http` and our `wasi:keyvalue`, and per component a [`ProxyPre`] that has resolved
//! every import in advance; one [`Admission`] limit for all of them.
//!
//! The components on their routes are a [`Deployment`], swapped whole by [`Runtime::reload`]: a
//! request takes the deployment current when it starts and finishes on it, and every request
//! that starts after the swap gets the new one. The engine, the instance pool and the admission
//! limit stay: a reload costs no memory twice over and lets no extra request in.
//!
//! Per request ([`Runtime::handle`]), top to bottom:
//! 1. the route picks a component (404 when none serves the path);
//! 2. admission: a slot among `--max-concurrency`, or 503 after a short wait ([`crate::admission`]);
//! 3. the request head is checked and its body read within the limits ([`crate::incoming`]);
//! 4. a new `Store` with fresh [`RequestState`] and its limits (memory, epoch deadline), an
//!    instance from the `ProxyPre`, and `wasi:http/incoming-handler.handle`;
//! 5. the guest's response is read whole beside the running guest ([`crate::exchange`]);
//!    every failure becomes a JSON answer ([`crate::refusal`]);
//! 6. the store is dropped: the instance, its memory and its resources are gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use tokio::time::Instant;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::admission::{Admission, Slot};
use crate::exchange::Exchange;
use crate::incoming::read_request;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::refusal::{GuestOutcome, Refusal};
use crate::routes::RouteTable;
use crate::state::RequestState;
use crate::wasi_keyvalue::KvAccess;

/// The todo component, built from `guest/` by `build.rs` and embedded in the binary.
pub const TODO_COMPONENT: &[u8] = include_bytes!(env!("TODO_COMPONENT_WASM"));

/// Time the host allows past the guest's deadline for its own work (answering, cleaning up)
/// before it gives up on an instance that is stuck outside wasm, e.g. in a host call.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The engine, the deployment of components, the admission limit and the per-request limits:
/// all a request needs.
pub struct Runtime {
    /// The engine and linker every component of every deployment is loaded with.
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: wasmtime::component::Linker<RequestState>,
    pub(crate) cache_dir: Option<PathBuf>,
    deployment: RwLock<Arc<Deployment>>,
    admission: Admission,
    limits: Limits,
    /// Scheme and authority that answers' absolute URLs use instead of the request's.
    public_url: Option<http::uri::Uri>,
    metrics: Arc<Metrics>,
    access_log: bool,
}

/// The components a runtime serves now, on their routes.
pub struct Deployment {
    routes: RouteTable<Arc<LoadedComponent>>,
    components: Vec<Arc<LoadedComponent>>,
}

impl Deployment {
    pub(crate) fn new(components: Vec<(Arc<LoadedComponent>, Vec<crate::routes::Route>)>) -> Self {
        let mut routes = Vec::new();
        for (component, on) in &components {
            routes.extend(on.iter().map(|route| (route.clone(), component.clone())));
        }
        Self {
            routes: RouteTable::new(routes),
            components: components.into_iter().map(|(c, _)| c).collect(),
        }
    }

    /// Each component's id and content hash.
    pub fn identities(&self) -> Vec<(String, String)> {
        self.components
            .iter()
            .map(|c| (c.id.clone(), c.hash.clone()))
            .collect()
    }
}

/// One component, compiled and linked, with what its instances may reach.
pub struct LoadedComponent {
    pub id: String,
    /// A hash of the component's bytes: which build this is.
    pub hash: String,
    /// Where a smoke request goes before this component is swapped in: its first route.
    pub(crate) smoke_path: String,
    pre: ProxyPre<RequestState>,
    kv_access: Arc<KvAccess>,
    mount: Option<(PathBuf, String)>,
}

impl LoadedComponent {
    pub(crate) fn new(
        id: String,
        hash: String,
        smoke_path: String,
        pre: ProxyPre<RequestState>,
        kv_access: KvAccess,
        mount: Option<(PathBuf, String)>,
    ) -> Self {
        Self {
            id,
            hash,
            smoke_path,
            pre,
            kv_access: Arc::new(kv_access),
            mount,
        }
    }

    /// A new store for one request: fresh state, the memory limit, and the deadline, checked
    /// every epoch tick (the guest yields its thread to other requests at each tick and is
    /// interrupted with a trap past `deadline`).
    fn new_store(
        &self,
        limits: &Limits,
        deadline: Instant,
        kv_calls: Arc<AtomicU32>,
    ) -> wasmtime::Result<Store<RequestState>> {
        let mount = self
            .mount
            .as_ref()
            .map(|(dir, guest)| (dir.as_path(), guest.as_str()));
        let state = RequestState::new(self.kv_access.clone(), limits, mount, kv_calls)?;
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state.limiter());
        let deadline = deadline.into_std();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if std::time::Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        Ok(store)
    }
}

impl Runtime {
    /// A builder with every part at its default: the embedded todo component on every path, an
    /// in-memory store, [`Limits::default`].
    pub fn builder() -> crate::RuntimeBuilder {
        crate::RuntimeBuilder::default()
    }

    pub(crate) fn new(
        engine: wasmtime::Engine,
        linker: wasmtime::component::Linker<RequestState>,
        cache_dir: Option<PathBuf>,
        deployment: Deployment,
        admission: Admission,
        limits: Limits,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        for (id, hash) in deployment.identities() {
            metrics.component_loaded(&id, &hash, None);
        }
        Self {
            engine,
            linker,
            cache_dir,
            deployment: RwLock::new(Arc::new(deployment)),
            admission,
            limits,
            public_url: None,
            metrics,
            access_log: false,
        }
    }

    /// Counts into `metrics` (the registry the stores' meters also use) instead of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        for (id, hash) in self.deployment().identities() {
            metrics.component_loaded(&id, &hash, None);
        }
        self.metrics = metrics;
        self
    }

    /// Logs one line per request (target `todo_host::access`, level info).
    pub fn with_access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The deployment serving now.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.deployment
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps in `next` after answering a smoke request with each of its components (a `GET` of
    /// its first route, which must not be a 5xx): requests running finish on the deployment
    /// they started with; every request after the swap gets `next`. A component that fails its
    /// smoke request is refused, and the current deployment keeps serving.
    pub async fn swap_in(&self, next: Deployment) -> anyhow::Result<()> {
        for component in &next.components {
            let request = hyper::Request::get(component.smoke_path.as_str())
                .header(hyper::header::HOST, "localhost")
                .body(http_body_util::Full::new(Bytes::new()))?;
            let timings = Arc::new(Timings::default());
            let answer = match self.admission.admit().await {
                Some(slot) => {
                    self.serve(component, request, Scheme::Http, slot, &timings)
                        .await
                }
                None => Err(Refusal::busy(self.admission.capacity())),
            };
            let status = match answer {
                Ok(response) => response.status().as_u16(),
                Err(refusal) => {
                    anyhow::bail!(
                        "component '{}' failed its smoke request GET {}: {}",
                        component.id,
                        component.smoke_path,
                        refusal.message
                    )
                }
            };
            anyhow::ensure!(
                status < 500,
                "component '{}' failed its smoke request GET {}: status {status}",
                component.id,
                component.smoke_path
            );
        }
        let previous = std::mem::replace(
            &mut *self
                .deployment
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            Arc::new(next),
        );
        let current = self.deployment();
        for (id, hash) in current.identities() {
            let old = previous
                .identities()
                .into_iter()
                .find(|(old_id, _)| *old_id == id)
                .map(|(_, old_hash)| old_hash);
            self.metrics.component_loaded(&id, &hash, old.as_deref());
        }
        Ok(())
    }

    /// Makes every request look addressed to `base` (`https://todo.example.com`), for a host
    /// behind a proxy: the component builds absolute URLs from it, whatever `Host` said.
    pub fn with_public_url(mut self, base: Option<http::uri::Uri>) -> Self {
        self.public_url = base;
        self
    }

    /// Serves one request with a fresh instance of the component its path routes to. Every
    /// failure, of the client or of the guest, becomes a JSON answer here; none reaches the
    /// connection or the host.
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> hyper::Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let deployment = self.deployment();
        let component = deployment.routes.pick(uri.path());
        let timings = Arc::new(Timings::default());
        self.metrics.in_flight(true);
        let result = match component {
            None => Err(Refusal::no_route(uri.path())),
            Some(component) => self.admit_and_serve(component, request, &timings).await,
        };
        let response = result.unwrap_or_else(|refusal| {
            self.metrics.refused(refusal.reason());
            let _request = tracing::warn_span!("request", %method, %uri).entered();
            refusal.into_response()
        });
        self.metrics.in_flight(false);
        let took = started.elapsed();
        let status = response.status().as_u16();
        self.metrics.request_done(uri.path(), status, took);
        if self.access_log {
            crate::logging::AccessLine {
                method: &method,
                path: uri.path(),
                status,
                total_us: took.as_micros() as u64,
                instantiate_us: timings.instantiate_ns.load(Ordering::Relaxed) / 1000,
                guest_us: timings.guest_us(),
                kv_calls: timings.kv_calls.load(Ordering::Relaxed),
                component: component.map_or("", |c| c.hash.as_str()),
            }
            .log();
        }
        response
    }

    /// Creates one instance of the component at `/`, exactly as a request would, and drops it
    /// without calling it: what a request pays before the guest runs. For measurements.
    pub async fn instantiate_only(&self) -> anyhow::Result<()> {
        self.instance_phases().await.map(|_| ())
    }

    /// The three phases of a request's instance, timed, without calling it: making the store
    /// (WASI, `wasi:http` and key-value state), instantiating, and dropping the store (its memory
    /// goes back to the pool). For measurements.
    pub async fn instance_phases(&self) -> anyhow::Result<[std::time::Duration; 3]> {
        let deployment = self.deployment();
        let component = deployment
            .routes
            .pick("/")
            .ok_or_else(|| anyhow::anyhow!("no component serves /"))?;
        let deadline = Instant::now() + self.limits.request_timeout;
        let started = std::time::Instant::now();
        let mut store = component.new_store(&self.limits, deadline, Arc::default())?;
        let made = started.elapsed();
        let started = std::time::Instant::now();
        component.pre.instantiate_async(&mut store).await?;
        let instantiated = started.elapsed();
        let started = std::time::Instant::now();
        drop(store);
        Ok([made, instantiated, started.elapsed()])
    }

    /// The host directory mounted into the component at `path`, if any.
    pub fn mounted_dir(&self, path: &str) -> Option<PathBuf> {
        let deployment = self.deployment();
        let component = deployment.routes.pick(path)?;
        component.mount.as_ref().map(|(dir, _)| dir.to_path_buf())
    }

    /// Reads the request (no slot is held while a client sends), takes a slot, serves it.
    async fn admit_and_serve<B>(
        &self,
        component: &LoadedComponent,
        request: hyper::Request<B>,
        timings: &Arc<Timings>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut request = read_request(request, &self.limits).await?;
        let scheme = match &self.public_url {
            Some(base) => address_to(&mut request, base),
            None => Scheme::Http,
        };
        let Some(slot) = self.admission.admit().await else {
            return Err(Refusal::busy(self.admission.capacity()));
        };
        self.serve(component, request, scheme, slot, timings).await
    }

    async fn serve(
        &self,
        component: &LoadedComponent,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        scheme: Scheme,
        slot: Slot,
        timings: &Arc<Timings>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal> {
        let deadline = Instant::now() + self.limits.request_timeout;

        let mut store = component
            .new_store(&self.limits, deadline, timings.kv_calls.clone())
            .map_err(|err| Refusal::host(format!("cannot prepare the instance: {err:#}")))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)
            .map_err(|err| {
                Refusal::new(400, format!("the request cannot be handed over: {err}"))
            })?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|err| Refusal::host(format!("cannot prepare the response: {err}")))?;
        let pre = component.pre.clone();
        let metrics = self.metrics.clone();
        let guest_timings = timings.clone();

        // The instance, holding its slot; the store (and with it the instance) is dropped the
        // moment this future completes or is dropped.
        let guest = async move {
            let _slot = slot;
            let started = std::time::Instant::now();
            let result = match pre.instantiate_async(&mut store).await {
                Ok(proxy) => {
                    let instantiated = started.elapsed();
                    guest_timings.instantiated(instantiated);
                    metrics.instantiated(instantiated);
                    let called = std::time::Instant::now();
                    let result = proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, incoming, outparam)
                        .await;
                    metrics.guest_ran(called.elapsed());
                    result
                }
                Err(err) => Err(err),
            };
            GuestOutcome {
                result,
                memory_limit_hit: store.data().memory_limit_hit(),
            }
        };
        let answer = Exchange::new(guest).answer(receiver, self.limits.max_response);
        let answered = tokio::time::timeout_at(deadline + DEADLINE_MARGIN, answer).await;
        timings.answered();
        match answered {
            Ok(result) => result,
            // Stuck outside wasm (a host call that never returns): dropping the future has
            // dropped the instance.
            Err(_) => Err(Refusal::deadline(self.limits.request_timeout)),
        }
    }
}

/// Rewrites `request` as if addressed to `base`: its URI's scheme and authority and its `Host`
/// header. Returns the scheme for `wasi:http`.
fn address_to<B>(request: &mut hyper::Request<B>, base: &http::uri::Uri) -> Scheme {
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    if let Some(authority) = base.authority()
        && let Ok(value) = hyper::header::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(hyper::header::HOST, value);
    }
    match base.scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    }
}

/// What one request's access-log line tells of it, filled in as it goes.
#[derive(Debug)]
struct Timings {
    /// When the request began, for the offsets below.
    origin: std::time::Instant,
    instantiate_ns: AtomicU64,
    /// Offset (ns) at which the instance was ready, and at which its answer was complete.
    ready_at_ns: AtomicU64,
    answered_at_ns: AtomicU64,
    kv_calls: Arc<AtomicU32>,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            origin: std::time::Instant::now(),
            instantiate_ns: AtomicU64::new(0),
            ready_at_ns: AtomicU64::new(0),
            answered_at_ns: AtomicU64::new(0),
            kv_calls: Arc::default(),
        }
    }
}

impl Timings {
    fn since_origin(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instantiated(&self, took: std::time::Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.instantiate_ns.store(took, Ordering::Relaxed);
        self.ready_at_ns
            .store(self.since_origin(), Ordering::Relaxed);
    }

    fn answered(&self) {
        self.answered_at_ns
            .store(self.since_origin(), Ordering::Relaxed);
    }

    /// Time from the instance being ready to its answer being complete, in µs.
    fn guest_us(&self) -> u64 {
        let ready = self.ready_at_ns.load(Ordering::Relaxed);
        let answered = self.answered_at_ns.load(Ordering::Relaxed);
        if ready == 0 {
            0
        } else {
            answered.saturating_sub(ready) / 1000
        }
    }
}
