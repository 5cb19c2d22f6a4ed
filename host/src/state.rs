//! What one request's `Store` holds. It is made for the request and dropped after it, so nothing
//! a guest does can reach the next request except through the key-value store.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::kv::wasi::{KvBudget, KvView, Stores};
use crate::limits::Limits;

/// Where the guest sees the `--public` folder.
pub const PUBLIC_MOUNT: &str = "/public";

/// One request's host state.
pub struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutgoingHttp,
    stores: Arc<Stores>,
    kv_budget: KvBudget,
    limits: StoreLimits,
}

impl RequestState {
    /// Fresh state with access to `stores` and, read-only, to the `mount`ed directory (host
    /// directory, guest path; [`PUBLIC_MOUNT`] for `--public`); nothing else, within `limits`.
    pub fn new(
        stores: Arc<Stores>,
        limits: &Limits,
        mount: Option<(&Path, &str)>,
    ) -> wasmtime::Result<Self> {
        // No environment, no arguments, no network (the builder denies sockets and name lookups
        // unless asked), no directories but the public one, read-only. Only stderr is
        // inherited, so that a guest's panic message reaches the host's log.
        let mut builder = WasiCtx::builder();
        builder.inherit_stderr();
        if let Some((dir, guest_path)) = mount {
            builder.preopened_dir(dir, guest_path, FsPerms::ReadOnly)?;
        }
        let wasi = builder.build();
        Ok(Self {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: NoOutgoingHttp,
            stores,
            kv_budget: KvBudget::new(limits.kv),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory)
                .build(),
        })
    }

    /// What the store consults before an instance grows its memory or tables.
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// The view the `wasi:keyvalue` host implementation works on.
    pub fn kv(&mut self) -> KvView<'_> {
        KvView {
            stores: &self.stores,
            table: &mut self.table,
            budget: &mut self.kv_budget,
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// `wasi:http` hooks that refuse every outgoing request: a todo component has no business
/// calling out, and a host that runs untrusted code should not lend it the network.
struct NoOutgoingHttp;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(uri = %request.uri(), "refused an outgoing HTTP request from the guest");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
