//! One conformance suite for every `KvBackend`: memory, SQLite (a temporary file), Redis (a
//! real `redis-server` started for each test) and NATS JetStream (a real `nats-server` for each
//! test, and a real three-node cluster with three replicas). Each case is written once and
//! instantiated per backend by `conformance!`.

#[path = "../../tests/support/nats.rs"]
#[allow(dead_code)] // The failover tests use the rest.
mod nats_server;
#[path = "../../tests/support/redis.rs"]
mod redis_server;

use std::collections::HashSet;
use std::sync::Arc;

use todo_host::kv::{self, KvBackend, LIST_PAGE_SIZE};

/// A backend under test, with whatever must outlive it (a temporary dir, a Redis process).
struct Fixture {
    kv: Arc<dyn KvBackend>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn memory() -> anyhow::Result<Fixture> {
    Ok(Fixture {
        kv: kv::open("memory://").await?,
        _keep: Box::new(()),
    })
}

async fn sqlite() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("kv.db").display());
    Ok(Fixture {
        kv: kv::open(&url).await?,
        _keep: Box::new(dir),
    })
}

async fn redis() -> anyhow::Result<Fixture> {
    let server = redis_server::RedisServer::start()?;
    Ok(Fixture {
        kv: kv::open(&server.url()).await?,
        _keep: Box::new(server),
    })
}

async fn nats() -> anyhow::Result<Fixture> {
    let server = nats_server::NatsServer::start()?;
    Ok(Fixture {
        kv: kv::open(&server.url()).await?,
        _keep: Box::new(server),
    })
}

/// Three servers, three replicas (the default for three named servers): every write goes
/// through RAFT, every read to the stream leader, listing to whichever replica answers.
async fn nats_cluster() -> anyhow::Result<Fixture> {
    let cluster = nats_server::NatsCluster::start(3)?;
    let kv = kv::open(&cluster.url()).await?;
    assert!(kv.summary().contains("replicas 3"), "{}", kv.summary());
    Ok(Fixture {
        kv,
        _keep: Box::new(cluster),
    })
}

/// Every key of `bucket`, following the cursor; fails if a page is larger than the bound.
async fn all_keys(kv: &dyn KvBackend, bucket: &str) -> anyhow::Result<(Vec<String>, usize)> {
    let mut keys = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = kv.list_keys(bucket, cursor).await?;
        anyhow::ensure!(
            page.keys.len() <= LIST_PAGE_SIZE,
            "a page of {} keys",
            page.keys.len()
        );
        pages += 1;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((keys, pages)),
        }
    }
}

async fn get_set_delete_exists(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    assert_eq!(kv.get("b", "k").await?, None);
    assert!(!kv.exists("b", "k").await?);
    kv.set("b", "k", b"one").await?;
    assert_eq!(kv.get("b", "k").await?.as_deref(), Some(&b"one"[..]));
    assert!(kv.exists("b", "k").await?);
    kv.set("b", "k", b"two").await?;
    assert_eq!(kv.get("b", "k").await?.as_deref(), Some(&b"two"[..]));
    kv.delete("b", "k").await?;
    assert_eq!(kv.get("b", "k").await?, None);
    // Deleting a missing key is not an error.
    kv.delete("b", "k").await?;
    Ok(())
}

async fn list_keys_pages_through_10k_keys(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    let entries: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|i| (format!("key-{i:05}"), vec![b'v']))
        .collect();
    for chunk in entries.chunks(500) {
        kv.set_many("big", chunk).await?;
    }
    let (keys, pages) = all_keys(kv.as_ref(), "big").await?;
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), 10_000, "every key exactly once");
    assert_eq!(distinct.len(), 10_000);
    assert!(pages >= 10_000 / LIST_PAGE_SIZE, "only {pages} pages");
    Ok(())
}

