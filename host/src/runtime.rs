//! The component runtime: everything done once at start-up, and the per-request path.
//!
//! Start-up ([`RuntimeBuilder::build`]): one `Engine` with the pooling allocator and epoch interruption,
//! the component compiled once, a `Linker` with WASI p2, `wasi:http` and our `wasi:keyvalue`, a
//! [`ProxyPre`] that has resolved every import in advance, and one epoch ticker thread.
//!
//! Per request ([`Runtime::handle`]):
//! 1. admission: a slot among `max_concurrency`, or 503 after a short wait;
//! 2. the request head is checked (URI and header size) and the body read up to its limit, so
//!    that 413/414/431 are answered before any guest code runs;
//! 3. a new `Store` with fresh [`RequestState`] and its limits (memory, epoch deadline), an
//!    instance from the `ProxyPre`, and `wasi:http/incoming-handler.handle`;
//! 4. the guest's response is read whole (up to its limit) before it is sent, so that a guest
//!    that traps, overruns or never answers still costs its client only a well-formed 5xx;
//! 5. the store is dropped: the instance, its memory and its resources are gone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wasmtime::component::Linker;
use wasmtime::error::Context as _;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::engine::{self, ComponentSource};
use crate::kv::wasi::Stores;
use crate::kv::{self, KvBackend};
use crate::limits::Limits;
use crate::state::RequestState;

/// The todo component, built from `guest/` by `build.rs` and embedded in the binary.
pub const TODO_COMPONENT: &[u8] = include_bytes!(env!("TODO_COMPONENT_WASM"));

/// Time the host allows past the guest's deadline for its own work (answering, cleaning up)
/// before it gives up on an instance that is stuck outside wasm, e.g. in a host call.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// What `Retry-After` says when the host is full.
const RETRY_AFTER_SECONDS: &str = "1";

/// The engine, the pre-instantiated component, the shared store and the limits: all a request
/// needs.
pub struct Runtime {
    pre: ProxyPre<RequestState>,
    stores: Arc<Stores>,
    limits: Limits,
    mount: Option<(PathBuf, String)>,
    slots: Arc<Semaphore>,
}

/// Builds a [`Runtime`]: `Runtime::builder().store(kv).build()?`. Unset parts default to the
/// embedded todo component, an in-memory store, [`Limits::default`], no public folder, no
/// artifact cache and the tuned instance pool.
pub struct RuntimeBuilder {
    component: ComponentSource,
    stores: Option<Stores>,
    limits: Limits,
    mount: Option<(PathBuf, String)>,
    cache_dir: Option<PathBuf>,
    tuned_pool: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            component: ComponentSource::Wasm(TODO_COMPONENT.to_vec()),
            stores: None,
            limits: Limits::default(),
            mount: None,
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

    /// Keeps the data in `kv`: the component may open any bucket there.
    pub fn store(mut self, kv: Arc<dyn KvBackend>) -> Self {
        self.stores = Some(Stores::Any(kv));
        self
    }

    /// Lets the component open only these store labels, each in its own backend (an app
    /// manifest's `key_value_stores`); any other label is `access-denied`.
    pub fn granted_stores(
        mut self,
        labels: std::collections::HashMap<String, Arc<dyn KvBackend>>,
    ) -> Self {
        self.stores = Some(Stores::Granted(labels));
        self
    }

    /// Holds every request to `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Mounts `dir` read-only into every instance at `/public`.
    pub fn public_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.mount = dir.map(|dir| (dir, crate::state::PUBLIC_MOUNT.to_string()));
        self
    }

    /// Mounts host directory `dir` read-only into every instance at `guest_path`.
    pub fn mount(mut self, dir: PathBuf, guest_path: String) -> Self {
        self.mount = Some((dir, guest_path));
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
        let stores = self
            .stores
            .unwrap_or_else(|| Stores::Any(Arc::new(kv::memory::MemoryBackend::new())));
        let engine = engine::new(&self.limits, self.tuned_pool)?;
        let component = engine::load(&engine, &self.component, self.cache_dir.as_deref())?;
        Runtime::new(component, Arc::new(stores), self.limits, self.mount)
    }
}

