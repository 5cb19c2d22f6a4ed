//! In-process micro-benchmark: what one request costs without a network or a load generator, so
//! a regression shows on any machine.
//!
//! `microbench [SVG_PATH]` prints Markdown tables (µs per operation, medians of several rounds)
//! and writes a plot of the scaling curves to SVG_PATH (default `bench/scaling.svg`).
//!
//! * cold start: compiling the component vs loading a precompiled artifact;
//! * instantiate only; a whole request through `Runtime::handle`; the same logic natively;
//! * paged reads, a single read and a create at 1k, 10k, 100k and 1M todos, memory and SQLite
//!   (`SCALING_SIZES="1000 10000"` for a shorter run).
//!
//! `microbench --observability` prints only what the metrics and the access log add to a request
//! (`bench/run.sh`, section `observability`); `microbench --loop WHAT COUNT` repeats one request
//! for a profiler.

// The allocator `todo-host` runs with (host/src/main.rs): the figures here are its figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use todo_bench::{NativeKv, fill, now};
use todo_host::Runtime;
use todo_host::kv::KvBackend;
use todo_host::kv::memory::MemoryBackend;

/// Rounds per measurement; the median is reported.
const ROUNDS: usize = 5;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.as_slice() {
        [flag, what, count] if flag == "--loop" => runtime.block_on(repeat(what, count.parse()?)),
        [flag, what, before, after] if flag == "--compare" => {
            runtime.block_on(compare(what, before, after))
        }
        [flag] if flag == "--observability" => runtime.block_on(async {
            let store: Arc<dyn KvBackend> = Arc::new(MemoryBackend::new());
            fill(store.as_ref(), 10).await?;
            observability(&store).await
        }),
        [] => runtime.block_on(run("bench/scaling.svg")),
        [svg_path] => runtime.block_on(run(svg_path)),
        _ => anyhow::bail!(
            "usage: microbench [SVG_PATH] | microbench --loop WHAT COUNT | microbench --observability | microbench --compare WHAT BEFORE.wasm AFTER.wasm"
        ),
    }
}

