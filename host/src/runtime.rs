//! The component runtime: what is made once, and the per-request path.
//!
//! Once ([`crate::RuntimeBuilder`]): one `Engine` for the whole process (pooling allocator sized
//! for `--max-concurrency`, epoch interruption, one epoch ticker thread), one `Linker` with WASI
//! p2, `wasi:http` and our `wasi:keyvalue`, and per component a [`ProxyPre`] that has resolved
//! every import in advance; one [`Admission`] limit for all of them.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
use crate::refusal::{GuestOutcome, Refusal};
use crate::routes::RouteTable;
use crate::state::RequestState;
use crate::wasi_keyvalue::KvAccess;

/// The todo component, built from `guest/` by `build.rs` and embedded in the binary.
pub const TODO_COMPONENT: &[u8] = include_bytes!(env!("TODO_COMPONENT_WASM"));

/// Time the host allows past the guest's deadline for its own work (answering, cleaning up)
/// before it gives up on an instance that is stuck outside wasm, e.g. in a host call.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The engine's components on their routes, the admission limit and the per-request limits: all
/// a request needs.
pub struct Runtime {
    routes: RouteTable<Arc<LoadedComponent>>,
    admission: Admission,
    limits: Limits,
    /// Scheme and authority that answers' absolute URLs use instead of the request's.
    public_url: Option<http::uri::Uri>,
}

/// One component, compiled and linked, with what its instances may reach.
pub struct LoadedComponent {
    pub id: String,
    pre: ProxyPre<RequestState>,
    kv_access: Arc<KvAccess>,
    mount: Option<(PathBuf, String)>,
}

impl LoadedComponent {
    pub(crate) fn new(
        id: String,
        pre: ProxyPre<RequestState>,
        kv_access: KvAccess,
        mount: Option<(PathBuf, String)>,
    ) -> Self {
        Self {
            id,
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
    ) -> wasmtime::Result<Store<RequestState>> {
        let mount = self
            .mount
            .as_ref()
            .map(|(dir, guest)| (dir.as_path(), guest.as_str()));
        let state = RequestState::new(self.kv_access.clone(), limits, mount)?;
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
        routes: RouteTable<Arc<LoadedComponent>>,
        admission: Admission,
        limits: Limits,
    ) -> Self {
        Self {
            routes,
            admission,
            limits,
            public_url: None,
        }
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
        let method = request.method().clone();
        let uri = request.uri().clone();
        let result = match self.routes.pick(uri.path()) {
            None => Err(Refusal::no_route(uri.path())),
            Some(component) => self.admit_and_serve(component, request).await,
        };
        result.unwrap_or_else(|refusal| {
            let _request = tracing::warn_span!("request", %method, %uri).entered();
            refusal.into_response()
        })
    }

    /// Creates one instance of the component at `/`, exactly as a request would, and drops it
    /// without calling it: what a request pays before the guest runs. For measurements.
    pub async fn instantiate_only(&self) -> anyhow::Result<()> {
        let component = self
            .routes
            .pick("/")
            .ok_or_else(|| anyhow::anyhow!("no component serves /"))?;
        let deadline = Instant::now() + self.limits.request_timeout;
        let mut store = component.new_store(&self.limits, deadline)?;
        component.pre.instantiate_async(&mut store).await?;
        Ok(())
    }

    /// The host directory mounted into the component at `path`, if any.
    pub fn mounted_dir(&self, path: &str) -> Option<&Path> {
        let component = self.routes.pick(path)?;
        component.mount.as_ref().map(|(dir, _)| dir.as_path())
    }

    /// Reads the request (no slot is held while a client sends), takes a slot, serves it.
    async fn admit_and_serve<B>(
        &self,
        component: &LoadedComponent,
        request: hyper::Request<B>,
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
        self.serve(component, request, scheme, slot).await
    }

    async fn serve(
        &self,
        component: &LoadedComponent,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        scheme: Scheme,
        slot: Slot,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal> {
        let deadline = Instant::now() + self.limits.request_timeout;

        let mut store = component
            .new_store(&self.limits, deadline)
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

        // The instance, holding its slot; the store (and with it the instance) is dropped the
        // moment this future completes or is dropped.
        let guest = async move {
            let _slot = slot;
            let result = match pre.instantiate_async(&mut store).await {
                Ok(proxy) => {
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, incoming, outparam)
                        .await
                }
                Err(err) => Err(err),
            };
            GuestOutcome {
                result,
                memory_limit_hit: store.data().memory_limit_hit(),
            }
        };
        let answer = Exchange::new(guest).answer(receiver, self.limits.max_response);
        match tokio::time::timeout_at(deadline + DEADLINE_MARGIN, answer).await {
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
