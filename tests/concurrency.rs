//! No lost updates: many concurrent writers, one store.

mod support;

use std::collections::HashSet;

use support::{Host, create_concurrently, listed_ids, sqlite_url, temp_dir};

fn check_200_distinct(store: &str) -> anyhow::Result<()> {
    let host = Host::start(&["--store", store])?;
    let ids = create_concurrently(&[&host], 200)?;
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 200, "ids handed out twice");
    let listed: HashSet<u64> = listed_ids(&host)?.into_iter().collect();
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
