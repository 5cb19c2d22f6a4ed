//! A bad guest or a bad request costs one request, never the host: fault fixtures (trap, endless
//! loop, memory hog, no response, huge response), every limit, capabilities, graceful shutdown.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{Host, fixture, raw_call, raw_request};

fn faults_host(extra: &[&str]) -> anyhow::Result<Host> {
    let faults = fixture("faults")?.display().to_string();
    let mut args = vec!["--store", "memory://", "--component", &faults];
    args.extend_from_slice(extra);
    Host::start(&args)
}

/// Sends `fault` and, while it is in flight, a healthy `/ok` to the same host. Returns the
/// fault's status, JSON error and time taken; asserts the healthy request succeeded at once.
fn fault_beside_a_healthy_request(
    host: &Host,
    fault: &str,
) -> anyhow::Result<(u16, String, Duration)> {
    std::thread::scope(|scope| {
        let started = Instant::now();
        let faulty = scope.spawn(|| host.request("GET", fault, None));
        std::thread::sleep(Duration::from_millis(100));
        let healthy_start = Instant::now();
        let healthy = host.request("GET", "/ok", None)?;
        let healthy_time = healthy_start.elapsed();
        assert_eq!(
            (healthy.status, healthy.text()),
            (200, "ok".to_string()),
            "beside {fault}"
        );
        assert!(
            healthy_time < Duration::from_secs(2),
            "the healthy request took {healthy_time:?} beside {fault}"
        );
        let response = faulty
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))??;
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{fault}: {}",
            response.text()
        );
        Ok((response.status, error, started.elapsed()))
    })
}

#[test]
fn a_trapping_guest_gets_500_and_the_host_goes_on() -> anyhow::Result<()> {
    let host = faults_host(&[])?;
    let (status, error, took) = fault_beside_a_healthy_request(&host, "/trap")?;
    assert_eq!(status, 500);
    assert!(error.contains("component failed"), "{error}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(host.request("GET", "/ok", None)?.status, 200);
    Ok(())
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline_with_504() -> anyhow::Result<()> {
    let host = faults_host(&["--request-timeout", "1s"])?;
    let (status, error, took) = fault_beside_a_healthy_request(&host, "/loop")?;
    assert_eq!(status, 504, "{error}");
    assert!(error.contains("deadline"), "{error}");
    assert!(
        took >= Duration::from_millis(900),
        "stopped too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "deadline 1s, took {took:?}"
    );
    Ok(())
}

#[test]
fn a_memory_hog_fails_its_request_only() -> anyhow::Result<()> {
    let host = faults_host(&["--max-memory", "16MiB"])?;
    let (status, error, took) = fault_beside_a_healthy_request(&host, "/hog")?;
    assert_eq!(status, 500, "{error}");
    assert!(
        error.contains("memory limit"),
        "not blamed on the limit: {error}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The pooled memory slot is clean for the next instance.
    assert_eq!(host.request("GET", "/ok", None)?.status, 200);
    Ok(())
}

#[test]
fn the_same_allocation_succeeds_under_a_higher_memory_limit_and_fails_under_a_lower_one()
-> anyhow::Result<()> {
    // 8 MiB on top of the fixture's own memory (about 1 MiB of stack and data): well inside
    // 16 MiB, far outside 4 MiB. So the 500 below is the limit's doing, not the fixture's.
    let roomy = faults_host(&["--max-memory", "16MiB"])?;
    let fits = roomy.request("GET", "/alloc?mb=8", None)?;
    assert_eq!(
        (fits.status, fits.text()),
        (200, "allocated 8 MiB".to_string())
    );

    let tight = faults_host(&["--max-memory", "4MiB"])?;
    let refused = tight.request("GET", "/alloc?mb=8", None)?;
    assert_eq!(refused.status, 500, "{}", refused.text());
    assert_eq!(
        refused.header("content-type"),
        Some("application/json"),
        "{}",
        refused.text()
    );
    let error = refused.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("memory limit"),
        "not blamed on the limit: {error}"
    );
    // Below the limit the same host still serves.
    assert_eq!(tight.request("GET", "/alloc?mb=1", None)?.status, 200);
    Ok(())
}

#[test]
fn a_guest_that_sets_no_response_gets_500() -> anyhow::Result<()> {
    let host = faults_host(&[])?;
    let (status, error, _) = fault_beside_a_healthy_request(&host, "/no-response")?;
    assert_eq!(status, 500);
    assert!(error.contains("set no response"), "{error}");
    Ok(())
}

#[test]
fn a_huge_response_is_refused_with_500() -> anyhow::Result<()> {
    let host = faults_host(&["--max-response", "1MiB"])?;
    let (status, error, took) = fault_beside_a_healthy_request(&host, "/huge")?;
    assert_eq!(status, 500);
    assert!(
        error.contains("larger than the 1048576-byte limit"),
        "{error}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    Ok(())
}

#[test]
fn bodies_over_the_limit_get_413_before_the_guest_runs() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://", "--max-body", "1KiB"])?;
    let big = format!(r#"{{"title":"{}"}}"#, "x".repeat(2000));
    let declared = raw_call(
        host.addr(),
        "POST",
        "/todos",
        Some(("application/json", big.as_bytes())),
    )?;
    assert_eq!(declared.status, 413);
    assert!(
        declared.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("1024 bytes"))
    );

    // A chunked body says no length up front and grows past the limit.
    let mut chunked = "POST /todos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string();
    for _ in 0..4 {
        chunked.push_str(&format!("200\r\n{}\r\n", "y".repeat(0x200)));
    }
    chunked.push_str("0\r\n\r\n");
    let grown = raw_request(host.addr(), chunked.as_bytes())?;
    assert_eq!(grown.status, 413, "{}", grown.text());
    assert!(grown.json()["error"].is_string(), "{}", grown.text());

    assert_eq!(
        host.call("GET", "/todos", None)?.1,
        serde_json::json!([]),
        "nothing was created"
    );
    Ok(())
}

#[test]
fn over_the_concurrency_limit_requests_get_503_with_retry_after() -> anyhow::Result<()> {
    let host = faults_host(&["--max-concurrency", "1", "--queue-timeout", "100ms"])?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let slow = scope.spawn(|| host.request("GET", "/slow?ms=1500", None));
        std::thread::sleep(Duration::from_millis(300));
        let refused = host.request("GET", "/ok", None)?;
        assert_eq!(refused.status, 503);
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert!(
            refused.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("limit of 1"))
        );
        let slow = slow
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))??;
        assert_eq!((slow.status, slow.text()), (200, "slept 1500".to_string()));
        Ok(())
    })?;
    assert_eq!(
        host.request("GET", "/ok", None)?.status,
        200,
        "the slot was given back"
    );
    Ok(())
}