/// `--loop WHAT COUNT`: one operation COUNT times, for a profiler to watch (`perf stat -e
/// instructions -- microbench --loop get 20000`). WHAT: `instantiate`, `hello` (needs `HELLO_WASM`), `get`
/// (`GET /todos/1`), `post`, `list` (`GET /todos`, 10 todos). The store is in memory unless
/// `MICROBENCH_STORE` names another (`sqlite:///tmp/loop.db`); the todo component is the embedded
/// one unless `TODO_WASM` names another build of it.
async fn repeat(what: &str, count: u64) -> anyhow::Result<()> {
    let store: Arc<dyn KvBackend> = match std::env::var("MICROBENCH_STORE") {
        Ok(url) => todo_host::kv::open(&url).await?,
        Err(_) => Arc::new(MemoryBackend::new()),
    };
    fill(store.as_ref(), 10).await?;
    // MICROBENCH_OBSERVE=1: metrics on every KV call and the access log (to
    // MICROBENCH_LOG, default /dev/null), as `todo-host` runs by default.
    let observe = std::env::var_os("MICROBENCH_OBSERVE").is_some();
    let _logs = match observe {
        true => {
            let path = std::env::var_os("MICROBENCH_LOG").unwrap_or_else(|| "/dev/null".into());
            Some(todo_host::logging::init_to(Box::new(
                std::fs::File::create(path)?,
            )))
        }
        false => None,
    };
    let metrics = Arc::new(match observe {
        true => todo_host::metrics::Metrics::new(),
        false => todo_host::metrics::Metrics::off(),
    });
    let store = match observe {
        true => metered(&store, &metrics),
        false => store,
    };
    let host = match what {
        "hello" => {
            let hello = std::env::var_os("HELLO_WASM")
                .ok_or_else(|| anyhow::anyhow!("hello needs HELLO_WASM=path/to/hello.wasm"))?;
            Runtime::builder()
                .component(std::fs::read(hello)?)
                .build()?
        }
        _ => match std::env::var_os("TODO_WASM") {
            // Another build of the todo component, to compare builds.
            Some(path) => Runtime::builder()
                .component(std::fs::read(path)?)
                .backend(store)
                .build()?,
            None => Runtime::builder().backend(store).build()?,
        },
    };
    let host = host.with_metrics(metrics).with_access_log(observe);
    let started = Instant::now();
    for _ in 0..count {
        {
            match what {
                "instantiate" => host.instantiate_only().await?,
                "hello" => call(&host, "GET", "/", None).await?,
                "get" => call(&host, "GET", "/todos/1", None).await?,
                "post" => call(&host, "POST", "/todos", Some(r#"{"title":"bench"}"#)).await?,
                "list" => call(&host, "GET", "/todos", None).await?,
                other => anyhow::bail!("--loop {other}: use instantiate, hello, get, post or list"),
            }
        }
    }
    println!(
        "{what}: {count} requests, {:.2} µs each",
        started.elapsed().as_secs_f64() * 1e6 / count as f64
    );
    Ok(())
}

/// `--compare WHAT BEFORE AFTER`: two builds of the todo component side by side in one process,
/// each over its own in-memory store of 10 todos, taking turns round by round (so drift on a busy
/// machine falls on both alike). Prints the medians of the turns' µs per request. WHAT as for
/// `--loop` (`hello`: `GET /` of two hello components).
async fn compare(what: &str, before: &str, after: &str) -> anyhow::Result<()> {
    const TURNS: usize = 20;
    const COUNT: usize = 2000;
    let mut hosts = Vec::new();
    for path in [before, after] {
        let store: Arc<dyn KvBackend> = Arc::new(MemoryBackend::new());
        fill(store.as_ref(), 10).await?;
        let host = Runtime::builder()
            .component(std::fs::read(path).map_err(|err| anyhow::anyhow!("{path}: {err}"))?)
            .backend(store)
            .build()?;
        hosts.push(host.with_metrics(Arc::new(todo_host::metrics::Metrics::off())));
    }
    let mut means: [Vec<f64>; 2] = Default::default();
    for turn in 0..TURNS {
        // Alternate which goes first, so neither always follows the other.
        let order = if turn % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let host = &hosts[index];
            let mean = per_op_once(COUNT, || async move {
                match what {
                    "instantiate" => host.instantiate_only().await,
                    "hello" => call(host, "GET", "/", None).await,
                    "get" => call(host, "GET", "/todos/1", None).await,
                    "post" => call(host, "POST", "/todos", Some(r#"{"title":"bench"}"#)).await,
                    "list" => call(host, "GET", "/todos", None).await,
                    other => {
                        anyhow::bail!(
                            "--compare {other}: use instantiate, hello, get, post or list"
                        )
                    }
                }
            })
            .await?;
            means[index].push(mean);
        }
    }
    let [before_median, after_median] = means.map(|mut means| {
        means.sort_by(f64::total_cmp);
        (means[TURNS / 2 - 1] + means[TURNS / 2]) / 2.0
    });
    println!(
        "{what}: before {before_median:.1} µs, after {after_median:.1} µs (after/before {:.3}), medians of {TURNS} turns of {COUNT}",
        after_median / before_median
    );
    Ok(())
}

async fn run(svg_path: &str) -> anyhow::Result<()> {
    println!("### Cold start (in process)\n");
    println!("| step | ms |\n|---|---|");
    let compile = median_duration(3, || {
        let started = Instant::now();
        Runtime::builder().build()?;
        Ok(started.elapsed())
    })?;
    println!(
        "| compile the component from `.wasm` and link it | {:.1} |",
        ms(compile)
    );
    let artifact = std::env::temp_dir().join(format!("todo-bench-{}.cwasm", std::process::id()));
    Runtime::builder().precompile_to(&artifact)?;
    let precompiled = median_duration(3, || {
        let started = Instant::now();
        Runtime::builder().precompiled(&artifact).build()?;
        Ok(started.elapsed())
    })?;
    println!(
        "| load a precompiled artifact and link it | {:.1} |",
        ms(precompiled)
    );
    let _ = std::fs::remove_file(&artifact);
    if let Some(host_bin) = std::env::var_os("TODO_HOST_BIN") {
        // The whole process: spawn, start-up line, first request answered over TCP.
        let cache = std::env::temp_dir().join(format!("todo-bench-cache-{}", std::process::id()));
        let cache_arg = format!("--cache-dir={}", cache.display());
        cold_start(&host_bin, &[&cache_arg])?; // fills the cache
        let compiled = median_duration(5, || cold_start(&host_bin, &["--no-cache"]))?;
        let cached = median_duration(5, || cold_start(&host_bin, &[&cache_arg]))?;
        let _ = std::fs::remove_dir_all(&cache);
        println!(
            "| `todo-host` process: spawn to first answered request, compiling (`--no-cache`) | {:.1} |",
            ms(compiled)
        );
        println!(
            "| `todo-host` process: spawn to first answered request, precompiled artifact from the cache | {:.1} |",
            ms(cached)
        );
    }

    let store: Arc<dyn KvBackend> = Arc::new(MemoryBackend::new());
    fill(store.as_ref(), 10).await?;
    let host = Runtime::builder().backend(store.clone()).build()?;

    println!("\n### Per request, in process (memory store, 10 todos)\n");
    println!("| operation | wasm µs | native µs | ratio |\n|---|---|---|---|");
    let instantiate = per_op(2000, || host.instantiate_only()).await?;
    println!("| instantiate only (new store + instance, dropped) | {instantiate:.1} | | |");
    if let Some(hello) = std::env::var_os("HELLO_WASM") {
        let hello = Runtime::builder()
            .component(std::fs::read(hello)?)
            .build()?;
        let floor = per_op(2000, || call(&hello, "GET", "/", None)).await?;
        println!("| a hello component's whole request (the wasi:http floor) | {floor:.1} | | |");
    }
    let untuned = Runtime::builder()
        .backend(store.clone())
        .tuned_pool(false)
        .build()?;
    let before = per_op(2000, || untuned.instantiate_only()).await?;
    let before_get = per_op(2000, || call(&untuned, "GET", "/todos/1", None)).await?;
    drop(untuned);
    let after_get = per_op(2000, || call(&host, "GET", "/todos/1", None)).await?;
    println!(
        "| instantiate only, default pool (no keep-resident, no pagemap scan) | {before:.1} | | |"
    );
    println!("| GET /todos/1, default pool → tuned pool | {before_get:.1} → {after_get:.1} | | |");
    for (name, method, path, body) in [
        ("GET /todos (10 todos)", "GET", "/todos", None),
        ("GET /todos/1", "GET", "/todos/1", None),
        (
            "POST /todos",
            "POST",
            "/todos",
            Some(r#"{"title":"bench"}"#),
        ),
        (
            "PATCH /todos/1",
            "PATCH",
            "/todos/1",
            Some(r#"{"completed":true}"#),
        ),
    ] {
        let wasm = per_op(2000, || call(&host, method, path, body)).await?;
        let native = per_op(2000, || native_call(store.clone(), method, path, body)).await?;
        println!(
            "| {name} | {wasm:.1} | {native:.1} | {:.1}x |",
            wasm / native
        );
    }

    breakdown(&store, std::env::var_os("HELLO_WASM")).await?;
    observability(&store).await?;

    println!("\n### Scaling with the number of todos (in process, through the runtime)\n");
    println!(
        "Each store is filled directly (todo keys, index, counter) and each request runs a fresh \
         instance, as `todo-host` serves it. µs per request, the fastest of {ROUNDS} rounds (the \
         one least disturbed by other work on the machine); the ratio is against the same \
         request at 1,000 todos.\n"
    );
    println!(
        "| store | todos | rule page 1 µs | rule last page µs | GET /todos?limit=50 µs | GET /todos/1 µs | POST /todos µs |\n|---|---|---|---|---|---|---|"
    );
    let mut creates = Vec::new();
    let mut lists = Vec::new();
    let sizes =
        std::env::var("SCALING_SIZES").unwrap_or_else(|_| "1000 10000 100000 1000000".to_string());
    let sizes: Vec<u64> = sizes
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let dir = std::env::temp_dir().join(format!("todo-bench-scaling-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for store_name in ["memory", "SQLite"] {
        let mut base: Option<Vec<f64>> = None;
        for &size in &sizes {
            let store: Arc<dyn KvBackend> = if store_name == "memory" {
                Arc::new(MemoryBackend::new())
            } else {
                let path = dir.join(format!("scaling-{size}.db"));
                todo_host::kv::open(&format!("sqlite://{}", path.display())).await?
            };
            fill(store.as_ref(), size).await?;
            let host = Runtime::builder().backend(store).build()?;
            let last = format!("/api/rule?current={}&pageSize=10", size / 10);
            let mut row = Vec::new();
            for path in [
                "/api/rule?current=1&pageSize=10",
                last.as_str(),
                "/todos?limit=50",
                "/todos/1",
            ] {
                // Unmeasured first: every size starts with a new runtime, whose pooled memory
                // is faulted in by its first requests.
                per_op(50, || call(&host, "GET", path, None)).await?;
                row.push(fastest_per_op(300, || call(&host, "GET", path, None)).await?);
            }
            row.push(
                fastest_per_op(300, || {
                    call(&host, "POST", "/todos", Some(r#"{"title":"x"}"#))
                })
                .await?,
            );
            let base_row = base.get_or_insert_with(|| row.clone());
            let cells: Vec<String> = row
                .iter()
                .zip(base_row.iter())
                .map(|(us, at_1k)| format!("{us:.0} ({:.2}x)", us / at_1k))
                .collect();
            println!("| {store_name} | {size} | {} |", cells.join(" | "));
            if store_name == "memory" {
                lists.push((size as f64, row[1]));
                creates.push((size as f64, row[4]));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::write(svg_path, plot(&creates, &lists))?;
    println!("\n(plot: `{svg_path}`)");
    Ok(())
}

/// Where a request's time goes, in µs: the instance's phases timed one by one, whole requests,
/// the todo logic natively, and what is left between them (wasi:http plumbing, the guest's own
/// work in wasm, host calls). Memory and SQLite stores, 10 todos.
async fn breakdown(
    memory: &Arc<dyn KvBackend>,
    hello: Option<std::ffi::OsString>,
) -> anyhow::Result<()> {
    const COUNT: usize = 2000;
    let dir = std::env::temp_dir().join(format!("todo-bench-breakdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = todo_host::kv::open(&format!("sqlite://{}/b.db", dir.display())).await?;
    fill(sqlite.as_ref(), 10).await?;
    let on_memory = Runtime::builder().backend(memory.clone()).build()?;
    let on_sqlite = Runtime::builder().backend(sqlite.clone()).build()?;
    let todo_phases = phases(&on_memory, COUNT).await?;
    let hello = match hello {
        Some(path) => {
            let hello = Runtime::builder().component(std::fs::read(path)?).build()?;
            let whole = per_op(COUNT, || call(&hello, "GET", "/", None)).await?;
            Some((phases(&hello, COUNT).await?, whole))
        }
        None => None,
    };
    let post = Some(r#"{"title":"bench"}"#);
    let get_memory = per_op(COUNT, || call(&on_memory, "GET", "/todos/1", None)).await?;
    let post_memory = per_op(COUNT, || call(&on_memory, "POST", "/todos", post)).await?;
    let get_sqlite = per_op(COUNT, || call(&on_sqlite, "GET", "/todos/1", None)).await?;
    let post_sqlite = per_op(COUNT, || call(&on_sqlite, "POST", "/todos", post)).await?;
    let native_get = per_op(COUNT, || {
        native_call(memory.clone(), "GET", "/todos/1", None)
    })
    .await?;
    let native_post = per_op(COUNT, || {
        native_call(memory.clone(), "POST", "/todos", post)
    })
    .await?;
    let _ = std::fs::remove_dir_all(&dir);

    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"));
    println!("\n### Where a request's time goes (in process, µs, 10 todos)\n");
    println!(
        "Measured one by one (medians of {ROUNDS} rounds of {COUNT}); the rows marked \"rest\" are \
         differences between measured rows.\n"
    );
    println!(
        "| component of the cost | hello | GET /todos/1, memory | POST /todos, memory | GET /todos/1, SQLite | POST /todos, SQLite |\n|---|---|---|---|---|---|"
    );
    let todo_instance: f64 = todo_phases.iter().sum();
    for (phase, name) in [
        "the store: WASI, wasi:http and key-value state, resource table",
        "instantiation from the pre-instantiated component",
        "dropping the store: linear memory and tables reset for the pool",
    ]
    .into_iter()
    .enumerate()
    {
        let v = todo_phases[phase];
        println!(
            "| {name} | {} | {v:.1} | {v:.1} | {v:.1} | {v:.1} |",
            cell(hello.map(|(p, _)| p[phase]))
        );
    }
    let rest_of = |total: f64| total - todo_instance;
    println!(
        "| rest: wasi:http request and response plumbing, the guest's work in wasm, host calls | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        cell(hello.map(|(p, whole)| whole - p.iter().sum::<f64>())),
        rest_of(get_memory),
        rest_of(post_memory),
        rest_of(get_sqlite),
        rest_of(post_sqlite)
    );
    println!(
        "| of which the same todo logic costs natively (memory store) | | {native_get:.1} | {native_post:.1} | | |"
    );
    println!(
        "| of which the SQLite store adds (SQLite − memory) | | | | {:.1} | {:.1} |",
        get_sqlite - get_memory,
        post_sqlite - post_memory
    );
    println!(
        "| **whole request** | {} | **{get_memory:.1}** | **{post_memory:.1}** | **{get_sqlite:.1}** | **{post_sqlite:.1}** |",
        cell(hello.map(|(_, whole)| whole))
    );
    Ok(())
}

/// What the observability layer adds to `GET /todos/1` in process: nothing recorded, then the
/// metrics (request series and a meter on every KV call), then the metrics and the access log
/// (the host's own log subscriber, lines to a file). The three runtimes share one store and take
/// turns, round by round, so drift on a busy machine falls on all three alike.
async fn observability(store: &Arc<dyn KvBackend>) -> anyhow::Result<()> {
    use todo_host::metrics::Metrics;
    const COUNT: usize = 2000;
    let log_path =
        std::env::temp_dir().join(format!("todo-bench-access-{}.log", std::process::id()));
    let logs = todo_host::logging::init_to(Box::new(std::fs::File::create(&log_path)?));
    let off = Arc::new(Metrics::off());
    let quiet = Runtime::builder()
        .backend(store.clone())
        .build()?
        .with_metrics(off);
    let counted = Arc::new(Metrics::new());
    let metrics = Runtime::builder()
        .backend(metered(store, &counted))
        .build()?
        .with_metrics(counted);
    let logged = Arc::new(Metrics::new());
    let everything = Runtime::builder()
        .backend(metered(store, &logged))
        .build()?
        .with_metrics(logged)
        .with_access_log(true);
    let hosts = [&quiet, &metrics, &everything];
    let mut means: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS * 2 {
        for (host, means) in hosts.iter().zip(means.iter_mut()) {
            means.push(per_op_once(COUNT, || call(host, "GET", "/todos/1", None)).await?);
        }
    }
    let [off, metrics, everything] = means.map(|mut means| {
        means.sort_by(f64::total_cmp);
        means[means.len() / 2]
    });
    // The pieces alone, in tight loops: the per-request rows above differ by a few µs from one
    // runtime to another on their own (each has its own memory pool), more than these pieces.
    const PIECES: u32 = 200_000;
    let line = todo_host::logging::AccessLine {
        method: &http::Method::GET,
        path: "/todos/1",
        status: 200,
        total_us: 41,
        instantiate_us: 14,
        guest_us: 22,
        kv_calls: 1,
        component: "eba6172be3a08a18",
    };
    let started = Instant::now();
    for _ in 0..PIECES {
        line.log();
    }
    let line_ns = started.elapsed().as_nanos() as f64 / f64::from(PIECES);
    let counted = Metrics::new();
    let took = Duration::from_micros(20);
    let started = Instant::now();
    for _ in 0..PIECES {
        // What a request records: in flight, instantiation, guest time, the request.
        counted.in_flight(true);
        counted.instantiated(took);
        counted.guest_ran(took);
        counted.in_flight(false);
        counted.request_done("/todos/1", 200, took);
    }
    let request_ns = started.elapsed().as_nanos() as f64 / f64::from(PIECES);
    let meter = metered(store, &Arc::new(Metrics::new()));
    let get_ns = |backend: Arc<dyn KvBackend>| async move {
        let started = Instant::now();
        for _ in 0..PIECES {
            backend
                .get(
                    todo_guest::records::BUCKET,
                    &todo_guest::records::todo_key(1),
                )
                .await?;
        }
        anyhow::Ok(started.elapsed().as_nanos() as f64 / f64::from(PIECES))
    };
    let plain_get_ns = get_ns(store.clone()).await?;
    let metered_get_ns = get_ns(meter).await?;
    drop(logs);
    let logged_lines = std::fs::read_to_string(&log_path)
        .map(|text| text.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&log_path);
    println!("\n### Observability, in process (GET /todos/1, memory store)\n");
    println!(
        "Three runtimes on one store, taking turns for {} rounds of {COUNT} requests; the median \
         round. The access log goes through the host's own subscriber to a file ({logged_lines} \
         lines written).\n",
        ROUNDS * 2
    );
    println!("| recorded | µs per request | added µs |\n|---|---|---|");
    println!("| nothing (`--no-metrics --no-access-log`) | {off:.1} | |");
    println!(
        "| metrics (request series, a meter on every KV call) | {metrics:.1} | {:+.1} |",
        metrics - off
    );
    println!(
        "| metrics and the access log (the default) | {everything:.1} | {:+.1} |",
        everything - off
    );
    println!(
        "\nThe pieces alone, {PIECES} times each in a loop (ns): an access line through the \
         host's subscriber to the file {line_ns:.0}; a request's metrics (in flight, \
         instantiation, guest time, the request) {request_ns:.0}; a memory-store `get` metered \
         {metered_get_ns:.0} against {plain_get_ns:.0} bare. Together, for a `GET /todos/1` \
         (one KV call): **{:.2} µs**.",
        (line_ns + request_ns + metered_get_ns - plain_get_ns) / 1000.0
    );
    Ok(())
}

/// `store` behind the host's metering decorator, counting into `metrics`, as `todo-host` wraps
/// every store.
fn metered(
    store: &Arc<dyn KvBackend>,
    metrics: &Arc<todo_host::metrics::Metrics>,
) -> Arc<dyn KvBackend> {
    Arc::new(todo_host::metrics::MeteredBackend::new(
        store.clone(),
        metrics.clone(),
        "default",
        "memory",
    ))
}

/// Mean µs per call of `op` over `count` calls, one round.
async fn per_op_once<F, Fut>(count: usize, mut op: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    for _ in 0..count {
        op().await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / count as f64)
}

/// The phases of `host`'s instance at `/` (store, instantiation, drop), µs: each the median of
/// [`ROUNDS`] means over `count` instances.
async fn phases(host: &Runtime, count: usize) -> anyhow::Result<[f64; 3]> {
    let mut phases = [0.0f64; 3];
    for (phase, slot) in phases.iter_mut().enumerate() {
        let mut means = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let mut total = Duration::ZERO;
            for _ in 0..count {
                total += host.instance_phases().await?[phase];
            }
            means.push(total.as_secs_f64() * 1e6 / count as f64);
        }
        means.sort_by(f64::total_cmp);
        *slot = means[ROUNDS / 2];
    }
    Ok(phases)
}

/// One request through the runtime, as `todo-host` serves it; fails unless it is a 2xx.
async fn call(host: &Runtime, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<()> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench.local")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))?;
    let response = host.handle(request).await;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    anyhow::ensure!(
        status.is_success(),
        "{method} {path}: {status} {:?}",
        bytes.to_bytes()
    );
    Ok(())
}

/// The same request through the same logic natively, on the same store.
async fn native_call(
    store: Arc<dyn KvBackend>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<()> {
    let mut request = todo_guest::Request::new(method, path);
    request.authority = "bench.local".to_string();
    if let Some(body) = body {
        request = request.with_json(body);
    }
    let handle = tokio::runtime::Handle::current();
    let response = tokio::task::block_in_place(|| {
        todo_guest::handle(&request, &NativeKv::new(store, handle), now())
    });
    anyhow::ensure!(
        (200..300).contains(&response.status),
        "{method} {path}: {}",
        response.status
    );
    Ok(())
}

/// Mean µs per call of `op` over `count` calls, the fastest of [`ROUNDS`] such means: for
/// ratios between rows measured minutes apart, the round least disturbed by other work.
async fn fastest_per_op<F, Fut>(count: usize, op: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    Ok(rounds(count, op).await?[0])
}

/// Mean µs per call of `op` over `count` calls; the median of [`ROUNDS`] such means.
async fn per_op<F, Fut>(count: usize, op: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    Ok(rounds(count, op).await?[ROUNDS / 2])
}

/// The means (µs per call of `op` over `count` calls) of [`ROUNDS`] rounds, fastest first.
async fn rounds<F, Fut>(count: usize, mut op: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut means = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        means.push(per_op_once(count, &mut op).await?);
    }
    means.sort_by(f64::total_cmp);
    Ok(means)
}

fn median_duration(
    rounds: usize,
    mut op: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut times = (0..rounds)
        .map(|_| op())
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    Ok(times[rounds / 2])
}

/// Spawns `todo-host` with `args`, waits for its start-up line, sends one request over TCP and
/// reads the answer: the time from spawn to answer.
fn cold_start(host_bin: &std::ffi::OsStr, args: &[&str]) -> anyhow::Result<Duration> {
    use std::io::{BufRead, BufReader, Read, Write};
    let started = Instant::now();
    let mut child = std::process::Command::new(host_bin)
        .args(["--store", "memory://", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .read_line(&mut line)?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| anyhow::anyhow!("no address in {line:?}"))?;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(b"GET /todos HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let took = started.elapsed();
    child.kill()?;
    child.wait()?;
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200"),
        "cold start answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    Ok(took)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Two log-log line charts side by side, as a standalone SVG.
fn plot(creates: &[(f64, f64)], lists: &[(f64, f64)]) -> String {
    let mut svg = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="360" font-family="sans-serif" font-size="12"><rect width="900" height="360" fill="white"/>"##,
    );
    chart(
        &mut svg,
        0.0,
        "POST /todos µs vs todos in the store (memory)",
        creates,
        "#2f6f4f",
    );
    chart(
        &mut svg,
        450.0,
        "GET /api/rule last page µs vs todos (memory)",
        lists,
        "#b54708",
    );
    svg.push_str("</svg>\n");
    svg
}

fn chart(svg: &mut String, left: f64, title: &str, points: &[(f64, f64)], color: &str) {
    let (x0, y0, width, height) = (left + 60.0, 40.0, 360.0, 260.0);
    let log = |v: f64| v.max(1e-3).log10();
    let (min_x, max_x) = (log(points[0].0), log(points[points.len() - 1].0));
    let min_y = points
        .iter()
        .map(|p| log(p.1))
        .fold(f64::MAX, f64::min)
        .floor();
    let max_y = points
        .iter()
        .map(|p| log(p.1))
        .fold(f64::MIN, f64::max)
        .ceil()
        .max(min_y + 1.0);
    let px = |x: f64| x0 + (log(x) - min_x) / (max_x - min_x) * width;
    let py = |y: f64| y0 + height - (log(y) - min_y) / (max_y - min_y) * height;
    svg.push_str(&format!(
        r##"<text x="{}" y="24" font-weight="bold">{title}</text><rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="none" stroke="#999"/>"##,
        x0
    ));
    let mut decade = min_y;
    while decade <= max_y {
        let y = y0 + height - (decade - min_y) / (max_y - min_y) * height;
        svg.push_str(&format!(
            r##"<line x1="{x0}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            x0 + width,
            x0 - 6.0,
            y + 4.0,
            10f64.powf(decade)
        ));
        decade += 1.0;
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    svg.push_str(&format!(
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
        path.join(" ")
    ));
    for (x, y) in points {
        svg.push_str(&format!(
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/><text x="{:.1}" y="{}" text-anchor="middle">{x}</text>"#,
            px(*x),
            py(*y),
            px(*x),
            y0 + height + 16.0
        ));
    }
}
