//! What one request's wasmtime `Store` holds (the instance's host state: WASI, `wasi:http`, the
//! key-value view, the memory limiter). It is made for the request and dropped after it, so
//! nothing a guest does can reach the next request except through the key-value store.

use std::path::Path;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::engine::Ticking;
use crate::limits::Limits;
use crate::wasi_config::{ConfigValues, ConfigView};
use crate::wasi_keyvalue::{KvAccess, KvBudget, KvView};

/// Resource handles (requests, streams, fields, buckets...) one instance may hold at once. The
/// todo component holds a dozen; the cap keeps a guest from growing host memory by minting
/// handles, as `wasmtime serve` and Spin cap theirs.
const MAX_RESOURCES: usize = 1024;

/// One request's host state.
pub struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutgoingHttp,
    kv_access: Arc<KvAccess>,
    kv_budget: KvBudget,
    config: ConfigValues,
    /// `--kv-max-value`, which the configuration also tells the component.
    kv_max_value: usize,
    memory: MemoryLimit,
    /// Keeps the engine's epoch ticker running while this request's instance lives.
    _ticking: Option<Ticking>,
}

impl RequestState {
    /// Fresh state with access to `kv_access` and, read-only, to the `mount`ed directory (host
    /// directory, guest path); nothing else, within `limits`. Its key-value calls are counted in
    /// `kv_calls`, for the access log.
    pub fn new(
        kv_access: Arc<KvAccess>,
        config: ConfigValues,
        limits: &Limits,
        mount: Option<(&Path, &str)>,
        kv_calls: Arc<std::sync::atomic::AtomicU32>,
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Ok(Self {
            table,
            wasi,
            http: WasiHttpCtx::new(),
            hooks: NoOutgoingHttp,
            kv_access,
            kv_budget: KvBudget::new(limits.kv, kv_calls),
            config,
            kv_max_value: limits.kv.max_value,
            memory: MemoryLimit {
                max: limits.max_memory,
                hit: false,
            },
            _ticking: None,
        })
    }

    /// Holds `ticking` for as long as this state (the request's store) lives.
    pub fn keep_ticking(&mut self, ticking: Ticking) {
        self._ticking = Some(ticking);
    }

    /// What the store consults before an instance grows its memory or tables.
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.memory
    }

    /// The memory limit, if it refused the instance a grow: the cause of whatever trap followed.
    pub fn memory_limit_hit(&self) -> Option<usize> {
        self.memory.hit.then_some(self.memory.max)
    }

    /// The view the `wasi:config` host implementation reads.
    pub fn config(&mut self) -> ConfigView<'_> {
        ConfigView {
            values: &self.config,
            kv_max_value: self.kv_max_value,
        }
    }

    /// The view the `wasi:keyvalue` host implementation works on.
    pub fn kv(&mut self) -> KvView<'_> {
        KvView {
            access: &self.kv_access,
            table: &mut self.table,
            budget: &mut self.kv_budget,
        }
    }
}

/// The per-instance memory limit, remembering whether it refused a grow: a guest that runs out
/// of memory traps in many ways (an `unreachable` after a failed allocation, most often), and only
/// this says the limit was the cause.
struct MemoryLimit {
    max: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The instance pool bounds tables already.
        Ok(true)
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
