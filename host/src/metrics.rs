//! What the host counts, for Prometheus: requests, latencies, instantiation and guest time,
//! key-value operations, refusals by cause, what is in flight, which component runs, and whether
//! each store answers. Served as text by the admin listener ([`crate::admin`]).
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: an explicit
//! [`Registry`] (no global state, so every test and every embedded runtime has its own), typed
//! label sets, and the OpenMetrics text format. Every label takes few values (route groups,
//! status classes, operation names, store labels), so no series can be minted by a client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::kv::{BackendConfig, KeyPage, KvBackend, KvError, OpenOptions, Values};

/// Latency buckets from 25 µs to about 13 s, doubling: a hello request, a page of todos, a
/// request that meets the deadline.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 2.0, 20))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `todos`, `api` or `other` (pages and files): bounded, whatever paths clients send.
    pub route: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why the host answered instead of the guest; see [`crate::refusal::Refusal::reason`].
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KvLabels {
    /// `get`, `set`, `delete`, `exists`, `list_keys`, `increment`, `compare_and_swap`,
    /// `get_many`, `set_many`, `delete_many`.
    pub op: &'static str,
    /// The store label (`default`, or a manifest's).
    pub store: String,
    /// The backend's kind: `sqlite`, `redis`, `memory`, ...
    pub backend: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: String,
    pub backend: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
    /// A hash of the component's bytes: which build is serving.
    pub hash: String,
}

/// Every metric of one host.
pub struct Metrics {
    /// Off (`--no-metrics`): nothing is recorded and `/metrics` says so.
    on: bool,
    registry: Registry,
    /// The series a request touches, made at start-up: a request counts through an atomic, not
    /// through a family's lock and hash.
    request_series: [[Counter; STATUS_CLASSES.len()]; ROUTE_GROUPS.len()],
    duration_series: [Histogram; ROUTE_GROUPS.len()],
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub instantiation_duration: Histogram,
    pub guest_duration: Histogram,
    pub in_flight: Gauge,
    pub refusals: Family<RefusalLabels, Counter>,
    pub kv_operations: Family<KvLabels, Counter>,
    pub kv_errors: Family<KvLabels, Counter>,
    pub kv_duration: Family<KvLabels, Histogram, fn() -> Histogram>,
    pub store_up: Family<StoreLabels, Gauge>,
    pub component: Family<ComponentLabels, Gauge>,
    pub reloads: Family<ReloadLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `refused`.
    pub outcome: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("todo_host");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route group and status class",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        registry.register(
            "request_duration_seconds",
            "Time from a request's head to its answer, by route group",
            request_duration.clone(),
        );
        let instantiation_duration = latency_buckets();
        registry.register(
            "instantiation_duration_seconds",
            "Time to make a request's instance from the pre-instantiated component",
            instantiation_duration.clone(),
        );
        let guest_duration = latency_buckets();
        registry.register(
            "guest_duration_seconds",
            "Time in the guest's handler, host calls included, until its answer is complete",
            guest_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Answers the host gave itself, by reason: admission (503), timeout (504), trap and memory_limit (500), kv_limit, bad_answer, no_route, client (4xx before the guest ran)",
            refusals.clone(),
        );
        let kv_operations = Family::<KvLabels, Counter>::default();
        registry.register(
            "kv_operations",
            "Key-value backend calls, by operation, store label and backend",
            kv_operations.clone(),
        );
        let kv_errors = Family::<KvLabels, Counter>::default();
        registry.register(
            "kv_errors",
            "Key-value backend calls that failed",
            kv_errors.clone(),
        );
        let kv_duration =
            Family::<KvLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_buckets);
        registry.register(
            "kv_operation_duration_seconds",
            "Time of one key-value backend call",
            kv_duration.clone(),
        );
        let store_up = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "store_up",
            "1 when the store answered its last probe (at each scrape and readiness check), else 0",
            store_up.clone(),
        );
        let component = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "component_info",
            "The component serving each route group: 1 for the one loaded now",
            component.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "Component reloads, by outcome", reloads.clone());
        let request_series = ROUTE_GROUPS.map(|route| {
            STATUS_CLASSES.map(|status| {
                requests
                    .get_or_create(&RequestLabels { route, status })
                    .clone()
            })
        });
        let duration_series = ROUTE_GROUPS.map(|route| {
            request_duration
                .get_or_create(&RouteLabels { route })
                .clone()
        });
        Self {
            on: true,
            registry,
            request_series,
            duration_series,
            requests,
            request_duration,
            instantiation_duration,
            guest_duration,
            in_flight,
            refusals,
            kv_operations,
            kv_errors,
            kv_duration,
            store_up,
            component,
            reloads,
        }
    }

    /// Metrics that record nothing (`--no-metrics`): what the observability layer costs is
    /// measured against this.
    pub fn off() -> Self {
        Self {
            on: false,
            ..Self::new()
        }
    }

    /// Whether anything is recorded.
    pub fn on(&self) -> bool {
        self.on
    }

    /// The text exposition of every metric (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Records one answered request to `path`.
    pub fn request_done(&self, path: &str, status: u16, took: Duration) {
        if !self.on {
            return;
        }
        let route = route_index(path);
        self.request_series[route][status_index(status)].inc();
        self.duration_series[route].observe(took.as_secs_f64());
    }

    /// A request began (`true`) or ended (`false`).
    pub fn in_flight(&self, began: bool) {
        if self.on {
            if began {
                self.in_flight.inc();
            } else {
                self.in_flight.dec();
            }
        }
    }

    /// Records a request's instantiation time.
    pub fn instantiated(&self, took: Duration) {
        if self.on {
            self.instantiation_duration.observe(took.as_secs_f64());
        }
    }

    /// Records a request's time in the guest.
    pub fn guest_ran(&self, took: Duration) {
        if self.on {
            self.guest_duration.observe(took.as_secs_f64());
        }
    }

    /// Records an answer the host gave itself, for `reason`.
    pub fn refused(&self, reason: &'static str) {
        if self.on {
            self.refusals.get_or_create(&RefusalLabels { reason }).inc();
        }
    }

    /// Names `component` with `hash` as the one loaded now, and forgets `replaced`.
    pub fn component_loaded(&self, component: &str, hash: &str, replaced: Option<&str>) {
        if let Some(old) = replaced {
            self.component.remove(&ComponentLabels {
                component: component.to_string(),
                hash: old.to_string(),
            });
        }
        self.component
            .get_or_create(&ComponentLabels {
                component: component.to_string(),
                hash: hash.to_string(),
            })
            .set(1);
    }
}

