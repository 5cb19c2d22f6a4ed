//! The wasmtime `Engine` and compiled code: engine settings (pooling allocator, epoch
//! interruption), the one epoch ticker thread (ticking only while an instance lives), the
//! embedded todo and files components, and precompiled component artifacts with their cache.
//!
//! Compiling the todo component takes tens of milliseconds; loading a precompiled artifact
//! takes a few. `todo-host` keeps artifacts in a cache directory, keyed by a hash of the engine's
//! settings (wasmtime's compatibility hash) and the component's bytes, so a changed component or
//! a new host build never loads a stale one.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::Context as _;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::{EPOCH_TICK, Limits};

/// The todo component, built from `guest/` by `build.rs` and embedded in the binary.
pub const TODO_COMPONENT: &[u8] = include_bytes!(env!("TODO_COMPONENT_WASM"));
/// The files component, built from `guest/files/` by `build.rs` and embedded in the binary: the
/// `--public` folder's server, beside the todo component (`app.rs`).
pub const FILES_COMPONENT: &[u8] = include_bytes!(env!("FILES_COMPONENT_WASM"));

/// Core instances, memories and tables one component may have: a Rust component has a handful;
/// room for fixtures and other toolchains.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 50;
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
const MAX_TABLES_PER_COMPONENT: u32 = 20;
/// Linear memory a pooled slot keeps resident when its instance is dropped: resetting it is then
/// a `memset` (or a pagemap scan of what was touched) instead of `madvise` and fresh page faults
/// for the next instance. The todo component touches about 2 MiB per request.
const MEMORY_KEEP_RESIDENT: usize = 4 << 20;
/// Table bytes a pooled slot keeps resident, for the same reason.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Compiled artifacts the cache keeps per engine build: the components of the last few
/// deploys, so that going back one is a load, not a compile; older ones are removed.
const CACHED_ARTIFACTS_PER_ENGINE: usize = 4;

/// Where a runtime gets its component from.
#[derive(Debug, Clone)]
pub enum ComponentSource {
    /// Component bytes (`.wasm`): compiled at start-up, or loaded from the cache.
    Wasm(Vec<u8>),
    /// A component file (`.wasm`), read at start-up.
    File(PathBuf),
    /// A precompiled artifact written by this host build.
    Precompiled(PathBuf),
}

impl ComponentSource {
    /// The todo component embedded in this binary.
    pub fn embedded() -> Self {
        ComponentSource::Wasm(TODO_COMPONENT.to_vec())
    }

    /// The files component embedded in this binary.
    pub fn embedded_files() -> Self {
        ComponentSource::Wasm(FILES_COMPONENT.to_vec())
    }
}

/// An engine for `limits`: pooling allocator sized for `max_concurrency` instances, epoch
/// interruption on; `tuned` keeps pooled memory resident and resets it with a pagemap scan
/// where the kernel has one.
pub fn new(limits: &Limits, tuned: bool) -> anyhow::Result<Engine> {
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
    if tuned {
        pool.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Linux 6.7+: reset only the pages an instance dirtied. Elsewhere: off, silently.
            .pagemap_scan(Enabled::Auto);
    }
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.epoch_interruption(true);
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the wasmtime engine")
}

/// The component from `source`: loaded precompiled, loaded from `cache`, or compiled (and then
/// stored in `cache`, if given).
pub fn load(
    engine: &Engine,
    source: &ComponentSource,
    cache: Option<&Path>,
) -> anyhow::Result<Component> {
    load_identified(engine, source, cache).map(|(component, _)| component)
}

