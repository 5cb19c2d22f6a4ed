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
    for id in 1..=3 {
        let (status, todo) = host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?;
        assert_eq!((status, todo["id"].as_u64()), (201, Some(id)), "{todo}");
    }
    // The highest id goes first: a store that handed out "largest id + 1" would give 3 again.
    let (status, body) = host.call("DELETE", "/todos/3", None)?;
    assert_eq!(status, 204, "DELETE /todos/3: {body}");
    let (status, body) = host.call("DELETE", "/todos", None)?;
    assert_eq!(status, 204, "DELETE /todos: {body}");
    assert_eq!(listed_ids(&host)?, Vec::<u64>::new(), "the deletes deleted");
    let (status, todo) = host.call("POST", "/todos", Some(r#"{"title":"y"}"#))?;
    assert_eq!(status, 201, "{todo}");
    assert_eq!(todo["id"], 4, "an id was reused");
    Ok(())
}
