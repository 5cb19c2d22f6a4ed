//! `wasi:keyvalue@0.2.0-draft2` through the host's WIT layer, with a guest that uses what only
//! that draft has: compare-and-swap (a lost race reports `cas-failed`), signed increments and
//! string cursors (the check itself is `support::draft2`, which the NATS tests share). Against the
//! memory store and a real Redis.

mod support;

use support::draft2::check_cas_increment_and_cursors;
use support::redis::RedisServer;

#[test]
fn draft2_cas_increment_and_cursors_on_the_memory_store() -> anyhow::Result<()> {
    check_cas_increment_and_cursors("memory://")
}

#[test]
fn draft2_cas_increment_and_cursors_on_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    check_cas_increment_and_cursors(&redis.url())
}
