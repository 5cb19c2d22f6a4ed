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

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::kv::{KeyPage, KvBackend, KvError, Values};

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
    registry: Registry,
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
        Self {
            registry,
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

    /// The text exposition of every metric (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Records one answered request.
    pub fn request_done(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status: status_class(status),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
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

/// The route group of `path`, one of a fixed few.
pub fn route_group(path: &str) -> &'static str {
    match path.trim_start_matches('/').split('/').next() {
        Some("todos") => "todos",
        Some("api") => "api",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The operations a backend is called for, as `op` labels.
const KV_OPS: [&str; 10] = [
    "get",
    "set",
    "delete",
    "exists",
    "list_keys",
    "increment",
    "compare_and_swap",
    "get_many",
    "set_many",
    "delete_many",
];

/// A backend that counts and times every call of the one it wraps, under its store label.
pub struct MeteredBackend {
    inner: Arc<dyn KvBackend>,
    metrics: Arc<Metrics>,
    /// One label set per entry of [`KV_OPS`], made once: a call only hashes it.
    labels: Vec<KvLabels>,
    store: StoreLabels,
}

impl MeteredBackend {
    pub fn new(
        inner: Arc<dyn KvBackend>,
        metrics: Arc<Metrics>,
        store: &str,
        backend: &'static str,
    ) -> Self {
        let labels = KV_OPS
            .iter()
            .map(|op| KvLabels {
                op,
                store: store.to_string(),
                backend,
            })
            .collect();
        Self {
            inner,
            metrics,
            labels,
            store: StoreLabels {
                store: store.to_string(),
                backend,
            },
        }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        let started = Instant::now();
        let result = call.await;
        if let Some(labels) = self.labels.iter().find(|labels| labels.op == op) {
            self.metrics
                .kv_duration
                .get_or_create(labels)
                .observe(started.elapsed().as_secs_f64());
            self.metrics.kv_operations.get_or_create(labels).inc();
            if result.is_err() {
                self.metrics.kv_errors.get_or_create(labels).inc();
            }
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
    fn summary(&self) -> String {
        self.inner.summary()
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.timed("get", self.inner.get(bucket, key)).await
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.timed("set", self.inner.set(bucket, key, value)).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.timed("delete", self.inner.delete(bucket, key)).await
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        self.timed("list_keys", self.inner.list_keys(bucket, cursor))
            .await
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        self.timed("increment", self.inner.increment(bucket, key, delta))
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
            "compare_and_swap",
            self.inner.compare_and_swap(bucket, key, expected, value),
        )
        .await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        self.timed("exists", self.inner.exists(bucket, key)).await
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        self.timed("get_many", self.inner.get_many(bucket, keys))
            .await
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.timed("set_many", self.inner.set_many(bucket, entries))
            .await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        self.timed("delete_many", self.inner.delete_many(bucket, keys))
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