impl Runtime {
    /// A builder with every part at its default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    fn new(
        component: wasmtime::component::Component,
        stores: Arc<Stores>,
        limits: Limits,
        mount: Option<(PathBuf, String)>,
    ) -> anyhow::Result<Self> {
        let engine = component.engine().clone();
        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        kv::wasi::add_to_linker(&mut linker, RequestState::kv)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .context("the component imports something this host does not provide")?;
        let pre = ProxyPre::new(instance_pre)
            .context("the component does not export wasi:http/incoming-handler")?;
        engine::spawn_epoch_ticker(&engine);
        Ok(Self {
            pre,
            stores,
            slots: Arc::new(Semaphore::new(limits.max_concurrency)),
            limits,
            mount,
        })
    }

    /// What the start-up line says about the stores.
    pub fn stores_summary(&self) -> String {
        self.stores.summary()
    }

    /// The host directory mounted into every instance, if any.
    pub fn mounted_dir(&self) -> Option<&Path> {
        self.mount.as_ref().map(|(dir, _)| dir.as_path())
    }

    fn mount_ref(&self) -> Option<(&Path, &str)> {
        self.mount
            .as_ref()
            .map(|(dir, guest)| (dir.as_path(), guest.as_str()))
    }

    /// Serves one request with a fresh instance. Every failure, of the client or of the guest,
    /// becomes a JSON answer here; none reaches the connection or the host.
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> hyper::Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let result = match self.admit().await {
            Some(slot) => self.serve(request, slot).await,
            None => Err(Refusal::busy(self.limits.max_concurrency)),
        };
        result.unwrap_or_else(|refusal| {
            if refusal.status >= 500 {
                tracing::warn!(%method, %uri, status = refusal.status, cause = %refusal.message, "request failed");
            }
            refusal.into_response()
        })
    }

    /// Creates one instance, exactly as a request would, and drops it without calling it: what
    /// a request pays before the guest runs. For measurements.
    pub async fn instantiate_only(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.limits.request_timeout;
        let mut store = self.new_store(deadline)?;
        self.pre.instantiate_async(&mut store).await?;
        Ok(())
    }

    /// A new store for one request: fresh state, the memory limit, and the deadline, checked
    /// every epoch tick (the guest yields its thread to other requests at each tick and is
    /// interrupted with a trap past `deadline`).
    fn new_store(&self, deadline: Instant) -> wasmtime::Result<Store<RequestState>> {
        let state = RequestState::new(self.stores.clone(), &self.limits, self.mount_ref())?;
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

    /// A slot among `max_concurrency`: at once, or after waiting up to `queue_timeout`.
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        tokio::time::timeout(
            self.limits.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        .ok()?
        .ok()
    }

    async fn serve<B>(
        &self,
        request: hyper::Request<B>,
        slot: OwnedSemaphorePermit,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let deadline = Instant::now() + self.limits.request_timeout;
        let request = self.read_request(request).await?;

        let mut store = self
            .new_store(deadline)
            .map_err(|err| Refusal::internal(format!("cannot prepare the instance: {err:#}")))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|err| {
                Refusal::new(400, format!("the request cannot be handed over: {err}"))
            })?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|err| Refusal::internal(format!("cannot prepare the response: {err}")))?;
        let pre = self.pre.clone();

        // The instance, holding its slot; the store (and with it the instance) is dropped the
        // moment this future completes or is dropped.
        let guest = Box::pin(async move {
            let _slot = slot;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        });
        let max_response = self.limits.max_response;
        let answer = Exchange {
            guest,
            finished: None,
        }
        .answer(receiver, max_response);
        match tokio::time::timeout_at(deadline + DEADLINE_MARGIN, answer).await {
            Ok(result) => result,
            // Stuck outside wasm (a host call that never returns): dropping the future has
            // dropped the instance.
            Err(_) => Err(Refusal::deadline(self.limits.request_timeout)),
        }
    }

    /// Checks the request head and reads the body, within the limits.
    async fn read_request<B>(
        &self,
        request: hyper::Request<B>,
    ) -> Result<hyper::Request<Full<Bytes>>, Refusal>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let limits = &self.limits;
        let uri_len = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if uri_len > limits.max_uri {
            return Err(Refusal::new(
                414,
                format!(
                    "the request target is {uri_len} bytes; the limit is {}",
                    limits.max_uri
                ),
            ));
        }
        let header_bytes: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if header_bytes > limits.max_headers {
            return Err(Refusal::new(
                431,
                format!(
                    "the request headers are {header_bytes} bytes; the limit is {}",
                    limits.max_headers
                ),
            ));
        }
        let declared = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let (parts, body) = request.into_parts();
        let body = match read_body(body, limits.max_body, declared).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(Refusal::new(
                    413,
                    format!("request body is larger than {} bytes", limits.max_body),
                ));
            }
            Err(BodyError::Broken(err)) => {
                return Err(Refusal::new(
                    400,
                    format!("the request body could not be read: {err}"),
                ));
            }
        };
        Ok(hyper::Request::from_parts(parts, Full::new(body)))
    }
}

/// How much of an oversized body the host reads and discards before it answers 413. A client
/// that is still sending when the answer comes and the connection closes may see a reset instead
/// of the 413; reading on a while (a "lingering close") lets ordinary clients read their answer.
const DRAIN_LIMIT: usize = 16 << 20;
/// How long the host keeps reading an oversized body before it answers 413 anyway.
const DRAIN_TIME: Duration = Duration::from_secs(2);

enum BodyError {
    TooLarge,
    Broken(String),
}

