//! No cliff: a store of 200,000 todos (seeded in seconds through the real SQLite backend) is
//! served by the real `todo-host` under its default limits (64 MiB per instance, 16 MiB per
//! answer, 10 s per request). Every endpoint answers correctly; paged reads cost about what they
//! cost on a small store; deleting everything finishes. The benchmark (`bench/run.sh`) does the
//! same at 1,000,000.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use support::{Host, HttpResponse, seed_todos, seeded_completed, sqlite_url, temp_dir};

const TODOS: u64 = 200_000;

fn ids(body: &Value) -> Vec<u64> {
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(|todo| todo["id"].as_u64().or_else(|| todo["key"].as_u64()))
        .collect()
}

/// `GET target`, checked 200, with how long it took (the median of 5 after one warm-up).
fn timed_get(host: &Host, target: &str) -> anyhow::Result<(HttpResponse, Duration)> {
    let mut times = Vec::new();
    let mut last = None;
    for round in 0..6 {
        let started = Instant::now();
        let response = host.request("GET", target, None)?;
        let took = started.elapsed();
        anyhow::ensure!(
            response.status == 200,
            "{target} answered {}: {}",
            response.status,
            response.text()
        );
        if round > 0 {
            times.push(took);
        }
        last = Some(response);
    }
    times.sort();
    Ok((last.context("no response")?, times[times.len() / 2]))
}

fn header(response: &HttpResponse, name: &str) -> Option<String> {
    response.header(name).map(str::to_string)
}

#[test]
fn two_hundred_thousand_todos_are_served_page_by_page_within_the_default_limits()
-> anyhow::Result<()> {
    let test_started = Instant::now();
    let small_dir = temp_dir()?;
    let small_url = sqlite_url(small_dir.path());
    seed_todos(&small_url, 1_000)?;
    let dir = temp_dir()?;
    let url = sqlite_url(dir.path());
    seed_todos(&url, TODOS)?;
    println!("seeded {TODOS} todos in {:.1?}", test_started.elapsed());
    let small = Host::start(&["--store", &small_url])?;
    let host = Host::start(&["--store", &url])?;
    let active = (1..=TODOS).filter(|id| !seeded_completed(*id)).count();

    // Without `limit`: the first 1,000, a link to the rest, the counts. No 500, no 16 MiB answer.
    let (first, _) = timed_get(&host, "/todos")?;
    assert_eq!(ids(&first.json()), (1..=1000).collect::<Vec<_>>());
    assert_eq!(
        header(&first, "link"),
        Some(format!("<{}/todos?after=1000>; rel=\"next\"", host.base))
    );
    assert_eq!(header(&first, "x-total-count"), Some(TODOS.to_string()));
    assert_eq!(header(&first, "x-active-count"), Some(active.to_string()));

    // Paged reads, deep in the list and at its end, against the same reads on 1,000 todos.
    let last_page = TODOS / 10;
    let reads = [
        ("/todos?limit=50".to_string(), "/todos?limit=50".to_string()),
        (
            "/todos?limit=50&after=150000".to_string(),
            "/todos?limit=50&after=500".to_string(),
        ),
        (
            "/api/rule?current=1&pageSize=10".to_string(),
            "/api/rule?current=1&pageSize=10".to_string(),
        ),
        (
            format!("/api/rule?current={last_page}&pageSize=10"),
            "/api/rule?current=100&pageSize=10".to_string(),
        ),
        ("/todos/123456".to_string(), "/todos/123".to_string()),
    ];
    for (big_target, small_target) in &reads {
        let (_, big_time) = timed_get(&host, big_target)?;
        let (_, small_time) = timed_get(&small, small_target)?;
        println!(
            "{big_target}: {big_time:.2?} at {TODOS} todos; {small_target}: {small_time:.2?} at 1,000"
        );
    }
    let (deep, _) = timed_get(&host, "/todos?limit=50&after=150000")?;
    assert_eq!(ids(&deep.json()), (150_001..=150_050).collect::<Vec<_>>());
    let (end, _) = timed_get(&host, &format!("/api/rule?current={last_page}&pageSize=10"))?;
    let end = end.json();
    assert_eq!(ids(&end["data"]), (TODOS - 9..=TODOS).collect::<Vec<_>>());
    assert_eq!(end["total"], TODOS);

    // Writes: a create takes the next id, a legacy delete of a page of keys, single deletes.
    let (status, created) = host.call("POST", "/todos", Some(r#"{"title":"one more"}"#))?;
    assert_eq!((status, created["id"].clone()), (201, json!(TODOS + 1)));
    let doomed: Vec<u64> = (1..=1000).map(|i| i * 97).collect();
    let (status, after) = host.call(
        "DELETE",
        "/api/rule",
        Some(&json!({ "key": doomed }).to_string()),
    )?;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["pagination"]["total"], TODOS + 1 - 1000);
    assert_eq!(host.call("DELETE", "/todos/2", None)?.0, 204);
    let (_, page) = host.call("GET", "/todos?limit=3", None)?;
    assert_eq!(ids(&page), vec![1, 3, 4]);

    // Everything, deleted within the request deadline; nothing left, and ids go on.
    let started = Instant::now();
    let (status, body) = host.call("DELETE", "/todos", None)?;
    println!(
        "DELETE /todos of {} todos: {status} in {:.2?}",
        TODOS - 1000,
        started.elapsed()
    );
    assert_eq!(status, 204, "{body}");
    let empty = host.request("GET", "/todos", None)?;
    assert_eq!((empty.status, empty.json()), (200, json!([])));
    assert_eq!(header(&empty, "x-total-count"), Some("0".to_string()));
    let (status, created) = host.call("POST", "/todos", Some(r#"{"title":"after"}"#))?;
    assert_eq!((status, created["id"].clone()), (201, json!(TODOS + 2)));
    println!("the whole test: {:.1?}", test_started.elapsed());
    Ok(())
}
