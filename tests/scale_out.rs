//! Many hosts, one store: stateless hosts are interchangeable when the state lives in one shared
//! stateful node. Real processes, a real `redis-server`, a real shared SQLite file.

mod support;

use std::collections::HashSet;

use support::redis::RedisServer;
use support::{Host, create_concurrently, listed_ids, sqlite_url, temp_dir};

#[test]
fn a_todo_created_on_one_host_is_read_patched_and_deleted_through_others() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let hosts = [
        Host::start(&["--store", &redis.url()])?,
        Host::start(&["--store", &redis.url()])?,
        Host::start(&["--store", &redis.url()])?,
    ];
    let [a, b, c] = &hosts;
    assert!(
        a.banner
            .contains(&format!("(store: Redis at 127.0.0.1:{})", redis.port)),
        "{}",
        a.banner
    );

    let (status, created) = a.call("POST", "/todos", Some(r#"{"title":"shared"}"#))?;
    assert_eq!(status, 201);
    let path = format!("/todos/{}", created["id"]);

    let (status, read) = b.call("GET", &path, None)?;
    assert_eq!((status, read["title"].clone()), (200, "shared".into()));
    let (status, patched) = b.call("PATCH", &path, Some(r#"{"completed":true}"#))?;
    assert_eq!((status, patched["completed"].clone()), (200, true.into()));
    let (_, seen) = c.call("GET", &path, None)?;
    assert_eq!(seen["completed"], true);

    assert_eq!(c.call("DELETE", &path, None)?.0, 204);
    assert_eq!(a.call("GET", &path, None)?.0, 404);
    Ok(())
}

#[test]
fn six_hundred_concurrent_creates_over_three_hosts_on_redis_give_600_distinct_ids()
-> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let a = Host::start(&["--store", &redis.url()])?;
    let b = Host::start(&["--store", &redis.url()])?;
    let c = Host::start(&["--store", &redis.url()])?;
    let ids = create_concurrently(&[&a, &b, &c], 600)?;
    let distinct: HashSet<u64> = ids.into_iter().collect();
    assert_eq!(distinct.len(), 600);
    for host in [&a, &b, &c] {
        let listed: HashSet<u64> = listed_ids(host)?.into_iter().collect();
        assert_eq!(listed, distinct, "every host lists all 600");
    }
    Ok(())
}

#[test]
fn two_hosts_sharing_one_sqlite_file_never_surface_a_lock_error() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let store = sqlite_url(dir.path());
    let a = Host::start(&["--store", &store])?;
    let b = Host::start(&["--store", &store])?;
    // create_concurrently fails on any answer but 201: a "database is locked" would be a 503.
    let ids = create_concurrently(&[&a, &b], 400)?;
    let distinct: HashSet<u64> = ids.into_iter().collect();
    assert_eq!(distinct.len(), 400);
    let listed: HashSet<u64> = listed_ids(&b)?.into_iter().collect();
    assert_eq!(listed, distinct);
    Ok(())
}

#[test]
fn hosts_with_reuse_port_share_one_port() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let store = sqlite_url(dir.path());
    let first = Host::start(&["--store", &store, "--reuse-port"])?;
    let addr = first.addr().to_string();
    let second = Host::start_on(&addr, &["--store", &store, "--reuse-port"])?;
    assert_eq!(second.addr(), addr);
    assert_eq!(
        first
            .call("POST", "/todos", Some(r#"{"title":"one port"}"#))?
            .0,
        201
    );
    // With the first host gone, the same address is still served, by the second.
    assert!(first.terminate()?.success());
    let ids = listed_ids(&second)?;
    assert_eq!(ids, vec![1]);
    Ok(())
}

#[test]
fn without_reuse_port_a_second_host_cannot_take_the_port() -> anyhow::Result<()> {
    let first = Host::start(&["--store", "memory://"])?;
    let second = Host::start_on(first.addr(), &["--store", "memory://"]);
    assert!(
        second.is_err(),
        "two hosts bound one port without --reuse-port"
    );
    Ok(())
}

#[test]
fn redis_going_away_costs_503s_and_the_host_recovers_by_itself() -> anyhow::Result<()> {
    let mut redis = RedisServer::start()?;
    let host = Host::start(&["--store", &redis.url()])?;
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"before"}"#))?
            .0,
        201
    );

    redis.stop()?;
    let (status, body) = host.call("GET", "/todos", None)?;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("Redis")),
        "{body}"
    );
    let (status, _) = host.call("POST", "/todos", Some(r#"{"title":"during"}"#))?;
    assert_eq!(status, 503);

    // A fresh server on the same port (it kept no data): the same host process works again.
    redis.restart()?;
    let mut recovered = false;
    for _ in 0..50 {
        if host.call("POST", "/todos", Some(r#"{"title":"after"}"#))?.0 == 201 {
            recovered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(recovered, "the host did not reconnect to Redis within 5 s");
    assert_eq!(host.call("GET", "/todos", None)?.0, 200);
    Ok(())
}