/// Reads `body` up to `limit` bytes. Past the limit (or when `declared` already is), it keeps
/// reading and discarding up to [`DRAIN_LIMIT`] for [`DRAIN_TIME`] so the 413 can be read.
async fn read_body<B>(mut body: B, limit: usize, declared: Option<u64>) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut too_large = declared.is_some_and(|length| length > limit as u64);
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    let drain_deadline = Instant::now() + DRAIN_TIME;
    loop {
        let next = if too_large {
            match tokio::time::timeout_at(drain_deadline, body.frame()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|err| BodyError::Broken(err.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            too_large = true;
            kept.clear();
        }
        if !too_large {
            kept.extend_from_slice(data);
        }
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    if too_large {
        Err(BodyError::TooLarge)
    } else {
        Ok(kept.freeze())
    }
}

/// A running guest and what became of it.
///
/// The guest and the reading of its answer are polled together in the request's own task:
/// each step of one (a response head, a body chunk) wakes the other without a hop to another
/// task or thread, which is most of what a small request costs.
struct Exchange<G> {
    guest: std::pin::Pin<Box<G>>,
    finished: Option<wasmtime::Result<()>>,
}

type Head = Result<
    Result<
        hyper::Response<HyperOutgoingBody>,
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
    >,
    tokio::sync::oneshot::error::RecvError,
>;

impl<G> Exchange<G>
where
    G: Future<Output = wasmtime::Result<()>> + Send + 'static,
{
    /// Drives `work` while the guest runs beside it.
    async fn beside<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                done = &mut work => return done,
                result = &mut self.guest, if self.finished.is_none() => self.finished = Some(result),
            }
        }
    }

    /// How the guest ended (waiting for it if it has not yet).
    async fn outcome(&mut self) -> wasmtime::Result<()> {
        match self.finished.take() {
            Some(result) => result,
            None => (&mut self.guest).await,
        }
    }

    /// The guest's response, read whole (up to `max_response` bytes), or why there is none.
    async fn answer(
        mut self,
        head: tokio::sync::oneshot::Receiver<
            Result<
                hyper::Response<HyperOutgoingBody>,
                wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
            >,
        >,
        max_response: usize,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal> {
        let head: Head = self.beside(head).await;
        let response = match head {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                return Err(Refusal::internal(format!(
                    "the component answered with error code {code:?}"
                )));
            }
            // The sender went with the store: the guest returned or trapped without setting a
            // response. Its outcome says which.
            Err(_) => return Err(Refusal::from_guest(self.outcome().await, "set no response")),
        };
        let (parts, body) = response.into_parts();
        let collected = self
            .beside(Limited::new(body, max_response).collect())
            .await;
        match collected {
            Ok(body) => {
                if self.finished.is_none() {
                    // The answer is complete; whatever the guest still does runs on, within its
                    // deadline, without holding the client.
                    tokio::spawn(self.guest);
                }
                Ok(hyper::Response::from_parts(
                    parts,
                    full_body(body.to_bytes()),
                ))
            }
            Err(err) if err.is::<LengthLimitError>() => Err(Refusal::internal(format!(
                "the component's response is larger than the {max_response}-byte limit"
            ))),
            Err(_) => Err(Refusal::from_guest(
                self.outcome().await,
                "broke off its response",
            )),
        }
    }
}

/// Why the host answered instead of the guest: a status and a message for the client.
#[derive(Debug)]
struct Refusal {
    status: u16,
    message: String,
}

impl Refusal {
    fn new(status: u16, message: String) -> Self {
        Self { status, message }
    }

    fn internal(message: String) -> Self {
        Self::new(500, message)
    }

    fn busy(max_concurrency: usize) -> Self {
        Self::new(
            503,
            format!(
                "the server is at its limit of {max_concurrency} concurrent requests; retry shortly"
            ),
        )
    }

    fn deadline(timeout: Duration) -> Self {
        Self::new(
            504,
            format!("the component did not finish within the {timeout:?} request deadline"),
        )
    }

    /// The refusal for a guest that ended as `outcome` after it `what`.
    fn from_guest(outcome: wasmtime::Result<()>, what: &str) -> Self {
        match outcome {
            Ok(()) => Self::internal(format!("the component {what}")),
            Err(err) if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                // The epoch deadline interrupted it.
                Self::new(
                    504,
                    format!("the component ran past its deadline and was stopped ({what})"),
                )
            }
            Err(err) => Self::internal(format!("the component failed: {err:#}")),
        }
    }

    fn into_response(self) -> hyper::Response<HyperOutgoingBody> {
        let response = json_error(self.status, &self.message);
        if self.status == 503 {
            let mut response = response;
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            return response;
        }
        response
    }
}

/// A response with a JSON `{"error": message}` body, made by the host itself.
pub fn json_error(status: u16, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = format!("{{\"error\":{}}}", json_string(message));
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .body(full_body(Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(full_body(Bytes::new())))
}

fn full_body(bytes: Bytes) -> HyperOutgoingBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("a\"b\\c\nd"), r#""a\"b\\c\u000ad""#);
    }
}
