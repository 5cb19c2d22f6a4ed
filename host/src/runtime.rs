//! The component runtime: the [`Runtime`] a host or an embedder holds, how it is made, how a
//! new deployment is swapped in, and the per-request path.
//!
//! Made once ([`RuntimeBuilder`] for one component, [`Runtime::for_app`] for an app): the
//! `Loader` of `deployment.rs` (one `Engine` for the whole process, pooling allocator sized for
//! `--max-concurrency`, epoch interruption, one epoch ticker thread, one `Linker` with WASI p2,
//! `wasi:http` and our `wasi:keyvalue`), the components it loads, and one [`Admission`] limit
//! for all of them.
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
//! 4. a new `Store` with fresh [`RequestState`](crate::state::RequestState) and its limits
//!    (memory, epoch deadline), an instance from the `ProxyPre`, and
//!    `wasi:http/incoming-handler.handle`;
//! 5. the guest's response is read whole beside the running guest ([`crate::exchange`]);
//!    every failure becomes a JSON answer ([`crate::refusal`]);
//! 6. the store is dropped: the instance, its memory and its resources are gone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::admission::{Admission, Slot};
use crate::app::App;
use crate::deployment::{Deployment, LoadedComponent, Loader};
use crate::engine::{self, ComponentSource};
use crate::exchange::Exchange;
use crate::incoming::read_request;
use crate::kv::{KvBackend, memory::MemoryBackend};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::refusal::{GuestOutcome, Refusal};
use crate::routes::Route;
use crate::wasi_keyvalue::KvAccess;

/// Time the host allows past the guest's deadline for its own work (answering, cleaning up)
/// before it gives up on an instance that is stuck outside wasm, e.g. in a host call.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The engine, the deployment of components, the admission limit and the per-request limits:
/// all a request needs.
pub struct Runtime {
    /// What every deployment of this runtime is loaded with: its engine, linker and cache.
    loader: Loader,
    deployment: RwLock<Arc<Deployment>>,
    admission: Admission,
    limits: Limits,
    /// Scheme and authority that answers' absolute URLs use instead of the request's.
    public_url: Option<http::uri::Uri>,
    metrics: Arc<Metrics>,
    access_log: bool,
}

impl Runtime {
    /// A builder with every part at its default: the embedded todo component on every path, an
    /// in-memory store, [`Limits::default`].
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The runtime of `app`: its components on their routes, each reaching only the stores it
    /// is granted among the opened `backends` (label → backend), all held to one `limits`.
    pub fn for_app(
        app: &App,
        backends: &HashMap<String, Arc<dyn KvBackend>>,
        limits: Limits,
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let loader = Loader::start(&limits, true, cache_dir.map(Path::to_path_buf))?;
        Self::for_app_on(loader, app, backends, limits)
    }

    /// [`Runtime::for_app`] on an engine already started with [`Loader::start`] for `limits`
    /// (the server starts it while the stores open).
    pub(crate) fn for_app_on(
        loader: Loader,
        app: &App,
        backends: &HashMap<String, Arc<dyn KvBackend>>,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let deployment = loader.load_app(app, backends)?;
        Ok(Self::new(loader, deployment, limits))
    }

    fn new(loader: Loader, deployment: Deployment, limits: Limits) -> Self {
        let metrics = Arc::new(Metrics::new());
        for (id, hash) in deployment.identities() {
            metrics.component_loaded(&id, &hash, None);
        }
        Self {
            loader,
            deployment: RwLock::new(Arc::new(deployment)),
            admission: Admission::new(limits.max_concurrency, limits.queue_timeout),
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

    /// Makes every request look addressed to `base` (`https://todo.example.com`), for a host
    /// behind a proxy: the component builds absolute URLs from it, whatever `Host` said.
    pub fn with_public_url(mut self, base: Option<http::uri::Uri>) -> Self {
        self.public_url = base;
        self
    }
}

/// Builds a [`Runtime`] of one component on every path: `Runtime::builder().backend(kv).build()?`.
/// Unset parts default to the embedded todo component, an in-memory store, [`Limits::default`],
/// no public folder, no artifact cache and the tuned instance pool.
pub struct RuntimeBuilder {
    component: ComponentSource,
    kv_access: Option<KvAccess>,
    limits: Limits,
    mount: Option<(PathBuf, String)>,
    config: BTreeMap<String, String>,
    cache_dir: Option<PathBuf>,
    tuned_pool: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            component: ComponentSource::embedded(),
            kv_access: None,
            limits: Limits::default(),
            mount: None,
            config: BTreeMap::new(),
            cache_dir: None,
            tuned_pool: true,
        }
    }
}