async fn concurrent_increments_never_lose_one(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for _ in 0..1000 {
                    kv.increment("b", "counter", 1).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    assert_eq!(kv.increment("b", "counter", 0).await?, 8000);
    assert_eq!(kv.get("b", "counter").await?.as_deref(), Some(&b"8000"[..]));
    Ok(())
}

async fn increment_starts_at_zero_and_refuses_non_counters(
    kv: Arc<dyn KvBackend>,
) -> anyhow::Result<()> {
    assert_eq!(kv.increment("b", "fresh", 5).await?, 5);
    kv.set("b", "text", b"hello").await?;
    assert!(kv.increment("b", "text", 1).await.is_err());
    assert_eq!(
        kv.get("b", "text").await?.as_deref(),
        Some(&b"hello"[..]),
        "unchanged"
    );
    Ok(())
}

async fn increments_may_be_negative(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    assert_eq!(kv.increment("b", "n", 5).await?, 5);
    assert_eq!(kv.increment("b", "n", -8).await?, -3);
    assert_eq!(kv.get("b", "n").await?.as_deref(), Some(&b"-3"[..]));
    assert!(
        kv.increment("b", "n", i64::MIN).await.is_err(),
        "overflow is an error"
    );
    Ok(())
}

async fn compare_and_swap_writes_only_over_what_it_saw(
    kv: Arc<dyn KvBackend>,
) -> anyhow::Result<()> {
    // Absent expected: succeeds once, then the key exists.
    assert!(kv.compare_and_swap("b", "k", None, b"first").await?);
    assert!(!kv.compare_and_swap("b", "k", None, b"again").await?);
    assert_eq!(kv.get("b", "k").await?.as_deref(), Some(&b"first"[..]));
    // A stale expectation loses; a fresh one wins.
    assert!(!kv.compare_and_swap("b", "k", Some(b"stale"), b"x").await?);
    assert!(
        kv.compare_and_swap("b", "k", Some(b"first"), b"second")
            .await?
    );
    assert_eq!(kv.get("b", "k").await?.as_deref(), Some(&b"second"[..]));
    // Empty values are values, not absence.
    kv.set("b", "e", b"").await?;
    assert!(!kv.compare_and_swap("b", "e", None, b"x").await?);
    assert!(kv.compare_and_swap("b", "e", Some(b""), b"x").await?);
    Ok(())
}

async fn concurrent_compare_and_swap_loops_never_lose_an_update(
    kv: Arc<dyn KvBackend>,
) -> anyhow::Result<()> {
    // 4 tasks x 100 read-modify-write updates through CAS retries: every one lands.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    loop {
                        let seen = kv.get("b", "n").await?;
                        let n: u64 = match seen.as_deref() {
                            Some(value) => std::str::from_utf8(value)?.parse()?,
                            None => 0,
                        };
                        if kv
                            .compare_and_swap(
                                "b",
                                "n",
                                seen.as_deref(),
                                (n + 1).to_string().as_bytes(),
                            )
                            .await?
                        {
                            break;
                        }
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    assert_eq!(kv.get("b", "n").await?.as_deref(), Some(&b"400"[..]));
    Ok(())
}

async fn batch_operations(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    let entries = vec![
        ("a".to_string(), b"1".to_vec()),
        ("b".to_string(), b"2".to_vec()),
        ("c".to_string(), b"3".to_vec()),
    ];
    kv.set_many("batch", &entries).await?;
    let keys: Vec<String> = ["a", "missing", "c"].map(String::from).to_vec();
    let values = kv.get_many("batch", &keys).await?;
    assert_eq!(
        values,
        vec![
            Some(("a".to_string(), b"1".to_vec())),
            None,
            Some(("c".to_string(), b"3".to_vec()))
        ]
    );
    let doomed = ["a", "b", "nope"].map(String::from).to_vec();
    kv.delete_many("batch", &doomed).await?;
    let (left, _) = all_keys(kv.as_ref(), "batch").await?;
    assert_eq!(left, vec!["c".to_string()]);
    assert_eq!(kv.get_many("batch", &[]).await?, vec![]);
    Ok(())
}

async fn buckets_are_isolated(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    kv.set("one", "k", b"1").await?;
    kv.set("two", "k", b"2").await?;
    kv.set("one-more", "x", b"3").await?;
    assert_eq!(kv.get("one", "k").await?.as_deref(), Some(&b"1"[..]));
    assert_eq!(kv.get("two", "k").await?.as_deref(), Some(&b"2"[..]));
    assert_eq!(all_keys(kv.as_ref(), "one").await?.0, vec!["k".to_string()]);
    kv.increment("one", "n", 3).await?;
    assert_eq!(kv.increment("two", "n", 1).await?, 1);
    kv.delete("one", "k").await?;
    assert_eq!(kv.get("two", "k").await?.as_deref(), Some(&b"2"[..]));
    assert!(all_keys(kv.as_ref(), "empty").await?.0.is_empty());
    Ok(())
}

async fn binary_empty_and_long(kv: Arc<dyn KvBackend>) -> anyhow::Result<()> {
    let every_byte: Vec<u8> = (0..=255).collect();
    kv.set("b", "binary", &every_byte).await?;
    assert_eq!(kv.get("b", "binary").await?, Some(every_byte));
    kv.set("b", "empty", b"").await?;
    assert_eq!(
        kv.get("b", "empty").await?,
        Some(Vec::new()),
        "empty is not missing"
    );
    assert!(kv.exists("b", "empty").await?);
    let long_key = format!("long/{}", "k".repeat(4000));
    kv.set("b", &long_key, b"v").await?;
    assert_eq!(kv.get("b", &long_key).await?.as_deref(), Some(&b"v"[..]));
    let unicode = "todo/ünïcødé ✓";
    kv.set("b", unicode, b"u").await?;
    let (keys, _) = all_keys(kv.as_ref(), "b").await?;
    assert!(keys.contains(&long_key) && keys.contains(&unicode.to_string()));
    Ok(())
}

/// Instantiates every case for each named backend constructor.
macro_rules! conformance {
    ($($backend:ident),*) => {$(
        mod $backend {
            use super::*;

            async fn run<F: std::future::Future<Output = anyhow::Result<()>>>(
                case: impl FnOnce(Arc<dyn KvBackend>) -> F,
            ) -> anyhow::Result<()> {
                let fixture = super::$backend().await?;
                case(fixture.kv.clone()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_set_delete_exists() -> anyhow::Result<()> {
                run(super::get_set_delete_exists).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_keys_pages_through_10k_keys() -> anyhow::Result<()> {
                run(super::list_keys_pages_through_10k_keys).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_increments_never_lose_one() -> anyhow::Result<()> {
                run(super::concurrent_increments_never_lose_one).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn increment_starts_at_zero_and_refuses_non_counters() -> anyhow::Result<()> {
                run(super::increment_starts_at_zero_and_refuses_non_counters).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn increments_may_be_negative() -> anyhow::Result<()> {
                run(super::increments_may_be_negative).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn compare_and_swap_writes_only_over_what_it_saw() -> anyhow::Result<()> {
                run(super::compare_and_swap_writes_only_over_what_it_saw).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_compare_and_swap_loops_never_lose_an_update() -> anyhow::Result<()> {
                run(super::concurrent_compare_and_swap_loops_never_lose_an_update).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batch_operations() -> anyhow::Result<()> {
                run(super::batch_operations).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn buckets_are_isolated() -> anyhow::Result<()> {
                run(super::buckets_are_isolated).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn binary_empty_and_long() -> anyhow::Result<()> {
                run(super::binary_empty_and_long).await
            }
        }
    )*};
}

conformance!(memory, sqlite, redis, nats, nats_cluster);
