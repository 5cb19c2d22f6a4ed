//! The component runtime: everything done once at start-up, and the per-request path.
//!
//! Start-up ([`Runtime::new`]): one `Engine` with the pooling allocator and epoch interruption,
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
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::kv::{self, KvBackend};
use crate::limits::{EPOCH_TICK, Limits};
use crate::state::RequestState;

/// The todo component, built from `guest/` by `build.rs` and embedded in the binary.
pub const TODO_COMPONENT: &[u8] = include_bytes!(env!("TODO_COMPONENT_WASM"));

/// Core instances, memories and tables one component may have: a Rust `wasm32-wasip2`
/// component has a handful; room for fixtures and other toolchains.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 50;
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
const MAX_TABLES_PER_COMPONENT: u32 = 20;
/// Time the host allows past the guest's deadline for its own work (answering, cleaning up)
/// before it gives up on an instance that is stuck outside wasm, e.g. in a host call.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// What `Retry-After` says when the host is full.
const RETRY_AFTER_SECONDS: &str = "1";

/// The engine, the pre-instantiated component, the shared store and the limits: all a request
/// needs.
pub struct Runtime {
    pre: ProxyPre<RequestState>,
    kv: Arc<dyn KvBackend>,
    limits: Limits,
    public: Option<PathBuf>,
    slots: Arc<Semaphore>,
}

/// Builds a [`Runtime`]: `Runtime::builder().store(kv).build()?`. Unset parts default to the
/// embedded todo component, an in-memory store, [`Limits::default`] and no public folder.
#[derive(Default)]
pub struct RuntimeBuilder {
    component: Option<Vec<u8>>,
    kv: Option<Arc<dyn KvBackend>>,
    limits: Limits,
    public: Option<PathBuf>,
}

impl RuntimeBuilder {
    /// Runs this component (binary `.wasm` of the `todo:app/app` world, or of any world that
    /// needs no more imports) instead of the embedded todo component.
    pub fn component(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.component = Some(bytes.into());
        self
    }

    /// Keeps the data in `kv`.
    pub fn store(mut self, kv: Arc<dyn KvBackend>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Holds every request to `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Mounts `dir` read-only into every instance at `/public`.
    pub fn public_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.public = dir;
        self
    }

    /// Compiles the component and links it: everything a request will not have to do again.
    pub fn build(self) -> anyhow::Result<Runtime> {
        let kv = self
            .kv
            .unwrap_or_else(|| Arc::new(kv::memory::MemoryBackend::new()));
        let component = self.component.as_deref().unwrap_or(TODO_COMPONENT);
        Runtime::new(component, kv, self.limits, self.public)
    }
}

impl Runtime {
    /// A builder with every part at its default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    fn new(
        component: &[u8],
        kv: Arc<dyn KvBackend>,
        limits: Limits,
        public: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let engine =
            Engine::new(&engine_config(&limits)).context("cannot create the wasmtime engine")?;
        let component =
            Component::new(&engine, component).context("cannot compile the component")?;
        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        kv::wasi::add_to_linker(&mut linker, RequestState::kv)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .context("the component imports something this host does not provide")?;
        let pre = ProxyPre::new(instance_pre)
            .context("the component does not export wasi:http/incoming-handler")?;
        spawn_epoch_ticker(&engine);
        Ok(Self {
            pre,
            kv,
            slots: Arc::new(Semaphore::new(limits.max_concurrency)),
            limits,
            public,
        })
    }

    /// The shared store.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.kv
    }

    /// The folder mounted at `/public`, if any.
    pub fn public_dir(&self) -> Option<&Path> {
        self.public.as_deref()
    }

    /// Serves one request with a fresh instance. Every failure, of the client or of the guest,
    /// becomes a JSON answer here; none reaches the connection or the host.
    pub async fn handle(
        &self,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
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

    async fn serve(
        &self,
        request: hyper::Request<Incoming>,
        slot: OwnedSemaphorePermit,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Refusal> {
        let deadline = Instant::now() + self.limits.request_timeout;
        let request = self.read_request(request).await?;

        let state = RequestState::new(self.kv.clone(), &self.limits, self.public.as_deref())
            .map_err(|err| Refusal::internal(format!("cannot prepare the instance: {err:#}")))?;
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state.limiter());
        // Every epoch tick the guest yields its thread to other requests; past the deadline
        // it is interrupted with a trap.
        let std_deadline = deadline.into_std();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if std::time::Instant::now() >= std_deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
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

        // The instance runs in its own task, holding its slot until the store is gone.
        let mut task = tokio::task::spawn(async move {
            let _slot = slot;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        });

        let max_response = self.limits.max_response;
        let answer = async {
            let response = match receiver.await {
                Ok(Ok(response)) => response,
                Ok(Err(code)) => {
                    return Err(Refusal::internal(format!(
                        "the component answered with error code {code:?}"
                    )));
                }
                // The sender was dropped with the store: the guest returned or trapped
                // without setting a response. The task says which.
                Err(_) => return Err(Refusal::from_task((&mut task).await, "set no response")),
            };
            let (parts, body) = response.into_parts();
            match Limited::new(body, max_response).collect().await {
                Ok(body) => Ok(hyper::Response::from_parts(
                    parts,
                    full_body(body.to_bytes()),
                )),
                Err(err) if err.is::<LengthLimitError>() => Err(Refusal::internal(format!(
                    "the component's response is larger than the {max_response}-byte limit"
                ))),
                Err(_) => Err(Refusal::from_task(
                    (&mut task).await,
                    "broke off its response",
                )),
            }
        };
        match tokio::time::timeout_at(deadline + DEADLINE_MARGIN, answer).await {
            Ok(result) => result,
            Err(_) => {
                // Stuck outside wasm (a host call that never returns): drop the instance.
                task.abort();
                Err(Refusal::deadline(self.limits.request_timeout))
            }
        }
    }

    /// Checks the request head and reads the body, within the limits.
    async fn read_request(
        &self,
        request: hyper::Request<Incoming>,
    ) -> Result<hyper::Request<Full<Bytes>>, Refusal> {
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

    /// The refusal for a guest whose instance task ended as `joined` after it `what`.
    fn from_task(joined: Result<wasmtime::Result<()>, tokio::task::JoinError>, what: &str) -> Self {
        match joined {
            Ok(Ok(())) => Self::internal(format!("the component {what}")),
            Ok(Err(err)) if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                // The epoch deadline interrupted it.
                Self::new(
                    504,
                    format!("the component ran past its deadline and was stopped ({what})"),
                )
            }
            Ok(Err(err)) => Self::internal(format!("the component failed: {err:#}")),
            Err(join) => Self::internal(format!("the component's task failed: {join}")),
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

/// One thread for the whole host advances the engine's epoch every [`EPOCH_TICK`]; it ends
/// when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".to_string())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("cannot start the epoch ticker thread");
}

fn engine_config(limits: &Limits) -> Config {
    // One pooled slot per request that may run at once, and a few spare for the instant
    // between a finished request releasing its slot and its store being dropped.
    let instances = u32::try_from(limits.max_concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(16);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(limits.max_memory)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.epoch_interruption(true);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("a\"b\\c\nd"), r#""a\"b\\c\u000ad""#);
    }
}
