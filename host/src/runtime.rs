//! The component runtime: everything done once at start-up, and the per-request path.
//!
//! Start-up ([`Runtime::new`]): one `Engine` with the pooling allocator, the component compiled
//! once, a `Linker` with WASI p2, `wasi:http` and our `wasi:keyvalue`, and a [`ProxyPre`] that has
//! resolved every import in advance.
//!
//! Per request ([`Runtime::handle`]): a new `Store` with fresh [`RequestState`], instantiate from
//! the `ProxyPre`, call `wasi:http/incoming-handler.handle`, stream the response, drop the store.
//! Nothing of the instance survives the request.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::kv::{self, KvBackend};
use crate::state::RequestState;
use wasmtime_wasi_http::WasiHttpView as _;

/// The todo component, built from `guest/` by `build.rs` and embedded in the binary.
pub const TODO_COMPONENT: &[u8] = include_bytes!(env!("TODO_COMPONENT_WASM"));

/// Instances that can be alive at once. Each request holds one; the pool reserves address space
/// (not memory) for all of them up front, which is what makes instantiation cheap.
const POOLED_INSTANCES: u32 = 1000;
/// Linear memory one instance may grow to. The todo component needs a few MiB.
const MAX_MEMORY_BYTES: usize = 64 << 20;
/// Core instances, memories and tables one component may have: a Rust `wasm32-wasip2`
/// component has a handful; room for fixtures and other toolchains.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 50;
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
const MAX_TABLES_PER_COMPONENT: u32 = 20;

/// The engine, the pre-instantiated component and the shared store: all a request needs.
pub struct Runtime {
    pre: ProxyPre<RequestState>,
    kv: Arc<dyn KvBackend>,
}

impl Runtime {
    /// Compiles `component` (a binary component of the `todo:app/app` world, or any world that
    /// needs no more imports) and links it against `kv`.
    pub fn new(component: &[u8], kv: Arc<dyn KvBackend>) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config()).context("cannot create the wasmtime engine")?;
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
        Ok(Self { pre, kv })
    }

    /// The shared store.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.kv
    }

    /// Serves one request with a fresh instance. Failures of the guest (a trap, no response)
    /// become a 500 JSON answer here; they never reach the connection.
    pub async fn handle(
        &self,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        match self.run_instance(request).await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(%method, %uri, error = format!("{err:#}"), "request failed in the guest");
                json_error(500, &format!("the component failed: {err:#}"))
            }
        }
    }

    async fn run_instance(
        &self,
        request: hyper::Request<Incoming>,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = Store::new(self.pre.engine(), RequestState::new(self.kv.clone()));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();

        // The instance runs in its own task: after it has set the response head it goes on
        // writing the body while hyper sends it, and the store is dropped when it is done.
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(anyhow::anyhow!(
                "the guest answered with error code {code:?}"
            )),
            // The sender was dropped with the store: the guest returned or trapped without
            // setting a response. The task says which.
            Err(_) => {
                let err = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("the guest returned without setting a response"),
                    Ok(Err(trap)) => anyhow::Error::from(trap),
                    Err(join) => anyhow::Error::from(join),
                };
                Err(err.context("no response from the guest"))
            }
        }
    }
}

/// A response with a JSON `{"error": message}` body, made by the host itself.
pub fn json_error(status: u16, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = format!("{{\"error\":{}}}", json_string(message));
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .body(full_body(body))
        .unwrap_or_else(|_| hyper::Response::new(full_body(String::new())))
}

fn full_body(text: String) -> HyperOutgoingBody {
    Full::new(Bytes::from(text))
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

fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        .total_core_instances(POOLED_INSTANCES * 4)
        .total_memories(POOLED_INSTANCES * 2)
        .total_tables(POOLED_INSTANCES * 4)
        .total_stacks(POOLED_INSTANCES)
        .max_memory_size(MAX_MEMORY_BYTES)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
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
