//! The `wasi:keyvalue@0.2.0-draft2` check every store runs: `todo-host` serving the `cas` fixture
//! (a guest that uses what only that draft has), and what its routes must answer. One function,
//! so that the memory, Redis (`tests/keyvalue_draft2.rs`) and NATS (`tests/failover.rs`) stores
//! are held to the same answers.

use super::{Host, fixture};

/// Starts `todo-host` on `store` (a URL) with the `cas` fixture and checks compare-and-swap (a
/// lost race reports `cas-failed` and leaves the newer value), signed increments, and listing
/// keys with string cursors across pages.
pub fn check_cas_increment_and_cursors(store: &str) -> anyhow::Result<()> {
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
