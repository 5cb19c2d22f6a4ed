//! `wasi:keyvalue@0.2.0-draft2` through the host's WIT layer, with a guest that uses what only
//! that draft has: compare-and-swap (a lost race reports `cas-failed`), signed increments and
//! string cursors. Against the memory store and a real Redis.

mod support;

use support::redis::RedisServer;
use support::{Host, fixture};

fn check(store: &str) -> anyhow::Result<()> {
    let cas = fixture("cas")?.display().to_string();
    let host = Host::start(&["--store", store, "--component", &cas])?;
    let text =
        |path: &str| -> anyhow::Result<String> { Ok(host.request("GET", path, None)?.text()) };
    assert_eq!(text("/cas-ok")?, r#"swapped, now=Some(Ok("after"))"#);
    assert_eq!(
        text("/cas-race")?,
        r#"cas-failed, seen=Some(Ok("before")), now=Some(Ok("someone else"))"#,
        "a swap over a newer value must fail and leave it"
    );
    assert_eq!(text("/increment")?, "5 -3");
    assert_eq!(
        text("/list")?,
        "1502",
        "1,500 keys plus `k` and `n`, across pages"
    );
    Ok(())
}

#[test]
fn draft2_cas_increment_and_cursors_on_the_memory_store() -> anyhow::Result<()> {
    check("memory://")
}

#[test]
fn draft2_cas_increment_and_cursors_on_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    check(&redis.url())
}