/// The route groups, the values of the `route` label.
const ROUTE_GROUPS: [&str; 3] = ["todos", "api", "other"];

/// The status classes, the values of the `status` label.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The route group of `path`, one of a fixed few.
pub fn route_group(path: &str) -> &'static str {
    ROUTE_GROUPS[route_index(path)]
}

fn route_index(path: &str) -> usize {
    match path.trim_start_matches('/').split('/').next() {
        Some("todos") => 0,
        Some("api") => 1,
        _ => 2,
    }
}

fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The operations a backend is called for; their names are the `op` labels.
#[derive(Debug, Clone, Copy)]
enum KvOp {
    Get,
    Set,
    Delete,
    Exists,
    ListKeys,
    Increment,
    CompareAndSwap,
    GetMany,
    SetMany,
    DeleteMany,
}

impl KvOp {
    const ALL: [KvOp; 10] = [
        KvOp::Get,
        KvOp::Set,
        KvOp::Delete,
        KvOp::Exists,
        KvOp::ListKeys,
        KvOp::Increment,
        KvOp::CompareAndSwap,
        KvOp::GetMany,
        KvOp::SetMany,
        KvOp::DeleteMany,
    ];

    fn name(self) -> &'static str {
        match self {
            KvOp::Get => "get",
            KvOp::Set => "set",
            KvOp::Delete => "delete",
            KvOp::Exists => "exists",
            KvOp::ListKeys => "list_keys",
            KvOp::Increment => "increment",
            KvOp::CompareAndSwap => "compare_and_swap",
            KvOp::GetMany => "get_many",
            KvOp::SetMany => "set_many",
            KvOp::DeleteMany => "delete_many",
        }
    }
}