/// Like [`load`], with a hash of the component's bytes (16 hex digits): which build it is.
pub fn load_identified(
    engine: &Engine,
    source: &ComponentSource,
    cache: Option<&Path>,
) -> anyhow::Result<(Component, String)> {
    let bytes = match source {
        ComponentSource::Precompiled(path) => {
            let artifact = std::fs::read(path)
                .with_context(|| format!("cannot read precompiled component {}", path.display()))?;
            return Ok((deserialize(engine, path)?, content_key(&artifact)));
        }
        ComponentSource::Wasm(bytes) => std::borrow::Cow::Borrowed(bytes.as_slice()),
        ComponentSource::File(path) => std::borrow::Cow::Owned(
            std::fs::read(path)
                .with_context(|| format!("cannot read component {}", path.display()))?,
        ),
    };
    let hash = content_key(&bytes);
    let Some(dir) = cache else {
        return Ok((compile(engine, &bytes)?, hash));
    };
    let engine_key = engine_key(engine);
    let path = dir.join(format!("{engine_key}-{hash}.cwasm"));
    if path.exists() {
        match deserialize(engine, &path) {
            Ok(component) => {
                // Recently used: the eviction below keeps it.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|file| file.set_modified(std::time::SystemTime::now()));
                return Ok((component, hash));
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = format!("{err:#}"), "ignoring a bad cached artifact")
            }
        }
    }
    let component = compile(engine, &bytes)?;
    // A cache that cannot be written costs the next start some milliseconds, no more.
    if let Err(err) = store_artifact(&component, &path) {
        tracing::warn!(path = %path.display(), error = format!("{err:#}"), "cannot cache the compiled component");
    }
    evict_old_artifacts(dir, &engine_key);
    Ok((component, hash))
}

/// Removes all but the [`CACHED_ARTIFACTS_PER_ENGINE`] most recently used artifacts of this
/// engine build from `dir`. Best effort: a file that cannot be removed stays.
fn evict_old_artifacts(dir: &Path, engine_key: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{engine_key}-");
    let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".cwasm")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    artifacts.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in artifacts.into_iter().skip(CACHED_ARTIFACTS_PER_ENGINE) {
        if let Err(err) = std::fs::remove_file(&old) {
            tracing::debug!(path = %old.display(), error = %err, "cannot evict a cached artifact");
        }
    }
}

/// Compiles the component of `source` and writes the artifact to `path`.
pub fn precompile_to(engine: &Engine, source: &ComponentSource, path: &Path) -> anyhow::Result<()> {
    let component = load(engine, source, None)?;
    store_artifact(&component, path)
}

fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("cannot compile the component")
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: a precompiled artifact is native code, so wasmtime can only check its header
    // (version, engine settings), not that it is what `serialize` wrote. The files loaded here
    // are ones this host wrote itself into its own cache directory (created 0700), or that the
    // embedder named explicitly as its own precompiled artifact.
    unsafe { Component::deserialize_file(engine, path) }
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load precompiled component {}", path.display()))
}

/// Writes `component` to `path` atomically (a temporary file renamed into place), so a
/// concurrent start never reads half an artifact.
fn store_artifact(component: &Component, path: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create cache directory {}", dir.display()))
}

/// A hex key naming the engine's settings and build: artifacts of another key cannot be
/// loaded by this engine.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A hex key naming the component's bytes.
fn content_key(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The cache directory unless told otherwise: `$XDG_CACHE_HOME/todo-host`, else
/// `$HOME/.cache/todo-host`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("todo-host"))
}

/// One thread for the whole host advances the engine's epoch every [`EPOCH_TICK`] while an
/// instance lives, and sleeps without waking while none does: an idle host costs no CPU (a
/// ticker that never stopped woke the process 100 times a second). A request holds a
/// [`Ticking`] for as long as its store lives. The thread ends when the ticker is dropped.
#[derive(Debug)]
pub struct EpochTicker {
    shared: Arc<TickerShared>,
}

