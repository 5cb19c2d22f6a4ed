//! Instances are really fresh: a fixture component that counts its calls in a `static` answers
//! 1 every time, because every request gets a new instance.

mod support;

use support::{Host, fixture};

#[test]
fn a_static_counter_in_the_guest_always_answers_1() -> anyhow::Result<()> {
    let counter = fixture("counter")?;
    let host = Host::start(&[
        "--store",
        "memory://",
        "--component",
        &counter.display().to_string(),
    ])?;
    for _ in 0..20 {
        let response = host.request("GET", "/", None)?;
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "1", "an instance was reused");
    }
    // Concurrent requests too: no instance is shared between them.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| host.request("GET", "/", None)))
            .collect();
        for handle in handles {
            let response = handle
                .join()
                .map_err(|_| anyhow::anyhow!("client panicked"))??;
            assert_eq!(response.text(), "1");
        }
        Ok(())
    })
}