/// The series one operation of one store counts into, made once.
struct OpSeries {
    calls: Counter,
    errors: Counter,
    duration: Histogram,
}

/// A backend that counts and times every call of the one it wraps, under its store label.
pub struct MeteredBackend {
    inner: Arc<dyn KvBackend>,
    metrics: Arc<Metrics>,
    /// One entry per [`KvOp`], in [`KvOp::ALL`]'s order.
    series: Vec<OpSeries>,
    store: StoreLabels,
}

impl MeteredBackend {
    /// Opens the store `label` of `settings` with `options`, metered into `metrics`: how a host
    /// opens every store, at start-up and on a reload.
    pub async fn open(
        label: &str,
        settings: &BackendConfig,
        options: &OpenOptions,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let backend = settings
            .open(options)
            .await
            .with_context(|| format!("cannot open key-value store '{label}'"))?;
        Ok(Self::new(backend, metrics, label, settings.kind()))
    }

    pub fn new(
        inner: Arc<dyn KvBackend>,
        metrics: Arc<Metrics>,
        store: &str,
        backend: &'static str,
    ) -> Self {
        let series = KvOp::ALL
            .iter()
            .map(|op| {
                let labels = KvLabels {
                    op: op.name(),
                    store: store.to_string(),
                    backend,
                };
                OpSeries {
                    calls: metrics.kv_operations.get_or_create(&labels).clone(),
                    errors: metrics.kv_errors.get_or_create(&labels).clone(),
                    duration: metrics.kv_duration.get_or_create(&labels).clone(),
                }
            })
            .collect();
        Self {
            inner,
            metrics,
            series,
            store: StoreLabels {
                store: store.to_string(),
                backend,
            },
        }
    }

    async fn timed<T>(
        &self,
        op: KvOp,
        call: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        if !self.metrics.on {
            return call.await;
        }
        let started = Instant::now();
        let result = call.await;
        let series = &self.series[op as usize];
        series.duration.observe(started.elapsed().as_secs_f64());
        series.calls.inc();
        if result.is_err() {
            series.errors.inc();
        }
        result
    }

    /// Whether the store answers: one read of a key nobody writes, within `timeout`; recorded
    /// in `store_up`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let answer = tokio::time::timeout(timeout, self.inner.get("health", "probe")).await;
        let result = match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        self.metrics
            .store_up
            .get_or_create(&self.store)
            .set(i64::from(result.is_ok()));
        result
    }

    /// The store label.
    pub fn store(&self) -> &str {
        &self.store.store
    }
}

#[async_trait]
impl KvBackend for MeteredBackend {
    async fn close(&self) {
        self.inner.close().await;
    }

    fn summary(&self) -> String {
        self.inner.summary()
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.timed(KvOp::Get, self.inner.get(bucket, key)).await
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.timed(KvOp::Set, self.inner.set(bucket, key, value))
            .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.timed(KvOp::Delete, self.inner.delete(bucket, key))
            .await
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        self.timed(KvOp::ListKeys, self.inner.list_keys(bucket, cursor))
            .await
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        self.timed(KvOp::Increment, self.inner.increment(bucket, key, delta))
            .await
    }

    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        self.timed(
            KvOp::CompareAndSwap,
            self.inner.compare_and_swap(bucket, key, expected, value),
        )
        .await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        self.timed(KvOp::Exists, self.inner.exists(bucket, key))
            .await
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        self.timed(KvOp::GetMany, self.inner.get_many(bucket, keys))
            .await
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.timed(KvOp::SetMany, self.inner.set_many(bucket, entries))
            .await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        self.timed(KvOp::DeleteMany, self.inner.delete_many(bucket, keys))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_groups_are_few_whatever_the_path() {
        assert_eq!(route_group("/todos/7"), "todos");
        assert_eq!(route_group("/api/rule"), "api");
        assert_eq!(route_group("/anything/a/client/sends"), "other");
        assert_eq!(route_group("/"), "other");
    }
}
