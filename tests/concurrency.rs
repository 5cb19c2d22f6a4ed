//! No lost updates: many concurrent writers, one store.

mod support;

use std::collections::HashSet;

use support::{Host, sqlite_url, temp_dir};

/// Sends `count` POSTs from `count` threads at once and returns the ids given back.
fn create_concurrently(host: &Host, count: usize) -> anyhow::Result<Vec<u64>> {
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let barrier = &barrier;
                scope.spawn(move || -> anyhow::Result<u64> {
                    barrier.wait();
                    let (status, todo) =
                        host.call("POST", "/todos", Some(&format!(r#"{{"title":"t{i}"}}"#)))?;
                    anyhow::ensure!(status == 201, "create {i} answered {status}: {todo}");
                    todo["id"]
                        .as_u64()
                        .ok_or_else(|| anyhow::anyhow!("no id in {todo}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
            })
            .collect()
    })
}

fn check_200_distinct(store: &str) -> anyhow::Result<()> {
    let host = Host::start(&["--store", store])?;
    let ids = create_concurrently(&host, 200)?;
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 200, "ids handed out twice");
    let (_, list) = host.call("GET", "/todos", None)?;
    let listed: HashSet<u64> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["id"].as_u64())
        .collect();
    assert_eq!(listed, distinct, "the list holds exactly the todos created");
    Ok(())
}

#[test]
fn two_hundred_concurrent_creates_on_sqlite_give_200_distinct_todos() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    check_200_distinct(&sqlite_url(dir.path()))
}

#[test]
fn two_hundred_concurrent_creates_in_memory_give_200_distinct_todos() -> anyhow::Result<()> {
    check_200_distinct("memory://")
}

#[test]
fn ids_are_never_reused_after_deletes() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let host = Host::start(&["--store", &sqlite_url(dir.path())])?;
    for _ in 0..3 {
        host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?;
    }
    host.call("DELETE", "/todos/3", None)?;
    host.call("DELETE", "/todos", None)?;
    let (_, todo) = host.call("POST", "/todos", Some(r#"{"title":"y"}"#))?;
    assert_eq!(todo["id"], 4);
    Ok(())
}
