//! Making a [`Runtime`]: from one component ([`RuntimeBuilder`], the embedding API) or from an
//! [`App`] of several ([`Runtime::for_app`], what the server starts). Both make one engine, one
//! linker, one epoch ticker and one admission limit, then load each component on its routes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::admission::Admission;
use crate::app::{App, KvGrant, PUBLIC_MOUNT};
use crate::engine::{self, ComponentSource};
use crate::kv::{KvBackend, memory::MemoryBackend};
use crate::limits::Limits;
use crate::routes::Route;
use crate::runtime::{Deployment, LoadedComponent, Runtime};
use crate::state::RequestState;
use crate::wasi_keyvalue::{self, KvAccess};

/// Builds a [`Runtime`] of one component on every path: `Runtime::builder().backend(kv).build()?`.
/// Unset parts default to the embedded todo component, an in-memory store, [`Limits::default`],
/// no public folder, no artifact cache and the tuned instance pool.
pub struct RuntimeBuilder {
    component: ComponentSource,
    kv_access: Option<KvAccess>,
    limits: Limits,
    mount: Option<(PathBuf, String)>,
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

    /// Mounts `dir` read-only into every instance at `/public`.
    pub fn public_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.mount = dir.map(|dir| (dir, PUBLIC_MOUNT.to_string()));
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
        let kv_access = self
            .kv_access
            .unwrap_or_else(|| KvAccess::AnyBucket(Arc::new(MemoryBackend::new())));
        let (engine, linker) = start_engine(&self.limits, self.tuned_pool)?;
        let every_path = Route::Prefix(String::new());
        let component = load_component(
            &engine,
            &linker,
            "component",
            &self.component,
            &every_path,
            self.cache_dir.as_deref(),
            kv_access,
            self.mount,
        )?;
        let deployment = Deployment::new(vec![(Arc::new(component), vec![every_path])]);
        Ok(Runtime::new(
            engine,
            linker,
            self.cache_dir,
            deployment,
            admission(&self.limits),
            self.limits,
        ))
    }
}

impl Runtime {
    /// The runtime of `app`: its components on their routes, each reaching only the stores it
    /// is granted among the opened `backends` (label → backend), all held to one `limits`.
    pub fn for_app(
        app: &App,
        backends: &HashMap<String, Arc<dyn KvBackend>>,
        limits: Limits,
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let (engine, linker) = start_engine(&limits, true)?;
        let deployment = deployment(&engine, &linker, app, backends, cache_dir)?;
        Ok(Runtime::new(
            engine,
            linker,
            cache_dir.map(Path::to_path_buf),
            deployment,
            admission(&limits),
            limits,
        ))
    }

    /// Loads `app` on this runtime's engine, off the request path (compiling takes a core for a
    /// while), then [`Runtime::swap_in`]: the zero-downtime deploy. Fails, changing nothing,
    /// when a component does not load, does not link, or fails its smoke request.
    pub async fn reload(
        &self,
        app: &App,
        backends: &HashMap<String, Arc<dyn KvBackend>>,
    ) -> anyhow::Result<()> {
        let (engine, linker, cache) = (
            self.engine.clone(),
            self.linker.clone(),
            self.cache_dir.clone(),
        );
        let (app, backends) = (app.clone(), backends.clone());
        let next = tokio::task::spawn_blocking(move || {
            deployment(&engine, &linker, &app, &backends, cache.as_deref())
        })
        .await
        .context("the loading task failed")??;
        self.swap_in(next).await
    }
}

/// The components of `app`, loaded and linked on `engine`, with their grants among `backends`.
fn deployment(
    engine: &Engine,
    linker: &Linker<RequestState>,
    app: &App,
    backends: &HashMap<String, Arc<dyn KvBackend>>,
    cache_dir: Option<&Path>,
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
        let loaded = load_component(
            engine,
            linker,
            &component.id,
            &component.source,
            &first_route,
            cache_dir,
            kv_access,
            component.files.clone(),
        )?;
        components.push((Arc::new(loaded), component.routes.clone()));
    }
    Ok(Deployment::new(components))
}

/// The one engine and linker of a runtime, and its epoch ticker.
fn start_engine(
    limits: &Limits,
    tuned_pool: bool,
) -> anyhow::Result<(Engine, Linker<RequestState>)> {
    let engine = engine::new(limits, tuned_pool)?;
    let mut linker = Linker::<RequestState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasi_keyvalue::add_to_linker(&mut linker, RequestState::kv)?;
    engine::spawn_epoch_ticker(&engine);
    Ok((engine, linker))
}

fn admission(limits: &Limits) -> Admission {
    Admission::new(limits.max_concurrency, limits.queue_timeout)
}

/// Compiles (or loads from `cache`) the component of `source` and resolves its imports.
#[allow(clippy::too_many_arguments)] // Each is one part of what a loaded component is.
fn load_component(
    engine: &Engine,
    linker: &Linker<RequestState>,
    id: &str,
    source: &ComponentSource,
    first_route: &Route,
    cache: Option<&Path>,
    kv_access: KvAccess,
    mount: Option<(PathBuf, String)>,
) -> anyhow::Result<LoadedComponent> {
    let describe = || match source {
        ComponentSource::File(path) | ComponentSource::Precompiled(path) => {
            format!("cannot load component '{id}' from {}", path.display())
        }
        ComponentSource::Wasm(_) => format!("cannot load component '{id}'"),
    };
    let (compiled, hash) = engine::load_identified(engine, source, cache).with_context(describe)?;
    let instance_pre = linker
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
    Ok(LoadedComponent::new(
        id.to_string(),
        hash,
        smoke_path,
        pre,
        kv_access,
        mount,
    ))
}