#[derive(Debug, Default)]
struct TickerShared {
    /// Instances alive now: an atomic, so that a request takes no lock unless it is the one that
    /// wakes the thread.
    busy: AtomicUsize,
    /// Set when the ticker is dropped: the thread returns.
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// Keeps the epoch advancing while it lives; see [`EpochTicker::ticking`].
#[derive(Debug)]
pub struct Ticking {
    shared: Arc<TickerShared>,
}

impl EpochTicker {
    /// Starts the ticker thread of `engine`; it ticks only while a [`Ticking`] lives.
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let shared = Arc::new(TickerShared::default());
        let thread_shared = shared.clone();
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".to_string())
            .spawn(move || {
                loop {
                    {
                        let mut stopped = lock(&thread_shared.stopped);
                        while thread_shared.busy.load(Ordering::SeqCst) == 0 && !*stopped {
                            stopped = thread_shared
                                .wake
                                .wait(stopped)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let Some(engine) = weak.upgrade() else { return };
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("cannot start the epoch ticker thread")?;
        Ok(Self { shared })
    }

    /// Keeps the epoch advancing until the returned guard is dropped: an instance's deadline and
    /// its yields depend on it.
    pub fn ticking(&self) -> Ticking {
        if self.shared.busy.fetch_add(1, Ordering::SeqCst) == 0 {
            // Under the lock the thread checks `busy` under, so that the wake-up cannot fall
            // between its check and its wait.
            let _stopped = lock(&self.shared.stopped);
            self.shared.wake.notify_one();
        }
        Ticking {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        // No wake-up needed: the thread sees 0 after its next tick and sleeps.
        self.shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        *lock(&self.shared.stopped) = true;
        self.shared.wake.notify_one();
    }
}

/// The ticker's flag, consistent whatever thread panicked holding it.
fn lock(state: &Mutex<bool>) -> std::sync::MutexGuard<'_, bool> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interfaces the embedded component of `source` imports, sorted.
    fn imports_of(source: &ComponentSource) -> anyhow::Result<Vec<String>> {
        let engine = new(&Limits::default(), true)?;
        let component = load(&engine, source, None)?;
        let mut imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        imports.sort_unstable();
        Ok(imports)
    }

    /// How many functions the component of `source` imports, over all its imported interfaces:
    /// what the host resolves for it, and each instance then holds a reference to.
    fn imported_functions(source: &ComponentSource) -> anyhow::Result<usize> {
        use wasmtime::component::types::ComponentItem;
        let engine = new(&Limits::default(), true)?;
        let component = load(&engine, source, None)?;
        let mut count = 0;
        for (_, item) in component.component_type().imports(&engine) {
            match item.ty {
                ComponentItem::ComponentInstance(instance) => {
                    count += instance
                        .exports(&engine)
                        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
                        .count();
                }
                ComponentItem::ComponentFunc(_) => count += 1,
                _ => {}
            }
        }
        Ok(count)
    }

    #[test]
    fn the_embedded_component_imports_only_the_interfaces_of_its_world() -> anyhow::Result<()> {
        // What `wit/world.wit` declares and the interfaces those use, nothing else: a build that
        // linked a C library or std's I/O would also import `wasi:cli`, and every import costs
        // every instance something (host/build.rs).
        assert_eq!(
            imports_of(&ComponentSource::embedded())?,
            [
                "wasi:clocks/monotonic-clock@0.2.12",
                "wasi:clocks/wall-clock@0.2.12",
                "wasi:config/store@0.2.0-rc.1",
                "wasi:http/types@0.2.12",
                "wasi:io/error@0.2.12",
                "wasi:io/poll@0.2.12",
                "wasi:io/streams@0.2.12",
                "wasi:keyvalue/atomics@0.2.0-draft",
                "wasi:keyvalue/batch@0.2.0-draft",
                "wasi:keyvalue/store@0.2.0-draft",
                "wasi:random/random@0.2.12",
            ]
        );
        Ok(())
    }

    #[test]
    fn the_todo_component_imports_no_file_system() -> anyhow::Result<()> {
        // The public folder is the files component's: the todo component's instances resolve
        // no file-system function at all.
        let imports = imports_of(&ComponentSource::embedded())?;
        assert!(
            !imports
                .iter()
                .any(|name| name.starts_with("wasi:filesystem/")),
            "{imports:?}"
        );
        let functions = imported_functions(&ComponentSource::embedded())?;
        let files = imported_functions(&ComponentSource::embedded_files())?;
        eprintln!("imported functions: todo component {functions}, files component {files}");
        assert!(functions > 0 && files > 0);
        Ok(())
    }

    #[test]
    fn the_embedded_files_component_imports_only_the_interfaces_of_its_world() -> anyhow::Result<()>
    {
        // The folder and HTTP (and the wall clock's `datetime`, a type of file-system stat):
        // no key-value store, so it can read what the host mounted and nothing else.
        assert_eq!(
            imports_of(&ComponentSource::embedded_files())?,
            [
                "wasi:clocks/wall-clock@0.2.12",
                "wasi:filesystem/preopens@0.2.12",
                "wasi:filesystem/types@0.2.12",
                "wasi:http/types@0.2.12",
                "wasi:io/error@0.2.12",
                "wasi:io/streams@0.2.12",
            ]
        );
        Ok(())
    }

    #[test]
    #[ignore = "a measurement, not a check: IMPORTS_OF=FILE.wasm prints what that component imports"]
    fn print_the_imports_of_a_component_file() -> anyhow::Result<()> {
        let path = std::env::var_os("IMPORTS_OF").context("set IMPORTS_OF to a component file")?;
        let source = ComponentSource::File(PathBuf::from(&path));
        let interfaces = imports_of(&source)?;
        println!(
            "{} functions in {} interfaces: {interfaces:?}",
            imported_functions(&source)?,
            interfaces.len()
        );
        // And what the guest's own code imports: the function imports of its core module (the
        // first module; the others are wit-component's shims).
        let bytes = std::fs::read(&path)?;
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            if let wasmparser::Payload::ImportSection(section) = payload? {
                let mut functions = 0;
                for import in section.into_imports() {
                    functions += usize::from(matches!(import?.ty, wasmparser::TypeRef::Func(_)));
                }
                println!("the core module imports {functions} functions");
                break;
            }
        }
        Ok(())
    }

    #[test]
    fn the_embedded_component_starts_with_room_for_a_request_s_allocations() -> anyhow::Result<()> {
        // guest/build.rs: 4 MiB of initial memory, so that a page of todos needs no
        // `memory.grow` (two `mprotect` calls per instance that grows).
        let mut memories = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(TODO_COMPONENT) {
            if let wasmparser::Payload::MemorySection(section) = payload? {
                for memory in section {
                    memories.push(memory?.initial);
                }
            }
        }
        assert_eq!(
            memories.len(),
            1,
            "one core memory, the guest's: {memories:?}"
        );
        let initial_bytes = memories[0] * 64 * 1024;
        assert!(
            initial_bytes >= 4 << 20,
            "the embedded component's initial memory is {initial_bytes} bytes; guest/build.rs asks for 4 MiB"
        );
        Ok(())
    }

    #[test]
    fn a_cached_artifact_is_reused_and_keyed_by_the_component() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = new(&Limits::default(), true)?;
        let wasm = TODO_COMPONENT.to_vec();
        load(
            &engine,
            &ComponentSource::Wasm(wasm.clone()),
            Some(dir.path()),
        )?;
        let artifacts: Vec<_> = std::fs::read_dir(dir.path())?.collect::<Result<_, _>>()?;
        assert_eq!(artifacts.len(), 1, "one artifact written");
        load(
            &engine,
            &ComponentSource::Wasm(wasm.clone()),
            Some(dir.path()),
        )?;
        assert_eq!(
            std::fs::read_dir(dir.path())?.count(),
            1,
            "the artifact was reused"
        );
        assert_ne!(content_key(&wasm), content_key(b"other bytes"));
        Ok(())
    }

    #[test]
    fn the_cache_keeps_only_the_newest_artifacts_of_an_engine() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = new(&Limits::default(), true)?;
        let key = engine_key(&engine);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for n in 0..6 {
            let path = dir.path().join(format!("{key}-{n:016x}.cwasm"));
            std::fs::write(&path, b"stale")?;
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(old)?;
        }
        let other_engine = dir.path().join("0123456789abcdef-0000000000000000.cwasm");
        std::fs::write(&other_engine, b"another build's")?;
        load(&engine, &ComponentSource::embedded(), Some(dir.path()))?;
        let kept: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        let ours = kept.iter().filter(|name| name.starts_with(&key)).count();
        assert_eq!(ours, CACHED_ARTIFACTS_PER_ENGINE, "{kept:?}");
        let fresh = format!("{key}-{}.cwasm", content_key(TODO_COMPONENT));
        assert!(kept.contains(&fresh), "the new artifact is kept: {kept:?}");
        assert!(
            other_engine.exists(),
            "other engines' artifacts are not ours to evict"
        );
        Ok(())
    }

    #[test]
    fn a_corrupt_cached_artifact_is_replaced() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = new(&Limits::default(), true)?;
        let wasm = TODO_COMPONENT.to_vec();
        let path = dir.path().join(format!(
            "{}-{}.cwasm",
            engine_key(&engine),
            content_key(&wasm)
        ));
        std::fs::write(&path, b"not an artifact")?;
        load(&engine, &ComponentSource::Wasm(wasm), Some(dir.path()))?;
        assert!(
            std::fs::metadata(&path)?.len() > 1000,
            "rewritten with a real artifact"
        );
        Ok(())
    }
}