#[test]
fn long_uris_and_headers_get_414_and_431_json() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://"])?;
    let long = format!("/todos?{}", "q".repeat(10_000));
    let response = raw_call(host.addr(), "GET", &long, None)?;
    assert_eq!(response.status, 414);
    assert!(response.json()["error"].is_string());

    let big_headers = format!(
        "GET /todos HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(40_000)
    );
    let response = raw_request(host.addr(), big_headers.as_bytes())?;
    assert_eq!(response.status, 431, "{}", response.text());
    assert!(response.json()["error"].is_string(), "{}", response.text());
    Ok(())
}

#[test]
fn a_value_over_the_kv_limit_is_the_components_fault_answered_413_not_a_store_outage()
-> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://", "--kv-max-value", "300"])?;
    let (status, body) = host.call(
        "POST",
        "/todos",
        Some(&format!(r#"{{"title":"{}"}}"#, "z".repeat(400))),
    )?;
    assert_eq!(status, 413, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("key-value limit") && error.contains("at most 300 bytes"),
        "{body}"
    );
    assert!(
        !error.contains("unavailable"),
        "not told as an outage: {body}"
    );
    for _ in 0..3 {
        assert_eq!(
            host.call("POST", "/todos", Some(r#"{"title":"small"}"#))?.0,
            201
        );
    }
    // Lists keep working: the host tells the component its limit (`kv_max_value`), so the
    // index keeps no page of several todos, which this host would refuse.
    for _ in 0..2 {
        let (status, list) = host.call("GET", "/todos", None)?;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    }
    Ok(())
}

#[test]
fn the_guest_gets_no_files_no_environment_and_no_network() -> anyhow::Result<()> {
    let secret_file = support::workspace().join("Cargo.toml");
    assert!(
        secret_file.exists(),
        "the probe needs a host file that exists"
    );
    let faults = fixture("faults")?.display().to_string();
    let host = Host::start_with_env(
        "127.0.0.1:0",
        &["--store", "memory://", "--component", &faults],
        &[("TODO_TEST_SECRET", "do-not-leak")],
    )?;

    let read = host.request(
        "GET",
        &format!("/read-file?path={}", secret_file.display()),
        None,
    )?;
    assert_eq!(
        read.status,
        403,
        "the guest read a host file: {}",
        read.text()
    );
    let root = host.request("GET", "/read-file?path=/", None)?;
    assert_eq!(root.status, 403);

    let env = host.request("GET", "/env", None)?;
    assert_eq!(env.text(), "0", "the guest sees environment variables");

    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let connect = host.request("GET", &format!("/connect?addr={addr}"), None)?;
    assert_eq!(
        connect.status,
        403,
        "the guest opened a socket: {}",
        connect.text()
    );
    assert!(
        listener.accept().is_err(),
        "a connection reached the listener"
    );
    Ok(())
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() -> anyhow::Result<()> {
    let host = faults_host(&["--shutdown-grace", "5s"])?;
    let pid = host.pid();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let slow = scope.spawn(|| host.request("GET", "/slow?ms=1500", None));
        std::thread::sleep(Duration::from_millis(300));
        support::signal(pid, "TERM")?;
        let slow = slow
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))??;
        assert_eq!((slow.status, slow.text()), (200, "slept 1500".to_string()));
        Ok(())
    })?;
    let exit = host.wait()?;
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}
