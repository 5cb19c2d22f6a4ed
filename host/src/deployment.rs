//! What a runtime serves: components compiled, linked and granted their stores, on their routes.
//!
//! A `Loader` is the engine, linker and artifact cache of one runtime, made once; it turns an
//! [`App`] (or one component) into a [`Deployment`] of [`LoadedComponent`]s, each with a
//! `ProxyPre` that has resolved every import in advance. Loading compiles, so it is done at
//! start-up or, for a reload, off the request path. Serving a deployment and swapping one in is
//! the runtime's (`runtime.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use anyhow::Context as _;
use tokio::time::Instant;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::app::{App, KvGrant};
use crate::engine::{self, ComponentSource, EpochTicker};
use crate::kv::KvBackend;
use crate::limits::Limits;
use crate::routes::{Route, RouteTable};
use crate::state::RequestState;
use crate::wasi_config::{self, ConfigValues};
use crate::wasi_keyvalue::{self, KvAccess};

/// The one engine and linker of a runtime, and where compiled components are cached: what every
/// deployment of that runtime is loaded with. Cloning shares the engine and linker.
#[derive(Clone)]
pub(crate) struct Loader {
    engine: Engine,
    linker: Linker<RequestState>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<EpochTicker>,
}

impl Loader {
    /// An engine for `limits` (`tuned_pool`: see [`engine::new`]), its epoch ticker, and a linker
    /// with WASI p2, `wasi:http`, our `wasi:keyvalue` and `wasi:config`.
    pub fn start(
        limits: &Limits,
        tuned_pool: bool,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let engine = engine::new(limits, tuned_pool)?;
        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasi_keyvalue::add_to_linker(&mut linker, RequestState::kv)?;
        wasi_config::add_to_linker(&mut linker, RequestState::config)?;
        let ticker = Arc::new(EpochTicker::start(&engine)?);
        Ok(Self {
            engine,
            linker,
            cache_dir,
            ticker,
        })
    }

    /// The components of `app`, loaded and linked, with their grants among `backends` (label →
    /// open backend).
    pub fn load_app(
        &self,
        app: &App,
        backends: &HashMap<String, Arc<dyn KvBackend>>,
    ) -> anyhow::Result<Deployment> {
        let mut components = Vec::new();
        for component in &app.components {
            let backend = |label: &str| {
                backends.get(label).cloned().with_context(|| {
                    format!(
                        "component '{}' uses key-value store '{label}', which is not open",
                        component.id
                    )
                })
            };
            let kv_access = match &component.key_value {
                KvGrant::AnyBucketIn(label) => KvAccess::AnyBucket(backend(label)?),
                KvGrant::Labels(labels) => KvAccess::Labels(
                    labels
                        .iter()
                        .map(|label| Ok((label.clone(), backend(label)?)))
                        .collect::<anyhow::Result<_>>()?,
                ),
            };
            let first_route = component
                .routes
                .first()
                .cloned()
                .unwrap_or(Route::Prefix(String::new()));
            let loaded = self.load_component(
                &component.id,
                &component.source,
                &first_route,
                kv_access,
                component.files.clone(),
                Arc::new(component.config.clone()),
            )?;
            components.push((Arc::new(loaded), component.routes.clone()));
        }
        Ok(Deployment::new(components))
    }

    /// Compiles (or loads from the cache) the component of `source` and resolves its imports.
    pub fn load_component(
        &self,
        id: &str,
        source: &ComponentSource,
        first_route: &Route,
        kv_access: KvAccess,
        mount: Option<(PathBuf, String)>,
        config: ConfigValues,
    ) -> anyhow::Result<LoadedComponent> {
        let describe = || match source {
            ComponentSource::File(path) | ComponentSource::Precompiled(path) => {
                format!("cannot load component '{id}' from {}", path.display())
            }
            ComponentSource::Wasm(_) => format!("cannot load component '{id}'"),
        };
        let (compiled, hash) =
            engine::load_identified(&self.engine, source, self.cache_dir.as_deref())
                .with_context(describe)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled)
            .map_err(anyhow::Error::from)
            .context("the component imports something this host does not provide")
            .with_context(describe)?;
        let pre = ProxyPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export wasi:http/incoming-handler")
            .with_context(describe)?;
        let smoke_path = match first_route {
            Route::Exact(path) => path.clone(),
            Route::Prefix(prefix) => format!("{prefix}/"),
        };
        Ok(LoadedComponent {
            id: id.to_string(),
            hash,
            smoke_path,
            pre,
            kv_access: Arc::new(kv_access),
            mount,
            config,
            ticker: self.ticker.clone(),
        })
    }
}

/// The components a runtime serves now, on their routes.
pub struct Deployment {
    pub(crate) routes: RouteTable<Arc<LoadedComponent>>,
    pub(crate) components: Vec<Arc<LoadedComponent>>,
}

impl Deployment {
    /// `components`, each on its routes.
    pub(crate) fn new(components: Vec<(Arc<LoadedComponent>, Vec<Route>)>) -> Self {
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
    pub(crate) pre: ProxyPre<RequestState>,
    kv_access: Arc<KvAccess>,
    pub(crate) mount: Option<(PathBuf, String)>,
    /// What it reads through `wasi:config/store`.
    config: ConfigValues,
    ticker: Arc<EpochTicker>,
}

impl LoadedComponent {
    /// A new store for one request: fresh state, the memory limit, and the deadline, checked
    /// every epoch tick (the guest yields its thread to other requests at each tick and is
    /// interrupted with a trap past `deadline`).
    pub(crate) fn new_store(
        &self,
        limits: &Limits,
        deadline: Instant,
        kv_calls: Arc<AtomicU32>,
    ) -> wasmtime::Result<Store<RequestState>> {
        let mount = self
            .mount
            .as_ref()
            .map(|(dir, guest)| (dir.as_path(), guest.as_str()));
        let state = RequestState::new(
            self.kv_access.clone(),
            self.config.clone(),
            limits,
            mount,
            kv_calls,
        )?;
        let mut store = Store::new(self.pre.engine(), state);
        // The epoch advances while this store lives: its deadline and yields count ticks.
        store.data_mut().keep_ticking(self.ticker.ticking());
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