impl RuntimeBuilder {
    /// Runs this component (binary `.wasm` of the `todo:app/app` world, or of any world that
    /// needs no more imports) instead of the embedded todo component.
    pub fn component(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.component = ComponentSource::Wasm(bytes.into());
        self
    }

    /// Runs the component precompiled at `path` by [`RuntimeBuilder::precompile_to`] (or by
    /// `todo-host` into its cache), for a cold start without compiling. The file must come from
    /// this same host build: a precompiled artifact is trusted native code.
    pub fn precompiled(mut self, path: impl Into<PathBuf>) -> Self {
        self.component = ComponentSource::Precompiled(path.into());
        self
    }

    /// Keeps the data in backend `kv`: the component may open any bucket there.
    pub fn backend(mut self, kv: Arc<dyn KvBackend>) -> Self {
        self.kv_access = Some(KvAccess::AnyBucket(kv));
        self
    }

    /// Lets the component open only these store labels, each in its own backend (an app
    /// manifest's `key_value_stores`); any other label is `access-denied`.
    pub fn granted_labels(mut self, labels: HashMap<String, Arc<dyn KvBackend>>) -> Self {
        self.kv_access = Some(KvAccess::Labels(labels));
        self
    }

    /// Holds every request to `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Mounts host directory `dir` read-only into every instance at `guest_path`.
    pub fn mount(mut self, dir: PathBuf, guest_path: String) -> Self {
        self.mount = Some((dir, guest_path));
        self
    }

    /// Sets configuration `key` of the component (`wasi:config/store`), as `--config` does.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_string(), value.to_string());
        self
    }

    /// Caches the compiled component in `dir`, keyed by the engine's settings and the
    /// component's bytes: the next start with the same component loads it instead of compiling.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Whether the instance pool keeps memory resident between instances (the default); off
    /// only to measure what the tuning buys.
    pub fn tuned_pool(mut self, tuned: bool) -> Self {
        self.tuned_pool = tuned;
        self
    }

    /// Compiles the component and writes it to `path` as a precompiled artifact for
    /// [`RuntimeBuilder::precompiled`].
    pub fn precompile_to(&self, path: &Path) -> anyhow::Result<()> {
        let engine = engine::new(&self.limits, self.tuned_pool)?;
        engine::precompile_to(&engine, &self.component, path)
    }

    /// Compiles (or loads) the component and links it: everything a request will not have to
    /// do again.
    pub fn build(self) -> anyhow::Result<Runtime> {
        let kv_access = self
            .kv_access
            .unwrap_or_else(|| KvAccess::AnyBucket(Arc::new(MemoryBackend::new())));
        let loader = Loader::start(&self.limits, self.tuned_pool, self.cache_dir)?;
        let every_path = Route::Prefix(String::new());
        let component = loader.load_component(
            "component",
            &self.component,
            &every_path,
            kv_access,
            self.mount,
            Arc::new(self.config),
        )?;
        let deployment = Deployment::new(vec![(Arc::new(component), vec![every_path])]);
        Ok(Runtime::new(loader, deployment, self.limits))
    }
}

/// A reload: the new deployment loaded beside the running one, tried, and swapped in.
impl Runtime {
    /// Loads `app` with this runtime's engine and linker, off the request path (compiling takes
    /// a core for a while), then [`Runtime::swap_in`]: the zero-downtime deploy. Fails, changing
    /// nothing, when a component does not load, does not link, or fails its smoke request.
    ///
    /// What the host reloads (re-reading its manifest, opening stores it did not have open) is
    /// `admin.rs`'s `Control::reload`, which calls this.
    pub async fn reload(
        &self,
        app: &App,
        backends: &HashMap<String, Arc<dyn KvBackend>>,
    ) -> anyhow::Result<()> {
        let loader = self.loader.clone();
        let (app, backends) = (app.clone(), backends.clone());
        let next = tokio::task::spawn_blocking(move || loader.load_app(&app, &backends))
            .await
            .context("the loading task failed")??;
        self.swap_in(next).await
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
}

/// The request path, top to bottom.
impl Runtime {
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
